// AvgPool2d and GlobalAvgPool2d. Work is split by (sample, channel) planes, so every task owns
// whole planes of y in Forward and of dx in Backward.
#include <algorithm>
#include <cstring>

#include "ftte/core/check.h"
#include "ftte/core/layers_extra.h"

namespace ftte {

namespace {
// Fixed task size (never derived from the thread count, see thread_pool.h): planes per task
// are chosen so that a task touches about this many input elements.
constexpr int64_t kTaskElements = 16384;

int64_t PlanesPerTask(int64_t plane_elements) {
  return std::max<int64_t>(1, kTaskElements / std::max<int64_t>(1, plane_elements));
}
}  // namespace

AvgPool2d::AvgPool2d(int64_t kernel, int64_t stride)
    : kernel_(kernel), stride_(stride == 0 ? kernel : stride) {
  FTTE_CHECK(kernel_ > 0 && stride_ > 0)
      << "AvgPool2d: kernel and stride must be positive, got " << kernel << ", " << stride;
}

std::string AvgPool2d::Describe() const {
  std::string s = "AvgPool2d(kernel=" + std::to_string(kernel_);
  if (stride_ != kernel_) s += ", stride=" + std::to_string(stride_);
  return s + ")";
}

Result<Shape> AvgPool2d::OutputShape(const Shape& in) const {
  if (in.size() != 4 || in[2] < kernel_ || in[3] < kernel_) {
    return InvalidArgument(Describe() + ": expected input [N, C, H, W] with H, W >= " +
                           std::to_string(kernel_) + ", got " + ShapeToString(in));
  }
  return Shape{in[0], in[1], (in[2] - kernel_) / stride_ + 1, (in[3] - kernel_) / stride_ + 1};
}

void AvgPool2d::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t planes = x.shape[0] * x.shape[1], h = x.shape[2], w = x.shape[3];
  const int64_t oh = (h - kernel_) / stride_ + 1, ow = (w - kernel_) / stride_ + 1;
  const int64_t per_task = PlanesPerTask(h * w);
  const float area = static_cast<float>(kernel_ * kernel_);
  ctx.pool->ParallelFor(NumBlocks(planes, per_task), [&](int64_t t, int) {
    const int64_t p1 = std::min(planes, (t + 1) * per_task);
    for (int64_t p = t * per_task; p < p1; ++p) {
      const float* xp = x.data + p * h * w;
      float* yp = y.data + p * oh * ow;
      for (int64_t i = 0; i < oh; ++i) {
        for (int64_t j = 0; j < ow; ++j) {
          float sum = 0.0f;
          for (int64_t ki = 0; ki < kernel_; ++ki) {
            const float* row = xp + (i * stride_ + ki) * w + j * stride_;
            for (int64_t kj = 0; kj < kernel_; ++kj) sum += row[kj];
          }
          yp[i * ow + j] = sum / area;
        }
      }
    }
  });
}

void AvgPool2d::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  if (!mode_.input_grad) return;
  const int64_t planes = dx.shape[0] * dx.shape[1], h = dx.shape[2], w = dx.shape[3];
  const int64_t oh = dy.shape[2], ow = dy.shape[3];
  const int64_t per_task = PlanesPerTask(h * w);
  const float area = static_cast<float>(kernel_ * kernel_);
  ctx.pool->ParallelFor(NumBlocks(planes, per_task), [&](int64_t t, int) {
    const int64_t p1 = std::min(planes, (t + 1) * per_task);
    for (int64_t p = t * per_task; p < p1; ++p) {
      const float* dyp = dy.data + p * oh * ow;
      float* dxp = dx.data + p * h * w;
      // Zero first: windows may overlap (stride < kernel) or miss the last rows and columns.
      std::memset(dxp, 0, sizeof(float) * h * w);
      for (int64_t i = 0; i < oh; ++i) {
        for (int64_t j = 0; j < ow; ++j) {
          const float g = dyp[i * ow + j] / area;
          for (int64_t ki = 0; ki < kernel_; ++ki) {
            float* row = dxp + (i * stride_ + ki) * w + j * stride_;
            for (int64_t kj = 0; kj < kernel_; ++kj) row[kj] += g;
          }
        }
      }
    }
  });
}

Flops AvgPool2d::CountFlops(const Shape& in, LayerMode m) const {
  Result<Shape> out = OutputShape(in);
  if (!out.ok()) return {};
  const int64_t windows = NumElements(*out), area = kernel_ * kernel_;
  return {windows * area, m.input_grad ? windows * area : 0};
}

Result<Shape> GlobalAvgPool2d::OutputShape(const Shape& in) const {
  if (in.size() != 4 || in[2] * in[3] == 0) {
    return InvalidArgument("GlobalAvgPool2d(): expected input [N, C, H, W] with H, W > 0, got " +
                           ShapeToString(in));
  }
  return Shape{in[0], in[1]};
}

void GlobalAvgPool2d::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t planes = x.shape[0] * x.shape[1], hw = x.shape[2] * x.shape[3];
  const int64_t per_task = PlanesPerTask(hw);
  ctx.pool->ParallelFor(NumBlocks(planes, per_task), [&](int64_t t, int) {
    const int64_t p1 = std::min(planes, (t + 1) * per_task);
    for (int64_t p = t * per_task; p < p1; ++p) {
      const float* xp = x.data + p * hw;
      double sum = 0;  // double: a plane may hold thousands of elements
      for (int64_t i = 0; i < hw; ++i) sum += xp[i];
      y.data[p] = static_cast<float>(sum / static_cast<double>(hw));
    }
  });
}

void GlobalAvgPool2d::Backward(const View& x, const View& y, const View& dy, View dx,
                               ExecContext& ctx) {
  if (!mode_.input_grad) return;
  const int64_t planes = dx.shape[0] * dx.shape[1], hw = dx.shape[2] * dx.shape[3];
  const int64_t per_task = PlanesPerTask(hw);
  const float inv = 1.0f / static_cast<float>(hw);
  ctx.pool->ParallelFor(NumBlocks(planes, per_task), [&](int64_t t, int) {
    const int64_t p1 = std::min(planes, (t + 1) * per_task);
    for (int64_t p = t * per_task; p < p1; ++p) {
      const float g = dy.data[p] * inv;
      std::fill(dx.data + p * hw, dx.data + (p + 1) * hw, g);
    }
  });
}

Flops GlobalAvgPool2d::CountFlops(const Shape& in, LayerMode m) const {
  const int64_t n = NumElements(in);
  return {n, m.input_grad ? n : 0};
}

}  // namespace ftte
