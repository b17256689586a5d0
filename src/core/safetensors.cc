#include "ftte/core/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <new>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <tuple>
#include <utility>

#include "ftte/core/file.h"

namespace ftte {

// Tensor bytes are copied to and from disk verbatim; safetensors data is little-endian.
static_assert(std::endian::native == std::endian::little,
              "safetensors I/O assumes a little-endian host; add byte swapping to port it");

namespace {

using Json = nlohmann::json;

constexpr size_t kLengthFieldBytes = 8;
// The reference implementation refuses larger headers; so do we, before allocating them.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr char kMetadataKey[] = "__metadata__";
constexpr char kTruncatedHint[] = "the file is truncated; was the write interrupted?";
constexpr char kCorruptHint[] = "the file is corrupt or was not written by a safetensors writer";

// Built by appending: GCC 12 warns (-Wrestrict, a false positive) on "lit" + std::string&&.
std::string Quote(std::string_view s) {
  std::string out = "'";
  out.append(s);
  out += '\'';
  return out;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

std::string OffsetsString(uint64_t begin, uint64_t end) {
  std::string out = "[";
  out += std::to_string(begin);
  out += ", ";
  out += std::to_string(end);
  out += ']';
  return out;
}

// numel * element size, or nullopt on a negative dimension or uint64/int64 overflow.
std::optional<uint64_t> ByteSize(const std::vector<int64_t>& shape, DType dtype) {
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(numel, d, &numel)) return std::nullopt;
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(numel), DTypeSize(dtype), &bytes)) {
    return std::nullopt;
  }
  return bytes;
}

bool IsValidUtf8(const std::string& s) {
  try {
    (void)Json(s).dump();  // strict error handler: throws type_error 316 on invalid UTF-8
    return true;
  } catch (const Json::exception&) {
    return false;
  }
}

