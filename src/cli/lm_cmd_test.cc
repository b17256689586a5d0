// End-to-end tests of the language-model paths of the `ftte` command, run in-process: text
// training on a tiny synthetic corpus, predict's output and errors, bench train's tokens/s.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ftte/core/checkpoint.h"
#include "ftte/core/model.h"
#include "ftte/data/tokenizer.h"
#include "predict_cmd.h"
#include "train_cmd.h"

namespace ftte::cli {
namespace {

namespace fs = std::filesystem;

struct Output {
  int code = 0;
  std::string out, err;
};

template <typename Fn>
Output Capture(Fn fn, const std::vector<std::string>& args) {
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  Output o;
  o.code = fn(args);
  o.out = testing::internal::GetCapturedStdout();
  o.err = testing::internal::GetCapturedStderr();
  return o;
}

// Three users whose lines always continue "the cat sat" with "on the mat".
class LmCliTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(testing::TempDir()) /
           ("lm_cli_test_" + std::to_string(getpid()) + "_" +
            testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_ / "users");
    const char* lines[] = {"the cat sat on the mat .\n", "a dog ran to the park .\n",
                           "the cat sat on the mat and slept .\n"};
    for (int u = 0; u < 3; ++u) {
      std::ofstream f(dir_ / "users" / ("user" + std::to_string(u) + ".txt"));
      for (int i = 0; i < 30; ++i) f << lines[(u + i) % 3];
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // Trains `model` for a few steps on the corpus and returns train's output.
  Output Train(const std::string& model, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--model",   model, "--data",  Path("users"),
                                     "--context", "8",   "--batch", "8",
                                     "--epochs",  "2",   "--lr",    "0.01"};
    args.insert(args.end(), extra.begin(), extra.end());
    return Capture(RunTrain, args);
  }

  fs::path dir_;
};

// (No std::regex in tests: GCC 12 warns falsely inside <regex> under the sanitize preset.)
double JsonNumber(const std::string& json, const std::string& key) {
  const std::string quoted = "\"" + key + "\": ";
  const size_t at = json.find(quoted);
  if (at == std::string::npos) {
    ADD_FAILURE() << key << " missing in " << json;
    return -1;
  }
  return std::stod(json.substr(at + quoted.size()));
}

// Parses a prediction line `  1  "piece"  0.5010`; false if it has another form.
bool ParsePredictionLine(const std::string& l, int* rank, std::string* piece, double* prob) {
  size_t i = l.find_first_not_of(' ');
  if (i == std::string::npos || !std::isdigit(static_cast<unsigned char>(l[i]))) return false;
  size_t end = l.find_first_not_of("0123456789", i);
  if (end == std::string::npos || l.compare(end, 3, "  \"") != 0) return false;
  *rank = std::stoi(l.substr(i, end - i));
  const size_t close = l.find('"', end + 3);
  if (close == std::string::npos || close == end + 3) return false;
  *piece = l.substr(end + 3, close - end - 3);
  size_t p = l.find_first_not_of(' ', close + 1);
  if (p == std::string::npos || p == close + 1) return false;
  const std::string num = l.substr(p);
  if (num.size() != 6 || (num[0] != '0' && num[0] != '1') || num[1] != '.') return false;
  for (size_t k = 2; k < 6; ++k) {
    if (!std::isdigit(static_cast<unsigned char>(num[k]))) return false;
  }
  *prob = std::stod(num);
  return true;
}

TEST_F(LmCliTest, TrainsOnADirectoryReportsHeldOutMetricsAndSavesAPredictableModel) {
  const std::string ckpt = Path("lstm.safetensors");
  Output t = Train("lstm_lm", {"--save", ckpt, "--json"});
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("\"model\": \"lstm_lm:vocab="), std::string::npos) << t.out;
  EXPECT_GT(JsonNumber(t.out, "test_tokens"), 0);
  EXPECT_GE(JsonNumber(t.out, "test_top3"), JsonNumber(t.out, "test_top1"));
  EXPECT_GT(JsonNumber(t.out, "test_top1"), 0.3);  // the corpus is very predictable
  EXPECT_GT(JsonNumber(t.out, "test_perplexity"), 1);
  // The 3-gram reference on the same text, and the share of unscored <unk> targets.
  EXPECT_GE(JsonNumber(t.out, "ngram_top3"), JsonNumber(t.out, "ngram_top1"));
  EXPECT_GT(JsonNumber(t.out, "ngram_top1"), 0.3);
  EXPECT_GT(JsonNumber(t.out, "ngram_perplexity"), 1);
  EXPECT_GE(JsonNumber(t.out, "test_unk_rate"), 0);
  EXPECT_LT(JsonNumber(t.out, "test_unk_rate"), 1);
  EXPECT_EQ(JsonNumber(t.out, "peak_bytes"), JsonNumber(t.out, "predicted_peak_bytes"));
  EXPECT_GT(JsonNumber(t.out, "tokens_per_s"), 0);
  ASSERT_TRUE(fs::exists(ckpt));

