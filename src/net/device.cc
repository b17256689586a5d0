#include "ftte/net/device.h"

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <random>
#include <thread>

#include "channel.h"
#include "ftte/core/rng.h"
#include "ftte/fl/changed_rows.h"
#include "ftte/fl/client.h"
#include "ftte/fl/encoding.h"
#include "ftte/fl/privacy.h"
#include "ftte/fl/secagg.h"
#include "secure_client.h"
#include "wire.h"

namespace ftte::net {

struct Device::Impl {
  DeviceOptions o;
  data::ImageDataset data;
  std::vector<int64_t> indices;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Federation::Stub> stub;
  std::unique_ptr<fl::ClientTrainer> trainer;
  Rng rng{0};

  // Enrolment.
  std::string token;
  std::string last_token;  // the latest token the server gave, kept to re-enrol this name
  int64_t device_id = -1;
  std::string model;
  std::vector<fl::ParamLayout> layout;
  // The model as the device holds it.
  std::vector<float> weights;
  int64_t version = -1;

  std::atomic<bool> stop{false};
  std::mutex mu;  // guards stats and the wake-up
  std::condition_variable wake;
  DeviceStats stats;

  void Log(const std::string& m) const {
    if (o.log) o.log(o.name + ": " + m);
  }
  // Sleeps up to `seconds`, returning early on Stop().
  void Sleep(double seconds) {
    std::unique_lock<std::mutex> lock(mu);
    wake.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return stop.load(); });
  }
  void Count(int64_t DeviceStats::*field) {
    std::lock_guard<std::mutex> lock(mu);
    ++(stats.*field);
  }

  std::unique_ptr<grpc::ClientContext> Context(bool auth) const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(o.rpc_timeout_s * 1000)));
    if (auth) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  }

  // Runs `call` until it succeeds, fails for good, or Stop(). Transient failures are retried
  // with exponential backoff and full jitter.
  template <typename Call>
  grpc::Status Retry(const char* what, Call&& call) {
    double backoff = o.initial_backoff_s;
    for (int attempt = 1;; ++attempt) {
      grpc::Status s = call();
      if (s.ok() || !IsTransient(s) || stop) return s;
      if (o.max_attempts > 0 && attempt >= o.max_attempts) return s;
      Count(&DeviceStats::retries);
      if (attempt == 1 || attempt % 10 == 0) {
        Log(std::string(what) + " failed (" + s.error_message() + "); retrying");
      }
      Sleep(backoff * rng.Uniform());
      backoff = std::min(o.max_backoff_s, backoff * 2);
    }
  }

  Status Enroll() {
    v1::EnrollRequest req;
    req.set_schema_revision(kSchemaRevision);
    req.set_device_name(o.name);
    req.set_enroll_key(o.enroll_key);
    req.set_memory_budget_bytes(o.memory_budget_bytes);
    req.set_token(last_token);  // proves this name is ours when re-enrolling
    req.mutable_capabilities()->set_threads(o.threads);
    req.mutable_capabilities()->set_platform("ftte-device");
    v1::EnrollResponse resp;
    grpc::Status s = Retry("enrol", [&] {
      auto ctx = Context(false);
      return stub->Enroll(ctx.get(), req, &resp);
    });
    if (!s.ok()) {
      Status st = FromGrpc(s, "enrol at " + o.server);
      if (st.code() != StatusCode::kUnavailable) return st;
      return Unavailable(st.message() + "; is a server listening there, and do its certificate, " +
                         "--tls-ca (or --insecure on both sides) and, for mutual TLS, the " +
                         "client certificate match?");
    }
    if (!trainer || model != resp.model()) {
      FTTE_ASSIGN_OR_RETURN(trainer, fl::ClientTrainer::Create(resp.model()));
    }
    std::vector<fl::ParamLayout> mine = fl::LayoutOf(trainer->model());
    std::vector<fl::ParamLayout> theirs = LayoutFromProto(resp.layout());
    bool same = mine.size() == theirs.size();
    for (size_t i = 0; same && i < mine.size(); ++i) {
      same = mine[i].name == theirs[i].name && mine[i].rows == theirs[i].rows &&
             mine[i].row_size == theirs[i].row_size;
    }
    if (!same) {
      return FailedPrecondition("the server's model '" + resp.model() +
                                "' has another parameter layout than this build's; update the "
                                "device software");
    }
    const auto sample = trainer->model().sample_shape();
    int64_t numel = 1;
    for (int64_t d : sample) numel *= d;
    if (numel != data.sample_numel()) {
      return FailedPrecondition("local samples have " + std::to_string(data.sample_numel()) +
                                " values; model '" + resp.model() + "' takes " +
                                std::to_string(numel));
    }
    token = resp.token();
    last_token = token;
    device_id = resp.device_id();
    model = resp.model();
    layout = std::move(theirs);
    weights.assign(static_cast<size_t>(fl::TotalNumel(layout)), 0.0f);
    version = -1;
    {
      std::lock_guard<std::mutex> lock(mu);
      ++stats.enrolments;
      stats.predicted_peak_bytes = resp.predicted_peak_bytes();
      stats.version = -1;
    }
    if (!resp.eligible())
      return FailedPrecondition("the server will not use this device: " + resp.reason());
    Log("enrolled as device " + std::to_string(device_id) + " (model " + model + ", job needs " +
        std::to_string(resp.predicted_peak_bytes() >> 10) + " KiB)");
    return Status::Ok();
  }

  // Applies Work.values and Work.mask; returns the mask to train.
  Result<fl::Mask> Sync(const v1::Work& work) {
    FTTE_ASSIGN_OR_RETURN(fl::DecodedUpdate values, fl::DecodeUpdate(work.values(), layout));
    fl::SetMasked(values.update.delta, values.mask, layout, &weights);
    version = work.version();
    {
      std::lock_guard<std::mutex> lock(mu);
      stats.version = version;
    }
    return UnpackMaskBits(work.mask(), layout);
  }

  // Secure aggregation: hands `u` (over `mask`) in through its cohort's rounds, polling
  // between them. True once the server says its cohort's sum holds it; false when it was left
  // out or refused (the caller fetches new work).
  Result<bool> SecureHandIn(const fl::Update& u, const fl::Mask& mask) {
    net::SecureHandIn hand_in(u, mask, layout, fl::secagg::RandomSecret());
    while (!stop) {
      v1::SecureStepResponse resp;
      grpc::Status s = Retry("secure step", [&] {
        auto ctx = Context(true);
        return stub->SecureStep(ctx.get(), hand_in.request(), &resp);
      });
      if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
        return Unauthenticated("the server does not know this device: " + s.error_message());
      }
      if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
          s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
        Count(&DeviceStats::rejected);
        Log("secure hand-in refused: " + s.error_message());
        return false;
      }
      if (!s.ok()) return FromGrpc(s, "secure step at " + o.server);
      FTTE_ASSIGN_OR_RETURN(const net::SecureHandIn::State state, hand_in.OnReply(resp));
      if (state == net::SecureHandIn::State::kAccepted) {
        std::lock_guard<std::mutex> lock(mu);
        ++stats.accepted;
        return true;
      }
      if (state == net::SecureHandIn::State::kLeftOut) {
        Count(&DeviceStats::rejected);
        Log("update left out: " + hand_in.message());
        return false;
      }
      if (hand_in.wait_s() > 0) Sleep(hand_in.wait_s());
    }
    return false;
  }

  Status Run() {
    std::random_device rd;
    const uint64_t id_salt = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    int64_t round = 0;
    while (!stop) {
      if (token.empty()) FTTE_RETURN_IF_ERROR(Enroll());
      if (stop) break;
      v1::GetWorkRequest req;
      req.set_known_version(version);
      req.set_final_values(o.final_values);
      v1::Work work;
      grpc::Status s = Retry("get work", [&] {
        auto ctx = Context(true);
        return stub->GetWork(ctx.get(), req, &work);
      });
      if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
        Log("the server does not know this device (" + s.error_message() + "); enrolling again");
        token.clear();
        continue;
      }
      if (!s.ok()) return FromGrpc(s, "get work from " + o.server);
      if (work.kind() == v1::Work::DONE) {
        if (!work.values().empty()) {  // the final model (final_values)
          auto values = fl::DecodeUpdate(work.values(), layout);
          if (!values.ok()) {
            return FailedPrecondition("the server sent a bad final model: " +
                                      values.status().message());
          }
          fl::SetMasked(values->update.delta, values->mask, layout, &weights);
          version = work.version();
          std::lock_guard<std::mutex> lock(mu);
          stats.version = version;
        }
        Log("the server says the federation is done");
        return Status::Ok();
      }
      if (work.kind() == v1::Work::INELIGIBLE) {
        return FailedPrecondition("the server will not use this device: " + work.message());
      }
      if (work.kind() == v1::Work::WAIT) {
        Sleep(std::max<int64_t>(work.retry_after_ms(), 10) / 1000.0);
        continue;
      }
      auto mask = Sync(work);
      if (!mask.ok())
        return FailedPrecondition("the server sent bad work: " + mask.status().message());
      FTTE_ASSIGN_OR_RETURN(fl::ClientConfig config,
                            HyperparametersFromProto(work.hyperparameters()));
      const int64_t need = trainer->PredictPeak(*mask, config);
      if (need > o.memory_budget_bytes) {
        return FailedPrecondition("this job needs " + std::to_string(need >> 10) +
                                  " KiB, above the device's budget of " +
                                  std::to_string(o.memory_budget_bytes >> 10) + " KiB");
      }
      const uint64_t seed = Rng(o.seed).Fork(static_cast<uint64_t>(round)).Next();
      fl::ClientResult r;
      {
        // Long jobs keep their training slot: a heartbeat every heartbeat_s while training.
        std::atomic<bool> trained{false};
        std::thread beat([&] {
          std::unique_lock<std::mutex> lock(mu);
          while (!wake.wait_for(lock, std::chrono::duration<double>(o.heartbeat_s),
                                [&] { return trained.load() || stop.load(); })) {
            lock.unlock();
            auto ctx = Context(true);
            v1::HeartbeatResponse hb;
            stub->Heartbeat(ctx.get(), v1::HeartbeatRequest(), &hb);  // best effort
            lock.lock();
          }
        });
        r = trainer->Train(weights, *mask, data, indices, config, seed);
        {
          std::lock_guard<std::mutex> lock(mu);
          trained = true;
        }
        wake.notify_all();
        beat.join();
      }
      if (config.dp_clip > 0) {  // distributed DP: clipped and noised before it leaves
        fl::PrivatizeUpdate(&r.update.delta, config.dp_clip, config.dp_noise_stddev,
                            fl::RandomNoiseKey());
      }
      r.update.device = device_id;
      r.update.base_version = version;
      r.update.update_id = static_cast<int64_t>(
          (id_salt + static_cast<uint64_t>(round) * 0x9e3779b97f4a7c15ULL) >> 1);
      ++round;
      {
        std::lock_guard<std::mutex> lock(mu);
        stats.measured_peak_bytes = std::max(stats.measured_peak_bytes, r.peak_bytes);
        stats.last_loss = r.update.loss;
      }
      if (work.secure_aggregation()) {
        auto handed = SecureHandIn(r.update, *mask);
        if (!handed.ok()) {
          if (handed.status().code() == StatusCode::kUnauthenticated) {
            token.clear();
            continue;
          }
          return handed.status();
        }
        if (*handed && o.max_updates > 0 && stats.accepted >= o.max_updates) return Status::Ok();
        continue;
      }
      fl::EncodeOptions eo;
      eo.int8 = work.hyperparameters().int8_upload();
      v1::SubmitRequest sub;
      sub.set_update_id(r.update.update_id);
      // Only the rows that changed (an embedding changes only the rows of tokens seen here).
      sub.set_update(fl::EncodeChangedRows(r.update, *mask, layout, eo));
      sub.set_peak_bytes(r.peak_bytes);
      sub.set_steps(r.steps);
      v1::SubmitResponse resp;
      s = Retry("submit", [&] {
        auto ctx = Context(true);
        return stub->SubmitUpdate(ctx.get(), sub, &resp);
      });
      if (s.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        ++stats.accepted;
        if (resp.outcome() == v1::SubmitResponse::DUPLICATE) ++stats.duplicates;
        if (o.max_updates > 0 && stats.accepted >= o.max_updates) return Status::Ok();
        continue;
      }
      if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
        token.clear();
        continue;
      }
      if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
          s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
        // Stale (the model moved on) or refused: log it and fetch fresh work.
        Count(&DeviceStats::rejected);
        Log("update refused: " + s.error_message());
        continue;
      }
      return FromGrpc(s, "submit to " + o.server);
    }
    return Status::Ok();
  }
};

