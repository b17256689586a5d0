// CausalSelfAttention and PositionalEmbedding through the numerical harness.
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

// y = x W^T + b for rows of x, in double.
std::vector<double> RefLinear(const std::vector<double>& x, int64_t in, int64_t out, const float* w,
                              const float* b) {
  const auto rows = static_cast<int64_t>(x.size()) / in;
  std::vector<double> y(static_cast<size_t>(rows * out));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double a = b[o];
      for (int64_t k = 0; k < in; ++k) a += static_cast<double>(w[o * in + k]) * x[r * in + k];
      y[r * out + o] = a;
    }
  }
  return y;
}

// The PyTorch twin's forward in double: qkv, causal softmax(q k^T / sqrt(D)) v, proj.
std::vector<float> RefAttention(CausalSelfAttention& att, const std::vector<float>& xf,
                                const Shape& in, int64_t heads) {
  const int64_t n = in[0], steps = in[1], c = in[2], d = c / heads;
  std::vector<Parameter*> p = att.Params();  // qkv.weight, qkv.bias, proj.weight, proj.bias
  const std::vector<double> x(xf.begin(), xf.end());
  const std::vector<double> qkv = RefLinear(x, c, 3 * c, p[0]->data(), p[1]->data());
  std::vector<double> o(static_cast<size_t>(n * steps * c));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t h = 0; h < heads; ++h) {
      auto at = [&](int64_t t, int64_t which, int64_t j) {
        return qkv[(i * steps + t) * 3 * c + which * c + h * d + j];
      };
      for (int64_t a = 0; a < steps; ++a) {
        std::vector<double> s(static_cast<size_t>(a + 1));
        double mx = -1e300, sum = 0;
        for (int64_t b = 0; b <= a; ++b) {
          double dot = 0;
          for (int64_t j = 0; j < d; ++j) dot += at(a, 0, j) * at(b, 1, j);
          s[b] = dot / std::sqrt(static_cast<double>(d));
          mx = std::max(mx, s[b]);
        }
        for (double& v : s) sum += (v = std::exp(v - mx));
        for (int64_t j = 0; j < d; ++j) {
          double acc = 0;
          for (int64_t b = 0; b <= a; ++b) acc += s[b] / sum * at(b, 2, j);
          o[(i * steps + a) * c + h * d + j] = acc;
        }
      }
    }
  }
  const std::vector<double> y = RefLinear(o, c, c, p[2]->data(), p[3]->data());
  return std::vector<float>(y.begin(), y.end());
}

TEST(AttentionTest, DescribeShapesAndNames) {
  MemoryTracker tracker;
  CausalSelfAttention att(8, 2, &tracker);
  EXPECT_EQ(att.Describe(), "CausalSelfAttention(8, heads=2)");
  EXPECT_EQ(att.OutputShape({3, 5, 8}).value(), (Shape{3, 5, 8}));
  EXPECT_FALSE(att.OutputShape({3, 5, 6}).ok());
  EXPECT_FALSE(att.OutputShape({3, 8}).ok());
  att.AssignNames("2.body.1.");
  std::vector<std::string> names;
  for (Parameter* p : att.Params()) names.push_back(p->name());
  EXPECT_EQ(names, (std::vector<std::string>{"2.body.1.qkv.weight", "2.body.1.qkv.bias",
                                             "2.body.1.proj.weight", "2.body.1.proj.bias"}));
  EXPECT_EQ(att.Params()[0]->shape(), (Shape{24, 8}));
  CausalSelfAttention lora(8, 2, &tracker, LoraOptions{4, 8});
  lora.AssignNames("");
  names.clear();
  for (Parameter* p : lora.Params()) names.push_back(p->name());
  EXPECT_EQ(names,
            (std::vector<std::string>{"qkv.weight", "qkv.bias", "qkv.lora_a", "qkv.lora_b",
                                      "proj.weight", "proj.bias", "proj.lora_a", "proj.lora_b"}));
}

TEST(AttentionTest, GradientsAndReferenceInEveryMode) {
  MemoryTracker tracker;
  const Shape in{2, 5, 8};
  CausalSelfAttention att(8, 2, &tracker);
  Rng rng(1);
  att.InitParams(rng);
  LayerCheckOptions opt;
  opt.reference = [&](const std::vector<float>& x) { return RefAttention(att, x, in, 2); };
  opt.step = 3e-3f;
  for (LayerMode m : {kBoth, kInputGradOnly, kParamGradOnly, kForwardOnly}) {
    opt.mode = m;
    EXPECT_TRUE(CheckLayer(att, in, &tracker, opt));
  }
  // Only the output projection trains: nothing flows into the core or qkv.
  for (Parameter* p : att.qkv().Params()) p->SetTrainable(false);
  att.Params()[2]->SetRowsTrainable(1, 3, false);
  opt.mode = kParamGradOnly;
  EXPECT_TRUE(CheckLayer(att, in, &tracker, opt));
  opt.mode = kBoth;
  EXPECT_TRUE(CheckLayer(att, in, &tracker, opt));
}

