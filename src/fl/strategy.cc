#include "ftte/fl/strategy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

#include "ftte/core/check.h"
#include "ftte/core/rng.h"
#include "ftte/fl/privacy.h"
#include "strategies.h"

namespace ftte::fl {

namespace {

// Everything a budget plan depends on: the model and its initialisation, the budget, local
// training as the planner's trials run it, frozen storage, tiles and the proxy set.
std::string PlanKey(const PlanningInputs& in, const ClientConfig& c) {
  std::string k = in.model_spec;
  for (double v :
       {static_cast<double>(in.seed), static_cast<double>(in.budget_bytes),
        static_cast<double>(c.batch), static_cast<double>(c.micro_batch),
        static_cast<double>(c.tile_floats), static_cast<double>(c.frozen),
        static_cast<double>(c.optimizer.kind), static_cast<double>(c.optimizer.lr),
        static_cast<double>(c.optimizer.momentum), static_cast<double>(c.optimizer.weight_decay),
        static_cast<double>(in.proxy.n)}) {
    char buf[32];  // every digit: %f would read lr 1e-7 and 2e-7 as the same "0.000000"
    std::snprintf(buf, sizeof buf, "|%.17g", v);
    k.append(buf);
  }
  char ptr[40];
  std::snprintf(ptr, sizeof ptr, "|%p|%p", static_cast<const void*>(in.proxy.x),
                static_cast<const void*>(in.proxy.labels));
  k.append(ptr);
  if (!in.initial_weights.empty()) {  // a plan ranks by the starting values' importance
    const std::string_view bytes(reinterpret_cast<const char*>(in.initial_weights.data()),
                                 in.initial_weights.size() * sizeof(float));
    k.append("|init:" + std::to_string(std::hash<std::string_view>{}(bytes)));
  }
  return k;
}

}  // namespace

const char* AlgorithmName(Algorithm a) {
  switch (a) {
    case Algorithm::kFedAvg:
      return "fedavg";
    case Algorithm::kFedAsync:
      return "fedasync";
    case Algorithm::kFedBuff:
      return "fedbuff";
    case Algorithm::kFtte:
      return "ftte";
  }
  return "unknown";
}

Result<Algorithm> ParseAlgorithm(const std::string& s) {
  for (Algorithm a :
       {Algorithm::kFedAvg, Algorithm::kFedAsync, Algorithm::kFedBuff, Algorithm::kFtte}) {
    if (s == AlgorithmName(a)) return a;
  }
  return InvalidArgument("unknown algorithm '" + s + "'; use fedavg, fedasync, fedbuff or ftte");
}

const char* ReselectName(Reselect r) {
  switch (r) {
    case Reselect::kFixed:
      return "fixed";
    case Reselect::kPeriodic:
      return "periodic";
    case Reselect::kRotating:
      return "rotating";
  }
  return "unknown";
}

Result<Reselect> ParseReselect(const std::string& s) {
  for (Reselect r : {Reselect::kFixed, Reselect::kPeriodic, Reselect::kRotating}) {
    if (s == ReselectName(r)) return r;
  }
  return InvalidArgument("unknown reselection '" + s + "'; use fixed, periodic or rotating");
}

const char* RuleName(Rule r) {
  switch (r) {
    case Rule::kMean:
      return "mean";
    case Rule::kMedian:
      return "median";
    case Rule::kTrimmedMean:
      return "trimmed_mean";
    case Rule::kKrum:
      return "krum";
  }
  return "unknown";
}

Result<Rule> ParseRule(const std::string& s) {
  for (Rule r : {Rule::kMean, Rule::kMedian, Rule::kTrimmedMean, Rule::kKrum}) {
    if (s == RuleName(r)) return r;
  }
  return InvalidArgument("unknown aggregation rule '" + s +
                         "'; use mean, median, trimmed_mean or krum");
}

Status ValidateServerConfig(const ServerConfig& c) {
  if (!(c.trim_fraction >= 0 && c.trim_fraction < 0.5)) {
    return InvalidArgument("trim_fraction " + std::to_string(c.trim_fraction) +
                           " is outside [0, 0.5); 0.1 drops a tenth of the values at each end");
  }
  if (c.krum_f < 0 || c.robust_window < 1 || c.clip_multiplier < 0 || c.sample_cap_multiplier < 0) {
    return InvalidArgument(
        "krum_f must be >= 0, robust_window >= 1, clip_multiplier and sample_cap_multiplier "
        ">= 0 (0 = off)");
  }
  if (c.dp_clip < 0 || c.dp_noise_multiplier < 0 || !(c.dp_delta > 0 && c.dp_delta < 1)) {
    return InvalidArgument(
        "privacy: clip and noise_multiplier must be >= 0 (clip 0 = off) and "
        "delta in (0, 1), e.g. 1e-5 or below 1 / devices");
  }
  if (!(c.dp_quantile >= 0 && c.dp_quantile < 1) || !(c.dp_quantile_rate >= 0) ||
      !(c.dp_quantile_noise >= 0)) {
    return InvalidArgument(
        "privacy: adaptive_quantile must be in [0, 1) (0 = a fixed clip; 0.5 follows the "
        "median norm), adaptive_rate >= 0 (0 = default) and quantile_noise >= 0 (0 = default)");
  }
  if (c.dp_adaptive() && c.dp_quantile_noise > 0 &&
      !(2 * c.dp_quantile_noise > c.dp_noise_multiplier)) {
    return InvalidArgument(
        "privacy: quantile_noise " + std::to_string(c.dp_quantile_noise) +
        " leaves no privacy for the updates: adaptive clipping needs quantile_noise > "
        "noise_multiplier / 2 (" +
        std::to_string(c.dp_noise_multiplier / 2) +
        "); leave it 0 for the default, or use a fixed clip (adaptive_quantile = 0)");
  }
  if (c.dp_distributed && (!c.dp() || c.dp_adaptive())) {
    return InvalidArgument(
        "privacy: distributed mode needs clip > 0 and a fixed clip (adaptive clipping would "
        "need each device's noised count; not built): set adaptive_quantile = 0");
  }
  if (c.dp() && c.robust()) {
    return InvalidArgument(
        "privacy: the noise is calibrated to a fixed clip and the mean; robust rules and "
        "bounds relative to other devices' updates (aggregation, clip_multiplier, "
        "sample_cap_multiplier) would let one device's data move others' weights. Use "
        "aggregation = mean without them (the DP clip bounds every update)");
  }
  if (c.secure()) {
    if (c.algorithm != Algorithm::kFedBuff && c.algorithm != Algorithm::kFtte) {
      return InvalidArgument(std::string("secure aggregation is built for the buffered "
                                         "algorithms (fedbuff, ftte), not ") +
                             AlgorithmName(c.algorithm) +
                             " (fedasync applies single updates; fedavg rounds: not built yet)");
    }
    if (c.secure_cohort < c.buffer) {
      return InvalidArgument("secure aggregation: cohort " + std::to_string(c.secure_cohort) +
                             " is smaller than the buffer " + std::to_string(c.buffer) +
                             "; a cohort is one aggregation's updates: set cohort >= buffer");
    }
    if (c.secure_cohort > c.concurrency) {
      return InvalidArgument("secure aggregation: cohort " + std::to_string(c.secure_cohort) +
                             " is larger than concurrency " + std::to_string(c.concurrency) +
                             ": members hold their training slot until their cohort is full, so "
                             "it would never fill; raise concurrency or lower the cohort");
    }
    if (c.robust()) {
      return InvalidArgument(
          "secure aggregation: robust rules and bounds (aggregation, clip_multiplier, "
          "sample_cap_multiplier) need each update, which the server never sees; use "
          "aggregation = mean without them");
    }
    if (c.dp() && !c.dp_distributed) {
      return InvalidArgument(
          "secure aggregation with central privacy: the server cannot clip updates it cannot "
          "see; set privacy.mode = \"distributed\" (each device clips and adds its noise share)");
    }
  }
  if (c.rule == Rule::kMean) return Status::Ok();
  if (c.algorithm == Algorithm::kFedAsync) {
    return InvalidArgument(std::string("aggregation rule ") + RuleName(c.rule) +
                           " combines several updates, but fedasync applies them one at a "
                           "time; use rule mean with clip_multiplier (and "
                           "sample_cap_multiplier) to bound each update");
  }
  const int64_t n =
      c.algorithm == Algorithm::kFedAvg ? c.concurrency : c.buffer;  // updates per aggregation
  if (c.rule == Rule::kKrum && n < 2 * c.krum_f + 3) {
    return InvalidArgument("krum with krum_f = " + std::to_string(c.krum_f) + " needs at least " +
                           std::to_string(2 * c.krum_f + 3) + " updates per aggregation, but " +
                           (c.algorithm == Algorithm::kFedAvg ? "concurrency" : "buffer") + " is " +
                           std::to_string(n) + "; raise it or lower krum_f");
  }
  return Status::Ok();
}

Result<std::unique_ptr<Strategy>> Strategy::Create(const ServerConfig& config,
                                                   const PlanningInputs& inputs) {
  FTTE_RETURN_IF_ERROR(ValidateServerConfig(config));
  std::unique_ptr<Strategy> s;
  switch (config.algorithm) {
    case Algorithm::kFedAvg:
      s.reset(new FedAvgStrategy(config, inputs));
      break;
    case Algorithm::kFedAsync:
      s.reset(new FedAsyncStrategy(config, inputs));
      break;
    case Algorithm::kFedBuff:
      s.reset(new FedBuffStrategy(config, inputs));
      break;
    case Algorithm::kFtte:
      s.reset(new FtteStrategy(config, inputs));
      break;
  }
  FTTE_CHECK(s != nullptr);
  FTTE_CHECK(config.buffer >= 1 && config.concurrency >= 1);
  FTTE_RETURN_IF_ERROR(s->Init());
  return s;
}

Strategy::Strategy(const ServerConfig& config, const PlanningInputs& inputs)
    : config_(config), inputs_(inputs), dp_clip_(config.dp_clip) {}

Strategy::~Strategy() = default;

Status Strategy::Init() {
  FTTE_ASSIGN_OR_RETURN(model_, MakeModel(inputs_.model_spec, inputs_.seed));
  layout_ = LayoutOf(*model_);
  if (!inputs_.initial_weights.empty()) {
    if (static_cast<int64_t>(inputs_.initial_weights.size()) != TotalNumel(layout_)) {
      return InvalidArgument("the initial weights hold " +
                             std::to_string(inputs_.initial_weights.size()) + " values; model '" +
                             inputs_.model_spec + "' has " + std::to_string(TotalNumel(layout_)));
    }
    SetWeights(*model_, inputs_.initial_weights);
  }
  weights_ = GetWeights(*model_);
  momentum_.assign(weights_.size(), 0.0);
  int64_t rows = 0;
  for (const ParamLayout& p : layout_) rows += p.rows;
  row_versions_.assign(static_cast<size_t>(rows), 0);
  if (config_.mask == "full") {
    model_->SetAllTrainable(true);
    AddPlan(MakePlan(Mask::FromModel(*model_), Selection{}, inputs_.client.micro_batch));
    return Status::Ok();
  }
  if (config_.mask != "budget") {
    return InvalidArgument("mask '" + config_.mask + "' is unknown; use full or budget");
  }
  ClientConfig client = inputs_.client;
  client.frozen = config_.frozen;
  TrainerOptions o = ClientTrainerOptions(client);
  const std::string key = PlanKey(inputs_, client);
  if (inputs_.cache != nullptr) {
    if (const PlanCache::Entry* e = inputs_.cache->Find(key)) {
      e->mask.ApplyTo(*model_);
      AddPlan(MakePlan(e->mask, e->selection, e->selection.micro_batch));
      return Status::Ok();
    }
  }
  Selection sel;
  if (inputs_.proxy.n > 0) {
    FTTE_ASSIGN_OR_RETURN(sel, PlanUnderBudget(*model_, &o, inputs_.budget_bytes, inputs_.proxy,
                                               kClientBytesPerTrainableValue));
  } else {
    // No data: every value is as important as every other, so units rank by size.
    RowImportance uniform;
    for (const Parameter* p : model_->params()) {
      uniform.emplace_back(static_cast<size_t>(p->rows()), static_cast<double>(p->row_size()));
    }
    SelectOptions so = PlannerSelectOptions(*model_, o, Samples{}, kClientBytesPerTrainableValue);
    FTTE_ASSIGN_OR_RETURN(sel, SelectUnderBudget(*model_, uniform, o, inputs_.budget_bytes, so));
  }
  if (inputs_.cache != nullptr) inputs_.cache->Put(key, {Mask::FromModel(*model_), sel});
  AddPlan(MakePlan(Mask::FromModel(*model_), sel, sel.micro_batch));
  return Status::Ok();
}

const PlanCache::Entry* PlanCache::Find(const std::string& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

void PlanCache::Put(const std::string& key, Entry entry) { entries_[key] = std::move(entry); }

Plan Strategy::MakePlan(const Mask& mask, const Selection& selection, int64_t micro_batch) const {
  Plan p;
  p.mask = mask;
  p.client = inputs_.client;
  p.client.frozen = config_.frozen;
  p.client.micro_batch = micro_batch;
  if (config_.dp() && config_.dp_distributed) {
    p.client.dp_clip = config_.dp_clip;
    p.client.dp_noise_stddev = DpDeviceNoise();
  }
  p.device_peak_bytes = PredictClientPeak(*model_, mask, p.client);
  p.selection = selection;
  return p;
}

void Strategy::AddPlan(Plan plan) {
  plan.id = static_cast<int64_t>(plans_.size());
  plan.from_version = version_;
  if (!plans_.empty() && plans_.back().from_version == version_) plans_.pop_back();
  plans_.push_back(std::move(plan));
}

const Plan& Strategy::PlanAt(int64_t version) const {
  for (auto it = plans_.rbegin(); it != plans_.rend(); ++it) {
    if (it->from_version <= version) return *it;
  }
  return plans_.front();
}

double Strategy::Staleness(int64_t tau) const {
  return std::pow(1.0 + static_cast<double>(tau), -config_.staleness_exponent);
}

double Strategy::FtteWeight(const ServerConfig& c, const Update& u, int64_t tau,
                            double median_variance) {
  double w = std::pow(static_cast<double>(std::max<int64_t>(u.num_samples, 1)), c.sample_exponent);
  if (c.use_age) w *= std::pow(1.0 + static_cast<double>(tau), -c.staleness_exponent);
  if (c.use_variance && median_variance > 0) {
    w /= 1.0 + c.variance_lambda * u.variance / median_variance;
  }
  return w;
}

std::vector<double> Strategy::Aggregate(const std::vector<Update>& updates,
                                        const std::vector<double>& w) const {
  std::vector<double> agg(weights_.size(), 0.0);
  int64_t rows = 0;
  for (const ParamLayout& p : layout_) rows += p.rows;
  std::vector<double> row_w(static_cast<size_t>(rows), 0.0);
  double total = 0;
  for (size_t i = 0; i < updates.size(); ++i) {
    const Mask& mask = PlanAt(updates[i].base_version).mask;
    const std::vector<float>& d = updates[i].delta;
    FTTE_CHECK(static_cast<int64_t>(d.size()) == mask.Numel(layout_))
        << "update does not match the mask of its plan";
    total += w[i];
    size_t at = 0, base = 0, row = 0;
    for (size_t k = 0; k < layout_.size(); ++k) {
      const int64_t rs = layout_[k].row_size;
      for (int64_t r = 0; r < layout_[k].rows; ++r, ++row) {
        if (!mask.rows[k][r]) continue;
        double* out = agg.data() + base + r * rs;
        for (int64_t j = 0; j < rs; ++j) out[j] += w[i] * d[at + j];
        at += static_cast<size_t>(rs);
        row_w[row] += w[i];
      }
      base += static_cast<size_t>(layout_[k].numel());
    }
  }
  // Rows some updates did not train: the weighted mean among those that did.
  RescaleRows(row_w, total, &agg);
  return agg;
}

void Strategy::RescaleRows(const std::vector<double>& row_w, double total,
                           std::vector<double>* agg) const {
  size_t base = 0, row = 0;
  for (const ParamLayout& p : layout_) {
    for (int64_t r = 0; r < p.rows; ++r, ++row) {
      if (row_w[row] == 0 || row_w[row] == total) continue;
      const double scale = total / row_w[row];
      for (int64_t j = 0; j < p.row_size; ++j) (*agg)[base + r * p.row_size + j] *= scale;
    }
    base += static_cast<size_t>(p.numel());
  }
}

bool Strategy::Apply(const std::vector<double>& aggregate) {
  // Heavy-ball momentum on the aggregate, then the server step where anything moved; first
  // proven finite everywhere, so that a refused aggregate changes nothing.
  const auto lr = static_cast<float>(config_.server_lr);
  for (size_t i = 0; i < weights_.size(); ++i) {
    const double m = config_.server_momentum * momentum_[i] + aggregate[i];
    if (!std::isfinite(m) || !std::isfinite(weights_[i] + lr * static_cast<float>(m))) {
      ++stats_.refused;
      return false;
    }
  }
  ++version_;
  ++stats_.aggregations;
  size_t i = 0, row = 0;
  for (const ParamLayout& p : layout_) {
    for (int64_t r = 0; r < p.rows; ++r, ++row) {
      bool moved = false;
      for (int64_t j = 0; j < p.row_size; ++j, ++i) {
        momentum_[i] = config_.server_momentum * momentum_[i] + aggregate[i];
        if (momentum_[i] == 0) continue;
        const float before = weights_[i];
        weights_[i] += lr * static_cast<float>(momentum_[i]);
        moved = moved || weights_[i] != before;
      }
      if (moved) row_versions_[row] = version_;
    }
  }
  return true;
}

namespace {

double Norm(const std::vector<float>& v) {
  double sq = 0;
  for (float x : v) sq += static_cast<double>(x) * x;
  return std::sqrt(sq);
}

// Scales `v` (of L2 norm `norm`) down to norm `bound` if it is longer; a non-finite update
// becomes zero. Returns whether it changed.
bool ClipTo(double bound, double norm, std::vector<float>* v) {
  if (norm <= bound) return false;
  const float scale = std::isfinite(norm) && norm > 0 ? static_cast<float>(bound / norm) : 0;
  for (float& x : *v) x = std::isfinite(x) ? x * scale : 0.0f;
  return true;
}

}  // namespace

bool Strategy::Admit(Update* u) {
  FTTE_CHECK(u->base_version <= version_) << "update from the future";
  ++stats_.received;
  if (config_.max_staleness >= 0 && version_ - u->base_version > config_.max_staleness) {
    ++stats_.dropped_stale;
    return false;
  }
  Bound(u);
  // Differential privacy: no Observe, its statistics would leave the device unprotected; the
  // clip is PrivateAggregate's (the bound in force when the aggregation is made). Distributed:
  // the device clipped and noised it; what an honest device cannot exceed is checked.
  if (config_.dp()) {
    if (config_.dp_distributed) {
      if (!(Norm(u->delta) <= DpNormBound(static_cast<int64_t>(u->delta.size())))) {
        ++stats_.dp_oversized;
        return false;
      }
    }
    return true;
  }
  Observe(*u);
  return true;
}

namespace {

// The fixed number of updates one aggregation's weights are divided by (the buffer K, FedAvg's
// round size, FedAsync's single update): the K of adaptive clipping's default count noise.
double DpCohort(const ServerConfig& c) {
  switch (c.algorithm) {
    case Algorithm::kFedAsync:
      return 1;
    case Algorithm::kFedAvg:
      return static_cast<double>(std::max<int64_t>(c.concurrency, 1));
    default:
      return static_cast<double>(std::max<int64_t>(c.buffer, 1));
  }
}

}  // namespace

double Strategy::DpQuantileNoise() const {
  if (!config_.dp_adaptive()) return 0;
  if (config_.dp_quantile_noise > 0) return config_.dp_quantile_noise;
  return std::max(DpCohort(config_) / 20, 2 * config_.dp_noise_multiplier);
}

double Strategy::DpQuantileRate() const {
  if (config_.dp_quantile_rate > 0) return config_.dp_quantile_rate;
  return 0.2 * std::min(1.0, DpCohort(config_) / 20 / DpQuantileNoise());
}

double Strategy::DpDeviceNoise() const {
  if (!config_.dp() || !config_.dp_distributed) return 0;
  return config_.dp_noise_multiplier * config_.dp_clip / std::sqrt(DpCohort(config_));
}

double Strategy::DpNormBound(int64_t values) const {
  return config_.dp_clip + DpDeviceNoise() * (std::sqrt(static_cast<double>(values)) + 6);
}

double Strategy::DpUpdateNoise() const {
  const double z = config_.dp_noise_multiplier;
  if (!config_.dp_adaptive() || z <= 0) return z;
  // z^-2 = z_update^-2 + (2 sigma_b)^-2: the count's sensitivity is 1/2 (within counts as
  // +1/2, above as -1/2 around a public offset), so sigma_b / (1/2) is its multiplier.
  const double b = 2 * DpQuantileNoise();
  return 1 / std::sqrt(1 / (z * z) - 1 / (b * b));
}

std::vector<double> Strategy::PrivateAggregate(const std::vector<Update>& updates,
                                               const std::vector<double>& w, double max_weight) {
  std::vector<double> agg(weights_.size(), 0.0);
  std::vector<int32_t> covered(weights_.size(), 0);  // updates covering each value
  std::map<int64_t, int64_t> per_device;
  int64_t within = 0;  // updates no longer than the bound (adaptive clipping's count)
  const bool distributed = config_.dp_distributed;  // updates arrive clipped and noised
  for (size_t i = 0; i < updates.size(); ++i) {
    FTTE_CHECK(w[i] <= max_weight * (1 + 1e-12)) << "weight " << w[i] << " above " << max_weight;
    const Mask& mask = PlanAt(updates[i].base_version).mask;
    const std::vector<float>& d = updates[i].delta;
    FTTE_CHECK(static_cast<int64_t>(d.size()) == mask.Numel(layout_))
        << "update does not match the mask of its plan";
    ++per_device[updates[i].device];
    const double norm = distributed ? 0 : Norm(d);
    if (norm <= dp_clip_) {
      ++within;
    } else {
      ++stats_.dp_clipped;
    }
    // Clipped: scaled to the bound; a non-finite update contributes nothing (but its mask's
    // values are still noised below: where noise goes must not depend on the data).
    const double wi = !std::isfinite(norm) ? 0 : w[i] * std::min(1.0, dp_clip_ / norm);
    size_t at = 0, base = 0;
    for (size_t k = 0; k < layout_.size(); ++k) {
      const int64_t rs = layout_[k].row_size;
      for (int64_t r = 0; r < layout_[k].rows; ++r) {
        if (!mask.rows[k][r]) continue;
        const size_t off = base + static_cast<size_t>(r * rs);
        if (wi != 0) {
          for (int64_t j = 0; j < rs; ++j) agg[off + j] += wi * d[at + j];
        }
        for (int64_t j = 0; j < rs; ++j) ++covered[off + j];
        at += static_cast<size_t>(rs);
      }
      base += static_cast<size_t>(layout_[k].numel());
    }
  }
  // Noise on every value any update could touch; seeded by the version, so runs repeat.
  // Distributed: the devices added K shares of variance sd^2 / K each (times w^2 = max_weight^2
  // here); the server adds only the shares missing on a value fewer than K updates cover.
  AddDpNoise(covered, DpUpdateNoise() * dp_clip_ * max_weight, &agg);
  for (const auto& [device, k] : per_device) stats_.dp_load[device] += k * k;
  if (config_.dp_adaptive() && !updates.empty()) {
    // The share within the bound, noised (its own stream), moves the bound geometrically.
    Rng rng = Rng(config_.dp_seed ^ 0x6470'7175'616e'7431ULL).Fork(static_cast<uint64_t>(version_));
    const double share = (static_cast<double>(within) + DpQuantileNoise() * rng.Normal()) /
                         static_cast<double>(updates.size());
    dp_clip_ *= std::exp(-DpQuantileRate() * (share - config_.dp_quantile));
  }
  return agg;
}

void Strategy::AddDpNoise(const std::vector<int32_t>& covered, double sd,
                          std::vector<double>* agg) const {
  if (!(sd > 0)) return;
  Rng rng = Rng(config_.dp_seed ^ 0x6470'6e6f'6973'6531ULL).Fork(static_cast<uint64_t>(version_));
  const double k = DpCohort(config_);
  for (size_t v = 0; v < agg->size(); ++v) {
    if (!covered[v]) continue;
    const double share = config_.dp_distributed ? std::max(0.0, 1 - covered[v] / k) : 1;
    if (share > 0) (*agg)[v] += sd * std::sqrt(share) * rng.Normal();
  }
}

bool Strategy::WouldFit(int64_t device, int64_t waiting) const {
  if (!config_.dp() || config_.dp_max_load <= 0) return true;
  const auto it = stats_.dp_load.find(device);
  const int64_t k = waiting + 1;  // its updates in the aggregation, this one included
  return (it == stats_.dp_load.end() ? 0 : it->second) + k * k <= config_.dp_max_load;
}

bool Strategy::WithinBudget(const Update& u, const std::vector<Update>& pending) {
  int64_t waiting = 0;
  for (const Update& p : pending) waiting += p.device == u.device;
  if (WouldFit(u.device, waiting)) return true;
  ++stats_.dp_refused;
  return false;
}

Strategy::Privacy Strategy::PrivacySpent() const {
  Privacy p;
  for (const auto& [device, load] : stats_.dp_load) p.max_load = std::max(p.max_load, load);
  // A device whose k updates went into one aggregation had sensitivity k there: k^2 Gaussian
  // mechanisms' RDP; loads add over aggregations.
  p.epsilon = GaussianEpsilon(config_.dp_noise_multiplier, config_.dp_delta, p.max_load);
  return p;
}

namespace {

template <typename T>
T Median(std::vector<T> v) {
  std::nth_element(v.begin(), v.begin() + static_cast<int64_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

template <typename T>
void Remember(T value, int64_t window, std::vector<T>* recent) {
  recent->push_back(value);
  if (static_cast<int64_t>(recent->size()) > window) {
    recent->erase(recent->begin(), recent->end() - window);
  }
}

}  // namespace

void Strategy::Bound(Update* u) {
  const int64_t warm = ServerConfig::kRobustWarmup;
  if (config_.sample_cap_multiplier > 0) {
    const int64_t claimed = u->num_samples;
    if (static_cast<int64_t>(recent_samples_.size()) >= warm) {
      const double cap =
          config_.sample_cap_multiplier * static_cast<double>(Median(recent_samples_));
      if (static_cast<double>(u->num_samples) > cap) {
        u->num_samples = std::max<int64_t>(1, static_cast<int64_t>(cap));
        ++stats_.samples_capped;
      }
    }
    Remember(claimed, config_.robust_window, &recent_samples_);
  }
  if (config_.clip_multiplier > 0) {
    const double norm = Norm(u->delta);
    if (static_cast<int64_t>(recent_norms_.size()) >= warm &&
        ClipTo(config_.clip_multiplier * Median(recent_norms_), norm, &u->delta)) {
      ++stats_.clipped;
    }
    if (std::isfinite(norm)) Remember(norm, config_.robust_window, &recent_norms_);
  }
}

std::vector<double> Strategy::Combine(const std::vector<Update>& updates,
                                      const std::vector<double>& w) {
  if (config_.rule == Rule::kMean || updates.size() < 2) return Aggregate(updates, w);
  const size_t n = updates.size();
  double total = 0;
  for (double x : w) total += x;
  // Where each update holds each row of the model (-1: not in its mask).
  int64_t rows = 0;
  for (const ParamLayout& p : layout_) rows += p.rows;
  std::vector<std::vector<int64_t>> at(n, std::vector<int64_t>(static_cast<size_t>(rows), -1));
  for (size_t i = 0; i < n; ++i) {
    const Mask& mask = PlanAt(updates[i].base_version).mask;
    FTTE_CHECK(static_cast<int64_t>(updates[i].delta.size()) == mask.Numel(layout_))
        << "update does not match the mask of its plan";
    int64_t off = 0;
    size_t row = 0;
    for (size_t k = 0; k < layout_.size(); ++k) {
      for (int64_t r = 0; r < layout_[k].rows; ++r, ++row) {
        if (!mask.rows[k][r]) continue;
        at[i][row] = off;
        off += layout_[k].row_size;
      }
    }
  }
  if (config_.rule == Rule::kKrum) {
    // Squared distances in model coordinates (a row an update did not train counts as zero).
    std::vector<std::vector<double>> dist(n, std::vector<double>(n, 0.0));
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = i + 1; j < n; ++j) {
        double d2 = 0;
        size_t row = 0;
        for (const ParamLayout& p : layout_) {
          for (int64_t r = 0; r < p.rows; ++r, ++row) {
            const int64_t a = at[i][row], b = at[j][row];
            if (a < 0 && b < 0) continue;
            for (int64_t c = 0; c < p.row_size; ++c) {
              const double x = a < 0 ? 0.0 : updates[i].delta[a + c];
              const double y = b < 0 ? 0.0 : updates[j].delta[b + c];
              d2 += (x - y) * (x - y);
            }
          }
        }
        dist[i][j] = dist[j][i] = std::isfinite(d2) ? d2 : HUGE_VAL;
      }
    }
    // With fewer updates than the configured f needs (a short round), f shrinks to fit.
    const auto f = static_cast<size_t>(
        std::min<int64_t>(config_.krum_f, std::max<int64_t>(0, (static_cast<int64_t>(n) - 3) / 2)));
    const size_t neighbours = n >= f + 3 ? n - f - 2 : 1;
    std::vector<std::pair<double, size_t>> score;
    for (size_t i = 0; i < n; ++i) {
      std::vector<double> d;
      for (size_t j = 0; j < n; ++j) {
        if (j != i) d.push_back(dist[i][j]);
      }
      std::sort(d.begin(), d.end());
      double s = 0;
      for (size_t k = 0; k < std::min(neighbours, d.size()); ++k) s += d[k];
      score.emplace_back(s, i);
    }
    std::sort(score.begin(), score.end());
    std::vector<Update> kept;
    std::vector<double> kw;
    double kept_total = 0;
    for (size_t k = 0; k < n - f; ++k) {
      kept.push_back(updates[score[k].second]);
      kw.push_back(w[score[k].second]);
      kept_total += kw.back();
    }
    stats_.filtered += static_cast<int64_t>(f);
    if (kept_total > 0) {
      for (double& x : kw) x *= total / kept_total;
    }
    return Aggregate(kept, kw);
  }
  // Median / trimmed mean, coordinate by coordinate among the updates that trained the row.
  std::vector<double> agg(weights_.size(), 0.0);
  std::vector<double> values;
  size_t base = 0, row = 0;
  for (const ParamLayout& p : layout_) {
    for (int64_t r = 0; r < p.rows; ++r, ++row) {
      for (int64_t c = 0; c < p.row_size; ++c) {
        values.clear();
        for (size_t i = 0; i < n; ++i) {
          if (at[i][row] >= 0) values.push_back(updates[i].delta[at[i][row] + c]);
        }
        if (values.empty()) continue;
        std::sort(values.begin(), values.end());
        const size_t m = values.size();
        double loc;
        if (config_.rule == Rule::kMedian) {
          loc = m % 2 == 1 ? values[m / 2] : 0.5 * (values[m / 2 - 1] + values[m / 2]);
        } else {
          const auto cut = static_cast<size_t>(config_.trim_fraction * static_cast<double>(m));
          double sum = 0;
          for (size_t k = cut; k < m - cut; ++k) sum += values[k];
          loc = sum / static_cast<double>(m - 2 * cut);
        }
        agg[base + static_cast<size_t>(r * p.row_size + c)] = total * loc;
      }
    }
    base += static_cast<size_t>(p.numel());
  }
  return agg;
}

bool Strategy::Receive(const Update& u) {
  FTTE_CHECK(!synchronous()) << AlgorithmName(config_.algorithm) << " aggregates whole rounds";
  Update v = u;
  if (!Admit(&v)) return false;
  if (!WithinBudget(v, buffer_)) return false;
  buffer_.push_back(std::move(v));
  if (static_cast<int64_t>(buffer_.size()) < config_.buffer) return false;
  std::vector<double> agg;
  if (config_.dp()) {  // age weights over the fixed K: one update moves the sum by <= clip / K
    const double k = static_cast<double>(config_.buffer);
    std::vector<double> w;
    for (const Update& b : buffer_) {  // distributed: uniform (secure aggregation's plain sum)
      w.push_back(config_.dp_distributed ? 1 / k : Staleness(version_ - b.base_version) / k);
    }
    agg = PrivateAggregate(buffer_, w, 1 / k);
  } else {
    agg = Combine(buffer_, BufferWeights(buffer_));
  }
  const int64_t at = version_;
  const std::vector<Update> taken = std::move(buffer_);
  buffer_.clear();
  if (!Apply(agg)) return false;  // refused: the buffer is dropped, the model unchanged
  for (const Update& b : taken) {
    ++stats_.applied;
    ++stats_.staleness[at - b.base_version];
  }
  AfterAggregation();
  return true;
}

std::vector<double> Strategy::BufferWeights(const std::vector<Update>& buffer) const {
  return std::vector<double>(buffer.size(), 1.0 / static_cast<double>(buffer.size()));
}

void Strategy::AggregateRound(const std::vector<Update>& updates) {
  FTTE_CHECK(false) << AlgorithmName(config_.algorithm) << " takes single updates (Receive)";
}

ServerState Strategy::State() const {
  return {version_,    weights_,      momentum_,     buffer_,         stats_,  plans_,
          importance_, row_versions_, recent_norms_, recent_samples_, dp_clip_};
}

Status Strategy::Restore(ServerState state) {
  if (state.weights.size() != weights_.size() || state.momentum.size() != momentum_.size() ||
      state.plans.empty() || state.row_versions.size() != row_versions_.size()) {
    return InvalidArgument("server state holds " + std::to_string(state.weights.size()) +
                           " weights, " + std::to_string(state.momentum.size()) +
                           " momentum values and " + std::to_string(state.plans.size()) +
                           " plans; this model needs " + std::to_string(weights_.size()) +
                           " of each and at least one plan");
  }
  for (const Plan& p : state.plans) {
    if (p.mask.rows.size() != layout_.size()) {
      return InvalidArgument("server state holds a plan for another model");
    }
  }
  std::swap(plans_, state.plans);  // PlanAt below sees the restored plans
  for (const Update& u : state.buffer) {
    if (u.base_version > state.version ||
        static_cast<int64_t>(u.delta.size()) != PlanAt(u.base_version).mask.Numel(layout_)) {
      std::swap(plans_, state.plans);
      return InvalidArgument("server state holds a buffered update that does not fit its plan");
    }
  }
  version_ = state.version;
  weights_ = std::move(state.weights);
  momentum_ = std::move(state.momentum);
  buffer_ = std::move(state.buffer);
  stats_ = std::move(state.stats);
  importance_ = std::move(state.importance);
  row_versions_ = std::move(state.row_versions);
  recent_norms_ = std::move(state.recent_norms);
  recent_samples_ = std::move(state.recent_samples);
  dp_clip_ = state.dp_clip > 0 ? state.dp_clip : config_.dp_clip;
  return Status::Ok();
}

}  // namespace ftte::fl
