#include "config_schema.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <type_traits>

#include "ftte/core/optimizer.h"

namespace ftte::sim {

namespace internal {

namespace {

ConfigValue Int(int64_t v) {
  ConfigValue c;
  c.kind = Kind::kInt;
  c.i = v;
  return c;
}
ConfigValue Float(double v) {
  ConfigValue c;
  c.kind = Kind::kFloat;
  c.f = v;
  return c;
}
// A float setting as the shortest decimal that reads back to the same float (0.05f gives 0.05,
// not 0.0500000007), so written configs stay readable and round-trip.
ConfigValue Float(float v) {
  char buf[32];
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return Float(std::strtod(std::string(buf, ptr).c_str(), nullptr));
}
ConfigValue Bool(bool v) {
  ConfigValue c;
  c.kind = Kind::kBool;
  c.b = v;
  return c;
}
ConfigValue Str(std::string v) {
  ConfigValue c;
  c.kind = Kind::kString;
  c.s = std::move(v);
  return c;
}

}  // namespace

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

// How a value reads in messages and in TOML.
std::string ValueText(const ConfigValue& v) {
  switch (v.kind) {
    case Kind::kInt:
      return std::to_string(v.i);
    case Kind::kFloat: {
      std::string s = FormatDouble(v.f);
      if (s.find_first_of(".eni") == std::string::npos) s += ".0";  // TOML: keep it a float
      return s;
    }
    case Kind::kBool:
      return v.b ? "true" : "false";
    case Kind::kString:
      return Quote(v.s);
    case Kind::kList: {
      std::string out = "[";
      for (size_t i = 0; i < v.list.size(); ++i) {
        out += (i ? ", " : "") + FormatDouble(v.list[i]);
      }
      return out + "]";
    }
  }
  return "";
}

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kInt:
      return "an integer";
    case Kind::kFloat:
      return "a number";
    case Kind::kBool:
      return "true or false";
    case Kind::kString:
      return "a string";
    case Kind::kList:
      return "a list of numbers";
  }
  return "";
}

