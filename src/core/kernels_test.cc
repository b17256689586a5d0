// Kernels without a layer of their own: ExpShifted against std::exp.
#include "ftte/core/kernels.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <vector>

namespace ftte {
namespace {

TEST(ExpShiftedTest, MatchesStdExpToTwoUlpsAndFlushesUnderflowToZero) {
  std::vector<float> x;
  for (float t = -100.0f; t <= 0.0f; t += 0.001953125f) x.push_back(t + 3.5f);
  x.push_back(3.5f);  // exp(0) = 1 exactly
  std::vector<float> y(x.size());
  ExpShifted(x.data(), static_cast<int64_t>(x.size()), 3.5f, y.data());
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double t = static_cast<double>(x[i] - 3.5f);
    const double want = std::exp(t);
    if (want < FLT_MIN) {
      EXPECT_LE(y[i], FLT_MIN) << "t = " << t;
      continue;
    }
    worst = std::max(worst, std::abs(y[i] - want) / want);
  }
  EXPECT_LT(worst, 2e-7);
  EXPECT_EQ(y.back(), 1.0f);
  // The scalar remainder path gives the same bits as the vector path.
  for (size_t i = 0; i < x.size(); i += 97) {
    float one;
    ExpShifted(&x[i], 1, 3.5f, &one);
    EXPECT_EQ(one, y[i]) << "t = " << x[i] - 3.5f;
  }
  // In place.
  std::vector<float> z = x;
  ExpShifted(z.data(), static_cast<int64_t>(z.size()), 3.5f, z.data());
  EXPECT_EQ(z, y);
}

}  // namespace
}  // namespace ftte
