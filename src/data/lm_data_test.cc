#include "ftte/data/lm_data.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace ftte::data {
namespace {

using Ids = std::vector<int32_t>;

TextCorpus Corpus(const std::vector<std::string>& texts) {
  TextCorpus c;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::string name = "u";  // not "u" + ...: GCC 12 warns falsely (-Wrestrict) on that
    name += std::to_string(i);
    c.users.push_back({name, texts[i]});
  }
  return c;
}

// The ids of sample i of `d` (stored as floats) and its labels.
Ids SampleIds(const ImageDataset& d, int64_t i) {
  Ids out;
  for (int64_t t = 0; t < d.width; ++t) out.push_back(static_cast<int32_t>(d.image(i)[t]));
  return out;
}
Ids SampleLabels(const ImageDataset& d, int64_t i) {
  return Ids(d.label(i), d.label(i) + d.labels_per_sample);
}

TEST(HeldOutStartTest, HoldsOutTheFlooredFraction) {
  EXPECT_EQ(HeldOutStart(11, 0.1), 10);
  EXPECT_EQ(HeldOutStart(9, 0.1), 9);
  EXPECT_EQ(HeldOutStart(100, 0.25), 75);
  EXPECT_EQ(HeldOutStart(5, 0.0), 5);
  EXPECT_EQ(HeldOutStart(0, 0.5), 0);
}

class LmDataTest : public ::testing::Test {
 protected:
  // Ten distinct words and <eos>: 11 ids, so holding out 10% keeps 10 for training.
  const TextCorpus corpus_ = Corpus({"a b c d e f g h i j"});
  const Tokenizer tok_ = TrainTokenizer(TokenizerKind::kWord, corpus_, 100, 0.0).value();
  int32_t Id(const char* w) const { return tok_.Id(w); }
};

TEST_F(LmDataTest, SamplesAreNextTokenChunksWithPaddedTail) {
  Result<LanguageModelData> r = MakeLanguageModelData(corpus_, tok_, 4);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const ImageDataset& train = r->train;
  EXPECT_EQ(train.channels, 1);
  EXPECT_EQ(train.height, 1);
  EXPECT_EQ(train.width, 4);
  EXPECT_EQ(train.labels_per_sample, 4);
  EXPECT_EQ(train.num_classes, tok_.size());
  ASSERT_EQ(train.size, 3);
  EXPECT_EQ(train.labels.size(), 12u);
  EXPECT_EQ(SampleIds(train, 0), (Ids{Id("a"), Id("b"), Id("c"), Id("d")}));
  EXPECT_EQ(SampleLabels(train, 0), (Ids{Id("b"), Id("c"), Id("d"), Id("e")}));
  EXPECT_EQ(SampleIds(train, 1), (Ids{Id("e"), Id("f"), Id("g"), Id("h")}));
  EXPECT_EQ(SampleLabels(train, 1), (Ids{Id("f"), Id("g"), Id("h"), Id("i")}));
  // The tail: one real position, padded with id 0 and label -1.
  EXPECT_EQ(SampleIds(train, 2), (Ids{Id("i"), 0, 0, 0}));
  EXPECT_EQ(SampleLabels(train, 2), (Ids{Id("j"), -1, -1, -1}));

  // Held out: <eos>, the last of 11 ids; the last training id is its context.
  ASSERT_EQ(r->test.size, 1);
  EXPECT_EQ(SampleIds(r->test, 0), (Ids{Id("j"), 0, 0, 0}));
  EXPECT_EQ(SampleLabels(r->test, 0), (Ids{Tokenizer::kEosId, -1, -1, -1}));

  // Every id but the first is a target exactly once.
  EXPECT_EQ(r->tokens, 11);
  EXPECT_EQ(r->train_targets, 9);
  EXPECT_EQ(r->test_targets, 1);
  EXPECT_EQ(r->unknown_tokens, 0);
  EXPECT_EQ(r->train_by_user, (Partition{{0, 1, 2}}));
  EXPECT_EQ(r->test_by_user, (Partition{{0}}));
}

TEST_F(LmDataTest, DropLastKeepsOnlyFullChunks) {
  Result<LanguageModelData> r = MakeLanguageModelData(corpus_, tok_, 4, 0.1, LastChunk::kDrop);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->train.size, 2);
  EXPECT_EQ(r->train_targets, 8);
  EXPECT_EQ(r->test.size, 0);
  EXPECT_EQ(r->test_by_user, (Partition{{}}));
  for (int32_t y : r->train.labels) EXPECT_NE(y, kIgnoreLabel);
}

TEST_F(LmDataTest, ContextLongerThanTheTextGivesOnePaddedSample) {
  Result<LanguageModelData> r = MakeLanguageModelData(corpus_, tok_, 32, 0.0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->train.size, 1);
  EXPECT_EQ(r->train_targets, 10);
  EXPECT_EQ(r->train.label(0)[9], Tokenizer::kEosId);
  EXPECT_EQ(r->train.label(0)[10], kIgnoreLabel);
  EXPECT_EQ(r->test.size, 0);
}

