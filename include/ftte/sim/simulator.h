// The device simulator: a virtual clock and one event queue driving the same client trainer and
// server code as the network runtime (DESIGN.md §4).
//
// Local training really runs (on `threads` worker threads), so accuracy is real; its virtual
// duration is FLOPs over the device's speed (times its straggler slowdown) plus encoded bytes
// over its bandwidth plus latency. Results are identical for any thread count: a job's result
// depends only on its inputs, and events are ordered by (virtual time, sequence number).
#ifndef FTTE_SIM_SIMULATOR_H_
#define FTTE_SIM_SIMULATOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ftte/data/dataset.h"
#include "ftte/data/tokenizer.h"
#include "ftte/fl/client.h"
#include "ftte/fl/encoding.h"
#include "ftte/fl/strategy.h"

namespace ftte::sim {

struct DeviceProfile {
  double flops_per_s = 1e10;  // sustained training FLOP/s
  int64_t memory_bytes = 0;   // memory available for training
  double uplink_bytes_per_s = 1e6;
  double downlink_bytes_per_s = 4e6;
  double latency_s = 0.05;    // per message
  double availability = 1.0;  // probability that the device takes work when asked
  double slowdown = 1.0;      // straggler factor on compute time (1 = none)
};

// How a population of devices is drawn. Ranges are sampled log-uniformly; stragglers are a
// random `straggler_fraction` of devices whose slowdown is log-uniform in
// [slowdown_min, slowdown_max].
struct PopulationConfig {
  int64_t devices = 100;
  double flops_min = 2e9, flops_max = 2e10;
  int64_t memory_min = int64_t{8} << 20, memory_max = int64_t{64} << 20;
  double uplink_min = 0.25e6, uplink_max = 2.5e6;      // bytes/s
  double downlink_min = 1.0e6, downlink_max = 10.0e6;  // bytes/s
  double latency_s = 0.05;
  double availability = 1.0;
  double straggler_fraction = 0.0;
  double slowdown_min = 2.0, slowdown_max = 10.0;
  std::string trace_csv;  // when set, profiles come from this CSV instead (see ReadDeviceCsv)
};

// Draws `config.devices` profiles (or reads config.trace_csv). Deterministic for a seed.
Result<std::vector<DeviceProfile>> MakeDevices(const PopulationConfig& config, uint64_t seed);
// CSV with a header naming columns among: flops_per_s, memory_bytes, uplink_bytes_per_s,
// downlink_bytes_per_s, latency_s, availability, slowdown (missing columns take defaults).
Result<std::vector<DeviceProfile>> ReadDeviceCsv(const std::string& path);

// One method of a run ("ftte", "fedbuff", "ftte-no-age", ...).
struct MethodConfig {
  std::string name;
  // The strategy, its plan (server.mask: "full" trains every parameter, "budget" lets the
  // planner select rows under M_min) and how devices keep frozen rows (server.frozen).
  fl::ServerConfig server;
  // M_min is this quantile of device memories (0 = the smallest).
  double budget_quantile = 0.0;
  fl::EncodeOptions upload;  // how updates are encoded (sparse / int8)
  // Natural sparsity: upload only the rows whose change is not all zero (a sparse encoding of
  // that subset of the mask, whatever upload.sparse says); bytes are counted per update.
  bool upload_changed_rows = false;
  // This method's local training, when it differs from [client] (0 = [client]'s value). Tuning
  // sets them.
  int64_t batch = 0;
  int64_t local_steps = 0;
  // Tuning ([tune]): "" tunes this method on its own trials; a method's name takes that
  // method's chosen values instead (ablations keep the full method's setting).
  std::string tune_like;
};

// Per-method tuning before the measured runs (tune.h): every method that tunes gets the same
// grid of trials, the product of the lists below (an empty list leaves that setting as
// configured), each run for `duration_s` virtual seconds on a validation split carved from the
// training data, never the test set. The measured runs then use each method's best trial.
struct TuneConfig {
  // Multipliers of the method's server step: server_lr (FedAvg, FedBuff, FTTE) or async_alpha
  // (FedAsync; capped at 1).
  std::vector<double> server_step;
  std::vector<int64_t> batch;        // client batch
  std::vector<int64_t> local_steps;  // client local steps
  double duration_s = 0;             // each trial's horizon; 0 = the experiment's duration_s
  int64_t validation = 0;            // training samples held out to score trials
  bool Enabled() const { return !server_step.empty() || !batch.empty() || !local_steps.empty(); }
};

// After federated training, each device fine-tunes the final global model on its own training
// data under the method's mask and memory budget (text datasets only).
struct PersonalizeConfig {
  int64_t steps = 0;  // local steps of fine-tuning; 0 = no personalisation
  int64_t users = 0;  // personalise this many devices, evenly spaced over the devices; 0 = all
};

// Malicious devices (issue 11's attack study): a fraction of the population, drawn by the seed,
// whose updates are corrupted. Every method of a run faces the same attackers.
struct AttackConfig {
  // none | sign_flip (sends -scale x its change) | scale (scale x its change) | random (a random
  // direction, scale x its change's norm) | label_flip (trains on label C-1-y; images only) |
  // samples (claims scale x its sample count, to dominate sample-weighted means)
  std::string kind = "none";
  double fraction = 0;      // of devices, [0, 1]; at least one device when > 0
  double scale = 10;        // > 0
  int64_t max_updates = 0;  // malicious updates over the whole run; 0 = every attacker's every
                            // update (1: the effect of one update)
  bool Enabled() const { return kind != "none"; }
};

// [privacy]: user-level differential privacy, central, for every method of the run (the
// fl::ServerConfig dp_* settings: each update clipped to `clip`, Gaussian noise of
// noise_multiplier x clip x the largest weight one update can get added to every aggregate;
// docs/privacy.md). Off while clip is 0. The noise is seeded by the run's seed.
struct PrivacyConfig {
  double clip = 0;
  double noise_multiplier = 1.0;
  double delta = 1e-5;
  // > 0: no device spends more (its updates beyond are refused and it gets no more work); the
  // run goes on with the others, and ends early in effect when every device has spent it.
  double target_epsilon = 0;
  // > 0 (with noise_multiplier = 0 and target_epsilon): the noise is calibrated so that a
  // device may send this many updates (each into its own aggregation) within target_epsilon
  // (fl::NoiseForLoad).
  int64_t updates_per_device = 0;
  // Adaptive clipping (fl::ServerConfig dp_quantile...): clip is then the first bound, which
  // follows the adaptive_quantile quantile of the update norms; 0 = a fixed clip.
  double adaptive_quantile = 0;
  double adaptive_rate = 0;   // 0: the default (docs/privacy.md)
  double quantile_noise = 0;  // 0: the default (docs/privacy.md)
  // "central": the server adds the noise; "distributed": each device adds its share.
  std::string mode = "central";
  bool Enabled() const { return clip > 0; }
  // The noise multiplier the run uses: the configured one, or the calibrated one.
  double NoiseMultiplier() const;
};

// Secure aggregation (docs/secure-aggregation.md): updates reach the server only as the masked
// sum of a cohort (fl/secagg.h, the real protocol with libsodium), for FedBuff and FTTE. A
// device that finishes training joins the cohort being filled; when it has `cohort` members
// they run the four rounds, whose messages and round trips count in bytes and virtual time,
// and the unmasked sum is one aggregation.
struct SecureAggregationConfig {
  bool enabled = false;
  int64_t cohort = 0;      // members per cohort; 0: each method's buffer K
  int64_t neighbours = 0;  // per member (SecAgg+); 0: all up to 16 members, else ~3 log2(n)
  int64_t threshold = 0;   // shares that rebuild a secret; 0: neighbours / 2 + 1
  double range = 1.0;      // the fixed-point bound on every weighted update value
  double dropout = 0;      // chance a member leaves before sending its masked input
};

struct SimConfig {
  std::string model = "cnn";
  std::string dataset = "fashion-mnist";
  std::string data_dir;  // default: the dataset's standard location
  std::string partition = "dirichlet:0.5";
  int64_t train_limit = 0;            // use the first N training samples (0 = all)
  int64_t test_limit = 2000;          // evaluate on the first N test samples (0 = all)
  int64_t calibration_samples = 256;  // FTTE's importance pass (server-side data)
  // Text datasets (IsTextDataset): the tokenizer, trained on the training text only, fixes the
  // model's vocabulary; `context` is its sequence length T. `holdout` is the fraction of each
  // user's tokens held out for evaluation (lm_data.h).
  std::string tokenizer = "word";  // word | char
  int64_t vocab = 10000;           // maximum vocabulary size, specials included
  int64_t context = 32;
  double holdout = 0.1;
  // A checkpoint to start from (`ftte train --save`): every method's initial global model is
  // its weights and the run uses its tokenizer (not one trained on this text), its model spec
  // and context; `model` and `context` must agree with it. Empty: a seeded random model.
  std::string init;
  std::string target_metric = "top1";  // top1 | top3: the metric time-to-target uses
  PersonalizeConfig personalize;
  std::string bible_command = "bible";  // not a config key: tests pass a fake
  fl::ClientConfig client;
  PopulationConfig population;
  std::vector<MethodConfig> methods;
  double duration_s = 3600;      // virtual time horizon of every method
  double eval_every_s = 60;      // virtual seconds between evaluations
  double target_accuracy = 0.7;  // the primary target: the summary's time to target
  std::vector<double> targets;   // more targets reported (the primary is always included)
  int threads = 1;
  uint64_t seed = 0;
  TuneConfig tune;
  AttackConfig attack;
  PrivacyConfig privacy;
  SecureAggregationConfig secure_aggregation;
  // Not a config key: the run evaluates on tune.validation training samples (held out of the
  // devices' data) instead of the test set. Tuning trials set it.
  bool on_validation = false;
  // Several seeds: every method runs once per seed (data partition, devices, initialisation and
  // training all follow it) and results report the mean and a 95% interval; empty: `seed` only.
  std::vector<uint64_t> seeds;

