#include "ftte/fl/secagg.h"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

namespace ftte::fl::secagg {
namespace {

// Plaintext of one encrypted share pair: two (x, five chunks) shares.
constexpr size_t kSharePairBytes = 2 * (4 + 5 * 8);
constexpr size_t kShareCiphertextBytes =
    kSharePairBytes + crypto_aead_xchacha20poly1305_ietf_ABYTES;
// At most this many threshold-subsets are tried to rebuild one secret around wrong shares.
constexpr int kMaxCombineTries = 4096;

std::string Str(int64_t v) { return std::to_string(v); }

Secret32 Hash(const char (&label)[9], uint64_t cohort_id, const uint8_t* a, size_t an,
              const uint8_t* b = nullptr, size_t bn = 0, const uint8_t* c = nullptr,
              size_t cn = 0) {
  crypto_generichash_state state;  // BLAKE2b-256
  crypto_generichash_init(&state, nullptr, 0, 32);
  crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(label), 8);
  crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(&cohort_id), 8);
  crypto_generichash_update(&state, a, an);
  if (b) crypto_generichash_update(&state, b, bn);
  if (c) crypto_generichash_update(&state, c, cn);
  Secret32 out;
  crypto_generichash_final(&state, out.data(), out.size());
  return out;
}

// X25519 between `secret` (whose public key is `mine`) and `theirs`, hashed with both public
// keys in a fixed order (libsodium's advice for a shared key) and a purpose label. Fails on a
// low-order point (an all-zero shared value).
Result<Secret32> Agree(const char (&label)[9], uint64_t cohort_id, const Secret32& secret,
                       const PublicKey& mine, const PublicKey& theirs) {
  uint8_t shared[crypto_scalarmult_BYTES];
  if (crypto_scalarmult(shared, secret.data(), theirs.data()) != 0) {
    return InvalidArgument("secure aggregation: a public key is not a usable X25519 point");
  }
  const bool mine_first = std::memcmp(mine.data(), theirs.data(), 32) < 0;
  const PublicKey& lo = mine_first ? mine : theirs;
  const PublicKey& hi = mine_first ? theirs : mine;
  Secret32 key = Hash(label, cohort_id, shared, sizeof shared, lo.data(), 32, hi.data(), 32);
  sodium_memzero(shared, sizeof shared);
  return key;
}

PublicKey PublicOf(const Secret32& secret) {
  PublicKey pk;
  crypto_scalarmult_base(pk.data(), secret.data());
  return pk;
}

bool UsablePoint(const PublicKey& key) {
  static const Secret32 kProbe = {9};  // any scalar: clamping makes a low-order point give zero
  uint8_t out[crypto_scalarmult_BYTES];
  return crypto_scalarmult(out, kProbe.data(), key.data()) == 0;
}

Secret32 Commitment(uint64_t cohort_id, const Secret32& seed) {
  return Hash("sa-commt", cohort_id, seed.data(), seed.size());
}

// acc += sign * (the ChaCha20 stream of seed, as little-endian words), mod 2^32.
void AddMask(const Secret32& seed, int sign, uint32_t* acc, int64_t n) {
  constexpr int64_t kWords = 4096;  // 256 ChaCha20 blocks
  static const uint32_t kZeros[kWords] = {};
  uint32_t stream[kWords];
  static constexpr uint8_t kNonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {};
  uint32_t block = 0;
  for (int64_t start = 0; start < n; start += kWords) {
    const int64_t count = std::min(kWords, n - start);
    crypto_stream_chacha20_ietf_xor_ic(reinterpret_cast<uint8_t*>(stream),
                                       reinterpret_cast<const uint8_t*>(kZeros), count * 4, kNonce,
                                       block, seed.data());
    block += kWords * 4 / 64;
    if (sign > 0) {
      for (int64_t i = 0; i < count; ++i) acc[start + i] += stream[i];
    } else {
      for (int64_t i = 0; i < count; ++i) acc[start + i] -= stream[i];
    }
  }
}

void Nonce(int32_t from, int32_t to,
           uint8_t (&nonce)[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES]) {
  // Each (from, to) key encrypts one message per direction: a counter-free nonce is unique.
  std::memset(nonce, 0, sizeof nonce);
  std::memcpy(nonce, &from, 4);
  std::memcpy(nonce + 4, &to, 4);
}

