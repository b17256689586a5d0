// `ftte simulate`: runs the methods of an experiment (a TOML file or the built-in default) in
// the device simulator and writes results.json, results.csv and accuracy.svg.
#ifndef FTTE_CLI_SIMULATE_CMD_H_
#define FTTE_CLI_SIMULATE_CMD_H_

#include <string>
#include <vector>

namespace ftte::cli {

// Returns the process exit code: 0 on success, 1 if a method or an output failed, 2 on bad flags
// or configuration.
int RunSimulate(const std::vector<std::string>& args);

}  // namespace ftte::cli

#endif  // FTTE_CLI_SIMULATE_CMD_H_
