// Language models of the zoo. Layer order and sizes match the PyTorch twins in
// tools/golden/lm_twins.py.
#include "zoo_lm.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "ftte/core/check.h"
#include "ftte/core/layers.h"
#include "ftte/core/layers_extra.h"
#include "ftte/core/layers_lm.h"

namespace ftte {

namespace {

constexpr int64_t kLstmEmbed = 96;
constexpr int64_t kLstmHidden = 256;
constexpr float kLoraAlpha = 16;

// The shape of a GPT: tiny_gpt is {vocab, context, 2, 128, 4}.
struct GptShape {
  int64_t vocab, context, layers, width, heads;
  bool tie = false;  // the output head is the input embedding
};

struct OptionSpec {
  std::string key;
  int64_t value, min, max;     // value: the default, then the parsed one
  bool quiet_default = false;  // left out of the canonical name at its default (added later)
};

// Fills the values of `specs` from `options`; fails on an unknown key or a bad value.
Status ReadOptions(const std::string& model, const ModelOptions& options,
                   std::vector<OptionSpec>* specs) {
  for (const auto& [key, text] : options) {
    auto it = std::find_if(specs->begin(), specs->end(),
                           [&](const OptionSpec& s) { return s.key == key; });
    if (it == specs->end()) {
      std::string known;
      for (const OptionSpec& s : *specs) known += (known.empty() ? "" : ", ") + s.key;
      return InvalidArgument("model " + model + ": unknown option '" + key + "'; known: " + known);
    }
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0 || v < it->min || v > it->max) {
      return InvalidArgument("model " + model + ": " + key + "=" + text +
                             " is not an integer in [" + std::to_string(it->min) + ", " +
                             std::to_string(it->max) + "]");
    }
    it->value = v;
  }
  return Status::Ok();
}

std::string CanonicalName(const std::string& model, const std::vector<OptionSpec>& specs) {
  std::string s = model + ":";
  bool first = true;
  for (const OptionSpec& o : specs) {
    if (o.quiet_default && o.value == 0) continue;
    s += (first ? "" : ",") + o.key + "=" + std::to_string(o.value);
    first = false;
  }
  return s;
}

std::unique_ptr<Model> LstmLm(std::string name, int64_t vocab, int64_t context,
                              std::unique_ptr<MemoryTracker> t) {
  auto net = std::make_unique<Sequential>();
  net->Emplace<Embedding>(vocab, kLstmEmbed, t.get());
  net->Emplace<LSTM>(kLstmEmbed, kLstmHidden, t.get());
  net->Emplace<Linear>(kLstmHidden, vocab, true, t.get());
  return std::make_unique<Model>(std::move(name), Shape{context}, static_cast<int>(vocab),
                                 std::move(t), std::move(net));
}

std::unique_ptr<Layer> MaybeLora(int64_t in, int64_t out, LoraOptions lora, MemoryTracker* t) {
  if (lora.rank > 0) return std::make_unique<LoraLinear>(in, out, true, lora, t);
  return std::make_unique<Linear>(in, out, true, t);
}

// Pre-norm transformer: x + Attn(LN(x)), then x + MLP(LN(x)), each a Residual of its own.
std::unique_ptr<Model> Gpt(std::string name, const GptShape& g, LoraOptions lora,
                           std::unique_ptr<MemoryTracker> t) {
  const int64_t c = g.width;
  auto net = std::make_unique<Sequential>();
  Embedding* embedding = net->Emplace<Embedding>(g.vocab, c, t.get());
  net->Emplace<PositionalEmbedding>(g.context, c, t.get());
  for (int64_t b = 0; b < g.layers; ++b) {
    auto attn = std::make_unique<Sequential>();
    attn->Emplace<LayerNorm>(c, t.get());
    attn->Emplace<CausalSelfAttention>(c, g.heads, t.get(), lora);
    net->Emplace<Residual>(std::move(attn), nullptr);
    auto mlp = std::make_unique<Sequential>();
    mlp->Emplace<LayerNorm>(c, t.get());
    mlp->Add(MaybeLora(c, 4 * c, lora, t.get()));
    mlp->Emplace<GELU>();
    mlp->Add(MaybeLora(4 * c, c, lora, t.get()));
    net->Emplace<Residual>(std::move(mlp), nullptr);
  }
  net->Emplace<LayerNorm>(c, t.get());
  if (g.tie) {
    net->Emplace<Linear>(embedding, true, t.get());
  } else {
    net->Emplace<Linear>(c, g.vocab, true, t.get());
  }
  return std::make_unique<Model>(std::move(name), Shape{g.context}, static_cast<int>(g.vocab),
                                 std::move(t), std::move(net));
}

int64_t Option(const std::vector<OptionSpec>& specs, const std::string& key) {
  for (const OptionSpec& s : specs) {
    if (s.key == key) return s.value;
  }
  FTTE_CHECK(false) << "no option " << key;
  return 0;
}

}  // namespace

