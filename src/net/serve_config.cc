// `ftte serve --config FILE`: the TOML schema of ServeConfig. Every key is one row of the
// table in Keys(); docs/deploy.md lists them.
#include <toml++/toml.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <sstream>

#include "ftte/core/memory.h"
#include "ftte/core/optimizer.h"
#include "ftte/data/idx.h"
#include "ftte/data/lm_data.h"
#include "ftte/data/lm_model.h"
#include "ftte/data/text.h"
#include "ftte/fl/privacy.h"
#include "ftte/fl/secagg.h"
#include "ftte/fl/update.h"
#include "ftte/net/server.h"

namespace ftte::net {

namespace {

using Setter = std::function<Status(ServeConfig&, const std::string&)>;
struct Key {
  const char* name;  // "section.key"
  Setter set;
};

Result<double> Number(const std::string& v) {
  try {
    size_t used = 0;
    const double d = std::stod(v, &used);
    if (used == v.size() && std::isfinite(d)) return d;
  } catch (...) {
  }
  return InvalidArgument("'" + v + "' is not a number");
}

Result<bool> Bool(const std::string& v) {
  if (v == "true") return true;
  if (v == "false") return false;
  return InvalidArgument("'" + v + "' is not true or false");
}

// A secret read from the first line of a file (kept out of configs and command lines).
Setter SecretFile(std::string ServeConfig::*m, const std::string& what) {
  return [m, what](ServeConfig& c, const std::string& v) -> Status {
    std::ifstream in(v);
    if (!in) return NotFound("cannot open " + what + " file '" + v + "'");
    std::getline(in, c.*m);
    if ((c.*m).empty()) return InvalidArgument(what + " file '" + v + "' is empty");
    return Status::Ok();
  };
}

Setter Str(std::string ServeConfig::*m) {
  return [m](ServeConfig& c, const std::string& v) {
    c.*m = v;
    return Status::Ok();
  };
}
template <typename T>
Setter Num(std::function<T&(ServeConfig&)> field, double lo, double hi) {
  return [field, lo, hi](ServeConfig& c, const std::string& v) -> Status {
    FTTE_ASSIGN_OR_RETURN(double d, Number(v));
    if (d < lo || d > hi) {
      return InvalidArgument(v + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) +
                             "]");
    }
    if (std::is_integral_v<T> && d != std::floor(d))
      return InvalidArgument(v + " is not a whole number");
    field(c) = static_cast<T>(d);
    return Status::Ok();
  };
}
Setter Flag(std::function<bool&(ServeConfig&)> field) {
  return [field](ServeConfig& c, const std::string& v) -> Status {
    FTTE_ASSIGN_OR_RETURN(bool b, Bool(v));
    field(c) = b;
    return Status::Ok();
  };
}
Setter Bytes(std::function<int64_t&(ServeConfig&)> field) {
  return [field](ServeConfig& c, const std::string& v) -> Status {
    FTTE_ASSIGN_OR_RETURN(field(c), ParseBytes(v));
    return Status::Ok();
  };
}

const std::vector<Key>& Keys() {
  static const std::vector<Key> keys = {
      {"server.address", Str(&ServeConfig::address)},
      {"server.port_file", Str(&ServeConfig::port_file)},
      {"server.state_dir", Str(&ServeConfig::state_dir)},
      {"server.fsync", Flag([](ServeConfig& c) -> bool& { return c.fsync; })},
      {"server.log_format",
       [](ServeConfig& c, const std::string& v) -> Status {
         if (v != "text" && v != "json") return InvalidArgument("'" + v + "' is not text or json");
         c.log_format = v;
         return Status::Ok();
       }},
      {"server.snapshot_every_s",
       Num<double>([](ServeConfig& c) -> double& { return c.snapshot_every_s; }, 0, 1e6)},
      {"server.tls_cert", Str(&ServeConfig::tls_cert)},
      {"server.tls_key", Str(&ServeConfig::tls_key)},
      {"server.tls_client_ca", Str(&ServeConfig::tls_client_ca)},
      {"server.insecure", Flag([](ServeConfig& c) -> bool& { return c.insecure; })},
      {"server.max_message", Bytes([](ServeConfig& c) -> int64_t& { return c.max_message_bytes; })},
      {"auth.enroll_key", Str(&ServeConfig::enroll_key)},
      {"auth.enroll_key_file", SecretFile(&ServeConfig::enroll_key, "enrolment key")},
      {"auth.admin_token", Str(&ServeConfig::admin_token)},
      {"auth.admin_token_file", SecretFile(&ServeConfig::admin_token, "admin token")},
      {"model.name", Str(&ServeConfig::model)},
      {"model.seed", Num<uint64_t>([](ServeConfig& c) -> uint64_t& { return c.seed; }, 0, 1e15)},
      {"model.mask",
       [](ServeConfig& c, const std::string& v) -> Status {
         if (v != "full" && v != "budget")
           return InvalidArgument("'" + v + "' is not full or budget");
         c.strategy.mask = v;
         return Status::Ok();
       }},
      {"model.budget", Bytes([](ServeConfig& c) -> int64_t& { return c.budget_bytes; })},
      {"model.proxy_data", Str(&ServeConfig::proxy_data)},
      {"model.init", Str(&ServeConfig::init)},
      {"model.proxy_samples",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.proxy_samples; }, 0, 1e9)},
      {"strategy.algorithm",
       [](ServeConfig& c, const std::string& v) -> Status {
         FTTE_ASSIGN_OR_RETURN(c.strategy.algorithm, fl::ParseAlgorithm(v));
         return Status::Ok();
       }},
      {"strategy.concurrency",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.strategy.concurrency; }, 1, 1e6)},
      {"strategy.buffer",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.strategy.buffer; }, 1, 1e6)},
      {"strategy.server_lr",
       Num<double>([](ServeConfig& c) -> double& { return c.strategy.server_lr; }, 0, 1e3)},
      {"strategy.server_momentum",
       Num<double>([](ServeConfig& c) -> double& { return c.strategy.server_momentum; }, 0, 0.999)},
      {"strategy.staleness_exponent",
       Num<double>([](ServeConfig& c) -> double& { return c.strategy.staleness_exponent; }, 0, 10)},
      {"strategy.variance_lambda",
       Num<double>([](ServeConfig& c) -> double& { return c.strategy.variance_lambda; }, 0, 1e6)},
      {"strategy.max_staleness",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.strategy.max_staleness; }, -1, 1e9)},
      {"strategy.async_alpha",
       Num<double>([](ServeConfig& c) -> double& { return c.strategy.async_alpha; }, 0, 1)},
      {"strategy.round_deadline_s",
       Num<double>([](ServeConfig& c) -> double& { return c.strategy.round_deadline_s; }, 0, 1e6)},
      {"strategy.reselect",
       [](ServeConfig& c, const std::string& v) -> Status {
         FTTE_ASSIGN_OR_RETURN(c.strategy.reselect, fl::ParseReselect(v));
         return Status::Ok();
       }},
      {"strategy.reselect_every",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.strategy.reselect_every; }, 0, 1e9)},
      {"strategy.aggregation",
       [](ServeConfig& c, const std::string& v) -> Status {
         FTTE_ASSIGN_OR_RETURN(c.strategy.rule, fl::ParseRule(v));
         return Status::Ok();
       }},
      {"strategy.trim_fraction",
       Num<double>([](ServeConfig& c) -> double& { return c.strategy.trim_fraction; }, 0, 0.499)},
      {"strategy.krum_f",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.strategy.krum_f; }, 0, 1e6)},
      {"strategy.clip_multiplier",
       Num<double>([](ServeConfig& c) -> double& { return c.strategy.clip_multiplier; }, 0, 1e6)},
      {"strategy.sample_cap_multiplier",
       Num<double>([](ServeConfig& c) -> double& { return c.strategy.sample_cap_multiplier; }, 0,
                   1e6)},
      {"strategy.robust_window",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.strategy.robust_window; }, 1, 1e6)},
      {"strategy.federated_importance",
       Flag([](ServeConfig& c) -> bool& { return c.strategy.federated_importance; })},
      {"client.local_epochs",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.client.local_epochs; }, 0, 1e4)},
      {"client.local_steps",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.client.local_steps; }, 0, 1e7)},
      {"client.batch",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.client.batch; }, 1, 65536)},
      {"client.lr",
       Num<float>([](ServeConfig& c) -> float& { return c.client.optimizer.lr; }, 1e-9, 100)},
      {"client.momentum",
       Num<float>([](ServeConfig& c) -> float& { return c.client.optimizer.momentum; }, 0, 0.999)},
      {"client.int8_upload", Flag([](ServeConfig& c) -> bool& { return c.int8_upload; })},
      {"client.frozen",
       [](ServeConfig& c, const std::string& v) -> Status {
         if (v != "float32" && v != "int8")
           return InvalidArgument("'" + v + "' is not float32 or int8");
         c.strategy.frozen = v == "int8" ? FrozenStorage::kInt8 : FrozenStorage::kFloat32;
         return Status::Ok();
       }},
      {"eval.data", Str(&ServeConfig::data)},
      {"eval.text", Str(&ServeConfig::eval_text)},
      {"eval.samples",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.eval_samples; }, 0, 1e9)},
      {"eval.every", Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.eval_every; }, 1, 1e9)},
      {"validation.max_update_norm",
       Num<double>([](ServeConfig& c) -> double& { return c.max_update_norm; }, 0, 1e30)},
      {"validation.max_samples",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.max_samples_per_update; }, 1, 1e12)},
      {"validation.lease_s",
       Num<double>([](ServeConfig& c) -> double& { return c.lease_s; }, 0.1, 1e7)},
      {"validation.max_share",
       Num<double>([](ServeConfig& c) -> double& { return c.max_share; }, 1e-6, 1)},
      {"validation.min_interval_s",
       Num<double>([](ServeConfig& c) -> double& { return c.min_interval_s; }, 0, 1e7)},
      {"privacy.clip",
       Num<double>([](ServeConfig& c) -> double& { return c.strategy.dp_clip; }, 0, 1e9)},
      {"privacy.noise_multiplier",
       Num<double>([](ServeConfig& c) -> double& { return c.strategy.dp_noise_multiplier; }, 0,
                   1e6)},
      {"privacy.delta",
       Num<double>([](ServeConfig& c) -> double& { return c.strategy.dp_delta; }, 1e-300, 0.5)},
      {"privacy.target_epsilon",
       Num<double>([](ServeConfig& c) -> double& { return c.dp_target_epsilon; }, 0, 1e9)},
      {"privacy.updates_per_device",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.dp_updates_per_device; }, 0,
                    1e9)},
      {"privacy.mode",
       [](ServeConfig& c, const std::string& v) -> Status {
         if (v != "central" && v != "distributed") {
           return InvalidArgument("'" + v + "' is not central or distributed");
         }
         c.strategy.dp_distributed = v == "distributed";
         return Status::Ok();
       }},
      {"privacy.adaptive_quantile",
       Num<double>([](ServeConfig& c) -> double& { return c.strategy.dp_quantile; }, 0, 0.999)},
      {"privacy.adaptive_rate",
       Num<double>([](ServeConfig& c) -> double& { return c.strategy.dp_quantile_rate; }, 0,
                   100)},
      {"privacy.quantile_noise",
       Num<double>([](ServeConfig& c) -> double& { return c.strategy.dp_quantile_noise; }, 0,
                   1e9)},
      {"secure_aggregation.enabled", Flag([](ServeConfig& c) -> bool& { return c.secure; })},
      {"secure_aggregation.cohort",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.secure_cohort; }, 0, 1e5)},
      {"secure_aggregation.neighbours",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.secure_neighbours; }, 0, 1e5)},
      {"secure_aggregation.threshold",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.secure_threshold; }, 0, 1e5)},
      {"secure_aggregation.range",
       Num<double>([](ServeConfig& c) -> double& { return c.secure_range; }, 1e-9, 1e9)},
      {"secure_aggregation.round_timeout_s",
       Num<double>([](ServeConfig& c) -> double& { return c.secure_round_timeout_s; }, 0.01, 1e6)},
      {"stop.target_accuracy",
       Num<double>([](ServeConfig& c) -> double& { return c.target_accuracy; }, 0, 1)},
      {"stop.max_versions",
       Num<int64_t>([](ServeConfig& c) -> int64_t& { return c.max_versions; }, 0, 1e12)},
  };
  return keys;
}

