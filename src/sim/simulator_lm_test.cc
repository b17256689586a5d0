// The simulator on text: a small corpus written to a temporary folder (one file per user),
// lstm_lm at a tiny vocabulary, a few devices.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "ftte/data/lm_model.h"
#include "ftte/data/tokenizer.h"
#include "ftte/fl/update.h"
#include "ftte/sim/config.h"
#include "ftte/sim/report.h"
#include "ftte/sim/simulator.h"
#include "thread_cluster.h"

namespace ftte::sim {
namespace {

namespace fs = std::filesystem;

// Five users with patterned sentences (learnable next words) and one without text.
std::string WriteCorpus() {
  const fs::path dir =
      fs::path(::testing::TempDir()) / ("ftte_lm_sim_corpus_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const char* subjects[] = {"the king", "a man", "the lord", "my son", "the people"};
  const char* verbs[] = {"said unto", "went to", "spake to", "came to"};
  const char* objects[] = {"the city", "his house", "the land", "the sea", "jerusalem"};
  for (int u = 0; u < 5; ++u) {
    std::ofstream f(dir / ("user" + std::to_string(u) + ".txt"));
    for (int line = 0; line < 40; ++line) {
      f << subjects[(u + line) % 5] << " " << verbs[(line * 3 + u) % 4] << " "
        << objects[(line + 2 * u) % 5] << " , and it was good .\n";
    }
  }
  std::ofstream(dir / "zz-empty.txt");
  return dir.string();
}

SimConfig TextConfig(fl::Algorithm a) {
  SimConfig c;
  c.dataset = "text-dir";
  c.data_dir = WriteCorpus();
  c.partition = "natural";
  c.model = "lstm_lm";
  c.tokenizer = "word";
  c.vocab = 40;
  c.context = 8;
  c.holdout = 0.2;
  c.test_limit = 0;
  c.calibration_samples = 16;
  c.client.local_steps = 3;
  c.client.batch = 4;
  c.client.optimizer.lr = 0.5f;
  c.duration_s = 40;
  c.eval_every_s = 10;
  c.target_accuracy = 0.2;
  c.population.memory_min = 8 << 20;
  c.population.memory_max = 64 << 20;
  MethodConfig m = DefaultMethod(a, fl::AlgorithmName(a));
  m.server.concurrency = 3;
  m.server.buffer = 2;
  c.methods.push_back(m);
  return c;
}

TEST(SimulatorTextTest, OneDevicePerUserWithTrainingText) {
  const SimConfig c = TextConfig(fl::Algorithm::kFedBuff);
  ASSERT_TRUE(ValidateSimConfig(c).ok()) << ValidateSimConfig(c).message();
  auto env = MakeEnvironment(c);
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  EXPECT_TRUE(env->language_model);
  EXPECT_EQ(env->partition.size(), 5u);
  EXPECT_EQ(env->devices.size(), 5u);
  EXPECT_EQ(env->skipped_users, 1);
  EXPECT_EQ(env->device_users.front(), "user0.txt");
  EXPECT_LE(env->vocab, 40);
  EXPECT_EQ(env->model, "lstm_lm:vocab=" + std::to_string(env->vocab) + ",context=8");
  EXPECT_EQ(env->train.labels_per_sample, 8);
  EXPECT_EQ(env->test.size, env->user_test.size);  // test_limit 0: every held-out sample
  for (size_t d = 0; d < 5; ++d) EXPECT_FALSE(env->test_partition[d].empty()) << d;
}

// A stand-in for the `bible` command: two books of two chapters, 12 verses each.
std::string FakeBible() {
  const fs::path dir =
      fs::path(::testing::TempDir()) / ("ftte_lm_sim_bible_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream verses(dir / "verses.txt");
  for (const char* book : {"Ge", "Ex"}) {
    for (int chapter = 1; chapter <= 2; ++chapter) {
      for (int v = 1; v <= 12; ++v) {
        verses << book << chapter << ":" << v << " and god said unto " << book << " , let there "
               << "be light " << v % 3 << " .\n";
      }
    }
  }
  const fs::path script = dir / "bible";
  std::ofstream(script) << "#!/bin/sh\ncat " << (dir / "verses.txt").string() << "\n";
  fs::permissions(script, fs::perms::owner_all);
  return script.string();
}

TEST(SimulatorTextTest, BibleChaptersAndBooksAreUsers) {
  SimConfig c = TextConfig(fl::Algorithm::kFedBuff);
  c.bible_command = FakeBible();
  c.data_dir.clear();
  c.dataset = "bible-chapters";
  auto chapters = MakeEnvironment(c);
  ASSERT_TRUE(chapters.ok()) << chapters.status().ToString();
  EXPECT_EQ(chapters->device_users, (std::vector<std::string>{"Ge1", "Ge2", "Ex1", "Ex2"}));
  c.dataset = "bible-books";
  auto books = MakeEnvironment(c);
  ASSERT_TRUE(books.ok()) << books.status().ToString();
  EXPECT_EQ(books->device_users, (std::vector<std::string>{"Ge", "Ex"}));
  EXPECT_EQ(books->partition.size(), 2u);
  EXPECT_EQ(books->partition[0].size() + books->partition[1].size(),
            static_cast<size_t>(books->train.size));
  c.bible_command = "/nonexistent/bible";
  auto missing = MakeEnvironment(c);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("bible-kjv"), std::string::npos);
}

TEST(SimulatorTextTest, TestLimitSpreadsEvaluationOverUsers) {
  SimConfig c = TextConfig(fl::Algorithm::kFedBuff);
  c.test_limit = 5;
  const Environment env = MakeEnvironment(c).value();
  ASSERT_EQ(env.test.size, 5);
  const int64_t n = env.user_test.size;
  std::set<size_t> users;
  for (int64_t i = 0; i < 5; ++i) {
    const int64_t picked = i * n / 5;  // every k-th held-out sample, not the first five
    EXPECT_EQ(std::vector<float>(env.test.image(i), env.test.image(i) + 8),
              std::vector<float>(env.user_test.image(picked), env.user_test.image(picked) + 8));
    for (size_t d = 0; d < env.test_partition.size(); ++d) {
      const auto& p = env.test_partition[d];
      if (std::find(p.begin(), p.end(), picked) != p.end()) users.insert(d);
    }
  }
  EXPECT_GE(users.size(), 4u);
}

TEST(SimulatorTextTest, ReportsNextWordMetrics) {
  const SimConfig c = TextConfig(fl::Algorithm::kFedBuff);
  const Environment env = MakeEnvironment(c).value();
  auto r = RunMethod(c, c.methods[0], env);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->language_model);
  ASSERT_FALSE(r->series.empty());
  for (const SeriesPoint& p : r->series) {
    EXPECT_GE(p.top3, p.accuracy);
    EXPECT_LE(p.top3, 1.0);
    EXPECT_NEAR(p.perplexity, std::exp(p.loss), 1e-3 * p.perplexity);
  }
  EXPECT_GT(r->final_accuracy, r->series.front().accuracy + 0.1);
  EXPECT_EQ(r->final_top3, r->series.back().top3);
  EXPECT_EQ(r->user_top3.users, 5);
  EXPECT_LE(r->user_top3.p10, r->user_top3.median);
  EXPECT_LE(r->user_top3.median, r->user_top3.p90);
  EXPECT_FALSE(r->personal_before.has_value());
  // Images keep their JSON: the LM fields appear only for language models.
  const std::string json = ResultsJson(c, {r.value()});
  EXPECT_NE(json.find("\"final_top3\""), std::string::npos);
  EXPECT_NE(json.find("\"perplexity\""), std::string::npos);
  EXPECT_NE(ResultsCsv({r.value()}).find("accuracy,top3,perplexity,loss"), std::string::npos);
  EXPECT_NE(SummaryTable({r.value()}).find("user top-3"), std::string::npos);
}

// tokenizer = "subword": a SentencePiece vocabulary trained on the devices' training text; the
// federation learns over its pieces as over words.
TEST(SimulatorTextTest, SubwordTokenizerIsTrainedAndLearnedOver) {
  if (!data::Tokenizer::SubwordAvailable()) GTEST_SKIP() << "built without SentencePiece";
  SimConfig c = TextConfig(fl::Algorithm::kFedBuff);
  c.tokenizer = "subword";
  c.vocab = 60;
  ASSERT_TRUE(ValidateSimConfig(c).ok()) << ValidateSimConfig(c).message();
  const Environment env = MakeEnvironment(c).value();
  EXPECT_EQ(env.tokenizer->kind(), data::TokenizerKind::kSubword);
  EXPECT_EQ(env.vocab, env.tokenizer->size());
  EXPECT_LE(env.vocab, 60);
  auto r = RunMethod(c, c.methods[0], env);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT(r->final_accuracy, r->series.front().accuracy + 0.1);
}

// init: a run continues from a checkpoint. Pretraining (run A) saved with its tokenizer, then
// run B from it: B's first evaluation is A's final one (same weights, same tokenizer, same
// held-out text), and B keeps training. A checkpoint with another tokenizer brings it along.
TEST(SimulatorTextTest, InitStartsEveryMethodFromACheckpoint) {
  SimConfig a = TextConfig(fl::Algorithm::kFedBuff);
  const Environment env_a = MakeEnvironment(a).value();
  auto pretrained = RunMethod(a, a.methods[0], env_a);
  ASSERT_TRUE(pretrained.ok()) << pretrained.status().ToString();
  auto model = MakeModel(env_a.model, 0).value();
  fl::SetWeights(*model, pretrained->final_weights);
  const std::string ckpt = ::testing::TempDir() + "ftte_sim_init_" + std::to_string(::getpid());
  ASSERT_TRUE(data::SaveLanguageModel(*model, *env_a.tokenizer, ckpt + "_a.safetensors").ok());

  SimConfig b = TextConfig(fl::Algorithm::kFedBuff);
  b.init = ckpt + "_a.safetensors";
  ASSERT_TRUE(ValidateSimConfig(b).ok()) << ValidateSimConfig(b).message();
  const Environment env_b = MakeEnvironment(b).value();
  EXPECT_EQ(env_b.model, env_a.model);
  EXPECT_EQ(env_b.initial_weights, pretrained->final_weights);
  auto tuned = RunMethod(b, b.methods[0], env_b);
  ASSERT_TRUE(tuned.ok()) << tuned.status().ToString();
  ASSERT_FALSE(tuned->series.empty());
  EXPECT_EQ(tuned->series.front().version, 0);
  EXPECT_EQ(tuned->series.front().accuracy, pretrained->final_accuracy);
  EXPECT_EQ(tuned->series.front().loss, pretrained->series.back().loss);
  EXPECT_GT(tuned->series.back().version, 0);

  // Another text's tokenizer (and a gpt): the run uses the checkpoint's vocabulary and spec.
  auto foreign = data::Tokenizer::Train(data::TokenizerKind::kWord,
                                        {"and god said unto moses , go down .\n"}, 20);
  ASSERT_TRUE(foreign.ok());
  auto gpt = MakeModel("gpt:vocab=" + std::to_string(foreign->size()) +
                           ",context=8,layers=1,width=16,heads=2",
                       3)
                 .value();
  ASSERT_TRUE(data::SaveLanguageModel(*gpt, *foreign, ckpt + "_gpt.safetensors").ok());
  SimConfig g = TextConfig(fl::Algorithm::kFedBuff);
  g.model = "gpt";
  g.init = ckpt + "_gpt.safetensors";
  const Environment env_g = MakeEnvironment(g).value();
  EXPECT_EQ(env_g.model, gpt->name());
  EXPECT_EQ(env_g.tokenizer->Serialize(), foreign->Serialize());
  EXPECT_EQ(env_g.vocab, foreign->size());
  EXPECT_EQ(env_g.initial_weights, fl::GetWeights(*gpt));
}

TEST(SimulatorTextTest, InitThatDisagreesWithTheConfigNamesTheFix) {
  SimConfig c = TextConfig(fl::Algorithm::kFedBuff);
  auto tok = data::Tokenizer::Train(data::TokenizerKind::kWord, {"a b c d e f .\n"}, 10);
  ASSERT_TRUE(tok.ok());
  auto model = MakeModel("lstm_lm:vocab=" + std::to_string(tok->size()) + ",context=6", 1).value();
  const std::string path =
      ::testing::TempDir() + "ftte_sim_init_bad_" + std::to_string(::getpid()) + ".safetensors";
  ASSERT_TRUE(data::SaveLanguageModel(*model, *tok, path).ok());
  auto error = [](const SimConfig& cfg) {
    auto env = MakeEnvironment(cfg);
    return env.ok() ? std::string("(ok)") : env.status().ToString();
  };
  c.init = path;
  EXPECT_NE(error(c).find("was trained with context 6, but context = 8; set context = 6"),
            std::string::npos)
      << error(c);
  c.context = 6;
  c.model = "tiny_gpt";
  EXPECT_NE(error(c).find("; set model = \"lstm_lm\""), std::string::npos) << error(c);
  SimConfig image;
  image.methods = c.methods;
  image.init = path;
  EXPECT_NE(ValidateSimConfig(image).message().find("image runs start from a seeded model"),
            std::string::npos);
  c.init = path + ".missing";
  EXPECT_NE(error(c).find("NotFound"), std::string::npos) << error(c);
  EXPECT_NE(error(c).find(".missing"), std::string::npos) << error(c);
}

// A vocabulary smaller than the corpus's words: some held-out targets are <unk>. They are not
// scored (the accuracies are over the others), their share is reported, and the 3-gram
// reference sits beside the model, in the run, results.json and the summary.
TEST(SimulatorTextTest, UnkTargetsAreUnscoredAndTheThreeGramIsTheReference) {
  SimConfig c = TextConfig(fl::Algorithm::kFedBuff);
  c.vocab = 14;
  const Environment env = MakeEnvironment(c).value();
  const TextReference& ref = env.reference;
  EXPECT_GT(ref.unk_rate, 0.05);
  EXPECT_LT(ref.unk_rate, 0.9);
  // The corpus is patterned: a 3-gram predicts most of it.
  EXPECT_GT(ref.ngram_top3, 0.5);
  EXPECT_GE(ref.ngram_top3, ref.ngram_top1);
  EXPECT_GT(ref.ngram_perplexity, 1.0);
  EXPECT_LT(ref.ngram_perplexity, 14.0);
  auto r = RunMethod(c, c.methods[0], env);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->reference.unk_rate, ref.unk_rate);
  EXPECT_EQ(r->reference.ngram_top1, ref.ngram_top1);
  const std::string json = ResultsJson(c, {r.value()});
  EXPECT_NE(json.find("\"reference\": {\n    \"unk_rate\""), std::string::npos)
      << json.substr(0, 400);
  EXPECT_NE(json.find("\"ngram_top3\""), std::string::npos);
  const std::string table = SummaryTable({r.value()});
  EXPECT_NE(table.find("3-gram"), std::string::npos) << table;
  EXPECT_NE(table.find("are not <unk>"), std::string::npos) << table;
  EXPECT_NE(PlotScript(c, {r.value()}).find("title '3-gram (Kneser-Ney)'"), std::string::npos);
  // The run file keeps it, so a resumed run reports the same.
  auto back = ParseRunFile(RunFileText(c, *r), c, "x");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->reference.ngram_top3, ref.ngram_top3);
  EXPECT_EQ(back->reference.unk_rate, ref.unk_rate);
}

