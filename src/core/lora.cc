// LoraLinear: the base Linear does its own work (and its own int8 handling); the adapter adds
// two thin GEMMs through the rank-r bottleneck u = x A^T in forward and v = dy B in backward.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "ftte/core/check.h"
#include "ftte/core/kernels.h"
#include "ftte/core/layers_lm.h"

namespace ftte {

namespace {
// Fixed task sizes (never derived from the thread count, see thread_pool.h).
constexpr int64_t kRowBlock = 256;  // rows of x per bottleneck task
constexpr int64_t kOutBlock = 128;  // output features per task
constexpr int64_t kInBlock = 256;   // input features per task

int64_t RowsOf(const Shape& s) { return NumElements(s) / s.back(); }
}  // namespace

LoraLinear::LoraLinear(int64_t in, int64_t out, bool bias, LoraOptions lora, MemoryTracker* tracker)
    : in_(in),
      out_(out),
      rank_(lora.rank),
      alpha_(lora.alpha),
      scale_(lora.alpha / static_cast<float>(std::max<int64_t>(lora.rank, 1))),
      has_bias_(bias),
      base_(in, out, bias, tracker),
      lora_a_("lora_a", {std::max<int64_t>(lora.rank, 1), in}, tracker),
      lora_b_("lora_b", {out, std::max<int64_t>(lora.rank, 1)}, tracker) {
  FTTE_CHECK(lora.rank >= 1) << "LoraLinear: rank must be >= 1, got " << lora.rank;
  lora_a_.set_int8_allowed(false);
  lora_b_.set_int8_allowed(false);
}

std::string LoraLinear::Describe() const {
  std::ostringstream s;
  s << "LoraLinear(" << in_ << ", " << out_ << (has_bias_ ? "" : ", bias=false")
    << ", rank=" << rank_ << ", alpha=" << alpha_ << ")";
  return s.str();
}

std::vector<Parameter*> LoraLinear::Params() {
  std::vector<Parameter*> p = base_.Params();
  p.push_back(&lora_a_);
  p.push_back(&lora_b_);
  return p;
}

void LoraLinear::InitParams(Rng& rng) {
  base_.InitParams(rng);
  // kaiming_uniform_(a=sqrt(5)) on [r, in]: bound = sqrt(6 / ((1 + 5) in)) = 1 / sqrt(in).
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_));
  float* a = lora_a_.data();
  for (int64_t i = 0; i < lora_a_.numel(); ++i) {
    a[i] = static_cast<float>((2 * rng.Uniform() - 1) * bound);
  }
  std::fill(lora_b_.data(), lora_b_.data() + lora_b_.numel(), 0.0f);
}

LayerMode LoraLinear::BaseMode(LayerMode m) const {
  return {m.param_grad && base_.HasTrainable(), m.input_grad};
}

bool LoraLinear::NeedsInput(LayerMode m) const {
  return base_.NeedsInput(BaseMode(m)) || (m.param_grad && lora_a_.any_trainable());
}

// With backward, x A^T is kept and dy B has a buffer; forward only, x A^T is workspace (the base
// Linear has finished with the arena by then). The adapters' gradients are workspace, used
// after the base Linear's backward.
void LoraLinear::PlanOwn(const Shape& in, LayerMode m, MemoryPlan* plan) const {
  const int64_t bottleneck = RowsOf(in) * rank_;
  if (m.backward()) {
    plan->Add(MemCategory::kActivations, FloatBytes(bottleneck), "lora x A^T");
    plan->Add(MemCategory::kActGrads, FloatBytes(bottleneck), "lora dy B");
  } else {
    plan->AddWorkspace(FloatBytes(bottleneck), "lora x A^T");
  }
  if (m.param_grad) {
    plan->AddWorkspace(FloatBytes(lora_a_.trainable_numel() + lora_b_.trainable_numel()),
                       "lora adapter gradients");
  }
}

void LoraLinear::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  PlanOwn(in, m, plan);
  base_.Plan(in, BaseMode(m), pc, plan);
}

void LoraLinear::Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
                         MemoryTracker* tracker) {
  mode_ = m;
  pc_ = pc;
  MemoryPlan own;
  PlanOwn(in, m, &own);  // the kept buffers; the workspace comes with each call
  buffers_.clear();
  for (const auto& r : own.requests) {
    buffers_.emplace_back(tracker, r.category, static_cast<size_t>(r.bytes));
  }
  base_.Prepare(in, BaseMode(m), pc, tracker);
}

