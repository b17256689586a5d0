#include "ftte/core/layers_extra.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "grad_check_test_util.h"

namespace ftte {
namespace {

MemoryPlan PlanOf(const Layer& layer, const Shape& in, LayerMode m) {
  MemoryPlan plan;
  layer.Plan(in, m, PlanContext{}, &plan);
  return plan;
}

void Randomize(Parameter& p, uint64_t seed, float lo, float hi) {
  Rng rng(seed);
  for (int64_t i = 0; i < p.numel(); ++i) {
    p.data()[i] = lo + static_cast<float>(rng.Uniform()) * (hi - lo);
  }
}

// ---------------------------------------------------------------------------------------------
// GELU

double RefGelu(double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); }

TEST(GeluTest, MatchesPyTorchValues) {
  MemoryTracker tracker;
  GELU gelu;
  // torch.nn.GELU()(torch.tensor([1., -1., .5, -3., 0.]))
  const std::vector<float> y = RunForward(gelu, {5}, {1.0f, -1.0f, 0.5f, -3.0f, 0.0f}, &tracker);
  EXPECT_NEAR(y[0], 0.8413447f, 1e-6);
  EXPECT_NEAR(y[1], -0.1586553f, 1e-6);
  EXPECT_NEAR(y[2], 0.3457312f, 1e-6);
  EXPECT_NEAR(y[3], -0.0040497f, 1e-6);
  EXPECT_EQ(y[4], 0.0f);
  EXPECT_EQ(gelu.Describe(), "GELU()");
}

TEST(GeluTest, GradientsAndReference) {
  MemoryTracker tracker;
  GELU gelu;
  const Shape in{3, 5, 7};
  LayerCheckOptions opt;
  opt.mode = kInputGradOnly;
  opt.fill_input = [](Rng& rng, std::vector<float>& v) { FillUniform(rng, v, -4.0f, 4.0f); };
  opt.reference = [](const std::vector<float>& x) {
    std::vector<float> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = static_cast<float>(RefGelu(x[i]));
    return y;
  };
  EXPECT_TRUE(CheckLayer(gelu, in, &tracker, opt));
  opt.mode = kForwardOnly;
  EXPECT_TRUE(CheckLayer(gelu, in, &tracker, opt));
  EXPECT_FALSE(gelu.NeedsInput(kForwardOnly));
  EXPECT_TRUE(gelu.NeedsInput(kInputGradOnly));
}

TEST(GeluTest, ManyTasksAreThreadCountIndependent) {
  // More elements than one task holds, so that threads really split the work.
  MemoryTracker tracker;
  GELU gelu;
  LayerCheckOptions opt;
  opt.mode = kInputGradOnly;
  opt.max_probes = 50;
  EXPECT_TRUE(CheckLayer(gelu, {5, 10000}, &tracker, opt));
}

// ---------------------------------------------------------------------------------------------
// Dropout

TEST(DropoutTest, DescribeAndPlan) {
  Dropout d(0.25);
  EXPECT_EQ(d.Describe(), "Dropout(p=0.25)");
  EXPECT_TRUE(d.InPlace());
  EXPECT_FALSE(d.NeedsInput(kBoth));
  EXPECT_FALSE(d.NeedsOutput(kBoth));
  // One bit per element, in whole 64-bit words, only when backward applies the mask.
  const MemoryPlan plan = PlanOf(d, {3, 43}, kInputGradOnly);
  EXPECT_EQ(plan.Total(MemCategory::kActivations), 3 * 8);  // 129 bits -> 3 words
  EXPECT_EQ(plan.Total(), 3 * 8);
  EXPECT_EQ(PlanOf(d, {3, 43}, kForwardOnly).Total(), 0);
}

TEST(DropoutTest, EvalIsIdentity) {
  MemoryTracker tracker;
  Dropout d(0.5);
  LayerCheckOptions opt;
  opt.mode = kInputGradOnly;
  opt.training = false;
  opt.reference = [](const std::vector<float>& x) { return x; };
  opt.ref_atol = opt.ref_rtol = 0;
  EXPECT_TRUE(CheckLayer(d, {4, 3, 5}, &tracker, opt));
}

TEST(DropoutTest, TrainingGradientsFollowTheMask) {
  MemoryTracker tracker;
  for (double p : {0.0, 0.3, 0.9}) {
    Dropout d(p);
    LayerCheckOptions opt;
    opt.mode = kInputGradOnly;
    opt.training = true;
    EXPECT_TRUE(CheckLayer(d, {4, 50}, &tracker, opt)) << "p = " << p;
    opt.max_probes = 50;  // more elements than one Backward task holds
    EXPECT_TRUE(CheckLayer(d, {3, 20000}, &tracker, opt)) << "p = " << p;
  }
}

TEST(DropoutTest, MaskDrawsOneUniformPerElementInOrder) {
  MemoryTracker tracker;
  const double p = 0.3;
  Dropout d(p);
  const int64_t n = 5000;
  std::vector<float> x(n);
  Rng fill(7);
  FillUniform(fill, x, 0.5f, 1.5f);  // never 0, so a zero output means "dropped"
  Rng rng(11), expect(11);
  const std::vector<float> y = RunForward(d, {n}, x, &tracker, /*training=*/true, &rng, 2);
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  int64_t dropped = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = expect.Uniform() >= p;
    ASSERT_EQ(y[i], keep ? x[i] * scale : 0.0f) << i;
    dropped += keep ? 0 : 1;
  }
  // The caller's rng advanced by exactly n draws.
  EXPECT_EQ(rng.Next(), expect.Next());
  // 5000 draws: the dropped fraction is within 5 standard deviations (0.032) of p.
  EXPECT_NEAR(static_cast<double>(dropped) / n, p, 0.032);
}

