// Named trainable masks, and the planner: the trainable subset, micro-batch and frozen storage
// that fit a memory budget (DESIGN.md §3).
#ifndef FTTE_CORE_MASK_H_
#define FTTE_CORE_MASK_H_

#include <cmath>
#include <limits>
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

// Calibration samples (n samples of the model's sample shape, n * label_positions() labels).
struct Samples {
  const float* x = nullptr;
  const int32_t* labels = nullptr;
  int64_t n = 0;
};

// One candidate of the search: the best subset of one cut depth.
struct Candidate {
  int64_t cut = 0;          // index of the earliest top-level layer that trains
  int64_t micro_batch = 0;  // physical micro-batch (options.batch stays the logical batch)
  int64_t trainable = 0;    // trainable values
  int64_t predicted_bytes = 0;
  double importance = 0;  // captured calibration importance
  // Mean held-out calibration loss after the trial steps (NaN when no trial ran).
  double trial_loss = std::numeric_limits<double>::quiet_NaN();
  std::string layers;  // what trains, by top-level layer: "0, 3, 7 (96/512 rows), 9"
  std::vector<std::vector<uint8_t>> mask;  // trainable rows per parameter
};

struct Selection {
  int64_t budget_bytes = 0;
  int64_t predicted_bytes = 0;  // with the chosen mask and micro-batch
  int64_t cut = 0;              // of the chosen candidate
  int64_t micro_batch = 0;      // of the chosen candidate: use it in TrainerOptions
  double importance = 0;        // captured by the chosen candidate
  double total_importance = 0;
  std::vector<Candidate> candidates;  // the best of every feasible cut, deepest cut first
  size_t chosen = 0;                  // index into candidates
  std::string criterion;              // "trial" or "importance"
  // Trial steps each candidate ran: SelectOptions::trial_steps, or fewer (trial_flops).
  int64_t trial_steps = 0;
};

// What the search may do besides fitting the budget.
struct SelectOptions {
  // Added per trainable value on top of the training step (a device that keeps a copy of its
  // trainable rows to compute its update passes sizeof(float)).
  int64_t extra_bytes_per_value = 0;
  // Physical micro-batches to try, largest first; empty: options.micro() only.
  std::vector<int64_t> micro_batches;
  // With trial samples, candidates are ranked by what they learn (mean held-out loss after
  // trial_steps steps on `trial` (fewer for a model too costly for that; Selection::trial_steps),
  // from the model's current values, which are restored afterwards; losses within 1% of the best
  // are a tie, broken by captured importance); without, by captured importance.
  Samples trial, held_out;
  int64_t trial_steps = 0;
  // The trial's total work over all candidates, priced as full training steps: when
  // trial_steps for every candidate would cost more, each candidate gets its share (at least 2
  // steps). The zoo's image models, lstm_lm and tiny_gpt stay well below 6 TFLOPs; for a
  // 29M-parameter gpt (~0.2 TFLOPs a step at batch 8 x 128) the trial steps alone would take half
  // an hour (the importance pass and the held-out evaluations are not bounded here).
  double trial_flops = 6e12;
};

// DESIGN.md §3: for each candidate cut depth and micro-batch, fill the budget greedily by
// importance per byte with units (a 1-D tensor whole; blocks of about 1/64 of a matrix's rows);
// keep per cut the largest micro-batch that captures within 1% of the most importance any
// micro-batch does (larger passes run faster), then rank the cuts (see SelectOptions). Sets the
// model's mask to the winner. Fails if not even one unit fits, naming the smallest budget that
// would.
Result<Selection> SelectUnderBudget(Model& model, const RowImportance& importance,
                                    const TrainerOptions& options, int64_t budget_bytes,
                                    const SelectOptions& select = {});

// What trains, by top-level layer: "0, 3, 7 (96/512 rows), 9" (rows where a layer's matrices
// train in part), "vectors only" (biases and norm scales) or "none".
std::string DescribeTrainable(const Model& model);

// Halving micro-batches from `batch` down to 1: 32 -> {32, 16, 8, 4, 2, 1}.
std::vector<int64_t> HalvingMicroBatches(int64_t batch);

// The search settings PlanUnderBudget uses: halving micro-batches from options.batch, the
// trial (a quarter of `calibration` held out) when there are at least 8 samples, and
// `extra_bytes_per_value`.
SelectOptions PlannerSelectOptions(const Model& model, const TrainerOptions& options,
                                   const Samples& calibration, int64_t extra_bytes_per_value);

// The planner everyone uses (ftte train, bench train, simulate, serve): importance from
// `calibration` (a quarter held out for the trial when there are enough samples), then
// SelectUnderBudget over halving micro-batches with the trial criterion. `options` gives the
// logical batch, threads, optimizer and frozen storage (int8 is the default under a budget:
// see kBudgetFrozenStorage). On success the model's mask is set and *options gets the chosen
// micro-batch.
inline constexpr FrozenStorage kBudgetFrozenStorage = FrozenStorage::kInt8;
Result<Selection> PlanUnderBudget(Model& model, TrainerOptions* options, int64_t budget_bytes,
                                  const Samples& calibration, int64_t extra_bytes_per_value = 0);

// Applies a mask by name: "full", "last" (the last parameterised layer), "bias" (biases and
// norm scales), "lora" (the LoRA adapters, lora_a and lora_b; an error if there are none),
// "none". "budget:F" needs importance and is handled by the caller with
// SelectUnderBudget. Unknown names get an error listing the accepted ones.
Status ApplyNamedMask(Model& model, const std::string& name);

}  // namespace ftte

#endif  // FTTE_CORE_MASK_H_
