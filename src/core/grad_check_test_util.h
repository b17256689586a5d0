// The numerical harness every layer test uses (test-only, header-only).
//
// CheckLayer(layer, input shape, tracker, options) runs the layer the way a container would and
// checks, for one random input x and one random output gradient dy:
//   * the analytic dx and the gradients of trainable parameter rows against central finite
//     differences of L = sum(y * dy), accumulated in double;
//   * that results are bit-identical with 1 and 2 threads, and whether the layer was prepared
//     for the actual batch or a larger one (a thread-count dependence shows only if the second
//     worker takes a task, so give layers inputs large enough for several tasks too);
//   * for InPlace() layers, that running in place (y == x, dx == dy) gives the same bits, and
//     for IsView() layers that aliasing is all they need;
//   * the rest of the contract: Forward does not write past y; Backward writes every element of
//     dx and of each packed gradient (they are prefilled with a NaN sentinel) and nothing past
//     dx, leaves dx alone without mode.input_grad and the gradients alone without
//     mode.param_grad, and reads x (resp. y) only if NeedsInput (resp. NeedsOutput) says so (it
//     is otherwise handed NaNs); parameter values, frozen rows included, stay bit-identical;
//   * optionally, the forward output against a plain reference implementation.
// It returns an AssertionResult whose message names the layer, the tensor, the element and
// both values of the first mismatches.
#ifndef FTTE_CORE_GRAD_CHECK_TEST_UTIL_H_
#define FTTE_CORE_GRAD_CHECK_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "ftte/core/layer.h"
#include "ftte/core/rng.h"
#include "ftte/core/thread_pool.h"

namespace ftte {

// The four modes a layer test runs.
constexpr LayerMode kForwardOnly{false, false};
constexpr LayerMode kInputGradOnly{false, true};
constexpr LayerMode kParamGradOnly{true, false};
constexpr LayerMode kBoth{true, true};

// Fills v with U(lo, hi).
inline void FillUniform(Rng& rng, std::vector<float>& v, float lo = -1.0f, float hi = 1.0f) {
  for (float& e : v) e = lo + static_cast<float>(rng.Uniform()) * (hi - lo);
}

// Fills v with distinct values at least `gap` apart, away from 0 by gap / 2, in random order:
// inputs for layers with kinks (ReLU, max pooling) where a finite-difference step smaller than
// gap / 2 must never cross one.
inline void FillSpaced(Rng& rng, std::vector<float>& v, float gap) {
  const auto n = static_cast<int64_t>(v.size());
  for (int64_t i = 0; i < n; ++i) v[i] = (static_cast<float>(i - n / 2) + 0.5f) * gap;
  for (int64_t i = n - 1; i > 0; --i) {
    std::swap(v[i], v[static_cast<int64_t>(rng.Below(static_cast<uint64_t>(i + 1)))]);
  }
}

struct LayerCheckOptions {
  LayerMode mode{true, true};
  bool training = false;  // ExecContext::training; the rng is reseeded before every Forward
  uint64_t seed = 1;      // for x, dy and the Forward rng
  // The layer is also prepared for this many more samples than it runs.
  int64_t extra_prepared_batch = 1;
  // Makes x; the default is U(-1, 1).
  std::function<void(Rng&, std::vector<float>&)> fill_input;
  // Finite differences of dx (turn off for integer inputs such as token ids).
  bool check_input_grad = true;
  float step = 1e-2f;               // finite-difference step
  double rtol = 1e-2, atol = 1e-3;  // |analytic - numeric| <= atol + rtol * max(|a|, |n|)
  int64_t max_probes = 300;         // finite-difference probes per tensor, evenly spread
  // If set, returns the expected y for x (the parameters are the layer's, reachable by capture).
  std::function<std::vector<float>(const std::vector<float>& x)> reference;
  double ref_rtol = 1e-5, ref_atol = 1e-5;
};

namespace grad_check_internal {

inline constexpr uint32_t kSentinelBits = 0x7fc0dead;  // a quiet NaN no kernel produces
inline constexpr size_t kGuard = 16;  // floats after each buffer, to catch overruns
inline float Sentinel() { return std::bit_cast<float>(kSentinelBits); }
// Pads the inputs x and dy: another NaN, so that a layer computing past the end of its input
// writes something other than the sentinel past the end of its output.
inline float Fence() { return std::bit_cast<float>(uint32_t{0x7fc0f00d}); }
inline bool IsSentinel(float v) { return std::bit_cast<uint32_t>(v) == kSentinelBits; }

// Stores committed gradients into the parameters' grad() (packed), and checks that no row is
// committed twice.
class StoreSink : public GradientSink {
 public:
  void Commit(Parameter& p, int64_t first, int64_t count, float* g) override {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t rs = p.row_size();
    auto& seen = committed_[&p];
    seen.resize(static_cast<size_t>(p.trainable_rows()), 0);
    for (int64_t r = first; r < first + count; ++r) {
      if (r < 0 || r >= p.trainable_rows()) {
        problems_.push_back(p.name() + ": committed packed row " + std::to_string(r) + " of " +
                            std::to_string(p.trainable_rows()));
        return;
      }
      if (seen[r]++)
        problems_.push_back(p.name() + ": packed row " + std::to_string(r) + " committed twice");
    }
    std::copy(g, g + count * rs, p.grad().data() + first * rs);
  }
  // Rows never committed, and other problems, as messages; then forgets everything.
  std::vector<std::string> Finish(const std::vector<Parameter*>& params) {
    std::vector<std::string> out = problems_;
    for (Parameter* p : params) {
      auto& seen = committed_[p];
      seen.resize(static_cast<size_t>(p->trainable_rows()), 0);
      for (int64_t r = 0; r < p->trainable_rows(); ++r) {
        if (!seen[r]) {
          out.push_back(p->name() + ": packed row " + std::to_string(r) + " never committed");
          break;
        }
      }
    }
    committed_.clear();
    problems_.clear();
    return out;
  }

