#include "keyboard_state.h"

#include <sodium.h>

#include <bit>
#include <cstring>

#include "ftte/core/check.h"
#include "ftte/core/file.h"

namespace ftte::net {

static_assert(std::endian::native == std::endian::little,
              "the keyboard state is written little-endian; add byte swapping to port it");

namespace {

constexpr char kMagic[8] = {'f', 't', 't', 'e', '-', 'k', 'b', 'd'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kEncrypted = 1;
constexpr size_t kCheckBytes = 16;
constexpr size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kHeaderBytes = 8 + 4 + 4 + kCheckBytes + kNonceBytes + 8;
constexpr size_t kSumBytes = crypto_generichash_BYTES;  // 32
constexpr char kKeyCheckText[] = "ftte keyboard state key check v1";
static_assert(kHeaderBytes == 64);
static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == 32);

enum Tag : uint32_t { kModel = 1, kStore = 2, kPersonal = 3, kIdentity = 4 };

template <typename T>
void Put(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof v);
}

// Reads fixed-size values and byte strings from a payload, failing on truncation.
class Reader {
 public:
  Reader(std::string_view bytes, const std::string& label) : bytes_(bytes), label_(label) {}
  template <typename T>
  Status Get(T* v) {
    if (bytes_.size() < sizeof(T)) return Truncated();
    std::memcpy(v, bytes_.data(), sizeof(T));
    bytes_.remove_prefix(sizeof(T));
    return Status::Ok();
  }
  Status Bytes(uint64_t n, std::string_view* out) {
    if (bytes_.size() < n) return Truncated();
    *out = bytes_.substr(0, n);
    bytes_.remove_prefix(n);
    return Status::Ok();
  }
  bool done() const { return bytes_.empty(); }

