// `ftte simulate` end to end, in-process, on a tiny Fashion-MNIST federation: output checked
// before any work, runs saved as they finish, --resume giving the uninterrupted run's files.
#include "simulate_cmd.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ftte/core/checkpoint.h"
#include "ftte/core/model.h"
#include "ftte/data/idx.h"

namespace ftte::cli {
namespace {

namespace fs = std::filesystem;

struct Output {
  int code = 0;
  std::string out, err;
};

Output Simulate(const std::vector<std::string>& args) {
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  Output o;
  o.code = RunSimulate(args);
  o.out = testing::internal::GetCapturedStdout();
  o.err = testing::internal::GetCapturedStderr();
  return o;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class SimulateCmdTest : public testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(fs::path(data::kFashionMnistDir) / "train-images-idx3-ubyte.gz")) {
      GTEST_SKIP() << "Fashion-MNIST is not installed (scripts/setup.sh installs it)";
    }
    dir_ = fs::path(testing::TempDir()) /
           ("simulate_cmd_test_" + std::to_string(getpid()) + "_" +
            testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A federation of a few seconds: mlp, 8 devices, two methods, two seeds.
  std::vector<std::string> Tiny(const std::string& out) const {
    return {"--out",     out,
            "--seeds",   "0,1",
            "--set",     "model=mlp",
            "--set",     "train_limit=800",
            "--set",     "test_limit=200",
            "--set",     "duration_s=20",
            "--set",     "eval_every_s=10",
            "--set",     "calibration_samples=0",
            "--set",     "devices.count=8",
            "--set",     "client.local_steps=2",
            "--set",     "method.*.concurrency=3",
            "--set",     "method.*.buffer=2",
            "--methods", "ftte,fedbuff"};
  }
  fs::path dir_;
};

TEST_F(SimulateCmdTest, AnUnusableOutputFolderFailsBeforeAnyWork) {
  fs::create_directories(dir_);
  std::ofstream(dir_ / "file") << "x";
  std::vector<std::string> args = Tiny((dir_ / "file" / "out").string());
  const Output o = Simulate(args);
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("--out"), std::string::npos) << o.err;
  EXPECT_EQ(o.err.find("virtual"), std::string::npos) << "no run started: " << o.err;
}

TEST_F(SimulateCmdTest, RunsAreSavedAsTheyFinishAndResumeGivesTheSameResults) {
  const fs::path whole = dir_ / "whole", part = dir_ / "part";
  ASSERT_EQ(Simulate(Tiny(whole.string())).code, 0);
  for (const char* f :
       {"ftte-seed0.json", "ftte-seed1.json", "fedbuff-seed0.json", "fedbuff-seed1.json"}) {
    EXPECT_TRUE(fs::exists(whole / "runs" / f)) << f;
  }
  // The saved final model loads.
  auto model = MakeModel("mlp", 0).value();
  EXPECT_TRUE(LoadCheckpoint(*model, (whole / "models" / "ftte-seed1.safetensors").string()).ok());
  // An "interrupted" run: FTTE only, then everything with --resume.
  std::vector<std::string> first = Tiny(part.string());
  first.back() = "ftte";
  ASSERT_EQ(Simulate(first).code, 0);
  std::vector<std::string> rest = Tiny(part.string());
  rest.push_back("--resume");
  const Output resumed = Simulate(rest);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming: 2 run(s) done"), std::string::npos) << resumed.err;
  for (const char* f : {"results.json", "results.csv"}) {
    EXPECT_EQ(ReadFile(part / f), ReadFile(whole / f)) << f;
  }
  // A run file of other settings is refused before any work.
  std::vector<std::string> other = Tiny(part.string());
  other.push_back("--resume");
  other.push_back("--set");
  other.push_back("duration_s=30");
  const Output refused = Simulate(other);
  EXPECT_EQ(refused.code, 2);
  EXPECT_NE(refused.err.find("another configuration"), std::string::npos) << refused.err;
}

TEST_F(SimulateCmdTest, TuningChoosesOnValidationRecordsTheTrialsAndResumes) {
  auto tuned = [&](const fs::path& out) {
    std::vector<std::string> a = Tiny(out.string());
    for (const char* kv :
         {"tune.server_step=[0.5, 1]", "tune.validation=100", "target_accuracy=0.2", "seeds=[0]"}) {
      a.push_back("--set");
      a.push_back(kv);
    }
    return a;
  };
  const fs::path whole = dir_ / "whole", part = dir_ / "part";
  const Output o = Simulate(tuned(whole));
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_NE(o.err.find("tuning: 4 trial(s)"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("tuned ftte: server step x"), std::string::npos) << o.err;
  for (const char* f : {"tune-ftte-1-seed0.json", "tune-ftte-2-seed0.json",
                        "tune-fedbuff-2-seed0.json", "ftte-seed0.json"}) {
    EXPECT_TRUE(fs::exists(whole / "runs" / f)) << f;
  }
  const std::string tuning = ReadFile(whole / "tuning.json");
  EXPECT_NE(tuning.find("\"validation\": 100"), std::string::npos) << tuning;
  EXPECT_NE(tuning.find("\"trials\""), std::string::npos) << tuning;
  // The written config reruns the measured runs at the chosen settings, without tuning.
  EXPECT_EQ(ReadFile(whole / "config.toml").find("[tune]"), std::string::npos);
  // Interrupted after the trials of FTTE: --resume reruns none of them and ends the same.
  std::vector<std::string> first = tuned(part);
  *std::find(first.begin(), first.end(), std::string("ftte,fedbuff")) = "ftte";
  ASSERT_EQ(Simulate(first).code, 0);
  std::vector<std::string> rest = tuned(part);
  rest.push_back("--resume");
  const Output resumed = Simulate(rest);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(resumed.err.find("[1/4] tune-ftte-1 "), std::string::npos) << resumed.err;
  for (const char* f : {"results.json", "tuning.json"}) {
    EXPECT_EQ(ReadFile(part / f), ReadFile(whole / f)) << f;
  }
}

TEST_F(SimulateCmdTest, ATargetNoTrialReachesIsRefusedBeforeTheMeasuredRuns) {
  std::vector<std::string> a = Tiny((dir_ / "out").string());
  for (const char* kv : {"tune.batch=[8]", "tune.validation=100", "target_accuracy=0.999"}) {
    a.push_back("--set");
    a.push_back(kv);
  }
  const Output o = Simulate(a);
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.err.find("lower target_accuracy"), std::string::npos) << o.err;
  EXPECT_TRUE(fs::exists(dir_ / "out" / "tuning.json"));
  EXPECT_FALSE(fs::exists(dir_ / "out" / "results.json"));
}

}  // namespace
}  // namespace ftte::cli