Status ParseModelSpec(const std::string& spec, std::string* name, ModelOptions* options) {
  const size_t colon = spec.find(':');
  *name = spec.substr(0, colon);
  options->clear();
  if (colon == std::string::npos) return Status::Ok();
  const std::string rest = spec.substr(colon + 1);
  size_t begin = 0;
  while (true) {
    const size_t comma = rest.find(',', begin);
    const std::string item = rest.substr(begin, comma == std::string::npos ? comma : comma - begin);
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return InvalidArgument("model spec '" + spec + "': expected key=value, got '" + item +
                             "' (e.g. lstm_lm:vocab=10000,context=32)");
    }
    const std::string key = item.substr(0, eq);
    for (const auto& kv : *options) {
      if (kv.first == key) {
        return InvalidArgument("model spec '" + spec + "': option '" + key + "' given twice");
      }
    }
    options->emplace_back(key, item.substr(eq + 1));
    if (comma == std::string::npos) break;
    begin = comma + 1;
  }
  return Status::Ok();
}

bool IsLanguageModel(const std::string& name) {
  return name == "lstm_lm" || name == "tiny_gpt" || name == "tiny_gpt_lora" || name == "gpt";
}

Result<std::unique_ptr<Model>> MakeLanguageModel(const std::string& name,
                                                 const ModelOptions& options,
                                                 std::unique_ptr<MemoryTracker> tracker) {
  std::vector<OptionSpec> specs = {{"vocab", 10000, 2, int64_t{1} << 24},
                                   {"context",
                                    name == "lstm_lm" ? 32
                                    : name == "gpt"   ? 128
                                                      : 64,
                                    1, 4096}};
  if (name == "gpt") {
    specs.push_back({"layers", 4, 1, 64});
    specs.push_back({"width", 256, 8, 8192});
    specs.push_back({"heads", 4, 1, 128});
    specs.push_back({"rank", 0, 0, 1024});
    specs.push_back({"tie", 0, 0, 1, /*quiet_default=*/true});
  }
  if (name == "tiny_gpt_lora") specs.push_back({"rank", 8, 1, 128});
  FTTE_RETURN_IF_ERROR(ReadOptions(name, options, &specs));
  const int64_t vocab = Option(specs, "vocab"), context = Option(specs, "context");
  std::string canonical = CanonicalName(name, specs);
  if (name == "lstm_lm") return LstmLm(std::move(canonical), vocab, context, std::move(tracker));
  GptShape shape{vocab, context, 2, 128, 4};
  LoraOptions lora;
  if (name == "tiny_gpt_lora") lora = {Option(specs, "rank"), kLoraAlpha};
  if (name == "gpt") {
    shape = {vocab,
             context,
             Option(specs, "layers"),
             Option(specs, "width"),
             Option(specs, "heads"),
             Option(specs, "tie") == 1};
    if (shape.width % shape.heads != 0) {
      return InvalidArgument("model gpt: width=" + std::to_string(shape.width) +
                             " is not a multiple of heads=" + std::to_string(shape.heads) +
                             "; each head takes width / heads features (e.g. width=256,heads=4)");
    }
    if (const int64_t rank = Option(specs, "rank"); rank > 0) {
      if (rank > shape.width) {
        return InvalidArgument("model gpt: rank=" + std::to_string(rank) +
                               " is above width=" + std::to_string(shape.width) +
                               "; a low-rank adapter needs rank <= width (e.g. rank=8)");
      }
      lora = {rank, kLoraAlpha};
    }
  }
  return Gpt(std::move(canonical), shape, lora, std::move(tracker));
}

}  // namespace ftte
