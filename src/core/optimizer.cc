#include "ftte/core/optimizer.h"

#include <algorithm>
#include <cmath>

namespace ftte {

namespace {

// torch.optim.SGD on n values; the first step copies the gradient into the momentum buffer.
void SgdUpdate(const OptimizerConfig& c, int64_t step, const float* g, float* buf, float* w,
               int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i] + c.weight_decay * w[i];
    if (buf != nullptr) {
      buf[i] = step == 1 ? gi : c.momentum * buf[i] + gi;
      gi = c.nesterov ? gi + c.momentum * buf[i] : buf[i];
    }
    w[i] -= c.lr * gi;
  }
}

// torch.optim.Adam (L2 weight decay) and AdamW (decoupled) on n values.
void AdamUpdate(const OptimizerConfig& c, double bc1, double bc2, const float* g, float* m,
                float* v, float* w, int64_t n) {
  const bool decoupled = c.kind == OptimizerConfig::Kind::kAdamW;
  const auto step_size = static_cast<float>(c.lr / bc1);
  const auto inv_bc2 = static_cast<float>(1.0 / bc2);
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i];
    if (decoupled) {
      w[i] -= c.lr * c.weight_decay * w[i];
    } else {
      gi += c.weight_decay * w[i];
    }
    m[i] = c.beta1 * m[i] + (1 - c.beta1) * gi;
    v[i] = c.beta2 * v[i] + (1 - c.beta2) * gi * gi;
    w[i] -= step_size * m[i] / (std::sqrt(v[i] * inv_bc2) + c.eps);
  }
}

}  // namespace

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

void Optimizer::Reset() {
  step_ = 0;
  for (auto* state : {&m_, &v_}) {
    for (Tensor& t : *state) {
      if (!t.empty()) std::fill(t.data(), t.data() + t.numel(), 0.0f);
    }
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
      if (c.kind == OptimizerConfig::Kind::kSgd) {
        SgdUpdate(c, step_, g + off, m == nullptr ? nullptr : m + off, w, n);
      } else {
        AdamUpdate(c, bc1, bc2, g + off, m + off, v + off, w, n);
      }
    }
  }
}

}  // namespace ftte
