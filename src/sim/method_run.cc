#include "method_run.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "ftte/core/check.h"
#include "ftte/data/tokenizer.h"
#include "ftte/fl/changed_rows.h"
#include "ftte/fl/encoding.h"

namespace ftte::sim::internal {

namespace {

using Clock = std::chrono::steady_clock;

// Tiles of the simulator's own training passes: as large as a whole batch of the built-in models'
// im2col (the host is not the device; the device's peak is measured by a probe step).
constexpr int64_t kHostTileFloats = int64_t{1} << 22;

int64_t Quantile(std::vector<int64_t> v, double q) {
  std::sort(v.begin(), v.end());
  const auto i = static_cast<size_t>(std::floor(q * static_cast<double>(v.size() - 1)));
  return v[std::min(i, v.size() - 1)];
}

double Top3(const StepResult& r) {
  return r.scored > 0 ? static_cast<double>(r.correct_top3) / static_cast<double>(r.scored) : 0.0;
}

}  // namespace

void Personalize(const SimConfig& config, const Environment& env, const fl::Strategy& strategy,
                 JobRunner& runner, Evaluator& eval, MethodResult* res) {
  const std::vector<float>& weights = strategy.weights();
  std::vector<size_t> candidates, chosen;
  for (size_t d = 0; d < env.devices.size(); ++d) {
    if (strategy.Eligible(env.devices[d].memory_bytes) && !env.test_partition[d].empty()) {
      candidates.push_back(d);
    }
  }
  const auto n = static_cast<int64_t>(candidates.size());
  if (config.personalize.steps > 0) {
    const int64_t k = config.personalize.users > 0 ? std::min(config.personalize.users, n) : n;
    for (int64_t i = 0; i < k; ++i) chosen.push_back(candidates[static_cast<size_t>(i * n / k)]);
  }
  auto tune = std::make_shared<fl::Plan>(strategy.plan());
  tune->client.local_steps = config.personalize.steps;
  auto start = std::make_shared<const std::vector<float>>(weights);
  std::vector<int64_t> tickets;
  for (size_t d : chosen) {
    const uint64_t seed = Rng(config.seed).Fork(0x9e4507a1 + static_cast<uint64_t>(d)).Next();
    tickets.push_back(runner.Submit(Job{start, tune, &env.partition[d], seed}));
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
    fl::AddMasked(r.update.delta, 1.0f, tune->mask, strategy.layout(), &mine);
    was.push_back(before[d]);
    now.push_back(Top3(eval.EvaluateSubset(mine, env.user_test, env.test_partition[d])));
  }
  res->personal_before = Summarize(was);
  res->personal_after = Summarize(now);
}

Evaluator::Evaluator(const std::string& model, const data::ImageDataset* test, int threads,
                     bool language_model, Cluster& cluster)
    : test_(test), cluster_(cluster) {
  model_ = MakeModel(model, 0).value();
  model_->SetAllTrainable(false);
  TrainerOptions o;
  // A language model's logits are T x vocab per sample: smaller batches keep them modest.
  const int64_t max_batch = model_->label_positions() > 1 ? 16 : 256;
  o.batch = std::min<int64_t>(max_batch, std::max<int64_t>(1, test->size));
  o.threads = threads;
  if (language_model) o.unscored_class = data::Tokenizer::kUnkId;
  trainer_ = std::make_unique<Trainer>(model_.get(), o);
}

const StepResult& Evaluator::Evaluate(const std::vector<float>& w, int64_t version) {
  if (version == cached_version_) return cached_;
  fl::SetWeights(*model_, w);
  cached_ = Run(*test_);
  cached_version_ = version;
  return cached_;
}

StepResult Evaluator::EvaluateSubset(const std::vector<float>& w, const data::ImageDataset& data,
                                     const std::vector<int64_t>& indices) {
  cached_version_ = -1;
  fl::SetWeights(*model_, w);
  return Run(data.Subset(indices));
}

StepResult Evaluator::Run(const data::ImageDataset& d) {
  if (cluster_.size() == 1) return trainer_->Evaluate(d.images.data(), d.labels.data(), d.size);
  // Contiguous shares of whole micro-batches: each rank computes its own first, then every
  // share is broadcast in rank order and combined as one process would.
  const int64_t micro = trainer_->options().micro();
  const int64_t batches = (d.size + micro - 1) / micro;
  const int64_t sample = d.size > 0 ? static_cast<int64_t>(d.images.size()) / d.size : 0;
  const int64_t per = model_->label_positions();
  const int64_t size = cluster_.size(), rank = cluster_.rank();
  const int64_t from = std::min(d.size, batches * rank / size * micro);
  const int64_t to = std::min(d.size, batches * (rank + 1) / size * micro);
  const std::vector<Trainer::LossSums> mine = trainer_->EvaluateBatches(
      d.images.data() + from * sample, d.labels.data() + from * per, to - from);
  std::vector<Trainer::LossSums> all;
  for (int r = 0; r < cluster_.size(); ++r) {
    std::vector<uint8_t> bytes;
    if (r == cluster_.rank()) {
      const auto* p = reinterpret_cast<const uint8_t*>(mine.data());
      bytes.assign(p, p + mine.size() * sizeof(Trainer::LossSums));
    }
    cluster_.Broadcast(r, &bytes);
    const size_t n = bytes.size() / sizeof(Trainer::LossSums);
    all.resize(all.size() + n);
    if (n > 0) std::memcpy(&all[all.size() - n], bytes.data(), n * sizeof(Trainer::LossSums));
  }
  return Trainer::Combine(all);
}

MethodRun::MethodRun(const SimConfig& config, const MethodConfig& method, const Environment& env,
                     const Progress& progress)
    : config_(config),
      method_(method),
      env_(env),
      progress_(progress),
      spec_(env.model.empty() ? config.model : env.model),
      rng_(Rng(config.seed).Fork(0x5e1ec7)),
      busy_(env.devices.size(), false),
      rounds_(env.devices.size(), 0),
      synced_(env.devices.size(), -1) {}

Status MethodRun::Setup() {
  res_.name = method_.name;
  res_.seed = config_.seed;
  res_.algorithm = fl::AlgorithmName(method_.server.algorithm);
  res_.language_model = env_.language_model;
  res_.reference = env_.reference;
  FTTE_ASSIGN_OR_RETURN(auto probe, MakeModel(spec_, config_.seed));
  const Shape data_shape = env_.language_model
                               ? Shape{env_.train.width}
                               : Shape{env_.train.channels, env_.train.height, env_.train.width};
  if (data_shape != probe->sample_shape()) {
    return InvalidArgument("model " + spec_ + " takes " + ShapeToString(probe->sample_shape()) +
                           " samples; " + config_.dataset + " has other shapes");
  }
  fl::PlanningInputs in;
  in.model_spec = spec_;
  in.seed = config_.seed;
  in.client = config_.client;
  if (method_.server.mask == "budget") {
    std::vector<int64_t> memories;
    for (const DeviceProfile& d : env_.devices) memories.push_back(d.memory_bytes);
    res_.budget_bytes = Quantile(memories, method_.budget_quantile);
  }
  in.budget_bytes = res_.budget_bytes;
  in.initial_weights = env_.initial_weights;
  const int64_t n = std::min<int64_t>(config_.calibration_samples, env_.train.size);
  if (n > 0) in.proxy = Samples{env_.train.images.data(), env_.train.labels.data(), n};
  in.cache = env_.plans.get();
  auto strategy = fl::Strategy::Create(EffectiveServerConfig(config_, method_), in);
  if (!strategy.ok()) return InvalidArgument(method_.name + ": " + strategy.status().message());
  strategy_ = std::move(strategy.value());
  const fl::Plan& plan = strategy_->plan();
  res_.trainable_params = plan.mask.Numel(strategy_->layout());
  res_.predicted_device_memory_bytes = plan.device_peak_bytes;
  for (const DeviceProfile& d : env_.devices)
    res_.excluded_devices += !strategy_->Eligible(d.memory_bytes);
  if (res_.excluded_devices == static_cast<int64_t>(env_.devices.size())) {
    return InvalidArgument(method_.name + ": no device has the " +
                           FormatBytes(plan.device_peak_bytes) +
                           " its training needs; raise devices.memory_* or use mask = \"budget\"");
  }
  const auto& layout = strategy_->layout();
  full_down_ = fl::EncodedSize(fl::Mask::Full(layout), layout, {false, false});
  res_.mask_update_bytes = Current().up_bytes;
  runner_ = std::make_unique<JobRunner>(config_.threads, spec_, &env_.train);
  eval_ = std::make_unique<Evaluator>(spec_, &env_.test, config_.threads, env_.language_model);
  res_.robust_report = method_.server.robust() || config_.attack.Enabled();
  res_.privacy_report = config_.privacy.Enabled();
  if (res_.privacy_report &&
      config_.privacy.delta * static_cast<double>(env_.devices.size()) >= 1) {
    return InvalidArgument(
        "[privacy] delta " + std::to_string(config_.privacy.delta) + " is at least 1 / " +
        std::to_string(env_.devices.size()) +
        " devices: a mechanism that publishes one device's data outright would meet it; use "
        "delta < 1 / devices (e.g. " +
        std::to_string(std::pow(static_cast<double>(env_.devices.size()), -1.1)) + ")");
  }
  if (config_.secure_aggregation.enabled) {
    secure_ = true;
    res_.secure_report = true;
    FTTE_ASSIGN_OR_RETURN(cohort_config_, SecureCohortConfig(config_.secure_aggregation,
                                                             strategy_->config().secure_cohort));
  }
  SetupAttack();
  return Status::Ok();
}

void MethodRun::SetupAttack() {
  const AttackConfig& a = config_.attack;
  attacker_.assign(env_.devices.size(), 0);
  if (!a.Enabled()) return;
  const auto n = static_cast<int64_t>(env_.devices.size());
  const int64_t count =
      std::clamp<int64_t>(std::llround(a.fraction * static_cast<double>(n)), 1, n);
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  Rng rng = Rng(config_.seed).Fork(0xa77ac4);
  for (int64_t i = n - 1; i > 0; --i) {
    std::swap(order[i], order[rng.Below(static_cast<uint64_t>(i + 1))]);
  }
  for (int64_t i = 0; i < count; ++i) attacker_[order[i]] = 1;
  if (a.kind != "label_flip") return;
  // Only the attackers' samples are copied (label y becomes C-1-y), not the whole set.
  std::vector<int64_t> all;
  for (int64_t d = 0; d < n; ++d) {
    if (!attacker_[d]) continue;
    std::vector<int64_t>& mine = flipped_at_[d];
    for (int64_t idx : env_.partition[d]) {
      mine.push_back(static_cast<int64_t>(all.size()));
      all.push_back(idx);
    }
  }
  flipped_ = env_.train.Subset(all);
  for (int32_t& y : flipped_.labels) y = flipped_.num_classes - 1 - y;
}

void MethodRun::Corrupt(int64_t ticket, fl::Update* u) const {
  const AttackConfig& a = config_.attack;
  const auto s = static_cast<float>(a.scale);
  if (a.kind == "sign_flip") {
    for (float& v : u->delta) v *= -s;
  } else if (a.kind == "scale") {
    for (float& v : u->delta) v *= s;
  } else if (a.kind == "random") {
    // A random direction with scale x the honest change's norm.
    double sq = 0;
    for (float v : u->delta) sq += static_cast<double>(v) * v;
    Rng rng = Rng(config_.seed).Fork(0xa77ac5 + static_cast<uint64_t>(ticket));
    std::vector<double> g(u->delta.size());
    double gsq = 0;
    for (double& x : g) {
      x = rng.Normal();
      gsq += x * x;
    }
    const double k = gsq > 0 ? a.scale * std::sqrt(sq / gsq) : 0.0;
    for (size_t i = 0; i < g.size(); ++i) u->delta[i] = static_cast<float>(k * g[i]);
  } else if (a.kind == "samples") {
    u->num_samples =
        std::max<int64_t>(1, std::llround(static_cast<double>(u->num_samples) * a.scale));
  }  // label_flip: the job trained on flipped labels (Start)
}

const MethodRun::PlanCosts& MethodRun::Current() {
  const fl::Plan& plan = strategy_->plan();
  if (costs_.plan != nullptr && costs_.plan->id == plan.id) return costs_;
  auto model = MakeModel(spec_, 0).value();
  costs_.plan = std::make_shared<const fl::Plan>(plan);
  auto run_plan = std::make_shared<fl::Plan>(plan);
  run_plan->client.micro_batch = 0;
  run_plan->client.tile_floats = kHostTileFloats;
  costs_.run_plan = run_plan;
  costs_.step_flops = fl::StepFlops(*model, plan.mask, plan.client.batch);
  costs_.up_bytes = fl::EncodedSize(plan.mask, strategy_->layout(), method_.upload);
  // One real step at the planned micro-batch, on the first device with data: what a device holds.
  auto probe = fl::ClientTrainer::Create(spec_).value();
  fl::ClientConfig one = plan.client;
  one.local_steps = 1;
  const auto& first = *std::find_if(env_.partition.begin(), env_.partition.end(),
                                    [](const std::vector<int64_t>& p) { return !p.empty(); });
  costs_.measured_peak =
      probe->Train(strategy_->weights(), plan.mask, env_.train, first, one, 0).peak_bytes;
  return costs_;
}

int64_t MethodRun::PickDevice() {
  // A random idle, eligible device that accepts work (availability), or -1.
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const auto d = static_cast<size_t>(rng_.Below(env_.devices.size()));
    if (busy_[d] || !strategy_->Eligible(env_.devices[d].memory_bytes)) continue;
    if (!strategy_->CanContribute(static_cast<int64_t>(d))) continue;  // privacy budget spent
    if (rng_.Uniform() >= env_.devices[d].availability) continue;
    return static_cast<int64_t>(d);
  }
  return -1;
}

