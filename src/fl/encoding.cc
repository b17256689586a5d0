#include "ftte/fl/encoding.h"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <utility>

#include "ftte/core/check.h"

namespace ftte::fl {
namespace {

constexpr char kMagic[4] = {'F', 'T', 'U', '1'};
constexpr uint8_t kFlagSparse = 1;
constexpr uint8_t kFlagInt8 = 2;
constexpr uint8_t kFlagRowStats = 4;
// Magic, flags, 3 reserved bytes, 3 x i64, f32, f64, i64, u32 parameter count.
constexpr int64_t kHeaderBytes = 4 + 1 + 3 + 8 * 3 + 4 + 8 + 8 + 4;
constexpr int64_t kChecksumBytes = 4;
constexpr float kInt8Max = 127.0f;

enum Selection : uint8_t { kNone = 0, kAll = 1, kRunList = 2, kBitmap = 3 };

template <typename... Args>
std::string Cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

std::string Where(size_t k, const std::vector<ParamLayout>& layout) {
  return Cat("parameter ", k, " (", layout[k].name, ")");
}

// zlib's crc32 takes a 32-bit length; feed it in chunks so any size works.
uint32_t Crc32(std::string_view bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  constexpr size_t kChunk = size_t{1} << 30;
  for (size_t at = 0; at < bytes.size(); at += kChunk) {
    const size_t n = std::min(kChunk, bytes.size() - at);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + at), static_cast<uInt>(n));
  }
  return static_cast<uint32_t>(crc);
}

// ---- Planning: what EncodeUpdate writes for one parameter, shared with EncodedSize. ----

struct ParamPlan {
  Selection selection = kAll;  // dense encodings write none but behave as kAll
  int64_t selected_rows = 0;
  int64_t runs = 0;
  int64_t selection_bytes = 0;  // kind byte and body (sparse only)
  int64_t values = 0;           // values written
  bool has_values = false;      // false only for a sparse kNone (not even an int8 scale)
};

ParamPlan Plan(const std::vector<uint8_t>& rows, const ParamLayout& p, const EncodeOptions& o) {
  FTTE_CHECK(static_cast<int64_t>(rows.size()) == p.rows)
      << p.name << ": mask has " << rows.size() << " rows, layout " << p.rows;
  FTTE_CHECK(p.rows <= int64_t{std::numeric_limits<uint32_t>::max()})
      << p.name << ": " << p.rows << " rows do not fit the u32 row indices of the encoding";
  ParamPlan plan;
  for (size_t r = 0; r < rows.size(); ++r) {
    if (!rows[r]) continue;
    ++plan.selected_rows;
    if (r == 0 || !rows[r - 1]) ++plan.runs;
  }
  if (!o.sparse) {
    plan.values = p.numel();
    plan.has_values = true;
    return plan;
  }
  plan.values = plan.selected_rows * p.row_size;
  plan.has_values = plan.selected_rows > 0;
  plan.selection_bytes = 1;
  if (plan.selected_rows == 0) {
    plan.selection = kNone;
  } else if (plan.selected_rows == p.rows) {
    plan.selection = kAll;
  } else {
    const int64_t run_list = 4 + 8 * plan.runs;
    const int64_t bitmap = (p.rows + 7) / 8;
    plan.selection = run_list <= bitmap ? kRunList : kBitmap;
    plan.selection_bytes += std::min(run_list, bitmap);
  }
  return plan;
}

int64_t ValueBytes(const ParamPlan& plan, const EncodeOptions& o) {
  if (!plan.has_values) return 0;
  return o.int8 ? 4 + plan.values : 4 * plan.values;
}

void CheckMaskShape(const Mask& mask, const std::vector<ParamLayout>& layout) {
  FTTE_CHECK(mask.rows.size() == layout.size())
      << "mask has " << mask.rows.size() << " parameters, layout " << layout.size();
  FTTE_CHECK(layout.size() <= std::numeric_limits<uint32_t>::max())
      << layout.size() << " parameters do not fit the u32 count of the encoding";
}

// ---- Writing (little-endian, independent of the host's byte order). ----