Status Set(ServeConfig& c, const std::string& key, const std::string& value,
           const std::string& where) {
  for (const Key& k : Keys()) {
    if (key != k.name) continue;
    Status s = k.set(c, value);
    if (!s.ok()) return InvalidArgument(where + ": " + key + ": " + s.message());
    return Status::Ok();
  }
  std::string list;
  for (const Key& k : Keys()) list += (list.empty() ? "" : ", ") + std::string(k.name);
  return InvalidArgument(where + ": unknown key '" + key + "' (accepted: " + list + ")");
}

std::string Text(const toml::node& n) {
  if (const auto* s = n.as_string()) return s->get();
  if (const auto* b = n.as_boolean()) return b->get() ? "true" : "false";
  if (const auto* i = n.as_integer()) return std::to_string(i->get());
  if (const auto* f = n.as_floating_point()) {
    std::ostringstream ss;
    ss.precision(17);
    ss << f->get();
    return ss.str();
  }
  return "<table or array>";
}

}  // namespace

Result<ServeConfig> LoadServeConfig(const std::string& path,
                                    const std::vector<std::string>& overrides) {
  ServeConfig c;
  if (!path.empty()) {
    toml::table root;
    try {
      root = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      if (!std::ifstream(path)) {
        return NotFound("cannot open config " + path +
                        "; see examples/deploy/serve.toml for an example");
      }
      std::ostringstream where;
      where << path << ":" << e.source().begin.line;
      return InvalidArgument(where.str() + ": " + std::string(e.description()) + " (TOML syntax)");
    }
    for (auto&& [section, node] : root) {
      const toml::table* t = node.as_table();
      if (!t) {
        return InvalidArgument(path + ": '" + std::string(section.str()) +
                               "' must be a section ([name] on its own line, keys below)");
      }
      for (auto&& [key, value] : *t) {
        std::ostringstream where;
        where << path << ":" << value.source().begin.line;
        FTTE_RETURN_IF_ERROR(Set(c, std::string(section.str()) + "." + std::string(key.str()),
                                 Text(value), where.str()));
      }
    }
  }
  for (const std::string& o : overrides) {
    const size_t eq = o.find('=');
    if (eq == std::string::npos) {
      return InvalidArgument("override '" + o + "' must look like section.key=value");
    }
    FTTE_RETURN_IF_ERROR(Set(c, o.substr(0, eq), o.substr(eq + 1), "--set " + o));
  }
  if (c.strategy.dp()) {
    FTTE_ASSIGN_OR_RETURN(const fl::PrivacySettings p,
                          fl::ResolvePrivacy(c.strategy.dp_noise_multiplier, c.strategy.dp_delta,
                                             c.dp_target_epsilon, c.dp_updates_per_device));
    c.strategy.dp_noise_multiplier = p.noise_multiplier;
    c.strategy.dp_max_load = p.max_load;
    c.strategy.dp_seed = c.seed;
  }
  if (c.secure) {
    c.strategy.secure_cohort = c.secure_cohort > 0 ? c.secure_cohort : c.strategy.buffer;
    if (auto p = fl::secagg::MakeCohortConfig(c.strategy.secure_cohort, c.secure_neighbours,
                                              c.secure_threshold, c.secure_range);
        !p.ok()) {
      return InvalidArgument("[secure_aggregation] " + p.status().message());
    }
  }
  if (Status s = fl::ValidateServerConfig(c.strategy); !s.ok()) return s;
  if (c.strategy.mask == "budget" && c.budget_bytes <= 0) {
    return InvalidArgument("[model] mask = \"budget\" needs budget (e.g. budget = \"8MiB\")");
  }
  if (c.init.empty() != c.eval_text.empty()) {
    return InvalidArgument(c.init.empty()
                               ? "[eval] text needs [model] init: the language model's checkpoint "
                                 "whose tokenizer encodes it"
                               : "[model] init needs [eval] text: a directory of held-out text "
                                 "files to evaluate the language model on");
  }
  if (!c.init.empty() && c.proxy_samples > 0) {
    return InvalidArgument(
        "[model] proxy_samples is for image models (a Fashion-MNIST proxy set); remove it with "
        "[model] init");
  }
  if (c.enroll_key.empty()) {
    return InvalidArgument(
        "[auth] enroll_key (or enroll_key_file) is required: the secret "
        "devices present when they enrol");
  }
  if (!c.insecure && (c.tls_cert.empty() || c.tls_key.empty())) {
    return InvalidArgument(
        "[server] tls_cert and tls_key are required (PEM files); set insecure "
        "= true only for loopback tests");
  }
  return c;
}

