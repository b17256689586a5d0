// ImageDataset: the in-memory form every dataset reader (idx.h, cifar.h, lm_data.h) produces.
#ifndef FTTE_DATA_DATASET_H_
#define FTTE_DATA_DATASET_H_

#include <cstdint>
#include <vector>

namespace ftte::data {

// An in-memory labelled image set, NCHW float32 in [0,1] (pixel/255), labels int32 in
// [0, num_classes). A plain value: copying copies the pixels. Not synchronised; concurrent
// const access is safe.
//
// Sequence data (lm_data.h) uses the same form: a sample is 1x1xT token ids stored as floats,
// with labels_per_sample = T labels per sample (the next-token ids; -1 = ignore). Sample i's
// labels are labels[i * labels_per_sample, (i + 1) * labels_per_sample), so the labels of
// samples [a, b) are contiguous, as for images.
struct ImageDataset {
  int64_t size = 0;
  int channels = 0, height = 0, width = 0, num_classes = 0;
  int64_t labels_per_sample = 1;
  std::vector<float> images;    // size * channels * height * width
  std::vector<int32_t> labels;  // size * labels_per_sample

  // channels * height * width.
  int64_t sample_numel() const;
  // Pointer to the first pixel of sample i, valid while `images` is not resized.
  // Aborts (FTTE_CHECK) unless 0 <= i < size.
  const float* image(int64_t i) const;
  // Pointer to the labels_per_sample labels of sample i, valid while `labels` is not resized.
  // Aborts (FTTE_CHECK) unless 0 <= i < size.
  const int32_t* label(int64_t i) const;
  // First n samples (or all if n >= size), with their labels, as a new dataset. Aborts if n < 0.
  ImageDataset Head(int64_t n) const;
  // Gathers the given sample indices (each must be < size) and their labels into a new dataset,
  // in the given order; repeats are allowed. Aborts on an out-of-range index (a caller bug, not
  // user input).
  ImageDataset Subset(const std::vector<int64_t>& indices) const;
};

}  // namespace ftte::data

#endif  // FTTE_DATA_DATASET_H_
