#include "ftte/core/layers.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "grad_check_test_util.h"

namespace ftte {
namespace {

void InitAll(Layer& layer, uint64_t seed) {
  Rng rng(seed);
  layer.InitParams(rng);
}

// Inputs for layers with kinks: distinct values 0.05 apart, never within 0.025 of 0, so the
// finite-difference step (0.01) never crosses a kink or changes a max.
void Spaced(Rng& rng, std::vector<float>& v) { FillSpaced(rng, v, 0.05f); }

// ---------------------------------------------------------------------------------------------
// Linear (float32 storage)

// y = x W^T + b over the last dimension, in double.
std::vector<float> RefLinear(const std::vector<float>& x, int64_t in, int64_t out, const float* w,
                             const float* b) {
  const auto rows = static_cast<int64_t>(x.size()) / in;
  std::vector<float> y(static_cast<size_t>(rows * out));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double acc = b != nullptr ? b[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) acc += static_cast<double>(x[r * in + i]) * w[o * in + i];
      y[r * out + o] = static_cast<float>(acc);
    }
  }
  return y;
}

LayerCheckOptions LinearOptions(Linear& lin, int64_t in, int64_t out) {
  LayerCheckOptions opt;
  opt.reference = [&lin, in, out](const std::vector<float>& x) {
    return RefLinear(x, in, out, lin.weight().data(), lin.bias() ? lin.bias()->data() : nullptr);
  };
  return opt;
}

TEST(LinearTest, DescribeAndShapes) {
  MemoryTracker tracker;
  Linear lin(4, 3, true, &tracker);
  EXPECT_EQ(lin.Describe(), "Linear(4, 3)");
  EXPECT_EQ(Linear(4, 3, false, &tracker).Describe(), "Linear(4, 3, bias=false)");
  EXPECT_EQ(lin.OutputShape({2, 5, 4}).value(), (Shape{2, 5, 3}));
  EXPECT_FALSE(lin.OutputShape({2, 5}).ok());
}

TEST(LinearTest, GradientsAllModes) {
  MemoryTracker tracker;
  for (const Shape& in : {Shape{5, 7}, Shape{2, 3, 7}}) {
    Linear lin(7, 4, true, &tracker);
    InitAll(lin, 1);
    LayerCheckOptions opt = LinearOptions(lin, 7, 4);
    for (LayerMode m : {kBoth, kInputGradOnly, kParamGradOnly, kForwardOnly}) {
      opt.mode = m;
      EXPECT_TRUE(CheckLayer(lin, in, &tracker, opt));
    }
  }
}

TEST(LinearTest, GradientsWithMasks) {
  MemoryTracker tracker;
  Linear lin(6, 5, true, &tracker);
  InitAll(lin, 2);
  lin.weight().SetRowsTrainable(1, 3, false);
  lin.bias()->SetRowsTrainable(0, 1, false);
  lin.bias()->SetRowsTrainable(4, 5, false);
  LayerCheckOptions opt = LinearOptions(lin, 6, 5);
  for (LayerMode m : {kBoth, kParamGradOnly}) {
    opt.mode = m;
    EXPECT_TRUE(CheckLayer(lin, {4, 6}, &tracker, opt));
  }
  lin.weight().SetTrainable(false);
  lin.bias()->SetTrainable(false);
  opt.mode = kBoth;
  EXPECT_TRUE(CheckLayer(lin, {4, 6}, &tracker, opt));
  Linear no_bias(6, 5, false, &tracker);
  InitAll(no_bias, 3);
  no_bias.weight().SetRowsTrainable(2, 4, false);
  EXPECT_TRUE(CheckLayer(no_bias, {3, 6}, &tracker, LinearOptions(no_bias, 6, 5)));
}

TEST(LinearTest, LargeLayerSpansSeveralBlocks) {
  // More than one output block (128) and input block (256), with a mask cutting a block.
  MemoryTracker tracker;
  Linear lin(300, 260, true, &tracker);
  InitAll(lin, 4);
  lin.weight().SetRowsTrainable(100, 140, false);
  LayerCheckOptions opt = LinearOptions(lin, 300, 260);
  opt.max_probes = 60;
  EXPECT_TRUE(CheckLayer(lin, {3, 300}, &tracker, opt));
}

// ---------------------------------------------------------------------------------------------
// Conv2d

