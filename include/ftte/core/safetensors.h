// Checkpoint I/O in the safetensors format (https://github.com/huggingface/safetensors), so a
// PyTorch user can `safetensors.torch.load_file()` what ftte writes, and ftte can load what they
// save (for the dtypes below).
//
// Layout: an 8-byte little-endian uint64 N, then N bytes of UTF-8 JSON
//   {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"<key>": "<value>", ...}}          (the "__metadata__" entry is optional)
// padded with spaces so the data buffer starts on an 8-byte boundary, then the data buffer.
// Offsets are relative to the buffer start; tensors are contiguous, do not overlap and cover the
// buffer exactly. Element data is little-endian, row-major (C order).
//
// Writers order tensors by descending element size, then by name, so every tensor's data is
// aligned to its element size within the file (the same rule as the reference implementation).
//
// Nothing here throws; every failure is a Status whose message names the file (or the
// `what_for_errors` label), the tensor, the problem and a hint. All functions are thread-safe
// (no shared state); concurrent writers to the same path are not supported.
#ifndef FTTE_CORE_SAFETENSORS_H_
#define FTTE_CORE_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ftte/core/status.h"

namespace ftte {

// The element types ftte stores. Safetensors names: "F32", "I8", "I32", "I64", "U8". Files with
// other safetensors dtypes (F16, BF16, F64, ...) are rejected on read as Unimplemented.
enum class DType { kF32, kI8, kI32, kI64, kU8 };

// Bytes per element: 4, 1, 4, 8, 1.
size_t DTypeSize(DType dtype);
// The safetensors spelling, e.g. "F32". Returns a static string.
const char* DTypeName(DType dtype);

// A tensor to write. `data` is borrowed, not owned: it must point to `bytes` readable bytes
// (little-endian, row-major) that stay alive for the duration of the call. `bytes` must equal
// numel(shape) * DTypeSize(dtype); a 0-d tensor (empty shape) has one element, and a shape with
// a zero dimension has none (then `data` may be null).
struct TensorRecord {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t bytes = 0;
};

// Serializes `tensors` and `metadata` into one in-memory safetensors image (header and data),
// byte-identical to what WriteSafetensors puts on disk. Costs one copy of all tensor data.
// Fails with InvalidArgument if a name is empty, duplicated or "__metadata__", a dimension is
// negative, `bytes` does not match the shape and dtype, or a name/metadata string is not valid
// UTF-8. An empty `metadata` map omits the "__metadata__" entry.
Result<std::string> SerializeSafetensors(const std::vector<TensorRecord>& tensors,
                                         const std::map<std::string, std::string>& metadata = {});

// Writes a safetensors file atomically: the image is streamed (no full in-memory copy) to
// "<path>.tmp", fsync'ed, renamed over `path`, then the containing directory is fsync'ed. After
// a crash `path` holds either the old or the new complete file. Validates exactly like
// SerializeSafetensors (nothing is created on InvalidArgument); OS failures return IoError and
// remove the temporary file.
Status WriteSafetensors(const std::string& path, const std::vector<TensorRecord>& tensors,
                        const std::map<std::string, std::string>& metadata = {});

// A loaded tensor; owns its bytes (little-endian, row-major). `data` is allocated with operator
// new, so it is aligned for any element type and may be reinterpreted as e.g. const float*.
struct LoadedTensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;

  // Product of `shape`; 1 for a 0-d scalar, 0 if any dimension is 0.
  int64_t numel() const;
};

// The contents of a safetensors file, keyed by tensor name.
struct SafetensorsFile {
  std::map<std::string, LoadedTensor> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__", empty if absent
};

// Reads and validates a whole safetensors file. The header is validated before any tensor data
// is allocated, and each tensor is read straight into its own buffer (peak memory ~ file size).
// Errors: NotFound (no such file), IoError (the OS refused), DataLoss (truncated or corrupt:
// short file, header length beyond the file or over 100 MB, invalid JSON, bad shapes, offsets
// that do not match the shape, fall outside the buffer, overlap, leave gaps or trailing bytes,
// duplicate names), Unimplemented (a valid safetensors dtype that ftte does not support).
Result<SafetensorsFile> ReadSafetensors(const std::string& path);

// Same validation as ReadSafetensors, on an in-memory image of `size` bytes (e.g. received from
// the network). `bytes` is borrowed for the call; the result owns copies. `what_for_errors`
// labels the source in error messages (e.g. "update from client 7").
Result<SafetensorsFile> ParseSafetensors(const uint8_t* bytes, size_t size,
                                         const std::string& what_for_errors);

// Where each tensor of a safetensors image lies, for reading tensors in place (e.g. from a
// memory map) without copying them.
struct TensorLocation {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // of the first byte, from the start of the image
  uint64_t bytes = 0;
};
struct SafetensorsIndex {
  std::map<std::string, TensorLocation> tensors;
  std::map<std::string, std::string> metadata;
};
// Validates an in-memory image exactly like ParseSafetensors and returns where its tensors are.
// Copies nothing; `bytes` is only read during the call.
Result<SafetensorsIndex> IndexSafetensors(const uint8_t* bytes, size_t size,
                                          const std::string& what_for_errors);

}  // namespace ftte

#endif  // FTTE_CORE_SAFETENSORS_H_
