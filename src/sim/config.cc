#include "ftte/sim/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <optional>
#include <sstream>

#include "config_schema.h"
#include "ftte/core/model.h"
#include "ftte/fl/privacy.h"
#include "secure_cohort.h"

namespace ftte::sim {

using internal::AttackFields;
using internal::CheckPartition;
using internal::ClientFields;
using internal::DeviceFields;
using internal::Field;
using internal::FindField;
using internal::KeyNames;
using internal::Kind;
using internal::KindName;
using internal::MethodFields;
using internal::PersonalizeFields;
using internal::PrivacyFields;
using internal::Quote;
using internal::SecureAggregationFields;
using internal::SecureCohortConfig;
using internal::Shown;
using internal::TopFields;
using internal::TuneFields;
using internal::ValueText;

namespace {

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diag = up;
    }
  }
  return row[b.size()];
}

// "unknown key 'buffr' in [[method]] #2; did you mean 'buffer'? accepted keys: ..."
Status UnknownKey(const std::string& key, const std::string& where,
                  const std::vector<std::string>& accepted) {
  std::string list, best;
  size_t best_d = 3;  // suggest only near misses
  for (const auto& a : accepted) {
    list += (list.empty() ? "" : ", ") + a;
    const size_t d = EditDistance(key, a);
    if (d < best_d) best_d = d, best = a;
  }
  std::string msg = "unknown key '" + key + "' in " + where;
  if (!best.empty()) msg += "; did you mean '" + best + "'?";
  return InvalidArgument(msg + " (accepted keys: " + list + ")");
}

// ---- Reading values: from TOML nodes and from command-line text. ----

std::string Location(const std::string& origin, const toml::source_region& r) {
  return origin + ":" + std::to_string(r.begin.line) + ":" + std::to_string(r.begin.column);
}

std::string NodeDescription(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "the string " + Quote(n.as_string()->get());
    case toml::node_type::integer:
      return "the integer " + std::to_string(n.as_integer()->get());
    case toml::node_type::floating_point:
      return "the number " + FormatDouble(n.as_floating_point()->get());
    case toml::node_type::boolean:
      return n.as_boolean()->get() ? "true" : "false";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    default:
      return "a date/time";
  }
}

Result<ConfigValue> FromNode(const toml::node& n, Kind kind) {
  ConfigValue v;
  v.kind = kind;
  switch (kind) {
    case Kind::kInt:
      if (auto* i = n.as_integer()) {
        v.i = i->get();
        return v;
      }
      if (auto* f = n.as_floating_point();
          f && std::trunc(f->get()) == f->get() && std::abs(f->get()) < 9e18) {
        return InvalidArgument("must be an integer, got " + NodeDescription(n) + "; write " +
                               std::to_string(static_cast<int64_t>(f->get())) +
                               " (no decimal point or exponent)");
      }
      break;
    case Kind::kFloat:
      if (auto* i = n.as_integer()) {
        v.f = static_cast<double>(i->get());
        return v;
      }
      if (auto* f = n.as_floating_point()) {
        v.f = f->get();
        if (!std::isfinite(v.f))
          return InvalidArgument("must be a finite number, got " + FormatDouble(v.f));
        return v;
      }
      break;
    case Kind::kBool:
      if (auto* b = n.as_boolean()) {
        v.b = b->get();
        return v;
      }
      break;
    case Kind::kString:
      if (auto* s = n.as_string()) {
        v.s = s->get();
        return v;
      }
      break;
    case Kind::kList:
      if (auto* a = n.as_array()) {
        for (const toml::node& e : *a) {
          if (auto* i = e.as_integer()) {
            v.list.push_back(static_cast<double>(i->get()));
          } else if (auto* f = e.as_floating_point(); f && std::isfinite(f->get())) {
            v.list.push_back(f->get());
          } else {
            return InvalidArgument("must be a list of numbers, got an element that is " +
                                   NodeDescription(e));
          }
        }
        return v;
      }
      break;
  }
  return InvalidArgument(std::string("must be ") + KindName(kind) + ", got " + NodeDescription(n));
}