TEST(DropoutTest, SuccessiveStepsDrawNewMasks) {
  MemoryTracker tracker;
  Dropout d(0.5);
  const std::vector<float> x(256, 1.0f);
  Rng rng(3);
  const std::vector<float> a = RunForward(d, {256}, x, &tracker, true, &rng);
  const std::vector<float> b = RunForward(d, {256}, x, &tracker, true, &rng);
  EXPECT_NE(a, b);
}

TEST(DropoutTest, ExtremeProbabilities) {
  MemoryTracker tracker;
  const std::vector<float> x{1.0f, -2.0f, 3.0f, 4.5f};
  Rng rng(1);
  Dropout keep_all(0.0), drop_all(1.0);
  EXPECT_EQ(RunForward(keep_all, {4}, x, &tracker, true, &rng), x);
  EXPECT_EQ(RunForward(drop_all, {4}, x, &tracker, true, &rng), std::vector<float>(4, 0.0f));
  // Gradients through p = 1 are zero, never NaN.
  LayerCheckOptions opt;
  opt.mode = kInputGradOnly;
  opt.training = true;
  EXPECT_TRUE(CheckLayer(drop_all, {2, 70}, &tracker, opt));
}

// ---------------------------------------------------------------------------------------------
// AvgPool2d and GlobalAvgPool2d

// Plain-loop average pooling, in double.
std::vector<float> RefAvgPool(const std::vector<float>& x, const Shape& in, int64_t k, int64_t s) {
  const int64_t planes = in[0] * in[1], h = in[2], w = in[3];
  const int64_t oh = (h - k) / s + 1, ow = (w - k) / s + 1;
  std::vector<float> y(static_cast<size_t>(planes * oh * ow));
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t i = 0; i < oh; ++i) {
      for (int64_t j = 0; j < ow; ++j) {
        double sum = 0;
        for (int64_t a = 0; a < k; ++a) {
          for (int64_t b = 0; b < k; ++b) sum += x[(p * h + i * s + a) * w + j * s + b];
        }
        y[(p * oh + i) * ow + j] = static_cast<float>(sum / static_cast<double>(k * k));
      }
    }
  }
  return y;
}

