// A language model as a keyboard ships it: one safetensors checkpoint holding the weights, the
// model spec (metadata "ftte.model") and the vocabulary (metadata "ftte.tokenizer", the
// Tokenizer::Serialize text), so the file alone suffices to predict. PyTorch still loads the
// weights with safetensors.torch.load_file (metadata is ignored there).
//
// NextWordPredictor turns the text typed so far into the k most likely next pieces (words for a
// word tokenizer, characters for a char tokenizer).
//
// Errors are Status values naming the file, the problem and the fix; nothing here aborts on bad
// input. Objects are not thread-safe; use one predictor per thread.
#ifndef FTTE_DATA_LM_MODEL_H_
#define FTTE_DATA_LM_MODEL_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ftte/core/model.h"
#include "ftte/core/safetensors.h"
#include "ftte/core/status.h"
#include "ftte/core/trainer.h"
#include "ftte/data/tokenizer.h"

namespace ftte::data {

inline constexpr char kTokenizerMetadataKey[] = "ftte.tokenizer";

// Writes `model` (SaveCheckpoint, atomically) with `tokenizer` in the metadata. Fails
// (InvalidArgument, nothing written) unless the model is a language model (label_positions() >
// 1 or a [T] sample) whose vocabulary (num_classes()) equals tokenizer.size().
Status SaveLanguageModel(Model& model, const Tokenizer& tokenizer, const std::string& path);
// The same checkpoint image in memory.
Result<std::string> SerializeLanguageModel(Model& model, const Tokenizer& tokenizer);

struct LanguageModel {
  std::unique_ptr<Model> model;
  Tokenizer tokenizer;
};

// Reads a checkpoint written by SaveLanguageModel: rebuilds the model from its spec and loads
// the weights and the tokenizer. Errors: NotFound (no file), DataLoss (truncated or corrupt),
// InvalidArgument when the file is not an ftte checkpoint (no "ftte.model"), holds an image
// model (names it and says how to train a language model), lacks the tokenizer (saved without
// one) or has a tokenizer whose size differs from the model's vocabulary.
Result<LanguageModel> LoadLanguageModel(const std::string& path);
// The same from a file already parsed (ParseSafetensors of an embedded image); `label` names
// it in errors.
Result<LanguageModel> LanguageModelFrom(const SafetensorsFile& file, const std::string& label);

struct NextPiece {
  int32_t id = 0;
  std::string piece;       // the vocabulary piece ("<eos>": the line ends here)
  double probability = 0;  // softmax over the whole vocabulary
};

struct NextPiecePrediction {
  std::vector<int32_t> context;  // the ids the model saw, oldest first (<eos> first = line start)
  int64_t prompt_pieces = 0;     // pieces of the text before truncation
  int64_t unknown = 0;           // of those, pieces not in the vocabulary (mapped to <unk>)
  std::vector<NextPiece> top;    // most likely first, <unk> excluded
};

// The ids a model reads after `text`, the start of a line being typed: the encoded text without
// the <eos> the tokenizer adds to an unfinished line (kept if the text ends in '\n'), <eos>
// first as the line start, as in training. Not truncated.
std::vector<int32_t> LineContext(const Tokenizer& tokenizer, std::string_view text);

class NextWordPredictor {
 public:
  // Takes ownership; freezes every parameter and allocates a forward-only plan for one sample.
  // `lm.model` must not be null.
  NextWordPredictor(LanguageModel lm, int threads = 1);
  ~NextWordPredictor();

  // The k most likely pieces to follow `text`, the start of a line being typed. The text is
  // encoded with the tokenizer (unknown pieces become <unk>); a trailing <eos> that the
  // tokenizer adds to an unfinished line is dropped, and <eos> is put first as the line start,
  // as in training. A context longer than the model's is truncated from the left. Costs one
  // forward pass over the model's context length.
  NextPiecePrediction Predict(std::string_view text, int k);

  // The model's next-id distribution (softmax over the whole vocabulary, <unk> included)
  // after `context`, ids oldest first as the model saw them in training (<eos> first at a line
  // start), truncated from the left to the model's context. `context` must not be empty.
  void Distribution(std::span<const int32_t> context, std::vector<float>* probs);
  // The model's context length in ids.
  int64_t context_length() const { return static_cast<int64_t>(x_.size()); }

  Model& model() { return *lm_.model; }
  const Tokenizer& tokenizer() const { return lm_.tokenizer; }

 private:
  LanguageModel lm_;
  std::unique_ptr<Trainer> trainer_;
  std::vector<float> x_;
  std::vector<int32_t> labels_;
};

}  // namespace ftte::data

#endif  // FTTE_DATA_LM_MODEL_H_
