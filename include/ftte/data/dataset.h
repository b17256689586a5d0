// ImageDataset: the in-memory form every dataset reader (idx.h, cifar.h) produces.
#ifndef FTTE_DATA_DATASET_H_
#define FTTE_DATA_DATASET_H_

#include <cstdint>
#include <vector>

namespace ftte::data {

// An in-memory labelled image set, NCHW float32 in [0,1] (pixel/255), labels int32 in
// [0, num_classes). A plain value: copying copies the pixels. Not synchronised; concurrent
// const access is safe.
struct ImageDataset {
  int64_t size = 0;
  int channels = 0, height = 0, width = 0, num_classes = 0;
  std::vector<float> images;    // size * channels * height * width
  std::vector<int32_t> labels;  // size

  // channels * height * width.
  int64_t sample_numel() const;
  // Pointer to the first pixel of sample i, valid while `images` is not resized.
  // Aborts (FTTE_CHECK) unless 0 <= i < size.
  const float* image(int64_t i) const;
  // First n samples (or all if n >= size) as a new dataset. Aborts if n < 0.
  ImageDataset Head(int64_t n) const;
  // Gathers the given sample indices (each must be < size) into a new dataset, in the given
  // order; repeats are allowed. Aborts on an out-of-range index (a caller bug, not user input).
  ImageDataset Subset(const std::vector<int64_t>& indices) const;
};

}  // namespace ftte::data

#endif  // FTTE_DATA_DATASET_H_