void AssociatedData(uint64_t cohort_id, int32_t from, int32_t to, uint8_t (&ad)[16]) {
  std::memcpy(ad, &cohort_id, 8);
  std::memcpy(ad + 8, &from, 4);
  std::memcpy(ad + 12, &to, 4);
}

void PutShare(const ShamirShare& s, uint8_t* out) {
  std::memcpy(out, &s.x, 4);
  std::memcpy(out + 4, s.y.data(), 40);
}
ShamirShare GetShare(const uint8_t* in) {
  ShamirShare s;
  std::memcpy(&s.x, in, 4);
  std::memcpy(s.y.data(), in + 4, 40);
  return s;
}

bool Contains(const std::vector<int>& sorted, int v) {
  return std::binary_search(sorted.begin(), sorted.end(), v);
}

void InitSodium() {
  FTTE_CHECK(sodium_init() >= 0) << "libsodium could not initialise (no entropy source?)";
}

}  // namespace

Status ValidateCohort(const CohortConfig& c) {
  const std::string what = "secure aggregation cohort " + std::to_string(c.cohort_id) + ": ";
  if (c.members < 2) {
    return InvalidArgument(what + "a cohort needs at least 2 members, got " + Str(c.members));
  }
  if (c.neighbours < 1 || c.neighbours > c.members - 1) {
    return InvalidArgument(what + "neighbours " + Str(c.neighbours) + " must be in [1, " +
                           Str(c.members - 1) + "] (members - 1 is the complete graph)");
  }
  if (c.neighbours < c.members - 1 && c.neighbours % 2 != 0) {
    return InvalidArgument(what + "neighbours " + Str(c.neighbours) +
                           " must be even (a ring joins k/2 members on each side), or members - 1");
  }
  if (2 * c.threshold <= c.neighbours || c.threshold > c.neighbours) {
    return InvalidArgument(what + "threshold " + Str(c.threshold) + " must be in (" +
                           Str(c.neighbours) + "/2, " + Str(c.neighbours) +
                           "]: at or below half the neighbours, two disjoint groups could rebuild "
                           "both secrets of one member and unmask its update; set threshold to " +
                           Str(c.neighbours / 2 + 1) + " or more");
  }
  if (c.length < 1) return InvalidArgument(what + "length must be >= 1, got " + Str(c.length));
  if (!(c.range > 0) || !std::isfinite(c.range)) {
    return InvalidArgument(what + "range must be a positive bound on every value (the clip)");
  }
  return Status::Ok();
}

Result<CohortConfig> MakeCohortConfig(int64_t members, int64_t neighbours, int64_t threshold,
                                      double range) {
  CohortConfig config;
  config.members = static_cast<int>(members);
  int64_t k = neighbours;
  if (k == 0) {  // SecAgg+: O(log n) neighbours; the complete graph while that is small anyway
    k = members <= 16 ? members - 1
                      : std::min<int64_t>(members - 1,
                                          2 * static_cast<int64_t>(std::ceil(
                                                  1.5 * std::log2(static_cast<double>(members)))));
  }
  config.neighbours = static_cast<int>(k);
  config.threshold = static_cast<int>(threshold > 0 ? threshold : k / 2 + 1);
  config.length = 1;
  config.range = range;
  if (Status s = ValidateCohort(config); !s.ok()) {
    return InvalidArgument("cohort " + std::to_string(members) + ", neighbours " +
                           std::to_string(k) + ", threshold " + std::to_string(config.threshold) +
                           ": " + s.message());
  }
  return config;
}

