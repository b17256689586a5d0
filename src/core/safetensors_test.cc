#include "ftte/core/safetensors.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ftte {
namespace {

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/safetensors_test_" + name + ".safetensors";
}

void WriteFileBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// An image with the given raw header text (no padding added) and data buffer.
std::string Image(const std::string& header, const std::string& data = "") {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(uint64_t{header.size()} >> (8 * i)));
  return out + header + data;
}

// Writes `image` to a temporary file named after the test case and reads it back.
Result<SafetensorsFile> ReadImage(const std::string& name, const std::string& image) {
  const std::string path = TempPath(name);
  WriteFileBytes(path, image);
  return ReadSafetensors(path);
}

Result<SafetensorsFile> ParseImage(const std::string& image) {
  return ParseSafetensors(reinterpret_cast<const uint8_t*>(image.data()), image.size(),
                          "test image");
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

template <typename T>
std::string Bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::string Bytes(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

TEST(SafetensorsTest, DTypeNamesAndSizes) {
  EXPECT_STREQ(DTypeName(DType::kF32), "F32");
  EXPECT_STREQ(DTypeName(DType::kI8), "I8");
  EXPECT_STREQ(DTypeName(DType::kI32), "I32");
  EXPECT_STREQ(DTypeName(DType::kI64), "I64");
  EXPECT_STREQ(DTypeName(DType::kU8), "U8");
  EXPECT_EQ(DTypeSize(DType::kF32), 4u);
  EXPECT_EQ(DTypeSize(DType::kI8), 1u);
  EXPECT_EQ(DTypeSize(DType::kI32), 4u);
  EXPECT_EQ(DTypeSize(DType::kI64), 8u);
  EXPECT_EQ(DTypeSize(DType::kU8), 1u);
}

// A small checkpoint exercising every dtype, metadata, a 0-d scalar and an empty tensor.
class SafetensorsRoundTripTest : public ::testing::Test {
 protected:
  std::vector<float> weights_ = {0.5f, -1.25f, 3.0f, 1e-7f, -0.0f, 42.0f};
  std::vector<int8_t> quantized_ = {-128, -1, 0, 127};
  std::vector<int32_t> counts_ = {1, -2, 300000, -2147483647 - 1};
  std::vector<int64_t> steps_ = {int64_t{1} << 40, -7, 0};
  std::vector<uint8_t> mask_ = {0, 1, 255, 7, 9};
  float scalar_ = 2.5f;
  std::map<std::string, std::string> metadata_ = {{"format", "pt"}, {"round", "17"}};

  std::vector<TensorRecord> Records() const {
    return {
        {"fc1.weight", DType::kF32, {2, 3}, weights_.data(), weights_.size() * 4},
        {"fc1.qweight", DType::kI8, {4}, quantized_.data(), quantized_.size()},
        {"counts", DType::kI32, {2, 2}, counts_.data(), counts_.size() * 4},
        {"step", DType::kI64, {3}, steps_.data(), steps_.size() * 8},
        {"mask", DType::kU8, {5, 1}, mask_.data(), mask_.size()},
        {"lr", DType::kF32, {}, &scalar_, 4},
        {"empty", DType::kF32, {0, 3}, nullptr, 0},
    };
  }

  void ExpectContents(const SafetensorsFile& file) const {
    EXPECT_EQ(file.metadata, metadata_);
    ASSERT_EQ(file.tensors.size(), 7u);
    const auto expect = [&](const std::string& name, DType dtype, std::vector<int64_t> shape,
                            int64_t numel, const std::string& bytes) {
      SCOPED_TRACE(name);
      ASSERT_EQ(file.tensors.count(name), 1u);
      const LoadedTensor& t = file.tensors.at(name);
      EXPECT_EQ(t.dtype, dtype);
      EXPECT_EQ(t.shape, shape);
      EXPECT_EQ(t.numel(), numel);
      EXPECT_EQ(Bytes(t.data), bytes);
    };
    expect("fc1.weight", DType::kF32, {2, 3}, 6, Bytes(weights_));
    expect("fc1.qweight", DType::kI8, {4}, 4, Bytes(quantized_));
    expect("counts", DType::kI32, {2, 2}, 4, Bytes(counts_));
    expect("step", DType::kI64, {3}, 3, Bytes(steps_));
    expect("mask", DType::kU8, {5, 1}, 5, Bytes(mask_));
    expect("lr", DType::kF32, {}, 1, std::string(reinterpret_cast<const char*>(&scalar_), 4));
    expect("empty", DType::kF32, {0, 3}, 0, "");
  }
};

TEST_F(SafetensorsRoundTripTest, FileRoundTripKeepsEveryDTypeShapeAndMetadata) {
  const std::string path = TempPath("round_trip");
  ASSERT_TRUE(WriteSafetensors(path, Records(), metadata_).ok());
  Result<SafetensorsFile> file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  ExpectContents(*file);
  // The loaded float bytes are usable as floats.
  const auto* w = reinterpret_cast<const float*>(file->tensors.at("fc1.weight").data.data());
  EXPECT_EQ(w[1], -1.25f);
}

TEST_F(SafetensorsRoundTripTest, WriteMatchesSerializeAndParseMatchesRead) {
  const std::string path = TempPath("write_matches_serialize");
  ASSERT_TRUE(WriteSafetensors(path, Records(), metadata_).ok());
  Result<std::string> image = SerializeSafetensors(Records(), metadata_);
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_EQ(ReadFileBytes(path), *image);

  Result<SafetensorsFile> parsed = ParseImage(*image);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ExpectContents(*parsed);
}

TEST_F(SafetensorsRoundTripTest, AlignsHeaderAndTensorData) {
  Result<std::string> image = SerializeSafetensors(Records(), metadata_);
  ASSERT_TRUE(image.ok());
  uint64_t n = 0;
  std::memcpy(&n, image->data(), 8);
  EXPECT_EQ(n % 8, 0u) << "the data buffer must start 8-byte aligned";
  // Widest dtype first, then by name: step (I64), counts, fc1.weight, lr, empty (4-byte), then
  // the 1-byte tensors.
  const std::string header = image->substr(8, n);
  EXPECT_NE(header.find(R"("step":{"data_offsets":[0,24])"), std::string::npos) << header;
  EXPECT_NE(header.find(R"("counts":{"data_offsets":[24,40])"), std::string::npos) << header;
  EXPECT_NE(header.find(R"("empty":{"data_offsets":[40,40])"), std::string::npos) << header;
  EXPECT_NE(header.find(R"("fc1.weight":{"data_offsets":[40,64])"), std::string::npos) << header;
  EXPECT_NE(header.find(R"("lr":{"data_offsets":[64,68])"), std::string::npos) << header;
  EXPECT_NE(header.find(R"("fc1.qweight":{"data_offsets":[68,72])"), std::string::npos) << header;
  EXPECT_NE(header.find(R"("mask":{"data_offsets":[72,77])"), std::string::npos) << header;
}

TEST(SafetensorsTest, ByteExactTinyLayout) {
  const std::vector<int32_t> b = {1, 2};
  const std::vector<uint8_t> a = {7, 8, 9};
  Result<std::string> image = SerializeSafetensors(
      {{"b", DType::kI32, {2}, b.data(), 8}, {"a", DType::kU8, {3}, a.data(), 3}}, {{"k", "v"}});
  ASSERT_TRUE(image.ok()) << image.status().ToString();

  const std::string json = R"({"__metadata__":{"k":"v"},)"
                           R"("a":{"data_offsets":[8,11],"dtype":"U8","shape":[3]},)"
                           R"("b":{"data_offsets":[0,8],"dtype":"I32","shape":[2]}})";
  ASSERT_EQ(json.size(), 132u);
  const std::string expected = std::string("\x88\0\0\0\0\0\0\0", 8) + json + "    " +
                               std::string("\1\0\0\0\2\0\0\0", 8) + "\x07\x08\x09";
  EXPECT_EQ(*image, expected);
}

// The reference implementation encodes empty checkpoints as "{}" and
// {"__metadata__":{"framework":"pt"}} padded with spaces to 8 bytes; ours must be identical.
TEST(SafetensorsTest, EmptyCheckpointsMatchReferenceEncoding) {
  Result<std::string> empty = SerializeSafetensors({});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, Image("{}      "));

  Result<std::string> with_meta = SerializeSafetensors({}, {{"framework", "pt"}});
  ASSERT_TRUE(with_meta.ok());
  EXPECT_EQ(*with_meta, Image(R"({"__metadata__":{"framework":"pt"}})"
                              "     "));

  Result<SafetensorsFile> parsed = ParseImage(*with_meta);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_TRUE(parsed->tensors.empty());
  EXPECT_EQ(parsed->metadata.at("framework"), "pt");
}

// Files from other writers may order keys differently and pad (or not) with spaces.
TEST(SafetensorsTest, ReadsOtherWritersKeyOrderAndPadding) {
  const std::vector<float> values = {0, 1, 2, 3, 4, 5};
  const std::string header = R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})"
                             "       ";
  Result<SafetensorsFile> file = ReadImage("other_writer", Image(header, Bytes(values)));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  const LoadedTensor& t = file->tensors.at("attn0");
  EXPECT_EQ(t.shape, (std::vector<int64_t>{1, 1, 2, 3}));
  EXPECT_EQ(Bytes(t.data), Bytes(values));
  EXPECT_TRUE(file->metadata.empty());
}

