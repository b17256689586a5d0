// `ftte serve` and `ftte client`: a real federation over gRPC (src/net).
#ifndef FTTE_CLI_NET_CMD_H_
#define FTTE_CLI_NET_CMD_H_

#include <string>
#include <vector>

namespace ftte::cli {

int RunServe(const std::vector<std::string>& args);
int RunClient(const std::vector<std::string>& args);

}  // namespace ftte::cli

#endif  // FTTE_CLI_NET_CMD_H_