namespace {

// ---- Range checks. Messages leave out the key; the caller prefixes it. ----

Status IntIn(const ConfigValue& v, int64_t lo, int64_t hi) {
  if (v.i >= lo && v.i <= hi) return Status::Ok();
  if (hi == std::numeric_limits<int64_t>::max()) {
    return InvalidArgument("must be >= " + std::to_string(lo) + ", got " + std::to_string(v.i));
  }
  return InvalidArgument("must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                         "], got " + std::to_string(v.i));
}

// v in the interval from lo to hi (open or closed at each end); hi = inf means unbounded.
Status FloatIn(const ConfigValue& v, double lo, bool lo_open, double hi = INFINITY,
               bool hi_open = true) {
  const double x = v.f;
  const bool ok = (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
  if (ok) return Status::Ok();
  std::string range;
  if (std::isinf(hi)) {
    range = std::string(lo_open ? "> " : ">= ") + FormatDouble(lo);
  } else {
    range = std::string("in ") + (lo_open ? "(" : "[") + FormatDouble(lo) + ", " +
            FormatDouble(hi) + (hi_open ? ")" : "]");
  }
  return InvalidArgument("must be " + range + ", got " + FormatDouble(x));
}

Status OneOf(const ConfigValue& v, std::initializer_list<const char*> accepted) {
  std::string list;
  for (const char* a : accepted) {
    if (v.s == a) return Status::Ok();
    list += std::string(list.empty() ? "" : ", ") + "\"" + a + "\"";
  }
  return InvalidArgument("must be one of " + list + ", got " + Quote(v.s));
}

Status FrozenFrom(const ConfigValue& v, FrozenStorage* out) {
  FTTE_RETURN_IF_ERROR(OneOf(v, {"float32", "int8"}));
  *out = v.s == "int8" ? FrozenStorage::kInt8 : FrozenStorage::kFloat32;
  return Status::Ok();
}
const char* FrozenName(FrozenStorage s) { return s == FrozenStorage::kInt8 ? "int8" : "float32"; }

const char* OptimizerName(OptimizerConfig::Kind k) {
  switch (k) {
    case OptimizerConfig::Kind::kSgd:
      return "sgd";
    case OptimizerConfig::Kind::kAdam:
      return "adam";
    case OptimizerConfig::Kind::kAdamW:
      return "adamw";
  }
  return "sgd";
}

}  // namespace

Status CheckPartition(const std::string& spec) {
  static constexpr char kForms[] =
      "\"iid\", \"dirichlet:A\" with A > 0 (e.g. \"dirichlet:0.5\"), \"shards:N\" with "
      "N >= 1 (e.g. \"shards:2\"), \"sample:K\" with K >= 1 (K samples drawn per device, "
      "overlapping: more devices than samples) or \"natural\" (text datasets)";
  if (spec == "iid" || spec == "natural") return Status::Ok();
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  const char* first = arg.data();
  const char* last = arg.data() + arg.size();
  if (colon != std::string::npos && kind == "dirichlet") {
    double alpha = 0;
    const auto [ptr, ec] = std::from_chars(first, last, alpha);
    if (!arg.empty() && ec == std::errc() && ptr == last && alpha > 0 && std::isfinite(alpha)) {
      return Status::Ok();
    }
  } else if (colon != std::string::npos && (kind == "shards" || kind == "sample")) {
    int64_t n = 0;
    const auto [ptr, ec] = std::from_chars(first, last, n);
    if (!arg.empty() && ec == std::errc() && ptr == last && n >= 1) return Status::Ok();
  }
  return InvalidArgument(std::string("must be ") + kForms + "; got " + Quote(spec));
}

namespace {

Status CheckMethodName(const std::string& name) {
  const bool ok = !name.empty() && std::all_of(name.begin(), name.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.';
  });
  if (ok) return Status::Ok();
  return InvalidArgument(
      "must be letters, digits, '-', '_' or '.' (it names CSV rows and "
      "--methods entries), got " +
      Quote(name));
}

// ---- The schema: one row per key, with its type, range check and getter. ----

struct Range {
  double lo;
  bool lo_open;
  double hi = INFINITY;
  bool hi_open = true;
};
constexpr Range kPositive{0, true};
constexpr Range kNonNegative{0, false};
constexpr Range kUnitOpenClosed{0, true, 1, false};    // (0, 1]
constexpr Range kUnitClosed{0, false, 1, false};       // [0, 1]
constexpr Range kUnitClosedOpen{0, false, 1, true};    // [0, 1)
constexpr Range kHalfClosedOpen{0, false, 0.5, true};  // [0, 0.5)
constexpr Range kUnitOpenOpen{0, true, 1, true};       // (0, 1)
constexpr Range kAtLeastOne{1, false};                 // [1, inf)
constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kMbps = 1e6 / 8;  // bytes/s per megabit/s
constexpr int64_t kNoMax = std::numeric_limits<int64_t>::max();

// `ref` maps the target to the member (a generic lambda returning a reference), so one
// accessor serves both the setter and the getter.
template <typename T, typename Ref>
Field<T> IntKey(const char* key, Ref ref, int64_t lo, int64_t hi = kNoMax) {
  using V = std::remove_reference_t<decltype(ref(std::declval<T&>()))>;
  return {key, Kind::kInt,
          [=](T& t, const ConfigValue& v) {
            FTTE_RETURN_IF_ERROR(IntIn(v, lo, hi));
            ref(t) = static_cast<V>(v.i);
            return Status::Ok();
          },
          [=](const T& t) { return Int(static_cast<int64_t>(ref(t))); }};
}

// A number; the member holds value * scale (units: MiB -> bytes, megabits/s -> bytes/s).
template <typename T, typename Ref>
Field<T> FloatKey(const char* key, Ref ref, Range r, double scale = 1) {
  using V = std::remove_reference_t<decltype(ref(std::declval<T&>()))>;
  return {key, Kind::kFloat,
          [=](T& t, const ConfigValue& v) {
            FTTE_RETURN_IF_ERROR(FloatIn(v, r.lo, r.lo_open, r.hi, r.hi_open));
            if constexpr (std::is_integral_v<V>) {
              ref(t) = static_cast<V>(std::llround(v.f * scale));
            } else {
              ref(t) = static_cast<V>(v.f * scale);
            }
            return Status::Ok();
          },
          [=](const T& t) {
            if constexpr (std::is_same_v<V, float>) return Float(ref(t));  // shortest float
            return Float(static_cast<double>(ref(t)) / scale);
          }};
}

template <typename T, typename Ref>
Field<T> BoolKey(const char* key, Ref ref) {
  return {key, Kind::kBool,
          [=](T& t, const ConfigValue& v) {
            ref(t) = v.b;
            return Status::Ok();
          },
          [=](const T& t) { return Bool(ref(t)); }};
}

// A string; `check` (may be null) validates it.
template <typename T, typename Ref>
Field<T> StringKey(const char* key, Ref ref, Status (*check)(const ConfigValue&) = nullptr) {
  return {key, Kind::kString,
          [=](T& t, const ConfigValue& v) {
            if (check) FTTE_RETURN_IF_ERROR(check(v));
            ref(t) = v.s;
            return Status::Ok();
          },
          [=](const T& t) { return Str(ref(t)); }};
}

template <typename T, typename Ref>
Field<T> FrozenKey(const char* key, Ref ref) {
  return {key, Kind::kString, [=](T& t, const ConfigValue& v) { return FrozenFrom(v, &ref(t)); },
          [=](const T& t) { return Str(FrozenName(ref(t))); }};
}

// A list of numbers, each checked by `check` (which returns "" when the number is accepted, or
// what is wrong with it).
template <typename T, typename Ref>
Field<T> ListKey(const char* key, Ref ref, const char* (*check)(double)) {
  using V = typename std::remove_reference_t<decltype(ref(std::declval<T&>()))>::value_type;
  return {key, Kind::kList,
          [=](T& t, const ConfigValue& v) {
            std::vector<V> out;
            for (double x : v.list) {
              if (const char* why = check(x); *why != '\0') {
                return InvalidArgument(std::string("must be ") + why + ", got " + FormatDouble(x));
              }
              out.push_back(static_cast<V>(x));
            }
            ref(t) = std::move(out);
            return Status::Ok();
          },
          [=](const T& t) {
            ConfigValue v;
            v.kind = Kind::kList;
            for (V x : ref(t)) v.list.push_back(static_cast<double>(x));
            return v;
          }};
}

const char* PositiveNumber(double x) { return x > 0 && std::isfinite(x) ? "" : "numbers > 0"; }
const char* PositiveInteger(double x) {
  return x >= 1 && x <= 65536 && x == std::floor(x) ? "" : "integers in [1, 65536]";
}

#define FTTE_REF(member) \
  [](auto& x) -> auto& { return x.member; }

}  // namespace

