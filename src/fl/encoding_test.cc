#include "ftte/fl/encoding.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "ftte/core/model.h"

namespace ftte::fl {
namespace {

constexpr size_t kFirstKindOffset = 56;  // header: magic..parameter count

const EncodeOptions kAllOptions[] = {
    {.sparse = true, .int8 = false},
    {.sparse = true, .int8 = true},
    {.sparse = false, .int8 = false},
    {.sparse = false, .int8 = true},
};

std::string Describe(const EncodeOptions& o) {
  return std::string(o.sparse ? "sparse" : "dense") + (o.int8 ? " int8" : " float32");
}

// Small enough to read, large enough that both run lists and bitmaps win somewhere.
std::vector<ParamLayout> SmallLayout() {
  return {{"0.weight", 6, 4},
          {"0.bias", 6, 1},
          {"1.weight", 200, 3},
          {"1.bias", 200, 1},
          {"2.weight", 96, 2}};
}

std::vector<ParamLayout> CnnLayout() {
  auto model = MakeModel("cnn", 1);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  return LayoutOf(**model);
}

// A reference CRC-32 (the zlib / IEEE 802.3 polynomial, reflected), independent of zlib.
uint32_t ReferenceCrc32(std::string_view bytes) {
  uint32_t crc = 0xffffffffu;
  for (unsigned char c : bytes) {
    crc ^= c;
    for (int i = 0; i < 8; ++i) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
  }
  return ~crc;
}

enum class Rows { kNone, kAll, kSingle, kAlternating, kFewRuns, kRandom };

std::vector<uint8_t> MakeRows(Rows pattern, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> rows(static_cast<size_t>(n), 0);
  if (n == 0) return rows;
  std::uniform_int_distribution<int64_t> row(0, n - 1);
  switch (pattern) {
    case Rows::kNone:
      break;
    case Rows::kAll:
      std::fill(rows.begin(), rows.end(), 1);
      break;
    case Rows::kSingle:
      rows[row(rng)] = 1;
      break;
    case Rows::kAlternating:
      for (int64_t r = row(rng) % 2; r < n; r += 2) rows[r] = 1;
      break;
    case Rows::kFewRuns:
      for (int i = 0; i < 2; ++i) {
        const int64_t a = row(rng);
        const int64_t b = row(rng);
        std::fill(rows.begin() + std::min(a, b), rows.begin() + std::max(a, b) + 1, 1);
      }
      break;
    case Rows::kRandom: {
      std::bernoulli_distribution on(std::uniform_real_distribution<double>(0, 1)(rng));
      for (auto& r : rows) r = on(rng) ? 1 : 0;
      break;
    }
  }
  return rows;
}

Mask RandomMask(const std::vector<ParamLayout>& layout, std::mt19937& rng) {
  std::uniform_int_distribution<int> pattern(0, 5);
  Mask mask;
  for (const auto& p : layout) {
    mask.rows.push_back(MakeRows(static_cast<Rows>(pattern(rng)), p.rows, rng));
  }
  return mask;
}

Mask UniformMask(const std::vector<ParamLayout>& layout, Rows pattern, std::mt19937& rng) {
  Mask mask;
  for (const auto& p : layout) mask.rows.push_back(MakeRows(pattern, p.rows, rng));
  return mask;
}

// An update whose delta covers `mask`, each parameter with its own magnitude.
Update RandomUpdate(const Mask& mask, const std::vector<ParamLayout>& layout, std::mt19937& rng) {
  Update u;
  u.device = 3;
  u.base_version = 17;
  u.num_samples = 600;
  u.loss = 0.75f;
  u.variance = 0.0625;
  u.update_id = 42;
  std::uniform_real_distribution<float> unit(-1, 1);
  std::uniform_real_distribution<float> exponent(-4, 2);
  for (size_t k = 0; k < layout.size(); ++k) {
    const float magnitude = std::pow(10.0f, exponent(rng));
    for (uint8_t on : mask.rows[k]) {
      if (!on) continue;
      for (int64_t j = 0; j < layout[k].row_size; ++j) u.delta.push_back(magnitude * unit(rng));
    }
  }
  return u;
}

std::vector<float> Expand(const std::vector<float>& packed, const Mask& mask,
                          const std::vector<ParamLayout>& layout) {
  std::vector<float> flat(static_cast<size_t>(TotalNumel(layout)), 0.0f);
  AddMasked(packed, 1.0f, mask, layout, &flat);
  return flat;
}

// Checks that `decoded` (packed over `mask`) matches `original` (packed over the same mask):
// exactly for float32; within half an int8 step of the parameter's scale for int8.
void ExpectValuesMatch(const std::vector<float>& original, const std::vector<float>& decoded,
                       const Mask& mask, const std::vector<ParamLayout>& layout, bool int8) {
  ASSERT_EQ(decoded.size(), original.size());
  if (!int8) {
    EXPECT_EQ(decoded, original);
    return;
  }
  size_t at = 0;
  for (size_t k = 0; k < layout.size(); ++k) {
    const size_t n = static_cast<size_t>(
        std::count(mask.rows[k].begin(), mask.rows[k].end(), uint8_t{1}) * layout[k].row_size);
    float max_abs = 0;
    for (size_t i = at; i < at + n; ++i) max_abs = std::max(max_abs, std::fabs(original[i]));
    const float scale = max_abs > 0 ? max_abs / 127 : 1.0f;
    // Half a step, plus float rounding in v / scale and q * scale (a few ulps of max|v|).
    const float bound = scale / 2 + 4 * std::numeric_limits<float>::epsilon() * max_abs;
    for (size_t i = at; i < at + n; ++i) {
      ASSERT_LE(std::fabs(original[i] - decoded[i]), bound)
          << layout[k].name << " value " << i - at << ": " << original[i] << " -> " << decoded[i];
    }
    at += n;
  }
}

// Encodes, checks EncodedSize, decodes and checks everything round-trips.
void ExpectRoundTrip(const Update& u, const Mask& mask, const std::vector<ParamLayout>& layout,
                     const EncodeOptions& o) {
  SCOPED_TRACE(Describe(o));
  const std::string bytes = EncodeUpdate(u, mask, layout, o);
  ASSERT_EQ(static_cast<int64_t>(bytes.size()), EncodedSize(mask, layout, o));
  auto decoded = DecodeUpdate(bytes, layout);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  const Update& d = decoded->update;
  EXPECT_EQ(d.device, u.device);
  EXPECT_EQ(d.base_version, u.base_version);
  EXPECT_EQ(d.num_samples, u.num_samples);
  EXPECT_EQ(d.loss, u.loss);
  EXPECT_EQ(d.variance, u.variance);
  EXPECT_EQ(d.update_id, u.update_id);
  if (o.sparse) {
    EXPECT_EQ(decoded->mask, mask);
    ExpectValuesMatch(u.delta, d.delta, mask, layout, o.int8);
  } else {
    const Mask full = Mask::Full(layout);
    EXPECT_EQ(decoded->mask, full);
    ExpectValuesMatch(Expand(u.delta, mask, layout), d.delta, full, layout, o.int8);
  }
}

::testing::AssertionResult FailsWith(const Status& status, StatusCode code,
                                     std::vector<std::string_view> fragments) {
  if (status.ok()) return ::testing::AssertionFailure() << "unexpectedly OK";
  if (status.code() != code) {
    return ::testing::AssertionFailure() << "wrong code: " << status.ToString();
  }
  for (std::string_view f : fragments) {
    if (status.message().find(f) == std::string::npos) {
      return ::testing::AssertionFailure()
             << "message lacks \"" << f << "\": " << status.ToString();
    }
  }
  return ::testing::AssertionSuccess();
}

// Hand-built encodings, for inputs EncodeUpdate never writes.
class Builder {
 public:
  // The header of an update with `num_params` parameters.
  Builder(uint8_t flags, uint32_t num_params) {
    bytes_ = "FTU1";
    U8(flags).U8(0).U8(0).U8(0);
    U64(1).U64(2).U64(3).F32(0.5f).U64(std::bit_cast<uint64_t>(0.25)).U64(4);
    U32(num_params);
  }
  Builder& U8(uint8_t v) {
    bytes_.push_back(static_cast<char>(v));
    return *this;
  }
  Builder& U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  Builder& U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  Builder& F32(float v) { return U32(std::bit_cast<uint32_t>(v)); }
  Builder& Run(uint32_t begin, uint32_t end) { return U32(begin).U32(end); }
  // The bytes with a correct checksum appended.
  std::string Sealed() const {
    std::string out = bytes_;
    const uint32_t crc = ReferenceCrc32(out);
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(crc >> (8 * i)));
    return out;
  }

