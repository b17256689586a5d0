#include "ftte/data/tokenizer.h"

#include <sodium/utils.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "ftte/core/check.h"
#include "ftte/data/text.h"
#include "spm.h"

namespace ftte::data {

namespace {

constexpr char kMagic[] = "ftte-tokenizer";
constexpr int kFormatVersion = 1;

bool IsWordByte(unsigned char c) { return std::isalnum(c) != 0 || c >= 0x80; }
bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }
char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// Length of the UTF-8 code point starting at text[i], or 1 for a byte that does not start a
// valid sequence (so that any byte string splits).
size_t Utf8Length(std::string_view text, size_t i) {
  const auto c = static_cast<unsigned char>(text[i]);
  size_t len = 1;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
  }
  if (i + len > text.size()) return 1;
  for (size_t k = 1; k < len; ++k) {
    if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return 1;
  }
  return len;
}

// Calls emit(piece) for each piece of `text`; the view is valid only during the call. The one
// definition of the splitting rules, shared by Split, CountPieces and Encode.
template <typename Emit>
void ForEachPiece(TokenizerKind kind, std::string_view text, Emit&& emit) {
  const std::string_view eos = Tokenizer::kEos;
  std::string word;
  bool line_has_pieces = false;
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    const char c = text[i];
    if (c == '\n') {
      if (line_has_pieces) emit(eos);
      line_has_pieces = false;
      ++i;
    } else if (kind == TokenizerKind::kChar) {
      if (c == '\r') {
        ++i;
        continue;
      }
      const size_t len = Utf8Length(text, i);
      emit(text.substr(i, len));
      line_has_pieces = true;
      i += len;
    } else if (IsSpace(c)) {
      ++i;
    } else if (IsWordByte(static_cast<unsigned char>(c))) {
      word.clear();
      while (i < n) {
        const char d = text[i];
        const bool joiner = (d == '\'' || d == '-') && i + 1 < n &&
                            IsWordByte(static_cast<unsigned char>(text[i + 1]));
        if (!IsWordByte(static_cast<unsigned char>(d)) && !joiner) break;
        word.push_back(Lower(d));
        ++i;
      }
      emit(std::string_view(word));
      line_has_pieces = true;
    } else {
      emit(text.substr(i, 1));
      line_has_pieces = true;
      ++i;
    }
  }
  if (line_has_pieces) emit(eos);
}

// The lines of `text` with '\r' dropped, for kSubword (which encodes a line at a time).
template <typename Emit>
void ForEachLine(std::string_view text, Emit&& emit) {
  std::string line;
  for (size_t pos = 0; pos <= text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    line.clear();
    for (size_t i = pos; i < end; ++i) {
      if (text[i] != '\r') line += text[i];
    }
    emit(line);
    pos = end + 1;
  }
}

constexpr char kSubwordSpace[] = "\xE2\x96\x81";  // U+2581, SentencePiece's word-start mark

// Standard base64 (RFC 4648, with padding; libsodium's), for the SentencePiece model inside the
// text format.
std::string Base64Encode(const std::string& bytes) {
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.pop_back();  // the terminating NUL
  return out;
}

// False unless `text` is entirely valid padded base64.
bool Base64Decode(std::string_view text, std::string& out) {
  out.resize(text.size() / 4 * 3 + 3);
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != text.data() + text.size()) {
    return false;
  }
  out.resize(len);
  return true;
}

// The vocabulary size bounds shared by every kind.
Status CheckVocabularySize(int64_t max_size) {
  if (max_size <= Tokenizer::kNumSpecial || max_size > Tokenizer::kMaxSize) {
    return InvalidArgument("tokenizer vocabulary size " + std::to_string(max_size) +
                           " is outside [3, 2^24]; it counts <unk>, <eos> and at least one piece");
  }
  return Status::Ok();
}

bool IsSpecial(std::string_view piece) {
  return piece == Tokenizer::kUnk || piece == Tokenizer::kEos;
}

