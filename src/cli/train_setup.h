// What `ftte train` (images and text) and `ftte bench train` share: the common flags, the model
// with its mask and trainer options, the epoch loop with its progress line, and output helpers.
#ifndef FTTE_CLI_TRAIN_SETUP_H_
#define FTTE_CLI_TRAIN_SETUP_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "flags.h"
#include "ftte/core/frozen_file.h"
#include "ftte/core/mask.h"
#include "ftte/core/model.h"
#include "ftte/core/trainer.h"
#include "ftte/data/dataset.h"

namespace ftte::cli {

// Flags every training command accepts (name -> takes a value).
std::map<std::string, bool> CommonTrainFlags();

// The model, its mask and the trainer options.
struct Setup {
  std::unique_ptr<Model> model;
  TrainerOptions options;
  std::string mask;
  int64_t full_peak = 0;     // predicted peak of full training (float32 frozen storage)
  int64_t budget_bytes = 0;  // the budget of mask budget:..., else 0
  Selection selection;       // what budget selection chose (mask budget:...)
  std::string mapped_path;   // --frozen mapped:FILE
  std::unique_ptr<MappedFrozenRows> mapped;  // the mapped frozen rows (options.mapped)
  std::string selection_note;                // the same for people, for stderr; empty otherwise
};

// Calibration samples the planner uses (the first ones of the training data), the same for
// ftte train, bench train, simulate (calibration_samples) and serve.
inline constexpr int64_t kCalibrationSamples = 1024;

// The planner's candidates, one line each, the chosen one starred.
std::string SelectionTable(const Selection& sel);
// JSON members (no braces): "micro_batch": N, "candidates": [...] (empty without a budget).
std::string PlanJson(const Setup& s);

// Optimizer defaults when --optimizer / --lr are absent (language models train with Adam).
struct OptimizerDefaults {
  std::string optimizer = "sgd";
  double lr = 0.01;
};

// Builds `model_spec` (seeded by --seed) and applies --mask: full, last, bias, lora, none, or
// budget:F (F in (0, 1], a fraction of full training's predicted peak) or budget:<N>KiB|MiB|GiB
// (an absolute budget), which plans on the first kCalibrationSamples calibration samples
// (calib_y holds calib_n * label_positions() labels) with PlanUnderBudget: the subset and the
// micro-batch (options.micro_batch). --micro-batch sets the micro-batch of the other masks.
// Errors name the flag.
Result<Setup> MakeSetup(const Flags& f, const std::string& model_spec, const float* calib_x,
                        const int32_t* calib_y, int64_t calib_n,
                        const OptimizerDefaults& defaults = {});

struct EpochsResult {
  Status status;  // not OK if a step could not run (the mapped frozen rows changed)
  double seconds = 0;
  double last_epoch_loss = 0;
  int64_t positions = 0;  // counted label positions over all epochs (tokens for a language model)
};

// Trains `epochs` passes over `train` in a seeded shuffled order, printing a progress line on
// stderr about once a second (epoch, percent, mean loss, rate in `unit`/s, time left); `unit`
// is "samples" (rate counts samples) or "tokens" (rate counts label positions).
// Stops with FailedPrecondition (status set, nothing saved by the callers) when a step's loss is
// not finite, or when the mean loss over a tenth of an epoch exceeds max(5 ln classes, 10):
// far worse than guessing, training has run away (too high a learning rate).
EpochsResult TrainEpochs(Trainer& trainer, const data::ImageDataset& train, int64_t epochs,
                         uint64_t seed, const std::string& unit);

// Whether --save (if given) names a file ftte can write, checked before any training.
Status CheckSavePath(const Flags& f);

int Fail(const Status& s);   // prints "ftte: <status>" on stderr, returns 1
std::string Json(double v);  // %.6g
int64_t PeakRssBytes();      // this process's peak RSS
std::string CategoriesJson(const std::array<int64_t, kNumMemCategories>& c);
std::string WithCommas(int64_t v);  // 1234567 -> "1,234,567"

}  // namespace ftte::cli

#endif  // FTTE_CLI_TRAIN_SETUP_H_