 private:
  std::mutex mu_;
  std::map<const Parameter*, std::vector<int>> committed_;
  std::vector<std::string> problems_;
};

// The outputs of one Forward + Backward.
struct Outputs {
  std::vector<float> y, dx;
  std::vector<std::vector<float>> grads;  // per parameter, packed
};

inline bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Index of the first element whose bits differ, or -1.
inline int64_t FirstDiff(const std::vector<float>& a, const std::vector<float>& b) {
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i])) {
      return static_cast<int64_t>(i);
    }
  }
  return a.size() == b.size() ? -1 : static_cast<int64_t>(std::min(a.size(), b.size()));
}

// Evenly spread probe indices into [0, n).
inline std::vector<int64_t> Probes(int64_t n, int64_t max_probes) {
  std::vector<int64_t> p;
  const int64_t k = std::min(n, max_probes);
  for (int64_t i = 0; i < k; ++i) p.push_back(i * n / k);
  return p;
}

class Checker {
 public:
  Checker(Layer& layer, const Shape& in, MemoryTracker* tracker, const LayerCheckOptions& opt)
      : layer_(layer), in_(in), tracker_(tracker), opt_(opt) {}

  ::testing::AssertionResult Run() {
    Result<Shape> out = layer_.OutputShape(in_);
    if (!out.ok()) return Fail() << "OutputShape failed: " << out.status().ToString();
    out_ = *out;
    if (layer_.IsView() && NumElements(out_) != NumElements(in_)) {
      return Fail() << "a view layer changes the element count";
    }
    for (Parameter* p : layer_.Params()) {
      if (p->data() == nullptr) return Fail() << p->name() << " is stored as int8";
      p->grad() = Tensor(tracker_, MemCategory::kGradients, {p->trainable_numel()});
      values_before_.emplace_back(p->data(), p->data() + p->numel());
    }
    Rng rng(opt_.seed);
    x_.resize(static_cast<size_t>(NumElements(in_)));
    if (opt_.fill_input) {
      opt_.fill_input(rng, x_);
    } else {
      FillUniform(rng, x_);
    }
    dy_.resize(static_cast<size_t>(NumElements(out_)));
    FillUniform(rng, dy_);

    // A: 1 thread, prepared for a larger batch. B: 2 threads, prepared for the batch.
    const Outputs a = RunOnce(1, opt_.extra_prepared_batch, /*alias=*/layer_.IsView());
    const Outputs b = RunOnce(2, 0, /*alias=*/layer_.IsView());
    CompareBits(a, b, "1 thread (prepared for a larger batch) vs 2 threads");
    if (layer_.InPlace() && !layer_.IsView()) {
      const Outputs c = RunOnce(2, 0, /*alias=*/true);
      CompareBits(a, c, "out of place vs in place");
    }
    if (opt_.reference) CheckReference(a.y);
    if (opt_.mode.backward()) CheckGradients(a);
    CheckValuesUnchanged();
    if (failures_ == 0) return ::testing::AssertionSuccess();
    return Fail() << message_.str();
  }

