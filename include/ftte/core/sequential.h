// Containers: Sequential (children in order, named "0", "1", ... as in torch.nn.Sequential)
// and Residual (y = body(x) + shortcut(x)).
//
// Sequential owns the activation memory between its children and lays it out once per
// Prepare:
//  - backward stops at the first child with a trainable parameter (unless the container's own
//    input gradient is wanted); children before it run forward only and keep nothing, a few
//    samples at a time, so their transients are micro-batch sized;
//  - a tensor is kept ("saved", MemCategory::kActivations) only if a child's backward reads it;
//  - views (Flatten) alias their input, and in-place children (ReLU, Dropout) overwrite it when
//    nothing else needs it;
//  - everything else lives in two scratch buffers (MemCategory::kActGrads) that forward uses
//    for transient outputs and backward reuses for activation gradients.
#ifndef FTTE_CORE_SEQUENTIAL_H_
#define FTTE_CORE_SEQUENTIAL_H_

#include <memory>
#include <string>
#include <vector>

#include "ftte/core/layer.h"

namespace ftte {

class Sequential : public Layer {
 public:
  Sequential();
  ~Sequential() override;
  void Add(std::unique_ptr<Layer> layer) { children_.push_back(std::move(layer)); }
  template <typename T, typename... Args>
  T* Emplace(Args&&... args) {
    auto p = std::make_unique<T>(std::forward<Args>(args)...);
    T* raw = p.get();
    children_.push_back(std::move(p));
    return raw;
  }
  size_t size() const { return children_.size(); }
  Layer& child(size_t i) { return *children_[i]; }

  std::string Describe() const override;
  Result<Shape> OutputShape(const Shape& in) const override;
  // Names are prefixed with the child index: "0.weight", "3.body.1.bias".
  std::vector<Parameter*> Params() override;
  void AssignNames(const std::string& prefix) override;
  void InitParams(Rng& rng) override;
  bool NeedsInput(LayerMode m) const override;
  bool NeedsOutput(LayerMode m) const override;
  void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const override;
  void Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
               MemoryTracker* tracker) override;
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;

  // Index of the first child that runs backward under mode m (size() if none).
  size_t FirstBackward(LayerMode m) const;

 private:
  struct Layout;
  struct LayoutStore;
  Layout MakeLayout(const Shape& in, LayerMode m) const;
  float* Resolve(const LayoutStore& st, const View& ext_in, const View& ext_out) const;
  static Shape ChildInputShape(const Layout& L, size_t i);

  std::vector<std::unique_ptr<Layer>> children_;
  std::unique_ptr<Layout> layout_;
  std::vector<Buffer> buffers_;  // saved tensors, then the two scratch buffers
};

// y = body(x) + shortcut(x); an empty shortcut is the identity.
class Residual : public Layer {
 public:
  Residual(std::unique_ptr<Sequential> body, std::unique_ptr<Sequential> shortcut);
  std::string Describe() const override;
  Result<Shape> OutputShape(const Shape& in) const override;
  // "body.0.weight", "shortcut.0.weight" (a torch module with attributes body and shortcut).
  std::vector<Parameter*> Params() override;
  void AssignNames(const std::string& prefix) override;
  void InitParams(Rng& rng) override;
  bool NeedsInput(LayerMode m) const override;
  void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const override;
  void Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
               MemoryTracker* tracker) override;
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;

 private:
  LayerMode BodyMode(LayerMode m) const;
  LayerMode ShortcutMode(LayerMode m) const;
  int64_t ScratchNumel(const Shape& in, LayerMode m) const;
  std::unique_ptr<Sequential> body_, shortcut_;
  Shape out_shape_;
  Buffer scratch_;
};

}  // namespace ftte

#endif  // FTTE_CORE_SEQUENTIAL_H_