TEST(SimulatorTextTest, NoScorableHeldOutTextIsAnErrorBeforeAnyTraining) {
  SimConfig c = TextConfig(fl::Algorithm::kFedBuff);
  c.holdout = 0.001;  // less than one word per user
  auto env = MakeEnvironment(c);
  ASSERT_FALSE(env.ok());
  EXPECT_NE(env.status().message().find("no next word to score"), std::string::npos)
      << env.status().message();
  EXPECT_NE(env.status().message().find("raise holdout"), std::string::npos);
}

// Tuning on text: the validation split is drawn from the training samples (never the held-out
// text), leaves the devices' data, and a trial computes no per-user scores on held-out text.
TEST(SimulatorTextTest, TuningTrialsScoreOnTrainingSamplesHeldOutOfTheDevices) {
  SimConfig c = TextConfig(fl::Algorithm::kFedBuff);
  const Environment plain = MakeEnvironment(c).value();
  c.on_validation = true;
  c.tune.validation = 12;
  const Environment env = MakeEnvironment(c).value();
  EXPECT_EQ(env.test.size, 12);
  EXPECT_EQ(env.train.size, plain.train.size - 12);
  EXPECT_EQ(env.user_test.images, plain.user_test.images);  // the held-out text, untouched
  std::set<int64_t> seen;
  for (const auto& part : env.partition) {
    ASSERT_FALSE(part.empty());
    for (int64_t i : part) {
      ASSERT_LT(i, env.train.size);
      EXPECT_TRUE(seen.insert(i).second) << "sample " << i << " on two devices";
    }
  }
  EXPECT_EQ(static_cast<int64_t>(seen.size()), env.train.size);
  // Every validation sample was a training sample (its ids appear among the plain ones).
  for (int64_t v = 0; v < env.test.size; ++v) {
    bool found = false;
    for (int64_t i = 0; i < plain.train.size && !found; ++i) {
      found = std::equal(env.test.image(v), env.test.image(v) + plain.train.sample_numel(),
                         plain.train.image(i)) &&
              std::equal(env.test.label(v), env.test.label(v) + plain.train.labels_per_sample,
                         plain.train.label(i));
    }
    EXPECT_TRUE(found) << "validation sample " << v;
  }
  c.personalize.steps = 2;
  auto r = RunMethod(c, c.methods[0], env);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->user_top3.users, 0);
  EXPECT_FALSE(r->personal_before.has_value());
  c.tune.validation = plain.train.size;
  EXPECT_FALSE(MakeEnvironment(c).ok());
}

