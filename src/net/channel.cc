#include "channel.h"

#include <fstream>
#include <sstream>

namespace ftte::net {

Result<std::string> ReadWholeFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(what + " '" + path + "' cannot be opened; check the path");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (!in.good() && !in.eof()) return IoError(what + " '" + path + "': read failed");
  return ss.str();
}

Result<std::shared_ptr<grpc::Channel>> MakeChannel(const ChannelOptions& o) {
  if (o.address.empty()) return InvalidArgument("no server address; pass --server HOST:PORT");
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (o.insecure) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    if (!o.root_ca.empty()) {
      FTTE_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadWholeFile(o.root_ca, "TLS root certificate"));
    }
    if (o.client_cert.empty() != o.client_key.empty()) {
      return InvalidArgument("mutual TLS needs both a client certificate and its key");
    }
    if (!o.client_cert.empty()) {
      FTTE_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadWholeFile(o.client_cert, "client certificate"));
      FTTE_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadWholeFile(o.client_key, "client key"));
    }
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(o.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(o.max_message_bytes));
  // Reconnect quickly after a server restart instead of gRPC's default backoff of up to 120 s.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  return grpc::CreateCustomChannel(o.address, creds, args);
}

}  // namespace ftte::net