// A first download is the whole model; later ones the rows that changed since the device's
// version (sparse, as `ftte serve` sends them).
int64_t MethodRun::DownloadBytes(int64_t device) {
  const int64_t known = synced_[device];
  synced_[device] = strategy_->version();
  if (known < 0) return full_down_;
  if (known == strategy_->version()) return 0;
  const auto& layout = strategy_->layout();
  const std::vector<int64_t>& versions = strategy_->row_versions();
  fl::Mask changed;
  size_t row = 0;
  for (const fl::ParamLayout& p : layout) {
    std::vector<uint8_t> rows(static_cast<size_t>(p.rows));
    for (int64_t r = 0; r < p.rows; ++r, ++row) rows[r] = versions[row] > known;
    changed.rows.push_back(std::move(rows));
  }
  return fl::EncodedSize(changed, layout, {true, false});
}

double MethodRun::ComputeSeconds(int64_t device, const PlanCosts& costs) const {
  const int64_t steps =
      fl::LocalSteps(costs.plan->client, static_cast<int64_t>(env_.partition[device].size()));
  const DeviceProfile& p = env_.devices[device];
  return static_cast<double>(steps) * static_cast<double>(costs.step_flops) / p.flops_per_s *
         p.slowdown;
}

// Starts a device at virtual time t: download, train (submitted to the workers), upload.
Event MethodRun::Start(int64_t device, double t) {
  const PlanCosts& costs = Current();
  const int64_t down = DownloadBytes(device);
  res_.bytes_down += down;
  busy_[device] = true;
  if (snapshot_version_ != strategy_->version()) {
    snapshot_ = std::make_shared<const std::vector<float>>(strategy_->weights());
    snapshot_version_ = strategy_->version();
  }
  const uint64_t seed =
      Rng(config_.seed).Fork(static_cast<uint64_t>(device) * 1000003 + rounds_[device]++).Next();
  const AttackConfig& attack = config_.attack;
  const bool malicious =
      attacker_[device] && (attack.max_updates == 0 || malicious_launched_ < attack.max_updates);
  Job job{snapshot_, costs.run_plan, &env_.partition[device], seed};
  if (malicious && attack.kind == "label_flip") {
    job.indices = &flipped_at_.at(device);
    job.data = &flipped_;
  }
  const int64_t ticket = runner_->Submit(job);
  if (malicious) {
    malicious_.insert(ticket);
    ++malicious_launched_;
  }
  ticket_peak_[ticket] = costs.measured_peak;
  const DeviceProfile& p = env_.devices[device];
  const double trained = t + 2 * p.latency_s + static_cast<double>(down) / p.downlink_bytes_per_s +
                         ComputeSeconds(device, costs);
  if (secure_) {  // the upload is the protocol's masked input (JoinCohort)
    return Event{trained, seq_++, device, ticket, strategy_->version(), 0};
  }
  if (method_.upload_changed_rows) {
    return Event{trained, seq_++, device, ticket, strategy_->version(), 0, false};
  }
  return Event{trained + static_cast<double>(costs.up_bytes) / p.uplink_bytes_per_s,
               seq_++,
               device,
               ticket,
               strategy_->version(),
               costs.up_bytes};
}

