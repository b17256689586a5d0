// Layers for small language models: a recurrent LSTM, causal self-attention, learned
// positional embeddings and low-rank adapters (LoRA). Shapes are batch first, sequences
// [N, T, D]; parameter names, layouts and default initialisation follow PyTorch so that a
// PyTorch twin loads the same checkpoint (tools/golden/golden_check.py has the twins).
//
// Every layer follows the contract of layer.h: Forward and Backward allocate nothing (what they
// keep comes from Plan), accept a smaller batch than prepared for (never a longer sequence),
// split work into tasks whose boundaries depend only on the problem size (results are
// bit-identical for any thread count), and write the gradients of trainable parameter rows
// only. Backward may run once per Forward: some layers overwrite their saved state with
// gradients as they go.
#ifndef FTTE_CORE_LAYERS_LM_H_
#define FTTE_CORE_LAYERS_LM_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ftte/core/layer.h"
#include "ftte/core/layers.h"

namespace ftte {

// One-layer LSTM over x [N, T, input] -> y [N, T, hidden], PyTorch's nn.LSTM(batch_first=True)
// with a zero initial state for every sequence and backpropagation through the whole sequence.
// Parameters "weight_ih" [4H, I], "weight_hh" [4H, H], "bias_ih" [4H], "bias_hh" [4H], gate
// order i, f, g, o; their rows are gate units and may be masked independently. Initialised
// U(-1/sqrt(H), 1/sqrt(H)) like PyTorch. Weights stay float32 under any frozen storage.
//
// Memory: with backward, the gate activations [N, T, 4H] and cell states [N, T, H] are saved
// (kActivations; Backward overwrites the gates with their gradients) and two [N, H] recurrent
// gradients are kActGrads; Backward reads x (for the weight_ih gradient) and y (the hidden
// states). Forward only, the gates [N, T, 4H] and one [N, H] cell state are kWorkspace.
// Cost: 8 N T H (I + H) FLOPs forward, about twice that backward; the recurrence runs T
// sequential steps, each split over blocks of hidden units.
class LSTM : public Layer {
 public:
  LSTM(int64_t input, int64_t hidden, MemoryTracker* tracker);
  std::string Describe() const override;  // "LSTM(96, 256)"
  Result<Shape> OutputShape(const Shape& in) const override;
  std::vector<Parameter*> Params() override;
  void InitParams(Rng& rng) override;
  bool NeedsInput(LayerMode m) const override { return m.param_grad; }
  bool NeedsOutput(LayerMode m) const override { return m.backward(); }
  void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const override;
  // Also fixes the gradient tasks: set masks before Prepare.
  void Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
               MemoryTracker* tracker) override;
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;

  Parameter& weight_ih() { return weight_ih_; }
  Parameter& weight_hh() { return weight_hh_; }
  Parameter& bias_ih() { return bias_ih_; }
  Parameter& bias_hh() { return bias_hh_; }

 private:
  void GradWeights(const View& x, const View& y, int64_t n, int64_t steps, ExecContext& ctx);
  // Floats of one worker's tile: a block of weight-gradient rows, or of dequantised int8 rows.
  int64_t TileFloats() const;
  bool AnyInt8(const PlanContext& pc) const;
  // The worker tiles in the workspace of a pass (after the gates and cell state when forward
  // only), or null when none were planned.
  float* Tiles(ExecContext& ctx) const;

  int64_t input_, hidden_;
  Parameter weight_ih_, weight_hh_, bias_ih_, bias_hh_;
  int64_t capacity_ = 0;                            // samples the slots hold
  int64_t batch_ = 0;                               // samples prepared for
  std::vector<RowRun> ih_tasks_, hh_tasks_;         // trainable weight rows in blocks
  std::vector<int64_t> bias_ih_row_, bias_hh_row_;  // packed gradient row per gate unit, or -1
};

// Low-rank adapter options: rank 0 means no adapter.
struct LoraOptions {
  int64_t rank = 0;
  float alpha = 16;  // the update is scaled by alpha / rank
};

