#include "ftte/data/partition.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <numeric>
#include <queue>
#include <unordered_map>
#include <utility>

#include "ftte/core/check.h"
#include "ftte/core/rng.h"

namespace ftte::data {

namespace {

// Redraws of the Dirichlet proportions before falling back to the top-up.
constexpr int kMaxDirichletAttempts = 100;

std::string Str(int64_t v) { return std::to_string(v); }

// Fisher-Yates on ftte::Rng (std::shuffle's output differs between standard libraries).
void Shuffle(std::vector<int64_t>& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng.Below(i));
    std::swap(v[i - 1], v[j]);
  }
}

std::vector<int64_t> Iota(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

Status CheckClients(int64_t clients, int64_t size) {
  if (clients <= 0) {
    return InvalidArgument("clients must be >= 1, got " + Str(clients));
  }
  if (clients > size) {
    return InvalidArgument("clients (" + Str(clients) + ") exceeds the number of samples (" +
                           Str(size) +
                           "): every client needs at least one sample; lower clients or use "
                           "more data");
  }
  return Status::Ok();
}

// log of a Gamma(alpha, 1) sample. Working in logs keeps tiny alphas usable: for alpha = 0.01 the
// sample itself underflows to 0 for most draws, which would leave nothing to normalise.
double SampleLogGamma(double alpha, Rng& rng) {
  if (alpha < 1) {
    // Boost: if X ~ Gamma(alpha + 1) and U ~ Uniform(0, 1], X * U^(1/alpha) ~ Gamma(alpha).
    const double log_x = SampleLogGamma(alpha + 1, rng);
    const double u = 1.0 - rng.Uniform();  // (0, 1], so the log is finite
    return log_x + std::log(u) / alpha;
  }
  // Marsaglia & Tsang (2000), "A simple method for generating gamma variables".
  const double d = alpha - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    const double x = rng.Normal();
    double v = 1.0 + c * x;
    if (v <= 0) continue;
    v = v * v * v;
    const double u = rng.Uniform();
    const double x2 = x * x;
    if (u < 1.0 - 0.0331 * x2 * x2) return std::log(d * v);
    if (std::log(u) < 0.5 * x2 + d * (1.0 - v + std::log(v))) return std::log(d * v);
  }
}

// One Dirichlet attempt: for each non-empty class, draws proportions over clients and cuts the
// class's (already shuffled) samples at the cumulative proportions. Adds each client's count to
// `sizes`, and its samples to `out` when `out` is not null. Replaying the same `rng` reproduces
// the attempt, so the search pass needs only the sizes.
void DealDirichlet(Rng rng, const std::vector<std::vector<int64_t>>& by_class, int64_t clients,
                   double alpha, std::vector<int64_t>& sizes, Partition* out) {
  const size_t k_clients = static_cast<size_t>(clients);
  std::vector<double> w(k_clients);
  for (const std::vector<int64_t>& members : by_class) {
    if (members.empty()) continue;
    double max_log = -HUGE_VAL;
    for (double& x : w) {
      x = SampleLogGamma(alpha, rng);
      max_log = std::max(max_log, x);
    }
    double sum = 0;
    for (double& x : w) {
      x = std::exp(x - max_log);  // the largest becomes 1, so sum >= 1
      sum += x;
    }
    const int64_t n = static_cast<int64_t>(members.size());
    double cum = 0;
    int64_t prev = 0;
    for (size_t k = 0; k < k_clients; ++k) {
      cum += w[k] / sum;
      // Cutting at rounded cumulative proportions deals exactly n samples; the last cut is pinned
      // to n so rounding error in `cum` cannot drop a sample.
      const int64_t cut =
          k + 1 == k_clients ? n : std::min(n, static_cast<int64_t>(std::llround(cum * n)));
      sizes[k] += cut - prev;
      if (out != nullptr) {
        (*out)[k].insert((*out)[k].end(), members.begin() + prev, members.begin() + cut);
      }
      prev = cut;
    }
  }
}

