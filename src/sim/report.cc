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
#include <limits>
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
    case ConfigValue::Kind::kList:
      return v.list;
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

// Runs `program plots.gp` in `dir` with its output in `log`. Returns the exit status
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
    ::execlp(program.c_str(), program.c_str(), "plots.gp", static_cast<char*>(nullptr));
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

Json DistributionJson(const Distribution& d) {
  return {
      {"users", d.users}, {"mean", d.mean}, {"p10", d.p10}, {"median", d.median}, {"p90", d.p90}};
}

Distribution DistributionFrom(const Json& j) {
  Distribution d;
  d.users = j.at("users").get<int64_t>();
  d.mean = j.at("mean").get<double>();
  d.p10 = j.at("p10").get<double>();
  d.median = j.at("median").get<double>();
  d.p90 = j.at("p90").get<double>();
  return d;
}

template <typename T>
Json Optional(const std::optional<T>& v) {
  return v ? Json(*v) : Json(nullptr);
}

template <typename T>
std::optional<T> OptionalFrom(const Json& j) {
  if (j.is_null()) return std::nullopt;
  return j.get<T>();
}

Json TargetJson(const TargetTime& t) {
  return {{"target", t.target},
          {"first_s", Optional(t.first_s)},
          {"smoothed_s", Optional(t.smoothed_s)},
          {"held_s", Optional(t.held_s)},
          {"bytes_up_at_held", Optional(t.bytes_up_at_held)}};
}

Json ReferenceJson(const TextReference& r) {
  return {{"unk_rate", r.unk_rate},
          {"ngram", "interpolated Kneser-Ney 3-gram"},
          {"ngram_top1", r.ngram_top1},
          {"ngram_top3", r.ngram_top3},
          {"ngram_perplexity", r.ngram_perplexity}};
}