std::vector<int> Neighbours(const CohortConfig& c, int member) {
  FTTE_CHECK(member >= 0 && member < c.members) << "member " << member << " of " << c.members;
  std::vector<int> out;
  if (c.neighbours == c.members - 1) {
    for (int v = 0; v < c.members; ++v) {
      if (v != member) out.push_back(v);
    }
    return out;
  }
  // The ring order: a Fisher-Yates shuffle from the public graph seed.
  KeyStream random(
      Hash("sa-graph", c.cohort_id, reinterpret_cast<const uint8_t*>(&c.graph_seed), 8));
  std::vector<int> order(c.members), position(c.members);
  for (int i = 0; i < c.members; ++i) order[i] = i;
  for (int i = c.members - 1; i > 0; --i) {
    std::swap(order[i], order[random.FieldElement() % static_cast<uint64_t>(i + 1)]);
  }
  for (int i = 0; i < c.members; ++i) position[order[i]] = i;
  for (int d = 1; d <= c.neighbours / 2; ++d) {
    out.push_back(order[(position[member] + d) % c.members]);
    out.push_back(order[(position[member] - d + c.members) % c.members]);
  }
  std::sort(out.begin(), out.end());
  return out;
}

int64_t WireBytes(const KeyAdvert&) { return 8 + 4 + 32 + 32; }
int64_t WireBytes(const KeyShares& m) {
  int64_t bytes = 8 + 4 + 32 + 4;
  for (const auto& s : m.shares) bytes += 4 + 4 + 4 + static_cast<int64_t>(s.ciphertext.size());
  return bytes;
}
int64_t WireBytes(const MaskedInput& m) {
  return 8 + 4 + 4 + 4 * static_cast<int64_t>(m.values.size());
}
int64_t WireBytes(const Unmask& m) {
  return 8 + 4 + 4 + static_cast<int64_t>(m.shares.size()) * (4 + 1 + 4 + 40);
}
int64_t WireBytes(const std::vector<KeyAdvert>& m) {
  return 4 + static_cast<int64_t>(m.size()) * WireBytes(KeyAdvert{});
}
int64_t WireBytes(const std::vector<EncryptedShare>& m) {
  int64_t bytes = 4;
  for (const auto& s : m) bytes += 4 + 4 + 4 + static_cast<int64_t>(s.ciphertext.size());
  return bytes;
}

double FixedPointScale(double range, int members) {
  const double q = std::floor(2147483647.0 / members);
  return q / range;
}

int64_t Quantize(const float* values, int64_t n, double range, int members, uint32_t* out) {
  const double scale = FixedPointScale(range, members);
  const double q = std::floor(2147483647.0 / members);
  int64_t clamped = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double raw = std::isfinite(values[i]) ? values[i] * scale : 0.0;
    const double x = std::clamp(raw, -q, q);
    clamped += x != raw || !std::isfinite(values[i]);
    out[i] = static_cast<uint32_t>(static_cast<int32_t>(std::llround(x)));
  }
  return clamped;
}

void Dequantize(const uint32_t* sum, int64_t n, double range, int members, float* out) {
  const double scale = FixedPointScale(range, members);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<int32_t>(sum[i]) / scale);
}

Secret32 RandomSecret() {
  InitSodium();
  Secret32 s;
  randombytes_buf(s.data(), s.size());
  return s;
}

Secret32 DerivedSecret(uint64_t seed, uint64_t id) {
  InitSodium();
  return Hash("sa-simul", seed, reinterpret_cast<const uint8_t*>(&id), 8);
}

namespace {

Secret32 Subkey(const Secret32& secret, uint64_t id) {
  Secret32 out;
  crypto_kdf_derive_from_key(out.data(), out.size(), id, "ftte-sag", secret.data());
  return out;
}

}  // namespace

Member::Member(const CohortConfig& config, int member, const Secret32& secret)
    : config_(config),
      member_(member),
      encryption_secret_(Subkey(secret, 1)),
      mask_secret_(Subkey(secret, 2)),
      self_seed_(Subkey(secret, 3)),
      random_(Subkey(secret, 4)) {
  FTTE_CHECK(ValidateCohort(config).ok()) << ValidateCohort(config).ToString();
  encryption_key_ = PublicOf(encryption_secret_);
  mask_key_ = PublicOf(mask_secret_);
  neighbours_ = Neighbours(config, member);
}

KeyAdvert Member::Advertise() const {
  return KeyAdvert{config_.cohort_id, member_, encryption_key_, mask_key_};
}

Member::Peer* Member::FindPeer(int32_t member) {
  auto it = std::lower_bound(peers_.begin(), peers_.end(), member,
                             [](const Peer& p, int32_t m) { return p.member < m; });
  return it != peers_.end() && it->member == member ? &*it : nullptr;
}

