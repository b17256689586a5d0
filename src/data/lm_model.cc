#include "ftte/data/lm_model.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "ftte/core/check.h"
#include "ftte/core/checkpoint.h"
#include "ftte/core/safetensors.h"

namespace ftte::data {

namespace {

// Language models take [T] token ids; image models [C, H, W].
bool IsLanguageModel(const Model& m) { return m.sample_shape().size() == 1; }

Status CheckLanguageModel(Model& model, const Tokenizer& tokenizer) {
  if (!IsLanguageModel(model)) {
    return InvalidArgument("model " + model.name() +
                           " is an image model; only a language model is saved with a tokenizer");
  }
  if (tokenizer.size() != model.num_classes()) {
    return InvalidArgument("model " + model.name() + " predicts " +
                           std::to_string(model.num_classes()) + " ids but the tokenizer has " +
                           std::to_string(tokenizer.size()) +
                           " pieces; build the model with vocab=<tokenizer size>");
  }
  return Status::Ok();
}

}  // namespace

Status SaveLanguageModel(Model& model, const Tokenizer& tokenizer, const std::string& path) {
  FTTE_RETURN_IF_ERROR(CheckLanguageModel(model, tokenizer));
  return SaveCheckpoint(model, path, {{kTokenizerMetadataKey, tokenizer.Serialize()}});
}

Result<std::string> SerializeLanguageModel(Model& model, const Tokenizer& tokenizer) {
  FTTE_RETURN_IF_ERROR(CheckLanguageModel(model, tokenizer));
  return SerializeCheckpoint(model, {{kTokenizerMetadataKey, tokenizer.Serialize()}});
}

Result<LanguageModel> LoadLanguageModel(const std::string& path) {
  Result<SafetensorsFile> read = ReadSafetensors(path);
  if (read.status().code() == StatusCode::kNotFound) {
    return NotFound(read.status().message() +
                    "; train and save a language model with `ftte train --model lstm_lm "
                    "--data bible --save " +
                    path + "`");
  }
  FTTE_ASSIGN_OR_RETURN(SafetensorsFile file, std::move(read));
  return LanguageModelFrom(file, path);
}

Result<LanguageModel> LanguageModelFrom(const SafetensorsFile& file, const std::string& path) {
  auto spec = file.metadata.find("ftte.model");
  if (spec == file.metadata.end()) {
    return InvalidArgument(path +
                           " is a safetensors file without \"ftte.model\" metadata, so not an "
                           "ftte checkpoint; save one with `ftte train --model lstm_lm --data "
                           "bible --save " +
                           path + "`");
  }
  FTTE_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, MakeModel(spec->second));
  if (!IsLanguageModel(*model)) {
    return InvalidArgument(path + " holds the image model '" + spec->second +
                           "', not a language model; train one with `ftte train --model "
                           "lstm_lm|tiny_gpt --data bible|DIR --save CKPT`");
  }
  auto vocab = file.metadata.find(kTokenizerMetadataKey);
  if (vocab == file.metadata.end()) {
    return InvalidArgument(path + " holds language model '" + spec->second +
                           "' but no tokenizer (metadata \"" + kTokenizerMetadataKey +
                           "\"); save it with `ftte train ... --save`, which stores both");
  }
  FTTE_ASSIGN_OR_RETURN(
      Tokenizer tokenizer,
      Tokenizer::Parse(vocab->second, path + " metadata " + kTokenizerMetadataKey));
  if (tokenizer.size() != model->num_classes()) {
    return InvalidArgument(path + ": the tokenizer has " + std::to_string(tokenizer.size()) +
                           " pieces but model '" + spec->second + "' predicts " +
                           std::to_string(model->num_classes()) + " ids; the file is inconsistent");
  }
  FTTE_RETURN_IF_ERROR(LoadCheckpoint(*model, file, path));
  return LanguageModel{std::move(model), std::move(tokenizer)};
}

std::vector<int32_t> LineContext(const Tokenizer& tokenizer, std::string_view text) {
  std::vector<int32_t> ids = {Tokenizer::kEosId};
  const std::vector<int32_t> encoded = tokenizer.Encode(text);
  ids.insert(ids.end(), encoded.begin(), encoded.end());
  if (ids.size() > 1 && ids.back() == Tokenizer::kEosId && (text.empty() || text.back() != '\n')) {
    ids.pop_back();  // the line is still being typed
  }
  return ids;
}

NextWordPredictor::NextWordPredictor(LanguageModel lm, int threads) : lm_(std::move(lm)) {
  FTTE_CHECK(lm_.model != nullptr);
  lm_.model->SetAllTrainable(false);
  TrainerOptions o;
  o.batch = 1;
  o.threads = threads;
  trainer_ = std::make_unique<Trainer>(lm_.model.get(), o);
  x_.assign(static_cast<size_t>(NumElements(lm_.model->sample_shape())), 0.0f);
  labels_.assign(static_cast<size_t>(lm_.model->label_positions()), -1);
}

NextWordPredictor::~NextWordPredictor() = default;

NextPiecePrediction NextWordPredictor::Predict(std::string_view text, int k) {
  NextPiecePrediction out;
  std::vector<int32_t> ids = LineContext(lm_.tokenizer, text);
  out.prompt_pieces = static_cast<int64_t>(ids.size()) - 1;
  out.unknown = std::count(ids.begin(), ids.end(), Tokenizer::kUnkId);
  const auto context = static_cast<size_t>(x_.size());
  if (ids.size() > context) ids.erase(ids.begin(), ids.end() - static_cast<ptrdiff_t>(context));
  out.context = ids;
  std::vector<float> probs;
  Distribution(ids, &probs);
  const int64_t vocab = lm_.model->num_classes();
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::erase(order, Tokenizer::kUnkId);
  const size_t n = std::min(order.size(), static_cast<size_t>(std::max(k, 0)));
  std::partial_sort(order.begin(), order.begin() + static_cast<ptrdiff_t>(n), order.end(),
                    [&probs](int32_t a, int32_t b) {
                      return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
                    });
  for (size_t i = 0; i < n; ++i) {
    const int32_t id = order[i];
    out.top.push_back({id, lm_.tokenizer.Piece(id), probs[static_cast<size_t>(id)]});
  }
  return out;
}

void NextWordPredictor::Distribution(std::span<const int32_t> context, std::vector<float>* probs) {
  FTTE_CHECK(!context.empty());
  if (context.size() > x_.size()) context = context.last(x_.size());
  // Causal models: the logits at position L-1 depend only on positions < L, so padding the
  // rest of the window with id 0 changes nothing.
  std::fill(x_.begin(), x_.end(), 0.0f);
  std::copy(context.begin(), context.end(), x_.begin());
  trainer_->Evaluate(x_.data(), labels_.data(), 1);
  const int64_t vocab = lm_.model->num_classes();
  const float* row = trainer_->logits() + static_cast<int64_t>(context.size() - 1) * vocab;
  const float max = *std::max_element(row, row + vocab);
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v] - max));
  probs->resize(static_cast<size_t>(vocab));
  for (int64_t v = 0; v < vocab; ++v) {
    (*probs)[static_cast<size_t>(v)] =
        static_cast<float>(std::exp(static_cast<double>(row[v] - max)) / sum);
  }
}

}  // namespace ftte::data
