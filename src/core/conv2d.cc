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

// Output rows per im2col tile of `tile` floats (at least one row).
int64_t TileRows(const ConvGeometry& g, int64_t tile) {
  return std::clamp<int64_t>(tile / (g.col_rows() * g.out_width()), 1, g.out_height());
}
int64_t NumTiles(const ConvGeometry& g, int64_t tile) {
  return NumBlocks(g.out_height(), TileRows(g, tile));
}
// Floats of one worker's im2col tile and the scratch Im2ColRows and Col2ImRowsAdd work in.
int64_t ColFloats(const ConvGeometry& g, int64_t tile) {
  return IsPointwise(g) ? 0 : g.col_rows() * TileRows(g, tile) * g.out_width() + g.scratch_size();
}
// Rows of a dequantised weight tile.
int64_t WeightTileRows(int64_t out_c, int64_t ckk, int64_t tile) {
  return std::clamp<int64_t>(tile / ckk, 1, out_c);
}

// Calls fn(w, rows_begin, rows_end) over the output channels in float32 blocks: float32
// segments as stored, int8 segments dequantised into `buf` (a tile of `tile` floats, at least
// one row) a block at a time.
template <typename F>
void ForEachWeightBlock(const Parameter& w, int64_t ckk, int64_t tile, float* buf, F&& fn) {
  const int64_t block = WeightTileRows(w.rows(), ckk, tile);
  w.ForEachSegment(0, w.rows(), [&](const RowSegment& s) {
    if (s.f32 != nullptr) {
      fn(s.f32, s.begin, s.end);
      return;
    }
    for (int64_t r0 = s.begin; r0 < s.end; r0 += block) {
      const int64_t r1 = std::min(s.end, r0 + block);
      for (int64_t r = r0; r < r1; ++r) {
        const float scale = s.scale[r - s.begin];
        const int8_t* src = s.q + (r - s.begin) * ckk;
        float* dst = buf + (r - r0) * ckk;
        for (int64_t j = 0; j < ckk; ++j) dst[j] = scale * static_cast<float>(src[j]);
      }
      fn(buf, r0, r1);
    }
  });
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

// Workspace: per worker, an im2col tile and a dequantised weight tile; then, with parameter
// gradients, the weight gradient, the partial sums of the sample chunks after the first, and
// the bias gradient.
Conv2d::WorkspaceLayout Conv2d::Layout(const Shape& in, LayerMode m, const PlanContext& pc) const {
  ConvGeometry g = GeometryOf(in, kernel_, stride_, padding_);
  WorkspaceLayout w;
  w.tile = pc.tile_floats;
  w.col = ColFloats(g, w.tile);
  w.weight = weight_.QuantizedUnder(pc.frozen)
                 ? WeightTileRows(out_c_, g.col_rows(), w.tile) * g.col_rows()
                 : 0;
  if (m.param_grad) {
    const int64_t tn = weight_.trainable_numel();
    w.grad = tn;
    w.partials = std::max<int64_t>(NumBlocks(in[0], kSampleChunk) - 1, 0) * tn;
    w.bias = bias_ ? bias_->trainable_rows() : 0;
  }
  return w;
}

void Conv2d::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  const WorkspaceLayout w = Layout(in, m, pc);
  plan->AddWorkspace(FloatBytes(w.Total(pc.threads)),
                     "conv im2col and weight tiles, weight gradient and its chunk sums");
}

void Conv2d::Prepare(const Shape& in, LayerMode m, const PlanContext& pc, MemoryTracker* tracker) {
  Layer::Prepare(in, m, pc, tracker);
  FTTE_CHECK(weight_.quantized() == weight_.QuantizedUnder(pc.frozen))
      << weight_.name() << ": storage changed after planning";
  prepared_batch_ = in[0];
  layout_ = Layout(in, m, pc);
}

