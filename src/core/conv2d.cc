#include <algorithm>
#include <cmath>

#include "ftte/core/check.h"
#include "ftte/core/kernels.h"
#include "ftte/core/layers.h"

namespace ftte {

namespace {
// Samples per weight-gradient task. Each task sums its samples into its own partial gradient;
// partials are then added in task order, so the sum does not depend on the thread count.
constexpr int64_t kSampleChunk = 8;
constexpr int64_t kReduceBlock = 1 << 14;
constexpr int64_t kBiasBlock = 8;       // output channels per bias-gradient task
constexpr int64_t kTransposeRows = 16;  // weight-gradient rows per transposing task

ConvGeometry GeometryOf(const Shape& in, int64_t k, int64_t s, int64_t p) {
  return ConvGeometry{in[1], in[2], in[3], k, s, p};
}
bool IsPointwise(const ConvGeometry& g) { return g.kernel == 1 && g.stride == 1 && g.padding == 0; }
// Sum of d[0, n) in double: kLanes independent partial sums (so that the adds vectorise and
// do not wait on one another), combined in a fixed order.
double SumAsDouble(const float* d, int64_t n) {
  constexpr int64_t kLanes = 8;
  double lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t j = 0; j < kLanes; ++j) lane[j] += static_cast<double>(d[i + j]);
  }
  for (int64_t j = 0; i + j < n; ++j) lane[j] += static_cast<double>(d[i + j]);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// Floats of slot 0 per worker: im2col columns, then the scratch of Im2Col and Col2Im.
int64_t WorkerFloats(const ConvGeometry& g) {
  return IsPointwise(g) ? 0 : g.col_rows() * g.col_cols() + g.scratch_size();
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
    for (int64_t i = 0; i < p->numel(); ++i)
      d[i] = static_cast<float>((2 * rng.Uniform() - 1) * bound);
  }
}