// Direct convolution loops, OIHW weights, zero padding, in double.
std::vector<float> RefConv2d(const std::vector<float>& x, const Shape& in, int64_t out_c, int64_t k,
                             int64_t s, int64_t p, const float* w, const float* b) {
  const int64_t n = in[0], c = in[1], h = in[2], wd = in[3];
  const int64_t oh = (h + 2 * p - k) / s + 1, ow = (wd + 2 * p - k) / s + 1;
  std::vector<float> y(static_cast<size_t>(n * out_c * oh * ow));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t o = 0; o < out_c; ++o) {
      for (int64_t r = 0; r < oh; ++r) {
        for (int64_t q = 0; q < ow; ++q) {
          double acc = b != nullptr ? b[o] : 0.0;
          for (int64_t ch = 0; ch < c; ++ch) {
            for (int64_t ki = 0; ki < k; ++ki) {
              for (int64_t kj = 0; kj < k; ++kj) {
                const int64_t iy = r * s - p + ki, ix = q * s - p + kj;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                acc += static_cast<double>(x[((i * c + ch) * h + iy) * wd + ix]) *
                       w[((o * c + ch) * k + ki) * k + kj];
              }
            }
          }
          y[((i * out_c + o) * oh + r) * ow + q] = static_cast<float>(acc);
        }
      }
    }
  }
  return y;
}

struct ConvCase {
  int64_t in_c, out_c, kernel, stride, padding;
  bool bias;
  Shape in;
};

LayerCheckOptions ConvOptions(Conv2d& conv, const ConvCase& c) {
  LayerCheckOptions opt;
  opt.reference = [&conv, c](const std::vector<float>& x) {
    return RefConv2d(x, c.in, c.out_c, c.kernel, c.stride, c.padding, conv.weight().data(),
                     conv.bias() ? conv.bias()->data() : nullptr);
  };
  return opt;
}

TEST(Conv2dTest, DescribeAndShapes) {
  MemoryTracker tracker;
  Conv2d conv(1, 32, 5, 1, 2, true, &tracker);
  EXPECT_EQ(conv.OutputShape({4, 1, 28, 28}).value(), (Shape{4, 32, 28, 28}));
  EXPECT_EQ(Conv2d(3, 8, 3, 2, 0, true, &tracker).OutputShape({1, 3, 7, 8}).value(),
            (Shape{1, 8, 3, 3}));
  EXPECT_FALSE(conv.OutputShape({4, 3, 28, 28}).ok());
  EXPECT_NE(conv.Describe().find("Conv2d(1, 32"), std::string::npos);
}

TEST(Conv2dTest, GradientsAllModes) {
  MemoryTracker tracker;
  // Padded 3x3, strided without padding, pointwise (1x1), strided and padded without bias.
  for (const ConvCase& c :
       {ConvCase{3, 4, 3, 1, 1, true, {2, 3, 6, 5}}, ConvCase{2, 3, 3, 2, 0, true, {2, 2, 7, 7}},
        ConvCase{3, 5, 1, 1, 0, true, {2, 3, 4, 4}},
        ConvCase{2, 3, 3, 2, 1, false, {3, 2, 5, 6}}}) {
    Conv2d conv(c.in_c, c.out_c, c.kernel, c.stride, c.padding, c.bias, &tracker);
    InitAll(conv, 5);
    LayerCheckOptions opt = ConvOptions(conv, c);
    for (LayerMode m : {kBoth, kInputGradOnly, kParamGradOnly, kForwardOnly}) {
      opt.mode = m;
      EXPECT_TRUE(CheckLayer(conv, c.in, &tracker, opt)) << conv.Describe();
    }
  }
}

TEST(Conv2dTest, GradientsWithHalfTheOutputChannelsFrozen) {
  MemoryTracker tracker;
  const ConvCase c{3, 6, 3, 1, 1, true, {2, 3, 5, 5}};
  Conv2d conv(c.in_c, c.out_c, c.kernel, c.stride, c.padding, c.bias, &tracker);
  InitAll(conv, 6);
  conv.weight().SetRowsTrainable(0, 3, false);
  conv.bias()->SetRowsTrainable(2, 4, false);
  LayerCheckOptions opt = ConvOptions(conv, c);
  for (LayerMode m : {kBoth, kParamGradOnly}) {
    opt.mode = m;
    EXPECT_TRUE(CheckLayer(conv, c.in, &tracker, opt));
  }
  conv.weight().SetTrainable(false);
  conv.bias()->SetTrainable(false);
  opt.mode = kBoth;
  EXPECT_TRUE(CheckLayer(conv, c.in, &tracker, opt));
}