Json RunJson(const MethodResult& r) {
  Json j = Json::object();
  j["seed"] = r.seed;
  j["name"] = r.name;
  j["algorithm"] = r.algorithm;
  j["final_accuracy"] = r.final_accuracy;
  if (r.language_model) {
    j["final_top3"] = r.final_top3;
    j["final_perplexity"] = r.final_perplexity;
    j["reference"] = ReferenceJson(r.reference);
  }
  j["time_to_target_s"] = Optional(r.time_to_target_s);
  Json targets = Json::array();
  for (const TargetTime& t : r.targets) targets.push_back(TargetJson(t));
  j["targets"] = std::move(targets);
  j["peak_device_memory_bytes"] = r.peak_device_memory_bytes;
  j["predicted_device_memory_bytes"] = r.predicted_device_memory_bytes;
  j["budget_bytes"] = r.budget_bytes;
  j["trainable_params"] = r.trainable_params;
  j["bytes_up"] = r.bytes_up;
  j["bytes_down"] = r.bytes_down;
  j["mask_update_bytes"] = r.mask_update_bytes;
  j["excluded_devices"] = r.excluded_devices;
  j["updates_received"] = r.updates_received;
  j["updates_applied"] = r.updates_applied;
  j["dropped_stale"] = r.dropped_stale;
  j["versions"] = r.versions;
  j["replans"] = r.replans;
  Json staleness = Json::array();
  for (const auto& [tau, count] : r.staleness)
    staleness.push_back({{"tau", tau}, {"count", count}});
  j["staleness"] = std::move(staleness);
  if (r.privacy_report) {
    // JSON has no infinity: null means no finite bound (no noise).
    j["privacy"] = {{"epsilon", std::isfinite(r.epsilon) ? Json(r.epsilon) : Json(nullptr)},
                    {"delta", r.dp_delta},
                    {"noise_multiplier", r.dp_noise_multiplier},
                    {"clip", r.dp_final_clip},
                    {"max_load", r.dp_max_load},
                    {"clipped", r.dp_clipped},
                    {"refused", r.dp_refused},
                    {"mode", r.dp_distributed ? "distributed" : "central"},
                    {"oversized", r.dp_oversized}};
  }
  if (r.secure_report) {
    j["secure_aggregation"] = {{"cohorts", r.secure_cohorts},
                               {"aborted", r.secure_aborted},
                               {"lost", r.secure_lost},
                               {"clamped", r.secure_clamped},
                               {"protocol_s", r.secure_protocol_s}};
  }
  if (r.robust_report) {
    j["robust"] = {{"clipped", r.clipped},
                   {"samples_capped", r.samples_capped},
                   {"filtered", r.filtered},
                   {"malicious_updates", r.malicious_updates}};
  }
  if (r.language_model) {
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
    if (r.privacy_report) {
      point["epsilon"] = std::isfinite(p.epsilon) ? Json(p.epsilon) : Json(nullptr);
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

// The inverse of RunJson (wall_s stays 0: the run file keeps it beside the run).
MethodResult RunFrom(const Json& j) {
  MethodResult r;
  r.seed = j.at("seed").get<uint64_t>();
  r.name = j.at("name").get<std::string>();
  r.algorithm = j.at("algorithm").get<std::string>();
  r.language_model = j.contains("final_top3");
  r.final_accuracy = j.at("final_accuracy").get<double>();
  if (r.language_model) {
    r.final_top3 = j.at("final_top3").get<double>();
    r.final_perplexity = j.at("final_perplexity").get<double>();
    const Json& ref = j.at("reference");
    r.reference = {ref.at("unk_rate").get<double>(), ref.at("ngram_top1").get<double>(),
                   ref.at("ngram_top3").get<double>(), ref.at("ngram_perplexity").get<double>()};
  }
  r.time_to_target_s = OptionalFrom<double>(j.at("time_to_target_s"));
  for (const Json& t : j.at("targets")) {
    r.targets.push_back({t.at("target").get<double>(), OptionalFrom<double>(t.at("first_s")),
                         OptionalFrom<double>(t.at("smoothed_s")),
                         OptionalFrom<double>(t.at("held_s")),
                         OptionalFrom<int64_t>(t.at("bytes_up_at_held"))});
  }
  r.peak_device_memory_bytes = j.at("peak_device_memory_bytes").get<int64_t>();
  r.predicted_device_memory_bytes = j.at("predicted_device_memory_bytes").get<int64_t>();
  r.budget_bytes = j.at("budget_bytes").get<int64_t>();
  r.trainable_params = j.at("trainable_params").get<int64_t>();
  r.bytes_up = j.at("bytes_up").get<int64_t>();
  r.bytes_down = j.at("bytes_down").get<int64_t>();
  r.mask_update_bytes = j.at("mask_update_bytes").get<int64_t>();
  r.excluded_devices = j.at("excluded_devices").get<int64_t>();
  r.updates_received = j.at("updates_received").get<int64_t>();
  r.updates_applied = j.at("updates_applied").get<int64_t>();
  r.dropped_stale = j.at("dropped_stale").get<int64_t>();
  r.versions = j.at("versions").get<int64_t>();
  r.replans = j.at("replans").get<int64_t>();
  for (const Json& s : j.at("staleness")) {
    r.staleness[s.at("tau").get<int64_t>()] = s.at("count").get<int64_t>();
  }
  // null epsilon: no finite bound.
  auto epsilon_from = [](const Json& e) {
    return e.is_null() ? std::numeric_limits<double>::infinity() : e.get<double>();
  };
  if (j.contains("privacy")) {
    const Json& p = j.at("privacy");
    r.privacy_report = true;
    r.epsilon = epsilon_from(p.at("epsilon"));
    r.dp_delta = p.at("delta").get<double>();
    r.dp_noise_multiplier = p.value("noise_multiplier", 0.0);
    r.dp_final_clip = p.value("clip", 0.0);
    r.dp_max_load = p.at("max_load").get<int64_t>();
    r.dp_clipped = p.at("clipped").get<int64_t>();
    r.dp_refused = p.at("refused").get<int64_t>();
    r.dp_distributed = p.value("mode", std::string("central")) == "distributed";
    r.dp_oversized = p.value("oversized", int64_t{0});
  }
  if (j.contains("secure_aggregation")) {
    const Json& a = j.at("secure_aggregation");
    r.secure_report = true;
    r.secure_cohorts = a.at("cohorts").get<int64_t>();
    r.secure_aborted = a.at("aborted").get<int64_t>();
    r.secure_lost = a.at("lost").get<int64_t>();
    r.secure_clamped = a.at("clamped").get<int64_t>();
    r.secure_protocol_s = a.at("protocol_s").get<double>();
  }
  if (j.contains("robust")) {
    const Json& b = j.at("robust");
    r.robust_report = true;
    r.clipped = b.at("clipped").get<int64_t>();
    r.samples_capped = b.at("samples_capped").get<int64_t>();
    r.filtered = b.at("filtered").get<int64_t>();
    r.malicious_updates = b.at("malicious_updates").get<int64_t>();
  }
  if (r.language_model) {
    r.user_top3 = DistributionFrom(j.at("user_top3"));
    const Json& p = j.at("personalization");
    if (!p.is_null()) {
      r.personal_before = DistributionFrom(p.at("before_top3"));
      r.personal_after = DistributionFrom(p.at("after_top3"));
    }
  }
  for (const Json& p : j.at("series")) {
    SeriesPoint s;
    s.virtual_s = p.at("t").get<double>();
    s.accuracy = p.at("accuracy").get<double>();
    if (r.language_model) {
      s.top3 = p.at("top3").get<double>();
      s.perplexity = p.at("perplexity").get<double>();
    }
    if (r.privacy_report) s.epsilon = epsilon_from(p.at("epsilon"));
    s.loss = p.at("loss").get<double>();
    s.bytes_up = p.at("bytes_up").get<int64_t>();
    s.bytes_down = p.at("bytes_down").get<int64_t>();
    s.version = p.at("version").get<int64_t>();
    r.series.push_back(s);
  }
  return r;
}

// The runs of each method (in order of first appearance), each method's runs in seed order.
std::vector<std::vector<const MethodResult*>> ByMethod(const std::vector<MethodResult>& runs) {
  std::vector<std::vector<const MethodResult*>> out;
  for (const MethodResult& r : runs) {
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const auto& g) { return g.front()->name == r.name; });
    if (it == out.end()) {
      out.push_back({&r});
    } else {
      it->push_back(&r);
    }
  }
  for (auto& g : out) {
    std::stable_sort(g.begin(), g.end(), [](const MethodResult* a, const MethodResult* b) {
      return a->seed < b->seed;
    });
  }
  return out;
}

Json StatJson(const std::vector<double>& values) {
  const Stat s = Summarize95(values);
  return {{"mean", s.mean}, {"ci95", s.ci95}, {"n", s.n}, {"values", values}};
}

// Times over the runs that reached the target; "reached" counts them.
Json TimeStatJson(const std::vector<std::optional<double>>& times) {
  std::vector<double> reached;
  for (const auto& t : times) {
    if (t) reached.push_back(*t);
  }
  Json j = StatJson(reached);
  j["reached"] = static_cast<int64_t>(reached.size());
  return j;
}

double UploadPerUpdate(const MethodResult& r) {
  return r.updates_received > 0
             ? static_cast<double>(r.bytes_up) / static_cast<double>(r.updates_received)
             : 0.0;
}

Json SummaryJson(const std::vector<const MethodResult*>& g) {
  auto values = [&](auto field) {
    std::vector<double> v;
    for (const MethodResult* r : g) v.push_back(static_cast<double>(field(*r)));
    return v;
  };
  Json j = Json::object();
  j["final_accuracy"] = StatJson(values([](const MethodResult& r) { return r.final_accuracy; }));
  std::vector<std::optional<double>> held;
  for (const MethodResult* r : g) held.push_back(r->time_to_target_s);
  j["time_to_target_s"] = TimeStatJson(held);
  j["peak_device_memory_bytes"] =
      StatJson(values([](const MethodResult& r) { return r.peak_device_memory_bytes; }));
  j["bytes_up"] = StatJson(values([](const MethodResult& r) { return r.bytes_up; }));
  j["bytes_down"] = StatJson(values([](const MethodResult& r) { return r.bytes_down; }));
  j["upload_per_update_bytes"] = StatJson(values(UploadPerUpdate));
  j["updates_applied"] = StatJson(values([](const MethodResult& r) { return r.updates_applied; }));
  j["versions"] = StatJson(values([](const MethodResult& r) { return r.versions; }));
  Json targets = Json::array();
  for (size_t t = 0; t < g.front()->targets.size(); ++t) {
    std::vector<std::optional<double>> first, smoothed, held_t, bytes;
    for (const MethodResult* r : g) {
      const TargetTime& tt = r->targets[t];
      first.push_back(tt.first_s);
      smoothed.push_back(tt.smoothed_s);
      held_t.push_back(tt.held_s);
      bytes.push_back(tt.bytes_up_at_held ? std::optional<double>(*tt.bytes_up_at_held)
                                          : std::nullopt);
    }
    targets.push_back({{"target", g.front()->targets[t].target},
                       {"first_s", TimeStatJson(first)},
                       {"smoothed_s", TimeStatJson(smoothed)},
                       {"held_s", TimeStatJson(held_t)},
                       {"bytes_up_at_held", TimeStatJson(bytes)}});
  }
  j["targets"] = std::move(targets);
  return j;
}

// "12.5 min", or "never".
std::string Minutes(const std::optional<double>& s) {
  if (!s) return "never";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f min", *s / 60);
  return buf;
}

// "71.40%" or "71.40±1.20%" (95% half-width).
std::string PercentStat(const Stat& s) {
  char buf[48];
  if (s.n >= 2) {
    std::snprintf(buf, sizeof buf, "%.2f+-%.2f%%", 100 * s.mean, 100 * s.ci95);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f%%", 100 * s.mean);
  }
  return buf;
}

// The mean over the runs of series point i's field (runs share the evaluation grid).
template <typename F>
Stat SeriesStat(const std::vector<const MethodResult*>& g, size_t i, F field) {
  std::vector<double> v;
  for (const MethodResult* r : g) {
    if (i < r->series.size()) v.push_back(field(r->series[i]));
  }
  return Summarize95(v);
}

size_t SeriesLength(const std::vector<const MethodResult*>& g) {
  size_t n = SIZE_MAX;
  for (const MethodResult* r : g) n = std::min(n, r->series.size());
  return n == SIZE_MAX ? 0 : n;
}

// gnuplot data block `name` with one row per line, ending in EOD.
std::string Block(const std::string& name, const std::vector<std::string>& rows) {
  std::string out = name + " << EOD\n";
  for (const std::string& r : rows) out += r + "\n";
  return out + "EOD\n";
}

std::string Row(std::initializer_list<double> values) {
  std::string out;
  char buf[32];
  for (double v : values) {
    std::snprintf(buf, sizeof buf, "%.6g", v);
    if (!out.empty()) out += ' ';
    out += buf;
  }
  return out;
}

}  // namespace

