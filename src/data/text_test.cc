#include "ftte/data/text.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ftte::data {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> Names(const TextCorpus& c) {
  std::vector<std::string> out;
  for (const TextUser& u : c.users) out.push_back(u.name);
  return out;
}

constexpr char kVerses[] =
    "Ge1:1 In the beginning God created the heaven and the earth.\n"
    "Ge1:2 And the earth was without form.\n"
    "Ge2:1 Thus the heavens and the earth were finished.\n"
    "\n"
    "1Sm1:1 Now there was a certain man.\n"
    "SSol1:1 The song of songs, which is Solomon's.\n";

TEST(ParseBibleVersesTest, GroupsByChapterOrBookInOrder) {
  Result<TextCorpus> c = ParseBibleVerses(kVerses, BibleGranularity::kChapter);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(Names(*c), (std::vector<std::string>{"Ge1", "Ge2", "1Sm1", "SSol1"}));
  EXPECT_EQ(c->users[0].text,
            "In the beginning God created the heaven and the earth.\n"
            "And the earth was without form.\n");
  EXPECT_EQ(c->users[3].text, "The song of songs, which is Solomon's.\n");

  Result<TextCorpus> b = ParseBibleVerses(kVerses, BibleGranularity::kBook);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(Names(*b), (std::vector<std::string>{"Ge", "1Sm", "SSol"}));
  EXPECT_EQ(b->users[0].text.substr(b->users[0].text.rfind("Thus")),
            "Thus the heavens and the earth were finished.\n");
  EXPECT_EQ(b->bytes(), c->bytes());
}

TEST(ParseBibleVersesTest, BadOutputSaysWhichLine) {
  struct Case {
    std::string text, says;
  };
  const std::vector<Case> cases = {
      {"Ge1:1 ok\n\nGenesis 1\n", "line 3 'Genesis 1'"},
      {"Ge1:1 ok\n  1 In the beginning\n", "line 2"},
      {"Ge1 In\n", "line 1"},
      {"Ge1:x In\n", "line 1"},
      {"Ge1:1In\n", "line 1"},
      {"Ge1:1 a\nEx1:1 b\nGe1:2 c\n", "Ge1 appears again"},
      {"\n\n", "no verses"},
  };
  for (const Case& c : cases) {
    Result<TextCorpus> r = ParseBibleVerses(c.text, BibleGranularity::kChapter);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << r.status().ToString();
  }
}

class TextFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           ("ftte_text_" + std::string(info->name()) + "_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  // An executable shell script standing in for the `bible` command.
  std::string Script(const std::string& name, const std::string& body) {
    const std::string path = Write(name, "#!/bin/sh\n" + body);
    fs::permissions(path, fs::perms::owner_all);
    return path;
  }

  fs::path dir_;
};

TEST_F(TextFileTest, LoadBibleRunsTheCommandWithPrettyPrintingOff) {
  const std::string verses = Write("verses.txt", kVerses);
  // Prints the verses only when called as LoadBibleKjv must call it.
  const std::string fake = Script(
      "fake-bible", "[ \"$1\" = -f ] && [ \"$2\" = Gen1:1-Rev22:21 ] || exit 3\ncat " + verses);
  Result<TextCorpus> c = LoadBibleKjv(BibleGranularity::kBook, fake);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(Names(*c), (std::vector<std::string>{"Ge", "1Sm", "SSol"}));
}

TEST_F(TextFileTest, MissingBibleCommandSaysHowToInstall) {
  for (const std::string& cmd :
       {(dir_ / "no-such-bible").string(), std::string("ftte-no-such-bible-command")}) {
    Result<TextCorpus> c = LoadBibleKjv(BibleGranularity::kChapter, cmd);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
    const std::string& m = c.status().message();
    EXPECT_NE(m.find(cmd), std::string::npos) << m;
    EXPECT_NE(m.find("sudo apt-get install bible-kjv bible-kjv-text"), std::string::npos) << m;
    EXPECT_NE(m.find("scripts/setup.sh"), std::string::npos) << m;
  }
}

TEST_F(TextFileTest, FailingBibleCommandIsDataLoss) {
  const std::string fake = Script("broken-bible", "echo 'Cannot open data file x'\nexit 1\n");
  Result<TextCorpus> c = LoadBibleKjv(BibleGranularity::kChapter, fake);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kDataLoss);
  const std::string& m = c.status().message();
  EXPECT_NE(m.find("exit status 1"), std::string::npos) << m;
  EXPECT_NE(m.find("Cannot open data file"), std::string::npos) << m;
  EXPECT_NE(m.find("bible-kjv-text"), std::string::npos) << m;

  Result<TextCorpus> empty = LoadBibleKjv(BibleGranularity::kChapter, Script("mute", "exit 0\n"));
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), StatusCode::kDataLoss);
}