TEST(SafetensorsTest, TruncatedFileFailsAtEveryCutPoint) {
  const std::vector<float> w = {1, 2, 3, 4};
  const std::vector<uint8_t> m = {1, 2};
  Result<std::string> image = SerializeSafetensors(
      {{"w", DType::kF32, {4}, w.data(), 16}, {"m", DType::kU8, {2}, m.data(), 2}});
  ASSERT_TRUE(image.ok());
  const size_t header_end = image->size() - 18;
  for (size_t cut : {size_t{0}, size_t{3}, size_t{7}, size_t{8}, size_t{12}, header_end - 1,
                     header_end, header_end + 5, image->size() - 1}) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    const std::string path = TempPath("truncated");
    WriteFileBytes(path, image->substr(0, cut));
    Result<SafetensorsFile> file = ReadSafetensors(path);
    EXPECT_TRUE(FailsWith(file.status(), StatusCode::kDataLoss, {path, "truncated"}));
    EXPECT_TRUE(FailsWith(ParseImage(image->substr(0, cut)).status(), StatusCode::kDataLoss,
                          {"truncated"}));
  }
}

TEST(SafetensorsTest, ShortFileNamesTheLengthField) {
  EXPECT_TRUE(FailsWith(ReadImage("short", "abc").status(), StatusCode::kDataLoss,
                        {"3 bytes", "8-byte header length", "was the write interrupted?"}));
}

