#include "ftte/core/trainer.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <unordered_map>

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

// Whether the logit gradients need a buffer of their own. When the last layer's backward does
// not read its output (a Linear head), the gradients overwrite the logits in place: for a
// language model that saves a [tokens, vocab] buffer, as large as the logits themselves.
bool LogitGradientsApart(Model& m, LayerMode top) {
  return top.backward() && m.net().NeedsOutput(top);
}

int64_t NumTrainableRows(const Model& m) {
  int64_t rows = 0;
  for (const Parameter* p : m.params()) rows += p->trainable_rows();
  return rows;
}

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
// Non-finite scores are never a right answer: a NaN logit ranks ahead of the label, and a label
// whose own logit is not finite ranks last (a NaN model must not score 100%).
int64_t Rank(const float* z, int64_t k, int32_t y) {
  const float zy = z[y];
  if (!std::isfinite(zy)) return k;
  int32_t ahead = 0;                                       // k < 2^24
  for (int64_t j = 0; j < k; ++j) ahead += !(z[j] <= zy);  // greater, or NaN
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

// Sums of a softmax cross-entropy pass.
struct CrossEntropySums {
  double loss = 0;  // sum over counted positions
  int64_t correct = 0, correct_top3 = 0, positions = 0, scored = 0;
};

// Whether logit `u` (an unscored class, < 0: none) ranks ahead of label y's, as Rank counts it.
bool AheadOf(const float* z, int32_t u, int32_t y) {
  return u >= 0 && u != y && (!(z[u] <= z[y]) || (z[u] == z[y] && u < y));
}

// Softmax cross-entropy of logits [rows, k] over the rows whose label is >= 0; writes
// dlogits = (softmax - onehot) * inv_positions for those rows and 0 for ignored ones when
// dlogits is not null (inv_positions is 1 / the counted positions of the whole step, which may
// span several passes). dlogits may be logits itself: each row is read before it is written.
// Class `unscored` (< 0: none; a language model's <unk>) is never a right answer: rows labelled
// with it add to the loss but not to the counts of right answers (`scored` counts the rest), and
// its logit is passed over when ranking. Rows are split into tasks by the problem size only, and
// the per-task sums are added in task order, so the result does not depend on the thread count.
// exp runs once per logit, in float (the sums are double): for a language model this pass over
// batch x context x vocab logits costs as much as a GEMM otherwise.
CrossEntropySums SoftmaxCrossEntropy(ThreadPool& pool, const float* logits, const int32_t* labels,
                                     int64_t rows, int64_t k, double inv_positions,
                                     int32_t unscored, float* dlogits) {
  constexpr int64_t kMaxTasks = 64;
  CrossEntropySums r;
  for (int64_t i = 0; i < rows; ++i) {
    FTTE_CHECK(labels[i] < k) << "label " << labels[i] << " at position " << i
                              << " out of range [0, " << k << ") (negative labels are ignored)";
    r.positions += labels[i] >= 0;
    r.scored += labels[i] >= 0 && labels[i] != unscored;
  }
  const int64_t tasks = std::clamp<int64_t>(rows * k / (1 << 15), 1, std::min(rows, kMaxTasks));
  std::array<double, kMaxTasks> loss{};
  std::array<int64_t, kMaxTasks> correct{}, top3{};
  pool.ParallelFor(tasks, [&](int64_t t, int) {
    for (int64_t i = rows * t / tasks; i < rows * (t + 1) / tasks; ++i) {
      const float* z = logits + i * k;
      float* d = dlogits == nullptr ? nullptr : dlogits + i * k;
      const int32_t y = labels[i];
      if (y < 0) {
        if (d != nullptr) std::fill(d, d + k, 0.0f);
        continue;
      }
      const float mx = RowMax(z, k), zy = z[y];
      const int64_t rank = Rank(z, k, y) - AheadOf(z, unscored, y);
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
      loss[t] += std::log(sum) - (zy - mx);
      if (y == unscored) continue;
      correct[t] += rank == 0;  // the argmax (first on ties) is the label
      top3[t] += rank < 3;
    }
  });
  for (int64_t t = 0; t < tasks; ++t) {
    r.loss += loss[t];
    r.correct += correct[t];
    r.correct_top3 += top3[t];
  }
  return r;
}

// Counted positions (labels >= 0) of n label values.
int64_t CountPositions(const int32_t* labels, int64_t n) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += labels[i] >= 0;
  return c;
}

}  // namespace

