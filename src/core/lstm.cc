// LSTM: the input projection of all steps is one GEMM; the recurrence runs step by step, each
// step split over blocks of hidden units (a unit's four gates live in the same task, so the
// cell update needs no second pass). Backward walks the steps in reverse, overwriting each
// step's saved gate activations with the gradients of the gate pre-activations, then computes
// the weight gradients and dx with GEMMs over all steps. Frozen weight rows may be int8 (per-row
// scale): every product reads the weights through GemmRowsNT / GemmAllRowsNN, which dequantise
// int8 rows a worker tile at a time, so a frozen matrix never exists as float32.
#include <algorithm>
#include <cmath>

#include "ftte/core/check.h"
#include "ftte/core/kernels.h"
#include "ftte/core/layers_lm.h"

namespace ftte {

namespace {
// Fixed task sizes (never derived from the thread count, see thread_pool.h).
constexpr int64_t kOutBlock = 128;  // gate rows per input-projection / weight-gradient task
constexpr int64_t kHidBlock = 32;   // hidden units per recurrence task
constexpr int64_t kInBlock = 256;   // input features per input-gradient task
// Rough per-unit-and-step costs of the gate nonlinearities and cell update.
constexpr int64_t kCellForwardFlops = 40;
constexpr int64_t kCellBackwardFlops = 30;

float Sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

std::vector<RowRun> BlockTasks(const Parameter& p) {
  std::vector<RowRun> tasks;
  for (const RowRun& r : p.runs()) {
    for (int64_t b = r.begin; b < r.end; b += kOutBlock) {
      tasks.push_back({b, std::min(r.end, b + kOutBlock), r.packed + (b - r.begin)});
    }
  }
  return tasks;
}

// C[m, 0 : r1 - r0) (leading dimension ldc) = beta C + A W[r0:r1, :]^T, A being [m, k] with
// leading dimension lda and k = p.row_size(). Int8 rows are dequantised into `tile` (tile_floats
// floats) a block of rows at a time.
void GemmRowsNT(const Parameter& p, int64_t r0, int64_t r1, int64_t m, const float* a, int64_t lda,
                float beta, float* c, int64_t ldc, float* tile, int64_t tile_floats) {
  const int64_t k = p.row_size();
  p.ForEachSegment(r0, r1, [&](const RowSegment& s) {
    if (s.f32 != nullptr) {
      Gemm(false, true, m, s.end - s.begin, k, 1.0f, a, lda, s.f32, k, beta, c + (s.begin - r0),
           ldc);
      return;
    }
    const int64_t rows = std::max<int64_t>(1, tile_floats / k);
    for (int64_t b = s.begin; b < s.end; b += rows) {
      const int64_t e = std::min(s.end, b + rows);
      p.ReadRows(b, e, tile);
      Gemm(false, true, m, e - b, k, 1.0f, a, lda, tile, k, beta, c + (b - r0), ldc);
    }
  });
}

// C[m, c1 - c0] (ldc) = beta C + A W[:, c0:c1), A being [m, p.rows()] with leading dimension
// lda: the sum over all rows of W, int8 rows dequantised into `tile` a block at a time.
void GemmAllRowsNN(const Parameter& p, int64_t c0, int64_t c1, int64_t m, const float* a,
                   int64_t lda, float beta, float* c, int64_t ldc, float* tile,
                   int64_t tile_floats) {
  const int64_t k = p.row_size(), w = c1 - c0;
  float b_now = beta;
  p.ForEachSegment(0, p.rows(), [&](const RowSegment& s) {
    if (s.f32 != nullptr) {
      Gemm(false, false, m, w, s.end - s.begin, 1.0f, a + s.begin, lda, s.f32 + c0, k, b_now, c,
           ldc);
      b_now = 1.0f;
      return;
    }
    const int64_t rows = std::max<int64_t>(1, tile_floats / w);
    for (int64_t b = s.begin; b < s.end; b += rows) {
      const int64_t e = std::min(s.end, b + rows);
      p.ReadBlock(b, e, c0, c1, tile);
      Gemm(false, false, m, w, e - b, 1.0f, a + b, lda, tile, w, b_now, c, ldc);
      b_now = 1.0f;
    }
  });
}

// Worker w's tile, or null when no tiles were planned (every weight row is float32).
float* Tile(float* tiles, int worker, int64_t tile_floats) {
  return tiles == nullptr ? nullptr : tiles + worker * tile_floats;
}

std::vector<int64_t> PackedRows(const Parameter& p) {
  std::vector<int64_t> rows(static_cast<size_t>(p.rows()), -1);
  for (const RowRun& r : p.runs()) {
    for (int64_t i = r.begin; i < r.end; ++i) rows[i] = r.packed + i - r.begin;
  }
  return rows;
}
}  // namespace

LSTM::LSTM(int64_t input, int64_t hidden, MemoryTracker* tracker)
    : input_(input),
      hidden_(hidden),
      weight_ih_("weight_ih", {4 * hidden, input}, tracker),
      weight_hh_("weight_hh", {4 * hidden, hidden}, tracker),
      bias_ih_("bias_ih", {4 * hidden}, tracker),
      bias_hh_("bias_hh", {4 * hidden}, tracker) {
  FTTE_CHECK(input > 0 && hidden > 0)
      << "LSTM: sizes must be positive, got " << input << ", " << hidden;
}

int64_t LSTM::TileFloats() const { return kOutBlock * std::max(input_, hidden_); }

bool LSTM::AnyInt8(const PlanContext& pc) const {
  return weight_ih_.QuantizedUnder(pc.frozen) || weight_hh_.QuantizedUnder(pc.frozen);
}

float* LSTM::Tiles(ExecContext& ctx) const {
  if (mode_.backward()) {
    return mode_.param_grad || AnyInt8(pc_) ? ctx.workspace : nullptr;
  }
  return AnyInt8(pc_) ? ctx.workspace + capacity_ * 4 * hidden_ + batch_ * hidden_ : nullptr;
}

std::string LSTM::Describe() const {
  return "LSTM(" + std::to_string(input_) + ", " + std::to_string(hidden_) + ")";
}

Result<Shape> LSTM::OutputShape(const Shape& in) const {
  if (in.size() != 3 || in[2] != input_) {
    return InvalidArgument(Describe() + ": expected input [N, T, " + std::to_string(input_) +
                           "], got " + ShapeToString(in));
  }
  return Shape{in[0], in[1], hidden_};
}

std::vector<Parameter*> LSTM::Params() { return {&weight_ih_, &weight_hh_, &bias_ih_, &bias_hh_}; }

void LSTM::InitParams(Rng& rng) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden_));
  for (Parameter* p : Params()) {
    float* d = p->data();
    for (int64_t i = 0; i < p->numel(); ++i) {
      d[i] = static_cast<float>((2 * rng.Uniform() - 1) * bound);
    }
  }
}