// Phase two of a natural-sparse event: fetch the result, count its real bytes, and move the
// event to the end of the upload.
Event MethodRun::Upload(Event e) {
  fl::ClientResult r = runner_->Wait(e.ticket);
  const fl::Mask& mask = strategy_->PlanAt(e.base_version).mask;
  e.up_bytes = fl::EncodedSize(fl::ChangedRows(r.update.delta, mask, strategy_->layout()),
                               strategy_->layout(), {true, method_.upload.int8});
  e.time += static_cast<double>(e.up_bytes) / env_.devices[e.device].uplink_bytes_per_s;
  e.uploaded = true;
  stash_.emplace(e.ticket, std::move(r));
  return e;
}

fl::Update MethodRun::Take(const Event& e) {
  auto it = stash_.find(e.ticket);
  fl::ClientResult r;
  if (it != stash_.end()) {
    r = std::move(it->second);
    stash_.erase(it);
  } else {
    r = runner_->Wait(e.ticket);
  }
  r.update.base_version = e.base_version;
  r.update.device = e.device;
  if (malicious_.erase(e.ticket) > 0) {
    Corrupt(e.ticket, &r.update);
    ++res_.malicious_updates;
  }
  res_.peak_device_memory_bytes =
      std::max(res_.peak_device_memory_bytes, ticket_peak_.at(e.ticket));
  ticket_peak_.erase(e.ticket);
  res_.bytes_up += e.up_bytes;
  busy_[e.device] = false;
  return std::move(r.update);
}