Stat Summarize95(const std::vector<double>& values) {
  // Student's t quantile 0.975 for 1..30 degrees of freedom; the normal's beyond.
  static constexpr double kT[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306,
                                  2.262,  2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
                                  2.110,  2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
                                  2.060,  2.056, 2.052, 2.048, 2.045, 2.042};
  Stat s;
  s.n = static_cast<int64_t>(values.size());
  if (s.n == 0) return s;
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / static_cast<double>(s.n);
  if (s.n < 2) return s;
  double sq = 0;
  for (double v : values) sq += (v - s.mean) * (v - s.mean);
  const double sd = std::sqrt(sq / static_cast<double>(s.n - 1));
  const double t = s.n - 1 <= 30 ? kT[s.n - 2] : 1.96;
  s.ci95 = t * sd / std::sqrt(static_cast<double>(s.n));
  return s;
}

std::string ResultsJson(const SimConfig& config, const std::vector<MethodResult>& runs) {
  Json j = Json::object();
  j["format"] = "ftte-sim-results/2";
  j["config"] = ConfigJson(config);
  j["seeds"] = config.AllSeeds();
  // Text: the held-out <unk> share and the 3-gram reference (the same for every run).
  for (const MethodResult& r : runs) {
    if (r.language_model) {
      j["reference"] = ReferenceJson(r.reference);
      break;
    }
  }
  Json methods = Json::array();
  for (const auto& g : ByMethod(runs)) {
    Json m = Json::object();
    m["name"] = g.front()->name;
    m["algorithm"] = g.front()->algorithm;
    m["summary"] = SummaryJson(g);
    Json list = Json::array();
    for (const MethodResult* r : g) list.push_back(RunJson(*r));
    m["runs"] = std::move(list);
    methods.push_back(std::move(m));
  }
  j["methods"] = std::move(methods);
  return j.dump(2) + "\n";
}