void LSTM::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  const int64_t n = in[0], steps = in[1], h = hidden_;
  if (m.backward()) {
    plan->Add(MemCategory::kActivations, FloatBytes(n * steps * 4 * h), "lstm gates");
    plan->Add(MemCategory::kActivations, FloatBytes(n * steps * h), "lstm cell states");
    plan->Add(MemCategory::kActGrads, FloatBytes(n * h), "lstm hidden-state gradient");
    plan->Add(MemCategory::kActGrads, FloatBytes(n * h), "lstm cell-state gradient");
    if (m.param_grad) {
      // Per worker a block of weight-gradient rows (or of dequantised rows); then both bias
      // gradients.
      plan->AddWorkspace(FloatBytes(pc.threads * TileFloats() + bias_ih_.trainable_rows() +
                                    bias_hh_.trainable_rows()),
                         "lstm weight-gradient blocks and bias gradients");
    } else if (AnyInt8(pc)) {
      plan->AddWorkspace(FloatBytes(pc.threads * TileFloats()), "lstm dequantised weight tiles");
    }
  } else {
    plan->AddWorkspace(
        FloatBytes(n * steps * 4 * h + n * h + (AnyInt8(pc) ? pc.threads * TileFloats() : 0)),
        "lstm gates and cell state");
  }
}

void LSTM::Prepare(const Shape& in, LayerMode m, const PlanContext& pc, MemoryTracker* tracker) {
  Layer::Prepare(in, m, pc, tracker);
  for (const Parameter* p : {&weight_ih_, &weight_hh_}) {
    FTTE_CHECK(p->quantized() == p->QuantizedUnder(pc.frozen))
        << p->name() << ": storage changed after planning";
  }
  batch_ = in[0];
  capacity_ = in[0] * in[1];
  ih_tasks_ = BlockTasks(weight_ih_);
  hh_tasks_ = BlockTasks(weight_hh_);
  bias_ih_row_ = PackedRows(bias_ih_);
  bias_hh_row_ = PackedRows(bias_hh_);
}

