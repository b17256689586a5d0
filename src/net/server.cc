// The gRPC adapter over the Coordinator, and the server's lifecycle.
#include "ftte/net/server.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <thread>

#include "channel.h"
#include "coordinator.h"
#include "wire.h"

namespace ftte::net {

namespace {

class Service final : public v1::Federation::Service {
 public:
  explicit Service(Coordinator* c) : c_(c) {}

  grpc::Status Enroll(grpc::ServerContext*, const v1::EnrollRequest* req,
                      v1::EnrollResponse* resp) override {
    auto r = c_->Enroll(*req);
    if (!r.ok()) return ToGrpc(r.status());
    *resp = std::move(r).value();
    return grpc::Status::OK;
  }
  grpc::Status GetWork(grpc::ServerContext* ctx, const v1::GetWorkRequest* req,
                       v1::Work* resp) override {
    auto device = c_->Authenticate(BearerToken(*ctx));
    if (!device.ok()) return ToGrpc(device.status());
    auto r = c_->GetWork(*device, *req);
    if (!r.ok()) return ToGrpc(r.status());
    *resp = std::move(r).value();
    return grpc::Status::OK;
  }
  grpc::Status SubmitUpdate(grpc::ServerContext* ctx, const v1::SubmitRequest* req,
                            v1::SubmitResponse* resp) override {
    auto device = c_->Authenticate(BearerToken(*ctx));
    if (!device.ok()) return ToGrpc(device.status());
    auto r = c_->Submit(*device, *req);
    if (!r.ok()) return ToGrpc(r.status());
    *resp = std::move(r).value();
    return grpc::Status::OK;
  }
  grpc::Status SecureStep(grpc::ServerContext* ctx, const v1::SecureStepRequest* req,
                          v1::SecureStepResponse* resp) override {
    auto device = c_->Authenticate(BearerToken(*ctx));
    if (!device.ok()) return ToGrpc(device.status());
    auto r = c_->SecureStep(*device, *req);
    if (!r.ok()) return ToGrpc(r.status());
    *resp = std::move(r).value();
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext* ctx, const v1::HeartbeatRequest*,
                         v1::HeartbeatResponse* resp) override {
    auto device = c_->Authenticate(BearerToken(*ctx));
    if (!device.ok()) return ToGrpc(device.status());
    *resp = c_->Heartbeat(*device);
    return grpc::Status::OK;
  }
  grpc::Status Status(grpc::ServerContext* ctx, const v1::StatusRequest*,
                      v1::StatusResponse* resp) override {
    if (ftte::Status s = c_->AuthenticateAdmin(BearerToken(*ctx)); !s.ok()) return ToGrpc(s);
    *resp = c_->GetStatus();
    return grpc::Status::OK;
  }

 private:
  Coordinator* c_;
};

}  // namespace

struct FederationServer::Impl {
  std::unique_ptr<Coordinator> coordinator;
  std::unique_ptr<Service> service;
  std::unique_ptr<grpc::Server> server;
  std::function<void(const std::string&)> log;
  int port = 0;
  std::thread ticker;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  bool shut_down = false;
};

Result<std::unique_ptr<FederationServer>> FederationServer::Start(
    const ServeConfig& config, data::ImageDataset eval, std::function<void(const std::string&)> log,
    std::vector<float> initial_weights) {
  if (!log) log = [](const std::string&) {};
  auto impl = std::make_unique<Impl>();
  impl->log = log;
  const auto t0 = std::chrono::steady_clock::now();
  Coordinator::Clock clock = [t0] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  FTTE_ASSIGN_OR_RETURN(impl->coordinator, Coordinator::Create(config, std::move(eval), clock, log,
                                                               std::move(initial_weights)));

  std::shared_ptr<grpc::ServerCredentials> creds;
  if (config.insecure) {
    creds = grpc::InsecureServerCredentials();
  } else {
    if (config.tls_cert.empty() || config.tls_key.empty()) {
      return InvalidArgument(
          "TLS needs [server] tls_cert and tls_key (PEM files); set "
          "insecure = true only for loopback tests");
    }
    grpc::SslServerCredentialsOptions ssl(
        config.tls_client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                     : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    FTTE_ASSIGN_OR_RETURN(pair.cert_chain, ReadWholeFile(config.tls_cert, "TLS certificate"));
    FTTE_ASSIGN_OR_RETURN(pair.private_key, ReadWholeFile(config.tls_key, "TLS key"));
    ssl.pem_key_cert_pairs.push_back(pair);
    if (!config.tls_client_ca.empty()) {
      FTTE_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                            ReadWholeFile(config.tls_client_ca, "client CA certificate"));
    }
    creds = grpc::SslServerCredentials(ssl);
  }
  impl->service = std::make_unique<Service>(impl->coordinator.get());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.address, creds, &impl->port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(config.max_message_bytes));
  builder.RegisterService(impl->service.get());
  impl->server = builder.BuildAndStart();
  if (!impl->server || impl->port == 0) {
    return Unavailable("cannot listen on " + config.address +
                       "; is the port in use or the address not local?");
  }
  log("listening on " + config.address.substr(0, config.address.rfind(':')) + ":" +
      std::to_string(impl->port) + (config.insecure ? " (plain text)" : " (TLS)") +
      (config.tls_client_ca.empty() ? "" : ", client certificates required"));
  if (!config.port_file.empty()) {
    const std::string tmp = config.port_file + ".tmp";
    std::ofstream(tmp) << impl->port << "\n";
    std::rename(tmp.c_str(), config.port_file.c_str());
  }
  Impl* p = impl.get();
  impl->ticker = std::thread([p] {
    std::unique_lock<std::mutex> lock(p->mu);
    while (!p->stopping) {
      lock.unlock();
      Status s = p->coordinator->Tick();
      if (!s.ok()) p->log("error: " + s.ToString());
      const bool done = p->coordinator->done();
      lock.lock();
      if (done) {
        p->stopping = true;
        p->cv.notify_all();
        break;
      }
      p->cv.wait_for(lock, std::chrono::milliseconds(100), [p] { return p->stopping; });
    }
  });
  return std::unique_ptr<FederationServer>(new FederationServer(std::move(impl)));
}

FederationServer::FederationServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FederationServer::~FederationServer() { Shutdown(); }

int FederationServer::port() const { return impl_->port; }

Coordinator& FederationServer::coordinator() { return *impl_->coordinator; }

bool FederationServer::finished() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stopping;
}

bool FederationServer::drained() const { return impl_->coordinator->everyone_told_done(); }

void FederationServer::Wait() {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->cv.wait(lock, [this] { return impl_->stopping; });
}

void FederationServer::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->shut_down) return;
    impl_->shut_down = true;
    impl_->stopping = true;
    impl_->cv.notify_all();
  }
  if (impl_->ticker.joinable()) impl_->ticker.join();
  // Devices still asking are told the federation is done for a moment, then cut off.
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  Status s = impl_->coordinator->Checkpoint();
  if (!s.ok()) impl_->log("error: final snapshot: " + s.ToString());
}

}  // namespace ftte::net
