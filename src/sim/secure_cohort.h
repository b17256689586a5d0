// Secure aggregation in the simulator (private to src/sim): one cohort of finished jobs through
// the real protocol (fl/secagg.h), with its bytes and the virtual time of its rounds.
#ifndef FTTE_SIM_SECURE_COHORT_H_
#define FTTE_SIM_SECURE_COHORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "ftte/fl/secagg.h"
#include "ftte/fl/strategy.h"
#include "ftte/sim/simulator.h"

namespace ftte::sim::internal {

// The protocol's parameters for a cohort of `members` (neighbours and threshold filled in where
// the config leaves them 0), checked by fl::secagg::ValidateCohort; the error names the
// [secure_aggregation] key to change.
Result<fl::secagg::CohortConfig> SecureCohortConfig(const SecureAggregationConfig& c,
                                                    int64_t members);

struct SecureCohortResult {
  bool aborted = false;
  std::string abort_reason;
  std::vector<size_t> contributors;  // indices into the members whose updates are in the sum
  std::vector<float> sum;            // model coordinates
  std::vector<int64_t> up_bytes, down_bytes;  // per member, all its messages
  double duration_s = 0;  // the four rounds, each as long as its slowest member's exchange
  // Per member: when (after the cohort filled) its masked input has arrived, or it left: where
  // the upload of a plain update would have ended, and so its training slot is free again.
  std::vector<double> input_done_s;
  int64_t clamped = 0;  // weighted values outside the fixed-point range
};

// Runs the protocol for `members` (updates packed over their plans' masks), each weighted by
// w[i] before masking, over the union of their masks; members with drop[i] leave before their
// masked input. Keys and masks are derived from `seed` and `cohort_id`, so runs repeat.
SecureCohortResult RunSecureCohort(fl::secagg::CohortConfig config, const fl::Strategy& strategy,
                                   const std::vector<fl::Update>& members,
                                   const std::vector<double>& w, const std::vector<uint8_t>& drop,
                                   const std::vector<const DeviceProfile*>& devices, uint64_t seed);

}  // namespace ftte::sim::internal

#endif  // FTTE_SIM_SECURE_COHORT_H_
