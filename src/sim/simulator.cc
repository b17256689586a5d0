#include "ftte/sim/simulator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <queue>

#include "ftte/core/check.h"
#include "ftte/core/mask.h"
#include "ftte/data/cifar.h"
#include "ftte/data/idx.h"
#include "ftte/data/partition.h"
#include "job_runner.h"

namespace ftte::sim {

namespace {

using Clock = std::chrono::steady_clock;

// A finished local training, ordered by virtual time, then by submission (deterministic ties).
struct Event {
  double time;
  int64_t seq;
  int64_t device;
  int64_t ticket;
  int64_t base_version;
  int64_t up_bytes;
  bool operator>(const Event& o) const { return time != o.time ? time > o.time : seq > o.seq; }
};

// Evaluates the global weights on the test set; caches by version.
class Evaluator {
 public:
  Evaluator(const std::string& model, const data::ImageDataset* test, int threads) : test_(test) {
    model_ = MakeModel(model, 0).value();
    model_->SetAllTrainable(false);
    TrainerOptions o;
    o.batch = std::min<int64_t>(256, std::max<int64_t>(1, test->size));
    o.threads = threads;
    trainer_ = std::make_unique<Trainer>(model_.get(), o);
  }
  std::pair<double, double> Evaluate(const std::vector<float>& w, int64_t version) {
    if (version == cached_version_) return cached_;
    fl::SetWeights(*model_, w);
    StepResult r = trainer_->Evaluate(test_->images.data(), test_->labels.data(), test_->size);
    cached_ = {static_cast<double>(r.correct) / static_cast<double>(test_->size), r.loss};
    cached_version_ = version;
    return cached_;
  }

