// Frozen rows read in place from a memory-mapped file: the same training as int8 rows in the
// heap, less heap, and no training on a file that changed underneath.
#include "ftte/core/frozen_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ftte/core/trainer.h"

namespace ftte {
namespace {

namespace fs = std::filesystem;

class FrozenFileTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(testing::TempDir()) /
           ("frozen_file_test_" + std::to_string(getpid()) + "_" +
            testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // cnn with conv2, fc1 rows 100..140 and fc2 trainable.
  static std::unique_ptr<Model> MaskedCnn() {
    auto m = MakeModel("cnn", 3).value();
    m->SetAllTrainable(false);
    for (Parameter* p : m->params()) {
      if (p->name()[0] == '3' || p->name()[0] == '9') p->SetTrainable(true);
    }
    m->FindParam("7.weight")->SetRowsTrainable(100, 140, true);
    return m;
  }

  std::string path() const { return (dir_ / "frozen.safetensors").string(); }
  fs::path dir_;
};

// The values of the trainable rows (what training moves).
std::vector<float> TrainableValues(Model& m) {
  std::vector<float> all;
  for (Parameter* p : m.params()) {
    for (const RowRun& r : p->runs()) {
      const float* v = p->RunData(r);
      all.insert(all.end(), v, v + (r.end - r.begin) * p->row_size());
    }
  }
  return all;
}

std::vector<float> Values(const Model& m) {
  std::vector<float> all;
  for (const Parameter* p : m.params()) {
    std::vector<float> rows(static_cast<size_t>(p->numel()));
    p->ReadRows(0, p->rows(), rows.data());
    all.insert(all.end(), rows.begin(), rows.end());
  }
  return all;
}

struct Batch {
  std::vector<float> x;
  std::vector<int32_t> y;
};
Batch RandomImages(int64_t n) {
  Rng rng(4);
  Batch b{std::vector<float>(static_cast<size_t>(n * 784)), std::vector<int32_t>(n)};
  for (float& v : b.x) v = static_cast<float>(rng.Normal());
  for (int32_t& v : b.y) v = static_cast<int32_t>(rng.Below(10));
  return b;
}

TEST_F(FrozenFileTest, MappedRowsTrainLikeInt8RowsInTheHeapInLessHeap) {
  const Batch b = RandomImages(8);
  TrainerOptions o;
  o.batch = 8;
  o.optimizer.momentum = 0.9f;
  o.tile_floats = kTileFloats;
  // Heap int8.
  auto heap = MaskedCnn();
  o.frozen = FrozenStorage::kInt8;
  const MemoryPrediction heap_plan = PredictPeak(*heap, o);
  {
    Trainer t(heap.get(), o);
    for (int i = 0; i < 2; ++i) ASSERT_TRUE(t.Step(b.x.data(), b.y.data(), 8).status.ok());
  }
  // Mapped int8.
  auto mapped = MaskedCnn();
  ASSERT_TRUE(WriteFrozenRows(*mapped, path()).ok());
  auto file = MappedFrozenRows::Open(path(), *mapped);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  o.frozen = FrozenStorage::kInt8Mapped;
  o.mapped = file.value().get();
  const MemoryPrediction mapped_plan = PredictPeak(*mapped, o);
  {
    Trainer t(mapped.get(), o);
    for (int i = 0; i < 2; ++i) ASSERT_TRUE(t.Step(b.x.data(), b.y.data(), 8).status.ok());
    EXPECT_EQ(mapped->tracker().stats().peak_total, mapped_plan.total);
  }
  EXPECT_EQ(Values(*mapped), Values(*heap));
  // The frozen rows and scales moved from the heap to the file.
  EXPECT_GT(mapped_plan.mapped, 0);
  EXPECT_EQ(mapped_plan.total, heap_plan.total - mapped_plan.mapped);
  EXPECT_GT(file.value()->bytes(), mapped_plan.mapped);  // plus the header
}

TEST_F(FrozenFileTest, AFileChangedUnderneathStopsTrainingBeforeItsValuesAreUsed) {
  auto m = MaskedCnn();
  ASSERT_TRUE(WriteFrozenRows(*m, path()).ok());
  auto file = MappedFrozenRows::Open(path(), *m).value();
  TrainerOptions o;
  o.batch = 4;
  o.frozen = FrozenStorage::kInt8Mapped;
  o.mapped = file.get();
  const Batch b = RandomImages(4);
  Trainer t(m.get(), o);
  ASSERT_TRUE(t.Step(b.x.data(), b.y.data(), 4).status.ok());
  const std::vector<float> before = TrainableValues(*m);
  // Rewrite the file in place with other bytes (same size), as a careless updater would.
  {
    std::fstream f(path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-16, std::ios::end);
    f.write("0123456789abcdef", 16);
  }
  struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
  ASSERT_EQ(utimensat(AT_FDCWD, path().c_str(), times, 0), 0);
  const StepResult r = t.Step(b.x.data(), b.y.data(), 4);
  ASSERT_FALSE(r.status.ok());
  EXPECT_NE(r.status.message().find("changed underneath"), std::string::npos) << r.status.message();
  EXPECT_NE(r.status.message().find(path()), std::string::npos);
  EXPECT_EQ(TrainableValues(*m), before) << "nothing trained on the changed file";
  EXPECT_FALSE(t.Step(b.x.data(), b.y.data(), 4).status.ok()) << "and every later step refuses";
  EXPECT_FALSE(t.Evaluate(b.x.data(), b.y.data(), 4).status.ok());
}

TEST_F(FrozenFileTest, OpenRefusesAnotherModelAnotherMaskADamagedOrMissingFile) {
  auto m = MaskedCnn();
  ASSERT_TRUE(WriteFrozenRows(*m, path()).ok());
  auto other_model = MakeModel("lenet5", 1).value();
  other_model->SetAllTrainable(false);
  Status s = MappedFrozenRows::Open(path(), *other_model).status();
  EXPECT_NE(s.message().find("not 'lenet5'"), std::string::npos) << s.ToString();
  auto other_mask = MaskedCnn();
  other_mask->FindParam("7.weight")->SetRowsTrainable(200, 201, true);
  s = MappedFrozenRows::Open(path(), *other_mask).status();
  EXPECT_NE(s.message().find("another trainable mask"), std::string::npos) << s.ToString();
  {
    std::fstream f(path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-100, std::ios::end);
    f.put('\x55');
  }
  s = MappedFrozenRows::Open(path(), *m).status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_NE(s.message().find("checksum"), std::string::npos) << s.ToString();
  s = MappedFrozenRows::Open((dir_ / "none").string(), *m).status();
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
}

}  // namespace
}  // namespace ftte
