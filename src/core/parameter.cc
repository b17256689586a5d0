#include "ftte/core/parameter.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ftte/core/check.h"

namespace ftte {

Parameter::Parameter(std::string name, Shape shape, MemoryTracker* tracker)
    : name_(name),
      local_name_(std::move(name)),
      shape_(std::move(shape)),
      tracker_(tracker),
      value_(tracker, MemCategory::kWeights, shape_),
      trainable_(static_cast<size_t>(rows()), 1) {
  RebuildRuns();
}

void Parameter::ReadRows(int64_t r0, int64_t r1, float* out) const {
  FTTE_CHECK(r0 >= 0 && r0 <= r1 && r1 <= rows());
  const int64_t rs = row_size();
  if (!quantized()) {
    std::memcpy(out, data() + r0 * rs, sizeof(float) * (r1 - r0) * rs);
    return;
  }
  const auto* q = static_cast<const int8_t*>(qvalue_.data());
  for (int64_t r = r0; r < r1; ++r) {
    const float s = qscale_.data()[r];
    const int8_t* src = q + r * rs;
    float* dst = out + (r - r0) * rs;
    for (int64_t j = 0; j < rs; ++j) dst[j] = s * static_cast<float>(src[j]);
  }
}

void Parameter::ReadBlock(int64_t r0, int64_t r1, int64_t c0, int64_t c1, float* out) const {
  FTTE_CHECK(r0 >= 0 && r0 <= r1 && r1 <= rows() && c0 >= 0 && c0 <= c1 && c1 <= row_size());
  const int64_t rs = row_size(), w = c1 - c0;
  const auto* q = static_cast<const int8_t*>(qvalue_.data());
  for (int64_t r = r0; r < r1; ++r) {
    float* dst = out + (r - r0) * w;
    if (!quantized()) {
      std::memcpy(dst, data() + r * rs + c0, sizeof(float) * w);
      continue;
    }
    const float s = qscale_.data()[r];
    for (int64_t j = 0; j < w; ++j) dst[j] = s * static_cast<float>(q[r * rs + c0 + j]);
  }
}

void Parameter::SetStorage(FrozenStorage s) {
  const bool want_int8 = QuantizedUnder(s);
  if (want_int8 == quantized()) return;
  const int64_t rs = row_size();
  if (want_int8) {
    qvalue_ = Buffer(tracker_, MemCategory::kWeights, static_cast<size_t>(numel()));
    qscale_ = Tensor(tracker_, MemCategory::kWeights, {rows()});
    auto* q = static_cast<int8_t*>(qvalue_.data());
    for (int64_t r = 0; r < rows(); ++r) {
      const float* src = value_.data() + r * rs;
      float m = 0;
      for (int64_t j = 0; j < rs; ++j) m = std::max(m, std::fabs(src[j]));
      const float scale = m > 0 ? m / 127.0f : 1.0f;
      qscale_.data()[r] = scale;
      for (int64_t j = 0; j < rs; ++j) {
        q[r * rs + j] = static_cast<int8_t>(std::lrint(std::clamp(src[j] / scale, -127.f, 127.f)));
      }
    }
    value_.Reset();
  } else {
    value_ = Tensor(tracker_, MemCategory::kWeights, shape_);
    ReadRows(0, rows(), value_.data());
    qvalue_.Reset();
    qscale_.Reset();
  }
}

int64_t Parameter::ValueBytes(FrozenStorage s) const {
  if (QuantizedUnder(s)) {
    return numel() + rows() * static_cast<int64_t>(sizeof(float));
  }
  return numel() * static_cast<int64_t>(sizeof(float));
}

void Parameter::SetRowsTrainable(int64_t begin, int64_t end, bool on) {
  FTTE_CHECK(begin >= 0 && begin <= end && end <= rows())
      << name_ << ": rows [" << begin << ", " << end << ") out of " << rows();
  FTTE_CHECK(!(on && quantized())) << name_ << ": cannot train an int8-stored parameter; "
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
