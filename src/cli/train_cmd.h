// `ftte train` and `ftte bench train`.
#ifndef FTTE_CLI_TRAIN_CMD_H_
#define FTTE_CLI_TRAIN_CMD_H_

#include <string>
#include <vector>

namespace ftte::cli {

int RunTrain(const std::vector<std::string>& args);
int RunBenchTrain(const std::vector<std::string>& args);

}  // namespace ftte::cli

#endif  // FTTE_CLI_TRAIN_CMD_H_
