#include "simulate_cmd.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "flags.h"
#include "ftte/core/memory.h"
#include "ftte/sim/config.h"
#include "ftte/sim/report.h"
#include "ftte/sim/simulator.h"

namespace ftte::cli {

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kHelp[] =
    "ftte simulate [--config FILE.toml] [--out DIR] [--threads N] [--seed S]\n"
    "              [--set key=value ...] [--methods a,b] [--print-config]\n"
    "\n"
    "Runs every method of an experiment in the device simulator (virtual time, real training)\n"
    "and writes DIR/results.json, results.csv, timing.json, config.toml, accuracy.gp and\n"
    "accuracy.svg. Without --config it runs the built-in job: the cnn on Fashion-MNIST, 100\n"
    "devices, FTTE vs FedBuff vs FedAvg.\n"
    "\n"
    "  --config FILE     experiment file (schema: docs/simulate.md; examples: experiments/)\n"
    "  --out DIR         output folder (default out/sim)\n"
    "  --threads N       worker threads (results do not depend on it)\n"
    "  --seed S          seed of data partition, devices, initialisation and training\n"
    "  --set key=value   override one setting; repeatable. Keys: seed, duration_s, ...,\n"
    "                    client.lr, devices.count, method.ftte.buffer, method.*.concurrency\n"
    "  --methods a,b     run only these methods, in this order\n"
    "  --print-config    print the effective configuration as TOML and exit\n";

int Fail(const Status& s, int code) {
  std::fprintf(stderr, "ftte simulate: %s\n", s.message().c_str());
  return code;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// Keeps the methods named in `list` ("a,b"), in that order.
Status SelectMethods(sim::SimConfig* c, const std::string& list) {
  std::vector<sim::MethodConfig> chosen;
  for (const std::string& name : Split(list, ',')) {
    const sim::MethodConfig* found = nullptr;
    std::string names;
    for (const sim::MethodConfig& m : c->methods) {
      names += (names.empty() ? "" : ", ") + m.name;
      if (m.name == name) found = &m;
    }
    if (!found) {
      return InvalidArgument("--methods: no method named '" + name + "'; this experiment has " +
                             names);
    }
    chosen.push_back(*found);
  }
  if (chosen.empty()) return InvalidArgument("--methods needs a comma-separated list of names");
  c->methods = std::move(chosen);
  return Status::Ok();
}

// The configuration from the flags: file or default, then --set in order, then direct flags.
Result<sim::SimConfig> BuildConfig(const Flags& f, const std::vector<std::string>& sets) {
  sim::SimConfig c;
  if (f.Has("config")) {
    FTTE_ASSIGN_OR_RETURN(c, sim::LoadSimConfig(f.Get("config", "")));
  } else {
    c = sim::DefaultSimConfig();
  }
  for (const std::string& kv : sets) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return InvalidArgument("--set needs key=value (e.g. --set devices.count=500), got '" + kv +
                             "'");
    }
    Status s = sim::ApplyOverride(&c, kv.substr(0, eq), kv.substr(eq + 1));
    if (!s.ok()) return InvalidArgument("--set " + kv + ": " + s.message());
  }
  for (const char* key : {"threads", "seed"}) {
    if (!f.Has(key)) continue;
    Status s = sim::ApplyOverride(&c, key, f.Get(key, ""));
    if (!s.ok()) return InvalidArgument(std::string("--") + key + ": " + s.message());
  }
  if (f.Has("methods")) FTTE_RETURN_IF_ERROR(SelectMethods(&c, f.Get("methods", "")));
  FTTE_RETURN_IF_ERROR(sim::ValidateSimConfig(c));
  return c;
}

// One progress line per method on stderr: rewritten in place on a terminal, and printed at
// every tenth of the horizon otherwise (logs stay short).
class ProgressLine {
 public:
  explicit ProgressLine(double duration_s) : duration_s_(duration_s), tty_(isatty(2) != 0) {}

  void Start() {
    start_ = Clock::now();
    last_bucket_ = -1;
  }
  void Update(const std::string& method, double virtual_s, double accuracy) {
    const double wall = std::chrono::duration<double>(Clock::now() - start_).count();
    const int bucket = static_cast<int>(std::floor(10 * virtual_s / duration_s_ + 1e-9));
    if (!tty_ && bucket == last_bucket_) return;
    last_bucket_ = bucket;
    std::fprintf(stderr, "%s%-16s virtual %8.1f min  accuracy %6.2f%%  wall %7.1f s%s",
                 tty_ ? "\r\033[K" : "", method.c_str(), virtual_s / 60, 100 * accuracy, wall,
                 tty_ ? "" : "\n");
    std::fflush(stderr);
  }
  void End() {
    if (tty_) std::fputc('\n', stderr);
  }

 private:
  double duration_s_;
  bool tty_;
  Clock::time_point start_;
  int last_bucket_ = -1;
};

}  // namespace

