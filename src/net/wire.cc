#include "wire.h"

#include <cmath>
#include <cstring>

namespace ftte::net {

std::string PackMaskBits(const fl::Mask& mask, const std::vector<fl::ParamLayout>& layout) {
  int64_t total = 0;
  for (const fl::ParamLayout& p : layout) total += p.rows;
  std::string bits(static_cast<size_t>((total + 7) / 8), '\0');
  int64_t at = 0;
  for (size_t k = 0; k < layout.size(); ++k) {
    for (int64_t r = 0; r < layout[k].rows; ++r, ++at) {
      if (mask.rows[k][r]) bits[static_cast<size_t>(at / 8)] |= static_cast<char>(1 << (at % 8));
    }
  }
  return bits;
}

Result<fl::Mask> UnpackMaskBits(std::string_view bits, const std::vector<fl::ParamLayout>& layout) {
  int64_t total = 0;
  for (const fl::ParamLayout& p : layout) total += p.rows;
  const auto want = static_cast<size_t>((total + 7) / 8);
  if (bits.size() != want) {
    return InvalidArgument("mask has " + std::to_string(bits.size()) + " bytes; the model's " +
                           std::to_string(total) + " rows need " + std::to_string(want));
  }
  auto bit = [&](int64_t i) { return (static_cast<uint8_t>(bits[i / 8]) >> (i % 8)) & 1; };
  for (int64_t i = total; i < static_cast<int64_t>(want) * 8; ++i) {
    if (bit(i)) return InvalidArgument("mask has bits set past the model's last row");
  }
  fl::Mask mask;
  int64_t at = 0;
  for (const fl::ParamLayout& p : layout) {
    std::vector<uint8_t> rows(static_cast<size_t>(p.rows));
    for (int64_t r = 0; r < p.rows; ++r, ++at) rows[r] = static_cast<uint8_t>(bit(at));
    mask.rows.push_back(std::move(rows));
  }
  return mask;
}

void LayoutToProto(const std::vector<fl::ParamLayout>& layout,
                   google::protobuf::RepeatedPtrField<v1::ParamShape>* out) {
  for (const fl::ParamLayout& p : layout) {
    v1::ParamShape* s = out->Add();
    s->set_name(p.name);
    s->set_rows(p.rows);
    s->set_row_size(p.row_size);
  }
}

std::vector<fl::ParamLayout> LayoutFromProto(
    const google::protobuf::RepeatedPtrField<v1::ParamShape>& in) {
  std::vector<fl::ParamLayout> out;
  for (const v1::ParamShape& s : in) out.push_back({s.name(), s.rows(), s.row_size()});
  return out;
}

v1::Hyperparameters HyperparametersToProto(const fl::ClientConfig& c, bool int8_upload) {
  v1::Hyperparameters h;
  h.set_local_epochs(c.local_epochs);
  h.set_local_steps(c.local_steps);
  h.set_batch(c.batch);
  h.set_micro_batch(c.micro_batch);
  h.set_learning_rate(c.optimizer.lr);
  h.set_momentum(c.optimizer.momentum);
  h.set_int8_upload(int8_upload);
  h.set_frozen_storage(c.frozen == FrozenStorage::kInt8 ? "int8" : "float32");
  h.set_dp_clip(c.dp_clip);
  h.set_dp_noise_stddev(c.dp_noise_stddev);
  return h;
}

Result<fl::ClientConfig> HyperparametersFromProto(const v1::Hyperparameters& h) {
  fl::ClientConfig c;
  if (h.batch() < 1 || h.batch() > 65536) {
    return InvalidArgument("hyperparameters: batch " + std::to_string(h.batch()) +
                           " is outside [1, 65536]");
  }
  if (h.micro_batch() < 0 || h.micro_batch() > h.batch()) {
    return InvalidArgument("hyperparameters: micro-batch " + std::to_string(h.micro_batch()) +
                           " is outside [0, batch " + std::to_string(h.batch()) + "]");
  }
  if (h.local_steps() < 0 || h.local_epochs() < 0 ||
      (h.local_steps() == 0 && h.local_epochs() == 0)) {
    return InvalidArgument("hyperparameters: need local_steps > 0 or local_epochs > 0");
  }
  if (!std::isfinite(h.learning_rate()) || h.learning_rate() <= 0 || !std::isfinite(h.momentum()) ||
      h.momentum() < 0 || h.momentum() >= 1) {
    return InvalidArgument("hyperparameters: learning rate must be > 0 and momentum in [0, 1)");
  }
  if (h.frozen_storage() != "float32" && h.frozen_storage() != "int8") {
    return InvalidArgument("hyperparameters: frozen storage '" + h.frozen_storage() +
                           "' is not float32 or int8");
  }
  c.local_epochs = h.local_epochs();
  c.local_steps = h.local_steps();
  c.batch = h.batch();
  c.micro_batch = h.micro_batch();
  c.optimizer.lr = h.learning_rate();
  c.optimizer.momentum = h.momentum();
  c.frozen = h.frozen_storage() == "int8" ? FrozenStorage::kInt8 : FrozenStorage::kFloat32;
  if (!std::isfinite(h.dp_clip()) || h.dp_clip() < 0 || !std::isfinite(h.dp_noise_stddev()) ||
      h.dp_noise_stddev() < 0 || (h.dp_noise_stddev() > 0 && h.dp_clip() == 0)) {
    return InvalidArgument(
        "hyperparameters: dp_clip and dp_noise_stddev must be finite and >= 0, "
        "and noise needs a clip");
  }
  c.dp_clip = h.dp_clip();
  c.dp_noise_stddev = h.dp_noise_stddev();
  return c;
}

namespace {

// A 32-byte key or commitment (fl::secagg::PublicKey and fl::Secret32 are both 32 bytes).
Result<std::array<uint8_t, 32>> Bytes32(const std::string& bytes, const char* field) {
  std::array<uint8_t, 32> key;
  if (bytes.size() != key.size()) {
    return InvalidArgument(std::string(field) + " must have 32 bytes, got " +
                           std::to_string(bytes.size()));
  }
  std::memcpy(key.data(), bytes.data(), key.size());
  return key;
}

std::string BytesOf(const uint8_t* p, size_t n) { return {reinterpret_cast<const char*>(p), n}; }

}  // namespace

v1::SecureAdvert AdvertToProto(const fl::secagg::KeyAdvert& a) {
  v1::SecureAdvert p;
  p.set_member(a.member);
  p.set_encryption_key(BytesOf(a.encryption_key.data(), a.encryption_key.size()));
  p.set_mask_key(BytesOf(a.mask_key.data(), a.mask_key.size()));
  return p;
}

Result<fl::secagg::KeyAdvert> AdvertFromProto(const v1::SecureAdvert& p, uint64_t cohort_id) {
  fl::secagg::KeyAdvert a;
  a.cohort_id = cohort_id;
  a.member = p.member();
  FTTE_ASSIGN_OR_RETURN(a.encryption_key, Bytes32(p.encryption_key(), "advert.encryption_key"));
  FTTE_ASSIGN_OR_RETURN(a.mask_key, Bytes32(p.mask_key(), "advert.mask_key"));
  return a;
}

v1::SecureShare ShareToProto(const fl::secagg::EncryptedShare& s) {
  v1::SecureShare p;
  p.set_from(s.from);
  p.set_to(s.to);
  p.set_ciphertext(BytesOf(s.ciphertext.data(), s.ciphertext.size()));
  return p;
}

fl::secagg::EncryptedShare ShareFromProto(const v1::SecureShare& p) {
  fl::secagg::EncryptedShare s;
  s.from = p.from();
  s.to = p.to();
  s.ciphertext.assign(p.ciphertext().begin(), p.ciphertext().end());
  return s;
}

v1::SecureShares SharesToProto(const fl::secagg::KeyShares& s) {
  v1::SecureShares p;
  p.set_seed_commitment(BytesOf(s.seed_commitment.data(), s.seed_commitment.size()));
  for (const auto& e : s.shares) *p.add_shares() = ShareToProto(e);
  return p;
}

Result<fl::secagg::KeyShares> SharesFromProto(const v1::SecureShares& p, uint64_t cohort_id,
                                              int32_t member) {
  fl::secagg::KeyShares s;
  s.cohort_id = cohort_id;
  s.member = member;
  FTTE_ASSIGN_OR_RETURN(s.seed_commitment, Bytes32(p.seed_commitment(), "shares.seed_commitment"));
  for (const v1::SecureShare& e : p.shares()) s.shares.push_back(ShareFromProto(e));
  return s;
}

std::string MaskedInputToBytes(const fl::secagg::MaskedInput& m) {
  std::string out(4 * m.values.size(), '\0');
  for (size_t i = 0; i < m.values.size(); ++i) {
    for (int b = 0; b < 4; ++b) out[4 * i + b] = static_cast<char>((m.values[i] >> (8 * b)) & 0xff);
  }
  return out;
}

Result<fl::secagg::MaskedInput> MaskedInputFromBytes(std::string_view bytes, uint64_t cohort_id,
                                                     int32_t member, int64_t length) {
  if (static_cast<int64_t>(bytes.size()) != 4 * length) {
    return InvalidArgument("masked_input must have 4 bytes per value of the cohort (" +
                           std::to_string(4 * length) + "), got " + std::to_string(bytes.size()));
  }
  fl::secagg::MaskedInput m;
  m.cohort_id = cohort_id;
  m.member = member;
  m.values.resize(static_cast<size_t>(length));
  for (size_t i = 0; i < m.values.size(); ++i) {
    uint32_t v = 0;
    for (int b = 0; b < 4; ++b)
      v |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[4 * i + b])) << (8 * b);
    m.values[i] = v;
  }
  return m;
}

