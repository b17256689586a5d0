#include "ftte/data/lm_data.h"

#include <algorithm>
#include <cmath>

#include "ftte/core/check.h"

namespace ftte::data {

namespace {

Status CheckHoldout(double holdout_fraction) {
  if (!(holdout_fraction >= 0.0 && holdout_fraction < 1.0)) {
    return InvalidArgument("holdout_fraction " + std::to_string(holdout_fraction) +
                           " is outside [0, 1); use e.g. 0.1 to hold out the last 10% of each "
                           "user's text");
  }
  return Status::Ok();
}

ImageDataset EmptySequences(int64_t context, int64_t vocab) {
  ImageDataset d;
  d.channels = 1;
  d.height = 1;
  d.width = static_cast<int>(context);
  d.num_classes = static_cast<int>(vocab);
  d.labels_per_sample = context;
  return d;
}

// Appends the samples of stream[begin, end) to `d` and their indices to `indices`; returns the
// number of targets (labels other than kIgnoreLabel) added.
int64_t AppendSamples(const std::vector<int32_t>& stream, int64_t begin, int64_t end,
                      int64_t context, LastChunk last, ImageDataset& d,
                      std::vector<int64_t>& indices) {
  int64_t targets = 0;
  for (int64_t start = begin; start + 1 < end; start += context) {
    const int64_t real = std::min(context, end - 1 - start);  // positions with a target
    if (real < context && last == LastChunk::kDrop) break;
    for (int64_t t = 0; t < context; ++t) {
      const bool in = t < real;
      d.images.push_back(in ? static_cast<float>(stream[static_cast<size_t>(start + t)]) : 0.0f);
      d.labels.push_back(in ? stream[static_cast<size_t>(start + t + 1)] : kIgnoreLabel);
    }
    indices.push_back(d.size++);
    targets += real;
  }
  return targets;
}

}  // namespace

int64_t HeldOutStart(int64_t n, double holdout_fraction) {
  FTTE_CHECK(n >= 0 && holdout_fraction >= 0.0 && holdout_fraction < 1.0)
      << "HeldOutStart(" << n << ", " << holdout_fraction << ")";
  return n - static_cast<int64_t>(std::floor(static_cast<double>(n) * holdout_fraction));
}

Result<Tokenizer> TrainTokenizer(TokenizerKind kind, const TextCorpus& corpus, int64_t max_size,
                                 double holdout_fraction) {
  FTTE_RETURN_IF_ERROR(CheckHoldout(holdout_fraction));
  if (kind == TokenizerKind::kSubword) {
    // Pieces exist only once the model does: train on the whole lines within each user's first
    // HeldOutStart(bytes) bytes.
    std::vector<std::string> texts;
    texts.reserve(corpus.users.size());
    for (const TextUser& u : corpus.users) {
      const auto end =
          static_cast<size_t>(HeldOutStart(static_cast<int64_t>(u.text.size()), holdout_fraction));
      const size_t line_end = end == u.text.size() ? end : u.text.rfind('\n', end);
      texts.push_back(line_end == std::string::npos ? std::string() : u.text.substr(0, line_end));
    }
    return Tokenizer::Train(kind, texts, max_size);
  }
  PieceCounts counts;
  for (const TextUser& u : corpus.users) {
    const std::vector<std::string> pieces = Tokenizer::Split(kind, u.text);
    const int64_t train_end = HeldOutStart(static_cast<int64_t>(pieces.size()), holdout_fraction);
    for (int64_t i = 0; i < train_end; ++i) ++counts[pieces[static_cast<size_t>(i)]];
  }
  return Tokenizer::FromCounts(kind, counts, max_size);
}

Result<LanguageModelData> MakeLanguageModelData(const TextCorpus& corpus,
                                                const Tokenizer& tokenizer, int64_t context,
                                                double holdout_fraction, LastChunk last) {
  if (context < 1 || context > (int64_t{1} << 20)) {
    return InvalidArgument("context " + std::to_string(context) +
                           " is outside [1, 2^20]; it is the number of tokens per sample, e.g. 32");
  }
  FTTE_RETURN_IF_ERROR(CheckHoldout(holdout_fraction));
  if (corpus.users.empty()) {
    return InvalidArgument(
        "the text corpus has no users; load one with LoadBibleKjv or "
        "LoadTextDirectory");
  }
  LanguageModelData out;
  out.train = EmptySequences(context, tokenizer.size());
  out.test = EmptySequences(context, tokenizer.size());
  out.train_by_user.resize(corpus.users.size());
  out.test_by_user.resize(corpus.users.size());
  for (size_t u = 0; u < corpus.users.size(); ++u) {
    const std::vector<int32_t> ids = tokenizer.Encode(corpus.users[u].text);
    const auto n = static_cast<int64_t>(ids.size());
    out.tokens += n;
    for (int32_t id : ids) out.unknown_tokens += id == Tokenizer::kUnkId ? 1 : 0;
    const int64_t split = HeldOutStart(n, holdout_fraction);
    out.train_targets +=
        AppendSamples(ids, 0, split, context, last, out.train, out.train_by_user[u]);
    // One id earlier: the last training id is the context of the first held-out target.
    out.test_targets += AppendSamples(ids, std::max<int64_t>(split - 1, 0), n, context, last,
                                      out.test, out.test_by_user[u]);
  }
  return out;
}

}  // namespace ftte::data