void AppendLe64(uint64_t v, std::string* out) {
  for (size_t i = 0; i < kLengthFieldBytes; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

uint64_t LoadLe64(const uint8_t* p) {
  uint64_t v = 0;
  for (size_t i = 0; i < kLengthFieldBytes; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// Runs `fn` and turns any escaping exception (in practice std::bad_alloc for a huge tensor) into
// a Status, so none crosses the public API.
template <typename Fn>
auto NoThrow(const std::string& what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kInternal, what + ": out of memory");
  } catch (const std::exception& e) {
    return Status(StatusCode::kInternal, what + ": unexpected error: " + e.what());
  }
}

// ---------------------------------------------------------------------------------------------
// Writing.

// The 8-byte length field plus the padded JSON header, and the tensors in data-buffer order.
struct WritePlan {
  std::string prefix;
  std::vector<const TensorRecord*> order;
  uint64_t data_bytes = 0;
};

Status ValidateRecord(const TensorRecord& t, const std::set<std::string_view>& seen) {
  if (t.name.empty()) return InvalidArgument("tensor names must be non-empty");
  const std::string where = "tensor " + Quote(t.name) + ": ";
  if (t.name == kMetadataKey) {
    return InvalidArgument(where + "the name is reserved for the safetensors metadata entry");
  }
  if (seen.count(t.name) != 0) {
    return InvalidArgument(where + "duplicate tensor name; every tensor needs a unique name");
  }
  if (!IsValidUtf8(t.name)) return InvalidArgument(where + "the name is not valid UTF-8");
  const std::optional<uint64_t> expected = ByteSize(t.shape, t.dtype);
  if (!expected) {
    return InvalidArgument(where + "shape " + ShapeString(t.shape) +
                           " has a negative dimension or its element count overflows");
  }
  if (*expected != t.bytes) {
    return InvalidArgument(where + std::string(DTypeName(t.dtype)) + " shape " +
                           ShapeString(t.shape) + " needs " + std::to_string(*expected) +
                           " bytes but the record has " + std::to_string(t.bytes));
  }
  if (t.bytes > 0 && t.data == nullptr) return InvalidArgument(where + "data is null");
  return Status::Ok();
}

Result<WritePlan> PlanWrite(const std::vector<TensorRecord>& tensors,
                            const std::map<std::string, std::string>& metadata) {
  WritePlan plan;
  std::set<std::string_view> seen;
  for (const TensorRecord& t : tensors) {
    FTTE_RETURN_IF_ERROR(ValidateRecord(t, seen));
    seen.insert(t.name);
    plan.order.push_back(&t);
  }
  // Widest elements first keeps every tensor aligned to its element size in the file (the
  // buffer itself starts 8-byte aligned); names break ties so the output is deterministic.
  std::sort(plan.order.begin(), plan.order.end(), [](const TensorRecord* a, const TensorRecord* b) {
    const size_t sa = DTypeSize(a->dtype), sb = DTypeSize(b->dtype);
    return sa != sb ? sa > sb : a->name < b->name;
  });

  Json header = Json::object();
  if (!metadata.empty()) {
    Json meta = Json::object();
    for (const auto& [key, value] : metadata) {
      if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
        return InvalidArgument("metadata entry " + Quote(key) + " is not valid UTF-8");
      }
      meta[key] = value;
    }
    header[kMetadataKey] = std::move(meta);
  }
  for (const TensorRecord* t : plan.order) {
    const uint64_t begin = plan.data_bytes;
    plan.data_bytes += t->bytes;
    header[t->name] = {{"dtype", DTypeName(t->dtype)},
                       {"shape", t->shape},
                       {"data_offsets", {begin, plan.data_bytes}}};
  }
  std::string json;
  try {
    json = header.dump();
  } catch (const Json::exception& e) {
    return InvalidArgument(std::string("cannot encode the safetensors header: ") + e.what());
  }
  json.append((8 - json.size() % 8) % 8, ' ');  // data buffer starts 8-byte aligned
  plan.prefix.reserve(kLengthFieldBytes + json.size());
  AppendLe64(json.size(), &plan.prefix);
  plan.prefix += json;
  return plan;
}

std::string ErrnoText() { return std::strerror(errno); }

// ---------------------------------------------------------------------------------------------
// Reading.

// One header entry, validated against the data buffer size.
struct TensorSpan {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin;
  uint64_t end;
};

struct Layout {
  std::vector<TensorSpan> spans;  // sorted by data offset
  std::map<std::string, std::string> metadata;
};

Result<DType> ParseDType(const std::string& name, const std::string& where) {
  static constexpr DType kAll[] = {DType::kF32, DType::kI8, DType::kI32, DType::kI64, DType::kU8};
  for (DType d : kAll) {
    if (name == DTypeName(d)) return d;
  }
  static constexpr std::string_view kOtherSafetensorsDTypes[] = {
      "BOOL",    "F16",     "BF16",    "F64", "I16",     "U16",     "U32", "U64",
      "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "C64"};
  for (std::string_view other : kOtherSafetensorsDTypes) {
    if (name == other) {
      return Status(StatusCode::kUnimplemented,
                    where + "dtype " + name +
                        " is not supported by ftte (supported: F32, I8, I32, I64, U8); convert "
                        "it before saving, e.g. tensor.float() in PyTorch");
    }
  }
  return DataLoss(where + "unknown dtype " + Quote(name) +
                  " (expected one of F32, I8, I32, I64, U8); " + kCorruptHint);
}

// A JSON value that must be a non-negative integer (shape dims, offsets).
Result<uint64_t> ParseCount(const Json& v, const std::string& where, const char* field) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    return DataLoss(where + field + " contains the negative value " +
                    std::to_string(v.get<int64_t>()) + "; " + kCorruptHint);
  }
  return DataLoss(where + field + " contains " + v.dump() + ", not a non-negative integer; " +
                  kCorruptHint);
}

