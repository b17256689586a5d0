#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "ftte/core/layers_lm.h"
#include "grad_check_test_util.h"

namespace ftte {
namespace {

MemoryPlan PlanOf(const Layer& layer, const Shape& in, LayerMode m) {
  MemoryPlan plan;
  layer.Plan(in, m, PlanContext{}, &plan);
  return plan;
}

// PyTorch's LSTM equations in double, one sequence at a time, zero initial state.
std::vector<float> RefLstm(LSTM& l, const std::vector<float>& x, int64_t n, int64_t steps,
                           int64_t in, int64_t h) {
  const float* wih = l.weight_ih().data();
  const float* whh = l.weight_hh().data();
  const float* bih = l.bias_ih().data();
  const float* bhh = l.bias_hh().data();
  auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  std::vector<float> y(static_cast<size_t>(n * steps * h));
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> hs(h, 0.0), cs(h, 0.0), pre(4 * h);
    for (int64_t s = 0; s < steps; ++s) {
      const float* xt = x.data() + (i * steps + s) * in;
      for (int64_t r = 0; r < 4 * h; ++r) {
        double a = bih[r] + static_cast<double>(bhh[r]);
        for (int64_t k = 0; k < in; ++k) a += static_cast<double>(wih[r * in + k]) * xt[k];
        for (int64_t k = 0; k < h; ++k) a += static_cast<double>(whh[r * h + k]) * hs[k];
        pre[r] = a;
      }
      for (int64_t j = 0; j < h; ++j) {
        const double ig = sig(pre[j]), fg = sig(pre[h + j]);
        const double gg = std::tanh(pre[2 * h + j]), og = sig(pre[3 * h + j]);
        cs[j] = fg * cs[j] + ig * gg;
        hs[j] = og * std::tanh(cs[j]);
        y[(i * steps + s) * h + j] = static_cast<float>(hs[j]);
      }
    }
  }
  return y;
}

LayerCheckOptions Options(LSTM& l, const Shape& in, int64_t h) {
  LayerCheckOptions opt;
  opt.reference = [&l, in, h](const std::vector<float>& x) {
    return RefLstm(l, x, in[0], in[1], in[2], h);
  };
  opt.step = 2e-3f;
  return opt;
}

TEST(LstmTest, DescribeShapesParamsAndInit) {
  MemoryTracker tracker;
  LSTM l(5, 3, &tracker);
  EXPECT_EQ(l.Describe(), "LSTM(5, 3)");
  EXPECT_EQ(l.OutputShape({2, 7, 5}).value(), (Shape{2, 7, 3}));
  EXPECT_FALSE(l.OutputShape({2, 7, 4}).ok());
  EXPECT_FALSE(l.OutputShape({2, 5}).ok());
  std::vector<std::string> names;
  for (Parameter* p : l.Params()) names.push_back(p->name());
  EXPECT_EQ(names, (std::vector<std::string>{"weight_ih", "weight_hh", "bias_ih", "bias_hh"}));
  EXPECT_EQ(l.weight_ih().shape(), (Shape{12, 5}));
  EXPECT_EQ(l.weight_hh().shape(), (Shape{12, 3}));
  Rng rng(1);
  l.InitParams(rng);
  const float bound = 1.0f / std::sqrt(3.0f);
  for (Parameter* p : l.Params()) {
    for (int64_t i = 0; i < p->numel(); ++i) ASSERT_LE(std::fabs(p->data()[i]), bound);
  }
  // Frozen weights become int8 under int8 storage, as a Linear's do.
  l.weight_hh().SetTrainable(false);
  EXPECT_TRUE(l.weight_hh().QuantizedUnder(FrozenStorage::kInt8));
  EXPECT_FALSE(l.bias_hh().QuantizedUnder(FrozenStorage::kInt8));
}

TEST(LstmTest, PlanKeepsGatesAndCellsOnlyForBackward) {
  MemoryTracker tracker;
  LSTM l(5, 3, &tracker);
  const Shape in{2, 7, 5};
  const MemoryPlan bw = PlanOf(l, in, kInputGradOnly);
  EXPECT_EQ(bw.Total(MemCategory::kActivations), FloatBytes(2 * 7 * (12 + 3)));
  EXPECT_EQ(bw.Total(MemCategory::kActGrads), FloatBytes(2 * 2 * 3));
  const MemoryPlan fw = PlanOf(l, in, kForwardOnly);
  EXPECT_EQ(fw.Total(MemCategory::kActivations), 0);
  EXPECT_EQ(fw.Total(MemCategory::kWorkspace), FloatBytes(2 * 7 * 12 + 2 * 3));
  EXPECT_TRUE(l.NeedsOutput(kInputGradOnly));
  EXPECT_FALSE(l.NeedsInput(kInputGradOnly));
  EXPECT_TRUE(l.NeedsInput(kParamGradOnly));
}

TEST(LstmTest, GradientsAndReferenceInEveryMode) {
  MemoryTracker tracker;
  const Shape in{3, 5, 4};
  LSTM l(4, 6, &tracker);
  Rng rng(2);
  l.InitParams(rng);
  LayerCheckOptions opt = Options(l, in, 6);
  for (LayerMode m : {kBoth, kInputGradOnly, kParamGradOnly, kForwardOnly}) {
    opt.mode = m;
    EXPECT_TRUE(CheckLayer(l, in, &tracker, opt));
  }
  // One step: no recurrent weight gradient (zeros).
  EXPECT_TRUE(CheckLayer(l, {2, 1, 4}, &tracker, Options(l, {2, 1, 4}, 6)));
}

TEST(LstmTest, MaskedGateRows) {
  MemoryTracker tracker;
  const Shape in{2, 4, 3};
  LSTM l(3, 5, &tracker);
  Rng rng(3);
  l.InitParams(rng);
  l.weight_ih().SetRowsTrainable(0, 7, false);
  l.weight_hh().SetRowsTrainable(5, 15, false);
  l.bias_ih().SetRowsTrainable(2, 4, false);
  l.bias_hh().SetTrainable(false);
  LayerCheckOptions opt = Options(l, in, 5);
  for (LayerMode m : {kBoth, kParamGradOnly}) {
    opt.mode = m;
    EXPECT_TRUE(CheckLayer(l, in, &tracker, opt));
  }
}

TEST(LstmTest, LargeEnoughForSeveralTasks) {
  // 70 hidden units: 3 recurrence blocks; 280 gate rows: 3 projection blocks; 300 inputs:
  // 2 input-gradient blocks.
  MemoryTracker tracker;
  const Shape in{2, 3, 300};
  LSTM l(300, 70, &tracker);
  Rng rng(4);
  l.InitParams(rng);
  l.weight_hh().SetRowsTrainable(100, 140, false);
  LayerCheckOptions opt = Options(l, in, 70);
  opt.max_probes = 40;
  opt.ref_atol = opt.ref_rtol = 1e-4;
  EXPECT_TRUE(CheckLayer(l, in, &tracker, opt));
}

TEST(LstmTest, CountFlopsFollowsModeAndMask) {
  MemoryTracker tracker;
  LSTM l(4, 8, &tracker);
  const Shape in{2, 5, 4};
  const Flops fw = l.CountFlops(in, kForwardOnly);
  EXPECT_GE(fw.forward, 2 * 10 * 32 * (4 + 8));
  EXPECT_EQ(fw.backward, 0);
  const Flops both = l.CountFlops(in, kBoth);
  l.weight_ih().SetTrainable(false);
  EXPECT_LT(l.CountFlops(in, kBoth).backward, both.backward);
}

}  // namespace
}  // namespace ftte