// Moves samples from the largest clients (ties: lowest index) to each client below `min`, in
// client order. Requires sum of sizes >= clients * min.
void TopUp(Partition& p, int64_t min) {
  std::priority_queue<std::pair<int64_t, int64_t>> donors;  // (size, -client)
  for (size_t k = 0; k < p.size(); ++k) {
    const int64_t size = static_cast<int64_t>(p[k].size());
    if (size > min) donors.emplace(size, -static_cast<int64_t>(k));
  }
  for (std::vector<int64_t>& needy : p) {
    while (static_cast<int64_t>(needy.size()) < min) {
      FTTE_CHECK(!donors.empty()) << "top-up ran out of donors";
      const size_t d = static_cast<size_t>(-donors.top().second);
      donors.pop();
      needy.push_back(p[d].back());
      p[d].pop_back();
      const int64_t size = static_cast<int64_t>(p[d].size());
      if (size > min) donors.emplace(size, -static_cast<int64_t>(d));
    }
  }
}

}  // namespace

Result<Partition> PartitionIid(int64_t size, int64_t clients, uint64_t seed) {
  if (size < 0) return InvalidArgument("size must be >= 0, got " + Str(size));
  FTTE_RETURN_IF_ERROR(CheckClients(clients, size));
  std::vector<int64_t> order = Iota(size);
  Rng rng(seed);
  Shuffle(order, rng);
  Partition p(static_cast<size_t>(clients));
  for (auto& shard : p) shard.reserve(static_cast<size_t>(size / clients + 1));
  for (size_t i = 0; i < order.size(); ++i) {
    p[i % static_cast<size_t>(clients)].push_back(order[i]);
  }
  return p;
}

Result<Partition> PartitionDirichlet(const std::vector<int32_t>& labels, int num_classes,
                                     int64_t clients, double alpha, uint64_t seed,
                                     int64_t min_per_client) {
  const int64_t size = static_cast<int64_t>(labels.size());
  if (num_classes <= 0) {
    return InvalidArgument("num_classes must be >= 1, got " + Str(num_classes) +
                           "; pass the dataset's num_classes");
  }
  if (!(alpha > 0) || !std::isfinite(alpha)) {
    return InvalidArgument("alpha must be a finite number > 0, got " + std::to_string(alpha) +
                           "; use e.g. 0.1 for strong label skew or 100 for nearly IID");
  }
  if (min_per_client < 0) {
    return InvalidArgument("min_per_client must be >= 0, got " + Str(min_per_client));
  }
  FTTE_RETURN_IF_ERROR(CheckClients(clients, size));
  if (min_per_client > size / clients) {
    return InvalidArgument("clients (" + Str(clients) + ") * min_per_client (" +
                           Str(min_per_client) + ") exceeds the number of samples (" + Str(size) +
                           "); lower clients or min_per_client");
  }
  std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(num_classes));
  for (int64_t i = 0; i < size; ++i) {
    const int32_t label = labels[static_cast<size_t>(i)];
    if (label < 0 || label >= num_classes) {
      return InvalidArgument("labels[" + Str(i) + "] = " + Str(label) + " is outside [0, " +
                             "num_classes=" + Str(num_classes) +
                             "); pass the dataset's num_classes");
    }
    by_class[static_cast<size_t>(label)].push_back(i);
  }
  const Rng root(seed);
  Rng shuffle_rng = root.Fork(0);
  for (auto& members : by_class) Shuffle(members, shuffle_rng);

  // Search with sizes only; keep the first attempt that satisfies min_per_client, or failing
  // that the one with the smallest total shortfall.
  int best_attempt = 0;
  int64_t best_shortfall = -1;
  std::vector<int64_t> sizes(static_cast<size_t>(clients));
  for (int attempt = 0; attempt < kMaxDirichletAttempts; ++attempt) {
    std::fill(sizes.begin(), sizes.end(), 0);
    DealDirichlet(root.Fork(1 + static_cast<uint64_t>(attempt)), by_class, clients, alpha, sizes,
                  nullptr);
    int64_t shortfall = 0;
    for (int64_t s : sizes) shortfall += std::max<int64_t>(0, min_per_client - s);
    if (best_shortfall < 0 || shortfall < best_shortfall) {
      best_attempt = attempt;
      best_shortfall = shortfall;
    }
    if (shortfall == 0) break;
  }
  std::fill(sizes.begin(), sizes.end(), 0);
  Partition p(static_cast<size_t>(clients));
  DealDirichlet(root.Fork(1 + static_cast<uint64_t>(best_attempt)), by_class, clients, alpha, sizes,
                &p);
  if (best_shortfall > 0) TopUp(p, min_per_client);
  return p;
}

