// Training a model on one device: the planner that predicts the peak bytes of one training
// step, and the Trainer that allocates exactly that plan and runs steps without allocating.
#ifndef FTTE_CORE_TRAINER_H_
#define FTTE_CORE_TRAINER_H_

#include <array>
#include <cstdint>
#include <memory>

#include "ftte/core/model.h"
#include "ftte/core/optimizer.h"

namespace ftte {

struct TrainerOptions {
  int64_t batch = 32;
  int threads = 1;
  OptimizerConfig optimizer;
  FrozenStorage frozen = FrozenStorage::kFloat32;
  uint64_t seed = 0;  // dropout
};

// Everything one training step of `model` with its current mask holds: weights (under the
// frozen storage option), gradients and optimizer state of trainable rows, the batch, logits,
// saved activations, activation buffers and workspace. Pure: allocates nothing.
MemoryPlan PlanTrainingStep(Model& model, const TrainerOptions& options);

// The same numbers summed by category.
struct MemoryPrediction {
  std::array<int64_t, kNumMemCategories> by_category{};
  int64_t total = 0;
};
MemoryPrediction PredictPeak(Model& model, const TrainerOptions& options);

// FLOPs of one step on `batch` samples with the current mask (forward and backward).
// The logits, labels and logit gradients are batch * label_positions() * classes sized.
Flops CountTrainingFlops(Model& model, int64_t batch);

// Labels are int32, label_positions() per sample (one per output position of a language
// model, one per sample of a classifier). A label < 0 marks a position to ignore (padding): it
// adds nothing to the loss, its gradient or the counts below.
struct StepResult {
  float loss = 0;            // mean cross-entropy over the counted positions (0 if none)
  int64_t correct = 0;       // counted positions whose argmax (first on ties) is the label
  int64_t correct_top3 = 0;  // counted positions whose label ranks among the 3 top logits
  int64_t positions = 0;     // counted positions (labels >= 0)
  // exp(loss): the perplexity of a language model.
  double perplexity() const;
};

class Trainer {
 public:
  // Applies the frozen-storage option, then allocates the whole plan from the model's
  // tracker and resets its peak. The mask must not change while the Trainer lives.
  Trainer(Model* model, const TrainerOptions& options);
  ~Trainer();

  // One step on n <= batch samples: x holds n samples of sample_shape() floats, labels
  // n * label_positions() int32 values in [0, classes) or < 0 (ignored). Aborts on a label
  // >= classes.
  StepResult Step(const float* x, const int32_t* labels, int64_t n);
  // Forward only, in batches; returns the mean loss over all counted positions of the n
  // samples and the counts summed.
  StepResult Evaluate(const float* x, const int32_t* labels, int64_t n);

  // The logits of the last batch Step or Evaluate ran, [n, ..., num_classes()] row-major for
  // that batch's n samples (Evaluate: its last batch of up to `batch` samples). Owned by the
  // Trainer; overwritten by the next Step or Evaluate.
  const float* logits() const { return logits_.data(); }

  Model& model() { return *model_; }
  Optimizer& optimizer() { return *optimizer_; }
  ThreadPool& pool() { return pool_; }
  const TrainerOptions& options() const { return options_; }

 private:
  StepResult ForwardLoss(const float* x, const int32_t* labels, int64_t n, bool training);

  Model* model_;
  TrainerOptions options_;
  ThreadPool pool_;
  Rng rng_;
  LayerMode mode_;
  Tensor batch_, logits_, dlogits_;
  Buffer labels_;
  std::unique_ptr<Optimizer> optimizer_;
};

}  // namespace ftte

#endif  // FTTE_CORE_TRAINER_H_
