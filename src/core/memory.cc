#include "ftte/core/memory.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "ftte/core/check.h"

namespace ftte {

const char* MemCategoryName(MemCategory c) {
  switch (c) {
    case MemCategory::kWeights:
      return "weights";
    case MemCategory::kGradients:
      return "gradients";
    case MemCategory::kOptimizer:
      return "optimizer";
    case MemCategory::kActivations:
      return "activations";
    case MemCategory::kActGrads:
      return "activation_grads";
    case MemCategory::kWorkspace:
      return "workspace";
    case MemCategory::kBatch:
      return "batch";
  }
  return "unknown";
}

void* MemoryTracker::Allocate(size_t bytes, MemCategory c) {
  if (bytes == 0) return nullptr;
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  FTTE_CHECK(p != nullptr) << "out of memory allocating " << bytes << " bytes";
  std::memset(p, 0, rounded);
  std::lock_guard<std::mutex> lock(mu_);
  int i = static_cast<int>(c);
  s_.live[i] += static_cast<int64_t>(bytes);
  s_.live_total += static_cast<int64_t>(bytes);
  s_.allocations++;
  if (s_.live_total > s_.peak_total) {
    s_.peak_total = s_.live_total;
    s_.at_peak = s_.live;
  }
  return p;
}

void MemoryTracker::Free(void* p, size_t bytes, MemCategory c) {
  if (p == nullptr) return;
  std::free(p);
  std::lock_guard<std::mutex> lock(mu_);
  int i = static_cast<int>(c);
  s_.live[i] -= static_cast<int64_t>(bytes);
  s_.live_total -= static_cast<int64_t>(bytes);
  FTTE_CHECK(s_.live[i] >= 0) << "freed more " << MemCategoryName(c) << " bytes than allocated";
}

MemoryStats MemoryTracker::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return s_;
}

void MemoryTracker::ResetPeak() {
  std::lock_guard<std::mutex> lock(mu_);
  s_.peak_total = s_.live_total;
  s_.at_peak = s_.live;
}

Buffer::Buffer(MemoryTracker* tracker, MemCategory c, size_t bytes)
    : tracker_(tracker), cat_(c), bytes_(bytes) {
  FTTE_CHECK(tracker != nullptr);
  data_ = tracker_->Allocate(bytes, c);
}

Buffer::~Buffer() { Reset(); }

Buffer::Buffer(Buffer&& o) noexcept
    : tracker_(o.tracker_), cat_(o.cat_), bytes_(o.bytes_), data_(o.data_) {
  o.tracker_ = nullptr;
  o.bytes_ = 0;
  o.data_ = nullptr;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    Reset();
    std::swap(tracker_, o.tracker_);
    std::swap(cat_, o.cat_);
    std::swap(bytes_, o.bytes_);
    std::swap(data_, o.data_);
  }
  return *this;
}

void Buffer::Reset() {
  if (tracker_ != nullptr && data_ != nullptr) tracker_->Free(data_, bytes_, cat_);
  data_ = nullptr;
  bytes_ = 0;
}

std::string FormatBytes(int64_t bytes) {
  char buf[64];
  double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  } else if (b >= 1024.0 * 1024) {
    std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1024.0 * 1024));
  } else if (b >= 1024.0) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  } else {
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  }
  return buf;
}

Result<int64_t> ParseBytes(const std::string& s) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (...) {
    used = 0;
  }
  const std::string unit = s.substr(used);
  double scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  if (unit == "KiB" || unit == "K") scale = 1024.0;
  if (unit == "MiB" || unit == "M") scale = 1024.0 * 1024;
  if (unit == "GiB" || unit == "G") scale = 1024.0 * 1024 * 1024;
  if (used == 0 || scale == 0 || !(v > 0) || v * scale > 1e15) {
    return InvalidArgument("'" + s + "' is not a size; write e.g. 64MiB, 512KiB, 1.5GiB or bytes");
  }
  return static_cast<int64_t>(v * scale);
}

}  // namespace ftte