TEST(AvgPool2dTest, DescribeAndShapes) {
  EXPECT_EQ(AvgPool2d(2).Describe(), "AvgPool2d(kernel=2)");
  EXPECT_EQ(AvgPool2d(3, 2).Describe(), "AvgPool2d(kernel=3, stride=2)");
  EXPECT_EQ(AvgPool2d(2).OutputShape({2, 3, 7, 6}).value(), (Shape{2, 3, 3, 3}));
  EXPECT_EQ(AvgPool2d(3, 2).OutputShape({1, 1, 7, 8}).value(), (Shape{1, 1, 3, 3}));
  const Result<Shape> bad = AvgPool2d(3).OutputShape({1, 1, 2, 8});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("AvgPool2d(kernel=3)"), std::string::npos);
  EXPECT_FALSE(AvgPool2d(2).OutputShape({4, 8}).ok());
}

TEST(AvgPool2dTest, GradientsAndReference) {
  MemoryTracker tracker;
  struct Case {
    int64_t kernel, stride;
    Shape in;
  };
  // Non-overlapping with leftover rows / columns, overlapping, and gapped windows.
  for (const Case& c :
       {Case{2, 2, {2, 3, 7, 6}}, Case{3, 2, {2, 2, 7, 8}}, Case{2, 3, {1, 2, 8, 7}}}) {
    AvgPool2d pool(c.kernel, c.stride);
    LayerCheckOptions opt;
    opt.mode = kInputGradOnly;
    opt.reference = [&](const std::vector<float>& x) {
      return RefAvgPool(x, c.in, c.kernel, c.stride);
    };
    EXPECT_TRUE(CheckLayer(pool, c.in, &tracker, opt));
  }
}

TEST(AvgPool2dTest, CountFlops) {
  const Flops f = AvgPool2d(2).CountFlops({2, 3, 8, 8}, kInputGradOnly);
  EXPECT_EQ(f.forward, 2 * 3 * 16 * 4);
  EXPECT_EQ(f.backward, 2 * 3 * 16 * 4);
  EXPECT_EQ(AvgPool2d(2).CountFlops({2, 3, 8, 8}, kForwardOnly).backward, 0);
}

TEST(GlobalAvgPool2dTest, GradientsAndReference) {
  MemoryTracker tracker;
  GlobalAvgPool2d gap;
  EXPECT_EQ(gap.Describe(), "GlobalAvgPool2d()");
  const Shape in{3, 4, 5, 6};
  EXPECT_EQ(gap.OutputShape(in).value(), (Shape{3, 4}));
  EXPECT_FALSE(gap.OutputShape({3, 4}).ok());
  LayerCheckOptions opt;
  opt.mode = kInputGradOnly;
  opt.reference = [](const std::vector<float>& x) {
    std::vector<float> y(12);
    for (int64_t p = 0; p < 12; ++p) {
      double sum = 0;
      for (int64_t i = 0; i < 30; ++i) sum += x[p * 30 + i];
      y[p] = static_cast<float>(sum / 30);
    }
    return y;
  };
  EXPECT_TRUE(CheckLayer(gap, in, &tracker, opt));
  // Many planes, so that several tasks run.
  opt.reference = nullptr;
  opt.max_probes = 60;
  EXPECT_TRUE(CheckLayer(gap, {4, 700, 3, 3}, &tracker, opt));
}

// ---------------------------------------------------------------------------------------------
// GroupNorm

// Plain-loop group norm of x [N, C, S...] in double.
std::vector<float> RefGroupNorm(const std::vector<float>& x, const Shape& in, int64_t groups,
                                const float* w, const float* b, double eps) {
  const int64_t n = in[0], c = in[1], s = NumElements(in) / (n * c), cpg = c / groups;
  std::vector<float> y(x.size());
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t base = (i * c + g * cpg) * s, m = cpg * s;
      double mean = 0, var = 0;
      for (int64_t j = 0; j < m; ++j) mean += x[base + j];
      mean /= m;
      for (int64_t j = 0; j < m; ++j) var += (x[base + j] - mean) * (x[base + j] - mean);
      var /= m;
      for (int64_t j = 0; j < m; ++j) {
        const int64_t ch = g * cpg + j / s;
        y[base + j] =
            static_cast<float>((x[base + j] - mean) / std::sqrt(var + eps) * w[ch] + b[ch]);
      }
    }
  }
  return y;
}

