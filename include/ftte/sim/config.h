// Experiment configuration for `ftte simulate`: a TOML file (or the built-in default run) parsed
// into a SimConfig, command-line overrides, and the effective configuration written back out.
//
// Schema (every key is optional; the values shown are the defaults of an empty file, except that
// an empty file has no methods, which is an error). docs/simulate.md has the long form.
//
//   seed = 0                     # >= 0; drives data partition, devices, initialisation, training
//   threads = 1                  # worker threads, [1, 256]; results do not depend on it
//   model = "cnn"                # zoo name: mlp, lenet5, cnn (28x28x1), resnet8 (32x32x3);
//                                # text: lstm_lm, tiny_gpt, tiny_gpt_lora[:rank=R],
//                                # gpt[:layers=L,width=C,heads=H,rank=R]
//   dataset = "fashion-mnist"    # or "cifar10" (needs data_dir); text: "bible-chapters" (1,189
//                                # users), "bible-books" (66), "text-dir" (one user per file in
//                                # data_dir)
//   data_dir = ""                # "" = the dataset's standard location
//   init = ""                    # text only: a checkpoint to start from (`ftte train --save`):
//                                # its weights, tokenizer and spec; model and context must match
//   tokenizer = "word"           # text only: word | char; trained on the training text only
//   vocab = 10000                # text only: maximum vocabulary, [3, 2^24]; the model's vocab
//                                # is the tokenizer's size
//   context = 32                 # text only: sequence length T of samples and model, [1, 4096]
//   holdout = 0.1                # text only: held-out fraction of each user's tokens, (0, 1)
//   target_metric = "top1"       # text only: top1 | top3, the metric of time-to-target
//   partition = "dirichlet:0.5"  # iid | dirichlet:A (A > 0) | shards:N (N >= 1) | sample:K
//                                # (K per device, overlapping: more devices than samples); text
//                                # datasets need "natural" (one device per user), their default
//   train_limit = 0              # first N training samples (0 = all)
//   test_limit = 2000            # first N test samples evaluated (0 = all); text: N held-out
//                                # samples spread evenly over the users
//   duration_s = 3600            # virtual horizon of every method, > 0
//   eval_every_s = 60            # virtual seconds between evaluations, in (0, duration_s]
//   target_accuracy = 0.7        # in (0, 1], for time-to-target
//   calibration_samples = 256    # server-side samples for FTTE's importance pass
//
//   [client]                     # local training on every device
//   local_epochs = 1             # >= 0
//   local_steps = 0              # > 0: exactly this many steps instead of epochs
//   batch = 32                   # >= 1
//   lr = 0.01                    # > 0
//   momentum = 0.0               # [0, 1)
//   weight_decay = 0.0           # >= 0
//   optimizer = "sgd"            # sgd | adam | adamw
//   frozen = "float32"           # float32 | int8 (the simulator uses each method's frozen)
//
//   [devices]                    # the population (ranges are drawn log-uniformly)
//   count = 100                  # >= 1; unused by text datasets (one device per user)
//   flops_min = 2e9              # sustained FLOP/s, > 0, min <= max
//   flops_max = 2e10
//   memory_min_mib = 8           # training memory, MiB (2^20 bytes), > 0, min <= max
//   memory_max_mib = 64
//   uplink_mbps_min = 2          # megabits/s (10^6 bits/s); stored as bytes/s (x 125000)
//   uplink_mbps_max = 20
//   downlink_mbps_min = 8
//   downlink_mbps_max = 80
//   latency_s = 0.05             # per message, >= 0
//   availability = 1.0           # probability a device takes work when asked, (0, 1]
//   straggler_fraction = 0.0     # [0, 1]
//   slowdown_min = 2.0           # straggler slowdown, log-uniform, >= 1, min <= max
//   slowdown_max = 10.0
//   trace_csv = ""               # profiles from this CSV instead (see ReadDeviceCsv); text
//                                # datasets take its first row per user
//
//   [personalize]                # text only: after federated training
//   steps = 0                    # >= 0: local fine-tuning steps per device (0 = off)
//   users = 0                    # >= 0: devices personalised, evenly spaced (0 = all)
//
//   [[method]]                   # one table per method; at least one
//   name = "ftte"                # [A-Za-z0-9._-]+, unique; default: the algorithm
//   algorithm = "ftte"           # fedavg | fedasync | fedbuff | ftte; default: the name, if it
//                                # is an algorithm name
//   concurrency = 10             # C, >= 1
//   buffer = 10                  # K, >= 1
//   server_lr = 1.0              # > 0
//   server_momentum = 0.0        # [0, 1)
//   staleness_exponent = 0.5     # >= 0
//   variance_lambda = 1.0        # >= 0
//   sample_exponent = 1.0        # >= 0
//   max_staleness = -1           # >= -1 (-1 keeps every update)
//   async_alpha = 0.6            # (0, 1]
//   use_age = true
//   use_variance = true
//   round_deadline_s = 0.0       # >= 0 (0 waits for every sampled device)
//   mask = "budget"              # full | budget               (algorithm default, see below)
//   budget_quantile = 0.0        # [0, 1]
//   frozen = "int8"              # float32 | int8              (algorithm default)
//   upload_sparse = true         #                             (algorithm default)
//   upload_int8 = false
//   upload_changed_rows = false  # upload only rows whose change is not all zero (natural
//                                # sparsity of embeddings); bytes counted per update
//   aggregation = "mean"         # mean | median | trimmed_mean | krum (robust aggregation)
//   trim_fraction = 0.1          # [0, 0.5)
//   krum_f = 1                   # >= 0; krum needs buffer (FedAvg: concurrency) >= 2f + 3
//   clip_multiplier = 0          # >= 0 (0 = off): norm bound, x the recent median norm
//   sample_cap_multiplier = 0    # >= 0 (0 = off): sample-claim cap, x the recent median claim
//   robust_window = 100          # >= 1
//
//   [attack]                     # malicious devices, the same for every method of a seed
//   kind = "none"                # none | sign_flip | scale | random | label_flip | samples
//   fraction = 0.0               # [0, 1]; > 0 when kind is not none
//   scale = 10.0                 # > 0
//   max_updates = 0              # >= 0 (0 = unlimited)
//
// Algorithm defaults: ftte -> mask "budget", frozen "int8", upload_sparse true; fedavg, fedasync,
// fedbuff -> mask "full", frozen "float32", upload_sparse false (dense updates).
//
// Errors (Status kInvalidArgument, never an exception or abort): a TOML syntax error gives
// "origin:line:column: <toml++'s description>"; an unknown key names the key, its table and the
// accepted keys (with a "did you mean" for near misses); a wrong type or an out-of-range value
// names the key, its location, the value and the accepted range; incompatible combinations (an
// image model on text, a language model on images, partition other than natural on text,
// natural or [personalize] on images, vocab/context as model options) name the fix.
//
// Text-only keys ([personalize], tokenizer, vocab, context, holdout, target_metric) and
// upload_changed_rows = false are left out of DescribeSimConfig for image datasets, and the
// robust keys and [attack] when they are off, so runs write the same config and results files
// (and run digests) as before these keys existed.
#ifndef FTTE_SIM_CONFIG_H_
#define FTTE_SIM_CONFIG_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ftte/core/status.h"
#include "ftte/sim/simulator.h"

