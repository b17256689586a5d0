#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "ftte/core/layers_lm.h"
#include "grad_check_test_util.h"

namespace ftte {
namespace {

void Randomize(Parameter& p, uint64_t seed, float lo, float hi) {
  Rng rng(seed);
  for (int64_t i = 0; i < p.numel(); ++i) {
    p.data()[i] = lo + static_cast<float>(rng.Uniform()) * (hi - lo);
  }
}

// y = x W^T + b + scale (x A^T) B^T, in double.
std::vector<float> RefLora(LoraLinear& l, const std::vector<float>& x, int64_t in, int64_t out,
                           int64_t r) {
  const float* w = l.base().weight().data();
  const float* b = l.base().bias()->data();
  const float* a = l.lora_a().data();
  const float* bb = l.lora_b().data();
  const auto rows = static_cast<int64_t>(x.size()) / in;
  std::vector<float> y(static_cast<size_t>(rows * out));
  for (int64_t i = 0; i < rows; ++i) {
    std::vector<double> u(static_cast<size_t>(r), 0.0);
    for (int64_t k = 0; k < r; ++k) {
      for (int64_t j = 0; j < in; ++j) u[k] += static_cast<double>(a[k * in + j]) * x[i * in + j];
    }
    for (int64_t o = 0; o < out; ++o) {
      double acc = b[o];
      for (int64_t j = 0; j < in; ++j) acc += static_cast<double>(w[o * in + j]) * x[i * in + j];
      for (int64_t k = 0; k < r; ++k) acc += l.scale() * bb[o * r + k] * u[k];
      y[i * out + o] = static_cast<float>(acc);
    }
  }
  return y;
}

TEST(LoraLinearTest, DescribeNamesAndInit) {
  MemoryTracker tracker;
  LoraLinear l(6, 5, true, LoraOptions{3, 6}, &tracker);
  EXPECT_EQ(l.Describe(), "LoraLinear(6, 5, rank=3, alpha=6)");
  EXPECT_FLOAT_EQ(l.scale(), 2.0f);
  std::vector<std::string> names;
  for (Parameter* p : l.Params()) names.push_back(p->name());
  EXPECT_EQ(names, (std::vector<std::string>{"weight", "bias", "lora_a", "lora_b"}));
  EXPECT_EQ(l.lora_a().shape(), (Shape{3, 6}));
  EXPECT_EQ(l.lora_b().shape(), (Shape{5, 3}));
  Rng rng(1);
  l.InitParams(rng);
  bool nonzero = false;
  for (int64_t i = 0; i < l.lora_a().numel(); ++i) {
    ASSERT_LE(std::fabs(l.lora_a().data()[i]), 1.0f / std::sqrt(6.0f));
    nonzero = nonzero || l.lora_a().data()[i] != 0.0f;
  }
  EXPECT_TRUE(nonzero);
  for (int64_t i = 0; i < l.lora_b().numel(); ++i) EXPECT_EQ(l.lora_b().data()[i], 0.0f);
  // With B = 0 the layer is its base Linear.
  std::vector<float> x(2 * 6);
  FillUniform(rng, x);
  EXPECT_EQ(RunForward(l, {2, 6}, x, &tracker), RunForward(l.base(), {2, 6}, x, &tracker));
}

TEST(LoraLinearTest, GradientsAndReferenceInEveryMode) {
  MemoryTracker tracker;
  for (const Shape& in : {Shape{4, 6}, Shape{2, 3, 6}}) {
    LoraLinear l(6, 5, true, LoraOptions{3, 6}, &tracker);
    Rng rng(2);
    l.InitParams(rng);
    Randomize(l.lora_b(), 3, -1, 1);
    LayerCheckOptions opt;
    opt.reference = [&](const std::vector<float>& x) { return RefLora(l, x, 6, 5, 3); };
    for (LayerMode m : {kBoth, kInputGradOnly, kParamGradOnly, kForwardOnly}) {
      opt.mode = m;
      EXPECT_TRUE(CheckLayer(l, in, &tracker, opt));
    }
    // The usual LoRA setting: the base frozen, adapters trainable (and one row of each masked).
    l.base().weight().SetTrainable(false);
    l.base().bias()->SetTrainable(false);
    l.lora_a().SetRowsTrainable(1, 2, false);
    l.lora_b().SetRowsTrainable(0, 2, false);
    for (LayerMode m : {kBoth, kParamGradOnly}) {
      opt.mode = m;
      EXPECT_TRUE(CheckLayer(l, in, &tracker, opt));
    }
  }
}

TEST(LoraLinearTest, LargeEnoughForSeveralTasks) {
  MemoryTracker tracker;
  LoraLinear l(300, 140, true, LoraOptions{8, 16}, &tracker);
  Rng rng(4);
  l.InitParams(rng);
  Randomize(l.lora_b(), 5, -0.5f, 0.5f);
  l.base().weight().SetTrainable(false);
  LayerCheckOptions opt;
  opt.max_probes = 40;
  opt.reference = [&](const std::vector<float>& x) { return RefLora(l, x, 300, 140, 8); };
  opt.ref_atol = opt.ref_rtol = 1e-4;
  EXPECT_TRUE(CheckLayer(l, {3, 100, 300}, &tracker, opt));  // 300 rows: 2 row blocks
}

TEST(LoraLinearTest, FrozenBaseMayBeInt8AdaptersStayFloat) {
  MemoryTracker tracker;
  LoraLinear l(6, 5, true, LoraOptions{2, 2}, &tracker);
  for (Parameter* p : l.Params()) p->SetTrainable(false);
  EXPECT_TRUE(l.base().weight().QuantizedUnder(FrozenStorage::kInt8));
  EXPECT_FALSE(l.lora_a().QuantizedUnder(FrozenStorage::kInt8));
  EXPECT_FALSE(l.lora_b().QuantizedUnder(FrozenStorage::kInt8));
  // Forward runs on the int8 base and adds the adapter.
  Rng rng(6);
  l.InitParams(rng);
  Randomize(l.lora_b(), 7, -1, 1);
  std::vector<float> x(3 * 6);
  FillUniform(rng, x);
  l.base().weight().SetStorage(FrozenStorage::kInt8);
  PlanContext pc;
  pc.frozen = FrozenStorage::kInt8;
  HandContext hand(l, {3, 6}, kForwardOnly, &tracker, pc);
  std::vector<float> y(3 * 5);
  l.Forward(View{x.data(), {3, 6}}, View{y.data(), {3, 5}}, hand.ctx);
  l.base().weight().SetStorage(FrozenStorage::kFloat32);  // the dequantised values
  const std::vector<float> want = RefLora(l, x, 6, 5, 2);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], want[i], 1e-5) << i;
}

}  // namespace
}  // namespace ftte