// A Linear with a LoRA adapter: y = x W^T + b + (alpha / r) (x A^T) B^T over the last dimension
// of x [N, in] or [N, T, in]. Parameters "weight" [out, in] and "bias" [out] (the base Linear,
// same names, so a plain Linear checkpoint loads), "lora_a" [r, in] (kaiming-uniform like
// PyTorch LoRA: U(-1/sqrt(in), 1/sqrt(in))) and "lora_b" [out, r] (zeros). Any of them may be
// trainable; the usual setting trains lora_a and lora_b only (ApplyNamedMask "lora"). The base
// weight may be kept as int8 when frozen (as QLoRA keeps it); the adapters stay float32.
// Memory: x A^T [N*T, r] is kept (kActivations with backward, else kWorkspace) and dy B
// [N*T, r] is kActGrads, plus what the base Linear plans.
class LoraLinear : public Layer {
 public:
  // Aborts unless lora.rank >= 1.
  LoraLinear(int64_t in, int64_t out, bool bias, LoraOptions lora, MemoryTracker* tracker);
  std::string Describe() const override;  // "LoraLinear(128, 384, rank=8, alpha=16)"
  Result<Shape> OutputShape(const Shape& in) const override { return base_.OutputShape(in); }
  std::vector<Parameter*> Params() override;  // weight, bias, lora_a, lora_b
  void InitParams(Rng& rng) override;         // the base Linear's draws, then lora_a's
  bool NeedsInput(LayerMode m) const override;
  void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const override;
  void Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
               MemoryTracker* tracker) override;
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;

  Linear& base() { return base_; }
  Parameter& lora_a() { return lora_a_; }
  Parameter& lora_b() { return lora_b_; }
  float scale() const { return scale_; }

 private:
  LayerMode BaseMode(LayerMode m) const;
  void PlanOwn(const Shape& in, LayerMode m, MemoryPlan* plan) const;

  int64_t in_, out_, rank_;
  float alpha_, scale_;
  bool has_bias_;
  Linear base_;
  Parameter lora_a_, lora_b_;
  std::vector<Buffer> buffers_;  // x A^T, dy B
};

// Causal multi-head self-attention over x [N, T, C] -> [N, T, C], like PyTorch code that packs
// q, k and v into one Linear: "qkv.weight" [3C, C], "qkv.bias" [3C] (q, k, v stacked in that
// order, head h using features h*D..(h+1)*D of each, D = C / heads), then softmax(q k^T / sqrt(D))
// with position t attending to positions <= t, then "proj.weight" [C, C], "proj.bias" [C].
// With lora.rank > 0 both projections are LoraLinear (adds "qkv.lora_a", ...).
// Memory with backward: qkv [N, T, 3C], the attention probabilities [N, heads, T, T] and the
// heads' output [N, T, C] are kept (kActivations), the gradients of the heads' output and of qkv
// (kActGrads) and one [T, T] scratch per thread (workspace). Forward only, qkv, one [T, T] per
// thread and the heads' output are workspace. Work is split by (sample, head).
class CausalSelfAttention : public Layer {
 public:
  // Aborts unless dim % heads == 0.
  CausalSelfAttention(int64_t dim, int64_t heads, MemoryTracker* tracker, LoraOptions lora = {});
  ~CausalSelfAttention() override;
  std::string Describe() const override;  // "CausalSelfAttention(128, heads=4)"
  Result<Shape> OutputShape(const Shape& in) const override;
  std::vector<Parameter*> Params() override;  // qkv's, then proj's
  void AssignNames(const std::string& prefix) override;
  void InitParams(Rng& rng) override;
  bool NeedsInput(LayerMode m) const override;
  void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const override;
  void Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
               MemoryTracker* tracker) override;
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;

  Layer& qkv() { return *qkv_; }
  Layer& proj() { return *proj_; }

 private:
  LayerMode QkvMode(LayerMode m) const;
  LayerMode ProjMode(LayerMode m) const;
  void PlanOwn(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const;
  int64_t ForwardOnlyFloats(const Shape& in, int threads) const;
  float* Buf(int slot, const ExecContext& ctx) const;

  int64_t dim_, heads_;
  LoraOptions lora_;
  std::unique_ptr<Layer> qkv_, proj_;
  std::vector<Buffer> buffers_;  // with backward: qkv, probs, heads' output, their grads
  int64_t own_floats_ = 0;       // forward only: arena floats held while the children run
  int64_t rows_cap_ = 0;         // prepared (sample, position) rows
};

// A learned positional embedding added to x [N, T, dim], T <= max_len: y[n, t] = x[n, t] +
// weight[t]. Parameter "weight" [max_len, dim] (rows are positions), initialised N(0, 0.02^2)
// like GPT-2, kept float32. Runs in place and keeps nothing.
class PositionalEmbedding : public Layer {
 public:
  PositionalEmbedding(int64_t max_len, int64_t dim, MemoryTracker* tracker);
  std::string Describe() const override;  // "PositionalEmbedding(64, 128)"
  Result<Shape> OutputShape(const Shape& in) const override;
  std::vector<Parameter*> Params() override { return {&weight_}; }
  void InitParams(Rng& rng) override;
  bool NeedsInput(LayerMode m) const override { return false; }
  bool InPlace() const override { return true; }
  void Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const override;
  void Forward(const View& x, View y, ExecContext& ctx) override;
  void Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) override;
  Flops CountFlops(const Shape& in, LayerMode m) const override;

  Parameter& weight() { return weight_; }

 private:
  int64_t max_len_, dim_;
  Parameter weight_;
};

}  // namespace ftte

#endif  // FTTE_CORE_LAYERS_LM_H_