TEST(SimulatorTextTest, TimeToTargetCanUseTopThree) {
  SimConfig c = TextConfig(fl::Algorithm::kFedBuff);
  const Environment env = MakeEnvironment(c).value();
  c.target_accuracy = 0.6;
  c.target_metric = "top3";
  MethodResult top3 = RunMethod(c, c.methods[0], env).value();
  c.target_metric = "top1";
  MethodResult top1 = RunMethod(c, c.methods[0], env).value();
  auto first = [&](const MethodResult& r, bool use_top3) -> std::optional<double> {
    for (const SeriesPoint& p : r.series) {
      if ((use_top3 ? p.top3 : p.accuracy) >= c.target_accuracy) return p.virtual_s;
    }
    return std::nullopt;
  };
  EXPECT_EQ(top3.time_to_target_s, first(top3, true));
  EXPECT_EQ(top1.time_to_target_s, first(top1, false));
  ASSERT_TRUE(top3.time_to_target_s.has_value());
}

TEST(SimulatorTextTest, NaturalSparseUploadsCarryOnlyChangedRows) {
  SimConfig c = TextConfig(fl::Algorithm::kFtte);
  c.methods[0].server.mask = "full";  // every embedding row is trainable; devices see few tokens
  c.methods[0].server.frozen = FrozenStorage::kFloat32;
  const Environment env = MakeEnvironment(c).value();
  MethodResult sparse = RunMethod(c, c.methods[0], env).value();
  c.methods[0].upload_changed_rows = true;
  MethodResult natural = RunMethod(c, c.methods[0], env).value();
  ASSERT_GT(sparse.updates_received, 0);
  ASSERT_GT(natural.updates_received, 0);
  const double per_sparse = static_cast<double>(sparse.bytes_up) / sparse.updates_received;
  const double per_natural = static_cast<double>(natural.bytes_up) / natural.updates_received;
  EXPECT_LT(per_natural, per_sparse);
  // The changed rows are an exact encoding: the same number of updates arrive earlier, so the
  // model learns at least as much; it stays a valid run.
  EXPECT_GT(natural.final_accuracy, natural.series.front().accuracy);
}