Result<KeyShares> Member::ShareKeys(const std::vector<KeyAdvert>& adverts) {
  if (round_ != 0) return FailedPrecondition("secure aggregation: keys were already shared");
  round_ = 1;
  for (const KeyAdvert& a : adverts) {
    if (a.cohort_id != config_.cohort_id || !Contains(neighbours_, a.member) ||
        a.member == member_) {
      return InvalidArgument("secure aggregation: an advert from member " + Str(a.member) +
                             " of cohort " + std::to_string(a.cohort_id) +
                             ", not a neighbour in this cohort");
    }
    if (FindPeer(a.member)) {
      return InvalidArgument("secure aggregation: two adverts from member " + Str(a.member));
    }
    if (!UsablePoint(a.encryption_key) || !UsablePoint(a.mask_key)) {
      return InvalidArgument("secure aggregation: member " + Str(a.member) +
                             " advertised an invalid X25519 key");
    }
    Peer peer{a.member, a.encryption_key, a.mask_key, std::nullopt};
    peers_.insert(std::upper_bound(peers_.begin(), peers_.end(), a.member,
                                   [](int32_t m, const Peer& p) { return m < p.member; }),
                  peer);
  }
  if (static_cast<int>(peers_.size()) < config_.threshold) {
    return FailedPrecondition("secure aggregation: only " + Str(peers_.size()) +
                              " neighbours advertised keys, fewer than the threshold " +
                              Str(config_.threshold));
  }
  std::vector<uint32_t> xs;
  for (const Peer& p : peers_) xs.push_back(static_cast<uint32_t>(p.member) + 1);
  const auto seed_shares = ShamirSplit(self_seed_, config_.threshold, xs, &random_);
  const auto key_shares = ShamirSplit(mask_secret_, config_.threshold, xs, &random_);
  KeyShares out;
  out.cohort_id = config_.cohort_id;
  out.member = member_;
  out.seed_commitment = Commitment(config_.cohort_id, self_seed_);
  for (size_t i = 0; i < peers_.size(); ++i) {
    FTTE_ASSIGN_OR_RETURN(Secret32 key, Agree("sa-share", config_.cohort_id, encryption_secret_,
                                              encryption_key_, peers_[i].encryption_key));
    uint8_t plain[kSharePairBytes], nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES], ad[16];
    PutShare(seed_shares[i], plain);
    PutShare(key_shares[i], plain + kSharePairBytes / 2);
    Nonce(member_, peers_[i].member, nonce);
    AssociatedData(config_.cohort_id, member_, peers_[i].member, ad);
    EncryptedShare share{member_, peers_[i].member, std::vector<uint8_t>(kShareCiphertextBytes)};
    crypto_aead_xchacha20poly1305_ietf_encrypt(share.ciphertext.data(), nullptr, plain,
                                               sizeof plain, ad, sizeof ad, nullptr, nonce,
                                               key.data());
    sodium_memzero(plain, sizeof plain);
    out.shares.push_back(std::move(share));
  }
  return out;
}