Result<TensorSpan> ParseEntry(const std::string& name, const Json& entry, uint64_t buffer_bytes,
                              const std::string& what) {
  const std::string where = what + ": tensor " + Quote(name) + ": ";
  if (!entry.is_object()) {
    return DataLoss(where + "header entry is " + entry.dump() + ", not an object; " + kCorruptHint);
  }
  const auto dtype_it = entry.find("dtype");
  const auto shape_it = entry.find("shape");
  const auto offsets_it = entry.find("data_offsets");
  if (dtype_it == entry.end() || !dtype_it->is_string()) {
    return DataLoss(where + "missing or non-string \"dtype\"; " + kCorruptHint);
  }
  if (shape_it == entry.end() || !shape_it->is_array()) {
    return DataLoss(where + "missing or non-array \"shape\"; " + kCorruptHint);
  }
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
    return DataLoss(where + "\"data_offsets\" must be an array [begin, end]; " + kCorruptHint);
  }

  TensorSpan span;
  span.name = name;
  FTTE_ASSIGN_OR_RETURN(span.dtype, ParseDType(dtype_it->get<std::string>(), where));
  for (const Json& dim : *shape_it) {
    FTTE_ASSIGN_OR_RETURN(const uint64_t d, ParseCount(dim, where, "shape"));
    if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return DataLoss(where + "shape dimension " + std::to_string(d) + " overflows; " +
                      kCorruptHint);
    }
    span.shape.push_back(static_cast<int64_t>(d));
  }
  const std::optional<uint64_t> expected = ByteSize(span.shape, span.dtype);
  if (!expected) {
    return DataLoss(where + "the element count of shape " + ShapeString(span.shape) +
                    " overflows; " + kCorruptHint);
  }
  FTTE_ASSIGN_OR_RETURN(span.begin, ParseCount((*offsets_it)[0], where, "data_offsets"));
  FTTE_ASSIGN_OR_RETURN(span.end, ParseCount((*offsets_it)[1], where, "data_offsets"));
  const std::string offsets = "data_offsets " + OffsetsString(span.begin, span.end);
  if (span.end < span.begin) {
    return DataLoss(where + offsets + " end before they begin; " + kCorruptHint);
  }
  if (span.end - span.begin != *expected) {
    return DataLoss(where + offsets + " span " + std::to_string(span.end - span.begin) +
                    " bytes but " + DTypeName(span.dtype) + " shape " + ShapeString(span.shape) +
                    " needs " + std::to_string(*expected) + "; " + kCorruptHint);
  }
  if (span.end > buffer_bytes) {
    return DataLoss(where + offsets + " are out of range: the data buffer holds only " +
                    std::to_string(buffer_bytes) + " bytes; " + kTruncatedHint);
  }
  return span;
}

Status ParseMetadata(const Json& meta, const std::string& what,
                     std::map<std::string, std::string>* out) {
  if (!meta.is_object()) {
    return DataLoss(what + ": \"__metadata__\" must be an object of strings; " + kCorruptHint);
  }
  for (const auto& [key, value] : meta.items()) {
    if (!value.is_string()) {
      return DataLoss(what + ": \"__metadata__\" value for " + Quote(key) + " is " + value.dump() +
                      ", not a string; " + kCorruptHint);
    }
    (*out)[key] = value.get<std::string>();
  }
  return Status::Ok();
}

// Checks the length field against the total image size; returns the header length.
Result<uint64_t> CheckHeaderLength(const uint8_t* first_bytes, uint64_t total_bytes,
                                   const std::string& what) {
  if (total_bytes < kLengthFieldBytes) {
    return DataLoss(what + ": only " + std::to_string(total_bytes) +
                    " bytes, shorter than the 8-byte header length field; " + kTruncatedHint);
  }
  const uint64_t n = LoadLe64(first_bytes);
  if (n > kMaxHeaderBytes) {
    return DataLoss(what + ": header length field says " + std::to_string(n) +
                    " bytes, above the 100 MB limit; this is not a safetensors file or its first "
                    "8 bytes are corrupt");
  }
  if (n > total_bytes - kLengthFieldBytes) {
    return DataLoss(what + ": header length field says " + std::to_string(n) + " bytes but only " +
                    std::to_string(total_bytes - kLengthFieldBytes) + " bytes follow it; " +
                    kTruncatedHint);
  }
  return n;
}