TEST(SafetensorsTest, CorruptHeaderJson) {
  const std::string image = Image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4)", "abcd");
  EXPECT_TRUE(FailsWith(ReadImage("corrupt_json", image).status(), StatusCode::kDataLoss,
                        {"not valid JSON", "corrupt"}));
}

TEST(SafetensorsTest, HeaderMustBeAJsonObject) {
  EXPECT_TRUE(FailsWith(ParseImage(Image("[1, 2, 3]")).status(), StatusCode::kDataLoss,
                        {"test image", "not a JSON object"}));
  EXPECT_TRUE(FailsWith(ParseImage(Image(R"("hello")")).status(), StatusCode::kDataLoss,
                        {"not a JSON object"}));
}

// nlohmann-json stops at a NUL as if the input ended; the reference reader rejects it.
TEST(SafetensorsTest, NulBytesInHeaderAreRejected) {
  EXPECT_TRUE(FailsWith(ParseImage(Image(std::string("{}\0\0\0\0\0\0", 8))).status(),
                        StatusCode::kDataLoss, {"NUL byte at offset 2", "not valid JSON"}));
}

TEST(SafetensorsTest, HeaderLengthAbsurdlyLarge) {
  std::string image = Image("{}      ");
  image[5] = 1;  // N = 2^40
  EXPECT_TRUE(FailsWith(ReadImage("huge_header", image).status(), StatusCode::kDataLoss,
                        {"1099511627784", "100 MB limit"}));
}

