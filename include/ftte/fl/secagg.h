// Secure aggregation of one cohort (SecAgg+: Bell et al. 2020 over Bonawitz et al. 2017): the
// server learns the sum of the members' updates and nothing about any single one.
//
// A cohort is n members (0..n-1) that hold updates of the same length (for FTTE: the values of
// the cohort's shared mask w*). Each member is linked to k neighbours on a Harary graph (members
// placed on a ring in an order drawn from a public seed, each joined to the k/2 nearest on either
// side; k = n - 1 is the complete graph of the original protocol). Four rounds, each a message
// from every live member to the server and the server's reply:
//   0. Advertise: two X25519 public keys, one to encrypt shares, one to agree masks.
//   1. ShareKeys: t-of-k Shamir shares (shamir.h) of the member's mask key and of a fresh
//      self-mask seed b, each share encrypted for its neighbour (XChaCha20-Poly1305 under an
//      X25519 key; the server only routes ciphertext), with a BLAKE2b commitment to b.
//   2. MaskedInput: the update quantised to fixed point in Z_2^32 plus ChaCha20 masks: the
//      self-mask PRG(b) and, for each neighbour that shared keys, +-PRG(pairwise seed), which
//      cancel in the sum.
//   3. Unmask: given the survivors (members whose masked input arrived), a member reveals for
//      each neighbour either the share of b (a survivor) or of the mask key (dropped), never both.
// The server rebuilds each survivor's b and each dropped member's mask key from t shares,
// verifies them (commitment; public key), removes the masks, and decodes the sum. Members that
// drop out at any step cost nothing as long as every survivor and every dropped member that
// shared keys keep t neighbours answering the last round; otherwise the cohort aborts and its
// updates are discarded and counted (Result error, nothing released).
//
// Threat model (docs/secure-aggregation.md): an honest-but-curious server, and fewer than t of
// any member's neighbours colluding with it. Members are identified by the transport (the
// enrolled, authenticated device); a message whose claimed member is not its sender, a second
// message from one member in a round, a message for another cohort or round, a key that is not a
// valid X25519 point, a share that does not verify, are refused. Under these assumptions the
// server sees only masked inputs (uniform in Z_2^32) and the cohort's sum.
//
// Fixed point: with range R (every |value| <= R, e.g. a clip bound) and n members, a value x is
// round(x * Q / R) with Q = floor((2^31 - 1) / n), so the sum of n never wraps; the decoded sum
// is within n * R / (2 Q) of the exact one per value (values outside +-R are clamped, non-finite
// ones are 0).
//
// Objects here are single-threaded; a server drives one CohortServer per cohort.
#ifndef FTTE_FL_SECAGG_H_
#define FTTE_FL_SECAGG_H_

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "ftte/core/status.h"
#include "ftte/fl/shamir.h"

namespace ftte::fl::secagg {

struct CohortConfig {
  uint64_t cohort_id = 0;
  int members = 0;     // n >= 2
  int neighbours = 0;  // k: even and < n - 1, or n - 1 (complete graph)
  int threshold = 0;   // t: k/2 < t <= k (a member's secrets are rebuilt from t neighbours)
  uint64_t graph_seed = 0;
  int64_t length = 0;  // values per update, >= 1
  double range = 0;    // the bound R on every value, > 0
};

// Refuses parameters that break the guarantee, naming the fix: t <= k/2 (two disjoint sets of
// neighbours could each rebuild a different secret of one member), t > k, k odd and below n - 1,
// k >= n, n < 2, a non-positive length or range.
Status ValidateCohort(const CohortConfig& config);

// The parameters for a cohort of `members` (length 1 until the caller sets it): `neighbours` 0
// picks the complete graph up to 16 members, else 2 * ceil(1.5 * log2 n) (SecAgg+'s O(log n));
// `threshold` 0 picks neighbours / 2 + 1. Checked by ValidateCohort; the error names the values.
Result<CohortConfig> MakeCohortConfig(int64_t members, int64_t neighbours, int64_t threshold,
                                      double range);

// Member `member`'s neighbours, ascending. config must be valid.
std::vector<int> Neighbours(const CohortConfig& config, int member);

using PublicKey = std::array<uint8_t, 32>;

struct KeyAdvert {
  uint64_t cohort_id = 0;
  int32_t member = -1;
  PublicKey encryption_key{}, mask_key{};
};

struct EncryptedShare {
  int32_t from = -1, to = -1;
  std::vector<uint8_t> ciphertext;  // two Shamir shares, XChaCha20-Poly1305
};

struct KeyShares {
  uint64_t cohort_id = 0;
  int32_t member = -1;
  Secret32 seed_commitment{};  // BLAKE2b of the self-mask seed b
  std::vector<EncryptedShare> shares;
};

struct MaskedInput {
  uint64_t cohort_id = 0;
  int32_t member = -1;
  std::vector<uint32_t> values;
};

struct RevealedShare {
  int32_t owner = -1;     // whose secret the share belongs to
  bool mask_key = false;  // true: the share of a dropped owner's mask key; false: of b
  ShamirShare share;
};

struct Unmask {
  uint64_t cohort_id = 0;
  int32_t member = -1;
  std::vector<RevealedShare> shares;
};

// Bytes each message takes on the wire (the encoding fixed by docs/secure-aggregation.md:
// 8-byte cohort id, 4-byte member ids and counts, keys and values in full).
int64_t WireBytes(const KeyAdvert&);
int64_t WireBytes(const KeyShares&);
int64_t WireBytes(const MaskedInput&);
int64_t WireBytes(const Unmask&);
int64_t WireBytes(const std::vector<KeyAdvert>&);       // server -> member, round 1
int64_t WireBytes(const std::vector<EncryptedShare>&);  // server -> member, round 2

// One member of a cohort. `secret` seeds every key and random value the member draws: a device
// takes it from the operating system's CSPRNG (RandomSecret), the simulator derives it from its
// seed. Each method is one round and may be called once, in order (later calls are refused).
class Member {
 public:
  Member(const CohortConfig& config, int member, const Secret32& secret);

