// Subword tokenizers (SentencePiece): training, ftte's ids, the text format, checkpoints, and
// the training/held-out boundary. Skipped in a build without SentencePiece, except the test of
// the error such a build gives.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "ftte/core/model.h"
#include "ftte/data/lm_data.h"
#include "ftte/data/lm_model.h"
#include "ftte/data/text.h"
#include "ftte/data/tokenizer.h"

namespace ftte::data {
namespace {

#define SKIP_WITHOUT_SENTENCEPIECE() \
  if (!Tokenizer::SubwordAvailable()) GTEST_SKIP() << "built without SentencePiece"

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/subword_test_" + std::to_string(getpid()) + "_" + name;
}

// Some lines of Genesis 1, enough for a vocabulary of a few dozen pieces.
std::vector<std::string> Genesis() {
  return {
      "In the beginning God created the heaven and the earth.\n"
      "And the earth was without form, and void; and darkness was upon the face of the deep.\n"
      "And the Spirit of God moved upon the face of the waters.\n",
      "And God said, Let there be light: and there was light.\n"
      "And God saw the light, that it was good: and God divided the light from the darkness.\n"
      "And God called the light Day, and the darkness he called Night.\n",
  };
}

Tokenizer Trained(int64_t size = 80) {
  Result<Tokenizer> t = Tokenizer::Train(TokenizerKind::kSubword, Genesis(), size);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.value();
}

TEST(SubwordTest, KindWithoutSentencePieceNamesTheFix) {
  Result<TokenizerKind> kind = ParseTokenizerKind("subword");
  if (Tokenizer::SubwordAvailable()) {
    ASSERT_TRUE(kind.ok());
    EXPECT_EQ(kind.value(), TokenizerKind::kSubword);
  } else {
    ASSERT_FALSE(kind.ok());
    EXPECT_NE(kind.status().message().find("libsentencepiece-dev"), std::string::npos);
  }
  Result<TokenizerKind> bad = ParseTokenizerKind("bpe");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("word"), std::string::npos);
  EXPECT_EQ(ParseTokenizerKind("char").value(), TokenizerKind::kChar);
}

TEST(SubwordTest, TrainsWithFttesSpecialIdsAndEndsLinesWithEos) {
  SKIP_WITHOUT_SENTENCEPIECE();
  const Tokenizer t = Trained();
  EXPECT_EQ(t.kind(), TokenizerKind::kSubword);
  EXPECT_GT(t.size(), 40);
  EXPECT_LE(t.size(), 80);
  EXPECT_EQ(t.Piece(Tokenizer::kUnkId), "<unk>");
  EXPECT_EQ(t.Piece(Tokenizer::kEosId), "<eos>");
  const std::string text = "And God said, Let there be light.\r\n\n  \nthe deep";
  const std::vector<int32_t> ids = t.Encode(text);
  const std::vector<std::string> pieces = t.Split(text);
  ASSERT_EQ(ids.size(), pieces.size());
  // Two lines with pieces: two <eos>, one at the end; none for the blank lines.
  EXPECT_EQ(std::count(ids.begin(), ids.end(), Tokenizer::kEosId), 2);
  EXPECT_EQ(ids.back(), Tokenizer::kEosId);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(t.Piece(ids[i]), pieces[i]);
    EXPECT_NE(ids[i], Tokenizer::kUnkId) << pieces[i];  // every character was seen
  }
  // Frequent words are single pieces starting with U+2581; Display shows it as a space.
  EXPECT_NE(t.Id("\xE2\x96\x81the"), Tokenizer::kUnkId);
  EXPECT_EQ(t.Display(t.Id("\xE2\x96\x81the")), " the");
  EXPECT_EQ(t.Decode(ids), "And God said, Let there be light.\nthe deep\n");
  EXPECT_EQ(t.Encode(t.Decode(ids)), ids);
  // A character the training text never had is <unk>, decoded as "<unk>".
  const std::vector<int32_t> q = t.Encode("God?");
  EXPECT_NE(std::find(q.begin(), q.end(), Tokenizer::kUnkId), q.end());
  EXPECT_NE(t.Decode(q).find("<unk>"), std::string::npos);
  EXPECT_TRUE(t.Encode(" \n\n").empty());
}

TEST(SubwordTest, SameTextSameVocabulary) {
  SKIP_WITHOUT_SENTENCEPIECE();
  EXPECT_EQ(Trained().Serialize(), Trained().Serialize());
  EXPECT_NE(Trained(45).Serialize(), Trained(55).Serialize());
}

