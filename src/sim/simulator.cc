#include "ftte/sim/simulator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <queue>

#include "ftte/core/check.h"
#include "ftte/core/mask.h"
#include "ftte/core/rng.h"
#include "ftte/data/cifar.h"
#include "ftte/data/idx.h"
#include "ftte/data/partition.h"
#include "ftte/fl/changed_rows.h"
#include "ftte/fl/privacy.h"
#include "method_run.h"
#include "text_env.h"

namespace ftte::sim {

bool IsTextDataset(const std::string& dataset) {
  return dataset == "bible-chapters" || dataset == "bible-books" || dataset == "text-dir";
}

std::string EffectiveModelSpec(const SimConfig& config, int64_t vocab) {
  if (!IsTextDataset(config.dataset)) return config.model;
  // Appends only: GCC 12's -Wrestrict misfires on chains of operator+ here.
  const size_t colon = config.model.find(':');
  std::string spec(config.model, 0, colon);
  spec.append(":vocab=").append(std::to_string(vocab));
  spec.append(",context=").append(std::to_string(config.context));
  if (colon != std::string::npos) spec.append(",").append(config.model, colon + 1);
  return spec;
}

Distribution Summarize(std::vector<double> v) {
  Distribution d;
  d.users = static_cast<int64_t>(v.size());
  if (v.empty()) return d;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  d.mean = sum / static_cast<double>(v.size());
  auto q = [&](double f) {
    return v[static_cast<size_t>(std::floor(f * static_cast<double>(v.size() - 1)))];
  };
  d.p10 = q(0.1);
  d.median = q(0.5);
  d.p90 = q(0.9);
  return d;
}

namespace {

// Tuning trials: tune.validation training samples, drawn at random (by seed), become the
// evaluated set and leave the devices' data; the test set is not touched.
Status CarveValidation(const SimConfig& c, Environment* env) {
  FTTE_ASSIGN_OR_RETURN(const std::vector<int64_t> held,
                        internal::ValidationIndices(c, env->train.size));
  std::vector<int64_t> kept;
  size_t h = 0;
  for (int64_t i = 0; i < env->train.size; ++i) {
    if (h < held.size() && held[h] == i) {
      ++h;
    } else {
      kept.push_back(i);
    }
  }
  env->test = env->train.Subset(held);
  env->train = env->train.Subset(kept);
  return Status::Ok();
}

}  // namespace

namespace internal {

Result<std::vector<int64_t>> ValidationIndices(const SimConfig& c, int64_t n) {
  if (c.tune.validation >= n) {
    return InvalidArgument("tune.validation = " + std::to_string(c.tune.validation) +
                           " leaves no training data (" + std::to_string(n) +
                           " training samples); hold out fewer, e.g. a tenth");
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  Rng rng = Rng(c.seed).Fork(0x7a11da7e);
  for (int64_t i = n - 1; i > 0; --i) {
    std::swap(order[static_cast<size_t>(i)], order[rng.Below(static_cast<uint64_t>(i) + 1)]);
  }
  std::vector<int64_t> held(order.begin(), order.begin() + c.tune.validation);
  std::sort(held.begin(), held.end());
  return held;
}

}  // namespace internal

Result<Environment> MakeEnvironment(const SimConfig& c) {
  Environment env;
  if (IsTextDataset(c.dataset)) {
    FTTE_RETURN_IF_ERROR(internal::MakeTextEnvironment(c, &env));
    return env;
  }
  env.model = c.model;
  if (c.dataset == "fashion-mnist") {
    const std::string dir = c.data_dir.empty() ? data::kFashionMnistDir : c.data_dir;
    FTTE_ASSIGN_OR_RETURN(env.train, data::LoadFashionMnist(dir, true));
    FTTE_ASSIGN_OR_RETURN(env.test, data::LoadFashionMnist(dir, false));
  } else if (c.dataset == "cifar10") {
    if (c.data_dir.empty()) return InvalidArgument("dataset cifar10 needs data_dir");
    FTTE_ASSIGN_OR_RETURN(env.train, data::LoadCifar10(c.data_dir, true));
    FTTE_ASSIGN_OR_RETURN(env.test, data::LoadCifar10(c.data_dir, false));
  } else {
    return InvalidArgument("dataset '" + c.dataset + "' is unknown; use fashion-mnist or cifar10");
  }
  if (c.train_limit > 0 && c.train_limit < env.train.size)
    env.train = env.train.Head(c.train_limit);
  if (c.test_limit > 0 && c.test_limit < env.test.size) env.test = env.test.Head(c.test_limit);
  if (c.on_validation) FTTE_RETURN_IF_ERROR(CarveValidation(c, &env));
  FTTE_ASSIGN_OR_RETURN(env.devices, MakeDevices(c.population, c.seed));
  FTTE_ASSIGN_OR_RETURN(env.partition,
                        data::PartitionByName(c.partition, env.train.labels, env.train.num_classes,
                                              static_cast<int64_t>(env.devices.size()), c.seed));
  return env;
}

std::vector<double> SimConfig::AllTargets() const {
  std::vector<double> rest;
  for (double t : targets) {
    if (t != target_accuracy) rest.push_back(t);
  }
  std::sort(rest.begin(), rest.end());
  rest.erase(std::unique(rest.begin(), rest.end()), rest.end());
  rest.insert(rest.begin(), target_accuracy);
  return rest;
}

std::vector<uint64_t> SimConfig::AllSeeds() const {
  return seeds.empty() ? std::vector<uint64_t>{seed} : seeds;
}

std::vector<TargetTime> TargetTimes(const std::vector<SeriesPoint>& series,
                                    const std::vector<double>& targets, bool top3) {
  std::vector<TargetTime> out;
  auto metric = [&](size_t i) { return top3 ? series[i].top3 : series[i].accuracy; };
  for (double target : targets) {
    TargetTime t;
    t.target = target;
    for (size_t i = 0; i < series.size(); ++i) {
      if (!t.first_s && metric(i) >= target) t.first_s = series[i].virtual_s;
      if (!t.smoothed_s && i >= 2 && (metric(i) + metric(i - 1) + metric(i - 2)) / 3 >= target) {
        t.smoothed_s = series[i].virtual_s;
      }
    }
    // Held: walk back from the end while at or above the target.
    for (size_t i = series.size(); i-- > 0 && metric(i) >= target;) {
      t.held_s = series[i].virtual_s;
      t.bytes_up_at_held = series[i].bytes_up;
    }
    out.push_back(t);
  }
  return out;
}

double PrivacyConfig::NoiseMultiplier() const {
  const auto p = fl::ResolvePrivacy(noise_multiplier, delta, target_epsilon, updates_per_device);
  return p.ok() ? p->noise_multiplier : noise_multiplier;  // (refused by ValidateSimConfig)
}

fl::ServerConfig EffectiveServerConfig(const SimConfig& config, const MethodConfig& method) {
  fl::ServerConfig s = method.server;
  if (config.privacy.Enabled()) {
    const PrivacyConfig& p = config.privacy;
    s.dp_clip = p.clip;
    s.dp_delta = p.delta;
    s.dp_seed = config.seed;
    const auto resolved =
        fl::ResolvePrivacy(p.noise_multiplier, p.delta, p.target_epsilon, p.updates_per_device);
    s.dp_noise_multiplier = resolved.ok() ? resolved->noise_multiplier : p.noise_multiplier;
    if (resolved.ok()) s.dp_max_load = resolved->max_load;  // (else ValidateSimConfig refuses)
    s.dp_quantile = p.adaptive_quantile;
    s.dp_quantile_rate = p.adaptive_rate;
    s.dp_quantile_noise = p.quantile_noise;
    s.dp_distributed = p.mode == "distributed";
  }
  if (config.secure_aggregation.enabled) {
    s.secure_cohort =
        config.secure_aggregation.cohort > 0 ? config.secure_aggregation.cohort : s.buffer;
  }
  return s;
}

Result<MethodResult> RunMethod(const SimConfig& config, const MethodConfig& method,
                               const Environment& env, const Progress& progress) {
  if (method.batch == 0 && method.local_steps == 0) {
    return internal::MethodRun(config, method, env, progress).Run();
  }
  SimConfig own = config;  // this method's local training
  if (method.batch > 0) own.client.batch = method.batch;
  if (method.local_steps > 0) own.client.local_steps = method.local_steps;
  return internal::MethodRun(own, method, env, progress).Run();
}

}  // namespace ftte::sim
