// What a federation's server decides, one class per algorithm (DESIGN.md §2-3): what devices
// train (the plan: mask, micro-batch, hyperparameters, and so which devices can), how updates
// are weighed and aggregated, and when the plan changes. The simulator (virtual time) and
// `ftte serve` (real time) drive a Strategy alike and never branch on the algorithm; a new
// algorithm is a new subclass (STYLE.md 15).
//
// The model is held in full: weights, the version, server momentum (per value), statistics.
// Updates are packed over the mask of the plan their work carried (PlanAt(base_version)), so a
// plan may change while work is out: an update is expanded to rows and aggregated row by row,
// each row weighed among the updates that trained it (with one mask, the plain weighted sum).
#ifndef FTTE_FL_STRATEGY_H_
#define FTTE_FL_STRATEGY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ftte/core/mask.h"
#include "ftte/fl/client.h"
#include "ftte/fl/update.h"

namespace ftte::fl {

enum class Algorithm { kFedAvg, kFedAsync, kFedBuff, kFtte };
const char* AlgorithmName(Algorithm a);  // "fedavg", "fedasync", "fedbuff", "ftte"
Result<Algorithm> ParseAlgorithm(const std::string& s);

// How FTTE's trainable subset evolves (DESIGN.md §3).
enum class Reselect {
  kFixed,     // planned once
  kPeriodic,  // re-planned every reselect_every aggregations from the importance now known
  kRotating,  // the same, with a bonus for units not trained recently (covers all over time)
};
const char* ReselectName(Reselect r);  // "fixed", "periodic", "rotating"
Result<Reselect> ParseReselect(const std::string& s);

// How the updates of one aggregation (a buffer, a round) are combined (DESIGN.md §7). Every rule
// works row by row over sparse masks: a row is combined among the updates that trained it.
enum class Rule {
  kMean,         // the algorithm's weighted mean
  kMedian,       // coordinate-wise median (unweighted), scaled by the sum of the weights
  kTrimmedMean,  // coordinate-wise mean after dropping trim_fraction of the values at each end
  kKrum,         // multi-Krum: the n - f updates closest to their n - f - 2 nearest neighbours,
                 // weighted mean of those (Blanchard et al. 2017); needs n >= 2f + 3
};
const char* RuleName(Rule r);  // "mean", "median", "trimmed_mean", "krum"
Result<Rule> ParseRule(const std::string& s);

struct ServerConfig {
  Algorithm algorithm = Algorithm::kFtte;
  int64_t concurrency = 10;  // C: devices training at once (FedAvg: sampled per round)
  int64_t buffer = 10;       // K: updates per aggregation (FedBuff, FTTE)
  double server_lr = 1.0;
  double server_momentum = 0.0;     // FTTE (and FedAvg): heavy-ball momentum on the aggregate
  double staleness_exponent = 0.5;  // a in s(tau) = (1 + tau)^-a (FedAsync, FTTE)
  double variance_lambda = 1.0;     // lambda in h(v) = 1 / (1 + lambda v / median(v)) (FTTE)
  double sample_exponent = 1.0;     // p in n^p (FTTE); 0 weighs every device equally
  int64_t max_staleness = -1;       // tau_max: older updates are dropped; -1 keeps all
  double async_alpha = 0.6;         // FedAsync mixing weight
  bool use_age = true;              // FTTE ablations
  bool use_variance = true;
  double round_deadline_s = 0;  // FedAvg: 0 waits for every sampled device
  // FedAvg: sample this many times `concurrency` devices a round and keep the first
  // `concurrency` to finish (over-selection, as deployments do); 1 = the paper's FedAvg.
  double over_selection = 1.0;

  // What devices train: "full", or "budget" (the planner's subset under the budget, FTTE's).
  std::string mask = "full";
  FrozenStorage frozen = FrozenStorage::kFloat32;  // how devices keep frozen rows
  Reselect reselect = Reselect::kFixed;
  int64_t reselect_every = 0;  // aggregations between re-plans (periodic, rotating)
  // Importance from the devices: each update's row statistics (Update::row_sq) refresh the
  // server's table (an exponential average with this weight on the old value). Off: importance
  // comes from the proxy set alone.
  bool federated_importance = true;
  double importance_decay = 0.5;

