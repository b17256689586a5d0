// The server side of a real deployment: any strategy (FedAvg, FedAsync, FedBuff, FTTE) behind
// the gRPC service of proto/ftte/v1/federation.proto, with TLS, per-device tokens, validation
// of every update before it reaches the buffer, periodic evaluation on a held-out set, and
// state that survives kill -9 (see the coordinator and state store in src/net).
#ifndef FTTE_NET_SERVER_H_
#define FTTE_NET_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ftte/core/status.h"
#include "ftte/data/dataset.h"
#include "ftte/fl/client.h"
#include "ftte/fl/strategy.h"

namespace ftte::net {

// `ftte serve` settings; the TOML file's sections and keys are documented in docs/deploy.md.
struct ServeConfig {
  // [server]
  std::string address = "127.0.0.1:50051";  // port 0 picks a free port (see port_file)
  std::string port_file;                    // written with the bound port once listening
  std::string state_dir = "ftte-state";
  bool fsync = true;  // false trades crash safety for speed (benchmarks only)
  // "text": "HH:MM:SS serve: message" lines; "json": one JSON object per line (JSON Lines)
  // with "time" (UTC, ISO 8601, milliseconds), "who" and "msg", for log collectors.
  std::string log_format = "text";
  double snapshot_every_s = 30;   // the log holds what happened since
  std::string tls_cert, tls_key;  // PEM files; required unless insecure
  std::string tls_client_ca;      // set: devices must present a certificate signed by it
  bool insecure = false;          // plain text, for loopback tests and demos
  int64_t max_message_bytes = 64 << 20;
  // [auth]
  std::string enroll_key;  // given to devices with the app; required
  // The operator's credential for Status (device tokens cannot read federation status); empty:
  // Status is refused to everyone.
  std::string admin_token;
  // [model]
  std::string model = "mlp";
  uint64_t seed = 1;
  int64_t budget_bytes = 0;  // M_min for strategy.mask = "budget" ([model] mask, budget)
  // A declared proxy set the server may hold for FTTE's first plan and trials: the first
  // proxy_samples of the training split in proxy_data (Fashion-MNIST format); 0 = none (the
  // plan starts from sizes and learns importance from the devices). Never the eval set.
  std::string proxy_data = "/usr/share/datasets/fashion-mnist";
  int64_t proxy_samples = 0;
  // [strategy] ([model] mask and frozen storage land in strategy.mask / strategy.frozen)
  fl::ServerConfig strategy;
  // [client]: the hyperparameters devices train with
  fl::ClientConfig client;
  bool int8_upload = false;
  // A language model's checkpoint (data::SaveLanguageModel: `ftte train --save`, the file a
  // keyboard ships) that a new federation starts from; its spec replaces `model` (which, if
  // set, must agree) and its tokenizer encodes eval_text. "" = `model` from `seed`.
  std::string init;
  // [eval]
  std::string data = "/usr/share/datasets/fashion-mnist";  // the held-out test set
  // With init: a directory of held-out text files (data::LoadTextDirectory), all of it scored.
  std::string eval_text;
  int64_t eval_samples = 2000;
  int64_t eval_every = 5;  // versions between evaluations
  // [validation]
  double max_update_norm = 1000;  // L2 norm of a delta
  int64_t max_samples_per_update = 1 << 20;
  double lease_s = 300;  // a device that holds work this long without submitting frees its slot
  // Share cap: one device's updates in one aggregation (buffer, or FedAvg round of
  // `concurrency`) are at most max(ceil(max_share * K), ceil(K / active devices)), active =
  // eligible devices that asked for work within lease_s; a device at its cap is told to WAIT
  // until the next aggregation. The second term keeps a federation of few devices going.
  double max_share = 0.3;
  // Rate cap: seconds between two jobs given to the same device (0 = none).
  double min_interval_s = 0;
  // [privacy]: user-level central differential privacy (fl::ServerConfig dp_*; docs/privacy.md):
  // clip > 0 turns it on; target_epsilon > 0 is a per-device budget.
  double dp_target_epsilon = 0;
  // > 0, with noise_multiplier 0 and target_epsilon: the noise is calibrated so that a device
  // may send this many single-update aggregations within target_epsilon (fl::NoiseForLoad).
  int64_t dp_updates_per_device = 0;
  // [secure_aggregation] (docs/secure-aggregation.md): devices hand updates in through cohorts
  // of the SecAgg+ protocol (Coordinator::SecureStep) and the server learns only each cohort's
  // sum. The cohort size lands in strategy.secure_cohort (cohort 0: the buffer K).
  bool secure = false;
  int64_t secure_cohort = 0;
  int64_t secure_neighbours = 0;  // 0: fl::secagg::MakeCohortConfig's default
  int64_t secure_threshold = 0;   // 0: neighbours / 2 + 1
  double secure_range = 1.0;      // the fixed point's bound on every weighted value
  // A protocol round ends when every member has sent its message or this long after it began;
  // members that missed it are left out (their updates are in no sum, counted).
  double secure_round_timeout_s = 60;
  // [stop]: the federation is done at the first of these (0 = never)
  double target_accuracy = 0;
  int64_t max_versions = 0;
};

// Reads a TOML config; `overrides` are "section.key=value" strings applied after it. Unknown
// sections, keys or bad values are errors that name them.
Result<ServeConfig> LoadServeConfig(const std::string& path,
                                    const std::vector<std::string>& overrides);

// What a federation starts from besides its config.
struct ServeData {
  data::ImageDataset eval;             // the held-out set
  std::vector<float> initial_weights;  // [model] init's values; empty: the seed's
};

// Reads what `config` names: the test split of [eval] data (Fashion-MNIST format), or, with
// [model] init, the checkpoint (config->model becomes its spec) and the held-out next-word
// samples of [eval] text encoded with its tokenizer. Errors name the key and the fix.
Result<ServeData> LoadServeData(ServeConfig* config);

class Coordinator;

// A running server. Start returns once it listens.
class FederationServer {
 public:
  // `eval` is the held-out set (evaluation only); `initial_weights` the pretrained start of a
  // new federation (empty: the seed's; see LoadServeData). `log` receives one line per event
  // worth a human's attention (enrolments, rejections, evaluations).
  static Result<std::unique_ptr<FederationServer>> Start(
      const ServeConfig& config, data::ImageDataset eval,
      std::function<void(const std::string&)> log, std::vector<float> initial_weights = {});
  ~FederationServer();

  int port() const;
  // True once the federation is done (or Shutdown() ran).
  bool finished() const;
  // True once done and every eligible device has been told so: lingering can end.
  bool drained() const;
  // Blocks until the federation is done (target or max_versions reached) or Shutdown().
  void Wait();
  // Stops accepting calls, writes a final snapshot, and returns.
  void Shutdown();
  Coordinator& coordinator();

 private:
  struct Impl;
  explicit FederationServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ftte::net

#endif  // FTTE_NET_SERVER_H_