Result<MaskedInput> Member::MaskInput(const std::vector<EncryptedShare>& received,
                                      const float* update) {
  if (round_ != 1) {
    return FailedPrecondition("secure aggregation: masked input out of order (round " +
                              Str(round_) + ")");
  }
  round_ = 2;
  for (const EncryptedShare& s : received) {
    Peer* peer = FindPeer(s.from);
    if (s.to != member_ || !peer) {
      return InvalidArgument("secure aggregation: a share from member " + Str(s.from) + " to " +
                             Str(s.to) + " was routed to member " + Str(member_));
    }
    if (peer->shares) {
      return InvalidArgument("secure aggregation: two shares from member " + Str(s.from));
    }
    FTTE_ASSIGN_OR_RETURN(Secret32 key, Agree("sa-share", config_.cohort_id, encryption_secret_,
                                              encryption_key_, peer->encryption_key));
    uint8_t plain[kSharePairBytes], nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES], ad[16];
    Nonce(s.from, member_, nonce);
    AssociatedData(config_.cohort_id, s.from, member_, ad);
    if (s.ciphertext.size() != kShareCiphertextBytes ||
        crypto_aead_xchacha20poly1305_ietf_decrypt(plain, nullptr, nullptr, s.ciphertext.data(),
                                                   s.ciphertext.size(), ad, sizeof ad, nonce,
                                                   key.data()) != 0) {
      return InvalidArgument("secure aggregation: the share from member " + Str(s.from) +
                             " does not decrypt (altered, replayed or for another cohort)");
    }
    const std::array<ShamirShare, 2> pair = {GetShare(plain),
                                             GetShare(plain + kSharePairBytes / 2)};
    sodium_memzero(plain, sizeof plain);
    if (pair[0].x != static_cast<uint32_t>(member_) + 1 || pair[1].x != pair[0].x) {
      return InvalidArgument("secure aggregation: member " + Str(s.from) +
                             " sent a share for another point");
    }
    peer->shares = pair;
  }
  int sharing = 0;
  for (const Peer& p : peers_) sharing += p.shares.has_value();
  if (sharing < config_.threshold) {
    return FailedPrecondition("secure aggregation: only " + Str(sharing) +
                              " neighbours shared keys, fewer than the threshold " +
                              Str(config_.threshold));
  }
  MaskedInput out{config_.cohort_id, member_, std::vector<uint32_t>(config_.length)};
  clamped_ = Quantize(update, config_.length, config_.range, config_.members, out.values.data());
  AddMask(self_seed_, +1, out.values.data(), config_.length);
  for (const Peer& p : peers_) {
    if (!p.shares) continue;
    FTTE_ASSIGN_OR_RETURN(
        Secret32 seed, Agree("sa-pmask", config_.cohort_id, mask_secret_, mask_key_, p.mask_key));
    AddMask(seed, member_ < p.member ? +1 : -1, out.values.data(), config_.length);
  }
  return out;
}

Result<Unmask> Member::Reveal(const std::vector<int32_t>& survivors) {
  if (round_ != 2) {
    return FailedPrecondition("secure aggregation: unmasking out of order (round " + Str(round_) +
                              ")");
  }
  round_ = 3;  // never reveal twice: a second set of survivors could expose both secrets
  std::vector<int32_t> alive(survivors);
  std::sort(alive.begin(), alive.end());
  if (std::adjacent_find(alive.begin(), alive.end()) != alive.end() ||
      !std::binary_search(alive.begin(), alive.end(), member_) ||
      static_cast<int>(alive.size()) < config_.threshold) {
    return InvalidArgument("secure aggregation: the server's survivor list (" + Str(alive.size()) +
                           " members) is not a valid set with this member " +
                           "and at least the threshold " + Str(config_.threshold));
  }
  Unmask out{config_.cohort_id, member_, {}};
  for (int32_t s : alive) {
    if (s == member_ || !Contains(neighbours_, s)) continue;
    const Peer* peer = FindPeer(s);
    if (!peer || !peer->shares) {
      return InvalidArgument("secure aggregation: the server lists member " + Str(s) +
                             " as a survivor, but it never shared keys with member " +
                             Str(member_));
    }
  }
  for (const Peer& p : peers_) {
    if (!p.shares) continue;
    const bool survived = std::binary_search(alive.begin(), alive.end(), p.member);
    out.shares.push_back({p.member, !survived, (*p.shares)[survived ? 0 : 1]});
  }
  return out;
}

CohortServer::CohortServer(const CohortConfig& config)
    : config_(config),
      adverts_(config.members),
      shares_(config.members),
      masked_(config.members, 0),
      masked_sum_(config.length, 0),
      unmasks_(config.members) {
  FTTE_CHECK(ValidateCohort(config).ok()) << ValidateCohort(config).ToString();
  InitSodium();
}

Status CohortServer::CheckSender(int32_t sender, uint64_t cohort_id, int32_t member,
                                 int round) const {
  static const char* const kRound[] = {"advert", "shares", "masked input", "unmask"};
  if (cohort_id != config_.cohort_id) {
    return InvalidArgument("secure aggregation: a " + std::string(kRound[round]) + " for cohort " +
                           std::to_string(cohort_id) + " sent to cohort " +
                           std::to_string(config_.cohort_id));
  }
  if (member != sender || sender < 0 || sender >= config_.members) {
    return InvalidArgument("secure aggregation: member " + Str(sender) + " sent a " +
                           kRound[round] + " as member " + Str(member));
  }
  if (round_ != round) {
    return FailedPrecondition("secure aggregation: a " + std::string(kRound[round]) +
                              " from member " + Str(sender) + " arrived in round " + Str(round_) +
                              " (" + (round_ < round ? "early" : "late") + ")");
  }
  return Status::Ok();
}