 private:
  Status Truncated() const {
    return DataLoss(label_ + " is truncated inside its payload; the file is corrupt");
  }
  std::string_view bytes_;
  const std::string& label_;
};

void KeyCheck(const KeyboardKey& key, uint8_t out[kCheckBytes]) {
  crypto_generichash(out, kCheckBytes, reinterpret_cast<const uint8_t*>(kKeyCheckText),
                     sizeof kKeyCheckText - 1, key.data(), key.size());
}

std::string Payload(const KeyboardState& state) {
  std::string out;
  auto section = [&](uint32_t tag, const std::string& bytes) {
    Put(&out, tag);
    Put<uint64_t>(&out, bytes.size());
    out += bytes;
  };
  section(kModel, state.model);
  std::string store;
  Put<uint64_t>(&store, state.store.size());
  for (const KeyboardMessage& m : state.store) {
    Put<int64_t>(&store, m.unix_time_s);
    Put<uint32_t>(&store, static_cast<uint32_t>(m.text.size()));
    store += m.text;
  }
  section(kStore, store);
  std::string personal;
  Put(&personal, state.personal.lambda_max);
  Put(&personal, state.personal.kappa);
  Put(&personal, state.personal.discount);
  Put<int64_t>(&personal, state.fitted_on);
  Put(&personal, state.global_log_likelihood);
  Put(&personal, state.personal_log_likelihood);
  section(kPersonal, personal);
  if (!state.device_name.empty()) {
    std::string identity;
    Put<uint32_t>(&identity, static_cast<uint32_t>(state.device_name.size()));
    identity += state.device_name;
    Put<int64_t>(&identity, state.model_version);
    section(kIdentity, identity);
  }
  return out;
}

Status ParsePayload(std::string_view payload, const std::string& label, KeyboardState* state) {
  Reader r(payload, label);
  bool seen[5] = {false, false, false, false, false};
  while (!r.done()) {
    uint32_t tag;
    uint64_t len;
    std::string_view bytes;
    FTTE_RETURN_IF_ERROR(r.Get(&tag));
    FTTE_RETURN_IF_ERROR(r.Get(&len));
    FTTE_RETURN_IF_ERROR(r.Bytes(len, &bytes));
    if (tag < kModel || tag > kIdentity) {
      return InvalidArgument(label + " has a section (tag " + std::to_string(tag) +
                             ") this version of ftte does not know; it was written by a newer "
                             "ftte: update the app's ftte library");
    }
    if (seen[tag]) return DataLoss(label + " repeats section " + std::to_string(tag));
    seen[tag] = true;
    if (tag == kModel) {
      state->model.assign(bytes);
    } else if (tag == kStore) {
      Reader s(bytes, label);
      uint64_t count;
      FTTE_RETURN_IF_ERROR(s.Get(&count));
      if (count > bytes.size() / 12) return DataLoss(label + ": the store's count is impossible");
      state->store.resize(count);
      for (KeyboardMessage& m : state->store) {
        uint32_t n;
        std::string_view text;
        FTTE_RETURN_IF_ERROR(s.Get(&m.unix_time_s));
        FTTE_RETURN_IF_ERROR(s.Get(&n));
        FTTE_RETURN_IF_ERROR(s.Bytes(n, &text));
        m.text.assign(text);
      }
      if (!s.done()) return DataLoss(label + ": bytes after the store's last message");
    } else if (tag == kIdentity) {
      Reader s(bytes, label);
      uint32_t n;
      std::string_view name;
      FTTE_RETURN_IF_ERROR(s.Get(&n));
      FTTE_RETURN_IF_ERROR(s.Bytes(n, &name));
      FTTE_RETURN_IF_ERROR(s.Get(&state->model_version));
      if (name.empty() || name.size() > 256 || state->model_version < -1 || !s.done()) {
        return DataLoss(label + ": the device identity is damaged");
      }
      state->device_name.assign(name);
    } else {
      Reader s(bytes, label);
      FTTE_RETURN_IF_ERROR(s.Get(&state->personal.lambda_max));
      FTTE_RETURN_IF_ERROR(s.Get(&state->personal.kappa));
      FTTE_RETURN_IF_ERROR(s.Get(&state->personal.discount));
      FTTE_RETURN_IF_ERROR(s.Get(&state->fitted_on));
      FTTE_RETURN_IF_ERROR(s.Get(&state->global_log_likelihood));
      FTTE_RETURN_IF_ERROR(s.Get(&state->personal_log_likelihood));
      const data::PersonalParams& p = state->personal;
      if (!(p.lambda_max >= 0 && p.lambda_max < 1) || !(p.kappa >= 0 && p.kappa < 1e9) ||
          !(p.discount > 0 && p.discount < 1) || state->fitted_on < 0) {
        return DataLoss(label + ": the personal part's parameters are out of range");
      }
    }
  }
  for (uint32_t tag : {kModel, kStore, kPersonal}) {
    if (!seen[tag]) return DataLoss(label + " lacks section " + std::to_string(tag));
  }
  return Status::Ok();
}

}  // namespace

std::string NewDeviceName() {
  FTTE_CHECK(sodium_init() >= 0) << "libsodium failed to initialise";
  uint8_t bytes[8];
  randombytes_buf(bytes, sizeof bytes);
  char hex[2 * sizeof bytes + 1];
  sodium_bin2hex(hex, sizeof hex, bytes, sizeof bytes);
  return std::string("kbd-") + hex;
}

Result<std::string> EncodeKeyboardState(const KeyboardState& state,
                                        const std::optional<KeyboardKey>& key) {
  if (sodium_init() < 0) return Status(StatusCode::kInternal, "libsodium failed to initialise");
  const std::string payload = Payload(state);
  std::string out;
  out.append(kMagic, sizeof kMagic);
  Put(&out, kVersion);
  Put<uint32_t>(&out, key ? kEncrypted : 0);
  uint8_t check[kCheckBytes] = {};
  uint8_t nonce[kNonceBytes] = {};
  if (key) {
    KeyCheck(*key, check);
    randombytes_buf(nonce, sizeof nonce);
  }
  out.append(reinterpret_cast<const char*>(check), sizeof check);
  out.append(reinterpret_cast<const char*>(nonce), sizeof nonce);
  const uint64_t body =
      payload.size() + (key ? crypto_aead_xchacha20poly1305_ietf_ABYTES : kSumBytes);
  Put(&out, body);
  const size_t header = out.size();
  out.resize(header + body);
  auto* dst = reinterpret_cast<uint8_t*>(out.data());
  if (key) {
    unsigned long long written = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        dst + header, &written, reinterpret_cast<const uint8_t*>(payload.data()), payload.size(),
        dst, header, nullptr, nonce, key->data());
  } else {
    std::memcpy(dst + header, payload.data(), payload.size());
    crypto_generichash(dst + header + payload.size(), kSumBytes, dst, header + payload.size(),
                       nullptr, 0);
  }
  return out;
}

