// Micro benchmark of differential privacy's cost on the server (bench/privacy_bench.py reports
// it): one FedBuff aggregation of K = 10 updates of the whole cnn model without
// privacy, with central DP at a fixed clip (each update's norm and scale, Gaussian noise on
// every value) and with adaptive clipping (the noised count and the bound's update on top).
// Central DP adds nothing to a device's training step: the clip and the noise are the
// server's.
//
//   build/release/bench/ftte_micro --benchmark_filter='Aggregation|Privatize'
//
// Items processed are update values aggregated (K x model size per aggregation) or noised.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "ftte/core/check.h"
#include "ftte/core/rng.h"
#include "ftte/fl/privacy.h"
#include "ftte/fl/strategy.h"

namespace ftte::fl {
namespace {

constexpr int64_t kBuffer = 10;

// range(0): 0 plain FedBuff, 1 central DP with a fixed clip, 2 with adaptive clipping.
void BM_Aggregation(benchmark::State& state) {
  ServerConfig c;
  c.algorithm = Algorithm::kFedBuff;
  c.buffer = kBuffer;
  if (state.range(0) >= 1) {
    c.dp_clip = 1;
    c.dp_noise_multiplier = 1;
  }
  if (state.range(0) == 2) c.dp_quantile = 0.5;
  PlanningInputs in;
  in.model_spec = "cnn";
  in.seed = 1;
  auto s = Strategy::Create(c, in);
  FTTE_CHECK(s.ok()) << s.status().ToString();
  Strategy& strategy = **s;
  const int64_t n = strategy.plan().mask.Numel(strategy.layout());
  std::vector<Update> updates(kBuffer);
  Rng rng(7);
  for (int64_t i = 0; i < kBuffer; ++i) {
    updates[i].device = i;
    updates[i].num_samples = 32;
    updates[i].delta.resize(static_cast<size_t>(n));
    for (float& v : updates[i].delta) v = static_cast<float>(rng.Normal() * 1e-3);
  }
  for (auto _ : state) {
    for (Update& u : updates) {
      u.base_version = strategy.version();
      strategy.Receive(u);
    }
  }
  state.SetItemsProcessed(state.iterations() * kBuffer * n);
  state.counters["values"] = static_cast<double>(n);
  state.SetLabel(state.range(0) == 0 ? "plain" : state.range(0) == 1 ? "dp" : "dp-adaptive");
}
BENCHMARK(BM_Aggregation)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

// Distributed DP's cost on a device: clipping one update of the whole cnn and adding its noise
// share (ChaCha20 keystream, Box-Muller), what fl::PrivatizeUpdate does before an upload.
void BM_PrivatizeUpdate(benchmark::State& state) {
  const int64_t n = state.range(0);
  Rng rng(3);
  std::vector<float> update(static_cast<size_t>(n));
  for (float& v : update) v = static_cast<float>(rng.Normal() * 1e-3);
  const NoiseKey key = DerivedNoiseKey(1);
  for (auto _ : state) {
    std::vector<float> u = update;
    PrivatizeUpdate(&u, 1.0, 0.1, key);
    benchmark::DoNotOptimize(u.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.counters["values"] = static_cast<double>(n);
  state.SetLabel("device-noise");
}
BENCHMARK(BM_PrivatizeUpdate)->Arg(1663370)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ftte::fl
