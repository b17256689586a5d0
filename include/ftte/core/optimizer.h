// Optimizers with state for trainable rows only (packed like the gradients). Semantics follow
// torch.optim.SGD and torch.optim.Adam / AdamW.
//
// Updates are fused into backward: a layer commits the gradient of a block of rows and the
// optimizer updates those rows at once, so gradients of the whole trainable set never
// coexist. A step may take several passes (micro-batches) whose gradients are summed before the
// update: SGD with momentum sums them in its momentum buffer (buf = mu buf + g_1 + ... + g_K is
// what one pass over the whole batch would give), every other setting in an accumulation
// buffer (kGradients) of one float per trainable value.
#ifndef FTTE_CORE_OPTIMIZER_H_
#define FTTE_CORE_OPTIMIZER_H_

#include <string>
#include <vector>

#include "ftte/core/parameter.h"
#include "ftte/core/status.h"

namespace ftte {

struct OptimizerConfig {
  enum class Kind { kSgd, kAdam, kAdamW };
  Kind kind = Kind::kSgd;
  float lr = 0.01f;
  float momentum = 0.0f;                            // SGD
  bool nesterov = false;                            // SGD
  float weight_decay = 0.0f;                        // L2 for SGD and Adam, decoupled for AdamW
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // Adam

  // Float32 state values per trainable value: 0 (plain SGD), 1 (momentum) or 2 (Adam).
  int state_per_value() const;
  // Whether summing the gradients of `passes` > 1 passes needs a buffer of its own (one float
  // per trainable value): false for SGD with momentum and without Nesterov, which sums them in
  // its momentum buffer; true otherwise.
  bool AccumulatorFor(int64_t passes) const;
  // Parses "sgd", "adam", "adamw"; errors name the accepted values.
  static Result<Kind> ParseKind(const std::string& s);
};

class Optimizer {
 public:
  // Allocates state for the current trainable rows of `params` (kOptimizer) and, if steps of up
  // to `max_passes` passes need one, the accumulation buffer (kGradients).
  Optimizer(const OptimizerConfig& config, std::vector<Parameter*> params, MemoryTracker* tracker,
            int64_t max_passes = 1);
  // Starts pass `index` of a step of `count` passes (count <= max_passes); pass 0 starts a new
  // step.
  void BeginPass(int64_t index, int64_t count);
  // The gradient g of packed rows [first, first + rows) of params[k] from the current pass:
  // summed with the step's earlier passes and, on the last pass, applied. Thread-safe for
  // disjoint rows.
  void Commit(size_t k, int64_t first, int64_t rows, const float* g);
  // Applies one whole update from the parameters' packed gradients (p->grad()), as one pass.
  void Step();
  // Zeroes the state and the step count (a new round of local training).
  void Reset();
  const OptimizerConfig& config() const { return config_; }
  void set_lr(float lr) { config_.lr = lr; }

 private:
  void Update(size_t k, const RowRun& run, int64_t off, int64_t n, const float* g);

  OptimizerConfig config_;
  std::vector<Parameter*> params_;
  std::vector<Tensor> m_, v_, acc_;  // per parameter; empty when unused
  int64_t step_ = 0;
  int64_t pass_ = 0, passes_ = 1;
  double bc1_ = 1, bc2_ = 1;  // Adam's bias corrections of the current step
};

}  // namespace ftte

#endif  // FTTE_CORE_OPTIMIZER_H_
