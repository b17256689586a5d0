// The layer catalogue. Shapes are batch first: images [N, C, H, W], features [N, F],
// sequences [N, T, D]. Weights use PyTorch's layouts (Linear [out, in], Conv2d OIHW) so that
// checkpoints load into the same PyTorch model.
#ifndef FTTE_CORE_LAYERS_H_
#define FTTE_CORE_LAYERS_H_

#include <memory>
#include <string>
#include <vector>

#include "ftte/core/kernels.h"
#include "ftte/core/layer.h"

namespace ftte {

// y = x W^T + b over the last dimension. x [N, in] or [N, T, in].
class Embedding;

class Linear : public Layer {
 public:
  Linear(int64_t in, int64_t out, bool bias, MemoryTracker* tracker);
  // An output head tied to `embedding` (not owned; it must outlive this layer): its weight is
  // the embedding's [vocab, dim] matrix, listed by the embedding only. Backward writes the
  // weight's gradient into the embedding's tied-gradient buffer, which the embedding's own
  // Backward (later in the same pass) completes and commits once.
  Linear(Embedding* embedding, bool bias, MemoryTracker* tracker);
  std::string Describe() const override;
  Result<Shape> OutputShape(const Shape& in) const override;
  std::vector<Parameter*> Params() override;
  std::vector<Parameter*> SharedParams() override;
  void InitParams(Rng& rng) override;  // PyTorch's default: U(-1/sqrt(in), 1/sqrt(in))
  bool NeedsInput(LayerMode m) const override { return m.param_grad; }
  void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const override;
  void Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
               MemoryTracker* tracker) override;
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;

  Parameter& weight() { return *weight_; }
  Parameter* bias() { return bias_.get(); }

 private:
  // Floats of one worker's workspace tile under mode m and plan context pc.
  int64_t TileFloats(LayerMode m, const PlanContext& pc) const;

  int64_t in_, out_;
  std::unique_ptr<Parameter> own_weight_;  // null when tied
  Parameter* weight_;                      // own_weight_, or the tied embedding's
  Embedding* tied_ = nullptr;
  std::unique_ptr<Parameter> bias_;
  std::vector<RowRun> dw_tasks_;  // trainable weight rows in blocks, fixed at Prepare
  int64_t tile_ = 0;              // floats per worker, fixed at Prepare
};

// 2-D convolution, square kernel, stride and zero padding, OIHW weights.
class Conv2d : public Layer {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t padding,
         bool bias, MemoryTracker* tracker);
  std::string Describe() const override;
  Result<Shape> OutputShape(const Shape& in) const override;
  std::vector<Parameter*> Params() override;
  void InitParams(Rng& rng) override;  // PyTorch's default (kaiming_uniform with a=sqrt(5))
  bool NeedsInput(LayerMode m) const override { return m.param_grad; }
  void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const override;
  void Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
               MemoryTracker* tracker) override;
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;

  Parameter& weight() { return weight_; }
  Parameter* bias() { return bias_.get(); }

 private:
  // Floats of the workspace: per worker an im2col tile (with its scratch) and a dequantised
  // weight tile; shared, the weight gradient, its chunk partial sums and the bias gradient.
  struct WorkspaceLayout {
    int64_t tile = 0;                          // PlanContext::tile_floats
    int64_t col = 0, weight = 0;               // per worker
    int64_t grad = 0, partials = 0, bias = 0;  // shared
    int64_t PerWorker() const { return col + weight; }
    int64_t Shared(int threads) const {
      return threads * PerWorker();
    }  // offset of the shared part
    int64_t Total(int threads) const { return Shared(threads) + grad + partials + bias; }
  };
  WorkspaceLayout Layout(const Shape& in, LayerMode m, const PlanContext& pc) const;
  void WeightGrad(const ConvGeometry& g, const View& x, const View& dy, ExecContext& ctx);
  void BiasGrad(const ConvGeometry& g, const View& dy, ExecContext& ctx);
  void InputGrad(const ConvGeometry& g, const View& dy, View dx, ExecContext& ctx);

  int64_t in_c_, out_c_, kernel_, stride_, padding_;
  Parameter weight_;
  std::unique_ptr<Parameter> bias_;
  int64_t prepared_batch_ = 0;
  WorkspaceLayout layout_;
};

// Elementwise max(x, 0). Saves one bit per element (x > 0) for backward, so neither its input
// nor its output has to be kept; runs in place when its container allows.
class ReLU : public Layer {
 public:
  std::string Describe() const override { return "ReLU()"; }
  Result<Shape> OutputShape(const Shape& in) const override { return in; }
  bool NeedsInput(LayerMode m) const override { return false; }
  bool InPlace() const override { return true; }
  void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const override;
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;
};

// [N, d1, d2, ...] -> [N, d1*d2*...], a view: no copy, no memory.
class Flatten : public Layer {
 public:
  std::string Describe() const override { return "Flatten()"; }
  Result<Shape> OutputShape(const Shape& in) const override;
  bool NeedsInput(LayerMode m) const override { return false; }
  bool IsView() const override { return true; }
  void Forward(const View& x, View y, ExecContext& ctx) override {}
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override {}
  Flops CountFlops(const Shape& in, LayerMode m) const override { return {}; }
};

// Max pooling with a square window (no padding); saves the position of the max inside its
// window (one byte per output) for backward, so its input need not be kept.
class MaxPool2d : public Layer {
 public:
  explicit MaxPool2d(int64_t kernel, int64_t stride = 0);  // stride 0 = kernel
  std::string Describe() const override;
  Result<Shape> OutputShape(const Shape& in) const override;
  bool NeedsInput(LayerMode m) const override { return false; }
  void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const override;
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;

 private:
  bool IsTwoByTwo() const { return kernel_ == 2 && stride_ == 2; }  // has a vectorised path

  int64_t kernel_, stride_;
};

}  // namespace ftte

#endif  // FTTE_CORE_LAYERS_H_
