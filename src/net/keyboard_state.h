// The keyboard's state file (include/ftte/net/ftte_keyboard.h): one file, replaced atomically,
// optionally encrypted. Layout (little-endian):
//
//   header, 64 bytes:  "ftte-kbd" | u32 version (1) | u32 flags (bit 0: encrypted)
//                      | key check (16 B: BLAKE2b-128 keyed with the key, of kKeyCheckText;
//                        zeros when plain) | nonce (24 B; zeros when plain) | u64 body length
//   body:              encrypted: XChaCha20-Poly1305(payload), the header as additional data;
//                      plain: payload then BLAKE2b-256(header | payload)
//   payload:           sections, each u32 tag | u64 length | bytes:
//                      1 model    a safetensors checkpoint with the tokenizer (lm_model.h)
//                      2 store    u64 count, then per message i64 unix time | u32 length | bytes
//                      3 personal f64 lambda_max, kappa, discount | i64 fitted_on
//                                 | f64 global and personal log-likelihood of the last fit
//                      4 identity u32 length | the device name | i64 the federation model
//                                 version of the global part (-1: the base model); absent in
//                                 files written before federation (a new name is made then)
//
// The key check tells a wrong key (Unauthenticated) from a damaged file (DataLoss).
#ifndef FTTE_NET_KEYBOARD_STATE_H_
#define FTTE_NET_KEYBOARD_STATE_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ftte/core/status.h"
#include "ftte/data/personal_lm.h"

namespace ftte::net {

using KeyboardKey = std::array<uint8_t, 32>;

struct KeyboardMessage {
  int64_t unix_time_s = 0;
  std::string text;
};

struct KeyboardState {
  std::string model;  // safetensors image
  std::vector<KeyboardMessage> store;
  data::PersonalParams personal;
  int64_t fitted_on = 0;
  double global_log_likelihood = 0, personal_log_likelihood = 0;
  std::string device_name;  // the name it enrols with ("" = none yet)
  int64_t model_version = -1;
};

// A new device name: "kbd-" and 16 random hex digits (libsodium's generator).
std::string NewDeviceName();

// The file image of `state`, encrypted when `key` is set.
Result<std::string> EncodeKeyboardState(const KeyboardState& state,
                                        const std::optional<KeyboardKey>& key);

// Parses an image read from `label`. Errors: InvalidArgument (not a keyboard state, or a newer
// version), Unauthenticated (encrypted and no key, or the wrong key), DataLoss (damaged).
// *encrypted tells whether the file was.
Result<KeyboardState> DecodeKeyboardState(const std::string& image,
                                          const std::optional<KeyboardKey>& key,
                                          const std::string& label, bool* encrypted);

}  // namespace ftte::net

#endif  // FTTE_NET_KEYBOARD_STATE_H_
