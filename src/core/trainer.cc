#include "ftte/core/trainer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "ftte/core/check.h"
#include "ftte/core/kernels.h"

namespace ftte {

namespace {

Shape BatchShape(const Model& m, int64_t batch) {
  Shape s{batch};
  for (int64_t d : m.sample_shape()) s.push_back(d);
  return s;
}

LayerMode TopMode(Model& m) { return {m.net().HasTrainable(), false}; }

// The row kernels of SoftmaxCrossEntropy, written in independent lanes so that they vectorize.
constexpr int kLanes = 8;

// max of z[0, k), k >= 1.
float RowMax(const float* z, int64_t k) {
  float lane[kLanes];
  for (float& l : lane) l = z[0];
  int64_t j = 0;
  for (; j + kLanes <= k; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) lane[l] = z[j + l] > lane[l] ? z[j + l] : lane[l];
  }
  float mx = lane[0];
  for (int l = 1; l < kLanes; ++l) mx = lane[l] > mx ? lane[l] : mx;
  for (; j < k; ++j) mx = z[j] > mx ? z[j] : mx;
  return mx;
}

// Logits ranked ahead of label y's: greater, or equal at a lower index (argmax takes the first).
int64_t Rank(const float* z, int64_t k, int32_t y) {
  const float zy = z[y];
  int32_t ahead = 0;  // k < 2^24
  for (int64_t j = 0; j < k; ++j) ahead += z[j] > zy;
  for (int64_t j = 0; j < y; ++j) ahead += z[j] == zy;
  return ahead;
}

// e[j] = exp(z[j] - mx) for j < k; returns their sum (double lanes).
double ExpSum(const float* z, int64_t k, float mx, float* e) {
  ExpShifted(z, k, mx, e);
  double lane[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= k; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) lane[l] += e[j + l];
  }
  double sum = 0;
  for (double l : lane) sum += l;
  for (; j < k; ++j) sum += e[j];
  return sum;
}

// Mean softmax cross-entropy of logits [rows, k] over the rows whose label is >= 0; writes
// dlogits = (softmax - onehot) / counted for those rows and 0 for ignored ones when dlogits is
// not null. Rows are split into tasks by the problem size only, and the per-task sums are added
// in task order, so the result does not depend on the thread count. exp runs once per logit,
// in float (the sums are double): for a language model this pass over batch x context x vocab
// logits costs as much as a GEMM otherwise.
StepResult SoftmaxCrossEntropy(ThreadPool& pool, const float* logits, const int32_t* labels,
                               int64_t rows, int64_t k, float* dlogits) {
  constexpr int64_t kMaxTasks = 64;
  StepResult r;
  for (int64_t i = 0; i < rows; ++i) {
    FTTE_CHECK(labels[i] < k) << "label " << labels[i] << " at position " << i
                              << " out of range [0, " << k << ") (negative labels are ignored)";
    r.positions += labels[i] >= 0;
  }
  const int64_t tasks = std::clamp<int64_t>(rows * k / (1 << 15), 1, std::min(rows, kMaxTasks));
  std::array<double, kMaxTasks> loss{};
  std::array<int64_t, kMaxTasks> correct{}, top3{};
  const double inv_positions = 1.0 / static_cast<double>(std::max<int64_t>(r.positions, 1));
  pool.ParallelFor(tasks, [&](int64_t t, int) {
    for (int64_t i = rows * t / tasks; i < rows * (t + 1) / tasks; ++i) {
      const float* z = logits + i * k;
      float* d = dlogits == nullptr ? nullptr : dlogits + i * k;
      const int32_t y = labels[i];
      if (y < 0) {
        if (d != nullptr) std::fill(d, d + k, 0.0f);
        continue;
      }
      const float mx = RowMax(z, k);
      const int64_t rank = Rank(z, k, y);
      double sum = 0;
      if (d != nullptr) {
        sum = ExpSum(z, k, mx, d);
        const auto scale = static_cast<float>(inv_positions / sum);
        const double p_y = d[y] / sum;
        for (int64_t j = 0; j < k; ++j) d[j] *= scale;
        d[y] = static_cast<float>((p_y - 1.0) * inv_positions);
      } else {
        float chunk[256];  // forward only: no dlogits to hold the exps
        for (int64_t j = 0; j < k; j += 256) {
          sum += ExpSum(z + j, std::min<int64_t>(256, k - j), mx, chunk);
        }
      }
      loss[t] += std::log(sum) - (z[y] - mx);
      correct[t] += rank == 0;  // the argmax (first on ties) is the label
      top3[t] += rank < 3;
    }
  });
  double total = 0;
  for (int64_t t = 0; t < tasks; ++t) {
    total += loss[t];
    r.correct += correct[t];
    r.correct_top3 += top3[t];
  }
  r.loss = static_cast<float>(total * inv_positions);
  return r;
}

}  // namespace