TEST(GroupNormTest, DescribeShapesAndInit) {
  MemoryTracker tracker;
  GroupNorm gn(2, 16, &tracker);
  EXPECT_EQ(gn.Describe(), "GroupNorm(2, 16)");
  EXPECT_EQ(GroupNorm(4, 8, &tracker, 1e-3f).Describe(), "GroupNorm(4, 8, eps=0.001)");
  EXPECT_EQ(gn.OutputShape({3, 16, 4, 4}).value(), (Shape{3, 16, 4, 4}));
  EXPECT_EQ(gn.OutputShape({3, 16}).value(), (Shape{3, 16}));
  const Result<Shape> bad = gn.OutputShape({3, 8, 4, 4});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("GroupNorm(2, 16)"), std::string::npos);
  ASSERT_EQ(gn.Params().size(), 2u);
  EXPECT_EQ(gn.Params()[0]->name(), "weight");
  EXPECT_EQ(gn.Params()[1]->name(), "bias");
  Randomize(gn.weight(), 1, -1, 1);
  Rng rng(5), untouched(5);
  gn.InitParams(rng);
  EXPECT_EQ(rng.Next(), untouched.Next());
  for (int64_t c = 0; c < 16; ++c) {
    EXPECT_EQ(gn.weight().data()[c], 1.0f);
    EXPECT_EQ(gn.bias().data()[c], 0.0f);
  }
}

TEST(GroupNormTest, PlanSavesStatsOnlyForBackward) {
  MemoryTracker tracker;
  GroupNorm gn(3, 6, &tracker);
  EXPECT_EQ(PlanOf(gn, {5, 6, 4, 4}, kParamGradOnly).Total(MemCategory::kActivations),
            5 * 3 * 2 * 4);
  EXPECT_EQ(PlanOf(gn, {5, 6, 4, 4}, kForwardOnly).Total(), 0);
  EXPECT_TRUE(gn.NeedsInput(kParamGradOnly));
  EXPECT_TRUE(gn.NeedsInput(kInputGradOnly));
  EXPECT_FALSE(gn.NeedsInput(kForwardOnly));
}

class GroupNormGradTest : public ::testing::TestWithParam<Shape> {
 protected:
  LayerCheckOptions Options(GroupNorm& gn, const Shape& in) {
    LayerCheckOptions opt;
    opt.reference = [&gn, in](const std::vector<float>& x) {
      return RefGroupNorm(x, in, 3, gn.weight().data(), gn.bias().data(), 1e-5);
    };
    // On [N, C] a group holds two values, whose normalised output is nearly +-1 whatever they
    // are: the curvature is high where they are close, so take a smaller step.
    if (in.size() == 2) opt.step = 1e-3f;
    return opt;
  }
};

TEST_P(GroupNormGradTest, AllTrainable) {
  MemoryTracker tracker;
  const Shape in = GetParam();
  GroupNorm gn(3, 6, &tracker);
  Randomize(gn.weight(), 2, 0.5f, 1.5f);
  Randomize(gn.bias(), 3, -0.5f, 0.5f);
  LayerCheckOptions opt = Options(gn, in);
  for (LayerMode m : {kBoth, kInputGradOnly, kParamGradOnly, kForwardOnly}) {
    opt.mode = m;
    EXPECT_TRUE(CheckLayer(gn, in, &tracker, opt));
  }
}

TEST_P(GroupNormGradTest, HalfTheChannelsFrozen) {
  MemoryTracker tracker;
  const Shape in = GetParam();
  GroupNorm gn(3, 6, &tracker);
  Randomize(gn.weight(), 4, 0.5f, 1.5f);
  Randomize(gn.bias(), 5, -0.5f, 0.5f);
  gn.weight().SetRowsTrainable(0, 3, false);  // the first half
  gn.bias().SetRowsTrainable(1, 2, false);    // and a different pattern for the bias
  gn.bias().SetRowsTrainable(4, 6, false);
  LayerCheckOptions opt = Options(gn, in);
  for (LayerMode m : {kBoth, kParamGradOnly}) {
    opt.mode = m;
    EXPECT_TRUE(CheckLayer(gn, in, &tracker, opt));
  }
  // Everything frozen: only dx.
  gn.weight().SetTrainable(false);
  gn.bias().SetTrainable(false);
  opt.mode = kBoth;
  EXPECT_TRUE(CheckLayer(gn, in, &tracker, opt));
}

