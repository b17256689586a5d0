// ReLU, Flatten and MaxPool2d.
#include <algorithm>
#include <cstring>

#include "ftte/core/check.h"
#include "ftte/core/kernels.h"
#include "ftte/core/layers.h"

namespace ftte {

namespace {
constexpr int64_t kElemBlock = 1 << 14;  // elements per task; a multiple of kReluGroup

// Max pool tasks take whole (sample, channel) planes, about this many outputs' worth (a fixed
// size, never derived from the thread count, see thread_pool.h).
constexpr int64_t kPoolTaskOutputs = 1024;

int64_t PoolPlanesPerTask(int64_t plane_outputs) {
  return std::max<int64_t>(1, kPoolTaskOutputs / std::max<int64_t>(1, plane_outputs));
}
}  // namespace

void ReLU::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  plan->Add(MemCategory::kActivations,
            m.input_grad ? NumBlocks(NumElements(in), kReluGroup) * (kReluGroup / 8) : 0,
            "relu sign bits");
}

void ReLU::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t n = x.numel();
  auto* mask = reinterpret_cast<uint8_t*>(slot(0));
  const bool save = mode_.input_grad;
  ctx.pool->ParallelFor(NumBlocks(n, kElemBlock), [&](int64_t t, int) {
    const int64_t b = t * kElemBlock, e = std::min(n, b + kElemBlock);
    ReluForward(x.data + b, e - b, y.data + b, save ? mask + b / 8 : nullptr);
  });
}

void ReLU::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  if (!mode_.input_grad) return;
  const int64_t n = dy.numel();
  const auto* mask = reinterpret_cast<const uint8_t*>(slot(0));
  ctx.pool->ParallelFor(NumBlocks(n, kElemBlock), [&](int64_t t, int) {
    const int64_t b = t * kElemBlock, e = std::min(n, b + kElemBlock);
    ReluBackward(dy.data + b, mask + b / 8, e - b, dx.data + b);
  });
}

Flops ReLU::CountFlops(const Shape& in, LayerMode m) const {
  return {NumElements(in), m.input_grad ? NumElements(in) : 0};
}

Result<Shape> Flatten::OutputShape(const Shape& in) const {
  if (in.empty()) return InvalidArgument("Flatten: input has no batch dimension");
  return Shape{in[0], in[0] == 0 ? 0 : NumElements(in) / in[0]};
}

MaxPool2d::MaxPool2d(int64_t kernel, int64_t stride)
    : kernel_(kernel), stride_(stride == 0 ? kernel : stride) {
  FTTE_CHECK(kernel_ >= 1 && kernel_ <= 16 && stride_ >= 1) << "MaxPool2d window must be 1..16";
}

std::string MaxPool2d::Describe() const {
  return "MaxPool2d(kernel=" + std::to_string(kernel_) + ", stride=" + std::to_string(stride_) +
         ")";
}

Result<Shape> MaxPool2d::OutputShape(const Shape& in) const {
  if (in.size() != 4 || in[2] < kernel_ || in[3] < kernel_) {
    return InvalidArgument(Describe() + ": expected input [N, C, H, W] with H, W >= " +
                           std::to_string(kernel_) + ", got " + ShapeToString(in));
  }
  return Shape{in[0], in[1], (in[2] - kernel_) / stride_ + 1, (in[3] - kernel_) / stride_ + 1};
}

void MaxPool2d::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  int64_t outs = 0;
  if (m.input_grad) outs = NumElements(OutputShape(in).value());
  plan->Add(MemCategory::kActivations, outs, "maxpool argmax bytes");
}

