#include "ftte/fl/privacy.h"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
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

Result<PrivacySettings> ResolvePrivacy(double noise_multiplier, double delta, double target_epsilon,
                                       int64_t updates_per_device) {
  PrivacySettings p;
  p.noise_multiplier = noise_multiplier;
  if (updates_per_device > 0) {
    if (noise_multiplier != 0 || target_epsilon <= 0) {
      return InvalidArgument(
          "[privacy] updates_per_device calibrates the noise to target_epsilon: set "
          "noise_multiplier = 0 and target_epsilon (e.g. 8), or drop updates_per_device to "
          "give noise_multiplier yourself");
    }
    p.noise_multiplier = NoiseForLoad(delta, target_epsilon, updates_per_device);
  }
  if (!(p.noise_multiplier > 0)) {
    return InvalidArgument(
        "[privacy] clip > 0 with noise_multiplier = 0 clips but gives no privacy (epsilon is "
        "infinite); set noise_multiplier (e.g. 1.0), or target_epsilon with "
        "updates_per_device to calibrate it, or clip = 0 to turn privacy off");
  }
  if (target_epsilon > 0) {
    p.max_load = MaxGaussianLoad(p.noise_multiplier, delta, target_epsilon);
    if (p.max_load == 0) {
      char msg[256];
      std::snprintf(msg, sizeof msg,
                    "[privacy] target_epsilon %g is below what one update costs at "
                    "noise_multiplier %g and delta %g (epsilon %.3g): no device could take "
                    "part; raise noise_multiplier or target_epsilon",
                    target_epsilon, p.noise_multiplier, delta,
                    GaussianEpsilon(p.noise_multiplier, delta, 1));
      return InvalidArgument(msg);
    }
  }
  return p;
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

namespace {

void InitSodium() {
  FTTE_CHECK(sodium_init() >= 0) << "libsodium could not initialise (no entropy source?)";
}

}  // namespace

NoiseKey RandomNoiseKey() {
  InitSodium();
  NoiseKey key;
  randombytes_buf(key.data(), key.size());
  return key;
}

NoiseKey DerivedNoiseKey(uint64_t seed) {
  InitSodium();
  uint8_t in[16] = {'f', 't', 't', 'e', '-', 'n', 'o', 'i'};
  std::memcpy(in + 8, &seed, sizeof seed);
  NoiseKey key;
  crypto_generichash(key.data(), key.size(), in, sizeof in, nullptr, 0);  // BLAKE2b
  return key;
}

bool PrivatizeUpdate(std::vector<float>* delta, double clip, double stddev, const NoiseKey& key) {
  FTTE_CHECK(clip > 0 && stddev >= 0) << "clip " << clip << ", stddev " << stddev;
  InitSodium();
  double sq = 0;
  for (float x : *delta) sq += static_cast<double>(x) * x;
  const double norm = std::sqrt(sq);
  const bool clipped = !(norm <= clip);
  const double scale = !std::isfinite(norm) ? 0 : clipped ? clip / norm : 1;
  // Two normals per 16 bytes of keystream, a block of values at a time.
  constexpr size_t kBlock = 2048;
  uint64_t bits[kBlock];
  const uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {};
  uint32_t counter = 0;  // in 64-byte ChaCha20 blocks
  const size_t n = delta->size();
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t count = std::min(kBlock, n - start);
    const size_t pairs = (count + 1) / 2;
    uint8_t* stream = reinterpret_cast<uint8_t*>(bits);
    std::fill(bits, bits + 2 * pairs, uint64_t{0});  // zeros xor the keystream: the keystream
    crypto_stream_chacha20_ietf_xor_ic(stream, stream, pairs * 16, nonce, counter, key.data());
    counter += static_cast<uint32_t>((pairs * 16 + 63) / 64);
    for (size_t p = 0; p < pairs; ++p) {
      const double u1 = (static_cast<double>(bits[2 * p] >> 11) + 1) * 0x1p-53;  // (0, 1]
      const double u2 = static_cast<double>(bits[2 * p + 1] >> 11) * 0x1p-53;    // [0, 1)
      const double r = std::sqrt(-2 * std::log(u1)), t = 2 * M_PI * u2;
      for (size_t k = 0; k < 2 && 2 * p + k < count; ++k) {
        float& v = (*delta)[start + 2 * p + k];
        const double x = std::isfinite(v) ? v * scale : 0;
        v = static_cast<float>(x + stddev * r * (k == 0 ? std::cos(t) : std::sin(t)));
      }
    }
  }
  return clipped;
}

}  // namespace ftte::fl