  // The targets reported: the primary first, then the others in ascending order.
  std::vector<double> AllTargets() const;
  // The seeds run: `seeds`, or {seed}.
  std::vector<uint64_t> AllSeeds() const;
};

// "bible-chapters", "bible-books" and "text-dir" (next-word prediction, natural partition).
bool IsTextDataset(const std::string& dataset);

// The model spec a run uses: config.model for images; for text, the model name with
// vocab=`vocab` and context=config.context first, then the spec's other options
// ("tiny_gpt_lora:rank=4" -> "tiny_gpt_lora:vocab=2000,context=16,rank=4").
std::string EffectiveModelSpec(const SimConfig& config, int64_t vocab);

// When a method reached an accuracy target, three ways (virtual seconds; nullopt: never):
// first crossing of an evaluation; first time the mean of three consecutive evaluations
// reached it; and `held`: the first evaluation after which accuracy never fell below it again
// until the horizon (the fair one for noisy curves).
struct TargetTime {
  double target = 0;
  std::optional<double> first_s, smoothed_s, held_s;
  // Bytes uploaded by then (held), nullopt if never.
  std::optional<int64_t> bytes_up_at_held;
};

struct SeriesPoint {
  double virtual_s = 0;
  double accuracy = 0;  // top-1 (of samples for images, of held-out positions for text)
  double loss = 0;
  int64_t bytes_up = 0;
  int64_t bytes_down = 0;
  int64_t version = 0;
  double top3 = 0;        // language models: top-3 accuracy over held-out positions
  double perplexity = 0;  // language models: exp(loss)
  double epsilon = 0;     // with [privacy]: spent so far (MethodResult::epsilon)
};

// Text: what every next-word result is read against, on the evaluated held-out positions: the
// share of their targets that are <unk> (never scored: next-word accuracies are over the other
// targets, and <unk> is never a prediction, as in `ftte predict`) and an interpolated Kneser-Ney
// 3-gram counted on the same training samples (data/ngram.h), scored the same way.
struct TextReference {
  double unk_rate = 0;
  double ngram_top1 = 0, ngram_top3 = 0, ngram_perplexity = 0;
};

// A per-user metric over users: unweighted mean, and the nearest-rank quantiles (the value at
// index floor(q * (users - 1)) of the sorted values).
struct Distribution {
  int64_t users = 0;
  double mean = 0, p10 = 0, median = 0, p90 = 0;
};
Distribution Summarize(std::vector<double> values);

struct MethodResult {
  std::string name;
  std::string algorithm;
  bool language_model = false;  // the fields marked "LM" are set
  double final_accuracy = 0;
  double final_top3 = 0, final_perplexity = 0;  // LM
  TextReference reference;                      // LM: the environment's
  // LM: top-3 of the final global model on each device's held-out text (devices with any).
  Distribution user_top3;
  // LM with personalisation: top-3 of the personalised devices before and after fine-tuning.
  std::optional<Distribution> personal_before, personal_after;
  uint64_t seed = 0;
  // The primary target's held time (TargetTime::held_s): nullopt if never held.
  std::optional<double> time_to_target_s;
  std::vector<TargetTime> targets;       // config.AllTargets(), in that order
  int64_t peak_device_memory_bytes = 0;  // measured on the real training steps
  int64_t predicted_device_memory_bytes = 0;
  int64_t budget_bytes = 0;  // M_min (budget masks only)
  int64_t trainable_params = 0;
  int64_t bytes_up = 0, bytes_down = 0;
  // One update's size over the whole mask (the upload without natural sparsity; with it, each
  // update's real size is counted in bytes_up).
  int64_t mask_update_bytes = 0;
  int64_t excluded_devices = 0;  // memory below this method's training peak
  int64_t updates_received = 0, updates_applied = 0, dropped_stale = 0, versions = 0;
  int64_t replans = 0;  // plans after the first (FTTE's reselection)
  // Robust aggregation and attacks (reported when either is on): updates clipped, sample
  // claims capped, updates Krum left out, and malicious updates the attackers sent.
  bool robust_report = false;
  int64_t clipped = 0, samples_capped = 0, filtered = 0, malicious_updates = 0;
  // Differential privacy (config.privacy on): the (epsilon, delta) of the most exposed device
  // at the end (fl::Strategy::PrivacySpent: no sampling assumption), its load (aggregations
  // its updates went into, a device's k updates in one aggregation counting k^2), and the
  // updates the clip shortened.
  bool privacy_report = false;
  double epsilon = 0, dp_delta = 0;
  double dp_noise_multiplier = 0;  // the z the accountant charges (configured or calibrated)
  double dp_final_clip = 0;        // the clip bound at the end (adaptive clipping moves it)
  int64_t dp_max_load = 0, dp_clipped = 0, dp_refused = 0;
  int64_t dp_oversized = 0;  // distributed: updates refused as longer than clip + noise allow
  bool dp_distributed = false;
  // Secure aggregation (config.secure_aggregation.enabled): cohorts aggregated, cohorts
  // aborted (too few members left to unmask; their updates are lost), members whose updates
  // did not reach a sum (dropped out, or in an aborted cohort), weighted update values the
  // fixed-point range clamped, and the mean duration of the protocol's rounds per cohort.
  bool secure_report = false;
  int64_t secure_cohorts = 0, secure_aborted = 0, secure_lost = 0, secure_clamped = 0;
  double secure_protocol_s = 0;
  std::map<int64_t, int64_t> staleness;  // tau -> count
  double wall_s = 0;
  std::vector<SeriesPoint> series;
  // The final global model (all values, model order); not written to the results files.
  std::vector<float> final_weights;
};

// Progress callback: method name, virtual seconds, accuracy so far, and with [privacy] the
// epsilon spent so far (-1 without).
using Progress = std::function<void(const std::string&, double, double, double)>;

// Everything shared by the methods of one run: data, partition and devices.
struct Environment {
  std::string model;  // EffectiveModelSpec: the spec every method builds
  bool language_model = false;
  data::ImageDataset train, test;  // text: test is the evaluated (strided) held-out subset
  std::vector<std::vector<int64_t>> partition;
  std::vector<DeviceProfile> devices;
  // Text datasets only: one device per user with training samples, in corpus order.
  data::ImageDataset user_test;                      // every held-out sample
  std::vector<std::vector<int64_t>> test_partition;  // device d's samples in user_test
  std::vector<std::string> device_users;             // device d's user name
  int64_t skipped_users = 0;                         // users without a training sample
  int64_t vocab = 0;                                 // tokenizer size (specials included)
  std::shared_ptr<const data::Tokenizer> tokenizer;  // text: saved with the final models
  TextReference reference;                           // text: on `test`
  std::vector<float> initial_weights;                // config.init's values; empty: seeded
  // First plans of the methods run on this environment (FTTE and its ablations plan alike):
  // the planner's trials run once per distinct plan.
  std::shared_ptr<fl::PlanCache> plans = std::make_shared<fl::PlanCache>();
};
// Images: loads the dataset and partitions it. Text: loads the corpus, trains the tokenizer on
// the training part of every user's text, cuts samples (lm_data.h) and gives each user with a
// training sample one device; profiles are drawn for that many devices (devices.count is not
// used; a trace must have at least that many rows). Errors: the loaders', a corpus whose users
// all lack training text, a model that does not take the data.
Result<Environment> MakeEnvironment(const SimConfig& config);

// The times `series` reached each of `targets` (of top-3 when `top3`, else of accuracy).
std::vector<TargetTime> TargetTimes(const std::vector<SeriesPoint>& series,
                                    const std::vector<double>& targets, bool top3);

// The method's server settings with the run's [privacy] applied (what the strategy runs with).
fl::ServerConfig EffectiveServerConfig(const SimConfig& config, const MethodConfig& method);

// Runs one method to the horizon. For a language model (env.language_model) it also evaluates
// the final global model on every device's held-out text and, with config.personalize.steps >
// 0, fine-tunes the chosen devices (see PersonalizeConfig) on the worker threads. The result
// is identical for any config.threads. Errors: a mask no device can train, a bad model name.
Result<MethodResult> RunMethod(const SimConfig& config, const MethodConfig& method,
                               const Environment& env, const Progress& progress = nullptr);

}  // namespace ftte::sim

#endif  // FTTE_SIM_SIMULATOR_H_
