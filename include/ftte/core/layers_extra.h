// More of the layer catalogue: activations, regularisers, pooling, normalisation and
// embeddings. Same conventions as layers.h: batch first, PyTorch's parameter names, layouts and
// default initialisation, so that checkpoints load into the same PyTorch model.
//
// Every layer here follows the contract of layer.h: Forward and Backward allocate nothing (what
// they keep comes from Plan), accept a smaller batch than prepared for, split work into tasks
// whose boundaries depend only on the problem size (results are bit-identical for any thread
// count), and write the gradients of trainable parameter rows only.
#ifndef FTTE_CORE_LAYERS_EXTRA_H_
#define FTTE_CORE_LAYERS_EXTRA_H_

#include <cstdint>
#include <string>
#include <vector>

#include "ftte/core/layer.h"

namespace ftte {

// Exact GELU, x * Phi(x) with the erf-based normal CDF (PyTorch's nn.GELU() default, not the
// tanh approximation). Backward reads the input.
class GELU : public Layer {
 public:
  std::string Describe() const override { return "GELU()"; }
  Result<Shape> OutputShape(const Shape& in) const override { return in; }
  bool NeedsInput(LayerMode m) const override { return m.input_grad; }
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;
};

// Inverted dropout. When ctx.training, zeroes each element with probability p and scales the
// others by 1 / (1 - p); otherwise the identity. The keep mask is drawn from ctx.rng, one
// Uniform() per element in element order on the calling thread, so the mask depends only on the
// rng state, never on the thread count. When mode.input_grad the mask is kept as bits
// (kActivations, one uint64 per 64 elements) for Backward. Runs in place.
class Dropout : public Layer {
 public:
  // p in [0, 1]; p == 1 zeroes everything.
  explicit Dropout(double p);
  std::string Describe() const override;  // "Dropout(p=0.5)"
  Result<Shape> OutputShape(const Shape& in) const override { return in; }
  bool NeedsInput(LayerMode m) const override { return false; }
  bool InPlace() const override { return true; }
  void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const override;
  void Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
               MemoryTracker* tracker) override;
  // Aborts if ctx.training and ctx.rng is null.
  void Forward(const View& x, View y, ExecContext& ctx) override;
  // Applies the mask of the last Forward (dx = dy if it was not training).
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;

  double p() const { return p_; }

 private:
  double p_;
  float scale_;                // 1 / (1 - p), or 0 when p == 1
  int64_t mask_capacity_ = 0;  // elements the mask slot holds
  bool masked_ = false;        // whether the last Forward applied a mask
};

// Average pooling with a square window, no padding; the output size rounds down like PyTorch.
// [N, C, H, W] -> [N, C, (H - k) / s + 1, (W - k) / s + 1]. Keeps nothing for Backward.
class AvgPool2d : public Layer {
 public:
  explicit AvgPool2d(int64_t kernel, int64_t stride = 0);  // stride 0 = kernel
  std::string Describe() const override;  // "AvgPool2d(kernel=2)", "AvgPool2d(kernel=3, stride=2)"
  Result<Shape> OutputShape(const Shape& in) const override;
  bool NeedsInput(LayerMode m) const override { return false; }
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;

 private:
  int64_t kernel_, stride_;
};

// Mean over the spatial dimensions: [N, C, H, W] -> [N, C] (PyTorch's AdaptiveAvgPool2d(1)
// followed by Flatten). Keeps nothing for Backward.
class GlobalAvgPool2d : public Layer {
 public:
  std::string Describe() const override { return "GlobalAvgPool2d()"; }
  Result<Shape> OutputShape(const Shape& in) const override;
  bool NeedsInput(LayerMode m) const override { return false; }
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;
};

