// Micro benchmark of secure aggregation's cost (bench/secagg_bench.py reports it): one member's
// compute and bytes for one update, and the server's for one cohort, against cohort size n and
// neighbour count k (SecAgg+'s sparse graph; k = n - 1 is the complete graph of SecAgg).
//
//   build/release/bench/ftte_micro --benchmark_filter=SecAgg
//
// Updates have 100,000 values (the order of FTTE's trained subset of the cnn); the threshold is
// k/2 + 1, the smallest the cohort check allows.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "ftte/core/check.h"
#include "ftte/fl/secagg.h"

namespace ftte::fl::secagg {
namespace {

constexpr int64_t kLength = 100000;

CohortConfig Config(int n, int k) {
  return {.cohort_id = 1,
          .members = n,
          .neighbours = k,
          .threshold = k / 2 + 1,
          .graph_seed = 3,
          .length = kLength,
          .range = 1.0};
}

// Every message of one cohort run in which the members in `dropped` leave after sharing keys.
struct Transcript {
  CohortConfig config;
  std::vector<KeyAdvert> adverts;
  std::vector<std::vector<KeyAdvert>> forwarded;
  std::vector<KeyShares> shares;
  std::vector<std::vector<EncryptedShare>> routed;
  std::vector<MaskedInput> inputs;  // of the survivors
  std::vector<int32_t> survivors;
  std::vector<Unmask> unmasks;
  std::vector<float> update;
};

Transcript Record(int n, int k, int dropped_every) {
  Transcript t;
  t.config = Config(n, k);
  t.update.resize(kLength);
  for (int64_t i = 0; i < kLength; ++i) t.update[i] = static_cast<float>(std::sin(i) * 0.01);
  CohortServer server(t.config);
  std::vector<Member> members;
  for (int m = 0; m < n; ++m) {
    members.emplace_back(t.config, m, DerivedSecret(5, m));
    t.adverts.push_back(members[m].Advertise());
    FTTE_CHECK(server.ReceiveAdvert(m, t.adverts[m]).ok());
  }
  t.forwarded = server.CloseAdverts().value();
  for (int m = 0; m < n; ++m) {
    t.shares.push_back(members[m].ShareKeys(t.forwarded[m]).value());
    FTTE_CHECK(server.ReceiveShares(m, t.shares[m]).ok());
  }
  t.routed = server.CloseShares().value();
  for (int m = 0; m < n; ++m) {
    if (dropped_every > 0 && m % dropped_every == dropped_every - 1) continue;
    t.inputs.push_back(members[m].MaskInput(t.routed[m], t.update.data()).value());
    FTTE_CHECK(server.ReceiveMaskedInput(m, t.inputs.back()).ok());
  }
  t.survivors = server.CloseMaskedInputs().value();
  for (int m : t.survivors) {
    t.unmasks.push_back(members[m].Reveal(t.survivors).value());
    FTTE_CHECK(server.ReceiveUnmask(m, t.unmasks.back()).ok());
  }
  FTTE_CHECK(server.Finish().ok());
  return t;
}

// One member's four rounds for one update (member 0; the others' messages replayed).
void BM_SecAggMember(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1));
  const Transcript t = Record(n, k, 0);
  for (auto _ : state) {
    Member member(t.config, 0, DerivedSecret(5, 0));
    benchmark::DoNotOptimize(member.Advertise());
    auto shares = member.ShareKeys(t.forwarded[0]);
    auto input = member.MaskInput(t.routed[0], t.update.data());
    auto unmask = member.Reveal(t.survivors);
    FTTE_CHECK(shares.ok() && input.ok() && unmask.ok());
  }
  const double up = WireBytes(t.adverts[0]) + WireBytes(t.shares[0]) + WireBytes(t.inputs[0]) +
                    WireBytes(t.unmasks[0]);
  const double down = WireBytes(t.forwarded[0]) + WireBytes(t.routed[0]) + 4.0 +
                      4.0 * static_cast<double>(t.survivors.size());
  const double plain = 4.0 * kLength;  // the same update as float32 values
  state.counters["upload_bytes"] = up;
  state.counters["download_bytes"] = down;
  state.counters["upload_vs_plain"] = up / plain;
  state.SetItemsProcessed(state.iterations() * kLength);
}

// The server's side of one cohort: receiving every message and unmasking the sum. range(2):
// 0 nobody drops; m > 0 every m-th member drops after sharing keys (its mask key is rebuilt
// and its pairwise masks removed from its neighbours' inputs).
void BM_SecAggServer(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1));
  const int dropped_every = static_cast<int>(state.range(2));
  const Transcript t = Record(n, k, dropped_every);
  for (auto _ : state) {
    CohortServer server(t.config);
    for (int m = 0; m < n; ++m) FTTE_CHECK(server.ReceiveAdvert(m, t.adverts[m]).ok());
    FTTE_CHECK(server.CloseAdverts().ok());
    for (int m = 0; m < n; ++m) FTTE_CHECK(server.ReceiveShares(m, t.shares[m]).ok());
    FTTE_CHECK(server.CloseShares().ok());
    for (const MaskedInput& in : t.inputs) {
      FTTE_CHECK(server.ReceiveMaskedInput(in.member, in).ok());
    }
    FTTE_CHECK(server.CloseMaskedInputs().ok());
    for (const Unmask& u : t.unmasks) FTTE_CHECK(server.ReceiveUnmask(u.member, u).ok());
    auto sum = server.Finish();
    FTTE_CHECK(sum.ok()) << sum.status().ToString();
    benchmark::DoNotOptimize(sum->sum.data());
  }
  state.counters["dropped"] = static_cast<double>(n - static_cast<int>(t.survivors.size()));
  state.SetItemsProcessed(state.iterations() * n * kLength);
}

void CohortSizes(benchmark::internal::Benchmark* b) {
  for (auto [n, k] :
       std::vector<std::pair<int, int>>{{16, 15}, {64, 16}, {64, 63}, {256, 16}, {256, 32}}) {
    b->Args({n, k});
  }
}
BENCHMARK(BM_SecAggMember)->Apply(CohortSizes)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SecAggServer)
    ->Args({16, 15, 0})
    ->Args({64, 16, 0})
    ->Args({64, 16, 10})
    ->Args({256, 16, 0})
    ->Args({256, 16, 10})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ftte::fl::secagg
