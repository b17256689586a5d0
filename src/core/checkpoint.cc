#include "ftte/core/checkpoint.h"

#include <cmath>
#include <cstring>

#include "ftte/core/safetensors.h"

namespace ftte {

namespace {

// The tensors of `model` (float32; int8-stored ones dequantised into `dense`) and the metadata
// of a checkpoint; `what` names the destination in errors.
Status CheckpointRecords(Model& model, const std::string& what,
                         const std::map<std::string, std::string>& extra_metadata,
                         std::vector<std::vector<float>>* dense, std::vector<TensorRecord>* records,
                         std::map<std::string, std::string>* metadata) {
  *metadata = {{"ftte.model", model.name()}, {"format", "pt"}};
  for (const auto& [key, value] : extra_metadata) {
    if (!metadata->emplace(key, value).second) {
      return InvalidArgument("checkpoint metadata key '" + key +
                             "' is reserved; pick another name");
    }
  }
  dense->reserve(model.params().size());
  for (Parameter* p : model.params()) {
    const float* data = nullptr;
    if (!p->quantized()) {
      data = p->data();
    } else {
      dense->emplace_back(static_cast<size_t>(p->numel()));
      p->ReadRows(0, p->rows(), dense->back().data());
      data = dense->back().data();
    }
    for (int64_t i = 0; i < p->numel(); ++i) {
      if (!std::isfinite(data[i])) {
        return FailedPrecondition("not saving " + what + ": tensor '" + p->name() +
                                  "' holds a non-finite value (training diverged); lower the "
                                  "learning rate and train again");
      }
    }
    records->push_back({p->name(), DType::kF32, p->shape(), data,
                        static_cast<size_t>(p->numel()) * sizeof(float)});
  }
  return Status::Ok();
}

}  // namespace

Status SaveCheckpoint(Model& model, const std::string& path,
                      const std::map<std::string, std::string>& extra_metadata) {
  std::vector<std::vector<float>> dense;
  std::vector<TensorRecord> records;
  std::map<std::string, std::string> metadata;
  FTTE_RETURN_IF_ERROR(CheckpointRecords(model, path, extra_metadata, &dense, &records, &metadata));
  return WriteSafetensors(path, records, metadata);
}

Result<std::string> SerializeCheckpoint(Model& model,
                                        const std::map<std::string, std::string>& extra_metadata) {
  std::vector<std::vector<float>> dense;
  std::vector<TensorRecord> records;
  std::map<std::string, std::string> metadata;
  FTTE_RETURN_IF_ERROR(CheckpointRecords(model, "model " + model.name(), extra_metadata, &dense,
                                         &records, &metadata));
  return SerializeSafetensors(records, metadata);
}

Status LoadCheckpoint(Model& model, const std::string& path) {
  FTTE_ASSIGN_OR_RETURN(SafetensorsFile file, ReadSafetensors(path));
  return LoadCheckpoint(model, file, path);
}

Status LoadCheckpoint(Model& model, const SafetensorsFile& file, const std::string& path) {
  auto it = file.metadata.find("ftte.model");
  if (it != file.metadata.end() && it->second != model.name()) {
    return InvalidArgument(path + ": checkpoint is for model '" + it->second + "', not '" +
                           model.name() + "'; pass --model " + it->second);
  }
  // Validate everything before touching the model.
  for (Parameter* p : model.params()) {
    auto t = file.tensors.find(p->name());
    if (t == file.tensors.end()) {
      return InvalidArgument(path + ": missing tensor '" + p->name() + "' of model " +
                             model.name());
    }
    if (t->second.dtype != DType::kF32) {
      return InvalidArgument(path + ": tensor '" + p->name() + "' is " +
                             DTypeName(t->second.dtype) + ", expected F32");
    }
    if (t->second.shape != p->shape()) {
      return InvalidArgument(path + ": tensor '" + p->name() + "' has shape " +
                             ShapeToString(t->second.shape) + ", model " + model.name() +
                             " expects " + ShapeToString(p->shape()));
    }
    if (p->quantized()) {
      return FailedPrecondition(path + ": cannot load into int8-stored parameter '" + p->name() +
                                "'; load before choosing frozen storage");
    }
    const size_t n = t->second.data.size() / sizeof(float);
    for (size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, t->second.data.data() + i * sizeof(float), sizeof v);
      if (!std::isfinite(v)) {
        return InvalidArgument(path + ": tensor '" + p->name() + "' holds a non-finite value " +
                               "at index " + std::to_string(i) +
                               "; the checkpoint is from a diverged run and cannot be used");
      }
    }
  }
  if (file.tensors.size() != model.params().size()) {
    for (const auto& [name, t] : file.tensors) {
      if (model.FindParam(name) == nullptr) {
        return InvalidArgument(path + ": unexpected tensor '" + name + "' for model " +
                               model.name());
      }
    }
  }
  for (Parameter* p : model.params()) {
    const auto& t = file.tensors.at(p->name());
    std::memcpy(p->data(), t.data.data(), t.data.size());
  }
  return Status::Ok();
}

}  // namespace ftte