Status CohortServer::CloseRound(int round, int count, const char* what, const char* counted) {
  if (round_ != round) {
    return FailedPrecondition(std::string("secure aggregation: ") + what + " closed out of order");
  }
  round_ = round + 1;
  if (count >= config_.threshold) return Status::Ok();
  round_ = 4;  // aborted: nothing more is taken, nothing is released
  return FailedPrecondition("secure aggregation: cohort " + std::to_string(config_.cohort_id) +
                            " aborted at the " + what + ": " + Str(count) + " " + counted +
                            ", fewer than the threshold " + Str(config_.threshold));
}

Status CohortServer::ReceiveAdvert(int32_t sender, const KeyAdvert& advert) {
  FTTE_RETURN_IF_ERROR(CheckSender(sender, advert.cohort_id, advert.member, 0));
  if (adverts_[sender]) {
    return InvalidArgument("secure aggregation: member " + Str(sender) + " advertised twice");
  }
  if (!UsablePoint(advert.encryption_key) || !UsablePoint(advert.mask_key)) {
    return InvalidArgument("secure aggregation: member " + Str(sender) +
                           " advertised an invalid X25519 key");
  }
  adverts_[sender] = advert;
  traffic_.received[0] += WireBytes(advert);
  return Status::Ok();
}

Result<std::vector<std::vector<KeyAdvert>>> CohortServer::CloseAdverts() {
  int count = 0;
  for (const auto& a : adverts_) count += a.has_value();
  FTTE_RETURN_IF_ERROR(CloseRound(0, count, "adverts", "members advertised"));
  std::vector<std::vector<KeyAdvert>> out(config_.members);
  for (int u = 0; u < config_.members; ++u) {
    if (!adverts_[u]) continue;
    for (int v : Neighbours(config_, u)) {
      if (adverts_[v]) out[u].push_back(*adverts_[v]);
    }
    traffic_.sent[0] += WireBytes(out[u]);
  }
  return out;
}

Status CohortServer::ReceiveShares(int32_t sender, const KeyShares& msg) {
  FTTE_RETURN_IF_ERROR(CheckSender(sender, msg.cohort_id, msg.member, 1));
  if (!adverts_[sender]) {
    return FailedPrecondition("secure aggregation: member " + Str(sender) +
                              " shares keys without having advertised");
  }
  if (shares_[sender]) {
    return InvalidArgument("secure aggregation: member " + Str(sender) + " shared keys twice");
  }
  std::vector<int> expected;
  for (int v : Neighbours(config_, sender)) {
    if (adverts_[v]) expected.push_back(v);
  }
  std::vector<int> got;
  for (const EncryptedShare& s : msg.shares) {
    if (s.from != sender || s.ciphertext.size() != kShareCiphertextBytes) {
      return InvalidArgument("secure aggregation: member " + Str(sender) +
                             " sent a malformed share (from " + Str(s.from) + ", " +
                             Str(s.ciphertext.size()) + " bytes)");
    }
    got.push_back(s.to);
  }
  std::sort(got.begin(), got.end());
  if (got != expected) {
    return InvalidArgument("secure aggregation: member " + Str(sender) + " must send one share " +
                           "to each of its " + Str(expected.size()) +
                           " advertised neighbours, sent " + Str(got.size()));
  }
  traffic_.received[1] += WireBytes(msg);
  shares_[sender] = msg;
  return Status::Ok();
}

