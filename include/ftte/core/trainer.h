// Training a model on one device: the planner that predicts the peak bytes of one training
// step, and the Trainer that allocates exactly that plan and runs steps without allocating.
#ifndef FTTE_CORE_TRAINER_H_
#define FTTE_CORE_TRAINER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "ftte/core/frozen_file.h"
#include "ftte/core/model.h"
#include "ftte/core/optimizer.h"

namespace ftte {

struct TrainerOptions {
  int64_t batch = 32;  // samples per optimizer step (the logical batch)
  // Samples per forward and backward pass (the physical micro-batch); 0 means `batch`. A step
  // of n samples runs ceil(n / micro) passes and sums their gradients before updating (see
  // optimizer.h), which equals one pass over all n up to float rounding, in less memory: the
  // batch, logits, activations and their gradients are micro-batch sized.
  int64_t micro_batch = 0;
  int threads = 1;
  OptimizerConfig optimizer;
  FrozenStorage frozen = FrozenStorage::kFloat32;
  // Where the int8 frozen rows are read from under kInt8Mapped (not owned; must outlive the
  // Trainer); null otherwise.
  const MappedFrozenRows* mapped = nullptr;
  uint64_t seed = 0;  // dropout
  // Also keep each step's whole gradient in the parameters' grad() (kGradients, one float per
  // trainable value): for tests and golden checks. Training itself never needs it.
  bool keep_gradients = false;
  // Per-row squared gradient norms (two doubles per trainable row, kOptimizer): fills
  // StepResult::grad_sq and Trainer::RowGradSq().
  bool gradient_stats = false;
  // Floats per worker tile of transient work (PlanContext::tile_floats); 0 picks the largest of
  // 2^19 ... 2^10 whose workspace stays within a tenth of the step's peak (judged at one
  // thread, so that every thread count uses the same tiles and gets the same bits).
  int64_t tile_floats = 0;
  // A class that is never a right answer (a language model's <unk>: a keyboard never suggests
  // it), or -1 for none. Positions labelled with it count for the loss but not for `correct`,
  // `correct_top3` and `scored`, and its logit is passed over when ranking the others.
  int32_t unscored_class = -1;

  int64_t micro() const { return micro_batch > 0 && micro_batch < batch ? micro_batch : batch; }
  int64_t passes() const { return (batch + micro() - 1) / micro(); }
};

// Everything one training step of `model` with its current mask holds: weights (under the
// frozen storage option), optimizer state (and accumulation buffer) of trainable rows, the
// micro-batch, logits, saved activations, activation buffers and the workspace arena (which
// holds gradient blocks on their way to the optimizer). Pure: allocates nothing.
MemoryPlan PlanTrainingStep(Model& model, const TrainerOptions& options);

// The tile PlanTrainingStep uses for `options` (options.tile_floats, or the automatic choice).
int64_t TileFloatsFor(Model& model, const TrainerOptions& options);

// The same numbers summed by category.
struct MemoryPrediction {
  std::array<int64_t, kNumMemCategories> by_category{};
  int64_t total = 0;   // heap bytes
  int64_t mapped = 0;  // bytes read in place from a mapped file (kInt8Mapped), not heap
};
MemoryPrediction PredictPeak(Model& model, const TrainerOptions& options);

// FLOPs of one step on `batch` samples with the current mask (forward and backward).
// The logits, labels and logit gradients are batch * label_positions() * classes sized (the
// gradients overwrite the logits when the last layer does not read its output, as a Linear).
Flops CountTrainingFlops(Model& model, int64_t batch);

// Labels are int32, label_positions() per sample (one per output position of a language
// model, one per sample of a classifier). A label < 0 marks a position to ignore (padding): it
// adds nothing to the loss, its gradient or the counts below.
struct StepResult {
  float loss = 0;            // mean cross-entropy over the counted positions (0 if none)
  int64_t correct = 0;       // scored positions whose argmax (first on ties) is the label
  int64_t correct_top3 = 0;  // scored positions whose label ranks among the 3 top logits
  int64_t positions = 0;     // counted positions (labels >= 0)
  // Counted positions whose label is not options.unscored_class (all of them without one):
  // accuracy is correct / scored; correct / positions counts the unscored ones as wrong.
  int64_t scored = 0;
  // With gradient_stats: the mean over the step's passes of |g_k|^2, g_k being pass k's own
  // estimate of the mean gradient (its gradient sum over its own counted positions). For one
  // pass, the squared norm of the step's gradient. 0 otherwise.
  double grad_sq = 0;
  // Not OK when the step could not run: the mapped frozen rows changed underneath (then
  // nothing was updated before the check, and the trainer refuses every later step).
  Status status;
  // exp(loss): the perplexity of a language model.
  double perplexity() const;
};

class Trainer {
 public:
  // Applies the frozen-storage option, then allocates the whole plan from the model's
  // tracker and resets its peak. The mask must not change while the Trainer lives.
  Trainer(Model* model, const TrainerOptions& options);
  ~Trainer();

