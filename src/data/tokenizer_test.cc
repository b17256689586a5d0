#include "ftte/data/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ftte::data {
namespace {

namespace fs = std::filesystem;
using Pieces = std::vector<std::string>;

TEST(TokenizerSplitTest, WordsArePiecesLowercasedWithPunctuationApart) {
  EXPECT_EQ(Tokenizer::Split(TokenizerKind::kWord, "God said, Let"),
            (Pieces{"god", "said", ",", "let", "<eos>"}));
  EXPECT_EQ(Tokenizer::Split(TokenizerKind::kWord, "The king's loving-kindness (Selah)!\n"),
            (Pieces{"the", "king's", "loving-kindness", "(", "selah", ")", "!", "<eos>"}));
  // Joiners only count between word characters; digits are word characters.
  EXPECT_EQ(Tokenizer::Split(TokenizerKind::kWord, "fathers' - 'twas 3:16"),
            (Pieces{"fathers", "'", "-", "'", "twas", "3", ":", "16", "<eos>"}));
}

TEST(TokenizerSplitTest, EosEndsEveryLineWithPieces) {
  EXPECT_EQ(Tokenizer::Split(TokenizerKind::kWord, "a b\n\n  \nc\r\nd"),
            (Pieces{"a", "b", "<eos>", "c", "<eos>", "d", "<eos>"}));
  EXPECT_TRUE(Tokenizer::Split(TokenizerKind::kWord, "").empty());
  EXPECT_TRUE(Tokenizer::Split(TokenizerKind::kWord, " \n\t\n").empty());
}

TEST(TokenizerSplitTest, CharsAreCodePointsWithCaseKept) {
  EXPECT_EQ(Tokenizer::Split(TokenizerKind::kChar, "Hi é\r\n\nx"),
            (Pieces{"H", "i", " ", "\xc3\xa9", "<eos>", "x", "<eos>"}));
  // A byte that starts no valid UTF-8 sequence is a piece of its own.
  EXPECT_EQ(Tokenizer::Split(TokenizerKind::kChar, "\xc3z"), (Pieces{"\xc3", "z", "<eos>"}));
}

TEST(TokenizerTest, VocabularyIsTopKByCountThenBytes) {
  Result<Tokenizer> t =
      Tokenizer::Train(TokenizerKind::kWord, {"b a b c", "c b d", "a e"}, /*max_size=*/5);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  // Counts: b 3, <eos> 3 (not counted as a piece), a 2, c 2, d 1, e 1. Keep 3: b, then a < c.
  ASSERT_EQ(t->size(), 5);
  EXPECT_EQ(t->Piece(0), "<unk>");
  EXPECT_EQ(t->Piece(1), "<eos>");
  EXPECT_EQ(t->Piece(2), "b");
  EXPECT_EQ(t->Piece(3), "a");
  EXPECT_EQ(t->Piece(4), "c");
  EXPECT_EQ(t->Id("c"), 4);
  EXPECT_EQ(t->Id("d"), Tokenizer::kUnkId);
  EXPECT_EQ(t->Id("<eos>"), Tokenizer::kEosId);
  // Fewer distinct pieces than max_size: a smaller vocabulary.
  EXPECT_EQ(Tokenizer::Train(TokenizerKind::kWord, {"x y"}, 100)->size(), 4);
}

TEST(TokenizerTest, BadVocabularySizeSays) {
  Result<Tokenizer> t = Tokenizer::Train(TokenizerKind::kWord, {"a"}, 2);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("vocabulary size 2"), std::string::npos);
  EXPECT_FALSE(Tokenizer::Train(TokenizerKind::kWord, {"a"}, Tokenizer::kMaxSize + 1).ok());
}

