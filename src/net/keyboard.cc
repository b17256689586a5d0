// The keyboard C API (include/ftte/net/ftte_keyboard.h).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "c_status.h"
#include "ftte/core/file.h"
#include "ftte/data/lm_data.h"
#include "ftte/data/lm_model.h"
#include "ftte/data/personal_lm.h"
#include "ftte/data/text.h"
#include "ftte/fl/update.h"
#include "ftte/net/device.h"
#include "ftte/net/ftte_keyboard.h"
#include "keyboard_state.h"

namespace fs = std::filesystem;
using ftte::Result;
using ftte::Status;

namespace {

constexpr char kStateFile[] = "state.ftte";
constexpr char kLockFile[] = "LOCK";
constexpr int64_t kDay = 86400;

struct Message {
  int64_t unix_time_s;
  std::string text;
  std::vector<int32_t> ids;
};

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace

struct ftte_keyboard {
  std::string dir, state_path;
  std::optional<ftte::net::KeyboardKey> key;
  int64_t max_bytes = 0, max_age_s = 0;
  int lock_fd = -1;
  std::unique_ptr<ftte::data::NextWordPredictor> predictor;
  std::unique_ptr<ftte::data::PersonalNgram> personal;
  std::deque<Message> store;
  int64_t store_bytes = 0, tokens = 0, dropped = 0;
  int64_t fitted_on = 0;
  double global_ll = 0, personal_ll = 0;
  bool dirty = false;
  std::string device_name;     // the federation identity, kept in the state
  int64_t model_version = -1;  // the federation's version of the global part (-1: the base)
  std::atomic<bool> stop{false};
  std::mutex federating_mu;  // guards `federating` for ftte_keyboard_stop
  ftte::net::Device* federating = nullptr;
  std::string last_error;
  std::vector<std::string> suggestions;  // what predict's ftte_suggestion::text points into

  ~ftte_keyboard() {
    if (lock_fd >= 0) ::close(lock_fd);
  }
};

namespace {

int Fail(ftte_keyboard* k, const Status& s) {
  k->last_error = s.ToString();
  return ftte::net::CCode(s);
}

int Ok(ftte_keyboard* k) {
  k->last_error.clear();
  return FTTE_OK;
}

const ftte::data::Tokenizer& Tok(const ftte_keyboard* k) { return k->predictor->tokenizer(); }

// Drops the oldest messages while the store is over its size or they are over its age.
void Retain(ftte_keyboard* k, int64_t now) {
  while (!k->store.empty() &&
         (k->store_bytes > k->max_bytes ||
          (k->max_age_s > 0 && k->store.front().unix_time_s < now - k->max_age_s))) {
    const Message& m = k->store.front();
    k->personal->Remove(m.ids);
    k->store_bytes -= static_cast<int64_t>(m.text.size());
    k->tokens -= static_cast<int64_t>(m.ids.size());
    k->store.pop_front();
    ++k->dropped;
    k->dirty = true;
  }
}

void Push(ftte_keyboard* k, int64_t time, std::string text) {
  Message m{time, std::move(text), {}};
  m.ids = Tok(k).Encode(m.text);
  k->personal->Add(m.ids);
  k->store_bytes += static_cast<int64_t>(m.text.size());
  k->tokens += static_cast<int64_t>(m.ids.size());
  // Oldest first, so that retention drops from the front (text imported late goes back in time).
  auto at = std::upper_bound(k->store.begin(), k->store.end(), time,
                             [](int64_t t, const Message& x) { return t < x.unix_time_s; });
  k->store.insert(at, std::move(m));
}

ftte::net::KeyboardState Snapshot(ftte_keyboard* k, std::string model) {
  ftte::net::KeyboardState s;
  s.model = std::move(model);
  for (const Message& m : k->store) s.store.push_back({m.unix_time_s, m.text});
  s.personal = k->personal->params();
  s.fitted_on = k->fitted_on;
  s.global_log_likelihood = k->global_ll;
  s.personal_log_likelihood = k->personal_ll;
  s.device_name = k->device_name;
  s.model_version = k->model_version;
  return s;
}

Status Save(ftte_keyboard* k) {
  FTTE_ASSIGN_OR_RETURN(std::string model,
                        ftte::data::SerializeLanguageModel(k->predictor->model(), Tok(k)));
  FTTE_ASSIGN_OR_RETURN(std::string image,
                        ftte::net::EncodeKeyboardState(Snapshot(k, std::move(model)), k->key));
  FTTE_RETURN_IF_ERROR(ftte::WriteFileAtomically(k->state_path, {image}, 0600));
  k->dirty = false;
  return Status::Ok();
}

// A directory entry other than the keyboard's own files.
Result<std::string> ForeignEntry(const std::string& dir) {
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name != kStateFile && name != kLockFile && name != std::string(kStateFile) + ".tmp") {
      return name;
    }
  }
  if (ec) return ftte::IoError("cannot list " + dir + ": " + ec.message());
  return std::string();
}