std::string ResultsCsv(const std::vector<MethodResult>& runs) {
  const bool lm =
      std::any_of(runs.begin(), runs.end(), [](const MethodResult& r) { return r.language_model; });
  std::string out =
      lm ? "method,seed,virtual_s,accuracy,top3,perplexity,loss,bytes_up,bytes_down,version\n"
         : "method,seed,virtual_s,accuracy,loss,bytes_up,bytes_down,version\n";
  for (const auto& g : ByMethod(runs)) {
    for (const MethodResult* r : g) {
      for (const SeriesPoint& p : r->series) {
        out += r->name + "," + std::to_string(r->seed) + "," + FormatDouble(p.virtual_s) + "," +
               FormatDouble(p.accuracy) + "," +
               (lm ? FormatDouble(p.top3) + "," + FormatDouble(p.perplexity) + "," : "") +
               FormatDouble(p.loss) + "," + std::to_string(p.bytes_up) + "," +
               std::to_string(p.bytes_down) + "," + std::to_string(p.version) + "\n";
      }
    }
  }
  return out;
}

std::string TimingJson(const SimConfig& config, const std::vector<MethodResult>& runs) {
  Json j = Json::object();
  j["threads"] = config.threads;
  Json list = Json::array();
  double total = 0;
  for (const MethodResult& r : runs) {
    list.push_back({{"name", r.name}, {"seed", r.seed}, {"wall_s", r.wall_s}});
    total += r.wall_s;
  }
  j["runs"] = std::move(list);
  j["total_wall_s"] = total;
  return j.dump(2) + "\n";
}

