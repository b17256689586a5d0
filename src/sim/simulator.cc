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
#include "ftte/fl/changed_rows.h"
#include "job_runner.h"
#include "text_env.h"

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
  bool uploaded = true;  // false: training ended at `time`; the upload (real bytes) follows
  bool operator>(const Event& o) const { return time != o.time ? time > o.time : seq > o.seq; }
};

// Evaluates weights on the test set (cached by version) or on a subset of a dataset.
class Evaluator {
 public:
  Evaluator(const std::string& model, const data::ImageDataset* test, int threads) : test_(test) {
    model_ = MakeModel(model, 0).value();
    model_->SetAllTrainable(false);
    TrainerOptions o;
    // A language model's logits are T x vocab per sample: smaller batches keep them modest.
    const int64_t max_batch = model_->label_positions() > 1 ? 16 : 256;
    o.batch = std::min<int64_t>(max_batch, std::max<int64_t>(1, test->size));
    o.threads = threads;
    trainer_ = std::make_unique<Trainer>(model_.get(), o);
  }
  const StepResult& Evaluate(const std::vector<float>& w, int64_t version) {
    if (version == cached_version_) return cached_;
    fl::SetWeights(*model_, w);
    cached_ = trainer_->Evaluate(test_->images.data(), test_->labels.data(), test_->size);
    cached_version_ = version;
    return cached_;
  }
  StepResult EvaluateSubset(const std::vector<float>& w, const data::ImageDataset& data,
                            const std::vector<int64_t>& indices) {
    cached_version_ = -1;
    fl::SetWeights(*model_, w);
    const data::ImageDataset d = data.Subset(indices);
    return trainer_->Evaluate(d.images.data(), d.labels.data(), d.size);
  }

 private:
  const data::ImageDataset* test_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Trainer> trainer_;
  int64_t cached_version_ = -1;
  StepResult cached_;
};

double Top3(const StepResult& r) {
  return r.positions > 0 ? static_cast<double>(r.correct_top3) / static_cast<double>(r.positions)
                         : 0.0;
}

int64_t Quantile(std::vector<int64_t> v, double q) {
  std::sort(v.begin(), v.end());
  const auto i = static_cast<size_t>(std::floor(q * static_cast<double>(v.size() - 1)));
  return v[std::min(i, v.size() - 1)];
}