 private:
  ::testing::AssertionResult Fail() {
    return ::testing::AssertionFailure()
           << layer_.Describe() << " on " << ShapeToString(in_)
           << " (mode param_grad=" << opt_.mode.param_grad << " input_grad=" << opt_.mode.input_grad
           << " training=" << opt_.training << "): ";
  }

  std::ostream& Problem() {
    ++failures_;
    return message_ << "\n  ";
  }

  ExecContext Context(ThreadPool* pool, Rng* rng) {
    ExecContext ctx;
    ctx.pool = pool;
    ctx.training = opt_.training;
    ctx.rng = rng;
    ctx.workspace = workspace_.data();
    ctx.grads = &sink_;
    return ctx;
  }

  // Prepares the layer and makes its workspace: what Plan asks for, filled with the sentinel,
  // then a guard.
  void Prepare(int threads, int64_t extra_batch) {
    Shape prepared = in_;
    prepared[0] += extra_batch;
    PlanContext pc;
    pc.threads = threads;
    layer_.Prepare(prepared, opt_.mode, pc, tracker_);
    workspace_floats_ = static_cast<size_t>(WorkspaceOf(layer_, prepared, opt_.mode, pc) / 4);
    workspace_.assign(workspace_floats_ + kGuard, Sentinel());
  }

  // Workspace writes past what Plan asked for.
  void CheckWorkspace(const std::string& run) {
    if (!GuardIntact(workspace_, workspace_floats_)) {
      Problem() << run << "wrote past the end of its workspace (" << workspace_floats_
                << " floats)";
    }
  }