MemoryPlan PlanTrainingStep(Model& model, const TrainerOptions& o) {
  MemoryPlan plan;
  const int state = o.optimizer.state_per_value();
  for (const Parameter* p : model.params()) {
    plan.Add(MemCategory::kWeights, p->ValueBytes(o.frozen), p->name());
  }
  for (const Parameter* p : model.params()) {
    plan.Add(MemCategory::kGradients, FloatBytes(p->trainable_numel()), p->name() + " grad");
  }
  for (const Parameter* p : model.params()) {
    for (int s = 0; s < state; ++s) {
      plan.Add(MemCategory::kOptimizer, FloatBytes(p->trainable_numel()), p->name() + " state");
    }
  }
  const Shape in = BatchShape(model, o.batch);
  plan.Add(MemCategory::kBatch, FloatBytes(NumElements(in)), "input batch");
  const int64_t rows = o.batch * model.label_positions();
  plan.Add(MemCategory::kBatch, rows * static_cast<int64_t>(sizeof(int32_t)), "labels");
  plan.Add(MemCategory::kActivations, FloatBytes(rows * model.num_classes()), "logits");
  const LayerMode top = TopMode(model);
  plan.Add(MemCategory::kActGrads, top.backward() ? FloatBytes(rows * model.num_classes()) : 0,
           "logit gradients");
  model.net().Plan(in, top, PlanContext{o.threads, o.frozen}, &plan);
  return plan;
}

MemoryPrediction PredictPeak(Model& model, const TrainerOptions& options) {
  MemoryPlan plan = PlanTrainingStep(model, options);
  MemoryPrediction p;
  for (const auto& r : plan.requests) {
    p.by_category[static_cast<int>(r.category)] += r.bytes;
    p.total += r.bytes;
  }
  return p;
}

Flops CountTrainingFlops(Model& model, int64_t batch) {
  Flops f = model.net().CountFlops(BatchShape(model, batch), TopMode(model));
  const int64_t k = model.num_classes() * model.label_positions();
  f.forward += 5 * batch * k;  // softmax and loss
  f.backward += batch * k;
  return f;
}

Trainer::Trainer(Model* model, const TrainerOptions& options)
    : model_(model), options_(options), pool_(options.threads), rng_(options.seed) {
  FTTE_CHECK(options.batch >= 1 && options.threads >= 1);
  MemoryTracker* t = &model->tracker();
  for (Parameter* p : model->params()) {
    p->SetStorage(options.frozen);
    p->grad() =
        p->any_trainable() ? Tensor(t, MemCategory::kGradients, {p->trainable_numel()}) : Tensor();
  }
  optimizer_ = std::make_unique<Optimizer>(options.optimizer, model->params(), t);
  const Shape in = BatchShape(*model, options.batch);
  batch_ = Tensor(t, MemCategory::kBatch, in);
  const int64_t rows = options.batch * model->label_positions();
  labels_ = Buffer(t, MemCategory::kBatch, rows * sizeof(int32_t));
  logits_ = Tensor(t, MemCategory::kActivations, {rows, model->num_classes()});
  mode_ = TopMode(*model);
  if (mode_.backward()) {
    dlogits_ = Tensor(t, MemCategory::kActGrads, {rows, model->num_classes()});
  }
  model->net().Prepare(in, mode_, PlanContext{options.threads, options.frozen}, t);
  t->ResetPeak();
}

Trainer::~Trainer() {
  for (Parameter* p : model_->params()) p->grad() = Tensor();
}

StepResult Trainer::ForwardLoss(const float* x, const int32_t* labels, int64_t n, bool training) {
  FTTE_CHECK(n >= 1 && n <= options_.batch)
      << "batch of " << n << " for a trainer of " << options_.batch;
  const int64_t sample = NumElements(model_->sample_shape());
  std::memcpy(batch_.data(), x, sizeof(float) * n * sample);
  const int64_t rows = n * model_->label_positions();
  std::memcpy(labels_.data(), labels, sizeof(int32_t) * rows);
  Shape in = BatchShape(*model_, n);
  const int64_t k = model_->num_classes();
  ExecContext ctx{&pool_, training, &rng_};
  View xv{batch_.data(), in};
  View yv{logits_.data(), model_->OutputShape(n)};
  model_->net().Forward(xv, yv, ctx);
  return SoftmaxCrossEntropy(pool_, logits_.data(), static_cast<const int32_t*>(labels_.data()),
                             rows, k, training && mode_.backward() ? dlogits_.data() : nullptr);
}

StepResult Trainer::Step(const float* x, const int32_t* labels, int64_t n) {
  StepResult r = ForwardLoss(x, labels, n, /*training=*/true);
  if (!mode_.backward()) return r;
  ExecContext ctx{&pool_, true, &rng_};
  const Shape out = model_->OutputShape(n);
  View xv{batch_.data(), BatchShape(*model_, n)};
  View yv{logits_.data(), out};
  View dy{dlogits_.data(), out};
  model_->net().Backward(xv, yv, dy, View{}, ctx);
  optimizer_->Step();
  return r;
}

StepResult Trainer::Evaluate(const float* x, const int32_t* labels, int64_t n) {
  StepResult total;
  double loss = 0;
  const int64_t sample = NumElements(model_->sample_shape());
  for (int64_t i = 0; i < n; i += options_.batch) {
    const int64_t m = std::min(options_.batch, n - i);
    StepResult r = ForwardLoss(x + i * sample, labels + i * model_->label_positions(), m,
                               /*training=*/false);
    loss += static_cast<double>(r.loss) * r.positions;
    total.correct += r.correct;
    total.correct_top3 += r.correct_top3;
    total.positions += r.positions;
  }
  total.loss = static_cast<float>(loss / std::max<int64_t>(total.positions, 1));
  return total;
}

double StepResult::perplexity() const { return std::exp(static_cast<double>(loss)); }

}  // namespace ftte