 private:
  std::string bytes_;
};

constexpr uint8_t kSparse = 1;
constexpr uint8_t kInt8 = 2;

// One parameter "w" of 10 rows of 2 values, for the hand-built encodings.
const std::vector<ParamLayout> kTen = {{"w", 10, 2}};

TEST(EncodingTest, EncodedSizeMatchesEncodeOnRandomMasks) {
  std::mt19937 rng(1);
  const std::vector<ParamLayout> layout = SmallLayout();
  for (int trial = 0; trial < 300; ++trial) {
    const Mask mask = RandomMask(layout, rng);
    const Update u = RandomUpdate(mask, layout, rng);
    for (const EncodeOptions& o : kAllOptions) {
      EXPECT_EQ(EncodedSize(mask, layout, o),
                static_cast<int64_t>(EncodeUpdate(u, mask, layout, o).size()))
          << Describe(o) << " trial " << trial;
    }
  }
}

TEST(EncodingTest, RoundTripsRandomMasksOnSmallLayout) {
  std::mt19937 rng(2);
  const std::vector<ParamLayout> layout = SmallLayout();
  for (int trial = 0; trial < 100; ++trial) {
    SCOPED_TRACE(trial);
    const Mask mask = RandomMask(layout, rng);
    const Update u = RandomUpdate(mask, layout, rng);
    for (const EncodeOptions& o : kAllOptions) ExpectRoundTrip(u, mask, layout, o);
  }
}

TEST(EncodingTest, RoundTripsEveryRowPatternOnSmallLayout) {
  std::mt19937 rng(3);
  const std::vector<ParamLayout> layout = SmallLayout();
  for (Rows pattern : {Rows::kNone, Rows::kAll, Rows::kSingle, Rows::kAlternating, Rows::kFewRuns,
                       Rows::kRandom}) {
    SCOPED_TRACE(static_cast<int>(pattern));
    const Mask mask = UniformMask(layout, pattern, rng);
    const Update u = RandomUpdate(mask, layout, rng);
    for (const EncodeOptions& o : kAllOptions) ExpectRoundTrip(u, mask, layout, o);
  }
}

TEST(EncodingTest, RoundTripsRandomMasksOnCnnLayout) {
  std::mt19937 rng(4);
  const std::vector<ParamLayout> layout = CnnLayout();
  ASSERT_FALSE(layout.empty());
  for (Rows pattern : {Rows::kNone, Rows::kAll, Rows::kSingle, Rows::kAlternating, Rows::kFewRuns,
                       Rows::kRandom}) {
    SCOPED_TRACE(static_cast<int>(pattern));
    const Mask mask = UniformMask(layout, pattern, rng);
    const Update u = RandomUpdate(mask, layout, rng);
    for (const EncodeOptions& o : kAllOptions) ExpectRoundTrip(u, mask, layout, o);
  }
  for (int trial = 0; trial < 5; ++trial) {
    const Mask mask = RandomMask(layout, rng);
    const Update u = RandomUpdate(mask, layout, rng);
    for (const EncodeOptions& o : kAllOptions) ExpectRoundTrip(u, mask, layout, o);
  }
}

TEST(EncodingTest, RoundTripsZeroRowParameter) {
  const std::vector<ParamLayout> layout = {{"a", 3, 2}, {"empty", 0, 5}, {"b", 2, 1}};
  Mask mask;
  mask.rows = {{1, 0, 1}, {}, {1, 1}};
  Update u;
  u.delta = {1, 2, 3, 4, 5, 6};
  for (const EncodeOptions& o : kAllOptions) ExpectRoundTrip(u, mask, layout, o);
}

TEST(EncodingTest, HeaderFieldsRoundTrip) {
  const std::vector<ParamLayout> layout = {{"w", 4, 3}};
  Mask mask;
  mask.rows = {{0, 1, 1, 0}};
  Update u;
  u.device = -9'000'000'000;
  u.base_version = std::numeric_limits<int64_t>::max();
  u.num_samples = 123'456'789'012;
  u.loss = -2.718f;
  u.variance = 1e-300;
  u.update_id = std::numeric_limits<int64_t>::min();
  u.delta = {1, -2, 3, -4, 5, -6};
  for (const EncodeOptions& o : kAllOptions) ExpectRoundTrip(u, mask, layout, o);
}

TEST(EncodingTest, Int8ErrorIsAtMostHalfAStep) {
  const std::vector<ParamLayout> layout = {{"w", 1, 1000}};
  const Mask mask = Mask::Full(layout);
  Update u;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> v(-3, 3);
  for (int i = 0; i < 1000; ++i) u.delta.push_back(v(rng));
  u.delta[10] = 4.5f;  // the maximum: scale = 4.5 / 127
  const std::string bytes = EncodeUpdate(u, mask, layout, {.sparse = false, .int8 = true});
  auto d = DecodeUpdate(bytes, layout);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const float scale = 4.5f / 127;
  for (size_t i = 0; i < u.delta.size(); ++i) {
    ASSERT_LE(std::fabs(u.delta[i] - d->update.delta[i]), scale / 2 + 1e-6f) << i;
  }
  EXPECT_FLOAT_EQ(d->update.delta[10], 4.5f);
}

TEST(EncodingTest, Int8AllZeroParameterHasScaleOneAndDecodesToZero) {
  const std::vector<ParamLayout> layout = {{"w", 2, 2}};
  Update u;
  u.delta = {0, 0, 0, 0};
  const std::string bytes =
      EncodeUpdate(u, Mask::Full(layout), layout, {.sparse = false, .int8 = true});
  // Dense: no selection, so the scale follows the parameter count.
  float scale;
  std::memcpy(&scale, bytes.data() + kFirstKindOffset, 4);
  EXPECT_EQ(scale, 1.0f);
  auto d = DecodeUpdate(bytes, layout);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->update.delta, u.delta);
}