void LSTM::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t n = x.shape[0], steps = x.shape[1], h = hidden_, g4 = 4 * h;
  if (n == 0 || steps == 0) return;
  FTTE_CHECK(n * steps <= capacity_)
      << Describe() << ": input " << ShapeToString(x.shape) << " larger than prepared";
  const bool keep = mode_.backward();
  float* g = keep ? slot(0) : ctx.workspace;
  float* c = keep ? slot(1) : ctx.workspace + capacity_ * g4;
  const float* bih = bias_ih_.data();
  const float* bhh = bias_hh_.data();
  float* tiles = Tiles(ctx);
  const int64_t tile = TileFloats();
  // Input projection and both biases, for all steps at once.
  ctx.pool->ParallelFor(NumBlocks(g4, kOutBlock), [&](int64_t t, int worker) {
    const int64_t o0 = t * kOutBlock, o1 = std::min(g4, o0 + kOutBlock);
    GemmRowsNT(weight_ih_, o0, o1, n * steps, x.data, input_, 0.0f, g + o0, g4,
               Tile(tiles, worker, tile), tile);
    for (int64_t r = 0; r < n * steps; ++r) {
      float* gr = g + r * g4;
      for (int64_t o = o0; o < o1; ++o) gr[o] += bih[o] + bhh[o];
    }
  });
  for (int64_t s = 0; s < steps; ++s) {
    ctx.pool->ParallelFor(NumBlocks(h, kHidBlock), [&](int64_t t, int worker) {
      const int64_t j0 = t * kHidBlock, j1 = std::min(h, j0 + kHidBlock);
      if (s > 0) {
        for (int64_t q = 0; q < 4; ++q) {
          GemmRowsNT(weight_hh_, q * h + j0, q * h + j1, n, y.data + (s - 1) * h, steps * h, 1.0f,
                     g + s * g4 + q * h + j0, steps * g4, Tile(tiles, worker, tile), tile);
        }
      }
      for (int64_t i = 0; i < n; ++i) {
        float* gr = g + (i * steps + s) * g4;
        float* cr = keep ? c + (i * steps + s) * h : c + i * h;
        const float* cprev = !keep ? cr : s > 0 ? cr - h : nullptr;  // read before cr is written
        float* hr = y.data + (i * steps + s) * h;
        for (int64_t j = j0; j < j1; ++j) {
          const float ig = Sigmoid(gr[j]), fg = Sigmoid(gr[h + j]);
          const float gg = std::tanh(gr[2 * h + j]), og = Sigmoid(gr[3 * h + j]);
          const float cv = (s > 0 ? fg * cprev[j] : 0.0f) + ig * gg;
          gr[j] = ig;
          gr[h + j] = fg;
          gr[2 * h + j] = gg;
          gr[3 * h + j] = og;
          cr[j] = cv;
          hr[j] = og * std::tanh(cv);
        }
      }
    });
  }
}

void LSTM::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  const int64_t n = dy.shape[0], steps = dy.shape[1], h = hidden_, g4 = 4 * h;
  if (n == 0 || steps == 0) return;
  float* g = slot(0);
  const float* c = slot(1);
  float* dh = slot(2);
  float* dc = slot(3);
  float* tiles = Tiles(ctx);
  const int64_t tile = TileFloats();
  for (int64_t s = steps - 1; s >= 0; --s) {
    ctx.pool->ParallelFor(NumBlocks(h, kHidBlock), [&](int64_t t, int worker) {
      const int64_t j0 = t * kHidBlock, j1 = std::min(h, j0 + kHidBlock);
      for (int64_t i = 0; i < n; ++i) {
        const float* d = dy.data + (i * steps + s) * h;
        std::copy(d + j0, d + j1, dh + i * h + j0);
      }
      // dh_s += dG_{s+1} W_hh (row s+1 of g already holds gradients).
      if (s + 1 < steps) {
        GemmAllRowsNN(weight_hh_, j0, j1, n, g + (s + 1) * g4, steps * g4, 1.0f, dh + j0, h,
                      Tile(tiles, worker, tile), tile);
      }
      for (int64_t i = 0; i < n; ++i) {
        float* gr = g + (i * steps + s) * g4;
        const float* cr = c + (i * steps + s) * h;
        for (int64_t j = j0; j < j1; ++j) {
          const float ig = gr[j], fg = gr[h + j], gg = gr[2 * h + j], og = gr[3 * h + j];
          const float cprev = s > 0 ? cr[j - h] : 0.0f;
          const float tc = std::tanh(cr[j]);
          const float dhv = dh[i * h + j];
          const float dcv = dhv * og * (1.0f - tc * tc) + (s + 1 < steps ? dc[i * h + j] : 0.0f);
          gr[j] = dcv * gg * ig * (1.0f - ig);
          gr[h + j] = dcv * cprev * fg * (1.0f - fg);
          gr[2 * h + j] = dcv * ig * (1.0f - gg * gg);
          gr[3 * h + j] = dhv * tc * og * (1.0f - og);
          dc[i * h + j] = dcv * fg;
        }
      }
    });
  }
  // dx first: committing the gradients may update the weights at once.
  if (mode_.input_grad) {
    ctx.pool->ParallelFor(NumBlocks(input_, kInBlock), [&](int64_t t, int worker) {
      const int64_t i0 = t * kInBlock, i1 = std::min(input_, i0 + kInBlock);
      GemmAllRowsNN(weight_ih_, i0, i1, n * steps, g, g4, 0.0f, dx.data + i0, input_,
                    Tile(tiles, worker, tile), tile);
    });
  }
  if (mode_.param_grad) GradWeights(x, y, n, steps, ctx);
}