TEST(Conv2dTest, BatchLargerThanOneGradientChunk) {
  // More samples than one weight-gradient task holds, so tasks and threads split the batch.
  MemoryTracker tracker;
  const ConvCase c{2, 3, 3, 1, 1, true, {19, 2, 4, 4}};
  Conv2d conv(c.in_c, c.out_c, c.kernel, c.stride, c.padding, c.bias, &tracker);
  InitAll(conv, 7);
  conv.weight().SetRowsTrainable(1, 2, false);
  LayerCheckOptions opt = ConvOptions(conv, c);
  opt.max_probes = 100;
  EXPECT_TRUE(CheckLayer(conv, c.in, &tracker, opt));
}

TEST(Conv2dTest, ManyIm2ColTiles) {
  // Wide windows: an im2col tile holds only a few output rows, so the columns of a sample come
  // in several tiles (4 here at stride 1, 2 at stride 2), for forward, both gradients and
  // Col2Im's adding up.
  MemoryTracker tracker;
  for (const ConvCase& c : {ConvCase{80, 3, 5, 1, 2, true, {2, 80, 7, 7}},
                            ConvCase{200, 2, 3, 2, 1, true, {2, 200, 9, 9}}}) {
    Conv2d conv(c.in_c, c.out_c, c.kernel, c.stride, c.padding, c.bias, &tracker);
    InitAll(conv, 8);
    conv.weight().SetRowsTrainable(0, 1, false);
    LayerCheckOptions opt = ConvOptions(conv, c);
    opt.max_probes = 60;
    opt.ref_atol = opt.ref_rtol = 1e-4;
    EXPECT_TRUE(CheckLayer(conv, c.in, &tracker, opt)) << conv.Describe();
  }
}

// ---------------------------------------------------------------------------------------------
// Per-row mixed storage: frozen rows int8, trainable rows float32

// Runs `mixed` (int8 frozen rows) and a float32 twin holding the same dequantised values through
// Forward and Backward in mode m and expects the same y, dx and gradients (up to the summation
// order of the weight tiles).
void ExpectMixedMatchesDense(Layer& mixed, Layer& dense, const Shape& in, LayerMode m,
                             MemoryTracker* tracker) {
  SCOPED_TRACE(mixed.Describe() + " param_grad " + std::to_string(m.param_grad) + " input_grad " +
               std::to_string(m.input_grad));
  const std::vector<Parameter*> mp = mixed.Params(), dp = dense.Params();
  for (size_t k = 0; k < mp.size(); ++k) {
    for (int64_t r = 0; r < mp[k]->rows(); ++r) {
      dp[k]->SetRowsTrainable(r, r + 1, mp[k]->row_trainable(r));
    }
    mp[k]->SetStorage(FrozenStorage::kInt8);
    mp[k]->ReadRows(0, mp[k]->rows(), dp[k]->data());
    for (Parameter* p : {mp[k], dp[k]}) {
      p->grad() = Tensor(tracker, MemCategory::kGradients, {p->trainable_numel()});
    }
  }
  ASSERT_TRUE(mp[0]->quantized());
  PlanContext pm{2, FrozenStorage::kInt8}, pd{2, FrozenStorage::kFloat32};
  HandContext hm(mixed, in, m, tracker, pm), hd(dense, in, m, tracker, pd);
  const Shape out = mixed.OutputShape(in).value();
  Rng rng(5);
  std::vector<float> x(static_cast<size_t>(NumElements(in))),
      dy(static_cast<size_t>(NumElements(out)));
  FillUniform(rng, x);
  FillUniform(rng, dy);
  std::vector<float> ym(dy.size()), yd(dy.size()), dxm(x.size()), dxd(x.size());
  mixed.Forward(View{x.data(), in}, View{ym.data(), out}, hm.ctx);
  dense.Forward(View{x.data(), in}, View{yd.data(), out}, hd.ctx);
  auto expect_near = [](const float* a, const float* b, int64_t n, const std::string& what) {
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(a[i], b[i], 1e-4 * (1 + std::fabs(b[i]))) << what << "[" << i << "]";
    }
  };
  expect_near(ym.data(), yd.data(), static_cast<int64_t>(ym.size()), "y");
  if (!m.backward()) return;
  mixed.Backward(View{x.data(), in}, View{ym.data(), out}, View{dy.data(), out},
                 View{dxm.data(), in}, hm.ctx);
  dense.Backward(View{x.data(), in}, View{yd.data(), out}, View{dy.data(), out},
                 View{dxd.data(), in}, hd.ctx);
  if (m.input_grad) expect_near(dxm.data(), dxd.data(), static_cast<int64_t>(x.size()), "dx");
  if (!m.param_grad) return;
  for (size_t k = 0; k < mp.size(); ++k) {
    expect_near(mp[k]->grad().data(), dp[k]->grad().data(), mp[k]->trainable_numel(),
                mp[k]->name() + " grad");
  }
}

