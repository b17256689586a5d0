#include "ftte/core/sequential.h"

#include <algorithm>
#include <cstring>

#include "ftte/core/check.h"

namespace ftte {

namespace {
constexpr int64_t kPrefixMicroBatch = 4;
}  // namespace

// Where each tensor lives. Tensor t (0..n) is the input of child t and the output of child t-1;
// tensors that alias each other (views, in-place children) share a group.
struct Sequential::LayoutStore {
  int kind = 4;  // a Layout::Kind
  int index = 0;
};

struct Sequential::Layout {
  enum Kind { kExternalIn, kExternalOut, kSaved, kScratch, kNone };
  using Store = LayoutStore;
  std::vector<Shape> shapes;     // of tensors 0..n, at the prepared batch
  std::vector<LayerMode> modes;  // of children
  size_t first_bw = 0;
  int64_t micro = 0;         // > 0: children before first_bw run in micro-batches of this
  std::vector<Store> value;  // forward storage of tensors 0..n
  std::vector<Store> grad;   // gradient storage of tensors first_bw..n (others kNone)
  std::vector<int64_t> saved_numel;
  int64_t scratch_numel[2] = {0, 0};
  bool needs_input = false, needs_output = false;
};

Sequential::Sequential() = default;
Sequential::~Sequential() = default;

std::string Sequential::Describe() const {
  std::string s = "Sequential(";
  for (size_t i = 0; i < children_.size(); ++i) {
    s += (i ? ", " : "") + children_[i]->Describe();
  }
  return s + ")";
}

Result<Shape> Sequential::OutputShape(const Shape& in) const {
  Shape s = in;
  for (size_t i = 0; i < children_.size(); ++i) {
    auto r = children_[i]->OutputShape(s);
    if (!r.ok()) {
      return InvalidArgument("layer " + std::to_string(i) + ": " + r.status().message());
    }
    s = r.value();
  }
  return s;
}

std::vector<Parameter*> Sequential::Params() {
  std::vector<Parameter*> out;
  for (size_t i = 0; i < children_.size(); ++i) {
    for (Parameter* p : children_[i]->Params()) out.push_back(p);
  }
  return out;
}

void Sequential::AssignNames(const std::string& prefix) {
  for (size_t i = 0; i < children_.size(); ++i) {
    children_[i]->AssignNames(prefix + std::to_string(i) + ".");
  }
}

void Sequential::InitParams(Rng& rng) {
  for (auto& c : children_) c->InitParams(rng);
}

size_t Sequential::FirstBackward(LayerMode m) const {
  if (m.input_grad) return 0;
  for (size_t i = 0; i < children_.size(); ++i) {
    if (children_[i]->HasTrainable()) return i;
  }
  return children_.size();
}

Sequential::Layout Sequential::MakeLayout(const Shape& in, LayerMode m) const {
  const size_t n = children_.size();
  FTTE_CHECK(n > 0) << "empty Sequential";
  Layout L;
  L.shapes.push_back(in);
  for (size_t i = 0; i < n; ++i) {
    L.shapes.push_back(children_[i]->OutputShape(L.shapes.back()).value());
  }
  L.first_bw = FirstBackward(m);
  L.modes.resize(n);
  for (size_t i = L.first_bw; i < n; ++i) {
    L.modes[i] = {children_[i]->HasTrainable(), i > L.first_bw || m.input_grad};
  }
  // The forward-only prefix keeps nothing, so it can run a few samples at a time: its
  // transients shrink to micro-batch size and only the cut layer's input (or, with no backward
  // at all, the output) is full size.
  if (L.first_bw > 0 && in[0] > kPrefixMicroBatch) L.micro = kPrefixMicroBatch;
  // Which tensors some backward reads.
  std::vector<bool> need(n + 1, false);
  for (size_t t = 0; t <= n; ++t) {
    if (t < n && t >= L.first_bw && children_[t]->NeedsInput(L.modes[t])) need[t] = true;
    if (t >= 1 && t - 1 >= L.first_bw && children_[t - 1]->NeedsOutput(L.modes[t - 1])) {
      need[t] = true;
    }
  }
  // Alias groups. Group 0 is the external input; the last tensor gets its own group (the
  // caller's output buffer).
  std::vector<int> group(n + 1, 0);
  std::vector<bool> group_need{need[0]};
  std::vector<int64_t> group_numel{NumElements(in)};
  std::vector<size_t> group_first{0}, group_last_use{0};
  for (size_t t = 1; t <= n; ++t) {
    const Layer& producer = *children_[t - 1];
    const int g_in = group[t - 1];
    const bool cut_input = L.micro > 0 && t == L.first_bw;
    const bool alias =
        t < n && !cut_input &&
        (producer.IsView() || (producer.InPlace() && g_in != 0 && !group_need[g_in]));
    if (alias) {
      group[t] = g_in;
      group_need[g_in] = group_need[g_in] || need[t];
    } else {
      group[t] = static_cast<int>(group_need.size());
      group_need.push_back(need[t] || cut_input);
      Shape shape = L.shapes[t];
      if (L.micro > 0 && t < L.first_bw) shape[0] = L.micro;
      group_numel.push_back(NumElements(shape));
      group_first.push_back(t);
      group_last_use.push_back(t);
    }
    if (t < n) group_last_use[group[t]] = t;  // child t reads tensor t
  }
  const int out_group = group[n];
  // Storage per group.
  std::vector<Layout::Store> gstore(group_need.size());
  gstore[0] = {Layout::kExternalIn, 0};
  gstore[out_group] = {Layout::kExternalOut, 0};
  int holder[2] = {-1, -1};
  for (size_t g = 1; g < group_need.size(); ++g) {
    if (static_cast<int>(g) == out_group) continue;
    if (group_need[g]) {
      gstore[g] = {Layout::kSaved, static_cast<int>(L.saved_numel.size())};
      L.saved_numel.push_back(group_numel[g]);
      continue;
    }
    const size_t producer = group_first[g] - 1;
    int slot = -1;
    for (int j = 0; j < 2 && slot < 0; ++j) {
      if (holder[j] < 0 || group_last_use[holder[j]] < producer) slot = j;
    }
    FTTE_CHECK(slot >= 0) << "no free scratch buffer at child " << producer;
    holder[slot] = static_cast<int>(g);
    gstore[g] = {Layout::kScratch, slot};
    L.scratch_numel[slot] = std::max(L.scratch_numel[slot], group_numel[g]);
  }
  for (size_t t = 0; t <= n; ++t) L.value.push_back(gstore[group[t]]);
  // Gradient storage, walking backward.
  L.grad.assign(n + 1, {});
  if (L.first_bw < n) {
    L.grad[n] = {Layout::kExternalOut, 0};  // the caller's dy
    for (size_t i = n; i-- > L.first_bw;) {
      const Layout::Store gy = L.grad[i + 1];
      if (i == L.first_bw) {
        L.grad[i] = m.input_grad ? Layout::Store{Layout::kExternalIn, 0} : Layout::Store{};
        continue;
      }
      const Layer& c = *children_[i];
      if (c.IsView() || (c.InPlace() && gy.kind == Layout::kScratch)) {
        L.grad[i] = gy;
        continue;
      }
      const int slot = gy.kind == Layout::kScratch ? 1 - gy.index : 0;
      L.grad[i] = {Layout::kScratch, slot};
      L.scratch_numel[slot] = std::max(L.scratch_numel[slot], NumElements(L.shapes[i]));
    }
  }
  L.needs_input = group_need[0];
  L.needs_output = need[n];
  return L;
}

bool Sequential::NeedsInput(LayerMode m) const {
  // The input (and views of it: in-place children never overwrite it) is needed if a child
  // that reads it runs backward. Mirrors the grouping in MakeLayout without needing shapes.
  const size_t n = children_.size(), first = FirstBackward(m);
  for (size_t t = 0; t < n; ++t) {
    const Layer& c = *children_[t];
    if (t >= first) {
      LayerMode cm{c.HasTrainable(), t > first || m.input_grad};
      if (c.NeedsInput(cm)) return true;
    }
    if (!c.IsView() || t + 1 >= n) break;
  }
  return false;
}

bool Sequential::NeedsOutput(LayerMode m) const {
  // Cheap to answer from the last child, which alone writes the output.
  const size_t n = children_.size();
  if (FirstBackward(m) >= n) return false;
  const Layer& last = *children_[n - 1];
  LayerMode lm{last.HasTrainable(), n - 1 > FirstBackward(m) || m.input_grad};
  return last.NeedsOutput(lm);
}

void Sequential::Plan(const Shape& in, LayerMode m, const PlanContext& pc, MemoryPlan* plan) const {
  Layout L = MakeLayout(in, m);
  for (int64_t numel : L.saved_numel) {
    plan->Add(MemCategory::kActivations, FloatBytes(numel), "saved activation");
  }
  for (int j = 0; j < 2; ++j) {
    plan->Add(MemCategory::kActGrads, FloatBytes(L.scratch_numel[j]),
              "activation scratch (forward transients, backward gradients)");
  }
  for (size_t i = 0; i < children_.size(); ++i) {
    children_[i]->Plan(ChildInputShape(L, i), L.modes[i], pc, plan);
  }
}

void Sequential::Prepare(const Shape& in, LayerMode m, const PlanContext& pc,
                         MemoryTracker* tracker) {
  mode_ = m;
  pc_ = pc;
  layout_ = std::make_unique<Layout>(MakeLayout(in, m));
  buffers_.clear();
  for (int64_t numel : layout_->saved_numel) {
    buffers_.emplace_back(tracker, MemCategory::kActivations, FloatBytes(numel));
  }
  for (int j = 0; j < 2; ++j) {
    buffers_.emplace_back(tracker, MemCategory::kActGrads, FloatBytes(layout_->scratch_numel[j]));
  }
  for (size_t i = 0; i < children_.size(); ++i) {
    children_[i]->Prepare(ChildInputShape(*layout_, i), layout_->modes[i], pc, tracker);
  }
}

namespace {
Shape WithBatch(Shape s, int64_t n);
}  // namespace

Shape Sequential::ChildInputShape(const Layout& L, size_t i) {
  return L.micro > 0 && i < L.first_bw ? WithBatch(L.shapes[i], L.micro) : L.shapes[i];
}

// ext_in / ext_out are the caller's x and y for values, dx and dy for gradients.
float* Sequential::Resolve(const LayoutStore& st, const View& ext_in, const View& ext_out) const {
  switch (st.kind) {
    case Layout::kExternalIn:
      return ext_in.data;
    case Layout::kExternalOut:
      return ext_out.data;
    case Layout::kSaved:
      return static_cast<float*>(buffers_[st.index].data());
    case Layout::kScratch:
      return static_cast<float*>(buffers_[layout_->saved_numel.size() + st.index].data());
    case Layout::kNone:
      return nullptr;
  }
  return nullptr;
}

namespace {
Shape WithBatch(Shape s, int64_t n) {
  s[0] = n;
  return s;
}
}  // namespace

void Sequential::Forward(const View& x, View y, ExecContext& ctx) {
  FTTE_CHECK(layout_ != nullptr) << "Sequential::Forward before Prepare";
  const Layout& L = *layout_;
  const int64_t batch = x.shape[0];
  FTTE_CHECK(batch <= L.shapes[0][0])
      << "batch " << batch << " exceeds prepared " << L.shapes[0][0];
  auto value = [&](size_t t) {
    return View{Resolve(L.value[t], x, y), WithBatch(L.shapes[t], batch)};
  };
  const size_t n = children_.size();
  auto run = [&](size_t i, const View& xi, View yi) {
    if (children_[i]->IsView()) {
      if (yi.data != xi.data) std::memcpy(yi.data, xi.data, sizeof(float) * xi.numel());
      return;
    }
    children_[i]->Forward(xi, yi, ctx);
  };
  size_t start = 0;
  if (L.micro > 0) {
    // Micro-batches through the forward-only prefix; each writes its rows of the cut input.
    const int64_t in_row = NumElements(L.shapes[0]) / L.shapes[0][0];
    const int64_t cut_row = NumElements(L.shapes[L.first_bw]) / L.shapes[0][0];
    View cut = value(L.first_bw);
    for (int64_t c0 = 0; c0 < batch; c0 += L.micro) {
      const int64_t m = std::min(L.micro, batch - c0);
      for (size_t i = 0; i < L.first_bw; ++i) {
        View xi = i == 0 ? View{x.data + c0 * in_row, WithBatch(L.shapes[0], m)} : value(i);
        View yi = i + 1 == L.first_bw ? View{cut.data + c0 * cut_row, WithBatch(cut.shape, m)}
                                      : value(i + 1);
        xi.shape[0] = m;
        yi.shape[0] = m;
        run(i, xi, yi);
      }
    }
    start = L.first_bw;
  }
  for (size_t i = start; i < n; ++i) run(i, value(i), value(i + 1));
}

void Sequential::Backward(const View& x, const View& y, const View& dy, View dx, ExecContext& ctx) {
  const Layout& L = *layout_;
  const int64_t batch = dy.shape[0];
  auto value = [&](size_t t) {
    return View{Resolve(L.value[t], x, y), WithBatch(L.shapes[t], batch)};
  };
  auto grad = [&](size_t t) {
    return View{Resolve(L.grad[t], dx, dy), WithBatch(L.shapes[t], batch)};
  };
  for (size_t i = children_.size(); i-- > L.first_bw;) {
    View gy = grad(i + 1), gx = grad(i);
    if (children_[i]->IsView()) {
      if (!gx.empty() && gx.data != gy.data)
        std::memcpy(gx.data, gy.data, sizeof(float) * gy.numel());
      continue;
    }
    children_[i]->Backward(value(i), value(i + 1), gy, gx, ctx);
  }
}

Flops Sequential::CountFlops(const Shape& in, LayerMode m) const {
  Layout L = MakeLayout(in, m);
  Flops f;
  for (size_t i = 0; i < children_.size(); ++i)
    f += children_[i]->CountFlops(L.shapes[i], L.modes[i]);
  return f;
}

}  // namespace ftte
