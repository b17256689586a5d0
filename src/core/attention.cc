// CausalSelfAttention: the qkv and output projections are child layers (Linear or LoraLinear);
// the attention core between them runs one task per (sample, head), each with its own GEMMs on
// strided views of the packed qkv buffer, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>

#include "ftte/core/check.h"
#include "ftte/core/kernels.h"
#include "ftte/core/layers_lm.h"

namespace ftte {

namespace {
constexpr int64_t kSoftmaxFlops = 5;  // per score: max, exp, sum, scale (rough)

std::unique_ptr<Layer> Projection(int64_t in, int64_t out, LoraOptions lora, MemoryTracker* t) {
  if (lora.rank > 0) return std::make_unique<LoraLinear>(in, out, true, lora, t);
  return std::make_unique<Linear>(in, out, true, t);
}

enum Slot { kQkv, kProbs, kHeads, kHeadsGrad, kQkvGrad, kScratch };
}  // namespace

CausalSelfAttention::CausalSelfAttention(int64_t dim, int64_t heads, MemoryTracker* tracker,
                                         LoraOptions lora)
    : dim_(dim),
      heads_(heads),
      lora_(lora),
      qkv_(Projection(dim, 3 * dim, lora, tracker)),
      proj_(Projection(dim, dim, lora, tracker)) {
  FTTE_CHECK(dim > 0 && heads > 0 && dim % heads == 0)
      << "CausalSelfAttention: dim (" << dim << ") must be a positive multiple of heads (" << heads
      << ")";
}

CausalSelfAttention::~CausalSelfAttention() = default;

std::string CausalSelfAttention::Describe() const {
  std::string s =
      "CausalSelfAttention(" + std::to_string(dim_) + ", heads=" + std::to_string(heads_);
  if (lora_.rank > 0) s += ", lora_rank=" + std::to_string(lora_.rank);
  return s + ")";
}

Result<Shape> CausalSelfAttention::OutputShape(const Shape& in) const {
  if (in.size() != 3 || in[2] != dim_) {
    return InvalidArgument(Describe() + ": expected input [N, T, " + std::to_string(dim_) +
                           "], got " + ShapeToString(in));
  }
  return in;
}

std::vector<Parameter*> CausalSelfAttention::Params() {
  std::vector<Parameter*> p = qkv_->Params();
  for (Parameter* q : proj_->Params()) p.push_back(q);
  return p;
}

void CausalSelfAttention::AssignNames(const std::string& prefix) {
  qkv_->AssignNames(prefix + "qkv.");
  proj_->AssignNames(prefix + "proj.");
}

void CausalSelfAttention::InitParams(Rng& rng) {
  qkv_->InitParams(rng);
  proj_->InitParams(rng);
}

LayerMode CausalSelfAttention::QkvMode(LayerMode m) const {
  return {m.param_grad && qkv_->HasTrainable(), m.input_grad};
}

LayerMode CausalSelfAttention::ProjMode(LayerMode m) const {
  if (!m.backward()) return {};
  return {m.param_grad && proj_->HasTrainable(), QkvMode(m).backward()};
}

bool CausalSelfAttention::NeedsInput(LayerMode m) const { return qkv_->NeedsInput(QkvMode(m)); }

// With backward, qkv, the probabilities and the heads' output are kept and their gradients
// have buffers; the per-thread score gradients are workspace (used between the children's
// backward passes). Forward only, qkv, the probabilities and the heads' output are workspace held
// while the projections run, so theirs comes after.
void CausalSelfAttention::PlanOwn(const Shape& in, LayerMode m, const PlanContext& pc,
                                  MemoryPlan* plan) const {
  const int64_t rows = in[0] * in[1], steps = in[1];
  if (!m.backward()) return;
  const bool core_bw = ProjMode(m).input_grad;
  plan->Add(MemCategory::kActivations, FloatBytes(rows * 3 * dim_), "attention qkv");
  plan->Add(MemCategory::kActivations, FloatBytes(in[0] * heads_ * steps * steps),
            "attention probabilities");
  plan->Add(MemCategory::kActivations, FloatBytes(rows * dim_), "attention heads' output");
  plan->Add(MemCategory::kActGrads, core_bw ? FloatBytes(rows * dim_) : 0,
            "attention heads' output gradient");
  plan->Add(MemCategory::kActGrads, core_bw ? FloatBytes(rows * 3 * dim_) : 0,
            "attention qkv gradient");
  plan->AddWorkspace(core_bw ? FloatBytes(pc.threads * steps * steps) : 0,
                     "attention per-thread score gradients");
}

// Floats of the forward-only workspace held while the projections run.
int64_t CausalSelfAttention::ForwardOnlyFloats(const Shape& in, int threads) const {
  const int64_t rows = in[0] * in[1], steps = in[1];
  return rows * 3 * dim_ + threads * steps * steps + rows * dim_;
}

void CausalSelfAttention::Plan(const Shape& in, LayerMode m, const PlanContext& pc,
                               MemoryPlan* plan) const {
  PlanOwn(in, m, pc, plan);
  MemoryPlan children;
  qkv_->Plan(in, QkvMode(m), pc, &children);
  proj_->Plan(in, ProjMode(m), pc, &children);
  plan->requests.insert(plan->requests.end(), children.requests.begin(), children.requests.end());
  if (m.backward()) {
    plan->AddWorkspace(children.workspace, children.workspace_what);
  } else {
    plan->AddWorkspace(
        FloatBytes(ForwardOnlyFloats(in, pc.threads)) + children.workspace,
        "attention qkv, probabilities and heads (forward only), then " + children.workspace_what);
  }
}

void CausalSelfAttention::Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
                                  MemoryTracker* tracker) {
  mode_ = m;
  pc_ = pc;
  MemoryPlan own;
  PlanOwn(in, m, pc, &own);
  buffers_.clear();
  for (const auto& r : own.requests) {
    buffers_.emplace_back(tracker, r.category, static_cast<size_t>(r.bytes));
  }
  own_floats_ = m.backward() ? 0 : ForwardOnlyFloats(in, pc.threads);
  rows_cap_ = in[0] * in[1];
  qkv_->Prepare(in, QkvMode(m), pc, tracker);
  proj_->Prepare(in, ProjMode(m), pc, tracker);
}

