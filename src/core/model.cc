#include "ftte/core/model.h"

#include "ftte/core/check.h"

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
  const Shape out = OutputShape(1);
  FTTE_CHECK(out.size() >= 2 && out.back() == num_classes_)
      << name_ << ": output " << ShapeToString(out) << " does not end in " << num_classes_
      << " classes";
  label_positions_ = NumElements(out) / num_classes_;
}

Shape Model::OutputShape(int64_t n) const {
  Shape in{n};
  for (int64_t d : sample_shape_) in.push_back(d);
  Result<Shape> out = net_->OutputShape(in);
  FTTE_CHECK(out.ok()) << name_ << ": " << out.status().ToString();
  return out.value();
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