v1::SecureUnmask UnmaskToProto(const fl::secagg::Unmask& u) {
  v1::SecureUnmask p;
  for (const auto& r : u.shares) {
    v1::SecureRevealed* q = p.add_shares();
    q->set_owner(r.owner);
    q->set_mask_key(r.mask_key);
    q->set_x(r.share.x);
    for (uint64_t y : r.share.y) q->add_y(y);
  }
  return p;
}

Result<fl::secagg::Unmask> UnmaskFromProto(const v1::SecureUnmask& p, uint64_t cohort_id,
                                           int32_t member) {
  fl::secagg::Unmask u;
  u.cohort_id = cohort_id;
  u.member = member;
  for (const v1::SecureRevealed& q : p.shares()) {
    fl::secagg::RevealedShare r;
    r.owner = q.owner();
    r.mask_key = q.mask_key();
    r.share.x = q.x();
    if (static_cast<size_t>(q.y_size()) != r.share.y.size()) {
      return InvalidArgument("unmask: a revealed share must have " +
                             std::to_string(r.share.y.size()) + " values, got " +
                             std::to_string(q.y_size()));
    }
    for (size_t i = 0; i < r.share.y.size(); ++i) {
      r.share.y[i] = q.y(static_cast<int>(i));
      if (r.share.y[i] >= fl::kShamirPrime) {
        return InvalidArgument("unmask: a share value is not below the field's prime 2^61 - 1");
      }
    }
    u.shares.push_back(r);
  }
  return u;
}