Result<std::unique_ptr<Device>> Device::Create(DeviceOptions options, data::ImageDataset data) {
  if (options.name.empty()) return InvalidArgument("the device needs a name (--name)");
  if (options.memory_budget_bytes <= 0) return InvalidArgument("the memory budget must be > 0");
  if (data.size == 0) return InvalidArgument("the device has no training samples");
  if (options.threads < 1) return InvalidArgument("threads must be >= 1");
  auto impl = std::make_unique<Impl>();
  ChannelOptions co;
  co.address = options.server;
  co.root_ca = options.root_ca;
  co.client_cert = options.client_cert;
  co.client_key = options.client_key;
  co.insecure = options.insecure;
  FTTE_ASSIGN_OR_RETURN(impl->channel, MakeChannel(co));
  impl->stub = v1::Federation::NewStub(impl->channel);
  impl->rng = Rng(options.seed).Fork(0xbac0ff);
  impl->indices.resize(static_cast<size_t>(data.size));
  for (int64_t i = 0; i < data.size; ++i) impl->indices[static_cast<size_t>(i)] = i;
  impl->o = std::move(options);
  impl->data = std::move(data);
  return std::unique_ptr<Device>(new Device(std::move(impl)));
}

Device::Device(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Device::~Device() = default;

Status Device::Run() { return impl_->Run(); }

void Device::Stop() {
  impl_->stop = true;
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->wake.notify_all();
}

DeviceStats Device::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}

DeviceModel Device::model() const { return {impl_->model, impl_->version, impl_->weights}; }

}  // namespace ftte::net