TEST(SimulatorTextTest, PersonalisationReportsBeforeAndAfter) {
  SimConfig c = TextConfig(fl::Algorithm::kFtte);
  c.personalize.steps = 6;
  c.personalize.users = 3;
  const Environment env = MakeEnvironment(c).value();
  auto r = RunMethod(c, c.methods[0], env);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->personal_before.has_value());
  ASSERT_TRUE(r->personal_after.has_value());
  EXPECT_EQ(r->personal_before->users, 3);
  EXPECT_EQ(r->personal_after->users, 3);
  EXPECT_NE(r->personal_after->mean, r->personal_before->mean);  // fine-tuning changed them
  const std::string json = ResultsJson(c, {r.value()});
  EXPECT_NE(json.find("\"after_top3\""), std::string::npos);
  c.personalize.users = 0;  // all devices
  auto all = RunMethod(c, c.methods[0], env).value();
  EXPECT_EQ(all.personal_after->users, 5);
}

TEST(SimulatorTextTest, ResultsAreIdenticalForOneAndTwoThreadsAndThreeRanks) {
  SimConfig c = TextConfig(fl::Algorithm::kFtte);
  c.methods[0].upload_changed_rows = true;
  c.personalize.steps = 3;
  MethodConfig fedavg = DefaultMethod(fl::Algorithm::kFedAvg, "fedavg");
  fedavg.server.concurrency = 3;
  c.methods.push_back(fedavg);
  const Environment env = MakeEnvironment(c).value();
  auto run = [&](int threads) {
    c.threads = threads;
    std::vector<MethodResult> results;
    for (const MethodConfig& m : c.methods) results.push_back(RunMethod(c, m, env).value());
    return ResultsJson(c, results) + ResultsCsv(results);
  };
  const std::string one = run(1);
  EXPECT_EQ(one, run(2));
  // Three ranks (as threads), personalisation and its evaluation of every user included.
  std::vector<std::string> ranks(3);
  ThreadCluster::Run(3, [&](int rank) {
    SimConfig mine = c;
    mine.threads = 1;
    std::vector<MethodResult> results;
    for (const MethodConfig& m : mine.methods) results.push_back(RunMethod(mine, m, env).value());
    ranks[rank] = ResultsJson(mine, results) + ResultsCsv(results);
  });
  for (int r = 0; r < 3; ++r) EXPECT_EQ(one, ranks[r]) << "rank " << r;
}

