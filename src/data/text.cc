#include "ftte/data/text.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace ftte::data {

namespace {

namespace fs = std::filesystem;

constexpr char kInstallHint[] =
    "install the King James Bible with `sudo apt-get install bible-kjv bible-kjv-text` (or run "
    "scripts/setup.sh)";

// The first `n` characters of a line, for error messages.
std::string Excerpt(std::string_view line, size_t n = 40) {
  std::string s(line.substr(0, n));
  if (line.size() > n) s += "...";
  return s;
}

// The executable `command` names: a path if it holds a '/', else the first match on PATH.
// Empty if there is none.
std::string FindExecutable(const std::string& command) {
  if (command.empty()) return "";
  if (command.find('/') != std::string::npos) {
    return ::access(command.c_str(), X_OK) == 0 ? command : "";
  }
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + command;
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return "";
}

// `s` in single quotes for /bin/sh.
std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// A parsed "<Book><chapter>:<verse> <text>" line.
struct Verse {
  std::string_view book, text;
  int chapter = 0;
};

bool ParseVerse(std::string_view line, Verse& v) {
  size_t i = 0;
  auto digits = [&] {
    const size_t start = i;
    while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
    return i - start;
  };
  if (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;  // "1Sm"
  const size_t letters = i;
  while (i < line.size() && std::isalpha(static_cast<unsigned char>(line[i]))) ++i;
  if (i == letters) return false;
  v.book = line.substr(0, i);
  const size_t chapter_start = i;
  const size_t chapter_digits = digits();
  if (chapter_digits == 0 || chapter_digits > 3) return false;
  v.chapter = std::atoi(std::string(line.substr(chapter_start, chapter_digits)).c_str());
  if (i >= line.size() || line[i] != ':') return false;
  ++i;
  if (digits() == 0) return false;
  if (i >= line.size() || line[i] != ' ') return false;
  v.text = line.substr(i + 1);
  return true;
}

}  // namespace

int64_t TextCorpus::bytes() const {
  int64_t n = 0;
  for (const TextUser& u : users) n += static_cast<int64_t>(u.text.size());
  return n;
}

Result<TextCorpus> ParseBibleVerses(std::string_view output, BibleGranularity granularity) {
  TextCorpus corpus;
  std::set<std::string, std::less<>> finished;  // users already closed by a later one
  int64_t line_no = 0;
  size_t pos = 0;
  while (pos < output.size()) {
    size_t end = output.find('\n', pos);
    if (end == std::string_view::npos) end = output.size();
    std::string_view line = output.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    Verse v;
    if (!ParseVerse(line, v)) {
      return DataLoss("bible output line " + std::to_string(line_no) + " '" + Excerpt(line) +
                      "' is not '<Book><chapter>:<verse> <text>'; was the command run with -f "
                      "(pretty-printing off)?");
    }
    const std::string name = granularity == BibleGranularity::kChapter
                                 ? std::string(v.book) + std::to_string(v.chapter)
                                 : std::string(v.book);
    if (corpus.users.empty() || corpus.users.back().name != name) {
      if (finished.count(name) != 0) {
        return DataLoss("bible output line " + std::to_string(line_no) + ": " + name +
                        " appears again after other passages; expected the verses in Bible "
                        "order from one range such as Gen1:1-Rev22:21");
      }
      if (!corpus.users.empty()) finished.insert(corpus.users.back().name);
      corpus.users.push_back({name, ""});
    }
    std::string& text = corpus.users.back().text;
    text.append(v.text);
    text.push_back('\n');
  }
  if (corpus.users.empty()) {
    return DataLoss("bible printed no verses; is bible-kjv-text installed? " +
                    std::string(kInstallHint));
  }
  return corpus;
}

Result<TextCorpus> LoadBibleKjv(BibleGranularity granularity, const std::string& bible_command) {
  const std::string exe = FindExecutable(bible_command);
  if (exe.empty()) {
    return NotFound("the Bible command '" + bible_command +
                    "' was not found or is not executable; " + kInstallHint);
  }
  const std::string cmd = ShellQuote(exe) + " -f Gen1:1-Rev22:21 </dev/null 2>&1";
  std::FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return IoError("cannot run " + cmd + ": " + std::strerror(errno));
  std::string output;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) output.append(buf, n);
  const int status = ::pclose(pipe);
  if (status == -1) return IoError("cannot wait for " + cmd + ": " + std::strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const std::string code = WIFEXITED(status)
                                 ? "exit status " + std::to_string(WEXITSTATUS(status))
                                 : "signal " + std::to_string(WTERMSIG(status));
    return DataLoss(cmd + " failed with " + code + " and printed '" +
                    Excerpt(output.substr(0, output.find('\n')), 120) +
                    "'; is bible-kjv-text installed? " + kInstallHint);
  }
  return ParseBibleVerses(output, granularity);
}