std::string PlotScript(const SimConfig& config, const std::vector<MethodResult>& runs) {
  const auto groups = ByMethod(runs);
  const bool lm =
      std::any_of(runs.begin(), runs.end(), [](const MethodResult& r) { return r.language_model; });
  const size_t seeds = config.AllSeeds().size();
  std::string title;
  if (lm) {
    title = config.model + " on " + config.dataset + " (" + config.tokenizer + " tokens, context " +
            std::to_string(config.context) + "), one device per user";
  } else {
    title = config.model + " on " + config.dataset + ", " +
            std::to_string(config.population.devices) + " devices, partition " + config.partition;
  }
  if (seeds > 1) title += ", mean of " + std::to_string(seeds) + " seeds (band: 95% interval)";
  const std::string metric =
      lm ? "held-out next-word top-1 accuracy (%, <unk> targets unscored)" : "test accuracy (%)";
  std::string gp =
      "# Written by `ftte simulate` (data inline). Redraw: cd into this folder and run\n"
      "# `gnuplot plots.gp`. Times are virtual minutes.\n"
      "set terminal svg size 900,540 dynamic noenhanced font 'sans,12' background rgb 'white'\n"
      "set grid lc rgb '#dddddd'\nset key outside right top\n"
      "set style fill transparent solid 0.18 noborder\n";
  // Data: per method, the mean curve with its band, by time and by upload.
  for (size_t m = 0; m < groups.size(); ++m) {
    const auto& g = groups[m];
    std::vector<std::string> by_time, by_bytes;
    for (size_t i = 0; i < SeriesLength(g); ++i) {
      const Stat acc = SeriesStat(g, i, [](const SeriesPoint& p) { return 100 * p.accuracy; });
      const Stat up = SeriesStat(
          g, i, [](const SeriesPoint& p) { return static_cast<double>(p.bytes_up) / (1 << 20); });
      by_time.push_back(Row({g.front()->series[i].virtual_s / 60, acc.mean, acc.mean - acc.ci95,
                             acc.mean + acc.ci95}));
      by_bytes.push_back(Row({up.mean, acc.mean}));
    }
    gp += Block("$time" + std::to_string(m), by_time);
    gp += Block("$upload" + std::to_string(m), by_bytes);
  }
  std::vector<std::string> memory;
  for (const auto& g : groups) {
    std::vector<double> mem, acc;
    for (const MethodResult* r : g) {
      mem.push_back(static_cast<double>(r->peak_device_memory_bytes) / (1 << 20));
      acc.push_back(100 * r->final_accuracy);
    }
    const Stat a = Summarize95(acc), b = Summarize95(mem);
    memory.push_back(Row({b.mean, a.mean, a.ci95}) + " \"" + g.front()->name + "\"");
  }
  gp += Block("$memory", memory);

  // accuracy.svg: vs virtual time, with the targets.
  gp += "set output 'accuracy.svg'\nset title '" + title + "'\n";
  gp += "set xlabel 'virtual time (min)'\nset ylabel '" + metric + "'\n";
  gp += "set xrange [0:" + FormatDouble(config.duration_s / 60) + "]\n";
  gp += lm ? "set yrange [0:*]\n" : "set yrange [0:100]\n";
  std::string plot = "plot ";
  for (size_t m = 0; m < groups.size(); ++m) {
    const std::string c = " lc " + std::to_string(m + 1);
    const std::string block = "$time" + std::to_string(m);
    if (seeds > 1) plot += block + " using 1:3:4 with filledcurves" + c + " notitle, \\\n     ";
    plot += block + " using 1:2 with linespoints lw 2 pt 7 ps 0.4" + c + " title '" +
            groups[m].front()->name + "', \\\n     ";
  }
  int dash = 2;
  for (double t : config.AllTargets()) {
    char label[64];
    std::snprintf(label, sizeof label, "%.4g", 100 * t);
    plot += std::string(label) + " with lines dt " + std::to_string(dash++) +
            " lw 1.5 lc rgb 'black' title 'target " + label + "%', \\\n     ";
  }
  if (lm) {  // the reference to beat: the 3-gram on the same positions (flat: it is not trained)
    const auto r = std::find_if(runs.begin(), runs.end(),
                                [](const MethodResult& x) { return x.language_model; });
    plot += FormatDouble(100 * r->reference.ngram_top1) +
            " with lines lw 2 lc rgb '#888888' title '3-gram (Kneser-Ney)', \\\n     ";
  }
  gp += plot.substr(0, plot.size() - 9) + "\n";
  // accuracy-vs-upload.svg.
  gp += "set output 'accuracy-vs-upload.svg'\nset title '" + title + "'\n";
  gp += "set xlabel 'uploaded by all devices (MiB)'\nset autoscale x\nset logscale x\n";
  plot = "plot ";
  for (size_t m = 0; m < groups.size(); ++m) {
    plot += "$upload" + std::to_string(m) + " using 1:2 with linespoints lw 2 pt 7 ps 0.4 lc " +
            std::to_string(m + 1) + " title '" + groups[m].front()->name + "', \\\n     ";
  }
  gp += plot.substr(0, plot.size() - 9) + "\nunset logscale x\n";
  // accuracy-vs-memory.svg.
  gp += "set output 'accuracy-vs-memory.svg'\nset title '" + title + "'\n";
  gp += "set xlabel 'peak device memory (MiB)'\nset ylabel 'final " + metric + "'\n";
  gp += "set autoscale x\nset offsets graph 0.1, graph 0.1, 0, 0\n";
  gp +=
      "plot $memory using 1:2:3 with yerrorbars pt 7 ps 1 lc rgb 'black' notitle, \\\n"
      "     $memory using 1:2:4 with labels offset 1,1 left notitle\n";
  return gp;
}

