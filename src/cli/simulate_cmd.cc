#include "simulate_cmd.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "flags.h"
#include "ftte/core/checkpoint.h"
#include "ftte/core/memory.h"
#include "ftte/data/lm_model.h"
#include "ftte/fl/update.h"
#include "ftte/sim/cluster.h"
#include "ftte/sim/config.h"
#include "ftte/sim/report.h"
#include "ftte/sim/simulator.h"
#include "ftte/sim/tune.h"
#include "mpi_cluster.h"

namespace ftte::cli {

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kHelp[] =
    "ftte simulate [--config FILE.toml] [--out DIR] [--threads N] [--seed S | --seeds 0,1,2]\n"
    "              [--set key=value ...] [--methods a,b] [--resume] [--print-config]\n"
    "\n"
    "Runs every method of an experiment in the device simulator (virtual time, real training),\n"
    "once per seed, and writes DIR/results.json, results.csv, timing.json, config.toml,\n"
    "plots.gp and its plots (accuracy.svg, accuracy-vs-upload.svg, accuracy-vs-memory.svg).\n"
    "Each run (method x seed) is saved as it finishes: DIR/runs/<method>-seed<S>.json and its\n"
    "final model DIR/models/<method>-seed<S>.safetensors (ftte predict and PyTorch load it).\n"
    "Without --config it runs the built-in job: the cnn on Fashion-MNIST, 100 devices, FTTE\n"
    "vs FedBuff vs FedAvg.\n"
    "\n"
    "  --config FILE     experiment file (schema: docs/simulate.md; examples: experiments/)\n"
    "  --out DIR         output folder (default out/sim); checked before any work\n"
    "  --threads N       worker threads (results do not depend on it)\n"
    "  --seed S          seed of data partition, devices, initialisation and training\n"
    "  --seeds 0,1,2     several seeds: means and 95% intervals (config key `seeds`)\n"
    "  --set key=value   override one setting; repeatable. Keys: seed, duration_s, ...,\n"
    "                    client.lr, devices.count, method.ftte.buffer, method.*.concurrency\n"
    "  --methods a,b     run only these methods, in this order\n"
    "  --resume          keep the runs already in DIR/runs (of this configuration) and run\n"
    "                    only the missing ones; the results equal an uninterrupted run's\n"
    "  --print-config    print the effective configuration as TOML and exit\n"
    "\n"
    "Across processes or hosts: mpirun -np N ftte simulate ... (Open MPI; --hostfile F for\n"
    "hosts). The results equal the one-process run's byte for byte. Rank 0 prints and writes\n"
    "DIR; every rank reads the same data and config.\n"
    "  --split jobs      (default) every run's device training and evaluation spread over\n"
    "                    the ranks\n"
    "  --split runs      whole runs (method x seed) spread over the ranks, for sweeps of\n"
    "                    several seeds and methods; rank 0 collects them at the end\n";

// The ranks of the mpirun this process belongs to (set by RunSimulate), or null.
sim::Cluster* job_cluster = nullptr;

// Rank 0 of an mpirun (or the only process) prints progress and writes the results.
bool Root() { return job_cluster == nullptr || job_cluster->root(); }

int Fail(const Status& s, int code) {
  if (Root()) {
    std::fprintf(stderr, "ftte simulate: %s\n", s.message().c_str());
  } else {
    std::fprintf(stderr, "ftte simulate (rank %d): %s\n", job_cluster->rank(), s.message().c_str());
  }
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
  for (const char* key : {"threads", "seed", "seeds"}) {
    if (!f.Has(key)) continue;
    Status s = sim::ApplyOverride(&c, key, f.Get(key, ""));
    if (!s.ok()) return InvalidArgument(std::string("--") + key + ": " + s.message());
  }
  if (f.Has("methods")) FTTE_RETURN_IF_ERROR(SelectMethods(&c, f.Get("methods", "")));
  FTTE_RETURN_IF_ERROR(sim::ValidateSimConfig(c));
  return c;
}

std::string WallClock(double seconds) {
  char buf[32];
  const auto s = static_cast<long long>(seconds + 0.5);
  std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  return buf;
}

// One line per evaluation on stderr: the run (method, seed), its virtual time and accuracy, wall
// time so far and an estimate of the wall time left for the whole experiment (from the virtual
// rate of the runs so far). Rewritten in place on a terminal; one line each in a log.
class ProgressLine {
 public:
  ProgressLine(double duration_s, int64_t runs)
      : duration_s_(duration_s), runs_(runs), tty_(isatty(2) != 0) {
    experiment_start_ = Clock::now();
  }

