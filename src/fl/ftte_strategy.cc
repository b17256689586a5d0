// FTTE's server: the buffer weights of DESIGN.md §3, federated importance, re-planning.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "ftte/core/check.h"
#include "strategies.h"

namespace ftte::fl {

Status FtteStrategy::Init() {
  FTTE_RETURN_IF_ERROR(Strategy::Init());
  // The table starts from the proxy set if there is one, else empty (every row unknown).
  importance_.value.clear();
  importance_.known.clear();
  importance_.last_planned.clear();
  const bool proxy = inputs_.proxy.n > 0;
  RowImportance from_proxy;
  if (proxy) {
    TrainerOptions o = ClientTrainerOptions(plan().client);
    const Samples& d = inputs_.proxy;
    const int64_t batches = (d.n + o.batch - 1) / o.batch;
    from_proxy = ComputeImportance(*model_, d.x, d.labels, d.n, o, batches);
    for (auto& rows : from_proxy) {
      for (double& v : rows) v /= static_cast<double>(batches);  // per step, as devices report
    }
  }
  for (size_t k = 0; k < layout_.size(); ++k) {
    const auto rows = static_cast<size_t>(layout_[k].rows);
    importance_.value.push_back(proxy ? from_proxy[k] : std::vector<double>(rows, 0.0));
    importance_.known.emplace_back(rows, proxy ? 1 : 0);
    importance_.last_planned.emplace_back(rows, -1);
    for (size_t r = 0; r < rows; ++r) {
      if (plan().mask.rows[k][r]) importance_.last_planned[k][r] = 0;
    }
  }
  return Status::Ok();
}

std::vector<double> FtteStrategy::BufferWeights(const std::vector<Update>& buffer) const {
  std::vector<double> v;
  for (const Update& b : buffer) v.push_back(b.variance);
  std::nth_element(v.begin(), v.begin() + static_cast<int64_t>(v.size() / 2), v.end());
  const double median = v[v.size() / 2];
  std::vector<double> w(buffer.size());
  double total = 0;
  for (size_t i = 0; i < buffer.size(); ++i) {
    w[i] = FtteWeight(config_, buffer[i], version_ - buffer[i].base_version, median);
    total += w[i];
  }
  for (double& x : w) x /= total;
  return w;
}

void FtteStrategy::Observe(const Update& u) {
  if (!config_.federated_importance || u.row_sq.empty()) return;
  const Mask& mask = PlanAt(u.base_version).mask;
  if (static_cast<int64_t>(u.row_sq.size()) != mask.Rows()) return;
  const double decay = config_.importance_decay;
  size_t i = 0;
  for (size_t k = 0; k < layout_.size(); ++k) {
    for (int64_t r = 0; r < layout_[k].rows; ++r) {
      if (!mask.rows[k][r]) continue;
      double& value = importance_.value[k][r];
      const double reported = u.row_sq[i++];
      value = importance_.known[k][r] ? decay * value + (1 - decay) * reported : reported;
      importance_.known[k][r] = 1;
    }
  }
}

RowImportance FtteStrategy::EffectiveImportance() const {
  // Priors per value: each parameter's mean over its known rows, else the median of those.
  std::vector<double> per_value(layout_.size(), -1.0);
  std::vector<double> known_means;
  for (size_t k = 0; k < layout_.size(); ++k) {
    double sum = 0;
    int64_t n = 0;
    for (int64_t r = 0; r < layout_[k].rows; ++r) {
      if (!importance_.known[k][r]) continue;
      sum += importance_.value[k][r];
      ++n;
    }
    if (n == 0) continue;
    per_value[k] = sum / static_cast<double>(n * layout_[k].row_size);
    known_means.push_back(per_value[k]);
  }
  double fallback = 1.0;
  if (!known_means.empty()) {
    std::nth_element(known_means.begin(),
                     known_means.begin() + static_cast<int64_t>(known_means.size() / 2),
                     known_means.end());
    fallback = known_means[known_means.size() / 2];
  }
  const bool rotate = config_.reselect == Reselect::kRotating && config_.reselect_every > 0;
  RowImportance out;
  for (size_t k = 0; k < layout_.size(); ++k) {
    const double prior =
        (per_value[k] >= 0 ? per_value[k] : fallback) * static_cast<double>(layout_[k].row_size);
    std::vector<double> rows(static_cast<size_t>(layout_[k].rows));
    for (int64_t r = 0; r < layout_[k].rows; ++r) {
      rows[r] = importance_.known[k][r] ? importance_.value[k][r] : prior;
      if (rotate) {
        // Rows out of the plan for longer gain: one more unit per period out.
        const int64_t last = importance_.last_planned[k][r];
        const int64_t age = last < 0 ? stats_.aggregations + 1 : stats_.aggregations - last;
        rows[r] *= 1.0 + static_cast<double>(age) / static_cast<double>(config_.reselect_every);
      }
    }
    out.push_back(std::move(rows));
  }
  return out;
}

Status FtteStrategy::Replan(const RowImportance& importance) {
  TrainerOptions o = ClientTrainerOptions(plan().client);
  o.micro_batch = 0;
  // Re-plans rank by the importance devices reported (no trials: those need server data and
  // cost tens of steps per candidate; the first plan's trial chose with the proxy set, if any).
  const SelectOptions so =
      PlannerSelectOptions(*model_, o, Samples{}, kClientBytesPerTrainableValue);
  FTTE_ASSIGN_OR_RETURN(Selection sel,
                        SelectUnderBudget(*model_, importance, o, inputs_.budget_bytes, so));
  const Mask mask = Mask::FromModel(*model_);
  for (size_t k = 0; k < layout_.size(); ++k) {
    for (int64_t r = 0; r < layout_[k].rows; ++r) {
      if (mask.rows[k][r]) importance_.last_planned[k][r] = stats_.aggregations;
    }
  }
  if (mask == plan().mask && sel.micro_batch == plan().client.micro_batch) return Status::Ok();
  AddPlan(MakePlan(mask, sel, sel.micro_batch));
  ++stats_.replans;
  return Status::Ok();
}

void FtteStrategy::AfterAggregation() {
  if (config_.mask != "budget" || config_.reselect == Reselect::kFixed ||
      config_.reselect_every <= 0 || stats_.aggregations % config_.reselect_every != 0) {
    return;
  }
  // The budget fitted the first plan, and importance does not change what fits.
  const Status s = Replan(EffectiveImportance());
  FTTE_CHECK(s.ok()) << "re-planning under the budget that fitted before failed: " << s.ToString();
}

}  // namespace ftte::fl