void PutU8(uint8_t v, std::string* out) { out->push_back(static_cast<char>(v)); }
void PutU32(uint32_t v, std::string* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(uint64_t v, std::string* out) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void PutF32(float v, std::string* out) { PutU32(std::bit_cast<uint32_t>(v), out); }
void PutF64(double v, std::string* out) { PutU64(std::bit_cast<uint64_t>(v), out); }

// max|v|/127, or 1 when every value is zero (any scale decodes zeros exactly). A non-finite
// value makes the scale NaN so that the decoder rejects the update instead of silently
// clamping it. A scale that underflows to zero becomes the smallest positive float: values
// that small are multiples of it, so they still round-trip.
float Int8Scale(const float* v, int64_t n) {
  float max_abs = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) return std::numeric_limits<float>::quiet_NaN();
    max_abs = std::max(max_abs, std::fabs(v[i]));
  }
  if (max_abs == 0) return 1.0f;
  const float scale = max_abs / kInt8Max;
  return scale > 0 ? scale : std::numeric_limits<float>::denorm_min();
}

int8_t Quantize(float v, float scale) {
  float x = std::round(v / scale);
  // Written so that NaN (only possible with a NaN scale, which the decoder rejects) lands
  // in range too: a float-to-int conversion out of range is undefined behaviour.
  x = x > kInt8Max ? kInt8Max : (x >= -kInt8Max ? x : -kInt8Max);
  return static_cast<int8_t>(x);
}

// ---- Reading. ----

// The little-endian u32 at the start of `at` (which holds at least 4 bytes).
uint32_t LoadU32(std::string_view at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<uint8_t>(at[i])} << (8 * i);
  return v;
}

// Error construction for DecodeUpdate. `intact` says whether the last four bytes are the CRC
// of everything before them, i.e. the bytes are exactly what some encoder wrote. If so, an
// inconsistency is the caller's (wrong layout) or the encoder's, and is reported as such;
// if not, the bytes were damaged on the way, and the first inconsistency is only a symptom.
class Errors {
 public:
  explicit Errors(bool intact) : intact_(intact) {}

  Status Truncated(const std::string& what, size_t offset, uint64_t need, size_t left) const {
    if (intact_) {
      return InvalidArgument(
          Cat("the update ends while reading ", what, " (", need, " bytes at offset ", offset, ", ",
              left,
              " left) although its checksum is intact: was it encoded for a different "
              "model layout?"));
    }
    return DataLoss(Cat("truncated update: it ends while reading ", what, " (needs ", need,
                        " bytes at offset ", offset, ", only ", left, " left)"));
  }

  Status Malformed(const std::string& message) const {
    if (intact_) return InvalidArgument(message);
    return DataLoss(
        Cat("checksum mismatch: the update is corrupt or truncated (first "
            "inconsistency: ",
            message, ")"));
  }

 private:
  bool intact_;
};

class Reader {
 public:
  Reader(std::string_view bytes, const Errors& errors) : bytes_(bytes), errors_(errors) {}

  size_t pos() const { return pos_; }
  size_t left() const { return bytes_.size() - pos_; }

  // OK if `n` more bytes can be read; else the truncation error naming `what`.
  Status Need(uint64_t n, const std::string& what) const {
    if (n <= left()) return Status::Ok();
    return errors_.Truncated(what, pos_, n, left());
  }

  // The unchecked reads below follow a Need covering them.
  uint8_t U8() { return static_cast<uint8_t>(bytes_[pos_++]); }
  uint32_t U32() {
    const uint32_t v = LoadU32(bytes_.substr(pos_));
    pos_ += 4;
    return v;
  }
  uint64_t U64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{U8()} << (8 * i);
    return v;
  }
  int64_t I64() { return static_cast<int64_t>(U64()); }
  float F32() { return std::bit_cast<float>(U32()); }
  double F64() { return std::bit_cast<double>(U64()); }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
  const Errors& errors_;
};