// The trainer's GradientSink: statistics, the kept gradient (if asked for), then the optimizer.
class Trainer::Sink : public GradientSink {
 public:
  Sink(Model& model, Optimizer* optimizer, double* pass_sq, bool keep)
      : optimizer_(optimizer), pass_sq_(pass_sq), keep_(keep) {
    int64_t rows = 0;
    for (size_t k = 0; k < model.params().size(); ++k) {
      const Parameter* p = model.params()[k];
      index_.emplace(p, k);
      first_row_.push_back(rows);
      rows += p->trainable_rows();
    }
    total_rows_ = rows;
  }

  void BeginPass(int64_t index, int64_t count) {
    optimizer_->BeginPass(index, count);
    pass_ = index;
    committed_ = 0;
  }

  void Commit(Parameter& p, int64_t first, int64_t count, float* g) override {
    const auto it = index_.find(&p);
    FTTE_CHECK(it != index_.end()) << p.name() << " is not a parameter of the trained model";
    const size_t k = it->second;
    const int64_t rs = p.row_size();
    FTTE_CHECK(first >= 0 && count >= 0 && first + count <= p.trainable_rows())
        << p.name() << ": committed rows [" << first << ", " << first + count << ") of "
        << p.trainable_rows();
    if (pass_sq_ != nullptr) {
      for (int64_t i = 0; i < count; ++i) {
        const float* r = g + i * rs;
        double s = 0;
        for (int64_t j = 0; j < rs; ++j) s += static_cast<double>(r[j]) * r[j];
        pass_sq_[first_row_[k] + first + i] = s;
      }
    }
    if (keep_) {
      float* dst = p.grad().data() + first * rs;
      if (pass_ == 0) {
        std::copy(g, g + count * rs, dst);
      } else {
        for (int64_t i = 0; i < count * rs; ++i) dst[i] += g[i];
      }
    }
    optimizer_->Commit(k, first, count, g);
    committed_ += count;
  }

  // Every trainable row is committed exactly once per pass.
  void CheckPassComplete() const {
    FTTE_CHECK(committed_ == total_rows_)
        << "backward committed " << committed_.load() << " gradient rows, expected " << total_rows_;
  }
  int64_t total_rows() const { return total_rows_; }

 private:
  Optimizer* optimizer_;
  double* pass_sq_;
  bool keep_;
  std::unordered_map<const Parameter*, size_t> index_;
  std::vector<int64_t> first_row_;
  int64_t total_rows_ = 0, pass_ = 0;
  std::atomic<int64_t> committed_{0};
};

namespace {
MemoryPlan PlanWithTile(Model& model, const TrainerOptions& o, int64_t tile);
}  // namespace

int64_t TileFloatsFor(Model& model, const TrainerOptions& options) {
  if (options.tile_floats > 0) return options.tile_floats;
  TrainerOptions one = options;
  one.threads = 1;
  constexpr int64_t kLargest = int64_t{1} << 19, kSmallest = int64_t{1} << 10;
  for (int64_t tile = kLargest; tile > kSmallest; tile /= 2) {
    const MemoryPlan plan = PlanWithTile(model, one, tile);
    if (plan.workspace * 10 <= plan.Total()) return tile;
  }
  return kSmallest;
}

MemoryPlan PlanTrainingStep(Model& model, const TrainerOptions& o) {
  return PlanWithTile(model, o, TileFloatsFor(model, o));
}

namespace {
MemoryPlan PlanWithTile(Model& model, const TrainerOptions& o, int64_t tile) {
  MemoryPlan plan;
  const int state = o.optimizer.state_per_value();
  const bool acc = o.optimizer.AccumulatorFor(o.passes());
  for (const Parameter* p : model.params()) {
    plan.Add(MemCategory::kWeights, p->ValueBytes(o.frozen), p->name());
  }
  for (const Parameter* p : model.params()) {
    const int64_t n = p->trainable_numel();
    plan.Add(MemCategory::kGradients, o.keep_gradients ? FloatBytes(n) : 0, p->name() + " grad");
  }
  for (const Parameter* p : model.params()) {
    for (int s = 0; s < state; ++s) {
      plan.Add(MemCategory::kOptimizer, FloatBytes(p->trainable_numel()), p->name() + " state");
    }
  }
  for (const Parameter* p : model.params()) {
    plan.Add(MemCategory::kGradients, acc ? FloatBytes(p->trainable_numel()) : 0,
             p->name() + " gradient sum over passes");
  }
  const int64_t micro = o.micro();
  plan.Add(
      MemCategory::kOptimizer,
      o.gradient_stats ? 2 * static_cast<int64_t>(sizeof(double)) * NumTrainableRows(model) : 0,
      "gradient statistics");
  const Shape in = BatchShape(model, micro);
  plan.Add(MemCategory::kBatch, FloatBytes(NumElements(in)), "input micro-batch");
  const int64_t rows = micro * model.label_positions();
  plan.Add(MemCategory::kBatch, rows * static_cast<int64_t>(sizeof(int32_t)), "labels");
  plan.Add(MemCategory::kActivations, FloatBytes(rows * model.num_classes()), "logits");
  const LayerMode top = TopMode(model);
  plan.Add(MemCategory::kActGrads,
           LogitGradientsApart(model, top) ? FloatBytes(rows * model.num_classes()) : 0,
           "logit gradients");
  model.net().Plan(in, top, PlanContext{o.threads, o.frozen, tile}, &plan);
  return plan;
}
}  // namespace

