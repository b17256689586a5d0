#include "coordinator.h"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "ftte/core/mask.h"
#include "ftte/data/idx.h"
#include "ftte/data/tokenizer.h"
#include "ftte/fl/changed_rows.h"
#include "ftte/fl/encoding.h"
#include "wire.h"

namespace ftte::net {

namespace {

constexpr uint32_t kSnapshotFormat = 2;  // 2: plans, FTTE's importance, momentum per value

// 256 random bits as hex (libsodium's CSPRNG).
std::string NewToken() {
  unsigned char raw[32];
  randombytes_buf(raw, sizeof raw);
  char hex[2 * sizeof raw + 1];
  sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
  return hex;
}

// What the server keeps of a token: its BLAKE2b-256 hash (tokens are 256 random bits, so no
// salt is needed), so that the state directory alone does not let anyone act as a device.
std::string TokenHash(const std::string& token) {
  unsigned char h[crypto_generichash_BYTES];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(token.data()),
                     token.size(), nullptr, 0);
  return std::string(reinterpret_cast<const char*>(h), sizeof h);
}

// Compares secrets in time independent of where they differ.
bool SameSecret(const std::string& a, const std::string& b) {
  if (a.size() != b.size() || b.empty()) return false;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

// A string a device chose, made safe for a log line: control characters, quotes and
// backslashes as \xNN (a name cannot forge lines or break out of its quotes), at most 64
// bytes of it, in single quotes.
std::string LogQuoted(const std::string& s) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < 64; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > 64) out += "...";
  return out + "'";
}

std::string Encode(const fl::Update& u, const fl::Mask& mask,
                   const std::vector<fl::ParamLayout>& layout) {
  return fl::EncodeUpdate(u, mask, layout, {true, false});
}

}  // namespace

Coordinator::Coordinator(const ServeConfig& config, Clock clock, Logger log)
    : config_(config), clock_(std::move(clock)), log_(std::move(log)) {
  if (!log_) log_ = [](const std::string&) {};
}

Coordinator::~Coordinator() = default;

Result<std::unique_ptr<Coordinator>> Coordinator::Create(const ServeConfig& config,
                                                         data::ImageDataset eval, Clock clock,
                                                         Logger log,
                                                         std::vector<float> initial_weights) {
  if (sodium_init() < 0) {
    return Status(StatusCode::kInternal, "libsodium could not initialise (no entropy source?)");
  }
  if (config.enroll_key.empty()) {
    return InvalidArgument(
        "no enrolment key: set [auth] enroll_key (a secret shipped with the "
        "device app)");
  }
  std::unique_ptr<Coordinator> c(new Coordinator(config, std::move(clock), std::move(log)));
  FTTE_RETURN_IF_ERROR(c->Init(std::move(eval), std::move(initial_weights)));
  return c;
}

Status Coordinator::Init(data::ImageDataset eval, std::vector<float> initial_weights) {
  FTTE_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, MakeModel(config_.model, config_.seed));
  layout_ = fl::LayoutOf(*model);
  int64_t numel = 1;
  for (int64_t d : model->sample_shape()) numel *= d;
  if (eval.size == 0 || eval.sample_numel() != numel) {
    return InvalidArgument("the evaluation set has " + std::to_string(eval.size) + " samples of " +
                           std::to_string(eval.sample_numel()) + " values; model '" +
                           config_.model + "' takes " + std::to_string(numel));
  }
  fl::PlanningInputs in;
  in.model_spec = config_.model;
  in.seed = config_.seed;
  in.initial_weights = std::move(initial_weights);
  in.client = config_.client;
  in.budget_bytes = config_.budget_bytes;
  data::ImageDataset proxy;
  if (config_.proxy_samples > 0) {
    FTTE_ASSIGN_OR_RETURN(proxy, data::LoadFashionMnist(config_.proxy_data, true));
    proxy = proxy.Head(config_.proxy_samples);
    if (proxy.sample_numel() != numel) {
      return InvalidArgument("[model] proxy_data holds samples of " +
                             std::to_string(proxy.sample_numel()) + " values; model '" +
                             config_.model + "' takes " + std::to_string(numel));
    }
    in.proxy = Samples{proxy.images.data(), proxy.labels.data(), proxy.size};
  }
  FTTE_ASSIGN_OR_RETURN(strategy_, fl::Strategy::Create(config_.strategy, in));

  FTTE_ASSIGN_OR_RETURN(store_, StateStore::Open(config_.state_dir, config_.fsync));
  FTTE_ASSIGN_OR_RETURN(StateStore::Loaded loaded, store_->Load());
  if (loaded.snapshot) {
    FTTE_RETURN_IF_ERROR(Restore(loaded));
  } else {
    const fl::Plan& plan = strategy_->plan();
    log_("starting a new federation in " + config_.state_dir + ": " + config_.model + ", " +
         fl::AlgorithmName(config_.strategy.algorithm) + ", " +
         std::to_string(plan.mask.Numel(layout_)) + " trainable values, a job needs " +
         std::to_string(plan.device_peak_bytes >> 10) + " KiB");
    FTTE_RETURN_IF_ERROR(Checkpoint());
  }
  if (config_.secure && config_.strategy.algorithm == fl::Algorithm::kFtte &&
      config_.strategy.reselect != fl::Reselect::kFixed && config_.proxy_samples == 0) {
    log_(
        "note: under secure aggregation the devices' importance reports stay hidden, so FTTE's "
        "re-plans have no importance to rank rows by (only their size and, rotating, their "
        "time out of the plan); declare a proxy set "
        "(model.proxy_samples) for importance-ranked re-plans");
  }
  last_snapshot_ = clock_();

  eval_ = std::move(eval);
  if (config_.eval_samples > 0) eval_ = eval_.Head(config_.eval_samples);
  eval_model_ = std::move(model);
  eval_model_->SetAllTrainable(false);
  TrainerOptions eo;
  if (eval_.labels_per_sample > 1) {
    // A language model: T x vocab logits per sample (smaller batches), and accuracy is over
    // the held-out positions whose target is not <unk>, as in the simulator.
    eo.batch = std::min<int64_t>(16, eval_.size);
    eo.unscored_class = data::Tokenizer::kUnkId;
  } else {
    eo.batch = std::min<int64_t>(256, eval_.size);
  }
  eval_trainer_ = std::make_unique<Trainer>(eval_model_.get(), eo);
  return Status::Ok();
}