INSTANTIATE_TEST_SUITE_P(Shapes, GroupNormGradTest,
                         ::testing::Values(Shape{3, 6, 4, 5}, Shape{4, 6}, Shape{2, 6, 7}));

TEST(GroupNormTest, LargeInputSplitsIntoManyTasks) {
  MemoryTracker tracker;
  GroupNorm gn(4, 32, &tracker);
  Randomize(gn.weight(), 6, 0.5f, 1.5f);
  gn.weight().SetRowsTrainable(8, 20, false);
  LayerCheckOptions opt;
  opt.max_probes = 40;
  EXPECT_TRUE(CheckLayer(gn, {3, 32, 12, 12}, &tracker, opt));
  EXPECT_TRUE(CheckLayer(gn, {40, 32, 1, 1}, &tracker, opt));
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

std::vector<float> RefLayerNorm(const std::vector<float>& x, int64_t dim, const float* w,
                                const float* b, double eps) {
  std::vector<float> y(x.size());
  for (size_t r = 0; r < x.size() / dim; ++r) {
    const float* xr = x.data() + r * dim;
    double mean = 0, var = 0;
    for (int64_t d = 0; d < dim; ++d) mean += xr[d];
    mean /= dim;
    for (int64_t d = 0; d < dim; ++d) var += (xr[d] - mean) * (xr[d] - mean);
    var /= dim;
    for (int64_t d = 0; d < dim; ++d) {
      y[r * dim + d] = static_cast<float>((xr[d] - mean) / std::sqrt(var + eps) * w[d] + b[d]);
    }
  }
  return y;
}

TEST(LayerNormTest, DescribeShapesAndInit) {
  MemoryTracker tracker;
  LayerNorm ln(64, &tracker);
  EXPECT_EQ(ln.Describe(), "LayerNorm(64)");
  EXPECT_EQ(ln.OutputShape({2, 5, 64}).value(), (Shape{2, 5, 64}));
  EXPECT_FALSE(ln.OutputShape({2, 5, 63}).ok());
  EXPECT_FALSE(ln.OutputShape({64}).ok());
  EXPECT_EQ(ln.weight().data()[0], 1.0f);
  EXPECT_EQ(ln.bias().data()[63], 0.0f);
  EXPECT_EQ(PlanOf(ln, {2, 5, 64}, kInputGradOnly).Total(MemCategory::kActivations), 2 * 5 * 2 * 4);
  EXPECT_EQ(PlanOf(ln, {2, 5, 64}, kForwardOnly).Total(), 0);
}

TEST(LayerNormTest, GradientsWithAndWithoutMasks) {
  MemoryTracker tracker;
  for (const Shape& in : {Shape{4, 10}, Shape{2, 3, 10}}) {
    LayerNorm ln(10, &tracker);
    Randomize(ln.weight(), 7, 0.5f, 1.5f);
    Randomize(ln.bias(), 8, -0.5f, 0.5f);
    LayerCheckOptions opt;
    opt.reference = [&](const std::vector<float>& x) {
      return RefLayerNorm(x, 10, ln.weight().data(), ln.bias().data(), 1e-5);
    };
    for (LayerMode m : {kBoth, kInputGradOnly, kParamGradOnly, kForwardOnly}) {
      opt.mode = m;
      EXPECT_TRUE(CheckLayer(ln, in, &tracker, opt));
    }
    ln.weight().SetRowsTrainable(0, 5, false);
    ln.bias().SetRowsTrainable(3, 4, false);
    ln.bias().SetRowsTrainable(8, 10, false);
    for (LayerMode m : {kBoth, kParamGradOnly}) {
      opt.mode = m;
      EXPECT_TRUE(CheckLayer(ln, in, &tracker, opt));
    }
  }
}

TEST(LayerNormTest, WideRowsSpanSeveralFeatureBlocks) {
  MemoryTracker tracker;
  LayerNorm ln(150, &tracker);
  Randomize(ln.weight(), 9, 0.5f, 1.5f);
  ln.weight().SetRowsTrainable(60, 70, false);
  LayerCheckOptions opt;
  opt.max_probes = 80;
  EXPECT_TRUE(CheckLayer(ln, {3, 200, 150}, &tracker, opt));
}

// ---------------------------------------------------------------------------------------------
// Embedding

// Token ids in [0, vocab) with repeats.
std::function<void(Rng&, std::vector<float>&)> Ids(int64_t vocab) {
  return [vocab](Rng& rng, std::vector<float>& v) {
    for (float& e : v) e = static_cast<float>(rng.Below(static_cast<uint64_t>(vocab)));
  };
}

TEST(EmbeddingTest, DescribeShapesAndInit) {
  MemoryTracker tracker;
  Embedding emb(100, 50, &tracker);
  EXPECT_EQ(emb.Describe(), "Embedding(100, 50)");
  EXPECT_EQ(emb.OutputShape({4}).value(), (Shape{4, 50}));
  EXPECT_EQ(emb.OutputShape({4, 7}).value(), (Shape{4, 7, 50}));
  EXPECT_FALSE(emb.OutputShape({4, 7, 2}).ok());
  EXPECT_TRUE(emb.NeedsInput(kParamGradOnly));
  EXPECT_FALSE(emb.NeedsInput(kForwardOnly));
  Rng rng(1);
  emb.InitParams(rng);
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < 5000; ++i) {
    sum += emb.weight().data()[i];
    sq += emb.weight().data()[i] * emb.weight().data()[i];
  }
  EXPECT_NEAR(sum / 5000, 0.0, 0.1);            // N(0, 1): mean 0
  EXPECT_NEAR(std::sqrt(sq / 5000), 1.0, 0.1);  // and standard deviation 1
}

