#include "ftte/core/mask.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>

#include "ftte/core/check.h"

namespace ftte {

namespace {

// Trial steps per candidate in PlanUnderBudget: enough for subsets to separate from random
// initialisation at usual learning rates (16 steps of SGD at 0.01 left every subset of lenet5
// within 0.1% of the same loss).
constexpr int64_t kTrialSteps = 64;
// Trial steps per candidate when SelectOptions::trial_flops cuts them (see there).
constexpr int64_t kMinTrialSteps = 2;
// Trial losses within this fraction of the best are a tie, broken by captured importance.
constexpr double kTrialTolerance = 0.01;
// Tiles of the trial steps (floats): a whole batch of the zoo's im2col and frozen matrices.
constexpr int64_t kTrialTileFloats = int64_t{1} << 22;
// A larger micro-batch is preferred if it captures at least (1 - this) of the best importance.
constexpr double kMicroTolerance = 0.01;

struct MaskSnapshot {
  std::vector<std::vector<uint8_t>> rows;
};

MaskSnapshot Save(const Model& m) {
  MaskSnapshot s;
  for (const Parameter* p : m.params()) {
    std::vector<uint8_t> r(static_cast<size_t>(p->rows()));
    for (int64_t i = 0; i < p->rows(); ++i) r[i] = p->row_trainable(i) ? 1 : 0;
    s.rows.push_back(std::move(r));
  }
  return s;
}

void Restore(Model& m, const MaskSnapshot& s) {
  for (size_t k = 0; k < m.params().size(); ++k) {
    Parameter* p = m.params()[k];
    for (int64_t r = 0; r < p->rows();) {
      int64_t e = r;
      while (e < p->rows() && s.rows[k][e] == s.rows[k][r]) ++e;
      p->SetRowsTrainable(r, e, s.rows[k][r] != 0);
      r = e;
    }
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
  int64_t bytes;  // what training it adds, roughly (for ranking; the plan decides what fits)
};

// Every parameter back to float32 storage: masks change only there, and planning reads the
// storage option, not the current storage.
void UseFloatStorage(Model& model) {
  for (Parameter* p : model.params()) p->SetStorage(FrozenStorage::kFloat32);
}

}  // namespace

std::string DescribeTrainable(const Model& model) {
  std::string out;
  int64_t layer = -1, rows = 0, trainable = 0;
  auto flush = [&] {
    if (layer < 0 || trainable == 0) return;
    out += (out.empty() ? "" : ", ") + std::to_string(layer);
    if (trainable < rows) {
      out += " (" + std::to_string(trainable) + "/" + std::to_string(rows) + " rows)";
    }
  };
  for (const Parameter* p : model.params()) {
    if (TopIndex(p) != layer) {
      flush();
      layer = TopIndex(p);
      rows = trainable = 0;
    }
    if (p->shape().size() < 2) continue;  // count matrix rows; vectors ride along
    rows += p->rows();
    trainable += p->trainable_rows();
  }
  flush();
  return out.empty() ? (model.num_trainable() > 0 ? "vectors only" : "none") : out;
}

namespace {

// The mean held-out loss after `steps` steps on select.trial under options `o` and the model's
// current mask, from the model's current values, which are restored afterwards.
double TrialLoss(Model& model, const TrainerOptions& o, const SelectOptions& select,
                 int64_t steps) {
  std::vector<std::vector<float>> values;
  for (const Parameter* p : model.params()) {
    values.emplace_back(static_cast<size_t>(p->numel()));
    p->ReadRows(0, p->rows(), values.back().data());
  }
  double loss = 0;
  {
    Trainer t(&model, o);
    const Samples& d = select.trial;
    const int64_t sample = NumElements(model.sample_shape()), per = model.label_positions();
    for (int64_t s = 0, at = 0; s < steps; ++s) {
      if (at >= d.n) at = 0;
      const int64_t m = std::min(o.batch, d.n - at);
      t.Step(d.x + at * sample, d.labels + at * per, m);
      at += m;
    }
    const Samples& h = select.held_out;
    loss = t.Evaluate(h.x, h.labels, h.n).loss;
  }
  UseFloatStorage(model);
  for (size_t k = 0; k < model.params().size(); ++k) {
    std::copy(values[k].begin(), values[k].end(), model.params()[k]->data());
  }
  return std::isfinite(loss) ? loss : std::numeric_limits<double>::infinity();
}

}  // namespace

RowImportance ComputeImportance(Model& model, const float* x, const int32_t* labels, int64_t n,
                                const TrainerOptions& options, int64_t batches) {
  UseFloatStorage(model);
  MaskSnapshot saved = Save(model);
  model.SetAllTrainable(true);
  TrainerOptions o = options;
  o.optimizer = OptimizerConfig{};
  o.optimizer.lr = 0.0f;  // gradients only: the update with lr 0 changes nothing
  o.frozen = FrozenStorage::kFloat32;
  o.micro_batch = 0;
  o.keep_gradients = false;
  o.gradient_stats = true;
  RowImportance imp;
  {
    Trainer t(&model, o);
    const int64_t sample = NumElements(model.sample_shape());
    for (int64_t b = 0; b < batches && b * o.batch < n; ++b) {
      const int64_t m = std::min(o.batch, n - b * o.batch);
      t.Step(x + b * o.batch * sample, labels + b * o.batch * model.label_positions(), m);
    }
    imp = t.RowGradSq();  // every row trainable: packed rows are rows
  }
  Restore(model, saved);
  return imp;
}

std::vector<int64_t> HalvingMicroBatches(int64_t batch) {
  std::vector<int64_t> out;
  for (int64_t m = batch; m >= 1; m = m == 1 ? 0 : (m + 1) / 2) out.push_back(m);
  return out;
}

Result<Selection> SelectUnderBudget(Model& model, const RowImportance& importance,
                                    const TrainerOptions& options, int64_t budget_bytes,
                                    const SelectOptions& select) {
  const auto& params = model.params();
  FTTE_CHECK(importance.size() == params.size());
  UseFloatStorage(model);
  const int64_t extra = select.extra_bytes_per_value;
  std::vector<int64_t> micros = select.micro_batches;
  if (micros.empty()) micros.push_back(options.micro());
  TrainerOptions o = options;
  auto predict = [&] { return PredictPeak(model, o).total + extra * model.num_trainable(); };
  // Units: 1-D tensors whole, matrices in blocks of about 1/64 of their rows.
  std::vector<Unit> units;
  double total = 0;
  for (size_t k = 0; k < params.size(); ++k) {
    const Parameter* p = params[k];
    const int64_t block =
        p->shape().size() <= 1 ? p->rows() : std::max<int64_t>(1, (p->rows() + 63) / 64);
    const bool int8 = p->QuantizableWhenFrozen() && o.frozen == FrozenStorage::kInt8;
    const int64_t per_value = (int8 ? 3 : 4) + FloatBytes(o.optimizer.state_per_value()) + extra;
    for (int64_t b = 0; b < p->rows(); b += block) {
      const int64_t e = std::min(p->rows(), b + block);
      double sum = 0;
      for (int64_t r = b; r < e; ++r) sum += importance[k][r];
      units.push_back({k, b, e, sum, (e - b) * p->row_size() * per_value});
      total += sum;
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

  // Greedy fill at one (cut, micro-batch); returns whether the cut layer trains.
  auto fill = [&](int64_t cut, double* captured) {
    model.SetAllTrainable(false);
    *captured = 0;
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
        *captured += u.importance;
        if (layer == cut) has_cut_unit = true;
      }
      if (pass == 0 && !has_cut_unit) break;
    }
    return has_cut_unit;
  };

  Selection sel;
  sel.budget_bytes = budget_bytes;
  sel.total_importance = total;
  for (auto cut = cuts.rbegin(); cut != cuts.rend(); ++cut) {
    // Per micro-batch (largest first), the best fill; then the largest micro-batch within
    // kMicroTolerance of the most importance any of them captures (larger passes run faster).
    std::vector<Candidate> fills;
    double most = 0;
    for (int64_t micro : micros) {
      o.micro_batch = micro;
      double captured = 0;
      if (!fill(*cut, &captured)) continue;
      Candidate c;
      c.cut = *cut;
      c.micro_batch = o.micro();
      c.trainable = model.num_trainable();
      c.predicted_bytes = predict();
      c.importance = captured;
      c.layers = DescribeTrainable(model);
      c.mask = Save(model).rows;
      most = std::max(most, captured);
      fills.push_back(std::move(c));
    }
    for (Candidate& c : fills) {
      if (c.importance >= (1 - kMicroTolerance) * most) {
        sel.candidates.push_back(std::move(c));
        break;
      }
    }
  }
  if (sel.candidates.empty()) {
    // Name the real floor: the cheapest single unit at the smallest micro-batch (training
    // anything adds the backward buffers, e.g. a language model's logit gradients).
    o.micro_batch = micros.back();
    int64_t cheapest = INT64_MAX;
    for (const Unit& u : units) {
      model.SetAllTrainable(false);
      params[u.param]->SetRowsTrainable(u.begin, u.end, true);
      cheapest = std::min(cheapest, predict());
    }
    model.SetAllTrainable(false);
    const int64_t frozen = PredictPeak(model, o).total;
    return InvalidArgument(
        "no trainable subset of " + model.name() + " fits in " + FormatBytes(budget_bytes) +
        ": the smallest feasible budget is " + FormatBytes(cheapest) + " (micro-batch " +
        std::to_string(o.micro()) + "; the frozen model alone needs " + FormatBytes(frozen) +
        "); raise the budget" +
        (o.frozen == FrozenStorage::kInt8 ? "" : ", or use int8 frozen storage") +
        (o.micro() > 1 ? ", or lower the batch" : ""));
  }
  const bool trial = select.trial_steps > 0 && select.trial.n > 0 && select.held_out.n > 0;
  sel.criterion = trial ? "trial" : "importance";
  if (trial) {
    // Steps per candidate within trial_flops, priced as full training steps (an upper bound).
    const MaskSnapshot chosen = Save(model);
    model.SetAllTrainable(true);
    const Flops f = CountTrainingFlops(model, std::min(options.batch, select.trial.n));
    Restore(model, chosen);
    const double all = static_cast<double>(f.forward + f.backward) *
                       static_cast<double>(sel.candidates.size() * select.trial_steps);
    sel.trial_steps = select.trial_steps;
    if (all > select.trial_flops) {
      const auto share =
          static_cast<int64_t>(static_cast<double>(select.trial_steps) * select.trial_flops / all);
      sel.trial_steps = std::max(std::min(kMinTrialSteps, select.trial_steps), share);
    }
  }
  for (size_t i = 0; i < sel.candidates.size(); ++i) {
    Candidate& c = sel.candidates[i];
    if (trial) {
      // The micro-batch and the tiles change memory, not what a step computes (up to
      // rounding), so trials run whole batches in large tiles: faster, same ranking.
      Restore(model, MaskSnapshot{c.mask});
      o.micro_batch = 0;
      o.tile_floats = std::max<int64_t>(o.tile_floats, kTrialTileFloats);
      if (o.frozen == FrozenStorage::kInt8Mapped) o.frozen = FrozenStorage::kInt8;  // same values
      c.trial_loss = TrialLoss(model, o, select, sel.trial_steps);
    }
  }
  // The best trial loss; then, among candidates within kTrialTolerance of it (or all, without a
  // trial), the most captured importance.
  double best_loss = std::numeric_limits<double>::infinity();
  for (const Candidate& c : sel.candidates) best_loss = std::min(best_loss, c.trial_loss);
  for (size_t i = 0; i < sel.candidates.size(); ++i) {
    const Candidate& c = sel.candidates[i];
    if (trial && !(c.trial_loss <= best_loss * (1 + kTrialTolerance))) continue;
    const Candidate& b = sel.candidates[sel.chosen];
    const bool b_tied = !trial || b.trial_loss <= best_loss * (1 + kTrialTolerance);
    if (!b_tied || c.importance > b.importance) sel.chosen = i;
  }
  const Candidate& c = sel.candidates[sel.chosen];
  Restore(model, MaskSnapshot{c.mask});
  sel.cut = c.cut;
  sel.micro_batch = c.micro_batch;
  sel.importance = c.importance;
  sel.predicted_bytes = c.predicted_bytes;
  return sel;
}

SelectOptions PlannerSelectOptions(const Model& model, const TrainerOptions& options,
                                   const Samples& calibration, int64_t extra_bytes_per_value) {
  SelectOptions s;
  s.extra_bytes_per_value = extra_bytes_per_value;
  s.micro_batches = HalvingMicroBatches(options.batch);
  if (calibration.n >= 8) {
    const int64_t held = calibration.n / 4, sample = NumElements(model.sample_shape());
    const int64_t train = calibration.n - held;
    s.trial = {calibration.x, calibration.labels, train};
    s.held_out = {calibration.x + train * sample,
                  calibration.labels + train * model.label_positions(), held};
    s.trial_steps = kTrialSteps;
  }
  return s;
}

Result<Selection> PlanUnderBudget(Model& model, TrainerOptions* options, int64_t budget_bytes,
                                  const Samples& calibration, int64_t extra_bytes_per_value) {
  FTTE_CHECK(calibration.n > 0) << "planning needs calibration samples";
  const int64_t batches = (calibration.n + options->batch - 1) / options->batch;
  RowImportance imp =
      ComputeImportance(model, calibration.x, calibration.labels, calibration.n, *options, batches);
  const SelectOptions s = PlannerSelectOptions(model, *options, calibration, extra_bytes_per_value);
  FTTE_ASSIGN_OR_RETURN(Selection sel, SelectUnderBudget(model, imp, *options, budget_bytes, s));
  options->micro_batch = sel.micro_batch;
  return sel;
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
      return InvalidArgument(
          "mask 'lora': model " + model.name() +
          " has no LoRA adapters; use a model with adapters (tiny_gpt_lora, or gpt:rank=8)");
    }
    return Status::Ok();
  }
  return InvalidArgument("unknown mask '" + name +
                         "'; use full, last, bias, lora, none or budget:F (e.g. budget:0.2)");
}

}  // namespace ftte