  // One step on n <= batch samples, in passes of up to micro() samples: x holds n samples of
  // sample_shape() floats, labels n * label_positions() int32 values in [0, classes) or < 0
  // (ignored). Aborts on a label >= classes.
  StepResult Step(const float* x, const int32_t* labels, int64_t n);
  // Forward only, in micro-batches; returns the mean loss over all counted positions of the n
  // samples and the counts summed. Equals Combine(EvaluateBatches(x, labels, n)) plus the
  // check of the mapped frozen rows.
  StepResult Evaluate(const float* x, const int32_t* labels, int64_t n);
  // Evaluate's sums, one per micro-batch: a caller may split n samples at micro() boundaries
  // (e.g. over processes), concatenate the parts in order and Combine them to the same result.
  struct LossSums {
    double loss = 0;  // summed over counted positions
    int64_t correct = 0, correct_top3 = 0, positions = 0, scored = 0;
  };
  std::vector<LossSums> EvaluateBatches(const float* x, const int32_t* labels, int64_t n);
  static StepResult Combine(const std::vector<LossSums>& batches);

  // The logits of the last pass Evaluate ran, [m, ..., num_classes()] row-major for its
  // m <= micro() samples. Owned by the Trainer; overwritten by the next Step or Evaluate (a
  // training Step may leave the logit gradients there instead).
  const float* logits() const { return logits_.data(); }
  // With gradient_stats: per parameter (model order), per packed trainable row, the sum over the
  // steps since construction (or ResetGradientStats) of the row's squared gradient norm, each
  // step's being the mean over its passes of the squared norm of the pass's own mean-gradient
  // estimate (for one pass per step: the step's gradient).
  // (A copy, made on demand; the sums live in the tracked statistics buffer.)
  std::vector<std::vector<double>> RowGradSq() const;
  void ResetGradientStats();

  Model& model() { return *model_; }
  Optimizer& optimizer() { return *optimizer_; }
  ThreadPool& pool() { return pool_; }
  const TrainerOptions& options() const { return options_; }

 private:
  class Sink;
  LossSums ForwardLoss(const float* x, const int32_t* labels, int64_t n, double inv_positions,
                       bool training);

  // Where the logit gradients go: their own buffer, or over the logits (see trainer.cc).
  float* LogitGradients() { return dlogits_.data() != nullptr ? dlogits_.data() : logits_.data(); }

  // OK while the mapped frozen rows (if any) are those the trainer started with.
  Status CheckMapped();

  Model* model_;
  TrainerOptions options_;
  Status failed_;  // sticky: why steps are refused
  ThreadPool pool_;
  Rng rng_;
  LayerMode mode_;
  Tensor batch_, logits_, dlogits_;
  Buffer labels_, workspace_, stats_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<Sink> sink_;
};

}  // namespace ftte

#endif  // FTTE_CORE_TRAINER_H_
