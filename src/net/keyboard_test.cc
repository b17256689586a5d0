// The keyboard C API (include/ftte/net/ftte_keyboard.h): state, personalisation, bad input,
// encryption at rest and kill -9 during saves.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ftte/core/model.h"
#include "ftte/data/lm_model.h"
#include "ftte/net/ftte_keyboard.h"

namespace {

namespace fs = std::filesystem;

constexpr char kCorpus[] =
    "the cat sat on the mat .\nthe dog ran in the park .\nmy zebra likes green apples .\n"
    "we walk to the river and back .\n";

class KeyboardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            ("keyboard_test_" + std::to_string(getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    auto tok = ftte::data::Tokenizer::Train(ftte::data::TokenizerKind::kWord, {kCorpus}, 100);
    ASSERT_TRUE(tok.ok());
    auto model =
        ftte::MakeModel("lstm_lm:vocab=" + std::to_string(tok.value().size()) + ",context=8", 7);
    ASSERT_TRUE(model.ok());
    base_ = (root_ / "base.safetensors").string();
    ASSERT_TRUE(ftte::data::SaveLanguageModel(*model.value(), tok.value(), base_).ok());
    dir_ = (root_ / "state").string();
    ftte_keyboard_options_init(&options_);
    options_.state_dir = dir_.c_str();
    options_.base_model = base_.c_str();
  }
  void TearDown() override { fs::remove_all(root_); }

  ftte_keyboard* Open(int expect = FTTE_OK) {
    int code = -1;
    char err[512];
    ftte_keyboard* k = ftte_keyboard_open(&options_, &code, err, sizeof err);
    EXPECT_EQ(code, expect) << err;
    EXPECT_EQ(k != nullptr, expect == FTTE_OK);
    last_error_ = err;
    return k;
  }
  static int Add(ftte_keyboard* k, const std::string& text, int64_t when = 0) {
    return ftte_keyboard_add_text(k, text.data(), text.size(), when);
  }
  static std::vector<std::string> Predict(ftte_keyboard* k, const std::string& context,
                                          int personal = 1) {
    ftte_suggestion out[3];
    int n = 0;
    EXPECT_EQ(ftte_keyboard_predict(k, context.data(), context.size(), 3, personal, out, &n),
              FTTE_OK)
        << ftte_keyboard_last_error(k);
    std::vector<std::string> words;
    for (int i = 0; i < n; ++i) words.push_back(out[i].end_of_line ? "<eol>" : out[i].text);
    return words;
  }
  std::string StateBytes() const {
    std::ifstream in(dir_ + "/state.ftte", std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  void WriteState(const std::string& bytes) const {
    std::ofstream(dir_ + "/state.ftte", std::ios::binary | std::ios::trunc) << bytes;
  }

  fs::path root_;
  std::string base_, dir_, last_error_;
  ftte_keyboard_options options_;
};

TEST_F(KeyboardTest, StartsFromTheBaseModelAndKeepsTheStoreAcrossReopens) {
  ftte_keyboard* k = Open();
  ASSERT_NE(k, nullptr);
  EXPECT_TRUE(fs::exists(dir_ + "/state.ftte"));  // saved at creation
  EXPECT_EQ(Add(k, "the cat sat on the mat .\n"), FTTE_OK);
  EXPECT_EQ(Add(k, "my zebra likes green apples ."), FTTE_OK);
  EXPECT_EQ(ftte_keyboard_close(k), FTTE_OK);

  options_.base_model = nullptr;  // the state has its own model now
  k = Open();
  ASSERT_NE(k, nullptr);
  ftte_keyboard_stats s;
  ftte_keyboard_get_stats(k, &s);
  EXPECT_EQ(s.messages, 2);
  EXPECT_EQ(s.tokens, 15);  // 7 + 6 words and two <eos>
  ftte_keyboard_close(k);
}

TEST_F(KeyboardTest, PersonalSuggestionsLearnWhatThePersonTypes) {
  ftte_keyboard* k = Open();
  ASSERT_NE(k, nullptr);
  for (int i = 0; i < 30; ++i) ASSERT_EQ(Add(k, "my zebra likes green apples .\n"), FTTE_OK);
  ASSERT_EQ(ftte_keyboard_personalize(k, nullptr), FTTE_OK) << ftte_keyboard_last_error(k);
  ftte_keyboard_stats s;
  ftte_keyboard_get_stats(k, &s);
  EXPECT_GT(s.fitted_on, 0);
  EXPECT_GT(s.lambda_max, 0);
  EXPECT_GT(s.personal_log_likelihood, s.global_log_likelihood);
  EXPECT_EQ(Predict(k, "my zebra ").at(0), "likes");
  EXPECT_EQ(Predict(k, "my zebra likes green ").at(0), "apples");

  const std::string held = "my zebra likes green apples .\n";
  ftte_keyboard_eval e;
  ASSERT_EQ(ftte_keyboard_evaluate(k, held.data(), held.size(), &e), FTTE_OK);
  EXPECT_EQ(e.scored, 7);
  EXPECT_GT(e.top1, e.global_top1);
  EXPECT_GE(e.top1, 6.0 / 7);
  EXPECT_LT(e.perplexity, e.global_perplexity);
  ftte_keyboard_close(k);
}

TEST_F(KeyboardTest, CompletesTheWordBeingTyped) {
  ftte_keyboard* k = Open();
  ASSERT_NE(k, nullptr);
  for (const std::string& w : Predict(k, "the c")) EXPECT_EQ(w.rfind('c', 0), 0u) << w;
  const std::vector<std::string> z = Predict(k, "my ZE");
  ASSERT_EQ(z.size(), 1u);  // the only word starting with "ze", case-insensitively
  EXPECT_EQ(z[0], "zebra");
  EXPECT_TRUE(Predict(k, "the qx").empty());
  ftte_keyboard_close(k);
}

// A base model with a subword (SentencePiece) tokenizer: suggestions are next pieces, shown with
// a leading space when they start a word, and personalisation learns them as it learns words.
TEST_F(KeyboardTest, SubwordModelsSuggestPiecesAndLearnThem) {
  if (!ftte::data::Tokenizer::SubwordAvailable()) GTEST_SKIP() << "no SentencePiece here";
  std::string text;
  for (int i = 0; i < 4; ++i) text += kCorpus;
  auto tok = ftte::data::Tokenizer::Train(ftte::data::TokenizerKind::kSubword, {text}, 60);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  auto model =
      ftte::MakeModel("lstm_lm:vocab=" + std::to_string(tok.value().size()) + ",context=8", 7);
  ASSERT_TRUE(model.ok());
  const std::string base = (root_ / "subword.safetensors").string();
  ASSERT_TRUE(ftte::data::SaveLanguageModel(*model.value(), tok.value(), base).ok());
  options_.base_model = base.c_str();
  ftte_keyboard* k = Open();
  ASSERT_NE(k, nullptr);
  for (int i = 0; i < 30; ++i) ASSERT_EQ(Add(k, "my zebra likes green apples .\n"), FTTE_OK);
  ASSERT_EQ(ftte_keyboard_personalize(k, nullptr), FTTE_OK) << ftte_keyboard_last_error(k);
  const std::vector<std::string> next = Predict(k, "my zebra ");
  ASSERT_FALSE(next.empty());
  EXPECT_EQ(std::string(" likes").rfind(next[0], 0), 0u) << next[0];  // a prefix of " likes"
  EXPECT_EQ(next[0][0], ' ');
  ftte_keyboard_close(k);
}

TEST_F(KeyboardTest, RetentionDropsTheOldestMessages) {
  options_.store_max_bytes = 1024;
  ftte_keyboard* k = Open();
  ASSERT_NE(k, nullptr);
  const std::string line = "we walk to the river and back .\n";  // 32 bytes
  for (int i = 0; i < 40; ++i) ASSERT_EQ(Add(k, line), FTTE_OK);
  ftte_keyboard_stats s;
  ftte_keyboard_get_stats(k, &s);
  EXPECT_EQ(s.messages, 32);
  EXPECT_EQ(s.dropped_messages, 8);
  EXPECT_EQ(s.tokens, 32 * 9);
  // Age: a message from 100 days ago is dropped at once (default keeps 90 days).
  ASSERT_EQ(Add(k, "the dog ran", static_cast<int64_t>(time(nullptr)) - 100 * 86400), FTTE_OK);
  ftte_keyboard_get_stats(k, &s);
  EXPECT_EQ(s.messages, 32);
  EXPECT_EQ(s.dropped_messages, 9);
  ftte_keyboard_close(k);
}

TEST_F(KeyboardTest, BadTextIsRefusedAndChangesNothing) {
  ftte_keyboard* k = Open();
  ASSERT_NE(k, nullptr);
  ASSERT_EQ(Add(k, "the cat sat"), FTTE_OK);
  ASSERT_EQ(ftte_keyboard_save(k), FTTE_OK);
  const std::string before = StateBytes();
  EXPECT_EQ(Add(k, "caf\xc3"), FTTE_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(ftte_keyboard_last_error(k)).find("not valid UTF-8 (byte 3"),
            std::string::npos)
      << ftte_keyboard_last_error(k);
  EXPECT_EQ(Add(k, "\xed\xa0\x80 surrogate"), FTTE_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(Add(k, ""), FTTE_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(ftte_keyboard_last_error(k)).find("no words"), std::string::npos);
  EXPECT_EQ(Add(k, "   \n  "), FTTE_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(Add(k, std::string("a\0b", 3)), FTTE_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(Add(k, "tomorrow", static_cast<int64_t>(time(nullptr)) + 7 * 86400),
            FTTE_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(Add(k, std::string(2 << 20, 'a')), FTTE_ERR_INVALID_ARGUMENT);
  ftte_suggestion out[3];
  int n = 0;
  EXPECT_EQ(ftte_keyboard_predict(k, "\xff", 1, 3, 1, out, &n), FTTE_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ftte_keyboard_predict(k, "the", 3, 0, 1, out, &n), FTTE_ERR_INVALID_ARGUMENT);
  ftte_keyboard_stats s;
  ftte_keyboard_get_stats(k, &s);
  EXPECT_EQ(s.messages, 1);
  EXPECT_EQ(ftte_keyboard_close(k), FTTE_OK);
  EXPECT_EQ(StateBytes(), before);  // nothing was dirty: close did not even rewrite it
}

TEST_F(KeyboardTest, EncryptedStateNeedsTheRightKeyAndHidesTheText) {
  uint8_t key[FTTE_KEYBOARD_KEY_BYTES];
  for (int i = 0; i < FTTE_KEYBOARD_KEY_BYTES; ++i) key[i] = static_cast<uint8_t>(i * 7 + 1);
  options_.key = key;
  ftte_keyboard* k = Open();
  ASSERT_NE(k, nullptr);
  ASSERT_EQ(Add(k, "my zebra likes green apples ."), FTTE_OK);
  ASSERT_EQ(ftte_keyboard_close(k), FTTE_OK);
  const std::string saved = StateBytes();
  EXPECT_EQ(saved.find("zebra"), std::string::npos);
  EXPECT_EQ(saved.find("safetensors"), std::string::npos);

  options_.base_model = nullptr;
  uint8_t wrong[FTTE_KEYBOARD_KEY_BYTES];
  std::memcpy(wrong, key, sizeof wrong);
  wrong[5] ^= 1;
  options_.key = wrong;
  EXPECT_EQ(Open(FTTE_ERR_UNAUTHENTICATED), nullptr);
  EXPECT_NE(last_error_.find("another key"), std::string::npos) << last_error_;
  options_.key = nullptr;
  EXPECT_EQ(Open(FTTE_ERR_UNAUTHENTICATED), nullptr);
  EXPECT_NE(last_error_.find("is encrypted; pass the key"), std::string::npos) << last_error_;
  EXPECT_EQ(StateBytes(), saved);

  // The right key, but one ciphertext byte altered: authentication fails.
  std::string altered = saved;
  altered[altered.size() / 2] ^= 0x20;
  WriteState(altered);
  options_.key = key;
  EXPECT_EQ(Open(FTTE_ERR_DATA_LOSS), nullptr);
  EXPECT_NE(last_error_.find("fails authentication"), std::string::npos) << last_error_;
  WriteState(saved);
  k = Open();
  ASSERT_NE(k, nullptr);
  ftte_keyboard_stats s;
  ftte_keyboard_get_stats(k, &s);
  EXPECT_EQ(s.messages, 1);
  ftte_keyboard_close(k);
}

TEST_F(KeyboardTest, APlainStateOpenedWithAKeyIsEncryptedOnTheNextSave) {
  ftte_keyboard* k = Open();
  ASSERT_NE(k, nullptr);
  ASSERT_EQ(Add(k, "my zebra likes green apples ."), FTTE_OK);
  ASSERT_EQ(ftte_keyboard_close(k), FTTE_OK);
  EXPECT_NE(StateBytes().find("zebra"), std::string::npos);
  uint8_t key[FTTE_KEYBOARD_KEY_BYTES] = {1, 2, 3};
  options_.key = key;
  k = Open();
  ASSERT_NE(k, nullptr);
  ftte_keyboard_close(k);
  EXPECT_EQ(StateBytes().find("zebra"), std::string::npos);
}

TEST_F(KeyboardTest, CorruptForeignAndMissingStatesAreRefusedUntouched) {
  ftte_keyboard* k = Open();
  ASSERT_NE(k, nullptr);
  ASSERT_EQ(Add(k, "the cat sat on the mat ."), FTTE_OK);
  ASSERT_EQ(ftte_keyboard_close(k), FTTE_OK);
  const std::string saved = StateBytes();

  std::string flipped = saved;
  flipped[saved.size() - 40] ^= 1;
  WriteState(flipped);
  EXPECT_EQ(Open(FTTE_ERR_DATA_LOSS), nullptr);
  EXPECT_NE(last_error_.find("checksum"), std::string::npos) << last_error_;
  EXPECT_EQ(StateBytes(), flipped);

  WriteState(saved.substr(0, saved.size() / 2));
  EXPECT_EQ(Open(FTTE_ERR_DATA_LOSS), nullptr);
  EXPECT_NE(last_error_.find("truncated"), std::string::npos) << last_error_;

  WriteState("{\"some\": \"other app's file\"}");
  EXPECT_EQ(Open(FTTE_ERR_INVALID_ARGUMENT), nullptr);
  EXPECT_NE(last_error_.find("not a keyboard state file"), std::string::npos) << last_error_;

  // A directory of something else: refused, and nothing is created in it.
  const std::string other = (root_ / "photos").string();
  fs::create_directories(other);
  std::ofstream(other + "/cat.jpg") << "jpeg";
  options_.state_dir = other.c_str();
  EXPECT_EQ(Open(FTTE_ERR_INVALID_ARGUMENT), nullptr);
  EXPECT_NE(last_error_.find("not a keyboard state directory"), std::string::npos);
  EXPECT_EQ(std::distance(fs::directory_iterator(other), fs::directory_iterator()), 1);

  // No state and no base model.
  const std::string empty = (root_ / "empty").string();
  options_.state_dir = empty.c_str();
  options_.base_model = nullptr;
  EXPECT_EQ(Open(FTTE_ERR_NOT_FOUND), nullptr);
  EXPECT_NE(last_error_.find("pass base_model"), std::string::npos) << last_error_;

  options_.state_dir = dir_.c_str();
  options_.threads = 0;
  EXPECT_EQ(Open(FTTE_ERR_INVALID_ARGUMENT), nullptr);
}

TEST_F(KeyboardTest, ASecondOpenOfTheSameDirectoryIsRefused) {
  ftte_keyboard* k = Open();
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(Open(FTTE_ERR_PRECONDITION), nullptr);
  EXPECT_NE(last_error_.find("close that one first"), std::string::npos) << last_error_;
  ftte_keyboard_close(k);
  k = Open();
  EXPECT_NE(k, nullptr);
  ftte_keyboard_close(k);
}

TEST_F(KeyboardTest, StopCancelsPersonalizeAndKeepsTheBestSoFar) {
  ftte_keyboard* k = Open();
  ASSERT_NE(k, nullptr);
  for (int i = 0; i < 30; ++i) ASSERT_EQ(Add(k, "my zebra likes green apples .\n"), FTTE_OK);
  struct Ctx {
    ftte_keyboard* k;
    int calls = 0;
    double last = 0;
  } ctx{k};
  ftte_keyboard_session session = {};
  session.user = &ctx;
  session.progress = [](void* user, double fraction) {
    auto* c = static_cast<Ctx*>(user);
    EXPECT_GE(fraction, c->last);
    c->last = fraction;
    if (++c->calls == 10) ftte_keyboard_stop(c->k);
  };
  EXPECT_EQ(ftte_keyboard_personalize(k, &session), FTTE_ERR_CANCELLED);
  ftte_keyboard_stats s;
  ftte_keyboard_get_stats(k, &s);
  EXPECT_GT(s.fitted_on, 0);
  EXPECT_GT(s.lambda_max, 0);
  EXPECT_EQ(ctx.calls, 11);  // ten asks, then the final report
  session.time_budget_ms = -1;
  EXPECT_EQ(ftte_keyboard_personalize(k, &session), FTTE_ERR_INVALID_ARGUMENT);
  ftte_keyboard_close(k);
}

// A child adds and saves in a loop, reporting each completed save through a pipe; the parent
// kills it with SIGKILL at a random moment. The state must open and hold every acknowledged
// message (and at most one more: a save that finished before the acknowledgement was read).
TEST_F(KeyboardTest, KillNineDuringSavesLeavesAWholeState) {
  uint8_t key[FTTE_KEYBOARD_KEY_BYTES] = {9, 9, 9};
  options_.key = key;
  ftte_keyboard* k = Open();
  ASSERT_NE(k, nullptr);
  ftte_keyboard_close(k);
  for (int round = 0; round < 4; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      ftte_keyboard* c = ftte_keyboard_open(&options_, nullptr, nullptr, 0);
      if (c == nullptr) _exit(3);
      for (;;) {
        if (ftte_keyboard_add_text(c, "the cat sat on the mat .", 24, 0) != FTTE_OK) _exit(4);
        if (ftte_keyboard_save(c) != FTTE_OK) _exit(5);
        char b = 1;
        if (write(fds[1], &b, 1) != 1) _exit(6);
      }
    }
    close(fds[1]);
    int64_t acked = 0;
    const int want = 3 + round * 4;
    char b;
    while (acked < want && read(fds[0], &b, 1) == 1) ++acked;
    usleep(static_cast<useconds_t>(round * 1500));  // somewhere inside a later save
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    while (read(fds[0], &b, 1) == 1) ++acked;
    close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);

    ftte_keyboard_stats before;
    k = Open();
    ASSERT_NE(k, nullptr) << last_error_;
    ftte_keyboard_get_stats(k, &before);
    ftte_keyboard_close(k);
    static int64_t total = 0;
    EXPECT_GE(before.messages, total + acked) << "round " << round;
    EXPECT_LE(before.messages, total + acked + 1) << "round " << round;
    total = before.messages;
  }
}

// The example (examples/keyboard, C, public API only) driven by a script on stdin: it shows the
// suggestions before each word, learns the messages, fits, evaluates and keeps its state.
TEST_F(KeyboardTest, TheExampleRunsAScriptedSession) {
  const std::string held = (root_ / "held.txt").string();
  std::ofstream(held) << "my zebra likes green apples .\n";
  const std::string script = (root_ / "session.txt").string();
  {
    std::ofstream out(script);
    for (int i = 0; i < 25; ++i) out << "my zebra likes green apples.\n";
    out << ":suggest my zebra \n:train\n:eval " << held << "\n:stats\n";
  }
  auto run = [&](const std::string& model) {
    const std::string cmd = std::string(FTTE_EMULATOR " " FTTE_KEYBOARD_C) + " --state " + dir_ +
                            model + " < " + script + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    EXPECT_EQ(pclose(p), 0) << out;
    return out;
  };
  const std::string out = run(" --model " + base_);
  EXPECT_NE(out.find("  zebra         * ["), std::string::npos) << out;  // learnt by message 2
  EXPECT_NE(out.find("[likes "), std::string::npos) << out;              // :suggest
  EXPECT_NE(out.find("trained on 25 messages"), std::string::npos) << out;
  EXPECT_NE(out.find("eval " + held + ": 7 words"), std::string::npos) << out;
  EXPECT_NE(out.find("25 messages, 725 bytes"), std::string::npos) << out;
  // The state was kept: a second session starts from it (no --model needed).
  EXPECT_NE(run("").find("50 messages"), std::string::npos);
}

// The federation identity: a random name made when the state is created, kept across reopens
// (encrypted or not), different for every keyboard; the global part starts as the base model.
TEST_F(KeyboardTest, TheIdentityIsMadeOnceAndKeptInTheState) {
  ftte_keyboard* k = Open();
  ASSERT_NE(k, nullptr);
  ftte_keyboard_stats st;
  ftte_keyboard_get_stats(k, &st);
  const std::string name = st.device_name;
  EXPECT_EQ(name.rfind("kbd-", 0), 0u) << name;
  EXPECT_EQ(name.size(), 20u);
  EXPECT_EQ(st.model_version, -1);
  ASSERT_EQ(ftte_keyboard_close(k), FTTE_OK);
  k = Open();
  ASSERT_NE(k, nullptr);
  ftte_keyboard_get_stats(k, &st);
  EXPECT_EQ(st.device_name, name);
  ASSERT_EQ(ftte_keyboard_close(k), FTTE_OK);
  const std::string other = (root_ / "other").string();
  options_.state_dir = other.c_str();
  k = Open();
  ASSERT_NE(k, nullptr);
  ftte_keyboard_get_stats(k, &st);
  EXPECT_NE(st.device_name, name);
  ASSERT_EQ(ftte_keyboard_close(k), FTTE_OK);
}

// Federating needs text to train on and options naming a server; either missing is refused
// before any connection, with the state untouched.
TEST_F(KeyboardTest, FederateRefusesAnEmptyStoreAndBadOptions) {
  ftte_keyboard* k = Open();
  ASSERT_NE(k, nullptr);
  const std::string before = StateBytes();
  ftte_device_options o;
  ftte_device_options_init(&o);
  EXPECT_EQ(ftte_keyboard_federate(k, &o, nullptr), FTTE_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(ftte_keyboard_last_error(k)).find("server, name and enroll_key"),
            std::string::npos);
  EXPECT_EQ(ftte_keyboard_federate(k, nullptr, nullptr), FTTE_ERR_INVALID_ARGUMENT);
  o.server = "127.0.0.1:1";
  o.name = "phone";
  o.enroll_key = "k";
  o.insecure = 1;
  ftte_device_stats st;
  EXPECT_EQ(ftte_keyboard_federate(k, &o, &st), FTTE_ERR_PRECONDITION);
  EXPECT_NE(std::string(ftte_keyboard_last_error(k)).find("add what the person types"),
            std::string::npos)
      << ftte_keyboard_last_error(k);
  EXPECT_EQ(st.accepted, 0);
  // With text but no server listening: unavailable after max_attempts, nothing changed.
  ASSERT_EQ(Add(k, "the cat sat on the mat .\n"), FTTE_OK);
  ASSERT_EQ(ftte_keyboard_save(k), FTTE_OK);
  const std::string saved = StateBytes();
  o.max_attempts = 1;
  EXPECT_EQ(ftte_keyboard_federate(k, &o, &st), FTTE_ERR_UNAVAILABLE)
      << ftte_keyboard_last_error(k);
  EXPECT_EQ(StateBytes(), saved);
  EXPECT_NE(saved, before);
  EXPECT_EQ(ftte_keyboard_close(k), FTTE_OK);
}

}  // namespace
