// The layer contract: explicit Forward and Backward over borrowed views, with memory declared
// up front.
//
// Life of a layer in a training step:
//   Plan(in, mode, pc)          lists the buffers it needs (saved state, workspace); pure.
//   Prepare(in, mode, pc)       allocates exactly those buffers from the tracker.
//   Forward(x, y)               y is a buffer its container owns; may be called with a smaller
//                               batch than prepared for.
//   Backward(x, y, dy, dx)      writes the gradients of the trainable rows of its parameters
//                               (overwriting) and, when mode.input_grad, dx.
// Forward and Backward never allocate. Work is split into tasks whose boundaries depend only on
// the problem size, so results do not depend on the thread count.
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
  std::vector<BufferRequest> requests;
  // Requests of 0 bytes are kept so that slot numbers stay fixed; they allocate nothing.
  void Add(MemCategory c, int64_t bytes, std::string what) {
    requests.push_back({c, bytes, std::move(what)});
  }
  void Append(const MemoryPlan& o) {
    requests.insert(requests.end(), o.requests.begin(), o.requests.end());
  }
  int64_t Total() const;
  int64_t Total(MemCategory c) const;
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

// What the buffers of a layer depend on besides its input shape and mode.
struct PlanContext {
  int threads = 1;                                 // workers that may run tasks at once
  FrozenStorage frozen = FrozenStorage::kFloat32;  // how fully frozen weights are stored
};

// Per-call execution context.
struct ExecContext {
  ThreadPool* pool = nullptr;
  bool training = false;  // dropout active
  Rng* rng = nullptr;     // drawn sequentially (never from pool tasks), for determinism
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

  // The buffers this layer allocates itself. The default layer needs none.
  virtual void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {}
  // Allocates what Plan lists, in order (slot(i) is request i). Composites override.
  virtual void Prepare(const Shape& in, LayerMode m, const PlanContext& pc, MemoryTracker* tracker);

  virtual void Forward(const View& x, View y, ExecContext& ctx) = 0;
  virtual void Backward(const View& x, const View& y, const View& dy, View dx,
                        ExecContext& ctx) = 0;

  virtual Flops CountFlops(const Shape& in, LayerMode m) const = 0;

  // Whether any parameter (of this layer or its children) has a trainable row.
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

// Number of fixed-size tasks covering n items in blocks of `block`.
inline int64_t NumBlocks(int64_t n, int64_t block) { return (n + block - 1) / block; }

}  // namespace ftte

#endif  // FTTE_CORE_LAYER_H_
