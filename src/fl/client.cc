#include "ftte/fl/client.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "ftte/core/check.h"

namespace ftte::fl {

namespace {

bool SameConfig(const ClientConfig& a, const ClientConfig& b) {
  return a.batch == b.batch && a.micro_batch == b.micro_batch && a.frozen == b.frozen &&
         a.tile_floats == b.tile_floats && a.optimizer.kind == b.optimizer.kind &&
         a.optimizer.lr == b.optimizer.lr && a.optimizer.momentum == b.optimizer.momentum &&
         a.optimizer.nesterov == b.optimizer.nesterov &&
         a.optimizer.weight_decay == b.optimizer.weight_decay;
}

// Copies the mask's rows of the model's values into packed (or back).
void CopyTrainableRows(Model& model, float* packed, bool to_model) {
  for (Parameter* p : model.params()) {
    const int64_t rs = p->row_size();
    for (const RowRun& r : p->runs()) {
      float* w = p->RunData(r);
      const size_t n = static_cast<size_t>((r.end - r.begin) * rs);
      if (to_model) {
        std::memcpy(w, packed, n * sizeof(float));
      } else {
        std::memcpy(packed, w, n * sizeof(float));
      }
      packed += n;
    }
  }
}

}  // namespace

TrainerOptions ClientTrainerOptions(const ClientConfig& c) {
  TrainerOptions o;
  o.batch = c.batch;
  o.micro_batch = c.micro_batch;
  o.tile_floats = c.tile_floats;
  o.threads = 1;  // parallelism comes from running many devices at once
  o.optimizer = c.optimizer;
  o.frozen = c.frozen;
  o.gradient_stats = true;  // the update's variance
  return o;
}

int64_t PredictClientPeak(Model& model, const Mask& mask, const ClientConfig& config) {
  const Mask saved = Mask::FromModel(model);
  mask.ApplyTo(model);
  const int64_t peak = PredictPeak(model, ClientTrainerOptions(config)).total +
                       kClientBytesPerTrainableValue * model.num_trainable();
  saved.ApplyTo(model);
  return peak;
}

int64_t LocalSteps(const ClientConfig& config, int64_t samples) {
  if (config.local_steps > 0) return config.local_steps;
  return std::max<int64_t>(1, config.local_epochs) * ((samples + config.batch - 1) / config.batch);
}

int64_t StepFlops(Model& model, const Mask& mask, int64_t batch) {
  const Mask saved = Mask::FromModel(model);
  mask.ApplyTo(model);
  const Flops f = CountTrainingFlops(model, batch);
  saved.ApplyTo(model);
  return f.forward + f.backward;
}

Result<std::unique_ptr<ClientTrainer>> ClientTrainer::Create(const std::string& model_name) {
  FTTE_ASSIGN_OR_RETURN(auto model, MakeModel(model_name, 0));
  return std::unique_ptr<ClientTrainer>(new ClientTrainer(std::move(model)));
}

ClientTrainer::ClientTrainer(std::unique_ptr<Model> model) : model_(std::move(model)) {}

int64_t ClientTrainer::PredictPeak(const Mask& mask, const ClientConfig& config) {
  if (!planning_) planning_ = MakeModel(model_->name(), 0).value();
  return PredictClientPeak(*planning_, mask, config);
}

ClientTrainer::~ClientTrainer() {
  before_.Reset();
  trainer_.reset();
}

void ClientTrainer::Reconfigure(const std::vector<float>& weights, const Mask& mask,
                                const ClientConfig& config) {
  if (trainer_ && mask == mask_ && SameConfig(config, config_)) {
    if (config.frozen == FrozenStorage::kFloat32) {
      SetWeights(*model_, weights);
    } else {
      // Frozen rows never change at the server under a fixed mask; only trainable rows move.
      std::vector<float> packed = PackMasked(weights, mask, LayoutOf(*model_));
      CopyTrainableRows(*model_, packed.data(), /*to_model=*/true);
    }
    return;
  }
  before_.Reset();
  trainer_.reset();
  for (Parameter* p : model_->params()) p->SetStorage(FrozenStorage::kFloat32);
  mask.ApplyTo(*model_);
  SetWeights(*model_, weights);
  trainer_ = std::make_unique<Trainer>(model_.get(), ClientTrainerOptions(config));
  // Allocated after the trainer reset the peak, so the device's measured peak includes it.
  before_ = Tensor(&model_->tracker(), MemCategory::kOptimizer, {model_->num_trainable()});
  mask_ = mask;
  config_ = config;
}

ClientResult ClientTrainer::Train(const std::vector<float>& weights, const Mask& mask,
                                  const data::ImageDataset& data,
                                  const std::vector<int64_t>& indices, const ClientConfig& config,
                                  uint64_t seed) {
  FTTE_CHECK(!indices.empty()) << "a device without samples cannot train";
  Reconfigure(weights, mask, config);
  const int64_t n = static_cast<int64_t>(indices.size());
  const int64_t sample = data.sample_numel();
  const int64_t steps = LocalSteps(config, n);
  const int64_t per = data.labels_per_sample;
  xb_.resize(static_cast<size_t>(config.batch * sample));
  yb_.resize(static_cast<size_t>(config.batch * per));
  CopyTrainableRows(*model_, before_.data(), /*to_model=*/false);
  trainer_->optimizer().Reset();
  trainer_->ResetGradientStats();

  Rng rng(seed);
  std::vector<int64_t> order(indices);
  int64_t pos = n;  // forces a shuffle before the first batch
  double loss_sum = 0, grad_sq = 0;
  int64_t seen = 0;
  const Flops step_flops = CountTrainingFlops(*model_, config.batch);
  for (int64_t s = 0; s < steps; ++s) {
    if (pos >= n) {
      for (int64_t i = n - 1; i > 0; --i) {
        std::swap(order[i], order[rng.Below(static_cast<uint64_t>(i + 1))]);
      }
      pos = 0;
    }
    const int64_t m = std::min(config.batch, n - pos);
    for (int64_t j = 0; j < m; ++j) {
      const int64_t idx = order[pos + j];
      std::memcpy(xb_.data() + j * sample, data.image(idx), sizeof(float) * sample);
      std::memcpy(yb_.data() + j * per, data.label(idx), sizeof(int32_t) * per);
    }
    pos += m;
    const StepResult r = trainer_->Step(xb_.data(), yb_.data(), m);
    loss_sum += static_cast<double>(r.loss) * m;
    seen += m;
    grad_sq += r.grad_sq;
  }

  ClientResult out;
  out.steps = steps;
  out.flops = (step_flops.forward + step_flops.backward) * seen / config.batch;
  Update& u = out.update;
  u.num_samples = n;
  u.loss = static_cast<float>(loss_sum / std::max<int64_t>(seen, 1));
  u.delta.resize(static_cast<size_t>(model_->num_trainable()));
  CopyTrainableRows(*model_, u.delta.data(), /*to_model=*/false);
  double delta_sq = 0;
  for (size_t i = 0; i < u.delta.size(); ++i) {
    u.delta[i] -= before_.data()[i];
    delta_sq += static_cast<double>(u.delta[i]) * u.delta[i];
  }
  // Gradient noise across local steps: mean |g_t|^2 - |mean g_t|^2, where the mean gradient is
  // recovered from the delta (exact for plain SGD: delta = -lr * sum g_t).
  const double lr_t = static_cast<double>(config.optimizer.lr) * static_cast<double>(steps);
  const double mean_sq = lr_t > 0 ? delta_sq / (lr_t * lr_t) : 0.0;
  u.variance = std::max(0.0, grad_sq / static_cast<double>(steps) - mean_sq);
  // Federated importance: each trained row's mean squared gradient norm per step.
  for (const std::vector<double>& rows : trainer_->RowGradSq()) {
    for (double v : rows) u.row_sq.push_back(static_cast<float>(v / static_cast<double>(steps)));
  }
  out.peak_bytes = model_->tracker().stats().peak_total;
  return out;
}

}  // namespace ftte::fl