const std::vector<Field<SimConfig>>& TopFields() {
  using C = SimConfig;
  static const std::vector<Field<C>> kFields = {
      IntKey<C>("seed", FTTE_REF(seed), 0),
      IntKey<C>("threads", FTTE_REF(threads), 1, 256),
      StringKey<C>("model", FTTE_REF(model)),
      StringKey<C>("dataset", FTTE_REF(dataset),
                   [](const ConfigValue& v) {
                     return OneOf(v, {"fashion-mnist", "cifar10", "bible-chapters", "bible-books",
                                      "text-dir"});
                   }),
      StringKey<C>("data_dir", FTTE_REF(data_dir)),
      StringKey<C>("tokenizer", FTTE_REF(tokenizer),
                   [](const ConfigValue& v) {
                     return OneOf(v, {"word", "char", "subword"});
                   }),
      IntKey<C>("vocab", FTTE_REF(vocab), 3, int64_t{1} << 24),
      StringKey<C>("init", FTTE_REF(init)),
      IntKey<C>("context", FTTE_REF(context), 1, 4096),
      FloatKey<C>("holdout", FTTE_REF(holdout), kUnitOpenOpen),
      StringKey<C>("target_metric", FTTE_REF(target_metric),
                   [](const ConfigValue& v) {
                     return OneOf(v, {"top1", "top3"});
                   }),
      StringKey<C>("partition", FTTE_REF(partition),
                   [](const ConfigValue& v) { return CheckPartition(v.s); }),
      IntKey<C>("train_limit", FTTE_REF(train_limit), 0),
      IntKey<C>("test_limit", FTTE_REF(test_limit), 0),
      FloatKey<C>("duration_s", FTTE_REF(duration_s), kPositive),
      FloatKey<C>("eval_every_s", FTTE_REF(eval_every_s), kPositive),
      FloatKey<C>("target_accuracy", FTTE_REF(target_accuracy), kUnitOpenClosed),
      {"targets", Kind::kList,
       [](C& c, const ConfigValue& v) {
         for (double t : v.list) {
           if (!(t > 0 && t <= 1)) {
             return InvalidArgument("must be accuracies in (0, 1], got " + FormatDouble(t));
           }
         }
         c.targets = v.list;
         return Status::Ok();
       },
       [](const C& c) {
         ConfigValue v;
         v.kind = Kind::kList;
         v.list = c.targets;
         return v;
       }},
      {"seeds", Kind::kList,
       [](C& c, const ConfigValue& v) {
         std::vector<uint64_t> seeds;
         for (double s : v.list) {
           if (!(s >= 0 && s <= 9e15 && s == std::floor(s))) {
             return InvalidArgument("must be integers >= 0, got " + FormatDouble(s));
           }
           seeds.push_back(static_cast<uint64_t>(s));
         }
         c.seeds = std::move(seeds);
         return Status::Ok();
       },
       [](const C& c) {
         ConfigValue v;
         v.kind = Kind::kList;
         for (uint64_t s : c.seeds) v.list.push_back(static_cast<double>(s));
         return v;
       }},
      IntKey<C>("calibration_samples", FTTE_REF(calibration_samples), 0),
  };
  return kFields;
}

