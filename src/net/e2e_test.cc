// End to end on loopback: the real `ftte serve` and `ftte client` processes (and the C API
// example), over gRPC with TLS, including kill -9 of the server in the middle of a run.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "channel.h"
#include "ftte/core/model.h"
#include "ftte/data/lm_model.h"
#include "ftte/fl/update.h"
#include "keyboard_state.h"
#include "state.pb.h"
#include "wire.h"

namespace ftte::net {
namespace {

constexpr char kFmnist[] = "/usr/share/datasets/fashion-mnist";

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Starts `binary args...` with stdout and stderr in `log` (and stdin from `input`, if given).
pid_t Spawn(const std::string& binary, const std::vector<std::string>& args, const std::string& log,
            const std::string& input = "") {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    if (!input.empty()) ::dup2(::open(input.c_str(), O_RDONLY), 0);
    std::vector<char*> argv{const_cast<char*>(binary.c_str())};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

// The exit code, or -1 after killing a process that outlived `seconds`.
int Wait(pid_t pid, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

bool WaitFor(const std::function<bool()>& cond, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

class E2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(std::string(kFmnist) + "/train-images-idx3-ubyte.gz")) {
      GTEST_SKIP() << "Fashion-MNIST is not installed (scripts/setup.sh installs it)";
    }
    dir_ = ::testing::TempDir() + "ftte_e2e_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    for (pid_t p : pids_) {
      ::kill(p, SIGKILL);
      ::waitpid(p, nullptr, WNOHANG);
    }
  }
  // A server config: mlp, FTTE under a 2 MiB budget, small jobs, `extra` lines appended.
  std::string WriteConfig(const std::string& extra) {
    const std::string path = dir_ + "/serve.toml";
    // Port 0: the server picks a free port and writes it to port_file, so no other test (or
    // outgoing connection) can take it between our choosing it and the server binding it.
    std::ofstream(path) << "[server]\naddress = \"127.0.0.1:0\"\nport_file = \"" << dir_
                        << "/port\"\nstate_dir = \"" << dir_ << "/state\"\nsnapshot_every_s = 1\n"
                        << extra << "\n[auth]\nenroll_key = \"k3y\"\n"
                        << "[model]\nname = \"mlp\"\nmask = \"budget\"\nbudget = \"2MiB\"\n"
                        << "[strategy]\nalgorithm = \"ftte\"\nconcurrency = 3\nbuffer = 3\n"
                        << "[client]\nlocal_steps = 10\nbatch = 32\nlr = 0.05\n"
                        << "[eval]\ndata = \"" << kFmnist << "\"\nsamples = 1000\nevery = 3\n";
    return path;
  }
  // Starts the server and waits until it listens. The first start picks the port (port_); a
  // restart binds the same one, since the clients keep retrying it.
  pid_t Serve(const std::string& config, const std::vector<std::string>& sets = {}) {
    std::vector<std::string> args{"serve", "--config", config, "--linger", "8"};
    for (const std::string& s : sets) args.insert(args.end(), {"--set", s});
    if (port_ != 0)
      args.insert(args.end(), {"--set", "server.address=127.0.0.1:" + std::to_string(port_)});
    const std::string port_file = dir_ + "/port";
    std::filesystem::remove(port_file);
    const pid_t p = Spawn(FTTE_BINARY, args, dir_ + "/server.log");
    pids_.push_back(p);
    EXPECT_TRUE(WaitFor([&] { return std::filesystem::exists(port_file); }, 60))
        << Slurp(dir_ + "/server.log");
    port_ = std::atoi(Slurp(port_file).c_str());
    return p;
  }
  pid_t Client(int shard, const std::vector<std::string>& extra) {
    std::vector<std::string> args{"client",       "--server", "localhost:" + std::to_string(port_),
                                  "--enroll-key", "k3y",      "--memory-budget",
                                  "8MiB",         "--shard",  std::to_string(shard) + "/3",
                                  "--samples",    "1500"};
    args.insert(args.end(), extra.begin(), extra.end());
    const pid_t p = Spawn(FTTE_BINARY, args, Log(shard));
    pids_.push_back(p);
    return p;
  }
  std::string Log(int shard) const { return dir_ + "/client" + std::to_string(shard) + ".log"; }
  // Lines of the server's log so far that contain `what`.
  int64_t ServerLines(const std::string& what) const {
    const std::string log = Slurp(dir_ + "/server.log");
    int64_t n = 0;
    for (size_t at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) ++n;
    return n;
  }
  // kill -9 of the server, and a fresh one on the same state.
  pid_t KillAndRestart(pid_t server, const std::string& config,
                       const std::vector<std::string>& sets) {
    ::kill(server, SIGKILL);
    ::waitpid(server, nullptr, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    return Serve(config, sets);
  }
  // The final state holds exactly the updates the three clients saw acknowledged (first time or
  // as a duplicate); returns the snapshot and the clients' retries.
  state::Snapshot ExpectAcknowledgedStored(int64_t* retries = nullptr) {
    int64_t acknowledged = 0;
    for (int i = 0; i < 3; ++i) {
      const std::string c = Slurp(Log(i));
      const size_t at = c.find("ftte client: ");
      EXPECT_NE(at, std::string::npos) << c;
      if (at == std::string::npos) continue;
      long long accepted = 0, duplicates = 0, refused = 0, tries = 0;
      EXPECT_EQ(std::sscanf(c.c_str() + at,
                            "ftte client: %lld updates accepted (%lld duplicates), %lld refused, "
                            "%lld retries",
                            &accepted, &duplicates, &refused, &tries),
                4)
          << c;
      acknowledged += accepted;
      if (retries) *retries += tries;
    }
    state::Snapshot snap;
    std::ifstream in(dir_ + "/state/snapshot.pb", std::ios::binary);
    EXPECT_TRUE(snap.ParseFromIstream(&in));
    int64_t stored = 0;
    for (const state::Device& d : snap.devices()) stored += d.accepted_count();
    EXPECT_EQ(stored, acknowledged);
    return snap;
  }

  std::string dir_;
  int port_ = 0;
  std::vector<pid_t> pids_;
};

TEST_F(E2eTest, ServerAndThreeClientProcessesTrainPastTheTarget) {
  const std::string config = WriteConfig("insecure = true");
  const pid_t server = Serve(config, {"stop.target_accuracy=0.65"});
  std::vector<pid_t> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(Client(i, {"--insecure"}));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Wait(clients[i], 240), 0) << Slurp(Log(i));
  EXPECT_EQ(Wait(server, 60), 0);
  const std::string log = Slurp(dir_ + "/server.log");
  EXPECT_NE(log.find("target accuracy reached"), std::string::npos) << log;
  // Each client kept within its budget and the measured peak equals the plan.
  const std::string c0 = Slurp(Log(0));
  const size_t at = c0.find("peak training memory ");
  ASSERT_NE(at, std::string::npos) << c0;
  double measured = 0, predicted = 0;
  ASSERT_EQ(std::sscanf(c0.c_str() + at, "peak training memory %lf MiB measured, %lf MiB predicted",
                        &measured, &predicted),
            2)
      << c0;
  EXPECT_EQ(measured, predicted);
  EXPECT_LE(measured, 8.0);
}

// Distributed differential privacy across real processes: the server tells the clients their
// clip and noise share, each client clips and noises its own update (a fresh random key per job)
// before it leaves, and the server takes every one and reports the epsilon. The clip is tiny
// (1e-4), so an update the client did not clip (norm ~0.1 and more) would be refused as longer
// than clip + noise allow.
TEST_F(E2eTest, DistributedPrivacyClientsNoiseTheirOwnUpdates) {
  const std::string config = WriteConfig("insecure = true");
  const pid_t server =
      Serve(config, {"stop.max_versions=3", "privacy.clip=1e-4", "privacy.noise_multiplier=0.5",
                     "privacy.delta=1e-3", "privacy.mode=distributed"});
  std::vector<pid_t> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(Client(i, {"--insecure"}));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Wait(clients[i], 240), 0) << Slurp(Log(i));
  EXPECT_EQ(Wait(server, 60), 0);
  const std::string log = Slurp(dir_ + "/server.log");
  EXPECT_NE(log.find("privacy epsilon"), std::string::npos) << log;
  EXPECT_EQ(log.find("rejected an update"), std::string::npos) << log;
}

