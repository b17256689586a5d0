// Text corpora for language modelling: a list of users (devices), each with a name and its own
// text. The natural federated partition is one user = one device.
//
// Two sources: the King James Bible from the Debian packages bible-kjv + bible-kjv-text (one user
// per chapter or per book), and any directory of text files (one user per file). Loaders share
// no state, hold the whole corpus in memory (the Bible is 4.4 MB) and fail with a Status naming
// the problem and the fix:
//   NotFound         the `bible` command, the directory or a file does not exist
//   IoError          the OS refused to run the command or to read a file
//   DataLoss         the command failed or printed lines that are not "<Book><ch>:<verse> text"
//   InvalidArgument  the path is not a directory, or the directory holds no text files
#ifndef FTTE_DATA_TEXT_H_
#define FTTE_DATA_TEXT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ftte/core/status.h"

namespace ftte::data {

// One user's text. Lines are separated by '\n' (the tokenizers end a line with <eos>).
struct TextUser {
  std::string name;
  std::string text;
};

// Users in a deterministic order (the order of the source). A plain value.
struct TextCorpus {
  std::vector<TextUser> users;

  // Total bytes of text over all users.
  int64_t bytes() const;
};

enum class BibleGranularity {
  kChapter,  // 1,189 users named like "Ge1", "Rev22"
  kBook,     // 66 users named like "Ge", "Rev"
};

// The command LoadBibleKjv runs by default (found on PATH).
inline constexpr char kBibleCommand[] = "bible";

// Runs `<bible_command> -f Gen1:1-Rev22:21` once (about 50 ms; -f turns pretty-printing off so
// that each of the 31,102 verses is one line "Ge1:1 In the beginning ...") and groups the verses
// by chapter or book, in Bible order. A user's text is its verses without the reference, one per
// line, each ending in '\n'. `bible_command` is a command name looked up on PATH or a path to an
// executable (tests pass a fake script). Errors: the command is absent (NotFound with the install
// hint: "sudo apt-get install bible-kjv bible-kjv-text" or scripts/setup.sh), it exits non-zero
// or prints nothing (DataLoss; the text package may be missing), or a line does not parse.
Result<TextCorpus> LoadBibleKjv(BibleGranularity granularity,
                                const std::string& bible_command = kBibleCommand);

// The parsing half of LoadBibleKjv: `output` holds lines "<Book><chapter>:<verse> <text>", where
// <Book> is an optional digit then letters ("Ge", "1Sm", "SSol"). Blank lines are skipped.
// Errors (DataLoss, naming the line number and its start): a malformed line, a chapter or book
// that reappears after another one, or no verses at all.
Result<TextCorpus> ParseBibleVerses(std::string_view output, BibleGranularity granularity);

// Offset of the first byte of `s` that is not part of strict UTF-8 (no overlong forms,
// surrogates or code points above U+10FFFF: the rule JSON writers such as the safetensors
// metadata enforce), or std::string_view::npos when all of `s` is valid.
size_t Utf8ErrorAt(std::string_view s);

// One user per regular file directly in `dir` (symlinks to files count; subdirectories and names
// starting with '.' are skipped), named by its file name and sorted by name (bytewise), so the
// order does not depend on the file system. Empty files are kept as users with empty text.
// Errors: `dir` missing (NotFound), not a directory or without any file (InvalidArgument), a file
// that is not UTF-8 text (InvalidArgument naming the file, offset, line and byte; a NUL byte
// counts as binary), a file unreadable (IoError).
Result<TextCorpus> LoadTextDirectory(const std::string& dir);

}  // namespace ftte::data

#endif  // FTTE_DATA_TEXT_H_
