// Optimizers with state for trainable rows only (packed like the gradients). Semantics follow
// torch.optim.SGD and torch.optim.Adam / AdamW.
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
  // Parses "sgd", "adam", "adamw"; errors name the accepted values.
  static Result<Kind> ParseKind(const std::string& s);
};

class Optimizer {
 public:
  // Allocates state for the current trainable rows of `params` (kOptimizer).
  Optimizer(const OptimizerConfig& config, std::vector<Parameter*> params, MemoryTracker* tracker);
  // Applies one update from the parameters' packed gradients to their trainable rows.
  void Step();
  // Zeroes the state and the step count (a new round of local training).
  void Reset();
  const OptimizerConfig& config() const { return config_; }
  void set_lr(float lr) { config_.lr = lr; }

 private:
  OptimizerConfig config_;
  std::vector<Parameter*> params_;
  std::vector<Tensor> m_, v_;  // per parameter; empty when unused
  int64_t step_ = 0;
};

}  // namespace ftte

#endif  // FTTE_CORE_OPTIMIZER_H_