// Group normalisation of x [N, C, ...] (any number of trailing dims, including none) over
// groups of C / groups consecutive channels, with a per-channel affine transform. Parameters
// "weight" [C] (initialised to 1) and "bias" [C] (0); their rows are channels. Keeps the mean
// and 1/std of each (sample, group) (kActivations, 2 floats each) when the mode needs backward,
// and Backward recomputes the normalised input from x.
class GroupNorm : public Layer {
 public:
  // Aborts unless groups > 0 and channels % groups == 0.
  GroupNorm(int64_t groups, int64_t channels, MemoryTracker* tracker, float eps = 1e-5f);
  std::string Describe() const override;  // "GroupNorm(2, 16)"
  Result<Shape> OutputShape(const Shape& in) const override;
  std::vector<Parameter*> Params() override { return {&weight_, &bias_}; }
  void InitParams(Rng& rng) override;  // weight 1, bias 0; draws nothing
  bool NeedsInput(LayerMode m) const override { return m.backward(); }
  void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const override;
  // Also fixes which gradient row each channel writes: set masks before Prepare.
  void Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
               MemoryTracker* tracker) override;
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }

 private:
  int64_t groups_, channels_;
  float eps_;
  Parameter weight_, bias_;
  int64_t stats_capacity_ = 0;                  // (sample, group) pairs the stats slot holds
  std::vector<int64_t> weight_row_, bias_row_;  // packed gradient row per channel, -1 if frozen
};

// Layer normalisation over the last dimension of x [N, dim] or [N, T, dim], with an
// elementwise affine transform. Parameters "weight" [dim] (initialised to 1) and "bias" [dim]
// (0). Keeps the mean and 1/std of each row (kActivations, 2 floats each) when the mode needs
// backward, and Backward recomputes the normalised input from x.
class LayerNorm : public Layer {
 public:
  LayerNorm(int64_t dim, MemoryTracker* tracker, float eps = 1e-5f);
  std::string Describe() const override;  // "LayerNorm(64)"
  Result<Shape> OutputShape(const Shape& in) const override;
  std::vector<Parameter*> Params() override { return {&weight_, &bias_}; }
  void InitParams(Rng& rng) override;  // weight 1, bias 0; draws nothing
  bool NeedsInput(LayerMode m) const override { return m.backward(); }
  void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const override;
  // Also fixes which gradient row each feature writes: set masks before Prepare.
  void Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
               MemoryTracker* tracker) override;
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }

 private:
  int64_t dim_;
  float eps_;
  Parameter weight_, bias_;
  int64_t stats_capacity_ = 0;                  // rows the stats slot holds
  std::vector<int64_t> weight_row_, bias_row_;  // packed gradient row per feature, -1 if frozen
};

// A lookup table: x holds token ids stored as floats (exact integers below 2^24), shape [N] or
// [N, T]; y is [N, dim] or [N, T, dim]. Parameter "weight" [vocab, dim], initialised N(0, 1)
// like PyTorch; its rows are tokens, and may be kept as int8 when fully frozen. Forward aborts
// with the offending id and position if an id is not an integer in [0, vocab). Backward
// accumulates dy into the gradient rows of trainable tokens in token order (rows of frozen
// tokens are skipped; trainable rows no token used get zeros). Ids have no gradient: Prepare
// aborts if the mode asks for the input gradient.
class Embedding : public Layer {
 public:
  Embedding(int64_t vocab, int64_t dim, MemoryTracker* tracker);
  std::string Describe() const override;  // "Embedding(1000, 64)"
  Result<Shape> OutputShape(const Shape& in) const override;
  std::vector<Parameter*> Params() override { return {&weight_}; }
  void InitParams(Rng& rng) override;
  bool NeedsInput(LayerMode m) const override { return m.param_grad; }
  void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const override;
  void Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
               MemoryTracker* tracker) override;
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;

  Parameter& weight() { return weight_; }

  // Called by the Linear head tied to this embedding (layers.h): Backward then commits the
  // weight's gradient from a buffer of trainable_rows x dim floats (planned as kGradients) that
  // the head fills first and this layer completes with the tokens' rows. Initialisation becomes
  // N(0, 1/dim), so that the tied head's first logits are of order one.
  void TieHead() { tied_ = true; }
  bool tied() const { return tied_; }
  // The tied-gradient buffer, packed by trainable row (valid during a pass with param_grad).
  float* TiedGradient() const { return slot(0); }

 private:
  int64_t GradBlockRows(int64_t tile) const;

  int64_t vocab_, dim_;
  Parameter weight_;
  bool tied_ = false;
};

}  // namespace ftte

#endif  // FTTE_CORE_LAYERS_EXTRA_H_
