// The model zoo. Layer order and sizes match the PyTorch twins in bench/torch_train.py.
#include <algorithm>

#include "ftte/core/layers.h"
#include "ftte/core/layers_extra.h"
#include "ftte/core/model.h"
#include "zoo_lm.h"

namespace ftte {

namespace {

std::unique_ptr<Model> Mlp(std::unique_ptr<MemoryTracker> t) {
  auto net = std::make_unique<Sequential>();
  net->Emplace<Flatten>();
  net->Emplace<Linear>(784, 200, true, t.get());
  net->Emplace<ReLU>();
  net->Emplace<Linear>(200, 200, true, t.get());
  net->Emplace<ReLU>();
  net->Emplace<Linear>(200, 10, true, t.get());
  return std::make_unique<Model>("mlp", Shape{1, 28, 28}, 10, std::move(t), std::move(net));
}

std::unique_ptr<Model> LeNet5(std::unique_ptr<MemoryTracker> t) {
  auto net = std::make_unique<Sequential>();
  net->Emplace<Conv2d>(1, 6, 5, 1, 2, true, t.get());
  net->Emplace<ReLU>();
  net->Emplace<MaxPool2d>(2);
  net->Emplace<Conv2d>(6, 16, 5, 1, 0, true, t.get());
  net->Emplace<ReLU>();
  net->Emplace<MaxPool2d>(2);
  net->Emplace<Flatten>();
  net->Emplace<Linear>(400, 120, true, t.get());
  net->Emplace<ReLU>();
  net->Emplace<Linear>(120, 84, true, t.get());
  net->Emplace<ReLU>();
  net->Emplace<Linear>(84, 10, true, t.get());
  return std::make_unique<Model>("lenet5", Shape{1, 28, 28}, 10, std::move(t), std::move(net));
}

// The CNN of McMahan et al. 2017 (FedAvg) for 28x28x1.
std::unique_ptr<Model> Cnn(std::unique_ptr<MemoryTracker> t) {
  auto net = std::make_unique<Sequential>();
  net->Emplace<Conv2d>(1, 32, 5, 1, 2, true, t.get());
  net->Emplace<ReLU>();
  net->Emplace<MaxPool2d>(2);
  net->Emplace<Conv2d>(32, 64, 5, 1, 2, true, t.get());
  net->Emplace<ReLU>();
  net->Emplace<MaxPool2d>(2);
  net->Emplace<Flatten>();
  net->Emplace<Linear>(3136, 512, true, t.get());
  net->Emplace<ReLU>();
  net->Emplace<Linear>(512, 10, true, t.get());
  return std::make_unique<Model>("cnn", Shape{1, 28, 28}, 10, std::move(t), std::move(net));
}

// A basic residual block: conv3x3-GN-ReLU-conv3x3-GN plus shortcut, then ReLU (added by caller).
std::unique_ptr<Residual> Block(int64_t in, int64_t out, int64_t stride, MemoryTracker* t) {
  auto body = std::make_unique<Sequential>();
  body->Emplace<Conv2d>(in, out, 3, stride, 1, false, t);
  body->Emplace<GroupNorm>(2, out, t);
  body->Emplace<ReLU>();
  body->Emplace<Conv2d>(out, out, 3, 1, 1, false, t);
  body->Emplace<GroupNorm>(2, out, t);
  std::unique_ptr<Sequential> shortcut;
  if (stride != 1 || in != out) {
    shortcut = std::make_unique<Sequential>();
    shortcut->Emplace<Conv2d>(in, out, 1, stride, 0, false, t);
    shortcut->Emplace<GroupNorm>(2, out, t);
  }
  return std::make_unique<Residual>(std::move(body), std::move(shortcut));
}

// ResNet-8 with GroupNorm for 32x32x3: stem, three stages of one block (16, 32, 64), head.
std::unique_ptr<Model> ResNet8(std::unique_ptr<MemoryTracker> t) {
  auto net = std::make_unique<Sequential>();
  net->Emplace<Conv2d>(3, 16, 3, 1, 1, false, t.get());
  net->Emplace<GroupNorm>(2, 16, t.get());
  net->Emplace<ReLU>();
  net->Add(Block(16, 16, 1, t.get()));
  net->Emplace<ReLU>();
  net->Add(Block(16, 32, 2, t.get()));
  net->Emplace<ReLU>();
  net->Add(Block(32, 64, 2, t.get()));
  net->Emplace<ReLU>();
  net->Emplace<GlobalAvgPool2d>();
  net->Emplace<Linear>(64, 10, true, t.get());
  return std::make_unique<Model>("resnet8", Shape{3, 32, 32}, 10, std::move(t), std::move(net));
}

}  // namespace

std::vector<std::string> ModelNames() {
  return {"mlp", "lenet5", "cnn", "resnet8", "lstm_lm", "tiny_gpt", "tiny_gpt_lora", "gpt"};
}

Result<std::unique_ptr<Model>> MakeModel(const std::string& spec, uint64_t seed) {
  std::string name;
  ModelOptions options;
  FTTE_RETURN_IF_ERROR(ParseModelSpec(spec, &name, &options));
  auto t = std::make_unique<MemoryTracker>();
  std::unique_ptr<Model> m;
  if (IsLanguageModel(name)) {
    FTTE_ASSIGN_OR_RETURN(m, MakeLanguageModel(name, options, std::move(t)));
  } else {
    if (name == "mlp") m = Mlp(std::move(t));
    if (name == "lenet5") m = LeNet5(std::move(t));
    if (name == "cnn") m = Cnn(std::move(t));
    if (name == "resnet8") m = ResNet8(std::move(t));
    if (m && !options.empty()) {
      return InvalidArgument("model " + name + " takes no options (got '" + options[0].first +
                             "'); options are for language models, e.g. lstm_lm:vocab=10000");
    }
  }
  if (!m) {
    std::string known;
    for (const auto& n : ModelNames()) known += (known.empty() ? "" : ", ") + n;
    return InvalidArgument("unknown model '" + name + "'; known models: " + known);
  }
  m->Init(seed);
  // Models with LoRA adapters (tiny_gpt_lora, gpt:rank=R) train their adapters only unless the
  // caller applies another mask.
  const auto is_adapter = [](const Parameter* p) { return p->local_name().rfind("lora_", 0) == 0; };
  if (std::any_of(m->params().begin(), m->params().end(), is_adapter)) {
    for (Parameter* p : m->params()) p->SetTrainable(is_adapter(p));
  }
  return m;
}

}  // namespace ftte