void MethodRun::RecordUntil(double t) {
  while (next_eval_ <= t + 1e-9 && next_eval_ <= config_.duration_s + 1e-9) {
    const StepResult& r = eval_->Evaluate(strategy_->weights(), strategy_->version());
    // Images: of samples (as always); text: of held-out positions whose target is not <unk>.
    const double acc =
        static_cast<double>(r.correct) /
        static_cast<double>(env_.language_model ? std::max<int64_t>(1, r.scored) : env_.test.size);
    SeriesPoint p{next_eval_, acc, r.loss, res_.bytes_up, res_.bytes_down, strategy_->version()};
    if (env_.language_model) {
      p.top3 = Top3(r);
      p.perplexity = r.perplexity();
    }
    if (res_.privacy_report) p.epsilon = strategy_->PrivacySpent().epsilon;
    res_.series.push_back(p);
    if (progress_) progress_(method_.name, next_eval_, acc, res_.privacy_report ? p.epsilon : -1);
    next_eval_ += config_.eval_every_s;
  }
}

// Synchronous rounds: sample devices (over-selecting if asked), wait for the first
// `concurrency` (or the deadline), aggregate, repeat.
void MethodRun::RunRounds() {
  const fl::ServerConfig& s = method_.server;
  const auto sampled = static_cast<int64_t>(
      std::ceil(static_cast<double>(s.concurrency) * std::max(1.0, s.over_selection)));
  double t = 0;
  while (t < config_.duration_s) {
    std::vector<Event> round;
    for (int64_t i = 0; i < sampled; ++i) {
      const int64_t d = PickDevice();
      if (d < 0) break;
      round.push_back(Start(d, t));
    }
    if (round.empty()) break;
    if (method_.upload_changed_rows) {
      for (Event& e : round) e = Upload(e);
    }
    std::vector<Event> by_time = round;
    std::sort(by_time.begin(), by_time.end(), [](const Event& a, const Event& b) {
      return a.time != b.time ? a.time < b.time : a.seq < b.seq;
    });
    const size_t keep = std::min<size_t>(by_time.size(), static_cast<size_t>(s.concurrency));
    double end = by_time[keep - 1].time;
    if (s.round_deadline_s > 0) end = std::min(end, t + s.round_deadline_s);
    std::vector<fl::Update> updates;
    for (const Event& e : round) {
      fl::Update u = Take(e);
      const bool kept = e.time <= end &&
                        std::find_if(by_time.begin(), by_time.begin() + keep, [&](const Event& k) {
                          return k.seq == e.seq;
                        }) != by_time.begin() + keep;
      if (kept) updates.push_back(std::move(u));
    }
    if (end > config_.duration_s) break;
    RecordUntil(end - 1e-9);
    strategy_->AggregateRound(updates);
    t = end;
  }
}

