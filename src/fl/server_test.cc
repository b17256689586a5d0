#include "ftte/fl/server.h"

#include <gtest/gtest.h>

#include <cmath>

namespace ftte::fl {
namespace {

// Two parameters: 3 rows of 2 values, and 2 rows of 1.
std::vector<ParamLayout> Layout() { return {{"a", 3, 2}, {"b", 2, 1}}; }

Update MakeUpdate(int64_t base, int64_t samples, double variance, std::vector<float> delta) {
  Update u;
  u.base_version = base;
  u.num_samples = samples;
  u.variance = variance;
  u.delta = std::move(delta);
  return u;
}

TEST(ServerTest, FedAvgIsTheSampleWeightedMean) {
  ServerConfig c;
  c.algorithm = Algorithm::kFedAvg;
  Server s(c, std::vector<float>(8, 0.0f), Mask::Full(Layout()), Layout());
  s.AggregateRound({MakeUpdate(0, 1, 0, std::vector<float>(8, 1.0f)),
                    MakeUpdate(0, 3, 0, std::vector<float>(8, 5.0f))});
  EXPECT_EQ(s.version(), 1);
  for (float w : s.weights()) EXPECT_FLOAT_EQ(w, 4.0f);  // (1*1 + 3*5) / 4
}

TEST(ServerTest, FedBuffWaitsForKAndDiscountsStaleness) {
  ServerConfig c;
  c.algorithm = Algorithm::kFedBuff;
  c.buffer = 2;
  Server s(c, std::vector<float>(8, 0.0f), Mask::Full(Layout()), Layout());
  EXPECT_FALSE(s.Receive(MakeUpdate(0, 1, 0, std::vector<float>(8, 2.0f))));
  EXPECT_EQ(s.version(), 0);
  EXPECT_TRUE(s.Receive(MakeUpdate(0, 1, 0, std::vector<float>(8, 4.0f))));
  EXPECT_EQ(s.version(), 1);
  EXPECT_FLOAT_EQ(s.weights()[0], 3.0f);                        // (2 + 4) / K
  s.Receive(MakeUpdate(0, 1, 0, std::vector<float>(8, 2.0f)));  // tau = 1
  s.Receive(MakeUpdate(1, 1, 0, std::vector<float>(8, 2.0f)));  // tau = 0
  EXPECT_NEAR(s.weights()[0], 3.0f + (2.0f / std::sqrt(2.0f) + 2.0f) / 2, 1e-5);
  EXPECT_EQ(s.stats().staleness.at(1), 1);
}

TEST(ServerTest, FtteWeighsByAgeVarianceAndSamplesAndTouchesOnlyTheMask) {
  ServerConfig c;
  c.algorithm = Algorithm::kFtte;
  c.buffer = 2;
  Mask m = Mask::Full(Layout());
  m.rows[0] = {0, 1, 0};  // only row 1 of "a" (2 values) and all of "b" (2 values)
  Server s(c, std::vector<float>(8, 0.0f), m, Layout());
  // Equal age and samples; variances 1 and 3 -> median (upper) 3: h = 1/(1+1/3), 1/(1+1).
  s.Receive(MakeUpdate(0, 10, 1.0, {1, 1, 1, 1}));
  s.Receive(MakeUpdate(0, 10, 3.0, {3, 3, 3, 3}));
  const double h1 = 1 / (1 + 1.0 / 3), h2 = 0.5;
  const double expected = (h1 * 1 + h2 * 3) / (h1 + h2);
  EXPECT_FLOAT_EQ(s.weights()[0], 0.0f);
  EXPECT_NEAR(s.weights()[2], expected, 1e-6);
  EXPECT_NEAR(s.weights()[7], expected, 1e-6);
  EXPECT_FLOAT_EQ(s.weights()[4], 0.0f);
  // Turning variance off makes it the plain mean.
  c.use_variance = false;
  Server plain(c, std::vector<float>(8, 0.0f), m, Layout());
  plain.Receive(MakeUpdate(0, 10, 1.0, {1, 1, 1, 1}));
  plain.Receive(MakeUpdate(0, 10, 3.0, {3, 3, 3, 3}));
  EXPECT_NEAR(plain.weights()[2], 2.0, 1e-6);
}

TEST(ServerTest, FtteAgeWeightAndMaxStaleness) {
  ServerConfig c;
  EXPECT_NEAR(Server::FtteWeight(c, MakeUpdate(0, 1, 0, {}), 3, 0), 0.5, 1e-12);  // (1+3)^-0.5
  c.sample_exponent = 0.5;
  EXPECT_NEAR(Server::FtteWeight(c, MakeUpdate(0, 16, 0, {}), 0, 0), 4.0, 1e-12);
  c.algorithm = Algorithm::kFtte;
  c.buffer = 1;
  c.max_staleness = 1;
  Server s(c, std::vector<float>(8, 0.0f), Mask::Full(Layout()), Layout());
  s.Receive(MakeUpdate(0, 1, 0, std::vector<float>(8, 1.0f)));
  s.Receive(MakeUpdate(1, 1, 0, std::vector<float>(8, 1.0f)));
  EXPECT_FALSE(s.Receive(MakeUpdate(0, 1, 0, std::vector<float>(8, 1.0f))));  // tau 2 > 1
  EXPECT_EQ(s.stats().dropped_stale, 1);
  EXPECT_EQ(s.version(), 2);
}

TEST(ServerTest, FedAsyncMixesEachUpdateAtOnce) {
  ServerConfig c;
  c.algorithm = Algorithm::kFedAsync;
  c.async_alpha = 0.5;
  Server s(c, std::vector<float>(8, 0.0f), Mask::Full(Layout()), Layout());
  EXPECT_TRUE(s.Receive(MakeUpdate(0, 1, 0, std::vector<float>(8, 2.0f))));
  EXPECT_FLOAT_EQ(s.weights()[0], 1.0f);
  EXPECT_TRUE(s.Receive(MakeUpdate(0, 1, 0, std::vector<float>(8, 2.0f))));  // tau 1
  EXPECT_NEAR(s.weights()[0], 1.0f + 0.5f * 2.0f / std::sqrt(2.0f), 1e-6);
}

TEST(ServerTest, ServerMomentum) {
  ServerConfig c;
  c.algorithm = Algorithm::kFtte;
  c.buffer = 1;
  c.server_momentum = 0.5;
  c.use_variance = false;
  Server s(c, std::vector<float>(8, 0.0f), Mask::Full(Layout()), Layout());
  s.Receive(MakeUpdate(0, 1, 0, std::vector<float>(8, 1.0f)));
  s.Receive(MakeUpdate(1, 1, 0, std::vector<float>(8, 1.0f)));
  EXPECT_FLOAT_EQ(s.weights()[0], 1.0f + 1.5f);
}

TEST(ServerTest, ParseAlgorithm) {
  EXPECT_EQ(ParseAlgorithm("fedbuff").value(), Algorithm::kFedBuff);
  auto bad = ParseAlgorithm("fedprox");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("fedavg, fedasync, fedbuff or ftte"), std::string::npos);
}

}  // namespace
}  // namespace ftte::fl