  // Robust aggregation (off by default: the paper's algorithms as published). Bounds are
  // relative to what honest devices sent lately: the median over the last robust_window
  // admitted updates (before any bound), applied once at least kRobustWarmup are known.
  Rule rule = Rule::kMean;
  double trim_fraction = 0.1;        // trimmed_mean: [0, 0.5)
  int64_t krum_f = 1;                // krum: updates per aggregation assumed malicious, >= 0
  double clip_multiplier = 0;        // > 0: L2 norm of each update clipped to this x median norm
  double sample_cap_multiplier = 0;  // > 0: claimed samples capped at this x median claim
  int64_t robust_window = 100;       // updates the medians look back over, >= 1
  static constexpr int64_t kRobustWarmup = 10;
  bool robust() const {
    return rule != Rule::kMean || clip_multiplier > 0 || sample_cap_multiplier > 0;
  }

  // User-level differential privacy, central (the server adds the noise; docs/privacy.md). Off
  // while dp_clip is 0. Every update is clipped to L2 norm dp_clip. An aggregation is then
  // sum_i w_i delta_i with w_i the algorithm's age weight s(tau) <= 1 over a fixed denominator
  // (the buffer K; FedAvg: concurrency; FedAsync: w = alpha s(tau)), without sample or
  // variance weights or per-row renormalisation, plus Gaussian noise of standard deviation
  // dp_noise_multiplier * dp_clip * (the largest weight one update can get) on every value of
  // the masks involved. Device-reported statistics (variance, row importance) are ignored: they
  // would leave the device unprotected. Accounting (Strategy::PrivacySpent): per device, the
  // Gaussian mechanism composed over the aggregations its updates went into, without any
  // sampling assumption.
  double dp_clip = 0;
  double dp_noise_multiplier = 0;
  double dp_delta = 1e-5;
  uint64_t dp_seed = 0;  // the noise's
  // > 0: a per-device budget (fl::MaxGaussianLoad of a target epsilon): an update that would
  // take its device's load above it is refused, so no device ever spends more.
  int64_t dp_max_load = 0;
  // Adaptive clipping (Andrew et al. 2021, "Differentially Private Learning with Adaptive
  // Clipping"): with dp_quantile in (0, 1), dp_clip is only the first bound; after every
  // aggregation the bound moves geometrically towards the dp_quantile quantile of the updates'
  // norms, C <- C exp(-rate (b - dp_quantile)), where b is the share of the
  // aggregation's updates within C, counted with Gaussian noise of standard deviation
  // dp_quantile_noise (0: the larger of K / 20 and 2 dp_noise_multiplier, K the aggregation's
  // fixed size). The count is a second Gaussian query with the same sensitivity structure, so
  // the updates' noise multiplier rises to (z^-2 - (2 dp_quantile_noise)^-2)^-1/2 and the two
  // releases together cost exactly one Gaussian mechanism of multiplier z: the accounting is
  // unchanged.
  double dp_quantile = 0;
  // The rate (0: 0.2 x min(1, (K / 20) / the count's noise), Andrew et al.'s 0.2 where their
  // noise K / 20 applies, lower in proportion where more noise is needed, so the bound's random
  // walk per aggregation stays as small as theirs; Strategy::DpQuantileRate).
  double dp_quantile_rate = 0;
  double dp_quantile_noise = 0;
  // Distributed DP: instead of the server, each device adds its share of the noise, standard
  // deviation z * dp_clip / sqrt(K) per value (Strategy::DpDeviceNoise; K the aggregation's
  // fixed size), after clipping its own update; it learns both from its plan's ClientConfig.
  // The K shares of a full aggregation sum to the central noise; the server adds only what
  // is missing where fewer than K updates cover a value (a FedAvg round short of devices, a
  // re-selection in flight). Weights are uniform (w_max for every update: a sum that secure
  // aggregation can compute has no per-update weights). The server cannot clip a noised update;
  // it refuses one longer than dp_clip + (its noise's norm + 6 standard deviations), which an
  // honest device exceeds with probability below 1e-8. Adaptive clipping is not built for it.
  bool dp_distributed = false;
  bool dp() const { return dp_clip > 0; }

