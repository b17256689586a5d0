// Per-method tuning for `ftte simulate` ([tune]): the same grid of trials for every method,
// scored on a validation split carved from the training data, so that baselines are tuned as
// carefully as FTTE and the test set never chooses a setting.
//
// A trial is one method at one grid point (server step multiplier x client batch x local
// steps), run alone for tune.duration_s virtual seconds on the first seed, with tune.validation
// training samples held out of the devices' data and evaluated instead of the test set. Its
// score is the mean validation accuracy over its evaluations (the area under the accuracy curve
// divided by the horizon: it rewards reaching accuracy early and keeping it). Each method takes
// its best trial (ties: the earlier grid point); a method with tune_like takes that method's
// choice. Trials are saved as run files (DIR/runs/tune-<method>-<k>-seed<S>.json), so that
// --resume reruns none that finished.
//
// DIR/tuning.json:
//   {"format": "ftte-sim-tuning/1", "seed", "duration_s", "validation",
//    "score": "mean validation accuracy over the trial's evaluations",
//    "grid": {"server_step": [...], "batch": [...], "local_steps": [...]},
//    "methods": [{"name", "tune_like" (null if own trials), "chosen": {"server_step", "batch",
//                 "local_steps", "server_lr", "async_alpha"},
//                 "trials": [{"server_step", "batch", "local_steps", "score",
//                             "final_accuracy", "first_s" (primary target on validation,
//                             null if never)}, ...]}, ...]}
#ifndef FTTE_SIM_TUNE_H_
#define FTTE_SIM_TUNE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ftte/core/status.h"
#include "ftte/sim/simulator.h"

namespace ftte::sim {

// One grid point; 0 leaves batch or local steps as the method has them.
struct TrialPoint {
  double server_step = 1;
  int64_t batch = 0;
  int64_t local_steps = 0;
};

// The product of the [tune] lists (server_step slowest, local_steps fastest); one point (the
// configured setting) when tuning is off.
std::vector<TrialPoint> TuneGrid(const TuneConfig& tune);

// `m` at point `p`: server_lr (FedAsync: async_alpha, capped at 1) times the step, and the
// point's batch and local steps.
MethodConfig WithPoint(const MethodConfig& m, const TrialPoint& p);

// The configuration of trial `index` of method `m`: that method alone, named
// "tune-<method>-<index + 1>", on the first seed, for tune.duration_s, evaluated on the
// validation split.
SimConfig TrialConfig(const SimConfig& config, const MethodConfig& m, const TrialPoint& p,
                      size_t index);

// Mean accuracy over the evaluations of a run (0 without any).
double TrialScore(const MethodResult& r);

struct Trial {
  TrialPoint point;
  double score = 0;
  double final_accuracy = 0;
  std::optional<double> first_s;  // first crossing of the primary target, on validation
};
struct MethodTuning {
  std::string method;
  std::string like;           // tune_like: took this method's choice, no trials of its own
  std::vector<Trial> trials;  // grid order
  TrialPoint chosen;
};

// Where trials come from: `run` runs one (its config from TrialConfig) and returns its result.
// The driver (ftte simulate) makes environments, saves run files and prints progress.
using TrialRunner =
    std::function<Result<MethodResult>(const SimConfig& trial, size_t index, size_t total)>;

// Runs every method's trials through `run` and chooses. Errors: a trial's error, naming the
// method and the point.
Result<std::vector<MethodTuning>> Tune(const SimConfig& config, const TrialRunner& run);

// Refuses a primary target that no trial of any method reached on validation: the measured
// runs could not say who gets there first (lower target_accuracy or lengthen tune.duration_s).
Status CheckTargetReached(const SimConfig& config, const std::vector<MethodTuning>& tuning);

// The configuration the measured runs use: every method at its chosen point, [tune] cleared
// (so the written config.toml reruns them without tuning again).
SimConfig ApplyTuning(const SimConfig& config, const std::vector<MethodTuning>& tuning);

std::string TuningJson(const SimConfig& config, const std::vector<MethodTuning>& tuning);

}  // namespace ftte::sim

#endif  // FTTE_SIM_TUNE_H_