TEST(BibleKjvTest, HasAllChaptersAndBooks) {
  const auto start = std::chrono::steady_clock::now();
  Result<TextCorpus> chapters = LoadBibleKjv(BibleGranularity::kChapter);
  if (!chapters.ok() && chapters.status().code() == StatusCode::kNotFound) {
    GTEST_SKIP() << chapters.status().message();
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(chapters.ok()) << chapters.status().ToString();
  EXPECT_EQ(chapters->users.size(), 1189u);
  EXPECT_EQ(chapters->users.front().name, "Ge1");
  EXPECT_EQ(chapters->users.back().name, "Rev22");
  const std::string& gen1 = chapters->users.front().text;
  EXPECT_EQ(gen1.substr(0, gen1.find('\n')),
            "In the beginning God created the heaven and the earth.");
  int64_t verses = 0;
  for (const TextUser& u : chapters->users)
    verses += std::count(u.text.begin(), u.text.end(), '\n');
  EXPECT_EQ(verses, 31102);

  Result<TextCorpus> books = LoadBibleKjv(BibleGranularity::kBook);
  ASSERT_TRUE(books.ok()) << books.status().ToString();
  EXPECT_EQ(books->users.size(), 66u);
  EXPECT_EQ(books->users[0].name, "Ge");
  EXPECT_EQ(books->users[39].name, "Mat");
  EXPECT_EQ(books->bytes(), chapters->bytes());
  RecordProperty("load_seconds", std::to_string(secs));
  RecordProperty("bytes", std::to_string(chapters->bytes()));
}

TEST_F(TextFileTest, DirectoryGivesOneUserPerFileSortedByName) {
  Write("b.txt", "second user\n");
  Write("a.txt", "first user\nline two");
  Write("c.txt", "");
  Write(".hidden", "skipped");
  fs::create_directories(dir_ / "sub");
  Write("sub/d.txt", "skipped too");
  Result<TextCorpus> c = LoadTextDirectory(dir_.string());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(Names(*c), (std::vector<std::string>{"a.txt", "b.txt", "c.txt"}));
  EXPECT_EQ(c->users[0].text, "first user\nline two");
  EXPECT_EQ(c->users[2].text, "");
}

TEST_F(TextFileTest, DirectoryErrorsSayWhatToPass) {
  Result<TextCorpus> missing = LoadTextDirectory((dir_ / "nope").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("one text file per user"), std::string::npos);

  Result<TextCorpus> empty = LoadTextDirectory(dir_.string());
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(empty.status().message().find("holds no text files"), std::string::npos);

  Result<TextCorpus> file = LoadTextDirectory(Write("f.txt", "x"));
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(file.status().message().find("is not a directory"), std::string::npos);
}

TEST_F(TextFileTest, BinaryOrNonUtf8FilesAreRefusedNamingFileLineAndFix) {
  Write("a.txt", "caf\xc3\xa9 ok\n");  // valid UTF-8 (é)
  Write("b.bin", std::string("line one\nab\xff\xfe", 13));
  Result<TextCorpus> c = LoadTextDirectory(dir_.string());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  const std::string& m = c.status().message();
  for (const char* part : {"b.bin is not UTF-8 text", "0xff", "offset 11", "line 2", "iconv"}) {
    EXPECT_NE(m.find(part), std::string::npos) << part << " in " << m;
  }
  fs::remove(dir_ / "b.bin");
  Write("c.dat", std::string("abc\0def", 7));
  c = LoadTextDirectory(dir_.string());
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("a NUL byte (binary data) at offset 3"), std::string::npos)
      << c.status().message();
  fs::remove(dir_ / "c.dat");
  ASSERT_TRUE(LoadTextDirectory(dir_.string()).ok());
}

TEST(Utf8Test, FindsTheFirstByteOutsideStrictUtf8) {
  EXPECT_EQ(Utf8ErrorAt("plain"), std::string_view::npos);
  EXPECT_EQ(Utf8ErrorAt("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"), std::string_view::npos);
  EXPECT_EQ(Utf8ErrorAt("ab\xc3"), 2u);             // truncated
  EXPECT_EQ(Utf8ErrorAt("a\xc0\xaf"), 1u);          // overlong
  EXPECT_EQ(Utf8ErrorAt("\xed\xa0\x80"), 0u);       // surrogate
  EXPECT_EQ(Utf8ErrorAt("x\xf4\x90\x80\x80"), 1u);  // above U+10FFFF
}

}  // namespace
}  // namespace ftte::data
