// Micro benchmarks of the core kernels at the shapes of the zoo's convolutional models (lenet5
// and cnn at batch 32): the GEMMs of a convolution, im2col / col2im, and the forward and
// backward passes of Conv2d, MaxPool2d and ReLU, single-threaded.
//
//   build/release/bench/ftte_micro --benchmark_filter=Conv2d
//
// Items processed are multiply-adds for GEMMs (so items/s is half the FLOP rate) and elements
// written for the memory-bound kernels.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "ftte/core/kernels.h"
#include "ftte/core/layers.h"
#include "ftte/core/memory.h"
#include "ftte/core/rng.h"
#include "ftte/core/thread_pool.h"

namespace ftte {
namespace {

std::vector<float> RandomVector(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& e : v) e = static_cast<float>(2 * rng.Uniform() - 1);
  return v;
}

// Gemm(trans_a, trans_b, m, n, k) with packed operands; the argument list is
// {trans_a, trans_b, m, n, k}.
void BM_Gemm(benchmark::State& state) {
  const bool ta = state.range(0) != 0, tb = state.range(1) != 0;
  const int64_t m = state.range(2), n = state.range(3), k = state.range(4);
  UseSingleThreadedBlas();
  std::vector<float> a = RandomVector(m * k, 1), b = RandomVector(k * n, 2), c(m * n);
  for (auto _ : state) {
    Gemm(ta, tb, m, n, k, 1.0f, a.data(), ta ? m : k, b.data(), tb ? k : n, 0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  state.SetItemsProcessed(state.iterations() * m * n * k);
}
// The same with PortableGemm (builds without OpenBLAS), to read as a ratio against BM_Gemm.
void BM_PortableGemm(benchmark::State& state) {
  const bool ta = state.range(0) != 0, tb = state.range(1) != 0;
  const int64_t m = state.range(2), n = state.range(3), k = state.range(4);
  std::vector<float> a = RandomVector(m * k, 1), b = RandomVector(k * n, 2), c(m * n);
  for (auto _ : state) {
    PortableGemm(ta, tb, m, n, k, 1.0f, a.data(), ta ? m : k, b.data(), tb ? k : n, 0.0f, c.data(),
                 n);
    benchmark::DoNotOptimize(c.data());
  }
  state.SetItemsProcessed(state.iterations() * m * n * k);
}
// The per-sample GEMMs of a convolution: forward (W * col), weight gradient (Conv2d sums
// col * dy^T, the transpose of dy * col^T, which is faster at these shapes; both are listed) and
// input gradient (W^T * dy); and the GEMMs of the cnn's first Linear layer.
void GemmShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"ta", "tb", "m", "n", "k"})
      ->Args({0, 0, 64, 196, 800})    // cnn conv2 forward
      ->Args({0, 1, 800, 64, 196})    // cnn conv2 weight gradient, transposed
      ->Args({0, 1, 64, 800, 196})    // cnn conv2 weight gradient
      ->Args({1, 0, 800, 196, 64})    // cnn conv2 input gradient
      ->Args({0, 0, 32, 784, 25})     // cnn conv1 forward
      ->Args({0, 1, 25, 32, 784})     // cnn conv1 weight gradient, transposed
      ->Args({0, 0, 6, 784, 25})      // lenet5 conv1 forward
      ->Args({0, 1, 25, 6, 784})      // lenet5 conv1 weight gradient, transposed
      ->Args({0, 0, 16, 100, 150})    // lenet5 conv2 forward
      ->Args({0, 1, 150, 16, 100})    // lenet5 conv2 weight gradient, transposed
      ->Args({0, 1, 16, 150, 100})    // lenet5 conv2 weight gradient
      ->Args({1, 0, 150, 100, 16})    // lenet5 conv2 input gradient
      ->Args({0, 1, 32, 512, 3136})   // cnn fc1 forward
      ->Args({1, 0, 512, 3136, 32})   // cnn fc1 weight gradient
      ->Args({0, 0, 32, 3136, 512});  // cnn fc1 input gradient
}
BENCHMARK(BM_Gemm)->Apply(GemmShapes);
BENCHMARK(BM_PortableGemm)->Apply(GemmShapes);

