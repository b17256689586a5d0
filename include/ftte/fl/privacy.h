// Differential-privacy accounting: the Rényi DP (Mironov 2017) of the sampled Gaussian mechanism
// (Mironov, Talwar & Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism"),
// composed over steps and converted to (epsilon, delta).
//
// One step releases a sum of clipped contributions (L2 norm <= C) plus Gaussian noise of
// standard deviation noise_multiplier * C, where each contributor (for user-level DP: each
// device) was included independently with probability q (Poisson sampling; q = 1: everyone,
// no amplification). For an integer order a >= 2,
//   A_a = sum_{k=0..a} binom(a, k) (1 - q)^(a - k) q^k exp((k^2 - k) / (2 sigma^2)),
//   RDP(a) = log(A_a) / (a - 1),
// and for q = 1 the closed form a / (2 sigma^2) holds at any real order a > 1. RDP adds up over
// steps. The (epsilon, delta) guarantee is the best over the orders of
//   epsilon = RDP(a) + log((a - 1) / a) - (log(delta) + log(a)) / (a - 1)
// (Balle et al. 2020, Canonne, Kamath & Steinke 2020), never below 0.
//
// Which sampling assumption a federated algorithm's accounting may use is the caller's to state:
// asynchronous arrivals are not Poisson sampling (docs/privacy.md once the strategies use it).
#ifndef FTTE_FL_PRIVACY_H_
#define FTTE_FL_PRIVACY_H_

#include <array>
#include <cstdint>
#include <vector>

#include "ftte/core/status.h"

namespace ftte::fl {

// The orders the accountant tracks by default: 2, 3, ..., 64, then 80, 96, 128, 192, 256.
std::vector<double> DefaultRdpOrders();

// RDP of one step at `order`. q in [0, 1], noise_multiplier >= 0; for q < 1 the order must be
// an integer >= 2, for q = 1 any order > 1 (aborts otherwise: a caller bug). q = 0 gives 0;
// noise_multiplier = 0 with q > 0 gives +infinity.
double RdpSampledGaussian(double q, double noise_multiplier, double order);

struct PrivacySpent {
  double epsilon = 0;  // +infinity when no order gives a finite bound
  double order = 0;    // the order that gave it
};

// The (epsilon, delta) of the given per-order RDP values (orders > 1, delta in (0, 1)).
PrivacySpent EpsilonFromRdp(const std::vector<double>& orders, const std::vector<double>& rdp,
                            double delta);

// The epsilon (at delta) of `load` Gaussian mechanisms of this noise multiplier without sampling
// (load a / (2 z^2) at order a), the largest load whose epsilon stays within target_epsilon
// (0 if even one mechanism exceeds it; noise_multiplier > 0, target_epsilon > 0).
double GaussianEpsilon(double noise_multiplier, double delta, int64_t load);
int64_t MaxGaussianLoad(double noise_multiplier, double delta, double target_epsilon);
// The smallest noise multiplier (to a relative 1e-6, rounded up) at which `load` Gaussian
// mechanisms stay within target_epsilon at delta: the inverse of MaxGaussianLoad, to calibrate
// the noise to a budget (load >= 1, target_epsilon > 0).
double NoiseForLoad(double delta, double target_epsilon, int64_t load);

// A [privacy] configuration as a run uses it, the same in `ftte simulate` and `ftte serve`: the
// noise multiplier (the configured one, or with updates_per_device > 0 the one calibrated to
// target_epsilon by NoiseForLoad) and the per-device budget in loads (MaxGaussianLoad of
// target_epsilon; 0 without a target). Refused, naming the fix: updates_per_device with a noise
// multiplier or without a target, no noise (no privacy), a target below one update's cost.
struct PrivacySettings {
  double noise_multiplier = 0;
  int64_t max_load = 0;
};
Result<PrivacySettings> ResolvePrivacy(double noise_multiplier, double delta, double target_epsilon,
                                       int64_t updates_per_device);

// RDP over the default (or given) orders, composed as steps are recorded.
class RdpAccountant {
 public:
  RdpAccountant() : RdpAccountant(DefaultRdpOrders()) {}
  explicit RdpAccountant(std::vector<double> orders);

  // `steps` more steps of the sampled Gaussian mechanism.
  void Compose(double q, double noise_multiplier, int64_t steps = 1);
  PrivacySpent Spent(double delta) const;

  const std::vector<double>& orders() const { return orders_; }
  const std::vector<double>& rdp() const { return rdp_; }
  int64_t steps() const { return steps_; }

 private:
  std::vector<double> orders_, rdp_;
  int64_t steps_ = 0;
};

// Distributed differential privacy, the device's part (docs/privacy.md): a device clips its
// update and adds its share of the noise before the update leaves it, so the server never holds
// an un-noised update. The noise is drawn from a ChaCha20 keystream (libsodium) under a 256-bit
// key: a real device's key comes from the operating system's CSPRNG, so the server cannot
// predict (and subtract) it; the simulator derives keys from its seed, so runs repeat.
using NoiseKey = std::array<uint8_t, 32>;
NoiseKey RandomNoiseKey();
NoiseKey DerivedNoiseKey(uint64_t seed);
// Clips `delta` to L2 norm `clip` (> 0; a non-finite update becomes zero) and adds Gaussian noise
// of standard deviation `stddev` (>= 0) to every value (Box-Muller on 53-bit uniforms of the
// key's stream). Returns whether the clip shortened the update.
bool PrivatizeUpdate(std::vector<float>* delta, double clip, double stddev, const NoiseKey& key);

}  // namespace ftte::fl

#endif  // FTTE_FL_PRIVACY_H_
