// What travels between a device and the server: flat model weights, the trainable mask, and a
// client's update (the change of its trainable rows, with the statistics the server weighs it
// by).
#ifndef FTTE_FL_UPDATE_H_
#define FTTE_FL_UPDATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "ftte/core/model.h"

namespace ftte::fl {

// The shape of every parameter of a model, in model.params() order: enough to encode, decode
// and validate updates without the model itself.
struct ParamLayout {
  std::string name;
  int64_t rows = 0;
  int64_t row_size = 0;
  int64_t numel() const { return rows * row_size; }
};
std::vector<ParamLayout> LayoutOf(const Model& model);
int64_t TotalNumel(const std::vector<ParamLayout>& layout);

// The trainable rows of every parameter (1 = trainable), in model.params() order.
struct Mask {
  std::vector<std::vector<uint8_t>> rows;

  static Mask Full(const std::vector<ParamLayout>& layout);
  static Mask FromModel(const Model& model);
  void ApplyTo(Model& model) const;
  // Values covered (sum over parameters of trainable rows x row size).
  int64_t Numel(const std::vector<ParamLayout>& layout) const;
  // Rows covered, over all parameters.
  int64_t Rows() const;
  bool operator==(const Mask& o) const { return rows == o.rows; }
};

// All parameter values, concatenated in model.params() order (dequantised if int8).
std::vector<float> GetWeights(const Model& model);
// Sets all parameter values from a flat vector (the model must be float32-stored).
void SetWeights(Model& model, const std::vector<float>& flat);

// Packs the values of the mask's rows of `flat` (a full flat vector) in order; Unpack adds
// scale * packed back into those rows of `flat`.
std::vector<float> PackMasked(const std::vector<float>& flat, const Mask& mask,
                              const std::vector<ParamLayout>& layout);
void AddMasked(const std::vector<float>& packed, float scale, const Mask& mask,
               const std::vector<ParamLayout>& layout, std::vector<float>* flat);
// Overwrites the mask's rows of `flat` with `packed` (model values sent to a device).
void SetMasked(const std::vector<float>& packed, const Mask& mask,
               const std::vector<ParamLayout>& layout, std::vector<float>* flat);

// A client's update. `delta` = (weights after local training) - (weights it started from),
// packed over `mask` (parameter order, trainable rows in order).
struct Update {
  int64_t device = 0;
  int64_t base_version = 0;  // the server version the device trained from
  int64_t num_samples = 0;   // samples seen in local training
  float loss = 0;            // mean local training loss
  double variance = 0;       // mean squared deviation of per-step gradients from their mean
  int64_t update_id = 0;     // unique per device and round, for idempotent submission
  std::vector<float> delta;
  // Federated importance (optional): per row of the mask, in order, the mean over the local
  // steps of the row's squared gradient norm. Empty when not reported.
  std::vector<float> row_sq;
};

}  // namespace ftte::fl

#endif  // FTTE_FL_UPDATE_H_
