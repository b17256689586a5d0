// Language models in the trainer: per-position labels, ignored positions, the planner against
// the accounting allocator, determinism, and model specs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <tuple>

#include "ftte/core/layers_lm.h"
#include "ftte/core/mask.h"
#include "ftte/core/sequential.h"
#include "ftte/core/trainer.h"

namespace ftte {
namespace {

struct Batch {
  std::vector<float> x;
  std::vector<int32_t> y;
};

// Token ids and next-token labels (any id; the model does not know the rule).
Batch RandomTokens(const Model& m, int64_t n, uint64_t seed) {
  Rng rng(seed);
  Batch b;
  b.x.resize(static_cast<size_t>(n * NumElements(m.sample_shape())));
  b.y.resize(static_cast<size_t>(n * m.label_positions()));
  for (float& v : b.x) v = static_cast<float>(rng.Below(m.num_classes()));
  for (int32_t& v : b.y) v = static_cast<int32_t>(rng.Below(m.num_classes()));
  return b;
}

std::vector<float> Snapshot(const Model& m) {
  std::vector<float> all;
  for (const Parameter* p : m.params()) {
    std::vector<float> rows(static_cast<size_t>(p->numel()));
    p->ReadRows(0, p->rows(), rows.data());
    all.insert(all.end(), rows.begin(), rows.end());
  }
  return all;
}

const char* const kSmallLstm = "lstm_lm:vocab=300,context=12";
const char* const kSmallGpt = "tiny_gpt:vocab=300,context=12";
const char* const kSmallGptLora = "tiny_gpt_lora:vocab=300,context=12";
const char* const kSmallGptFamily = "gpt:vocab=300,context=12,layers=3,width=32,heads=2,rank=2";
const char* const kSmallGptTied = "gpt:vocab=300,context=12,layers=2,width=32,heads=2,tie=1";

using PlanCase = std::tuple<std::string, std::string, FrozenStorage, int>;
class LmPlannerTest : public ::testing::TestWithParam<PlanCase> {};

TEST_P(LmPlannerTest, PredictionEqualsMeasurement) {
  const auto& [spec, mask, frozen, threads] = GetParam();
  auto model = MakeModel(spec, 7).value();
  if (mask != "default") {
    ASSERT_TRUE(ApplyNamedMask(*model, mask).ok());
  }
  TrainerOptions o;
  o.batch = 6;
  o.threads = threads;
  o.frozen = frozen;
  o.optimizer.momentum = 0.9f;
  const MemoryPrediction predicted = PredictPeak(*model, o);
  Batch b = RandomTokens(*model, o.batch, 1);
  Trainer t(model.get(), o);
  t.Step(b.x.data(), b.y.data(), o.batch);
  const int64_t allocations = model->tracker().stats().allocations;
  t.Step(b.x.data(), b.y.data(), o.batch);
  t.Step(b.x.data(), b.y.data(), 5);  // a short last batch too
  const MemoryStats s = model->tracker().stats();
  EXPECT_EQ(s.allocations, allocations) << "a warmed-up step allocated";
  EXPECT_EQ(s.peak_total, predicted.total);
  for (int c = 0; c < kNumMemCategories; ++c) {
    EXPECT_EQ(s.at_peak[c], predicted.by_category[c])
        << MemCategoryName(static_cast<MemCategory>(c));
  }
}

INSTANTIATE_TEST_SUITE_P(Models, LmPlannerTest,
                         ::testing::Combine(::testing::Values(kSmallLstm, kSmallGpt, kSmallGptLora,
                                                              kSmallGptFamily, kSmallGptTied),
                                            ::testing::Values("default", "full", "last", "bias"),
                                            ::testing::Values(FrozenStorage::kFloat32,
                                                              FrozenStorage::kInt8),
                                            ::testing::Values(1, 2)));

TEST(LmSelectionTest, BudgetMaskPredictionEqualsMeasurement) {
  for (const char* spec : {kSmallLstm, kSmallGpt, kSmallGptLora, kSmallGptFamily, kSmallGptTied}) {
    SCOPED_TRACE(spec);
    auto model = MakeModel(spec, 1).value();
    TrainerOptions o;
    o.batch = 4;
    o.threads = 2;
    model->SetAllTrainable(true);
    const int64_t full = PredictPeak(*model, o).total;
    Batch b = RandomTokens(*model, 8, 3);
    RowImportance imp = ComputeImportance(*model, b.x.data(), b.y.data(), 8, o, 2);
    o.frozen = FrozenStorage::kInt8;
    model->SetAllTrainable(false);
    const int64_t frozen = PredictPeak(*model, o).total;
    auto sel = SelectUnderBudget(*model, imp, o, (frozen + full) / 2);
    ASSERT_TRUE(sel.ok()) << sel.status().ToString();
    EXPECT_EQ(sel->predicted_bytes, PredictPeak(*model, o).total);
    Trainer t(model.get(), o);
    t.Step(b.x.data(), b.y.data(), 4);
    t.Step(b.x.data(), b.y.data(), 4);
    EXPECT_EQ(model->tracker().stats().peak_total, sel->predicted_bytes);
  }
}

int64_t PlannedBytes(const MemoryPlan& plan, const std::string& what) {
  for (const BufferRequest& r : plan.requests) {
    if (r.what == what) return r.bytes;
  }
  return -1;
}

// A Linear head does not read its output in backward, so the logit gradients overwrite the
// logits: a language model's step holds one [tokens, vocab] buffer, not two. A last layer that
// needs its output (an LSTM) keeps them apart.
TEST(LmTrainerTest, LogitGradientsOverwriteTheLogitsOfALinearHead) {
  auto model = MakeModel(kSmallLstm, 1).value();
  TrainerOptions o;
  o.batch = 6;
  const MemoryPlan plan = PlanTrainingStep(*model, o);
  EXPECT_EQ(PlannedBytes(plan, "logits"), 6 * 12 * 300 * 4);
  EXPECT_EQ(PlannedBytes(plan, "logit gradients"), 0);

  auto tracker = std::make_unique<MemoryTracker>();
  auto net = std::make_unique<Sequential>();
  net->Emplace<LSTM>(4, 3, tracker.get());
  Model lstm_head("lstm_head", Shape{1, 4}, 3, std::move(tracker), std::move(net));
  lstm_head.Init(1);
  const MemoryPlan apart = PlanTrainingStep(lstm_head, o);
  EXPECT_EQ(PlannedBytes(apart, "logit gradients"), 6 * 3 * 4);
  // Both ways the planner is exact.
  for (Model* m : {model.get(), &lstm_head}) {
    const int64_t predicted = PredictPeak(*m, o).total;
    Batch b = RandomTokens(*m, 6, 2);
    Trainer t(m, o);
    t.Step(b.x.data(), b.y.data(), 6);
    EXPECT_EQ(m->tracker().stats().peak_total, predicted) << m->name();
  }
}

// tie=1: the head's weight is the embedding's. With the same values, the tied model's gradient
// of that matrix is the untied model's embedding gradient plus its head-weight gradient, every
// other gradient is the same, and the matrix is stored (and listed) once.
TEST(LmTrainerTest, TiedHeadGradientIsTheSumOfBothUses) {
  const std::string base = "gpt:vocab=40,context=6,layers=1,width=16,heads=2";
  auto tied = MakeModel(base + ",tie=1", 3).value();
  auto untied = MakeModel(base, 3).value();
  EXPECT_EQ(tied->name(), base + ",rank=0,tie=1");
  EXPECT_EQ(untied->name(), base + ",rank=0");
  ASSERT_EQ(untied->params().size(), tied->params().size() + 1);
  Parameter* head = nullptr;  // the untied head's weight: the one name the tied model lacks
  for (Parameter* u : untied->params()) {
    const Parameter* match = nullptr;
    for (const Parameter* t : tied->params()) {
      if (t->name() == u->name()) match = t;
    }
    if (match == nullptr) {
      head = u;
      continue;
    }
    ASSERT_EQ(match->numel(), u->numel()) << u->name();
    std::memcpy(u->data(), match->data(), sizeof(float) * u->numel());
  }
  ASSERT_NE(head, nullptr);
  const Parameter* embedding = tied->params().front();
  ASSERT_EQ(head->numel(), embedding->numel());
  std::memcpy(head->data(), embedding->data(), sizeof(float) * head->numel());

  TrainerOptions o;
  o.batch = 3;
  o.keep_gradients = true;
  o.optimizer.lr = 0;  // gradients only
  const Batch b = RandomTokens(*tied, 3, 5);
  Trainer tt(tied.get(), o), tu(untied.get(), o);
  const StepResult rt = tt.Step(b.x.data(), b.y.data(), 3);
  const StepResult ru = tu.Step(b.x.data(), b.y.data(), 3);
  ASSERT_TRUE(rt.status.ok() && ru.status.ok());
  EXPECT_NEAR(rt.loss, ru.loss, 1e-6 * std::abs(ru.loss));
  for (const Parameter* t : tied->params()) {
    const Parameter* u = nullptr;
    for (const Parameter* q : untied->params()) {
      if (q->name() == t->name()) u = q;
    }
    ASSERT_NE(u, nullptr);
    for (int64_t i = 0; i < t->numel(); ++i) {
      const float want = u->grad().data()[i] + (t == embedding ? head->grad().data()[i] : 0.0f);
      ASSERT_NEAR(t->grad().data()[i], want, 1e-5f + 1e-4f * std::abs(want))
          << t->name() << " value " << i;
    }
  }
}

// Frozen LSTM weights stored int8: a step computes what float32 storage computes on the
// dequantised values (the int8 rows are read a tile at a time, never held as float32).
TEST(LmTrainerTest, Int8FrozenLstmComputesWithItsDequantisedValues) {
  for (const char* mask : {"last", "budget-like"}) {
    SCOPED_TRACE(mask);
    auto q = MakeModel(kSmallLstm, 4).value();
    auto f = MakeModel(kSmallLstm, 4).value();
    for (Model* m : {q.get(), f.get()}) {
      if (std::string(mask) == "last") {
        ASSERT_TRUE(ApplyNamedMask(*m, "last").ok());
      } else {  // every other row of every matrix trainable: mixed float32 / int8 segments
        for (Parameter* p : m->params()) {
          for (int64_t r = 0; r < p->rows(); ++r) p->SetRowsTrainable(r, r + 1, r % 2 == 0);
        }
      }
    }
    TrainerOptions o;
    o.batch = 4;
    o.threads = 2;
    o.keep_gradients = true;
    o.frozen = FrozenStorage::kInt8;
    Trainer tq(q.get(), o);
    ASSERT_TRUE(q->params()[1]->quantized());          // the LSTM's weight_ih
    for (size_t k = 0; k < q->params().size(); ++k) {  // f := q's (dequantised) values
      Parameter* dst = f->params()[k];
      q->params()[k]->ReadRows(0, dst->rows(), dst->data());
    }
    o.frozen = FrozenStorage::kFloat32;
    Trainer tf(f.get(), o);
    const Batch b = RandomTokens(*q, 4, 8);
    const StepResult rq = tq.Step(b.x.data(), b.y.data(), 4);
    const StepResult rf = tf.Step(b.x.data(), b.y.data(), 4);
    EXPECT_NEAR(rq.loss, rf.loss, 1e-5 * std::abs(rf.loss));
    for (size_t k = 0; k < q->params().size(); ++k) {
      const Parameter* a = q->params()[k];
      const Parameter* c = f->params()[k];
      const int64_t n = a->trainable_rows() * a->row_size();
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_NEAR(a->grad().data()[i], c->grad().data()[i],
                    1e-5f + 1e-3f * std::abs(c->grad().data()[i]))
            << a->name() << " " << i;
      }
    }
  }
}

TEST(LmTrainerTest, LossIsTheMeanOverCountedPositions) {
  auto model = MakeModel(kSmallGpt, 2).value();
  TrainerOptions o;
  o.batch = 2;
  Trainer t(model.get(), o);
  Batch b = RandomTokens(*model, 2, 4);
  const int64_t rows = 2 * model->label_positions();
  ASSERT_EQ(model->label_positions(), 12);
  // The loss of each position alone (all others ignored).
  std::vector<double> single(static_cast<size_t>(rows));
  for (int64_t j = 0; j < rows; ++j) {
    std::vector<int32_t> y(static_cast<size_t>(rows), -1);
    y[j] = b.y[j];
    const StepResult r = t.Evaluate(b.x.data(), y.data(), 2);
    ASSERT_EQ(r.positions, 1);
    single[j] = r.loss;
  }
  // Every third position ignored (padding): the mean of the others.
  std::vector<int32_t> y = b.y;
  double sum = 0;
  int64_t counted = 0;
  for (int64_t j = 0; j < rows; ++j) {
    if (j % 3 == 0) {
      y[j] = -1;
    } else {
      sum += single[j];
      ++counted;
    }
  }
  const StepResult r = t.Evaluate(b.x.data(), y.data(), 2);
  EXPECT_EQ(r.positions, counted);
  EXPECT_NEAR(r.loss, sum / counted, 1e-5);
  EXPECT_LE(r.correct, r.correct_top3);
  EXPECT_LE(r.correct_top3, r.positions);
  EXPECT_DOUBLE_EQ(r.perplexity(), std::exp(static_cast<double>(r.loss)));
  // The training step reports the same loss as evaluation (no dropout).
  EXPECT_FLOAT_EQ(t.Step(b.x.data(), y.data(), 2).loss, r.loss);
}

TEST(LmTrainerTest, AllIgnoredChangesNothing) {
  auto model = MakeModel(kSmallLstm, 3).value();
  TrainerOptions o;
  o.batch = 3;
  o.optimizer.lr = 0.5f;
  Batch b = RandomTokens(*model, 3, 5);
  std::fill(b.y.begin(), b.y.end(), -1);
  const std::vector<float> before = Snapshot(*model);
  Trainer t(model.get(), o);
  const StepResult r = t.Step(b.x.data(), b.y.data(), 3);
  EXPECT_EQ(r.positions, 0);
  EXPECT_EQ(r.loss, 0.0f);
  EXPECT_EQ(r.correct, 0);
  EXPECT_EQ(Snapshot(*model), before);
}

TEST(LmTrainerTest, TopThreeCountsEveryPositionOfAThreeWordVocabulary) {
  auto model = MakeModel("lstm_lm:vocab=3,context=5", 1).value();
  TrainerOptions o;
  o.batch = 4;
  Trainer t(model.get(), o);
  Batch b = RandomTokens(*model, 4, 6);
  b.y[2] = -1;
  const StepResult r = t.Evaluate(b.x.data(), b.y.data(), 4);
  EXPECT_EQ(r.positions, 4 * 5 - 1);
  EXPECT_EQ(r.correct_top3, r.positions);
  EXPECT_LT(r.correct, r.positions);
}

// With an unscored class (a keyboard's <unk>): its positions count for the loss only, and its
// logit is passed over when ranking, as if the vocabulary did not have it.
TEST(LmTrainerTest, UnscoredClassIsNeverARightAnswer) {
  auto model = MakeModel("lstm_lm:vocab=4,context=6", 3).value();
  TrainerOptions o;
  o.batch = 1;
  Batch b = RandomTokens(*model, 1, 9);
  for (int64_t j = 0; j < 6; j += 2) b.y[j] = 0;  // half the targets are the unscored class
  Trainer plain(model.get(), o);
  const StepResult all = plain.Evaluate(b.x.data(), b.y.data(), 1);
  const std::vector<float> logits(plain.logits(), plain.logits() + 6 * 4);
  o.unscored_class = 0;
  Trainer t(model.get(), o);
  const StepResult r = t.Evaluate(b.x.data(), b.y.data(), 1);
  EXPECT_EQ(r.positions, 6);
  EXPECT_EQ(r.scored, 3);
  EXPECT_EQ(all.scored, 6);
  EXPECT_FLOAT_EQ(r.loss, all.loss);
  int64_t correct = 0, top3 = 0;
  for (int64_t j = 1; j < 6; j += 2) {
    const float* z = logits.data() + j * 4;
    const int32_t y = b.y[j];
    int ahead = 0;  // among classes 1..3 only
    for (int32_t c = 1; c < 4; ++c) ahead += z[c] > z[y] || (z[c] == z[y] && c < y);
    correct += ahead == 0;
    top3 += ahead < 3;
  }
  EXPECT_EQ(r.correct, correct);
  EXPECT_EQ(r.correct_top3, top3);
  EXPECT_EQ(r.correct_top3, 3);  // three candidates left: every scored position is in the top 3
}

TEST(LmTrainerTest, SameResultForAnyThreadCount) {
  // The last spec has batch x context x vocab logits large enough for the loss to be split
  // into several tasks.
  for (const char* spec : {kSmallLstm, kSmallGpt, kSmallGptLora, "lstm_lm:vocab=3000,context=24"}) {
    std::vector<float> results[2];
    for (int threads : {1, 2}) {
      auto model = MakeModel(spec, 5).value();
      TrainerOptions o;
      o.batch = 5;
      o.threads = threads;
      o.optimizer.momentum = 0.9f;
      Batch b = RandomTokens(*model, 5, 9);
      Trainer t(model.get(), o);
      for (int i = 0; i < 2; ++i) t.Step(b.x.data(), b.y.data(), 5);
      results[threads - 1] = Snapshot(*model);
    }
    ASSERT_EQ(results[0].size(), results[1].size());
    EXPECT_EQ(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)),
              0)
        << spec;
  }
}

