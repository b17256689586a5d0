#include "text_env.h"

#include <algorithm>
#include <optional>

#include "ftte/data/lm_data.h"
#include "ftte/data/lm_model.h"
#include "ftte/data/ngram.h"
#include "ftte/data/text.h"
#include "ftte/data/tokenizer.h"
#include "ftte/fl/update.h"

namespace ftte::sim::internal {

namespace {

// config.init: the checkpoint's spec and values go to env; returns its tokenizer. The checkpoint
// must hold the configured model (by name) at the configured context.
Result<data::Tokenizer> InitialModel(const SimConfig& c, Environment* env) {
  FTTE_ASSIGN_OR_RETURN(data::LanguageModel lm, data::LoadLanguageModel(c.init));
  const std::string spec = lm.model->name();
  const std::string name = spec.substr(0, spec.find(':'));
  const std::string wanted = c.model.substr(0, c.model.find(':'));
  if (name != wanted) {
    return InvalidArgument("init " + c.init + " holds " + spec + ", but model = \"" + c.model +
                           "\"; set model = \"" + name + "\" (the checkpoint's spec is used)");
  }
  const int64_t context = lm.model->sample_shape()[0];
  if (context != c.context) {
    return InvalidArgument("init " + c.init + " was trained with context " +
                           std::to_string(context) +
                           ", but context = " + std::to_string(c.context) +
                           "; set context = " + std::to_string(context));
  }
  env->model = spec;
  env->initial_weights = fl::GetWeights(*lm.model);
  return std::move(lm.tokenizer);
}

}  // namespace

Status MakeTextEnvironment(const SimConfig& c, Environment* env) {
  // The checkpoint first: a wrong one is refused before the corpus is read.
  std::optional<data::Tokenizer> tokenizer;
  if (!c.init.empty()) {
    FTTE_ASSIGN_OR_RETURN(tokenizer, InitialModel(c, env));
  }
  data::TextCorpus corpus;
  if (c.dataset == "text-dir") {
    FTTE_ASSIGN_OR_RETURN(corpus, data::LoadTextDirectory(c.data_dir));
  } else {
    const auto granularity = c.dataset == "bible-books" ? data::BibleGranularity::kBook
                                                        : data::BibleGranularity::kChapter;
    FTTE_ASSIGN_OR_RETURN(corpus, data::LoadBibleKjv(granularity, c.bible_command));
  }
  FTTE_ASSIGN_OR_RETURN(const data::TokenizerKind kind, data::ParseTokenizerKind(c.tokenizer));
  if (!tokenizer) {
    // Server side: the vocabulary sees only training text, and ships with the model.
    FTTE_ASSIGN_OR_RETURN(tokenizer, data::TrainTokenizer(kind, corpus, c.vocab, c.holdout));
    env->model = EffectiveModelSpec(c, tokenizer->size());
  }
  FTTE_ASSIGN_OR_RETURN(data::LanguageModelData lm,
                        data::MakeLanguageModelData(corpus, *tokenizer, c.context, c.holdout));
  env->language_model = true;
  env->vocab = tokenizer->size();
  env->tokenizer = std::make_shared<const data::Tokenizer>(*tokenizer);
  env->train = std::move(lm.train);
  env->user_test = std::move(lm.test);
  env->partition.clear();
  env->test_partition.clear();
  env->device_users.clear();
  env->skipped_users = 0;
  for (size_t u = 0; u < corpus.users.size(); ++u) {
    if (lm.train_by_user[u].empty()) {
      ++env->skipped_users;
      continue;
    }
    env->partition.push_back(std::move(lm.train_by_user[u]));
    env->test_partition.push_back(std::move(lm.test_by_user[u]));
    env->device_users.push_back(corpus.users[u].name);
  }
  if (env->partition.empty()) {
    return InvalidArgument(c.dataset + ": none of the " + std::to_string(corpus.users.size()) +
                           " users has enough text for one training sample; add text or lower "
                           "holdout");
  }
  const int64_t n = env->user_test.size;
  if (c.on_validation) {
    // Tuning trials: tune.validation training samples, drawn at random (by seed), become the
    // evaluated set and leave the devices' data (a device left without any sample leaves the
    // trial); the held-out text is not touched.
    const int64_t total = env->train.size;
    FTTE_ASSIGN_OR_RETURN(const std::vector<int64_t> held, ValidationIndices(c, total));
    std::vector<int64_t> renumber(static_cast<size_t>(total), 0), kept;
    for (int64_t i : held) renumber[static_cast<size_t>(i)] = -1;
    for (int64_t i = 0; i < total; ++i) {
      if (renumber[static_cast<size_t>(i)] < 0) continue;
      renumber[static_cast<size_t>(i)] = static_cast<int64_t>(kept.size());
      kept.push_back(i);
    }
    env->test = env->train.Subset(held);
    env->train = env->train.Subset(kept);
    size_t out = 0;
    for (size_t d = 0; d < env->partition.size(); ++d) {
      std::vector<int64_t> mine;
      for (int64_t i : env->partition[d]) {
        if (renumber[static_cast<size_t>(i)] >= 0) mine.push_back(renumber[static_cast<size_t>(i)]);
      }
      if (mine.empty()) continue;
      env->partition[out] = std::move(mine);
      env->test_partition[out] = std::move(env->test_partition[d]);
      env->device_users[out] = std::move(env->device_users[d]);
      ++out;
    }
    env->partition.resize(out);
    env->test_partition.resize(out);
    env->device_users.resize(out);
  } else if (c.test_limit > 0 && c.test_limit < n) {
    // Evaluation on an even spread of held-out samples (they are ordered by user).
    std::vector<int64_t> pick;
    for (int64_t i = 0; i < c.test_limit; ++i) pick.push_back(i * n / c.test_limit);
    env->test = env->user_test.Subset(pick);
  } else {
    env->test = env->user_test;
  }
  const data::KneserNey3 ngram(env->train, env->vocab);
  const data::NgramScores ref = ngram.Evaluate(env->test, data::Tokenizer::kUnkId);
  if (ref.scored == 0) {
    return InvalidArgument(
        c.dataset + ": the held-out text (holdout = " + std::to_string(c.holdout) + ") has " +
        (ref.positions == 0 ? std::string("no next word to score")
                            : "only <unk> targets (words outside the vocabulary)") +
        ", so no result could be measured; raise holdout (e.g. 0.1) or vocab");
  }
  env->reference = {
      static_cast<double>(ref.positions - ref.scored) / static_cast<double>(ref.positions),
      ref.top1(), ref.top3(), ref.perplexity()};
  PopulationConfig population = c.population;
  population.devices = static_cast<int64_t>(env->partition.size());
  FTTE_ASSIGN_OR_RETURN(env->devices, MakeDevices(population, c.seed));
  if (env->devices.size() < env->partition.size()) {
    return InvalidArgument("devices.trace_csv has " + std::to_string(env->devices.size()) +
                           " profiles but " + c.dataset + " has " +
                           std::to_string(env->partition.size()) +
                           " users with training text; give the trace a row per user");
  }
  env->devices.resize(env->partition.size());
  return Status::Ok();
}

}  // namespace ftte::sim::internal
