// A model: a Sequential network with a named input shape and class count, the tracker that
// owns the accounting of all its memory, and the model zoo.
#ifndef FTTE_CORE_MODEL_H_
#define FTTE_CORE_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ftte/core/sequential.h"
#include "ftte/core/status.h"

namespace ftte {

class Model {
 public:
  // The tracker must be the one the layers of `net` allocate from (see MakeModel).
  Model(std::string name, Shape sample_shape, int num_classes,
        std::unique_ptr<MemoryTracker> tracker, std::unique_ptr<Sequential> net);

  const std::string& name() const { return name_; }
  const Shape& sample_shape() const { return sample_shape_; }  // [C, H, W]
  int num_classes() const { return num_classes_; }
  Sequential& net() { return *net_; }
  MemoryTracker& tracker() { return *tracker_; }

  // Parameters in PyTorch's state_dict order, named like nn.Sequential ("0.weight").
  const std::vector<Parameter*>& params() const { return params_; }
  Parameter* FindParam(const std::string& name) const;
  int64_t num_params() const;
  int64_t num_trainable() const;

  // Seeded initialisation, identical for any thread count.
  void Init(uint64_t seed);
  // Mask helpers.
  void SetAllTrainable(bool on);

 private:
  std::string name_;
  Shape sample_shape_;
  int num_classes_;
  std::unique_ptr<MemoryTracker> tracker_;  // declared first: destroyed after the net
  std::unique_ptr<Sequential> net_;
  std::vector<Parameter*> params_;
};

// The zoo: "mlp", "lenet5", "cnn" (28x28x1) and "resnet8" (32x32x3). Initialised with `seed`.
// Unknown names get an error listing the known ones.
Result<std::unique_ptr<Model>> MakeModel(const std::string& name, uint64_t seed = 0);
std::vector<std::string> ModelNames();

}  // namespace ftte

#endif  // FTTE_CORE_MODEL_H_