std::string ConfigDigest(const SimConfig& config, const std::string& method) {
  // FNV-1a of the configuration without threads, seeds and the other methods (a run belongs
  // to any list of seeds that holds its seed, and to any selection of methods with its own).
  SimConfig c = config;
  c.threads = 1;
  c.seeds.clear();
  c.seed = 0;
  std::vector<MethodConfig> mine;
  for (const MethodConfig& m : c.methods) {
    if (m.name == method) mine.push_back(m);
  }
  c.methods = mine;
  std::string text = FormatSimConfig(c);
  // Next-word results counted <unk> targets before they were unscored: never mix the two.
  if (IsTextDataset(c.dataset)) text += "\nnext-word metrics: <unk> unscored";
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : text) h = (h ^ ch) * 1099511628211ull;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string RunFileName(const std::string& method, uint64_t seed) {
  return method + "-seed" + std::to_string(seed) + ".json";
}

std::string RunFileText(const SimConfig& config, const MethodResult& run) {
  Json j = Json::object();
  j["format"] = "ftte-sim-run/1";
  j["config_digest"] = ConfigDigest(config, run.name);
  j["run"] = RunJson(run);
  j["wall_s"] = run.wall_s;  // for timing.json after a resume (not in results.json: not seeded)
  return j.dump(1) + "\n";
}

Result<MethodResult> ParseRunFile(const std::string& text, const SimConfig& config,
                                  const std::string& path) {
  try {
    const Json j = Json::parse(text);
    if (j.value("format", "") != "ftte-sim-run/1") {
      return InvalidArgument(path + " is not a run file of ftte simulate; remove it");
    }
    const std::string digest = j.at("config_digest").get<std::string>();
    const std::string name = j.at("run").at("name").get<std::string>();
    if (digest != ConfigDigest(config, name)) {
      return FailedPrecondition(path + " holds a run of another configuration (digest " + digest +
                                ", this one " + ConfigDigest(config, name) +
                                "); resume with the configuration it was run with, or drop "
                                "--resume (or use another --out) to start over");
    }
    MethodResult r = RunFrom(j.at("run"));
    r.wall_s = j.value("wall_s", 0.0);  // (run files before it was kept: 0)
    return r;
  } catch (const std::exception& e) {
    return DataLoss(path + ": not a complete run file (" + e.what() +
                    "); remove it and resume to run it again");
  }
}

