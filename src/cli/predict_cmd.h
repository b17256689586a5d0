// `ftte predict`: the most likely next words after a text, from a language model checkpoint
// written by `ftte train --save` (weights, model spec and tokenizer in one file).
#ifndef FTTE_CLI_PREDICT_CMD_H_
#define FTTE_CLI_PREDICT_CMD_H_

#include <string>
#include <vector>

namespace ftte::cli {

// ftte predict --model CKPT [--top 3] [--threads 1] [--json] TEXT...
// Prints one line per suggestion, most likely first: rank, piece and probability. Returns the
// exit code: 0, 1 on an error (printed on stderr), 2 on a usage error.
int RunPredict(const std::vector<std::string>& args);

}  // namespace ftte::cli

#endif  // FTTE_CLI_PREDICT_CMD_H_
