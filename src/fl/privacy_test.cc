#include "ftte/fl/privacy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace ftte::fl {
namespace {

// Published values of the sampled Gaussian's RDP: Google's dp_accounting test suite
// (rdp_privacy_accountant_test.py, test_compute_rdp_poisson_sampled_gaussian: q = 0.01,
// noise multiplier 2.5, 50 steps) at its integer orders.
TEST(PrivacyTest, MatchesPublishedRdpOfThePoissonSampledGaussian) {
  RdpAccountant acc({5, 50, 100});
  acc.Compose(0.01, 2.5, 50);
  EXPECT_NEAR(acc.rdp()[0], 2.18075656e-03, 1e-4 * 2.18075656e-03);
  EXPECT_NEAR(acc.rdp()[1], 2.38460375e-02, 1e-4 * 2.38460375e-02);
  EXPECT_NEAR(acc.rdp()[2], 1.67416308e+02, 1e-4 * 1.67416308e+02);
  EXPECT_EQ(acc.steps(), 50);
}

// The same suite's hand-computed conversion: RDP 1.1 at every order 2..32 is (1.32783806176,
// 1e-5)-DP, at order 32.
TEST(PrivacyTest, ConversionToEpsilonMatchesTheHandComputedValue) {
  std::vector<double> orders, rdp;
  for (int a = 2; a <= 32; ++a) {
    orders.push_back(a);
    rdp.push_back(1.1);
  }
  const PrivacySpent s = EpsilonFromRdp(orders, rdp, 1e-5);
  EXPECT_NEAR(s.epsilon, 1.32783806176, 1e-9);
  EXPECT_EQ(s.order, 32);
}

// Abadi et al. 2016 (section 3.1): q = 0.01, sigma = 4, 10,000 steps, delta = 1e-5 is about
// (1.26, 1e-5)-DP by the moments accountant. RDP with the tighter conversion must not be
// looser, and cannot be far tighter for the same mechanism.
TEST(PrivacyTest, AbadiEtAlSettingIsAtMostTheMomentsAccountantsEpsilon) {
  RdpAccountant acc;
  acc.Compose(0.01, 4, 10000);
  const PrivacySpent s = acc.Spent(1e-5);
  EXPECT_LE(s.epsilon, 1.26);
  EXPECT_GE(s.epsilon, 1.0);
  // The Gaussian without sampling, closed form at any order: a / (2 sigma^2) per step.
  EXPECT_DOUBLE_EQ(RdpSampledGaussian(1, 4, 7.5), 7.5 / 32);
}

// A second, independent computation: A_a as the integral over z ~ N(0, sigma^2) of
// ((1 - q) + q exp((2z - 1) / (2 sigma^2)))^a, by the trapezoid rule on a wide grid.
TEST(PrivacyTest, EqualsNumericalIntegrationOfTheRenyiDivergence) {
  struct Case {
    double q, sigma;
    int order;
  };
  for (const Case& c : {Case{0.01, 1.0, 2}, Case{0.05, 0.8, 8}, Case{0.2, 2.0, 16},
                        Case{0.001, 0.5, 32}, Case{0.5, 5.0, 64}}) {
    const double s = c.sigma;
    // In log space: the integrand's mass moves far right for large orders and small sigma.
    const double lo = -30 * s - 10, hi = 30 * s + 2 * c.order + 10;
    const int n = 400000;
    const double h = (hi - lo) / n;
    double log_sum = -std::numeric_limits<double>::infinity();
    for (int i = 0; i <= n; ++i) {
      const double z = lo + h * i;
      const double log_pdf = -z * z / (2 * s * s) - std::log(s * std::sqrt(2 * M_PI));
      const double t = (2 * z - 1) / (2 * s * s);  // log of exp(t); ratio = (1-q) + q e^t
      const double log_ratio = t > 0 ? t + std::log(c.q + (1 - c.q) * std::exp(-t))
                                     : std::log((1 - c.q) + c.q * std::exp(t));
      const double term = log_pdf + c.order * log_ratio + (i == 0 || i == n ? std::log(0.5) : 0);
      const double m = std::max(log_sum, term);
      log_sum = m + std::log(std::exp(log_sum - m) + std::exp(term - m));
    }
    const double rdp = (log_sum + std::log(h)) / (c.order - 1);
    EXPECT_NEAR(RdpSampledGaussian(c.q, c.sigma, c.order), rdp, 1e-6 * std::max(1.0, rdp))
        << "q " << c.q << " sigma " << c.sigma << " order " << c.order;
  }
}

TEST(PrivacyTest, MaxGaussianLoadIsTheLargestLoadWithinTheBudget) {
  for (double target : {0.5, 1.0, 3.0, 8.0}) {
    const int64_t l = MaxGaussianLoad(1.2, 1e-6, target);
    EXPECT_LE(GaussianEpsilon(1.2, 1e-6, l), target);
    EXPECT_GT(GaussianEpsilon(1.2, 1e-6, l + 1), target);
  }
  EXPECT_EQ(MaxGaussianLoad(0.3, 1e-6, 0.01), 0);  // one mechanism already costs more
  EXPECT_EQ(GaussianEpsilon(1.0, 1e-6, 0), 0);
}

TEST(PrivacyTest, MoreStepsSpendMoreAndMoreNoiseSpendsLess) {
  double prev = 0;
  for (int64_t steps : {1, 10, 100, 1000}) {
    RdpAccountant acc;
    acc.Compose(0.02, 1.0, steps);
    const double eps = acc.Spent(1e-5).epsilon;
    EXPECT_GT(eps, prev);
    prev = eps;
  }
  prev = std::numeric_limits<double>::infinity();
  for (double sigma : {0.5, 1.0, 2.0, 4.0}) {
    RdpAccountant acc;
    acc.Compose(0.02, sigma, 100);
    const double eps = acc.Spent(1e-5).epsilon;
    EXPECT_LT(eps, prev);
    prev = eps;
  }
  // Edges: nobody sampled spends nothing; no noise is no privacy.
  RdpAccountant none;
  none.Compose(0, 1.0, 100);
  EXPECT_EQ(none.Spent(1e-5).epsilon, 0);
  RdpAccountant open;
  open.Compose(0.1, 0, 1);
  EXPECT_TRUE(std::isinf(open.Spent(1e-5).epsilon));
}

// NoiseForLoad inverts MaxGaussianLoad: the noise it gives fits the load, a little less does not.
TEST(PrivacyTest, NoiseForLoadIsTheSmallestNoiseWithinTheBudget) {
  for (const auto& [eps, load] :
       std::vector<std::pair<double, int64_t>>{{1, 1}, {8, 50}, {3, 400}}) {
    const double z = NoiseForLoad(1e-6, eps, load);
    EXPECT_LE(GaussianEpsilon(z, 1e-6, load), eps);
    EXPECT_GT(GaussianEpsilon(z * (1 - 1e-5), 1e-6, load), eps);
    EXPECT_GE(MaxGaussianLoad(z, 1e-6, eps), load);
  }
}

// The device's part of distributed DP: clipped to the bound, then noise of the given standard
// deviation on every value, repeatable under one key and independent across keys.
TEST(PrivacyTest, PrivatizeUpdateClipsAndAddsTheNoiseOfItsKey) {
  const size_t n = 200000;
  std::vector<float> zero(n, 0.0f);
  std::vector<float> a = zero;
  EXPECT_FALSE(PrivatizeUpdate(&a, 1.0, 0.5, DerivedNoiseKey(1)));
  double sum = 0, sq = 0;
  for (float x : a) {
    sum += x;
    sq += static_cast<double>(x) * x;
  }
  const double mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
  EXPECT_NEAR(mean, 0, 0.005);
  EXPECT_NEAR(sd, 0.5, 0.005);
  size_t beyond = 0;  // a normal tail, not a bounded one: ~0.27% beyond 3 sd
  for (float x : a) beyond += std::fabs(x) > 1.5;
  EXPECT_NEAR(static_cast<double>(beyond) / n, 0.0027, 0.0007);
  std::vector<float> again = zero, other = zero;
  PrivatizeUpdate(&again, 1.0, 0.5, DerivedNoiseKey(1));
  PrivatizeUpdate(&other, 1.0, 0.5, DerivedNoiseKey(2));
  EXPECT_EQ(again, a);
  EXPECT_NE(other, a);
  double dot = 0;  // independent streams: correlation ~ 0
  for (size_t i = 0; i < n; ++i) dot += static_cast<double>(a[i]) * other[i];
  EXPECT_NEAR(dot / (n * 0.25), 0, 0.01);
  // Clipping before the noise: norm 10 -> 1, no noise -> exactly the scaled update.
  std::vector<float> big = {6, 8};
  EXPECT_TRUE(PrivatizeUpdate(&big, 1.0, 0.0, RandomNoiseKey()));
  EXPECT_FLOAT_EQ(big[0], 0.6f);
  EXPECT_FLOAT_EQ(big[1], 0.8f);
  std::vector<float> bad = {NAN, 1};  // non-finite: nothing of it leaves, only noise
  PrivatizeUpdate(&bad, 1.0, 0.0, RandomNoiseKey());
  EXPECT_EQ(bad, std::vector<float>({0, 0}));
  EXPECT_NE(RandomNoiseKey(), RandomNoiseKey());
}

}  // namespace
}  // namespace ftte::fl
