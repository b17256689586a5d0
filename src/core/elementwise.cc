// ReLU, Flatten and MaxPool2d.
#include <array>
#include <cstring>

#include "ftte/core/check.h"
#include "ftte/core/layers.h"

namespace ftte {

namespace {
constexpr int64_t kElemBlock = 1 << 14;  // elements per task; a multiple of 64 (mask words)

// kByteMask[b][j] = bit j of b, as 1.0f or 0.0f.
constexpr std::array<std::array<float, 8>, 256> MakeByteMask() {
  std::array<std::array<float, 8>, 256> t{};
  for (int b = 0; b < 256; ++b) {
    for (int j = 0; j < 8; ++j) t[b][j] = (b >> j) & 1 ? 1.0f : 0.0f;
  }
  return t;
}
constexpr auto kByteMask = MakeByteMask();

// One output row of a 2x2, stride-2 max pool, written as selects so that it compiles to
// vector code: the first maximum wins (NaN does not propagate, unlike the general loop).
template <bool kSave>
void MaxPool2x2Row(const float* r0, const float* r1, int64_t ow, float* y, uint8_t* arg) {
  for (int64_t j = 0; j < ow; ++j) {
    const float a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
    const bool tb = b > a;
    const float m1 = tb ? b : a;
    const bool tc = c > m1;
    const float m2 = tc ? c : m1;
    const bool td = d > m2;
    y[j] = td ? d : m2;
    if (kSave) arg[j] = static_cast<uint8_t>(td ? 3 : (tc ? 2 : (tb ? 1 : 0)));
  }
}
}  // namespace

void ReLU::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  plan->Add(MemCategory::kActivations, m.input_grad ? NumBlocks(NumElements(in), 64) * 8 : 0,
            "relu sign bits");
}

void ReLU::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t n = x.numel();
  auto* bits = reinterpret_cast<uint64_t*>(slot(0));
  const bool save = mode_.input_grad;
  ctx.pool->ParallelFor(NumBlocks(n, kElemBlock), [&](int64_t t, int) {
    const int64_t b = t * kElemBlock, e = std::min(n, b + kElemBlock);
    for (int64_t w = b; w < e; w += 64) {
      const int64_t we = std::min(e, w + 64);
      for (int64_t i = w; i < we; ++i) y.data[i] = x.data[i] > 0.0f ? x.data[i] : 0.0f;
      if (!save) continue;
      // Sign bits from the output, eight at a time (branch-free, vectorisable).
      uint64_t word = 0;
      for (int64_t i = w; i < we; ++i) {
        word |= static_cast<uint64_t>(y.data[i] > 0.0f) << (i - w);
      }
      bits[w / 64] = word;
    }
  });
}

void ReLU::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  if (!mode_.input_grad) return;
  const int64_t n = dy.numel();
  const auto* bits = reinterpret_cast<const uint64_t*>(slot(0));
  ctx.pool->ParallelFor(NumBlocks(n, kElemBlock), [&](int64_t t, int) {
    const int64_t b = t * kElemBlock, e = std::min(n, b + kElemBlock);
    for (int64_t w = b; w < e; w += 64) {
      const uint64_t word = bits[w / 64];
      const int64_t we = std::min(e, w + 64);
      if (we - w == 64) {
        // Eight bits at a time through a table of 0/1 factors: vectorises, no shifts per value.
        for (int k = 0; k < 8; ++k) {
          const float* f = kByteMask[(word >> (8 * k)) & 0xff].data();
          const float* src = dy.data + w + 8 * k;
          float* dst = dx.data + w + 8 * k;
          for (int j = 0; j < 8; ++j) dst[j] = src[j] * f[j];
        }
        continue;
      }
      for (int64_t i = w; i < we; ++i) {
        dx.data[i] = ((word >> (i - w)) & 1) ? dy.data[i] : 0.0f;
      }
    }
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

void MaxPool2d::Plan(const Shape& in, LayerMode m, const PlanContext& pc,
                     MemoryPlan* plan) const {
  int64_t outs = 0;
  if (m.input_grad) outs = NumElements(OutputShape(in).value());
  plan->Add(MemCategory::kActivations, outs, "maxpool argmax bytes");
}

void MaxPool2d::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t c = x.shape[1], h = x.shape[2], w = x.shape[3];
  const int64_t oh = y.shape[2], ow = y.shape[3];
  auto* arg = reinterpret_cast<uint8_t*>(slot(0));
  const bool save = mode_.input_grad;
  // One task per (sample, channel) plane.
  ctx.pool->ParallelFor(x.shape[0] * c, [&](int64_t plane, int) {
    const float* xp = x.data + plane * h * w;
    float* yp = y.data + plane * oh * ow;
    uint8_t* ap = save ? arg + plane * oh * ow : nullptr;
    if (kernel_ == 2 && stride_ == 2) {
      for (int64_t i = 0; i < oh; ++i) {
        const float* r0 = xp + 2 * i * w;
        if (save) {
          MaxPool2x2Row<true>(r0, r0 + w, ow, yp + i * ow, ap + i * ow);
        } else {
          MaxPool2x2Row<false>(r0, r0 + w, ow, yp + i * ow, nullptr);
        }
      }
      return;
    }
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
  });
}

void MaxPool2d::Backward(const View& x, const View& y, const View& dy, View dx,
                         ExecContext& ctx) {
  if (!mode_.input_grad) return;
  const int64_t c = dx.shape[1], h = dx.shape[2], w = dx.shape[3];
  const int64_t oh = dy.shape[2], ow = dy.shape[3];
  const auto* arg = reinterpret_cast<const uint8_t*>(slot(0));
  ctx.pool->ParallelFor(dx.shape[0] * c, [&](int64_t plane, int) {
    float* dxp = dx.data + plane * h * w;
    std::memset(dxp, 0, sizeof(float) * h * w);
    const float* dyp = dy.data + plane * oh * ow;
    const uint8_t* ap = arg + plane * oh * ow;
    for (int64_t i = 0; i < oh; ++i) {
      for (int64_t j = 0; j < ow; ++j) {
        const int64_t a = ap[i * ow + j] / kernel_, b = ap[i * ow + j] % kernel_;
        dxp[(i * stride_ + a) * w + j * stride_ + b] += dyp[i * ow + j];
      }
    }
  });
}

Flops MaxPool2d::CountFlops(const Shape& in, LayerMode m) const {
  const int64_t outs = NumElements(OutputShape(in).value());
  return {outs * kernel_ * kernel_, m.input_grad ? outs : 0};
}

}  // namespace ftte