Result<Partition> PartitionShards(const std::vector<int32_t>& labels, int64_t clients,
                                  int64_t shards_per_client, uint64_t seed) {
  const int64_t size = static_cast<int64_t>(labels.size());
  if (clients <= 0) return InvalidArgument("clients must be >= 1, got " + Str(clients));
  if (shards_per_client <= 0) {
    return InvalidArgument("shards_per_client must be >= 1, got " + Str(shards_per_client) +
                           "; McMahan et al. use 2");
  }
  // Written as a division so clients * shards_per_client cannot overflow.
  if (shards_per_client > size / clients) {
    return InvalidArgument("clients (" + Str(clients) + ") * shards_per_client (" +
                           Str(shards_per_client) + ") exceeds the number of samples (" +
                           Str(size) +
                           "): every shard needs a sample; lower clients or "
                           "shards_per_client");
  }
  std::vector<int64_t> order = Iota(size);
  std::stable_sort(order.begin(), order.end(), [&labels](int64_t a, int64_t b) {
    return labels[static_cast<size_t>(a)] < labels[static_cast<size_t>(b)];
  });
  const int64_t shards = clients * shards_per_client;
  const int64_t base = size / shards, extra = size % shards;
  // Shard s starts at s * base + min(s, extra): the first `extra` shards hold one more sample.
  auto shard_begin = [&](int64_t s) { return s * base + std::min(s, extra); };
  std::vector<int64_t> shard_ids = Iota(shards);
  Rng rng(seed);
  Shuffle(shard_ids, rng);
  Partition p(static_cast<size_t>(clients));
  for (int64_t k = 0; k < clients; ++k) {
    std::vector<int64_t>& mine = p[static_cast<size_t>(k)];
    for (int64_t t = 0; t < shards_per_client; ++t) {
      const int64_t s = shard_ids[static_cast<size_t>(k * shards_per_client + t)];
      mine.insert(mine.end(), order.begin() + shard_begin(s), order.begin() + shard_begin(s + 1));
    }
  }
  return p;
}

Result<Partition> PartitionSample(int64_t size, int64_t clients, int64_t per_client,
                                  uint64_t seed) {
  if (size <= 0) return InvalidArgument("the dataset is empty: nothing to sample");
  if (clients <= 0) {
    return InvalidArgument("clients must be positive, got " + std::to_string(clients));
  }
  if (per_client <= 0 || per_client > size) {
    return InvalidArgument("sample:" + std::to_string(per_client) + " needs 1 to " +
                           std::to_string(size) + " samples per client (the dataset's size)");
  }
  Partition p(static_cast<size_t>(clients));
  const Rng base(seed ^ 0x5a3b1e);
  for (int64_t c = 0; c < clients; ++c) {
    // Floyd's algorithm: per_client distinct values of [0, size) in per_client draws.
    Rng rng = base.Fork(static_cast<uint64_t>(c));
    std::vector<int64_t>& mine = p[static_cast<size_t>(c)];
    mine.reserve(static_cast<size_t>(per_client));
    for (int64_t j = size - per_client; j < size; ++j) {
      const auto t = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(j) + 1));
      const bool taken = std::find(mine.begin(), mine.end(), t) != mine.end();
      mine.push_back(taken ? j : t);
    }
    std::sort(mine.begin(), mine.end());
  }
  return p;
}