void MaxPool2d::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t planes = x.shape[0] * x.shape[1], h = x.shape[2], w = x.shape[3];
  const int64_t oh = y.shape[2], ow = y.shape[3], plane_out = oh * ow;
  auto* arg = reinterpret_cast<uint8_t*>(slot(0));
  const bool save = mode_.input_grad;
  const int64_t per_task = PoolPlanesPerTask(plane_out);
  ctx.pool->ParallelFor(NumBlocks(planes, per_task), [&](int64_t t, int) {
    const int64_t p0 = t * per_task, p1 = std::min(planes, p0 + per_task);
    if (IsTwoByTwo()) {
      for (int64_t p = p0; p < p1; ++p) {
        for (int64_t i = 0; i < oh; ++i) {
          const float* r0 = x.data + p * h * w + 2 * i * w;
          const int64_t at = p * plane_out + i * ow;
          MaxPool2x2Row(r0, r0 + w, ow, y.data + at, save ? arg + at : nullptr);
        }
      }
      return;
    }
    for (int64_t p = p0; p < p1; ++p) {
      const float* xp = x.data + p * h * w;
      float* yp = y.data + p * plane_out;
      uint8_t* ap = save ? arg + p * plane_out : nullptr;
      for (int64_t i = 0; i < oh; ++i) {
        for (int64_t j = 0; j < ow; ++j) {
          const float* win = xp + i * stride_ * w + j * stride_;
          float best = win[0];
          int best_at = 0;
          for (int64_t a = 0; a < kernel_; ++a) {
            for (int64_t b = 0; b < kernel_; ++b) {
              const float v = win[a * w + b];
              // The first maximum wins, as in PyTorch; NaN propagates.
              if (v > best || (v != v && best == best)) {
                best = v;
                best_at = static_cast<int>(a * kernel_ + b);
              }
            }
          }
          yp[i * ow + j] = best;
          if (save) ap[i * ow + j] = static_cast<uint8_t>(best_at);
        }
      }
    }
  });
}

void MaxPool2d::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  if (!mode_.input_grad) return;
  const int64_t planes = dx.shape[0] * dx.shape[1], h = dx.shape[2], w = dx.shape[3];
  const int64_t oh = dy.shape[2], ow = dy.shape[3], plane_out = oh * ow;
  const auto* arg = reinterpret_cast<const uint8_t*>(slot(0));
  const int64_t per_task = PoolPlanesPerTask(plane_out);
  ctx.pool->ParallelFor(NumBlocks(planes, per_task), [&](int64_t t, int) {
    const int64_t p0 = t * per_task, p1 = std::min(planes, p0 + per_task);
    if (IsTwoByTwo()) {
      // Every input inside a window gets the window's gradient or zero: no clearing and no
      // accumulation; only a leftover last row or column is cleared.
      for (int64_t p = p0; p < p1; ++p) {
        float* dxp = dx.data + p * h * w;
        for (int64_t i = 0; i < oh; ++i) {
          float* r0 = dxp + 2 * i * w;
          const int64_t at = p * plane_out + i * ow;
          MaxPool2x2BackwardRow(dy.data + at, arg + at, ow, r0, r0 + w);
          for (int64_t j = 2 * ow; j < w; ++j) r0[j] = r0[w + j] = 0.0f;
        }
        std::memset(dxp + 2 * oh * w, 0, sizeof(float) * (h - 2 * oh) * w);
      }
      return;
    }
    for (int64_t p = p0; p < p1; ++p) {
      float* dxp = dx.data + p * h * w;
      const float* dyp = dy.data + p * plane_out;
      const uint8_t* ap = arg + p * plane_out;
      std::memset(dxp, 0, sizeof(float) * h * w);
      for (int64_t i = 0; i < oh; ++i) {
        for (int64_t j = 0; j < ow; ++j) {
          const int64_t a = ap[i * ow + j] / kernel_, b = ap[i * ow + j] % kernel_;
          dxp[(i * stride_ + a) * w + j * stride_ + b] += dyp[i * ow + j];
        }
      }
    }
  });
}

Flops MaxPool2d::CountFlops(const Shape& in, LayerMode m) const {
  const int64_t outs = NumElements(OutputShape(in).value());
  return {outs * kernel_ * kernel_, m.input_grad ? outs : 0};
}

}  // namespace ftte