Status WriteRunFile(const std::string& dir, const SimConfig& config, const MethodResult& run) {
  const std::filesystem::path runs = std::filesystem::path(dir) / "runs";
  std::error_code ec;
  std::filesystem::create_directories(runs, ec);
  if (ec) return IoError("cannot create " + runs.string() + ": " + ec.message());
  const std::filesystem::path path = runs / RunFileName(run.name, run.seed);
  const std::filesystem::path tmp = path.string() + ".tmp";
  FTTE_RETURN_IF_ERROR(WriteFile(tmp, RunFileText(config, run)));
  std::filesystem::rename(tmp, path, ec);
  if (ec)
    return IoError("cannot rename " + tmp.string() + " to " + path.string() + ": " + ec.message());
  return Status::Ok();
}

Status WriteResults(const std::string& dir, const SimConfig& config,
                    const std::vector<MethodResult>& runs, const ReportOptions& options,
                    std::vector<std::string>* warnings) {
  const std::filesystem::path d(dir);
  std::error_code ec;
  std::filesystem::create_directories(d, ec);
  if (ec) return IoError("cannot create output folder " + dir + ": " + ec.message());
  FTTE_RETURN_IF_ERROR(WriteFile(d / "results.json", ResultsJson(config, runs)));
  FTTE_RETURN_IF_ERROR(WriteFile(d / "results.csv", ResultsCsv(runs)));
  FTTE_RETURN_IF_ERROR(WriteFile(d / "timing.json", TimingJson(config, runs)));
  FTTE_RETURN_IF_ERROR(WriteFile(d / "config.toml", FormatSimConfig(config)));
  FTTE_RETURN_IF_ERROR(WriteFile(d / "plots.gp", PlotScript(config, runs)));
  if (!options.plot) return Status::Ok();

  const std::filesystem::path log = d / "plots.log";
  const int rc = RunGnuplot(options.gnuplot, d, log);
  std::string output = ReadSmallFile(log);
  if (rc == 0) {
    std::filesystem::remove(log, ec);
    return Status::Ok();
  }
  std::string warning;
  if (rc == 127) {
    std::filesystem::remove(log, ec);
    warning = "no plots: could not run '" + options.gnuplot + "' (install gnuplot, e.g. " +
              "apt-get install gnuplot-nox, then run `gnuplot plots.gp` in " + dir + ")";
  } else {
    if (output.size() > 400) output = output.substr(0, 400) + "...";
    warning = "no plots: '" + options.gnuplot + " plots.gp' failed in " + dir + " (exit " +
              std::to_string(rc) + "): " + output + " (full output in " + log.string() + ")";
  }
  if (warnings) warnings->push_back(warning);
  return Status::Ok();
}