int RunSimulate(const std::vector<std::string>& args) {
  // --set may repeat, so it is taken out before the one-value-per-flag parser sees the rest.
  std::vector<std::string> rest = args;
  auto sets = TakeRepeated(&rest, "set");
  if (!sets.ok()) return Fail(sets.status(), 2);
  auto flags = Flags::Parse(rest, {{"config", true},
                                   {"out", true},
                                   {"threads", true},
                                   {"seed", true},
                                   {"methods", true},
                                   {"set", true},  // listed in errors; taken out above
                                   {"print-config", false},
                                   {"help", false}});
  if (!flags.ok()) return Fail(flags.status(), 2);
  const Flags& f = flags.value();
  if (f.Has("help")) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  auto config = BuildConfig(f, sets.value());
  if (!config.ok()) return Fail(config.status(), 2);
  const sim::SimConfig& c = config.value();
  if (f.Has("print-config")) {
    std::fputs(sim::FormatSimConfig(c).c_str(), stdout);
    return 0;
  }
  const std::string out_dir = f.Get("out", "out/sim");

  std::string names;
  for (const sim::MethodConfig& m : c.methods) names += (names.empty() ? "" : ", ") + m.name;
  const std::string devices = sim::IsTextDataset(c.dataset)
                                  ? std::string("one device per user")
                                  : std::to_string(c.population.devices) + " devices";
  std::fprintf(stderr,
               "ftte simulate: %s on %s (%s), %s, %.1f min virtual per method, "
               "%d thread(s), seed %llu\nmethods: %s\n",
               c.model.c_str(), c.dataset.c_str(), c.partition.c_str(), devices.c_str(),
               c.duration_s / 60, c.threads, static_cast<unsigned long long>(c.seed),
               names.c_str());
  auto env = sim::MakeEnvironment(c);
  if (!env.ok()) return Fail(env.status(), 1);
  if (env->language_model) {
    std::fprintf(stderr,
                 "data: %lld training samples over %zu devices (one per user; %lld users "
                 "without training text skipped), %lld held-out samples (%lld evaluated); "
                 "vocabulary %lld; model %s\n",
                 static_cast<long long>(env->train.size), env->partition.size(),
                 static_cast<long long>(env->skipped_users),
                 static_cast<long long>(env->user_test.size),
                 static_cast<long long>(env->test.size), static_cast<long long>(env->vocab),
                 env->model.c_str());
  } else {
    std::fprintf(stderr, "data: %lld training samples over %zu devices, %lld test samples\n",
                 static_cast<long long>(env->train.size), env->partition.size(),
                 static_cast<long long>(env->test.size));
  }

  std::vector<sim::MethodResult> results;
  std::vector<std::string> failures;
  ProgressLine progress(c.duration_s);
  for (const sim::MethodConfig& m : c.methods) {
    progress.Start();
    auto r = sim::RunMethod(c, m, env.value(), [&](const std::string& name, double t, double acc) {
      progress.Update(name, t, acc);
    });
    progress.End();
    if (!r.ok()) {
      std::fprintf(stderr, "ftte simulate: method %s failed: %s\n", m.name.c_str(),
                   r.status().message().c_str());
      failures.push_back(m.name);
      continue;
    }
    results.push_back(std::move(r).value());
  }

  if (!results.empty()) {
    std::printf("\n%s", sim::SummaryTable(results).c_str());
    if (sim::IsTextDataset(c.dataset)) {
      std::printf(
          "next-word accuracy over held-out positions; target %s %.1f%%; time to target "
          "and the series are virtual time.\n",
          c.target_metric == "top3" ? "top-3" : "top-1", 100 * c.target_accuracy);
    } else {
      std::printf(
          "target accuracy %.1f%%; time to target and the accuracy series are virtual "
          "time.\n",
          100 * c.target_accuracy);
    }
    std::vector<std::string> warnings;
    Status s = sim::WriteResults(out_dir, c, results, {}, &warnings);
    if (!s.ok()) return Fail(s, 1);
    for (const std::string& w : warnings) std::fprintf(stderr, "ftte simulate: %s\n", w.c_str());
    const std::filesystem::path d(out_dir);
    std::printf("\nresults: %s, %s\n", (d / "results.json").c_str(), (d / "results.csv").c_str());
    if (warnings.empty()) std::printf("plot:    %s\n", (d / "accuracy.svg").c_str());
    std::printf("config:  %s (rerun with --config)\n", (d / "config.toml").c_str());
  }
  if (!failures.empty()) {
    std::string list;
    for (const std::string& n : failures) list += (list.empty() ? "" : ", ") + n;
    std::fprintf(stderr, "ftte simulate: %zu method(s) failed: %s\n", failures.size(),
                 list.c_str());
    return 1;
  }
  return 0;
}

}  // namespace ftte::cli
