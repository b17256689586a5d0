#include <algorithm>
#include <cstring>
#include <sstream>

#include "ftte/core/check.h"
#include "ftte/core/layers_extra.h"

namespace ftte {

namespace {
// Fixed task size for Backward (a multiple of 64 so that tasks own whole mask words).
constexpr int64_t kBlock = 16384;

int64_t MaskWords(int64_t n) { return NumBlocks(n, 64); }
}  // namespace

Dropout::Dropout(double p) : p_(p), scale_(p < 1 ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f) {
  FTTE_CHECK(p >= 0 && p <= 1) << "Dropout: p must be in [0, 1], got " << p;
}

std::string Dropout::Describe() const {
  std::ostringstream s;
  s << "Dropout(p=" << p_ << ")";
  return s.str();
}

void Dropout::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  // Slot 0: the keep mask, one bit per element, only when Backward must apply it.
  const int64_t words = m.input_grad ? MaskWords(NumElements(in)) : 0;
  plan->Add(MemCategory::kActivations, words * static_cast<int64_t>(sizeof(uint64_t)),
            "dropout mask bits");
}

void Dropout::Prepare(const Shape& in, LayerMode m, const PlanContext& pc, MemoryTracker* tracker) {
  Layer::Prepare(in, m, pc, tracker);
  mask_capacity_ = m.input_grad ? NumElements(in) : 0;
  masked_ = false;
}

void Dropout::Forward(const View& x, View y, ExecContext& ctx) {
  const int64_t n = x.numel();
  masked_ = ctx.training;
  if (!ctx.training) {
    if (y.data != x.data) std::memcpy(y.data, x.data, sizeof(float) * n);
    return;
  }
  FTTE_CHECK(ctx.rng != nullptr) << Describe() << ": a training Forward needs ExecContext::rng";
  uint64_t* bits = nullptr;
  if (mode_.input_grad) {
    FTTE_CHECK(n <= mask_capacity_)
        << Describe() << ": " << n << " elements, prepared for " << mask_capacity_;
    bits = reinterpret_cast<uint64_t*>(slot(0));
  }
  // Sequential on purpose: the mask is a function of the rng state alone. Element order also
  // makes y == x (in place) safe.
  for (int64_t w = 0; w < MaskWords(n); ++w) {
    const int64_t i0 = w * 64, i1 = std::min(n, i0 + 64);
    uint64_t word = 0;
    for (int64_t i = i0; i < i1; ++i) {
      const bool keep = ctx.rng->Uniform() >= p_;
      word |= static_cast<uint64_t>(keep) << (i - i0);
      y.data[i] = keep ? x.data[i] * scale_ : 0.0f;
    }
    if (bits != nullptr) bits[w] = word;
  }
}

void Dropout::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  if (!mode_.input_grad) return;
  const int64_t n = dy.numel();
  if (!masked_) {
    if (dx.data != dy.data) std::memcpy(dx.data, dy.data, sizeof(float) * n);
    return;
  }
  FTTE_CHECK(n <= mask_capacity_) << Describe() << ": " << n << " elements, prepared for "
                                  << mask_capacity_;
  const auto* bits = reinterpret_cast<const uint64_t*>(slot(0));
  ctx.pool->ParallelFor(NumBlocks(n, kBlock), [&](int64_t t, int) {
    const int64_t i1 = std::min(n, (t + 1) * kBlock);
    for (int64_t i = t * kBlock; i < i1; ++i) {
      const bool keep = (bits[i >> 6] >> (i & 63)) & 1;
      dx.data[i] = keep ? dy.data[i] * scale_ : 0.0f;
    }
  });
}

Flops Dropout::CountFlops(const Shape& in, LayerMode m) const {
  const int64_t n = NumElements(in);
  return {n, m.input_grad ? n : 0};
}

}  // namespace ftte