const std::vector<Field<SimConfig>>& ClientFields() {
  using C = SimConfig;
  static const std::vector<Field<C>> kFields = {
      IntKey<C>("local_epochs", FTTE_REF(client.local_epochs), 0),
      IntKey<C>("local_steps", FTTE_REF(client.local_steps), 0),
      IntKey<C>("batch", FTTE_REF(client.batch), 1, 65536),
      FloatKey<C>("lr", FTTE_REF(client.optimizer.lr), kPositive),
      FloatKey<C>("momentum", FTTE_REF(client.optimizer.momentum), kUnitClosedOpen),
      FloatKey<C>("weight_decay", FTTE_REF(client.optimizer.weight_decay), kNonNegative),
      {"optimizer", Kind::kString,
       [](C& c, const ConfigValue& v) {
         FTTE_RETURN_IF_ERROR(OneOf(v, {"sgd", "adam", "adamw"}));
         c.client.optimizer.kind = OptimizerConfig::ParseKind(v.s).value();
         return Status::Ok();
       },
       [](const C& c) { return Str(OptimizerName(c.client.optimizer.kind)); }},
      FrozenKey<C>("frozen", FTTE_REF(client.frozen)),
  };
  return kFields;
}

const std::vector<Field<SimConfig>>& DeviceFields() {
  using C = SimConfig;
  constexpr Range kMemory{0, true, 1 << 30, false};
  constexpr Range kSlowdown{1, false};
  static const std::vector<Field<C>> kFields = {
      IntKey<C>("count", FTTE_REF(population.devices), 1, 10'000'000),
      FloatKey<C>("flops_min", FTTE_REF(population.flops_min), kPositive),
      FloatKey<C>("flops_max", FTTE_REF(population.flops_max), kPositive),
      FloatKey<C>("memory_min_mib", FTTE_REF(population.memory_min), kMemory, kMiB),
      FloatKey<C>("memory_max_mib", FTTE_REF(population.memory_max), kMemory, kMiB),
      FloatKey<C>("uplink_mbps_min", FTTE_REF(population.uplink_min), kPositive, kMbps),
      FloatKey<C>("uplink_mbps_max", FTTE_REF(population.uplink_max), kPositive, kMbps),
      FloatKey<C>("downlink_mbps_min", FTTE_REF(population.downlink_min), kPositive, kMbps),
      FloatKey<C>("downlink_mbps_max", FTTE_REF(population.downlink_max), kPositive, kMbps),
      FloatKey<C>("latency_s", FTTE_REF(population.latency_s), kNonNegative),
      FloatKey<C>("availability", FTTE_REF(population.availability), kUnitOpenClosed),
      FloatKey<C>("straggler_fraction", FTTE_REF(population.straggler_fraction), kUnitClosed),
      FloatKey<C>("slowdown_min", FTTE_REF(population.slowdown_min), kSlowdown),
      FloatKey<C>("slowdown_max", FTTE_REF(population.slowdown_max), kSlowdown),
      StringKey<C>("trace_csv", FTTE_REF(population.trace_csv)),
  };
  return kFields;
}

