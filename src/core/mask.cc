#include "ftte/core/mask.h"

#include <algorithm>
#include <cstdint>
#include <numeric>

#include "ftte/core/check.h"

namespace ftte {

namespace {

struct MaskSnapshot {
  std::vector<std::vector<bool>> rows;
};

MaskSnapshot Save(const Model& m) {
  MaskSnapshot s;
  for (const Parameter* p : m.params()) {
    std::vector<bool> r(p->rows());
    for (int64_t i = 0; i < p->rows(); ++i) r[i] = p->row_trainable(i);
    s.rows.push_back(std::move(r));
  }
  return s;
}

void Restore(Model& m, const MaskSnapshot& s) {
  for (size_t k = 0; k < m.params().size(); ++k) {
    Parameter* p = m.params()[k];
    for (int64_t i = 0; i < p->rows(); ++i) p->SetRowsTrainable(i, i + 1, s.rows[k][i]);
  }
}

// Top-level layer index of each parameter ("7.weight" -> 7).
int64_t TopIndex(const Parameter* p) {
  return std::stoll(p->name().substr(0, p->name().find('.')));
}

struct Unit {
  size_t param;
  int64_t begin, end;
  double importance;
  int64_t bytes;  // gradient + optimizer state
};

}  // namespace

RowImportance ComputeImportance(Model& model, const float* x, const int32_t* labels, int64_t n,
                                const TrainerOptions& options, int64_t batches) {
  MaskSnapshot saved = Save(model);
  model.SetAllTrainable(true);
  TrainerOptions o = options;
  o.optimizer = OptimizerConfig{};
  o.optimizer.lr = 0.0f;  // gradients only: the update with lr 0 changes nothing
  o.frozen = FrozenStorage::kFloat32;
  RowImportance imp;
  for (const Parameter* p : model.params()) imp.emplace_back(p->rows(), 0.0);
  {
    Trainer t(&model, o);
    const int64_t sample = NumElements(model.sample_shape());
    for (int64_t b = 0; b < batches && b * o.batch < n; ++b) {
      const int64_t m = std::min(o.batch, n - b * o.batch);
      t.Step(x + b * o.batch * sample, labels + b * o.batch * model.label_positions(), m);
      for (size_t k = 0; k < model.params().size(); ++k) {
        const Parameter* p = model.params()[k];
        const float* g = p->grad().data();
        const int64_t rs = p->row_size();
        for (int64_t r = 0; r < p->rows(); ++r) {
          double s = 0;
          for (int64_t j = 0; j < rs; ++j) s += static_cast<double>(g[r * rs + j]) * g[r * rs + j];
          imp[k][r] += s;
        }
      }
    }
  }
  Restore(model, saved);
  return imp;
}

Result<Selection> SelectUnderBudget(Model& model, const RowImportance& importance,
                                    const TrainerOptions& options, int64_t budget_bytes,
                                    int64_t extra_bytes_per_value) {
  const auto& params = model.params();
  FTTE_CHECK(importance.size() == params.size());
  const int64_t per_value =
      FloatBytes(1 + options.optimizer.state_per_value()) + extra_bytes_per_value;
  auto predict = [&] {
    return PredictPeak(model, options).total + extra_bytes_per_value * model.num_trainable();
  };
  std::vector<Unit> units;
  double total = 0;
  for (size_t k = 0; k < params.size(); ++k) {
    const Parameter* p = params[k];
    const int64_t block =
        p->shape().size() <= 1 ? p->rows() : std::max<int64_t>(1, (p->rows() + 15) / 16);
    for (int64_t b = 0; b < p->rows(); b += block) {
      const int64_t e = std::min(p->rows(), b + block);
      double s = 0;
      for (int64_t r = b; r < e; ++r) s += importance[k][r];
      units.push_back({k, b, e, s, (e - b) * p->row_size() * per_value});
      total += s;
    }
  }
  std::vector<size_t> order(units.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return units[a].importance / units[a].bytes > units[b].importance / units[b].bytes;
  });
  std::vector<int64_t> cuts;
  for (const Parameter* p : params) cuts.push_back(TopIndex(p));
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());

  Selection best;
  best.budget_bytes = budget_bytes;
  best.total_importance = total;
  MaskSnapshot best_mask;
  bool found = false;
  for (int64_t cut : cuts) {
    model.SetAllTrainable(false);
    double captured = 0;
    bool has_cut_unit = false;
    // The cut layer must train something, else this is a deeper cut; take its best unit first.
    for (int pass = 0; pass < 2; ++pass) {
      for (size_t i : order) {
        const Unit& u = units[i];
        Parameter* p = params[u.param];
        const int64_t layer = TopIndex(p);
        if (layer < cut || (pass == 0 && (layer != cut || has_cut_unit))) continue;
        if (p->row_trainable(u.begin)) continue;
        p->SetRowsTrainable(u.begin, u.end, true);
        if (predict() > budget_bytes) {
          p->SetRowsTrainable(u.begin, u.end, false);
          continue;
        }
        captured += u.importance;
        if (layer == cut) has_cut_unit = true;
      }
      if (pass == 0 && !has_cut_unit) break;
    }
    if (!has_cut_unit) continue;
    if (!found || captured > best.importance) {
      found = true;
      best.importance = captured;
      best.cut = cut;
      best.predicted_bytes = predict();
      best_mask = Save(model);
    }
  }
  if (!found) {
    // Name the real floor: the cheapest single unit (training anything adds the backward
    // buffers, e.g. a language model's batch x context x vocab logit gradients).
    int64_t cheapest = INT64_MAX;
    for (const Unit& u : units) {
      model.SetAllTrainable(false);
      params[u.param]->SetRowsTrainable(u.begin, u.end, true);
      cheapest = std::min(cheapest, predict());
    }
    model.SetAllTrainable(false);
    const int64_t frozen = PredictPeak(model, options).total;
    return InvalidArgument(
        "no trainable subset of " + model.name() + " fits in " + FormatBytes(budget_bytes) +
        ": the smallest one needs " + FormatBytes(cheapest) + " (the frozen model alone " +
        FormatBytes(frozen) + "); raise the budget, lower the batch, or use int8 frozen storage");
  }
  Restore(model, best_mask);
  return best;
}

Status ApplyNamedMask(Model& model, const std::string& name) {
  if (name == "full" || name == "none") {
    model.SetAllTrainable(name == "full");
    return Status::Ok();
  }
  if (name == "last") {
    model.SetAllTrainable(false);
    const int64_t last = TopIndex(model.params().back());
    for (Parameter* p : model.params()) {
      if (TopIndex(p) == last) p->SetTrainable(true);
    }
    return Status::Ok();
  }
  if (name == "bias") {
    model.SetAllTrainable(false);
    for (Parameter* p : model.params()) {
      if (p->shape().size() == 1) p->SetTrainable(true);  // biases and norm scales/shifts
    }
    return Status::Ok();
  }
  if (name == "lora") {
    model.SetAllTrainable(false);
    bool any = false;
    for (Parameter* p : model.params()) {
      if (p->local_name().rfind("lora_", 0) == 0) {
        p->SetTrainable(true);
        any = true;
      }
    }
    if (!any) {
      return InvalidArgument("mask 'lora': model " + model.name() +
                             " has no LoRA adapters; use a *_lora model (e.g. tiny_gpt_lora)");
    }
    return Status::Ok();
  }
  return InvalidArgument("unknown mask '" + name +
                         "'; use full, last, bias, lora, none or budget:F (e.g. budget:0.2)");
}

}  // namespace ftte