grpc::Status ToGrpc(const Status& s) {
  using grpc::StatusCode;
  StatusCode code = StatusCode::UNKNOWN;
  switch (s.code()) {
    case ftte::StatusCode::kOk:
      return grpc::Status::OK;
    case ftte::StatusCode::kInvalidArgument:
    case ftte::StatusCode::kDataLoss:
      code = StatusCode::INVALID_ARGUMENT;
      break;
    case ftte::StatusCode::kNotFound:
      code = StatusCode::NOT_FOUND;
      break;
    case ftte::StatusCode::kFailedPrecondition:
      code = StatusCode::FAILED_PRECONDITION;
      break;
    case ftte::StatusCode::kUnimplemented:
      code = StatusCode::UNIMPLEMENTED;
      break;
    case ftte::StatusCode::kUnauthenticated:
      code = StatusCode::UNAUTHENTICATED;
      break;
    case ftte::StatusCode::kUnavailable:
      code = StatusCode::UNAVAILABLE;
      break;
    case ftte::StatusCode::kIoError:
    case ftte::StatusCode::kInternal:
      code = StatusCode::INTERNAL;
      break;
  }
  return grpc::Status(code, s.message());
}

Status FromGrpc(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return Status::Ok();
  std::string m = what + ": " + s.error_message();
  switch (s.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return InvalidArgument(std::move(m));
    case grpc::StatusCode::NOT_FOUND:
      return NotFound(std::move(m));
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ALREADY_EXISTS:
      return FailedPrecondition(std::move(m));
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return Unauthenticated(std::move(m));
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::ABORTED:
      return Unavailable(std::move(m));
    case grpc::StatusCode::UNIMPLEMENTED:
      return {ftte::StatusCode::kUnimplemented, std::move(m)};
    default:
      return {ftte::StatusCode::kInternal, std::move(m)};
  }
}

bool IsTransient(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         s.error_code() == grpc::StatusCode::ABORTED ||
         s.error_code() == grpc::StatusCode::CANCELLED;
}

std::string BearerToken(const grpc::ServerContext& ctx) {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return "";
  std::string_view v(it->second.data(), it->second.size());
  constexpr std::string_view kPrefix = "Bearer ";
  if (v.substr(0, kPrefix.size()) != kPrefix) return "";
  return std::string(v.substr(kPrefix.size()));
}

}  // namespace ftte::net