float* CausalSelfAttention::Buf(int slot, const ExecContext& ctx) const {
  if (mode_.backward()) {
    return slot == kScratch ? ctx.workspace : static_cast<float*>(buffers_[slot].data());
  }
  switch (slot) {
    case kQkv:
      return ctx.workspace;
    case kProbs:
      return ctx.workspace + rows_cap_ * 3 * dim_;
    case kHeads:
      return ctx.workspace + own_floats_ - rows_cap_ * dim_;
  }
  FTTE_CHECK(false) << "attention buffer " << slot << " in forward-only mode";
  return nullptr;
}

void CausalSelfAttention::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t n = x.shape[0], steps = x.shape[1], c = dim_, d = dim_ / heads_;
  auto buf = [&](Slot s) { return Buf(s, ctx); };
  ExecContext child = ctx.After(own_floats_);
  const Shape qkv_shape{n, steps, 3 * c};
  float* qkv = buf(kQkv);
  float* heads_out = buf(kHeads);
  qkv_->Forward(x, View{qkv, qkv_shape}, child);
  const bool keep = mode_.backward();
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  ctx.pool->ParallelFor(n * heads_, [&](int64_t task, int worker) {
    const int64_t i = task / heads_, h = task % heads_;
    const float* q = qkv + i * steps * 3 * c + h * d;
    float* p = buf(kProbs) + (keep ? task : worker) * steps * steps;
    Gemm(false, true, steps, steps, d, scale, q, 3 * c, q + c, 3 * c, 0.0f, p, steps);
    for (int64_t a = 0; a < steps; ++a) {
      float* row = p + a * steps;
      const float mx = *std::max_element(row, row + a + 1);
      double sum = 0;
      for (int64_t b = 0; b <= a; ++b) {
        row[b] = std::exp(row[b] - mx);
        sum += row[b];
      }
      const auto inv = static_cast<float>(1.0 / sum);
      for (int64_t b = 0; b <= a; ++b) row[b] *= inv;
      std::fill(row + a + 1, row + steps, 0.0f);
    }
    Gemm(false, false, steps, d, steps, 1.0f, p, steps, q + 2 * c, 3 * c, 0.0f,
         heads_out + i * steps * c + h * d, c);
  });
  proj_->Forward(View{heads_out, x.shape}, y, child);
}

