// Partitioners: split one dataset's sample indices among simulated clients, IID or with the
// non-IID skews used in the federated learning literature (label skew via Dirichlet, McMahan's
// label shards, natural groups such as writers).
//
// Every partitioner is a pure function of its arguments: the same inputs and seed give the same
// partition with any compiler or standard library (randomness comes from ftte::Rng only). Every
// sample index in [0, size) appears in exactly one client's list. Bad parameters return
// InvalidArgument naming the parameter and the fix; nothing aborts on user input.
#ifndef FTTE_DATA_PARTITION_H_
#define FTTE_DATA_PARTITION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "ftte/core/status.h"

namespace ftte::data {

// A partition: for each client, the indices (into the dataset) of its samples. Feed one client's
// list to ImageDataset::Subset to materialise its local data.
using Partition = std::vector<std::vector<int64_t>>;

// IID: a seeded shuffle of [0, size) dealt round-robin into `clients` shards, so shard sizes
// differ by at most one. Each client's indices are in shuffled order. O(size).
// Errors: size < 0, clients <= 0, clients > size.
Result<Partition> PartitionIid(int64_t size, int64_t clients, uint64_t seed);

// Label skew (Hsu et al. 2019): for each class, proportions over clients are drawn from a
// symmetric Dirichlet(alpha) and that class's (shuffled) samples are dealt in those proportions.
// Small alpha (0.1) gives each client few classes; large alpha (100) approaches IID. The order
// of indices within a client is deterministic but otherwise unspecified.
//
// If some client gets fewer than `min_per_client` samples, the proportions are re-drawn from a
// fresh deterministic stream, up to 100 times; if every attempt falls short (tiny alpha with many
// clients), the attempt with the smallest shortfall is topped up by moving samples from the
// largest clients, so the call succeeds whenever clients * min_per_client <= labels.size().
// Cost: O(attempts * num_classes * clients + labels.size()).
// Errors: num_classes <= 0, a label outside [0, num_classes), clients <= 0, alpha not a finite
// number > 0, min_per_client < 0, clients * min_per_client > labels.size() (with the default of 1:
// clients > labels.size()).
Result<Partition> PartitionDirichlet(const std::vector<int32_t>& labels, int num_classes,
                                     int64_t clients, double alpha, uint64_t seed,
                                     int64_t min_per_client = 1);

// Shards (McMahan et al. 2017): sort the indices by label (ties by index), cut them into
// clients * shards_per_client contiguous shards of (almost) equal size, and give each client
// shards_per_client shards chosen by a seeded shuffle. A shard spans one label unless it straddles
// a class boundary, so with class sizes that are multiples of the shard size a client sees at most
// shards_per_client labels. Each client's indices are in label order within each shard.
// O(size log size). Errors: clients <= 0, shards_per_client <= 0,
// clients * shards_per_client > labels.size().
Result<Partition> PartitionShards(const std::vector<int32_t>& labels, int64_t clients,
                                  int64_t shards_per_client, uint64_t seed);

// Overlapping samples, for populations larger than the dataset (e.g. 100,000 devices over
// Fashion-MNIST's 60,000 images): each client draws `per_client` distinct indices uniformly from
// [0, size), independently of the others (clients share samples; the data are IID). Client c's
// draw depends only on (seed, c), in ascending order. O(clients * per_client log per_client).
// Errors: size <= 0, clients <= 0, per_client <= 0 or > size.
Result<Partition> PartitionSample(int64_t size, int64_t clients, int64_t per_client, uint64_t seed);

// Natural: one client per distinct group id (e.g. a writer or a book), clients numbered in order
// of each group's first appearance; each client's indices ascend. Group ids are arbitrary values.
// O(size) expected. Errors: group_of_sample is empty.
Result<Partition> PartitionNatural(const std::vector<int64_t>& group_of_sample);

// By name, for flags and configs: "iid", "dirichlet:<alpha>" (e.g. "dirichlet:0.5", with
// min_per_client = 1) or "shards:<shards_per_client>" (e.g. "shards:2"). The dataset size is
// labels.size(); num_classes is used by "dirichlet" only. Errors: a spec not of those forms (the
// message lists them), or any error of the chosen partitioner.
Result<Partition> PartitionByName(const std::string& spec, const std::vector<int32_t>& labels,
                                  int num_classes, int64_t clients, uint64_t seed);

// Summary statistics for reports. All zero for an empty partition.
struct PartitionStats {
  int64_t min_size = 0, max_size = 0;  // samples per client
  double mean_size = 0;
  double mean_labels_per_client = 0;  // distinct labels per client, averaged over clients
};

// O(size log size). Aborts (FTTE_CHECK) if an index in `p` is outside `labels` (a caller bug).
PartitionStats Summarize(const Partition& p, const std::vector<int32_t>& labels);

}  // namespace ftte::data

#endif  // FTTE_DATA_PARTITION_H_
