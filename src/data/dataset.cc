#include "ftte/data/dataset.h"

#include <algorithm>

#include "ftte/core/check.h"

namespace ftte::data {

namespace {
// An empty dataset with the same shape and class count as `d`, with room for n samples.
ImageDataset EmptyLike(const ImageDataset& d, int64_t n) {
  ImageDataset out;
  out.size = n;
  out.channels = d.channels;
  out.height = d.height;
  out.width = d.width;
  out.num_classes = d.num_classes;
  out.labels_per_sample = d.labels_per_sample;
  out.images.reserve(static_cast<size_t>(n * d.sample_numel()));
  out.labels.reserve(static_cast<size_t>(n * d.labels_per_sample));
  return out;
}
}  // namespace

int64_t ImageDataset::sample_numel() const {
  return static_cast<int64_t>(channels) * height * width;
}

const float* ImageDataset::image(int64_t i) const {
  FTTE_CHECK(i >= 0 && i < size) << "sample " << i << " out of range [0, " << size << ")";
  return images.data() + i * sample_numel();
}

const int32_t* ImageDataset::label(int64_t i) const {
  FTTE_CHECK(i >= 0 && i < size) << "sample " << i << " out of range [0, " << size << ")";
  return labels.data() + i * labels_per_sample;
}

ImageDataset ImageDataset::Head(int64_t n) const {
  FTTE_CHECK(n >= 0) << "Head(" << n << ")";
  n = std::min(n, size);
  ImageDataset out = EmptyLike(*this, n);
  out.images.assign(images.begin(), images.begin() + n * sample_numel());
  out.labels.assign(labels.begin(), labels.begin() + n * labels_per_sample);
  return out;
}

ImageDataset ImageDataset::Subset(const std::vector<int64_t>& indices) const {
  ImageDataset out = EmptyLike(*this, static_cast<int64_t>(indices.size()));
  for (int64_t i : indices) {
    const float* src = image(i);  // checks the range
    out.images.insert(out.images.end(), src, src + sample_numel());
    const int32_t* y = label(i);
    out.labels.insert(out.labels.end(), y, y + labels_per_sample);
  }
  return out;
}

}  // namespace ftte::data