// Language models, after federated training: the final global model's top-3 on every device's
// held-out text, and (with [personalize] steps > 0) each chosen device fine-tuned from it on
// its own training data under the method's mask, before vs after. The fine-tuning jobs run on
// the workers while the main thread evaluates.
void Personalize(const SimConfig& config, const Environment& env, const fl::Mask& mask,
                 const std::vector<fl::ParamLayout>& layout, const fl::ClientConfig& client,
                 const std::vector<bool>& eligible, const std::vector<float>& weights,
                 JobRunner& runner, Evaluator& eval, MethodResult* res) {
  std::vector<size_t> candidates, chosen;
  for (size_t d = 0; d < env.devices.size(); ++d) {
    if (eligible[d] && !env.test_partition[d].empty()) candidates.push_back(d);
  }
  const auto n = static_cast<int64_t>(candidates.size());
  if (config.personalize.steps > 0) {
    const int64_t k = config.personalize.users > 0 ? std::min(config.personalize.users, n) : n;
    for (int64_t i = 0; i < k; ++i) chosen.push_back(candidates[static_cast<size_t>(i * n / k)]);
  }
  fl::ClientConfig tune = client;
  tune.local_steps = config.personalize.steps;
  auto start = std::make_shared<const std::vector<float>>(weights);
  std::vector<int64_t> tickets;
  for (size_t d : chosen) {
    const uint64_t seed = Rng(config.seed).Fork(0x9e4507a1 + static_cast<uint64_t>(d)).Next();
    tickets.push_back(runner.Submit(Job{start, &mask, &env.partition[d], seed, &tune}));
  }
  std::vector<double> all;
  std::vector<double> before(env.devices.size(), 0.0);
  for (size_t d = 0; d < env.devices.size(); ++d) {
    if (env.test_partition[d].empty()) continue;
    before[d] = Top3(eval.EvaluateSubset(weights, env.user_test, env.test_partition[d]));
    all.push_back(before[d]);
  }
  res->user_top3 = Summarize(all);
  if (chosen.empty()) return;
  std::vector<double> was, now;
  for (size_t i = 0; i < chosen.size(); ++i) {
    const size_t d = chosen[i];
    fl::ClientResult r = runner.Wait(tickets[i]);
    std::vector<float> mine = weights;
    fl::AddMasked(r.update.delta, 1.0f, mask, layout, &mine);
    was.push_back(before[d]);
    now.push_back(Top3(eval.EvaluateSubset(mine, env.user_test, env.test_partition[d])));
  }
  res->personal_before = Summarize(was);
  res->personal_after = Summarize(now);
}

}  // namespace

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
  res.language_model = env.language_model;
  const std::string& spec = env.model.empty() ? config.model : env.model;
  FTTE_ASSIGN_OR_RETURN(auto model, MakeModel(spec, config.seed));
  const Shape data_shape = env.language_model
                               ? Shape{env.train.width}
                               : Shape{env.train.channels, env.train.height, env.train.width};
  if (data_shape != model->sample_shape()) {
    return InvalidArgument("model " + spec + " takes " + ShapeToString(model->sample_shape()) +
                           " samples; " + config.dataset + " has other shapes");
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
    TrainerOptions o = fl::ClientTrainerOptions(client);
    auto sel = PlanUnderBudget(*model, &o, res.budget_bytes,
                               Samples{env.train.images.data(), env.train.labels.data(), n},
                               fl::kClientBytesPerTrainableValue);
    if (!sel.ok()) return InvalidArgument(method.name + ": " + sel.status().message());
    client.micro_batch = o.micro_batch;
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
  res.mask_update_bytes = up_bytes;
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
  JobRunner runner(config.threads, spec, &env.train, client);
  Evaluator eval(spec, &env.test, config.threads);
  // Natural sparsity: the upload's size is known only once training has run.
  const bool natural = method.upload_changed_rows;
  auto changed_bytes = [&](const std::vector<float>& delta) {
    return fl::EncodedSize(fl::ChangedRows(delta, mask, layout), layout,
                           {true, method.upload.int8});
  };
  auto compute_end = [&](size_t d, int64_t down, double t) {
    const DeviceProfile& p = env.devices[d];
    const double compute = static_cast<double>(steps_of(d)) * static_cast<double>(step_flops) /
                           p.flops_per_s * p.slowdown;
    return t + 2 * p.latency_s + static_cast<double>(down) / p.downlink_bytes_per_s + compute;
  };
  std::map<int64_t, fl::ClientResult> stash;  // results fetched early (by ticket)
  // Phase two of a natural-sparse event: fetch the result, count its real bytes, and move the
  // event to the end of the upload.
  auto upload = [&](Event e) {
    fl::ClientResult r = runner.Wait(e.ticket);
    e.up_bytes = changed_bytes(r.update.delta);
    e.time += static_cast<double>(e.up_bytes) / env.devices[e.device].uplink_bytes_per_s;
    e.uploaded = true;
    stash.emplace(e.ticket, std::move(r));
    return e;
  };

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
    if (natural) {
      return Event{compute_end(static_cast<size_t>(d), down, t),
                   seq,
                   d,
                   runner.Submit(std::move(job)),
                   server.version(),
                   0,
                   false};
    }
    return Event{t + duration(static_cast<size_t>(d), down),
                 seq,
                 d,
                 runner.Submit(std::move(job)),
                 server.version(),
                 up_bytes};
  };

  double next_eval = 0;
  const bool target_top3 = env.language_model && config.target_metric == "top3";
  auto record_until = [&](double t) {
    while (next_eval <= t + 1e-9 && next_eval <= config.duration_s + 1e-9) {
      const StepResult& r = eval.Evaluate(server.weights(), server.version());
      // Images: of samples (as always); text: of held-out positions.
      const double acc = static_cast<double>(r.correct) /
                         static_cast<double>(env.language_model ? std::max<int64_t>(1, r.positions)
                                                                : env.test.size);
      SeriesPoint p{next_eval, acc, r.loss, res.bytes_up, res.bytes_down, server.version()};
      if (env.language_model) {
        p.top3 = Top3(r);
        p.perplexity = r.perplexity();
      }
      res.series.push_back(p);
      const double metric = target_top3 ? p.top3 : acc;
      if (!res.time_to_target_s && metric >= config.target_accuracy) {
        res.time_to_target_s = next_eval;
      }
      if (progress) progress(method.name, next_eval, acc);
      next_eval += config.eval_every_s;
    }
  };
  auto take = [&](const Event& e) {
    auto it = stash.find(e.ticket);
    fl::ClientResult r;
    if (it != stash.end()) {
      r = std::move(it->second);
      stash.erase(it);
    } else {
      r = runner.Wait(e.ticket);
    }
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
      if (natural) {
        for (Event& e : round) e = upload(e);
      }
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
      if (!e.uploaded) {
        Event done = upload(e);
        done.seq = seq++;
        events.push(done);
        continue;
      }
      record_until(e.time - 1e-9);
      server.Receive(take(e));
      const int64_t d = pick();
      if (d >= 0) events.push(start(d, e.time, seq++));
    }
    // Drain the jobs still in flight so the workers stop cleanly.
    while (!events.empty()) {
      if (stash.count(events.top().ticket) == 0) runner.Wait(events.top().ticket);
      events.pop();
    }
  }
  record_until(config.duration_s);
  if (res.series.empty() || res.series.back().virtual_s < config.duration_s - 1e-9) {
    next_eval = config.duration_s;
    record_until(config.duration_s);
  }
  res.final_accuracy = res.series.back().accuracy;
  res.final_top3 = res.series.back().top3;
  res.final_perplexity = res.series.back().perplexity;
  if (env.language_model) {
    Personalize(config, env, mask, layout, client, eligible, server.weights(), runner, eval, &res);
  }
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