  // Prepare + Forward + Backward. With `alias`, y shares x's buffer and dx shares dy's.
  Outputs RunOnce(int threads, int64_t extra_batch, bool alias) {
    std::ostringstream label;  // (not string operator+: GCC 12 -Wrestrict false positive)
    label << "[" << threads << " thread(s)" << (alias ? ", aliased" : "") << "] ";
    const std::string run = label.str();
    Prepare(threads, extra_batch);
    ThreadPool pool(threads);
    Rng rng(opt_.seed ^ 0x5eedULL);
    ExecContext ctx = Context(&pool, &rng);
    const size_t nx = x_.size(), ny = dy_.size();

    std::vector<float> x = x_;
    x.resize(nx + kGuard, Fence());
    std::vector<float> y_own(ny + kGuard, Sentinel());
    float* y = alias ? x.data() : y_own.data();
    layer_.Forward(View{x.data(), in_}, View{y, out_}, ctx);
    CheckWorkspace(run);
    Outputs o;
    o.y.assign(y, y + ny);
    if (!alias && !SameBits(x, Padded(x_, nx))) Problem() << run << "Forward modified x";
    if (!alias && !GuardIntact(y_own, ny)) Problem() << run << "Forward wrote past the end of y";
    if (!opt_.mode.backward()) return o;

    // What Backward may not read is replaced by NaNs (with the shape kept).
    std::vector<float> x_seen = x, y_seen(y, y + ny);
    if (!alias && !layer_.NeedsInput(opt_.mode)) std::fill(x_seen.begin(), x_seen.end(), NAN);
    if (!alias && !layer_.NeedsOutput(opt_.mode)) std::fill(y_seen.begin(), y_seen.end(), NAN);
    std::vector<float> dy = Padded(dy_, ny);
    std::vector<float> dx_own(nx + kGuard, Sentinel());
    float* dx = alias ? dy.data() : dx_own.data();
    for (Parameter* p : layer_.Params()) {
      std::fill(p->grad().data(), p->grad().data() + p->grad().numel(), Sentinel());
    }
    layer_.Backward(View{alias ? x.data() : x_seen.data(), in_},
                    View{alias ? y : y_seen.data(), out_}, View{dy.data(), out_}, View{dx, in_},
                    ctx);
    CheckWorkspace(run);
    for (const std::string& problem : sink_.Finish(layer_.Params())) {
      if (opt_.mode.param_grad) Problem() << run << problem;
    }
    if (!alias && !SameBits(dy, Padded(dy_, ny))) Problem() << run << "Backward modified dy";
    if (!alias) {
      if (!GuardIntact(dx_own, nx)) Problem() << run << "Backward wrote past the end of dx";
      const bool untouched = std::all_of(dx_own.begin(), dx_own.begin() + nx, IsSentinel);
      if (!opt_.mode.input_grad && !untouched) {
        Problem() << run << "Backward wrote dx without mode.input_grad";
      }
    }
    if (opt_.mode.input_grad) {
      o.dx.assign(dx, dx + nx);
      const auto it = std::find_if(o.dx.begin(), o.dx.end(), IsSentinel);
      if (it != o.dx.end()) {
        Problem() << run << "Backward left dx[" << (it - o.dx.begin()) << "] unwritten";
      }
    }
    for (Parameter* p : layer_.Params()) {
      const float* g = p->grad().data();
      o.grads.emplace_back(g, g + p->grad().numel());
      const auto& gv = o.grads.back();
      if (opt_.mode.param_grad) {
        const auto it = std::find_if(gv.begin(), gv.end(), IsSentinel);
        if (it != gv.end()) {
          Problem() << run << "Backward left packed " << p->name() << " grad[" << (it - gv.begin())
                    << "] unwritten";
        }
      } else if (!std::all_of(gv.begin(), gv.end(), IsSentinel)) {
        Problem() << run << "Backward wrote " << p->name() << " grad without mode.param_grad";
      }
    }
    return o;
  }

  static std::vector<float> Padded(const std::vector<float>& v, size_t n) {
    std::vector<float> p(v.begin(), v.begin() + static_cast<int64_t>(n));
    p.resize(n + kGuard, Fence());
    return p;
  }

  static bool GuardIntact(const std::vector<float>& v, size_t n) {
    return std::all_of(v.begin() + static_cast<int64_t>(n), v.end(), IsSentinel);
  }

  void CompareBits(const Outputs& a, const Outputs& b, const std::string& what) {
    auto compare = [&](const std::vector<float>& u, const std::vector<float>& v,
                       const std::string& name) {
      const int64_t i = FirstDiff(u, v);
      if (i < 0) return;
      Problem() << what << ": " << name << " differs first at [" << i
                << "]: " << (i < static_cast<int64_t>(u.size()) ? u[i] : NAN) << " vs "
                << (i < static_cast<int64_t>(v.size()) ? v[i] : NAN);
    };
    compare(a.y, b.y, "y");
    compare(a.dx, b.dx, "dx");
    const std::vector<Parameter*> params = layer_.Params();
    for (size_t k = 0; k < a.grads.size() && k < b.grads.size(); ++k) {
      compare(a.grads[k], b.grads[k], params[k]->name() + " grad");
    }
  }

