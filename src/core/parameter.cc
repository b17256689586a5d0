#include "ftte/core/parameter.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ftte/core/check.h"

namespace ftte {

float QuantizeRowInt8(const float* src, int64_t n, int8_t* dst) {
  float m = 0;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, std::fabs(src[j]));
  const float scale = m > 0 ? m / 127.0f : 1.0f;
  for (int64_t j = 0; j < n; ++j) {
    dst[j] = static_cast<int8_t>(std::lrint(std::clamp(src[j] / scale, -127.f, 127.f)));
  }
  return scale;
}

Parameter::Parameter(std::string name, Shape shape, MemoryTracker* tracker)
    : name_(name),
      local_name_(std::move(name)),
      shape_(std::move(shape)),
      tracker_(tracker),
      value_(tracker, MemCategory::kWeights, shape_),
      trainable_(static_cast<size_t>(rows()), 1) {
  RebuildRuns();
}

float* Parameter::data() {
  FTTE_CHECK(!quantized()) << name_ << ": data() of a parameter with int8 rows";
  return value_.data();
}

const float* Parameter::data() const {
  FTTE_CHECK(!quantized()) << name_ << ": data() of a parameter with int8 rows";
  return value_.data();
}

float* Parameter::RunData(const RowRun& run) {
  const int64_t first = quantized() ? run.packed : run.begin;
  return value_.data() + first * row_size();
}

void Parameter::ReadRows(int64_t r0, int64_t r1, float* out) const {
  ReadBlock(r0, r1, 0, row_size(), out);
}

void Parameter::ReadBlock(int64_t r0, int64_t r1, int64_t c0, int64_t c1, float* out) const {
  FTTE_CHECK(r0 >= 0 && r0 <= r1 && r1 <= rows() && c0 >= 0 && c0 <= c1 && c1 <= row_size());
  const int64_t rs = row_size(), w = c1 - c0;
  ForEachSegment(r0, r1, [&](const RowSegment& s) {
    for (int64_t r = s.begin; r < s.end; ++r) {
      float* dst = out + (r - r0) * w;
      const int64_t i = r - s.begin;
      if (s.f32 != nullptr) {
        std::memcpy(dst, s.f32 + i * rs + c0, sizeof(float) * w);
        continue;
      }
      const float scale = s.scale[i];
      const int8_t* src = s.q + i * rs + c0;
      for (int64_t j = 0; j < w; ++j) dst[j] = scale * static_cast<float>(src[j]);
    }
  });
}

void Parameter::SetStorage(FrozenStorage s) {
  FTTE_CHECK(s != FrozenStorage::kInt8Mapped || !QuantizedUnder(s) || external())
      << name_ << ": mapped int8 rows come from UseExternalFrozenRows";
  if (s == FrozenStorage::kInt8Mapped) return;
  const bool want_int8 = QuantizedUnder(s);
  if (!want_int8 && !quantized()) return;
  if (want_int8 && quantized() && !external()) return;
  const int64_t rs = row_size();
  // Through dense float32: dequantise first (a no-op when dense), then split if asked.
  if (quantized()) {
    Tensor dense(tracker_, MemCategory::kWeights, shape_);
    ReadRows(0, rows(), dense.data());
    value_ = std::move(dense);
    qvalue_.Reset();
    qscale_.Reset();
    qdata_ = nullptr;
    qscales_ = nullptr;
  }
  if (!want_int8) return;
  const int64_t frozen = rows() - trainable_count_;
  qvalue_ = Buffer(tracker_, MemCategory::kWeights, static_cast<size_t>(frozen * rs));
  qscale_ = Tensor(tracker_, MemCategory::kWeights, {frozen});
  auto* q = static_cast<int8_t*>(qvalue_.data());
  int64_t f = 0;
  for (int64_t r = 0; r < rows(); ++r) {
    if (trainable_[r]) continue;
    qscale_.data()[f] = QuantizeRowInt8(value_.data() + r * rs, rs, q + f * rs);
    ++f;
  }
  value_ = PackedTrainableRows();
  qdata_ = q;
  qscales_ = qscale_.data();
}

Tensor Parameter::PackedTrainableRows() const {
  const int64_t rs = row_size();
  Tensor packed = trainable_count_ > 0
                      ? Tensor(tracker_, MemCategory::kWeights, {trainable_count_, rs})
                      : Tensor();
  for (const RowRun& run : runs_) {
    std::memcpy(packed.data() + run.packed * rs, value_.data() + run.begin * rs,
                sizeof(float) * (run.end - run.begin) * rs);
  }
  return packed;
}

void Parameter::UseExternalFrozenRows(const int8_t* q, const float* scale) {
  FTTE_CHECK(QuantizedUnder(FrozenStorage::kInt8Mapped) && !quantized())
      << name_ << ": external int8 rows need a float32-stored matrix with frozen rows";
  FTTE_CHECK(q != nullptr && scale != nullptr);
  value_ = PackedTrainableRows();
  qdata_ = q;
  qscales_ = scale;
}

int64_t Parameter::ValueBytes(FrozenStorage s) const {
  if (QuantizedUnder(s)) {
    const int64_t frozen = rows() - trainable_count_;
    const int64_t trainable = trainable_numel() * static_cast<int64_t>(sizeof(float));
    if (s == FrozenStorage::kInt8Mapped) return trainable;
    return trainable + frozen * static_cast<int64_t>(sizeof(float)) + frozen * row_size();
  }
  return numel() * static_cast<int64_t>(sizeof(float));
}

int64_t Parameter::MappedBytes(FrozenStorage s) const {
  if (s != FrozenStorage::kInt8Mapped || !QuantizedUnder(s)) return 0;
  const int64_t frozen = rows() - trainable_count_;
  return frozen * (row_size() + static_cast<int64_t>(sizeof(float)));
}

void Parameter::SetRowsTrainable(int64_t begin, int64_t end, bool on) {
  FTTE_CHECK(begin >= 0 && begin <= end && end <= rows())
      << name_ << ": rows [" << begin << ", " << end << ") out of " << rows();
  bool changed = false;
  for (int64_t r = begin; r < end; ++r) changed = changed || (trainable_[r] != 0) != on;
  if (!changed) return;
  FTTE_CHECK(!quantized()) << name_ << ": cannot change the mask of a parameter with int8 rows; "
                           << "set the mask before choosing frozen storage";
  for (int64_t r = begin; r < end; ++r) trainable_[r] = on ? 1 : 0;
  RebuildRuns();
}

void Parameter::RebuildRuns() {
  runs_.clear();
  trainable_count_ = 0;
  for (int64_t r = 0; r < rows();) {
    if (!trainable_[r]) {
      ++r;
      continue;
    }
    int64_t e = r;
    while (e < rows() && trainable_[e]) ++e;
    runs_.push_back({r, e, trainable_count_});
    trainable_count_ += e - r;
    r = e;
  }
}

}  // namespace ftte
