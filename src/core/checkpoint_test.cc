// SaveCheckpoint / LoadCheckpoint: bit-exact round trips for every zoo model, int8-stored
// weights saved dequantised, and every documented failure leaving the target model unchanged.
#include "ftte/core/checkpoint.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ftte/core/safetensors.h"

namespace ftte {
namespace {

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/checkpoint_test_" + name + ".safetensors";
}

// Every parameter's values as float32 (dequantised when int8-stored), in params() order.
std::vector<std::vector<float>> Snapshot(const Model& m) {
  std::vector<std::vector<float>> all;
  for (const Parameter* p : m.params()) {
    std::vector<float> v(static_cast<size_t>(p->numel()));
    p->ReadRows(0, p->rows(), v.data());
    all.push_back(std::move(v));
  }
  return all;
}

// Bitwise equality of two snapshots, naming the first differing parameter and element.
::testing::AssertionResult BitIdentical(const Model& m, const std::vector<std::vector<float>>& a,
                                        const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << "parameter counts differ";
  for (size_t k = 0; k < a.size(); ++k) {
    if (a[k].size() != b[k].size()) {
      return ::testing::AssertionFailure() << m.params()[k]->name() << ": sizes differ";
    }
    for (size_t i = 0; i < a[k].size(); ++i) {
      if (std::memcmp(&a[k][i], &b[k][i], sizeof(float)) != 0) {
        return ::testing::AssertionFailure()
               << m.params()[k]->name() << "[" << i << "]: " << a[k][i] << " vs " << b[k][i];
      }
    }
  }
  return ::testing::AssertionSuccess();
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

// A checkpoint-like file written with WriteSafetensors: the model's parameters as F32 records
// (float-stored models only), passed through `edit` first, with `metadata`.
Status WriteEdited(const Model& m, const std::string& path,
                   const std::function<void(std::vector<TensorRecord>*)>& edit,
                   const std::map<std::string, std::string>& metadata) {
  std::vector<TensorRecord> records;
  for (const Parameter* p : m.params()) {
    records.push_back({p->name(), DType::kF32, p->shape(), p->data(),
                       static_cast<size_t>(p->numel()) * sizeof(float)});
  }
  edit(&records);
  return WriteSafetensors(path, records, metadata);
}

TEST(CheckpointTest, RoundTripIsBitIdenticalForEveryZooModel) {
  for (const std::string& name : ModelNames()) {
    SCOPED_TRACE(name);
    auto source = MakeModel(name, 1).value();
    auto target = MakeModel(name, 2).value();
    const auto saved = Snapshot(*source);
    ASSERT_FALSE(BitIdentical(*target, saved, Snapshot(*target)))
        << "seeds 1 and 2 gave the same weights; the test would prove nothing";
    const std::string path = TempPath("roundtrip_" + name);
    ASSERT_TRUE(SaveCheckpoint(*source, path).ok());
    const Status s = LoadCheckpoint(*target, path);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_TRUE(BitIdentical(*target, saved, Snapshot(*target)));
    EXPECT_TRUE(BitIdentical(*source, saved, Snapshot(*source))) << "saving changed the source";
  }
}

TEST(CheckpointTest, Int8StoredWeightsAreSavedDequantised) {
  auto source = MakeModel("lenet5", 1).value();
  const auto original = Snapshot(*source);
  source->SetAllTrainable(false);
  int quantized = 0;
  for (Parameter* p : source->params()) {
    p->SetStorage(FrozenStorage::kInt8);
    quantized += p->quantized();
  }
  ASSERT_EQ(quantized, 5);  // every weight matrix; biases stay float32
  const auto dequantised = Snapshot(*source);
  ASSERT_FALSE(BitIdentical(*source, original, dequantised))
      << "int8 storage was lossless; the test would prove nothing";

  const std::string path = TempPath("int8");
  ASSERT_TRUE(SaveCheckpoint(*source, path).ok());
  auto target = MakeModel("lenet5", 2).value();
  const Status s = LoadCheckpoint(*target, path);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(BitIdentical(*target, dequantised, Snapshot(*target)));
}

// Each failure case: the status and its message, and the target bit-identical afterwards.
TEST(CheckpointTest, ExtraMetadataIsStoredAndReservedKeysAreRefused) {
  auto model = MakeModel("mlp", 1);
  ASSERT_TRUE(model.ok());
  const std::string path = TempPath("extra_metadata");
  ASSERT_TRUE(SaveCheckpoint(*model.value(), path, {{"ftte.tokenizer", "vocab"}}).ok());
  auto file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file.value().metadata.at("ftte.tokenizer"), "vocab");
  EXPECT_EQ(file.value().metadata.at("ftte.model"), "mlp");
  auto again = MakeModel("mlp", 2);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(LoadCheckpoint(*again.value(), file.value(), path).ok());
  EXPECT_TRUE(BitIdentical(*again.value(), Snapshot(*model.value()), Snapshot(*again.value())));
  const Status s = SaveCheckpoint(*model.value(), path, {{"ftte.model", "cnn"}});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("reserved"), std::string::npos) << s.message();
}

class CheckpointErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    target_ = MakeModel("lenet5", 2).value();
    donor_ = MakeModel("lenet5", 1).value();  // values a partial load would copy in
    before_ = Snapshot(*target_);
  }
  void TearDown() override {
    EXPECT_TRUE(BitIdentical(*target_, before_, Snapshot(*target_)))
        << "a failed load changed the model";
  }
  // Writes the donor's parameters, edited, with lenet5's metadata unless told otherwise.
  std::string Write(const std::string& name,
                    const std::function<void(std::vector<TensorRecord>*)>& edit,
                    const std::map<std::string, std::string>& metadata = {{"ftte.model", "lenet5"},
                                                                          {"format", "pt"}}) {
    const std::string path = TempPath(name);
    const Status s = WriteEdited(*donor_, path, edit, metadata);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return path;
  }

  std::unique_ptr<Model> target_, donor_;
  std::vector<std::vector<float>> before_;
};

// The helper itself: unedited, the file loads (so each failure below is due to its edit).
TEST_F(CheckpointErrorTest, UneditedFileLoads) {
  const std::string path = Write("unedited", [](auto*) {});
  auto other = MakeModel("lenet5", 3).value();
  ASSERT_TRUE(LoadCheckpoint(*other, path).ok());
  EXPECT_TRUE(BitIdentical(*other, Snapshot(*donor_), Snapshot(*other)));
}

TEST_F(CheckpointErrorTest, MissingFile) {
  const std::string path = TempPath("does_not_exist");
  std::filesystem::remove(path);
  EXPECT_TRUE(
      FailsWith(LoadCheckpoint(*target_, path), StatusCode::kNotFound, {"no such file", path}));
}

TEST_F(CheckpointErrorTest, TruncatedFile) {
  const std::string path = TempPath("truncated");
  ASSERT_TRUE(SaveCheckpoint(*donor_, path).ok());
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_GT(bytes.size(), 1000u);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
    ASSERT_TRUE(out.good());
  }
  EXPECT_TRUE(
      FailsWith(LoadCheckpoint(*target_, path), StatusCode::kDataLoss, {path, "truncated"}));
}

TEST_F(CheckpointErrorTest, CheckpointForAnotherModel) {
  // Tensors that would fit lenet5; only the metadata says otherwise.
  const std::string path = Write("other_model", [](auto*) {}, {{"ftte.model", "cnn"}});
  EXPECT_TRUE(FailsWith(LoadCheckpoint(*target_, path), StatusCode::kInvalidArgument,
                        {path, "for model 'cnn'", "not 'lenet5'", "--model cnn"}));
}