TEST(SimulatorTextTest, TextKeysAreHiddenForImageRuns) {
  const std::string image = FormatSimConfig(DefaultSimConfig());
  EXPECT_EQ(image.find("tokenizer"), std::string::npos);
  EXPECT_EQ(image.find("[personalize]"), std::string::npos);
  EXPECT_EQ(image.find("upload_changed_rows"), std::string::npos);
  MethodResult r;  // an image method: no LM keys or columns
  r.name = "ftte";
  r.series.push_back({0, 0.5, 1.0, 10, 20, 1});
  const std::string json = ResultsJson(DefaultSimConfig(), {r});
  for (const char* key : {"top3", "perplexity", "user_top3", "personalization"}) {
    EXPECT_EQ(json.find(key), std::string::npos) << key;
  }
  EXPECT_EQ(ResultsCsv({r}).substr(0, ResultsCsv({r}).find('\n')),
            "method,seed,virtual_s,accuracy,loss,bytes_up,bytes_down,version");
  EXPECT_EQ(SummaryTable({r}).find("top-3"), std::string::npos);
  SimConfig c = TextConfig(fl::Algorithm::kFtte);
  c.personalize.steps = 4;
  const std::string text = FormatSimConfig(c);
  EXPECT_NE(text.find("tokenizer = \"word\""), std::string::npos);
  EXPECT_NE(text.find("[personalize]\nsteps = 4"), std::string::npos);
  auto back = ParseSimConfig(text, "<written>");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(FormatSimConfig(back.value()), text);
}

