#include "ftte/fl/privacy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ftte/core/check.h"

namespace ftte::fl {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// log(exp(a) + exp(b)) without overflow.
double LogAdd(double a, double b) {
  if (a == -kInf) return b;
  if (b == -kInf) return a;
  const double hi = std::max(a, b), lo = std::min(a, b);
  return hi + std::log1p(std::exp(lo - hi));
}

}  // namespace

std::vector<double> DefaultRdpOrders() {
  std::vector<double> orders;
  for (int a = 2; a <= 64; ++a) orders.push_back(a);
  for (int a : {80, 96, 128, 192, 256}) orders.push_back(a);
  return orders;
}

double RdpSampledGaussian(double q, double noise_multiplier, double order) {
  FTTE_CHECK(q >= 0 && q <= 1) << "sampling probability " << q << " outside [0, 1]";
  FTTE_CHECK(noise_multiplier >= 0) << "noise multiplier " << noise_multiplier;
  FTTE_CHECK(order > 1) << "RDP order " << order << " must exceed 1";
  if (q == 0) return 0;
  if (noise_multiplier == 0) return kInf;
  const double var2 = 2 * noise_multiplier * noise_multiplier;
  if (q == 1) return order / var2;
  FTTE_CHECK(order == std::floor(order)) << "order " << order << ": integer orders only for q < 1";
  const auto a = static_cast<int64_t>(order);
  // log A_a by the binomial expansion, summed in log space.
  double log_a = -kInf;
  const double log_q = std::log(q), log_1q = std::log1p(-q);
  for (int64_t k = 0; k <= a; ++k) {
    const double log_binom = std::lgamma(static_cast<double>(a + 1)) -
                             std::lgamma(static_cast<double>(k + 1)) -
                             std::lgamma(static_cast<double>(a - k + 1));
    const auto kd = static_cast<double>(k);
    log_a = LogAdd(log_a, log_binom + static_cast<double>(a - k) * log_1q + kd * log_q +
                              (kd * kd - kd) / var2);
  }
  return log_a / (order - 1);
}

PrivacySpent EpsilonFromRdp(const std::vector<double>& orders, const std::vector<double>& rdp,
                            double delta) {
  FTTE_CHECK(orders.size() == rdp.size())
      << orders.size() << " orders, " << rdp.size() << " RDP values";
  FTTE_CHECK(delta > 0 && delta < 1) << "delta " << delta << " outside (0, 1)";
  PrivacySpent best{kInf, 0};
  for (size_t i = 0; i < orders.size(); ++i) {
    const double a = orders[i];
    FTTE_CHECK(a > 1) << "RDP order " << a << " must exceed 1";
    if (!std::isfinite(rdp[i])) continue;
    if (rdp[i] == 0) return {0, a};  // a zero divergence: the outputs are identical
    const double eps = rdp[i] + std::log1p(-1 / a) - (std::log(delta) + std::log(a)) / (a - 1);
    if (eps < best.epsilon) best = {eps, a};
  }
  best.epsilon = std::max(best.epsilon, 0.0);
  return best;
}

double GaussianEpsilon(double noise_multiplier, double delta, int64_t load) {
  if (load <= 0) return 0;
  if (noise_multiplier <= 0) return kInf;
  const std::vector<double> orders = DefaultRdpOrders();
  std::vector<double> rdp;
  for (double a : orders) {
    rdp.push_back(static_cast<double>(load) * RdpSampledGaussian(1.0, noise_multiplier, a));
  }
  return EpsilonFromRdp(orders, rdp, delta).epsilon;
}

int64_t MaxGaussianLoad(double noise_multiplier, double delta, double target_epsilon) {
  FTTE_CHECK(noise_multiplier > 0 && target_epsilon > 0)
      << "noise " << noise_multiplier << ", target " << target_epsilon;
  int64_t lo = 0, hi = 1;  // epsilon(lo) <= target < epsilon(hi)
  while (GaussianEpsilon(noise_multiplier, delta, hi) <= target_epsilon) {
    lo = hi;
    hi *= 2;
    if (hi > (int64_t{1} << 50)) return lo;
  }
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (GaussianEpsilon(noise_multiplier, delta, mid) <= target_epsilon ? lo : hi) = mid;
  }
  return lo;
}

double NoiseForLoad(double delta, double target_epsilon, int64_t load) {
  FTTE_CHECK(load >= 1 && target_epsilon > 0) << "load " << load << ", target " << target_epsilon;
  double lo = 1e-3, hi = 1;  // epsilon(lo) > target >= epsilon(hi)
  while (GaussianEpsilon(hi, delta, load) > target_epsilon) hi *= 2;
  while (hi / lo > 1 + 1e-6) {
    const double mid = std::sqrt(lo * hi);
    (GaussianEpsilon(mid, delta, load) > target_epsilon ? lo : hi) = mid;
  }
  return hi;
}

RdpAccountant::RdpAccountant(std::vector<double> orders)
    : orders_(std::move(orders)), rdp_(orders_.size(), 0.0) {
  FTTE_CHECK(!orders_.empty()) << "an accountant needs at least one order";
}

void RdpAccountant::Compose(double q, double noise_multiplier, int64_t steps) {
  FTTE_CHECK(steps >= 0) << "steps " << steps;
  if (steps == 0) return;
  for (size_t i = 0; i < orders_.size(); ++i) {
    rdp_[i] += static_cast<double>(steps) * RdpSampledGaussian(q, noise_multiplier, orders_[i]);
  }
  steps_ += steps;
}

PrivacySpent RdpAccountant::Spent(double delta) const {
  return EpsilonFromRdp(orders_, rdp_, delta);
}

}  // namespace ftte::fl