// Parses and validates the JSON header against a data buffer of `buffer_bytes`.
Result<Layout> ParseHeader(std::string_view header, uint64_t buffer_bytes,
                           const std::string& what) {
  // nlohmann's lexer stops at a NUL as if the input ended, so "{}\0garbage" would pass; valid
  // JSON never contains a raw NUL (strings must escape it).
  if (const size_t nul = header.find('\0'); nul != std::string_view::npos) {
    return DataLoss(what + ": the header has a NUL byte at offset " + std::to_string(nul) +
                    ", which is not valid JSON; " + kCorruptHint);
  }
  Json root;
  std::string duplicate;
  try {
    std::set<std::string> keys;
    root = Json::parse(header.begin(), header.end(),
                       [&](int depth, Json::parse_event_t event, Json& parsed) {
                         // nlohmann keeps the last of duplicate keys; an ambiguous file is corrupt.
                         if (depth == 1 && event == Json::parse_event_t::key &&
                             !keys.insert(parsed.get<std::string>()).second) {
                           duplicate = parsed.get<std::string>();
                         }
                         return true;
                       });
  } catch (const Json::exception& e) {
    return DataLoss(what + ": the header is not valid JSON (" + e.what() + "); " + kCorruptHint);
  }
  if (!root.is_object() || header.empty() || header.front() != '{') {
    return DataLoss(what + ": the header is not a JSON object starting with '{'; " + kCorruptHint);
  }
  if (!duplicate.empty()) {
    return DataLoss(what + ": the header names " + Quote(duplicate) + " more than once; " +
                    kCorruptHint);
  }

  Layout layout;
  for (const auto& [key, value] : root.items()) {
    if (key == kMetadataKey) {
      FTTE_RETURN_IF_ERROR(ParseMetadata(value, what, &layout.metadata));
      continue;
    }
    FTTE_ASSIGN_OR_RETURN(TensorSpan span, ParseEntry(key, value, buffer_bytes, what));
    layout.spans.push_back(std::move(span));
  }

  // Sorted by (begin, end), the tensors must tile [0, buffer_bytes) exactly; zero-byte tensors
  // may sit at any boundary.
  std::sort(layout.spans.begin(), layout.spans.end(), [](const TensorSpan& a, const TensorSpan& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  uint64_t cursor = 0;
  const TensorSpan* previous = nullptr;
  for (const TensorSpan& s : layout.spans) {
    const std::string where =
        what + ": tensor " + Quote(s.name) + ": data_offsets " + OffsetsString(s.begin, s.end);
    if (s.begin < cursor) {
      return DataLoss(where + " overlap tensor " + Quote(previous->name) + " at " +
                      OffsetsString(previous->begin, previous->end) + "; " + kCorruptHint);
    }
    if (s.begin > cursor) {
      return DataLoss(where + " leave a gap: bytes " + OffsetsString(cursor, s.begin) +
                      " of the data buffer belong to no tensor; " + kCorruptHint);
    }
    cursor = s.end;
    previous = &s;
  }
  if (cursor != buffer_bytes) {
    return DataLoss(what + ": " + std::to_string(buffer_bytes - cursor) +
                    " trailing bytes after the last tensor (tensors cover " +
                    std::to_string(cursor) + " of " + std::to_string(buffer_bytes) +
                    " data bytes); " + kCorruptHint);
  }
  return layout;
}

Status Allocate(LoadedTensor* t, uint64_t bytes, const std::string& what, const std::string& name) {
  try {
    t->data.resize(bytes);
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kInternal, what + ": tensor " + Quote(name) +
                                             ": out of memory allocating " + std::to_string(bytes) +
                                             " bytes");
  }
  return Status::Ok();
}

// Reads exactly `size` bytes; a short read means the file shrank under us.
Status ReadExactly(int fd, void* dst, size_t size, const std::string& path) {
  char* p = static_cast<char*>(dst);
  while (size > 0) {
    const ssize_t n = ::read(fd, p, std::min<size_t>(size, size_t{1} << 30));
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("cannot read " + Quote(path) + ": " + ErrnoText());
    }
    if (n == 0) {
      return DataLoss(Quote(path) + ": unexpected end of file while reading; " + kTruncatedHint);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Result<SafetensorsFile> ReadFileImpl(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return NotFound("no such file: " + Quote(path));
    return IoError("cannot open " + Quote(path) + ": " + ErrnoText());
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0)
    return IoError("cannot stat " + Quote(path) + ": " + ErrnoText());
  if (!S_ISREG(st.st_mode)) return InvalidArgument(Quote(path) + " is not a regular file");
  const uint64_t total = static_cast<uint64_t>(st.st_size);
  const std::string what = Quote(path);

  uint8_t length_field[kLengthFieldBytes] = {};
  if (total >= kLengthFieldBytes) {
    FTTE_RETURN_IF_ERROR(ReadExactly(fd.get(), length_field, kLengthFieldBytes, path));
  }
  FTTE_ASSIGN_OR_RETURN(const uint64_t n, CheckHeaderLength(length_field, total, what));
  std::string header(n, '\0');
  FTTE_RETURN_IF_ERROR(ReadExactly(fd.get(), header.data(), n, path));
  FTTE_ASSIGN_OR_RETURN(Layout layout, ParseHeader(header, total - kLengthFieldBytes - n, what));

  // Spans tile the buffer in order, so the data can be read sequentially without seeking.
  SafetensorsFile file;
  file.metadata = std::move(layout.metadata);
  for (TensorSpan& s : layout.spans) {
    LoadedTensor t;
    t.dtype = s.dtype;
    t.shape = std::move(s.shape);
    FTTE_RETURN_IF_ERROR(Allocate(&t, s.end - s.begin, what, s.name));
    FTTE_RETURN_IF_ERROR(ReadExactly(fd.get(), t.data.data(), t.data.size(), path));
    file.tensors.emplace(std::move(s.name), std::move(t));
  }
  return file;
}

Result<SafetensorsFile> ParseImpl(const uint8_t* bytes, size_t size, const std::string& what) {
  FTTE_ASSIGN_OR_RETURN(const uint64_t n, CheckHeaderLength(bytes, size, what));
  const uint8_t* header = bytes + kLengthFieldBytes;
  const uint8_t* buffer = header + n;
  FTTE_ASSIGN_OR_RETURN(Layout layout,
                        ParseHeader(std::string_view(reinterpret_cast<const char*>(header), n),
                                    size - kLengthFieldBytes - n, what));
  SafetensorsFile file;
  file.metadata = std::move(layout.metadata);
  for (TensorSpan& s : layout.spans) {
    LoadedTensor t;
    t.dtype = s.dtype;
    t.shape = std::move(s.shape);
    FTTE_RETURN_IF_ERROR(Allocate(&t, s.end - s.begin, what, s.name));
    if (!t.data.empty()) std::memcpy(t.data.data(), buffer + s.begin, t.data.size());
    file.tensors.emplace(std::move(s.name), std::move(t));
  }
  return file;
}

}  // namespace

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kI8:
      return 1;
    case DType::kI32:
      return 4;
    case DType::kI64:
      return 8;
    case DType::kU8:
      return 1;
  }
  FTTE_CHECK(false) << "invalid DType " << static_cast<int>(dtype);
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kI8:
      return "I8";
    case DType::kI32:
      return "I32";
    case DType::kI64:
      return "I64";
    case DType::kU8:
      return "U8";
  }
  FTTE_CHECK(false) << "invalid DType " << static_cast<int>(dtype);
  return "";
}