// Bytes <= 0x20, 0x7f and '\' become \xHH; so do bytes >= 0x80 of a piece that is not valid
// UTF-8, so that a serialized vocabulary is always valid UTF-8.
std::string Escape(const std::string& piece) {
  static constexpr char kHex[] = "0123456789abcdef";
  const bool escape_high = Utf8ErrorAt(piece) != std::string_view::npos;
  std::string out;
  for (char ch : piece) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f || c == '\\' || (escape_high && c >= 0x80)) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// False if `line` holds a backslash not followed by xHH.
bool Unescape(std::string_view line, std::string& out) {
  out.clear();
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] != '\\') {
      out += line[i];
      continue;
    }
    if (i + 3 >= line.size() || line[i + 1] != 'x') return false;
    const int hi = HexValue(line[i + 2]), lo = HexValue(line[i + 3]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 3;
  }
  return true;
}

}  // namespace

const char* TokenizerKindName(TokenizerKind kind) {
  switch (kind) {
    case TokenizerKind::kWord:
      return "word";
    case TokenizerKind::kChar:
      return "char";
    case TokenizerKind::kSubword:
      return "subword";
  }
  return "?";
}

Result<TokenizerKind> ParseTokenizerKind(const std::string& name) {
  if (name == "word") return TokenizerKind::kWord;
  if (name == "char") return TokenizerKind::kChar;
  if (name == "subword") {
    FTTE_RETURN_IF_ERROR(internal::SpmAvailable());
    return TokenizerKind::kSubword;
  }
  return InvalidArgument("tokenizer '" + name +
                         "' is unknown; use word (whole words, lowercased), char (one piece per "
                         "character) or subword (a SentencePiece model trained on the text)");
}

bool Tokenizer::SubwordAvailable() { return internal::SpmAvailable().ok(); }

Tokenizer::Tokenizer(TokenizerKind kind, std::vector<std::string> pieces)
    : kind_(kind), pieces_(std::move(pieces)) {
  ids_.reserve(pieces_.size());
  for (size_t i = 0; i < pieces_.size(); ++i) ids_.emplace(pieces_[i], static_cast<int32_t>(i));
}

std::vector<std::string> Tokenizer::Split(TokenizerKind kind, std::string_view text) {
  FTTE_CHECK(kind != TokenizerKind::kSubword) << "subword pieces need the trained model";
  std::vector<std::string> pieces;
  ForEachPiece(kind, text, [&](std::string_view p) { pieces.emplace_back(p); });
  return pieces;
}

void Tokenizer::CountPieces(TokenizerKind kind, std::string_view text, PieceCounts& counts) {
  FTTE_CHECK(kind != TokenizerKind::kSubword) << "subword vocabularies are trained by Train";
  ForEachPiece(kind, text, [&](std::string_view p) {
    auto it = counts.find(p);
    if (it == counts.end()) it = counts.emplace(std::string(p), 0).first;
    ++it->second;
  });
}

Result<Tokenizer> Tokenizer::FromCounts(TokenizerKind kind, const PieceCounts& counts,
                                        int64_t max_size) {
  FTTE_RETURN_IF_ERROR(CheckVocabularySize(max_size));
  if (kind == TokenizerKind::kSubword) {
    return InvalidArgument(
        "a subword vocabulary is trained from text (Tokenizer::Train), not "
        "from piece counts");
  }
  std::vector<std::pair<int64_t, const std::string*>> ranked;
  ranked.reserve(counts.size());
  for (const auto& [piece, count] : counts) {
    if (!piece.empty() && !IsSpecial(piece)) ranked.emplace_back(count, &piece);
  }
  const size_t keep = std::min(ranked.size(), static_cast<size_t>(max_size - kNumSpecial));
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(keep),
                    ranked.end(), [](const auto& a, const auto& b) {
                      return a.first != b.first ? a.first > b.first : *a.second < *b.second;
                    });
  std::vector<std::string> pieces = {kUnk, kEos};
  for (size_t i = 0; i < keep; ++i) pieces.push_back(*ranked[i].second);
  return Tokenizer(kind, std::move(pieces));
}

