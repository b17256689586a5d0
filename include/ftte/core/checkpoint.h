// Model checkpoints in the safetensors format, named and laid out like the PyTorch twin's
// state_dict, so `model.load_state_dict(safetensors.torch.load_file(path))` works.
#ifndef FTTE_CORE_CHECKPOINT_H_
#define FTTE_CORE_CHECKPOINT_H_

#include <string>

#include "ftte/core/model.h"

namespace ftte {

// Writes every parameter as float32 (int8-stored ones dequantised), atomically. Metadata
// records the model name ("ftte.model").
Status SaveCheckpoint(Model& model, const std::string& path);

// Loads values into `model`. Fails, leaving the model unchanged, when the file is unreadable
// or corrupt, was written for another model, or lacks / adds / reshapes a tensor; the message
// names the tensor and both shapes.
Status LoadCheckpoint(Model& model, const std::string& path);

}  // namespace ftte

#endif  // FTTE_CORE_CHECKPOINT_H_
