#include "ftte/core/check.h"
#include "strategies.h"

namespace ftte::fl {

bool FedAsyncStrategy::Receive(const Update& u) {
  if (!Admit(u)) return false;
  const int64_t tau = version_ - u.base_version;
  if (!Apply(Aggregate({u}, {config_.async_alpha * Staleness(tau)}))) return false;
  ++stats_.applied;
  ++stats_.staleness[tau];
  AfterAggregation();
  return true;
}

}  // namespace ftte::fl
