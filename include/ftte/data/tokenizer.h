// Tokenizers for next-word (and next-character) prediction on a phone keyboard.
//
// Text is first split into pieces; each piece maps to exactly one id (unknown pieces to <unk>),
// so Encode(text).size() == Split(text).size() and a split point in pieces is a split point in
// ids (lm_data.h relies on this to hold out text before the vocabulary exists).
//
// Special ids: 0 = <unk>, 1 = <eos>. <eos> ends every line that produced at least one piece:
// one verse for the Bible, one message or line for a text file (a final line without '\n' gets
// one too). A line without pieces (empty; for kWord also all spaces) produces nothing.
//
//   kWord  lowercases ASCII letters; a word is a run of letters, digits and non-ASCII (UTF-8)
//          bytes, with an apostrophe or hyphen kept inside a word when it has a word character on
//          both sides ("king's", "loving-kindness"); every other non-space character is a piece
//          of its own. "God said, Let" -> god said , let.
//   kChar  one piece per UTF-8 code point, case kept (an invalid byte is a piece of its own);
//          '\r' is dropped and '\n' becomes <eos>. Spaces are pieces.
//   kSubword  a SentencePiece unigram model (Kudo 2018) trained on the training text: each line
//          ('\r' dropped) is NFKC-normalised and cut into the most likely sequence of subword
//          pieces (a piece that starts a word begins with U+2581 '▁'), case kept; every character
//          of the training text is covered, an unseen one is <unk>. Splitting needs the trained
//          model, so the static Split/CountPieces do not take kSubword; the member Split does.
//          Needs a build with SentencePiece (SubwordAvailable()).
//
// kWord and kChar: the vocabulary is the specials then the max_size - 2 most frequent pieces of
// the training text, most frequent first, ties broken by the piece's bytes (ascending): a pure
// function of the counts. kSubword: the specials then at most max_size - 2 pieces chosen by
// SentencePiece's EM (one thread, every sentence: deterministic). Build it from training text
// only, and ship it with the model (Save/Load); devices do not rebuild it.
//
// A Tokenizer is an immutable value after construction: copyable, and safe to use from many
// threads at once.
#ifndef FTTE_DATA_TOKENIZER_H_
#define FTTE_DATA_TOKENIZER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ftte/core/status.h"

namespace ftte::data {

namespace internal {
class SpmModel;
}  // namespace internal

enum class TokenizerKind { kWord, kChar, kSubword };

// "word", "char" or "subword".
const char* TokenizerKindName(TokenizerKind kind);
// The kind named `name` ("word", "char" or "subword"). Errors: any other name (InvalidArgument,
// listing the three), "subword" in a build without SentencePiece (Unimplemented, naming the fix).
Result<TokenizerKind> ParseTokenizerKind(const std::string& name);

// Piece -> occurrences, ordered so that counting is deterministic to iterate.
using PieceCounts = std::map<std::string, int64_t, std::less<>>;

class Tokenizer {
 public:
  static constexpr int32_t kUnkId = 0;
  static constexpr int32_t kEosId = 1;
  static constexpr int64_t kNumSpecial = 2;
  // Ids travel as float32 sample values, exact below 2^24.
  static constexpr int64_t kMaxSize = int64_t{1} << 24;
  static constexpr char kUnk[] = "<unk>";
  static constexpr char kEos[] = "<eos>";

  // True when this build has SentencePiece, so kSubword tokenizers can be trained and loaded.
  static bool SubwordAvailable();

  // Splits `text` into pieces by the rules of `kind` (<eos> pieces included). O(text size).
  // Aborts (FTTE_CHECK) for kSubword, whose pieces depend on the trained model.
  static std::vector<std::string> Split(TokenizerKind kind, std::string_view text);
  // Adds the pieces of `text` to `counts`. Aborts (FTTE_CHECK) for kSubword.
  static void CountPieces(TokenizerKind kind, std::string_view text, PieceCounts& counts);