void Conv2d::Forward(const View& x, View y, ExecContext& ctx) {
  ConvGeometry g = GeometryOf(x.shape, kernel_, stride_, padding_);
  const int64_t ckk = g.col_rows(), l = g.col_cols(), ow = g.out_width();
  const int64_t sample = in_c_ * g.height * g.width, tile_rows = TileRows(g, layout_.tile);
  const int64_t tiles = IsPointwise(g) ? 1 : NumTiles(g, layout_.tile);
  const float* b = bias_ ? bias_->data() : nullptr;
  // One task per (sample, tile of output rows).
  ctx.pool->ParallelFor(x.shape[0] * tiles, [&](int64_t task, int worker) {
    const int64_t n = task / tiles, y0 = (task % tiles) * tile_rows;
    const int64_t y1 = IsPointwise(g) ? g.out_height() : std::min(g.out_height(), y0 + tile_rows);
    const int64_t l0 = y0 * ow, cols = (y1 - y0) * ow;
    float* ws = ctx.workspace + worker * layout_.PerWorker();
    const float* xn = x.data + n * sample;
    const float* col = xn;
    if (!IsPointwise(g)) {
      Im2ColRows(g, xn, y0, y1, ws, ws + ckk * cols);
      col = ws;
    }
    float* yn = y.data + n * out_c_ * l + l0;
    // The bias goes in first and the product is added to it: one pass over y, not two.
    if (b != nullptr) {
      for (int64_t o = 0; o < out_c_; ++o) std::fill(yn + o * l, yn + o * l + cols, b[o]);
    }
    ForEachWeightBlock(weight_, ckk, layout_.tile, ws + layout_.col,
                       [&](const float* w, int64_t r0, int64_t r1) {
                         Gemm(false, false, r1 - r0, cols, ckk, 1.0f, w, ckk, col, cols,
                              b != nullptr ? 1.0f : 0.0f, yn + r0 * l, l);
                       });
  });
}

void Conv2d::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  ConvGeometry g = GeometryOf(dx.empty() ? x.shape : dx.shape, kernel_, stride_, padding_);
  // dx first: committing the gradients may update the weights at once.
  if (mode_.input_grad) InputGrad(g, dy, dx, ctx);
  if (mode_.param_grad && weight_.any_trainable()) WeightGrad(g, x, dy, ctx);
  if (mode_.param_grad && bias_ && bias_->any_trainable()) BiasGrad(g, dy, ctx);
}

