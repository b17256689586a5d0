// The processes a simulation runs on. One process by default; under `mpirun` the `ftte`
// command installs an MPI cluster (src/cli/mpi_cluster.cc) and every rank runs the same
// deterministic event loop: device training jobs are spread over the ranks (job i is trained
// by rank i mod size) and each result is broadcast from the rank that trained it, so every
// rank's server sees the same updates in the same order and results do not depend on the
// number of ranks. Rank 0 evaluates, prints and writes.
#ifndef FTTE_SIM_CLUSTER_H_
#define FTTE_SIM_CLUSTER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "ftte/core/status.h"

namespace ftte::sim {

class Cluster {
 public:
  virtual ~Cluster() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  bool root() const { return rank() == 0; }
  // Collective (every rank calls it, in the same order): `root`'s bytes replace the others'.
  virtual void Broadcast(int root, std::vector<uint8_t>* bytes) = 0;
  // Collective: Ok when every rank holds the same `value`; else an error naming `what` and the
  // ranks that differ (the same error on every rank).
  virtual Status Agree(const std::string& what, const std::string& value) = 0;
};

// The cluster of this process: a single process unless SetProcessCluster installed another
// (which must outlive every simulation run; nullptr restores the single process). Kept per
// thread, so that tests can run the ranks of one cluster as threads (src/sim/thread_cluster.h);
// a simulation's worker threads never ask.
Cluster& ProcessCluster();
void SetProcessCluster(Cluster* cluster);

// The single process: rank 0 of 1.
class LocalCluster final : public Cluster {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void Broadcast(int, std::vector<uint8_t>*) override {}
  Status Agree(const std::string&, const std::string&) override { return Status::Ok(); }
};

}  // namespace ftte::sim

#endif  // FTTE_SIM_CLUSTER_H_