TEST(MixedStorageTest, LinearWithInt8FrozenRowsMatchesItsFloatTwin) {
  // 260 rows in two output blocks; int8 segments over both, and wide enough (300) that a
  // frozen tile takes several column chunks.
  for (LayerMode m : {kBoth, kInputGradOnly, kParamGradOnly, kForwardOnly}) {
    MemoryTracker tracker;
    Linear mixed(300, 260, true, &tracker), dense(300, 260, true, &tracker);
    InitAll(mixed, 11);
    mixed.weight().SetTrainable(false);
    mixed.weight().SetRowsTrainable(40, 60, true);
    mixed.weight().SetRowsTrainable(200, 230, true);
    ExpectMixedMatchesDense(mixed, dense, {5, 300}, m, &tracker);
  }
  // Passes of one or two rows multiply the int8 rows directly.
  for (int64_t n : {1, 2}) {
    MemoryTracker tracker;
    Linear mixed(300, 260, true, &tracker), dense(300, 260, true, &tracker);
    InitAll(mixed, 13);
    mixed.weight().SetTrainable(false);
    mixed.weight().SetRowsTrainable(40, 60, true);
    ExpectMixedMatchesDense(mixed, dense, {n, 300}, kBoth, &tracker);
  }
}

TEST(MixedStorageTest, ConvWithInt8FrozenChannelsMatchesItsFloatTwin) {
  // 50 output channels of 720 weights: int8 channels come in two dequantised tiles.
  for (LayerMode m : {kBoth, kInputGradOnly, kParamGradOnly, kForwardOnly}) {
    MemoryTracker tracker;
    Conv2d mixed(80, 50, 3, 1, 1, true, &tracker), dense(80, 50, 3, 1, 1, true, &tracker);
    InitAll(mixed, 12);
    mixed.weight().SetTrainable(false);
    mixed.weight().SetRowsTrainable(2, 3, true);
    ExpectMixedMatchesDense(mixed, dense, {2, 80, 6, 6}, m, &tracker);
  }
}

TEST(MixedStorageTest, StorageKeepsTrainableRowsExactAndCountsBytes) {
  MemoryTracker tracker;
  Parameter p("w", {6, 5}, &tracker);
  Rng rng(2);
  for (int64_t i = 0; i < 30; ++i) p.data()[i] = static_cast<float>(rng.Normal());
  const std::vector<float> before(p.data(), p.data() + 30);
  p.SetRowsTrainable(0, 6, false);
  p.SetRowsTrainable(1, 3, true);
  p.SetRowsTrainable(5, 6, true);
  const int64_t live0 = tracker.stats().live_total;
  p.SetStorage(FrozenStorage::kInt8);
  EXPECT_TRUE(p.quantized());
  // 3 trainable rows as float32, 3 frozen rows as int8 with one scale each.
  EXPECT_EQ(p.ValueBytes(FrozenStorage::kInt8), 3 * 5 * 4 + 3 * 5 + 3 * 4);
  EXPECT_EQ(tracker.stats().live_total - live0, p.ValueBytes(FrozenStorage::kInt8) - 30 * 4);
  std::vector<float> rows(30);
  p.ReadRows(0, 6, rows.data());
  for (int64_t r = 0; r < 6; ++r) {
    for (int64_t j = 0; j < 5; ++j) {
      const float want = before[r * 5 + j], got = rows[r * 5 + j];
      if (p.row_trainable(r)) {
        EXPECT_EQ(got, want) << r;  // trainable rows are the float32 values themselves
      } else {
        EXPECT_NEAR(got, want, std::fabs(want) / 100 + 0.02) << r;  // int8, per-row scale
      }
    }
  }
  // Segments cover the rows in order, alternating as stored; RunData is the packed store.
  std::vector<std::pair<int64_t, bool>> seen;
  p.ForEachSegment(0, 6, [&](const RowSegment& s) { seen.push_back({s.begin, s.f32 != nullptr}); });
  EXPECT_EQ(seen,
            (std::vector<std::pair<int64_t, bool>>{{0, false}, {1, true}, {3, false}, {5, true}}));
  EXPECT_EQ(p.RunData(p.runs()[1])[0], before[25]);
  // Back to float32: trainable rows exact, frozen rows the dequantised values.
  p.SetStorage(FrozenStorage::kFloat32);
  EXPECT_FALSE(p.quantized());
  EXPECT_EQ(std::vector<float>(p.data(), p.data() + 30), rows);
}

