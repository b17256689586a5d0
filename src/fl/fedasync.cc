#include "ftte/core/check.h"
#include "strategies.h"

namespace ftte::fl {

bool FedAsyncStrategy::Receive(const Update& u) {
  FTTE_CHECK(u.base_version <= version_) << "update from the future";
  ++stats_.received;
  const int64_t tau = version_ - u.base_version;
  if (config_.max_staleness >= 0 && tau > config_.max_staleness) {
    ++stats_.dropped_stale;
    return false;
  }
  Observe(u);
  if (!Apply(Aggregate({u}, {config_.async_alpha * Staleness(tau)}))) return false;
  ++stats_.applied;
  ++stats_.staleness[tau];
  AfterAggregation();
  return true;
}

}  // namespace ftte::fl
