#include <cmath>
#include <cstring>

#include "ftte/core/check.h"
#include "ftte/core/kernels.h"
#include "ftte/core/layers.h"

namespace ftte {

namespace {
// Samples per weight-gradient task. Each task sums its samples into its own partial gradient;
// partials are then added in task order, so the sum does not depend on the thread count.
constexpr int64_t kSampleChunk = 8;
constexpr int64_t kReduceBlock = 1 << 14;

ConvGeometry GeometryOf(const Shape& in, int64_t k, int64_t s, int64_t p) {
  return ConvGeometry{in[1], in[2], in[3], k, s, p};
}
bool IsPointwise(const ConvGeometry& g) {
  return g.kernel == 1 && g.stride == 1 && g.padding == 0;
}
}  // namespace

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
               int64_t padding, bool bias, MemoryTracker* tracker)
    : in_c_(in_channels),
      out_c_(out_channels),
      kernel_(kernel),
      stride_(stride),
      padding_(padding),
      weight_("weight", {out_channels, in_channels, kernel, kernel}, tracker) {
  FTTE_CHECK(kernel >= 1 && stride >= 1 && padding >= 0);
  if (bias) bias_ = std::make_unique<Parameter>("bias", Shape{out_channels}, tracker);
}

std::string Conv2d::Describe() const {
  return "Conv2d(" + std::to_string(in_c_) + ", " + std::to_string(out_c_) +
         ", kernel=" + std::to_string(kernel_) + ", stride=" + std::to_string(stride_) +
         ", padding=" + std::to_string(padding_) + (bias_ ? ")" : ", bias=false)");
}

Result<Shape> Conv2d::OutputShape(const Shape& in) const {
  if (in.size() != 4 || in[1] != in_c_ || in[2] + 2 * padding_ < kernel_ ||
      in[3] + 2 * padding_ < kernel_) {
    return InvalidArgument(Describe() + ": expected input [N, " + std::to_string(in_c_) +
                           ", H, W] with H, W >= " + std::to_string(kernel_ - 2 * padding_) +
                           ", got " + ShapeToString(in));
  }
  ConvGeometry g = GeometryOf(in, kernel_, stride_, padding_);
  return Shape{in[0], out_c_, g.out_height(), g.out_width()};
}

std::vector<Parameter*> Conv2d::Params() {
  std::vector<Parameter*> p{&weight_};
  if (bias_) p.push_back(bias_.get());
  return p;
}

void Conv2d::InitParams(Rng& rng) {
  // kaiming_uniform_(a=sqrt(5)) and the bias rule of torch.nn.Conv2d: both U(-1/sqrt(fan_in), ..).
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_c_ * kernel_ * kernel_));
  for (Parameter* p : Params()) {
    float* d = p->data();
    for (int64_t i = 0; i < p->numel(); ++i) d[i] = static_cast<float>((2 * rng.Uniform() - 1) * bound);
  }
}

void Conv2d::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  ConvGeometry g = GeometryOf(in, kernel_, stride_, padding_);
  const int64_t col = IsPointwise(g) ? 0 : g.col_rows() * g.col_cols();
  // Slot 0: one im2col buffer per worker.
  plan->Add(MemCategory::kWorkspace, FloatBytes(col * pc.threads), "conv im2col columns");
  // Slot 1: the dequantised weight when it is kept as int8.
  plan->Add(MemCategory::kWorkspace,
            weight_.QuantizedUnder(pc.frozen) ? FloatBytes(weight_.numel()) : 0,
            "conv dequantised weight");
  // Slot 2: per-chunk partial weight gradients.
  const int64_t chunks = m.param_grad ? NumBlocks(in[0], kSampleChunk) : 0;
  plan->Add(MemCategory::kWorkspace, FloatBytes(chunks * weight_.trainable_numel()),
            "conv partial weight gradients");
}

void Conv2d::Prepare(const Shape& in, LayerMode m, const PlanContext& pc, MemoryTracker* tracker) {
  Layer::Prepare(in, m, pc, tracker);
  quantized_ = weight_.quantized();
  FTTE_CHECK(quantized_ == weight_.QuantizedUnder(pc.frozen))
      << weight_.name() << ": storage changed after planning";
  prepared_batch_ = in[0];
}

