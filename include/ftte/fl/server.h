// The server side: the global model and the aggregation rules of FedAvg, FedAsync, FedBuff and
// FTTE behind one class, driven by the simulator (virtual time) and the network runtime (real
// time) alike. DESIGN.md §3 defines the rules; every FTTE component can be switched off.
#ifndef FTTE_FL_SERVER_H_
#define FTTE_FL_SERVER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ftte/fl/update.h"

namespace ftte::fl {

enum class Algorithm { kFedAvg, kFedAsync, kFedBuff, kFtte };
const char* AlgorithmName(Algorithm a);  // "fedavg", "fedasync", "fedbuff", "ftte"
Result<Algorithm> ParseAlgorithm(const std::string& s);

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
};

struct ServerStats {
  int64_t received = 0;                  // updates that reached Receive / AggregateRound
  int64_t aggregations = 0;              // model versions produced
  int64_t applied = 0;                   // updates that went into an aggregation
  int64_t dropped_stale = 0;             // older than max_staleness
  std::map<int64_t, int64_t> staleness;  // tau -> count, of applied updates
};

// Everything that changes as updates arrive: what a checkpoint must keep to resume exactly.
struct ServerState {
  int64_t version = 0;
  std::vector<float> weights;
  std::vector<double> momentum;  // packed over the mask
  std::vector<Update> buffer;    // received, not yet aggregated
  ServerStats stats;
};

class Server {
 public:
  // `mask` fixes which rows devices train (full for FedAvg, FedAsync, FedBuff).
  Server(const ServerConfig& config, std::vector<float> weights, Mask mask,
         std::vector<ParamLayout> layout);

  int64_t version() const { return version_; }
  const std::vector<float>& weights() const { return weights_; }
  const Mask& mask() const { return mask_; }
  const std::vector<ParamLayout>& layout() const { return layout_; }
  const ServerConfig& config() const { return config_; }
  const ServerStats& stats() const { return stats_; }

  // Asynchronous algorithms: takes one update (delta packed over mask()). Returns true if the
  // global model changed. Updates from the future (base_version > version()) are a caller bug.
  bool Receive(const Update& u);
  // FedAvg: one synchronous round; the sample-weighted mean of the deltas is applied.
  void AggregateRound(const std::vector<Update>& updates);

  // The state to checkpoint, and its restoration (same config, mask and layout). Restore
  // checks the sizes and fails, changing nothing, if they do not fit.
  ServerState State() const;
  Status Restore(ServerState state);
  int64_t buffered() const { return static_cast<int64_t>(buffer_.size()); }

  // The weight FTTE gives update i of a buffer (exposed for tests and reports).
  static double FtteWeight(const ServerConfig& c, const Update& u, int64_t tau,
                           double median_variance);

 private:
  void Apply(const std::vector<double>& aggregate);
  double Staleness(int64_t tau) const;

  ServerConfig config_;
  std::vector<float> weights_;
  Mask mask_;
  std::vector<ParamLayout> layout_;
  int64_t version_ = 0;
  std::vector<Update> buffer_;
  std::vector<double> momentum_;  // packed over the mask
  ServerStats stats_;
};

}  // namespace ftte::fl

#endif  // FTTE_FL_SERVER_H_
