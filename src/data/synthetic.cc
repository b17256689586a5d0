#include "ftte/data/synthetic.h"

#include <cstddef>

#include "ftte/core/rng.h"

namespace ftte::data {

ImageDataset SyntheticImages(int64_t n, uint64_t seed) {
  ImageDataset d;
  d.size = n;
  d.channels = 1;
  d.height = d.width = 28;
  d.num_classes = 10;
  Rng rng(seed);
  d.images.resize(static_cast<size_t>(n * 784));
  for (int64_t i = 0; i < n; ++i) {
    const auto y = static_cast<int32_t>(rng.Below(10));
    d.labels.push_back(y);
    for (int64_t p = 0; p < 784; ++p) {
      const bool on = (p % 28) / 3 == y;
      d.images[static_cast<size_t>(i * 784 + p)] =
          static_cast<float>((on ? 0.8 : 0.1) + 0.2 * rng.Uniform());
    }
  }
  return d;
}

}  // namespace ftte::data