namespace {

// The non-blank lines of the training texts, one SentencePiece sentence each.
std::vector<std::string> TrainingLines(const std::vector<std::string>& texts) {
  std::vector<std::string> lines;
  for (const std::string& t : texts) {
    ForEachLine(t, [&](const std::string& line) {
      if (line.find_first_not_of(" \t\f\v") != std::string::npos) lines.push_back(line);
    });
  }
  return lines;
}

}  // namespace

Result<Tokenizer> Tokenizer::Train(TokenizerKind kind,
                                   const std::vector<std::string>& training_texts,
                                   int64_t max_size) {
  if (kind == TokenizerKind::kSubword) {
    FTTE_RETURN_IF_ERROR(CheckVocabularySize(max_size));
    FTTE_RETURN_IF_ERROR(internal::SpmAvailable());
    const std::vector<std::string> lines = TrainingLines(training_texts);
    if (lines.empty()) {
      return InvalidArgument(
          "the training text has no characters to train a subword "
          "vocabulary on");
    }
    // One thread and every sentence (no sampling, no shuffling): a pure function of the text.
    const std::vector<std::pair<std::string, std::string>> args = {
        {"model_type", "unigram"},
        {"vocab_size", std::to_string(max_size)},
        {"hard_vocab_limit", "false"},
        {"character_coverage", "1.0"},
        {"num_threads", "1"},
        {"input_sentence_size", "0"},
        {"shuffle_input_sentence", "false"},
        {"max_sentence_length", std::to_string(1 << 20)},
        {"unk_id", "0"},
        {"eos_id", "1"},
        {"bos_id", "-1"},
        {"pad_id", "-1"},
        {"unk_piece", kUnk},
        {"eos_piece", kEos},
        {"unk_surface", kUnk},
        {"minloglevel", "2"},
    };
    Result<std::string> model = internal::SpmModel::Train(lines, args);
    if (!model.ok()) {
      const std::string& why = model.status().message();
      return InvalidArgument("cannot train a subword vocabulary of " + std::to_string(max_size) +
                             " pieces: SentencePiece says: " + why +
                             (why.find("required_chars") != std::string::npos
                                  ? "; give a larger vocabulary (every character is a piece)"
                                  : ""));
    }
    return FromSentencePiece(std::move(model).value(), "the trained subword model");
  }
  PieceCounts counts;
  for (const std::string& t : training_texts) CountPieces(kind, t, counts);
  return FromCounts(kind, counts, max_size);
}

Result<Tokenizer> Tokenizer::FromSentencePiece(std::string model,
                                               const std::string& what_for_errors) {
  FTTE_ASSIGN_OR_RETURN(std::shared_ptr<const internal::SpmModel> sp,
                        internal::SpmModel::Load(model, what_for_errors));
  const int n = sp->size();
  if (n <= kNumSpecial || n > kMaxSize || sp->unk_id() != kUnkId || sp->eos_id() != kEosId ||
      sp->bos_id() != -1 || sp->pad_id() != -1 || sp->Piece(kUnkId) != kUnk ||
      sp->Piece(kEosId) != kEos) {
    return DataLoss(what_for_errors +
                    ": the SentencePiece model does not have ftte's ids (<unk> = 0, <eos> = 1, "
                    "no <s> or <pad>); train it with ftte (Tokenizer::Train with kind subword)");
  }
  std::vector<std::string> pieces;
  pieces.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) pieces.push_back(sp->Piece(i));
  Tokenizer t(TokenizerKind::kSubword, std::move(pieces));
  t.sp_ = std::move(sp);
  t.sp_model_ = std::move(model);
  return t;
}