Result<std::vector<std::vector<EncryptedShare>>> CohortServer::CloseShares() {
  int count = 0;
  for (const auto& s : shares_) count += s.has_value();
  FTTE_RETURN_IF_ERROR(CloseRound(1, count, "key shares", "members shared keys"));
  std::vector<std::vector<EncryptedShare>> out(config_.members);
  for (const auto& msg : shares_) {
    if (!msg) continue;
    for (const EncryptedShare& s : msg->shares) {
      if (shares_[s.to]) out[s.to].push_back(s);
    }
  }
  for (int u = 0; u < config_.members; ++u) {
    if (shares_[u]) traffic_.sent[1] += WireBytes(out[u]);
  }
  return out;
}

Status CohortServer::ReceiveMaskedInput(int32_t sender, MaskedInput input) {
  FTTE_RETURN_IF_ERROR(CheckSender(sender, input.cohort_id, input.member, 2));
  if (!shares_[sender]) {
    return FailedPrecondition("secure aggregation: member " + Str(sender) +
                              " sent a masked input without having shared keys");
  }
  if (masked_[sender]) {
    return InvalidArgument("secure aggregation: member " + Str(sender) +
                           " sent a second masked input");
  }
  if (static_cast<int64_t>(input.values.size()) != config_.length) {
    return InvalidArgument("secure aggregation: member " + Str(sender) + " sent " +
                           Str(input.values.size()) + " values, the cohort's update has " +
                           Str(config_.length));
  }
  masked_[sender] = 1;
  for (int64_t i = 0; i < config_.length; ++i) masked_sum_[i] += input.values[i];
  traffic_.received[2] += WireBytes(input);
  return Status::Ok();
}

Result<std::vector<int32_t>> CohortServer::CloseMaskedInputs() {
  std::vector<int32_t> arrived;
  for (int u = 0; u < config_.members; ++u) {
    if (masked_[u]) arrived.push_back(u);
  }
  FTTE_RETURN_IF_ERROR(CloseRound(2, static_cast<int>(arrived.size()), "masked inputs", "arrived"));
  survivors_ = std::move(arrived);
  traffic_.sent[2] += static_cast<int64_t>(survivors_.size()) * (4 + 4 * survivors_.size());
  return survivors_;
}

Status CohortServer::ReceiveUnmask(int32_t sender, const Unmask& msg) {
  FTTE_RETURN_IF_ERROR(CheckSender(sender, msg.cohort_id, msg.member, 3));
  if (!masked_[sender]) {
    return FailedPrecondition("secure aggregation: member " + Str(sender) +
                              " is not a survivor and cannot unmask");
  }
  if (unmasks_[sender]) {
    return InvalidArgument("secure aggregation: member " + Str(sender) + " unmasked twice");
  }
  const std::vector<int> neighbours = Neighbours(config_, sender);
  std::vector<int32_t> owners;
  for (const RevealedShare& r : msg.shares) {
    if (!Contains(neighbours, r.owner) || !shares_[r.owner] ||
        r.share.x != static_cast<uint32_t>(sender) + 1) {
      return InvalidArgument("secure aggregation: member " + Str(sender) +
                             " revealed a share of member " + Str(r.owner) +
                             " that it cannot hold");
    }
    if (r.mask_key == static_cast<bool>(masked_[r.owner])) {
      return InvalidArgument("secure aggregation: member " + Str(sender) + " revealed the " +
                             (r.mask_key ? "mask key of survivor " : "self-mask seed of dropped ") +
                             "member " + Str(r.owner));
    }
    owners.push_back(r.owner);
  }
  std::sort(owners.begin(), owners.end());
  if (std::adjacent_find(owners.begin(), owners.end()) != owners.end()) {
    return InvalidArgument("secure aggregation: member " + Str(sender) +
                           " revealed two shares of one member");
  }
  traffic_.received[3] += WireBytes(msg);
  unmasks_[sender] = msg;
  return Status::Ok();
}