std::string SummaryTable(const std::vector<MethodResult>& runs) {
  const auto groups = ByMethod(runs);
  int name_width = 6;
  for (const auto& g : groups) {
    name_width = std::max(name_width, static_cast<int>(g.front()->name.size()));
  }
  const size_t seeds = groups.empty() ? 0 : groups.front().size();
  std::string out;
  char line[640];
  std::snprintf(line, sizeof line, "%-*s  %13s  %16s  %12s  %11s  %10s  %10s  %8s  %8s  %8s\n",
                name_width, "method", "final acc", "target held at", "peak dev mem", "up/update",
                "upload", "download", "excluded", "updates", "wall s");
  out += line;
  auto mean_of = [](const std::vector<const MethodResult*>& g, auto field) {
    std::vector<double> v;
    for (const MethodResult* r : g) v.push_back(static_cast<double>(field(*r)));
    return Summarize95(v).mean;
  };
  for (const auto& g : groups) {
    std::vector<double> acc, held;
    for (const MethodResult* r : g) {
      acc.push_back(r->final_accuracy);
      if (r->time_to_target_s) held.push_back(*r->time_to_target_s);
    }
    std::string held_text = held.empty() ? "never" : Minutes(Summarize95(held).mean);
    if (g.size() > 1) {
      held_text += " (" + std::to_string(held.size()) + "/" + std::to_string(g.size()) + ")";
    }
    std::snprintf(
        line, sizeof line, "%-*s  %13s  %16s  %12s  %11s  %10s  %10s  %8.0f  %8.0f  %8.1f\n",
        name_width, g.front()->name.c_str(), PercentStat(Summarize95(acc)).c_str(),
        held_text.c_str(),
        FormatBytes(static_cast<int64_t>(mean_of(
                        g, [](const MethodResult& r) { return r.peak_device_memory_bytes; })))
            .c_str(),
        FormatBytes(static_cast<int64_t>(mean_of(g, UploadPerUpdate))).c_str(),
        FormatBytes(
            static_cast<int64_t>(mean_of(g, [](const MethodResult& r) { return r.bytes_up; })))
            .c_str(),
        FormatBytes(
            static_cast<int64_t>(mean_of(g, [](const MethodResult& r) { return r.bytes_down; })))
            .c_str(),
        mean_of(g, [](const MethodResult& r) { return r.excluded_devices; }),
        mean_of(g, [](const MethodResult& r) { return r.updates_applied; }),
        mean_of(g, [](const MethodResult& r) { return r.wall_s; }));
    out += line;
  }
  if (seeds > 1) {
    out += "means over " + std::to_string(seeds) +
           " seeds (+- the 95% interval); a target's time is over the seeds that held it\n";
  }
  if (const auto p = std::find_if(runs.begin(), runs.end(),
                                  [](const MethodResult& r) { return r.privacy_report; });
      p != runs.end()) {
    char d[32];
    std::snprintf(d, sizeof d, "%g", p->dp_delta);
    char z[32];
    std::snprintf(z, sizeof z, "%.4g", p->dp_noise_multiplier);
    out += std::string("privacy (user-level, ") + (p->dp_distributed ? "distributed" : "central") +
           ", noise multiplier " + z + "; epsilon at delta " + d +
           " of the most exposed device, over the aggregations its updates went into, no "
           "sampling assumption):";
    for (const auto& g : groups) {
      double worst = 0;
      for (const MethodResult* r : g) worst = std::max(worst, r->epsilon);
      char e[96];
      std::snprintf(e, sizeof e, " %s epsilon %.3g (final clip %.3g)", g.front()->name.c_str(),
                    worst, g.front()->dp_final_clip);
      out += e;
    }
    out += "\n";
  }
  if (std::any_of(runs.begin(), runs.end(),
                  [](const MethodResult& r) { return r.secure_report; })) {
    out += "secure aggregation (the server saw only cohort sums; per run, mean over seeds):";
    for (const auto& g : groups) {
      if (!g.front()->secure_report) continue;
      double cohorts = 0, lost = 0, aborted = 0, protocol = 0;
      for (const MethodResult* r : g) {
        cohorts += static_cast<double>(r->secure_cohorts);
        lost += static_cast<double>(r->secure_lost);
        aborted += static_cast<double>(r->secure_aborted);
        protocol += r->secure_protocol_s;
      }
      const double n = static_cast<double>(g.size());
      char e[160];
      std::snprintf(e, sizeof e,
                    " %s %.0f cohorts (%.0f aborted), %.0f updates lost, %.1f s of protocol "
                    "per cohort;",
                    g.front()->name.c_str(), cohorts / n, aborted / n, lost / n, protocol / n);
      out += e;
    }
    out.back() = '\n';
  }
  if (std::none_of(runs.begin(), runs.end(),
                   [](const MethodResult& r) { return r.language_model; })) {
    return out;
  }
  // Language models: the next-word metrics, per user, and personalisation (first seed's).
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
  for (const auto& g : groups) {
    const MethodResult& r = *g.front();
    const bool p = r.personal_before && r.personal_after;
    std::snprintf(line, sizeof line, "%-*s  %5s%%  %10.1f  %-26s  %-26s  %-26s\n", name_width,
                  r.name.c_str(),
                  pct(mean_of(g, [](const MethodResult& x) { return x.final_top3; })).c_str(),
                  mean_of(g, [](const MethodResult& x) { return x.final_perplexity; }),
                  spread(r.user_top3).c_str(), p ? spread(*r.personal_before).c_str() : "-",
                  p ? spread(*r.personal_after).c_str() : "-");
    out += line;
  }
  const auto lm = std::find_if(runs.begin(), runs.end(),
                               [](const MethodResult& r) { return r.language_model; });
  const TextReference& ref = lm->reference;
  std::snprintf(line, sizeof line, "%-*s  %5s%%  %10.1f  (reference: top-1 %s%%)\n", name_width,
                "3-gram", pct(ref.ngram_top3).c_str(), ref.ngram_perplexity,
                pct(ref.ngram_top1).c_str());
  out += line;
  out += "next-word accuracy is over held-out targets that are not <unk> (" + pct(ref.unk_rate) +
         "% are; <unk> is never a suggestion); 3-gram: interpolated Kneser-Ney on the same "
         "training text\n";
  return out;
}

}  // namespace ftte::sim
