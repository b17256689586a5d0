// GroupNorm and LayerNorm. Statistics and reductions accumulate in double. Forward and the
// input gradient are split by normalisation group (a contiguous run of x), the parameter
// gradients by channel or feature, each summed over the batch in a fixed order; so every task
// writes disjoint outputs and results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "ftte/core/check.h"
#include "ftte/core/layers_extra.h"

namespace ftte {

namespace {
// Fixed task sizes (never derived from the thread count, see thread_pool.h).
constexpr int64_t kTaskElements = 16384;  // about this many elements per normalisation task
constexpr int64_t kChannelBlock = 8;      // GroupNorm channels per parameter-gradient task
constexpr int64_t kFeatureBlock = 64;     // LayerNorm features per parameter-gradient task

// Rough per-element costs: statistics (3) + normalise and affine (3); input gradient (8);
// parameter gradients (4).
constexpr int64_t kForwardFlops = 6;
constexpr int64_t kInputGradFlops = 8;
constexpr int64_t kParamGradFlops = 4;

int64_t GroupsPerTask(int64_t group_elements) {
  return std::max<int64_t>(1, kTaskElements / std::max<int64_t>(1, group_elements));
}

// The packed gradient row of every row of p, or -1 where the row is frozen.
std::vector<int64_t> PackedRows(const Parameter& p) {
  std::vector<int64_t> rows(static_cast<size_t>(p.rows()), -1);
  for (const RowRun& r : p.runs()) {
    for (int64_t i = r.begin; i < r.end; ++i) rows[i] = r.packed + i - r.begin;
  }
  return rows;
}

// Commits the gradients of the trainable rows of an affine weight and bias.
void CommitAffine(Parameter& weight, Parameter& bias, float* gw, float* gb, ExecContext& ctx) {
  if (weight.any_trainable()) ctx.grads->Commit(weight, 0, weight.trainable_rows(), gw);
  if (bias.any_trainable()) ctx.grads->Commit(bias, 0, bias.trainable_rows(), gb);
}

std::string EpsSuffix(float eps) {
  if (eps == 1e-5f) return "";
  std::ostringstream s;
  s << ", eps=" << eps;
  return s.str();
}

// Normalises `m` contiguous values of one group: y = (x - mean) * rstd * w[c] + b[c], where
// element i belongs to channel c = i / per_channel. Returns {mean, rstd}.
std::pair<float, float> NormalizeGroup(const float* x, float* y, int64_t m, int64_t per_channel,
                                       const float* w, const float* b, float eps) {
  double sum = 0;
  for (int64_t i = 0; i < m; ++i) sum += x[i];
  const double mean = sum / static_cast<double>(m);
  double sq = 0;
  for (int64_t i = 0; i < m; ++i) {
    const double d = x[i] - mean;
    sq += d * d;
  }
  const double rstd = 1.0 / std::sqrt(sq / static_cast<double>(m) + eps);
  for (int64_t c = 0; c * per_channel < m; ++c) {
    const float scale = static_cast<float>(rstd * w[c]);
    const float shift = static_cast<float>(b[c] - mean * rstd * w[c]);
    const float* xc = x + c * per_channel;
    float* yc = y + c * per_channel;
    for (int64_t i = 0; i < per_channel; ++i) yc[i] = xc[i] * scale + shift;
  }
  return {static_cast<float>(mean), static_cast<float>(rstd)};
}

// dx of one group of `m` contiguous values given its saved mean and rstd:
// dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)) with g = dy * w[c].
void NormalizeGroupBackward(const float* x, const float* dy, float* dx, int64_t m,
                            int64_t per_channel, const float* w, float mean, float rstd) {
  double sum_g = 0, sum_gx = 0;
  for (int64_t c = 0; c * per_channel < m; ++c) {
    const float* xc = x + c * per_channel;
    const float* dyc = dy + c * per_channel;
    double sg = 0, sgx = 0;
    for (int64_t i = 0; i < per_channel; ++i) {
      sg += dyc[i];
      sgx += static_cast<double>(dyc[i]) * (xc[i] - mean);
    }
    sum_g += sg * w[c];
    sum_gx += sgx * w[c];
  }
  const double inv_m = 1.0 / static_cast<double>(m);
  const double mean_g = sum_g * inv_m, mean_gx = sum_gx * rstd * inv_m;
  for (int64_t c = 0; c * per_channel < m; ++c) {
    const float* xc = x + c * per_channel;
    const float* dyc = dy + c * per_channel;
    float* dxc = dx + c * per_channel;
    for (int64_t i = 0; i < per_channel; ++i) {
      const double x_hat = (xc[i] - mean) * static_cast<double>(rstd);
      dxc[i] = static_cast<float>(rstd *
                                  (dyc[i] * static_cast<double>(w[c]) - mean_g - x_hat * mean_gx));
    }
  }
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// GroupNorm

GroupNorm::GroupNorm(int64_t groups, int64_t channels, MemoryTracker* tracker, float eps)
    : groups_(groups),
      channels_(channels),
      eps_(eps),
      weight_("weight", {channels}, tracker),
      bias_("bias", {channels}, tracker) {
  FTTE_CHECK(groups > 0 && channels > 0 && channels % groups == 0)
      << "GroupNorm: channels (" << channels << ") must be a positive multiple of groups ("
      << groups << ")";
  std::fill(weight_.data(), weight_.data() + channels, 1.0f);
}

std::string GroupNorm::Describe() const {
  return "GroupNorm(" + std::to_string(groups_) + ", " + std::to_string(channels_) +
         EpsSuffix(eps_) + ")";
}

Result<Shape> GroupNorm::OutputShape(const Shape& in) const {
  if (in.size() < 2 || in[1] != channels_) {
    return InvalidArgument(Describe() + ": expected input [N, " + std::to_string(channels_) +
                           ", ...], got " + ShapeToString(in));
  }
  return in;
}

void GroupNorm::InitParams(Rng& rng) {
  std::fill(weight_.data(), weight_.data() + channels_, 1.0f);
  std::fill(bias_.data(), bias_.data() + channels_, 0.0f);
}

void GroupNorm::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  // Slot 0: {mean, rstd} per (sample, group), only when Backward will run.
  plan->Add(MemCategory::kActivations, m.backward() ? FloatBytes(2 * in[0] * groups_) : 0,
            "groupnorm mean and rstd");
  if (m.param_grad) {
    plan->AddWorkspace(FloatBytes(weight_.trainable_rows() + bias_.trainable_rows()),
                       "groupnorm parameter gradients");
  }
}

void GroupNorm::Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
                        MemoryTracker* tracker) {
  Layer::Prepare(in, m, pc, tracker);
  stats_capacity_ = m.backward() ? in[0] * groups_ : 0;
  weight_row_ = PackedRows(weight_);
  bias_row_ = PackedRows(bias_);
}

void GroupNorm::Forward(const View& x, View y, ExecContext& ctx) {
  if (x.shape[0] == 0) return;
  const int64_t pairs = x.shape[0] * groups_;
  const int64_t per_channel = x.numel() / (x.shape[0] * channels_);
  const int64_t cpg = channels_ / groups_, m = cpg * per_channel;
  const bool save = mode_.backward();
  FTTE_CHECK(!save || pairs <= stats_capacity_)
      << Describe() << ": batch " << x.shape[0] << " larger than prepared";
  const float* w = weight_.data();
  const float* b = bias_.data();
  float* stats = slot(0);
  const int64_t per_task = GroupsPerTask(m);
  ctx.pool->ParallelFor(NumBlocks(pairs, per_task), [&](int64_t t, int) {
    const int64_t q1 = std::min(pairs, (t + 1) * per_task);
    for (int64_t q = t * per_task; q < q1; ++q) {
      const int64_t c0 = (q % groups_) * cpg;  // q = n * groups + g; its values are contiguous
      auto [mean, rstd] =
          NormalizeGroup(x.data + q * m, y.data + q * m, m, per_channel, w + c0, b + c0, eps_);
      if (save) {
        stats[2 * q] = mean;
        stats[2 * q + 1] = rstd;
      }
    }
  });
}

void GroupNorm::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  if (dy.shape[0] == 0) return;
  const int64_t n = dy.shape[0], pairs = n * groups_;
  const int64_t per_channel = dy.numel() / (n * channels_);
  const int64_t cpg = channels_ / groups_, m = cpg * per_channel;
  const float* w = weight_.data();
  const float* stats = slot(0);
  if (mode_.input_grad) {
    const int64_t per_task = GroupsPerTask(m);
    ctx.pool->ParallelFor(NumBlocks(pairs, per_task), [&](int64_t t, int) {
      const int64_t q1 = std::min(pairs, (t + 1) * per_task);
      for (int64_t q = t * per_task; q < q1; ++q) {
        NormalizeGroupBackward(x.data + q * m, dy.data + q * m, dx.data + q * m, m, per_channel,
                               w + (q % groups_) * cpg, stats[2 * q], stats[2 * q + 1]);
      }
    });
  }
  if (!mode_.param_grad || (!weight_.any_trainable() && !bias_.any_trainable())) return;
  float* gw = ctx.workspace;
  float* gb = gw + weight_.trainable_rows();
  // dweight[c] = sum over samples and positions of dy * x_hat; dbias[c] = sum of dy.
  ctx.pool->ParallelFor(NumBlocks(channels_, kChannelBlock), [&](int64_t t, int) {
    const int64_t c1 = std::min(channels_, (t + 1) * kChannelBlock);
    for (int64_t c = t * kChannelBlock; c < c1; ++c) {
      const int64_t rw = weight_row_[c], rb = bias_row_[c];
      if (rw < 0 && rb < 0) continue;
      double sum_dy = 0, sum_dyx = 0;
      for (int64_t s = 0; s < n; ++s) {
        const int64_t q = s * groups_ + c / cpg;
        const float mean = stats[2 * q], rstd = stats[2 * q + 1];
        const float* xc = x.data + (s * channels_ + c) * per_channel;
        const float* dyc = dy.data + (s * channels_ + c) * per_channel;
        double sd = 0, sdx = 0;
        for (int64_t i = 0; i < per_channel; ++i) {
          sd += dyc[i];
          sdx += static_cast<double>(dyc[i]) * (xc[i] - mean);
        }
        sum_dy += sd;
        sum_dyx += sdx * rstd;
      }
      if (rw >= 0) gw[rw] = static_cast<float>(sum_dyx);
      if (rb >= 0) gb[rb] = static_cast<float>(sum_dy);
    }
  });
  CommitAffine(weight_, bias_, gw, gb, ctx);
}