  void CheckReference(const std::vector<float>& y) {
    const std::vector<float> want = opt_.reference(x_);
    if (want.size() != y.size()) {
      Problem() << "reference has " << want.size() << " elements, y has " << y.size();
      return;
    }
    int shown = 0, bad = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      const double tol = opt_.ref_atol + opt_.ref_rtol * std::fabs(want[i]);
      if (std::fabs(static_cast<double>(y[i]) - want[i]) <= tol) continue;
      ++bad;
      if (shown++ < 5) Problem() << "y[" << i << "] = " << y[i] << ", reference " << want[i];
    }
    if (bad > shown) Problem() << "... " << bad << " of " << y.size() << " outputs differ";
  }

  // L = sum(y * dy) at x_ (with the current parameter values), in double.
  double Loss(const std::vector<float>& x, ThreadPool& pool, std::vector<float>& y) {
    Rng rng(opt_.seed ^ 0x5eedULL);
    ExecContext ctx = Context(&pool, &rng);
    std::vector<float> xc = x;  // a view layer's y would alias x
    float* yp = layer_.IsView() ? xc.data() : y.data();
    layer_.Forward(View{xc.data(), in_}, View{yp, out_}, ctx);
    double l = 0;
    for (size_t i = 0; i < dy_.size(); ++i) l += static_cast<double>(yp[i]) * dy_[i];
    return l;
  }

  // Compares analytic[i] with the central difference of Loss in *target(i) for each probe,
  // target(i) being the float whose gradient analytic[i] is.
  void CompareNumeric(const std::string& name, const std::vector<float>& analytic,
                      const std::function<float*(int64_t)>& target, std::vector<float>& x,
                      ThreadPool& pool) {
    std::vector<float> y(dy_.size());
    int shown = 0, bad = 0;
    double worst = 0;
    const std::vector<int64_t> probes =
        Probes(static_cast<int64_t>(analytic.size()), opt_.max_probes);
    for (int64_t i : probes) {
      float* v = target(i);
      const float saved = *v;
      const float hi = saved + opt_.step, lo = saved - opt_.step;
      *v = hi;
      const double lp = Loss(x, pool, y);
      *v = lo;
      const double lm = Loss(x, pool, y);
      *v = saved;
      const double numeric = (lp - lm) / (static_cast<double>(hi) - lo);
      const double a = analytic[i], err = std::fabs(a - numeric);
      const double tol = opt_.atol + opt_.rtol * std::max(std::fabs(a), std::fabs(numeric));
      worst = std::max(worst, err / tol);
      if (err <= tol) continue;  // also false for NaN
      ++bad;
      if (shown++ < 5) {
        Problem() << name << "[" << i << "]: analytic " << a << ", numeric " << numeric
                  << " (|diff| " << err << " > tol " << tol << ")";
      }
    }
    if (bad > 0) {
      Problem() << name << ": " << bad << " of " << probes.size()
                << " probes out of tolerance; worst |diff| / tol = " << worst;
    }
  }

  void CheckGradients(const Outputs& a) {
    Prepare(1, 0);
    ThreadPool pool(1);
    std::vector<float> x = x_;
    if (opt_.mode.input_grad && opt_.check_input_grad) {
      CompareNumeric(
          "dx", a.dx, [&](int64_t i) { return &x[i]; }, x, pool);
    }
    if (!opt_.mode.param_grad) return;
    const std::vector<Parameter*> params = layer_.Params();
    for (size_t k = 0; k < params.size(); ++k) {
      Parameter* p = params[k];
      const int64_t rs = p->row_size();
      // Packed index -> the value it is the gradient of.
      auto target = [&](int64_t packed) {
        const int64_t row = packed / rs;
        for (const RowRun& r : p->runs()) {
          if (row < r.packed + (r.end - r.begin)) {
            return p->data() + (r.begin + row - r.packed) * rs + packed % rs;
          }
        }
        return static_cast<float*>(nullptr);
      };
      CompareNumeric(p->name() + " grad (packed)", a.grads[k], target, x, pool);
    }
  }

  void CheckValuesUnchanged() {
    const std::vector<Parameter*> params = layer_.Params();
    for (size_t k = 0; k < params.size(); ++k) {
      const Parameter* p = params[k];
      const std::vector<float> now(p->data(), p->data() + p->numel());
      const int64_t i = FirstDiff(values_before_[k], now);
      if (i < 0) continue;
      Problem() << p->name() << " value changed at [" << i << "] (row " << i / p->row_size()
                << (p->row_trainable(i / p->row_size()) ? ", trainable" : ", frozen") << ")";
    }
  }

  Layer& layer_;
  Shape in_, out_;
  MemoryTracker* tracker_;
  const LayerCheckOptions& opt_;
  std::vector<float> x_, dy_;
  std::vector<std::vector<float>> values_before_;
  std::vector<float> workspace_;
  size_t workspace_floats_ = 0;
  StoreSink sink_;
  int failures_ = 0;
  std::ostringstream message_;
};

}  // namespace grad_check_internal