Result<ConfigValue> FromText(const std::string& text, Kind kind) {
  ConfigValue v;
  v.kind = kind;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  switch (kind) {
    case Kind::kInt: {
      const auto [ptr, ec] = std::from_chars(first, last, v.i);
      if (!text.empty() && ec == std::errc() && ptr == last) return v;
      break;
    }
    case Kind::kFloat: {
      const auto [ptr, ec] = std::from_chars(first, last, v.f);
      if (!text.empty() && ec == std::errc() && ptr == last) {
        if (!std::isfinite(v.f)) return InvalidArgument("must be a finite number, got " + text);
        return v;
      }
      break;
    }
    case Kind::kBool:
      if (text == "true" || text == "false") {
        v.b = text == "true";
        return v;
      }
      break;
    case Kind::kString:
      v.s = text;
      if (v.s.size() >= 2 && (v.s.front() == '"' || v.s.front() == '\'') &&
          v.s.back() == v.s.front()) {
        v.s = v.s.substr(1, v.s.size() - 2);
      }
      return v;
    case Kind::kList: {
      // "0.55,0.65" or "[0.55, 0.65]".
      std::string body = text;
      if (body.size() >= 2 && body.front() == '[' && body.back() == ']') {
        body = body.substr(1, body.size() - 2);
      }
      std::stringstream in(body);
      std::string item;
      while (std::getline(in, item, ',')) {
        item.erase(0, item.find_first_not_of(' '));
        item.erase(item.find_last_not_of(' ') + 1);
        double x = 0;
        const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), x);
        if (item.empty() || ec != std::errc() || ptr != item.data() + item.size() ||
            !std::isfinite(x)) {
          return InvalidArgument("must be a list of numbers like 0.55,0.65, got '" + text + "'");
        }
        v.list.push_back(x);
      }
      return v;
    }
  }
  return InvalidArgument(std::string("must be ") + KindName(kind) + ", got '" + text + "'");
}

// "devices.count must be >= 1, got 0", or "algorithm: unknown algorithm 'x'; use ...".
std::string KeyMessage(const std::string& key, const Status& s) {
  const bool reads_on = s.message().rfind("must ", 0) == 0;
  return key + (reads_on ? " " : ": ") + s.message();
}

// Applies every key of TOML table `t` through `fields`; `skip` keys were handled by the caller.
template <typename T>
Status ApplyTable(const toml::table& t, const std::vector<Field<T>>& fields, T& target,
                  const std::string& prefix, const std::string& where, const std::string& origin,
                  std::initializer_list<const char*> skip = {}) {
  for (auto&& [k, node] : t) {
    const std::string key(k.str());
    if (std::any_of(skip.begin(), skip.end(), [&](const char* s) { return key == s; })) continue;
    const Field<T>* f = FindField(fields, key);
    if (!f) {
      return InvalidArgument(Location(origin, k.source()) + ": " +
                             UnknownKey(key, where, KeyNames(fields)).message());
    }
    Result<ConfigValue> v = FromNode(node, f->kind);
    const Status s = v.ok() ? f->set(target, v.value()) : v.status();
    if (!s.ok()) {
      return InvalidArgument(Location(origin, node.source()) + ": " + KeyMessage(prefix + key, s));
    }
  }
  return Status::Ok();
}

Result<MethodConfig> ParseMethod(const toml::table& t, size_t index, const std::string& origin) {
  std::string where = "[[method]] #" + std::to_string(index + 1);
  MethodConfig probe;  // receives name and algorithm, which decide the other defaults
  std::optional<std::string> name;
  std::optional<fl::Algorithm> algorithm;
  for (const char* key : {"name", "algorithm"}) {
    const toml::node* n = t.get(key);
    if (!n) continue;
    Result<ConfigValue> v = FromNode(*n, Kind::kString);
    Status s = v.ok() ? FindField(MethodFields(), key)->set(probe, v.value()) : v.status();
    if (!s.ok()) {
      return InvalidArgument(Location(origin, n->source()) + ": " + where + ": " +
                             KeyMessage(key, s));
    }
    if (std::string(key) == "name") {
      name = probe.name;
      where += " ('" + *name + "')";
    } else {
      algorithm = probe.server.algorithm;
    }
  }
  if (!algorithm) {
    Result<fl::Algorithm> from_name =
        name ? fl::ParseAlgorithm(*name) : Result<fl::Algorithm>(InvalidArgument(""));
    if (!from_name.ok()) {
      return InvalidArgument(Location(origin, t.source()) + ": " + where +
                             " needs algorithm = \"fedavg\", \"fedasync\", \"fedbuff\" or "
                             "\"ftte\" (it may be left out only when the name is one of those)");
    }
    algorithm = from_name.value();
  }
  MethodConfig m = DefaultMethod(*algorithm, name.value_or(fl::AlgorithmName(*algorithm)));
  FTTE_RETURN_IF_ERROR(
      ApplyTable(t, MethodFields(), m, where + ": ", where, origin, {"name", "algorithm"}));
  return m;
}