Flops GroupNorm::CountFlops(const Shape& in, LayerMode m) const {
  const int64_t n = NumElements(in);
  Flops f{kForwardFlops * n, 0};
  if (m.input_grad) f.backward += kInputGradFlops * n;
  if (m.param_grad && (weight_.any_trainable() || bias_.any_trainable())) {
    f.backward += kParamGradFlops * n;
  }
  return f;
}

// ---------------------------------------------------------------------------------------------
// LayerNorm: a GroupNorm of one group per row whose affine transform runs along the row.

LayerNorm::LayerNorm(int64_t dim, MemoryTracker* tracker, float eps)
    : dim_(dim), eps_(eps), weight_("weight", {dim}, tracker), bias_("bias", {dim}, tracker) {
  FTTE_CHECK(dim > 0) << "LayerNorm: dim must be positive, got " << dim;
  std::fill(weight_.data(), weight_.data() + dim, 1.0f);
}

std::string LayerNorm::Describe() const {
  return "LayerNorm(" + std::to_string(dim_) + EpsSuffix(eps_) + ")";
}

Result<Shape> LayerNorm::OutputShape(const Shape& in) const {
  if (in.size() < 2 || in.back() != dim_) {
    return InvalidArgument(Describe() + ": expected input [N, " + std::to_string(dim_) +
                           "] or [N, T, " + std::to_string(dim_) + "], got " + ShapeToString(in));
  }
  return in;
}

