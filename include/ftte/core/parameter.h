// A learnable tensor with a trainable mask over its rows.
//
// Rows are the first dimension: output channels of a conv weight [O, C, k, k], output features
// of a linear weight [O, I], elements of a bias or norm scale [O], rows of an embedding [V, D].
// Any set of rows can be trainable; the gradient (and optimizer state) hold the trainable rows
// only, packed in row order. Frozen rows are never written, so they stay bit-identical.
#ifndef FTTE_CORE_PARAMETER_H_
#define FTTE_CORE_PARAMETER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "ftte/core/tensor.h"

namespace ftte {

// How a device keeps frozen weights (DESIGN.md §3).
enum class FrozenStorage {
  kFloat32,  // as they are
  kInt8,     // int8 with one float32 scale per row (output channel), for fully frozen matrices
};

// A run of consecutive trainable rows [begin, end) whose gradient starts at row `packed`.
struct RowRun {
  int64_t begin, end, packed;
};

class Parameter {
 public:
  Parameter(std::string name, Shape shape, MemoryTracker* tracker);

  // Full name in its model ("3.body.0.weight"); starts as the local name ("weight").
  const std::string& name() const { return name_; }
  const std::string& local_name() const { return local_name_; }
  void set_name(std::string n) { name_ = std::move(n); }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return NumElements(shape_); }
  int64_t rows() const { return shape_.empty() ? 1 : shape_[0]; }
  int64_t row_size() const { return rows() == 0 ? 0 : numel() / rows(); }

  // float32 values; null while quantized.
  float* data() { return value_.data(); }
  const float* data() const { return value_.data(); }
  bool quantized() const { return !qscale_.empty(); }
  // Copies rows [r0, r1) as float32 into out (dequantising when quantized). Thread-safe.
  void ReadRows(int64_t r0, int64_t r1, float* out) const;
  // Copies the block rows [r0, r1) x columns [c0, c1) of the [rows, row_size] matrix into out
  // ([r1 - r0, c1 - c0]). Thread-safe.
  void ReadBlock(int64_t r0, int64_t r1, int64_t c0, int64_t c1, float* out) const;
  // Whether the values would be int8 under storage `s` with the current mask.
  bool QuantizedUnder(FrozenStorage s) const {
    return s == FrozenStorage::kInt8 && !any_trainable() && QuantizableWhenFrozen();
  }

  // Converts a fully frozen parameter with >= 2 dimensions to int8 + per-row scale (symmetric,
  // scale = max|row| / 127), or back to float32. A parameter with any trainable row stays float.
  void SetStorage(FrozenStorage s);
  // Whether SetStorage(kInt8) would quantize it (fully frozen, >= 2-D and not opted out).
  bool QuantizableWhenFrozen() const { return shape_.size() >= 2 && int8_allowed_; }
  // Layers whose kernels read the float32 values directly (LSTM, positional embeddings, LoRA
  // adapters) opt their parameters out of int8 storage; they then stay float32 under any
  // FrozenStorage, and the planner counts them so.
  void set_int8_allowed(bool on) { int8_allowed_ = on; }
  // Bytes the values take under storage `s` given the current mask.
  int64_t ValueBytes(FrozenStorage s) const;

  // Trainable mask.
  void SetTrainable(bool on) { SetRowsTrainable(0, rows(), on); }
  void SetRowsTrainable(int64_t begin, int64_t end, bool on);
  bool row_trainable(int64_t r) const { return trainable_[r] != 0; }
  int64_t trainable_rows() const { return trainable_count_; }
  int64_t trainable_numel() const { return trainable_count_ * row_size(); }
  bool any_trainable() const { return trainable_count_ > 0; }
  bool all_trainable() const { return trainable_count_ == rows(); }
  const std::vector<RowRun>& runs() const { return runs_; }

  // Gradient of the trainable rows, packed: [trainable_rows * row_size]. Allocated by the
  // trainer; empty otherwise.
  Tensor& grad() { return grad_; }
  const Tensor& grad() const { return grad_; }

  MemoryTracker* tracker() const { return tracker_; }

 private:
  void RebuildRuns();

  std::string name_, local_name_;
  Shape shape_;
  MemoryTracker* tracker_;
  Tensor value_;
  Buffer qvalue_;  // int8 [rows * row_size]
  Tensor qscale_;  // [rows]
  bool int8_allowed_ = true;
  std::vector<uint8_t> trainable_;
  int64_t trainable_count_ = 0;
  std::vector<RowRun> runs_;
  Tensor grad_;
};

}  // namespace ftte

#endif  // FTTE_CORE_PARAMETER_H_