// ---- Configuration errors. ----

std::string ErrorOf(const std::string& toml) {
  auto c = ParseSimConfig(toml + "\n[[method]]\nname = \"ftte\"\n", "t.toml");
  return c.ok() ? "" : c.status().message();
}

TEST(TextConfigTest, TextDatasetsDefaultToTheNaturalPartition) {
  auto c = ParseSimConfig(
      "dataset = \"bible-chapters\"\nmodel = \"lstm_lm\"\n[[method]]\n"
      "name = \"ftte\"\n",
      "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->partition, "natural");
  SimConfig d = DefaultSimConfig();
  ASSERT_TRUE(ApplyOverride(&d, "dataset", "bible-books").ok());
  EXPECT_EQ(d.partition, "natural");
  ASSERT_TRUE(ApplyOverride(&d, "model", "tiny_gpt").ok());
  EXPECT_TRUE(ValidateSimConfig(d).ok()) << ValidateSimConfig(d).message();
  ASSERT_TRUE(ApplyOverride(&d, "personalize.steps", "5").ok());
  EXPECT_EQ(d.personalize.steps, 5);
}

TEST(TextConfigTest, IncompatibleCombinationsNameTheFix) {
  EXPECT_NE(ErrorOf("dataset = \"bible-chapters\"\nmodel = \"cnn\"")
                .find("takes images, not text; with dataset bible-chapters use lstm_lm"),
            std::string::npos);
  EXPECT_NE(ErrorOf("dataset = \"bible-chapters\"\nmodel = \"lstm_lm\"\n"
                    "partition = \"dirichlet:0.5\"")
                .find("does not apply to bible-chapters: text is partitioned naturally"),
            std::string::npos);
  EXPECT_NE(ErrorOf("model = \"lstm_lm\"").find("does not take fashion-mnist images"),
            std::string::npos);
  EXPECT_NE(ErrorOf("partition = \"natural\"").find("needs per-user data"), std::string::npos);
  EXPECT_NE(ErrorOf("[personalize]\nsteps = 3").find("only text datasets"), std::string::npos);
  EXPECT_NE(ErrorOf("target_metric = \"top3\"").find("for language models"), std::string::npos);
  EXPECT_NE(ErrorOf("dataset = \"text-dir\"\nmodel = \"lstm_lm\"").find("needs data_dir"),
            std::string::npos);
  EXPECT_NE(ErrorOf("dataset = \"bible-books\"\nmodel = \"lstm_lm:vocab=100\"")
                .find("write the top-level keys vocab = and context ="),
            std::string::npos);
  EXPECT_NE(ErrorOf("dataset = \"bible-books\"\nmodel = \"lstm_lm\"\ntrain_limit = 10")
                .find("train_limit applies to image datasets"),
            std::string::npos);
  EXPECT_NE(ErrorOf("tokenizer = \"bpe\"").find("must be one of \"word\", \"char\", \"subword\""),
            std::string::npos);
  EXPECT_NE(ErrorOf("holdout = 1.0").find("holdout must be in (0, 1)"), std::string::npos);
}

}  // namespace
}  // namespace ftte::sim