size_t Utf8ErrorAt(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = 1;
    uint32_t cp = c;
    if (c >= 0x80) {
      if (c >= 0xC2 && c <= 0xDF) {
        len = 2, cp = c & 0x1F;
      } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, cp = c & 0x0F;
      } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, cp = c & 0x07;
      } else {
        return i;
      }
      if (i + len > s.size()) return i;
      for (size_t k = 1; k < len; ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        if ((b & 0xC0) != 0x80) return i;
        cp = (cp << 6) | (b & 0x3F);
      }
      if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
          (cp >= 0xD800 && cp <= 0xDFFF)) {
        return i;
      }
    }
    i += len;
  }
  return std::string_view::npos;
}

Result<TextCorpus> LoadTextDirectory(const std::string& dir) {
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (ec || !fs::exists(st)) {
    if (ec && ec != std::errc::no_such_file_or_directory) {
      return IoError("cannot stat text directory " + dir + ": " + ec.message());
    }
    return NotFound("text directory " + dir +
                    " does not exist; pass a directory holding one text file per user");
  }
  if (!fs::is_directory(st)) {
    return InvalidArgument(dir +
                           " is not a directory; pass a directory holding one text file "
                           "per user");
  }
  std::vector<std::string> names;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code fec;
    if (name.empty() || name[0] == '.' || !fs::is_regular_file(it->path(), fec)) continue;
    names.push_back(name);
  }
  if (ec) return IoError("cannot list text directory " + dir + ": " + ec.message());
  if (names.empty()) {
    return InvalidArgument("text directory " + dir +
                           " holds no text files; put one file per user in it (names starting "
                           "with '.' and subdirectories are skipped)");
  }
  std::sort(names.begin(), names.end());
  TextCorpus corpus;
  corpus.users.reserve(names.size());
  for (const std::string& name : names) {
    const fs::path path = fs::path(dir) / name;
    std::ifstream in(path, std::ios::binary);
    if (!in) return IoError("cannot open " + path.string() + ": " + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) return IoError("cannot read " + path.string());
    std::string content = std::move(text).str();
    const size_t bad = Utf8ErrorAt(content);
    const size_t nul = content.find('\0');
    if (bad != std::string::npos || nul != std::string::npos) {
      const size_t at = std::min(bad, nul);
      const auto line =
          1 + std::count(content.begin(), content.begin() + static_cast<std::ptrdiff_t>(at), '\n');
      char byte[8];
      std::snprintf(byte, sizeof byte, "0x%02x", static_cast<unsigned char>(content[at]));
      return InvalidArgument(path.string() + " is not UTF-8 text: " +
                             (at == nul ? std::string("a NUL byte (binary data)")
                                        : std::string("byte ") + byte +
                                              " starts no valid UTF-8 "
                                              "character") +
                             " at offset " + std::to_string(at) + ", line " + std::to_string(line) +
                             "; give the folder only UTF-8 text files (convert others, e.g. "
                             "iconv -f LATIN1 -t UTF-8, or move them out)");
    }
    corpus.users.push_back({name, std::move(content)});
  }
  return corpus;
}

}  // namespace ftte::data