void Conv2d::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  ConvGeometry g = GeometryOf(in, kernel_, stride_, padding_);
  // Slot 0: one im2col buffer per worker, each followed by the scratch of Im2Col and Col2Im.
  plan->Add(MemCategory::kWorkspace, FloatBytes(WorkerFloats(g) * pc.threads),
            "conv im2col columns");
  // Slot 1: the dequantised weight when it is kept as int8.
  plan->Add(MemCategory::kWorkspace,
            weight_.QuantizedUnder(pc.frozen) ? FloatBytes(weight_.numel()) : 0,
            "conv dequantised weight");
  // Slot 2: partial weight gradients of the sample chunks after the first (the first chunk
  // sums straight into the gradient).
  const int64_t chunks = m.param_grad ? NumBlocks(in[0], kSampleChunk) : 0;
  plan->Add(MemCategory::kWorkspace,
            FloatBytes(std::max<int64_t>(chunks - 1, 0) * weight_.trainable_numel()),
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
      float* buf = slot(0) + worker * WorkerFloats(g);
      Im2Col(g, xn, buf, buf + ckk * l);
      col = buf;
    }
    float* yn = y.data + n * out_c_ * l;
    // The bias goes in first and the product is added to it: one pass over y, not two.
    if (b != nullptr) {
      for (int64_t o = 0; o < out_c_; ++o) std::fill(yn + o * l, yn + (o + 1) * l, b[o]);
    }
    Gemm(false, false, out_c_, l, ckk, 1.0f, w, ckk, col, l, b != nullptr ? 1.0f : 0.0f, yn, l);
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
    float* gw = weight_.grad().data();
    // With several chunks, each sums its samples' gradients transposed, [ckk, rows] per run of
    // trainable rows (as col * dy^T, a GEMM shape that runs faster than dy * col^T); the sums
    // are then added in chunk order and transposed into gw. Chunk 0 sums into gw itself (as
    // scratch), chunk c > 0 into partial c - 1; the total goes to partial 0 (chunks > 1).
    const bool transposed = chunks > 1;
    auto sums_of = [&](int64_t c) { return c == 0 ? gw : slot(2) + (c - 1) * tn; };
    ctx.pool->ParallelFor(chunks, [&](int64_t c, int worker) {
      float* pc = sums_of(c);
      for (int64_t n = c * kSampleChunk; n < std::min(batch, (c + 1) * kSampleChunk); ++n) {
        const float* xn = x.data + n * sample;
        const float* col = xn;
        if (!IsPointwise(g)) {
          float* buf = slot(0) + worker * WorkerFloats(g);
          Im2Col(g, xn, buf, buf + ckk * l);
          col = buf;
        }
        const float* dyn = dy.data + n * out_c_ * l;
        const float beta = n == c * kSampleChunk ? 0.0f : 1.0f;
        for (const RowRun& r : weight_.runs()) {
          const int64_t rows = r.end - r.begin;
          if (transposed) {
            Gemm(false, true, ckk, rows, l, 1.0f, col, l, dyn + r.begin * l, l, beta,
                 pc + r.packed * ckk, rows);
          } else {
            Gemm(false, true, rows, ckk, l, 1.0f, dyn + r.begin * l, l, col, l, beta,
                 pc + r.packed * ckk, ckk);
          }
        }
      }
    });
    if (transposed) {
      // total = chunk 0 + chunk 1 + ..., added in chunk order, into partial 0.
      float* total = sums_of(1);
      ctx.pool->ParallelFor(NumBlocks(tn, kReduceBlock), [&](int64_t t, int) {
        const int64_t e0 = t * kReduceBlock, e1 = std::min(tn, e0 + kReduceBlock);
        for (int64_t e = e0; e < e1; ++e) total[e] = gw[e] + total[e];
        for (int64_t c = 2; c < chunks; ++c) {
          const float* pc = sums_of(c);
          for (int64_t e = e0; e < e1; ++e) total[e] += pc[e];
        }
      });
      // gw row q (packed) = column q - packed of its run's [ckk, rows] block.
      const int64_t trainable_rows = weight_.trainable_rows();
      ctx.pool->ParallelFor(NumBlocks(trainable_rows, kTransposeRows), [&](int64_t t, int) {
        const int64_t q0 = t * kTransposeRows, q1 = std::min(trainable_rows, q0 + kTransposeRows);
        for (const RowRun& r : weight_.runs()) {
          const int64_t rows = r.end - r.begin;
          const float* block = total + r.packed * ckk;
          for (int64_t q = std::max(q0, r.packed); q < std::min(q1, r.packed + rows); ++q) {
            float* gq = gw + q * ckk;
            for (int64_t e = 0; e < ckk; ++e) gq[e] = block[e * rows + (q - r.packed)];
          }
        }
      });
    }
  }
  if (mode_.param_grad && bias_ && bias_->any_trainable()) {
    float* gb = bias_->grad().data();
    ctx.pool->ParallelFor(NumBlocks(out_c_, kBiasBlock), [&](int64_t t, int) {
      const int64_t o0 = t * kBiasBlock, o1 = std::min(out_c_, o0 + kBiasBlock);
      for (const RowRun& r : bias_->runs()) {
        for (int64_t o = std::max(o0, r.begin); o < std::min(o1, r.end); ++o) {
          double acc = 0;  // double keeps the long sum accurate; the order is fixed
          for (int64_t n = 0; n < batch; ++n) {
            acc += SumAsDouble(dy.data + (n * out_c_ + o) * l, l);
          }
          gb[r.packed + o - r.begin] = static_cast<float>(acc);
        }
      }
    });
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
      float* buf = slot(0) + worker * WorkerFloats(g);
      Gemm(true, false, ckk, l, out_c_, 1.0f, w, ckk, dyn, l, 0.0f, buf, l);
      Col2Im(g, buf, dxn, buf + ckk * l);
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
