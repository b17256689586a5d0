// ftte_swarm: N devices in one process, each with its own gRPC connection, hammering a running
// `ftte serve`: enrol, then repeatedly get work and submit a valid update of the server's mask
// (small random values; no local training, so the server is what is measured). Each device
// downloads the whole model once before the clock starts (steady state is measured: later
// downloads carry only the rows changed since). Prints one JSON object: updates accepted per
// second, GetWork and Submit latency percentiles, bytes per update.
//
//   ftte_swarm --server 127.0.0.1:PORT --enroll-key KEY [--clients 1000] [--seconds 30]
//              [--think-ms 0] [--tls-ca CA.pem]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "channel.h"
#include "ftte/core/rng.h"
#include "ftte/fl/encoding.h"
#include "wire.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string server, enroll_key, tls_ca;
  int clients = 1000;
  double seconds = 30;
  int think_ms = 0;
};

struct Shared {
  std::mutex mu;
  std::vector<double> submit_ms, work_ms;
  std::atomic<int64_t> accepted{0}, refused{0}, errors{0}, enrolled{0}, bytes{0};
  std::atomic<bool> go{false}, stop{false};
  std::atomic<int64_t> last_version{0};
  std::counting_semaphore<> joining{32};
};

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

void RunDevice(const Options& o, int index, Shared* sh) {
  using namespace ftte;
  net::ChannelOptions co;
  co.address = o.server;
  co.root_ca = o.tls_ca;
  co.insecure = o.tls_ca.empty();
  auto channel = net::MakeChannel(co);
  if (!channel.ok()) {
    ++sh->errors;
    return;
  }
  auto stub = v1::Federation::NewStub(channel.value());
  v1::EnrollRequest er;
  er.set_schema_revision(net::kSchemaRevision);
  er.set_device_name("swarm-" + std::to_string(index));
  er.set_enroll_key(o.enroll_key);
  er.set_memory_budget_bytes(int64_t{1} << 30);
  v1::EnrollResponse enrolled;
  for (int attempt = 0;; ++attempt) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    const grpc::Status s = stub->Enroll(&ctx, er, &enrolled);
    if (s.ok()) break;
    if (attempt > 20) {
      ++sh->errors;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100 * (attempt + 1)));
  }
  const auto layout = net::LayoutFromProto(enrolled.layout());
  const std::string auth = "Bearer " + enrolled.token();
  // Warm-up, not measured: the first download of the whole model, at most 32 devices at a
  // time (devices join over time; simultaneous first downloads would each hold a copy of the
  // model in the server's send buffers).
  int64_t known = -1, round = 0;
  {
    sh->joining.acquire();
    v1::GetWorkRequest wr;
    wr.set_known_version(-1);
    v1::Work work;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", auth);
    if (stub->GetWork(&ctx, wr, &work).ok()) known = work.version();
    sh->joining.release();
  }
  ++sh->enrolled;
  Rng rng(static_cast<uint64_t>(index) + 1);
  std::vector<double> submit_ms, work_ms;
  while (!sh->go) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  while (!sh->stop) {
    v1::GetWorkRequest wr;
    wr.set_known_version(known);
    v1::Work work;
    grpc::ClientContext wctx;
    wctx.AddMetadata("authorization", auth);
    const auto t0 = Clock::now();
    grpc::Status s = stub->GetWork(&wctx, wr, &work);
    const auto t1 = Clock::now();
    if (!s.ok()) {
      ++sh->errors;
      continue;
    }
    work_ms.push_back(Ms(t0, t1));
    if (work.kind() != v1::Work::TRAIN) {
      if (work.kind() == v1::Work::DONE) break;
      std::this_thread::sleep_for(
          std::chrono::milliseconds(std::max<int64_t>(work.retry_after_ms(), 1)));
      continue;
    }
    known = work.version();
    auto mask = net::UnpackMaskBits(work.mask(), layout);
    if (!mask.ok()) {
      ++sh->errors;
      continue;
    }
    if (o.think_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(o.think_ms));
    fl::Update u;
    u.device = enrolled.device_id();
    u.base_version = work.version();
    u.num_samples = 32;
    u.loss = 1.0f;
    u.variance = 0.5 + rng.Uniform();
    u.update_id = ++round;
    u.delta.resize(static_cast<size_t>(mask->Numel(layout)));
    for (float& v : u.delta) v = static_cast<float>((rng.Uniform() - 0.5) * 1e-4);
    v1::SubmitRequest sr;
    sr.set_update_id(u.update_id);
    sr.set_update(fl::EncodeUpdate(u, *mask, layout, {!(*mask == fl::Mask::Full(layout)), false}));
    v1::SubmitResponse resp;
    grpc::ClientContext sctx;
    sctx.AddMetadata("authorization", auth);
    const auto t2 = Clock::now();
    s = stub->SubmitUpdate(&sctx, sr, &resp);
    const auto t3 = Clock::now();
    if (s.ok()) {
      submit_ms.push_back(Ms(t2, t3));
      ++sh->accepted;
      sh->bytes += static_cast<int64_t>(sr.update().size());
      sh->last_version = std::max<int64_t>(sh->last_version, resp.version());
    } else if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      ++sh->refused;  // stale: the model moved on while this device "trained"
    } else {
      ++sh->errors;
    }
  }
  std::lock_guard<std::mutex> lock(sh->mu);
  sh->submit_ms.insert(sh->submit_ms.end(), submit_ms.begin(), submit_ms.end());
  sh->work_ms.insert(sh->work_ms.end(), work_ms.begin(), work_ms.end());
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--server")
      o.server = v;
    else if (k == "--enroll-key")
      o.enroll_key = v;
    else if (k == "--tls-ca")
      o.tls_ca = v;
    else if (k == "--clients")
      o.clients = std::stoi(v);
    else if (k == "--seconds")
      o.seconds = std::stod(v);
    else if (k == "--think-ms")
      o.think_ms = std::stoi(v);
    else {
      std::fprintf(stderr, "ftte_swarm: unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  if (o.server.empty() || o.enroll_key.empty() || o.clients < 1) {
    std::fprintf(stderr,
                 "usage: ftte_swarm --server HOST:PORT --enroll-key KEY [--clients N] "
                 "[--seconds S] [--think-ms MS] [--tls-ca CA.pem]\n");
    return 2;
  }
  Shared sh;
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(o.clients));
  for (int i = 0; i < o.clients; ++i) threads.emplace_back(RunDevice, std::cref(o), i, &sh);
  const auto enrol_start = Clock::now();
  while (sh.enrolled + sh.errors < o.clients && Ms(enrol_start, Clock::now()) < 120000) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double enrol_s = Ms(enrol_start, Clock::now()) / 1000;
  std::fprintf(stderr, "ftte_swarm: %lld devices enrolled in %.1f s; running %.0f s\n",
               static_cast<long long>(sh.enrolled.load()), enrol_s, o.seconds);
  const int64_t v0 = sh.last_version;
  sh.go = true;
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  const int64_t accepted = sh.accepted, refused = sh.refused;
  const double elapsed = Ms(t0, Clock::now()) / 1000;
  sh.stop = true;
  for (std::thread& t : threads) t.join();
  std::printf(
      "{\"clients\": %d, \"enrolled\": %lld, \"enrol_s\": %.2f, \"seconds\": %.2f, "
      "\"accepted\": %lld, \"refused_stale\": %lld, \"errors\": %lld, "
      "\"updates_per_s\": %.1f, \"versions\": %lld, \"bytes_per_update\": %.0f, "
      "\"submit_ms_p50\": %.2f, \"submit_ms_p99\": %.2f, \"getwork_ms_p50\": %.2f, "
      "\"getwork_ms_p99\": %.2f}\n",
      o.clients, static_cast<long long>(sh.enrolled.load()), enrol_s, elapsed,
      static_cast<long long>(accepted), static_cast<long long>(refused),
      static_cast<long long>(sh.errors.load()), static_cast<double>(accepted) / elapsed,
      static_cast<long long>(sh.last_version - v0),
      accepted > 0 ? static_cast<double>(sh.bytes) / static_cast<double>(sh.accepted) : 0.0,
      Percentile(sh.submit_ms, 0.5), Percentile(sh.submit_ms, 0.99), Percentile(sh.work_ms, 0.5),
      Percentile(sh.work_ms, 0.99));
  return 0;
}
