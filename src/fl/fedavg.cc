#include "ftte/core/check.h"
#include "strategies.h"

namespace ftte::fl {

void FedAvgStrategy::AggregateRound(const std::vector<Update>& round) {
  stats_.received += static_cast<int64_t>(round.size());
  if (round.empty()) return;
  std::vector<Update> bounded;  // a copy only when there are bounds to apply
  if (config_.clip_multiplier > 0 || config_.sample_cap_multiplier > 0) {
    bounded = round;
    for (Update& u : bounded) Bound(&u);
  }
  if (config_.dp()) {  // the DP bounds, then equal weights over the fixed round size
    for (Update u : round) {
      if (Admit(&u) && WithinBudget(u, bounded)) bounded.push_back(std::move(u));
    }
    stats_.received -= static_cast<int64_t>(round.size());  // (Admit counted them again)
    if (bounded.empty()) return;
    const double c = static_cast<double>(std::max<int64_t>(config_.concurrency, 1));
    if (!Apply(PrivateAggregate(bounded, std::vector<double>(bounded.size(), 1 / c), 1 / c))) {
      return;
    }
    stats_.applied += static_cast<int64_t>(bounded.size());
    stats_.staleness[0] += static_cast<int64_t>(bounded.size());
    AfterAggregation();
    return;
  }
  const std::vector<Update>& updates = bounded.empty() ? round : bounded;
  double total = 0;
  for (const Update& u : updates) total += static_cast<double>(u.num_samples);
  std::vector<double> w;
  for (const Update& u : updates) {
    FTTE_CHECK(u.base_version == version_) << "FedAvg update from another round";
    w.push_back(static_cast<double>(u.num_samples) / total);
  }
  if (!Apply(Combine(updates, w))) return;  // refused: the round's updates are dropped
  stats_.applied += static_cast<int64_t>(updates.size());
  stats_.staleness[0] += static_cast<int64_t>(updates.size());
  AfterAggregation();
}

}  // namespace ftte::fl