std::string Printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// Reads parameter k's row selection into `rows` (sized to the layout) and returns the kind.
Result<Selection> ReadSelection(Reader& in, size_t k, const std::vector<ParamLayout>& layout,
                                const Errors& errors, std::vector<uint8_t>* rows) {
  const std::string where = Where(k, layout);
  const int64_t num_rows = layout[k].rows;
  FTTE_RETURN_IF_ERROR(in.Need(1, where + " row selection kind"));
  const uint8_t kind = in.U8();
  switch (kind) {
    case kNone:
      return kNone;
    case kAll:
      std::fill(rows->begin(), rows->end(), 1);
      return kAll;
    case kRunList: {
      FTTE_RETURN_IF_ERROR(in.Need(4, where + " run count"));
      const uint32_t count = in.U32();
      // Runs are non-empty and disjoint, so there are at most `num_rows` of them; checked
      // before the runs are read so that a hostile count costs nothing.
      if (count > num_rows) {
        return errors.Malformed(
            Cat(where, ": run list claims ", count, " runs for ", num_rows, " rows"));
      }
      FTTE_RETURN_IF_ERROR(
          in.Need(uint64_t{8} * count, Cat(where, " run list (", count, " runs)")));
      int64_t prev_begin = -1;
      int64_t prev_end = 0;
      for (uint32_t i = 0; i < count; ++i) {
        const int64_t begin = in.U32();
        const int64_t end = in.U32();
        auto run = [&] { return Cat("run [", begin, ", ", end, ")"); };  // built on error only
        if (begin >= end) return errors.Malformed(Cat(where, ": ", run(), " is empty"));
        if (end > num_rows) {
          return errors.Malformed(Cat(where, ": ", run(), " exceeds ", num_rows, " rows"));
        }
        if (begin < prev_end) {
          return errors.Malformed(Cat(where, ": ", run(), " overlaps or precedes run [", prev_begin,
                                      ", ", prev_end, "); runs must be sorted and disjoint"));
        }
        std::fill(rows->begin() + begin, rows->begin() + end, 1);
        prev_begin = begin;
        prev_end = end;
      }
      return kRunList;
    }
    case kBitmap: {
      const int64_t num_bytes = (num_rows + 7) / 8;
      FTTE_RETURN_IF_ERROR(in.Need(static_cast<uint64_t>(num_bytes), where + " row bitmap"));
      for (int64_t b = 0; b < num_bytes; ++b) {
        const uint8_t byte = in.U8();
        for (int bit = 0; bit < 8; ++bit) {
          if (!(byte >> bit & 1)) continue;
          const int64_t r = 8 * b + bit;
          if (r >= num_rows) {
            return errors.Malformed(
                Cat(where, ": row bitmap selects row ", r, " beyond ", num_rows, " rows"));
          }
          (*rows)[r] = 1;
        }
      }
      return kBitmap;
    }
    default:
      return errors.Malformed(Cat(where, ": unknown row selection kind ", int{kind},
                                  " (known: 0 none, 1 all, 2 run list, 3 bitmap)"));
  }
}

// Appends parameter k's `n` values to `out`, checking each is finite.
Status ReadValues(Reader& in, size_t k, const std::vector<ParamLayout>& layout, int64_t n,
                  bool int8, const Errors& errors, std::vector<float>* out) {
  const std::string where = Where(k, layout);
  const size_t at = out->size();
  if (int8) {
    FTTE_RETURN_IF_ERROR(
        in.Need(4 + static_cast<uint64_t>(n), Cat(where, " values (a scale and ", n, " int8)")));
    const float scale = in.F32();
    if (!std::isfinite(scale) || scale < 0) {
      return errors.Malformed(
          Cat(where, ": int8 scale ", scale, " is not a finite non-negative number"));
    }
    out->resize(at + static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const int8_t q = static_cast<int8_t>(in.U8());
      if (q < -127) {
        return errors.Malformed(
            Cat(where, ": int8 value ", int{q}, " (value ", i, ") is outside [-127, 127]"));
      }
      const float v = static_cast<float>(q) * scale;
      if (!std::isfinite(v)) {
        return errors.Malformed(Cat(where, ": non-finite value ", v, " (value ", i, ")"));
      }
      (*out)[at + static_cast<size_t>(i)] = v;
    }
    return Status::Ok();
  }
  FTTE_RETURN_IF_ERROR(
      in.Need(4 * static_cast<uint64_t>(n), Cat(where, " values (", n, " float32)")));
  out->resize(at + static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float v = in.F32();
    if (!std::isfinite(v)) {
      return errors.Malformed(Cat(where, ": non-finite value ", v, " (value ", i, ")"));
    }
    (*out)[at + static_cast<size_t>(i)] = v;
  }
  return Status::Ok();
}

