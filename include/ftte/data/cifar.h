// Reader for the CIFAR-10 binary version (cifar-10-binary.tar.gz from
// https://www.cs.toronto.edu/~kriz/cifar.html). Each batch file is a sequence of 3073-byte
// records: one label byte (0..9) then a 3x32x32 image, channel-major (all red, green, blue).
//
// Functions read whole files into memory, share no state, and fail with a Status naming the
// file: NotFound (missing file), IoError (unreadable), InvalidArgument (size not a multiple of
// 3073, label > 9, no paths).
#ifndef FTTE_DATA_CIFAR_H_
#define FTTE_DATA_CIFAR_H_

#include <string>
#include <vector>

#include "ftte/core/status.h"
#include "ftte/data/dataset.h"

namespace ftte::data {

inline constexpr int kCifar10RecordBytes = 1 + 3 * 32 * 32;

// Reads and concatenates the given batch files, in order, into one dataset of 3x32x32 images
// with pixels scaled to [0,1] and num_classes = 10.
Result<ImageDataset> ReadCifar10Batches(const std::vector<std::string>& paths);

// Loads the train split (data_batch_1.bin .. data_batch_5.bin, 50000 images) or the test split
// (test_batch.bin, 10000 images) from `dir`, e.g. the extracted cifar-10-batches-bin folder.
Result<ImageDataset> LoadCifar10(const std::string& dir, bool train);

}  // namespace ftte::data

#endif  // FTTE_DATA_CIFAR_H_