  void Start(int64_t run_index) {
    run_index_ = run_index;
    start_ = Clock::now();
  }
  void Update(const std::string& label, double virtual_s, double accuracy, double epsilon) {
    if (!Root()) return;
    const double run_wall = std::chrono::duration<double>(Clock::now() - start_).count();
    const double total_wall =
        std::chrono::duration<double>(Clock::now() - experiment_start_).count();
    // Work done, in runs: the finished ones plus this one's share of its horizon.
    const double done = static_cast<double>(run_index_ - resumed_) + virtual_s / duration_s_;
    const double left_runs = static_cast<double>(runs_ - run_index_) - virtual_s / duration_s_;
    const double left = done > 0 ? total_wall / done * left_runs : 0;
    char eps[32] = "";
    if (epsilon >= 0) std::snprintf(eps, sizeof eps, "  epsilon %6.3g", epsilon);
    std::fprintf(stderr,
                 "%s[%lld/%lld] %-24s virtual %6.1f min  accuracy %6.2f%%%s  wall %s  left ~%s%s",
                 tty_ ? "\r\033[K" : "", static_cast<long long>(run_index_ + 1),
                 static_cast<long long>(runs_), label.c_str(), virtual_s / 60, 100 * accuracy, eps,
                 WallClock(run_wall).c_str(), WallClock(left).c_str(), tty_ ? "" : "\n");
    std::fflush(stderr);
  }
  void End() {
    if (tty_ && Root()) std::fputc('\n', stderr);
  }
  void Resumed() { ++resumed_; }

 private:
  using Clock = std::chrono::steady_clock;
  double duration_s_;
  int64_t runs_, run_index_ = 0, resumed_ = 0;
  bool tty_;
  Clock::time_point start_, experiment_start_;
};

// Makes DIR (and runs/, models/) and proves it writable, before any work: a run of hours must
// not end in "cannot write".
Status PrepareOutput(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const fs::path& p : {fs::path(dir), fs::path(dir) / "runs", fs::path(dir) / "models"}) {
    fs::create_directories(p, ec);
    if (ec) {
      return IoError("--out " + dir + ": cannot create " + p.string() + " (" + ec.message() +
                     "); pick a writable folder with --out");
    }
  }
  const fs::path probe = fs::path(dir) / ".ftte-write-probe";
  {
    std::ofstream f(probe);
    f << "probe\n";
    f.close();
    if (!f) {
      return IoError("--out " + dir +
                     ": cannot write files there; pick a writable folder with "
                     "--out");
    }
  }
  fs::remove(probe, ec);
  return Status::Ok();
}

// Where a run's final model goes, relative to the output folder.
std::string ModelFileName(const sim::MethodResult& r) {
  return "models/" + r.name + "-seed" + std::to_string(r.seed) + ".safetensors";
}

// The final model of a run, as a checkpoint that ftte predict and PyTorch's safetensors load.
Status SaveModel(const std::string& dir, const sim::SimConfig& c, const sim::Environment& env,
                 const sim::MethodResult& r) {
  const std::string spec = env.model.empty() ? c.model : env.model;
  FTTE_ASSIGN_OR_RETURN(auto model, MakeModel(spec, 0));
  fl::SetWeights(*model, r.final_weights);
  const std::string path = (std::filesystem::path(dir) / ModelFileName(r)).string();
  if (env.tokenizer) return data::SaveLanguageModel(*model, *env.tokenizer, path);
  return SaveCheckpoint(*model, path,
                        {{"ftte.method", r.name}, {"ftte.seed", std::to_string(r.seed)}});
}

