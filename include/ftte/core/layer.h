// The layer contract: explicit Forward and Backward over borrowed views, with memory declared
// up front.
//
// Life of a layer in a training step:
//   Plan(in, mode, pc)          lists the buffers it keeps (saved state) and the workspace it
//                               needs while it runs; pure.
//   Prepare(in, mode, pc)       allocates exactly the kept buffers from the tracker.
//   Forward(x, y)               y is a buffer its container owns; may be called with a smaller
//                               batch than prepared for.
//   Backward(x, y, dy, dx)      hands the gradients of the trainable rows of its parameters to
//                               ctx.grads, a block of rows at a time, and, when
//                               mode.input_grad, writes dx.
// Forward and Backward never allocate. Work is split into tasks whose boundaries depend only on
// the problem size, so results do not depend on the thread count.
//
// Workspace is transient: one arena (ExecContext::workspace) serves every layer in turn, since
// only one layer runs at a time, so a step's workspace is the largest any layer needs, not the
// sum. Nothing in it survives from Forward to Backward. Gradients never exist for the whole
// trainable set at once: a layer computes a block in its workspace and commits it, and the
// trainer applies the update to those rows at once (DESIGN.md §3, fused update). So Backward
// must be done reading a parameter's values (for dx) before it commits that parameter's
// gradient: the input gradient comes first (TTE's operator reordering).
#ifndef FTTE_CORE_LAYER_H_
#define FTTE_CORE_LAYER_H_

#include <memory>
#include <string>
#include <vector>

#include "ftte/core/memory.h"
#include "ftte/core/parameter.h"
#include "ftte/core/rng.h"
#include "ftte/core/status.h"
#include "ftte/core/tensor.h"
#include "ftte/core/thread_pool.h"

namespace ftte {

// What backward must produce for a layer.
struct LayerMode {
  bool param_grad = false;  // gradients of its trainable rows
  bool input_grad = false;  // the gradient of its input
  bool backward() const { return param_grad || input_grad; }
};

struct BufferRequest {
  MemCategory category;
  int64_t bytes;
  std::string what;
};

// The buffers a layer or a whole training step allocates. Prediction sums them; Prepare
// allocates them; the tracker measures them.
struct MemoryPlan {
  // Buffers kept for the life of a prepared step (never kWorkspace).
  std::vector<BufferRequest> requests;
  // The workspace arena: the largest workspace any one layer asks for (layers run one at a
  // time and share it), in bytes, and who asks for it.
  int64_t workspace = 0;
  std::string workspace_what;

  // Requests of 0 bytes are kept so that slot numbers stay fixed; they allocate nothing.
  // Aborts for kWorkspace (use AddWorkspace).
  void Add(MemCategory c, int64_t bytes, std::string what);
  // A layer's whole workspace while it runs (per-worker parts included).
  void AddWorkspace(int64_t bytes, std::string what) {
    if (bytes > workspace) {
      workspace = bytes;
      workspace_what = std::move(what);
    }
  }
  void Append(const MemoryPlan& o);
  int64_t Total() const;               // kept buffers + workspace
  int64_t Total(MemCategory c) const;  // kWorkspace: the arena
};

// Receives parameter gradients from Backward, a block of trainable rows at a time. Rows are
// numbered as packed (p.runs(): trainable rows in order). Each trainable row of each parameter
// is committed exactly once per Backward. Commit may be called from pool tasks at the same
// time for disjoint rows; implementations must allow that.
class GradientSink {
 public:
  virtual ~GradientSink() = default;
  // g holds the gradient of packed rows [first, first + count) of p, [count, p.row_size()]
  // row-major, in the caller's workspace; the sink may overwrite it.
  virtual void Commit(Parameter& p, int64_t first, int64_t count, float* g) = 0;
};

// Multiply-adds count as two FLOPs.
struct Flops {
  int64_t forward = 0;
  int64_t backward = 0;
  Flops& operator+=(const Flops& o) {
    forward += o.forward;
    backward += o.backward;
    return *this;
  }
};

// Floats per worker tile of transient work (dequantised weights, im2col columns, gradient
// blocks), by default. Bigger tiles run faster (fewer, larger GEMMs), smaller ones need less
// memory; the trainer picks one per plan (see TrainerOptions::tile_floats).
inline constexpr int64_t kTileFloats = 1 << 15;  // 128 KiB

// What the buffers of a layer depend on besides its input shape and mode.
struct PlanContext {
  int threads = 1;                                 // workers that may run tasks at once
  FrozenStorage frozen = FrozenStorage::kFloat32;  // how frozen rows of matrices are stored
  int64_t tile_floats = kTileFloats;               // per-worker tile of transient work
};

// Per-call execution context.
struct ExecContext {
  ThreadPool* pool = nullptr;
  bool training = false;  // dropout active
  Rng* rng = nullptr;     // drawn sequentially (never from pool tasks), for determinism
  // The workspace arena, at least MemoryPlan::workspace bytes (64-byte aligned).
  float* workspace = nullptr;
  // Where Backward sends parameter gradients; needed when a layer has mode.param_grad.
  GradientSink* grads = nullptr;