TEST_F(E2eTest, TlsMutualTlsAndTokensAreEnforced) {
  ASSERT_EQ(std::system(
                ("\"" FTTE_SOURCE_DIR "/scripts/make_certs.sh\" " + dir_ + " 2>/dev/null").c_str()),
            0);
  const std::string config =
      WriteConfig("tls_cert = \"" + dir_ + "/server.pem\"\ntls_key = \"" + dir_ +
                  "/server.key\"\ntls_client_ca = \"" + dir_ + "/ca.pem\"");
  Serve(config);
  const std::vector<std::string> ca{"--tls-ca", dir_ + "/ca.pem", "--max-attempts", "3"};
  // No client certificate: the handshake fails.
  std::vector<std::string> no_cert = ca;
  EXPECT_EQ(Wait(Client(0, no_cert), 60), 1) << Slurp(Log(0));
  // Plain text against a TLS server fails too.
  EXPECT_EQ(Wait(Client(1, {"--insecure", "--max-attempts", "3"}), 60), 1);
  // With the device certificate: accepted.
  std::vector<std::string> good = ca;
  good.insert(good.end(), {"--tls-cert", dir_ + "/device.pem", "--tls-key", dir_ + "/device.key",
                           "--max-updates", "2"});
  EXPECT_EQ(Wait(Client(2, good), 120), 0) << Slurp(Log(2));
  // A wrong enrolment key is refused, with a message that says so.
  const std::string bad_log = dir_ + "/badkey.log";
  std::vector<std::string> args{"client",       "--server", "localhost:" + std::to_string(port_),
                                "--enroll-key", "guess",    "--samples",
                                "100"};
  args.insert(args.end(), good.begin(), good.end() - 2);
  EXPECT_EQ(Wait(Spawn(FTTE_BINARY, args, bad_log), 60), 1);
  EXPECT_NE(Slurp(bad_log).find("enrolment key refused"), std::string::npos) << Slurp(bad_log);

  // Calls without a token, or with a forged one, are rejected.
  ChannelOptions co;
  co.address = "localhost:" + std::to_string(port_);
  co.root_ca = dir_ + "/ca.pem";
  co.client_cert = dir_ + "/device.pem";
  co.client_key = dir_ + "/device.key";
  auto stub = v1::Federation::NewStub(MakeChannel(co).value());
  for (const char* token : {"", "forged"}) {
    grpc::ClientContext ctx;
    if (*token) ctx.AddMetadata("authorization", std::string("Bearer ") + token);
    v1::Work w;
    const grpc::Status s = stub->GetWork(&ctx, v1::GetWorkRequest(), &w);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << token;
  }
  // A message above the size limit is refused before it reaches the service.
  grpc::ClientContext ctx;
  v1::SubmitRequest big;
  big.set_update(std::string(80 << 20, 'x'));
  v1::SubmitResponse resp;
  EXPECT_EQ(stub->SubmitUpdate(&ctx, big, &resp).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(E2eTest, KillNineOfTheServerLosesNoAcceptedUpdate) {
  const std::string config = WriteConfig("insecure = true");
  const std::vector<std::string> sets{"stop.max_versions=60", "stop.target_accuracy=0",
                                      "eval.every=5"};
  pid_t server = Serve(config, sets);
  std::vector<pid_t> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(Client(i, {"--insecure"}));
  // Kill the server twice while devices are training and submitting (after it has made
  // progress since its last start), and restart it.
  for (int round = 0; round < 2; ++round) {
    const int64_t before = ServerLines(": accuracy ");
    ASSERT_TRUE(WaitFor([&] { return ServerLines(": accuracy ") >= before + 2; }, 120));
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + 400 * round));
    server = KillAndRestart(server, config, sets);
  }
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Wait(clients[i], 300), 0) << Slurp(Log(i));
  EXPECT_EQ(Wait(server, 60), 0);
  const std::string log = Slurp(dir_ + "/server.log");
  EXPECT_NE(log.find("resumed from"), std::string::npos) << log;
  int64_t retries = 0;
  const state::Snapshot snap = ExpectAcknowledgedStored(&retries);
  EXPECT_GT(retries, 0);  // the clients did ride out the restarts
  EXPECT_GE(snap.version(), 60);
}