void DescribeData(const sim::Environment& env) {
  if (!Root()) return;
  if (env.language_model) {
    std::fprintf(stderr,
                 "data: %lld training samples over %zu devices (one per user; %lld users "
                 "without training text skipped), %lld held-out samples (%lld evaluated); "
                 "vocabulary %lld; model %s\n",
                 static_cast<long long>(env.train.size), env.partition.size(),
                 static_cast<long long>(env.skipped_users),
                 static_cast<long long>(env.user_test.size), static_cast<long long>(env.test.size),
                 static_cast<long long>(env.vocab), env.model.c_str());
  } else {
    std::fprintf(stderr, "data: %lld training samples over %zu devices, %lld test samples\n",
                 static_cast<long long>(env.train.size), env.partition.size(),
                 static_cast<long long>(env.test.size));
  }
}

// A run file of DIR/runs/ for `run_config`'s only method and seed, if --resume found one.
// Errors: a file of another configuration (ParseRunFile names the fix).
Result<std::optional<sim::MethodResult>> FindRun(const std::string& out_dir,
                                                 const sim::SimConfig& run_config,
                                                 const std::string& method, uint64_t seed) {
  const std::string path =
      (std::filesystem::path(out_dir) / "runs" / sim::RunFileName(method, seed)).string();
  std::ifstream in(path);
  if (!in) return std::optional<sim::MethodResult>();
  std::stringstream text;
  text << in.rdbuf();
  FTTE_ASSIGN_OR_RETURN(sim::MethodResult r, sim::ParseRunFile(text.str(), run_config, path));
  return std::optional<sim::MethodResult>(std::move(r));
}

// One run of the experiment (method x seed) or one tuning trial, in order.
struct RunSlot {
  sim::SimConfig config;  // what it ran (its run file names it)
  std::string label;
  int owner = 0;  // --split runs: the rank that trains it
  bool resumed = false;
  std::optional<sim::MethodResult> result;
  std::string error;           // the run failed
  std::vector<uint8_t> model;  // --split runs, on its owner: the saved model file
};

// A run's final model as SaveModel writes it (through a private temporary folder).
Result<std::vector<uint8_t>> ModelBytes(const sim::SimConfig& c, const sim::Environment& env,
                                        const sim::MethodResult& r) {
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("ftte-rank-model-" + std::to_string(::getpid()) + "-" + r.name);
  std::error_code ec;
  fs::create_directories(dir / "models", ec);
  const Status saved = SaveModel(dir.string(), c, env, r);
  std::vector<uint8_t> bytes;
  if (saved.ok()) {
    std::ifstream in(dir / ModelFileName(r), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  fs::remove_all(dir, ec);
  if (!saved.ok()) return saved;
  return bytes;
}

// --split runs: the runs come to every rank (one broadcast each, in order): each run file, read
// back as --resume reads it, and rank 0 writes it. With `models` (the measured runs, which only
// rank 0 needs), only the runs of other ranks, with their model files; without (tuning trials,
// from which every rank chooses), all.
Status GatherRuns(sim::Cluster& cluster, const std::string& out_dir, bool models,
                  std::vector<RunSlot>* slots) {
  for (RunSlot& slot : *slots) {
    if (slot.resumed || (models && slot.owner == 0)) continue;
    std::vector<uint8_t> bytes;
    if (slot.owner == cluster.rank()) {
      const std::string head =
          slot.result ? sim::RunFileText(slot.config, *slot.result) : slot.error;
      const uint64_t n = head.size();
      bytes.push_back(slot.result ? 1 : 0);
      bytes.insert(bytes.end(), reinterpret_cast<const uint8_t*>(&n),
                   reinterpret_cast<const uint8_t*>(&n) + sizeof n);
      bytes.insert(bytes.end(), head.begin(), head.end());
      bytes.insert(bytes.end(), slot.model.begin(), slot.model.end());
    }
    cluster.Broadcast(slot.owner, &bytes);
    uint64_t n = 0;
    if (bytes.size() < 1 + sizeof n)
      return DataLoss("a run from rank " + std::to_string(slot.owner) + " is cut");
    std::memcpy(&n, bytes.data() + 1, sizeof n);
    if (bytes.size() < 1 + sizeof n + n)
      return DataLoss("a run from rank " + std::to_string(slot.owner) + " is cut");
    const std::string head(bytes.begin() + 1 + sizeof n, bytes.begin() + 1 + sizeof n + n);
    if (bytes[0] == 0) {
      slot.error = head;
      continue;
    }
    FTTE_ASSIGN_OR_RETURN(
        sim::MethodResult r,
        sim::ParseRunFile(head, slot.config, "the run from rank " + std::to_string(slot.owner)));
    if (cluster.root() && slot.owner != 0) {
      FTTE_RETURN_IF_ERROR(sim::WriteRunFile(out_dir, slot.config, r));
    }
    if (!cluster.root() || !models) {
      slot.result = std::move(r);
      continue;
    }
    const std::string path = (std::filesystem::path(out_dir) / ModelFileName(r)).string();
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data() + 1 + sizeof n + n),
              static_cast<std::streamsize>(bytes.size() - 1 - sizeof n - n));
    out.close();
    if (!out) return IoError("cannot write " + path + "; check the --out folder");
    slot.result = std::move(r);
  }
  return Status::Ok();
}