void CausalSelfAttention::Backward(const View& x, const View& y, const View& dy, View dx,
                                   ExecContext& ctx) {
  const int64_t n = dy.shape[0], steps = dy.shape[1], c = dim_, d = dim_ / heads_;
  auto buf = [&](Slot s) { return Buf(s, ctx); };
  const LayerMode pm = ProjMode(mode_);
  float* dheads = buf(kHeadsGrad);
  if (pm.backward()) {
    proj_->Backward(View{buf(kHeads), dy.shape}, y, dy,
                    pm.input_grad ? View{dheads, dy.shape} : View{}, ctx);
  }
  if (!pm.input_grad) return;
  const float* qkv = buf(kQkv);
  float* dqkv = buf(kQkvGrad);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  ctx.pool->ParallelFor(n * heads_, [&](int64_t task, int worker) {
    const int64_t i = task / heads_, h = task % heads_;
    const float* q = qkv + i * steps * 3 * c + h * d;
    const float* p = buf(kProbs) + task * steps * steps;
    const float* dout = dheads + i * steps * c + h * d;
    float* dq = dqkv + i * steps * 3 * c + h * d;
    float* ds = buf(kScratch) + worker * steps * steps;
    // dP = dout v^T; dv = P^T dout; dS = P * (dP - rowsum(P * dP)); dq = s dS k; dk = s dS^T q.
    Gemm(false, true, steps, steps, d, 1.0f, dout, c, q + 2 * c, 3 * c, 0.0f, ds, steps);
    Gemm(true, false, steps, d, steps, 1.0f, p, steps, dout, c, 0.0f, dq + 2 * c, 3 * c);
    for (int64_t a = 0; a < steps; ++a) {
      const float* pr = p + a * steps;
      float* sr = ds + a * steps;
      double dot = 0;
      for (int64_t b = 0; b <= a; ++b) dot += static_cast<double>(pr[b]) * sr[b];
      for (int64_t b = 0; b <= a; ++b) sr[b] = pr[b] * (sr[b] - static_cast<float>(dot));
      std::fill(sr + a + 1, sr + steps, 0.0f);
    }
    Gemm(false, false, steps, d, steps, scale, ds, steps, q + c, 3 * c, 0.0f, dq, 3 * c);
    Gemm(true, false, steps, d, steps, scale, ds, steps, q, 3 * c, 0.0f, dq + c, 3 * c);
  });
  const LayerMode qm = QkvMode(mode_);
  const Shape qkv_shape{n, steps, 3 * c};
  qkv_->Backward(x, View{buf(kQkv), qkv_shape}, View{dqkv, qkv_shape}, qm.input_grad ? dx : View{},
                 ctx);
}

Flops CausalSelfAttention::CountFlops(const Shape& in, LayerMode m) const {
  const int64_t scores = in[0] * heads_ * in[1] * in[1], d = dim_ / heads_;
  Flops f = qkv_->CountFlops(in, QkvMode(m));
  f += proj_->CountFlops(in, ProjMode(m));
  f.forward += 4 * scores * d + kSoftmaxFlops * scores;
  if (ProjMode(m).input_grad) f.backward += 8 * scores * d + kSoftmaxFlops * scores;
  return f;
}

}  // namespace ftte
