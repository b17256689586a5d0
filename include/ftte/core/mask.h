// Named trainable masks and selection of a trainable subset under a memory budget.
#ifndef FTTE_CORE_MASK_H_
#define FTTE_CORE_MASK_H_

#include <string>
#include <vector>

#include "ftte/core/trainer.h"

namespace ftte {

// Per parameter, per row: accumulated squared gradient (the diagonal Fisher) over a
// calibration pass. Indexed like model.params().
using RowImportance = std::vector<std::vector<double>>;

// `labels` holds n * model.label_positions() values (see Trainer::Step).
// Runs `batches` full-model training steps' backward passes (no update) on the given samples
// and accumulates squared gradients per row. Leaves the model's values and mask unchanged
// (the mask is restored to what it was).
RowImportance ComputeImportance(Model& model, const float* x, const int32_t* labels, int64_t n,
                                const TrainerOptions& options, int64_t batches);

struct Selection {
  int64_t budget_bytes = 0;
  int64_t predicted_bytes = 0;  // with the chosen mask
  int64_t cut = 0;              // index of the earliest top-level layer that trains
  double importance = 0;        // captured importance
  double total_importance = 0;
};

// DESIGN.md §3: for each candidate cut depth, fill the budget greedily by importance per byte
// with units (a 1-D tensor whole; blocks of rows of matrices); keep the best. Sets the model's
// mask to the winner. Fails if not even one unit fits.
// `extra_bytes_per_value` is added per trainable value on top of the training step (a device
// that keeps a copy of its trainable rows to compute its update passes sizeof(float)).
Result<Selection> SelectUnderBudget(Model& model, const RowImportance& importance,
                                    const TrainerOptions& options, int64_t budget_bytes,
                                    int64_t extra_bytes_per_value = 0);

// Applies a mask by name: "full", "last" (the last parameterised layer), "bias" (biases and
// norm scales), "lora" (the LoRA adapters, lora_a and lora_b; an error if there are none),
// "none". "budget:F" needs importance and is handled by the caller with
// SelectUnderBudget. Unknown names get an error listing the accepted ones.
Status ApplyNamedMask(Model& model, const std::string& name);

}  // namespace ftte

#endif  // FTTE_CORE_MASK_H_