// Run list (4 + 8 x runs bytes) against bitmap (ceil(rows / 8) bytes).
TEST(EncodingTest, PicksTheSmallerRowSelection) {
  struct Case {
    int64_t rows;
    std::vector<std::pair<int, int>> runs;
    uint8_t kind;
    int64_t selection_bytes;
  };
  const Case cases[] = {
      {200, {{50, 80}}, 2, 12},                     // run list 12 < bitmap 25
      {200, {{0, 10}, {20, 30}}, 2, 20},            // 20 < 25
      {200, {{0, 10}, {20, 30}, {40, 50}}, 3, 25},  // 28 > 25
      {96, {{5, 7}}, 2, 12},                        // tie 12 = 12: run list
      {88, {{5, 7}}, 3, 11},                        // 12 > 11
      {10, {{9, 10}}, 3, 2},                        // a single row
      {10, {{0, 10}}, 1, 0},                        // all
      {10, {}, 0, 0},                               // none
  };
  for (const Case& c : cases) {
    const std::vector<ParamLayout> layout = {{"w", c.rows, 1}};
    Mask mask;
    mask.rows = {std::vector<uint8_t>(static_cast<size_t>(c.rows), 0)};
    int64_t selected = 0;
    for (auto [b, e] : c.runs) {
      for (int r = b; r < e; ++r) mask.rows[0][r] = 1;
      selected += e - b;
    }
    Update u;
    u.delta.assign(static_cast<size_t>(selected), 0.5f);
    const EncodeOptions o = {.sparse = true, .int8 = false};
    const std::string bytes = EncodeUpdate(u, mask, layout, o);
    SCOPED_TRACE(c.rows);
    ASSERT_GT(bytes.size(), kFirstKindOffset);
    EXPECT_EQ(static_cast<uint8_t>(bytes[kFirstKindOffset]), c.kind);
    EXPECT_EQ(static_cast<int64_t>(bytes.size()), 56 + 1 + c.selection_bytes + 4 * selected + 4);
    ExpectRoundTrip(u, mask, layout, o);
  }
}