TEST_F(CheckpointErrorTest, MissingTensor) {
  const std::string path = Write("missing_tensor", [](std::vector<TensorRecord>* r) {
    std::erase_if(*r, [](const TensorRecord& t) { return t.name == "7.bias"; });
  });
  EXPECT_TRUE(FailsWith(LoadCheckpoint(*target_, path), StatusCode::kInvalidArgument,
                        {path, "missing tensor '7.bias'", "lenet5"}));
}

TEST_F(CheckpointErrorTest, ExtraTensor) {
  static const float kExtra[3] = {1, 2, 3};
  const std::string path = Write("extra_tensor", [](std::vector<TensorRecord>* r) {
    r->push_back({"12.weight", DType::kF32, {3}, kExtra, sizeof(kExtra)});
  });
  EXPECT_TRUE(FailsWith(LoadCheckpoint(*target_, path), StatusCode::kInvalidArgument,
                        {path, "unexpected tensor '12.weight'", "lenet5"}));
}

TEST_F(CheckpointErrorTest, WrongShape) {
  // The same element count transposed: only the shape check can catch it.
  const std::string path = Write("wrong_shape", [](std::vector<TensorRecord>* r) {
    for (TensorRecord& t : *r) {
      if (t.name == "9.weight") t.shape = {120, 84};
    }
  });
  EXPECT_TRUE(FailsWith(LoadCheckpoint(*target_, path), StatusCode::kInvalidArgument,
                        {path, "'9.weight'", "[120, 84]", "expects [84, 120]"}));
}

TEST_F(CheckpointErrorTest, WrongDtype) {
  // I32 of the same shape and byte count: only the dtype check can catch it.
  const std::string path = Write("wrong_dtype", [](std::vector<TensorRecord>* r) {
    for (TensorRecord& t : *r) {
      if (t.name == "0.weight") t.dtype = DType::kI32;
    }
  });
  EXPECT_TRUE(FailsWith(LoadCheckpoint(*target_, path), StatusCode::kInvalidArgument,
                        {path, "'0.weight'", "I32", "expected F32"}));
}

TEST_F(CheckpointErrorTest, Int8StoredTarget) {
  const std::string path = Write("int8_target", [](auto*) {});
  target_->SetAllTrainable(false);
  for (Parameter* p : target_->params()) p->SetStorage(FrozenStorage::kInt8);
  before_ = Snapshot(*target_);
  EXPECT_TRUE(FailsWith(LoadCheckpoint(*target_, path), StatusCode::kFailedPrecondition,
                        {path, "int8-stored parameter '0.weight'"}));
}

// Regression (issue 12): a diverged run ended with exit 0 and a NaN checkpoint that predict
// used. A non-finite model is never saved, and a non-finite checkpoint never loads.
TEST_F(CheckpointErrorTest, NonFiniteValuesAreNeitherSavedNorLoaded) {
  auto diverged = MakeModel("lenet5", 1).value();
  diverged->params()[0]->data()[3] = std::numeric_limits<float>::quiet_NaN();
  const std::string refused = TempPath("diverged");
  std::filesystem::remove(refused);
  EXPECT_TRUE(FailsWith(SaveCheckpoint(*diverged, refused), StatusCode::kFailedPrecondition,
                        {"non-finite", "lower the learning rate"}));
  EXPECT_FALSE(std::filesystem::exists(refused));
  const std::string path = Write("non_finite", [](std::vector<TensorRecord>* r) {
    static std::vector<float> bad;
    const TensorRecord& t = r->back();
    bad.assign(static_cast<const float*>(t.data),
               static_cast<const float*>(t.data) + t.bytes / sizeof(float));
    bad[1] = std::numeric_limits<float>::infinity();
    r->back().data = bad.data();
  });
  EXPECT_TRUE(FailsWith(LoadCheckpoint(*target_, path), StatusCode::kInvalidArgument,
                        {path, "non-finite value at index 1", "diverged"}));
}

}  // namespace
}  // namespace ftte