// Per-method keys that refer to others, and [tune]: a validation split to score trials on,
// image data (text runs hold out per-user text already; tuning them is not built yet).
Status CheckMethods(const SimConfig& c) {
  for (const MethodConfig& m : c.methods) {
    if (Status s = fl::ValidateServerConfig(EffectiveServerConfig(c, m)); !s.ok()) {
      return InvalidArgument("method '" + m.name + "': " + s.message());
    }
  }
  if (c.privacy.Enabled()) {
    const PrivacyConfig& p = c.privacy;
    FTTE_RETURN_IF_ERROR(
        fl::ResolvePrivacy(p.noise_multiplier, p.delta, p.target_epsilon, p.updates_per_device)
            .status());
  }
  if (c.secure_aggregation.enabled) {
    for (const MethodConfig& m : c.methods) {
      const auto cohort =
          SecureCohortConfig(c.secure_aggregation, EffectiveServerConfig(c, m).secure_cohort);
      if (!cohort.ok())
        return InvalidArgument("method '" + m.name + "': " + cohort.status().message());
    }
  }
  if (c.attack.Enabled() && c.attack.fraction <= 0) {
    return InvalidArgument("[attack] kind = \"" + c.attack.kind +
                           "\" with fraction = 0 attacks nobody; set fraction > 0 (e.g. 0.1) "
                           "or kind = \"none\"");
  }
  if (c.attack.kind == "label_flip" && IsTextDataset(c.dataset)) {
    return InvalidArgument("[attack] label_flip is for image datasets; on " + c.dataset +
                           " use sign_flip, scale, random or samples");
  }
  for (const MethodConfig& m : c.methods) {
    if (m.tune_like.empty()) continue;
    const auto like = std::find_if(c.methods.begin(), c.methods.end(),
                                   [&](const MethodConfig& o) { return o.name == m.tune_like; });
    if (like == c.methods.end() || like->name == m.name) {
      return InvalidArgument("method '" + m.name + "': tune_like = \"" + m.tune_like +
                             "\" names no other method of this experiment; name one of them, "
                             "or remove tune_like to tune this method on its own trials");
    }
    if (!like->tune_like.empty()) {
      return InvalidArgument("method '" + m.name + "': tune_like = \"" + m.tune_like +
                             "\", which itself takes another method's values; name the method "
                             "that tunes (\"" +
                             like->tune_like + "\")");
    }
  }
  if (!c.tune.Enabled()) return Status::Ok();
  if (c.tune.validation <= 0) {
    return InvalidArgument(
        "[tune] needs validation > 0: the number of training samples held out to score the "
        "trials (the test set is never used to choose settings), e.g. validation = 5000");
  }
  if (c.tune.duration_s > 0 && c.eval_every_s > c.tune.duration_s) {
    return InvalidArgument("tune.duration_s (" + FormatDouble(c.tune.duration_s) +
                           ") is shorter than eval_every_s; a trial would never be scored");
  }
  return Status::Ok();
}

