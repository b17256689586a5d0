#include "ftte/core/tensor.h"

#include "ftte/core/check.h"

namespace ftte {

int64_t NumElements(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    FTTE_CHECK(d >= 0) << "negative dimension in " << ShapeToString(s);
    n *= d;
  }
  return n;
}

std::string ShapeToString(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  return r + "]";
}

Tensor::Tensor(MemoryTracker* tracker, MemCategory c, Shape shape)
    : shape_(std::move(shape)),
      buf_(tracker, c, static_cast<size_t>(NumElements(shape_)) * sizeof(float)) {}

}  // namespace ftte