Result<ServeData> LoadServeData(ServeConfig* config) {
  ServeData d;
  if (config->init.empty()) {
    FTTE_ASSIGN_OR_RETURN(d.eval, data::LoadFashionMnist(config->data, false));
    return d;
  }
  auto lm = data::LoadLanguageModel(config->init);
  if (!lm.ok()) return Status(lm.status().code(), "[model] init: " + lm.status().message());
  const std::string spec = lm->model->name();
  if (config->model != ServeConfig().model && config->model != spec) {
    return InvalidArgument("[model] name '" + config->model + "' is not the init checkpoint's '" +
                           spec + "'; remove name (init sets it) or make them agree");
  }
  config->model = spec;
  d.initial_weights = fl::GetWeights(*lm->model);
  auto corpus = data::LoadTextDirectory(config->eval_text);
  if (!corpus.ok())
    return Status(corpus.status().code(), "[eval] text: " + corpus.status().message());
  const int64_t context = lm->model->label_positions();
  FTTE_ASSIGN_OR_RETURN(data::LanguageModelData windows,
                        data::MakeLanguageModelData(corpus.value(), lm->tokenizer, context, 0.0));
  if (windows.train_targets == 0) {
    return InvalidArgument("[eval] text: '" + config->eval_text +
                           "' holds no words to score; give it the held-out text files");
  }
  d.eval = std::move(windows.train);
  return d;
}

}  // namespace ftte::net