TEST(SafetensorsTest, HeaderLengthLargerThanFile) {
  std::string image = Image("{}      ");
  image[0] = 100;
  EXPECT_TRUE(FailsWith(ReadImage("long_header", image).status(), StatusCode::kDataLoss,
                        {"says 100 bytes but only 8 bytes follow", "truncated"}));
}

TEST(SafetensorsTest, OverlappingOffsets) {
  const std::string image = Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                  std::string(12, '\0'));
  EXPECT_TRUE(FailsWith(ReadImage("overlap", image).status(), StatusCode::kDataLoss,
                        {"tensor 'b'", "[4, 12]", "overlap tensor 'a'"}));
}

TEST(SafetensorsTest, OffsetsOutOfRange) {
  const std::string image =
      Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(4, '\0'));
  EXPECT_TRUE(FailsWith(ReadImage("out_of_range", image).status(), StatusCode::kDataLoss,
                        {"tensor 'a'", "out of range", "holds only 4 bytes"}));
}

TEST(SafetensorsTest, OffsetsMustMatchShapeAndDType) {
  const std::string image =
      Image(R"({"a":{"dtype":"F32","shape":[2, 3],"data_offsets":[0,12]}})", std::string(12, 0));
  EXPECT_TRUE(FailsWith(ParseImage(image).status(), StatusCode::kDataLoss,
                        {"tensor 'a'", "span 12 bytes", "F32 shape [2, 3] needs 24"}));
  const std::string reversed =
      Image(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", std::string(4, 0));
  EXPECT_TRUE(FailsWith(ParseImage(reversed).status(), StatusCode::kDataLoss,
                        {"[4, 0]", "end before they begin"}));
}

TEST(SafetensorsTest, GapBetweenTensorsIsRejected) {
  const std::string image = Image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                  R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                  std::string(12, '\0'));
  EXPECT_TRUE(FailsWith(ParseImage(image).status(), StatusCode::kDataLoss,
                        {"tensor 'b'", "gap", "[4, 8]"}));
}

TEST(SafetensorsTest, TrailingBytesAreRejected) {
  const std::string image =
      Image(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "xyz");
  EXPECT_TRUE(FailsWith(ReadImage("trailing", image).status(), StatusCode::kDataLoss,
                        {"1 trailing bytes", "cover 2 of 3"}));
}

TEST(SafetensorsTest, ZeroByteTensorsMayShareABoundary) {
  const std::string image = Image(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                  R"("e1":{"dtype":"F32","shape":[0],"data_offsets":[2,2]},)"
                                  R"("e2":{"dtype":"I64","shape":[3,0],"data_offsets":[2,2]}})",
                                  "xy");
  Result<SafetensorsFile> file = ParseImage(image);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->tensors.at("e2").numel(), 0);
}

TEST(SafetensorsTest, WrongDTypeName) {
  const std::string unknown =
      Image(R"({"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", "abcd");
  EXPECT_TRUE(FailsWith(ReadImage("unknown_dtype", unknown).status(), StatusCode::kDataLoss,
                        {"tensor 'a'", "unknown dtype 'F33'"}));
  const std::string unsupported =
      Image(R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", "abcd");
  EXPECT_TRUE(FailsWith(ParseImage(unsupported).status(), StatusCode::kUnimplemented,
                        {"tensor 'a'", "F16", "not supported"}));
}

TEST(SafetensorsTest, BadShapes) {
  EXPECT_TRUE(FailsWith(
      ParseImage(Image(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})")).status(),
      StatusCode::kDataLoss, {"tensor 'a'", "negative"}));
  EXPECT_TRUE(FailsWith(ParseImage(Image(R"({"a":{"dtype":"F32",)"
                                         R"("shape":[4294967296,4294967296,4],)"
                                         R"("data_offsets":[0,0]}})"))
                            .status(),
                        StatusCode::kDataLoss, {"tensor 'a'", "overflows"}));
  EXPECT_TRUE(FailsWith(
      ParseImage(Image(R"({"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,0]}})")).status(),
      StatusCode::kDataLoss, {"tensor 'a'", "not a non-negative integer"}));
  EXPECT_TRUE(FailsWith(ParseImage(Image(R"({"a":{"dtype":"U8","data_offsets":[0,0]}})")).status(),
                        StatusCode::kDataLoss, {"tensor 'a'", "\"shape\""}));
}

