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
