#include <algorithm>
#include <cmath>

#include "ftte/core/layers_extra.h"

namespace ftte {

namespace {
// Fixed task size (never derived from the thread count, see thread_pool.h).
constexpr int64_t kBlock = 16384;  // elements per task

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

// Rough costs of one element: erf and exp are counted as about 15 FLOPs each.
constexpr int64_t kForwardFlops = 20;
constexpr int64_t kBackwardFlops = 25;
}  // namespace

void GELU::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t n = x.numel();
  ctx.pool->ParallelFor(NumBlocks(n, kBlock), [&](int64_t t, int) {
    const int64_t i1 = std::min(n, (t + 1) * kBlock);
    for (int64_t i = t * kBlock; i < i1; ++i) {
      const float v = x.data[i];
      y.data[i] = 0.5f * v * (1.0f + std::erf(v * kInvSqrt2));
    }
  });
}

void GELU::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  if (!mode_.input_grad) return;
  const int64_t n = dy.numel();
  // d/dx [x Phi(x)] = Phi(x) + x phi(x).
  ctx.pool->ParallelFor(NumBlocks(n, kBlock), [&](int64_t t, int) {
    const int64_t i1 = std::min(n, (t + 1) * kBlock);
    for (int64_t i = t * kBlock; i < i1; ++i) {
      const float v = x.data[i];
      const float cdf = 0.5f * (1.0f + std::erf(v * kInvSqrt2));
      const float pdf = kInvSqrt2Pi * std::exp(-0.5f * v * v);
      dx.data[i] = dy.data[i] * (cdf + v * pdf);
    }
  });
}

Flops GELU::CountFlops(const Shape& in, LayerMode m) const {
  const int64_t n = NumElements(in);
  return {kForwardFlops * n, m.input_grad ? kBackwardFlops * n : 0};
}

}  // namespace ftte
