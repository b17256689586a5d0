// Device populations: drawn from ranges, or read from a CSV trace.
#include <cmath>
#include <fstream>
#include <sstream>

#include "ftte/sim/simulator.h"

namespace ftte::sim {

namespace {

double LogUniform(Rng& rng, double lo, double hi) {
  if (hi <= lo) return lo;
  return std::exp(std::log(lo) + rng.Uniform() * (std::log(hi) - std::log(lo)));
}

}  // namespace

Result<std::vector<DeviceProfile>> MakeDevices(const PopulationConfig& c, uint64_t seed) {
  if (!c.trace_csv.empty()) return ReadDeviceCsv(c.trace_csv);
  if (c.devices < 1) return InvalidArgument("devices.count must be >= 1");
  Rng rng = Rng(seed).Fork(0xde71ce);
  std::vector<DeviceProfile> out(static_cast<size_t>(c.devices));
  for (DeviceProfile& d : out) {
    d.flops_per_s = LogUniform(rng, c.flops_min, c.flops_max);
    d.memory_bytes = static_cast<int64_t>(
        LogUniform(rng, static_cast<double>(c.memory_min), static_cast<double>(c.memory_max)));
    d.uplink_bytes_per_s = LogUniform(rng, c.uplink_min, c.uplink_max);
    d.downlink_bytes_per_s = LogUniform(rng, c.downlink_min, c.downlink_max);
    d.latency_s = c.latency_s;
    d.availability = c.availability;
  }
  // Exactly round(fraction * devices) stragglers, chosen by a seeded shuffle.
  std::vector<size_t> order(out.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[rng.Below(i + 1)]);
  const auto stragglers =
      static_cast<size_t>(std::llround(c.straggler_fraction * static_cast<double>(out.size())));
  for (size_t i = 0; i < stragglers; ++i) {
    out[order[i]].slowdown = LogUniform(rng, c.slowdown_min, c.slowdown_max);
  }
  return out;
}

Result<std::vector<DeviceProfile>> ReadDeviceCsv(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound(path + ": cannot open the device trace CSV");
  std::string line;
  if (!std::getline(in, line))
    return InvalidArgument(path + ": empty device trace; expected a header line");
  std::vector<std::string> cols;
  {
    std::stringstream ss(line);
    std::string col;
    while (std::getline(ss, col, ',')) cols.push_back(col);
  }
  const std::vector<std::string> known = {
      "flops_per_s",  "memory_bytes", "uplink_bytes_per_s", "downlink_bytes_per_s", "latency_s",
      "availability", "slowdown"};
  for (const auto& col : cols) {
    bool ok = false;
    for (const auto& k : known) ok = ok || k == col;
    if (!ok) {
      return InvalidArgument(path + ": unknown column '" + col +
                             "'; known: flops_per_s, memory_bytes, uplink_bytes_per_s, "
                             "downlink_bytes_per_s, latency_s, availability, slowdown");
    }
  }
  std::vector<DeviceProfile> out;
  int64_t line_no = 1;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    std::stringstream ss(line);
    std::string cell;
    DeviceProfile d;
    size_t i = 0;
    for (; std::getline(ss, cell, ','); ++i) {
      if (i >= cols.size()) {
        return InvalidArgument(path + ":" + std::to_string(line_no) + ": more cells than columns");
      }
      char* end = nullptr;
      const double v = std::strtod(cell.c_str(), &end);
      if (cell.empty() || *end != '\0' || !std::isfinite(v) || v < 0) {
        return InvalidArgument(path + ":" + std::to_string(line_no) + ": column " + cols[i] +
                               " needs a non-negative number, got '" + cell + "'");
      }
      const std::string& c = cols[i];
      if (c == "flops_per_s") d.flops_per_s = v;
      if (c == "memory_bytes") d.memory_bytes = static_cast<int64_t>(v);
      if (c == "uplink_bytes_per_s") d.uplink_bytes_per_s = v;
      if (c == "downlink_bytes_per_s") d.downlink_bytes_per_s = v;
      if (c == "latency_s") d.latency_s = v;
      if (c == "availability") d.availability = v;
      if (c == "slowdown") d.slowdown = v;
    }
    if (i != cols.size()) {
      return InvalidArgument(path + ":" + std::to_string(line_no) + ": expected " +
                             std::to_string(cols.size()) + " cells, got " + std::to_string(i));
    }
    if (d.flops_per_s <= 0 || d.uplink_bytes_per_s <= 0 || d.downlink_bytes_per_s <= 0 ||
        d.availability <= 0 || d.availability > 1 || d.slowdown < 1) {
      return InvalidArgument(path + ":" + std::to_string(line_no) +
                             ": speeds must be > 0, availability in (0, 1], slowdown >= 1");
    }
    out.push_back(d);
  }
  if (out.empty()) return InvalidArgument(path + ": the device trace has no devices");
  return out;
}

}  // namespace ftte::sim