void LayerNorm::InitParams(Rng& rng) {
  std::fill(weight_.data(), weight_.data() + dim_, 1.0f);
  std::fill(bias_.data(), bias_.data() + dim_, 0.0f);
}

void LayerNorm::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  // Slot 0: {mean, rstd} per row, only when Backward will run.
  plan->Add(MemCategory::kActivations, m.backward() ? FloatBytes(2 * (NumElements(in) / dim_)) : 0,
            "layernorm mean and rstd");
  if (m.param_grad) {
    plan->AddWorkspace(FloatBytes(weight_.trainable_rows() + bias_.trainable_rows()),
                       "layernorm parameter gradients");
  }
}

void LayerNorm::Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
                        MemoryTracker* tracker) {
  Layer::Prepare(in, m, pc, tracker);
  stats_capacity_ = m.backward() ? NumElements(in) / dim_ : 0;
  weight_row_ = PackedRows(weight_);
  bias_row_ = PackedRows(bias_);
}

void LayerNorm::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t rows = x.numel() / dim_;
  const bool save = mode_.backward();
  FTTE_CHECK(!save || rows <= stats_capacity_)
      << Describe() << ": " << rows << " rows, prepared for " << stats_capacity_;
  const float* w = weight_.data();
  const float* b = bias_.data();
  float* stats = slot(0);
  const int64_t per_task = GroupsPerTask(dim_);
  ctx.pool->ParallelFor(NumBlocks(rows, per_task), [&](int64_t t, int) {
    const int64_t r1 = std::min(rows, (t + 1) * per_task);
    for (int64_t r = t * per_task; r < r1; ++r) {
      // Per-feature affine: each "channel" is one element.
      auto [mean, rstd] = NormalizeGroup(x.data + r * dim_, y.data + r * dim_, dim_, 1, w, b, eps_);
      if (save) {
        stats[2 * r] = mean;
        stats[2 * r + 1] = rstd;
      }
    }
  });
}