TEST(LmTrainerTest, LossFallsOnAFixedBatch) {
  for (const char* spec : {kSmallLstm, kSmallGpt, kSmallGptLora}) {
    auto model = MakeModel(spec, 1).value();
    TrainerOptions o;
    o.batch = 4;
    o.optimizer.kind = OptimizerConfig::Kind::kAdam;
    o.optimizer.lr = 3e-3f;
    Batch b = RandomTokens(*model, 4, 4);
    Trainer t(model.get(), o);
    const float first = t.Step(b.x.data(), b.y.data(), 4).loss;
    float last = first;
    for (int i = 0; i < 40; ++i) last = t.Step(b.x.data(), b.y.data(), 4).loss;
    EXPECT_LT(last, 0.7f * first) << spec;
  }
}

TEST(LmZooTest, SpecsShapesAndNames) {
  auto lstm = MakeModel("lstm_lm").value();
  EXPECT_EQ(lstm->name(), "lstm_lm:vocab=10000,context=32");
  EXPECT_EQ(lstm->sample_shape(), (Shape{32}));
  EXPECT_EQ(lstm->num_classes(), 10000);
  EXPECT_EQ(lstm->label_positions(), 32);
  EXPECT_EQ(lstm->FindParam("1.weight_hh")->shape(), (Shape{1024, 256}));
  auto gpt = MakeModel("tiny_gpt:context=16,vocab=500").value();
  EXPECT_EQ(gpt->name(), "tiny_gpt:vocab=500,context=16");
  EXPECT_EQ(gpt->FindParam("1.weight")->shape(), (Shape{16, 128}));
  EXPECT_EQ(gpt->FindParam("2.body.1.qkv.weight")->shape(), (Shape{384, 128}));
  EXPECT_EQ(gpt->FindParam("3.body.1.weight")->shape(), (Shape{512, 128}));
  EXPECT_EQ(gpt->FindParam("7.weight")->shape(), (Shape{500, 128}));
  EXPECT_EQ(MakeModel("tiny_gpt").value()->sample_shape(), (Shape{64}));
  auto lora = MakeModel("tiny_gpt_lora:vocab=500,rank=4").value();
  EXPECT_EQ(lora->name(), "tiny_gpt_lora:vocab=500,context=64,rank=4");
  EXPECT_EQ(lora->FindParam("2.body.1.proj.lora_a")->shape(), (Shape{4, 128}));
  EXPECT_EQ(lora->FindParam("5.body.3.lora_b")->shape(), (Shape{128, 4}));
  // Only the adapters train by default: 2 blocks x (qkv, proj, fc1, fc2) x (A, B).
  int64_t trainable = 0;
  for (const Parameter* p : lora->params()) {
    trainable += p->any_trainable();
    EXPECT_EQ(p->any_trainable(), p->local_name().rfind("lora_", 0) == 0) << p->name();
  }
  EXPECT_EQ(trainable, 16);
  ASSERT_TRUE(ApplyNamedMask(*gpt, "full").ok());
  EXPECT_FALSE(ApplyNamedMask(*gpt, "lora").ok());
}

