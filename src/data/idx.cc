#include "ftte/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

namespace ftte::data {

namespace {

namespace fs = std::filesystem;

// A file read sequentially, plain or gzip-compressed. zlib's gzread passes plain files through
// unchanged, so one handle serves both; the magic is sniffed only to word error messages.
class InputFile {
 public:
  static Result<InputFile> Open(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) return InvalidArgument(path + ": is a directory, not a file");
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
      const int err = errno;
      std::string msg = "cannot open " + path + ": " + std::strerror(err);
      return err == ENOENT ? NotFound(std::move(msg)) : IoError(std::move(msg));
    }
    unsigned char magic[2] = {0, 0};
    const size_t n = std::fread(magic, 1, 2, f);
    std::fclose(f);
    gzFile gz = gzopen(path.c_str(), "rb");
    if (gz == nullptr) return IoError("cannot open " + path + ": " + std::strerror(errno));
    InputFile in;
    in.path_ = path;
    in.gz_.reset(gz);
    in.gzip_ = n == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    return in;
  }

  // Reads up to n bytes into dst; fewer only at the end of the data.
  Result<size_t> Read(uint8_t* dst, size_t n) {
    size_t total = 0;
    while (total < n) {
      const auto chunk = static_cast<unsigned>(std::min<size_t>(n - total, size_t{1} << 30));
      const int r = gzread(gz_.get(), dst + total, chunk);
      if (r < 0) {
        int errnum = Z_OK;
        const char* msg = gzerror(gz_.get(), &errnum);
        if (errnum == Z_ERRNO) return IoError(path_ + ": read failed: " + std::strerror(errno));
        return DataLoss(path_ + ": corrupt gzip stream: " + msg);
      }
      if (r == 0) break;
      total += static_cast<size_t>(r);
    }
    return total;
  }

  bool gzip() const { return gzip_; }
  // True once a gzip stream has ended without its trailer (a truncated .gz file).
  bool stream_truncated() const {
    int errnum = Z_OK;
    gzerror(gz_.get(), &errnum);
    return gzip_ && errnum == Z_BUF_ERROR;
  }

 private:
  struct GzClose {
    void operator()(gzFile f) const { gzclose(f); }
  };
  std::string path_;
  std::unique_ptr<gzFile_s, GzClose> gz_;
  bool gzip_ = false;
};

std::string FormatDims(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

const char* ElementTypeName(uint8_t type) {
  switch (type) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0B:
      return "int16";
    case 0x0C:
      return "int32";
    case 0x0D:
      return "float32";
    case 0x0E:
      return "float64";
  }
  return "unknown";
}

// "0x" followed by `digits` lowercase hex digits.
std::string Hex(uint32_t v, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%0*x", digits, v);
  return buf;
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

Status Truncated(const InputFile& in, const std::string& path, const std::string& what,
                 uint64_t expected, uint64_t found) {
  std::string msg = path + ": truncated IDX file: " + what + " needs " + std::to_string(expected) +
                    " bytes, found " + std::to_string(found);
  if (in.gzip()) msg += " after gzip decompression";
  if (in.stream_truncated()) msg += " (the gzip stream itself ends early)";
  return DataLoss(std::move(msg));
}

}  // namespace

Result<IdxArray> ReadIdx(const std::string& path) {
  FTTE_ASSIGN_OR_RETURN(InputFile in, InputFile::Open(path));

  uint8_t magic[4];
  FTTE_ASSIGN_OR_RETURN(size_t got, in.Read(magic, sizeof(magic)));
  if (got < sizeof(magic)) return Truncated(in, path, "the IDX magic", sizeof(magic), got);
  if (magic[0] != 0 || magic[1] != 0) {
    return InvalidArgument(path + ": bad IDX magic: expected 0x0000TTNN (two zero bytes, " +
                           "element type TT, dim count NN, e.g. 0x00000803), found " +
                           Hex(BigEndian32(magic), 8) + "; is this an IDX file?");
  }
  IdxArray out;
  out.element_type = magic[2];
  if (out.element_type != 0x08) {
    return InvalidArgument(path + ": unsupported IDX element type " + Hex(out.element_type, 2) +
                           " (" + ElementTypeName(out.element_type) +
                           "); only 0x08 (unsigned byte) is supported");
  }
  const int ndims = magic[3];
  if (ndims == 0) return InvalidArgument(path + ": IDX header declares 0 dims; expected >= 1");

  std::vector<uint8_t> header(static_cast<size_t>(ndims) * 4);
  FTTE_ASSIGN_OR_RETURN(got, in.Read(header.data(), header.size()));
  if (got < header.size()) {
    return Truncated(in, path, "a header with " + std::to_string(ndims) + " dims",
                     4 + header.size(), 4 + got);
  }
  bool has_zero = false;
  for (int i = 0; i < ndims; ++i) {
    out.dims.push_back(BigEndian32(&header[static_cast<size_t>(i) * 4]));
    has_zero = has_zero || out.dims.back() == 0;
  }
  // Guard the product before allocating: a corrupt header must not become a huge allocation.
  uint64_t numel = has_zero ? 0 : 1;
  for (int64_t d : out.dims) {
    if (numel != 0 && static_cast<uint64_t>(d) > kMaxIdxElements / numel) {
      return InvalidArgument(path + ": IDX dims " + FormatDims(out.dims) +
                             " describe more than 2^31 elements; corrupt header?");
    }
    numel *= static_cast<uint64_t>(d);
  }

  // Grow the buffer as data arrives so a lying header on a short file costs little memory.
  const uint64_t header_bytes = 4 + header.size();
  constexpr size_t kChunk = size_t{16} << 20;
  while (out.data.size() < numel) {
    const size_t old = out.data.size();
    const size_t want = std::min<size_t>(numel - old, kChunk);
    out.data.resize(old + want);
    FTTE_ASSIGN_OR_RETURN(got, in.Read(out.data.data() + old, want));
    if (got < want) {
      return Truncated(in, path, "a file with dims " + FormatDims(out.dims), header_bytes + numel,
                       header_bytes + old + got);
    }
  }
  // Reading past the data also makes zlib verify the gzip trailer (CRC and length).
  uint8_t extra;
  FTTE_ASSIGN_OR_RETURN(got, in.Read(&extra, 1));
  if (got != 0) {
    return DataLoss(path + ": IDX file has trailing bytes after the " +
                    std::to_string(header_bytes + numel) + " bytes its dims " +
                    FormatDims(out.dims) + " imply; dims do not match the file size");
  }
  if (in.stream_truncated()) {
    return DataLoss(path + ": gzip stream ends early (missing trailer); truncated .gz file?");
  }
  return out;
}

