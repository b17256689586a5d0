#include "ftte/fl/strategy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "ftte/core/check.h"
#include "strategies.h"

namespace ftte::fl {

namespace {

// Everything a budget plan depends on: the model and its initialisation, the budget, local
// training as the planner's trials run it, frozen storage, tiles and the proxy set.
std::string PlanKey(const PlanningInputs& in, const ClientConfig& c) {
  std::string k = in.model_spec;
  for (double v :
       {static_cast<double>(in.seed), static_cast<double>(in.budget_bytes),
        static_cast<double>(c.batch), static_cast<double>(c.micro_batch),
        static_cast<double>(c.tile_floats), static_cast<double>(c.frozen),
        static_cast<double>(c.optimizer.kind), static_cast<double>(c.optimizer.lr),
        static_cast<double>(c.optimizer.momentum), static_cast<double>(c.optimizer.weight_decay),
        static_cast<double>(in.proxy.n)}) {
    char buf[32];  // every digit: %f would read lr 1e-7 and 2e-7 as the same "0.000000"
    std::snprintf(buf, sizeof buf, "|%.17g", v);
    k.append(buf);
  }
  char ptr[40];
  std::snprintf(ptr, sizeof ptr, "|%p|%p", static_cast<const void*>(in.proxy.x),
                static_cast<const void*>(in.proxy.labels));
  return k.append(ptr);
}

}  // namespace

const char* AlgorithmName(Algorithm a) {
  switch (a) {
    case Algorithm::kFedAvg:
      return "fedavg";
    case Algorithm::kFedAsync:
      return "fedasync";
    case Algorithm::kFedBuff:
      return "fedbuff";
    case Algorithm::kFtte:
      return "ftte";
  }
  return "unknown";
}

Result<Algorithm> ParseAlgorithm(const std::string& s) {
  for (Algorithm a :
       {Algorithm::kFedAvg, Algorithm::kFedAsync, Algorithm::kFedBuff, Algorithm::kFtte}) {
    if (s == AlgorithmName(a)) return a;
  }
  return InvalidArgument("unknown algorithm '" + s + "'; use fedavg, fedasync, fedbuff or ftte");
}

const char* ReselectName(Reselect r) {
  switch (r) {
    case Reselect::kFixed:
      return "fixed";
    case Reselect::kPeriodic:
      return "periodic";
    case Reselect::kRotating:
      return "rotating";
  }
  return "unknown";
}

Result<Reselect> ParseReselect(const std::string& s) {
  for (Reselect r : {Reselect::kFixed, Reselect::kPeriodic, Reselect::kRotating}) {
    if (s == ReselectName(r)) return r;
  }
  return InvalidArgument("unknown reselection '" + s + "'; use fixed, periodic or rotating");
}

Result<std::unique_ptr<Strategy>> Strategy::Create(const ServerConfig& config,
                                                   const PlanningInputs& inputs) {
  std::unique_ptr<Strategy> s;
  switch (config.algorithm) {
    case Algorithm::kFedAvg:
      s.reset(new FedAvgStrategy(config, inputs));
      break;
    case Algorithm::kFedAsync:
      s.reset(new FedAsyncStrategy(config, inputs));
      break;
    case Algorithm::kFedBuff:
      s.reset(new FedBuffStrategy(config, inputs));
      break;
    case Algorithm::kFtte:
      s.reset(new FtteStrategy(config, inputs));
      break;
  }
  FTTE_CHECK(s != nullptr);
  FTTE_CHECK(config.buffer >= 1 && config.concurrency >= 1);
  FTTE_RETURN_IF_ERROR(s->Init());
  return s;
}

Strategy::Strategy(const ServerConfig& config, const PlanningInputs& inputs)
    : config_(config), inputs_(inputs) {}

Strategy::~Strategy() = default;

Status Strategy::Init() {
  FTTE_ASSIGN_OR_RETURN(model_, MakeModel(inputs_.model_spec, inputs_.seed));
  layout_ = LayoutOf(*model_);
  weights_ = GetWeights(*model_);
  momentum_.assign(weights_.size(), 0.0);
  int64_t rows = 0;
  for (const ParamLayout& p : layout_) rows += p.rows;
  row_versions_.assign(static_cast<size_t>(rows), 0);
  if (config_.mask == "full") {
    model_->SetAllTrainable(true);
    AddPlan(MakePlan(Mask::FromModel(*model_), Selection{}, inputs_.client.micro_batch));
    return Status::Ok();
  }
  if (config_.mask != "budget") {
    return InvalidArgument("mask '" + config_.mask + "' is unknown; use full or budget");
  }
  ClientConfig client = inputs_.client;
  client.frozen = config_.frozen;
  TrainerOptions o = ClientTrainerOptions(client);
  const std::string key = PlanKey(inputs_, client);
  if (inputs_.cache != nullptr) {
    if (const PlanCache::Entry* e = inputs_.cache->Find(key)) {
      e->mask.ApplyTo(*model_);
      AddPlan(MakePlan(e->mask, e->selection, e->selection.micro_batch));
      return Status::Ok();
    }
  }
  Selection sel;
  if (inputs_.proxy.n > 0) {
    FTTE_ASSIGN_OR_RETURN(sel, PlanUnderBudget(*model_, &o, inputs_.budget_bytes, inputs_.proxy,
                                               kClientBytesPerTrainableValue));
  } else {
    // No data: every value is as important as every other, so units rank by size.
    RowImportance uniform;
    for (const Parameter* p : model_->params()) {
      uniform.emplace_back(static_cast<size_t>(p->rows()), static_cast<double>(p->row_size()));
    }
    SelectOptions so = PlannerSelectOptions(*model_, o, Samples{}, kClientBytesPerTrainableValue);
    FTTE_ASSIGN_OR_RETURN(sel, SelectUnderBudget(*model_, uniform, o, inputs_.budget_bytes, so));
  }
  if (inputs_.cache != nullptr) inputs_.cache->Put(key, {Mask::FromModel(*model_), sel});
  AddPlan(MakePlan(Mask::FromModel(*model_), sel, sel.micro_batch));
  return Status::Ok();
}

const PlanCache::Entry* PlanCache::Find(const std::string& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

void PlanCache::Put(const std::string& key, Entry entry) { entries_[key] = std::move(entry); }

Plan Strategy::MakePlan(const Mask& mask, const Selection& selection, int64_t micro_batch) const {
  Plan p;
  p.mask = mask;
  p.client = inputs_.client;
  p.client.frozen = config_.frozen;
  p.client.micro_batch = micro_batch;
  p.device_peak_bytes = PredictClientPeak(*model_, mask, p.client);
  p.selection = selection;
  return p;
}

void Strategy::AddPlan(Plan plan) {
  plan.id = static_cast<int64_t>(plans_.size());
  plan.from_version = version_;
  if (!plans_.empty() && plans_.back().from_version == version_) plans_.pop_back();
  plans_.push_back(std::move(plan));
}

const Plan& Strategy::PlanAt(int64_t version) const {
  for (auto it = plans_.rbegin(); it != plans_.rend(); ++it) {
    if (it->from_version <= version) return *it;
  }
  return plans_.front();
}

double Strategy::Staleness(int64_t tau) const {
  return std::pow(1.0 + static_cast<double>(tau), -config_.staleness_exponent);
}

double Strategy::FtteWeight(const ServerConfig& c, const Update& u, int64_t tau,
                            double median_variance) {
  double w = std::pow(static_cast<double>(std::max<int64_t>(u.num_samples, 1)), c.sample_exponent);
  if (c.use_age) w *= std::pow(1.0 + static_cast<double>(tau), -c.staleness_exponent);
  if (c.use_variance && median_variance > 0) {
    w /= 1.0 + c.variance_lambda * u.variance / median_variance;
  }
  return w;
}

std::vector<double> Strategy::Aggregate(const std::vector<Update>& updates,
                                        const std::vector<double>& w) const {
  std::vector<double> agg(weights_.size(), 0.0);
  int64_t rows = 0;
  for (const ParamLayout& p : layout_) rows += p.rows;
  std::vector<double> row_w(static_cast<size_t>(rows), 0.0);
  double total = 0;
  for (size_t i = 0; i < updates.size(); ++i) {
    const Mask& mask = PlanAt(updates[i].base_version).mask;
    const std::vector<float>& d = updates[i].delta;
    FTTE_CHECK(static_cast<int64_t>(d.size()) == mask.Numel(layout_))
        << "update does not match the mask of its plan";
    total += w[i];
    size_t at = 0, base = 0, row = 0;
    for (size_t k = 0; k < layout_.size(); ++k) {
      const int64_t rs = layout_[k].row_size;
      for (int64_t r = 0; r < layout_[k].rows; ++r, ++row) {
        if (!mask.rows[k][r]) continue;
        double* out = agg.data() + base + r * rs;
        for (int64_t j = 0; j < rs; ++j) out[j] += w[i] * d[at + j];
        at += static_cast<size_t>(rs);
        row_w[row] += w[i];
      }
      base += static_cast<size_t>(layout_[k].numel());
    }
  }
  // Rows some updates did not train: the weighted mean among those that did.
  size_t base = 0, row = 0;
  for (const ParamLayout& p : layout_) {
    for (int64_t r = 0; r < p.rows; ++r, ++row) {
      if (row_w[row] == 0 || row_w[row] == total) continue;
      const double scale = total / row_w[row];
      for (int64_t j = 0; j < p.row_size; ++j) agg[base + r * p.row_size + j] *= scale;
    }
    base += static_cast<size_t>(p.numel());
  }
  return agg;
}

bool Strategy::Apply(const std::vector<double>& aggregate) {
  // Heavy-ball momentum on the aggregate, then the server step where anything moved; first
  // proven finite everywhere, so that a refused aggregate changes nothing.
  const auto lr = static_cast<float>(config_.server_lr);
  for (size_t i = 0; i < weights_.size(); ++i) {
    const double m = config_.server_momentum * momentum_[i] + aggregate[i];
    if (!std::isfinite(m) || !std::isfinite(weights_[i] + lr * static_cast<float>(m))) {
      ++stats_.refused;
      return false;
    }
  }
  ++version_;
  ++stats_.aggregations;
  size_t i = 0, row = 0;
  for (const ParamLayout& p : layout_) {
    for (int64_t r = 0; r < p.rows; ++r, ++row) {
      bool moved = false;
      for (int64_t j = 0; j < p.row_size; ++j, ++i) {
        momentum_[i] = config_.server_momentum * momentum_[i] + aggregate[i];
        if (momentum_[i] == 0) continue;
        const float before = weights_[i];
        weights_[i] += lr * static_cast<float>(momentum_[i]);
        moved = moved || weights_[i] != before;
      }
      if (moved) row_versions_[row] = version_;
    }
  }
  return true;
}

bool Strategy::Admit(const Update& u) {
  FTTE_CHECK(u.base_version <= version_) << "update from the future";
  ++stats_.received;
  if (config_.max_staleness >= 0 && version_ - u.base_version > config_.max_staleness) {
    ++stats_.dropped_stale;
    return false;
  }
  Observe(u);
  return true;
}

bool Strategy::Receive(const Update& u) {
  FTTE_CHECK(!synchronous()) << AlgorithmName(config_.algorithm) << " aggregates whole rounds";
  if (!Admit(u)) return false;
  buffer_.push_back(u);
  if (static_cast<int64_t>(buffer_.size()) < config_.buffer) return false;
  const std::vector<double> w = BufferWeights(buffer_);
  const std::vector<double> agg = Aggregate(buffer_, w);
  const int64_t at = version_;
  const std::vector<Update> taken = std::move(buffer_);
  buffer_.clear();
  if (!Apply(agg)) return false;  // refused: the buffer is dropped, the model unchanged
  for (const Update& b : taken) {
    ++stats_.applied;
    ++stats_.staleness[at - b.base_version];
  }
  AfterAggregation();
  return true;
}

std::vector<double> Strategy::BufferWeights(const std::vector<Update>& buffer) const {
  return std::vector<double>(buffer.size(), 1.0 / static_cast<double>(buffer.size()));
}

void Strategy::AggregateRound(const std::vector<Update>& updates) {
  FTTE_CHECK(false) << AlgorithmName(config_.algorithm) << " takes single updates (Receive)";
}

ServerState Strategy::State() const {
  return {version_, weights_, momentum_, buffer_, stats_, plans_, importance_, row_versions_};
}

Status Strategy::Restore(ServerState state) {
  if (state.weights.size() != weights_.size() || state.momentum.size() != momentum_.size() ||
      state.plans.empty() || state.row_versions.size() != row_versions_.size()) {
    return InvalidArgument("server state holds " + std::to_string(state.weights.size()) +
                           " weights, " + std::to_string(state.momentum.size()) +
                           " momentum values and " + std::to_string(state.plans.size()) +
                           " plans; this model needs " + std::to_string(weights_.size()) +
                           " of each and at least one plan");
  }
  for (const Plan& p : state.plans) {
    if (p.mask.rows.size() != layout_.size()) {
      return InvalidArgument("server state holds a plan for another model");
    }
  }
  std::swap(plans_, state.plans);  // PlanAt below sees the restored plans
  for (const Update& u : state.buffer) {
    if (u.base_version > state.version ||
        static_cast<int64_t>(u.delta.size()) != PlanAt(u.base_version).mask.Numel(layout_)) {
      std::swap(plans_, state.plans);
      return InvalidArgument("server state holds a buffered update that does not fit its plan");
    }
  }
  version_ = state.version;
  weights_ = std::move(state.weights);
  momentum_ = std::move(state.momentum);
  buffer_ = std::move(state.buffer);
  stats_ = std::move(state.stats);
  importance_ = std::move(state.importance);
  row_versions_ = std::move(state.row_versions);
  return Status::Ok();
}

}  // namespace ftte::fl