void LoraLinear::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t rows = RowsOf(x.shape), r = rank_;
  base_.Forward(x, y, ctx);
  float* u = mode_.backward() ? static_cast<float*>(buffers_[0].data()) : ctx.workspace;
  const float* a = lora_a_.data();
  const float* b = lora_b_.data();
  ctx.pool->ParallelFor(NumBlocks(rows, kRowBlock), [&](int64_t t, int) {
    const int64_t r0 = t * kRowBlock, r1 = std::min(rows, r0 + kRowBlock);
    Gemm(false, true, r1 - r0, r, in_, 1.0f, x.data + r0 * in_, in_, a, in_, 0.0f, u + r0 * r, r);
  });
  ctx.pool->ParallelFor(NumBlocks(out_, kOutBlock), [&](int64_t t, int) {
    const int64_t o0 = t * kOutBlock, o1 = std::min(out_, o0 + kOutBlock);
    Gemm(false, true, rows, o1 - o0, r, scale_, u, r, b + o0 * r, r, 1.0f, y.data + o0, out_);
  });
}

void LoraLinear::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  const int64_t rows = RowsOf(dy.shape), r = rank_;
  const bool grad_a = mode_.param_grad && lora_a_.any_trainable();
  const bool grad_b = mode_.param_grad && lora_b_.any_trainable();
  const float* u = static_cast<const float*>(buffers_[0].data());
  float* v = static_cast<float*>(buffers_[1].data());
  const float* a = lora_a_.data();
  const float* b = lora_b_.data();
  const int64_t in_blocks = NumBlocks(in_, kInBlock);
  if (grad_a || mode_.input_grad) {
    ctx.pool->ParallelFor(NumBlocks(rows, kRowBlock), [&](int64_t t, int) {
      const int64_t r0 = t * kRowBlock, r1 = std::min(rows, r0 + kRowBlock);
      Gemm(false, false, r1 - r0, r, out_, 1.0f, dy.data + r0 * out_, out_, b, r, 0.0f, v + r0 * r,
           r);
    });
  }
  const LayerMode bm = BaseMode(mode_);
  if (bm.backward()) base_.Backward(x, y, dy, bm.input_grad ? dx : View{}, ctx);
  // dx += scale v A before A's gradient is committed (which may update A at once).
  if (mode_.input_grad) {
    ctx.pool->ParallelFor(in_blocks, [&](int64_t t, int) {
      const int64_t i0 = t * kInBlock, i1 = std::min(in_, i0 + kInBlock);
      Gemm(false, false, rows, i1 - i0, r, scale_, v, r, a + i0, in_, 1.0f, dx.data + i0, in_);
    });
  }
  // dB = scale dy^T u over trainable rows of B (output features); dA = scale v^T x over
  // trainable rows of A, split by input-feature blocks.
  std::vector<RowRun> none;
  const std::vector<RowRun>& b_runs = grad_b ? lora_b_.runs() : none;
  const std::vector<RowRun>& a_runs = grad_a ? lora_a_.runs() : none;
  const auto b_tasks = static_cast<int64_t>(b_runs.size());
  const auto a_tasks = static_cast<int64_t>(a_runs.size()) * in_blocks;
  float* ga = ctx.workspace;
  float* gb = ga + lora_a_.trainable_numel();
  if (b_tasks + a_tasks > 0) {
    ctx.pool->ParallelFor(b_tasks + a_tasks, [&](int64_t t, int) {
      if (t < b_tasks) {
        const RowRun& run = b_runs[t];
        Gemm(true, false, run.end - run.begin, r, rows, scale_, dy.data + run.begin, out_, u, r,
             0.0f, gb + run.packed * r, r);
        return;
      }
      const RowRun& run = a_runs[(t - b_tasks) / in_blocks];
      const int64_t c0 = ((t - b_tasks) % in_blocks) * kInBlock, c1 = std::min(in_, c0 + kInBlock);
      Gemm(true, false, run.end - run.begin, c1 - c0, rows, scale_, v + run.begin, r, x.data + c0,
           in_, 0.0f, ga + run.packed * in_ + c0, in_);
    });
  }
  if (grad_a) ctx.grads->Commit(lora_a_, 0, lora_a_.trainable_rows(), ga);
  if (grad_b) ctx.grads->Commit(lora_b_, 0, lora_b_.trainable_rows(), gb);
}

Flops LoraLinear::CountFlops(const Shape& in, LayerMode m) const {
  const int64_t rows = RowsOf(in), r = rank_;
  Flops f = base_.CountFlops(in, BaseMode(m));
  f.forward += 2 * rows * r * (in_ + out_);
  const bool grad_a = m.param_grad && lora_a_.any_trainable();
  if (grad_a || m.input_grad) f.backward += 2 * rows * out_ * r;
  if (m.param_grad) {
    f.backward += 2 * rows * (r * lora_b_.trainable_rows() + in_ * lora_a_.trainable_rows());
  }
  if (m.input_grad) f.backward += 2 * rows * r * in_;
  return f;
}

}  // namespace ftte