// [tune]: every method's trials on the validation split (saved as run files, reused by
// --resume), DIR/tuning.json, and the configuration of the measured runs.
Result<sim::SimConfig> TuneMethods(const sim::SimConfig& c, const std::string& out_dir, bool resume,
                                   bool split_runs) {
  std::optional<sim::Environment> env;
  std::optional<ProgressLine> progress;
  const double horizon = c.tune.duration_s > 0 ? c.tune.duration_s : c.duration_s;
  auto run = [&](const sim::SimConfig& trial, size_t index,
                 size_t total) -> Result<sim::MethodResult> {
    const sim::MethodConfig& m = trial.methods.front();
    if (!progress) {
      if (Root())
        std::fprintf(stderr,
                     "tuning: %zu trial(s), %.1f min virtual each, on %lld validation samples "
                     "held out of the training data (seed %llu)\n",
                     total, horizon / 60, static_cast<long long>(c.tune.validation),
                     static_cast<unsigned long long>(trial.seed));
      progress.emplace(horizon, static_cast<int64_t>(total));
    }
    progress->Start(static_cast<int64_t>(index));
    if (resume) {
      FTTE_ASSIGN_OR_RETURN(auto found, FindRun(out_dir, trial, m.name, trial.seed));
      if (found) {
        progress->Resumed();
        return std::move(*found);
      }
    }
    if (!env) {
      FTTE_ASSIGN_OR_RETURN(sim::Environment e, sim::MakeEnvironment(trial));
      env = std::move(e);
    }
    auto r =
        sim::RunMethod(trial, m, *env, [&](const std::string&, double t, double acc, double eps) {
          progress->Update(m.name, t, acc, eps);
        });
    progress->End();
    if (r.ok() && Root()) FTTE_RETURN_IF_ERROR(sim::WriteRunFile(out_dir, trial, *r));
    return r;
  };
  // --split runs: the trials, whole, spread over the ranks (trial i on rank i mod size), each
  // trained by its rank alone; then every rank has every result and all choose alike.
  std::vector<RunSlot> trials;
  if (split_runs) {
    sim::Cluster& cluster = *job_cluster;
    const std::vector<sim::TrialPoint> grid = sim::TuneGrid(c.tune);
    for (const sim::MethodConfig& m : c.methods) {
      if (!m.tune_like.empty()) continue;
      for (size_t i = 0; i < grid.size(); ++i) {
        RunSlot& slot = trials.emplace_back();
        slot.config = sim::TrialConfig(c, m, grid[i], i);
        slot.label = m.name;
        slot.owner = static_cast<int>((trials.size() - 1) % cluster.size());
      }
    }
    sim::LocalCluster alone;
    sim::SetProcessCluster(&alone);
    for (size_t k = 0; k < trials.size(); ++k) {
      RunSlot& slot = trials[k];
      if (slot.owner != cluster.rank()) continue;
      auto r = run(slot.config, k, trials.size());
      if (r.ok()) {
        slot.result = std::move(r).value();
      } else {
        slot.error = r.status().message();
      }
    }
    sim::SetProcessCluster(&cluster);
    FTTE_RETURN_IF_ERROR(GatherRuns(cluster, out_dir, /*models=*/false, &trials));
  }
  auto spread = [&](const sim::SimConfig&, size_t index, size_t) -> Result<sim::MethodResult> {
    const RunSlot& slot = trials.at(index);
    if (slot.result) return *slot.result;
    return InvalidArgument(slot.error);
  };
  FTTE_ASSIGN_OR_RETURN(std::vector<sim::MethodTuning> tuning,
                        split_runs ? sim::Tune(c, spread) : sim::Tune(c, run));
  if (!Root()) {
    FTTE_RETURN_IF_ERROR(sim::CheckTargetReached(c, tuning));
    return sim::ApplyTuning(c, tuning);
  }
  const std::string path = (std::filesystem::path(out_dir) / "tuning.json").string();
  std::ofstream out(path);
  out << sim::TuningJson(c, tuning);
  out.close();
  if (!out) return IoError("cannot write " + path + "; check the --out folder");
  FTTE_RETURN_IF_ERROR(sim::CheckTargetReached(c, tuning));
  for (const sim::MethodTuning& t : tuning) {
    std::fprintf(stderr, "tuned %s: server step x%s, batch %lld, %lld local steps%s\n",
                 t.method.c_str(), sim::FormatDouble(t.chosen.server_step).c_str(),
                 static_cast<long long>(t.chosen.batch),
                 static_cast<long long>(t.chosen.local_steps),
                 t.like.empty() ? "" : (" (as " + t.like + ")").c_str());
  }
  return sim::ApplyTuning(c, tuning);
}

