#include "ftte/core/layer.h"

#include "ftte/core/check.h"

namespace ftte {

void MemoryPlan::Add(MemCategory c, int64_t bytes, std::string what) {
  FTTE_CHECK(c != MemCategory::kWorkspace) << what << ": workspace goes through AddWorkspace";
  requests.push_back({c, bytes, std::move(what)});
}

void MemoryPlan::Append(const MemoryPlan& o) {
  requests.insert(requests.end(), o.requests.begin(), o.requests.end());
  AddWorkspace(o.workspace, o.workspace_what);
}

int64_t MemoryPlan::Total() const {
  int64_t t = workspace;
  for (const auto& r : requests) t += r.bytes;
  return t;
}

int64_t MemoryPlan::Total(MemCategory c) const {
  if (c == MemCategory::kWorkspace) return workspace;
  int64_t t = 0;
  for (const auto& r : requests) {
    if (r.category == c) t += r.bytes;
  }
  return t;
}

void Layer::Prepare(const Shape& in, LayerMode m, const PlanContext& pc, MemoryTracker* tracker) {
  mode_ = m;
  pc_ = pc;
  MemoryPlan plan;
  Plan(in, m, pc, &plan);
  slots_.clear();
  for (const auto& r : plan.requests) {
    slots_.emplace_back(tracker, r.category, static_cast<size_t>(r.bytes));
  }
}

bool Layer::HasTrainable() const {
  // Params() hands out mutable pointers; reading the mask through them changes nothing.
  auto* self = const_cast<Layer*>(this);
  for (Parameter* p : self->Params()) {
    if (p->any_trainable()) return true;
  }
  for (Parameter* p : self->SharedParams()) {
    if (p->any_trainable()) return true;
  }
  return false;
}

int64_t WorkspaceOf(const Layer& layer, const Shape& in, LayerMode m, const PlanContext& pc) {
  MemoryPlan plan;
  layer.Plan(in, m, pc, &plan);
  return plan.workspace;
}

}  // namespace ftte
