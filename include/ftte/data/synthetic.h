// A learnable synthetic image set for tests and benchmarks that must not read files: 28x28x1
// images (the shape of Fashion-MNIST) whose label is a bright vertical band (columns 3y..3y+2)
// over noise, so a small model learns it in a few steps.
#ifndef FTTE_DATA_SYNTHETIC_H_
#define FTTE_DATA_SYNTHETIC_H_

#include <cstdint>

#include "ftte/data/dataset.h"

namespace ftte::data {

// n samples, labels uniform over 10 classes, drawn from `seed` (same seed, same data).
ImageDataset SyntheticImages(int64_t n, uint64_t seed);

}  // namespace ftte::data

#endif  // FTTE_DATA_SYNTHETIC_H_