  KeyAdvert Advertise() const;
  // The adverts of its neighbours that the server forwards. Refused: fewer than t, an advert
  // from a non-neighbour or another cohort, a repeated member, an invalid key.
  Result<KeyShares> ShareKeys(const std::vector<KeyAdvert>& neighbours);
  // The shares its neighbours sent it, and its update (config.length values). Refused: a share
  // that does not decrypt or is not addressed to it, one from a neighbour that did not
  // advertise, a repeated sender, fewer than t.
  Result<MaskedInput> MaskInput(const std::vector<EncryptedShare>& received, const float* update);
  // The survivors the server announces. Refused: a survivor that did not share keys with it,
  // fewer than t survivors, itself not among them.
  Result<Unmask> Reveal(const std::vector<int32_t>& survivors);
  // Values of its update outside +-range (clamped by the fixed point; counted for reports).
  int64_t clamped() const { return clamped_; }

 private:
  struct Peer {
    int32_t member;
    PublicKey encryption_key, mask_key;
    std::optional<std::array<ShamirShare, 2>> shares;  // of its b and mask key, once received
  };
  Peer* FindPeer(int32_t member);

  CohortConfig config_;
  int32_t member_;
  int round_ = 0;
  int64_t clamped_ = 0;
  Secret32 encryption_secret_, mask_secret_, self_seed_;
  PublicKey encryption_key_, mask_key_;
  KeyStream random_;
  std::vector<int> neighbours_;
  std::vector<Peer> peers_;  // the neighbours that advertised
};

Secret32 RandomSecret();                             // libsodium's CSPRNG
Secret32 DerivedSecret(uint64_t seed, uint64_t id);  // for simulation: BLAKE2b of (seed, id)

// What the server released: the decoded sum of the survivors' updates.
struct CohortSum {
  std::vector<float> sum;             // config.length values
  std::vector<int32_t> contributors;  // the survivors whose updates are in the sum
  std::vector<int32_t> dropped;       // members whose updates are not (dropped at any round)
  std::vector<int32_t> misbehaving;   // members whose revealed shares failed verification
};

// Bytes the server received and sent in each round (advert, shares, masked input, unmask).
struct TrafficStats {
  std::array<int64_t, 4> received{}, sent{};
};

// The server's side of one cohort. Receive* take the authenticated sender and its message, and
// refuse (without changing anything) a message that breaks the protocol; Close* end a round with
// the messages received so far (the others are dropped members) and return what each member
// gets next, indexed by member. A round that leaves too few members to finish aborts the cohort
// (FailedPrecondition naming the round and the counts); so does Finish when a secret cannot be
// rebuilt. The server never holds an unmasked individual update.
class CohortServer {
 public:
  explicit CohortServer(const CohortConfig& config);

  Status ReceiveAdvert(int32_t sender, const KeyAdvert& advert);
  Result<std::vector<std::vector<KeyAdvert>>> CloseAdverts();
  Status ReceiveShares(int32_t sender, const KeyShares& shares);
  Result<std::vector<std::vector<EncryptedShare>>> CloseShares();
  Status ReceiveMaskedInput(int32_t sender, MaskedInput input);
  Result<std::vector<int32_t>> CloseMaskedInputs();  // the survivors, to every one of them
  Status ReceiveUnmask(int32_t sender, const Unmask& unmask);
  Result<CohortSum> Finish();

  const TrafficStats& traffic() const { return traffic_; }

 private:
  Status CheckSender(int32_t sender, uint64_t cohort_id, int32_t member, int round) const;
  // Ends `round` with `count` members in it; aborts the cohort below the threshold.
  Status CloseRound(int round, int count, const char* what, const char* counted);

  CohortConfig config_;
  int round_ = 0;
  std::vector<std::optional<KeyAdvert>> adverts_;
  std::vector<std::optional<KeyShares>> shares_;
  std::vector<uint8_t> masked_;       // whose masked input arrived
  std::vector<uint32_t> masked_sum_;  // their sum in Z_2^32; never one update alone kept
  std::vector<std::optional<Unmask>> unmasks_;
  std::vector<int32_t> survivors_;
  TrafficStats traffic_;
};

// Fixed-point codec of the header (exposed for tests and the cost benchmark).
double FixedPointScale(double range, int members);
// Returns the number of values clamped to the range (non-finite ones included).
int64_t Quantize(const float* values, int64_t n, double range, int members, uint32_t* out);
void Dequantize(const uint32_t* sum, int64_t n, double range, int members, float* out);

}  // namespace ftte::fl::secagg

#endif  // FTTE_FL_SECAGG_H_
