#include "net_cmd.h"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <thread>

#include "flags.h"
#include "ftte/data/idx.h"
#include "ftte/data/partition.h"
#include "ftte/net/device.h"
#include "ftte/net/server.h"

namespace ftte::cli {

namespace {

constexpr char kServeUsage[] =
    "usage: ftte serve --config FILE.toml [--set section.key=value ...]\n"
    "\n"
    "Runs a federation: a strategy (ftte, fedbuff, fedasync, fedavg) behind a gRPC service\n"
    "with TLS, per-device tokens and update validation; evaluates on the held-out set and\n"
    "keeps its state in [server] state_dir so that a restart resumes where it stopped.\n"
    "See examples/deploy/serve.toml and docs/deploy.md.\n"
    "\n"
    "  --config FILE     the server's TOML configuration\n"
    "  --set k=v         override one key (e.g. --set strategy.buffer=5); repeatable\n"
    "  --linger S        seconds to keep answering DONE after the end (default 10;\n"
    "                    longer than a device's longest retry backoff)\n";

constexpr char kClientUsage[] =
    "usage: ftte client --server HOST:PORT --enroll-key KEY --memory-budget 64MiB\n"
    "                   [--data DIR] [--shard I/N] [--samples N] [--name NAME]\n"
    "                   [--tls-ca CA.pem] [--tls-cert C.pem --tls-key K.pem] [--insecure]\n"
    "                   [--max-updates N] [--seed S]\n"
    "\n"
    "One device: trains on its local data only, within its memory budget, and submits updates\n"
    "until the server says the federation is done.\n"
    "\n"
    "  --data DIR        IDX directory of the local training set (default: the system\n"
    "                    Fashion-MNIST); --shard I/N keeps the I-th of N IID shards (demos)\n"
    "  --samples N       keep at most N local samples\n"
    "  --enroll-key KEY  the enrolment secret (or --enroll-key-file F)\n"
    "  --tls-ca FILE     CA certificate the server's must chain to (default: system roots)\n"
    "  --insecure        plain text, for loopback demos only\n";

bool g_json_logs = false;  // [server] log_format = "json"

void LogLine(const char* who, const std::string& m) {
  if (g_json_logs) {
    const auto now = std::chrono::system_clock::now();
    const std::time_t t = std::chrono::system_clock::to_time_t(now);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
    std::tm utc{};
    gmtime_r(&t, &utc);
    char ts[40];
    std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &utc);
    char stamp[48];
    std::snprintf(stamp, sizeof stamp, "%s.%03dZ", ts, static_cast<int>(ms.count()));
    // dump() escapes control characters, quotes and invalid UTF-8 (replaced): one line each.
    const nlohmann::json line = {{"time", stamp}, {"who", who}, {"msg", m}};
    std::fprintf(stderr, "%s\n",
                 line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  const std::time_t t = std::time(nullptr);
  char ts[32];
  std::strftime(ts, sizeof ts, "%H:%M:%S", std::localtime(&t));
  std::fprintf(stderr, "%s %s: %s\n", ts, who, m.c_str());
}

volatile std::sig_atomic_t g_signal = 0;
void OnSignal(int sig) { g_signal = sig; }

int Fail(const char* cmd, const Status& s, int code) {
  std::fprintf(stderr, "ftte %s: %s\n", cmd, s.message().c_str());
  return code;
}

}  // namespace

int RunServe(const std::vector<std::string>& in) {
  std::vector<std::string> args = in;
  auto sets = TakeRepeated(&args, "set");
  if (!sets.ok()) return Fail("serve", sets.status(), 2);
  auto flags =
      Flags::Parse(args, {{"config", true}, {"set", true}, {"linger", true}, {"help", false}});
  if (!flags.ok()) return Fail("serve", flags.status(), 2);
  if (flags->Has("help")) {
    std::fputs(kServeUsage, stdout);
    return 0;
  }
  if (!flags->Has("config")) return Fail("serve", InvalidArgument("--config FILE is required"), 2);
  auto linger = flags->GetDouble("linger", 10);
  if (!linger.ok()) return Fail("serve", linger.status(), 2);
  auto config = net::LoadServeConfig(flags->Get("config", ""), sets.value());
  if (!config.ok()) return Fail("serve", config.status(), 2);
  g_json_logs = config->log_format == "json";
  auto inputs = net::LoadServeData(&config.value());
  if (!inputs.ok()) return Fail("serve", inputs.status(), 1);
  auto server = net::FederationServer::Start(
      config.value(), std::move(inputs->eval), [](const std::string& m) { LogLine("serve", m); },
      std::move(inputs->initial_weights));
  if (!server.ok()) return Fail("serve", server.status(), 1);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  net::FederationServer& srv = *server.value();
  while (!srv.finished() && g_signal == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (g_signal == 0) {
    // Done: keep answering DONE for a while so that devices learn it and exit cleanly.
    for (int i = 0; i < static_cast<int>(linger.value() * 10) && g_signal == 0 && !srv.drained();
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  } else {
    LogLine("serve", "signal " + std::to_string(g_signal) + ": writing a snapshot and stopping");
  }
  srv.Shutdown();
  return 0;
}

int RunClient(const std::vector<std::string>& args) {
  auto flags = Flags::Parse(args, {{"server", true},
                                   {"data", true},
                                   {"shard", true},
                                   {"samples", true},
                                   {"memory-budget", true},
                                   {"name", true},
                                   {"enroll-key", true},
                                   {"enroll-key-file", true},
                                   {"tls-ca", true},
                                   {"tls-cert", true},
                                   {"tls-key", true},
                                   {"insecure", false},
                                   {"max-updates", true},
                                   {"max-attempts", true},
                                   {"seed", true},
                                   {"quiet", false},
                                   {"help", false}});
  if (!flags.ok()) return Fail("client", flags.status(), 2);
  const Flags& f = flags.value();
  if (f.Has("help")) {
    std::fputs(kClientUsage, stdout);
    return 0;
  }
  net::DeviceOptions o;
  o.server = f.Get("server", "");
  o.root_ca = f.Get("tls-ca", "");
  o.client_cert = f.Get("tls-cert", "");
  o.client_key = f.Get("tls-key", "");
  o.insecure = f.Has("insecure");
  o.enroll_key = f.Get("enroll-key", "");
  if (f.Has("enroll-key-file")) {
    std::FILE* kf = std::fopen(f.Get("enroll-key-file", "").c_str(), "r");
    if (!kf) return Fail("client", NotFound("cannot open --enroll-key-file"), 2);
    char buf[512] = {0};
    if (std::fgets(buf, sizeof buf, kf)) o.enroll_key = buf;
    std::fclose(kf);
    while (!o.enroll_key.empty() && (o.enroll_key.back() == '\n' || o.enroll_key.back() == '\r')) {
      o.enroll_key.pop_back();
    }
  }
  if (o.server.empty()) return Fail("client", InvalidArgument("--server HOST:PORT is required"), 2);
  if (o.enroll_key.empty()) {
    return Fail("client", InvalidArgument("--enroll-key (or --enroll-key-file) is required"), 2);
  }
  auto budget = ParseBytes(f.Get("memory-budget", "64MiB"));
  if (!budget.ok())
    return Fail("client", InvalidArgument("--memory-budget: " + budget.status().message()), 2);
  o.memory_budget_bytes = budget.value();
  auto max_updates = f.GetInt("max-updates", 0, 0, int64_t{1} << 40);
  auto max_attempts = f.GetInt("max-attempts", 0, 0, 1 << 30);
  auto seed = f.GetInt("seed", 0, 0, int64_t{1} << 62);
  auto samples = f.GetInt("samples", 0, 0, int64_t{1} << 40);
  for (const auto* r : {&max_updates, &max_attempts, &seed, &samples}) {
    if (!r->ok()) return Fail("client", r->status(), 2);
  }
  o.max_updates = max_updates.value();
  o.max_attempts = static_cast<int>(max_attempts.value());
  o.seed = static_cast<uint64_t>(seed.value());
  if (!f.Has("quiet")) o.log = [](const std::string& m) { LogLine("client", m); };

  auto local = data::LoadFashionMnist(f.Get("data", data::kFashionMnistDir), true);
  if (!local.ok()) return Fail("client", local.status(), 1);
  data::ImageDataset ds = std::move(local).value();
  std::string name = f.Get("name", "");
  if (f.Has("shard")) {
    const std::string spec = f.Get("shard", "");
    long long i = -1, n = 0;
    char extra = 0;
    if (std::sscanf(spec.c_str(), "%lld/%lld%c", &i, &n, &extra) != 2 || n < 1 || i < 0 || i >= n) {
      return Fail("client", InvalidArgument("--shard '" + spec + "' must be I/N with 0 <= I < N"),
                  2);
    }
    auto parts = data::PartitionIid(ds.size, n, 0x5eed);
    if (!parts.ok()) return Fail("client", parts.status(), 2);
    ds = ds.Subset(parts.value()[static_cast<size_t>(i)]);
    if (name.empty()) name = "shard-" + std::to_string(i) + "-of-" + std::to_string(n);
  }
  if (samples.value() > 0) ds = ds.Head(samples.value());
  o.name = name.empty() ? "device" : name;
  auto device = net::Device::Create(o, std::move(ds));
  if (!device.ok()) return Fail("client", device.status(), 2);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  // Stop() takes a lock, which a signal handler must not: a watcher thread calls it.
  std::atomic<bool> running{true};
  std::thread watcher([&] {
    while (running && g_signal == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (g_signal != 0) device.value()->Stop();
  });
  Status s = device.value()->Run();
  running = false;
  watcher.join();
  const net::DeviceStats st = device.value()->stats();
  std::fprintf(stderr,
               "ftte client: %lld updates accepted (%lld duplicates), %lld refused, %lld retries; "
               "model version %lld; peak training memory %.2f MiB measured, %.2f MiB predicted, "
               "budget %.2f MiB\n",
               static_cast<long long>(st.accepted), static_cast<long long>(st.duplicates),
               static_cast<long long>(st.rejected), static_cast<long long>(st.retries),
               static_cast<long long>(st.version), st.measured_peak_bytes / 1048576.0,
               st.predicted_peak_bytes / 1048576.0, o.memory_budget_bytes / 1048576.0);
  if (!s.ok()) return Fail("client", s, 1);
  return 0;
}

}  // namespace ftte::cli
