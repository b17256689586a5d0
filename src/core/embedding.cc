#include <algorithm>
#include <cmath>
#include <cstring>

#include "ftte/core/check.h"
#include "ftte/core/layers_extra.h"

namespace ftte {

namespace {
// Fixed task sizes (never derived from the thread count, see thread_pool.h).
constexpr int64_t kTokenBlock = 256;  // tokens per forward task

// The packed gradient row of row r of p, or -1 if r is frozen. O(log runs).
int64_t PackedRow(const Parameter& p, int64_t r) {
  const std::vector<RowRun>& runs = p.runs();
  auto it = std::upper_bound(runs.begin(), runs.end(), r,
                             [](int64_t v, const RowRun& run) { return v < run.end; });
  if (it == runs.end() || r < it->begin) return -1;
  return it->packed + r - it->begin;
}
}  // namespace

Embedding::Embedding(int64_t vocab, int64_t dim, MemoryTracker* tracker)
    : vocab_(vocab), dim_(dim), weight_("weight", {vocab, dim}, tracker) {
  FTTE_CHECK(vocab > 0 && dim > 0)
      << "Embedding: vocab and dim must be positive, got " << vocab << ", " << dim;
}

std::string Embedding::Describe() const {
  return "Embedding(" + std::to_string(vocab_) + ", " + std::to_string(dim_) + ")";
}

Result<Shape> Embedding::OutputShape(const Shape& in) const {
  if (in.empty() || in.size() > 2) {
    return InvalidArgument(Describe() + ": expected token ids [N] or [N, T], got " +
                           ShapeToString(in));
  }
  Shape out = in;
  out.push_back(dim_);
  return out;
}

void Embedding::InitParams(Rng& rng) {
  float* w = weight_.data();
  FTTE_CHECK(w != nullptr) << Describe() << ": cannot initialise an int8-stored weight";
  const double scale = tied_ ? 1.0 / std::sqrt(static_cast<double>(dim_)) : 1.0;
  for (int64_t i = 0; i < weight_.numel(); ++i) w[i] = static_cast<float>(scale * rng.Normal());
}

// Rows per gradient block: a workspace tile's worth, at least one.
int64_t Embedding::GradBlockRows(int64_t tile) const { return std::max<int64_t>(1, tile / dim_); }

void Embedding::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  if (!m.param_grad || !weight_.any_trainable()) return;
  if (tied_) {
    plan->Add(MemCategory::kGradients, FloatBytes(weight_.trainable_rows() * dim_),
              "tied embedding gradient");
    return;
  }
  const int64_t rows = std::min(GradBlockRows(pc.tile_floats), weight_.trainable_rows());
  plan->AddWorkspace(FloatBytes(pc.threads * rows * dim_), "embedding gradient blocks");
}

void Embedding::Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
                        MemoryTracker* tracker) {
  FTTE_CHECK(!m.input_grad) << Describe()
                            << ": token ids have no gradient; prepare with input_grad = false";
  Layer::Prepare(in, m, pc, tracker);
}

void Embedding::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t tokens = x.numel();
  // Validate on the calling thread first, so a bad id aborts with a clear message and no task
  // is left half done.
  for (int64_t i = 0; i < tokens; ++i) {
    const float id = x.data[i];
    FTTE_CHECK(id >= 0 && id < static_cast<float>(vocab_) && id == std::floor(id))
        << Describe() << ": token id " << id << " at position " << i << " is not an integer in [0, "
        << vocab_ << ")";
  }
  ctx.pool->ParallelFor(NumBlocks(tokens, kTokenBlock), [&](int64_t t, int) {
    const int64_t i1 = std::min(tokens, (t + 1) * kTokenBlock);
    for (int64_t i = t * kTokenBlock; i < i1; ++i) {
      const auto id = static_cast<int64_t>(x.data[i]);
      weight_.ReadRows(id, id + 1, y.data + i * dim_);  // dequantises an int8 weight
    }
  });
}

void Embedding::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  if (!mode_.param_grad || !weight_.any_trainable()) return;
  const int64_t tokens = x.numel(), trainable = weight_.trainable_rows();
  const int64_t block = std::min(GradBlockRows(pc_.tile_floats), trainable);
  // Each task owns a block of gradient rows and adds the tokens in order, so the sums do not
  // depend on the thread count.
  // Tied: the head has written its part of every trainable row; the tokens' rows add to it.
  ctx.pool->ParallelFor(NumBlocks(trainable, block), [&](int64_t t, int worker) {
    const int64_t p0 = t * block, p1 = std::min(trainable, p0 + block);
    float* g = tied_ ? slot(0) + p0 * dim_ : ctx.workspace + worker * block * dim_;
    if (!tied_) std::fill(g, g + (p1 - p0) * dim_, 0.0f);
    for (int64_t i = 0; i < tokens; ++i) {
      const int64_t row = PackedRow(weight_, static_cast<int64_t>(x.data[i]));
      if (row < p0 || row >= p1) continue;
      float* gr = g + (row - p0) * dim_;
      const float* d = dy.data + i * dim_;
      for (int64_t j = 0; j < dim_; ++j) gr[j] += d[j];
    }
    ctx.grads->Commit(weight_, p0, p1 - p0, g);
  });
}

Flops Embedding::CountFlops(const Shape& in, LayerMode m) const {
  // A gather is memory-bound: count one operation per element moved.
  const int64_t moved = NumElements(in) * dim_;
  return {moved, m.param_grad && weight_.any_trainable() ? moved : 0};
}

}  // namespace ftte
