// SentencePiece for tokenizer.cc, through the libftte_spm module (spm_shim.cc), loaded with
// dlopen on first use. Internal to ftte_data.
#ifndef FTTE_SRC_DATA_SPM_H_
#define FTTE_SRC_DATA_SPM_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ftte/core/status.h"

namespace ftte::data::internal {

// Ok when SentencePiece can be used in this process, else why not and the fix (a build without
// it, the module missing or not loadable, a sanitizer build in a process that has libprotobuf).
// Loads the module on the first call; thread-safe.
Status SpmAvailable();

// A trained model: serialized form in, a processor out. Immutable; safe from many threads.
class SpmModel {
 public:
  // Errors: SpmAvailable()'s, or the model does not parse (DataLoss; `what` labels the source).
  static Result<std::shared_ptr<const SpmModel>> Load(const std::string& serialized,
                                                      const std::string& what);
  // Trains on `lines` with SentencePiece trainer arguments `args`; the serialized model, or
  // SentencePiece's message (InvalidArgument).
  static Result<std::string> Train(const std::vector<std::string>& lines,
                                   const std::vector<std::pair<std::string, std::string>>& args);
  ~SpmModel();
  SpmModel(const SpmModel&) = delete;
  SpmModel& operator=(const SpmModel&) = delete;

  int size() const;
  int unk_id() const;
  int eos_id() const;
  int bos_id() const;
  int pad_id() const;
  std::string Piece(int id) const;
  // Appends the ids of one line to `ids`. Aborts (FTTE_CHECK) if SentencePiece fails.
  void Encode(std::string_view line, std::vector<int32_t>& ids) const;
  std::string Decode(const std::vector<int32_t>& ids) const;

 private:
  explicit SpmModel(void* handle) : handle_(handle) {}
  void* handle_;
};

}  // namespace ftte::data::internal

#endif  // FTTE_SRC_DATA_SPM_H_