Result<KeyboardState> DecodeKeyboardState(const std::string& image,
                                          const std::optional<KeyboardKey>& key,
                                          const std::string& label, bool* encrypted) {
  if (sodium_init() < 0) return Status(StatusCode::kInternal, "libsodium failed to initialise");
  if (image.size() < sizeof kMagic || std::memcmp(image.data(), kMagic, sizeof kMagic) != 0) {
    return InvalidArgument(label +
                           " is not a keyboard state file (it does not start with \"ftte-kbd\"); "
                           "point state_dir at a directory of the keyboard's own");
  }
  if (image.size() < kHeaderBytes) {
    return DataLoss(label + " is truncated (" + std::to_string(image.size()) +
                    " bytes, shorter than its header); the file is corrupt");
  }
  uint32_t version, flags;
  uint64_t body;
  std::memcpy(&version, image.data() + 8, 4);
  std::memcpy(&flags, image.data() + 12, 4);
  std::memcpy(&body, image.data() + kHeaderBytes - 8, 8);
  if (version != kVersion) {
    return InvalidArgument(label + " has format version " + std::to_string(version) +
                           "; this ftte reads version " + std::to_string(kVersion) +
                           (version > kVersion ? ": update the app's ftte library" : ""));
  }
  if ((flags & ~kEncrypted) != 0) return DataLoss(label + " has unknown flags; it is corrupt");
  if (body != image.size() - kHeaderBytes) {
    return DataLoss(label + " holds " + std::to_string(image.size() - kHeaderBytes) +
                    " bytes after its header but says " + std::to_string(body) +
                    "; the file is truncated or corrupt");
  }
  const auto* src = reinterpret_cast<const uint8_t*>(image.data());
  std::string payload;
  *encrypted = (flags & kEncrypted) != 0;
  if (*encrypted) {
    if (!key) {
      return Unauthenticated(label + " is encrypted; pass the key it was saved with");
    }
    uint8_t check[kCheckBytes];
    KeyCheck(*key, check);
    if (sodium_memcmp(check, src + 16, kCheckBytes) != 0) {
      return Unauthenticated(label +
                             " was encrypted with another key; pass the key it was "
                             "saved with");
    }
    if (body < crypto_aead_xchacha20poly1305_ietf_ABYTES) {
      return DataLoss(label + " is too short to hold its encrypted payload");
    }
    payload.resize(body - crypto_aead_xchacha20poly1305_ietf_ABYTES);
    unsigned long long n = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            reinterpret_cast<uint8_t*>(payload.data()), &n, nullptr, src + kHeaderBytes, body, src,
            kHeaderBytes, src + 16 + kCheckBytes, key->data()) != 0) {
      return DataLoss(label +
                      " fails authentication with the right key: it is corrupt or was "
                      "altered");
    }
  } else {
    if (body < kSumBytes) return DataLoss(label + " is too short to hold its checksum");
    uint8_t sum[kSumBytes];
    crypto_generichash(sum, kSumBytes, src, image.size() - kSumBytes, nullptr, 0);
    if (sodium_memcmp(sum, src + image.size() - kSumBytes, kSumBytes) != 0) {
      return DataLoss(label + " fails its checksum: the file is corrupt");
    }
    payload.assign(image, kHeaderBytes, body - kSumBytes);
  }
  KeyboardState state;
  FTTE_RETURN_IF_ERROR(ParsePayload(payload, label, &state));
  sodium_memzero(payload.data(), payload.size());
  return state;
}

}  // namespace ftte::net