void Conv2d::Forward(const View& x, View y, ExecContext& ctx) {
  ConvGeometry g = GeometryOf(x.shape, kernel_, stride_, padding_);
  const int64_t ckk = g.col_rows(), l = g.col_cols(), sample = in_c_ * g.height * g.width;
  const float* w = weight_.data();
  if (quantized_) {
    weight_.ReadRows(0, out_c_, slot(1));
    w = slot(1);
  }
  const float* b = bias_ ? bias_->data() : nullptr;
  ctx.pool->ParallelFor(x.shape[0], [&](int64_t n, int worker) {
    const float* xn = x.data + n * sample;
    const float* col = xn;
    if (!IsPointwise(g)) {
      float* buf = slot(0) + worker * ckk * l;
      Im2Col(g, xn, buf);
      col = buf;
    }
    float* yn = y.data + n * out_c_ * l;
    Gemm(false, false, out_c_, l, ckk, 1.0f, w, ckk, col, l, 0.0f, yn, l);
    if (b != nullptr) {
      for (int64_t o = 0; o < out_c_; ++o) {
        for (int64_t i = 0; i < l; ++i) yn[o * l + i] += b[o];
      }
    }
  });
}

void Conv2d::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  ConvGeometry g = GeometryOf(dx.empty() ? x.shape : dx.shape, kernel_, stride_, padding_);
  const int64_t ckk = g.col_rows(), l = g.col_cols(), sample = in_c_ * g.height * g.width;
  const int64_t batch = dy.shape[0];
  if (mode_.param_grad && weight_.any_trainable()) {
    FTTE_CHECK(batch <= prepared_batch_);
    const int64_t tn = weight_.trainable_numel();
    const int64_t chunks = NumBlocks(batch, kSampleChunk);
    float* partial = slot(2);
    ctx.pool->ParallelFor(chunks, [&](int64_t c, int worker) {
      float* pc = partial + c * tn;
      for (int64_t n = c * kSampleChunk; n < std::min(batch, (c + 1) * kSampleChunk); ++n) {
        const float* xn = x.data + n * sample;
        const float* col = xn;
        if (!IsPointwise(g)) {
          float* buf = slot(0) + worker * ckk * l;
          Im2Col(g, xn, buf);
          col = buf;
        }
        const float* dyn = dy.data + n * out_c_ * l;
        const float beta = n == c * kSampleChunk ? 0.0f : 1.0f;
        for (const RowRun& r : weight_.runs()) {
          Gemm(false, true, r.end - r.begin, ckk, l, 1.0f, dyn + r.begin * l, l, col, l, beta,
               pc + r.packed * ckk, ckk);
        }
      }
    });
    float* gw = weight_.grad().data();
    ctx.pool->ParallelFor(NumBlocks(tn, kReduceBlock), [&](int64_t t, int) {
      const int64_t e0 = t * kReduceBlock, e1 = std::min(tn, e0 + kReduceBlock);
      std::memcpy(gw + e0, partial + e0, sizeof(float) * (e1 - e0));
      for (int64_t c = 1; c < chunks; ++c) {
        const float* pc = partial + c * tn;
        for (int64_t e = e0; e < e1; ++e) gw[e] += pc[e];
      }
    });
  }
  if (mode_.param_grad && bias_ && bias_->any_trainable()) {
    float* gb = bias_->grad().data();
    for (const RowRun& r : bias_->runs()) {
      for (int64_t o = r.begin; o < r.end; ++o) {
        double acc = 0;  // double keeps the long sum accurate; the order is fixed
        for (int64_t n = 0; n < batch; ++n) {
          const float* d = dy.data + (n * out_c_ + o) * l;
          for (int64_t i = 0; i < l; ++i) acc += d[i];
        }
        gb[r.packed + o - r.begin] = static_cast<float>(acc);
      }
    }
  }
  if (mode_.input_grad) {
    const float* w = quantized_ ? slot(1) : weight_.data();
    ctx.pool->ParallelFor(batch, [&](int64_t n, int worker) {
      const float* dyn = dy.data + n * out_c_ * l;
      float* dxn = dx.data + n * sample;
      if (IsPointwise(g)) {
        Gemm(true, false, ckk, l, out_c_, 1.0f, w, ckk, dyn, l, 0.0f, dxn, l);
        return;
      }
      float* buf = slot(0) + worker * ckk * l;
      Gemm(true, false, ckk, l, out_c_, 1.0f, w, ckk, dyn, l, 0.0f, buf, l);
      Col2Im(g, buf, dxn);
    });
  }
}

Flops Conv2d::CountFlops(const Shape& in, LayerMode m) const {
  ConvGeometry g = GeometryOf(in, kernel_, stride_, padding_);
  const int64_t n = in[0], ckk = g.col_rows(), l = g.col_cols();
  Flops f;
  f.forward = 2 * n * out_c_ * ckk * l + (bias_ ? n * out_c_ * l : 0);
  if (m.param_grad) {
    f.backward += 2 * n * weight_.trainable_rows() * ckk * l;
    if (bias_) f.backward += n * bias_->trainable_rows() * l;
  }
  if (m.input_grad) f.backward += 2 * n * out_c_ * ckk * l;
  return f;
}

}  // namespace ftte