  // The checkpoint alone suffices: three lines "rank  "piece"  probability", most likely first.
  Output p = Capture(RunPredict, {"--model", ckpt, "The", "cat", "sat"});
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(p.out.rfind("after \"the cat sat\" (lstm_lm:", 0), 0u) << p.out;
  std::istringstream lines(p.out);
  std::string l;
  std::getline(lines, l);  // header
  std::vector<std::string> words;
  std::vector<double> probs;
  while (std::getline(lines, l)) {
    int rank = 0;
    std::string piece;
    double prob = 0;
    ASSERT_TRUE(ParsePredictionLine(l, &rank, &piece, &prob)) << "'" << l << "'";
    EXPECT_EQ(rank, static_cast<int>(words.size()) + 1);
    words.push_back(piece);
    probs.push_back(prob);
  }
  ASSERT_EQ(words.size(), 3u);
  EXPECT_EQ(words[0], "on");
  EXPECT_GE(probs[0], probs[1]);
  EXPECT_GE(probs[1], probs[2]);

  // Unknown words are noted on stderr and read as <unk>; --json and --top work.
  p = Capture(RunPredict, {"--model", ckpt, "--top", "2", "--json", "zebra", "sat"});
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_NE(p.err.find("1 of 2 words not in the vocabulary"), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("\"zebra\""), std::string::npos) << p.err;
  EXPECT_EQ(JsonNumber(p.out, "unknown"), 1);
  EXPECT_EQ(std::count(p.out.begin(), p.out.end(), '{'), 3) << p.out;  // object + 2 entries
}

TEST_F(LmCliTest, TinyGptWithCharTokenizerAndLoraAndBudgetMasks) {
  const std::string ckpt = Path("gpt.safetensors");
  Output t = Train("tiny_gpt", {"--tokenizer", "char", "--save", ckpt, "--json"});
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("\"tokenizer\": \"char\""), std::string::npos);
  Output p = Capture(RunPredict, {"--model", ckpt, "the ca"});
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_NE(p.out.find("tiny_gpt:vocab="), std::string::npos) << p.out;

  t = Train("tiny_gpt_lora:rank=2", {"--mask", "lora", "--json"});
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_LT(JsonNumber(t.out, "trainable_params"), JsonNumber(t.out, "params") / 10);
  EXPECT_EQ(JsonNumber(t.out, "peak_bytes"), JsonNumber(t.out, "predicted_peak_bytes"));

  t = Train("lstm_lm", {"--mask", "budget:0.5", "--json"});
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_LE(JsonNumber(t.out, "peak_bytes"), 0.5 * JsonNumber(t.out, "full_training_peak_bytes"));
  EXPECT_EQ(JsonNumber(t.out, "peak_bytes"), JsonNumber(t.out, "predicted_peak_bytes"));
  t = Train("lstm_lm", {"--mask", "budget:3MiB", "--json"});
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_LE(JsonNumber(t.out, "peak_bytes"), 3 << 20);
}

// The ftte binary links gRPC's libprotobuf: SentencePiece (with its own protobuf) still loads.
TEST_F(LmCliTest, SubwordTokenizerTrainsSavesAndPredicts) {
  if (!data::Tokenizer::SubwordAvailable()) GTEST_SKIP() << "no SentencePiece in this process";
  const std::string ckpt = Path("subword.safetensors");
  Output t =
      Train("lstm_lm", {"--tokenizer", "subword", "--vocab", "60", "--save", ckpt, "--json"});
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("\"tokenizer\": \"subword\""), std::string::npos) << t.out;
  Output p = Capture(RunPredict, {"--model", ckpt, "the cat"});
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_NE(p.out.find("\xE2\x96\x81"), std::string::npos) << p.out;  // word-start pieces
}

