#include "ftte/core/model.h"

namespace ftte {

Model::Model(std::string name, Shape sample_shape, int num_classes,
             std::unique_ptr<MemoryTracker> tracker, std::unique_ptr<Sequential> net)
    : name_(std::move(name)),
      sample_shape_(std::move(sample_shape)),
      num_classes_(num_classes),
      tracker_(std::move(tracker)),
      net_(std::move(net)) {
  net_->AssignNames("");
  params_ = net_->Params();
}

Parameter* Model::FindParam(const std::string& name) const {
  for (Parameter* p : params_) {
    if (p->name() == name) return p;
  }
  return nullptr;
}

int64_t Model::num_params() const {
  int64_t n = 0;
  for (const Parameter* p : params_) n += p->numel();
  return n;
}

int64_t Model::num_trainable() const {
  int64_t n = 0;
  for (const Parameter* p : params_) n += p->trainable_numel();
  return n;
}

void Model::Init(uint64_t seed) {
  Rng rng(seed);
  net_->InitParams(rng);
}

void Model::SetAllTrainable(bool on) {
  for (Parameter* p : params_) p->SetTrainable(on);
}

}  // namespace ftte