TEST(EncodingTest, ChecksumIsZlibCrc32OfTheRest) {
  ASSERT_EQ(ReferenceCrc32("123456789"), 0xcbf43926u);  // the standard check value
  std::mt19937 rng(6);
  const std::vector<ParamLayout> layout = SmallLayout();
  const Mask mask = RandomMask(layout, rng);
  const std::string bytes =
      EncodeUpdate(RandomUpdate(mask, layout, rng), mask, layout, {.sparse = true});
  uint32_t stored = 0;
  for (int i = 0; i < 4; ++i) {
    stored |= uint32_t{static_cast<uint8_t>(bytes[bytes.size() - 4 + i])} << (8 * i);
  }
  EXPECT_EQ(stored, ReferenceCrc32(std::string_view(bytes).substr(0, bytes.size() - 4)));
}

// A small encoding exercising every selection kind.
std::string SmallEncoding(const EncodeOptions& o, std::vector<ParamLayout>* layout) {
  *layout = {{"a", 5, 2}, {"b", 20, 1}, {"c", 100, 1}, {"d", 3, 1}};
  Mask mask;
  mask.rows = {{1, 1, 1, 1, 1},
               {1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0},
               std::vector<uint8_t>(100, 0),
               {0, 0, 0}};
  std::fill(mask.rows[2].begin() + 40, mask.rows[2].begin() + 45, 1);
  Update u;
  for (int i = 0; i < 10 + 10 + 5; ++i) u.delta.push_back(0.1f * static_cast<float>(i) - 1);
  return EncodeUpdate(u, mask, *layout, o);
}