  // The vocabulary of the top max_size - 2 pieces of `counts` (see above); smaller if `counts` has
  // fewer pieces. Counts for the special pieces are ignored. Errors: max_size < 3 or > kMaxSize,
  // kind kSubword (train it from text).
  static Result<Tokenizer> FromCounts(TokenizerKind kind, const PieceCounts& counts,
                                      int64_t max_size);
  // kWord/kChar: counts the pieces of `training_texts` and calls FromCounts. kSubword: trains a
  // SentencePiece model on their lines (O(text) memory, seconds per MB); the vocabulary is
  // smaller than max_size when the text has fewer pieces to offer. Errors: max_size < 3 or >
  // kMaxSize; kSubword: no SentencePiece in this build, max_size below the text's distinct
  // characters + 2 (the message gives that minimum), text without any character.
  static Result<Tokenizer> Train(TokenizerKind kind, const std::vector<std::string>& training_texts,
                                 int64_t max_size);

  // Reads a file written by Save. Errors: missing file (NotFound), unreadable (IoError), a header
  // other than "ftte-tokenizer 1 <word|char|subword> <size>", a bad escape, an empty or repeated
  // piece, or specials not first (InvalidArgument), fewer or more pieces than the header says
  // (DataLoss); kSubword: a SentencePiece model that does not parse or disagrees with the header
  // (DataLoss), no SentencePiece in this build (Unimplemented).
  static Result<Tokenizer> Load(const std::string& path);
  // Writes Serialize() to `path`. Errors: IoError.
  Status Save(const std::string& path) const;
  // The file format as a string: the header line then one piece per line, in id order, with
  // bytes <= 0x20, 0x7f and '\' written as \xHH so that every piece is one visible line (and
  // bytes >= 0x80 too in a piece that is not valid UTF-8, so the result is always valid UTF-8:
  // checkpoints carry it in their safetensors metadata). kSubword adds one last line: the
  // SentencePiece model (its serialized ModelProto) in base64; the pieces are informative and
  // must match it.
  std::string Serialize() const;
  // Load's parsing half, on the text of a file; `what_for_errors` labels the source in error
  // messages (a path, or "checkpoint.safetensors metadata"). Same errors as Load except NotFound
  // and IoError.
  static Result<Tokenizer> Parse(std::string_view text, const std::string& what_for_errors);

  // The pieces of `text`, one per id of Encode(text).
  std::vector<std::string> Split(std::string_view text) const;
  // One id per piece of `text`.
  std::vector<int32_t> Encode(std::string_view text) const;
  // Text of `ids`: <eos> becomes '\n', <unk> is written "<unk>". kWord joins pieces with one space
  // but writes no space before , . ; : ? ! ) and none after (, so Decode(Encode(t)) is t lowercased
  // with normalised spaces plus a final '\n'. kChar concatenates. kSubword turns '▁' into a space
  // (none at a line's start), so Decode(Encode(t)) is t NFKC-normalised with normalised spaces.
  // Encode(Decode(ids)) == ids when ids hold no <unk> (for kChar: and no invalid UTF-8 byte
  // piece; for kSubword: and ids are SentencePiece's own segmentation). Aborts (FTTE_CHECK) on an
  // id outside [0, size()).
  std::string Decode(const std::vector<int32_t>& ids) const;

  TokenizerKind kind() const { return kind_; }
  // Vocabulary size, specials included.
  int64_t size() const { return static_cast<int64_t>(pieces_.size()); }
  // The id of `piece`, or kUnkId if it is not in the vocabulary.
  int32_t Id(std::string_view piece) const;
  // The piece of `id`. Aborts (FTTE_CHECK) unless 0 <= id < size().
  const std::string& Piece(int32_t id) const;
  // The piece as a person reads it: kSubword writes '▁' as a space; others return Piece(id).
  std::string Display(int32_t id) const;

 private:
  Tokenizer(TokenizerKind kind, std::vector<std::string> pieces);
  // kSubword from a serialized SentencePiece model; `what_for_errors` labels its source.
  static Result<Tokenizer> FromSentencePiece(std::string model, const std::string& what_for_errors);

  TokenizerKind kind_;
  std::vector<std::string> pieces_;
  // kSubword: the model, shared by copies (immutable), and its serialized form.
  std::shared_ptr<const internal::SpmModel> sp_;
  std::string sp_model_;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> ids_;
};

}  // namespace ftte::data

#endif  // FTTE_DATA_TOKENIZER_H_