// The checks of a text dataset: natural partition, a language model whose vocab and context
// come from the top-level keys, no image-only keys.
Status ValidateText(const SimConfig& c) {
  if (c.partition != "natural") {
    return InvalidArgument("partition = \"" + c.partition + "\" does not apply to " + c.dataset +
                           ": text is partitioned naturally, one device per user; set "
                           "partition = \"natural\" (or leave it out)");
  }
  if (c.dataset == "text-dir" && c.data_dir.empty()) {
    return InvalidArgument(
        "dataset = \"text-dir\" needs data_dir: a folder with one text file per user");
  }
  if (c.train_limit > 0) {
    return InvalidArgument(
        "train_limit applies to image datasets; a text dataset uses every user's training "
        "text (set train_limit = 0, or shrink vocab, context or the corpus)");
  }
  const std::string name = c.model.substr(0, c.model.find(':'));
  const std::string options =
      c.model.find(':') == std::string::npos ? "" : "," + c.model.substr(c.model.find(':') + 1);
  if (options.find(",vocab=") != std::string::npos ||
      options.find(",context=") != std::string::npos) {
    return InvalidArgument("model '" + c.model +
                           "': with a text dataset the vocabulary comes from the tokenizer; "
                           "write the top-level keys vocab = and context = instead of model "
                           "options");
  }
  // The bare name first (the zoo's defaults), so that an image model gets the clear message.
  Result<std::unique_ptr<Model>> bare = MakeModel(name);
  if (!bare.ok()) return InvalidArgument("model: " + bare.status().message());
  if (bare.value()->sample_shape().size() != 1) {
    return InvalidArgument("model '" + name + "' takes images, not text; with dataset " +
                           c.dataset + " use lstm_lm, tiny_gpt, tiny_gpt_lora or gpt");
  }
  bare.value().reset();
  Result<std::unique_ptr<Model>> model = MakeModel(EffectiveModelSpec(c, c.vocab));
  if (!model.ok()) return InvalidArgument("model: " + model.status().message());
  return CheckMethods(c);
}

}  // namespace

namespace internal {

bool Shown(const SimConfig& config, const std::string& section, const std::string& key,
           const MethodConfig* method) {
  if (section == "tune") return config.tune.Enabled();
  if (section == "attack") return config.attack.Enabled();
  if (section == "privacy") return config.privacy.Enabled();
  if (section == "secure_aggregation") return config.secure_aggregation.enabled;
  if (section == "method" && method != nullptr) {
    for (const char* k : {"aggregation", "trim_fraction", "krum_f", "clip_multiplier",
                          "sample_cap_multiplier", "robust_window"}) {
      if (key == k) return method->server.robust();
    }
    if (key == std::string("batch")) return method->batch != 0;
    if (key == std::string("local_steps")) return method->local_steps != 0;
    if (key == std::string("tune_like")) return !method->tune_like.empty();
  }
  if (IsTextDataset(config.dataset)) return true;
  if (section == "personalize") return false;
  if (section.empty()) {
    return key != "tokenizer" && key != "vocab" && key != "context" && key != "holdout" &&
           key != "target_metric" && key != "init";
  }
  if (section == "method" && key == "upload_changed_rows") {
    return method != nullptr && method->upload_changed_rows;
  }
  return true;
}

}  // namespace internal

std::string FormatDouble(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, ptr);
}

SimConfig DefaultSimConfig() {
  SimConfig c;
  c.model = "cnn";
  c.dataset = "fashion-mnist";
  c.partition = "dirichlet:0.5";
  c.population.devices = 100;
  // Tuned on the project's 2-core machine: about 4 wall minutes with --threads 2, and every
  // method reaches the target within the 12 virtual minutes (FTTE ~3, FedBuff ~6.5, FedAvg
  // ~10.5 with seed 0).
  c.test_limit = 1000;
  c.client.local_steps = 5;
  c.client.batch = 32;
  c.client.optimizer.lr = 0.05f;
  c.population.straggler_fraction = 0.5;
  c.duration_s = 720;
  c.eval_every_s = 30;
  c.target_accuracy = 0.6;
  MethodConfig ftte = DefaultMethod(fl::Algorithm::kFtte, "ftte");
  ftte.server.concurrency = 10;
  ftte.server.buffer = 5;
  MethodConfig fedbuff = DefaultMethod(fl::Algorithm::kFedBuff, "fedbuff");
  fedbuff.server.concurrency = 10;
  fedbuff.server.buffer = 5;
  MethodConfig fedavg = DefaultMethod(fl::Algorithm::kFedAvg, "fedavg");
  fedavg.server.concurrency = 10;
  c.methods = {ftte, fedbuff, fedavg};
  return c;
}

