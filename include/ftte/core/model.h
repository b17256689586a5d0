// A model: a Sequential network with a named input shape and class count, the tracker that
// owns the accounting of all its memory, and the model zoo.
#ifndef FTTE_CORE_MODEL_H_
#define FTTE_CORE_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ftte/core/sequential.h"
#include "ftte/core/status.h"

namespace ftte {

class Model {
 public:
  // The tracker must be the one the layers of `net` allocate from (see MakeModel). Aborts
  // unless `net` maps [N, sample_shape] to [N, ..., num_classes].
  Model(std::string name, Shape sample_shape, int num_classes,
        std::unique_ptr<MemoryTracker> tracker, std::unique_ptr<Sequential> net);

  const std::string& name() const { return name_; }
  // [C, H, W] for images; [T] (token ids stored as floats) for language models.
  const Shape& sample_shape() const { return sample_shape_; }
  // Classes of the last output dimension (the vocabulary of a language model).
  int num_classes() const { return num_classes_; }
  // Labels per sample: the product of the output shape except batch and classes (1 for an
  // image classifier, T for a language model's [N, T, V] logits).
  int64_t label_positions() const { return label_positions_; }
  // The output shape for a batch of n samples: [n, ..., num_classes()].
  Shape OutputShape(int64_t n) const;
  Sequential& net() { return *net_; }
  MemoryTracker& tracker() { return *tracker_; }

  // Parameters in PyTorch's state_dict order, named like nn.Sequential ("0.weight").
  const std::vector<Parameter*>& params() const { return params_; }
  Parameter* FindParam(const std::string& name) const;
  int64_t num_params() const;
  int64_t num_trainable() const;

  // Seeded initialisation, identical for any thread count.
  void Init(uint64_t seed);
  // Mask helpers.
  void SetAllTrainable(bool on);

 private:
  std::string name_;
  Shape sample_shape_;
  int num_classes_;
  int64_t label_positions_ = 1;
  std::unique_ptr<MemoryTracker> tracker_;  // declared first: destroyed after the net
  std::unique_ptr<Sequential> net_;
  std::vector<Parameter*> params_;
};

// The zoo, made from a spec "NAME" or "NAME:key=value,key=value", initialised with `seed`,
// every parameter trainable (except a model with LoRA adapters: its adapters only).
//   mlp, lenet5, cnn   28x28x1 images, 10 classes; no options
//   resnet8            32x32x3 images, 10 classes; no options
//   lstm_lm            Embedding(vocab, 96) -> LSTM(96, 256) -> Linear(256, vocab);
//                      options vocab (default 10000), context (32)
//   tiny_gpt           token + positional embedding (width 128), 2 pre-norm blocks
//                      (LayerNorm -> CausalSelfAttention(4 heads) -> residual, LayerNorm ->
//                      Linear(128, 512) -> GELU -> Linear(512, 128) -> residual), LayerNorm,
//                      Linear(128, vocab); options vocab (10000), context (64)
//   tiny_gpt_lora      tiny_gpt with LoRA adapters (alpha 16) on the attention projections and
//                      the MLP Linears; options vocab, context, rank (8)
//   gpt                the GPT family by size: tiny_gpt's blocks with options vocab (10000),
//                      context (128), layers (4), width (256), heads (4; width % heads == 0)
//                      and rank (0: none; R >= 1 puts LoRA adapters of rank R on every
//                      attention and MLP Linear, as tiny_gpt_lora). gpt:layers=2,width=128,
//                      heads=4 is tiny_gpt; gpt:layers=6,width=512,heads=8 has 29M parameters
//                      at vocab 10000. tie=1 ties the output head to the input embedding
//                      (one [vocab, width] matrix, listed once, as the embedding's; initialised
//                      N(0, 1/width)): vocab * width fewer parameters. Default 0 (separate).
// A language model takes sample_shape() [context] token ids (as floats) and has num_classes()
// = vocab and label_positions() = context; its name() is the spec with every option spelled
// out ("lstm_lm:vocab=10000,context=32"; gpt's tie only when 1). Errors name an unknown model
// (listing the known ones), an unknown option (listing the known keys) or a bad value (with its
// range).
Result<std::unique_ptr<Model>> MakeModel(const std::string& spec, uint64_t seed = 0);
std::vector<std::string> ModelNames();

}  // namespace ftte

#endif  // FTTE_CORE_MODEL_H_
