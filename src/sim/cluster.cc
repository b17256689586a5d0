#include "ftte/sim/cluster.h"

namespace ftte::sim {

namespace {

LocalCluster local_cluster;
// Per thread: a test may run several ranks as threads of one process (thread_cluster.h).
thread_local Cluster* process_cluster = &local_cluster;

}  // namespace

Cluster& ProcessCluster() { return *process_cluster; }

void SetProcessCluster(Cluster* cluster) {
  process_cluster = cluster != nullptr ? cluster : &local_cluster;
}

}  // namespace ftte::sim