Status Coordinator::Restore(const StateStore::Loaded& loaded) {
  const state::Snapshot& s = *loaded.snapshot;
  const std::string dir = config_.state_dir;
  if (s.format() != kSnapshotFormat) {
    return DataLoss(dir + ": snapshot format " + std::to_string(s.format()) + " is not " +
                    std::to_string(kSnapshotFormat) +
                    " (written by another version of ftte); point [server] state_dir elsewhere or "
                    "remove it to start over");
  }
  if (s.model() != config_.model ||
      s.algorithm() != fl::AlgorithmName(config_.strategy.algorithm)) {
    return FailedPrecondition(
        dir + " holds a " + s.algorithm() + " federation of model '" + s.model() + "', not " +
        fl::AlgorithmName(config_.strategy.algorithm) + " of '" + config_.model +
        "'; point [server] state_dir elsewhere or remove it to start over");
  }
  fl::ServerState st;
  for (const state::Plan& sp : s.plans()) {
    fl::Plan p;
    p.id = sp.id();
    p.from_version = sp.from_version();
    FTTE_ASSIGN_OR_RETURN(p.mask, UnpackMaskBits(sp.mask(), layout_));
    p.client = strategy_->plan().client;
    p.client.micro_batch = sp.micro_batch();
    p.device_peak_bytes = sp.device_peak_bytes();
    st.plans.push_back(std::move(p));
  }
  if (st.plans.empty()) return DataLoss(dir + ": the snapshot holds no plan");
  st.version = s.version();
  st.weights.assign(s.weights().begin(), s.weights().end());
  st.momentum.assign(s.momentum().begin(), s.momentum().end());
  st.row_versions.assign(s.row_versions().begin(), s.row_versions().end());
  // Logged and buffered updates are stored as received: over any subset of their plan's mask
  // (the snapshot's plans until they are restored, the strategy's after).
  const std::vector<fl::Plan>* plans = &st.plans;
  auto decode = [&](const std::string& bytes) -> Result<fl::Update> {
    FTTE_ASSIGN_OR_RETURN(fl::DecodedUpdate d, fl::DecodeUpdate(bytes, layout_));
    const int64_t base = d.update.base_version;
    if (plans == nullptr) return fl::ExpandToMask(d, strategy_->PlanAt(base).mask, layout_);
    auto it = std::find_if(plans->rbegin(), plans->rend(),
                           [&](const fl::Plan& p) { return p.from_version <= base; });
    return fl::ExpandToMask(d, it == plans->rend() ? plans->front().mask : it->mask, layout_);
  };
  for (const state::BufferedUpdate& b : s.buffer()) {
    FTTE_ASSIGN_OR_RETURN(fl::Update u, decode(b.encoded()));
    st.buffer.push_back(std::move(u));
  }
  st.stats.received = s.received();
  st.stats.aggregations = s.aggregations();
  st.stats.applied = s.applied();
  st.stats.dropped_stale = s.dropped_stale();
  st.stats.replans = s.replans();
  st.stats.refused = s.refused_aggregations();
  st.stats.clipped = s.clipped();
  st.stats.samples_capped = s.samples_capped();
  st.stats.filtered = s.filtered();
  st.recent_norms.assign(s.recent_norms().begin(), s.recent_norms().end());
  st.recent_samples.assign(s.recent_samples().begin(), s.recent_samples().end());
  for (const auto& [tau, n] : s.staleness()) st.stats.staleness[tau] = n;
  st.stats.dp_clipped = s.dp_clipped();
  st.stats.dp_refused = s.dp_refused();
  for (const auto& [device, load] : s.dp_load()) st.stats.dp_load[device] = load;
  st.dp_clip = s.dp_clip();
  st.stats.dp_oversized = s.dp_oversized();
  FTTE_RETURN_IF_ERROR(RestoreImportance(s, &st.importance));
  FTTE_RETURN_IF_ERROR(strategy_->Restore(std::move(st)));
  plans = nullptr;
  for (const state::Device& d : s.devices()) AddDevice(d);
  for (const state::BufferedUpdate& b : s.round_updates()) {
    FTTE_ASSIGN_OR_RETURN(fl::Update u, decode(b.encoded()));
    round_.push_back(std::move(u));
  }
  for (const state::LogRecord& r : loaded.log) {
    if (r.has_enroll()) {
      AddDevice(r.enroll());
    } else if (r.has_update()) {
      FTTE_ASSIGN_OR_RETURN(fl::Update u, decode(r.update().encoded()));
      if (u.device < 0 || u.device >= static_cast<int64_t>(devices_.size())) {
        return DataLoss(dir + ": the log names unknown device " + std::to_string(u.device));
      }
      Apply(u);
    } else if (r.has_round_close()) {
      CloseRound();
    } else if (r.has_cohort()) {
      FTTE_RETURN_IF_ERROR(ApplyCohort(r.cohort()));
    }
  }
  log_("resumed from " + dir + " at version " + std::to_string(strategy_->version()) + " with " +
       std::to_string(devices_.size()) + " devices; replayed " + std::to_string(loaded.log.size()) +
       " logged records" +
       (loaded.torn_bytes > 0
            ? " (dropped a torn tail of " + std::to_string(loaded.torn_bytes) + " bytes)"
            : ""));
  // Fold the replayed log into a fresh snapshot.
  return Checkpoint();
}