  // Secure aggregation (fl/secagg.h, docs/secure-aggregation.md): > 0 aggregates cohorts of
  // this many updates (at least the buffer K) through ReceiveCohort, and the server never holds
  // a single update. FedBuff and FTTE; needs the mean rule without robust bounds (they need
  // each update), and privacy off or distributed (the server cannot clip what it cannot see).
  int64_t secure_cohort = 0;
  bool secure() const { return secure_cohort > 0; }
  bool dp_adaptive() const { return dp() && dp_quantile > 0; }
};
// A configuration error a Strategy cannot run with (krum with too small a buffer or round, a
// trim fraction outside [0, 0.5), ...), naming the setting and the fix; Ok otherwise.
Status ValidateServerConfig(const ServerConfig& c);

// What devices train, fixed from version `from_version` until the next plan.
struct Plan {
  int64_t id = 0;  // 0, 1, ...: one per (re)plan
  int64_t from_version = 0;
  Mask mask;
  ClientConfig client;            // what devices run: local steps, batch, micro-batch, storage
  int64_t device_peak_bytes = 0;  // predicted peak of one job: devices below it cannot train
  Selection selection;            // the planner's candidates (budget masks), for reports
};

struct ServerStats {
  int64_t received = 0;        // updates that reached Receive / AggregateRound
  int64_t aggregations = 0;    // model versions produced
  int64_t applied = 0;         // updates that went into an aggregation
  int64_t dropped_stale = 0;   // older than max_staleness
  int64_t replans = 0;         // plans after the first
  int64_t refused = 0;         // aggregations refused because their result was not finite (their
                               // updates are dropped; the model is unchanged)
  int64_t clipped = 0;         // updates whose norm the robust bound clipped
  int64_t samples_capped = 0;  // updates whose claimed sample count the robust cap lowered
  int64_t filtered = 0;        // updates Krum left out of their aggregation
  std::map<int64_t, int64_t> staleness;  // tau -> count, of applied updates
  // Differential privacy: updates the dp_clip bound shortened, and per device the sum over the
  // aggregations that took its updates of (its updates in that aggregation)^2, the multiple of
  // one Gaussian mechanism's RDP that device has spent.
  int64_t dp_clipped = 0;
  std::map<int64_t, int64_t> dp_load;
  int64_t dp_refused = 0;    // updates refused because their device's budget was spent
  int64_t dp_oversized = 0;  // distributed DP: updates refused as longer than clip + noise allow
};

// What FTTE has learned of each unit's importance: per parameter, per row, the current estimate
// (empty rows: no estimate yet), and the aggregation at which the row last belonged to a plan
// (-1: never).
struct ImportanceTable {
  std::vector<std::vector<double>> value;
  std::vector<std::vector<uint8_t>> known;
  std::vector<std::vector<int64_t>> last_planned;
};

// Everything that changes as updates arrive: what a checkpoint must keep to resume exactly.
struct ServerState {
  int64_t version = 0;
  std::vector<float> weights;
  std::vector<double> momentum;  // per value of the model
  std::vector<Update> buffer;    // received, not yet aggregated
  ServerStats stats;
  std::vector<Plan> plans;  // every plan so far (a new one from each re-plan)
  ImportanceTable importance;
  std::vector<int64_t> row_versions;
  // Robust bounds: the raw L2 norms and sample claims of the last robust_window admitted
  // updates, oldest first (empty unless clip or sample cap is on).
  std::vector<double> recent_norms;
  std::vector<int64_t> recent_samples;
  // Differential privacy: the clip bound now (adaptive clipping moves it); 0: the config's.
  double dp_clip = 0;
};

// First plans already made, by everything that decides them: the simulator shares one cache
// between the methods and tuning trials of a run that plan alike (FTTE and its ablations on a
// seed), so the planner's trials run once. Not thread-safe; plans are made on one thread.
class PlanCache {
 public:
  struct Entry {
    Mask mask;
    Selection selection;
  };
  const Entry* Find(const std::string& key) const;
  void Put(const std::string& key, Entry entry);
  size_t size() const { return entries_.size(); }

 private:
  std::map<std::string, Entry> entries_;
};

// What planning needs besides the configuration.
struct PlanningInputs {
  std::string model_spec;    // the zoo spec every device builds
  uint64_t seed = 0;         // the model's initialisation
  ClientConfig client;       // local training (the plan fills micro_batch and frozen)
  int64_t budget_bytes = 0;  // M_min, for budget masks
  // A declared proxy set the server holds (importance before any device reports, and the
  // planner's trials); empty: the first plan ranks units by size alone. Never the test set.
  Samples proxy;
  // Optional: first plans to reuse and to add to (the proxy set must stay at its address).
  PlanCache* cache = nullptr;
  // Optional: the model's starting values (GetWeights order, e.g. a pretrained checkpoint's)
  // instead of the seed's initialisation; must hold the spec's TotalNumel values.
  std::vector<float> initial_weights;
};

class Strategy {
 public:
  // The strategy of config.algorithm with its first plan. Errors: a model spec the zoo does not
  // know, a budget no subset fits (naming the smallest that would).
  static Result<std::unique_ptr<Strategy>> Create(const ServerConfig& config,
                                                  const PlanningInputs& inputs);
  virtual ~Strategy();