  // The same context with the workspace advanced by `floats` (for a layer that keeps part of
  // the arena while a child runs).
  ExecContext After(int64_t floats) const {
    ExecContext c = *this;
    c.workspace = workspace + floats;
    return c;
  }
};

class Layer {
 public:
  virtual ~Layer() = default;

  // "Conv2d(1, 32, kernel=5, padding=2)".
  virtual std::string Describe() const = 0;
  // The output shape for input `in` (batch first), or an error naming the layer and the problem.
  virtual Result<Shape> OutputShape(const Shape& in) const = 0;
  // Parameters in a stable order, named relative to this layer ("weight", "body.0.bias").
  virtual std::vector<Parameter*> Params() { return {}; }
  // Parameters another layer owns (and lists) that this one also reads and computes gradients
  // for: a head tied to the input embedding. They count for HasTrainable, never for Params.
  virtual std::vector<Parameter*> SharedParams() { return {}; }
  // Gives every parameter its full name: prefix + path ("3." + "body.0.weight").
  virtual void AssignNames(const std::string& prefix) {
    for (Parameter* p : Params()) p->set_name(prefix + p->local_name());
  }
  // Seeded initialisation of this layer's parameters, drawn sequentially from rng.
  virtual void InitParams(Rng& rng) {}

  // Whether Backward reads x (resp. y): the container must keep it alive until then.
  virtual bool NeedsInput(LayerMode m) const = 0;
  virtual bool NeedsOutput(LayerMode m) const { return false; }
  // True if the output is the input reshaped (Flatten): no buffer and no copy.
  virtual bool IsView() const { return false; }
  // True if Forward may run with y.data == x.data and Backward with dx.data == dy.data
  // (elementwise layers such as ReLU, Dropout). The container decides whether to alias.
  virtual bool InPlace() const { return false; }

  // The buffers this layer keeps and the workspace it needs. The default layer needs none.
  virtual void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {}
  // Allocates what Plan lists in `requests`, in order (slot(i) is request i). Composites
  // override.
  virtual void Prepare(const Shape& in, LayerMode m, const PlanContext& pc, MemoryTracker* tracker);

  virtual void Forward(const View& x, View y, ExecContext& ctx) = 0;
  virtual void Backward(const View& x, const View& y, const View& dy, View dx,
                        ExecContext& ctx) = 0;

  virtual Flops CountFlops(const Shape& in, LayerMode m) const = 0;

  // Whether any parameter (of this layer or its children, shared ones included) has a trainable
  // row.
  bool HasTrainable() const;
  LayerMode mode() const { return mode_; }

 protected:
  float* slot(size_t i) const { return static_cast<float*>(slots_[i].data()); }
  size_t num_slots() const { return slots_.size(); }
  LayerMode mode_;
  PlanContext pc_;

 private:
  std::vector<Buffer> slots_;
};

// Bytes of `n` floats.
inline int64_t FloatBytes(int64_t n) { return n * static_cast<int64_t>(sizeof(float)); }

// Workspace bytes a layer asks for under (in, m, pc): what its Plan puts in the arena.
int64_t WorkspaceOf(const Layer& layer, const Shape& in, LayerMode m, const PlanContext& pc);

// Number of fixed-size tasks covering n items in blocks of `block`.
inline int64_t NumBlocks(int64_t n, int64_t block) { return (n + block - 1) / block; }

}  // namespace ftte

#endif  // FTTE_CORE_LAYER_H_