// FTTE's importance table from the snapshot (empty for the other strategies).
Status Coordinator::RestoreImportance(const state::Snapshot& s, fl::ImportanceTable* t) const {
  const size_t rows = static_cast<size_t>(
      std::accumulate(layout_.begin(), layout_.end(), int64_t{0},
                      [](int64_t n, const fl::ParamLayout& p) { return n + p.rows; }));
  if (s.importance_size() == 0) return Status::Ok();
  if (static_cast<size_t>(s.importance_size()) != rows ||
      static_cast<size_t>(s.last_planned_size()) != rows ||
      s.importance_known().size() * 8 < rows) {
    return DataLoss(config_.state_dir + ": the snapshot's importance table does not fit the model");
  }
  size_t row = 0;
  for (const fl::ParamLayout& p : layout_) {
    t->value.emplace_back();
    t->known.emplace_back();
    t->last_planned.emplace_back();
    for (int64_t r = 0; r < p.rows; ++r, ++row) {
      t->value.back().push_back(s.importance(static_cast<int>(row)));
      t->known.back().push_back((static_cast<uint8_t>(s.importance_known()[row / 8]) >> (row % 8)) &
                                1);
      t->last_planned.back().push_back(s.last_planned(static_cast<int>(row)));
    }
  }
  return Status::Ok();
}

void Coordinator::AddDevice(const state::Device& d) {
  const auto id = static_cast<size_t>(d.id());
  if (devices_.size() <= id) devices_.resize(id + 1);
  DeviceRec& rec = devices_[id];
  if (!rec.token_hash.empty()) by_token_.erase(rec.token_hash);
  rec.name = d.name();
  // State written before tokens were hashed holds the token itself: hashed on the way in.
  rec.token_hash = d.token_hash().empty() ? TokenHash(d.token()) : d.token_hash();
  rec.budget = d.memory_budget_bytes();
  rec.eligible = d.eligible();
  // (An enrolment record carries neither: the device's history stays.) State written before
  // the count existed holds every id ever accepted.
  if (d.accepted_count() > 0 || d.accepted_update_ids_size() > 0) {
    rec.recent_ids.assign(d.accepted_update_ids().begin(), d.accepted_update_ids().end());
    rec.accepted = d.accepted_count() > 0 ? d.accepted_count() : d.accepted_update_ids_size();
  }
  by_token_[rec.token_hash] = d.id();
  by_name_[rec.name] = d.id();
}

state::Snapshot Coordinator::MakeSnapshot() const {
  state::Snapshot s;
  s.set_format(kSnapshotFormat);
  s.set_model(config_.model);
  s.set_algorithm(fl::AlgorithmName(config_.strategy.algorithm));
  const fl::ServerState st = strategy_->State();
  s.set_version(st.version);
  *s.mutable_weights() = {st.weights.begin(), st.weights.end()};
  *s.mutable_momentum() = {st.momentum.begin(), st.momentum.end()};
  for (const fl::Update& u : st.buffer) {
    s.add_buffer()->set_encoded(Encode(u, strategy_->PlanAt(u.base_version).mask, layout_));
  }
  for (const fl::Update& u : round_) {
    s.add_round_updates()->set_encoded(Encode(u, strategy_->PlanAt(u.base_version).mask, layout_));
  }
  for (const fl::Plan& p : st.plans) {
    state::Plan* sp = s.add_plans();
    sp->set_id(p.id);
    sp->set_from_version(p.from_version);
    sp->set_mask(PackMaskBits(p.mask, layout_));
    sp->set_micro_batch(p.client.micro_batch);
    sp->set_device_peak_bytes(p.device_peak_bytes);
  }
  s.set_replans(st.stats.replans);
  s.set_refused_aggregations(st.stats.refused);
  s.set_clipped(st.stats.clipped);
  s.set_samples_capped(st.stats.samples_capped);
  s.set_filtered(st.stats.filtered);
  for (double n : st.recent_norms) s.add_recent_norms(n);
  for (int64_t n : st.recent_samples) s.add_recent_samples(n);
  if (!st.importance.value.empty()) {
    std::string known;
    size_t row = 0;
    for (size_t k = 0; k < layout_.size(); ++k) {
      for (int64_t r = 0; r < layout_[k].rows; ++r, ++row) {
        if (row % 8 == 0) known.push_back('\0');
        if (st.importance.known[k][r]) known.back() |= static_cast<char>(1 << (row % 8));
        s.add_importance(st.importance.value[k][r]);
        s.add_last_planned(st.importance.last_planned[k][r]);
      }
    }
    s.set_importance_known(known);
  }
  for (size_t i = 0; i < devices_.size(); ++i) {
    const DeviceRec& d = devices_[i];
    state::Device* p = s.add_devices();
    p->set_id(static_cast<int64_t>(i));
    p->set_name(d.name);
    p->set_token_hash(d.token_hash);
    p->set_memory_budget_bytes(d.budget);
    p->set_eligible(d.eligible);
    for (int64_t u : d.recent_ids) p->add_accepted_update_ids(u);
    p->set_accepted_count(d.accepted);
  }
  *s.mutable_row_versions() = {st.row_versions.begin(), st.row_versions.end()};
  s.set_received(st.stats.received);
  s.set_aggregations(st.stats.aggregations);
  s.set_applied(st.stats.applied);
  s.set_dropped_stale(st.stats.dropped_stale);
  for (const auto& [tau, n] : st.stats.staleness) (*s.mutable_staleness())[tau] = n;
  s.set_dp_clipped(st.stats.dp_clipped);
  s.set_dp_refused(st.stats.dp_refused);
  for (const auto& [device, load] : st.stats.dp_load) (*s.mutable_dp_load())[device] = load;
  s.set_dp_clip(st.dp_clip);
  s.set_dp_oversized(st.stats.dp_oversized);
  s.set_mask(PackMaskBits(strategy_->plan().mask, layout_));
  return s;
}