  const ServerConfig& config() const { return config_; }
  const std::vector<ParamLayout>& layout() const { return layout_; }
  int64_t version() const { return version_; }
  const std::vector<float>& weights() const { return weights_; }
  const ServerStats& stats() const { return stats_; }
  int64_t buffered() const { return static_cast<int64_t>(buffer_.size()); }
  // Per row of the model (parameters in order, rows in order): the version at which its values
  // last changed (0: never). A device at version v lacks the rows whose entry exceeds v.
  const std::vector<int64_t>& row_versions() const { return row_versions_; }

  // The current plan, and the plan whose work was based on model version `version` (the
  // latest plan from at or before it).
  const Plan& plan() const { return plans_.back(); }
  const Plan& PlanAt(int64_t version) const;
  // Whether a device with this much memory can train the current plan.
  bool Eligible(int64_t memory_bytes) const { return memory_bytes >= plan().device_peak_bytes; }
  // Synchronous algorithms take whole rounds (AggregateRound), the others single updates.
  virtual bool synchronous() const { return false; }

  // Asynchronous: one update, packed over PlanAt(u.base_version).mask. Returns true if the model
  // changed (and so maybe the plan). An update from the future (base_version > version()) is a
  // caller bug.
  virtual bool Receive(const Update& u);
  // Synchronous: one round of updates based on version(); the sample-weighted mean is applied.
  virtual void AggregateRound(const std::vector<Update>& updates);

  // Secure aggregation (config().secure()): the server learns what is public of each member of
  // a cohort (device, base_version, so its plan's mask, and num_samples; `delta` is empty) and
  // the sum of their weighted updates, never one update. CohortWeights are the weights the
  // members apply to their own updates before masking, from that public part alone: the
  // algorithm's buffer weights with the variance unknown (FTTE: age and samples; FedBuff: age);
  // with distributed privacy uniform, 1 / K. Each is in [0, 1].
  std::vector<double> CohortWeights(const std::vector<Update>& members) const;
  // `sum` is sum_i w_i delta_i in model coordinates (every value of the model; members' deltas
  // expanded from their masks, zero elsewhere), `w` the weights the members applied. The
  // aggregate is `sum` with each row rescaled as Aggregate does (the weighted mean among the
  // members that trained the row); with distributed privacy the devices' noise is topped up
  // where fewer than K members cover a value and each member's device is charged one load.
  // One aggregation (the version moves unless the result is refused as non-finite); returns
  // whether the model changed. No device statistics are observed (FTTE's federated importance
  // comes from the proxy set). Members older than max_staleness must be left out by the caller
  // (Stale).
  bool ReceiveCohort(const std::vector<Update>& members, const std::vector<double>& w,
                     const std::vector<float>& sum);
  bool Stale(int64_t base_version) const {
    return config_.max_staleness >= 0 && version_ - base_version > config_.max_staleness;
  }

  // The state to checkpoint, and its restoration (same config and plans). Restore checks the
  // sizes and fails, changing nothing, if they do not fit.
  ServerState State() const;
  Status Restore(ServerState state);

  // The weight FTTE gives an update of age tau in a buffer whose median variance is given
  // (exposed for tests and reports).
  static double FtteWeight(const ServerConfig& c, const Update& u, int64_t tau,
                           double median_variance);

  // With differential privacy on: the (epsilon, dp_delta) the most exposed device has spent so
  // far (epsilon 0 before any aggregation, +infinity without noise), and that device's load.
  struct Privacy {
    double epsilon = 0;
    int64_t max_load = 0;
  };
  Privacy PrivacySpent() const;
  // With differential privacy on: the clip bound updates are held to now (dp_clip unless
  // adaptive clipping moved it), the noise multiplier of the updates' sum and the standard
  // deviation of the adaptive count (both z and 0 without adaptive clipping).
  double dp_clip() const { return dp_clip_; }
  double DpUpdateNoise() const;
  double DpQuantileNoise() const;
  double DpQuantileRate() const;
  // Distributed DP: the noise standard deviation each device adds per value (0 otherwise), and
  // the longest update of `values` values an honest device sends (clip + its noise's norm + 6
  // standard deviations: exceeded with probability below 1e-8).
  double DpDeviceNoise() const;
  double DpNormBound(int64_t values) const;
  // Whether one more update of this device could be taken (false once its budget is spent),
  // and whether one could with `waiting` of its updates already in the aggregation being filled.
  bool CanContribute(int64_t device) const { return WouldFit(device, 0); }
  bool WouldFit(int64_t device, int64_t waiting) const;