namespace ftte::sim {

// Parses TOML text. `origin` (a file name, or "<string>") prefixes every error. The result has
// passed ValidateSimConfig.
Result<SimConfig> ParseSimConfig(const std::string& toml_text, const std::string& origin);
// Reads and parses a file. Errors: NotFound / IoError naming the path, or any parse error.
Result<SimConfig> LoadSimConfig(const std::string& path);

// The built-in run of `ftte simulate` without --config (the README's main job): Fashion-MNIST,
// the cnn, 100 devices, FTTE vs FedBuff vs FedAvg, sized to finish in a few minutes on 2 cores.
SimConfig DefaultSimConfig();

// A method with the defaults of its algorithm (see the schema above).
MethodConfig DefaultMethod(fl::Algorithm algorithm, const std::string& name);

// Sets one key from its text form, as `--set key=value` does. Keys: a top-level key ("seed"),
// "client.<key>", "devices.<key>", "personalize.<key>", "method.<name>.<key>" (one method) or
// "method.*.<key>" (every method). Setting `dataset` to a text dataset turns the default
// partition into "natural" (and back). Values are parsed by the key's type: integers, numbers,
// true/false, or a string (surrounding quotes optional). Setting a method's `algorithm` resets its
// mask, frozen and upload_sparse to that algorithm's defaults. Same range checks as the TOML
// parser; cross-key checks (min <= max, ...) are left to ValidateSimConfig. On error `config` is
// unchanged.
Status ApplyOverride(SimConfig* config, const std::string& key, const std::string& value);

// Checks what single keys cannot: at least one method, unique method names, min <= max pairs,
// eval_every_s <= duration_s, the partition spec, a known model that fits the dataset's images
// (or, for text, a language model with natural partition), cifar10 and text-dir with a data_dir,
// calibration samples for budget masks. Errors name the keys and the fix.
Status ValidateSimConfig(const SimConfig& config);

// One setting in schema form (what a TOML file would say).
struct ConfigValue {
  enum class Kind { kInt, kFloat, kBool, kString, kList };  // kList: a list of numbers
  Kind kind = Kind::kInt;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  std::vector<double> list;
};
struct ConfigSection {
  std::string name;  // "" (top level), "client", "devices" or "method" (one per method)
  std::vector<std::pair<std::string, ConfigValue>> values;  // in schema order
};
// Every setting of `config`, in schema order: top level, [client], [devices], each [[method]].
// Units are the schema's (MiB, megabits/s). Parsing FormatSimConfig's output gives `config` back.
std::vector<ConfigSection> DescribeSimConfig(const SimConfig& config);
// `config` as a TOML file that ParseSimConfig reads back to an equal configuration. Numbers are
// written in their shortest round-trip form, so the text is a deterministic function of config.
std::string FormatSimConfig(const SimConfig& config);

// Number formatting shared by the config and report writers: the shortest decimal that reads
// back to the same double ("0.1", "2e+09", "3"). Non-finite values give "nan", "inf", "-inf".
std::string FormatDouble(double v);

}  // namespace ftte::sim

#endif  // FTTE_SIM_CONFIG_H_