// Asynchronous: keep `concurrency` devices training; each finished update goes to the server,
// and its device's slot goes to another device at once.
void MethodRun::RunAsync() {
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events;
  for (int64_t i = 0; i < method_.server.concurrency; ++i) {
    const int64_t d = PickDevice();
    if (d < 0) break;
    events.push(Start(d, 0.0));
  }
  while (!events.empty()) {
    const Event e = events.top();
    events.pop();
    if (e.time > config_.duration_s) break;
    if (e.cohort >= 0) {
      RecordUntil(e.time - 1e-9);
      CompleteCohort(e.cohort);
      // Slots that found no idle device (all busy training or in a cohort) take the devices
      // this cohort freed.
      for (int64_t d; waiting_slots_ > 0 && (d = PickDevice()) >= 0; --waiting_slots_) {
        events.push(Start(d, e.time));
      }
      continue;
    }
    if (e.free_slot) {
      const int64_t d = PickDevice();
      if (d >= 0) {
        events.push(Start(d, e.time));
      } else {
        ++waiting_slots_;
      }
      continue;
    }
    if (!e.uploaded) {
      Event done = Upload(e);
      done.seq = seq_++;
      events.push(done);
      continue;
    }
    RecordUntil(e.time - 1e-9);
    if (secure_) {  // the slot frees once the member's masked input is in (JoinCohort)
      JoinCohort(Take(e), e.time, &events);
      continue;
    }
    strategy_->Receive(Take(e));
    const int64_t d = PickDevice();
    if (d >= 0) events.push(Start(d, e.time));
  }
  // Drain the jobs still in flight so the workers stop cleanly.
  while (!events.empty()) {
    const Event& e = events.top();
    if (e.ticket >= 0 && stash_.count(e.ticket) == 0) runner_->Wait(e.ticket);
    events.pop();
  }
}