 private:
  const data::ImageDataset* test_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Trainer> trainer_;
  int64_t cached_version_ = -1;
  std::pair<double, double> cached_;
};

int64_t Quantile(std::vector<int64_t> v, double q) {
  std::sort(v.begin(), v.end());
  const auto i = static_cast<size_t>(std::floor(q * static_cast<double>(v.size() - 1)));
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

Result<Environment> MakeEnvironment(const SimConfig& c) {
  Environment env;
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
  FTTE_ASSIGN_OR_RETURN(env.devices, MakeDevices(c.population, c.seed));
  FTTE_ASSIGN_OR_RETURN(env.partition,
                        data::PartitionByName(c.partition, env.train.labels, env.train.num_classes,
                                              static_cast<int64_t>(env.devices.size()), c.seed));
  return env;
}

Result<MethodResult> RunMethod(const SimConfig& config, const MethodConfig& method,
                               const Environment& env, const Progress& progress) {
  const auto wall_start = Clock::now();
  MethodResult res;
  res.name = method.name;
  res.algorithm = fl::AlgorithmName(method.server.algorithm);
  FTTE_ASSIGN_OR_RETURN(auto model, MakeModel(config.model, config.seed));
  if (Shape{env.train.channels, env.train.height, env.train.width} != model->sample_shape()) {
    return InvalidArgument("model " + config.model + " takes " +
                           ShapeToString(model->sample_shape()) + " samples; " + config.dataset +
                           " has other shapes");
  }
  const std::vector<fl::ParamLayout> layout = fl::LayoutOf(*model);
  fl::ClientConfig client = config.client;
  client.frozen = method.frozen;

  // The trainable mask: everything, or FTTE's selection under M_min.
  if (method.mask == "full") {
    model->SetAllTrainable(true);
  } else if (method.mask == "budget") {
    std::vector<int64_t> memories;
    for (const DeviceProfile& d : env.devices) memories.push_back(d.memory_bytes);
    res.budget_bytes = Quantile(memories, method.budget_quantile);
    const int64_t n = std::min<int64_t>(config.calibration_samples, env.train.size);
    TrainerOptions o;
    o.batch = client.batch;
    o.optimizer = client.optimizer;
    o.frozen = client.frozen;
    RowImportance imp = ComputeImportance(*model, env.train.images.data(), env.train.labels.data(),
                                          n, o, (n + o.batch - 1) / o.batch);
    auto sel = SelectUnderBudget(*model, imp, o, res.budget_bytes, FloatBytes(1));
    if (!sel.ok()) return InvalidArgument(method.name + ": " + sel.status().message());
  } else {
    return InvalidArgument(method.name + ": mask '" + method.mask +
                           "' is unknown; use full or budget");
  }
  const fl::Mask mask = fl::Mask::FromModel(*model);
  res.trainable_params = model->num_trainable();
  res.predicted_device_memory_bytes = fl::PredictClientPeak(*model, mask, client);
  std::vector<bool> eligible(env.devices.size());
  for (size_t d = 0; d < env.devices.size(); ++d) {
    eligible[d] = env.devices[d].memory_bytes >= res.predicted_device_memory_bytes;
    res.excluded_devices += eligible[d] ? 0 : 1;
  }
  if (res.excluded_devices == static_cast<int64_t>(env.devices.size())) {
    return InvalidArgument(method.name + ": no device has the " +
                           FormatBytes(res.predicted_device_memory_bytes) +
                           " its training needs; raise devices.memory_* or use mask = \"budget\"");
  }

  // Bytes and compute per device.
  const int64_t step_flops = fl::StepFlops(*model, mask, client.batch);
  const int64_t up_bytes = fl::EncodedSize(mask, layout, method.upload);
  const int64_t full_down = fl::EncodedSize(fl::Mask::Full(layout), layout, {false, false});
  const bool full_mask = mask == fl::Mask::Full(layout);
  const int64_t sync_down = full_mask ? full_down : fl::EncodedSize(mask, layout, {true, false});
  auto steps_of = [&](size_t d) {
    const auto n = static_cast<int64_t>(env.partition[d].size());
    return client.local_steps > 0 ? client.local_steps
                                  : std::max<int64_t>(1, client.local_epochs) *
                                        ((n + client.batch - 1) / client.batch);
  };
  std::vector<int64_t> synced(env.devices.size(), -1);
  auto duration = [&](size_t d, int64_t down) {
    const DeviceProfile& p = env.devices[d];
    const double compute = static_cast<double>(steps_of(d)) * static_cast<double>(step_flops) /
                           p.flops_per_s * p.slowdown;
    return 2 * p.latency_s + static_cast<double>(down) / p.downlink_bytes_per_s + compute +
           static_cast<double>(up_bytes) / p.uplink_bytes_per_s;
  };

  fl::Server server(method.server, fl::GetWeights(*model), mask, layout);
  JobRunner runner(config.threads, config.model, &env.train, client);
  Evaluator eval(config.model, &env.test, config.threads);
  std::shared_ptr<const std::vector<float>> snapshot;
  int64_t snapshot_version = -1;
  auto weights_now = [&] {
    if (snapshot_version != server.version()) {
      snapshot = std::make_shared<const std::vector<float>>(server.weights());
      snapshot_version = server.version();
    }
    return snapshot;
  };
  Rng rng = Rng(config.seed).Fork(0x5e1ec7);
  std::vector<bool> busy(env.devices.size(), false);
  std::vector<int64_t> rounds(env.devices.size(), 0);
  // A random idle, eligible device that accepts work (availability), or -1.
  auto pick = [&]() -> int64_t {
    for (int attempt = 0; attempt < 1000; ++attempt) {
      const auto d = static_cast<size_t>(rng.Below(env.devices.size()));
      if (busy[d] || !eligible[d]) continue;
      if (rng.Uniform() >= env.devices[d].availability) continue;
      return static_cast<int64_t>(d);
    }
    return -1;
  };
  // Starts device d at virtual time t: download, train (submitted to the workers), upload.
  auto start = [&](int64_t d, double t, int64_t seq) {
    const int64_t down =
        synced[d] < 0 ? full_down : (synced[d] == server.version() ? 0 : sync_down);
    synced[d] = server.version();
    res.bytes_down += down;
    busy[d] = true;
    Job job{weights_now(), &mask, &env.partition[d],
            Rng(config.seed).Fork(static_cast<uint64_t>(d) * 1000003 + rounds[d]++).Next()};
    return Event{t + duration(static_cast<size_t>(d), down),
                 seq,
                 d,
                 runner.Submit(std::move(job)),
                 server.version(),
                 up_bytes};
  };

  double next_eval = 0;
  auto record_until = [&](double t) {
    while (next_eval <= t + 1e-9 && next_eval <= config.duration_s + 1e-9) {
      auto [acc, loss] = eval.Evaluate(server.weights(), server.version());
      res.series.push_back({next_eval, acc, loss, res.bytes_up, res.bytes_down, server.version()});
      if (!res.time_to_target_s && acc >= config.target_accuracy) res.time_to_target_s = next_eval;
      if (progress) progress(method.name, next_eval, acc);
      next_eval += config.eval_every_s;
    }
  };
  auto take = [&](const Event& e) {
    fl::ClientResult r = runner.Wait(e.ticket);
    r.update.base_version = e.base_version;
    r.update.device = e.device;
    res.peak_device_memory_bytes = std::max(res.peak_device_memory_bytes, r.peak_bytes);
    res.bytes_up += e.up_bytes;
    busy[e.device] = false;
    return std::move(r.update);
  };

  int64_t seq = 0;
  if (method.server.algorithm == fl::Algorithm::kFedAvg) {
    double t = 0;
    while (t < config.duration_s) {
      std::vector<Event> round;
      for (int64_t i = 0; i < method.server.concurrency; ++i) {
        const int64_t d = pick();
        if (d < 0) break;
        round.push_back(start(d, t, seq++));
      }
      if (round.empty()) break;
      double end = 0;
      for (const Event& e : round) end = std::max(end, e.time);
      if (method.server.round_deadline_s > 0)
        end = std::min(end, t + method.server.round_deadline_s);
      std::vector<fl::Update> updates;
      for (const Event& e : round) {
        fl::Update u = take(e);
        if (e.time <= end) updates.push_back(std::move(u));
      }
      if (end > config.duration_s) break;
      record_until(end - 1e-9);
      server.AggregateRound(updates);
      t = end;
    }
  } else {
    std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events;
    for (int64_t i = 0; i < method.server.concurrency; ++i) {
      const int64_t d = pick();
      if (d < 0) break;
      events.push(start(d, 0.0, seq++));
    }
    while (!events.empty()) {
      const Event e = events.top();
      events.pop();
      if (e.time > config.duration_s) break;
      record_until(e.time - 1e-9);
      server.Receive(take(e));
      const int64_t d = pick();
      if (d >= 0) events.push(start(d, e.time, seq++));
    }
    // Drain the jobs still in flight so the workers stop cleanly.
    while (!events.empty()) {
      runner.Wait(events.top().ticket);
      events.pop();
    }
  }
  record_until(config.duration_s);
  if (res.series.empty() || res.series.back().virtual_s < config.duration_s - 1e-9) {
    next_eval = config.duration_s;
    record_until(config.duration_s);
  }
  res.final_accuracy = res.series.back().accuracy;
  const fl::ServerStats& st = server.stats();
  res.updates_received = st.received;
  res.updates_applied = st.applied;
  res.dropped_stale = st.dropped_stale;
  res.versions = st.aggregations;
  res.staleness = st.staleness;
  res.wall_s = std::chrono::duration<double>(Clock::now() - wall_start).count();
  return res;
}

}  // namespace ftte::sim
