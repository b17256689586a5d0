// Linear. Weights are read through Parameter::ForEachSegment: float32 rows (trainable rows, or
// every row under float32 storage) go straight to GEMM; int8 rows are dequantised a tile at a
// time into the worker's workspace, so a frozen matrix never exists as float32 in memory.
// Weight gradients are computed a block of rows at a time in the workspace and committed.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ftte/core/check.h"
#include "ftte/core/kernels.h"
#include "ftte/core/layers.h"
#include "ftte/core/layers_extra.h"

namespace ftte {

namespace {
// Fixed task sizes (never derived from the thread count, see thread_pool.h).
constexpr int64_t kOutBlock = 128;  // output features per forward task
constexpr int64_t kInBlock = 256;   // input features per input-gradient task

int64_t RowsOf(const Shape& s) { return NumElements(s) / s.back(); }

// Passes of at most this many rows multiply int8 weights directly (Int8Gemm*) instead of
// dequantising tiles for Gemm, which costs more than the product for so few rows.
constexpr int64_t kDirectInt8Rows = 2;

// Rows of a weight-gradient block: a tile's worth, at least one row.
int64_t GradBlockRows(int64_t in, int64_t tile) { return std::max<int64_t>(1, tile / in); }

// Dequantises rows [r0, r1) x columns [c0, c1) of an int8 segment into out ([r1-r0, c1-c0]).
void Dequantize(const RowSegment& s, int64_t row_size, int64_t r0, int64_t r1, int64_t c0,
                int64_t c1, float* out) {
  const int64_t w = c1 - c0;
  for (int64_t r = r0; r < r1; ++r) {
    const float scale = s.scale[r - s.begin];
    const int8_t* src = s.q + (r - s.begin) * row_size + c0;
    float* dst = out + (r - r0) * w;
    for (int64_t j = 0; j < w; ++j) dst[j] = scale * static_cast<float>(src[j]);
  }
}
}  // namespace

Linear::Linear(int64_t in, int64_t out, bool bias, MemoryTracker* tracker)
    : in_(in),
      out_(out),
      own_weight_(std::make_unique<Parameter>("weight", Shape{out, in}, tracker)),
      weight_(own_weight_.get()) {
  if (bias) bias_ = std::make_unique<Parameter>("bias", Shape{out}, tracker);
}

Linear::Linear(Embedding* embedding, bool bias, MemoryTracker* tracker)
    : in_(embedding->weight().shape()[1]),
      out_(embedding->weight().shape()[0]),
      weight_(&embedding->weight()),
      tied_(embedding) {
  embedding->TieHead();
  if (bias) bias_ = std::make_unique<Parameter>("bias", Shape{out_}, tracker);
}

std::string Linear::Describe() const {
  return "Linear(" + std::to_string(in_) + ", " + std::to_string(out_) +
         (bias_ ? "" : ", bias=false") + (tied_ != nullptr ? ", tied to the embedding)" : ")");
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
  std::vector<Parameter*> p;
  if (own_weight_) p.push_back(own_weight_.get());
  if (bias_) p.push_back(bias_.get());
  return p;
}

std::vector<Parameter*> Linear::SharedParams() {
  if (tied_ == nullptr) return {};
  return {weight_};
}

// A tied head's weight is the embedding's (initialised there); its bias is drawn from the same
// bound as an untied head's.
void Linear::InitParams(Rng& rng) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_));
  for (Parameter* p : Params()) {
    float* d = p->data();
    for (int64_t i = 0; i < p->numel(); ++i)
      d[i] = static_cast<float>((2 * rng.Uniform() - 1) * bound);
  }
}

// Workspace: one tile per worker (dequantised weights, or a block of weight-gradient rows),
// then the bias gradient.
int64_t Linear::TileFloats(LayerMode m, const PlanContext& pc) const {
  int64_t tile = 0;
  if (weight_->QuantizedUnder(pc.frozen)) tile = pc.tile_floats;
  if (m.param_grad && weight_->any_trainable()) {
    tile = std::max(tile, GradBlockRows(in_, pc.tile_floats) * in_);
  }
  return tile;
}

void Linear::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  const int64_t bias = m.param_grad && bias_ ? bias_->trainable_rows() : 0;
  plan->AddWorkspace(FloatBytes(TileFloats(m, pc) * pc.threads + bias),
                     "linear weight tiles and gradient blocks");
}

void Linear::Prepare(const Shape& in, LayerMode m, const PlanContext& pc, MemoryTracker* tracker) {
  Layer::Prepare(in, m, pc, tracker);
  FTTE_CHECK(weight_->quantized() == weight_->QuantizedUnder(pc.frozen))
      << weight_->name() << ": storage changed after planning";
  tile_ = TileFloats(m, pc);
  dw_tasks_.clear();
  const int64_t block = GradBlockRows(in_, pc.tile_floats);
  for (const RowRun& r : weight_->runs()) {
    for (int64_t b = r.begin; b < r.end; b += block) {
      const int64_t e = std::min(r.end, b + block);
      dw_tasks_.push_back({b, e, r.packed + (b - r.begin)});
    }
  }
}

