#include <cstring>

#include "ftte/core/check.h"
#include "ftte/core/sequential.h"

namespace ftte {

namespace {
void AddInto(float* y, const float* a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a[i];
}
}  // namespace

Residual::Residual(std::unique_ptr<Sequential> body, std::unique_ptr<Sequential> shortcut)
    : body_(std::move(body)), shortcut_(std::move(shortcut)) {
  FTTE_CHECK(body_ != nullptr && body_->size() > 0);
  if (shortcut_ && shortcut_->size() == 0) shortcut_.reset();
}

std::string Residual::Describe() const {
  return "Residual(body=" + body_->Describe() +
         ", shortcut=" + (shortcut_ ? shortcut_->Describe() : "Identity()") + ")";
}

Result<Shape> Residual::OutputShape(const Shape& in) const {
  auto b = body_->OutputShape(in);
  if (!b.ok()) return InvalidArgument("residual body: " + b.status().message());
  Shape s = in;
  if (shortcut_) {
    auto r = shortcut_->OutputShape(in);
    if (!r.ok()) return InvalidArgument("residual shortcut: " + r.status().message());
    s = r.value();
  }
  if (b.value() != s) {
    return InvalidArgument("residual: body output " + ShapeToString(b.value()) +
                           " does not match shortcut output " + ShapeToString(s));
  }
  return s;
}

std::vector<Parameter*> Residual::Params() {
  std::vector<Parameter*> out = body_->Params();
  if (shortcut_) {
    for (Parameter* p : shortcut_->Params()) out.push_back(p);
  }
  return out;
}

void Residual::AssignNames(const std::string& prefix) {
  body_->AssignNames(prefix + "body.");
  if (shortcut_) shortcut_->AssignNames(prefix + "shortcut.");
}

void Residual::InitParams(Rng& rng) {
  body_->InitParams(rng);
  if (shortcut_) shortcut_->InitParams(rng);
}

LayerMode Residual::BodyMode(LayerMode m) const {
  if (!m.backward()) return {};
  return {body_->HasTrainable(), m.input_grad};
}

LayerMode Residual::ShortcutMode(LayerMode m) const {
  if (!m.backward() || !shortcut_) return {};
  return {shortcut_->HasTrainable(), m.input_grad};
}

// The shortcut's output in forward, then the shortcut's input gradient in backward.
int64_t Residual::ScratchNumel(const Shape& in, LayerMode m) const {
  if (!shortcut_) return 0;
  int64_t numel = NumElements(OutputShape(in).value());
  if (ShortcutMode(m).input_grad) numel = std::max(numel, NumElements(in));
  return numel;
}

bool Residual::NeedsInput(LayerMode m) const {
  return body_->NeedsInput(BodyMode(m)) || (shortcut_ && shortcut_->NeedsInput(ShortcutMode(m)));
}

void Residual::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  plan->Add(MemCategory::kActGrads, FloatBytes(ScratchNumel(in, m)), "residual shortcut buffer");
  body_->Plan(in, BodyMode(m), pc, plan);
  if (shortcut_) shortcut_->Plan(in, ShortcutMode(m), pc, plan);
}

void Residual::Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
                       MemoryTracker* tracker) {
  mode_ = m;
  pc_ = pc;
  out_shape_ = OutputShape(in).value();
  // Body and shortcut write the output buffer before the sum, so neither may need its output.
  FTTE_CHECK(!body_->NeedsOutput(BodyMode(m)) &&
             !(shortcut_ && shortcut_->NeedsOutput(ShortcutMode(m))))
      << "a residual branch may not end in a layer whose backward reads its output";
  scratch_ = Buffer(tracker, MemCategory::kActGrads, FloatBytes(ScratchNumel(in, m)));
  body_->Prepare(in, BodyMode(m), pc, tracker);
  if (shortcut_) shortcut_->Prepare(in, ShortcutMode(m), pc, tracker);
}

void Residual::Forward(const View& x, View y, ExecContext& ctx) {
  body_->Forward(x, y, ctx);
  if (shortcut_) {
    View s{static_cast<float*>(scratch_.data()), y.shape};
    shortcut_->Forward(x, s, ctx);
    AddInto(y.data, s.data, y.numel());
  } else {
    AddInto(y.data, x.data, y.numel());
  }
}

void Residual::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  const LayerMode bm = BodyMode(mode_);
  if (bm.backward()) body_->Backward(x, y, dy, bm.input_grad ? dx : View{}, ctx);
  if (!mode_.input_grad) {
    if (shortcut_ && ShortcutMode(mode_).backward()) shortcut_->Backward(x, y, dy, View{}, ctx);
    return;
  }
  if (!shortcut_) {
    AddInto(dx.data, dy.data, dx.numel());
    return;
  }
  View g{static_cast<float*>(scratch_.data()), dx.shape};
  shortcut_->Backward(x, y, dy, g, ctx);
  AddInto(dx.data, g.data, dx.numel());
}

Flops Residual::CountFlops(const Shape& in, LayerMode m) const {
  Flops f = body_->CountFlops(in, BodyMode(m));
  if (shortcut_) f += shortcut_->CountFlops(in, ShortcutMode(m));
  const int64_t n = NumElements(OutputShape(in).value());
  f.forward += n;
  if (m.input_grad) f.backward += NumElements(in);
  return f;
}

}  // namespace ftte