TEST(EmbeddingTest, ForwardLooksUpRows) {
  MemoryTracker tracker;
  Embedding emb(5, 3, &tracker);
  Rng rng(2);
  emb.InitParams(rng);
  const std::vector<float> ids{4, 0, 4, 2};
  const std::vector<float> y = RunForward(emb, {2, 2}, ids, &tracker);
  ASSERT_EQ(y.size(), 12u);
  for (int64_t t = 0; t < 4; ++t) {
    for (int64_t d = 0; d < 3; ++d) {
      EXPECT_EQ(y[t * 3 + d], emb.weight().data()[static_cast<int64_t>(ids[t]) * 3 + d]);
    }
  }
}

TEST(EmbeddingTest, Gradients) {
  MemoryTracker tracker;
  for (const Shape& in : {Shape{6}, Shape{3, 5}}) {
    Embedding emb(9, 70, &tracker);  // 70 columns: two column blocks
    Rng rng(3);
    emb.InitParams(rng);
    LayerCheckOptions opt;
    opt.mode = kParamGradOnly;
    opt.fill_input = Ids(9);
    opt.check_input_grad = false;
    opt.max_probes = 200;
    opt.reference = [&](const std::vector<float>& x) {
      std::vector<float> y;
      for (float id : x) {
        const float* row = emb.weight().data() + static_cast<int64_t>(id) * 70;
        y.insert(y.end(), row, row + 70);
      }
      return y;
    };
    opt.ref_atol = opt.ref_rtol = 0;
    EXPECT_TRUE(CheckLayer(emb, in, &tracker, opt));
    // Frozen rows, some of them used by tokens; trainable rows no token uses get zeros.
    emb.weight().SetRowsTrainable(0, 2, false);
    emb.weight().SetRowsTrainable(5, 6, false);
    EXPECT_TRUE(CheckLayer(emb, in, &tracker, opt));
    opt.mode = kForwardOnly;
    EXPECT_TRUE(CheckLayer(emb, in, &tracker, opt));
  }
}