// The gpt family by size: its tiny_gpt-sized member is tiny_gpt (same names, shapes and seeded
// values), rank=R is tiny_gpt_lora, and the parameter count follows the shape.
TEST(LmZooTest, GptFamilyIsTinyGptBySize) {
  auto gpt = MakeModel("gpt:vocab=500,context=64,layers=2,width=128,heads=4", 3).value();
  EXPECT_EQ(gpt->name(), "gpt:vocab=500,context=64,layers=2,width=128,heads=4,rank=0");
  auto tiny = MakeModel("tiny_gpt:vocab=500,context=64", 3).value();
  ASSERT_EQ(gpt->params().size(), tiny->params().size());
  for (size_t i = 0; i < gpt->params().size(); ++i) {
    const Parameter& a = *gpt->params()[i];
    const Parameter& b = *tiny->params()[i];
    ASSERT_EQ(a.name(), b.name());
    ASSERT_EQ(a.shape(), b.shape()) << a.name();
    EXPECT_TRUE(std::equal(a.data(), a.data() + a.numel(), b.data())) << a.name();
    EXPECT_EQ(a.any_trainable(), b.any_trainable()) << a.name();
  }
  auto lora = MakeModel("gpt:vocab=500,context=64,layers=2,width=128,heads=4,rank=4", 3).value();
  auto tiny_lora = MakeModel("tiny_gpt_lora:vocab=500,context=64,rank=4", 3).value();
  ASSERT_EQ(lora->params().size(), tiny_lora->params().size());
  for (size_t i = 0; i < lora->params().size(); ++i) {
    EXPECT_EQ(lora->params()[i]->name(), tiny_lora->params()[i]->name());
    EXPECT_EQ(lora->params()[i]->any_trainable(), tiny_lora->params()[i]->any_trainable());
  }

  const int64_t v = 1000, t = 32, l = 3, c = 64;
  auto sized = MakeModel("gpt:vocab=1000,context=32,layers=3,width=64,heads=2").value();
  const int64_t block = 12 * c * c + 13 * c;  // LN, qkv, proj, LN, fc1, fc2 with biases
  EXPECT_EQ(sized->num_params(), v * c + t * c + l * block + 2 * c + v * c + v);
  EXPECT_EQ(sized->FindParam("2.body.1.qkv.weight")->shape(), (Shape{192, 64}));
  EXPECT_EQ(sized->FindParam("7.body.3.weight")->shape(), (Shape{64, 256}));
  EXPECT_EQ(sized->FindParam("9.weight")->shape(), (Shape{1000, 64}));
  EXPECT_EQ(sized->sample_shape(), (Shape{32}));
  EXPECT_EQ(MakeModel("gpt:vocab=50").value()->name(),
            "gpt:vocab=50,context=128,layers=4,width=256,heads=4,rank=0");
}

