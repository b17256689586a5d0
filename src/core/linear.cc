#include <cmath>
#include <cstring>

#include "ftte/core/check.h"
#include "ftte/core/kernels.h"
#include "ftte/core/layers.h"

namespace ftte {

namespace {
// Fixed task sizes (never derived from the thread count, see thread_pool.h).
constexpr int64_t kOutBlock = 128;  // output features per forward / weight-gradient task
constexpr int64_t kInBlock = 256;   // input features per input-gradient task

int64_t RowsOf(const Shape& s) { return NumElements(s) / s.back(); }
}  // namespace

Linear::Linear(int64_t in, int64_t out, bool bias, MemoryTracker* tracker)
    : in_(in), out_(out), weight_("weight", {out, in}, tracker) {
  if (bias) bias_ = std::make_unique<Parameter>("bias", Shape{out}, tracker);
}

std::string Linear::Describe() const {
  return "Linear(" + std::to_string(in_) + ", " + std::to_string(out_) +
         (bias_ ? ")" : ", bias=false)");
}

Result<Shape> Linear::OutputShape(const Shape& in) const {
  if (in.size() < 2 || in.back() != in_) {
    return InvalidArgument(Describe() + ": expected input [N, " + std::to_string(in_) +
                           "] or [N, T, " + std::to_string(in_) + "], got " + ShapeToString(in));
  }
  Shape out = in;
  out.back() = out_;
  return out;
}

std::vector<Parameter*> Linear::Params() {
  std::vector<Parameter*> p{&weight_};
  if (bias_) p.push_back(bias_.get());
  return p;
}

void Linear::InitParams(Rng& rng) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_));
  for (Parameter* p : Params()) {
    float* d = p->data();
    for (int64_t i = 0; i < p->numel(); ++i)
      d[i] = static_cast<float>((2 * rng.Uniform() - 1) * bound);
  }
}

void Linear::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  // Slot 0: per-worker dequantised weight block, only when the weight is kept as int8.
  int64_t per_worker = 0;
  if (weight_.QuantizedUnder(pc.frozen)) {
    per_worker = std::max(kOutBlock * in_, m.input_grad ? out_ * kInBlock : 0);
  }
  plan->Add(MemCategory::kWorkspace, FloatBytes(per_worker * pc.threads),
            "linear dequantised weight blocks");
}

void Linear::Prepare(const Shape& in, LayerMode m, const PlanContext& pc, MemoryTracker* tracker) {
  Layer::Prepare(in, m, pc, tracker);
  quantized_ = weight_.quantized();
  FTTE_CHECK(quantized_ == weight_.QuantizedUnder(pc.frozen))
      << weight_.name() << ": storage changed after planning";
  dw_tasks_.clear();
  for (const RowRun& r : weight_.runs()) {
    for (int64_t b = r.begin; b < r.end; b += kOutBlock) {
      int64_t e = std::min(r.end, b + kOutBlock);
      dw_tasks_.push_back({b, e, r.packed + (b - r.begin)});
    }
  }
}

void Linear::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t n = RowsOf(x.shape);
  const float* w = weight_.data();
  ctx.pool->ParallelFor(NumBlocks(out_, kOutBlock), [&](int64_t t, int worker) {
    const int64_t o0 = t * kOutBlock, o1 = std::min(out_, o0 + kOutBlock);
    const float* wb = w + o0 * in_;
    if (quantized_) {
      float* ws = slot(0) + worker * std::max(kOutBlock * in_, out_ * kInBlock);
      if (!mode_.input_grad) ws = slot(0) + worker * kOutBlock * in_;
      weight_.ReadRows(o0, o1, ws);
      wb = ws;
    }
    Gemm(false, true, n, o1 - o0, in_, 1.0f, x.data, in_, wb, in_, 0.0f, y.data + o0, out_);
    if (bias_) {
      const float* b = bias_->data();
      for (int64_t i = 0; i < n; ++i) {
        float* yr = y.data + i * out_;
        for (int64_t o = o0; o < o1; ++o) yr[o] += b[o];
      }
    }
  });
}

void Linear::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  const int64_t n = RowsOf(dy.shape);
  if (mode_.param_grad) {
    float* gw = weight_.grad().data();
    ctx.pool->ParallelFor(static_cast<int64_t>(dw_tasks_.size()), [&](int64_t t, int) {
      const RowRun& r = dw_tasks_[t];
      Gemm(true, false, r.end - r.begin, in_, n, 1.0f, dy.data + r.begin, out_, x.data, in_, 0.0f,
           gw + r.packed * in_, in_);
    });
    if (bias_ && bias_->any_trainable()) {
      float* gb = bias_->grad().data();
      for (const RowRun& r : bias_->runs()) {
        for (int64_t o = r.begin; o < r.end; ++o) gb[r.packed + o - r.begin] = 0.0f;
        for (int64_t i = 0; i < n; ++i) {
          const float* d = dy.data + i * out_;
          for (int64_t o = r.begin; o < r.end; ++o) gb[r.packed + o - r.begin] += d[o];
        }
      }
    }
  }
  if (mode_.input_grad) {
    const float* w = weight_.data();
    ctx.pool->ParallelFor(NumBlocks(in_, kInBlock), [&](int64_t t, int worker) {
      const int64_t i0 = t * kInBlock, i1 = std::min(in_, i0 + kInBlock);
      const float* wb = w + i0;
      int64_t ldw = in_;
      if (quantized_) {
        float* ws = slot(0) + worker * std::max(kOutBlock * in_, out_ * kInBlock);
        weight_.ReadBlock(0, out_, i0, i1, ws);
        wb = ws;
        ldw = i1 - i0;
      }
      Gemm(false, false, n, i1 - i0, out_, 1.0f, dy.data, out_, wb, ldw, 0.0f, dx.data + i0, in_);
    });
  }
}

Flops Linear::CountFlops(const Shape& in, LayerMode m) const {
  const int64_t n = RowsOf(in);
  Flops f;
  f.forward = 2 * n * in_ * out_ + (bias_ ? n * out_ : 0);
  if (m.param_grad) {
    f.backward += 2 * n * in_ * weight_.trainable_rows();
    if (bias_) f.backward += n * bias_->trainable_rows();
  }
  if (m.input_grad) f.backward += 2 * n * in_ * out_;
  return f;
}

}  // namespace ftte
