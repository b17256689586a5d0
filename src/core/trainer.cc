#include "ftte/core/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ftte/core/check.h"

namespace ftte {

namespace {

Shape BatchShape(const Model& m, int64_t batch) {
  Shape s{batch};
  for (int64_t d : m.sample_shape()) s.push_back(d);
  return s;
}

LayerMode TopMode(Model& m) { return {m.net().HasTrainable(), false}; }

// Mean softmax cross-entropy of logits [n, k]; writes dlogits = (softmax - onehot) / n when
// dlogits is not null. Sequential over samples, so the sum order is fixed.
StepResult SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                               float* dlogits) {
  StepResult r;
  double loss = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* z = logits + i * k;
    const int32_t y = labels[i];
    FTTE_CHECK(y >= 0 && y < k) << "label " << y << " out of range [0, " << k << ")";
    float mx = z[0];
    int64_t arg = 0;
    for (int64_t j = 1; j < k; ++j) {
      if (z[j] > mx) {
        mx = z[j];
        arg = j;
      }
    }
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += std::exp(static_cast<double>(z[j] - mx));
    loss += std::log(sum) - (z[y] - mx);
    r.correct += arg == y;
    if (dlogits != nullptr) {
      for (int64_t j = 0; j < k; ++j) {
        const double p = std::exp(static_cast<double>(z[j] - mx)) / sum;
        dlogits[i * k + j] = static_cast<float>((p - (j == y ? 1.0 : 0.0)) / n);
      }
    }
  }
  r.loss = static_cast<float>(loss / std::max<int64_t>(n, 1));
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
  plan.Add(MemCategory::kBatch, o.batch * static_cast<int64_t>(sizeof(int32_t)), "labels");
  plan.Add(MemCategory::kActivations, FloatBytes(o.batch * model.num_classes()), "logits");
  const LayerMode top = TopMode(model);
  plan.Add(MemCategory::kActGrads, top.backward() ? FloatBytes(o.batch * model.num_classes()) : 0,
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
  const int64_t k = model.num_classes();
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
  labels_ = Buffer(t, MemCategory::kBatch, options.batch * sizeof(int32_t));
  logits_ = Tensor(t, MemCategory::kActivations, {options.batch, model->num_classes()});
  mode_ = TopMode(*model);
  if (mode_.backward()) {
    dlogits_ = Tensor(t, MemCategory::kActGrads, {options.batch, model->num_classes()});
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
  std::memcpy(labels_.data(), labels, sizeof(int32_t) * n);
  Shape in = BatchShape(*model_, n);
  const int64_t k = model_->num_classes();
  ExecContext ctx{&pool_, training, &rng_};
  View xv{batch_.data(), in};
  View yv{logits_.data(), {n, k}};
  model_->net().Forward(xv, yv, ctx);
  return SoftmaxCrossEntropy(logits_.data(), static_cast<const int32_t*>(labels_.data()), n, k,
                             training && mode_.backward() ? dlogits_.data() : nullptr);
}

StepResult Trainer::Step(const float* x, const int32_t* labels, int64_t n) {
  StepResult r = ForwardLoss(x, labels, n, /*training=*/true);
  if (!mode_.backward()) return r;
  ExecContext ctx{&pool_, true, &rng_};
  const int64_t k = model_->num_classes();
  View xv{batch_.data(), BatchShape(*model_, n)};
  View yv{logits_.data(), {n, k}};
  View dy{dlogits_.data(), {n, k}};
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
    StepResult r = ForwardLoss(x + i * sample, labels + i, m, /*training=*/false);
    loss += static_cast<double>(r.loss) * m;
    total.correct += r.correct;
  }
  total.loss = static_cast<float>(loss / std::max<int64_t>(n, 1));
  return total;
}

}  // namespace ftte