TEST(AttentionTest, MaskedQkvRowsAndLargerProblem) {
  MemoryTracker tracker;
  const Shape in{3, 17, 24};  // 12 (sample, head) tasks
  CausalSelfAttention att(24, 4, &tracker);
  Rng rng(2);
  att.InitParams(rng);
  Randomize(*att.Params()[1], 3, -0.3f, 0.3f);
  att.Params()[0]->SetRowsTrainable(10, 40, false);  // some q, k and v rows frozen
  att.Params()[3]->SetTrainable(false);
  LayerCheckOptions opt;
  opt.reference = [&](const std::vector<float>& x) { return RefAttention(att, x, in, 4); };
  opt.ref_atol = opt.ref_rtol = 1e-4;
  opt.step = 3e-3f;
  opt.max_probes = 60;
  EXPECT_TRUE(CheckLayer(att, in, &tracker, opt));
}

TEST(AttentionTest, LaterPositionsDoNotChangeEarlierOutputs) {
  MemoryTracker tracker;
  CausalSelfAttention att(8, 2, &tracker);
  Rng rng(4);
  att.InitParams(rng);
  std::vector<float> x(1 * 6 * 8);
  FillUniform(rng, x);
  const std::vector<float> a = RunForward(att, {1, 6, 8}, x, &tracker);
  for (size_t i = 4 * 8; i < x.size(); ++i) x[i] += 1.0f;  // change positions 4 and 5
  const std::vector<float> b = RunForward(att, {1, 6, 8}, x, &tracker);
  EXPECT_EQ(std::vector<float>(a.begin(), a.begin() + 32),
            std::vector<float>(b.begin(), b.begin() + 32));
  EXPECT_NE(a, b);
}

TEST(AttentionTest, PlanKeepsProbabilitiesOnlyForBackward) {
  MemoryTracker tracker;
  CausalSelfAttention att(8, 2, &tracker);
  const Shape in{3, 5, 8};
  MemoryPlan bw, fw;
  att.Plan(in, kInputGradOnly, PlanContext{}, &bw);
  att.Plan(in, kForwardOnly, PlanContext{}, &fw);
  EXPECT_EQ(bw.Total(MemCategory::kActivations), FloatBytes(15 * 24 + 3 * 2 * 25 + 15 * 8));
  EXPECT_EQ(fw.Total(MemCategory::kActivations), 0);
  EXPECT_EQ(fw.Total(MemCategory::kWorkspace), FloatBytes(15 * 24 + 25 + 15 * 8));
}

// ---------------------------------------------------------------------------------------------
// PositionalEmbedding

TEST(PositionalEmbeddingTest, AddsPositionRowsWithMasks) {
  MemoryTracker tracker;
  PositionalEmbedding pos(9, 6, &tracker);
  EXPECT_EQ(pos.Describe(), "PositionalEmbedding(9, 6)");
  EXPECT_FALSE(pos.OutputShape({2, 10, 6}).ok());
  EXPECT_FALSE(pos.OutputShape({2, 6}).ok());
  Rng rng(5);
  pos.InitParams(rng);
  Randomize(pos.weight(), 6, -1, 1);
  const Shape in{3, 7, 6};
  LayerCheckOptions opt;
  opt.reference = [&](const std::vector<float>& x) {
    std::vector<float> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] + pos.weight().data()[i % (7 * 6)];
    return y;
  };
  opt.ref_atol = opt.ref_rtol = 0;
  for (LayerMode m : {kBoth, kInputGradOnly, kParamGradOnly, kForwardOnly}) {
    opt.mode = m;
    EXPECT_TRUE(CheckLayer(pos, in, &tracker, opt));
  }
  pos.weight().SetRowsTrainable(2, 4, false);  // positions 7 and 8 stay trainable (zero grad)
  opt.mode = kBoth;
  EXPECT_TRUE(CheckLayer(pos, in, &tracker, opt));
  opt.max_probes = 50;
  opt.reference = nullptr;
  EXPECT_TRUE(CheckLayer(pos, {40, 9, 6}, &tracker, opt));
}

TEST(PositionalEmbeddingTest, InitIsSmallNormal) {
  MemoryTracker tracker;
  PositionalEmbedding pos(64, 100, &tracker);
  Rng rng(1);
  pos.InitParams(rng);
  double sq = 0;
  for (int64_t i = 0; i < 6400; ++i) sq += pos.weight().data()[i] * pos.weight().data()[i];
  EXPECT_NEAR(std::sqrt(sq / 6400), 0.02, 0.002);
}

}  // namespace
}  // namespace ftte