 protected:
  Strategy(const ServerConfig& config, const PlanningInputs& inputs);
  // Makes the first plan (full mask, or the planner's subset for budget masks).
  virtual Status Init();
  // Weights of the updates of a full buffer (FedBuff, FTTE).
  virtual std::vector<double> BufferWeights(const std::vector<Update>& buffer) const;
  // After each aggregation (FTTE: importance and re-planning).
  virtual void AfterAggregation() {}
  // Called for every accepted update before aggregation (FTTE: federated importance).
  virtual void Observe(const Update& u) {}
  // What every single-update algorithm does first: counts the update, drops it if older than
  // max_staleness (false), else applies the robust bounds to it and Observes it (true).
  bool Admit(Update* u);
  // The robust bounds on one admitted update: sample claim capped, norm clipped (each relative
  // to the window before this update), then the update's raw values join the window.
  void Bound(Update* u);
  // The config's rule over `updates` with the algorithm's weights `w`.
  std::vector<double> Combine(const std::vector<Update>& updates, const std::vector<double>& w);
  // Differential privacy with a budget: whether `u` may join `pending` (the updates of the
  // aggregation being filled) without its device's load exceeding dp_max_load; counts a refusal.
  bool WithinBudget(const Update& u, const std::vector<Update>& pending);
  // Differential privacy: sum_i w_i clip(delta_i) (no renormalisation; each update clipped to
  // L2 norm dp_clip(), a non-finite one taken as zero) plus Gaussian noise of standard deviation
  // DpUpdateNoise() * dp_clip() * max_weight on every value of the updates' masks, and the
  // devices' loads counted; then adaptive clipping moves the bound. Each w_i must be
  // <= max_weight.
  std::vector<double> PrivateAggregate(const std::vector<Update>& updates,
                                       const std::vector<double>& w, double max_weight);

  // sum_i w_i delta_i in model coordinates, each row scaled by (sum of all w) / (sum of the w
  // of the updates that trained it): the plain weighted sum when all share one mask.
  std::vector<double> Aggregate(const std::vector<Update>& updates,
                                const std::vector<double>& w) const;
  // Aggregate's second half: each row of `agg` scaled by total / row_w[row] where row_w is
  // neither 0 nor total.
  void RescaleRows(const std::vector<double>& row_w, double total, std::vector<double>* agg) const;
  // Differential privacy's noise of standard deviation sd on every value some update covers
  // (distributed: only the shares missing where fewer than K cover it), seeded by the version.
  void AddDpNoise(const std::vector<int32_t>& covered, double sd, std::vector<double>* agg) const;
  // Heavy-ball momentum on the aggregate, then the server step; bumps the version. An aggregate
  // that would make any momentum or weight non-finite is refused: nothing changes (not even the
  // version), stats().refused counts it, and the result is false.
  bool Apply(const std::vector<double>& aggregate);
  // A plan for `mask` (the model's current mask is left as it was), predicted for the inputs'
  // client config; budget plans also carry the planner's selection and micro-batch.
  Plan MakePlan(const Mask& mask, const Selection& selection, int64_t micro_batch) const;
  void AddPlan(Plan plan);
  double Staleness(int64_t tau) const;

  ServerConfig config_;
  PlanningInputs inputs_;
  std::unique_ptr<Model> model_;  // for planning: current weights, plans' masks
  std::vector<ParamLayout> layout_;
  std::vector<float> weights_;
  std::vector<double> momentum_;
  int64_t version_ = 0;
  std::vector<Update> buffer_;
  ServerStats stats_;
  std::vector<Plan> plans_;
  ImportanceTable importance_;  // FTTE
  std::vector<int64_t> row_versions_;
  double dp_clip_ = 0;
  std::vector<double> recent_norms_;
  std::vector<int64_t> recent_samples_;
};

}  // namespace ftte::fl

#endif  // FTTE_FL_STRATEGY_H_