Result<SimConfig> ParseSimConfig(const std::string& toml_text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    return InvalidArgument(Location(origin, e.source()) + ": " + std::string(e.description()) +
                           " (TOML syntax)");
  }
  SimConfig c;
  std::vector<std::string> top_keys = KeyNames(TopFields());
  for (const char* section : {"client", "devices", "personalize", "tune", "attack", "privacy",
                              "secure_aggregation", "method"}) {
    top_keys.push_back(section);
  }
  for (auto&& [k, node] : root) {
    const std::string key(k.str());
    const std::string at = Location(origin, node.source());
    if (key == "client" || key == "devices" || key == "personalize" || key == "tune" ||
        key == "attack" || key == "privacy" || key == "secure_aggregation") {
      const toml::table* t = node.as_table();
      if (!t) {
        return InvalidArgument(at + ": " + key + " must be a table: write [" + key +
                               "] on a line of its own and its keys below it");
      }
      const auto& fields = key == "client"               ? ClientFields()
                           : key == "devices"            ? DeviceFields()
                           : key == "tune"               ? TuneFields()
                           : key == "attack"             ? AttackFields()
                           : key == "privacy"            ? PrivacyFields()
                           : key == "secure_aggregation" ? SecureAggregationFields()
                                                         : PersonalizeFields();
      FTTE_RETURN_IF_ERROR(ApplyTable(*t, fields, c, key + ".", "[" + key + "]", origin));
    } else if (key == "method") {
      const toml::array* arr = node.as_array();
      if (!arr || !arr->is_array_of_tables()) {
        return InvalidArgument(at +
                               ": method must be an array of tables: write [[method]] "
                               "(two brackets) above each method's keys");
      }
      for (size_t i = 0; i < arr->size(); ++i) {
        FTTE_ASSIGN_OR_RETURN(MethodConfig m, ParseMethod(*arr->get(i)->as_table(), i, origin));
        c.methods.push_back(std::move(m));
      }
    } else if (const Field<SimConfig>* f = FindField(TopFields(), key)) {
      Result<ConfigValue> v = FromNode(node, f->kind);
      Status s = v.ok() ? f->set(c, v.value()) : v.status();
      if (!s.ok()) return InvalidArgument(at + ": " + KeyMessage(key, s));
    } else {
      return InvalidArgument(Location(origin, k.source()) + ": " +
                             UnknownKey(key, "the top level", top_keys).message());
    }
  }
  // Text datasets have one partition only; a file that does not name one gets it.
  if (IsTextDataset(c.dataset) && !root.contains("partition")) c.partition = "natural";
  Status s = ValidateSimConfig(c);
  if (!s.ok()) return InvalidArgument(origin + ": " + s.message());
  return c;
}

Result<SimConfig> LoadSimConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return NotFound("cannot open config " + path +
                    "; check the path (examples are in experiments/*.toml)");
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return IoError("cannot read config " + path);
  return ParseSimConfig(text.str(), path);
}

