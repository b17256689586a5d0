// Shamir secret sharing (Shamir 1979) of 32-byte secrets over the prime field GF(2^61 - 1), for
// secure aggregation (secagg.h): a member's keys are split so that any `threshold` of its
// neighbours can rebuild them and fewer learn nothing.
//
// A secret is cut into five chunks (four of 7 bytes, one of 4), each below the prime; each chunk
// is the constant term of its own random polynomial of degree threshold - 1, and a share is the
// five polynomials' values at the holder's point x (1 <= x < 2^31; x = 0 would be the secret).
// The randomness comes from the caller's ChaCha20 stream (a device seeds it from the operating
// system, the simulator from its seed), so sharing is deterministic given the stream.
#ifndef FTTE_FL_SHAMIR_H_
#define FTTE_FL_SHAMIR_H_

#include <array>
#include <cstdint>
#include <vector>

#include "ftte/core/status.h"

namespace ftte::fl {

using Secret32 = std::array<uint8_t, 32>;

// A ChaCha20 keystream (libsodium) under a 32-byte key: bytes and uniform field elements.
class KeyStream {
 public:
  explicit KeyStream(const Secret32& key);
  void Fill(uint8_t* out, size_t n);
  uint64_t FieldElement();  // uniform in [0, 2^61 - 1) by rejection

 private:
  Secret32 key_;
  uint64_t block_ = 0;  // the next 64-byte ChaCha20 block
  uint8_t buffer_[256];
  size_t used_ = sizeof buffer_;
};

struct ShamirShare {
  uint32_t x = 0;                  // the holder's point, >= 1
  std::array<uint64_t, 5> y = {};  // one value per chunk, each < 2^61 - 1
};

constexpr uint64_t kShamirPrime = (uint64_t{1} << 61) - 1;

// One share per point in `xs` (distinct, in [1, 2^31)); 1 <= threshold <= xs.size(). Aborts on
// a caller bug (duplicate or zero point, threshold out of range).
std::vector<ShamirShare> ShamirSplit(const Secret32& secret, int threshold,
                                     const std::vector<uint32_t>& xs, KeyStream* random);

// The secret from exactly `threshold` of its shares (the first threshold given are used; points
// must be distinct). Shares from different secrets, or altered ones, give a wrong secret that a
// caller must catch with a check of its own (a public key, a commitment); a chunk outside its
// range is reported as DataLoss.
Result<Secret32> ShamirCombine(const std::vector<ShamirShare>& shares, int threshold);

// The value at point x of the polynomials through the first `threshold` shares: to tell which
// other shares lie on them (a consistency check after a verified combine).
std::array<uint64_t, 5> ShamirEvaluate(const std::vector<ShamirShare>& shares, int threshold,
                                       uint32_t x);

}  // namespace ftte::fl

#endif  // FTTE_FL_SHAMIR_H_
