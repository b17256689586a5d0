// How a device connects: a gRPC channel over TLS (optionally with a client certificate for
// mutual TLS) or, only when asked for explicitly, plain text.
#ifndef FTTE_NET_CHANNEL_H_
#define FTTE_NET_CHANNEL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "ftte/core/status.h"

namespace ftte::net {

struct ChannelOptions {
  std::string address;      // "host:port"
  std::string root_ca;      // PEM file the server's certificate must chain to; "" = system
  std::string client_cert;  // PEM files for mutual TLS; both or neither
  std::string client_key;
  bool insecure = false;  // plain text (loopback tests and demos only)
  int64_t max_message_bytes = 64 << 20;
};

// Fails if a file cannot be read or only one of client_cert/client_key is given.
Result<std::shared_ptr<grpc::Channel>> MakeChannel(const ChannelOptions& options);

// The whole file, or an error naming it (used for PEM files and secrets).
Result<std::string> ReadWholeFile(const std::string& path, const std::string& what);

}  // namespace ftte::net

#endif  // FTTE_NET_CHANNEL_H_
