// The device side of federated training: local training on a device's own samples, starting
// from the server's weights, returning the change of the trainable rows.
#ifndef FTTE_FL_CLIENT_H_
#define FTTE_FL_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "ftte/core/trainer.h"
#include "ftte/data/dataset.h"
#include "ftte/fl/update.h"

namespace ftte::fl {

struct ClientConfig {
  int64_t local_epochs = 1;
  int64_t local_steps = 0;  // > 0: exactly this many steps (cycling through the data) instead
  int64_t batch = 32;
  // Samples per forward/backward pass (0 = batch): the planner's choice under a budget; steps
  // still take `batch` samples (see TrainerOptions::micro_batch).
  int64_t micro_batch = 0;
  OptimizerConfig optimizer;  // the local optimizer; plain SGD by default
  FrozenStorage frozen = FrozenStorage::kFloat32;
  // Floats per tile of transient work (TrainerOptions::tile_floats; 0 = what a device with this
  // budget would use). Never sent: the simulator runs with large tiles because its host is not
  // the device; the device's memory is measured by a step with the planned micro-batch and tile.
  int64_t tile_floats = 0;
  // Distributed differential privacy (docs/privacy.md): dp_clip > 0: the device clips its
  // update to this L2 norm and adds Gaussian noise of standard deviation dp_noise_stddev to
  // every value (fl::PrivatizeUpdate) before it leaves the device.
  double dp_clip = 0;
  double dp_noise_stddev = 0;
};

struct ClientResult {
  Update update;
  int64_t steps = 0;
  int64_t peak_bytes = 0;  // measured peak of the device's training memory
  int64_t flops = 0;       // forward + backward FLOPs of all local steps
};

// The trainer options of a device training under `config` (one thread: parallelism comes from
// running many devices at once).
TrainerOptions ClientTrainerOptions(const ClientConfig& config);
// Bytes per trainable value a device keeps besides its training step: the copy of its trainable
// rows at the start of the round, from which the update is computed.
inline constexpr int64_t kClientBytesPerTrainableValue = sizeof(float);
// Peak bytes one device needs to train under `mask`: the training step (PredictPeak) plus the
// copy of the trainable rows kept to compute the delta.
int64_t PredictClientPeak(Model& model, const Mask& mask, const ClientConfig& config);
// FLOPs of one local step at batch `batch` under `mask`.
int64_t StepFlops(Model& model, const Mask& mask, int64_t batch);
// The local steps of one round on `samples` samples: local_steps, else local_epochs (at least
// one) passes of ceil(samples / batch) steps.
int64_t LocalSteps(const ClientConfig& config, int64_t samples);

// A replica of the model and its trainer. Not thread-safe; reusable across rounds and devices
// (the simulator gives each worker thread one). Train() allocates only when the mask or the
// configuration changes.
class ClientTrainer {
 public:
  static Result<std::unique_ptr<ClientTrainer>> Create(const std::string& model_name);
  ~ClientTrainer();

  // Local training from `weights` (all values, flat) under `mask` on data[indices]. `seed`
  // orders the samples. Each batch passes the trainer all data.labels_per_sample labels of each
  // sample, in sample order (one label per image; T next-token ids per sequence). Deterministic:
  // the result depends only on the arguments.
  ClientResult Train(const std::vector<float>& weights, const Mask& mask,
                     const data::ImageDataset& data, const std::vector<int64_t>& indices,
                     const ClientConfig& config, uint64_t seed);

  Model& model() { return *model_; }
  // PredictClientPeak for `mask` and `config` on a planning replica, so that the trainer's
  // model (whose frozen rows may be int8 under another mask) is left alone.
  int64_t PredictPeak(const Mask& mask, const ClientConfig& config);

 private:
  explicit ClientTrainer(std::unique_ptr<Model> model);
  void Reconfigure(const std::vector<float>& weights, const Mask& mask, const ClientConfig& config);

  std::unique_ptr<Model> model_;
  std::unique_ptr<Model> planning_;  // made on first PredictPeak
  std::unique_ptr<Trainer> trainer_;
  Mask mask_;
  ClientConfig config_;
  Tensor before_;  // trainable rows at the start of the round (counted in the device's peak)
  std::vector<float> xb_;
  std::vector<int32_t> yb_;
};

}  // namespace ftte::fl

#endif  // FTTE_FL_CLIENT_H_