TEST(EncodingTest, EveryBitFlipIsRejected) {
  for (const EncodeOptions& o : kAllOptions) {
    SCOPED_TRACE(Describe(o));
    std::vector<ParamLayout> layout;
    const std::string good = SmallEncoding(o, &layout);
    ASSERT_TRUE(DecodeUpdate(good, layout).ok());
    for (size_t i = 0; i < good.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        std::string bad = good;
        bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
        auto d = DecodeUpdate(bad, layout);
        ASSERT_FALSE(d.ok()) << "byte " << i << " bit " << bit;
        EXPECT_EQ(d.status().code(), StatusCode::kDataLoss) << d.status().ToString();
        const std::string& m = d.status().message();
        EXPECT_TRUE(m.starts_with("checksum mismatch: the update is corrupt or truncated") ||
                    m.starts_with("truncated update"))
            << "byte " << i << " bit " << bit << ": " << m;
      }
    }
  }
}

TEST(EncodingTest, FlippedChecksumIsAChecksumMismatch) {
  std::vector<ParamLayout> layout;
  std::string bytes = SmallEncoding({.sparse = true}, &layout);
  bytes.back() = static_cast<char>(bytes.back() ^ 0x40);
  EXPECT_TRUE(FailsWith(DecodeUpdate(bytes, layout).status(), StatusCode::kDataLoss,
                        {"checksum mismatch: the update is corrupt or truncated"}));
}

TEST(EncodingTest, EveryTruncationIsRejected) {
  for (const EncodeOptions& o : kAllOptions) {
    SCOPED_TRACE(Describe(o));
    std::vector<ParamLayout> layout;
    const std::string good = SmallEncoding(o, &layout);
    for (size_t n = 0; n < good.size(); ++n) {
      auto d = DecodeUpdate(std::string_view(good).substr(0, n), layout);
      ASSERT_FALSE(d.ok()) << n;
      EXPECT_TRUE(FailsWith(d.status(), StatusCode::kDataLoss, {"truncated update"})) << n;
    }
  }
}