TEST(TokenizerTest, WordRoundTripAndUnknownWords) {
  const Tokenizer t = Tokenizer::Train(TokenizerKind::kWord,
                                       {"And God said, Let there be light: and (so) it was."}, 1000)
                          .value();
  const std::vector<int32_t> ids = t.Encode("and god said, let there be light.");
  EXPECT_EQ(ids.size(), 10u);
  EXPECT_EQ(ids.back(), Tokenizer::kEosId);
  for (int32_t id : ids) EXPECT_NE(id, Tokenizer::kUnkId);
  EXPECT_EQ(t.Decode(ids), "and god said, let there be light.\n");
  EXPECT_EQ(t.Decode(t.Encode("It was (so)")), "it was (so)\n");
  EXPECT_EQ(t.Encode(t.Decode(ids)), ids);

  const std::vector<int32_t> unk = t.Encode("God made whales");
  ASSERT_EQ(unk.size(), 4u);
  EXPECT_EQ(unk[1], Tokenizer::kUnkId);
  EXPECT_EQ(unk[2], Tokenizer::kUnkId);
  EXPECT_EQ(t.Decode(unk), "god <unk> <unk>\n");
}

TEST(TokenizerTest, CharRoundTrip) {
  const Tokenizer t = Tokenizer::Train(TokenizerKind::kChar, {"Abc, é!\nx"}, 100).value();
  const std::vector<int32_t> ids = t.Encode("cA é\nb");
  ASSERT_EQ(ids.size(), 7u);
  for (int32_t id : ids) EXPECT_NE(id, Tokenizer::kUnkId);
  EXPECT_EQ(t.Decode(ids), "cA é\nb\n");
  EXPECT_EQ(t.Encode(t.Decode(ids)), ids);
  EXPECT_EQ(t.Encode("Z")[0], Tokenizer::kUnkId);
}

TEST(TokenizerDeathTest, DecodeOutOfRangeAborts) {
  const Tokenizer t = Tokenizer::Train(TokenizerKind::kWord, {"a"}, 10).value();
  EXPECT_DEATH(t.Decode({3}), "out of range");
  EXPECT_DEATH(t.Piece(-1), "out of range");
}

class TokenizerFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           ("ftte_tok_" + std::string(info->name()) + "_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  // Loads `text` as a tokenizer file and returns the error (the load must fail).
  Status LoadError(const std::string& text) {
    Result<Tokenizer> t = Tokenizer::Load(Write("bad.vocab", text));
    EXPECT_FALSE(t.ok()) << text;
    return t.ok() ? Status::Ok() : t.status();
  }

  fs::path dir_;
};

TEST_F(TokenizerFileTest, SaveLoadRoundTripsBothKinds) {
  for (TokenizerKind kind : {TokenizerKind::kWord, TokenizerKind::kChar}) {
    const Tokenizer t =
        Tokenizer::Train(kind, {"Tab\there, back\\slash; sp ace é.\n"}, 1000).value();
    const std::string path = (dir_ / "v.vocab").string();
    ASSERT_TRUE(t.Save(path).ok());
    Result<Tokenizer> u = Tokenizer::Load(path);
    ASSERT_TRUE(u.ok()) << u.status().ToString();
    EXPECT_EQ(u->kind(), kind);
    ASSERT_EQ(u->size(), t.size());
    for (int32_t i = 0; i < t.size(); ++i) EXPECT_EQ(u->Piece(i), t.Piece(i));
    EXPECT_EQ(u->Encode("back\\slash sp\tace"), t.Encode("back\\slash sp\tace"));
  }
  // The char vocabulary holds a space, a tab and a backslash; each is escaped on its line.
  std::ifstream in(dir_ / "v.vocab");
  std::string header;
  std::getline(in, header);
  EXPECT_EQ(header.rfind("ftte-tokenizer 1 char ", 0), 0u) << header;
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(body.find("\n\\x20\n"), std::string::npos);
  EXPECT_NE(body.find("\n\\x09\n"), std::string::npos);
  EXPECT_NE(body.find("\n\\x5c\n"), std::string::npos);
}

TEST_F(TokenizerFileTest, MissingFileIsNotFound) {
  Result<Tokenizer> t = Tokenizer::Load((dir_ / "none.vocab").string());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kNotFound);
  EXPECT_NE(t.status().message().find("none.vocab"), std::string::npos);
}

