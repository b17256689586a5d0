// Model checkpoints in the safetensors format, named and laid out like the PyTorch twin's
// state_dict, so `model.load_state_dict(safetensors.torch.load_file(path))` works.
#ifndef FTTE_CORE_CHECKPOINT_H_
#define FTTE_CORE_CHECKPOINT_H_

#include <map>
#include <string>

#include "ftte/core/model.h"
#include "ftte/core/safetensors.h"

namespace ftte {

// Writes every parameter as float32 (int8-stored ones dequantised), atomically. Metadata
// records the model name ("ftte.model", the zoo spec MakeModel rebuilds it from) plus
// `extra_metadata` (e.g. a language model's tokenizer, "ftte.tokenizer"); an extra key that
// collides with "ftte.model" or "format" is an InvalidArgument.
Status SaveCheckpoint(Model& model, const std::string& path,
                      const std::map<std::string, std::string>& extra_metadata = {});
// The same image in memory (what SaveCheckpoint writes), e.g. to embed in another file.
Result<std::string> SerializeCheckpoint(
    Model& model, const std::map<std::string, std::string>& extra_metadata = {});

// Loads values into `model`. Fails, leaving the model unchanged, when the file is unreadable
// or corrupt, was written for another model, or lacks / adds / reshapes a tensor; the message
// names the tensor and both shapes.
Status LoadCheckpoint(Model& model, const std::string& path);
// The same from a file already read (ReadSafetensors); `label` names it in errors.
Status LoadCheckpoint(Model& model, const SafetensorsFile& file, const std::string& label);

}  // namespace ftte

#endif  // FTTE_CORE_CHECKPOINT_H_