MemoryPrediction PredictPeak(Model& model, const TrainerOptions& options) {
  MemoryPlan plan = PlanTrainingStep(model, options);
  MemoryPrediction p;
  for (int c = 0; c < kNumMemCategories; ++c) {
    p.by_category[c] = plan.Total(static_cast<MemCategory>(c));
    p.total += p.by_category[c];
  }
  for (const Parameter* q : model.params()) p.mapped += q->MappedBytes(options.frozen);
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
  FTTE_CHECK(options.batch >= 1 && options.threads >= 1 && options.micro_batch >= 0);
  MemoryTracker* t = &model->tracker();
  if (options.frozen == FrozenStorage::kInt8Mapped) {
    FTTE_CHECK(options.mapped != nullptr) << "kInt8Mapped storage needs TrainerOptions::mapped";
    for (Parameter* p : model->params()) p->SetStorage(FrozenStorage::kFloat32);
    options.mapped->Attach(*model);
  }
  for (Parameter* p : model->params()) {
    p->SetStorage(options.frozen);
    p->grad() = options.keep_gradients && p->any_trainable()
                    ? Tensor(t, MemCategory::kGradients, {p->trainable_numel()})
                    : Tensor();
  }
  optimizer_ = std::make_unique<Optimizer>(options.optimizer, model->params(), t, options.passes());
  const int64_t micro = options.micro();
  const Shape in = BatchShape(*model, micro);
  batch_ = Tensor(t, MemCategory::kBatch, in);
  const int64_t rows = micro * model->label_positions();
  labels_ = Buffer(t, MemCategory::kBatch, rows * sizeof(int32_t));
  logits_ = Tensor(t, MemCategory::kActivations, {rows, model->num_classes()});
  mode_ = TopMode(*model);
  if (LogitGradientsApart(*model, mode_)) {
    dlogits_ = Tensor(t, MemCategory::kActGrads, {rows, model->num_classes()});
  }
  const PlanContext pc{options.threads, options.frozen, TileFloatsFor(*model, options)};
  MemoryPlan net;
  model->net().Plan(in, mode_, pc, &net);
  workspace_ = Buffer(t, MemCategory::kWorkspace, static_cast<size_t>(net.workspace));
  const int64_t trainable_rows = NumTrainableRows(*model);
  if (options.gradient_stats) {
    stats_ = Buffer(t, MemCategory::kOptimizer, 2 * sizeof(double) * trainable_rows);
  }
  sink_ =
      std::make_unique<Sink>(*model, optimizer_.get(),
                             options.gradient_stats ? static_cast<double*>(stats_.data()) : nullptr,
                             options.keep_gradients);
  model->net().Prepare(in, mode_, pc, t);
  t->ResetPeak();
}

Trainer::~Trainer() {
  for (Parameter* p : model_->params()) p->grad() = Tensor();
}

Trainer::LossSums Trainer::ForwardLoss(const float* x, const int32_t* labels, int64_t n,
                                       double inv_positions, bool training) {
  FTTE_CHECK(n >= 1 && n <= options_.micro())
      << "pass of " << n << " samples for a trainer of micro-batch " << options_.micro();
  const int64_t sample = NumElements(model_->sample_shape());
  std::memcpy(batch_.data(), x, sizeof(float) * n * sample);
  const int64_t rows = n * model_->label_positions();
  std::memcpy(labels_.data(), labels, sizeof(int32_t) * rows);
  ExecContext ctx{&pool_, training, &rng_, static_cast<float*>(workspace_.data()), sink_.get()};
  View xv{batch_.data(), BatchShape(*model_, n)};
  View yv{logits_.data(), model_->OutputShape(n)};
  model_->net().Forward(xv, yv, ctx);
  const CrossEntropySums c =
      SoftmaxCrossEntropy(pool_, logits_.data(), static_cast<const int32_t*>(labels_.data()), rows,
                          model_->num_classes(), inv_positions, options_.unscored_class,
                          training && mode_.backward() ? LogitGradients() : nullptr);
  return LossSums{c.loss, c.correct, c.correct_top3, c.positions, c.scored};
}

Status Trainer::CheckMapped() {
  if (failed_.ok() && options_.mapped != nullptr) failed_ = options_.mapped->Unchanged();
  return failed_;
}

