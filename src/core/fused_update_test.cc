// The trainer's fused updates (gradients applied a block at a time, as backward makes them) and
// micro-batches (passes whose gradients are summed before the update), against plain references.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "ftte/core/mask.h"
#include "ftte/core/trainer.h"

namespace ftte {
namespace {

struct Batch {
  std::vector<float> x;
  std::vector<int32_t> y;
};

// Images of normal pixels, or token ids, with uniform labels (one per label position).
Batch RandomBatch(const Model& m, int64_t n, uint64_t seed) {
  Rng rng(seed);
  Batch b;
  const bool lm = m.sample_shape().size() == 1;
  b.x.resize(static_cast<size_t>(n * NumElements(m.sample_shape())));
  b.y.resize(static_cast<size_t>(n * m.label_positions()));
  for (float& v : b.x) {
    v = lm ? static_cast<float>(rng.Below(m.num_classes())) : static_cast<float>(rng.Normal());
  }
  for (int32_t& v : b.y) v = static_cast<int32_t>(rng.Below(m.num_classes()));
  return b;
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

// Every other block of rows of each matrix trains (frozen rows may then be int8), vectors too.
void MaskAlternateRows(Model& m) {
  for (Parameter* p : m.params()) {
    p->SetTrainable(false);
    if (p->shape().size() < 2) {
      p->SetTrainable(true);
      continue;
    }
    const int64_t block = std::max<int64_t>(1, p->rows() / 5);
    for (int64_t r = 0; r < p->rows(); r += 2 * block) {
      p->SetRowsTrainable(r, std::min(p->rows(), r + block), true);
    }
  }
}

const char* const kModels[] = {"mlp",
                               "lenet5",
                               "cnn",
                               "resnet8",
                               "lstm_lm:vocab=300,context=12",
                               "tiny_gpt:vocab=300,context=12",
                               "tiny_gpt_lora:vocab=300,context=12"};

// A layer that updated a weight before it was done reading it (dx after the commit) would train
// on a half-updated model; the result must equal computing the whole gradient first, then
// w - lr g for every trainable value.
TEST(FusedUpdateTest, EqualsUpdatingAfterTheWholeBackward) {
  for (const char* spec : kModels) {
    for (bool partial : {false, true}) {
      SCOPED_TRACE(std::string(spec) + (partial ? " alternate rows, int8 frozen" : " full"));
      auto model = MakeModel(spec, 3).value();
      if (partial) MaskAlternateRows(*model);
      TrainerOptions o;
      o.batch = 4;
      o.threads = 2;
      o.frozen = partial ? FrozenStorage::kInt8 : FrozenStorage::kFloat32;
      o.keep_gradients = true;
      o.tile_floats = kTileFloats;  // the same tiles (summation order) in both runs
      const Batch b = RandomBatch(*model, 4, 9);
      // The gradient at the start (lr 0: nothing moves).
      o.optimizer.lr = 0.0f;
      std::vector<float> before, grads;
      {
        Trainer t(model.get(), o);
        t.Step(b.x.data(), b.y.data(), 4);
        before = Values(*model);
        for (const Parameter* p : model->params()) {
          grads.insert(grads.end(), p->grad().data(), p->grad().data() + p->trainable_numel());
        }
      }
      for (Parameter* p : model->params()) p->SetStorage(FrozenStorage::kFloat32);
      // One fused step with lr 0.1 from the same values.
      o.optimizer.lr = 0.1f;
      o.keep_gradients = false;
      {
        Trainer t(model.get(), o);
        t.Step(b.x.data(), b.y.data(), 4);
      }
      const std::vector<float> after = Values(*model);
      size_t at = 0, g = 0, checked = 0;
      for (const Parameter* p : model->params()) {
        const int64_t rs = p->row_size();
        for (const RowRun& run : p->runs()) {
          for (int64_t r = run.begin; r < run.end; ++r) {
            for (int64_t j = 0; j < rs; ++j, ++g) {
              const float w = before[at + r * rs + j];
              const float want = w - 0.1f * (grads[g] + 0.0f * w);
              ASSERT_EQ(after[at + r * rs + j], want) << p->name() << " row " << r << " col " << j;
              ++checked;
            }
          }
        }
        at += static_cast<size_t>(p->numel());
      }
      EXPECT_EQ(checked, grads.size());
    }
  }
}

// Passes of a micro-batch sum to the whole batch's gradient: the same training, up to float
// rounding, for the optimizer that sums in its momentum buffer and for those that need an
// accumulation buffer, with an uneven last pass.
TEST(MicroBatchTest, PassesTrainLikeTheWholeBatch) {
  OptimizerConfig momentum, plain, adam;
  momentum.momentum = 0.9f;
  momentum.weight_decay = 1e-3f;
  plain.lr = 0.05f;
  adam.kind = OptimizerConfig::Kind::kAdam;
  adam.lr = 1e-3f;
  for (const char* spec : {"cnn", "tiny_gpt:vocab=300,context=12"}) {
    for (const OptimizerConfig& opt : {momentum, plain, adam}) {
      for (int64_t micro : {4, 5}) {
        SCOPED_TRACE(std::string(spec) + " micro " + std::to_string(micro) + " optimizer " +
                     std::to_string(static_cast<int>(opt.kind)) + " momentum " +
                     std::to_string(opt.momentum));
        std::vector<float> result[2];
        float loss[2] = {};
        for (int k = 0; k < 2; ++k) {
          auto model = MakeModel(spec, 4).value();
          MaskAlternateRows(*model);
          TrainerOptions o;
          o.batch = 12;
          o.micro_batch = k == 0 ? 0 : micro;
          o.optimizer = opt;
          o.frozen = FrozenStorage::kInt8;
          const Batch b = RandomBatch(*model, 12, 5);
          Trainer t(model.get(), o);
          for (int s = 0; s < 3; ++s) loss[k] = t.Step(b.x.data(), b.y.data(), 12).loss;
          result[k] = Values(*model);
        }
        EXPECT_NEAR(loss[1], loss[0], 1e-5 * std::fabs(loss[0]));
        ASSERT_EQ(result[0].size(), result[1].size());
        if (opt.kind == OptimizerConfig::Kind::kAdam) {
          // Adam divides by the root of the squared gradient, so a value whose gradient is
          // rounding noise may move by up to lr a step either way; on average nothing differs.
          double sum = 0;
          for (size_t i = 0; i < result[0].size(); ++i) {
            const double d = std::fabs(result[1][i] - result[0][i]);
            ASSERT_LE(d, 2 * 3 * opt.lr) << i;
            sum += d;
          }
          EXPECT_LT(sum / static_cast<double>(result[0].size()), 1e-6);
          continue;
        }
        for (size_t i = 0; i < result[0].size(); ++i) {
          ASSERT_NEAR(result[1][i], result[0][i], 2e-5 * (1 + std::fabs(result[0][i]))) << i;
        }
      }
    }
  }
}

// Smaller passes hold less: the batch, logits, activations and their gradients shrink.
TEST(MicroBatchTest, SmallerPassesPlanLessAndTheAccumulatorOnlyWhenNeeded) {
  auto model = MakeModel("cnn", 1).value();
  TrainerOptions o;
  o.optimizer.momentum = 0.9f;
  const int64_t whole = PredictPeak(*model, o).total;
  o.micro_batch = 4;
  const MemoryPrediction small = PredictPeak(*model, o);
  EXPECT_LT(small.total, whole);
  const auto grads = static_cast<int>(MemCategory::kGradients);
  EXPECT_EQ(small.by_category[grads], 0) << "momentum SGD sums passes in its buffer";
  o.optimizer.momentum = 0.0f;
  EXPECT_EQ(PredictPeak(*model, o).by_category[grads], FloatBytes(model->num_trainable()))
      << "plain SGD needs a buffer to sum passes in";
}

}  // namespace
}  // namespace ftte