void Linear::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t n = RowsOf(x.shape);
  ctx.pool->ParallelFor(NumBlocks(out_, kOutBlock), [&](int64_t t, int worker) {
    const int64_t o0 = t * kOutBlock, o1 = std::min(out_, o0 + kOutBlock);
    float* ws = ctx.workspace + worker * tile_;
    weight_->ForEachSegment(o0, o1, [&](const RowSegment& s) {
      const int64_t rows = s.end - s.begin;
      if (s.f32 != nullptr) {
        Gemm(false, true, n, rows, in_, 1.0f, x.data, in_, s.f32, in_, 0.0f, y.data + s.begin,
             out_);
        return;
      }
      if (n <= kDirectInt8Rows) {
        Int8GemmNT(n, rows, in_, x.data, in_, s.q, in_, s.scale, 0.0f, y.data + s.begin, out_);
        return;
      }
      // y[:, rows] = sum over column chunks of x[:, chunk] W[rows, chunk]^T.
      const int64_t cols = std::max<int64_t>(1, std::min(in_, pc_.tile_floats / rows));
      for (int64_t c0 = 0; c0 < in_; c0 += cols) {
        const int64_t c1 = std::min(in_, c0 + cols);
        Dequantize(s, in_, s.begin, s.end, c0, c1, ws);
        Gemm(false, true, n, rows, c1 - c0, 1.0f, x.data + c0, in_, ws, c1 - c0,
             c0 > 0 ? 1.0f : 0.0f, y.data + s.begin, out_);
      }
    });
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
  // dx first: committing the gradients may update the weights at once.
  if (mode_.input_grad) {
    ctx.pool->ParallelFor(NumBlocks(in_, kInBlock), [&](int64_t t, int worker) {
      const int64_t i0 = t * kInBlock, i1 = std::min(in_, i0 + kInBlock), w = i1 - i0;
      float* ws = ctx.workspace + worker * tile_;
      bool first = true;
      // dx[:, i0:i1] = sum over row segments of dy[:, rows] W[rows, i0:i1].
      weight_->ForEachSegment(0, out_, [&](const RowSegment& s) {
        if (s.f32 != nullptr) {
          Gemm(false, false, n, w, s.end - s.begin, 1.0f, dy.data + s.begin, out_, s.f32 + i0, in_,
               first ? 0.0f : 1.0f, dx.data + i0, in_);
          first = false;
          return;
        }
        if (n <= kDirectInt8Rows) {
          Int8GemmNN(n, s.end - s.begin, w, dy.data + s.begin, out_, s.q + i0, in_, s.scale,
                     first ? 0.0f : 1.0f, dx.data + i0, in_);
          first = false;
          return;
        }
        const int64_t chunk = std::max<int64_t>(1, pc_.tile_floats / w);
        for (int64_t r0 = s.begin; r0 < s.end; r0 += chunk) {
          const int64_t r1 = std::min(s.end, r0 + chunk);
          Dequantize(s, in_, r0, r1, i0, i1, ws);
          Gemm(false, false, n, w, r1 - r0, 1.0f, dy.data + r0, out_, ws, w, first ? 0.0f : 1.0f,
               dx.data + i0, in_);
          first = false;
        }
      });
    });
  }
  if (mode_.param_grad && weight_->any_trainable()) {
    ctx.pool->ParallelFor(static_cast<int64_t>(dw_tasks_.size()), [&](int64_t t, int worker) {
      const RowRun& r = dw_tasks_[t];
      float* g = ctx.workspace + worker * tile_;
      if (tied_ != nullptr) g = tied_->TiedGradient() + r.packed * in_;  // completed there
      Gemm(true, false, r.end - r.begin, in_, n, 1.0f, dy.data + r.begin, out_, x.data, in_, 0.0f,
           g, in_);
      if (tied_ == nullptr) ctx.grads->Commit(*weight_, r.packed, r.end - r.begin, g);
    });
  }
  if (mode_.param_grad && bias_ && bias_->any_trainable()) {
    float* gb = ctx.workspace + pc_.threads * tile_;
    for (const RowRun& r : bias_->runs()) {
      float* g = gb + r.packed;
      for (int64_t o = r.begin; o < r.end; ++o) g[o - r.begin] = 0.0f;
      for (int64_t i = 0; i < n; ++i) {
        const float* d = dy.data + i * out_;
        for (int64_t o = r.begin; o < r.end; ++o) g[o - r.begin] += d[o];
      }
    }
    ctx.grads->Commit(*bias_, 0, bias_->trainable_rows(), gb);
  }
}

Flops Linear::CountFlops(const Shape& in, LayerMode m) const {
  const int64_t n = RowsOf(in);
  Flops f;
  f.forward = 2 * n * in_ * out_ + (bias_ ? n * out_ : 0);
  if (m.param_grad) {
    f.backward += 2 * n * in_ * weight_->trainable_rows();
    if (bias_) f.backward += n * bias_->trainable_rows();
  }
  if (m.input_grad) f.backward += 2 * n * in_ * out_;
  return f;
}

}  // namespace ftte
