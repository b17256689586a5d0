#include "ftte/core/check.h"
#include "strategies.h"

namespace ftte::fl {

bool FedAsyncStrategy::Receive(const Update& u) {
  Update v = u;
  if (!Admit(&v) || !WithinBudget(v, {})) return false;
  const int64_t tau = version_ - v.base_version;
  const double w = config_.async_alpha * (config_.dp_distributed ? 1 : Staleness(tau));
  if (!Apply(config_.dp() ? PrivateAggregate({v}, {w}, config_.async_alpha)
                          : Aggregate({v}, {w}))) {
    return false;
  }
  ++stats_.applied;
  ++stats_.staleness[tau];
  AfterAggregation();
  return true;
}

}  // namespace ftte::fl