TEST(SubwordTest, TooSmallAVocabularyOrNoTextSays) {
  SKIP_WITHOUT_SENTENCEPIECE();
  Result<Tokenizer> small = Tokenizer::Train(TokenizerKind::kSubword, Genesis(), 10);
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("larger vocabulary"), std::string::npos)
      << small.status().message();
  Result<Tokenizer> none = Tokenizer::Train(TokenizerKind::kSubword, {" \n\n"}, 100);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no characters"), std::string::npos);
  EXPECT_FALSE(Tokenizer::FromCounts(TokenizerKind::kSubword, {{"a", 1}}, 10).ok());
}

TEST(SubwordTest, FileCarriesTheModelAndCorruptionIsDataLoss) {
  SKIP_WITHOUT_SENTENCEPIECE();
  const Tokenizer t = Trained();
  const std::string path = TempPath("tok.txt");
  ASSERT_TRUE(t.Save(path).ok());
  Result<Tokenizer> back = Tokenizer::Load(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->Serialize(), t.Serialize());
  const std::string text = "And the evening and the morning were the first day.";
  EXPECT_EQ(back->Encode(text), t.Encode(text));

  const std::string good = t.Serialize();
  auto parse = [&](const std::string& s) { return Tokenizer::Parse(s, "tok.txt"); };
  // The model line is last: cut it short (still base64), drop it, or make it not base64.
  const size_t model_at = good.rfind('\n', good.size() - 2) + 1;
  const std::string no_model = good.substr(0, model_at);
  const std::string cut = no_model + good.substr(model_at, 4 * 40) + "\n";
  std::string not_b64 = good;
  not_b64[not_b64.size() - 5] = '*';
  for (const std::string& bad : {cut, no_model, not_b64}) {
    Result<Tokenizer> r = parse(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
    EXPECT_NE(r.status().message().find("tok.txt"), std::string::npos);
  }
  // A listed piece edited to disagree with the model.
  std::string edited = good;
  const size_t at = edited.find("\n\xE2\x96\x81the\n");
  ASSERT_NE(at, std::string::npos);
  edited.replace(at, 6, "\n\xE2\x96\x81thy");
  Result<Tokenizer> r = parse(edited);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("disagree"), std::string::npos) << r.status().ToString();
}

TEST(SubwordTest, CheckpointCarriesTheSubwordTokenizer) {
  SKIP_WITHOUT_SENTENCEPIECE();
  const Tokenizer t = Trained();
  auto model = MakeModel("lstm_lm:vocab=" + std::to_string(t.size()) + ",context=8", 3);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const std::string path = TempPath("lm.safetensors");
  ASSERT_TRUE(SaveLanguageModel(**model, t, path).ok());
  Result<LanguageModel> lm = LoadLanguageModel(path);
  ASSERT_TRUE(lm.ok()) << lm.status().ToString();
  EXPECT_EQ(lm->tokenizer.kind(), TokenizerKind::kSubword);
  EXPECT_EQ(lm->tokenizer.Serialize(), t.Serialize());
  NextWordPredictor predictor(std::move(lm.value()), 1);
  const NextPiecePrediction p = predictor.Predict("And God", 3);
  EXPECT_EQ(p.top.size(), 3u);
  EXPECT_EQ(p.unknown, 0);
}

TEST(SubwordTest, VocabularyNeverSeesTheHeldOutText) {
  SKIP_WITHOUT_SENTENCEPIECE();
  // The held-out last 20% of the user's text brings characters of its own ("xqz"): they are not
  // in the vocabulary, and the held-out samples hold them as <unk>.
  TextCorpus corpus;
  std::string text;
  for (int i = 0; i < 8; ++i) text += Genesis()[static_cast<size_t>(i % 2)];
  text += "xqzzq zqx xqz\nqzx zzz xqzzq\n";
  corpus.users.push_back({"u", text});
  Result<Tokenizer> t = TrainTokenizer(TokenizerKind::kSubword, corpus, 100, 0.2);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  for (const char* c : {"x", "q", "z", "\xE2\x96\x81x", "\xE2\x96\x81q", "\xE2\x96\x81z"}) {
    EXPECT_EQ(t->Id(c), Tokenizer::kUnkId) << c;
  }
  Result<LanguageModelData> lm = MakeLanguageModelData(corpus, t.value(), 16, 0.2);
  ASSERT_TRUE(lm.ok()) << lm.status().ToString();
  EXPECT_GT(lm->unknown_tokens, 0);
  EXPECT_GT(lm->test_targets, 0);
}

}  // namespace
}  // namespace ftte::data
