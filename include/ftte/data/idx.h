// Readers for the IDX format used by MNIST and Fashion-MNIST
// (http://yann.lecun.com/exdb/mnist/): a big-endian header `00 00 <type> <ndims>`, ndims
// big-endian uint32 dims, then the elements in row-major order.
//
// Files may be plain or gzip-compressed; compression is detected from the gzip magic (1f 8b),
// not from the file name. All functions read the whole file into memory, are thread-compatible
// (no shared state) and fail with a Status naming the file and the problem:
//   NotFound         the file does not exist
//   IoError          the OS refused to open or read it
//   DataLoss         truncated file, trailing bytes, corrupt gzip stream
//   InvalidArgument  bad magic, unsupported element type, unexpected dims, absurd sizes,
//                    image/label count mismatch, label out of range
#ifndef FTTE_DATA_IDX_H_
#define FTTE_DATA_IDX_H_

#include <cstdint>
#include <string>
#include <vector>

#include "ftte/core/status.h"
#include "ftte/data/dataset.h"

namespace ftte::data {

// Largest element count ReadIdx accepts (2^31); larger headers are rejected before allocating.
inline constexpr int64_t kMaxIdxElements = int64_t{1} << 31;

// Where the Debian package `dataset-fashion-mnist` installs Fashion-MNIST.
inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

// One IDX array. Only element type 0x08 (unsigned byte) is supported.
struct IdxArray {
  uint8_t element_type = 0;
  std::vector<int64_t> dims;  // at least one dim; product <= kMaxIdxElements
  std::vector<uint8_t> data;  // product(dims) elements, row-major
};

// Reads one IDX file (plain or gzip). The file must hold exactly the bytes its header implies.
Result<IdxArray> ReadIdx(const std::string& path);

// Reads an image file ([n, rows, cols], unsigned byte) and a label file ([n]) into a
// single-channel dataset with pixels scaled to [0,1]. Fails if the counts differ or a label
// is >= num_classes (num_classes must be in [1, 256]).
Result<ImageDataset> ReadIdxImageDataset(const std::string& images_path,
                                         const std::string& labels_path, int num_classes = 10);

// Loads the Fashion-MNIST train (60000) or test (10000) split from `dir`, which holds
// {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (uncompressed copies without .gz also work).
// A missing file yields NotFound with a hint to install `dataset-fashion-mnist`.
// Pass kFashionMnistDir for the system copy.
Result<ImageDataset> LoadFashionMnist(const std::string& dir, bool train);

}  // namespace ftte::data

#endif  // FTTE_DATA_IDX_H_