TEST(EncodingTest, TruncationNamesWhatWasBeingRead) {
  std::vector<ParamLayout> layout;
  const std::string good = SmallEncoding({.sparse = true, .int8 = false}, &layout);
  auto at = [&](size_t n) { return DecodeUpdate(std::string_view(good).substr(0, n), layout); };
  EXPECT_TRUE(FailsWith(at(30).status(), StatusCode::kDataLoss, {"the header"}));
  // Parameter "a": kind byte at 56, then 10 float32 values; "b" starts at 97.
  EXPECT_TRUE(FailsWith(at(60).status(), StatusCode::kDataLoss,
                        {"parameter 0 (a) values (10 float32)", "offset 57"}));
  EXPECT_TRUE(
      FailsWith(at(97).status(), StatusCode::kDataLoss, {"parameter 1 (b) row selection kind"}));
  EXPECT_TRUE(FailsWith(at(99).status(), StatusCode::kDataLoss, {"parameter 1 (b) row bitmap"}));
  EXPECT_TRUE(FailsWith(at(good.size() - 2).status(), StatusCode::kDataLoss, {"the checksum"}));
}

TEST(EncodingTest, TrailingBytesAreRejected) {
  std::vector<ParamLayout> layout;
  const std::string good = SmallEncoding({.sparse = false, .int8 = true}, &layout);
  EXPECT_TRUE(FailsWith(DecodeUpdate(good + "x", layout).status(), StatusCode::kDataLoss,
                        {"1 unexpected bytes after the checksum"}));
  EXPECT_TRUE(FailsWith(DecodeUpdate(good + good, layout).status(), StatusCode::kDataLoss,
                        {"after the checksum"}));
}

TEST(EncodingTest, WrongLayoutIsRejected) {
  std::mt19937 rng(7);
  const std::vector<ParamLayout> layout = SmallLayout();
  // Alternating rows: every parameter has a bitmap and values, so every change shows. (A
  // parameter with no rows selected fits any row count.)
  const Mask mask = UniformMask(layout, Rows::kAlternating, rng);
  const Update u = RandomUpdate(mask, layout, rng);

  std::vector<ParamLayout> fewer = layout;
  fewer.pop_back();
  std::vector<ParamLayout> more_rows = layout;
  more_rows[2].rows += 8;
  std::vector<ParamLayout> fewer_rows = layout;
  fewer_rows[3].rows -= 20;
  std::vector<ParamLayout> wider = layout;
  wider[0].row_size += 1;
  for (const EncodeOptions& o : kAllOptions) {
    SCOPED_TRACE(Describe(o));
    const std::string bytes = EncodeUpdate(u, mask, layout, o);
    ASSERT_TRUE(DecodeUpdate(bytes, layout).ok());
    EXPECT_TRUE(FailsWith(DecodeUpdate(bytes, fewer).status(), StatusCode::kInvalidArgument,
                          {"the update has 5 parameters, the layout 4"}));
    EXPECT_TRUE(FailsWith(DecodeUpdate(bytes, {}).status(), StatusCode::kInvalidArgument,
                          {"5 parameters, the layout 0"}));
    // The bytes are intact, so a mismatch is the layout's, not corruption.
    for (const auto* other : {&more_rows, &fewer_rows, &wider}) {
      auto d = DecodeUpdate(bytes, *other);
      EXPECT_FALSE(d.ok());
      EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument) << d.status().ToString();
    }
  }
}

TEST(EncodingTest, RunBeyondTheLayoutRowsNamesTheParameter) {
  const std::vector<ParamLayout> layout = {{"7.weight", 600, 1}};
  Mask mask;
  mask.rows = {std::vector<uint8_t>(600, 0)};
  std::fill(mask.rows[0].begin() + 10, mask.rows[0].end(), 1);
  Update u;
  u.delta.assign(590, 1.0f);
  const std::string bytes = EncodeUpdate(u, mask, layout, {.sparse = true});
  EXPECT_TRUE(FailsWith(DecodeUpdate(bytes, {{"7.weight", 512, 1}}).status(),
                        StatusCode::kInvalidArgument,
                        {"parameter 0 (7.weight): run [10, 600) exceeds 512 rows"}));
}

