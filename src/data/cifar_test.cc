#include "ftte/data/cifar.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ftte::data {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// `labels.size()` CIFAR-10 records; pixel p of record r is (r + p) % 256.
Bytes Records(const Bytes& labels) {
  Bytes out;
  for (size_t r = 0; r < labels.size(); ++r) {
    out.push_back(labels[r]);
    for (int p = 0; p < 3072; ++p) out.push_back(static_cast<uint8_t>((r + p) % 256));
  }
  return out;
}

class CifarTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           ("ftte_cifar_" + std::string(info->name()) + "_" + std::to_string(getpid()));
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

  fs::path dir_;
};

TEST_F(CifarTest, ReadsAndConcatenatesBatches) {
  const std::string a = Write("a.bin", Records({3, 9}));
  const std::string b = Write("b.bin", Records({0}));
  Result<ImageDataset> r = ReadCifar10Batches({a, b});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->size, 3);
  EXPECT_EQ(r->channels, 3);
  EXPECT_EQ(r->height, 32);
  EXPECT_EQ(r->width, 32);
  EXPECT_EQ(r->num_classes, 10);
  EXPECT_EQ(r->labels, (std::vector<int32_t>{3, 9, 0}));
  ASSERT_EQ(r->images.size(), 3u * 3072);
  // Channel-major: pixel 1024 is the first green value.
  EXPECT_FLOAT_EQ(r->image(1)[0], 1.0f / 255.0f);
  EXPECT_FLOAT_EQ(r->image(1)[1024], ((1 + 1024) % 256) / 255.0f);
  EXPECT_FLOAT_EQ(r->image(2)[255], 1.0f);
}

TEST_F(CifarTest, SizeNotAMultipleOfRecordSays) {
  Bytes bytes = Records({1, 2});
  bytes.resize(bytes.size() + 5);
  const std::string path = Write("odd.bin", bytes);
  Result<ImageDataset> r = ReadCifar10Batches({path});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  const std::string& m = r.status().message();
  EXPECT_NE(m.find(path), std::string::npos) << m;
  EXPECT_NE(m.find("6151"), std::string::npos) << m;
  EXPECT_NE(m.find("3073"), std::string::npos) << m;
  EXPECT_FALSE(ReadCifar10Batches({Write("empty.bin", {})}).ok());
}

TEST_F(CifarTest, LabelAboveNineIsRejected) {
  const std::string path = Write("c100.bin", Records({4, 10}));
  Result<ImageDataset> r = ReadCifar10Batches({path});
  ASSERT_FALSE(r.ok());
  const std::string& m = r.status().message();
  EXPECT_NE(m.find(path), std::string::npos) << m;
  EXPECT_NE(m.find("record 1 has label 10"), std::string::npos) << m;
}

TEST_F(CifarTest, MissingFileIsNotFound) {
  const std::string path = (dir_ / "missing.bin").string();
  Result<ImageDataset> r = ReadCifar10Batches({path});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().message();
  EXPECT_EQ(ReadCifar10Batches({}).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(CifarTest, LoadCifar10PicksTheSplitFiles) {
  Write("test_batch.bin", Records({5, 6}));
  Result<ImageDataset> test = LoadCifar10(dir_.string(), /*train=*/false);
  ASSERT_TRUE(test.ok()) << test.status().ToString();
  EXPECT_EQ(test->labels, (std::vector<int32_t>{5, 6}));

  for (int i = 1; i <= 4; ++i) Write("data_batch_" + std::to_string(i) + ".bin", Records({1}));
  Result<ImageDataset> train = LoadCifar10(dir_.string(), /*train=*/true);
  ASSERT_FALSE(train.ok());
  EXPECT_EQ(train.status().code(), StatusCode::kNotFound);
  EXPECT_NE(train.status().message().find((dir_ / "data_batch_5.bin").string()), std::string::npos)
      << train.status().message();

  Write("data_batch_5.bin", Records({2}));
  train = LoadCifar10(dir_.string(), /*train=*/true);
  ASSERT_TRUE(train.ok()) << train.status().ToString();
  EXPECT_EQ(train->labels, (std::vector<int32_t>{1, 1, 1, 1, 2}));
}

}  // namespace
}  // namespace ftte::data
