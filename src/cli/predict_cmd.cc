#include "predict_cmd.h"

#include <cstdio>

#include "flags.h"
#include "ftte/data/lm_model.h"
#include "train_setup.h"

namespace ftte::cli {

namespace {

constexpr char kHelp[] =
    "ftte predict --model CKPT [--top 3] [--threads 1] [--json] TEXT...\n"
    "  The --top most likely next words (characters for a char tokenizer) after TEXT, the\n"
    "  start of a line being typed, with their probabilities. CKPT is a checkpoint written by\n"
    "  `ftte train --model lstm_lm|tiny_gpt|gpt --data bible|DIR --save CKPT`; it holds\n"
    "  the model spec and the tokenizer. Words missing from the vocabulary count as\n"
    "  <unk>; a context longer than the model's is truncated from the left. <unk> is never\n"
    "  suggested; <eos> means the line ends here.\n";

// A piece as one visible token in double quotes: '"' and '\' backslash-escaped, bytes <= 0x20
// and 0x7f as \xHH (as \u00HH for JSON).
std::string Quote(const std::string& piece, bool json = false) {
  std::string out = "\"";
  for (char ch : piece) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, json ? "\\u%04x" : "\\x%02x", c);
      out += buf;
    } else {
      if (c == '"' || c == '\\') out += '\\';
      out += ch;
    }
  }
  return out + "\"";
}

}  // namespace

int RunPredict(const std::vector<std::string>& args) {
  std::vector<std::string> words;
  auto flags = Flags::Parse(
      args, {{"model", true}, {"top", true}, {"threads", true}, {"json", false}, {"help", false}},
      &words);
  if (!flags.ok()) return Fail(flags.status());
  const Flags& f = flags.value();
  if (f.Has("help")) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  if (!f.Has("model")) {
    std::fprintf(stderr, "ftte predict: --model CKPT is required\n\n%s", kHelp);
    return 2;
  }
  auto top = f.GetInt("top", 3, 1, 1000);
  auto threads = f.GetInt("threads", 1, 1, 256);
  if (!top.ok()) return Fail(top.status());
  if (!threads.ok()) return Fail(threads.status());
  std::string text;
  for (const std::string& w : words) {
    if (!text.empty()) text += ' ';
    text += w;
  }

  auto lm = data::LoadLanguageModel(f.Get("model", ""));
  if (!lm.ok()) return Fail(lm.status());
  data::NextWordPredictor predictor(std::move(lm.value()), static_cast<int>(threads.value()));
  const data::Tokenizer& tok = predictor.tokenizer();
  const data::NextPiecePrediction p = predictor.Predict(text, static_cast<int>(top.value()));
  if (p.unknown > 0) {
    std::string unknown;
    for (const std::string& piece : tok.Split(text)) {
      if (tok.Id(piece) == data::Tokenizer::kUnkId) unknown.append(" ").append(Quote(piece));
    }
    std::fprintf(stderr, "note: %lld of %lld words not in the vocabulary, read as <unk>:%s\n",
                 static_cast<long long>(p.unknown), static_cast<long long>(p.prompt_pieces),
                 unknown.c_str());
  }
  if (f.Has("json")) {
    std::string s = "{\"model\": \"" + predictor.model().name() +
                    "\", \"context_tokens\": " + std::to_string(p.context.size()) +
                    ", \"unknown\": " + std::to_string(p.unknown) + ", \"next\": [";
    for (size_t i = 0; i < p.top.size(); ++i) {
      s += std::string(i ? ", " : "") + "{\"piece\": " + Quote(p.top[i].piece, true) +
           ", \"probability\": " + Json(p.top[i].probability) + "}";
    }
    std::printf("%s]}\n", s.c_str());
    return 0;
  }
  std::vector<int32_t> shown = p.context;
  if (shown.front() == data::Tokenizer::kEosId) shown.erase(shown.begin());  // the line start
  std::string seen = tok.Decode(shown);
  if (!seen.empty() && seen.back() == '\n') seen.pop_back();
  std::printf("after \"%s\" (%s, %zu context tokens):\n", seen.c_str(),
              predictor.model().name().c_str(), p.context.size());
  for (size_t i = 0; i < p.top.size(); ++i) {
    std::printf("%3zu  %-16s %.4f\n", i + 1, Quote(p.top[i].piece).c_str(), p.top[i].probability);
  }
  return 0;
}

}  // namespace ftte::cli