const std::vector<Field<SimConfig>>& TuneFields() {
  using C = SimConfig;
  static const std::vector<Field<C>> kFields = {
      ListKey<C>("server_step", FTTE_REF(tune.server_step), PositiveNumber),
      ListKey<C>("batch", FTTE_REF(tune.batch), PositiveInteger),
      ListKey<C>("local_steps", FTTE_REF(tune.local_steps), PositiveInteger),
      FloatKey<C>("duration_s", FTTE_REF(tune.duration_s), kNonNegative),
      IntKey<C>("validation", FTTE_REF(tune.validation), 0),
  };
  return kFields;
}

const std::vector<Field<SimConfig>>& AttackFields() {
  using C = SimConfig;
  static const std::vector<Field<C>> kFields = {
      StringKey<C>(
          "kind", FTTE_REF(attack.kind),
          [](const ConfigValue& v) {
            return OneOf(v, {"none", "sign_flip", "scale", "random", "label_flip", "samples"});
          }),
      FloatKey<C>("fraction", FTTE_REF(attack.fraction), kUnitClosed),
      FloatKey<C>("scale", FTTE_REF(attack.scale), kPositive),
      IntKey<C>("max_updates", FTTE_REF(attack.max_updates), 0),
  };
  return kFields;
}

const std::vector<Field<SimConfig>>& PrivacyFields() {
  using C = SimConfig;
  static const std::vector<Field<C>> kFields = {
      FloatKey<C>("clip", FTTE_REF(privacy.clip), kNonNegative),
      FloatKey<C>("noise_multiplier", FTTE_REF(privacy.noise_multiplier), kNonNegative),
      FloatKey<C>("delta", FTTE_REF(privacy.delta), kUnitOpenOpen),
      FloatKey<C>("target_epsilon", FTTE_REF(privacy.target_epsilon), kNonNegative),
      IntKey<C>("updates_per_device", FTTE_REF(privacy.updates_per_device), 0),
      FloatKey<C>("adaptive_quantile", FTTE_REF(privacy.adaptive_quantile), kNonNegative),
      FloatKey<C>("adaptive_rate", FTTE_REF(privacy.adaptive_rate), kNonNegative),
      FloatKey<C>("quantile_noise", FTTE_REF(privacy.quantile_noise), kNonNegative),
      StringKey<C>("mode", FTTE_REF(privacy.mode),
                   [](const ConfigValue& v) {
                     return OneOf(v, {"central", "distributed"});
                   }),
  };
  return kFields;
}

const std::vector<Field<SimConfig>>& SecureAggregationFields() {
  using C = SimConfig;
  static const std::vector<Field<C>> kFields = {
      BoolKey<C>("enabled", FTTE_REF(secure_aggregation.enabled)),
      IntKey<C>("cohort", FTTE_REF(secure_aggregation.cohort), 0),
      IntKey<C>("neighbours", FTTE_REF(secure_aggregation.neighbours), 0),
      IntKey<C>("threshold", FTTE_REF(secure_aggregation.threshold), 0),
      FloatKey<C>("range", FTTE_REF(secure_aggregation.range), kPositive),
      FloatKey<C>("dropout", FTTE_REF(secure_aggregation.dropout), kUnitClosed),
  };
  return kFields;
}

const std::vector<Field<SimConfig>>& PersonalizeFields() {
  using C = SimConfig;
  static const std::vector<Field<C>> kFields = {
      IntKey<C>("steps", FTTE_REF(personalize.steps), 0),
      IntKey<C>("users", FTTE_REF(personalize.users), 0),
  };
  return kFields;
}

namespace {

// Sets m.server.algorithm and the settings whose defaults depend on it.
void SetAlgorithm(MethodConfig& m, fl::Algorithm a) {
  const MethodConfig d = DefaultMethod(a, m.name);
  m.server.algorithm = a;
  m.server.mask = d.server.mask;
  m.server.frozen = d.server.frozen;
  m.upload.sparse = d.upload.sparse;
}

}  // namespace