TEST(EmbeddingTest, GradientAddsRepeatedTokensIntoPackedRows) {
  MemoryTracker tracker;
  Embedding emb(4, 2, &tracker);
  emb.weight().SetRowsTrainable(1, 2, false);  // packed rows: 0 -> 0, 2 -> 1, 3 -> 2
  emb.weight().grad() = Tensor(&tracker, MemCategory::kGradients, {3 * 2});
  std::fill(emb.weight().grad().data(), emb.weight().grad().data() + 6, 99.0f);
  PlanContext pc;
  pc.threads = 2;
  HandContext hand(emb, {5}, kParamGradOnly, &tracker, pc);
  ExecContext& ctx = hand.ctx;
  std::vector<float> ids{2, 1, 2, 0, 1}, y(10), dy{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  emb.Forward(View{ids.data(), {5}}, View{y.data(), {5, 2}}, ctx);
  emb.Backward(View{ids.data(), {5}}, View{y.data(), {5, 2}}, View{dy.data(), {5, 2}}, View{}, ctx);
  const float* g = emb.weight().grad().data();
  EXPECT_EQ(std::vector<float>(g, g + 6), (std::vector<float>{7, 8, 1 + 5, 2 + 6, 0, 0}));
}

TEST(EmbeddingTest, FrozenInt8WeightLooksUpDequantisedRows) {
  MemoryTracker tracker;
  Embedding emb(6, 4, &tracker);
  Rng rng(4);
  emb.InitParams(rng);
  emb.weight().SetTrainable(false);
  emb.weight().SetStorage(FrozenStorage::kInt8);
  ASSERT_TRUE(emb.weight().quantized());
  const std::vector<float> y = RunForward(emb, {3}, {5, 0, 5}, &tracker);
  std::vector<float> row5(4), row0(4);
  emb.weight().ReadRows(5, 6, row5.data());
  emb.weight().ReadRows(0, 1, row0.data());
  EXPECT_EQ(std::vector<float>(y.begin(), y.begin() + 4), row5);
  EXPECT_EQ(std::vector<float>(y.begin() + 4, y.begin() + 8), row0);
  EXPECT_EQ(std::vector<float>(y.begin() + 8, y.end()), row5);
}

TEST(EmbeddingDeathTest, BadIdsAbortWithTheIdAndPosition) {
  MemoryTracker tracker;
  Embedding emb(5, 3, &tracker);
  EXPECT_DEATH(RunForward(emb, {4}, {0, 1, 7, 2}, &tracker),
               "Embedding\\(5, 3\\): token id 7 at position 2 is not an integer in \\[0, 5\\)");
  EXPECT_DEATH(RunForward(emb, {2}, {-1, 0}, &tracker), "token id -1 at position 0");
  EXPECT_DEATH(RunForward(emb, {2}, {0, 1.5f}, &tracker), "token id 1.5 at position 1");
  EXPECT_DEATH(RunForward(emb, {1}, {NAN}, &tracker), "token id nan at position 0");
}

TEST(EmbeddingDeathTest, InputGradientIsRefused) {
  MemoryTracker tracker;
  Embedding emb(5, 3, &tracker);
  EXPECT_DEATH(emb.Prepare({4}, kBoth, PlanContext{}, &tracker), "token ids have no gradient");
}

// ---------------------------------------------------------------------------------------------
// FLOP counts

TEST(LayersExtraFlopsTest, CountsScaleWithWorkAndMode) {
  MemoryTracker tracker;
  const Shape in{2, 8, 4, 4};
  const int64_t n = NumElements(in);
  GELU gelu;
  EXPECT_GT(gelu.CountFlops(in, kForwardOnly).forward, n);
  EXPECT_EQ(gelu.CountFlops(in, kForwardOnly).backward, 0);
  EXPECT_GT(gelu.CountFlops(in, kInputGradOnly).backward, 0);
  EXPECT_EQ(Dropout(0.5).CountFlops(in, kInputGradOnly).backward, n);
  EXPECT_EQ(GlobalAvgPool2d().CountFlops(in, kInputGradOnly).forward, n);
  GroupNorm gn(2, 8, &tracker);
  const Flops both = gn.CountFlops(in, kBoth);
  gn.weight().SetTrainable(false);
  gn.bias().SetTrainable(false);
  EXPECT_LT(gn.CountFlops(in, kBoth).backward, both.backward);  // no parameter gradients
  Embedding emb(10, 16, &tracker);
  EXPECT_EQ(emb.CountFlops({4, 5}, kParamGradOnly).backward, 4 * 5 * 16);
  emb.weight().SetTrainable(false);
  EXPECT_EQ(emb.CountFlops({4, 5}, kParamGradOnly).backward, 0);
}

}  // namespace
}  // namespace ftte