Status Coordinator::Checkpoint() {
  std::lock_guard<std::mutex> lock(mu_);
  state::Snapshot s = MakeSnapshot();
  FTTE_RETURN_IF_ERROR(store_->WriteSnapshot(&s));
  last_snapshot_ = clock_();
  return Status::Ok();
}

Result<v1::EnrollResponse> Coordinator::Enroll(const v1::EnrollRequest& req) {
  if (req.schema_revision() != kSchemaRevision) {
    return FailedPrecondition("the device speaks schema revision " +
                              std::to_string(req.schema_revision()) + "; this server speaks " +
                              std::to_string(kSchemaRevision) + "; update the device software");
  }
  if (!SameSecret(req.enroll_key(), config_.enroll_key)) {
    std::lock_guard<std::mutex> lock(mu_);
    ++rejected_["enrol: bad key"];
    log_("refused an enrolment as " + LogQuoted(req.device_name()) + ": wrong enrolment key");
    return Unauthenticated("enrolment key refused; use the key provisioned with this app");
  }
  if (req.device_name().empty() || req.device_name().size() > 128 ||
      std::any_of(req.device_name().begin(), req.device_name().end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c < 0x20 || c == 0x7f;
      })) {
    return InvalidArgument(
        "device name must have 1 to 128 bytes and no control characters (newlines, tabs, ...); "
        "use a stable install id such as a UUID");
  }
  if (req.memory_budget_bytes() <= 0) {
    return InvalidArgument("memory budget must be > 0 bytes");
  }
  std::lock_guard<std::mutex> lock(mu_);
  state::Device d;
  auto it = by_name_.find(req.device_name());
  // A known name is re-enrolled only by the device that holds its current token (proof of
  // possession); another device choosing the same name never revokes it.
  if (it != by_name_.end() &&
      !SameSecret(TokenHash(req.token()), devices_[static_cast<size_t>(it->second)].token_hash)) {
    ++rejected_["enrol: name taken"];
    log_("refused an enrolment as " + LogQuoted(req.device_name()) +
         ": the name is enrolled and the request does not hold its token");
    return FailedPrecondition(
        "the device name is enrolled by another device; re-enrolling it needs "
        "that device's current token (EnrollRequest.token), otherwise choose "
        "another name (a stable install id such as a UUID)");
  }
  d.set_id(it != by_name_.end() ? it->second : static_cast<int64_t>(devices_.size()));
  d.set_name(req.device_name());
  const std::string token = NewToken();
  d.set_token_hash(TokenHash(token));
  d.set_memory_budget_bytes(req.memory_budget_bytes());
  const int64_t need = strategy_->plan().device_peak_bytes;
  d.set_eligible(strategy_->Eligible(req.memory_budget_bytes()));
  state::LogRecord rec;
  *rec.mutable_enroll() = d;
  FTTE_RETURN_IF_ERROR(store_->Append(rec));
  AddDevice(d);
  log_("enrolled device " + std::to_string(d.id()) + " " + LogQuoted(d.name()) + " (budget " +
       std::to_string(d.memory_budget_bytes() >> 10) + " KiB" +
       (d.eligible() ? ""
                     : ", below the " + std::to_string(need >> 10) + " KiB a job needs: excluded") +
       ")");
  v1::EnrollResponse resp;
  resp.set_device_id(d.id());
  resp.set_token(token);
  resp.set_model(config_.model);
  LayoutToProto(layout_, resp.mutable_layout());
  resp.set_predicted_peak_bytes(need);
  resp.set_eligible(d.eligible());
  if (!d.eligible()) {
    resp.set_reason("its memory budget of " + std::to_string(d.memory_budget_bytes() >> 10) +
                    " KiB is below the " + std::to_string(need >> 10) + " KiB one job of model '" +
                    config_.model + "' needs");
  }
  *resp.mutable_hyperparameters() =
      HyperparametersToProto(strategy_->plan().client, config_.int8_upload);
  return resp;
}

