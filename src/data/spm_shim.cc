// libftte_spm: SentencePiece behind a small C interface, loaded by tokenizer.cc with dlopen.
//
// Why a separate module: Debian's libsentencepiece.so.0 carries its own copy of protobuf-lite and
// exports it, so a process that also links libprotobuf (gRPC: ftte serve, the device library)
// crashes at start-up when one library's protobuf binds to the other's. Loaded with
// RTLD_LOCAL | RTLD_DEEPBIND, this module and SentencePiece resolve their symbols among
// themselves first and are invisible to the rest of the process. Only plain C types cross the
// boundary; buffers are malloc'ed here and released with ftte_spm_release.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

char* CopyOut(const std::string& s, size_t* len) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out == nullptr) return nullptr;
  std::memcpy(out, s.data(), s.size());
  out[s.size()] = '\0';
  if (len != nullptr) *len = s.size();
  return out;
}

class Lines : public sentencepiece::SentenceIterator {
 public:
  Lines(const char* const* lines, const size_t* lens, size_t n)
      : lines_(lines), lens_(lens), n_(n) {
    Load();
  }
  bool done() const override { return i_ >= n_; }
  void Next() override {
    ++i_;
    Load();
  }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  void Load() {
    if (i_ < n_) value_.assign(lines_[i_], lens_[i_]);
  }
  const char* const* lines_;
  const size_t* lens_;
  size_t n_, i_ = 0;
  std::string value_;
};

}  // namespace

extern "C" {

// Trains a model on lines[0..n) with the trainer arguments keys[k] = values[k]; on success
// returns 0 and the serialized model in *model (*model_len bytes), else nonzero and *error.
__attribute__((visibility("default"))) int ftte_spm_train(
    const char* const* lines, const size_t* lens, size_t n, const char* const* keys,
    const char* const* values, size_t nargs, char** model, size_t* model_len, char** error) {
  std::unordered_map<std::string, std::string> args;
  for (size_t k = 0; k < nargs; ++k) args[keys[k]] = values[k];
  Lines it(lines, lens, n);
  std::string out;
  const sentencepiece::util::Status st =
      sentencepiece::SentencePieceTrainer::Train(args, &it, &out);
  if (!st.ok()) {
    *error = CopyOut(st.ToString(), nullptr);
    return 1;
  }
  *model = CopyOut(out, model_len);
  return 0;
}

// A processor for the serialized model, or null with *error.
__attribute__((visibility("default"))) void* ftte_spm_load(const char* model, size_t len,
                                                           char** error) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  const sentencepiece::util::Status st = sp->LoadFromSerializedProto(std::string(model, len));
  if (!st.ok()) {
    *error = CopyOut(st.ToString(), nullptr);
    delete sp;
    return nullptr;
  }
  return sp;
}

__attribute__((visibility("default"))) void ftte_spm_unload(void* sp) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(sp);
}

// which: 0 = size, 1 = unk id, 2 = eos id, 3 = bos id, 4 = pad id.
__attribute__((visibility("default"))) int ftte_spm_info(const void* sp, int which) {
  const auto* p = static_cast<const sentencepiece::SentencePieceProcessor*>(sp);
  switch (which) {
    case 0:
      return p->GetPieceSize();
    case 1:
      return p->unk_id();
    case 2:
      return p->eos_id();
    case 3:
      return p->bos_id();
    default:
      return p->pad_id();
  }
}

// The piece of id, NUL-terminated, owned by the processor.
__attribute__((visibility("default"))) const char* ftte_spm_piece(const void* sp, int id,
                                                                  size_t* len) {
  const std::string& s =
      static_cast<const sentencepiece::SentencePieceProcessor*>(sp)->IdToPiece(id);
  *len = s.size();
  return s.c_str();
}

// Ids of one line in *ids (*n of them, malloc'ed; null when none); nonzero and *error on failure.
__attribute__((visibility("default"))) int ftte_spm_encode(const void* sp, const char* text,
                                                           size_t len, int** ids, size_t* n,
                                                           char** error) {
  std::vector<int> out;
  const sentencepiece::util::Status st =
      static_cast<const sentencepiece::SentencePieceProcessor*>(sp)->Encode(std::string(text, len),
                                                                            &out);
  if (!st.ok()) {
    *error = CopyOut(st.ToString(), nullptr);
    return 1;
  }
  *n = out.size();
  *ids = nullptr;
  if (out.empty()) return 0;
  *ids = static_cast<int*>(std::malloc(out.size() * sizeof(int)));
  std::memcpy(*ids, out.data(), out.size() * sizeof(int));
  return 0;
}

// The text of ids[0..n), malloc'ed.
__attribute__((visibility("default"))) char* ftte_spm_decode(const void* sp, const int* ids,
                                                             size_t n, size_t* len) {
  const std::vector<int> v(ids, ids + n);
  return CopyOut(static_cast<const sentencepiece::SentencePieceProcessor*>(sp)->DecodeIds(v), len);
}

__attribute__((visibility("default"))) void ftte_spm_release(void* buffer) { std::free(buffer); }

}  // extern "C"