// Runs the checks listed at the top of this file on `layer` for input shape `in` (batch first).
// Allocates the parameters' gradients from `tracker`, which must outlive the layer's prepared
// buffers (the layer is left prepared). Parameters must be stored as float32.
inline ::testing::AssertionResult CheckLayer(Layer& layer, const Shape& in, MemoryTracker* tracker,
                                             const LayerCheckOptions& opt = {}) {
  return grad_check_internal::Checker(layer, in, tracker, opt).Run();
}

// What a test that drives a layer by hand needs besides the layer: a pool, the workspace the
// layer plans for (in, mode, pc), and a sink that stores committed gradients in grad() (which the
// test allocates). Prepares the layer.
struct HandContext {
  HandContext(Layer& layer, const Shape& in, LayerMode m, MemoryTracker* tracker,
              PlanContext pc = {})
      : pool(pc.threads), workspace(static_cast<size_t>(WorkspaceOf(layer, in, m, pc) / 4)) {
    layer.Prepare(in, m, pc, tracker);
    ctx.pool = &pool;
    ctx.workspace = workspace.data();
    ctx.grads = &sink;
  }
  ThreadPool pool;
  std::vector<float> workspace;
  grad_check_internal::StoreSink sink;
  ExecContext ctx;
};

// Prepares `layer` for `in` (forward only) and returns y for x.
inline std::vector<float> RunForward(Layer& layer, const Shape& in, const std::vector<float>& x,
                                     MemoryTracker* tracker, bool training = false,
                                     Rng* rng = nullptr, int threads = 1) {
  const Shape out = layer.OutputShape(in).value();
  PlanContext pc;
  pc.threads = threads;
  layer.Prepare(in, LayerMode{}, pc, tracker);
  ThreadPool pool(threads);
  std::vector<float> workspace(static_cast<size_t>(WorkspaceOf(layer, in, LayerMode{}, pc) / 4));
  ExecContext ctx;
  ctx.pool = &pool;
  ctx.training = training;
  ctx.rng = rng;
  ctx.workspace = workspace.data();
  std::vector<float> xc = x, y(static_cast<size_t>(NumElements(out)));
  layer.Forward(View{xc.data(), in}, View{layer.IsView() ? xc.data() : y.data(), out}, ctx);
  if (layer.IsView()) y = xc;
  return y;
}

}  // namespace ftte

#endif  // FTTE_CORE_GRAD_CHECK_TEST_UTIL_H_
