// `ftte train` for language models: next-word (or next-character) prediction on the King James
// Bible or a directory of text files (one per user), reporting held-out top-1 and top-3
// accuracy and perplexity, and saving the weights with the model spec and the tokenizer.
#ifndef FTTE_CLI_LM_TRAIN_CMD_H_
#define FTTE_CLI_LM_TRAIN_CMD_H_

#include <map>
#include <string>

#include "flags.h"

namespace ftte::cli {

// The flags only text training takes (name -> takes a value): tokenizer, vocab, context,
// holdout, test-limit.
std::map<std::string, bool> TextTrainFlags();

// Runs `ftte train` for a language model spec in --model (flags already parsed: the common
// training flags, data, epochs, save, limit and TextTrainFlags()). Returns the exit code:
// 0, or 1 after printing the error on stderr.
int RunTrainText(const Flags& f);

}  // namespace ftte::cli

#endif  // FTTE_CLI_LM_TRAIN_CMD_H_
