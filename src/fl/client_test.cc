#include "ftte/fl/client.h"

#include <gtest/gtest.h>

#include "ftte/core/mask.h"
#include "ftte/data/synthetic.h"

namespace ftte::fl {
namespace {

using data::SyntheticImages;

TEST(ClientTest, DeltaCoversOnlyTheMaskAndIsDeterministic) {
  auto global = MakeModel("lenet5", 3).value();
  ASSERT_TRUE(ApplyNamedMask(*global, "last").ok());
  const Mask mask = Mask::FromModel(*global);
  const std::vector<float> w = GetWeights(*global);
  data::ImageDataset d = SyntheticImages(50, 1);
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < 40; ++i) idx.push_back(i);
  ClientConfig cfg;
  cfg.batch = 8;
  cfg.optimizer.lr = 0.1f;
  auto a = ClientTrainer::Create("lenet5").value();
  auto b = ClientTrainer::Create("lenet5").value();
  ClientResult r1 = a->Train(w, mask, d, idx, cfg, 7);
  ClientResult r2 = b->Train(w, mask, d, idx, cfg, 7);
  EXPECT_EQ(r1.update.delta, r2.update.delta);
  EXPECT_EQ(static_cast<int64_t>(r1.update.delta.size()), 84 * 10 + 10);
  EXPECT_EQ(r1.steps, 5);
  EXPECT_EQ(r1.update.num_samples, 40);
  EXPECT_GT(r1.update.variance, 0.0);
  // Reusing the trainer for another round from the same weights gives the same update.
  ClientResult r3 = a->Train(w, mask, d, idx, cfg, 7);
  EXPECT_EQ(r1.update.delta, r3.update.delta);
  // The measured peak equals the prediction.
  EXPECT_EQ(r1.peak_bytes, PredictClientPeak(*global, mask, cfg));
}

TEST(ClientTest, Int8FrozenStorageStillLearns) {
  auto global = MakeModel("cnn", 3).value();
  ASSERT_TRUE(ApplyNamedMask(*global, "last").ok());
  const Mask mask = Mask::FromModel(*global);
  data::ImageDataset d = SyntheticImages(64, 2);
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < 64; ++i) idx.push_back(i);
  ClientConfig cfg;
  cfg.local_steps = 20;
  cfg.batch = 16;
  cfg.optimizer.lr = 0.05f;
  cfg.frozen = FrozenStorage::kInt8;
  auto c = ClientTrainer::Create("cnn").value();
  ClientResult r = c->Train(GetWeights(*global), mask, d, idx, cfg, 1);
  EXPECT_EQ(r.steps, 20);
  EXPECT_LT(r.peak_bytes, PredictClientPeak(*global, mask, ClientConfig{}));
  EXPECT_EQ(r.peak_bytes, PredictClientPeak(*global, mask, cfg));
}

}  // namespace
}  // namespace ftte::fl