TEST(LmZooTest, TiedGptHasOneEmbeddingMatrixFewer) {
  const std::string spec = "gpt:vocab=500,context=64,layers=2,width=128,heads=4";
  auto tied = MakeModel(spec + ",tie=1").value();
  auto untied = MakeModel(spec + ",tie=0").value();
  EXPECT_EQ(untied->name(), spec + ",rank=0");  // tie=0 is the default, left out of the name
  EXPECT_EQ(tied->num_params(), untied->num_params() - 500 * 128);
  EXPECT_NE(tied->net().Describe().find("tied to the embedding"), std::string::npos);
  EXPECT_FALSE(MakeModel(spec + ",tie=2").ok());
}

TEST(LmZooTest, GptSpecErrorsNameTheFix) {
  auto message = [](const std::string& spec) {
    auto r = MakeModel(spec);
    return r.ok() ? std::string("(ok)") : r.status().message();
  };
  EXPECT_NE(message("gpt:width=100,heads=3").find("width=100 is not a multiple of heads=3"),
            std::string::npos);
  EXPECT_NE(message("gpt:width=16,heads=2,rank=32").find("rank=32 is above width=16"),
            std::string::npos);
  EXPECT_NE(message("gpt:depth=2").find("known: vocab, context, layers, width, heads, rank"),
            std::string::npos);
  EXPECT_NE(message("gpt:layers=0").find("layers=0 is not an integer in [1, 64]"),
            std::string::npos);
}