TEST(SafetensorsTest, DuplicateNameInHeaderIsCorrupt) {
  const std::string image = Image(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                  R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                                  "xy");
  EXPECT_TRUE(FailsWith(ParseImage(image).status(), StatusCode::kDataLoss, {"'a' more than once"}));
}

TEST(SafetensorsTest, MetadataValuesMustBeStrings) {
  EXPECT_TRUE(FailsWith(ParseImage(Image(R"({"__metadata__":{"epoch":3}})")).status(),
                        StatusCode::kDataLoss, {"'epoch'", "not a string"}));
}

TEST(SafetensorsTest, WriteRejectsDuplicateNames) {
  const std::string path = TempPath("duplicate_write");
  std::filesystem::remove(path);
  const float x = 1;
  Status s = WriteSafetensors(path, {{"x", DType::kF32, {}, &x, 4}, {"x", DType::kF32, {}, &x, 4}});
  EXPECT_TRUE(FailsWith(s, StatusCode::kInvalidArgument, {path, "'x'", "duplicate"}));
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(SafetensorsTest, WriteRejectsBadRecords) {
  const float x[2] = {1, 2};
  EXPECT_TRUE(FailsWith(SerializeSafetensors({{"", DType::kF32, {}, x, 4}}).status(),
                        StatusCode::kInvalidArgument, {"non-empty"}));
  EXPECT_TRUE(FailsWith(SerializeSafetensors({{"__metadata__", DType::kF32, {}, x, 4}}).status(),
                        StatusCode::kInvalidArgument, {"reserved"}));
  EXPECT_TRUE(FailsWith(SerializeSafetensors({{"x", DType::kF32, {3}, x, 8}}).status(),
                        StatusCode::kInvalidArgument, {"'x'", "needs 12 bytes", "has 8"}));
  EXPECT_TRUE(FailsWith(SerializeSafetensors({{"x", DType::kF32, {-2}, x, 8}}).status(),
                        StatusCode::kInvalidArgument, {"'x'", "negative"}));
  EXPECT_TRUE(FailsWith(SerializeSafetensors({{"bad\xff", DType::kF32, {1}, x, 4}}).status(),
                        StatusCode::kInvalidArgument, {"UTF-8"}));
}

TEST(SafetensorsTest, AtomicWriteLeavesNoTmpAndReplacesOldFile) {
  const std::string path = TempPath("atomic");
  WriteFileBytes(path, "old contents");
  const int64_t v = 5;
  ASSERT_TRUE(WriteSafetensors(path, {{"v", DType::kI64, {1}, &v, 8}}).ok());
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  Result<SafetensorsFile> file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->tensors.at("v").data.size(), 8u);
}

TEST(SafetensorsTest, WriteIntoMissingDirectoryIsIoError) {
  const std::string path = ::testing::TempDir() + "/no_such_dir_for_safetensors/x.safetensors";
  EXPECT_TRUE(FailsWith(WriteSafetensors(path, {}), StatusCode::kIoError,
                        {"no_such_dir_for_safetensors", "does the directory exist"}));
}

TEST(SafetensorsTest, ReadMissingFileIsNotFound) {
  const std::string path = TempPath("does_not_exist");
  std::filesystem::remove(path);
  EXPECT_TRUE(FailsWith(ReadSafetensors(path).status(), StatusCode::kNotFound, {path}));
}

}  // namespace
}  // namespace ftte
