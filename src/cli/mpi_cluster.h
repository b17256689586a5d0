// `ftte simulate` under mpirun: the MPI cluster of the job's ranks (sim/cluster.h).
#ifndef FTTE_CLI_MPI_CLUSTER_H_
#define FTTE_CLI_MPI_CLUSTER_H_

#include <memory>

#include "ftte/core/status.h"
#include "ftte/sim/cluster.h"

namespace ftte::cli {

// The MPI job of this process. End finalises MPI; with `abort_job` (this rank stops while the
// others may still wait for it in a collective) it aborts the whole job instead, unless every
// rank already failed together (a failed Agree), so that no rank waits forever.
class MpiSession {
 public:
  virtual ~MpiSession() = default;
  virtual sim::Cluster& cluster() = 0;
  virtual void End(bool abort_job) = 0;
};

// Launched by mpirun (its environment says so): initialises MPI, checks that every rank runs
// the same ftte binary, and returns the session; a plain launch: nullptr. Errors: mpirun
// launching an ftte built without MPI (names the fix).
Result<std::unique_ptr<MpiSession>> JoinMpiIfLaunched();

}  // namespace ftte::cli

#endif  // FTTE_CLI_MPI_CLUSTER_H_
