// A learnable tensor with a trainable mask over its rows.
//
// Rows are the first dimension: output channels of a conv weight [O, C, k, k], output features
// of a linear weight [O, I], elements of a bias or norm scale [O], rows of an embedding [V, D].
// Any set of rows can be trainable; the gradient (and optimizer state) hold the trainable rows
// only, packed in row order. Frozen rows are never written, so they stay bit-identical.
#ifndef FTTE_CORE_PARAMETER_H_
#define FTTE_CORE_PARAMETER_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "ftte/core/tensor.h"

namespace ftte {

// How a device keeps frozen weights (DESIGN.md §3).
enum class FrozenStorage {
  kFloat32,  // as they are
  // The frozen rows of matrices (>= 2-D) as int8 with one float32 scale per row (output
  // channel); the trainable rows of the same matrix stay float32 (per-row mixed storage).
  kInt8,
  // As kInt8, but the int8 frozen rows are read in place from a memory-mapped file
  // (MappedFrozenRows, frozen_file.h): flash, not heap, as microcontroller training keeps them.
  kInt8Mapped,
};

// A run of consecutive trainable rows [begin, end) whose gradient starts at row `packed`.
struct RowRun {
  int64_t begin, end, packed;
};

// Rows [begin, end) of a parameter stored alike: as float32 from `f32` (row r at
// f32 + (r - begin) * row_size), or as int8 from `q` with one scale per row (row r at
// q + (r - begin) * row_size, scaled by scale[r - begin]).
struct RowSegment {
  int64_t begin = 0, end = 0;
  const float* f32 = nullptr;
  const int8_t* q = nullptr;
  const float* scale = nullptr;
};

// Symmetric int8 of one row of n values: dst[j] = round(src[j] / scale) with scale =
// max|src| / 127 (1 for an all-zero row); returns the scale. The one rounding every int8 copy of
// a frozen row uses.
float QuantizeRowInt8(const float* src, int64_t n, int8_t* dst);

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

  // All values as float32, row-major; only while not quantized() (aborts otherwise: then rows
  // live in two packed stores, see RunData and ForEachSegment).
  float* data();
  const float* data() const;
  // Whether some (frozen) rows are stored as int8.
  bool quantized() const { return qdata_ != nullptr; }
  // Whether those int8 rows live outside the heap (UseExternalFrozenRows).
  bool external() const { return quantized() && qvalue_.data() == nullptr; }
  // The float32 values of trainable run `run` (one of runs()), rows row_size() apart: in
  // place while not quantized, else in the packed store of trainable rows. Writable: this is
  // what optimizers update.
  float* RunData(const RowRun& run);
  // Calls fn(const RowSegment&) for the maximal runs of rows in [r0, r1) stored alike, in row
  // order. Thread-safe (reads only).
  template <typename F>
  void ForEachSegment(int64_t r0, int64_t r1, F&& fn) const;
  // Copies rows [r0, r1) as float32 into out (dequantising int8 rows). Thread-safe.
  void ReadRows(int64_t r0, int64_t r1, float* out) const;
  // Copies the block rows [r0, r1) x columns [c0, c1) of the [rows, row_size] matrix into out
  // ([r1 - r0, c1 - c0], dequantising int8 rows). Thread-safe.
  void ReadBlock(int64_t r0, int64_t r1, int64_t c0, int64_t c1, float* out) const;
  // Whether some rows would be int8 under storage `s` with the current mask.
  bool QuantizedUnder(FrozenStorage s) const {
    return s != FrozenStorage::kFloat32 && !all_trainable() && QuantizableWhenFrozen();
  }