TEST_F(TokenizerFileTest, BadFilesSayWhatIsWrong) {
  const std::string ok_body = "<unk>\n<eos>\nthe\n";
  struct Case {
    std::string text;
    StatusCode code;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"", StatusCode::kInvalidArgument, "is empty"},
      {"hello world\n" + ok_body, StatusCode::kInvalidArgument, "not a tokenizer header"},
      {"ftte-tokenizer 2 word 3\n" + ok_body, StatusCode::kInvalidArgument, "version 2"},
      {"ftte-tokenizer 1 bpe 3\n" + ok_body, StatusCode::kInvalidArgument, "kind 'bpe'"},
      {"ftte-tokenizer 1 word 3 x\n" + ok_body, StatusCode::kInvalidArgument, "header"},
      {"ftte-tokenizer 1 word 1\n<unk>\n", StatusCode::kInvalidArgument, "size 1"},
      {"ftte-tokenizer 1 word 4\n" + ok_body, StatusCode::kDataLoss, "truncated"},
      {"ftte-tokenizer 1 word 2\n" + ok_body, StatusCode::kDataLoss, "line 4"},
      {"ftte-tokenizer 1 word 3\n<eos>\n<unk>\nthe\n", StatusCode::kInvalidArgument, "<unk>"},
      {"ftte-tokenizer 1 word 4\n" + ok_body + "the\n", StatusCode::kInvalidArgument, "repeats"},
      {"ftte-tokenizer 1 word 4\n" + ok_body + "\n", StatusCode::kInvalidArgument, "empty piece"},
      {"ftte-tokenizer 1 word 4\n" + ok_body + "a\\q\n", StatusCode::kInvalidArgument,
       "bad escape"},
      {"ftte-tokenizer 1 word 4\n" + ok_body + "a\\x2\n", StatusCode::kInvalidArgument,
       "line 5: bad escape"},
  };
  for (const Case& c : cases) {
    const Status s = LoadError(c.text);
    EXPECT_EQ(s.code(), c.code) << c.text << " -> " << s.ToString();
    EXPECT_NE(s.message().find(c.says), std::string::npos) << c.text << " -> " << s.ToString();
  }
  // A well-formed file with Windows line endings loads.
  Result<Tokenizer> t = Tokenizer::Load(Write("crlf.vocab",
                                              "ftte-tokenizer 1 word 3\r\n<unk>\r\n"
                                              "<eos>\r\nthe\r\n"));
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->Id("the"), 2);
}

TEST(TokenizerSerializeTest, RoundTripsAndIsValidUtf8EvenForInvalidPieces) {
  // "\xc3" alone and an overlong "\xe0\x80\x80" are not valid UTF-8; "\xc3\xa9" is.
  PieceCounts counts = {{"\xc3", 5}, {"\xe0\x80\x80", 4}, {"\xc3\xa9", 3}, {"a b", 2}};
  auto tok = Tokenizer::FromCounts(TokenizerKind::kChar, counts, 10);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  const std::string text = tok.value().Serialize();
  EXPECT_NE(text.find("\xc3\xa9\n"), std::string::npos);  // valid UTF-8 stays readable
  EXPECT_NE(text.find("\\xc3\n"), std::string::npos);
  EXPECT_NE(text.find("\\xe0\\x80\\x80\n"), std::string::npos);
  EXPECT_NE(text.find("a\\x20b\n"), std::string::npos);
  auto back = Tokenizer::Parse(text, "test");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back.value().size(), tok.value().size());
  for (int32_t i = 0; i < tok.value().size(); ++i) {
    EXPECT_EQ(back.value().Piece(i), tok.value().Piece(i));
  }
  auto bad = Tokenizer::Parse("not a tokenizer\n", "the metadata");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("the metadata"), std::string::npos);
}

}  // namespace
}  // namespace ftte::data
