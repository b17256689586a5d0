// Frozen weights read in place from storage (DESIGN.md §3): the int8 frozen rows of a model
// written once to a safetensors file, then memory-mapped read-only, so that a device with flash
// keeps them out of its heap (FrozenStorage::kInt8Mapped). The heap then holds only what
// training needs besides; the mapped bytes are reported as their own figure.
//
// The file is specific to the model and its mask (which rows are frozen). Opening it checks
// both and a checksum of the contents; afterwards, Unchanged() detects a file replaced,
// truncated or rewritten underneath the mapping (size, modification time, inode), so that a
// trainer refuses to compute with values that may have changed.
#ifndef FTTE_CORE_FROZEN_FILE_H_
#define FTTE_CORE_FROZEN_FILE_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ftte/core/model.h"
#include "ftte/core/status.h"

namespace ftte {

// Writes the frozen rows of every matrix that int8 may hold ("<name>.q" I8 [frozen rows,
// row_size] and "<name>.scale" F32 [frozen rows]) atomically to `path`, quantised exactly as
// SetStorage(kInt8) would. The model must be float32-stored. Errors name the path.
Status WriteFrozenRows(const Model& model, const std::string& path);

class MappedFrozenRows {
 public:
  // Maps `path` read-only and validates it against `model` and its current mask: the model
  // name, every tensor's presence, dtype and shape, and the checksum. Errors name the file and
  // what to do (write it again for this model and mask).
  static Result<std::unique_ptr<MappedFrozenRows>> Open(const std::string& path,
                                                        const Model& model);
  ~MappedFrozenRows();
  MappedFrozenRows(const MappedFrozenRows&) = delete;
  MappedFrozenRows& operator=(const MappedFrozenRows&) = delete;

  // Points the model's int8-able frozen rows at the mapping (Parameter::UseExternalFrozenRows).
  // The mask must be the one the file was written for (checked at Open).
  void Attach(Model& model) const;
  // DataLoss naming the file if it was replaced, truncated or rewritten since Open.
  Status Unchanged() const;
  int64_t bytes() const { return static_cast<int64_t>(size_); }
  const std::string& path() const { return path_; }

 private:
  MappedFrozenRows() = default;

  struct Rows {
    std::string name;
    const int8_t* q = nullptr;
    const float* scale = nullptr;
  };
  std::string path_;
  int fd_ = -1;
  void* base_ = nullptr;
  size_t size_ = 0;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  int64_t mtime_ns_ = 0;
  std::vector<Rows> rows_;
};

}  // namespace ftte

#endif  // FTTE_CORE_FROZEN_FILE_H_