template <typename Queue>
void MethodRun::JoinCohort(fl::Update u, double t, Queue* events) {
  if (strategy_->Stale(u.base_version)) {  // too old to join: lost, counted; slot free
    ++res_.secure_lost;
    Event slot{t, seq_++, -1, -1, 0, 0};
    slot.free_slot = true;
    events->push(slot);
    return;
  }
  busy_[u.device] = true;  // in the protocol until its cohort ends
  filling_.push_back(std::move(u));
  if (static_cast<int>(filling_.size()) < cohort_config_.members) return;
  Cohort c;
  std::vector<uint8_t> drop(filling_.size(), 0);
  std::vector<const DeviceProfile*> devices;
  Rng rng = Rng(config_.seed ^ 0x5ecA'66ULL).Fork(static_cast<uint64_t>(cohort_count_));
  for (size_t i = 0; i < filling_.size(); ++i) {
    const fl::Update& m = filling_[i];  // what the server knows of it: no delta, no statistics
    fl::Update known;
    known.device = m.device;
    known.base_version = m.base_version;
    known.num_samples = m.num_samples;
    known.update_id = m.update_id;
    c.members.push_back(std::move(known));
    devices.push_back(&env_.devices[filling_[i].device]);
    drop[i] = rng.Uniform() < config_.secure_aggregation.dropout;
  }
  c.w = strategy_->CohortWeights(c.members);
  fl::secagg::CohortConfig cohort = cohort_config_;
  cohort.cohort_id = static_cast<uint64_t>(cohort_count_);
  c.result = RunSecureCohort(cohort, *strategy_, filling_, c.w, drop, devices, config_.seed);
  for (size_t i = 0; i < filling_.size(); ++i) {
    res_.bytes_up += c.result.up_bytes[i];
    res_.bytes_down += c.result.down_bytes[i];
  }
  for (size_t i = 0; i < filling_.size(); ++i) {
    Event slot{t + c.result.input_done_s[i], seq_++, -1, -1, 0, 0};
    slot.free_slot = true;
    events->push(slot);
  }
  filling_.clear();
  Event done{t + c.result.duration_s, seq_++, -1, -1, 0, 0};
  done.cohort = cohort_count_;
  cohorts_.emplace(cohort_count_++, std::move(c));
  events->push(done);
}

void MethodRun::CompleteCohort(int64_t id) {
  auto it = cohorts_.find(id);
  FTTE_CHECK(it != cohorts_.end()) << "cohort " << id;
  const Cohort& c = it->second;
  for (const fl::Update& m : c.members) busy_[m.device] = false;
  ++res_.secure_cohorts;
  protocol_s_ += c.result.duration_s;
  res_.secure_clamped += c.result.clamped;
  if (c.result.aborted) {
    ++res_.secure_aborted;
    res_.secure_lost += static_cast<int64_t>(c.members.size());
  } else {
    res_.secure_lost += static_cast<int64_t>(c.members.size() - c.result.contributors.size());
    std::vector<fl::Update> members;
    std::vector<double> w;
    for (size_t i : c.result.contributors) {
      members.push_back(c.members[i]);
      w.push_back(c.w[i]);
    }
    strategy_->ReceiveCohort(members, w, c.result.sum);
  }
  cohorts_.erase(it);
}

void MethodRun::Finish() {
  RecordUntil(config_.duration_s);
  if (res_.series.empty() || res_.series.back().virtual_s < config_.duration_s - 1e-9) {
    next_eval_ = config_.duration_s;
    RecordUntil(config_.duration_s);
  }
  res_.targets = TargetTimes(res_.series, config_.AllTargets(),
                             env_.language_model && config_.target_metric == "top3");
  res_.time_to_target_s = res_.targets.front().held_s;
  res_.final_accuracy = res_.series.back().accuracy;
  res_.final_top3 = res_.series.back().top3;
  res_.final_perplexity = res_.series.back().perplexity;
  const fl::ServerStats& st = strategy_->stats();
  res_.updates_received = st.received;
  res_.updates_applied = st.applied;
  res_.dropped_stale = st.dropped_stale;
  res_.versions = st.aggregations;
  res_.replans = st.replans;
  res_.clipped = st.clipped;
  res_.samples_capped = st.samples_capped;
  res_.filtered = st.filtered;
  if (res_.privacy_report) {
    const fl::Strategy::Privacy p = strategy_->PrivacySpent();
    res_.epsilon = p.epsilon;
    res_.dp_delta = config_.privacy.delta;
    res_.dp_noise_multiplier = config_.privacy.NoiseMultiplier();
    res_.dp_final_clip = strategy_->dp_clip();
    res_.dp_max_load = p.max_load;
    res_.dp_clipped = st.dp_clipped;
    res_.dp_refused = st.dp_refused;
    res_.dp_oversized = st.dp_oversized;
    res_.dp_distributed = config_.privacy.mode == "distributed";
  }
  if (res_.secure_cohorts > 0) {
    res_.secure_protocol_s = protocol_s_ / static_cast<double>(res_.secure_cohorts);
  }
  res_.staleness = st.staleness;
  res_.final_weights = strategy_->weights();
}

Result<MethodResult> MethodRun::Run() {
  const auto wall_start = Clock::now();
  FTTE_RETURN_IF_ERROR(Setup());
  if (strategy_->synchronous()) {
    RunRounds();
  } else {
    RunAsync();
  }
  Finish();
  // (Not in tuning trials: per-user scores use the held-out text, which settings never see.)
  if (env_.language_model && !config_.on_validation) {
    Personalize(config_, env_, *strategy_, *runner_, *eval_, &res_);
  }
  res_.wall_s = std::chrono::duration<double>(Clock::now() - wall_start).count();
  return res_;
}

}  // namespace ftte::sim::internal
