#include "ftte/fl/shamir.h"

#include <sodium.h>

#include <cstring>
#include <set>

namespace ftte::fl {
namespace {

__extension__ using Uint128 = unsigned __int128;  // GCC and Clang, for the field product
constexpr uint64_t kP = kShamirPrime;
constexpr int kChunks = 5;
constexpr int kChunkBytes[kChunks] = {7, 7, 7, 7, 4};

uint64_t Reduce(Uint128 v) {
  // 2^61 = 1 (mod p): fold the high bits onto the low ones twice, then one subtraction.
  uint64_t lo = static_cast<uint64_t>(v & kP), hi = static_cast<uint64_t>(v >> 61);
  uint64_t r = lo + (hi & kP) + (hi >> 61);
  r = (r & kP) + (r >> 61);
  return r >= kP ? r - kP : r;
}
uint64_t Add(uint64_t a, uint64_t b) { return Reduce(static_cast<Uint128>(a) + b); }
uint64_t Sub(uint64_t a, uint64_t b) { return a >= b ? a - b : a + kP - b; }
uint64_t Mul(uint64_t a, uint64_t b) { return Reduce(static_cast<Uint128>(a) * b); }
uint64_t Pow(uint64_t a, uint64_t e) {
  uint64_t r = 1;
  for (; e; e >>= 1, a = Mul(a, a)) {
    if (e & 1) r = Mul(r, a);
  }
  return r;
}
uint64_t Inverse(uint64_t a) { return Pow(a, kP - 2); }  // Fermat; a != 0

// Lagrange basis values at `at` of the first `threshold` points.
std::vector<uint64_t> Basis(const std::vector<ShamirShare>& shares, int threshold, uint64_t at) {
  std::vector<uint64_t> basis(threshold);
  for (int i = 0; i < threshold; ++i) {
    uint64_t num = 1, den = 1;
    for (int j = 0; j < threshold; ++j) {
      if (j == i) continue;
      FTTE_CHECK(shares[i].x != shares[j].x) << "two shares at point " << shares[i].x;
      num = Mul(num, Sub(at, shares[j].x));
      den = Mul(den, Sub(shares[i].x, shares[j].x));
    }
    basis[i] = Mul(num, Inverse(den));
  }
  return basis;
}

void InitSodium() {
  FTTE_CHECK(sodium_init() >= 0) << "libsodium could not initialise (no entropy source?)";
}

}  // namespace

KeyStream::KeyStream(const Secret32& key) : key_(key) { InitSodium(); }

void KeyStream::Fill(uint8_t* out, size_t n) {
  while (n > 0) {
    if (used_ == sizeof buffer_) {
      static constexpr uint8_t kNonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {};
      std::memset(buffer_, 0, sizeof buffer_);
      FTTE_CHECK(block_ + sizeof buffer_ / 64 <= (uint64_t{1} << 32)) << "key stream exhausted";
      crypto_stream_chacha20_ietf_xor_ic(buffer_, buffer_, sizeof buffer_, kNonce,
                                         static_cast<uint32_t>(block_), key_.data());
      block_ += sizeof buffer_ / 64;
      used_ = 0;
    }
    const size_t take = std::min(n, sizeof buffer_ - used_);
    std::memcpy(out, buffer_ + used_, take);
    used_ += take, out += take, n -= take;
  }
}

uint64_t KeyStream::FieldElement() {
  for (;;) {
    uint64_t v;
    Fill(reinterpret_cast<uint8_t*>(&v), sizeof v);
    v &= kP;  // 61 bits; p itself (all ones) is rejected
    if (v < kP) return v;
  }
}

std::vector<ShamirShare> ShamirSplit(const Secret32& secret, int threshold,
                                     const std::vector<uint32_t>& xs, KeyStream* random) {
  FTTE_CHECK(threshold >= 1 && threshold <= static_cast<int>(xs.size()))
      << "threshold " << threshold << " of " << xs.size() << " shares";
  FTTE_CHECK(std::set<uint32_t>(xs.begin(), xs.end()).size() == xs.size()) << "duplicate points";
  std::vector<ShamirShare> shares(xs.size());
  for (size_t s = 0; s < xs.size(); ++s) {
    FTTE_CHECK(xs[s] >= 1 && xs[s] < (uint32_t{1} << 31)) << "share point " << xs[s];
    shares[s].x = xs[s];
  }
  size_t offset = 0;
  std::vector<uint64_t> coeff(threshold);
  for (int c = 0; c < kChunks; ++c) {
    coeff[0] = 0;
    std::memcpy(&coeff[0], secret.data() + offset, kChunkBytes[c]);  // little-endian chunk
    offset += kChunkBytes[c];
    for (int k = 1; k < threshold; ++k) coeff[k] = random->FieldElement();
    for (auto& share : shares) {
      uint64_t y = 0;  // Horner
      for (int k = threshold - 1; k >= 0; --k) y = Add(Mul(y, share.x), coeff[k]);
      share.y[c] = y;
    }
  }
  return shares;
}

std::array<uint64_t, 5> ShamirEvaluate(const std::vector<ShamirShare>& shares, int threshold,
                                       uint32_t x) {
  FTTE_CHECK(threshold >= 1 && threshold <= static_cast<int>(shares.size()))
      << "threshold " << threshold << " of " << shares.size() << " shares";
  const std::vector<uint64_t> basis = Basis(shares, threshold, x);
  std::array<uint64_t, 5> value = {};
  for (int c = 0; c < kChunks; ++c) {
    for (int i = 0; i < threshold; ++i) value[c] = Add(value[c], Mul(basis[i], shares[i].y[c]));
  }
  return value;
}

Result<Secret32> ShamirCombine(const std::vector<ShamirShare>& shares, int threshold) {
  if (threshold < 1 || static_cast<int>(shares.size()) < threshold) {
    return FailedPrecondition("Shamir: " + std::to_string(shares.size()) +
                              " shares cannot rebuild a secret of threshold " +
                              std::to_string(threshold));
  }
  const std::array<uint64_t, 5> chunks = ShamirEvaluate(shares, threshold, 0);
  Secret32 secret;
  size_t offset = 0;
  for (int c = 0; c < kChunks; ++c) {
    if (chunks[c] >> (8 * kChunkBytes[c]) != 0) {
      return DataLoss("Shamir: the shares do not belong to one secret (chunk " + std::to_string(c) +
                      " out of range)");
    }
    std::memcpy(secret.data() + offset, &chunks[c], kChunkBytes[c]);
    offset += kChunkBytes[c];
  }
  return secret;
}

}  // namespace ftte::fl