Result<Partition> PartitionNatural(const std::vector<int64_t>& group_of_sample) {
  if (group_of_sample.empty()) {
    return InvalidArgument("group_of_sample is empty: need at least one sample to form a client");
  }
  std::unordered_map<int64_t, size_t> client_of_group;
  Partition p;
  for (size_t i = 0; i < group_of_sample.size(); ++i) {
    const auto [it, inserted] = client_of_group.emplace(group_of_sample[i], p.size());
    if (inserted) p.emplace_back();
    p[it->second].push_back(static_cast<int64_t>(i));
  }
  return p;
}

Result<Partition> PartitionByName(const std::string& spec, const std::vector<int32_t>& labels,
                                  int num_classes, int64_t clients, uint64_t seed) {
  static constexpr char kForms[] =
      "expected \"iid\", \"dirichlet:<alpha>\" (e.g. \"dirichlet:0.5\"), "
      "\"shards:<shards_per_client>\" (e.g. \"shards:2\") or \"sample:<per_client>\" "
      "(e.g. \"sample:64\": overlapping draws, for more devices than samples)";
  const int64_t size = static_cast<int64_t>(labels.size());
  if (spec == "iid") return PartitionIid(size, clients, seed);
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  const char* first = arg.data();
  const char* last = arg.data() + arg.size();
  if (colon != std::string::npos && kind == "dirichlet") {
    double alpha = 0;
    const auto [ptr, ec] = std::from_chars(first, last, alpha);
    if (arg.empty() || ec != std::errc() || ptr != last) {
      return InvalidArgument("bad partition spec \"" + spec + "\": alpha \"" + arg +
                             "\" is not a number; " + kForms);
    }
    return PartitionDirichlet(labels, num_classes, clients, alpha, seed);
  }
  if (colon != std::string::npos && (kind == "shards" || kind == "sample")) {
    const char* what = kind == "shards" ? "shards_per_client" : "per_client";
    int64_t per_client = 0;
    const auto [ptr, ec] = std::from_chars(first, last, per_client);
    if (arg.empty() || ec != std::errc() || ptr != last) {
      return InvalidArgument("bad partition spec \"" + spec + "\": " + what + " \"" + arg +
                             "\" is not an integer; " + kForms);
    }
    if (kind == "sample") return PartitionSample(size, clients, per_client, seed);
    return PartitionShards(labels, clients, per_client, seed);
  }
  return InvalidArgument("unknown partition spec \"" + spec + "\"; " + kForms);
}

PartitionStats Summarize(const Partition& p, const std::vector<int32_t>& labels) {
  PartitionStats stats;
  if (p.empty()) return stats;
  stats.min_size = std::numeric_limits<int64_t>::max();
  int64_t total = 0, total_labels = 0;
  std::vector<int32_t> seen;
  for (const std::vector<int64_t>& client : p) {
    const int64_t n = static_cast<int64_t>(client.size());
    stats.min_size = std::min(stats.min_size, n);
    stats.max_size = std::max(stats.max_size, n);
    total += n;
    seen.clear();
    for (int64_t i : client) {
      FTTE_CHECK(i >= 0 && i < static_cast<int64_t>(labels.size()))
          << "partition index " << i << " out of range for " << labels.size() << " labels";
      seen.push_back(labels[static_cast<size_t>(i)]);
    }
    std::sort(seen.begin(), seen.end());
    total_labels += std::unique(seen.begin(), seen.end()) - seen.begin();
  }
  const double clients = static_cast<double>(p.size());
  stats.mean_size = static_cast<double>(total) / clients;
  stats.mean_labels_per_client = static_cast<double>(total_labels) / clients;
  return stats;
}

}  // namespace ftte::data
