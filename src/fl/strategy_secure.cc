// Strategy's side of secure aggregation (strategy.h: CohortWeights, ReceiveCohort): one
// cohort's masked sum in place of a buffer of updates.
#include <algorithm>
#include <cmath>
#include <map>

#include "ftte/fl/strategy.h"

namespace ftte::fl {

std::vector<double> Strategy::CohortWeights(const std::vector<Update>& members) const {
  FTTE_CHECK(config_.secure()) << "secure aggregation is off";
  if (config_.dp()) {  // distributed: the uniform weight of the private sum
    return std::vector<double>(members.size(), 1.0 / static_cast<double>(config_.buffer));
  }
  // The buffer weights with every variance alike (unknown to the server): h(v) is a constant
  // that the normalisation removes.
  std::vector<Update> known = members;
  for (Update& u : known) u.variance = 1;
  std::vector<double> w = BufferWeights(known);
  for (double& x : w) x = std::clamp(x, 0.0, 1.0);
  return w;
}

bool Strategy::ReceiveCohort(const std::vector<Update>& members, const std::vector<double>& w,
                             const std::vector<float>& sum) {
  FTTE_CHECK(config_.secure()) << "secure aggregation is off";
  FTTE_CHECK(!members.empty() && w.size() == members.size() && sum.size() == weights_.size())
      << members.size() << " members, " << w.size() << " weights, " << sum.size() << " values";
  stats_.received += static_cast<int64_t>(members.size());
  int64_t rows = 0;
  for (const ParamLayout& p : layout_) rows += p.rows;
  std::vector<double> row_w(static_cast<size_t>(rows), 0.0);
  std::vector<int32_t> row_count(static_cast<size_t>(rows), 0);
  double total = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    FTTE_CHECK(members[i].base_version <= version_) << "cohort member from the future";
    FTTE_CHECK(w[i] >= 0 && w[i] <= 1) << "cohort weight " << w[i];
    const Mask& mask = PlanAt(members[i].base_version).mask;
    total += w[i];
    size_t row = 0;
    for (size_t k = 0; k < layout_.size(); ++k) {
      for (int64_t r = 0; r < layout_[k].rows; ++r, ++row) {
        if (!mask.rows[k][r]) continue;
        row_w[row] += w[i];
        ++row_count[row];
      }
    }
  }
  std::vector<double> agg(sum.begin(), sum.end());
  if (config_.dp()) {
    // Each member clipped and noised its update and applied 1 / K; the devices' noise shares
    // are completed where fewer than K members trained a value.
    std::vector<int32_t> covered(weights_.size(), 0);
    size_t base = 0, row = 0;
    for (const ParamLayout& p : layout_) {
      for (int64_t r = 0; r < p.rows; ++r, ++row) {
        std::fill_n(covered.begin() + static_cast<int64_t>(base) + r * p.row_size, p.row_size,
                    row_count[row]);
      }
      base += static_cast<size_t>(p.numel());
    }
    AddDpNoise(covered, DpUpdateNoise() * dp_clip_ / static_cast<double>(config_.buffer), &agg);
    std::map<int64_t, int64_t> per_device;
    for (const Update& u : members) ++per_device[u.device];
    for (const auto& [device, k] : per_device) stats_.dp_load[device] += k * k;
  } else {
    RescaleRows(row_w, total, &agg);
  }
  const int64_t at = version_;
  if (!Apply(agg)) return false;  // refused: the cohort's contribution is dropped
  for (const Update& u : members) {
    ++stats_.applied;
    ++stats_.staleness[at - u.base_version];
  }
  AfterAggregation();
  return true;
}

}  // namespace ftte::fl
