// Float32 tensors. A Tensor owns tracked storage; a View is a borrowed pointer plus a shape,
// used by layers so that buffers can be reused for tensors of different shapes.
#ifndef FTTE_CORE_TENSOR_H_
#define FTTE_CORE_TENSOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "ftte/core/memory.h"

namespace ftte {

using Shape = std::vector<int64_t>;

int64_t NumElements(const Shape& s);
std::string ShapeToString(const Shape& s);  // "[32, 1, 28, 28]"

// A borrowed float32 array with a shape (row-major). Does not own data.
struct View {
  float* data = nullptr;
  Shape shape;
  int64_t numel() const { return NumElements(shape); }
  bool empty() const { return data == nullptr; }
};

class Tensor {
 public:
  Tensor() = default;
  // Zero-filled storage for `shape`, tracked under category `c`.
  Tensor(MemoryTracker* tracker, MemCategory c, Shape shape);

  float* data() { return static_cast<float*>(buf_.data()); }
  const float* data() const { return static_cast<const float*>(buf_.data()); }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return NumElements(shape_); }
  int64_t bytes() const { return numel() * static_cast<int64_t>(sizeof(float)); }
  bool empty() const { return buf_.data() == nullptr; }  // no storage (default or 0 elements)
  View view() const { return View{const_cast<float*>(data()), shape_}; }
  void Reset() {
    buf_.Reset();
    shape_.clear();
  }

 private:
  Shape shape_;
  Buffer buf_;
};

}  // namespace ftte

#endif  // FTTE_CORE_TENSOR_H_
