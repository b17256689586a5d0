#include "ftte/data/cifar.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

namespace ftte::data {

namespace {

namespace fs = std::filesystem;

constexpr int kCifar10Classes = 10;
constexpr int64_t kCifar10Pixels = kCifar10RecordBytes - 1;

struct FileClose {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// Appends the records of one batch file to `ds`.
Status AppendBatch(const std::string& path, ImageDataset& ds) {
  std::error_code ec;
  const uintmax_t bytes = fs::file_size(path, ec);
  if (ec) {
    std::string msg = "cannot read CIFAR-10 batch " + path + ": " + ec.message();
    return ec == std::errc::no_such_file_or_directory ? NotFound(std::move(msg))
                                                      : IoError(std::move(msg));
  }
  if (bytes == 0 || bytes % kCifar10RecordBytes != 0) {
    return InvalidArgument(path + ": file size " + std::to_string(bytes) +
                           " bytes is not a positive multiple of the " +
                           std::to_string(kCifar10RecordBytes) +
                           "-byte CIFAR-10 record; is this a CIFAR-10 binary batch?");
  }
  std::unique_ptr<std::FILE, FileClose> f(std::fopen(path.c_str(), "rb"));
  if (f == nullptr) return IoError("cannot open " + path + ": " + std::strerror(errno));
  std::vector<uint8_t> raw(bytes);
  if (std::fread(raw.data(), 1, raw.size(), f.get()) != raw.size()) {
    return IoError(path + ": short read: expected " + std::to_string(bytes) +
                   " bytes (did the file change while reading?)");
  }

  const auto records = static_cast<int64_t>(bytes / kCifar10RecordBytes);
  ds.images.reserve(ds.images.size() + static_cast<size_t>(records * kCifar10Pixels));
  ds.labels.reserve(ds.labels.size() + static_cast<size_t>(records));
  for (int64_t r = 0; r < records; ++r) {
    const uint8_t* rec = raw.data() + r * kCifar10RecordBytes;
    if (rec[0] >= kCifar10Classes) {
      return InvalidArgument(path + ": record " + std::to_string(r) + " has label " +
                             std::to_string(rec[0]) +
                             "; CIFAR-10 labels are 0..9 (is this a CIFAR-100 file?)");
    }
    ds.labels.push_back(rec[0]);
    for (int64_t p = 1; p <= kCifar10Pixels; ++p) {
      ds.images.push_back(static_cast<float>(rec[p]) / 255.0f);
    }
  }
  ds.size += records;
  return Status::Ok();
}

}  // namespace

Result<ImageDataset> ReadCifar10Batches(const std::vector<std::string>& paths) {
  if (paths.empty()) return InvalidArgument("ReadCifar10Batches: no batch files given");
  ImageDataset ds;
  ds.channels = 3;
  ds.height = 32;
  ds.width = 32;
  ds.num_classes = kCifar10Classes;
  for (const std::string& path : paths) FTTE_RETURN_IF_ERROR(AppendBatch(path, ds));
  return ds;
}

Result<ImageDataset> LoadCifar10(const std::string& dir, bool train) {
  std::vector<std::string> names;
  if (train) {
    for (int i = 1; i <= 5; ++i) names.push_back("data_batch_" + std::to_string(i) + ".bin");
  } else {
    names.push_back("test_batch.bin");
  }
  std::vector<std::string> paths;
  for (const std::string& name : names) {
    const std::string path = (fs::path(dir) / name).string();
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      return NotFound(
          path + ": CIFAR-10 batch not found; download the binary version " +
          "(cifar-10-binary.tar.gz) from https://www.cs.toronto.edu/~kriz/cifar.html, " +
          "extract it and pass its cifar-10-batches-bin directory");
    }
    paths.push_back(path);
  }
  return ReadCifar10Batches(paths);
}

}  // namespace ftte::data