// The row statistics: one finite, non-negative float per row of the mask.
Status ReadRowStats(Reader& in, const Mask& mask, const Errors& errors, std::vector<float>* out) {
  FTTE_RETURN_IF_ERROR(in.Need(4, "the row statistics count"));
  const uint32_t count = in.U32();
  const int64_t rows = mask.Rows();
  if (count != rows) {
    return errors.Malformed(
        Cat("the update has ", count, " row statistics for the ", rows, " rows it selects"));
  }
  FTTE_RETURN_IF_ERROR(in.Need(4 * uint64_t{count}, Cat("row statistics (", count, " float32)")));
  out->resize(count);
  for (uint32_t i = 0; i < count; ++i) {
    const float v = in.F32();
    if (!std::isfinite(v) || v < 0) {
      return errors.Malformed(
          Cat("row statistic ", v, " (row ", i, ") is not a finite non-negative number"));
    }
    (*out)[i] = v;
  }
  return Status::Ok();
}

}  // namespace

int64_t EncodedSize(const Mask& mask, const std::vector<ParamLayout>& layout,
                    const EncodeOptions& options) {
  CheckMaskShape(mask, layout);
  int64_t size = kHeaderBytes + kChecksumBytes;
  int64_t rows = 0;
  for (size_t k = 0; k < layout.size(); ++k) {
    const ParamPlan plan = Plan(mask.rows[k], layout[k], options);
    size += plan.selection_bytes + ValueBytes(plan, options);
    rows += plan.selected_rows;
  }
  if (options.row_stats) size += 4 + 4 * rows;
  return size;
}

// Bitmaps are LSB-first: row r is bit (r % 8) of byte r / 8.
std::string EncodeUpdate(const Update& u, const Mask& mask, const std::vector<ParamLayout>& layout,
                         const EncodeOptions& options) {
  CheckMaskShape(mask, layout);
  FTTE_CHECK(static_cast<int64_t>(u.delta.size()) == mask.Numel(layout))
      << "update delta has " << u.delta.size() << " values, the mask covers " << mask.Numel(layout);
  const int64_t expected_size = EncodedSize(mask, layout, options);
  std::string out;
  out.reserve(static_cast<size_t>(expected_size));

  out.append(kMagic, sizeof(kMagic));
  PutU8((options.sparse ? kFlagSparse : 0) | (options.int8 ? kFlagInt8 : 0) |
            (options.row_stats ? kFlagRowStats : 0),
        &out);
  out.append(3, '\0');
  PutU64(static_cast<uint64_t>(u.device), &out);
  PutU64(static_cast<uint64_t>(u.base_version), &out);
  PutU64(static_cast<uint64_t>(u.num_samples), &out);
  PutF32(u.loss, &out);
  PutF64(u.variance, &out);
  PutU64(static_cast<uint64_t>(u.update_id), &out);
  PutU32(static_cast<uint32_t>(layout.size()), &out);

  const float* packed = u.delta.data();
  for (size_t k = 0; k < layout.size(); ++k) {
    const std::vector<uint8_t>& rows = mask.rows[k];
    const int64_t row_size = layout[k].row_size;
    const ParamPlan plan = Plan(rows, layout[k], options);
    if (options.sparse) {
      PutU8(plan.selection, &out);
      if (plan.selection == kRunList) {
        PutU32(static_cast<uint32_t>(plan.runs), &out);
        for (size_t r = 0; r < rows.size();) {
          if (!rows[r]) {
            ++r;
            continue;
          }
          size_t e = r;
          while (e < rows.size() && rows[e]) ++e;
          PutU32(static_cast<uint32_t>(r), &out);
          PutU32(static_cast<uint32_t>(e), &out);
          r = e;
        }
      } else if (plan.selection == kBitmap) {
        for (size_t b = 0; b < (rows.size() + 7) / 8; ++b) {
          uint8_t byte = 0;
          for (size_t bit = 0; bit < 8 && 8 * b + bit < rows.size(); ++bit) {
            if (rows[8 * b + bit]) byte |= static_cast<uint8_t>(1u << bit);
          }
          PutU8(byte, &out);
        }
      }
    }
    // This parameter's packed values; dense writes them expanded, zeros outside the mask.
    const int64_t num_packed = plan.selected_rows * row_size;
    if (plan.has_values) {
      const float scale = options.int8 ? Int8Scale(packed, num_packed) : 1.0f;
      if (options.int8) PutF32(scale, &out);
      auto put = [&](float v) {
        if (options.int8) {
          PutU8(static_cast<uint8_t>(Quantize(v, scale)), &out);
        } else {
          PutF32(v, &out);
        }
      };
      const float* next = packed;
      for (size_t r = 0; r < rows.size(); ++r) {
        if (rows[r]) {
          for (int64_t j = 0; j < row_size; ++j) put(next[j]);
          next += row_size;
        } else if (!options.sparse) {
          for (int64_t j = 0; j < row_size; ++j) put(0.0f);
        }
      }
    }
    packed += num_packed;
  }
  if (options.row_stats) {
    const int64_t rows = mask.Rows();
    FTTE_CHECK(static_cast<int64_t>(u.row_sq.size()) == rows)
        << "update has " << u.row_sq.size() << " row statistics, the mask " << rows << " rows";
    PutU32(static_cast<uint32_t>(rows), &out);
    for (float v : u.row_sq) PutF32(v, &out);
  }
  PutU32(Crc32(out), &out);
  FTTE_CHECK(static_cast<int64_t>(out.size()) == expected_size)
      << "encoded " << out.size() << " bytes, EncodedSize says " << expected_size;
  return out;
}