Status ApplyOverride(SimConfig* config, const std::string& key, const std::string& value) {
  SimConfig c = *config;
  auto set = [&](auto& fields, auto& target, const std::string& field_key,
                 const std::string& where) -> Status {
    const auto* f = FindField(fields, field_key);
    if (!f) return UnknownKey(field_key, where, KeyNames(fields));
    Result<ConfigValue> v = FromText(value, f->kind);
    Status s = v.ok() ? f->set(target, v.value()) : v.status();
    if (!s.ok()) return InvalidArgument(KeyMessage(key, s));
    return Status::Ok();
  };
  if (key.rfind("method.", 0) == 0) {
    const size_t dot = key.rfind('.');
    if (dot <= 7) {
      return InvalidArgument("override " + key +
                             ": method keys look like method.<name>.<key> "
                             "or method.*.<key> (every method), e.g. method.ftte.buffer");
    }
    const std::string name = key.substr(7, dot - 7);
    const std::string field = key.substr(dot + 1);
    bool found = false;
    std::string names;
    for (MethodConfig& m : c.methods) {
      names += (names.empty() ? "" : ", ") + m.name;
      if (name != "*" && m.name != name) continue;
      found = true;
      FTTE_RETURN_IF_ERROR(set(MethodFields(), m, field, "[[method]]"));
    }
    if (!found && name != "*") {
      return InvalidArgument("override " + key + ": no method named '" + name +
                             "' (methods: " + (names.empty() ? "none" : names) + ")");
    }
  } else if (key.rfind("client.", 0) == 0) {
    FTTE_RETURN_IF_ERROR(set(ClientFields(), c, key.substr(7), "[client]"));
  } else if (key.rfind("devices.", 0) == 0) {
    FTTE_RETURN_IF_ERROR(set(DeviceFields(), c, key.substr(8), "[devices]"));
  } else if (key.rfind("personalize.", 0) == 0) {
    FTTE_RETURN_IF_ERROR(set(PersonalizeFields(), c, key.substr(12), "[personalize]"));
  } else if (key.rfind("tune.", 0) == 0) {
    FTTE_RETURN_IF_ERROR(set(TuneFields(), c, key.substr(5), "[tune]"));
  } else if (key.rfind("attack.", 0) == 0) {
    FTTE_RETURN_IF_ERROR(set(AttackFields(), c, key.substr(7), "[attack]"));
  } else if (key.rfind("privacy.", 0) == 0) {
    FTTE_RETURN_IF_ERROR(set(PrivacyFields(), c, key.substr(8), "[privacy]"));
  } else if (key.rfind("secure_aggregation.", 0) == 0) {
    FTTE_RETURN_IF_ERROR(set(SecureAggregationFields(), c, key.substr(19), "[secure_aggregation]"));
  } else {
    std::vector<std::string> accepted = KeyNames(TopFields());
    for (const char* p :
         {"client.<key>", "devices.<key>", "personalize.<key>", "tune.<key>", "attack.<key>",
          "privacy.<key>", "secure_aggregation.<key>", "method.<name>.<key>"}) {
      accepted.push_back(p);
    }
    const auto* f = FindField(TopFields(), key);
    if (!f) return UnknownKey(key, "the top level", accepted);
    FTTE_RETURN_IF_ERROR(set(TopFields(), c, key, "the top level"));
    // Switching between image and text data switches the default partition with it.
    if (key == "dataset" && IsTextDataset(c.dataset) && c.partition == "dirichlet:0.5") {
      c.partition = "natural";
    } else if (key == "dataset" && !IsTextDataset(c.dataset) && c.partition == "natural") {
      c.partition = "dirichlet:0.5";
    }
  }
  *config = std::move(c);
  return Status::Ok();
}