// What every rank of an mpirun must have loaded alike: sizes, labels (the next tokens of text)
// and the partition over devices.
std::string DataFingerprint(const sim::Environment& env) {
  std::string f = std::to_string(env.train.size) + "/" + std::to_string(env.test.size) + "/" +
                  std::to_string(env.user_test.size) + "/" + env.model + "/";
  auto add = [&](const void* p, size_t n) { f.append(static_cast<const char*>(p), n); };
  add(env.train.labels.data(), env.train.labels.size() * sizeof(int32_t));
  add(env.test.labels.data(), env.test.labels.size() * sizeof(int32_t));
  for (const std::vector<int64_t>& p : env.partition) add(p.data(), p.size() * sizeof(int64_t));
  return f;
}

// `finished_together`: set when every rank of the cluster reached the end.
int Simulate(const std::vector<std::string>& args, bool* finished_together) {
  // --set may repeat, so it is taken out before the one-value-per-flag parser sees the rest.
  std::vector<std::string> rest = args;
  auto sets = TakeRepeated(&rest, "set");
  Result<Flags> flags = sets.ok() ? Flags::Parse(rest, {{"config", true},
                                                        {"out", true},
                                                        {"threads", true},
                                                        {"seed", true},
                                                        {"seeds", true},
                                                        {"methods", true},
                                                        {"resume", false},
                                                        // listed in errors; taken out above
                                                        {"set", true},
                                                        {"print-config", false},
                                                        {"split", true},
                                                        {"help", false}})
                                  : Result<Flags>(sets.status());
  if (flags.ok() && flags->Has("help")) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  Result<sim::SimConfig> config = flags.ok() ? BuildConfig(flags.value(), sets.value())
                                             : Result<sim::SimConfig>(flags.status());
  if (config.ok() && flags->Has("print-config")) {
    std::fputs(sim::FormatSimConfig(config.value()).c_str(), stdout);
    return 0;
  }
  // Every rank of an mpirun must hold the same configuration, or have met the same error in it
  // (then rank 0 alone reports it and the job ends without an abort).
  sim::Cluster& cluster = sim::ProcessCluster();
  std::string outcome = "error: " + config.status().message();
  if (config.ok()) {
    sim::SimConfig same = config.value();
    same.threads = 1;  // per rank: results do not depend on it
    outcome = sim::FormatSimConfig(same) + "\n--split " + flags->Get("split", "jobs");
  }
  const Status agreed =
      cluster.Agree("the configuration (--config, --set, --seed, --methods, --split)", outcome);
  if (!config.ok()) {
    *finished_together = agreed.ok();
    if (agreed.ok() && !Root()) return 2;
    return Fail(config.status(), 2);
  }
  if (!agreed.ok()) return Fail(agreed, 2);
  const Flags& f = flags.value();
  const std::string out_dir = f.Get("out", "out/sim");
  // --split runs: whole runs spread over the ranks (run i on rank i mod size), each trained by
  // its rank alone, then sent to rank 0 (its run file and model) in run order.
  const std::string split = f.Get("split", "jobs");
  if (split != "jobs" && split != "runs") {
    return Fail(InvalidArgument("--split " + split +
                                ": use jobs (every run's device training "
                                "spread over the ranks) or runs (whole runs spread)"),
                2);
  }
  if (Root()) {
    if (Status st = PrepareOutput(out_dir); !st.ok()) return Fail(st, 2);
  }
  const bool split_runs = cluster.size() > 1 && split == "runs";
  if (config.value().tune.Enabled()) {
    auto tuned = TuneMethods(config.value(), out_dir, f.Has("resume"), split_runs);
    if (!tuned.ok()) return Fail(tuned.status(), 1);
    config = std::move(tuned);
  }
  const sim::SimConfig& c = config.value();
  const std::vector<uint64_t> seeds = c.AllSeeds();
  // Runs already done (--resume): checked before any work.
  std::map<std::pair<std::string, uint64_t>, sim::MethodResult> done;
  if (f.Has("resume")) {
    for (uint64_t seed : seeds) {
      for (const sim::MethodConfig& m : c.methods) {
        auto r = FindRun(out_dir, c, m.name, seed);
        if (!r.ok()) return Fail(r.status(), 2);
        if (r.value()) done.emplace(std::make_pair(m.name, seed), std::move(*r.value()));
      }
    }
  }
  {
    std::string found;
    for (const auto& [key, run] : done) found += key.first + "-" + std::to_string(key.second) + ",";
    Status st = cluster.Agree("the runs --resume found in " + out_dir +
                                  "/runs (every rank must see that folder, e.g. on a shared "
                                  "file system)",
                              found);
    if (!st.ok()) return Fail(st, 2);
  }

  std::string names;
  for (const sim::MethodConfig& m : c.methods) names += (names.empty() ? "" : ", ") + m.name;
  const std::string devices = sim::IsTextDataset(c.dataset)
                                  ? std::string("one device per user")
                                  : std::to_string(c.population.devices) + " devices";
  std::string seed_list;
  for (uint64_t s : seeds) {
    if (!seed_list.empty()) seed_list += ',';
    seed_list += std::to_string(s);
  }
  std::string ranks;
  if (cluster.size() > 1) ranks = " on each of " + std::to_string(cluster.size()) + " MPI ranks";
  if (Root()) {
    std::fprintf(stderr,
                 "ftte simulate: %s on %s (%s), %s, %.1f min virtual per run, %d thread(s)%s, "
                 "seed(s) %s\nmethods: %s%s\n",
                 c.model.c_str(), c.dataset.c_str(), c.partition.c_str(), devices.c_str(),
                 c.duration_s / 60, c.threads, ranks.c_str(), seed_list.c_str(), names.c_str(),
                 done.empty()
                     ? ""
                     : (" (resuming: " + std::to_string(done.size()) + " run(s) done)").c_str());
  }

  sim::LocalCluster alone;
  if (split_runs) sim::SetProcessCluster(&alone);
  std::vector<RunSlot> slots;
  ProgressLine progress(c.duration_s, static_cast<int64_t>(seeds.size() * c.methods.size()));
  for (uint64_t seed : seeds) {
    sim::SimConfig cs = c;
    cs.seed = seed;
    std::optional<sim::Environment> env;
    for (const sim::MethodConfig& m : c.methods) {
      RunSlot& slot = slots.emplace_back();
      slot.config = c;
      slot.label = m.name;
      if (seeds.size() > 1) slot.label.append(" seed ").append(std::to_string(seed));
      progress.Start(static_cast<int64_t>(slots.size() - 1));
      if (auto it = done.find({m.name, seed}); it != done.end()) {
        slot.result = it->second;
        slot.resumed = true;
        progress.Resumed();
        continue;
      }
      slot.owner = split_runs ? static_cast<int>((slots.size() - 1) % cluster.size()) : 0;
      if (split_runs && slot.owner != cluster.rank()) continue;
      if (!env) {
        auto e = sim::MakeEnvironment(cs);
        if (!e.ok()) return Fail(e.status(), 1);
        env = std::move(e).value();
        Status st = sim::ProcessCluster().Agree(
            "the data of seed " + std::to_string(seed) + " (same files and data_dir on every host)",
            DataFingerprint(*env));
        if (!st.ok()) return Fail(st, 1);
        DescribeData(*env);
      }
      auto r =
          sim::RunMethod(cs, m, *env, [&](const std::string&, double t, double acc, double eps) {
            progress.Update(slot.label, t, acc, eps);
          });
      progress.End();
      if (!r.ok()) {
        slot.error = r.status().message();
        continue;
      }
      if (Root()) {
        if (Status st = sim::WriteRunFile(out_dir, c, *r); !st.ok()) return Fail(st, 1);
        if (Status st = SaveModel(out_dir, cs, *env, *r); !st.ok()) return Fail(st, 1);
      } else if (split_runs) {
        auto model = ModelBytes(cs, *env, *r);
        if (!model.ok()) return Fail(model.status(), 1);
        slot.model = std::move(model).value();
      }
      slot.result = std::move(r).value();
    }
  }
  if (split_runs) {
    sim::SetProcessCluster(&cluster);
    if (Status st = GatherRuns(cluster, out_dir, /*models=*/true, &slots); !st.ok()) {
      return Fail(st, 1);
    }
  }
  std::vector<sim::MethodResult> results;
  std::vector<std::string> failures;
  for (const RunSlot& slot : slots) {
    if (slot.result) {
      results.push_back(*slot.result);
      continue;
    }
    if (slot.error.empty()) continue;  // --split runs: another rank's run (rank 0 has it)
    if (Root()) {
      std::fprintf(stderr, "ftte simulate: %s failed: %s\n", slot.label.c_str(),
                   slot.error.c_str());
    }
    failures.push_back(slot.label);
  }

  if (!results.empty() && Root()) {
    std::printf("\n%s", sim::SummaryTable(results).c_str());
    std::string targets;
    for (double t : c.AllTargets()) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "%.4g%%", 100 * t);
      targets += (targets.empty() ? "" : ", ") + std::string(buf);
    }
    std::printf(
        "%s target %s (others reported: see results.json); \"held at\" is the virtual time "
        "after which it stayed reached.\n",
        sim::IsTextDataset(c.dataset)
            ? (c.target_metric == "top3" ? "next-word top-3" : "next-word top-1")
            : "accuracy",
        targets.c_str());
    std::vector<std::string> warnings;
    Status s = sim::WriteResults(out_dir, c, results, {}, &warnings);
    if (!s.ok()) return Fail(s, 1);
    for (const std::string& w : warnings) std::fprintf(stderr, "ftte simulate: %s\n", w.c_str());
    const std::filesystem::path d(out_dir);
    std::printf("\nresults: %s, %s\n", (d / "results.json").c_str(), (d / "results.csv").c_str());
    if (warnings.empty()) std::printf("plots:   %s\n", (d / "accuracy.svg").c_str());
    std::printf("models:  %s\n", (d / "models").c_str());
    std::printf("config:  %s (rerun with --config)\n", (d / "config.toml").c_str());
  }
  // Every rank got here (rank 0 wrote everything): the job may end without an abort, with rank
  // 0's outcome (the only rank that knows every run under --split runs).
  std::vector<uint8_t> failed(1, failures.empty() ? 0 : 1);
  cluster.Broadcast(0, &failed);
  *finished_together = true;
  if (failed.at(0) != 0) {
    std::string list;
    for (const std::string& n : failures) list += (list.empty() ? "" : ", ") + n;
    if (Root()) {
      std::fprintf(stderr, "ftte simulate: %zu run(s) failed: %s\n", failures.size(), list.c_str());
    }
    return 1;
  }
  return 0;
}

}  // namespace

int RunSimulate(const std::vector<std::string>& args) {
  auto mpi = JoinMpiIfLaunched();
  if (!mpi.ok()) return Fail(mpi.status(), 2);
  bool together = false;
  if (mpi.value() == nullptr) return Simulate(args, &together);
  job_cluster = &mpi.value()->cluster();
  sim::SetProcessCluster(job_cluster);
  const int code = Simulate(args, &together);
  sim::SetProcessCluster(nullptr);
  job_cluster = nullptr;
  // A rank that stops alone (an error only it met, or one before the others finished) leaves
  // the others waiting: it ends the whole job.
  mpi.value()->End(/*abort_job=*/code != 0 && !together);
  return code;
}

}  // namespace ftte::cli
