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
  int64_t full_peak = 0;       // predicted peak of full training (float32 frozen storage)
  int64_t budget_bytes = 0;    // the budget of mask budget:..., else 0
  std::string selection_note;  // what budget selection chose, for stderr; empty otherwise
};

// Optimizer defaults when --optimizer / --lr are absent (language models train with Adam).
struct OptimizerDefaults {
  std::string optimizer = "sgd";
  double lr = 0.01;
};

// Builds `model_spec` (seeded by --seed) and applies --mask: full, last, bias, lora, none, or
// budget:F (F in (0, 1], a fraction of full training's predicted peak) or budget:<N>KiB|MiB|GiB
// (an absolute budget), which computes importance on the calibration samples (calib_y holds
// calib_n * label_positions() labels) and selects under the budget. Errors name the flag.
Result<Setup> MakeSetup(const Flags& f, const std::string& model_spec, const float* calib_x,
                        const int32_t* calib_y, int64_t calib_n,
                        const OptimizerDefaults& defaults = {});

struct EpochsResult {
  double seconds = 0;
  double last_epoch_loss = 0;
  int64_t positions = 0;  // counted label positions over all epochs (tokens for a language model)
};

// Trains `epochs` passes over `train` in a seeded shuffled order, printing a progress line on
// stderr about once a second (epoch, percent, mean loss, rate in `unit`/s, time left); `unit`
// is "samples" (rate counts samples) or "tokens" (rate counts label positions).
EpochsResult TrainEpochs(Trainer& trainer, const data::ImageDataset& train, int64_t epochs,
                         uint64_t seed, const std::string& unit);

int Fail(const Status& s);   // prints "ftte: <status>" on stderr, returns 1
std::string Json(double v);  // %.6g
int64_t PeakRssBytes();      // this process's peak RSS
std::string CategoriesJson(const std::array<int64_t, kNumMemCategories>& c);
std::string WithCommas(int64_t v);  // 1234567 -> "1,234,567"

}  // namespace ftte::cli

#endif  // FTTE_CLI_TRAIN_SETUP_H_