TEST(LmZooTest, SpecErrorsNameTheProblem) {
  auto message = [](const std::string& spec) {
    auto r = MakeModel(spec);
    return r.ok() ? std::string("(ok)") : r.status().message();
  };
  EXPECT_NE(message("lstm_lm:vocab=10,depth=3")
                .find("unknown option 'depth'; known: vocab, "
                      "context"),
            std::string::npos);
  EXPECT_NE(message("tiny_gpt:vocab=abc").find("vocab=abc is not an integer in [2, 16777216]"),
            std::string::npos);
  EXPECT_NE(message("tiny_gpt:context=0").find("context=0"), std::string::npos);
  EXPECT_NE(message("tiny_gpt:vocab=10x").find("vocab=10x"), std::string::npos);
  EXPECT_NE(message("tiny_gpt:vocab").find("expected key=value"), std::string::npos);
  EXPECT_NE(message("tiny_gpt:").find("expected key=value"), std::string::npos);
  EXPECT_NE(message("tiny_gpt:vocab=5,vocab=6").find("given twice"), std::string::npos);
  EXPECT_NE(message("tiny_gpt:rank=4").find("unknown option 'rank'"), std::string::npos);
  EXPECT_NE(message("mlp:vocab=5").find("takes no options"), std::string::npos);
  EXPECT_NE(message("gpt5:vocab=5").find("unknown model 'gpt5'"), std::string::npos);
}

}  // namespace
}  // namespace ftte