TEST_F(LmCliTest, TrainErrorsNameTheProblem) {
  Output t = Train("lstm_lm", {"--tokenizer", "bpe"});
  EXPECT_EQ(t.code, 1);
  EXPECT_NE(t.err.find("--tokenizer: tokenizer 'bpe' is unknown; use word"), std::string::npos)
      << t.err;
  t = Capture(RunTrain, {"--model", "lstm_lm", "--data", Path("missing")});
  EXPECT_EQ(t.code, 1);
  EXPECT_NE(t.err.find("NotFound"), std::string::npos) << t.err;
  t = Capture(RunTrain, {"--model", "lstm_lm", "--data", "fashion-mnist"});
  EXPECT_NE(t.err.find("holds images"), std::string::npos) << t.err;
  t = Capture(RunTrain, {"--model", "cnn", "--tokenizer", "word"});
  EXPECT_NE(t.err.find("--tokenizer applies to language models"), std::string::npos) << t.err;
  t = Train("lstm_lm:vocab=50", {"--vocab", "60"});
  EXPECT_NE(t.err.find("give the vocabulary size once"), std::string::npos) << t.err;
  t = Train("lstm_lm", {"--mask", "budget:lots"});
  EXPECT_NE(t.err.find("budget:0.2 or budget:24MiB"), std::string::npos) << t.err;
}

// Regression (issue 12): --lr -0.1 trained into NaN, and an unwritable --save failed only after
// the whole training. Both are refused before any work now.
TEST_F(LmCliTest, NonsenseAndUnwritableOutputsAreRefusedBeforeTraining) {
  Output t = Train("lstm_lm", {"--lr", "-0.1"});
  EXPECT_EQ(t.code, 1);
  EXPECT_NE(t.err.find("--lr must be in (0, 100]"), std::string::npos) << t.err;
  t = Train("lstm_lm", {"--momentum", "1.5"});
  EXPECT_NE(t.err.find("--momentum must be in [0, 1)"), std::string::npos) << t.err;
  t = Train("lstm_lm", {"--save", Path("no/such/folder/model.safetensors")});
  EXPECT_EQ(t.code, 1);
  EXPECT_NE(t.err.find("Checked before training"), std::string::npos) << t.err;
  EXPECT_EQ(t.err.find("epoch 1/"), std::string::npos) << "trained first: " << t.err;
  t = Capture(RunTrain, {"--model", "mlp", "--data", "fashion-mnist", "--save", Path("")});
  EXPECT_NE(t.err.find("--save needs a file path"), std::string::npos) << t.err;
  // A learning rate in range that still runs away (finite or not) stops training, saves nothing.
  t = Train("lstm_lm", {"--lr", "100", "--optimizer", "sgd", "--epochs", "3", "--save",
                        Path("runaway.safetensors")});
  EXPECT_EQ(t.code, 1);
  EXPECT_NE(t.err.find("training diverged in epoch"), std::string::npos) << t.err;
  EXPECT_NE(t.err.find("lower --lr"), std::string::npos) << t.err;
  EXPECT_FALSE(fs::exists(Path("runaway.safetensors")));
}

TEST_F(LmCliTest, PredictErrorsNameTheProblem) {
  Output p = Capture(RunPredict, {"--model", Path("absent.safetensors"), "hi"});
  EXPECT_EQ(p.code, 1);
  EXPECT_NE(p.err.find("ftte train --model lstm_lm"), std::string::npos) << p.err;

  std::ofstream(Path("corrupt.safetensors")) << "\x10\0\0\0\0\0\0\0{\"a\":";
  p = Capture(RunPredict, {"--model", Path("corrupt.safetensors"), "hi"});
  EXPECT_EQ(p.code, 1);
  EXPECT_NE(p.err.find("DataLoss"), std::string::npos) << p.err;

  auto cnn = MakeModel("mlp");
  ASSERT_TRUE(cnn.ok());
  ASSERT_TRUE(SaveCheckpoint(*cnn.value(), Path("mlp.safetensors")).ok());
  p = Capture(RunPredict, {"--model", Path("mlp.safetensors"), "hi"});
  EXPECT_EQ(p.code, 1);
  EXPECT_NE(p.err.find("image model 'mlp'"), std::string::npos) << p.err;

  p = Capture(RunPredict, {"hi"});
  EXPECT_EQ(p.code, 2);
  EXPECT_NE(p.err.find("--model CKPT is required"), std::string::npos) << p.err;
}

TEST(LmBenchCliTest, BenchTrainReportsTokensPerSecond) {
  Output b = Capture(RunBenchTrain, {"--model", "tiny_gpt:vocab=64,context=16", "--batch", "4",
                                     "--seconds", "0.05", "--warmup", "1", "--json"});
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(JsonNumber(b.out, "context"), 16);
  EXPECT_NEAR(JsonNumber(b.out, "tokens_per_s"), 16 * JsonNumber(b.out, "samples_per_s"),
              1e-3 * JsonNumber(b.out, "tokens_per_s"));
  EXPECT_EQ(JsonNumber(b.out, "peak_bytes"), JsonNumber(b.out, "predicted_peak_bytes"));
}

}  // namespace
}  // namespace ftte::cli
