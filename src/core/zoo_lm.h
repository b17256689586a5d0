// The language models of the zoo and the parsing of model specs (private to core; the public
// entry point is MakeModel in model.h).
#ifndef FTTE_CORE_ZOO_LM_H_
#define FTTE_CORE_ZOO_LM_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ftte/core/model.h"

namespace ftte {

using ModelOptions = std::vector<std::pair<std::string, std::string>>;

// Splits "name:key=value,key=value" into the name and its options, in order. Fails on an empty
// or malformed option or a repeated key.
Status ParseModelSpec(const std::string& spec, std::string* name, ModelOptions* options);

// Whether `name` is one of the language models below.
bool IsLanguageModel(const std::string& name);

// Builds "lstm_lm", "tiny_gpt", "tiny_gpt_lora" or "gpt" with `options` (see MakeModel), its layers
// allocating from `tracker`; uninitialised. Fails naming an unknown key or a bad value.
Result<std::unique_ptr<Model>> MakeLanguageModel(const std::string& name,
                                                 const ModelOptions& options,
                                                 std::unique_ptr<MemoryTracker> tracker);

}  // namespace ftte

#endif  // FTTE_CORE_ZOO_LM_H_
