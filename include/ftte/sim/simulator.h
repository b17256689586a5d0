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
#include <optional>
#include <string>
#include <vector>

#include "ftte/data/dataset.h"
#include "ftte/fl/client.h"
#include "ftte/fl/encoding.h"
#include "ftte/fl/server.h"

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
  fl::ServerConfig server;
  // "full" trains every parameter; "budget" lets FTTE select rows under M_min, the
  // `budget_quantile` quantile of device memories (0 = the smallest).
  std::string mask = "full";
  double budget_quantile = 0.0;
  FrozenStorage frozen = FrozenStorage::kFloat32;
  fl::EncodeOptions upload;  // how updates are encoded (sparse / int8)
};

struct SimConfig {
  std::string model = "cnn";
  std::string dataset = "fashion-mnist";
  std::string data_dir;  // default: the dataset's standard location
  std::string partition = "dirichlet:0.5";
  int64_t train_limit = 0;            // use the first N training samples (0 = all)
  int64_t test_limit = 2000;          // evaluate on the first N test samples (0 = all)
  int64_t calibration_samples = 256;  // FTTE's importance pass (server-side data)
  fl::ClientConfig client;
  PopulationConfig population;
  std::vector<MethodConfig> methods;
  double duration_s = 3600;  // virtual time horizon of every method
  double eval_every_s = 60;  // virtual seconds between evaluations
  double target_accuracy = 0.7;
  int threads = 1;
  uint64_t seed = 0;
};

struct SeriesPoint {
  double virtual_s = 0;
  double accuracy = 0;
  double loss = 0;
  int64_t bytes_up = 0;
  int64_t bytes_down = 0;
  int64_t version = 0;
};

struct MethodResult {
  std::string name;
  std::string algorithm;
  double final_accuracy = 0;
  std::optional<double> time_to_target_s;  // virtual; nullopt if never reached
  int64_t peak_device_memory_bytes = 0;    // measured on the real training steps
  int64_t predicted_device_memory_bytes = 0;
  int64_t budget_bytes = 0;  // M_min (budget masks only)
  int64_t trainable_params = 0;
  int64_t bytes_up = 0, bytes_down = 0;
  int64_t excluded_devices = 0;  // memory below this method's training peak
  int64_t updates_received = 0, updates_applied = 0, dropped_stale = 0, versions = 0;
  std::map<int64_t, int64_t> staleness;  // tau -> count
  double wall_s = 0;
  std::vector<SeriesPoint> series;
};

// Progress callback: method name, virtual seconds, accuracy so far.
using Progress = std::function<void(const std::string&, double, double)>;

// Everything shared by the methods of one run: data, partition and devices.
struct Environment {
  data::ImageDataset train, test;
  std::vector<std::vector<int64_t>> partition;
  std::vector<DeviceProfile> devices;
};
Result<Environment> MakeEnvironment(const SimConfig& config);

// Runs one method to the horizon. Errors: a mask no device can train, a bad model name.
Result<MethodResult> RunMethod(const SimConfig& config, const MethodConfig& method,
                               const Environment& env, const Progress& progress = nullptr);

}  // namespace ftte::sim

#endif  // FTTE_SIM_SIMULATOR_H_