TEST(EncodingTest, NonFiniteValuesAreRejected) {
  const std::vector<ParamLayout> layout = {{"a", 2, 2}, {"b", 3, 2}};
  Mask mask;
  mask.rows = {{1, 1}, {0, 1, 1}};
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    Update u;
    u.delta = {1, 2, 3, 4, 5, 6, bad, 8};
    for (const EncodeOptions& o : kAllOptions) {
      SCOPED_TRACE(Describe(o) + " " + std::to_string(bad));
      const std::string bytes = EncodeUpdate(u, mask, layout, o);
      const Status s = DecodeUpdate(bytes, layout).status();
      EXPECT_TRUE(FailsWith(s, StatusCode::kInvalidArgument, {"parameter 1 (b)"}));
      if (!o.int8) {
        EXPECT_TRUE(FailsWith(s, StatusCode::kInvalidArgument, {"non-finite value"}));
      }
    }
  }
}

TEST(EncodingTest, SparseTenPercentOfCnnRowsIsUnderFifteenPercentOfDense) {
  const std::vector<ParamLayout> layout = CnnLayout();
  std::mt19937 rng(8);
  std::bernoulli_distribution on(0.1);
  Mask mask;
  int64_t rows = 0;
  int64_t selected = 0;
  for (const auto& p : layout) {
    std::vector<uint8_t> r(static_cast<size_t>(p.rows));
    for (auto& x : r) x = on(rng) ? 1 : 0;
    rows += p.rows;
    selected += std::count(r.begin(), r.end(), uint8_t{1});
    mask.rows.push_back(std::move(r));
  }
  ASSERT_NEAR(static_cast<double>(selected) / static_cast<double>(rows), 0.1, 0.02);
  const Update u = RandomUpdate(mask, layout, rng);
  for (bool int8 : {false, true}) {
    const std::string sparse = EncodeUpdate(u, mask, layout, {.sparse = true, .int8 = int8});
    const std::string dense = EncodeUpdate(u, mask, layout, {.sparse = false, .int8 = int8});
    EXPECT_LT(static_cast<double>(sparse.size()), 0.15 * static_cast<double>(dense.size()))
        << (int8 ? "int8 " : "float32 ") << sparse.size() << " vs " << dense.size();
  }
}

// ---- Hand-built encodings with a valid checksum: the structure itself is wrong. ----

Status DecodeTen(const Builder& b) { return DecodeUpdate(b.Sealed(), kTen).status(); }

