// Simulations over several ranks (cluster.h), the ranks run as threads (thread_cluster.h):
// the results equal one process's, bit for bit.
#include "ftte/sim/cluster.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "ftte/data/synthetic.h"
#include "ftte/sim/simulator.h"
#include "job_runner.h"
#include "small_setup.h"
#include "thread_cluster.h"

namespace ftte::sim {
namespace {

// The small setup, with jobs of different lengths (uneven shares: the ranks' loads differ) and
// a test set that is not a whole number of evaluation batches (256: the ranks' shares differ).
Environment UnevenEnvironment(const SimConfig& c) {
  Environment env = SmallEnvironment(c);
  env.test = data::SyntheticImages(300, 2);
  for (size_t d = 0; d < env.partition.size(); ++d) {
    env.partition[d].clear();
    for (int64_t i = static_cast<int64_t>(d); i < env.train.size; i += 12 + (d % 3) * 5) {
      env.partition[d].push_back(i);
    }
  }
  return env;
}

void ExpectIdentical(const MethodResult& a, const MethodResult& b, const std::string& what) {
  ASSERT_EQ(a.series.size(), b.series.size()) << what;
  for (size_t i = 0; i < a.series.size(); ++i) {
    EXPECT_EQ(a.series[i].accuracy, b.series[i].accuracy) << what << " " << i;
    EXPECT_EQ(a.series[i].loss, b.series[i].loss) << what << " " << i;
    EXPECT_EQ(a.series[i].version, b.series[i].version) << what << " " << i;
    EXPECT_EQ(a.series[i].bytes_up, b.series[i].bytes_up) << what << " " << i;
  }
  EXPECT_EQ(a.updates_received, b.updates_received) << what;
  EXPECT_EQ(a.bytes_down, b.bytes_down) << what;
  EXPECT_EQ(a.staleness, b.staleness) << what;
  EXPECT_EQ(a.peak_device_memory_bytes, b.peak_device_memory_bytes) << what;
  ASSERT_EQ(a.final_weights.size(), b.final_weights.size()) << what;
  EXPECT_EQ(0, std::memcmp(a.final_weights.data(), b.final_weights.data(),
                           a.final_weights.size() * sizeof(float)))
      << what << ": final weights differ";
}

class ClusterTest : public ::testing::TestWithParam<fl::Algorithm> {};

TEST_P(ClusterTest, ThreeRanksGiveTheOneProcessResultOnEveryRank) {
  SimConfig c = SmallConfig(GetParam());
  c.duration_s = 40;
  const Environment env = UnevenEnvironment(c);
  c.threads = 2;
  auto one = RunMethod(c, c.methods[0], env);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  ASSERT_GT(one->updates_applied, 0);
  c.threads = 1;
  std::vector<Result<MethodResult>> ranks(
      3, Result<MethodResult>(Status(StatusCode::kInternal, "not run")));
  ThreadCluster::Run(3, [&](int rank) {
    EXPECT_EQ(ProcessCluster().size(), 3);
    ranks[rank] = RunMethod(c, c.methods[0], env);
  });
  EXPECT_EQ(ProcessCluster().size(), 1) << "the ranks' clusters stay on their threads";
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(ranks[r].ok()) << ranks[r].status().ToString();
    ExpectIdentical(one.value(), ranks[r].value(), "rank " + std::to_string(r));
  }
}

INSTANTIATE_TEST_SUITE_P(Algorithms, ClusterTest,
                         ::testing::Values(fl::Algorithm::kFedAvg, fl::Algorithm::kFedBuff,
                                           fl::Algorithm::kFtte),
                         [](const auto& p) { return fl::AlgorithmName(p.param); });

TEST(ClusterAgreeTest, RanksThatDifferAreNamed) {
  std::vector<Status> got(3);
  ThreadCluster::Run(
      3, [&](int rank) { got[rank] = ProcessCluster().Agree("the seed", rank == 2 ? "1" : "0"); });
  for (const Status& s : got) {
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("the seed"), std::string::npos) << s.message();
  }
  ThreadCluster::Run(2, [&](int rank) { got[rank] = ProcessCluster().Agree("x", "same"); });
  EXPECT_TRUE(got[0].ok() && got[1].ok());
}

TEST(JobResultEncodingTest, RoundTripsExactlyAndRefusesCutBytes) {
  fl::ClientResult r;
  r.update.device = 7;
  r.update.base_version = -3;
  r.update.num_samples = 41;
  r.update.update_id = 1234567890123;
  r.update.loss = 0.1f;
  r.update.variance = 1e-300;
  r.update.delta = {1.5f, -0.0f, std::numeric_limits<float>::quiet_NaN(), 3e-38f};
  r.update.row_sq = {2.0f};
  r.steps = 5;
  r.peak_bytes = int64_t{1} << 40;
  r.flops = 99;
  const std::vector<uint8_t> bytes = EncodeClientResult(r);
  auto back = DecodeClientResult(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(EncodeClientResult(back.value()), bytes);
  EXPECT_EQ(back->update.update_id, r.update.update_id);
  EXPECT_EQ(back->update.variance, r.update.variance);
  EXPECT_EQ(back->peak_bytes, r.peak_bytes);
  EXPECT_TRUE(std::signbit(back->update.delta[1]));
  ASSERT_TRUE(DecodeClientResult(EncodeClientResult(fl::ClientResult())).ok());

  std::vector<uint8_t> cut(bytes.begin(), bytes.end() - 4);
  EXPECT_EQ(DecodeClientResult(cut).status().code(), StatusCode::kDataLoss);
  cut.assign(bytes.begin(), bytes.begin() + 10);
  EXPECT_EQ(DecodeClientResult(cut).status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace ftte::sim