// Secure aggregation across real processes: FTTE's cohorts of three clients run the SecAgg+
// rounds over gRPC; the server is killed (-9) once in the middle and restarted. Every update a
// client saw acknowledged is in the final state exactly once, and cohorts cut by the crash are
// left out, never unmasked.
TEST_F(E2eTest, SecureAggregationCohortsSurviveKillNine) {
  const std::string config = WriteConfig("insecure = true\n[secure_aggregation]\nenabled = true");
  const std::vector<std::string> sets{"stop.max_versions=6", "stop.target_accuracy=0",
                                      "eval.every=1"};
  pid_t server = Serve(config, sets);
  std::vector<pid_t> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(Client(i, {"--insecure"}));
  ASSERT_TRUE(WaitFor([&] { return ServerLines("updates applied") >= 2; }, 120))
      << Slurp(dir_ + "/server.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  server = KillAndRestart(server, config, sets);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Wait(clients[i], 300), 0) << Slurp(Log(i));
  EXPECT_EQ(Wait(server, 60), 0);
  const std::string log = Slurp(dir_ + "/server.log");
  EXPECT_NE(log.find("formed: 3 members"), std::string::npos) << log;
  EXPECT_NE(log.find("resumed from"), std::string::npos) << log;
  // The only refusals: a join re-sent after the restart, whose lease the restart forgot.
  for (size_t at = log.find("rejected an update"); at != std::string::npos;
       at = log.find("rejected an update", at + 1)) {
    EXPECT_EQ(log.compare(log.find('(', at), 10, "(no lease)"), 0) << log.substr(at, 120);
  }
  const state::Snapshot snap = ExpectAcknowledgedStored();
  EXPECT_GE(snap.version(), 6);
  EXPECT_EQ(snap.buffer_size(), 0);  // nothing but sums reaches the server's state
}

TEST_F(E2eTest, CExampleTakesPartThroughTheCApiOnly) {
  const std::string config = WriteConfig("insecure = true");
  // (Also: JSON-lines logs.)
  // max_share 1: the C device may fill a buffer alone once the CLI devices have left.
  const pid_t server =
      Serve(config, {"stop.max_versions=3", "server.log_format=json", "validation.max_share=1"});
  // Two CLI devices contribute two updates each first (the federation needs 9), then the C
  // device finishes it: started together, either side could end it before the other enrolled.
  const pid_t a = Client(0, {"--insecure", "--max-updates", "2"});
  const pid_t b = Client(1, {"--insecure", "--max-updates", "2"});
  EXPECT_EQ(Wait(a, 60), 0) << Slurp(Log(0));
  EXPECT_EQ(Wait(b, 60), 0) << Slurp(Log(1));
  const pid_t device = Spawn(
      FTTE_DEVICE_C, {"127.0.0.1:" + std::to_string(port_), "k3y", "c-device", kFmnist, "600"},
      dir_ + "/device_c.log");
  pids_.push_back(device);
  EXPECT_EQ(Wait(device, 180), 0) << Slurp(dir_ + "/device_c.log");
  EXPECT_NE(Slurp(dir_ + "/device_c.log").find("updates accepted"), std::string::npos);
  EXPECT_EQ(Wait(server, 60), 0);
  // Every server log line is one JSON object with time, who and msg.
  std::istringstream log(Slurp(dir_ + "/server.log"));
  int lines = 0, enrolled = 0;
  for (std::string line; std::getline(log, line);) {
    if (line.empty()) continue;
    EXPECT_EQ(line.find(" serve: "), std::string::npos) << "a text line: " << line;
    if (line[0] != '{') continue;  // (gRPC's own diagnostics, if any)
    const auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    EXPECT_EQ(j.at("time").get<std::string>().back(), 'Z') << line;
    EXPECT_EQ(j.at("who"), "serve");
    enrolled += j.at("msg").get<std::string>().find("enrolled device") != std::string::npos;
    ++lines;
  }
  EXPECT_GE(enrolled, 3);
  EXPECT_GT(lines, 3);
}

// The keyboard example joins a language-model federation (`ftte serve` started from the
// keyboard's base checkpoint, evaluated on held-out text) with what was typed into it, and
// afterwards suggests from the federation's final model; the server never holds any text.
TEST(KeyboardFederationTest, TheKeyboardExampleJoinsAndAdoptsTheFinalModel) {
  const std::string dir = ::testing::TempDir() + "ftte_kbfed_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/heldout");
  const std::string corpus =
      "the cat sat on the mat .\nthe dog ran in the park .\nmy zebra likes green apples .\n"
      "we walk to the river and back .\n";
  auto tok = data::Tokenizer::Train(data::TokenizerKind::kWord, {corpus}, 100);
  ASSERT_TRUE(tok.ok());
  auto model = MakeModel("lstm_lm:vocab=" + std::to_string(tok->size()) + ",context=8", 7);
  ASSERT_TRUE(model.ok());
  const std::string base = dir + "/base.safetensors";
  ASSERT_TRUE(data::SaveLanguageModel(*model.value(), tok.value(), base).ok());
  const std::vector<float> base_weights = fl::GetWeights(*model.value());
  std::ofstream(dir + "/heldout/user") << "the cat ran in the park .\nmy dog likes the river .\n";
  std::ofstream(dir + "/enroll.key") << "k3y\n";
  // Port 0: the server picks a free one and writes it to port_file (no race with other tests).
  std::ofstream(dir + "/serve.toml")
      << "[server]\naddress = \"127.0.0.1:0\"\nport_file = \"" << dir << "/port\"\nstate_dir = \""
      << dir << "/state\"\ninsecure = true\n[auth]\nenroll_key = \"k3y\"\n[model]\ninit = \""
      << base << "\"\n[strategy]\nalgorithm = \"fedasync\"\nconcurrency = 1\nbuffer = 1\n"
      << "[client]\nlocal_steps = 4\nbatch = 4\nlr = 0.5\n[eval]\ntext = \"" << dir
      << "/heldout\"\nevery = 1\n[stop]\nmax_versions = 3\n";
  const pid_t server =
      Spawn(FTTE_BINARY, {"serve", "--config", dir + "/serve.toml", "--linger", "8"},
            dir + "/server.log");
  ASSERT_TRUE(WaitFor([&] { return !Slurp(dir + "/port").empty(); }, 60))
      << Slurp(dir + "/server.log");
  const int port = std::stoi(Slurp(dir + "/port"));
  std::ofstream(dir + "/session.txt") << corpus << corpus << ":federate\n:quit\n";
  const pid_t keyboard = Spawn(
      FTTE_KEYBOARD_C,
      {"--state", dir + "/kb", "--model", base, "--quiet", "--server",
       "127.0.0.1:" + std::to_string(port), "--enroll-key-file", dir + "/enroll.key", "--insecure"},
      dir + "/keyboard.log", dir + "/session.txt");
  const int keyboard_rc = Wait(keyboard, 180);
  const int server_rc = Wait(server, 60);
  const std::string out = Slurp(dir + "/keyboard.log"), log = Slurp(dir + "/server.log");
  ASSERT_EQ(keyboard_rc, 0) << out << log;
  EXPECT_EQ(server_rc, 0) << log;
  EXPECT_NE(log.find("starting a new federation"), std::string::npos) << log;
  // Evaluated on the held-out text from the start; done at version 3 (a later version may be
  // the one evaluated when updates arrive faster than evaluations).
  EXPECT_NE(log.find("version 0: accuracy"), std::string::npos) << log;
  EXPECT_NE(log.find("max_versions reached"), std::string::npos) << log;
  long long accepted = 0, refused = 0, version = -1;
  char name[64] = "";
  const size_t at = out.find("federated as ");
  ASSERT_NE(at, std::string::npos) << out;
  ASSERT_EQ(std::sscanf(out.c_str() + at,
                        "federated as %63[^:]: %lld updates accepted, %lld refused; the keyboard "
                        "now uses model version %lld",
                        name, &accepted, &refused, &version),
            4)
      << out;
  // It enrolled with its own identity, the name its state keeps.
  EXPECT_EQ(std::string(name).rfind("kbd-", 0), 0u) << name;
  EXPECT_NE(log.find("enrolled device 0 '" + std::string(name) + "'"), std::string::npos) << log;
  EXPECT_GE(accepted, 3) << out << log;  // one job may be in flight when version 3 ends it
  EXPECT_GE(version, 3);
  // The keyboard's saved global part is exactly the server's final model, which moved from the
  // base checkpoint.
  state::Snapshot snap;
  std::ifstream in(dir + "/state/snapshot.pb", std::ios::binary);
  ASSERT_TRUE(snap.ParseFromIstream(&in));
  EXPECT_EQ(snap.version(), version);
  bool encrypted = false;
  auto kb = DecodeKeyboardState(Slurp(dir + "/kb/state.ftte"), std::nullopt, "state", &encrypted);
  ASSERT_TRUE(kb.ok()) << kb.status().ToString();
  EXPECT_EQ(kb->device_name, name);
  EXPECT_EQ(kb->model_version, version);
  auto file = ParseSafetensors(reinterpret_cast<const uint8_t*>(kb->model.data()), kb->model.size(),
                               "keyboard model");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto lm = data::LanguageModelFrom(file.value(), "keyboard model");
  ASSERT_TRUE(lm.ok()) << lm.status().ToString();
  const std::vector<float> adopted = fl::GetWeights(*lm->model);
  EXPECT_EQ(adopted, std::vector<float>(snap.weights().begin(), snap.weights().end()));
  EXPECT_NE(adopted, base_weights);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ftte::net