// Slot 0 holds the gradients of the gate pre-activations dG [N, T, 4H]:
// dW_ih = dG^T x, dW_hh = sum over steps s >= 1 of dG_s^T h_{s-1}, db_ih = db_hh = sum dG.
void LSTM::GradWeights(const View& x, const View& y, int64_t n, int64_t steps, ExecContext& ctx) {
  const int64_t h = hidden_, g4 = 4 * h, tile = kOutBlock * std::max(input_, h);
  const float* g = slot(0);
  const auto ih = static_cast<int64_t>(ih_tasks_.size());
  const auto hh = static_cast<int64_t>(hh_tasks_.size());
  const bool any_bias = bias_ih_.any_trainable() || bias_hh_.any_trainable();
  const int64_t bias_tasks = any_bias ? NumBlocks(g4, kOutBlock) : 0;
  float* gbih = ctx.workspace + pc_.threads * tile;
  float* gbhh = gbih + bias_ih_.trainable_rows();
  ctx.pool->ParallelFor(ih + hh + bias_tasks, [&](int64_t t, int worker) {
    float* out = ctx.workspace + worker * tile;
    if (t < ih) {
      const RowRun& r = ih_tasks_[t];
      Gemm(true, false, r.end - r.begin, input_, n * steps, 1.0f, g + r.begin, g4, x.data, input_,
           0.0f, out, input_);
      ctx.grads->Commit(weight_ih_, r.packed, r.end - r.begin, out);
      return;
    }
    if (t < ih + hh) {
      const RowRun& r = hh_tasks_[t - ih];
      std::fill(out, out + (r.end - r.begin) * h, 0.0f);
      for (int64_t i = 0; i < n && steps >= 2; ++i) {
        Gemm(true, false, r.end - r.begin, h, steps - 1, 1.0f, g + (i * steps + 1) * g4 + r.begin,
             g4, y.data + i * steps * h, h, 1.0f, out, h);
      }
      ctx.grads->Commit(weight_hh_, r.packed, r.end - r.begin, out);
      return;
    }
    const int64_t o0 = (t - ih - hh) * kOutBlock, o1 = std::min(g4, o0 + kOutBlock);
    for (int64_t o = o0; o < o1; ++o) {
      const int64_t ri = bias_ih_row_[o], rh = bias_hh_row_[o];
      if (ri < 0 && rh < 0) continue;
      float sum = 0;
      for (int64_t r = 0; r < n * steps; ++r) sum += g[r * g4 + o];
      if (ri >= 0) gbih[ri] = sum;
      if (rh >= 0) gbhh[rh] = sum;
    }
  });
  if (bias_ih_.any_trainable()) ctx.grads->Commit(bias_ih_, 0, bias_ih_.trainable_rows(), gbih);
  if (bias_hh_.any_trainable()) ctx.grads->Commit(bias_hh_, 0, bias_hh_.trainable_rows(), gbhh);
}

Flops LSTM::CountFlops(const Shape& in, LayerMode m) const {
  const int64_t tokens = in[0] * in[1], h = hidden_;
  Flops f;
  f.forward = 2 * tokens * 4 * h * (input_ + h) + kCellForwardFlops * tokens * h;
  if (!m.backward()) return f;
  f.backward = 2 * tokens * 4 * h * h + kCellBackwardFlops * tokens * h;
  if (m.param_grad) {
    f.backward +=
        2 * tokens * (input_ * weight_ih_.trainable_rows() + h * weight_hh_.trainable_rows());
    f.backward += tokens * (bias_ih_.trainable_rows() + bias_hh_.trainable_rows());
  }
  if (m.input_grad) f.backward += 2 * tokens * 4 * h * input_;
  return f;
}

}  // namespace ftte