Status Lock(ftte_keyboard* k) {
  const std::string path = k->dir + "/" + kLockFile;
  k->lock_fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (k->lock_fd < 0) {
    return ftte::IoError("cannot create " + path + ": " + std::strerror(errno) +
                         "; is state_dir writable?");
  }
  if (::flock(k->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    return ftte::FailedPrecondition(k->dir +
                                    " is open in another ftte_keyboard (this or another process); "
                                    "close that one first");
  }
  return Status::Ok();
}

Status Open(const ftte_keyboard_options& o, ftte_keyboard* k) {
  if (o.state_dir == nullptr || *o.state_dir == '\0') {
    return ftte::InvalidArgument("options.state_dir is required: a directory of the app's own");
  }
  if (o.store_max_bytes < 1024) {
    return ftte::InvalidArgument("options.store_max_bytes is " + std::to_string(o.store_max_bytes) +
                                 "; keep at least 1024 bytes of text (default 1 MiB)");
  }
  if (o.store_max_age_s < 0) {
    return ftte::InvalidArgument("options.store_max_age_s must be >= 0 (0 = keep forever)");
  }
  if (o.threads < 1 || o.threads > 256) {
    return ftte::InvalidArgument("options.threads must be in [1, 256], got " +
                                 std::to_string(o.threads));
  }
  k->dir = o.state_dir;
  k->state_path = k->dir + "/" + kStateFile;
  k->max_bytes = o.store_max_bytes;
  k->max_age_s = o.store_max_age_s;
  if (o.key != nullptr) {
    k->key.emplace();
    std::memcpy(k->key->data(), o.key, k->key->size());
  }
  std::error_code ec;
  if (!fs::exists(k->dir, ec)) {
    if (!fs::create_directory(k->dir, ec)) {
      return ftte::IoError("cannot create state_dir " + k->dir + ": " + ec.message() +
                           "; does its parent exist and is it writable?");
    }
  } else if (!fs::is_directory(k->dir, ec)) {
    return ftte::InvalidArgument("state_dir " + k->dir + " is not a directory");
  }
  Result<std::string> image = ftte::ReadWholeFile(k->state_path);
  const bool fresh = image.status().code() == ftte::StatusCode::kNotFound;
  if (!image.ok() && !fresh) return image.status();
  if (fresh) {
    FTTE_ASSIGN_OR_RETURN(std::string other, ForeignEntry(k->dir));
    if (!other.empty()) {
      return ftte::InvalidArgument(
          "state_dir " + k->dir + " holds '" + other + "' but no " + kStateFile +
          ": it is not a keyboard state directory; pass an empty or new directory");
    }
    if (o.base_model == nullptr || *o.base_model == '\0') {
      return ftte::NotFound("state_dir " + k->dir +
                            " holds no keyboard state and no base_model "
                            "was given; pass base_model = a checkpoint written by `ftte train "
                            "--model lstm_lm --data ... --save CKPT`");
    }
  }
  FTTE_RETURN_IF_ERROR(Lock(k));
  ftte::net::KeyboardState state;
  auto load = [&]() -> Result<ftte::data::LanguageModel> {
    if (fresh) return ftte::data::LoadLanguageModel(o.base_model);
    bool encrypted = false;
    FTTE_ASSIGN_OR_RETURN(
        state, ftte::net::DecodeKeyboardState(image.value(), k->key, k->state_path, &encrypted));
    if (k->key && !encrypted) k->dirty = true;  // the next save encrypts it
    FTTE_ASSIGN_OR_RETURN(
        ftte::SafetensorsFile file,
        ftte::ParseSafetensors(reinterpret_cast<const uint8_t*>(state.model.data()),
                               state.model.size(), k->state_path + " (model)"));
    return ftte::data::LanguageModelFrom(file, k->state_path + " (model)");
  };
  FTTE_ASSIGN_OR_RETURN(ftte::data::LanguageModel lm, load());
  const int64_t vocab = lm.model->num_classes();
  k->predictor = std::make_unique<ftte::data::NextWordPredictor>(std::move(lm), o.threads);
  k->personal = std::make_unique<ftte::data::PersonalNgram>(vocab, state.personal);
  k->fitted_on = state.fitted_on;
  k->global_ll = state.global_log_likelihood;
  k->personal_ll = state.personal_log_likelihood;
  k->device_name = state.device_name;
  k->model_version = state.model_version;
  if (k->device_name.empty()) {  // a new keyboard, or one saved before federation: named once
    k->device_name = ftte::net::NewDeviceName();
    k->dirty = true;
  }
  for (ftte::net::KeyboardMessage& m : state.store) {
    if (ftte::data::Utf8ErrorAt(m.text) != std::string_view::npos) {
      return ftte::DataLoss(k->state_path + " holds a message that is not UTF-8; it is corrupt");
    }
    Push(k, m.unix_time_s, std::move(m.text));
  }
  Retain(k, Now());
  if (fresh || k->dirty) FTTE_RETURN_IF_ERROR(Save(k));
  return Status::Ok();
}

// Word characters of the word tokenizer (tokenizer.h): letters, digits, non-ASCII bytes.
bool WordByte(unsigned char c) { return std::isalnum(c) || c >= 0x80; }

Status CheckText(const char* text, size_t len, const char* what) {
  if (text == nullptr && len > 0) return ftte::InvalidArgument(std::string(what) + " is NULL");
  const std::string_view s(text == nullptr ? "" : text, len);
  const size_t bad = ftte::data::Utf8ErrorAt(s);
  if (bad != std::string_view::npos) {
    return ftte::InvalidArgument(std::string(what) + " is not valid UTF-8 (byte " +
                                 std::to_string(bad) + " of " + std::to_string(len) +
                                 "); pass UTF-8 text");
  }
  if (s.find('\0') != std::string_view::npos) {
    return ftte::InvalidArgument(std::string(what) + " contains a NUL byte at " +
                                 std::to_string(s.find('\0')) + "; pass len = the text's length");
  }
  return Status::Ok();
}

// Ranks ids by probability (descending, then id), <unk> excluded; keeps those `keep` accepts.
template <typename Keep>
std::vector<int32_t> Top(const std::vector<double>& p, int k, Keep keep) {
  std::vector<int32_t> order;
  for (int32_t id = 0; id < static_cast<int32_t>(p.size()); ++id) {
    if (id != ftte::data::Tokenizer::kUnkId && keep(id)) order.push_back(id);
  }
  const size_t n = std::min(order.size(), static_cast<size_t>(k));
  std::partial_sort(order.begin(), order.begin() + static_cast<ptrdiff_t>(n), order.end(),
                    [&p](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
  order.resize(n);
  return order;
}

// The next-id distribution after `context` (ids, <eos> first at a line start): the global
// part's, mixed with the personal part's if `personal`.
void Distribution(ftte_keyboard* k, std::span<const int32_t> context, bool personal,
                  std::vector<float>* global, std::vector<double>* out) {
  k->predictor->Distribution(context, global);
  out->resize(global->size());
  if (personal) {
    k->personal->Mix(context, *global, *out);
  } else {
    std::copy(global->begin(), global->end(), out->begin());
  }
}

}  // namespace

extern "C" {

void ftte_keyboard_options_init(ftte_keyboard_options* o) {
  if (o == nullptr) return;
  std::memset(o, 0, sizeof *o);
  o->store_max_bytes = int64_t{1} << 20;
  o->store_max_age_s = 90 * kDay;
  o->threads = 1;
}

ftte_keyboard* ftte_keyboard_open(const ftte_keyboard_options* options, int* code, char* err,
                                  size_t err_len) {
  auto k = std::make_unique<ftte_keyboard>();
  Status s = options == nullptr ? ftte::InvalidArgument(
                                      "options is NULL; call "
                                      "ftte_keyboard_options_init first")
                                : Open(*options, k.get());
  if (code != nullptr) *code = ftte::net::CCode(s);
  if (!s.ok()) {
    if (err != nullptr && err_len > 0) std::snprintf(err, err_len, "%s", s.ToString().c_str());
    return nullptr;
  }
  if (err != nullptr && err_len > 0) err[0] = '\0';
  return k.release();
}

int ftte_keyboard_add_text(ftte_keyboard* k, const char* text, size_t len, int64_t unix_time_s) {
  if (k == nullptr) return FTTE_ERR_INVALID_ARGUMENT;
  Status s = CheckText(text, len, "text");
  if (!s.ok()) return Fail(k, s);
  const int64_t now = Now();
  if (unix_time_s == 0) unix_time_s = now;
  if (unix_time_s < 0 || unix_time_s > now + kDay) {
    return Fail(k, ftte::InvalidArgument("unix_time_s = " + std::to_string(unix_time_s) +
                                         " is not a time the text could have been typed; pass "
                                         "0 for now"));
  }
  if (static_cast<int64_t>(len) > k->max_bytes) {
    return Fail(k, ftte::InvalidArgument("the text is " + std::to_string(len) +
                                         " bytes, more than the store keeps (store_max_bytes = " +
                                         std::to_string(k->max_bytes) + "); add it in parts"));
  }
  std::string t(text, len);
  if (Tok(k).Split(t).empty()) {
    return Fail(k, ftte::InvalidArgument("the text has no words (empty or only spaces); add "
                                         "what the person typed"));
  }
  Push(k, unix_time_s, std::move(t));
  k->dirty = true;
  Retain(k, now);
  return Ok(k);
}

int ftte_keyboard_predict(ftte_keyboard* k, const char* context, size_t len, int top, int personal,
                          ftte_suggestion* out, int* count) {
  if (k == nullptr) return FTTE_ERR_INVALID_ARGUMENT;
  if (out == nullptr || count == nullptr || top < 1 || top > 1000) {
    return Fail(k, ftte::InvalidArgument("predict needs out, count and 1 <= k <= 1000"));
  }
  *count = 0;
  Status s = CheckText(context, len, "context");
  if (!s.ok()) return Fail(k, s);
  std::string_view text(context == nullptr ? "" : context, len);
  // A word being typed: suggest completions of it, from the context before it.
  std::string prefix;
  if (Tok(k).kind() == ftte::data::TokenizerKind::kWord) {
    size_t start = text.size();
    while (start > 0 && WordByte(static_cast<unsigned char>(text[start - 1]))) --start;
    for (size_t i = start; i < text.size(); ++i) {
      prefix += static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
    }
    text = text.substr(0, start);
  }
  const std::vector<int32_t> ids = ftte::data::LineContext(Tok(k), text);
  std::vector<float> global;
  std::vector<double> p;
  Distribution(k, ids, personal != 0, &global, &p);
  const std::vector<int32_t> best = Top(
      p, top, [&](int32_t id) { return prefix.empty() || Tok(k).Piece(id).starts_with(prefix); });
  k->suggestions.assign(best.size(), "");
  for (size_t i = 0; i < best.size(); ++i) {
    const bool eol = best[i] == ftte::data::Tokenizer::kEosId;
    k->suggestions[i] = eol ? "" : Tok(k).Display(best[i]);
    out[i].text = k->suggestions[i].c_str();
    out[i].probability = p[static_cast<size_t>(best[i])];
    out[i].end_of_line = eol ? 1 : 0;
  }
  *count = static_cast<int>(best.size());
  return Ok(k);
}

int ftte_keyboard_personalize(ftte_keyboard* k, const ftte_keyboard_session* session) {
  if (k == nullptr) return FTTE_ERR_INVALID_ARGUMENT;
  if (session != nullptr && session->time_budget_ms < 0) {
    return Fail(k, ftte::InvalidArgument("session.time_budget_ms must be >= 0 (0 = no limit)"));
  }
  k->stop = false;
  const auto start = std::chrono::steady_clock::now();
  const int64_t budget = session == nullptr ? 0 : session->time_budget_ms;
  int64_t asked = 0;
  auto keep_going = [&] {
    if (session != nullptr && session->progress != nullptr) {
      session->progress(
          session->user,
          std::min(1.0, static_cast<double>(asked) / ftte::data::PersonalNgram::kFitGridPoints));
    }
    ++asked;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    return !k->stop && (budget == 0 || ms < budget);
  };
  std::vector<std::vector<int32_t>> messages;
  for (const Message& m : k->store) messages.push_back(m.ids);
  ftte::data::PersonalNgram fitted(k->personal->vocab(), k->personal->params());
  const int64_t context = k->predictor->context_length();
  const ftte::data::PersonalFit fit = fitted.Fit(
      messages,
      [&](std::span<const int32_t> stream, int64_t t, std::vector<float>* probs) {
        const int64_t from = std::max<int64_t>(0, t - context);
        k->predictor->Distribution(stream.subspan(from, t - from), probs);
      },
      ftte::data::Tokenizer::kUnkId, keep_going);
  *k->personal = std::move(fitted);
  if (fit.scored > 0) {
    k->fitted_on = fit.scored;
    k->global_ll = fit.global_log_likelihood;
    k->personal_ll = fit.personal_log_likelihood;
  }
  k->dirty = true;
  if (session != nullptr && session->progress != nullptr) session->progress(session->user, 1.0);
  Status s = Save(k);
  if (!s.ok()) return Fail(k, s);
  if (!fit.complete && k->stop) {
    k->last_error = "personalize was stopped (ftte_keyboard_stop); the best fit so far is kept";
    return FTTE_ERR_CANCELLED;
  }
  return Ok(k);
}

void ftte_keyboard_stop(ftte_keyboard* k) {
  if (k == nullptr) return;
  k->stop = true;
  std::lock_guard<std::mutex> lock(k->federating_mu);
  if (k->federating != nullptr) k->federating->Stop();
}

int ftte_keyboard_federate(ftte_keyboard* k, const ftte_device_options* options,
                           ftte_device_stats* stats) {
  if (k == nullptr) return FTTE_ERR_INVALID_ARGUMENT;
  if (stats != nullptr) std::memset(stats, 0, sizeof *stats);
  ftte_device_options named;
  if (options != nullptr && options->name == nullptr) {  // the keyboard's own identity
    named = *options;
    named.name = k->device_name.c_str();
    options = &named;
  }
  auto o = ftte::net::DeviceOptionsFromC(options);
  if (!o.ok()) return Fail(k, o.status());
  o->final_values = true;
  // The store's messages as next-word samples of the model's context, as in training.
  ftte::data::TextCorpus corpus;
  corpus.users.push_back({"store", ""});
  for (const Message& m : k->store) {
    corpus.users[0].text += m.text;
    if (m.text.back() != '\n') corpus.users[0].text += '\n';
  }
  auto samples =
      ftte::data::MakeLanguageModelData(corpus, Tok(k), k->predictor->context_length(), 0.0);
  if (!samples.ok()) return Fail(k, samples.status());
  if (samples->train_targets == 0) {
    return Fail(k, ftte::FailedPrecondition(
                       "the store holds no text to train on; add what the person types with "
                       "ftte_keyboard_add_text first"));
  }
  auto device = ftte::net::Device::Create(std::move(o).value(), std::move(samples->train));
  if (!device.ok()) return Fail(k, device.status());
  k->stop = false;
  {
    std::lock_guard<std::mutex> lock(k->federating_mu);
    k->federating = device->get();
  }
  const Status run = (*device)->Run();
  {
    std::lock_guard<std::mutex> lock(k->federating_mu);
    k->federating = nullptr;
  }
  if (stats != nullptr) *stats = ftte::net::DeviceStatsToC((*device)->stats());
  if (!run.ok()) return Fail(k, run);
  // Adopt the federation's model as the global part, if it is this keyboard's model.
  const ftte::net::DeviceModel m = (*device)->model();
  ftte::Model& mine = k->predictor->model();
  if (m.version >= 0) {
    if (m.spec != mine.name() ||
        static_cast<int64_t>(m.weights.size()) != ftte::fl::TotalNumel(ftte::fl::LayoutOf(mine))) {
      return Fail(
          k, ftte::FailedPrecondition("the federation trains '" + m.spec +
                                      "' but this keyboard's model is '" + mine.name() +
                                      "'; start the server from the keyboard's base checkpoint "
                                      "([model] init)"));
    }
    // A model that cannot predict is refused whoever sent it; the keyboard keeps its own.
    for (size_t i = 0; i < m.weights.size(); ++i) {
      if (!std::isfinite(m.weights[i])) {
        return Fail(k, ftte::DataLoss("the federation's model of version " +
                                      std::to_string(m.version) + " holds a non-finite value (at " +
                                      std::to_string(i) + "); the keyboard keeps its model"));
      }
    }
    ftte::fl::SetWeights(mine, m.weights);
    k->model_version = m.version;
    k->dirty = true;
    if (Status saved = Save(k); !saved.ok()) return Fail(k, saved);
  }
  if (k->stop) {
    k->last_error = m.version >= 0 ? "federate was stopped (ftte_keyboard_stop); the model of "
                                     "version " +
                                         std::to_string(m.version) + " is kept"
                                   : "federate was stopped before any model arrived; nothing "
                                     "changed";
    return FTTE_ERR_CANCELLED;
  }
  return Ok(k);
}

int ftte_keyboard_evaluate(ftte_keyboard* k, const char* text, size_t len,
                           ftte_keyboard_eval* out) {
  if (k == nullptr) return FTTE_ERR_INVALID_ARGUMENT;
  if (out == nullptr) return Fail(k, ftte::InvalidArgument("evaluate needs out"));
  Status s = CheckText(text, len, "text");
  if (!s.ok()) return Fail(k, s);
  std::vector<int32_t> stream = {ftte::data::Tokenizer::kEosId};
  const std::vector<int32_t> ids = Tok(k).Encode(std::string_view(text, len));
  stream.insert(stream.end(), ids.begin(), ids.end());
  const int64_t context = k->predictor->context_length();
  int64_t scored = 0, hit1[2] = {0, 0}, hit3[2] = {0, 0};
  double loss[2] = {0, 0};
  std::vector<float> global;
  std::vector<double> p;
  for (size_t t = 1; t < stream.size(); ++t) {
    const int32_t target = stream[t];
    if (target == ftte::data::Tokenizer::kUnkId) continue;
    const size_t from = t > static_cast<size_t>(context) ? t - static_cast<size_t>(context) : 0;
    const std::span<const int32_t> ctx(stream.data() + from, t - from);
    k->predictor->Distribution(ctx, &global);
    p.resize(global.size());
    k->personal->Mix(ctx, global, p);
    ++scored;
    for (int which = 0; which < 2; ++which) {
      auto prob = [&](int32_t id) {
        return which == 0 ? static_cast<double>(global[static_cast<size_t>(id)])
                          : p[static_cast<size_t>(id)];
      };
      const double pt = prob(target);
      int64_t rank = 0;  // ids ranked before the target (<unk> never suggested)
      for (int32_t id = 0; id < static_cast<int32_t>(p.size()) && rank < 3; ++id) {
        if (id == ftte::data::Tokenizer::kUnkId || id == target) continue;
        const double q = prob(id);
        if (q > pt || (q == pt && id < target)) ++rank;
      }
      hit1[which] += rank < 1;
      hit3[which] += rank < 3;
      loss[which] -= std::log(std::max(pt, 1e-300));
    }
  }
  const double n = std::max<double>(1, static_cast<double>(scored));
  out->scored = scored;
  out->global_top1 = static_cast<double>(hit1[0]) / n;
  out->global_top3 = static_cast<double>(hit3[0]) / n;
  out->global_perplexity = std::exp(loss[0] / n);
  out->top1 = static_cast<double>(hit1[1]) / n;
  out->top3 = static_cast<double>(hit3[1]) / n;
  out->perplexity = std::exp(loss[1] / n);
  if (scored == 0) {
    return Fail(k, ftte::InvalidArgument("the text has no word of the vocabulary to score; "
                                         "pass more text"));
  }
  return Ok(k);
}

int ftte_keyboard_save(ftte_keyboard* k) {
  if (k == nullptr) return FTTE_ERR_INVALID_ARGUMENT;
  Status s = Save(k);
  return s.ok() ? Ok(k) : Fail(k, s);
}

void ftte_keyboard_get_stats(const ftte_keyboard* k, ftte_keyboard_stats* s) {
  if (k == nullptr || s == nullptr) return;
  std::memset(s, 0, sizeof *s);
  s->messages = static_cast<int64_t>(k->store.size());
  s->store_bytes = k->store_bytes;
  s->tokens = k->tokens;
  s->fitted_on = k->fitted_on;
  s->lambda_max = k->personal->params().lambda_max;
  s->kappa = k->personal->params().kappa;
  s->discount = k->personal->params().discount;
  s->global_log_likelihood = k->global_ll;
  s->personal_log_likelihood = k->personal_ll;
  s->dropped_messages = k->dropped;
  s->model_version = k->model_version;
  s->device_name = k->device_name.c_str();
}

const char* ftte_keyboard_last_error(const ftte_keyboard* k) {
  return k == nullptr ? "keyboard is NULL" : k->last_error.c_str();
}

int ftte_keyboard_close(ftte_keyboard* k) {
  if (k == nullptr) return FTTE_OK;
  int rc = FTTE_OK;
  if (k->dirty) {
    Status s = Save(k);
    rc = ftte::net::CCode(s);
  }
  delete k;
  return rc;
}

}  // extern "C"