Result<int64_t> Coordinator::Authenticate(const std::string& token) const {
  if (token.empty()) {
    return Unauthenticated("no bearer token; enrol first and send 'authorization: Bearer <token>'");
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_token_.find(TokenHash(token));
  if (it == by_token_.end()) return Unauthenticated("unknown or revoked token; enrol again");
  return it->second;
}

Status Coordinator::AuthenticateAdmin(const std::string& token) const {
  if (config_.admin_token.empty()) {
    return Unauthenticated(
        "federation status needs the operator's credential, and this server has none: set "
        "[auth] admin_token (or admin_token_file)");
  }
  if (!SameSecret(TokenHash(token), TokenHash(config_.admin_token))) {
    return Unauthenticated(
        "federation status needs the operator's credential ([auth] admin_token); device "
        "tokens cannot read it");
  }
  return Status::Ok();
}

void Coordinator::SetLease(int64_t device, double until) {
  DeviceRec& d = devices_[static_cast<size_t>(device)];
  if (d.lease_until >= 0) leases_.erase({d.lease_until, device});
  d.lease_until = until < 0 ? -1 : until;
  if (d.lease_until >= 0) leases_.insert({d.lease_until, device});
}

int64_t Coordinator::ActiveLeases(double now) {
  while (!leases_.empty() && leases_.begin()->first < now) SetLease(leases_.begin()->second, -1);
  return static_cast<int64_t>(leases_.size());
}

int64_t Coordinator::ShareCap(double now) {
  const int64_t k =
      strategy_->synchronous() ? config_.strategy.concurrency : config_.strategy.buffer;
  while (!seen_.empty() && seen_.begin()->first < now - config_.lease_s) seen_.erase(seen_.begin());
  const int64_t active = std::max<int64_t>(static_cast<int64_t>(seen_.size()), 1);
  const auto share = static_cast<int64_t>(std::ceil(config_.max_share * static_cast<double>(k)));
  return std::max(share, (k + active - 1) / active);
}

Result<v1::Work> Coordinator::GetWork(int64_t device, const v1::GetWorkRequest& req) {
  std::unique_lock<std::mutex> lock(mu_);
  DeviceRec& d = devices_[static_cast<size_t>(device)];
  v1::Work w;
  w.set_version(strategy_->version());
  if (done_) {
    d.told_done = true;
    w.set_kind(v1::Work::DONE);
    if (req.final_values()) w.set_values(ValuesSinceLocked(req.known_version()));
    return w;
  }
  if (!d.eligible) {
    w.set_kind(v1::Work::INELIGIBLE);
    w.set_message("memory budget " + std::to_string(d.budget >> 10) + " KiB is below the " +
                  std::to_string(strategy_->plan().device_peak_bytes >> 10) + " KiB a job needs");
    return w;
  }
  if (!strategy_->CanContribute(device)) {  // its privacy budget is spent: done for it
    d.told_done = true;
    w.set_kind(v1::Work::DONE);
    w.set_message("this device has spent its privacy budget ([privacy] target_epsilon)");
    if (req.final_values()) w.set_values(ValuesSinceLocked(req.known_version()));
    return w;
  }
  const double now = clock_();
  seen_.erase({d.last_seen, device});
  d.last_seen = now;
  seen_.insert({now, device});
  const bool fedavg = strategy_->synchronous();
  const int64_t capacity =
      config_.strategy.concurrency - (fedavg ? static_cast<int64_t>(round_.size()) : 0);
  if (d.lease_until < 0 && ActiveLeases(now) >= capacity) {
    w.set_kind(v1::Work::WAIT);
    w.set_retry_after_ms(250);
    return w;
  }
  if (d.lease_until < 0) {  // a new job, not the outstanding one asked again
    if (const int64_t cap = ShareCap(now);
        Pending(d) >= cap || !strategy_->WouldFit(device, Pending(d))) {
      w.set_kind(v1::Work::WAIT);
      w.set_retry_after_ms(250);
      w.set_message("this device has " + std::to_string(Pending(d)) +
                    " updates in the aggregation being filled, its share (validation.max_share); "
                    "more work after the next aggregation");
      return w;
    }
    if (const double wait = d.leased_at + config_.min_interval_s - now; wait > 0) {
      w.set_kind(v1::Work::WAIT);
      w.set_retry_after_ms(static_cast<int64_t>(std::ceil(wait * 1000)));
      w.set_message("one job per " + std::to_string(config_.min_interval_s) +
                    " s per device (validation.min_interval_s)");
      return w;
    }
    d.leased_at = now;
  }
  if (fedavg && round_started_ < 0) round_started_ = now;
  SetLease(device, now + config_.lease_s);
  d.lease_version = strategy_->version();  // the only base version its update may claim
  w.set_kind(v1::Work::TRAIN);
  w.set_values(ValuesSinceLocked(req.known_version()));
  w.set_mask(PackMaskBits(strategy_->plan().mask, layout_));
  w.set_secure_aggregation(config_.secure);
  *w.mutable_hyperparameters() =
      HyperparametersToProto(strategy_->plan().client, config_.int8_upload);
  // A device must never train from a model a crash could take back.
  const int64_t sequence = store_->appended();
  lock.unlock();
  FTTE_RETURN_IF_ERROR(store_->WaitDurable(sequence));
  return w;
}

const std::string& Coordinator::ValuesSinceLocked(int64_t known_version) {
  // The values of the rows changed since the device's version.
  const int64_t known =
      known_version < 0 || known_version > strategy_->version() ? -1 : known_version;
  if (values_cache_version_ != strategy_->version()) {
    values_cache_.clear();
    values_cache_version_ = strategy_->version();
  }
  auto cached = values_cache_.find(known);
  if (cached == values_cache_.end()) {
    const std::vector<int64_t>& row_versions = strategy_->row_versions();
    fl::Mask changed;
    size_t row = 0;
    for (size_t k = 0; k < layout_.size(); ++k) {
      std::vector<uint8_t> rows(static_cast<size_t>(layout_[k].rows));
      for (int64_t r = 0; r < layout_[k].rows; ++r, ++row) {
        rows[r] = known < 0 || row_versions[row] > known;
      }
      changed.rows.push_back(std::move(rows));
    }
    fl::Update values;
    values.device = -1;  // the same bytes for every device
    values.base_version = strategy_->version();
    values.delta = fl::PackMasked(strategy_->weights(), changed, layout_);
    cached = values_cache_.emplace(known, Encode(values, changed, layout_)).first;
  }
  return cached->second;
}

Status Coordinator::Reject(int64_t device, const std::string& reason, Status why) {
  ++rejected_[reason];
  log_("rejected an update of device " + std::to_string(device) + " (" + reason +
       "): " + why.message());
  return why;
}

Status Coordinator::CheckVersion(int64_t device, int64_t base_version) {
  const int64_t version = strategy_->version();
  if (base_version > version || base_version < 0) {
    return Reject(device, "future version",
                  InvalidArgument("the update is based on version " + std::to_string(base_version) +
                                  "; the model is at " + std::to_string(version) +
                                  " and issues versions from 0"));
  }
  const int64_t tau = version - base_version;  // in [0, version]: no overflow
  if ((strategy_->synchronous() && tau > 0) ||
      (config_.strategy.max_staleness >= 0 && tau > config_.strategy.max_staleness)) {
    SetLease(device, -1);
    return Reject(device, "stale",
                  FailedPrecondition("the update is " + std::to_string(tau) +
                                     " versions old; fetch new work"));
  }
  return Status::Ok();
}

// Only the version this device's outstanding lease was given: an update without work, after
// its lease expired, or claiming another version (to dodge staleness weights) is refused; an
// honest device then fetches new work.
Status Coordinator::CheckLease(int64_t device, int64_t base_version) {
  DeviceRec& d = devices_[static_cast<size_t>(device)];
  if (d.lease_until >= 0 && d.lease_until < clock_()) SetLease(device, -1);
  if (d.lease_until < 0) {
    return Reject(device, "no lease",
                  FailedPrecondition("no work is outstanding for this device (none was given, "
                                     "its lease expired, or the server restarted); fetch new "
                                     "work"));
  }
  if (base_version != d.lease_version) {
    return Reject(device, "version not issued",
                  FailedPrecondition(
                      "the update is based on version " + std::to_string(base_version) +
                      ", but this device's work was version " + std::to_string(d.lease_version) +
                      "; train on the work the server sends"));
  }
  return Status::Ok();
}

Status Coordinator::CheckSamples(int64_t device, int64_t num_samples) {
  if (num_samples < 1 || num_samples > config_.max_samples_per_update) {
    return Reject(device, "sample count",
                  InvalidArgument("the update claims " + std::to_string(num_samples) +
                                  " samples; allowed 1 to " +
                                  std::to_string(config_.max_samples_per_update)));
  }
  return Status::Ok();
}

Status Coordinator::CheckBudget(int64_t device) {
  if (!strategy_->WouldFit(device, Pending(devices_[static_cast<size_t>(device)]))) {
    return Reject(device, "privacy budget",
                  FailedPrecondition("this device has spent its privacy budget ([privacy] "
                                     "target_epsilon); it takes no further part"));
  }
  return Status::Ok();
}

void Coordinator::RecordAccepted(int64_t device, int64_t update_id) {
  DeviceRec& d = devices_[static_cast<size_t>(device)];
  d.recent_ids.push_back(update_id);
  if (d.recent_ids.size() > kRecentIds) d.recent_ids.pop_front();
  ++d.accepted;
}

Result<v1::SubmitResponse> Coordinator::Submit(int64_t device, const v1::SubmitRequest& req) {
  std::unique_lock<std::mutex> lock(mu_);
  DeviceRec& d = devices_[static_cast<size_t>(device)];
  if (!d.eligible) {
    return Reject(device, "ineligible",
                  FailedPrecondition("this device is excluded: its memory "
                                     "budget is below a job's need"));
  }
  if (config_.secure) {
    return Reject(device, "secure: plain submission",
                  FailedPrecondition("this federation aggregates securely: hand the update in "
                                     "through SecureStep (Work.secure_aggregation is set)"));
  }
  auto decoded = fl::DecodeUpdate(req.update(), layout_);
  if (!decoded.ok())
    return Reject(device, "malformed", InvalidArgument(decoded.status().message()));
  fl::Update& u = decoded->update;
  if (u.device != device) {
    return Reject(device, "device mismatch",
                  InvalidArgument("the update names device " + std::to_string(u.device) +
                                  " but the token is device " + std::to_string(device) + "'s"));
  }
  if (u.update_id != req.update_id()) {
    return Reject(device, "update id mismatch",
                  InvalidArgument("the update's id differs from the request's"));
  }
  v1::SubmitResponse resp;
  if (std::find(d.recent_ids.begin(), d.recent_ids.end(), u.update_id) != d.recent_ids.end()) {
    ++duplicates_;
    resp.set_outcome(v1::SubmitResponse::DUPLICATE);
    resp.set_version(strategy_->version());
    // The original may still be on its way to disk (its own submission waits for the flush):
    // a duplicate is acknowledged no earlier than the original would be.
    const int64_t appended = store_->appended();
    lock.unlock();
    FTTE_RETURN_IF_ERROR(store_->WaitDurable(appended));
    return resp;
  }
  FTTE_RETURN_IF_ERROR(CheckVersion(device, u.base_version));
  // An update may carry any subset of the mask's rows (natural sparsity: a device sends only
  // the rows it changed); the rows it leaves out count as zero change.
  auto expanded = fl::ExpandToMask(*decoded, strategy_->PlanAt(u.base_version).mask, layout_);
  if (!expanded.ok()) {
    return Reject(device, "mask mismatch", InvalidArgument(expanded.status().message()));
  }
  u.delta = std::move(expanded->delta);
  FTTE_RETURN_IF_ERROR(CheckSamples(device, u.num_samples));
  if (!std::isfinite(u.loss) || !std::isfinite(u.variance) || u.variance < 0) {
    return Reject(device, "statistics", InvalidArgument("loss or variance is not finite"));
  }
  double norm2 = 0;
  for (float v : u.delta) norm2 += static_cast<double>(v) * v;
  // Distributed DP: the bound is what an honest device's clip and noise share allow (its noise
  // alone may exceed the absolute bound on a large model).
  const double bound = config_.strategy.dp_distributed
                           ? strategy_->DpNormBound(static_cast<int64_t>(u.delta.size()))
                           : config_.max_update_norm;
  if (!(std::sqrt(norm2) <= bound)) {
    return Reject(device, "norm",
                  InvalidArgument("the update's L2 norm " + std::to_string(std::sqrt(norm2)) +
                                  " exceeds the bound " + std::to_string(bound) +
                                  (config_.strategy.dp_distributed
                                       ? " (distributed privacy: clip + the noise share's norm)"
                                       : "")));
  }
  FTTE_RETURN_IF_ERROR(CheckLease(device, u.base_version));
  // Never acknowledge an update the strategy would drop for a spent privacy budget.
  FTTE_RETURN_IF_ERROR(CheckBudget(device));
  state::LogRecord rec;
  rec.mutable_update()->set_device_id(device);
  rec.mutable_update()->set_update_id(u.update_id);
  rec.mutable_update()->set_encoded(req.update());
  FTTE_ASSIGN_OR_RETURN(const int64_t sequence, store_->AppendAsync(rec));
  Apply(u);
  SetLease(device, -1);
  resp.set_outcome(v1::SubmitResponse::ACCEPTED);
  resp.set_version(strategy_->version());
  // Acknowledge only once the record is on disk; concurrent submissions share the flush.
  lock.unlock();
  FTTE_RETURN_IF_ERROR(store_->WaitDurable(sequence));
  return resp;
}

void Coordinator::Apply(const fl::Update& u) {
  RecordAccepted(u.device, u.update_id);
  DeviceRec& d = devices_[static_cast<size_t>(u.device)];
  const int64_t version = strategy_->version(), refused = strategy_->stats().refused;
  if (strategy_->synchronous()) {
    round_.push_back(u);
    if (static_cast<int64_t>(round_.size()) >= config_.strategy.concurrency) CloseRound();
  } else {
    strategy_->Receive(u);
    if (strategy_->stats().refused > refused) {
      log_(
          "refused an aggregation whose result was not finite (its updates are dropped; the "
          "model stays at version " +
          std::to_string(strategy_->version()) + ")");
    }
  }
  // The share cap counts updates in the aggregation being filled: a new one starts when the
  // last one was applied (or refused).
  if (strategy_->version() != version || strategy_->stats().refused != refused) {
    ++aggregation_;  // (CloseRound counted FedAvg's: one more changes nothing)
  } else {
    if (d.pending_in != aggregation_) d.pending = 0;
    d.pending_in = aggregation_;
    ++d.pending;
  }
}

void Coordinator::CloseRound() {
  if (round_.empty()) return;
  const int64_t refused = strategy_->stats().refused;
  strategy_->AggregateRound(round_);
  if (strategy_->stats().refused > refused) {
    log_("refused a round whose aggregate was not finite (the model stays at version " +
         std::to_string(strategy_->version()) + ")");
  }
  round_.clear();
  round_started_ = -1;
  while (!leases_.empty()) SetLease(leases_.begin()->second, -1);  // work of the old round
  ++aggregation_;
}

v1::HeartbeatResponse Coordinator::Heartbeat(int64_t device) {
  std::lock_guard<std::mutex> lock(mu_);
  DeviceRec& d = devices_[static_cast<size_t>(device)];
  if (d.lease_until >= 0) SetLease(device, clock_() + config_.lease_s);
  v1::HeartbeatResponse r;
  r.set_version(strategy_->version());
  return r;
}

v1::StatusResponse Coordinator::GetStatus() const {
  std::lock_guard<std::mutex> lock(mu_);
  v1::StatusResponse s;
  s.set_algorithm(fl::AlgorithmName(config_.strategy.algorithm));
  s.set_model(config_.model);
  s.set_version(strategy_->version());
  s.set_enrolled(static_cast<int64_t>(devices_.size()));
  s.set_training(static_cast<int64_t>(leases_.size()));
  s.set_accepted(AcceptedLocked());
  s.set_duplicates(duplicates_);
  for (const auto& [reason, n] : rejected_) (*s.mutable_rejected())[reason] = n;
  for (const v1::EvalPoint& e : evaluations_) *s.add_evaluations() = e;
  s.set_buffered(strategy_->buffered() + static_cast<int64_t>(round_.size()));
  s.set_done(done_);
  if (config_.strategy.dp()) {
    const fl::Strategy::Privacy p = strategy_->PrivacySpent();
    v1::PrivacyStatus* ps = s.mutable_privacy();
    ps->set_epsilon(p.epsilon);
    ps->set_delta(config_.strategy.dp_delta);
    ps->set_max_load(p.max_load);
    ps->set_refused(strategy_->stats().dp_refused);
    ps->set_clip(strategy_->dp_clip());
    ps->set_oversized(strategy_->stats().dp_oversized);
  }
  if (config_.secure) {
    v1::SecureAggregationStatus* sa = s.mutable_secure_aggregation();
    sa->set_cohorts(secure_cohorts_);
    sa->set_aborted(secure_aborted_);
    sa->set_left_out(secure_left_out_);
    sa->set_forming(static_cast<int64_t>(forming_.size()));
    sa->set_active(static_cast<int64_t>(cohorts_.size()));
  }
  return s;
}

Status Coordinator::Tick() {
  std::vector<float> weights;
  int64_t version = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const double now = clock_();
    ActiveLeases(now);
    if (config_.secure) {
      // Members waiting for a cohort whose lease lapsed (they stopped polling) leave it; rounds
      // past their deadline close with the members that answered.
      for (size_t i = 0; i < forming_.size();) {
        const int64_t device = forming_[i].device;
        if (devices_[static_cast<size_t>(device)].lease_until >= 0) {
          ++i;
          continue;
        }
        forming_.erase(forming_.begin() + static_cast<int64_t>(i));
        LeaveOut(device, "it stopped polling while its cohort was forming (lease expired)");
      }
      std::vector<uint64_t> due;
      for (const auto& [id, c] : cohorts_) {
        if (c.deadline <= now) due.push_back(id);
      }
      for (uint64_t id : due) CloseCohortRound(id);
    }
    if (strategy_->synchronous() && round_started_ >= 0 && config_.strategy.round_deadline_s > 0 &&
        now - round_started_ >= config_.strategy.round_deadline_s) {
      if (round_.empty()) {
        round_started_ = -1;
      } else {
        state::LogRecord rec;
        rec.mutable_round_close()->set_version(strategy_->version());
        FTTE_RETURN_IF_ERROR(store_->Append(rec));
        log_("round deadline: aggregating " + std::to_string(round_.size()) + " of " +
             std::to_string(config_.strategy.concurrency) + " updates");
        CloseRound();
      }
    }
    if (store_->log_bytes() > 0 && now - last_snapshot_ >= config_.snapshot_every_s) {
      state::Snapshot s = MakeSnapshot();
      FTTE_RETURN_IF_ERROR(store_->WriteSnapshot(&s));
      last_snapshot_ = now;
    }
    version = strategy_->version();
    // The last version is evaluated whatever the evaluation grid, so max_versions = 2 stops at
    // version 2, not at the next multiple of eval_every.
    const bool last = config_.max_versions > 0 && version >= config_.max_versions;
    if (done_ ||
        (!last && last_eval_version_ >= 0 && version - last_eval_version_ < config_.eval_every)) {
      return Status::Ok();
    }
    weights = strategy_->weights();
  }
  fl::SetWeights(*eval_model_, weights);
  StepResult r = eval_trainer_->Evaluate(eval_.images.data(), eval_.labels.data(), eval_.size);
  last_eval_version_ = version;
  // Of the scored positions: every sample of an image set, the non-<unk> targets of text.
  const double acc =
      static_cast<double>(r.correct) / static_cast<double>(std::max<int64_t>(1, r.scored));
  std::lock_guard<std::mutex> lock(mu_);
  v1::EvalPoint p;
  p.set_version(version);
  p.set_seconds(clock_());
  p.set_accuracy(acc);
  p.set_loss(r.loss);
  evaluations_.push_back(p);
  char line[160];
  std::snprintf(line, sizeof line,
                "version %lld: accuracy %.2f%%, loss %.4f (%lld accepted, %lld devices)",
                static_cast<long long>(version), 100 * acc, r.loss,
                static_cast<long long>(AcceptedLocked()), static_cast<long long>(devices_.size()));
  std::string message = line;
  if (config_.strategy.dp()) {
    char eps[96];
    std::snprintf(eps, sizeof eps, ", privacy epsilon %.3g at delta %g",
                  strategy_->PrivacySpent().epsilon, config_.strategy.dp_delta);
    message += eps;
  }
  log_(message);
  if ((config_.target_accuracy > 0 && acc >= config_.target_accuracy) ||
      (config_.max_versions > 0 && version >= config_.max_versions)) {
    done_ = true;
    log_(config_.target_accuracy > 0 && acc >= config_.target_accuracy
             ? "target accuracy reached: the federation is done"
             : "max_versions reached: the federation is done");
  }
  return Status::Ok();
}

bool Coordinator::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

bool Coordinator::everyone_told_done() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!done_) return false;
  for (const DeviceRec& d : devices_) {
    if (d.eligible && !d.told_done) return false;
  }
  return true;
}

int64_t Coordinator::version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return strategy_->version();
}

std::vector<float> Coordinator::weights() const {
  std::lock_guard<std::mutex> lock(mu_);
  return strategy_->weights();
}

fl::Mask Coordinator::mask() const {
  std::lock_guard<std::mutex> lock(mu_);
  return strategy_->plan().mask;
}

std::map<std::string, int64_t> Coordinator::rejected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rejected_;
}

int64_t Coordinator::AcceptedLocked() const {
  int64_t n = 0;
  for (const DeviceRec& d : devices_) n += d.accepted;
  return n;
}

int64_t Coordinator::predicted_peak_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return strategy_->plan().device_peak_bytes;
}

int64_t Coordinator::accepted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return AcceptedLocked();
}

}  // namespace ftte::net