void Conv2d::WeightGrad(const ConvGeometry& g, const View& x, const View& dy, ExecContext& ctx) {
  const int64_t ckk = g.col_rows(), l = g.col_cols(), ow = g.out_width();
  const int64_t sample = in_c_ * g.height * g.width, batch = dy.shape[0];
  const int64_t tile_rows = TileRows(g, layout_.tile),
                tiles = IsPointwise(g) ? 1 : NumTiles(g, layout_.tile);
  FTTE_CHECK(batch <= prepared_batch_);
  const int64_t tn = weight_.trainable_numel();
  const int64_t chunks = NumBlocks(batch, kSampleChunk);
  float* gw = ctx.workspace + layout_.Shared(pc_.threads);
  float* partials = gw + tn;
  // With several chunks, each sums its samples' gradients transposed, [ckk, rows] per run of
  // trainable rows (as col * dy^T, a GEMM shape that runs faster than dy * col^T); the sums
  // are then added in chunk order and transposed into gw. Chunk 0 sums into gw itself (as
  // scratch), chunk c > 0 into partial c - 1; the total goes to partial 0 (chunks > 1).
  const bool transposed = chunks > 1;
  auto sums_of = [&](int64_t c) { return c == 0 ? gw : partials + (c - 1) * tn; };
  ctx.pool->ParallelFor(chunks, [&](int64_t c, int worker) {
    float* pc = sums_of(c);
    float* ws = ctx.workspace + worker * layout_.PerWorker();
    bool first = true;
    for (int64_t n = c * kSampleChunk; n < std::min(batch, (c + 1) * kSampleChunk); ++n) {
      const float* xn = x.data + n * sample;
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t y0 = t * tile_rows;
        const int64_t y1 =
            IsPointwise(g) ? g.out_height() : std::min(g.out_height(), y0 + tile_rows);
        const int64_t l0 = y0 * ow, cols = (y1 - y0) * ow;
        const float* col = xn;
        if (!IsPointwise(g)) {
          Im2ColRows(g, xn, y0, y1, ws, ws + ckk * cols);
          col = ws;
        }
        const float* dyn = dy.data + n * out_c_ * l + l0;
        const float beta = first ? 0.0f : 1.0f;
        for (const RowRun& r : weight_.runs()) {
          const int64_t rows = r.end - r.begin;
          if (transposed) {
            Gemm(false, true, ckk, rows, cols, 1.0f, col, cols, dyn + r.begin * l, l, beta,
                 pc + r.packed * ckk, rows);
          } else {
            Gemm(false, true, rows, ckk, cols, 1.0f, dyn + r.begin * l, l, col, cols, beta,
                 pc + r.packed * ckk, ckk);
          }
        }
        first = false;
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
  ctx.grads->Commit(weight_, 0, weight_.trainable_rows(), gw);
}

void Conv2d::BiasGrad(const ConvGeometry& g, const View& dy, ExecContext& ctx) {
  const int64_t l = g.col_cols(), batch = dy.shape[0];
  float* gb = ctx.workspace + layout_.Shared(pc_.threads) + layout_.grad + layout_.partials;
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
  ctx.grads->Commit(*bias_, 0, bias_->trainable_rows(), gb);
}

void Conv2d::InputGrad(const ConvGeometry& g, const View& dy, View dx, ExecContext& ctx) {
  const int64_t ckk = g.col_rows(), l = g.col_cols(), ow = g.out_width();
  const int64_t sample = in_c_ * g.height * g.width, batch = dy.shape[0];
  const int64_t tile_rows = TileRows(g, layout_.tile), tiles = NumTiles(g, layout_.tile);
  // One task per sample: its tiles add into the same pixels of dx, so they run in order.
  ctx.pool->ParallelFor(batch, [&](int64_t n, int worker) {
    const float* dyn = dy.data + n * out_c_ * l;
    float* dxn = dx.data + n * sample;
    float* ws = ctx.workspace + worker * layout_.PerWorker();
    float* wtile = ws + layout_.col;
    if (IsPointwise(g)) {
      // dx = W^T dy, summed over blocks of output channels.
      bool first = true;
      ForEachWeightBlock(weight_, ckk, layout_.tile, wtile,
                         [&](const float* w, int64_t r0, int64_t r1) {
                           Gemm(true, false, ckk, l, r1 - r0, 1.0f, w, ckk, dyn + r0 * l, l,
                                first ? 0.0f : 1.0f, dxn, l);
                           first = false;
                         });
      return;
    }
    if (tiles > 1) std::fill(dxn, dxn + sample, 0.0f);
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t y0 = t * tile_rows, y1 = std::min(g.out_height(), y0 + tile_rows);
      const int64_t l0 = y0 * ow, cols = (y1 - y0) * ow;
      bool first = true;
      ForEachWeightBlock(weight_, ckk, layout_.tile, wtile,
                         [&](const float* w, int64_t r0, int64_t r1) {
                           Gemm(true, false, ckk, cols, r1 - r0, 1.0f, w, ckk, dyn + r0 * l + l0, l,
                                first ? 0.0f : 1.0f, ws, cols);
                           first = false;
                         });
      if (tiles == 1) {
        Col2Im(g, ws, dxn, ws + ckk * cols);
      } else {
        Col2ImRowsAdd(g, ws, y0, y1, dxn, ws + ckk * cols);
      }
    }
  });
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