Status ValidateSimConfig(const SimConfig& c) {
  if (c.methods.empty()) {
    return InvalidArgument(
        "no methods to run: add at least one [[method]] table, e.g.\n"
        "  [[method]]\n  name = \"ftte\"");
  }
  for (size_t i = 0; i < c.methods.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (c.methods[i].name == c.methods[j].name) {
        return InvalidArgument("two methods are named '" + c.methods[i].name + "' (#" +
                               std::to_string(j + 1) + " and #" + std::to_string(i + 1) +
                               "); give each [[method]] a unique name");
      }
    }
  }
  struct Pair {
    const char* lo_key;
    const char* hi_key;
    double lo, hi;
  };
  const PopulationConfig& p = c.population;
  for (const Pair& r :
       {Pair{"flops_min", "flops_max", p.flops_min, p.flops_max},
        Pair{"memory_min_mib", "memory_max_mib", static_cast<double>(p.memory_min),
             static_cast<double>(p.memory_max)},
        Pair{"uplink_mbps_min", "uplink_mbps_max", p.uplink_min, p.uplink_max},
        Pair{"downlink_mbps_min", "downlink_mbps_max", p.downlink_min, p.downlink_max},
        Pair{"slowdown_min", "slowdown_max", p.slowdown_min, p.slowdown_max}}) {
    if (r.lo > r.hi) {
      return InvalidArgument(std::string("devices.") + r.lo_key + " is above devices." + r.hi_key +
                             "; the minimum of a range must not exceed its maximum");
    }
  }
  if (c.eval_every_s > c.duration_s) {
    return InvalidArgument("eval_every_s (" + FormatDouble(c.eval_every_s) +
                           ") is longer than duration_s (" + FormatDouble(c.duration_s) +
                           "); nothing would be evaluated before the end");
  }
  if (c.client.local_epochs == 0 && c.client.local_steps == 0) {
    return InvalidArgument(
        "client.local_epochs and client.local_steps are both 0: devices "
        "would not train; set one of them >= 1");
  }
  if (Status s = CheckPartition(c.partition); !s.ok()) {
    return InvalidArgument(KeyMessage("partition", s));
  }
  if (c.dataset == "cifar10" && c.data_dir.empty()) {
    return InvalidArgument(
        "dataset = \"cifar10\" needs data_dir: the folder holding "
        "data_batch_1.bin ... test_batch.bin (CIFAR-10 binary version)");
  }
  if (IsTextDataset(c.dataset)) return ValidateText(c);
  if (c.partition == "natural") {
    return InvalidArgument(
        "partition = \"natural\" needs per-user data: use it with a text dataset "
        "(bible-chapters, bible-books, text-dir), or partition " +
        c.dataset + " with iid, dirichlet:A, shards:N or sample:K");
  }
  if (c.personalize.steps > 0) {
    return InvalidArgument(
        "[personalize] steps needs per-user held-out data, which only text datasets "
        "(bible-chapters, bible-books, text-dir) have; set steps = 0 for " +
        c.dataset);
  }
  if (c.target_metric != "top1") {
    return InvalidArgument("target_metric = \"" + c.target_metric +
                           "\" is for language models; image runs use top1");
  }
  if (!c.init.empty()) {
    return InvalidArgument("init = \"" + c.init +
                           "\" starts a language model from a checkpoint; image runs start "
                           "from a seeded model: remove init, or use a text dataset");
  }
  Result<std::unique_ptr<Model>> model = MakeModel(c.model);
  if (!model.ok()) return InvalidArgument("model: " + model.status().message());
  const Shape want = c.dataset == "cifar10" ? Shape{3, 32, 32} : Shape{1, 28, 28};
  if (model.value()->sample_shape() != want) {
    return InvalidArgument("model '" + c.model + "' does not take " + c.dataset + " images; use " +
                           (c.dataset == "cifar10" ? "resnet8" : "mlp, lenet5 or cnn"));
  }
  return CheckMethods(c);
}

std::vector<ConfigSection> DescribeSimConfig(const SimConfig& config) {
  std::vector<ConfigSection> out;
  auto section = [&](const std::string& name, const auto& fields, const auto& target,
                     const MethodConfig* method) {
    ConfigSection s{name, {}};
    for (const auto& f : fields) {
      if (Shown(config, name, f.key, method)) s.values.emplace_back(f.key, f.get(target));
    }
    if (!s.values.empty()) out.push_back(std::move(s));
  };
  section("", TopFields(), config, nullptr);
  section("client", ClientFields(), config, nullptr);
  section("devices", DeviceFields(), config, nullptr);
  section("personalize", PersonalizeFields(), config, nullptr);
  section("tune", TuneFields(), config, nullptr);
  section("attack", AttackFields(), config, nullptr);
  section("privacy", PrivacyFields(), config, nullptr);
  section("secure_aggregation", SecureAggregationFields(), config, nullptr);
  for (const MethodConfig& m : config.methods) section("method", MethodFields(), m, &m);
  return out;
}

std::string FormatSimConfig(const SimConfig& config) {
  std::string out = "# ftte simulate configuration (ftte simulate --config reads it back)\n";
  for (const ConfigSection& s : DescribeSimConfig(config)) {
    if (s.name == "method") {
      out += "\n[[method]]\n";
    } else if (!s.name.empty()) {
      out += "\n[" + s.name + "]\n";
    }
    for (const auto& [key, value] : s.values) out += key + " = " + ValueText(value) + "\n";
  }
  return out;
}

}  // namespace ftte::sim