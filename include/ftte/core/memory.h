// Memory accounting: every byte of a training step is allocated through a MemoryTracker under
// a category, so that the peak of one step can be measured and compared with the planner.
#ifndef FTTE_CORE_MEMORY_H_
#define FTTE_CORE_MEMORY_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include "ftte/core/status.h"

namespace ftte {

enum class MemCategory : int {
  kWeights = 0,  // parameters (float32 or int8 + scales)
  kGradients,    // gradients of trainable rows only
  kOptimizer,    // optimizer state (momentum, Adam moments) of trainable rows only
  kActivations,  // activations saved for backward, and forward-only transient outputs
  kActGrads,     // activation-gradient buffers of backward
  kWorkspace,    // im2col columns, per-chunk partial sums, dequantised weight blocks
  kBatch,        // the input batch and its labels
};
inline constexpr int kNumMemCategories = 7;
const char* MemCategoryName(MemCategory c);

struct MemoryStats {
  std::array<int64_t, kNumMemCategories> live{};     // bytes live now, by category
  std::array<int64_t, kNumMemCategories> at_peak{};  // breakdown when the total peaked
  int64_t live_total = 0;
  int64_t peak_total = 0;
  int64_t allocations = 0;  // number of Allocate calls since construction
};

// Counts live and peak bytes by category. Thread-safe. Owns no memory itself: callers free
// what they allocate (Buffer does this). Costs one mutex acquisition per allocation, which is
// fine because a warmed-up training step allocates nothing.
class MemoryTracker {
 public:
  MemoryTracker() = default;
  MemoryTracker(const MemoryTracker&) = delete;
  MemoryTracker& operator=(const MemoryTracker&) = delete;

  // Returns 64-byte aligned storage of `bytes` (zero-filled). Aborts on out-of-memory.
  void* Allocate(size_t bytes, MemCategory c);
  void Free(void* p, size_t bytes, MemCategory c);

  MemoryStats stats() const;
  // Starts a new peak measurement: peak := live.
  void ResetPeak();

 private:
  mutable std::mutex mu_;
  MemoryStats s_;
};

// A tracked, owned, 64-byte aligned byte buffer. Move-only. A default-constructed Buffer is
// empty and owns nothing.
class Buffer {
 public:
  Buffer() = default;
  Buffer(MemoryTracker* tracker, MemCategory c, size_t bytes);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  MemCategory category() const { return cat_; }
  void Reset();

 private:
  MemoryTracker* tracker_ = nullptr;
  MemCategory cat_ = MemCategory::kWorkspace;
  size_t bytes_ = 0;
  void* data_ = nullptr;
};

// Formats a byte count for people: "1.59 MiB".
std::string FormatBytes(int64_t bytes);
// The inverse for user input: "64MiB", "512KiB", "1.5GiB" (also K, M, G) or plain bytes.
// Errors name the input and the accepted forms.
Result<int64_t> ParseBytes(const std::string& s);

}  // namespace ftte

#endif  // FTTE_CORE_MEMORY_H_