// ---------------------------------------------------------------------------------------------
// ReLU, MaxPool2d, Flatten

TEST(ReluTest, GradientsAndReference) {
  MemoryTracker tracker;
  ReLU relu;
  EXPECT_EQ(relu.Describe(), "ReLU()");
  LayerCheckOptions opt;
  opt.fill_input = Spaced;
  opt.reference = [](const std::vector<float>& x) {
    std::vector<float> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = std::max(x[i], 0.0f);
    return y;
  };
  opt.ref_atol = opt.ref_rtol = 0;
  for (LayerMode m : {kInputGradOnly, kForwardOnly}) {
    opt.mode = m;
    EXPECT_TRUE(CheckLayer(relu, {3, 4, 5}, &tracker, opt));
  }
  opt.mode = kInputGradOnly;
  opt.max_probes = 50;
  EXPECT_TRUE(CheckLayer(relu, {3, 20000}, &tracker, opt));  // several tasks
}

// Plain-loop max pooling, no padding.
std::vector<float> RefMaxPool(const std::vector<float>& x, const Shape& in, int64_t k, int64_t s) {
  const int64_t planes = in[0] * in[1], h = in[2], w = in[3];
  const int64_t oh = (h - k) / s + 1, ow = (w - k) / s + 1;
  std::vector<float> y(static_cast<size_t>(planes * oh * ow));
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t i = 0; i < oh; ++i) {
      for (int64_t j = 0; j < ow; ++j) {
        float m = -INFINITY;
        for (int64_t a = 0; a < k; ++a) {
          for (int64_t b = 0; b < k; ++b) m = std::max(m, x[(p * h + i * s + a) * w + j * s + b]);
        }
        y[(p * oh + i) * ow + j] = m;
      }
    }
  }
  return y;
}

TEST(MaxPool2dTest, GradientsAndReference) {
  MemoryTracker tracker;
  struct Case {
    int64_t kernel, stride;
    Shape in;
  };
  // Non-overlapping with leftover rows / columns, overlapping, gapped.
  for (const Case& c :
       {Case{2, 2, {2, 3, 7, 6}}, Case{3, 2, {2, 2, 7, 8}}, Case{2, 3, {1, 2, 8, 7}}}) {
    MaxPool2d pool(c.kernel, c.stride);
    EXPECT_EQ(pool.OutputShape(c.in).value(),
              (Shape{c.in[0], c.in[1], (c.in[2] - c.kernel) / c.stride + 1,
                     (c.in[3] - c.kernel) / c.stride + 1}));
    LayerCheckOptions opt;
    opt.fill_input = Spaced;
    opt.reference = [&](const std::vector<float>& x) {
      return RefMaxPool(x, c.in, c.kernel, c.stride);
    };
    opt.ref_atol = opt.ref_rtol = 0;
    for (LayerMode m : {kInputGradOnly, kForwardOnly}) {
      opt.mode = m;
      EXPECT_TRUE(CheckLayer(pool, c.in, &tracker, opt)) << pool.Describe();
    }
  }
}

TEST(FlattenTest, IsAViewWithIdentityGradient) {
  MemoryTracker tracker;
  Flatten flat;
  EXPECT_EQ(flat.OutputShape({2, 3, 4, 5}).value(), (Shape{2, 60}));
  EXPECT_TRUE(flat.IsView());
  LayerCheckOptions opt;
  opt.mode = kInputGradOnly;
  opt.reference = [](const std::vector<float>& x) { return x; };
  opt.ref_atol = opt.ref_rtol = 0;
  EXPECT_TRUE(CheckLayer(flat, {2, 3, 4, 5}, &tracker, opt));
}

}  // namespace
}  // namespace ftte
