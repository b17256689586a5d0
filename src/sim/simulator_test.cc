#include "ftte/sim/simulator.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "ftte/data/synthetic.h"
#include "ftte/fl/privacy.h"
#include "ftte/sim/config.h"
#include "ftte/sim/report.h"
#include "small_setup.h"

namespace ftte::sim {
namespace {

void ExpectSame(const MethodResult& a, const MethodResult& b) {
  ASSERT_EQ(a.series.size(), b.series.size());
  for (size_t i = 0; i < a.series.size(); ++i) {
    EXPECT_EQ(a.series[i].accuracy, b.series[i].accuracy) << i;
    EXPECT_EQ(a.series[i].loss, b.series[i].loss) << i;
    EXPECT_EQ(a.series[i].version, b.series[i].version) << i;
  }
  EXPECT_EQ(a.bytes_up, b.bytes_up);
  EXPECT_EQ(a.bytes_down, b.bytes_down);
  EXPECT_EQ(a.updates_applied, b.updates_applied);
  EXPECT_EQ(a.staleness, b.staleness);
  EXPECT_EQ(a.peak_device_memory_bytes, b.peak_device_memory_bytes);
}

class SimulatorTest : public ::testing::TestWithParam<fl::Algorithm> {};

TEST_P(SimulatorTest, LearnsAndIsIdenticalForOneAndTwoThreads) {
  SimConfig c = SmallConfig(GetParam());
  Environment env = SmallEnvironment(c);
  c.threads = 1;
  auto one = RunMethod(c, c.methods[0], env);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  c.threads = 2;
  auto two = RunMethod(c, c.methods[0], env);
  ASSERT_TRUE(two.ok()) << two.status().ToString();
  ExpectSame(one.value(), two.value());
  const MethodResult& r = one.value();
  EXPECT_GT(r.updates_applied, 0);
  EXPECT_GT(r.final_accuracy, r.series.front().accuracy + 0.2) << r.name;
  EXPECT_EQ(r.peak_device_memory_bytes, r.predicted_device_memory_bytes);
  EXPECT_DOUBLE_EQ(r.series.back().virtual_s, c.duration_s);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, SimulatorTest,
                         ::testing::Values(fl::Algorithm::kFedAvg, fl::Algorithm::kFedAsync,
                                           fl::Algorithm::kFedBuff, fl::Algorithm::kFtte),
                         [](const auto& p) { return fl::AlgorithmName(p.param); });

TEST(SimulatorMethodsTest, FtteUsesLessDeviceMemoryAndUploadThanFedBuff) {
  SimConfig c = SmallConfig(fl::Algorithm::kFtte);
  Environment env = SmallEnvironment(c);
  MethodResult ftte = RunMethod(c, c.methods[0], env).value();
  SimConfig b = SmallConfig(fl::Algorithm::kFedBuff);
  MethodResult buff = RunMethod(b, b.methods[0], env).value();
  EXPECT_LT(ftte.peak_device_memory_bytes, buff.peak_device_memory_bytes);
  EXPECT_LE(ftte.peak_device_memory_bytes, ftte.budget_bytes);
  EXPECT_LT(ftte.bytes_up / std::max<int64_t>(1, ftte.updates_received),
            buff.bytes_up / std::max<int64_t>(1, buff.updates_received));
}

TEST(SimulatorMethodsTest, DevicesBelowTheTrainingPeakAreExcluded) {
  SimConfig c = SmallConfig(fl::Algorithm::kFedBuff);
  c.population.memory_min = 256 << 10;  // some devices cannot hold full training of the mlp
  c.population.memory_max = 4 << 20;
  Environment env = SmallEnvironment(c);
  MethodResult r = RunMethod(c, c.methods[0], env).value();
  int64_t below = 0;
  for (const DeviceProfile& d : env.devices)
    below += d.memory_bytes < r.predicted_device_memory_bytes;
  EXPECT_GT(below, 0);
  EXPECT_EQ(r.excluded_devices, below);
}

// The attack study's mechanics (issue 11): attackers hurt plain FedBuff; a robust rule holds.
TEST(SimulatorAttackTest, SignFlippersBreakTheMeanAndTheMedianHolds) {
  SimConfig c = SmallConfig(fl::Algorithm::kFedBuff);
  c.methods[0].server.buffer = 5;
  c.methods[0].server.concurrency = 6;
  Environment env = SmallEnvironment(c);
  const MethodResult clean = RunMethod(c, c.methods[0], env).value();
  EXPECT_FALSE(clean.robust_report);
  c.attack.kind = "sign_flip";
  c.attack.fraction = 0.17;  // 2 of 12 devices
  c.attack.scale = 10;
  const MethodResult hit = RunMethod(c, c.methods[0], env).value();
  EXPECT_TRUE(hit.robust_report);
  EXPECT_GT(hit.malicious_updates, 0);
  EXPECT_LT(hit.final_accuracy, clean.final_accuracy - 0.15);
  c.methods[0].server.rule = fl::Rule::kMedian;
  c.threads = 1;
  const MethodResult held = RunMethod(c, c.methods[0], env).value();
  EXPECT_GT(held.final_accuracy, clean.final_accuracy - 0.15);
  EXPECT_GT(held.final_accuracy, hit.final_accuracy + 0.2) << hit.final_accuracy;
  c.threads = 2;  // attacks and rules are as deterministic as the rest
  ExpectSame(held, RunMethod(c, c.methods[0], env).value());
}

TEST(SimulatorAttackTest, EveryAttackRunsAndMaxUpdatesLimitsIt) {
  for (const char* kind : {"scale", "random", "label_flip", "samples"}) {
    SimConfig c = SmallConfig(fl::Algorithm::kFtte);
    c.duration_s = 20;
    c.attack.kind = kind;
    c.attack.fraction = 0.5;
    c.attack.max_updates = 1;
    Environment env = SmallEnvironment(c);
    auto r = RunMethod(c, c.methods[0], env);
    ASSERT_TRUE(r.ok()) << kind << ": " << r.status().ToString();
    EXPECT_EQ(r->malicious_updates, 1) << kind;
  }
}

// [privacy]: every method runs with central DP; the epsilon spent grows with the aggregations,
// is reported in the series, the run and results.json, and the run is as deterministic as the
// rest. With more noise the same run spends less.
TEST(SimulatorPrivacyTest, EveryMethodReportsTheEpsilonItSpent) {
  for (fl::Algorithm a : {fl::Algorithm::kFtte, fl::Algorithm::kFedBuff, fl::Algorithm::kFedAsync,
                          fl::Algorithm::kFedAvg}) {
    SimConfig c = SmallConfig(a);
    c.duration_s = 40;
    c.privacy.clip = 0.5;
    c.privacy.noise_multiplier = 1.0;
    ASSERT_TRUE(ValidateSimConfig(c).ok()) << ValidateSimConfig(c).message();
    Environment env = SmallEnvironment(c);
    const MethodResult r = RunMethod(c, c.methods[0], env).value();
    SCOPED_TRACE(r.name);
    EXPECT_TRUE(r.privacy_report);
    EXPECT_GT(r.versions, 0);
    EXPECT_GT(r.dp_max_load, 0);
    EXPECT_GT(r.epsilon, 0);
    EXPECT_TRUE(std::isfinite(r.epsilon));
    EXPECT_EQ(r.series.back().epsilon, r.epsilon);
    for (size_t i = 1; i < r.series.size(); ++i) {
      EXPECT_GE(r.series[i].epsilon, r.series[i - 1].epsilon);
    }
    const std::string json = ResultsJson(c, {r});
    EXPECT_NE(json.find("\"privacy\": {"), std::string::npos);
    EXPECT_NE(SummaryTable({r}).find("privacy (user-level, central"), std::string::npos);
    c.threads = 2;
    const MethodResult again = RunMethod(c, c.methods[0], env).value();
    ExpectSame(r, again);
    EXPECT_EQ(again.epsilon, r.epsilon);
    c.privacy.noise_multiplier = 4.0;
    const MethodResult quieter = RunMethod(c, c.methods[0], env).value();
    EXPECT_LT(quieter.epsilon, r.epsilon);
  }
  // From a config file, and back through a run file (as --resume reads it).
  auto parsed = ParseSimConfig(
      "model = \"mlp\"\n[privacy]\nclip = 0.5\nnoise_multiplier = 2\ndelta = 1e-6\n"
      "[[method]]\nname = \"ftte\"\n",
      "test.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->privacy.clip, 0.5);
  EXPECT_EQ(parsed->privacy.noise_multiplier, 2);
  EXPECT_EQ(parsed->privacy.delta, 1e-6);
  EXPECT_NE(FormatSimConfig(*parsed).find("[privacy]"), std::string::npos);
  EXPECT_FALSE(ParseSimConfig("[privacy]\ndelta = 2\n", "t.toml").ok());
  // Settings that give no guarantee are refused: no noise, or delta >= 1 / devices.
  SimConfig loose = SmallConfig(fl::Algorithm::kFtte);
  loose.privacy.clip = 1;
  loose.privacy.noise_multiplier = 0;
  EXPECT_NE(ValidateSimConfig(loose).message().find("no privacy"), std::string::npos);
  loose.privacy.noise_multiplier = 1;
  loose.privacy.delta = 0.1;  // 12 devices
  auto refused = RunMethod(loose, loose.methods[0], SmallEnvironment(loose));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("delta < 1 / devices"), std::string::npos)
      << refused.status().message();
  {
    SimConfig c = SmallConfig(fl::Algorithm::kFedBuff);
    c.duration_s = 20;
    c.privacy.clip = 0.5;
    Environment env = SmallEnvironment(c);
    const MethodResult r = RunMethod(c, c.methods[0], env).value();
    auto back = ParseRunFile(RunFileText(c, r), c, "r.json");
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->epsilon, r.epsilon);
    EXPECT_EQ(back->series.back().epsilon, r.series.back().epsilon);
  }
  // A budget: no device spends more than target_epsilon; devices that spent it get no work.
  {
    SimConfig c = SmallConfig(fl::Algorithm::kFedBuff);
    c.duration_s = 60;
    c.privacy.clip = 0.5;
    c.privacy.noise_multiplier = 2;
    c.privacy.delta = 1e-3;
    c.privacy.target_epsilon = 2.0;
    ASSERT_TRUE(ValidateSimConfig(c).ok()) << ValidateSimConfig(c).message();
    Environment env = SmallEnvironment(c);
    const MethodResult r = RunMethod(c, c.methods[0], env).value();
    EXPECT_LE(r.epsilon, 2.0);
    EXPECT_GT(r.epsilon, 1.0);  // the budget was reached
    c.privacy.target_epsilon = 0.01;
    EXPECT_NE(ValidateSimConfig(c).message().find("below what one update costs"), std::string::npos)
        << ValidateSimConfig(c).message();
  }
  // Privacy off: nothing about it in the results (the files stay as they were).
  SimConfig off = SmallConfig(fl::Algorithm::kFtte);
  off.duration_s = 20;
  Environment env = SmallEnvironment(off);
  const MethodResult plain = RunMethod(off, off.methods[0], env).value();
  EXPECT_FALSE(plain.privacy_report);
  EXPECT_EQ(ResultsJson(off, {plain}).find("privacy"), std::string::npos);
  // Robust rules cannot be combined with it: refused before any work, naming the fix.
  SimConfig bad = SmallConfig(fl::Algorithm::kFedBuff);
  bad.privacy.clip = 1;
  bad.methods[0].server.clip_multiplier = 3;
  EXPECT_NE(ValidateSimConfig(bad).message().find("aggregation = mean without them"),
            std::string::npos)
      << ValidateSimConfig(bad).message();
}

// The noise calibrated to a budget (updates_per_device), and adaptive clipping, from a config:
// the run charges the calibrated z, its bound moves and is reported, and bad combinations are
// refused with the fix.
TEST(SimulatorPrivacyTest, CalibratedNoiseAndAdaptiveClipping) {
  SimConfig c = SmallConfig(fl::Algorithm::kFedBuff);
  c.duration_s = 40;
  c.privacy.clip = 5;  // the first bound; adaptive clipping moves it (noisily: K is 3 here)
  c.privacy.noise_multiplier = 0;
  c.privacy.delta = 1e-3;
  c.privacy.target_epsilon = 8;
  c.privacy.updates_per_device = 20;
  c.privacy.adaptive_quantile = 0.5;
  ASSERT_TRUE(ValidateSimConfig(c).ok()) << ValidateSimConfig(c).message();
  const double z = fl::NoiseForLoad(1e-3, 8, 20);
  EXPECT_EQ(EffectiveServerConfig(c, c.methods[0]).dp_noise_multiplier, z);
  EXPECT_EQ(EffectiveServerConfig(c, c.methods[0]).dp_max_load, fl::MaxGaussianLoad(z, 1e-3, 8));
  const MethodResult r = RunMethod(c, c.methods[0], SmallEnvironment(c)).value();
  EXPECT_EQ(r.dp_noise_multiplier, z);
  EXPECT_GT(r.versions, 0);
  EXPECT_NE(r.dp_final_clip, 5);
  EXPECT_GT(r.dp_final_clip, 0);
  EXPECT_TRUE(std::isfinite(r.dp_final_clip));
  EXPECT_LE(r.epsilon, 8);
  const std::string json = ResultsJson(c, {r});
  EXPECT_NE(json.find("\"noise_multiplier\": "), std::string::npos);
  SimConfig bad = c;
  bad.privacy.noise_multiplier = 1;  // both given
  EXPECT_NE(ValidateSimConfig(bad).message().find("set noise_multiplier = 0"), std::string::npos);
  bad = c;
  bad.privacy.target_epsilon = 0;
  EXPECT_NE(ValidateSimConfig(bad).message().find("updates_per_device calibrates"),
            std::string::npos);
  bad = c;
  bad.privacy.quantile_noise = 0.01;
  EXPECT_NE(ValidateSimConfig(bad).message().find("quantile_noise"), std::string::npos);
}

// privacy.mode = "distributed": devices clip and noise their updates (the simulator runs the
// device's code, fl::PrivatizeUpdate), the run is deterministic at any thread count, and the
// accounting is the central one's.
TEST(SimulatorPrivacyTest, DistributedModeRunsTheDevicesShareOfTheNoise) {
  SimConfig c = SmallConfig(fl::Algorithm::kFedBuff);
  c.duration_s = 40;
  c.privacy.clip = 0.5;
  c.privacy.noise_multiplier = 1;
  c.privacy.mode = "distributed";
  ASSERT_TRUE(ValidateSimConfig(c).ok()) << ValidateSimConfig(c).message();
  Environment env = SmallEnvironment(c);
  const MethodResult r = RunMethod(c, c.methods[0], env).value();
  EXPECT_TRUE(r.dp_distributed);
  EXPECT_GT(r.versions, 0);
  EXPECT_EQ(r.dp_oversized, 0);  // honest devices stay within clip + noise
  EXPECT_TRUE(std::isfinite(r.epsilon));
  c.threads = 2;
  ExpectSame(r, RunMethod(c, c.methods[0], env).value());
  EXPECT_NE(ResultsJson(c, {r}).find("\"mode\": \"distributed\""), std::string::npos);
  EXPECT_NE(SummaryTable({r}).find("privacy (user-level, distributed"), std::string::npos);
  SimConfig central = c;
  central.privacy.mode = "central";
  const MethodResult cr = RunMethod(central, central.methods[0], env).value();
  EXPECT_NE(cr.final_weights, r.final_weights);  // where the noise comes from differs ...
  EXPECT_GT(r.epsilon, 0);
  SimConfig bad = c;
  bad.privacy.adaptive_quantile = 0.5;
  EXPECT_NE(ValidateSimConfig(bad).message().find("distributed mode needs"), std::string::npos);
  EXPECT_FALSE(ParseSimConfig("[privacy]\nmode = \"local\"\n", "t.toml").ok());
}

// The real protocol runs per cohort: the model learns, the protocol's bytes and rounds are
// counted, dropouts lose only their own updates, and runs repeat exactly at any thread count.
TEST(SimulatorSecureAggregationTest, CohortsLearnAndCountTheirCost) {
  for (fl::Algorithm a : {fl::Algorithm::kFedBuff, fl::Algorithm::kFtte}) {
    SimConfig c = SmallConfig(a);
    c.methods[0].server.buffer = 3;
    c.secure_aggregation.enabled = true;
    c.secure_aggregation.cohort = 4;
    ASSERT_TRUE(ValidateSimConfig(c).ok()) << ValidateSimConfig(c).message();
    Environment env = SmallEnvironment(c);
    const MethodResult r = RunMethod(c, c.methods[0], env).value();
    EXPECT_TRUE(r.secure_report);
    EXPECT_GT(r.secure_cohorts, 3) << r.name;
    EXPECT_EQ(r.secure_aborted, 0);
    EXPECT_EQ(r.secure_lost, 0);
    EXPECT_EQ(r.updates_applied, 4 * r.versions);  // one aggregation per cohort of 4
    EXPECT_GT(r.secure_protocol_s, 4 * 2 * 0.05);  // four rounds, each at least a round trip
    EXPECT_GT(r.final_accuracy, r.series.front().accuracy + 0.2) << r.name;
    // The masked input is 4 bytes per value of the cohort's mask, at least the plain
    // float32 update.
    EXPECT_GE(static_cast<double>(r.bytes_up) / static_cast<double>(r.updates_applied),
              static_cast<double>(r.mask_update_bytes));
    c.threads = 2;
    ExpectSame(r, RunMethod(c, c.methods[0], env).value());
    const std::string json = ResultsJson(c, {r});
    EXPECT_NE(json.find("\"secure_aggregation\""), std::string::npos);
    EXPECT_NE(SummaryTable({r}).find("secure aggregation (the server saw only cohort sums"),
              std::string::npos);

    SimConfig lossy = c;
    lossy.secure_aggregation.dropout = 0.25;  // 1 of 4 on average: threshold 2 of 3 holds
    const MethodResult d = RunMethod(lossy, lossy.methods[0], env).value();
    EXPECT_GT(d.secure_lost, 0);
    EXPECT_EQ(d.secure_lost + d.updates_applied, 4 * d.secure_cohorts);
    EXPECT_GT(d.final_accuracy, d.series.front().accuracy + 0.2) << d.name;
  }
}

// Distributed DP inside the masked sum: devices clip and noise, the cohort's sum carries the
// noise, and the accountant charges each member.
TEST(SimulatorSecureAggregationTest, ComposesWithDistributedPrivacy) {
  SimConfig c = SmallConfig(fl::Algorithm::kFtte);
  c.duration_s = 40;
  c.secure_aggregation.enabled = true;
  c.secure_aggregation.cohort = 3;
  c.methods[0].server.buffer = 3;
  c.privacy.clip = 0.5;
  c.privacy.noise_multiplier = 1;
  c.privacy.mode = "distributed";
  ASSERT_TRUE(ValidateSimConfig(c).ok()) << ValidateSimConfig(c).message();
  Environment env = SmallEnvironment(c);
  const MethodResult r = RunMethod(c, c.methods[0], env).value();
  EXPECT_GT(r.versions, 0);
  EXPECT_EQ(r.secure_clamped, 0);  // weighted values 1/K of a clipped, noised update
  EXPECT_TRUE(std::isfinite(r.epsilon));
  EXPECT_GT(r.epsilon, 0);
  SimConfig central = c;
  central.privacy.mode = "central";
  EXPECT_NE(ValidateSimConfig(central).message().find("mode = \"distributed\""), std::string::npos);
}

// Regression: with a cohort close to the number of devices, a slot freed while every idle
// device was still in a cohort found nobody and was lost for good, and the run stopped after
// its first cohort. Such slots now take the devices the next finished cohort frees.
TEST(SimulatorSecureAggregationTest, ACohortNearThePopulationSizeKeepsRunning) {
  SimConfig c = SmallConfig(fl::Algorithm::kFedBuff);
  c.methods[0].server.concurrency = 10;  // of 12 devices
  c.methods[0].server.buffer = 8;
  c.secure_aggregation.enabled = true;
  c.secure_aggregation.cohort = 8;
  ASSERT_TRUE(ValidateSimConfig(c).ok()) << ValidateSimConfig(c).message();
  Environment env = SmallEnvironment(c);
  const MethodResult r = RunMethod(c, c.methods[0], env).value();
  EXPECT_GT(r.secure_cohorts, 3);
}

TEST(SimulatorSecureAggregationTest, SettingsThatBreakTheGuaranteeAreRefused) {
  SimConfig c = SmallConfig(fl::Algorithm::kFtte);
  c.secure_aggregation.enabled = true;
  c.secure_aggregation.cohort = 4;
  c.secure_aggregation.threshold = 1;  // of 3 neighbours: at most half
  EXPECT_NE(ValidateSimConfig(c).message().find("set threshold to 2 or more"), std::string::npos)
      << ValidateSimConfig(c).message();
  c.secure_aggregation.threshold = 0;
  c.secure_aggregation.cohort = 1;  // below the buffer
  EXPECT_NE(ValidateSimConfig(c).message().find("set cohort >= buffer"), std::string::npos);
  SimConfig fedavg = SmallConfig(fl::Algorithm::kFedAvg);
  fedavg.secure_aggregation.enabled = true;
  EXPECT_NE(ValidateSimConfig(fedavg).message().find("not fedavg"), std::string::npos);
  auto parsed = ParseSimConfig(
      "[secure_aggregation]\nenabled = true\ncohort = 16\n[[method]]\nname = \"ftte\"\n"
      "concurrency = 20\n",
      "t.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->secure_aggregation.cohort, 16);
  EXPECT_FALSE(ParseSimConfig("[secure_aggregation]\ndropout = 2\n", "t.toml").ok());
}

TEST(DevicesTest, StragglerFractionAndDeterminism) {
  PopulationConfig p;
  p.devices = 200;
  p.straggler_fraction = 0.9;
  auto a = MakeDevices(p, 3).value();
  auto b = MakeDevices(p, 3).value();
  int stragglers = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].flops_per_s, b[i].flops_per_s);
    stragglers += a[i].slowdown > 1.0;
    EXPECT_GE(a[i].memory_bytes, p.memory_min);
    EXPECT_LE(a[i].memory_bytes, p.memory_max);
  }
  EXPECT_EQ(stragglers, 180);
}

TEST(DevicesTest, CsvTrace) {
  const std::string path = ::testing::TempDir() + "/devices.csv";
  {
    std::ofstream f(path);
    f << "flops_per_s,memory_bytes,slowdown\n1e9,1048576,1\n2e9,2097152,4\n";
  }
  auto d = ReadDeviceCsv(path).value();
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[1].memory_bytes, 2097152);
  EXPECT_EQ(d[1].slowdown, 4.0);
  {
    std::ofstream f(path);
    f << "flops,memory_bytes\n1,2\n";
  }
  auto bad = ReadDeviceCsv(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown column 'flops'"), std::string::npos);
  {
    std::ofstream f(path);
    f << "flops_per_s,memory_bytes\n1e9,abc\n";
  }
  bad = ReadDeviceCsv(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(":2: column memory_bytes"), std::string::npos);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace ftte::sim
