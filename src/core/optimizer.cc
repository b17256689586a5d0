#include "ftte/core/optimizer.h"

#include <algorithm>
#include <cmath>

#include "ftte/core/check.h"

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

// Momentum buffer as the sum of a step's passes: pass 0 decays it and adds g + wd w, later
// passes add g; the last pass moves w. For one pass this is SgdLoop's momentum update.
template <bool kFirstPass, bool kLastPass>
void MomentumPassLoop(float lr, float weight_decay, float momentum, const float* __restrict g,
                      float* __restrict buf, float* __restrict w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (kFirstPass) {
      buf[i] = momentum * buf[i] + (g[i] + weight_decay * w[i]);
    } else {
      buf[i] += g[i];
    }
    if (kLastPass) w[i] -= lr * buf[i];
  }
}

void MomentumPass(const OptimizerConfig& c, bool first, bool last, const float* g, float* buf,
                  float* w, int64_t n) {
  const float lr = c.lr, wd = c.weight_decay, mu = c.momentum;
  if (first && last) {
    MomentumPassLoop<true, true>(lr, wd, mu, g, buf, w, n);
  } else if (first) {
    MomentumPassLoop<true, false>(lr, wd, mu, g, buf, w, n);
  } else if (last) {
    MomentumPassLoop<false, true>(lr, wd, mu, g, buf, w, n);
  } else {
    MomentumPassLoop<false, false>(lr, wd, mu, g, buf, w, n);
  }
}

bool SumsInMomentum(const OptimizerConfig& c) {
  return c.kind == OptimizerConfig::Kind::kSgd && c.momentum != 0.0f && !c.nesterov;
}

}  // namespace

int OptimizerConfig::state_per_value() const {
  if (kind == Kind::kSgd) return momentum != 0.0f ? 1 : 0;
  return 2;
}

bool OptimizerConfig::AccumulatorFor(int64_t passes) const {
  return passes > 1 && !SumsInMomentum(*this);
}

Result<OptimizerConfig::Kind> OptimizerConfig::ParseKind(const std::string& s) {
  if (s == "sgd") return Kind::kSgd;
  if (s == "adam") return Kind::kAdam;
  if (s == "adamw") return Kind::kAdamW;
  return InvalidArgument("unknown optimizer '" + s + "'; use sgd, adam or adamw");
}

Optimizer::Optimizer(const OptimizerConfig& config, std::vector<Parameter*> params,
                     MemoryTracker* tracker, int64_t max_passes)
    : config_(config), params_(std::move(params)) {
  const int slots = config_.state_per_value();
  const bool acc = config_.AccumulatorFor(max_passes);
  for (Parameter* p : params_) {
    const int64_t n = p->trainable_numel();
    auto state = [&](bool on, MemCategory c) {
      return on && n > 0 ? Tensor(tracker, c, {n}) : Tensor();
    };
    m_.push_back(state(slots >= 1, MemCategory::kOptimizer));
    v_.push_back(state(slots >= 2, MemCategory::kOptimizer));
    acc_.push_back(state(acc, MemCategory::kGradients));
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

void Optimizer::BeginPass(int64_t index, int64_t count) {
  FTTE_CHECK(index >= 0 && index < count) << "pass " << index << " of " << count;
  if (count > 1 && !SumsInMomentum(config_)) {
    for (size_t k = 0; k < params_.size(); ++k) {
      FTTE_CHECK(!params_[k]->any_trainable() || !acc_[k].empty())
          << "a step of " << count << " passes needs an accumulation buffer; construct the "
          << "Optimizer with max_passes >= " << count;
    }
  }
  pass_ = index;
  passes_ = count;
  if (index > 0) return;
  ++step_;
  const OptimizerConfig& c = config_;
  bc1_ = 1.0 - std::pow(static_cast<double>(c.beta1), static_cast<double>(step_));
  bc2_ = 1.0 - std::pow(static_cast<double>(c.beta2), static_cast<double>(step_));
}

// The update of n values at packed offset `off` of params[k] (run `run`), gradient g.
void Optimizer::Update(size_t k, const RowRun& run, int64_t off, int64_t n, const float* g) {
  Parameter* p = params_[k];
  float* w = p->RunData(run) + (off - run.packed * p->row_size());
  float* m = m_[k].empty() ? nullptr : m_[k].data() + off;
  const bool first = pass_ == 0, last = pass_ + 1 == passes_;
  if (SumsInMomentum(config_)) {
    MomentumPass(config_, first, last, g, m, w, n);
    return;
  }
  if (passes_ > 1) {
    float* a = acc_[k].data() + off;
    if (first) {
      std::copy(g, g + n, a);
    } else {
      for (int64_t i = 0; i < n; ++i) a[i] += g[i];
    }
    if (!last) return;
    g = a;
  }
  if (config_.kind == OptimizerConfig::Kind::kSgd) {
    SgdUpdate(config_, step_, g, m, w, n);
  } else {
    AdamUpdate(config_, bc1_, bc2_, g, m, v_[k].data() + off, w, n);
  }
}

void Optimizer::Commit(size_t k, int64_t first, int64_t rows, const float* g) {
  Parameter* p = params_[k];
  const int64_t rs = p->row_size(), end = first + rows;
  for (const RowRun& run : p->runs()) {
    const int64_t a = std::max(first, run.packed);
    const int64_t b = std::min(end, run.packed + (run.end - run.begin));
    if (a >= b) continue;
    Update(k, run, a * rs, (b - a) * rs, g + (a - first) * rs);
  }
}

void Optimizer::Step() {
  BeginPass(0, 1);
  for (size_t k = 0; k < params_.size(); ++k) {
    Parameter* p = params_[k];
    if (p->any_trainable()) Commit(k, 0, p->trainable_rows(), p->grad().data());
  }
}

}  // namespace ftte
