#include "ftte/core/optimizer.h"

#include <cmath>

namespace ftte {

int OptimizerConfig::state_per_value() const {
  if (kind == Kind::kSgd) return momentum != 0.0f ? 1 : 0;
  return 2;
}

Result<OptimizerConfig::Kind> OptimizerConfig::ParseKind(const std::string& s) {
  if (s == "sgd") return Kind::kSgd;
  if (s == "adam") return Kind::kAdam;
  if (s == "adamw") return Kind::kAdamW;
  return InvalidArgument("unknown optimizer '" + s + "'; use sgd, adam or adamw");
}

Optimizer::Optimizer(const OptimizerConfig& config, std::vector<Parameter*> params,
                     MemoryTracker* tracker)
    : config_(config), params_(std::move(params)) {
  const int slots = config_.state_per_value();
  for (Parameter* p : params_) {
    const int64_t n = p->trainable_numel();
    m_.emplace_back(slots >= 1 && n > 0 ? Tensor(tracker, MemCategory::kOptimizer, {n}) : Tensor());
    v_.emplace_back(slots >= 2 && n > 0 ? Tensor(tracker, MemCategory::kOptimizer, {n}) : Tensor());
  }
}

void Optimizer::Step() {
  ++step_;
  const OptimizerConfig& c = config_;
  const double bc1 = 1.0 - std::pow(static_cast<double>(c.beta1), static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(static_cast<double>(c.beta2), static_cast<double>(step_));
  for (size_t k = 0; k < params_.size(); ++k) {
    Parameter* p = params_[k];
    if (!p->any_trainable()) continue;
    const int64_t rs = p->row_size();
    const float* g = p->grad().data();
    float* m = m_[k].data();
    float* v = v_[k].data();
    for (const RowRun& run : p->runs()) {
      float* w = p->data() + run.begin * rs;
      const int64_t off = run.packed * rs, n = (run.end - run.begin) * rs;
      for (int64_t i = 0; i < n; ++i) {
        float gi = g[off + i];
        if (c.kind == OptimizerConfig::Kind::kSgd) {
          if (c.weight_decay != 0.0f) gi += c.weight_decay * w[i];
          if (m != nullptr) {
            // torch.optim.SGD: the first step copies the gradient into the buffer.
            float& b = m[off + i];
            b = step_ == 1 ? gi : c.momentum * b + gi;
            gi = c.nesterov ? gi + c.momentum * b : b;
          }
          w[i] -= c.lr * gi;
          continue;
        }
        if (c.kind == OptimizerConfig::Kind::kAdamW) {
          w[i] -= c.lr * c.weight_decay * w[i];
        } else if (c.weight_decay != 0.0f) {
          gi += c.weight_decay * w[i];
        }
        float& mi = m[off + i];
        float& vi = v[off + i];
        mi = c.beta1 * mi + (1 - c.beta1) * gi;
        vi = c.beta2 * vi + (1 - c.beta2) * gi * gi;
        const double denom = std::sqrt(vi / bc2) + c.eps;
        w[i] -= static_cast<float>(c.lr * (mi / bc1) / denom);
      }
    }
  }
}

}  // namespace ftte