TEST(EncodingTest, AcceptsAdjacentRunsAndLsbFirstBitmaps) {
  Builder with_values(kSparse, 1);
  with_values.U8(2).U32(2).Run(0, 2).Run(2, 3);
  for (int i = 0; i < 6; ++i) with_values.F32(static_cast<float>(i));
  auto d = DecodeUpdate(with_values.Sealed(), kTen);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->mask.rows[0], (std::vector<uint8_t>{1, 1, 1, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(d->update.delta, (std::vector<float>{0, 1, 2, 3, 4, 5}));

  Builder bitmap(kSparse, 1);
  bitmap.U8(3).U8(0x05).U8(0x02);  // rows 0, 2 and 9
  for (int i = 0; i < 6; ++i) bitmap.F32(1.5f);
  d = DecodeUpdate(bitmap.Sealed(), kTen);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->mask.rows[0], (std::vector<uint8_t>{1, 0, 1, 0, 0, 0, 0, 0, 0, 1}));
}

TEST(EncodingTest, RejectsBadRunLists) {
  const StatusCode kInvalid = StatusCode::kInvalidArgument;
  EXPECT_TRUE(FailsWith(DecodeTen(Builder(kSparse, 1).U8(2).U32(1).Run(3, 3)), kInvalid,
                        {"parameter 0 (w): run [3, 3) is empty"}));
  EXPECT_TRUE(FailsWith(DecodeTen(Builder(kSparse, 1).U8(2).U32(1).Run(5, 2)), kInvalid,
                        {"parameter 0 (w): run [5, 2) is empty"}));
  EXPECT_TRUE(FailsWith(DecodeTen(Builder(kSparse, 1).U8(2).U32(2).Run(5, 7).Run(2, 4)), kInvalid,
                        {"run [2, 4) overlaps or precedes run [5, 7)"}));
  EXPECT_TRUE(FailsWith(DecodeTen(Builder(kSparse, 1).U8(2).U32(2).Run(2, 6).Run(4, 8)), kInvalid,
                        {"run [4, 8) overlaps or precedes run [2, 6)"}));
  EXPECT_TRUE(FailsWith(DecodeTen(Builder(kSparse, 1).U8(2).U32(1).Run(8, 12)), kInvalid,
                        {"parameter 0 (w): run [8, 12) exceeds 10 rows"}));
  // A hostile count is refused before anything is read or allocated for it.
  EXPECT_TRUE(FailsWith(DecodeTen(Builder(kSparse, 1).U8(2).U32(0xffffffffu)), kInvalid,
                        {"parameter 0 (w): run list claims 4294967295 runs for 10 rows"}));
  // A count the bytes cannot hold, in an otherwise intact update.
  EXPECT_TRUE(FailsWith(DecodeTen(Builder(kSparse, 1).U8(2).U32(3).Run(0, 1)), kInvalid,
                        {"parameter 0 (w) run list (3 runs)"}));
}

TEST(EncodingTest, RejectsBadBitmapsKindsAndHeaders) {
  const StatusCode kInvalid = StatusCode::kInvalidArgument;
  EXPECT_TRUE(FailsWith(DecodeTen(Builder(kSparse, 1).U8(3).U8(0x01).U8(0x04)), kInvalid,
                        {"parameter 0 (w): row bitmap selects row 10 beyond 10 rows"}));
  EXPECT_TRUE(FailsWith(DecodeTen(Builder(kSparse, 1).U8(4)), kInvalid,
                        {"parameter 0 (w): unknown row selection kind 4"}));
  EXPECT_TRUE(FailsWith(DecodeTen(Builder(kSparse | 8, 1).U8(0)), kInvalid, {"unknown flags 0x9"}));
  std::string reserved = Builder(kSparse, 1).U8(0).Sealed();
  reserved[6] = 1;
  // Resealing by hand: strip the checksum, recompute.
  reserved.resize(reserved.size() - 4);
  const uint32_t crc = ReferenceCrc32(reserved);
  for (int i = 0; i < 4; ++i) reserved.push_back(static_cast<char>(crc >> (8 * i)));
  EXPECT_TRUE(FailsWith(DecodeUpdate(reserved, kTen).status(), kInvalid, {"reserved"}));

  std::string magic = Builder(kSparse, 1).U8(0).Sealed();
  magic[3] = '2';
  EXPECT_TRUE(FailsWith(DecodeUpdate(magic, kTen).status(), StatusCode::kDataLoss,
                        {"checksum mismatch", "expected magic \"FTU1\", got \"FTU2\""}));
  EXPECT_TRUE(FailsWith(DecodeUpdate("", kTen).status(), StatusCode::kDataLoss,
                        {"truncated update", "the header"}));
  // A well-formed empty update for a model without parameters.
  EXPECT_TRUE(DecodeUpdate(Builder(0, 0).Sealed(), {}).ok());
}

TEST(EncodingTest, RejectsBadInt8Values) {
  const StatusCode kInvalid = StatusCode::kInvalidArgument;
  auto one_row = [](float scale, int8_t q) {
    Builder b(kSparse | kInt8, 1);
    b.U8(3).U8(0x01).U8(0x00).F32(scale).U8(static_cast<uint8_t>(q)).U8(0);
    return b;
  };
  EXPECT_TRUE(DecodeTen(one_row(0.5f, 127)).ok());
  EXPECT_TRUE(FailsWith(DecodeTen(one_row(0.5f, -128)), kInvalid,
                        {"parameter 0 (w): int8 value -128 (value 0) is outside [-127, 127]"}));
  EXPECT_TRUE(FailsWith(DecodeTen(one_row(-0.5f, 1)), kInvalid, {"int8 scale -0.5"}));
  EXPECT_TRUE(FailsWith(DecodeTen(one_row(std::numeric_limits<float>::quiet_NaN(), 1)), kInvalid,
                        {"parameter 0 (w): int8 scale nan"}));
  EXPECT_TRUE(FailsWith(DecodeTen(one_row(std::numeric_limits<float>::max(), 127)), kInvalid,
                        {"parameter 0 (w): non-finite value inf"}));
}

}  // namespace
}  // namespace ftte::fl