std::vector<std::string> Tokenizer::Split(std::string_view text) const {
  if (kind_ != TokenizerKind::kSubword) return Split(kind_, text);
  std::vector<std::string> pieces;
  for (int32_t id : Encode(text)) pieces.push_back(Piece(id));
  return pieces;
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> ids;
  if (kind_ == TokenizerKind::kSubword) {
    ForEachLine(text, [&](const std::string& line) {
      const size_t before = ids.size();
      sp_->Encode(line, ids);
      if (ids.size() > before) ids.push_back(kEosId);
    });
    return ids;
  }
  ForEachPiece(kind_, text, [&](std::string_view p) { ids.push_back(Id(p)); });
  return ids;
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string out;
  if (kind_ == TokenizerKind::kSubword) {
    std::vector<int32_t> line;
    for (int32_t id : ids) {
      FTTE_CHECK(id >= 0 && id < size())
          << "token id " << id << " out of range [0, " << size() << ")";
      if (id != kEosId) {
        line.push_back(id);
        continue;
      }
      out += sp_->Decode(line) + '\n';
      line.clear();
    }
    out += sp_->Decode(line);
    return out;
  }
  bool line_start = true, glue_next = false;
  for (int32_t id : ids) {
    const std::string& p = Piece(id);
    if (id == kEosId) {
      out += '\n';
      line_start = true;
      continue;
    }
    if (kind_ == TokenizerKind::kWord) {
      const bool closing = p.size() == 1 && std::strchr(",.;:?!)", p[0]) != nullptr;
      if (!line_start && !closing && !glue_next) out += ' ';
      glue_next = p == "(";
    }
    out += p;
    line_start = false;
  }
  return out;
}

int32_t Tokenizer::Id(std::string_view piece) const {
  const auto it = ids_.find(piece);
  return it == ids_.end() ? kUnkId : it->second;
}

const std::string& Tokenizer::Piece(int32_t id) const {
  FTTE_CHECK(id >= 0 && id < size()) << "token id " << id << " out of range [0, " << size() << ")";
  return pieces_[static_cast<size_t>(id)];
}

std::string Tokenizer::Display(int32_t id) const {
  const std::string& p = Piece(id);
  if (kind_ != TokenizerKind::kSubword) return p;
  const std::string_view mark = kSubwordSpace;
  std::string out;
  for (size_t i = 0; i < p.size();) {
    if (std::string_view(p).substr(i, mark.size()) == mark) {
      out += ' ';
      i += mark.size();
    } else {
      out += p[i++];
    }
  }
  return out;
}

std::string Tokenizer::Serialize() const {
  std::string out = std::string(kMagic) + ' ' + std::to_string(kFormatVersion) + ' ' +
                    TokenizerKindName(kind_) + ' ' + std::to_string(size()) + '\n';
  for (const std::string& p : pieces_) out += Escape(p) + '\n';
  if (kind_ == TokenizerKind::kSubword) out += Base64Encode(sp_model_) + '\n';
  return out;
}

Status Tokenizer::Save(const std::string& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return IoError("cannot create tokenizer file " + path + ": " + std::strerror(errno));
  out << Serialize();
  out.flush();
  if (!out) return IoError("cannot write tokenizer file " + path + " (disk full?)");
  return Status::Ok();
}

