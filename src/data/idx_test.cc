#include "ftte/data/idx.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace ftte::data {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// The bytes of an IDX file: magic 00 00 type ndims, big-endian dims, then `data` verbatim.
Bytes IdxBytes(uint8_t type, const std::vector<uint32_t>& dims, const Bytes& data) {
  Bytes out = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(d >> shift));
  }
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

Bytes Iota(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 7);
  return b;
}

Bytes Gzip(const std::string& scratch_path, const Bytes& bytes) {
  gzFile gz = gzopen(scratch_path.c_str(), "wb");
  EXPECT_NE(gz, nullptr);
  EXPECT_EQ(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  EXPECT_EQ(gzclose(gz), Z_OK);
  std::ifstream in(scratch_path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           ("ftte_idx_" + std::string(info->name()) + "_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const Bytes& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    return path;
  }
  std::string WriteGzip(const std::string& name, const Bytes& bytes) {
    return Write(name, Gzip((dir_ / (name + ".scratch")).string(), bytes));
  }

  fs::path dir_;
};

TEST_F(IdxTest, PlainRoundTrip) {
  const std::string path = Write("a.idx", IdxBytes(0x08, {2, 3, 4}, Iota(24)));
  Result<IdxArray> r = ReadIdx(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->element_type, 0x08);
  EXPECT_EQ(r->dims, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(r->data, Iota(24));
}

TEST_F(IdxTest, GzipRoundTrip) {
  const std::string path = WriteGzip("a.idx.gz", IdxBytes(0x08, {5, 7}, Iota(35)));
  Result<IdxArray> r = ReadIdx(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->dims, (std::vector<int64_t>{5, 7}));
  EXPECT_EQ(r->data, Iota(35));
}

TEST_F(IdxTest, MissingFileIsNotFound) {
  const std::string path = (dir_ / "nope.gz").string();
  Result<IdxArray> r = ReadIdx(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().message();
}

TEST_F(IdxTest, BadMagicNamesExpectedAndFound) {
  const std::string path = Write("bad", {0x12, 0x34, 0x08, 0x01, 0, 0, 0, 1, 9});
  Result<IdxArray> r = ReadIdx(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  const std::string& m = r.status().message();
  EXPECT_NE(m.find(path), std::string::npos) << m;
  EXPECT_NE(m.find("magic"), std::string::npos) << m;
  EXPECT_NE(m.find("0x12340801"), std::string::npos) << m;
  EXPECT_NE(m.find("expected"), std::string::npos) << m;
}

TEST_F(IdxTest, UnsupportedElementTypeNamesTheCode) {
  Result<IdxArray> r = ReadIdx(Write("f32", IdxBytes(0x0D, {1}, {0, 0, 0, 0})));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("0x0d"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("float32"), std::string::npos) << r.status().message();
}

TEST_F(IdxTest, ShortFileReportsExpectedAndFoundBytes) {
  const std::string path = Write("short", IdxBytes(0x08, {10, 28, 28}, Iota(100)));
  Result<IdxArray> r = ReadIdx(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  const std::string& m = r.status().message();
  EXPECT_NE(m.find(path), std::string::npos) << m;
  EXPECT_NE(m.find("truncated"), std::string::npos) << m;
  EXPECT_NE(m.find("7856"), std::string::npos) << m;  // 16-byte header + 7840 pixels
  EXPECT_NE(m.find("116"), std::string::npos) << m;
}

TEST_F(IdxTest, EmptyAndHeaderOnlyFilesAreTruncated) {
  EXPECT_EQ(ReadIdx(Write("empty", {})).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(ReadIdx(Write("half_header", {0, 0, 8, 3, 0, 0})).status().code(),
            StatusCode::kDataLoss);
}

TEST_F(IdxTest, TrailingBytesAreADimsMismatch) {
  Result<IdxArray> r = ReadIdx(Write("long", IdxBytes(0x08, {2}, Iota(3))));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("trailing"), std::string::npos) << r.status().message();
}

TEST_F(IdxTest, AbsurdDimsAreRejectedBeforeAllocating) {
  Result<IdxArray> r = ReadIdx(Write("huge", IdxBytes(0x08, {65536, 65536, 2}, {})));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("2^31"), std::string::npos) << r.status().message();
  r = ReadIdx(Write("max", IdxBytes(0x08, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, {})));
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(IdxTest, TruncatedGzipIsDataLoss) {
  Bytes gz = Gzip((dir_ / "scratch").string(), IdxBytes(0x08, {100, 10}, Iota(1000)));
  gz.resize(gz.size() / 2);
  const std::string path = Write("cut.gz", gz);
  Result<IdxArray> r = ReadIdx(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("gzip"), std::string::npos) << r.status().message();
}

TEST_F(IdxTest, MissingGzipTrailerIsDataLoss) {
  Bytes gz = Gzip((dir_ / "scratch").string(), IdxBytes(0x08, {4}, Iota(4)));
  gz.resize(gz.size() - 8);  // drop CRC32 and ISIZE
  Result<IdxArray> r = ReadIdx(Write("notrailer.gz", gz));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("gzip"), std::string::npos) << r.status().message();
}

TEST_F(IdxTest, CorruptGzipIsDataLoss) {
  Bytes gz = Gzip((dir_ / "scratch").string(), IdxBytes(0x08, {4}, Iota(4)));
  gz[gz.size() - 6] ^= 0xFF;  // CRC32 mismatch
  Result<IdxArray> r = ReadIdx(Write("crc.gz", gz));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("corrupt gzip"), std::string::npos) << r.status().message();
}

// Hostile input must yield an error or a value, never a crash or a huge allocation.
TEST_F(IdxTest, RandomBytesNeverCrash) {
  std::mt19937 rng(42);
  const Bytes good = IdxBytes(0x08, {3, 4}, Iota(12));
  const Bytes good_gz = Gzip((dir_ / "scratch").string(), good);
  for (int trial = 0; trial < 300; ++trial) {
    Bytes b = trial % 2 ? good : good_gz;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    b.resize(rng() % (b.size() + 1));
    Result<IdxArray> r = ReadIdx(Write("fuzz", b));
    if (r.ok()) {
      int64_t numel = 1;
      for (int64_t d : r->dims) numel *= d;
      EXPECT_EQ(static_cast<int64_t>(r->data.size()), numel);
    }
  }
}

class IdxImageDatasetTest : public IdxTest {};

TEST_F(IdxImageDatasetTest, ReadsImagesAndLabels) {
  const std::string images = WriteGzip("img.gz", IdxBytes(0x08, {3, 2, 2},
                                                          {0, 255, 51, 102,  //
                                                           1, 2, 3, 4,       //
                                                           5, 6, 7, 8}));
  const std::string labels = Write("lab", IdxBytes(0x08, {3}, {9, 0, 4}));
  Result<ImageDataset> r = ReadIdxImageDataset(images, labels);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->size, 3);
  EXPECT_EQ(r->channels, 1);
  EXPECT_EQ(r->height, 2);
  EXPECT_EQ(r->width, 2);
  EXPECT_EQ(r->num_classes, 10);
  EXPECT_EQ(r->labels, (std::vector<int32_t>{9, 0, 4}));
  ASSERT_EQ(r->images.size(), 12u);
  EXPECT_FLOAT_EQ(r->images[0], 0.0f);
  EXPECT_FLOAT_EQ(r->images[1], 1.0f);
  EXPECT_FLOAT_EQ(r->images[2], 0.2f);
  EXPECT_FLOAT_EQ(r->image(2)[3], 8.0f / 255.0f);
}

TEST_F(IdxImageDatasetTest, WrongDimsNameTheFile) {
  const std::string images = Write("img", IdxBytes(0x08, {2, 4}, Iota(8)));
  const std::string labels = Write("lab", IdxBytes(0x08, {2}, {0, 1}));
  Result<ImageDataset> r = ReadIdxImageDataset(images, labels);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(images), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("3-D"), std::string::npos) << r.status().message();

  const std::string images3 = Write("img3", IdxBytes(0x08, {2, 2, 2}, Iota(8)));
  const std::string labels2 = Write("lab2", IdxBytes(0x08, {2, 1}, {0, 1}));
  r = ReadIdxImageDataset(images3, labels2);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(labels2), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("1-D"), std::string::npos) << r.status().message();
}

TEST_F(IdxImageDatasetTest, CountMismatchNamesBothFiles) {
  const std::string images = Write("img", IdxBytes(0x08, {3, 1, 1}, {1, 2, 3}));
  const std::string labels = Write("lab", IdxBytes(0x08, {2}, {0, 1}));
  Result<ImageDataset> r = ReadIdxImageDataset(images, labels);
  ASSERT_FALSE(r.ok());
  const std::string& m = r.status().message();
  EXPECT_NE(m.find(images), std::string::npos) << m;
  EXPECT_NE(m.find(labels), std::string::npos) << m;
  EXPECT_NE(m.find("count"), std::string::npos) << m;
}

TEST_F(IdxImageDatasetTest, LabelOutOfRange) {
  const std::string images = Write("img", IdxBytes(0x08, {2, 1, 1}, {1, 2}));
  const std::string labels = Write("lab", IdxBytes(0x08, {2}, {3, 10}));
  Result<ImageDataset> r = ReadIdxImageDataset(images, labels);
  ASSERT_FALSE(r.ok());
  const std::string& m = r.status().message();
  EXPECT_NE(m.find(labels), std::string::npos) << m;
  EXPECT_NE(m.find("label 10"), std::string::npos) << m;
  EXPECT_NE(m.find("out of range"), std::string::npos) << m;
  EXPECT_TRUE(ReadIdxImageDataset(images, labels, 11).ok());
  EXPECT_FALSE(ReadIdxImageDataset(images, labels, 0).ok());
}

TEST_F(IdxImageDatasetTest, LoadFashionMnistFromDirectory) {
  WriteGzip("t10k-images-idx3-ubyte.gz", IdxBytes(0x08, {2, 2, 2}, Iota(8)));
  Write("t10k-labels-idx1-ubyte", IdxBytes(0x08, {2}, {7, 3}));  // a gunzipped copy
  Result<ImageDataset> r = LoadFashionMnist(dir_.string(), /*train=*/false);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->size, 2);
  EXPECT_EQ(r->labels, (std::vector<int32_t>{7, 3}));
}

TEST_F(IdxImageDatasetTest, LoadFashionMnistMissingFileSaysHowToInstall) {
  Result<ImageDataset> r = LoadFashionMnist(dir_.string(), /*train=*/true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  const std::string& m = r.status().message();
  EXPECT_NE(m.find((dir_ / "train-images-idx3-ubyte.gz").string()), std::string::npos) << m;
  EXPECT_NE(m.find("dataset-fashion-mnist"), std::string::npos) << m;
}

TEST(FashionMnistSystemTest, LoadsTestSplit) {
  if (!fs::exists(kFashionMnistDir)) {
    GTEST_SKIP() << kFashionMnistDir << " not installed (Debian package dataset-fashion-mnist)";
  }
  Result<ImageDataset> r = LoadFashionMnist(kFashionMnistDir, /*train=*/false);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->size, 10000);
  EXPECT_EQ(r->channels, 1);
  EXPECT_EQ(r->height, 28);
  EXPECT_EQ(r->width, 28);
  EXPECT_EQ(r->images.size(), 10000u * 28 * 28);
  for (int32_t label : r->labels) {
    ASSERT_GE(label, 0);
    ASSERT_LT(label, 10);
  }
}

}  // namespace
}  // namespace ftte::data