void LayerNorm::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  const int64_t rows = dy.numel() / dim_;
  const float* w = weight_.data();
  const float* stats = slot(0);
  if (mode_.input_grad) {
    const int64_t per_task = GroupsPerTask(dim_);
    ctx.pool->ParallelFor(NumBlocks(rows, per_task), [&](int64_t t, int) {
      const int64_t r1 = std::min(rows, (t + 1) * per_task);
      for (int64_t r = t * per_task; r < r1; ++r) {
        NormalizeGroupBackward(x.data + r * dim_, dy.data + r * dim_, dx.data + r * dim_, dim_, 1,
                               w, stats[2 * r], stats[2 * r + 1]);
      }
    });
  }
  if (!mode_.param_grad || (!weight_.any_trainable() && !bias_.any_trainable())) return;
  float* gw = ctx.workspace;
  float* gb = gw + weight_.trainable_rows();
  // Features in blocks; each block sums its columns over all rows in row order.
  ctx.pool->ParallelFor(NumBlocks(dim_, kFeatureBlock), [&](int64_t t, int) {
    const int64_t d0 = t * kFeatureBlock, d1 = std::min(dim_, d0 + kFeatureBlock);
    double sum_dy[kFeatureBlock] = {}, sum_dyx[kFeatureBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const float mean = stats[2 * r], rstd = stats[2 * r + 1];
      const float* xr = x.data + r * dim_;
      const float* dyr = dy.data + r * dim_;
      for (int64_t d = d0; d < d1; ++d) {
        sum_dy[d - d0] += dyr[d];
        sum_dyx[d - d0] +=
            static_cast<double>(dyr[d]) * ((xr[d] - mean) * static_cast<double>(rstd));
      }
    }
    for (int64_t d = d0; d < d1; ++d) {
      if (weight_row_[d] >= 0) gw[weight_row_[d]] = static_cast<float>(sum_dyx[d - d0]);
      if (bias_row_[d] >= 0) gb[bias_row_[d]] = static_cast<float>(sum_dy[d - d0]);
    }
  });
  CommitAffine(weight_, bias_, gw, gb, ctx);
}

Flops LayerNorm::CountFlops(const Shape& in, LayerMode m) const {
  const int64_t n = NumElements(in);
  Flops f{kForwardFlops * n, 0};
  if (m.input_grad) f.backward += kInputGradFlops * n;
  if (m.param_grad && (weight_.any_trainable() || bias_.any_trainable())) {
    f.backward += kParamGradFlops * n;
  }
  return f;
}

}  // namespace ftte