namespace {

// The secret behind `shares` (held by `holders`) that passes `verify`, from the first threshold
// shares or, around wrong ones, other subsets of threshold shares; the holders whose shares do
// not lie on the verified polynomial are added to `liars`.
template <typename Verify>
std::optional<Secret32> RobustCombine(const std::vector<ShamirShare>& shares,
                                      const std::vector<int32_t>& holders, int threshold,
                                      Verify verify, std::vector<int32_t>* liars) {
  const int m = static_cast<int>(shares.size());
  if (m < threshold) return std::nullopt;
  std::vector<int> pick(threshold);
  for (int i = 0; i < threshold; ++i) pick[i] = i;
  for (int tries = 0; tries < kMaxCombineTries; ++tries) {
    std::vector<ShamirShare> subset;
    for (int i : pick) subset.push_back(shares[i]);
    auto secret = ShamirCombine(subset, threshold);
    if (secret.ok() && verify(*secret)) {
      for (int i = 0; i < m; ++i) {
        if (ShamirEvaluate(subset, threshold, shares[i].x) != shares[i].y) {
          liars->push_back(holders[i]);
        }
      }
      return *secret;
    }
    int i = threshold - 1;  // the next subset in lexicographic order
    while (i >= 0 && pick[i] == m - threshold + i) --i;
    if (i < 0) break;
    ++pick[i];
    for (int j = i + 1; j < threshold; ++j) pick[j] = pick[j - 1] + 1;
  }
  return std::nullopt;
}

}  // namespace

Result<CohortSum> CohortServer::Finish() {
  if (round_ != 3) return FailedPrecondition("secure aggregation: finish out of order");
  round_ = 4;
  const uint64_t id = config_.cohort_id;
  const std::string aborted = "secure aggregation: cohort " + std::to_string(id) + " aborted: ";
  // Shares revealed of each owner, and who revealed them.
  std::vector<std::vector<ShamirShare>> revealed(config_.members);
  std::vector<std::vector<int32_t>> holders(config_.members);
  for (int u = 0; u < config_.members; ++u) {
    if (!unmasks_[u]) continue;
    for (const RevealedShare& r : unmasks_[u]->shares) {
      revealed[r.owner].push_back(r.share);
      holders[r.owner].push_back(u);
    }
  }
  CohortSum out;
  std::vector<uint32_t> sum = masked_sum_;
  for (int v = 0; v < config_.members; ++v) {
    if (masked_[v]) {
      const Secret32 commitment = shares_[v]->seed_commitment;
      auto seed = RobustCombine(
          revealed[v], holders[v], config_.threshold,
          [&](const Secret32& s) {
            const Secret32 c = Commitment(id, s);
            return sodium_memcmp(c.data(), commitment.data(), c.size()) == 0;
          },
          &out.misbehaving);
      if (!seed) {
        return FailedPrecondition(aborted + "the self-mask of survivor " + Str(v) +
                                  " cannot be rebuilt (" + Str(revealed[v].size()) +
                                  " shares answered, threshold " + Str(config_.threshold) + ")");
      }
      AddMask(*seed, -1, sum.data(), config_.length);
      out.contributors.push_back(v);
      continue;
    }
    out.dropped.push_back(v);
    if (!shares_[v]) continue;  // dropped before sharing keys: nobody masked with it
    const PublicKey mask_key = adverts_[v]->mask_key;
    auto secret = RobustCombine(
        revealed[v], holders[v], config_.threshold,
        [&](const Secret32& s) {
          const PublicKey pk = PublicOf(s);
          return sodium_memcmp(pk.data(), mask_key.data(), pk.size()) == 0;
        },
        &out.misbehaving);
    if (!secret) {
      return FailedPrecondition(aborted + "the mask key of dropped member " + Str(v) +
                                " cannot be rebuilt (" + Str(revealed[v].size()) +
                                " shares answered, threshold " + Str(config_.threshold) + ")");
    }
    for (int w : Neighbours(config_, v)) {
      if (!masked_[w]) continue;  // only survivors' inputs carry a mask with v
      FTTE_ASSIGN_OR_RETURN(Secret32 seed,
                            Agree("sa-pmask", id, *secret, mask_key, adverts_[w]->mask_key));
      AddMask(seed, w < v ? -1 : +1, sum.data(), config_.length);  // undo w's +-PRG
    }
    sodium_memzero(secret->data(), secret->size());
  }
  std::sort(out.misbehaving.begin(), out.misbehaving.end());
  out.misbehaving.erase(std::unique(out.misbehaving.begin(), out.misbehaving.end()),
                        out.misbehaving.end());
  out.sum.resize(config_.length);
  Dequantize(sum.data(), config_.length, config_.range, config_.members, out.sum.data());
  return out;
}

}  // namespace ftte::fl::secagg