Result<DecodedUpdate> DecodeUpdate(std::string_view bytes, const std::vector<ParamLayout>& layout) {
  const bool intact =
      bytes.size() >= kChecksumBytes && Crc32(bytes.substr(0, bytes.size() - kChecksumBytes)) ==
                                            LoadU32(bytes.substr(bytes.size() - kChecksumBytes));
  const Errors errors(intact);
  Reader in(bytes, errors);

  if (bytes.size() >= sizeof(kMagic) && bytes.substr(0, sizeof(kMagic)) != "FTU1") {
    return errors.Malformed(Cat("not an ftte update: expected magic \"FTU1\", got \"",
                                Printable(bytes.substr(0, sizeof(kMagic))), "\""));
  }
  FTTE_RETURN_IF_ERROR(in.Need(kHeaderBytes, "the header"));
  in.U32();  // magic, checked above
  const uint8_t flags = in.U8();
  if (flags & ~(kFlagSparse | kFlagInt8 | kFlagRowStats)) {
    return errors.Malformed(Cat("unknown flags 0x", std::hex, int{flags},
                                " (known: bit0 sparse, bit1 int8 values, bit2 row statistics)"));
  }
  if (in.U8() != 0 || in.U8() != 0 || in.U8() != 0) {
    return errors.Malformed("the 3 reserved header bytes after the flags are not zero");
  }
  const bool sparse = flags & kFlagSparse;
  const bool int8 = flags & kFlagInt8;

  DecodedUpdate out;
  Update& u = out.update;
  u.device = in.I64();
  u.base_version = in.I64();
  u.num_samples = in.I64();
  u.loss = in.F32();
  u.variance = in.F64();
  u.update_id = in.I64();
  const uint32_t num_params = in.U32();
  if (num_params != layout.size()) {
    return errors.Malformed(Cat("the update has ", num_params, " parameters, the layout ",
                                layout.size(), ": was it encoded for a different model?"));
  }

  out.mask.rows.resize(layout.size());
  for (size_t k = 0; k < layout.size(); ++k) {
    std::vector<uint8_t>& rows = out.mask.rows[k];
    rows.assign(static_cast<size_t>(layout[k].rows), sparse ? 0 : 1);
    bool has_values = true;
    if (sparse) {
      FTTE_ASSIGN_OR_RETURN(const Selection kind, ReadSelection(in, k, layout, errors, &rows));
      has_values = kind != kNone;
    }
    if (!has_values) continue;
    const int64_t selected = std::count(rows.begin(), rows.end(), uint8_t{1});
    FTTE_RETURN_IF_ERROR(
        ReadValues(in, k, layout, selected * layout[k].row_size, int8, errors, &u.delta));
  }
  if (flags & kFlagRowStats) FTTE_RETURN_IF_ERROR(ReadRowStats(in, out.mask, errors, &u.row_sq));

  const size_t body_end = in.pos();
  FTTE_RETURN_IF_ERROR(in.Need(kChecksumBytes, "the checksum"));
  const uint32_t stored = in.U32();
  if (stored != Crc32(bytes.substr(0, body_end))) {
    if (intact) {
      return InvalidArgument(Cat("the update's checksum is intact at offset ",
                                 bytes.size() - kChecksumBytes,
                                 ", but this layout ends its "
                                 "values at offset ",
                                 body_end, ": was it encoded for a different model layout?"));
    }
    return DataLoss("checksum mismatch: the update is corrupt or truncated");
  }
  if (in.left() > 0) {
    return DataLoss(Cat(in.left(), " unexpected bytes after the checksum at offset ", body_end,
                        ": was the update concatenated with other data?"));
  }
  return out;
}

}  // namespace ftte::fl