Result<ImageDataset> ReadIdxImageDataset(const std::string& images_path,
                                         const std::string& labels_path, int num_classes) {
  if (num_classes < 1 || num_classes > 256) {
    return InvalidArgument("num_classes must be in [1, 256] for byte labels, got " +
                           std::to_string(num_classes));
  }
  FTTE_ASSIGN_OR_RETURN(IdxArray images, ReadIdx(images_path));
  if (images.dims.size() != 3) {
    return InvalidArgument(images_path + ": expected 3-D IDX images [n, rows, cols], got dims " +
                           FormatDims(images.dims) + "; is this the image file?");
  }
  FTTE_ASSIGN_OR_RETURN(IdxArray labels, ReadIdx(labels_path));
  if (labels.dims.size() != 1) {
    return InvalidArgument(labels_path + ": expected 1-D IDX labels [n], got dims " +
                           FormatDims(labels.dims) + "; is this the label file?");
  }
  if (images.dims[0] != labels.dims[0]) {
    return InvalidArgument("image count " + std::to_string(images.dims[0]) + " in " + images_path +
                           " does not match label count " + std::to_string(labels.dims[0]) +
                           " in " + labels_path);
  }
  if (images.dims[1] > INT_MAX || images.dims[2] > INT_MAX) {
    return InvalidArgument(images_path + ": image size " + FormatDims(images.dims) +
                           " is too large");
  }

  ImageDataset ds;
  ds.size = images.dims[0];
  ds.channels = 1;
  ds.height = static_cast<int>(images.dims[1]);
  ds.width = static_cast<int>(images.dims[2]);
  ds.num_classes = num_classes;
  ds.labels.reserve(labels.data.size());
  for (size_t i = 0; i < labels.data.size(); ++i) {
    if (labels.data[i] >= num_classes) {
      return InvalidArgument(labels_path + ": label " + std::to_string(labels.data[i]) +
                             " at index " + std::to_string(i) + " is out of range [0, " +
                             std::to_string(num_classes) + ")");
    }
    ds.labels.push_back(labels.data[i]);
  }
  ds.images.resize(images.data.size());
  std::transform(images.data.begin(), images.data.end(), ds.images.begin(),
                 [](uint8_t p) { return static_cast<float>(p) / 255.0f; });
  return ds;
}

Result<ImageDataset> LoadFashionMnist(const std::string& dir, bool train) {
  const std::string prefix = train ? "train" : "t10k";
  std::string paths[2];
  const char* kinds[2] = {"-images-idx3-ubyte", "-labels-idx1-ubyte"};
  for (int i = 0; i < 2; ++i) {
    const std::string base = (fs::path(dir) / (prefix + kinds[i])).string();
    std::error_code ec;
    if (fs::exists(base + ".gz", ec)) {
      paths[i] = base + ".gz";
    } else if (fs::exists(base, ec)) {
      paths[i] = base;  // a gunzipped copy
    } else {
      return NotFound(base + ".gz: Fashion-MNIST file not found; install the Debian package " +
                      "dataset-fashion-mnist (scripts/setup.sh does it) or pass another " +
                      "directory");
    }
  }
  return ReadIdxImageDataset(paths[0], paths[1], 10);
}

}  // namespace ftte::data
