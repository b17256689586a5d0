#include "ftte/data/lm_model.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "ftte/core/checkpoint.h"
#include "ftte/core/trainer.h"
#include "ftte/data/lm_data.h"

namespace ftte::data {
namespace {

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/lm_model_test_" + std::to_string(getpid()) + "_" + name;
}

// "the cat sat on the mat ." repeated: after "sat" comes "on", after "on" comes "the".
constexpr char kText[] = "the cat sat on the mat .\nthe cat sat on the mat .\n";

Tokenizer WordTokenizer() {
  auto tok = Tokenizer::Train(TokenizerKind::kWord, {kText}, 100);
  EXPECT_TRUE(tok.ok());
  return tok.value();
}

std::unique_ptr<Model> TinyLstm(const Tokenizer& tok, int64_t context = 8) {
  auto m = MakeModel(
      "lstm_lm:vocab=" + std::to_string(tok.size()) + ",context=" + std::to_string(context), 3);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return std::move(m.value());
}

TEST(LanguageModelFileTest, RoundTripsWeightsSpecAndTokenizer) {
  const Tokenizer tok = WordTokenizer();
  auto model = TinyLstm(tok);
  const std::string path = TempPath("roundtrip.safetensors");
  ASSERT_TRUE(SaveLanguageModel(*model, tok, path).ok());
  auto lm = LoadLanguageModel(path);
  ASSERT_TRUE(lm.ok()) << lm.status().ToString();
  EXPECT_EQ(lm.value().model->name(), model->name());
  ASSERT_EQ(lm.value().tokenizer.size(), tok.size());
  for (int32_t i = 0; i < tok.size(); ++i) EXPECT_EQ(lm.value().tokenizer.Piece(i), tok.Piece(i));
  for (size_t k = 0; k < model->params().size(); ++k) {
    const Parameter* a = model->params()[k];
    const Parameter* b = lm.value().model->params()[k];
    ASSERT_EQ(a->numel(), b->numel());
    EXPECT_EQ(0, std::memcmp(a->data(), b->data(), sizeof(float) * a->numel())) << a->name();
  }
}

TEST(LanguageModelFileTest, SaveRefusesAMismatchedTokenizerOrAnImageModel) {
  const Tokenizer tok = WordTokenizer();
  auto wrong = MakeModel("lstm_lm:vocab=50,context=8");
  ASSERT_TRUE(wrong.ok());
  Status s = SaveLanguageModel(*wrong.value(), tok, TempPath("wrong.safetensors"));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("vocab="), std::string::npos) << s.message();
  auto mlp = MakeModel("mlp");
  ASSERT_TRUE(mlp.ok());
  s = SaveLanguageModel(*mlp.value(), tok, TempPath("mlp.safetensors"));
  EXPECT_NE(s.message().find("image model"), std::string::npos) << s.message();
}

TEST(LanguageModelFileTest, LoadErrorsNameTheProblem) {
  EXPECT_EQ(LoadLanguageModel(TempPath("absent.safetensors")).status().code(),
            StatusCode::kNotFound);

  const std::string corrupt = TempPath("corrupt.safetensors");
  std::ofstream(corrupt) << "definitely not safetensors";
  EXPECT_EQ(LoadLanguageModel(corrupt).status().code(), StatusCode::kDataLoss);

  auto mlp = MakeModel("mlp");
  ASSERT_TRUE(mlp.ok());
  const std::string image = TempPath("image.safetensors");
  ASSERT_TRUE(SaveCheckpoint(*mlp.value(), image).ok());
  auto r = LoadLanguageModel(image);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("image model 'mlp'"), std::string::npos)
      << r.status().message();

  const Tokenizer tok = WordTokenizer();
  auto model = TinyLstm(tok);
  const std::string bare = TempPath("bare.safetensors");
  ASSERT_TRUE(SaveCheckpoint(*model, bare).ok());  // weights without the tokenizer
  r = LoadLanguageModel(bare);
  EXPECT_NE(r.status().message().find("no tokenizer"), std::string::npos) << r.status().message();
}

TEST(NextWordPredictorTest, ContextStartsWithEosAndIsTruncatedFromTheLeft) {
  const Tokenizer tok = WordTokenizer();
  NextWordPredictor p(LanguageModel{TinyLstm(tok, 4), tok});
  NextPiecePrediction r = p.Predict("the cat", 3);
  EXPECT_EQ(r.context, (std::vector<int32_t>{Tokenizer::kEosId, tok.Id("the"), tok.Id("cat")}));
  EXPECT_EQ(r.prompt_pieces, 2);
  EXPECT_EQ(r.unknown, 0);
  ASSERT_EQ(r.top.size(), 3u);
  for (size_t i = 0; i < r.top.size(); ++i) {
    EXPECT_NE(r.top[i].id, Tokenizer::kUnkId);
    EXPECT_GT(r.top[i].probability, 0);
    if (i > 0) {
      EXPECT_LE(r.top[i].probability, r.top[i - 1].probability);
    }
  }
  r = p.Predict("the dog sat on the", 2);  // 5 pieces + <eos> > context 4
  EXPECT_EQ(r.context,
            (std::vector<int32_t>{Tokenizer::kUnkId, tok.Id("sat"), tok.Id("on"), tok.Id("the")}));
  EXPECT_EQ(r.unknown, 1);  // "dog"
  r = p.Predict("", 1);
  EXPECT_EQ(r.context, (std::vector<int32_t>{Tokenizer::kEosId}));
}

TEST(NextWordPredictorTest, ATrainedModelPredictsTheNextWord) {
  const Tokenizer tok = WordTokenizer();
  std::string text;
  for (int i = 0; i < 20; ++i) text += "the cat sat on the mat .\n";
  TextCorpus corpus{{{"u", text}}};
  auto d = MakeLanguageModelData(corpus, tok, 8, 0.1);
  ASSERT_TRUE(d.ok());
  auto model = TinyLstm(tok);
  {
    TrainerOptions o;
    o.batch = 8;
    o.optimizer.kind = OptimizerConfig::Kind::kAdam;
    o.optimizer.lr = 0.01f;
    Trainer t(model.get(), o);
    const ImageDataset& train = d.value().train;
    for (int step = 0; step < 60; ++step) {
      const int64_t first = (step * 8) % std::max<int64_t>(train.size - 8, 1);
      t.Step(train.image(first), train.label(first), std::min<int64_t>(8, train.size));
    }
  }
  NextWordPredictor p(LanguageModel{std::move(model), tok});
  const NextPiecePrediction r = p.Predict("the cat sat", 3);
  ASSERT_FALSE(r.top.empty());
  EXPECT_EQ(r.top[0].piece, "on");
  EXPECT_GT(r.top[0].probability, 0.5);
}

}  // namespace
}  // namespace ftte::data
