#include "lm_train_cmd.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "ftte/core/rng.h"
#include "ftte/core/trainer.h"
#include "ftte/data/lm_data.h"
#include "ftte/data/lm_model.h"
#include "ftte/data/ngram.h"
#include "ftte/data/text.h"
#include "ftte/data/tokenizer.h"
#include "train_setup.h"

namespace ftte::cli {

namespace {

// The parts of a language model spec "name:key=value,..." that the data decides.
struct LmSpec {
  std::string name;
  std::string vocab, context;  // as written in the spec; empty if absent
  std::string rest;            // the other options, ",key=value..." (e.g. ",rank=8")
};

LmSpec SplitSpec(const std::string& spec) {
  LmSpec s;
  const size_t colon = spec.find(':');
  s.name = spec.substr(0, colon);
  if (colon == std::string::npos) return s;
  size_t begin = colon + 1;
  while (begin <= spec.size()) {
    size_t comma = spec.find(',', begin);
    if (comma == std::string::npos) comma = spec.size();
    const std::string item = spec.substr(begin, comma - begin);
    if (item.rfind("vocab=", 0) == 0) {
      s.vocab = item.substr(6);
    } else if (item.rfind("context=", 0) == 0) {
      s.context = item.substr(8);
    } else if (!item.empty()) {
      s.rest.append(",").append(item);
    }
    begin = comma + 1;
  }
  return s;
}

// A seeded random subset of n samples (all if n >= size), in ascending index order.
data::ImageDataset RandomSubset(const data::ImageDataset& d, int64_t n, uint64_t seed) {
  if (n >= d.size) return d;
  std::vector<int64_t> idx(static_cast<size_t>(d.size));
  for (int64_t i = 0; i < d.size; ++i) idx[i] = i;
  Rng rng(seed);
  for (int64_t i = 0; i < n; ++i) {
    std::swap(idx[i], idx[i + static_cast<int64_t>(rng.Below(static_cast<uint64_t>(d.size - i)))]);
  }
  idx.resize(static_cast<size_t>(n));
  std::sort(idx.begin(), idx.end());
  return d.Subset(idx);
}

Result<data::TextCorpus> LoadCorpus(const std::string& name) {
  if (name == "bible") return data::LoadBibleKjv(data::BibleGranularity::kChapter);
  if (name == "fashion-mnist" || name == "cifar10") {
    return InvalidArgument("--data " + name +
                           " holds images; a language model trains on text: --data bible or "
                           "--data DIR (a directory of text files, one per user)");
  }
  return data::LoadTextDirectory(name);
}

struct TextRun {
  data::LanguageModelData data;
  std::unique_ptr<data::Tokenizer> tokenizer;
  std::string spec;
  int64_t users = 0, corpus_bytes = 0;
  double tokenizer_seconds = 0;  // training the vocabulary
};

Result<TextRun> PrepareText(const Flags& f) {
  const LmSpec spec = SplitSpec(f.Get("model", ""));
  const std::string kind_name = f.Get("tokenizer", "word");
  const Result<data::TokenizerKind> parsed = data::ParseTokenizerKind(kind_name);
  if (!parsed.ok()) {
    return Status(parsed.status().code(), "--tokenizer: " + parsed.status().message());
  }
  const data::TokenizerKind kind = parsed.value();
  if (f.Has("vocab") && !spec.vocab.empty()) {
    return InvalidArgument("give the vocabulary size once: --vocab or vocab= in --model");
  }
  if (f.Has("context") && !spec.context.empty()) {
    return InvalidArgument("give the context length once: --context or context= in --model");
  }
  // Defaults: the zoo's (MakeModel of the bare name), unless the spec or a flag says otherwise.
  std::string bare = spec.name;
  if (!spec.rest.empty()) bare.append(":").append(spec.rest, 1);
  FTTE_ASSIGN_OR_RETURN(auto probe, MakeModel(bare));
  const int64_t default_vocab = probe->num_classes();
  const int64_t default_context = probe->sample_shape()[0];
  int64_t vocab = default_vocab, context = default_context;
  if (!spec.vocab.empty()) {
    char* end = nullptr;
    vocab = std::strtoll(spec.vocab.c_str(), &end, 10);
    if (*end != '\0') return InvalidArgument("vocab=" + spec.vocab + " is not a whole number");
  }
  if (!spec.context.empty()) {
    char* end = nullptr;
    context = std::strtoll(spec.context.c_str(), &end, 10);
    if (*end != '\0') return InvalidArgument("context=" + spec.context + " is not a whole number");
  }
  FTTE_ASSIGN_OR_RETURN(vocab, f.GetInt("vocab", vocab, 3, data::Tokenizer::kMaxSize));
  FTTE_ASSIGN_OR_RETURN(context, f.GetInt("context", context, 1, 4096));
  FTTE_ASSIGN_OR_RETURN(double holdout, f.GetDouble("holdout", 0.1));
  if (!(holdout > 0 && holdout < 1)) {
    return InvalidArgument(
        "--holdout must be in (0, 1) (the fraction of each user's text held "
        "out for evaluation), got " +
        f.Get("holdout", ""));
  }
  FTTE_ASSIGN_OR_RETURN(data::TextCorpus corpus, LoadCorpus(f.Get("data", "bible")));
  TextRun run;
  run.users = static_cast<int64_t>(corpus.users.size());
  run.corpus_bytes = corpus.bytes();
  const auto tokenizer_start = std::chrono::steady_clock::now();
  FTTE_ASSIGN_OR_RETURN(data::Tokenizer tok, data::TrainTokenizer(kind, corpus, vocab, holdout));
  run.tokenizer_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - tokenizer_start).count();
  FTTE_ASSIGN_OR_RETURN(run.data, data::MakeLanguageModelData(corpus, tok, context, holdout));
  if (run.data.train.size == 0) {
    return InvalidArgument("--data " + f.Get("data", "bible") +
                           " yields no training sample (too little text); give each user at "
                           "least a few words");
  }
  run.spec = spec.name + ":vocab=" + std::to_string(tok.size()) +
             ",context=" + std::to_string(context) + spec.rest;
  run.tokenizer = std::make_unique<data::Tokenizer>(std::move(tok));
  return run;
}

}  // namespace

