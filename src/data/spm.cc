#include "spm.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "ftte/core/check.h"

#ifndef FTTE_HAVE_SENTENCEPIECE
#define FTTE_HAVE_SENTENCEPIECE 0
#endif

namespace ftte::data::internal {

namespace {

// The module's C interface (spm_shim.cc).
struct Api {
  int (*train)(const char* const*, const size_t*, size_t, const char* const*, const char* const*,
               size_t, char**, size_t*, char**);
  void* (*load)(const char*, size_t, char**);
  void (*unload)(void*);
  int (*info)(const void*, int);
  const char* (*piece)(const void*, int, size_t*);
  int (*encode)(const void*, const char*, size_t, int**, size_t*, char**);
  char* (*decode)(const void*, const int*, size_t, size_t*);
  void (*release)(void*);
};

struct Loaded {
  Status status;
  Api api{};
};

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitizer = true;
#else
constexpr bool kSanitizer = false;
#endif
#else
constexpr bool kSanitizer = false;
#endif

Loaded LoadModule() {
  Loaded l;
#if !FTTE_HAVE_SENTENCEPIECE
  l.status = Status(StatusCode::kUnimplemented,
                    "this build of ftte has no SentencePiece, so subword tokenizers are "
                    "unavailable; install libsentencepiece-dev (scripts/setup.sh) and rebuild, or "
                    "use the word or char tokenizer");
  return l;
#else
  const char* env = std::getenv("FTTE_SPM_MODULE");
  const std::string path = env != nullptr && env[0] != '\0' ? env : FTTE_SPM_MODULE;
  int flags = RTLD_NOW | RTLD_LOCAL;
  if constexpr (kSanitizer) {
    // AddressSanitizer refuses RTLD_DEEPBIND; without it SentencePiece's bundled protobuf would
    // bind to a libprotobuf already in the process.
    if (dlsym(RTLD_DEFAULT,
              "_ZN6google8protobuf11MessageLite15ParseFromStringERKNSt7__cxx1112ba"
              "sic_stringIcSt11char_traitsIcESaIcEEE") != nullptr) {
      l.status = Status(StatusCode::kUnimplemented,
                        "subword tokenizers are unavailable in a sanitizer build of a program "
                        "that links libprotobuf (SentencePiece cannot be isolated without "
                        "RTLD_DEEPBIND); use the release build");
      return l;
    }
  } else {
    flags |= RTLD_DEEPBIND;
  }
  void* h = dlopen(path.c_str(), flags);
  if (h == nullptr) {
    const char* why = dlerror();
    l.status = Status(StatusCode::kUnimplemented,
                      "cannot load the SentencePiece module " + path + " (" +
                          (why != nullptr ? why : "?") +
                          "); rebuild ftte, or point FTTE_SPM_MODULE at libftte_spm.so");
    return l;
  }
  auto sym = [&](const char* name) { return dlsym(h, name); };
  l.api.train = reinterpret_cast<decltype(l.api.train)>(sym("ftte_spm_train"));
  l.api.load = reinterpret_cast<decltype(l.api.load)>(sym("ftte_spm_load"));
  l.api.unload = reinterpret_cast<decltype(l.api.unload)>(sym("ftte_spm_unload"));
  l.api.info = reinterpret_cast<decltype(l.api.info)>(sym("ftte_spm_info"));
  l.api.piece = reinterpret_cast<decltype(l.api.piece)>(sym("ftte_spm_piece"));
  l.api.encode = reinterpret_cast<decltype(l.api.encode)>(sym("ftte_spm_encode"));
  l.api.decode = reinterpret_cast<decltype(l.api.decode)>(sym("ftte_spm_decode"));
  l.api.release = reinterpret_cast<decltype(l.api.release)>(sym("ftte_spm_release"));
  if (!l.api.train || !l.api.load || !l.api.unload || !l.api.info || !l.api.piece ||
      !l.api.encode || !l.api.decode || !l.api.release) {
    l.status = Status(StatusCode::kUnimplemented,
                      path +
                          " is not ftte's SentencePiece module (a function is missing); "
                          "rebuild ftte");
  }
  return l;
#endif
}

const Loaded& Module() {
  // Never destroyed or unloaded: tokenizers in static storage may outlive anything else.
  static const Loaded* loaded = new Loaded(LoadModule());
  return *loaded;
}

const Api& A() { return Module().api; }

// Takes a malloc'ed message from the module.
std::string Take(char* message) {
  std::string s = message != nullptr ? message : "";
  A().release(message);
  return s;
}

}  // namespace

Status SpmAvailable() { return Module().status; }

Result<std::shared_ptr<const SpmModel>> SpmModel::Load(const std::string& serialized,
                                                       const std::string& what) {
  FTTE_RETURN_IF_ERROR(SpmAvailable());
  char* error = nullptr;
  void* h = A().load(serialized.data(), serialized.size(), &error);
  if (h == nullptr) {
    return DataLoss(what + ": the SentencePiece model does not load (" + Take(error) +
                    "); the file is corrupt or not an ftte tokenizer");
  }
  return std::shared_ptr<const SpmModel>(new SpmModel(h));
}

Result<std::string> SpmModel::Train(const std::vector<std::string>& lines,
                                    const std::vector<std::pair<std::string, std::string>>& args) {
  FTTE_RETURN_IF_ERROR(SpmAvailable());
  std::vector<const char*> texts, keys, values;
  std::vector<size_t> lens;
  for (const std::string& l : lines) {
    texts.push_back(l.data());
    lens.push_back(l.size());
  }
  for (const auto& [k, v] : args) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  char *model = nullptr, *error = nullptr;
  size_t len = 0;
  if (A().train(texts.data(), lens.data(), texts.size(), keys.data(), values.data(), keys.size(),
                &model, &len, &error) != 0) {
    return InvalidArgument(Take(error));
  }
  std::string out(model, len);
  A().release(model);
  return out;
}

SpmModel::~SpmModel() { A().unload(handle_); }

int SpmModel::size() const { return A().info(handle_, 0); }
int SpmModel::unk_id() const { return A().info(handle_, 1); }
int SpmModel::eos_id() const { return A().info(handle_, 2); }
int SpmModel::bos_id() const { return A().info(handle_, 3); }
int SpmModel::pad_id() const { return A().info(handle_, 4); }

std::string SpmModel::Piece(int id) const {
  size_t len = 0;
  const char* p = A().piece(handle_, id, &len);
  return std::string(p, len);
}

void SpmModel::Encode(std::string_view line, std::vector<int32_t>& ids) const {
  int* out = nullptr;
  size_t n = 0;
  char* error = nullptr;
  const int rc = A().encode(handle_, line.data(), line.size(), &out, &n, &error);
  FTTE_CHECK(rc == 0) << "SentencePiece cannot encode a line: " << Take(error);
  ids.insert(ids.end(), out, out + n);
  A().release(out);
}

std::string SpmModel::Decode(const std::vector<int32_t>& ids) const {
  static_assert(sizeof(int) == sizeof(int32_t));
  size_t len = 0;
  char* text = A().decode(handle_, ids.data(), ids.size(), &len);
  std::string out(text, len);
  A().release(text);
  return out;
}

}  // namespace ftte::data::internal