  // Under kInt8, stores the frozen rows of a matrix as int8 + per-row scale (symmetric,
  // scale = max|row| / 127) and its trainable rows as float32, packed; under kFloat32 (or for
  // 1-D or opted-out parameters) all rows as float32. Going back to float32 dequantises.
  // kInt8Mapped storage comes from UseExternalFrozenRows, not from here (aborts).
  void SetStorage(FrozenStorage s);
  // Reads the int8 frozen rows in place from `q` ([frozen rows, row_size], packed in row order)
  // with `scale` (one per frozen row), both owned by the caller and outliving this storage; the
  // trainable rows move to a packed float32 store. Needs QuantizedUnder(kInt8Mapped) and float32
  // storage now. SetStorage(kFloat32) copies the rows back into the heap.
  void UseExternalFrozenRows(const int8_t* q, const float* scale);
  // Whether SetStorage(kInt8) may keep frozen rows as int8 (>= 2-D and not opted out).
  bool QuantizableWhenFrozen() const { return shape_.size() >= 2 && int8_allowed_; }
  // Layers whose kernels read the float32 values directly (positional embeddings, LoRA
  // adapters) opt their parameters out of int8 storage; they then stay float32 under any
  // FrozenStorage, and the planner counts them so.
  void set_int8_allowed(bool on) { int8_allowed_ = on; }
  // Heap bytes the values take under storage `s` given the current mask.
  int64_t ValueBytes(FrozenStorage s) const;
  // Bytes of int8 frozen rows and their scales read from a mapped file under `s` (0 unless
  // kInt8Mapped).
  int64_t MappedBytes(FrozenStorage s) const;

  // Trainable mask. Changing it needs float32 storage (SetStorage(kFloat32) first).
  void SetTrainable(bool on) { SetRowsTrainable(0, rows(), on); }
  void SetRowsTrainable(int64_t begin, int64_t end, bool on);
  bool row_trainable(int64_t r) const { return trainable_[r] != 0; }
  int64_t trainable_rows() const { return trainable_count_; }
  int64_t trainable_numel() const { return trainable_count_ * row_size(); }
  bool any_trainable() const { return trainable_count_ > 0; }
  bool all_trainable() const { return trainable_count_ == rows(); }
  const std::vector<RowRun>& runs() const { return runs_; }

  // Gradient of the trainable rows, packed: [trainable_rows * row_size]. Filled only by a
  // trainer asked to keep gradients (TrainerOptions::keep_gradients) or by a test; empty
  // otherwise (training commits gradients a block at a time, see GradientSink).
  Tensor& grad() { return grad_; }
  const Tensor& grad() const { return grad_; }

  MemoryTracker* tracker() const { return tracker_; }

 private:
  void RebuildRuns();
  // The trainable rows of the dense float32 values, packed in run order.
  Tensor PackedTrainableRows() const;

  std::string name_, local_name_;
  Shape shape_;
  MemoryTracker* tracker_;
  Tensor value_;   // all rows; while quantized, the trainable rows only, packed in run order
  Buffer qvalue_;  // owned int8 frozen rows, packed in row order [frozen rows * row_size]
  Tensor qscale_;  // owned scales [frozen rows]
  const int8_t* qdata_ = nullptr;   // the int8 frozen rows (qvalue_ or external); null if none
  const float* qscales_ = nullptr;  // their scales (qscale_ or external)
  bool int8_allowed_ = true;
  std::vector<uint8_t> trainable_;
  int64_t trainable_count_ = 0;
  std::vector<RowRun> runs_;
  Tensor grad_;
};

template <typename F>
void Parameter::ForEachSegment(int64_t r0, int64_t r1, F&& fn) const {
  const int64_t rs = row_size();
  if (!quantized()) {
    if (r0 < r1) fn(RowSegment{r0, r1, value_.data() + r0 * rs, nullptr, nullptr});
    return;
  }
  const int8_t* q = qdata_;
  // Frozen rows between trainable runs are packed in row order: frozen row r sits at r less
  // the trainable rows before it.
  int64_t r = r0, trainable_before = 0;
  for (const RowRun& run : runs_) {
    if (run.end <= r) {
      trainable_before += run.end - run.begin;
      continue;
    }
    if (r >= r1) break;
    if (r < run.begin) {
      const int64_t e = std::min(run.begin, r1), f = r - trainable_before;
      fn(RowSegment{r, e, nullptr, q + f * rs, qscales_ + f});
      r = e;
      if (r >= r1) break;
    }
    const int64_t e = std::min(run.end, r1);
    fn(RowSegment{r, e, value_.data() + (run.packed + r - run.begin) * rs, nullptr, nullptr});
    trainable_before += run.end - run.begin;
    r = e;
  }
  if (r < r1) {
    const int64_t f = r - trainable_before;
    fn(RowSegment{r, r1, nullptr, q + f * rs, qscales_ + f});
  }
}

}  // namespace ftte

#endif  // FTTE_CORE_PARAMETER_H_
