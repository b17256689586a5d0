#include "ftte/core/optimizer.h"

#include <algorithm>
#include <cmath>

namespace ftte {

namespace {

// torch.optim.SGD on n values; the first step copies the gradient into the momentum buffer.
// The settings are template arguments and copied into locals so that the loop has neither
// branches nor loads that a store might alias, and compiles to vector code.
template <bool kMomentum, bool kFirstStep, bool kNesterov>
void SgdLoop(float lr, float weight_decay, float momentum, const float* __restrict g,
             float* __restrict buf, float* __restrict w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i] + weight_decay * w[i];
    if (kMomentum) {
      buf[i] = kFirstStep ? gi : momentum * buf[i] + gi;
      gi = kNesterov ? gi + momentum * buf[i] : buf[i];
    }
    w[i] -= lr * gi;
  }
}

void SgdUpdate(const OptimizerConfig& c, int64_t step, const float* g, float* buf, float* w,
               int64_t n) {
  const float lr = c.lr, wd = c.weight_decay, mu = c.momentum;
  if (buf == nullptr) {
    SgdLoop<false, false, false>(lr, wd, mu, g, buf, w, n);
  } else if (step == 1) {
    if (c.nesterov) {
      SgdLoop<true, true, true>(lr, wd, mu, g, buf, w, n);
    } else {
      SgdLoop<true, true, false>(lr, wd, mu, g, buf, w, n);
    }
  } else if (c.nesterov) {
    SgdLoop<true, false, true>(lr, wd, mu, g, buf, w, n);
  } else {
    SgdLoop<true, false, false>(lr, wd, mu, g, buf, w, n);
  }
}

// torch.optim.Adam (L2 weight decay) and AdamW (decoupled) on n values.
template <bool kDecoupled>
void AdamLoop(float lr, float weight_decay, float beta1, float beta2, float eps, float step_size,
              float inv_bc2, const float* __restrict g, float* __restrict m, float* __restrict v,
              float* __restrict w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i];
    if (kDecoupled) {
      w[i] -= lr * weight_decay * w[i];
    } else {
      gi += weight_decay * w[i];
    }
    m[i] = beta1 * m[i] + (1 - beta1) * gi;
    v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
    w[i] -= step_size * m[i] / (std::sqrt(v[i] * inv_bc2) + eps);
  }
}

void AdamUpdate(const OptimizerConfig& c, double bc1, double bc2, const float* g, float* m,
                float* v, float* w, int64_t n) {
  const auto step_size = static_cast<float>(c.lr / bc1);
  const auto inv_bc2 = static_cast<float>(1.0 / bc2);
  if (c.kind == OptimizerConfig::Kind::kAdamW) {
    AdamLoop<true>(c.lr, c.weight_decay, c.beta1, c.beta2, c.eps, step_size, inv_bc2, g, m, v, w,
                   n);
  } else {
    AdamLoop<false>(c.lr, c.weight_decay, c.beta1, c.beta2, c.eps, step_size, inv_bc2, g, m, v, w,
                    n);
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