// {channels, height, width, kernel, padding}, stride 1.
ConvGeometry GeometryArgs(const benchmark::State& state) {
  return ConvGeometry{state.range(0), state.range(1), state.range(2), state.range(3), 1,
                      state.range(4)};
}

void BM_Im2Col(benchmark::State& state) {
  const ConvGeometry g = GeometryArgs(state);
  std::vector<float> x = RandomVector(g.channels * g.height * g.width, 3);
  std::vector<float> col(static_cast<size_t>(g.col_rows() * g.col_cols()));
  std::vector<float> scratch(static_cast<size_t>(g.scratch_size()));
  for (auto _ : state) {
    Im2Col(g, x.data(), col.data(), scratch.data());
    benchmark::DoNotOptimize(col.data());
  }
  state.SetItemsProcessed(state.iterations() * g.col_rows() * g.col_cols());
}

void BM_Col2Im(benchmark::State& state) {
  const ConvGeometry g = GeometryArgs(state);
  std::vector<float> col = RandomVector(g.col_rows() * g.col_cols(), 4);
  std::vector<float> dx(static_cast<size_t>(g.channels * g.height * g.width));
  std::vector<float> scratch(static_cast<size_t>(g.scratch_size()));
  for (auto _ : state) {
    Col2Im(g, col.data(), dx.data(), scratch.data());
    benchmark::DoNotOptimize(dx.data());
  }
  state.SetItemsProcessed(state.iterations() * g.col_rows() * g.col_cols());
}

#define FTTE_CONV_GEOMETRIES                                \
  ArgNames({"c", "h", "w", "k", "pad"})                     \
      ->Args({1, 28, 28, 5, 2})  /* lenet5 and cnn conv1 */ \
      ->Args({6, 14, 14, 5, 0})  /* lenet5 conv2 */         \
      ->Args({32, 14, 14, 5, 2}) /* cnn conv2 */
BENCHMARK(BM_Im2Col)->FTTE_CONV_GEOMETRIES;
BENCHMARK(BM_Col2Im)->FTTE_CONV_GEOMETRIES;

// A layer prepared for a batch, with its input, output and gradient buffers.
struct LayerRig {
  MemoryTracker tracker;
  ThreadPool pool{1};
  ExecContext ctx;
  Shape in, out;
  std::vector<float> x, y, dy, dx;

  void Setup(Layer& layer, Shape input, LayerMode mode) {
    in = std::move(input);
    out = layer.OutputShape(in).value();
    for (Parameter* p : layer.Params()) {
      p->grad() = Tensor(&tracker, MemCategory::kGradients, {p->trainable_numel()});
    }
    Rng rng(5);
    layer.InitParams(rng);
    layer.Prepare(in, mode, PlanContext{}, &tracker);
    ctx.pool = &pool;
    x = RandomVector(NumElements(in), 6);
    dy = RandomVector(NumElements(out), 7);
    y.resize(dy.size());
    dx.resize(x.size());
  }
  View X() { return View{x.data(), in}; }
  View Y() { return View{y.data(), out}; }
  View DY() { return View{dy.data(), out}; }
  View DX(bool on) { return on ? View{dx.data(), in} : View{nullptr, in}; }
};

// {batch, in_c, out_c, hw, kernel, padding, input_grad}
void ConvSetup(LayerRig& rig, std::unique_ptr<Conv2d>& conv, const benchmark::State& state) {
  conv = std::make_unique<Conv2d>(state.range(1), state.range(2), state.range(4), 1, state.range(5),
                                  true, &rig.tracker);
  rig.Setup(*conv, {state.range(0), state.range(1), state.range(3), state.range(3)},
            LayerMode{true, state.range(6) != 0});
}

void BM_Conv2dForward(benchmark::State& state) {
  LayerRig rig;
  std::unique_ptr<Conv2d> conv;
  ConvSetup(rig, conv, state);
  for (auto _ : state) {
    conv->Forward(rig.X(), rig.Y(), rig.ctx);
    benchmark::DoNotOptimize(rig.y.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));  // samples
}