TEST(LmDataHoldoutTest, HeldOutWordsStayOutOfTheVocabularyAndTrainSet) {
  // 11 pieces; holding out 20% keeps "zebra" and the final <eos> for evaluation.
  const TextCorpus corpus = Corpus({"a b a b a b a b a zebra", "c c c"});
  const Tokenizer tok = TrainTokenizer(TokenizerKind::kWord, corpus, 100, 0.2).value();
  EXPECT_EQ(tok.Id("zebra"), Tokenizer::kUnkId);
  EXPECT_NE(tok.Id("c"), Tokenizer::kUnkId);
  EXPECT_NE(TrainTokenizer(TokenizerKind::kWord, corpus, 100, 0.0)->Id("zebra"), Tokenizer::kUnkId);

  Result<LanguageModelData> r = MakeLanguageModelData(corpus, tok, 3, 0.2);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // User 0: train a b a b a b a b a (9 ids, 8 targets in 3 samples), test stream a zebra <eos>.
  // User 1: c c c <eos> keeps 4 - floor(0.8) = 4 ids, so nothing is held out.
  EXPECT_EQ(r->train_by_user, (Partition{{0, 1, 2}, {3}}));
  EXPECT_EQ(r->test_by_user, (Partition{{0}, {}}));
  EXPECT_EQ(SampleLabels(r->test, 0), (Ids{Tokenizer::kUnkId, Tokenizer::kEosId, -1}));
  EXPECT_EQ(r->unknown_tokens, 1);
  EXPECT_EQ(r->train_targets, 8 + 3);
  EXPECT_EQ(r->test_targets, 2);
  for (int32_t y : r->train.labels) EXPECT_NE(y, Tokenizer::kUnkId);

  // A device's data is the subset of its indices, labels included.
  const ImageDataset user1 = r->train.Subset(r->train_by_user[1]);
  EXPECT_EQ(user1.size, 1);
  EXPECT_EQ(user1.labels_per_sample, 3);
  EXPECT_EQ(SampleIds(user1, 0), (Ids{tok.Id("c"), tok.Id("c"), tok.Id("c")}));
  EXPECT_EQ(SampleLabels(user1, 0), (Ids{tok.Id("c"), tok.Id("c"), Tokenizer::kEosId}));
}

TEST(LmDataHoldoutTest, UsersWithTooLittleTextHaveNoSamples) {
  const TextCorpus corpus = Corpus({"", "one", "one two"});
  const Tokenizer tok = TrainTokenizer(TokenizerKind::kWord, corpus, 100).value();
  Result<LanguageModelData> r = MakeLanguageModelData(corpus, tok, 8);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->train_by_user, (Partition{{}, {0}, {1}}));
  EXPECT_EQ(r->tokens, 0 + 2 + 3);
}

TEST(LmDataHoldoutTest, CharTokensWork) {
  const TextCorpus corpus = Corpus({"abcabc"});
  const Tokenizer tok = TrainTokenizer(TokenizerKind::kChar, corpus, 100, 0.0).value();
  Result<LanguageModelData> r = MakeLanguageModelData(corpus, tok, 2, 0.0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tokens, 7);
  EXPECT_EQ(r->train.size, 3);
  EXPECT_EQ(SampleLabels(r->train, 2), (Ids{tok.Id("c"), Tokenizer::kEosId}));
}

TEST(LmDataBibleTest, EveryChapterIsADeviceWithTrainAndTestSamples) {
  Result<TextCorpus> bible = LoadBibleKjv(BibleGranularity::kChapter);
  if (!bible.ok() && bible.status().code() == StatusCode::kNotFound) {
    GTEST_SKIP() << bible.status().message();
  }
  ASSERT_TRUE(bible.ok()) << bible.status().ToString();
  const Tokenizer tok = TrainTokenizer(TokenizerKind::kWord, *bible, 10000).value();
  EXPECT_EQ(tok.size(), 10000);
  Result<LanguageModelData> r = MakeLanguageModelData(*bible, tok, 32);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // 913,606 words and punctuation marks plus one <eos> per verse (bible-kjv-text 4.38).
  EXPECT_EQ(r->tokens, 944708);
  EXPECT_EQ(r->train_targets + r->test_targets, r->tokens - 1189);
  for (size_t u = 0; u < r->train_by_user.size(); ++u) {
    EXPECT_FALSE(r->train_by_user[u].empty()) << bible->users[u].name;
    EXPECT_FALSE(r->test_by_user[u].empty()) << bible->users[u].name;
  }
  // A 10k vocabulary from the training text covers over 99% of the held-out targets.
  int64_t unknown = 0;
  for (int32_t y : r->test.labels) unknown += y == Tokenizer::kUnkId ? 1 : 0;
  EXPECT_LT(static_cast<double>(unknown) / static_cast<double>(r->test_targets), 0.01);
}

TEST(LmDataErrorsTest, BadArgumentsSay) {
  const TextCorpus corpus = Corpus({"a b"});
  const Tokenizer tok = TrainTokenizer(TokenizerKind::kWord, corpus, 10).value();
  struct Case {
    int64_t context;
    double holdout;
    const char* says;
  };
  const std::vector<Case> cases = {
      {0, 0.1, "context 0"},
      {4, 1.0, "holdout_fraction"},
      {4, -0.1, "holdout_fraction"},
      {4, std::numeric_limits<double>::quiet_NaN(), "holdout_fraction"},
  };
  for (const Case& c : cases) {
    Result<LanguageModelData> r = MakeLanguageModelData(corpus, tok, c.context, c.holdout);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << r.status().ToString();
  }
  Result<LanguageModelData> empty = MakeLanguageModelData(TextCorpus{}, tok, 4);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("no users"), std::string::npos);
  EXPECT_FALSE(TrainTokenizer(TokenizerKind::kWord, corpus, 10, 1.5).ok());
}

}  // namespace
}  // namespace ftte::data