StepResult Trainer::Step(const float* x, const int32_t* labels, int64_t n) {
  FTTE_CHECK(n >= 1 && n <= options_.batch)
      << "batch of " << n << " for a trainer of " << options_.batch;
  if (Status s = CheckMapped(); !s.ok()) {
    StepResult refused;
    refused.status = s;
    return refused;
  }
  const int64_t micro = options_.micro(), per = model_->label_positions();
  const int64_t sample = NumElements(model_->sample_shape());
  const int64_t positions = CountPositions(labels, n * per);
  const double inv_positions = 1.0 / static_cast<double>(std::max<int64_t>(positions, 1));
  const int64_t passes = (n + micro - 1) / micro;
  auto* pass_sq = static_cast<double*>(stats_.data());
  const int64_t stat_rows = sink_->total_rows();
  StepResult r;
  double loss = 0, grad_sq = 0;
  int64_t counted_passes = 0;
  for (int64_t k = 0; k < passes; ++k) {
    const int64_t i0 = k * micro, m = std::min(micro, n - i0);
    const LossSums s = ForwardLoss(x + i0 * sample, labels + i0 * per, m, inv_positions, true);
    loss += s.loss;
    r.correct += s.correct;
    r.correct_top3 += s.correct_top3;
    r.positions += s.positions;
    r.scored += s.scored;
    if (!mode_.backward()) continue;
    ExecContext ctx{&pool_, true, &rng_, static_cast<float*>(workspace_.data()), sink_.get()};
    const Shape out = model_->OutputShape(m);
    View xv{batch_.data(), BatchShape(*model_, m)};
    View yv{logits_.data(), out};
    View dy{LogitGradients(), out};
    sink_->BeginPass(k, passes);
    model_->net().Backward(xv, yv, dy, View{}, ctx);
    sink_->CheckPassComplete();
    if (pass_sq != nullptr && s.positions > 0) {
      // Pass k's own mean-gradient estimate is its gradient times positions / its positions.
      const double scale = static_cast<double>(positions) / static_cast<double>(s.positions);
      const double w = scale * scale / static_cast<double>(passes);
      double total = 0;
      for (int64_t q = 0; q < stat_rows; ++q) {
        total += pass_sq[q];
        pass_sq[stat_rows + q] += pass_sq[q] * w;
      }
      grad_sq += total * scale * scale;
      ++counted_passes;
    }
  }
  r.loss = static_cast<float>(loss * inv_positions);
  r.grad_sq = counted_passes > 0 ? grad_sq / static_cast<double>(counted_passes) : 0.0;
  // A change during the step may have fed it wrong values: say so, and stop here.
  r.status = CheckMapped();
  return r;
}

StepResult Trainer::Evaluate(const float* x, const int32_t* labels, int64_t n) {
  if (Status s = CheckMapped(); !s.ok()) {
    StepResult failed;
    failed.status = s;
    return failed;
  }
  StepResult total = Combine(EvaluateBatches(x, labels, n));
  total.status = CheckMapped();
  return total;
}

std::vector<Trainer::LossSums> Trainer::EvaluateBatches(const float* x, const int32_t* labels,
                                                        int64_t n) {
  std::vector<LossSums> out;
  const int64_t sample = NumElements(model_->sample_shape()), micro = options_.micro();
  for (int64_t i = 0; i < n; i += micro) {
    const int64_t m = std::min(micro, n - i);
    out.push_back(ForwardLoss(x + i * sample, labels + i * model_->label_positions(), m, 1.0,
                              /*training=*/false));
  }
  return out;
}

StepResult Trainer::Combine(const std::vector<LossSums>& batches) {
  StepResult total;
  double loss = 0;
  for (const LossSums& s : batches) {
    loss += s.loss;
    total.correct += s.correct;
    total.correct_top3 += s.correct_top3;
    total.positions += s.positions;
    total.scored += s.scored;
  }
  total.loss =
      static_cast<float>(loss / static_cast<double>(std::max<int64_t>(total.positions, 1)));
  return total;
}

std::vector<std::vector<double>> Trainer::RowGradSq() const {
  std::vector<std::vector<double>> out;
  const auto* sums = static_cast<const double*>(stats_.data());
  int64_t at = sink_->total_rows();
  for (const Parameter* p : model_->params()) {
    if (sums == nullptr) {
      out.emplace_back();
      continue;
    }
    out.emplace_back(sums + at, sums + at + p->trainable_rows());
    at += p->trainable_rows();
  }
  return out;
}

void Trainer::ResetGradientStats() {
  if (stats_.data() != nullptr) std::memset(stats_.data(), 0, stats_.bytes());
}

double StepResult::perplexity() const { return std::exp(static_cast<double>(loss)); }

}  // namespace ftte