void BM_Conv2dBackward(benchmark::State& state) {
  LayerRig rig;
  std::unique_ptr<Conv2d> conv;
  ConvSetup(rig, conv, state);
  conv->Forward(rig.X(), rig.Y(), rig.ctx);
  const bool input_grad = state.range(6) != 0;
  for (auto _ : state) {
    conv->Backward(rig.X(), rig.Y(), rig.DY(), rig.DX(input_grad), rig.ctx);
    benchmark::DoNotOptimize(rig.dx.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));  // samples
}

#define FTTE_CONV_LAYERS                                   \
  ArgNames({"n", "ic", "oc", "hw", "k", "pad", "dx"})      \
      ->Args({32, 1, 6, 28, 5, 2, 0})   /* lenet5 conv1 */ \
      ->Args({32, 6, 16, 14, 5, 0, 1})  /* lenet5 conv2 */ \
      ->Args({32, 1, 32, 28, 5, 2, 0})  /* cnn conv1 */    \
      ->Args({32, 32, 64, 14, 5, 2, 1}) /* cnn conv2 */
BENCHMARK(BM_Conv2dForward)->FTTE_CONV_LAYERS;
BENCHMARK(BM_Conv2dBackward)->FTTE_CONV_LAYERS;

// {batch, channels, hw}: 2x2 max pool with argmax saved for backward.
void BM_MaxPoolForward(benchmark::State& state) {
  LayerRig rig;
  MaxPool2d pool(2);
  rig.Setup(pool, {state.range(0), state.range(1), state.range(2), state.range(2)},
            LayerMode{false, true});
  for (auto _ : state) {
    pool.Forward(rig.X(), rig.Y(), rig.ctx);
    benchmark::DoNotOptimize(rig.y.data());
  }
  state.SetItemsProcessed(state.iterations() * NumElements(rig.in));
}

void BM_MaxPoolBackward(benchmark::State& state) {
  LayerRig rig;
  MaxPool2d pool(2);
  rig.Setup(pool, {state.range(0), state.range(1), state.range(2), state.range(2)},
            LayerMode{false, true});
  pool.Forward(rig.X(), rig.Y(), rig.ctx);
  for (auto _ : state) {
    pool.Backward(rig.X(), rig.Y(), rig.DY(), rig.DX(true), rig.ctx);
    benchmark::DoNotOptimize(rig.dx.data());
  }
  state.SetItemsProcessed(state.iterations() * NumElements(rig.in));
}

#define FTTE_POOL_SHAPES                      \
  ArgNames({"n", "c", "hw"})                  \
      ->Args({32, 6, 28})  /* lenet5 pool1 */ \
      ->Args({32, 32, 28}) /* cnn pool1 */    \
      ->Args({32, 64, 14}) /* cnn pool2 */
BENCHMARK(BM_MaxPoolForward)->FTTE_POOL_SHAPES;
BENCHMARK(BM_MaxPoolBackward)->FTTE_POOL_SHAPES;

// {elements}: ReLU saving its sign bits, and its backward.
void BM_ReLUForward(benchmark::State& state) {
  LayerRig rig;
  ReLU relu;
  rig.Setup(relu, {1, state.range(0)}, LayerMode{false, true});
  for (auto _ : state) {
    relu.Forward(rig.X(), rig.Y(), rig.ctx);
    benchmark::DoNotOptimize(rig.y.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

void BM_ReLUBackward(benchmark::State& state) {
  LayerRig rig;
  ReLU relu;
  rig.Setup(relu, {1, state.range(0)}, LayerMode{false, true});
  relu.Forward(rig.X(), rig.Y(), rig.ctx);
  for (auto _ : state) {
    relu.Backward(rig.X(), rig.Y(), rig.DY(), rig.DX(true), rig.ctx);
    benchmark::DoNotOptimize(rig.dx.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_ReLUForward)->Arg(32 * 32 * 28 * 28);  // cnn relu1
BENCHMARK(BM_ReLUBackward)->Arg(32 * 32 * 28 * 28);

}  // namespace
}  // namespace ftte
