// The device runtime: one phone, watch or laptop taking part in a federation over gRPC. It
// enrols, fetches work (only the model values it lacks), trains on its own samples within its
// memory budget, and submits the update; it never sends a sample. It carries on through
// server restarts and network drops (retries with exponential backoff and jitter; a retried
// submission reuses its update id, so the server applies it once).
//
// Threading: Run() blocks the calling thread; Stop() and stats() may be called from any other
// thread. One Device per device: many can live in one process (no global state).
#ifndef FTTE_NET_DEVICE_H_
#define FTTE_NET_DEVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ftte/core/status.h"
#include "ftte/data/dataset.h"

namespace ftte::net {

struct DeviceOptions {
  std::string server;       // "host:port"
  std::string root_ca;      // PEM the server certificate must chain to ("" = system roots)
  std::string client_cert;  // mutual TLS (optional): PEM certificate and key
  std::string client_key;
  bool insecure = false;   // plain text: loopback tests and demos only
  std::string enroll_key;  // provisioned with the app
  std::string name;        // stable device name (the server keys enrolment by it)
  int64_t memory_budget_bytes = 64 << 20;
  int threads = 1;
  int64_t max_updates = 0;  // stop after this many accepted updates; 0 = until the server is done
  double rpc_timeout_s = 120;
  double heartbeat_s = 30;  // while training, so that a long job keeps its slot
  double initial_backoff_s = 0.1;
  double max_backoff_s = 5;
  int max_attempts = 0;  // consecutive failed attempts of one call before giving up; 0 = never
  uint64_t seed = 0;     // local shuffling and backoff jitter
  // Ask for the final model when the server says the federation is done (Device::model()
  // then holds it): for devices that keep using the federation's model, such as a keyboard.
  bool final_values = false;
  std::function<void(const std::string&)> log;  // progress lines; default: none
};

struct DeviceStats {
  int64_t accepted = 0;    // updates the server took (duplicates included)
  int64_t duplicates = 0;  // retries the server had already taken
  int64_t rejected = 0;    // updates the server refused (stale, invalid)
  int64_t retries = 0;     // calls repeated after a transient failure
  int64_t enrolments = 0;  // 1, plus one per server that forgot the device
  int64_t version = -1;    // the model version the device holds
  int64_t predicted_peak_bytes = 0;
  int64_t measured_peak_bytes = 0;  // largest measured peak of a local job
  double last_loss = 0;
};

// The federation's model as a device holds it.
struct DeviceModel {
  std::string spec;            // the zoo spec the server named ("" before enrolment)
  int64_t version = -1;        // -1: no values received yet
  std::vector<float> weights;  // in fl::LayoutOf order
};

class Device {
 public:
  // `data` is the device's own training set. Fails on bad options (no server, no name,
  // unreadable certificates).
  static Result<std::unique_ptr<Device>> Create(DeviceOptions options, data::ImageDataset data);
  ~Device();

  // Takes part until the server says the federation is done, max_updates are accepted, Stop()
  // is called (all OK), or an error no retry can cure: the budget is below what the server's
  // plan needs, the data does not fit the model, the enrolment key is refused, or
  // max_attempts transient failures in a row.
  Status Run();
  void Stop();
  DeviceStats stats() const;
  // The model as last received (with final_values: the federation's final one). Call it only
  // while Run is not running.
  DeviceModel model() const;

 private:
  struct Impl;
  explicit Device(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ftte::net

#endif  // FTTE_NET_DEVICE_H_