const std::vector<Field<MethodConfig>>& MethodFields() {
  using M = MethodConfig;
  static const std::vector<Field<M>> kFields = {
      StringKey<M>("name", FTTE_REF(name),
                   [](const ConfigValue& v) { return CheckMethodName(v.s); }),
      {"algorithm", Kind::kString,
       [](M& m, const ConfigValue& v) {
         FTTE_ASSIGN_OR_RETURN(fl::Algorithm a, fl::ParseAlgorithm(v.s));
         SetAlgorithm(m, a);
         return Status::Ok();
       },
       [](const M& m) { return Str(fl::AlgorithmName(m.server.algorithm)); }},
      IntKey<M>("concurrency", FTTE_REF(server.concurrency), 1),
      IntKey<M>("buffer", FTTE_REF(server.buffer), 1),
      FloatKey<M>("server_lr", FTTE_REF(server.server_lr), kPositive),
      FloatKey<M>("server_momentum", FTTE_REF(server.server_momentum), kUnitClosedOpen),
      FloatKey<M>("staleness_exponent", FTTE_REF(server.staleness_exponent), kNonNegative),
      FloatKey<M>("variance_lambda", FTTE_REF(server.variance_lambda), kNonNegative),
      FloatKey<M>("sample_exponent", FTTE_REF(server.sample_exponent), kNonNegative),
      IntKey<M>("max_staleness", FTTE_REF(server.max_staleness), -1),
      FloatKey<M>("async_alpha", FTTE_REF(server.async_alpha), kUnitOpenClosed),
      BoolKey<M>("use_age", FTTE_REF(server.use_age)),
      BoolKey<M>("use_variance", FTTE_REF(server.use_variance)),
      FloatKey<M>("round_deadline_s", FTTE_REF(server.round_deadline_s), kNonNegative),
      FloatKey<M>("over_selection", FTTE_REF(server.over_selection), kAtLeastOne),
      {"reselect", Kind::kString,
       [](M& m, const ConfigValue& v) {
         FTTE_ASSIGN_OR_RETURN(m.server.reselect, fl::ParseReselect(v.s));
         return Status::Ok();
       },
       [](const M& m) { return Str(fl::ReselectName(m.server.reselect)); }},
      IntKey<M>("reselect_every", FTTE_REF(server.reselect_every), 0),
      {"aggregation", Kind::kString,
       [](M& m, const ConfigValue& v) {
         FTTE_ASSIGN_OR_RETURN(m.server.rule, fl::ParseRule(v.s));
         return Status::Ok();
       },
       [](const M& m) { return Str(fl::RuleName(m.server.rule)); }},
      FloatKey<M>("trim_fraction", FTTE_REF(server.trim_fraction), kHalfClosedOpen),
      IntKey<M>("krum_f", FTTE_REF(server.krum_f), 0),
      FloatKey<M>("clip_multiplier", FTTE_REF(server.clip_multiplier), kNonNegative),
      FloatKey<M>("sample_cap_multiplier", FTTE_REF(server.sample_cap_multiplier), kNonNegative),
      IntKey<M>("robust_window", FTTE_REF(server.robust_window), 1),
      BoolKey<M>("federated_importance", FTTE_REF(server.federated_importance)),
      FloatKey<M>("importance_decay", FTTE_REF(server.importance_decay), kUnitClosedOpen),
      StringKey<M>("mask", FTTE_REF(server.mask),
                   [](const ConfigValue& v) {
                     return OneOf(v, {"full", "budget"});
                   }),
      FloatKey<M>("budget_quantile", FTTE_REF(budget_quantile), kUnitClosed),
      FrozenKey<M>("frozen", FTTE_REF(server.frozen)),
      BoolKey<M>("upload_sparse", FTTE_REF(upload.sparse)),
      BoolKey<M>("upload_int8", FTTE_REF(upload.int8)),
      BoolKey<M>("upload_changed_rows", FTTE_REF(upload_changed_rows)),
      IntKey<M>("batch", FTTE_REF(batch), 0, 65536),
      IntKey<M>("local_steps", FTTE_REF(local_steps), 0),
      StringKey<M>("tune_like", FTTE_REF(tune_like)),
  };
  return kFields;
}

#undef FTTE_REF

}  // namespace internal

MethodConfig DefaultMethod(fl::Algorithm algorithm, const std::string& name) {
  MethodConfig m;
  m.name = name;
  m.server.algorithm = algorithm;
  if (algorithm == fl::Algorithm::kFtte) {
    m.server.mask = "budget";
    m.server.frozen = FrozenStorage::kInt8;
    m.upload.sparse = true;
  } else {
    m.server.mask = "full";
    m.server.frozen = FrozenStorage::kFloat32;
    m.upload.sparse = false;
  }
  return m;
}

}  // namespace ftte::sim