Result<Tokenizer> Tokenizer::Load(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return NotFound("tokenizer file " + path +
                    " does not exist; it is written by Tokenizer::Save next to the model");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return IoError("cannot open tokenizer file " + path + ": " + std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return IoError("cannot read tokenizer file " + path);
  return Parse(std::move(buf).str(), path);
}

Result<Tokenizer> Tokenizer::Parse(std::string_view text, const std::string& path) {
  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    pos = end + 1;
  }
  const std::string expected = "expected 'ftte-tokenizer 1 <word|char|subword> <size>'";
  if (lines.empty()) {
    return InvalidArgument(path + " is empty; " + expected +
                           " then one piece per line; was it written by Tokenizer::Save?");
  }
  std::istringstream header{std::string(lines[0])};
  std::string magic, kind_name, extra;
  int version = 0;
  int64_t size = 0;
  if (!(header >> magic >> version >> kind_name >> size) || (header >> extra) || magic != kMagic) {
    return InvalidArgument(path + ": first line '" + std::string(lines[0].substr(0, 60)) +
                           "' is not a tokenizer header; " + expected);
  }
  if (version != kFormatVersion) {
    return InvalidArgument(path + ": tokenizer format version " + std::to_string(version) +
                           " is not supported (this build reads version 1)");
  }
  TokenizerKind kind;
  if (kind_name == "word") {
    kind = TokenizerKind::kWord;
  } else if (kind_name == "char") {
    kind = TokenizerKind::kChar;
  } else if (kind_name == "subword") {
    kind = TokenizerKind::kSubword;
    const Status available = internal::SpmAvailable();
    if (!available.ok()) {
      return Status(available.code(),
                    path + " holds a subword tokenizer, but " + available.message());
    }
  } else {
    return InvalidArgument(path + ": tokenizer kind '" + kind_name + "' is unknown; " + expected);
  }
  if (size < kNumSpecial || size > kMaxSize) {
    return InvalidArgument(path + ": vocabulary size " + std::to_string(size) +
                           " in the header is outside [2, 2^24]");
  }
  // kSubword: the SentencePiece model follows the pieces, on one line.
  const int64_t extra_lines = kind == TokenizerKind::kSubword ? 1 : 0;
  const auto have = static_cast<int64_t>(lines.size()) - 1 - extra_lines;
  if (have < size || (extra_lines == 1 && lines[static_cast<size_t>(size + 1)].empty())) {
    return DataLoss(path + ": the header announces " + std::to_string(size) + " pieces" +
                    (extra_lines == 1 ? " and a SentencePiece model" : "") +
                    " but the file holds fewer; is it truncated?");
  }
  for (int64_t i = size + 1 + extra_lines; i < static_cast<int64_t>(lines.size()); ++i) {
    if (!lines[static_cast<size_t>(i)].empty()) {
      return DataLoss(path + ": line " + std::to_string(i + 1) + " follows the " +
                      std::to_string(size) + " pieces the header announces");
    }
  }
  std::vector<std::string> pieces;
  pieces.reserve(static_cast<size_t>(size));
  std::unordered_map<std::string, int64_t> seen;
  std::string piece;
  for (int64_t i = 0; i < size; ++i) {
    const std::string where = path + ": line " + std::to_string(i + 2) + ": ";
    if (!Unescape(lines[static_cast<size_t>(i + 1)], piece)) {
      return InvalidArgument(where + "bad escape; only \\xHH (two hex digits) is allowed");
    }
    if (piece.empty()) return InvalidArgument(where + "empty piece");
    if ((i == kUnkId && piece != kUnk) || (i == kEosId && piece != kEos)) {
      return InvalidArgument(where + "expected the special piece " +
                             std::string(i == kUnkId ? kUnk : kEos) + ", got '" + piece + "'");
    }
    if (!seen.emplace(piece, i).second) {
      return InvalidArgument(where + "piece '" + piece + "' repeats line " +
                             std::to_string(seen[piece] + 2));
    }
    pieces.push_back(piece);
  }
  if (kind != TokenizerKind::kSubword) return Tokenizer(kind, std::move(pieces));
  std::string model;
  if (!Base64Decode(lines[static_cast<size_t>(size + 1)], model)) {
    return DataLoss(path + ": line " + std::to_string(size + 2) +
                    ": the SentencePiece model is not valid base64; is the file corrupt?");
  }
  FTTE_ASSIGN_OR_RETURN(Tokenizer t, FromSentencePiece(std::move(model), path));
  if (t.pieces_ != pieces) {
    return DataLoss(path +
                    ": the pieces listed disagree with the SentencePiece model after them; "
                    "the file was edited or is corrupt");
  }
  return t;
}

}  // namespace ftte::data