std::map<std::string, bool> TextTrainFlags() {
  return {{"tokenizer", true},
          {"vocab", true},
          {"context", true},
          {"holdout", true},
          {"test-limit", true}};
}

int RunTrainText(const Flags& f) {
  if (f.Has("data-dir")) {
    return Fail(
        InvalidArgument("a language model takes its text from --data bible or --data "
                        "DIR (a directory of text files); drop --data-dir"));
  }
  auto prepared = PrepareText(f);
  if (!prepared.ok()) return Fail(prepared.status());
  TextRun& run = prepared.value();
  data::ImageDataset& train = run.data.train;
  data::ImageDataset& test = run.data.test;
  auto epochs = f.GetInt("epochs", 1, 1, 10000);
  auto seed = f.GetInt("seed", 0, 0, INT64_MAX);
  auto limit = f.GetInt("limit", train.size, 1, INT64_MAX);
  auto test_limit = f.GetInt("test-limit", test.size, 0, INT64_MAX);
  for (const Status& st : {epochs.status(), seed.status(), limit.status(), test_limit.status()}) {
    if (!st.ok()) return Fail(st);
  }
  const auto subset_seed = static_cast<uint64_t>(seed.value()) ^ 0x11a1ULL;
  train = RandomSubset(train, limit.value(), subset_seed);
  test = RandomSubset(test, test_limit.value(), subset_seed + 1);
  auto setup = MakeSetup(f, run.spec, train.images.data(), train.labels.data(), train.size,
                         OptimizerDefaults{"adam", 0.002});
  if (!setup.ok()) return Fail(setup.status());
  Setup& s = setup.value();
  s.options.unscored_class = data::Tokenizer::kUnkId;  // a keyboard never suggests <unk>
  const bool json = f.Has("json");
  const data::Tokenizer& tok = *run.tokenizer;
  const double unk = static_cast<double>(run.data.unknown_tokens) /
                     static_cast<double>(std::max<int64_t>(run.data.tokens, 1));
  int64_t train_targets = 0;
  for (int32_t y : train.labels) train_targets += y >= 0;
  if (!json) {
    std::fprintf(stderr,
                 "data %s: %lld users, %s tokens (%s tokenizer, %lld pieces, %.1f%% <unk>, "
                 "trained in %.1f s); training on %s samples (%s tokens)\n",
                 f.Get("data", "bible").c_str(), static_cast<long long>(run.users),
                 WithCommas(run.data.tokens).c_str(), data::TokenizerKindName(tok.kind()),
                 static_cast<long long>(tok.size()), 100 * unk, run.tokenizer_seconds,
                 WithCommas(train.size).c_str(), WithCommas(train_targets).c_str());
  }
  if (!s.selection_note.empty()) std::fprintf(stderr, "%s\n", s.selection_note.c_str());
  const int64_t predicted = PredictPeak(*s.model, s.options).total;

  Trainer trainer(s.model.get(), s.options);
  const EpochsResult r = TrainEpochs(trainer, train, epochs.value(), s.options.seed, "tokens");
  if (!r.status.ok()) return Fail(r.status);
  const MemoryStats mem = s.model->tracker().stats();
  StepResult ev;
  if (test.size > 0) ev = trainer.Evaluate(test.images.data(), test.labels.data(), test.size);
  if (!ev.status.ok()) return Fail(ev.status);
  // Accuracies are over targets that are not <unk>; the reference is a 3-gram on the same text.
  const double scored = static_cast<double>(std::max<int64_t>(ev.scored, 1));
  const double top1 = static_cast<double>(ev.correct) / scored;
  const double top3 = static_cast<double>(ev.correct_top3) / scored;
  const double test_unk = static_cast<double>(ev.positions - ev.scored) /
                          static_cast<double>(std::max<int64_t>(ev.positions, 1));
  const data::NgramScores ngram =
      data::KneserNey3(train, tok.size()).Evaluate(test, data::Tokenizer::kUnkId);
  const std::string save = f.Get("save", "");
  if (f.Has("save")) {
    Status st = data::SaveLanguageModel(*s.model, tok, save);
    if (!st.ok()) return Fail(st);
  }
  const double tps = static_cast<double>(r.positions) / std::max(r.seconds, 1e-9);
  if (json) {
    std::printf(
        "{\"model\": \"%s\", \"mask\": \"%s\", \"tokenizer\": \"%s\", \"vocab\": %lld, "
        "\"epochs\": %lld, \"batch\": %lld, \"threads\": %d, \"users\": %lld, \"tokens\": %lld, "
        "\"unknown_fraction\": %s, \"train_samples\": %lld, \"train_tokens\": %lld, "
        "\"test_tokens\": %lld, \"test_top1\": %s, \"test_top3\": %s, \"test_loss\": %s, "
        "\"test_perplexity\": %s, \"test_unk_rate\": %s, \"ngram_top1\": %s, "
        "\"ngram_top3\": %s, \"ngram_perplexity\": %s, \"train_loss\": %s, \"peak_bytes\": %lld, "
        "\"predicted_peak_bytes\": %lld, \"full_training_peak_bytes\": %lld, "
        "\"peak_by_category\": %s, \"trainable_params\": %lld, \"params\": %lld, "
        "\"train_seconds\": %s, \"tokens_per_s\": %s, \"checkpoint\": \"%s\", %s}\n",
        s.model->name().c_str(), s.mask.c_str(), data::TokenizerKindName(tok.kind()),
        static_cast<long long>(tok.size()), static_cast<long long>(epochs.value()),
        static_cast<long long>(s.options.batch), s.options.threads,
        static_cast<long long>(run.users), static_cast<long long>(run.data.tokens),
        Json(unk).c_str(), static_cast<long long>(train.size),
        static_cast<long long>(train_targets), static_cast<long long>(ev.positions),
        Json(top1).c_str(), Json(top3).c_str(), Json(ev.loss).c_str(),
        Json(ev.perplexity()).c_str(), Json(test_unk).c_str(), Json(ngram.top1()).c_str(),
        Json(ngram.top3()).c_str(), Json(ngram.perplexity()).c_str(),
        Json(r.last_epoch_loss).c_str(), static_cast<long long>(mem.peak_total),
        static_cast<long long>(predicted), static_cast<long long>(s.full_peak),
        CategoriesJson(mem.at_peak).c_str(), static_cast<long long>(s.model->num_trainable()),
        static_cast<long long>(s.model->num_params()), Json(r.seconds).c_str(), Json(tps).c_str(),
        save.c_str(), PlanJson(s).c_str());
    return 0;
  }
  std::printf("model %s, mask %s: %s of %s parameters trained\n", s.model->name().c_str(),
              s.mask.c_str(), WithCommas(s.model->num_trainable()).c_str(),
              WithCommas(s.model->num_params()).c_str());
  if (ev.scored > 0) {
    std::printf(
        "held-out        top-1 %.2f%%  top-3 %.2f%%  perplexity %.1f  (%s tokens, %.1f%% of "
        "them <unk>: not scored)\n",
        100 * top1, 100 * top3, ev.perplexity(), WithCommas(ev.positions).c_str(), 100 * test_unk);
    std::printf(
        "3-gram          top-1 %.2f%%  top-3 %.2f%%  perplexity %.1f  (Kneser-Ney, same "
        "training text: the reference to beat)\n",
        100 * ngram.top1(), 100 * ngram.top3(), ngram.perplexity());
  } else if (ev.positions > 0) {
    std::printf(
        "held-out        every one of the %s held-out tokens is <unk>: nothing to score "
        "(raise --vocab)\n",
        WithCommas(ev.positions).c_str());
  } else {
    std::printf("held-out        no held-out tokens (--test-limit 0 or too little text)\n");
  }
  std::printf("peak memory     %s measured, %s predicted (full training: %s)\n",
              FormatBytes(mem.peak_total).c_str(), FormatBytes(predicted).c_str(),
              FormatBytes(s.full_peak).c_str());
  std::printf("train time      %.1f s, %.0f tokens/s on %d thread(s), final loss %.4f\n", r.seconds,
              tps, s.options.threads, r.last_epoch_loss);
  if (f.Has("save")) {
    std::printf("saved           %s (weights, model spec, %s tokenizer of %lld pieces)\n",
                save.c_str(), data::TokenizerKindName(tok.kind()),
                static_cast<long long>(tok.size()));
  }
  return 0;
}

}  // namespace ftte::cli
