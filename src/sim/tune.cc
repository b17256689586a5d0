#include "ftte/sim/tune.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "ftte/sim/config.h"

namespace ftte::sim {

namespace {

std::string Describe(const TrialPoint& p) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "server step x%s, batch %lld, %lld local steps",
                FormatDouble(p.server_step).c_str(), static_cast<long long>(p.batch),
                static_cast<long long>(p.local_steps));
  return buf;
}

nlohmann::json PointJson(const TrialPoint& p) {
  return {{"server_step", p.server_step}, {"batch", p.batch}, {"local_steps", p.local_steps}};
}

}  // namespace

std::vector<TrialPoint> TuneGrid(const TuneConfig& tune) {
  const std::vector<double> steps =
      tune.server_step.empty() ? std::vector<double>{1.0} : tune.server_step;
  const std::vector<int64_t> batches = tune.batch.empty() ? std::vector<int64_t>{0} : tune.batch;
  const std::vector<int64_t> locals =
      tune.local_steps.empty() ? std::vector<int64_t>{0} : tune.local_steps;
  std::vector<TrialPoint> grid;
  for (double s : steps) {
    for (int64_t b : batches) {
      for (int64_t l : locals) grid.push_back({s, b, l});
    }
  }
  return grid;
}

MethodConfig WithPoint(const MethodConfig& m, const TrialPoint& p) {
  MethodConfig out = m;
  if (m.server.algorithm == fl::Algorithm::kFedAsync) {
    out.server.async_alpha = std::min(1.0, m.server.async_alpha * p.server_step);
  } else {
    out.server.server_lr = m.server.server_lr * p.server_step;
  }
  if (p.batch > 0) out.batch = p.batch;
  if (p.local_steps > 0) out.local_steps = p.local_steps;
  return out;
}

SimConfig TrialConfig(const SimConfig& config, const MethodConfig& m, const TrialPoint& p,
                      size_t index) {
  SimConfig t = config;
  MethodConfig trial = WithPoint(m, p);
  trial.name = "tune-" + m.name + "-" + std::to_string(index + 1);
  trial.tune_like.clear();
  t.methods = {trial};
  t.seed = config.AllSeeds().front();
  t.seeds.clear();
  if (config.tune.duration_s > 0) t.duration_s = config.tune.duration_s;
  t.on_validation = true;
  return t;
}

double TrialScore(const MethodResult& r) {
  if (r.series.empty()) return 0;
  double sum = 0;
  for (const SeriesPoint& s : r.series) sum += s.accuracy;
  return sum / static_cast<double>(r.series.size());
}

Result<std::vector<MethodTuning>> Tune(const SimConfig& config, const TrialRunner& run) {
  const std::vector<TrialPoint> grid = TuneGrid(config.tune);
  size_t tuned = 0;
  for (const MethodConfig& m : config.methods) tuned += m.tune_like.empty();
  const size_t total = tuned * grid.size();
  std::vector<MethodTuning> out;
  size_t index = 0;
  for (const MethodConfig& m : config.methods) {
    MethodTuning t;
    t.method = m.name;
    t.like = m.tune_like;
    if (t.like.empty()) {
      for (size_t i = 0; i < grid.size(); ++i) {
        Result<MethodResult> r = run(TrialConfig(config, m, grid[i], i), index++, total);
        if (!r.ok()) {
          return Status(r.status().code(), "tuning " + m.name + " (" + Describe(grid[i]) +
                                               "): " + r.status().message());
        }
        Trial trial;
        trial.point = grid[i];
        trial.score = TrialScore(r.value());
        trial.final_accuracy = r.value().final_accuracy;
        if (!r.value().targets.empty()) trial.first_s = r.value().targets.front().first_s;
        t.trials.push_back(trial);
      }
      // The best score; ties go to the earlier grid point.
      size_t best = 0;
      for (size_t i = 1; i < t.trials.size(); ++i) {
        if (t.trials[i].score > t.trials[best].score) best = i;
      }
      t.chosen = t.trials[best].point;
    }
    out.push_back(std::move(t));
  }
  for (MethodTuning& t : out) {
    if (t.like.empty()) continue;
    for (const MethodTuning& o : out) {
      if (o.method == t.like) t.chosen = o.chosen;
    }
  }
  return out;
}

Status CheckTargetReached(const SimConfig& config, const std::vector<MethodTuning>& tuning) {
  double best = 0;
  for (const MethodTuning& t : tuning) {
    for (const Trial& trial : t.trials) {
      if (trial.first_s) return Status::Ok();
      best = std::max(best, trial.final_accuracy);
    }
  }
  return InvalidArgument(
      "no tuning trial of any method reached the target accuracy " +
      FormatDouble(config.target_accuracy) + " on the validation split (the best ended at " +
      FormatDouble(best) +
      "), so the runs could not compare times to it: lower target_accuracy, or lengthen "
      "tune.duration_s (the trials are in tuning.json)");
}

SimConfig ApplyTuning(const SimConfig& config, const std::vector<MethodTuning>& tuning) {
  SimConfig c = config;
  for (MethodConfig& m : c.methods) {
    for (const MethodTuning& t : tuning) {
      if (t.method != m.name) continue;
      m = WithPoint(m, t.chosen);
      m.tune_like.clear();
    }
  }
  c.tune = TuneConfig{};
  return c;
}

std::string TuningJson(const SimConfig& config, const std::vector<MethodTuning>& tuning) {
  nlohmann::ordered_json j;
  j["format"] = "ftte-sim-tuning/1";
  j["seed"] = config.AllSeeds().front();
  j["duration_s"] = config.tune.duration_s > 0 ? config.tune.duration_s : config.duration_s;
  j["validation"] = config.tune.validation;
  j["score"] = "mean validation accuracy over the trial's evaluations";
  j["grid"] = {{"server_step", config.tune.server_step},
               {"batch", config.tune.batch},
               {"local_steps", config.tune.local_steps}};
  nlohmann::ordered_json methods = nlohmann::ordered_json::array();
  for (const MethodTuning& t : tuning) {
    nlohmann::ordered_json m;
    m["name"] = t.method;
    m["tune_like"] = t.like.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(t.like);
    const MethodConfig* base = nullptr;
    for (const MethodConfig& mc : config.methods) {
      if (mc.name == t.method) base = &mc;
    }
    nlohmann::ordered_json chosen = PointJson(t.chosen);
    if (base != nullptr) {
      const MethodConfig applied = WithPoint(*base, t.chosen);
      chosen["batch"] = applied.batch > 0 ? applied.batch : config.client.batch;
      chosen["local_steps"] =
          applied.local_steps > 0 ? applied.local_steps : config.client.local_steps;
      chosen["server_lr"] = applied.server.server_lr;
      chosen["async_alpha"] = applied.server.async_alpha;
    }
    m["chosen"] = chosen;
    nlohmann::ordered_json trials = nlohmann::ordered_json::array();
    for (const Trial& tr : t.trials) {
      nlohmann::ordered_json x = PointJson(tr.point);
      x["score"] = tr.score;
      x["final_accuracy"] = tr.final_accuracy;
      x["first_s"] = tr.first_s ? nlohmann::ordered_json(*tr.first_s) : nlohmann::ordered_json();
      trials.push_back(x);
    }
    m["trials"] = trials;
    methods.push_back(m);
  }
  j["methods"] = methods;
  return j.dump(1) + "\n";
}

}  // namespace ftte::sim
