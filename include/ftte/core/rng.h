// A small, fast, portable RNG (xoshiro256**, seeded by SplitMix64). Portable means the same
// seed gives the same numbers with any compiler and standard library, unlike std::*_distribution.
// Each object that draws random numbers owns one; there is no global RNG.
#ifndef FTTE_CORE_RNG_H_
#define FTTE_CORE_RNG_H_

#include <cstdint>

namespace ftte {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  uint64_t Next();
  // Uniform in [0, 1).
  double Uniform();
  // Uniform integer in [0, n), n > 0.
  uint64_t Below(uint64_t n);
  // Standard normal (Box-Muller).
  double Normal();
  // An independent stream derived from this one's seed and `stream` (does not advance this).
  Rng Fork(uint64_t stream) const;

 private:
  uint64_t seed_;
  uint64_t s_[4];
};

}  // namespace ftte

#endif  // FTTE_CORE_RNG_H_