int64_t LoadedTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated on load: no overflow
  return n;
}

Result<std::string> SerializeSafetensors(const std::vector<TensorRecord>& tensors,
                                         const std::map<std::string, std::string>& metadata) {
  return NoThrow("SerializeSafetensors", [&]() -> Result<std::string> {
    FTTE_ASSIGN_OR_RETURN(WritePlan plan, PlanWrite(tensors, metadata));
    std::string out;
    out.reserve(plan.prefix.size() + plan.data_bytes);
    out += plan.prefix;
    for (const TensorRecord* t : plan.order) {
      out.append(static_cast<const char*>(t->data), t->bytes);
    }
    return out;
  });
}

Status WriteSafetensors(const std::string& path, const std::vector<TensorRecord>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  return NoThrow(Quote(path), [&]() -> Status {
    Result<WritePlan> planned = PlanWrite(tensors, metadata);
    if (!planned.ok()) {
      return Status(planned.status().code(),
                    "cannot write " + Quote(path) + ": " + planned.status().message());
    }
    const WritePlan& plan = planned.value();
    std::vector<std::string_view> chunks = {plan.prefix};
    for (const TensorRecord* t : plan.order) {
      chunks.emplace_back(static_cast<const char*>(t->data), t->bytes);
    }
    return WriteFileAtomically(path, chunks);
  });
}

Result<SafetensorsFile> ReadSafetensors(const std::string& path) {
  return NoThrow(Quote(path), [&] { return ReadFileImpl(path); });
}

Result<SafetensorsIndex> IndexSafetensors(const uint8_t* bytes, size_t size,
                                          const std::string& what) {
  return NoThrow(what, [&]() -> Result<SafetensorsIndex> {
    FTTE_ASSIGN_OR_RETURN(const uint64_t n, CheckHeaderLength(bytes, size, what));
    const uint8_t* header = bytes + kLengthFieldBytes;
    FTTE_ASSIGN_OR_RETURN(Layout layout,
                          ParseHeader(std::string_view(reinterpret_cast<const char*>(header), n),
                                      size - kLengthFieldBytes - n, what));
    SafetensorsIndex index;
    index.metadata = std::move(layout.metadata);
    const uint64_t base = kLengthFieldBytes + n;
    for (TensorSpan& t : layout.spans) {
      index.tensors.emplace(std::move(t.name), TensorLocation{t.dtype, std::move(t.shape),
                                                              base + t.begin, t.end - t.begin});
    }
    return index;
  });
}

Result<SafetensorsFile> ParseSafetensors(const uint8_t* bytes, size_t size,
                                         const std::string& what_for_errors) {
  return NoThrow(what_for_errors, [&] { return ParseImpl(bytes, size, what_for_errors); });
}

}  // namespace ftte
