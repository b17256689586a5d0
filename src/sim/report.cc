#include "ftte/sim/report.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ftte/core/memory.h"
#include "ftte/sim/config.h"

namespace ftte::sim {

namespace {

using Json = nlohmann::ordered_json;  // keeps keys in the order written

Json ValueJson(const ConfigValue& v) {
  switch (v.kind) {
    case ConfigValue::Kind::kInt:
      return v.i;
    case ConfigValue::Kind::kFloat:
      return v.f;
    case ConfigValue::Kind::kBool:
      return v.b;
    case ConfigValue::Kind::kString:
      return v.s;
  }
  return nullptr;
}

// The configuration in schema form, without `threads` (it never changes results).
Json ConfigJson(const SimConfig& config) {
  Json out = Json::object();
  Json methods = Json::array();
  for (const ConfigSection& s : DescribeSimConfig(config)) {
    Json section = Json::object();
    for (const auto& [key, value] : s.values) {
      if (s.name.empty() && key == "threads") continue;
      section[key] = ValueJson(value);
    }
    if (s.name.empty()) {
      out = std::move(section);
    } else if (s.name == "method") {
      methods.push_back(std::move(section));
    } else {
      out[s.name] = std::move(section);
    }
  }
  out["method"] = std::move(methods);
  return out;
}

Json DistributionJson(const Distribution& d) {
  return {
      {"users", d.users}, {"mean", d.mean}, {"p10", d.p10}, {"median", d.median}, {"p90", d.p90}};
}

Json MethodJson(const MethodResult& r) {
  Json j = Json::object();
  j["name"] = r.name;
  j["algorithm"] = r.algorithm;
  j["final_accuracy"] = r.final_accuracy;
  if (r.language_model) {
    j["final_top3"] = r.final_top3;
    j["final_perplexity"] = r.final_perplexity;
  }
  j["time_to_target_s"] = r.time_to_target_s ? Json(*r.time_to_target_s) : Json(nullptr);
  j["peak_device_memory_bytes"] = r.peak_device_memory_bytes;
  j["predicted_device_memory_bytes"] = r.predicted_device_memory_bytes;
  j["budget_bytes"] = r.budget_bytes;
  j["trainable_params"] = r.trainable_params;
  j["bytes_up"] = r.bytes_up;
  j["bytes_down"] = r.bytes_down;
  j["excluded_devices"] = r.excluded_devices;
  j["updates_received"] = r.updates_received;
  j["updates_applied"] = r.updates_applied;
  j["dropped_stale"] = r.dropped_stale;
  j["versions"] = r.versions;
  Json staleness = Json::array();
  for (const auto& [tau, count] : r.staleness)
    staleness.push_back({{"tau", tau}, {"count", count}});
  j["staleness"] = std::move(staleness);
  if (r.language_model) {
    j["mask_update_bytes"] = r.mask_update_bytes;
    j["user_top3"] = DistributionJson(r.user_top3);
    if (r.personal_before && r.personal_after) {
      j["personalization"] = {{"before_top3", DistributionJson(*r.personal_before)},
                              {"after_top3", DistributionJson(*r.personal_after)}};
    } else {
      j["personalization"] = nullptr;
    }
  }
  Json series = Json::array();
  for (const SeriesPoint& p : r.series) {
    Json point = {{"t", p.virtual_s}, {"accuracy", p.accuracy}};
    if (r.language_model) {
      point["top3"] = p.top3;
      point["perplexity"] = p.perplexity;
    }
    point["loss"] = p.loss;
    point["bytes_up"] = p.bytes_up;
    point["bytes_down"] = p.bytes_down;
    point["version"] = p.version;
    series.push_back(std::move(point));
  }
  j["series"] = std::move(series);
  return j;
}

Status WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return IoError("cannot write " + path.string() + ": " + std::strerror(errno));
  return Status::Ok();
}

std::string ReadSmallFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `program accuracy.gp` in `dir` with its output in `log`. Returns the exit status
// (127: the program could not be started), or -1 if it could not be run at all.
int RunGnuplot(const std::string& program, const std::filesystem::path& dir,
               const std::filesystem::path& log) {
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {  // child: only async-signal-safe calls until exec
    if (::chdir(dir.c_str()) != 0) ::_exit(126);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    ::execlp(program.c_str(), program.c_str(), "accuracy.gp", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fd);
  if (pid < 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// "87 s", "20.5 min", "3.40 h", or "never".
std::string VirtualTime(const std::optional<double>& s) {
  if (!s) return "never";
  char buf[32];
  if (*s < 120) {
    std::snprintf(buf, sizeof buf, "%.0f s", *s);
  } else if (*s < 7200) {
    std::snprintf(buf, sizeof buf, "%.1f min", *s / 60);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f h", *s / 3600);
  }
  return buf;
}

}  // namespace

std::string ResultsJson(const SimConfig& config, const std::vector<MethodResult>& results) {
  Json j = Json::object();
  j["format"] = "ftte-sim-results/1";
  j["config"] = ConfigJson(config);
  Json methods = Json::array();
  for (const MethodResult& r : results) methods.push_back(MethodJson(r));
  j["methods"] = std::move(methods);
  return j.dump(2) + "\n";
}

std::string ResultsCsv(const std::vector<MethodResult>& results) {
  const bool lm = std::any_of(results.begin(), results.end(),
                              [](const MethodResult& r) { return r.language_model; });
  std::string out =
      lm ? "method,virtual_s,accuracy,top3,perplexity,loss,bytes_up,bytes_down,version\n"
         : "method,virtual_s,accuracy,loss,bytes_up,bytes_down,version\n";
  for (const MethodResult& r : results) {
    for (const SeriesPoint& p : r.series) {
      out += r.name + "," + FormatDouble(p.virtual_s) + "," + FormatDouble(p.accuracy) + "," +
             (lm ? FormatDouble(p.top3) + "," + FormatDouble(p.perplexity) + "," : "") +
             FormatDouble(p.loss) + "," + std::to_string(p.bytes_up) + "," +
             std::to_string(p.bytes_down) + "," + std::to_string(p.version) + "\n";
    }
  }
  return out;
}

std::string TimingJson(const SimConfig& config, const std::vector<MethodResult>& results) {
  Json j = Json::object();
  j["threads"] = config.threads;
  Json methods = Json::array();
  double total = 0;
  for (const MethodResult& r : results) {
    methods.push_back({{"name", r.name}, {"wall_s", r.wall_s}});
    total += r.wall_s;
  }
  j["methods"] = std::move(methods);
  j["total_wall_s"] = total;
  return j.dump(2) + "\n";
}

std::string PlotScript(const SimConfig& config, const std::vector<MethodResult>& results) {
  // Minutes read best for the usual horizons; hours for long runs, seconds for tiny ones.
  double unit = 60;
  const char* unit_name = "min";
  if (config.duration_s > 10 * 3600) unit = 3600, unit_name = "h";
  if (config.duration_s <= 600) unit = 1, unit_name = "s";

  std::string gp =
      "# Test accuracy vs virtual time, written by `ftte simulate` (data inline).\n"
      "# Redraw: cd into this folder and run `gnuplot accuracy.gp`.\n"
      "set terminal svg size 900,540 dynamic noenhanced font 'sans,12' background rgb 'white'\n"
      "set output 'accuracy.svg'\n";
  const bool lm = std::any_of(results.begin(), results.end(),
                              [](const MethodResult& r) { return r.language_model; });
  if (lm) {
    // Text runs have one device per user with training text, not devices.count.
    gp += "set title '" + config.model + " on " + config.dataset + " (" + config.tokenizer +
          " tokens, context " + std::to_string(config.context) +
          "), one device per user: next-word top-1 (solid) and top-3 (dotted)'\n";
  } else {
    gp += "set title '" + config.model + " on " + config.dataset + ", " +
          std::to_string(config.population.devices) + " devices, partition " + config.partition +
          "'\n";
  }
  gp += std::string("set xlabel 'virtual time (") + unit_name + ")'\n";
  gp += lm ? "set ylabel 'held-out next-word accuracy (%)'\n" : "set ylabel 'test accuracy (%)'\n";
  gp += "set xrange [0:" + FormatDouble(config.duration_s / unit) + "]\n";
  gp += lm ? "set yrange [0:*]\nset grid\nset key top left\n"
           : "set yrange [0:100]\nset grid\nset key bottom right\n";
  std::string plot = "plot ";
  for (size_t i = 0; i < results.size(); ++i) {
    if (results[i].series.empty()) continue;
    const std::string block = "$m" + std::to_string(i);
    gp += block + " << EOD\n";
    for (const SeriesPoint& p : results[i].series) {
      char row[64];
      std::snprintf(row, sizeof row, "%.6g %.6g\n", p.virtual_s / unit, 100 * p.accuracy);
      gp += row;
    }
    gp += "EOD\n";
    const std::string color = lm ? " lc " + std::to_string(i + 1) : "";
    plot += block + " using 1:2 with lines lw 2" + color + " title '" + results[i].name +
            "', \\\n     ";
    if (lm) {
      const std::string top3 = "$t" + std::to_string(i);
      gp += top3 + " << EOD\n";
      for (const SeriesPoint& p : results[i].series) {
        char row[64];
        std::snprintf(row, sizeof row, "%.6g %.6g\n", p.virtual_s / unit, 100 * p.top3);
        gp += row;
      }
      gp += "EOD\n";
      plot += top3 + " using 1:2 with lines lw 2 dt 3 lc " + std::to_string(i + 1) + " title '" +
              results[i].name + " top-3', \\\n     ";
    }
  }
  char target[64];
  std::snprintf(target, sizeof target, "%.4g", 100 * config.target_accuracy);
  plot += std::string(target) + " with lines dt 2 lc rgb 'gray40' title 'target " + target + "%'\n";
  return gp + plot;
}

Status WriteResults(const std::string& dir, const SimConfig& config,
                    const std::vector<MethodResult>& results, const ReportOptions& options,
                    std::vector<std::string>* warnings) {
  const std::filesystem::path d(dir);
  std::error_code ec;
  std::filesystem::create_directories(d, ec);
  if (ec) return IoError("cannot create output folder " + dir + ": " + ec.message());
  FTTE_RETURN_IF_ERROR(WriteFile(d / "results.json", ResultsJson(config, results)));
  FTTE_RETURN_IF_ERROR(WriteFile(d / "results.csv", ResultsCsv(results)));
  FTTE_RETURN_IF_ERROR(WriteFile(d / "timing.json", TimingJson(config, results)));
  FTTE_RETURN_IF_ERROR(WriteFile(d / "config.toml", FormatSimConfig(config)));
  FTTE_RETURN_IF_ERROR(WriteFile(d / "accuracy.gp", PlotScript(config, results)));
  if (!options.plot) return Status::Ok();

  const std::filesystem::path log = d / "accuracy.log";
  const int rc = RunGnuplot(options.gnuplot, d, log);
  std::string output = ReadSmallFile(log);
  if (rc == 0) {
    std::filesystem::remove(log, ec);
    return Status::Ok();
  }
  std::string warning;
  if (rc == 127) {
    std::filesystem::remove(log, ec);
    warning = "no plot: could not run '" + options.gnuplot + "' (install gnuplot, e.g. " +
              "apt-get install gnuplot-nox, then run `gnuplot accuracy.gp` in " + dir + ")";
  } else {
    if (output.size() > 400) output = output.substr(0, 400) + "...";
    warning = "no plot: '" + options.gnuplot + " accuracy.gp' failed in " + dir + " (exit " +
              std::to_string(rc) + "): " + output + " (full output in " + log.string() + ")";
  }
  if (warnings) warnings->push_back(warning);
  return Status::Ok();
}

std::string SummaryTable(const std::vector<MethodResult>& results) {
  int name_width = 6;
  for (const MethodResult& r : results) {
    name_width = std::max(name_width, static_cast<int>(r.name.size()));
  }
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-*s  %9s  %14s  %12s  %10s  %10s  %8s  %8s  %8s\n", name_width,
                "method", "final acc", "time to target", "peak dev mem", "upload", "download",
                "excluded", "updates", "wall s");
  out += line;
  for (const MethodResult& r : results) {
    char acc[32];
    std::snprintf(acc, sizeof acc, "%.2f%%", 100 * r.final_accuracy);
    std::snprintf(line, sizeof line, "%-*s  %9s  %14s  %12s  %10s  %10s  %8lld  %8lld  %8.1f\n",
                  name_width, r.name.c_str(), acc, VirtualTime(r.time_to_target_s).c_str(),
                  FormatBytes(r.peak_device_memory_bytes).c_str(), FormatBytes(r.bytes_up).c_str(),
                  FormatBytes(r.bytes_down).c_str(), static_cast<long long>(r.excluded_devices),
                  static_cast<long long>(r.updates_applied), r.wall_s);
    out += line;
  }
  if (std::none_of(results.begin(), results.end(),
                   [](const MethodResult& r) { return r.language_model; })) {
    return out;
  }
  // Language models: the next-word metrics, per user, and personalisation.
  auto pct = [](double v) {
    char b[16];
    std::snprintf(b, sizeof b, "%.1f", 100 * v);
    return std::string(b);
  };
  auto spread = [&](const Distribution& d) {
    return pct(d.mean) + " (" + pct(d.p10) + "/" + pct(d.median) + "/" + pct(d.p90) + ")";
  };
  out += "\n";
  std::snprintf(line, sizeof line, "%-*s  %6s  %10s  %-26s  %-26s  %-26s\n", name_width, "method",
                "top-3", "perplexity", "user top-3 % (p10/med/p90)", "personal before %",
                "personal after %");
  out += line;
  for (const MethodResult& r : results) {
    const bool p = r.personal_before && r.personal_after;
    std::snprintf(line, sizeof line, "%-*s  %5s%%  %10.1f  %-26s  %-26s  %-26s\n", name_width,
                  r.name.c_str(), pct(r.final_top3).c_str(), r.final_perplexity,
                  spread(r.user_top3).c_str(), p ? spread(*r.personal_before).c_str() : "-",
                  p ? spread(*r.personal_after).c_str() : "-");
    out += line;
  }
  return out;
}

}  // namespace ftte::sim
