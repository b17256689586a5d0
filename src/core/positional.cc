#include <algorithm>
#include <cmath>
#include <cstring>

#include "ftte/core/check.h"
#include "ftte/core/layers_lm.h"

namespace ftte {

namespace {
// Fixed task sizes (never derived from the thread count, see thread_pool.h).
constexpr int64_t kRowBlock = 256;      // (sample, position) rows per forward task
constexpr int64_t kPositionBlock = 16;  // positions per gradient task
}  // namespace

PositionalEmbedding::PositionalEmbedding(int64_t max_len, int64_t dim, MemoryTracker* tracker)
    : max_len_(max_len), dim_(dim), weight_("weight", {max_len, dim}, tracker) {
  FTTE_CHECK(max_len > 0 && dim > 0)
      << "PositionalEmbedding: sizes must be positive, got " << max_len << ", " << dim;
  weight_.set_int8_allowed(false);
}

std::string PositionalEmbedding::Describe() const {
  return "PositionalEmbedding(" + std::to_string(max_len_) + ", " + std::to_string(dim_) + ")";
}

Result<Shape> PositionalEmbedding::OutputShape(const Shape& in) const {
  if (in.size() != 3 || in[1] > max_len_ || in[2] != dim_) {
    return InvalidArgument(Describe() + ": expected input [N, T <= " + std::to_string(max_len_) +
                           ", " + std::to_string(dim_) + "], got " + ShapeToString(in));
  }
  return in;
}

void PositionalEmbedding::InitParams(Rng& rng) {
  float* w = weight_.data();
  for (int64_t i = 0; i < weight_.numel(); ++i) w[i] = static_cast<float>(0.02 * rng.Normal());
}

void PositionalEmbedding::Plan(const Shape& in, LayerMode m, const PlanContext& pc,
                               MemoryPlan* plan) const {
  if (m.param_grad) {
    plan->AddWorkspace(FloatBytes(weight_.trainable_numel()), "positional embedding gradient");
  }
}

void PositionalEmbedding::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t steps = x.shape[1], rows = x.shape[0] * steps;
  const float* w = weight_.data();
  ctx.pool->ParallelFor(NumBlocks(rows, kRowBlock), [&](int64_t t, int) {
    const int64_t r1 = std::min(rows, (t + 1) * kRowBlock);
    for (int64_t r = t * kRowBlock; r < r1; ++r) {
      const float* xr = x.data + r * dim_;
      const float* wr = w + (r % steps) * dim_;
      float* yr = y.data + r * dim_;
      for (int64_t d = 0; d < dim_; ++d) yr[d] = xr[d] + wr[d];
    }
  });
}

void PositionalEmbedding::Backward(const View& x, const View& y, const View& dy, View dx,
                                   ExecContext& ctx) {
  const int64_t n = dy.shape[0], steps = dy.shape[1];
  if (mode_.param_grad && weight_.any_trainable()) {
    float* g = ctx.workspace;
    // Trainable positions beyond this sequence length get zeros.
    ctx.pool->ParallelFor(NumBlocks(max_len_, kPositionBlock), [&](int64_t t, int) {
      const int64_t p0 = t * kPositionBlock, p1 = std::min(max_len_, p0 + kPositionBlock);
      for (const RowRun& run : weight_.runs()) {
        for (int64_t p = std::max(p0, run.begin); p < std::min(p1, run.end); ++p) {
          float* gr = g + (run.packed + p - run.begin) * dim_;
          std::fill(gr, gr + dim_, 0.0f);
          if (p >= steps) continue;
          for (int64_t i = 0; i < n; ++i) {
            const float* d = dy.data + (i * steps + p) * dim_;
            for (int64_t j = 0; j < dim_; ++j) gr[j] += d[j];
          }
        }
      }
    });
    ctx.grads->Commit(weight_, 0, weight_.trainable_rows(), g);
  }
  if (mode_.input_grad && dx.data != dy.data) {
    std::memcpy(dx.data, dy.data, sizeof(float) * dy.numel());
  }
}

Flops PositionalEmbedding::CountFlops(const Shape& in, LayerMode m) const {
  const int64_t n = NumElements(in);
  Flops f{n, 0};
  if (m.param_grad && weight_.any_trainable()) f.backward += n;
  if (m.input_grad) f.backward += n;
  return f;
}

}  // namespace ftte
