// ftte_golden_dump: one SGD step of a zoo model, written out for a PyTorch twin to check
// (tools/golden/golden_check.py; the idea is llm.c's test_gpt2).
//
//   ftte_golden_dump MODEL INIT.safetensors STEP.safetensors
//
// Makes MODEL (a zoo spec) with seed 1 (full mask), draws a fixed batch of 8 samples (Rng(42):
// normal pixels, then labels Below(classes); for a language model token ids Below(vocab), then
// one label Below(vocab) per position, every 7th set to -1 = ignored), saves the initial weights to
// INIT with SaveCheckpoint, and runs one Trainer step (batch 8, 1 thread, SGD lr 0.1, no momentum).
// STEP holds:
//   "x"             the batch, [8, C, H, W] F32
//   "y"             the labels, [8] I32 ([8, T] for a language model)
//   "loss"          Trainer::Evaluate's mean cross-entropy of the initial model on x, 0-d F32
//   "step_loss"     the loss the training step reported (same forward, training mode), 0-d F32
//   "grad.<name>"   every parameter's gradient from the step, in the parameter's shape
//   "after.<name>"  every parameter after the update
// with metadata ftte.model, lr, momentum. Exits 0, or 1 with the error on stderr.
#include <cstdio>
#include <string>
#include <vector>

#include "ftte/core/checkpoint.h"
#include "ftte/core/mask.h"
#include "ftte/core/rng.h"
#include "ftte/core/safetensors.h"
#include "ftte/core/trainer.h"

namespace ftte {
namespace {

constexpr int64_t kBatch = 8;
constexpr uint64_t kModelSeed = 1;
constexpr uint64_t kBatchSeed = 42;
constexpr float kLr = 0.1f;

TensorRecord F32(std::string name, std::vector<int64_t> shape, const std::vector<float>& v) {
  return {std::move(name), DType::kF32, std::move(shape), v.data(), v.size() * sizeof(float)};
}

Status Dump(const std::string& model_name, const std::string& init_path,
            const std::string& step_path) {
  FTTE_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, MakeModel(model_name, kModelSeed));
  FTTE_RETURN_IF_ERROR(ApplyNamedMask(*model, "full"));

  Rng rng(kBatchSeed);
  std::vector<float> x(static_cast<size_t>(kBatch * NumElements(model->sample_shape())));
  const int64_t positions = model->label_positions();
  std::vector<int32_t> y(static_cast<size_t>(kBatch * positions));
  const bool lm = positions > 1;
  for (float& v : x) {
    v = static_cast<float>(lm ? static_cast<double>(rng.Below(model->num_classes()))
                              : rng.Normal());
  }
  for (int32_t& v : y) v = static_cast<int32_t>(rng.Below(model->num_classes()));
  if (lm) {
    for (size_t i = 0; i < y.size(); i += 7) y[i] = -1;
  }

  FTTE_RETURN_IF_ERROR(SaveCheckpoint(*model, init_path));

  TrainerOptions o;
  o.batch = kBatch;
  o.threads = 1;
  o.optimizer.kind = OptimizerConfig::Kind::kSgd;
  o.optimizer.lr = kLr;
  o.optimizer.momentum = 0.0f;
  o.keep_gradients = true;  // the whole gradient, to compare with PyTorch's
  // Gradients live while the Trainer does, so copy them out before it goes.
  std::vector<std::vector<float>> grads, after;
  std::vector<float> loss(1), step_loss(1);
  {
    Trainer trainer(model.get(), o);
    loss[0] = trainer.Evaluate(x.data(), y.data(), kBatch).loss;
    step_loss[0] = trainer.Step(x.data(), y.data(), kBatch).loss;
    for (const Parameter* p : model->params()) {
      // A full mask packs every row, so the packed gradient is the whole gradient.
      FTTE_CHECK(p->all_trainable() && p->grad().numel() == p->numel()) << p->name();
      grads.emplace_back(p->grad().data(), p->grad().data() + p->numel());
      after.emplace_back(static_cast<size_t>(p->numel()));
      p->ReadRows(0, p->rows(), after.back().data());
    }
  }

  Shape x_shape{kBatch};
  for (int64_t d : model->sample_shape()) x_shape.push_back(d);
  std::vector<TensorRecord> records = {
      F32("x", x_shape, x),
      {"y", DType::kI32, lm ? Shape{kBatch, positions} : Shape{kBatch}, y.data(),
       y.size() * sizeof(int32_t)},
      F32("loss", {}, loss),
      F32("step_loss", {}, step_loss),
  };
  for (size_t k = 0; k < model->params().size(); ++k) {
    const Parameter* p = model->params()[k];
    records.push_back(F32("grad." + p->name(), p->shape(), grads[k]));
    records.push_back(F32("after." + p->name(), p->shape(), after[k]));
  }
  return WriteSafetensors(step_path, records,
                          {{"ftte.model", model->name()},
                           {"lr", std::to_string(kLr)},
                           {"momentum", std::to_string(o.optimizer.momentum)}});
}

}  // namespace
}  // namespace ftte

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(
        stderr,
        "usage: ftte_golden_dump MODEL INIT.safetensors STEP.safetensors\n"
        "  MODEL: a zoo spec: mlp, lenet5, cnn, resnet8, lstm_lm:vocab=50,context=8, ...\n");
    return 2;
  }
  const ftte::Status s = ftte::Dump(argv[1], argv[2], argv[3]);
  if (!s.ok()) {
    std::fprintf(stderr, "ftte_golden_dump: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
