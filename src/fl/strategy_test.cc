// The server strategies: aggregation rules, plans and re-planning, federated importance, state.
#include "ftte/fl/strategy.h"

#include <gtest/gtest.h>

#include <cmath>

#include "ftte/fl/privacy.h"

namespace ftte::fl {
namespace {

constexpr char kModel[] = "mlp";  // 784 -> 200 -> 200 -> 10: parameters 1.*, 3.*, 5.*

PlanningInputs Inputs(int64_t budget = 0) {
  PlanningInputs in;
  in.model_spec = kModel;
  in.seed = 1;
  in.client.batch = 8;
  in.client.local_steps = 1;
  in.budget_bytes = budget;
  return in;
}

std::unique_ptr<Strategy> Make(const ServerConfig& c, const PlanningInputs& in = Inputs()) {
  auto s = Strategy::Create(c, in);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::move(s.value());
}

// An update of `value` in every value its plan's mask covers.
Update Uniform(const Strategy& s, int64_t base, int64_t samples, double variance, float value) {
  Update u;
  u.base_version = base;
  u.num_samples = samples;
  u.variance = variance;
  u.delta.assign(static_cast<size_t>(s.PlanAt(base).mask.Numel(s.layout())), value);
  return u;
}

// The change of every value since `before`.
std::vector<float> Moved(const Strategy& s, const std::vector<float>& before) {
  std::vector<float> d(before.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = s.weights()[i] - before[i];
  return d;
}

// A budget that fits training the last layer (5.*) and a little more, but not all of it.
int64_t LastLayerBudget() {
  auto m = MakeModel(kModel, 1).value();
  EXPECT_TRUE(ApplyNamedMask(*m, "last").ok());
  ClientConfig c = Inputs().client;
  c.frozen = FrozenStorage::kInt8;
  return PredictClientPeak(*m, Mask::FromModel(*m), c) + 20000;
}

TEST(StrategyTest, FedAvgIsTheSampleWeightedMean) {
  ServerConfig c;
  c.algorithm = Algorithm::kFedAvg;
  auto s = Make(c);
  EXPECT_TRUE(s->synchronous());
  const std::vector<float> before = s->weights();
  s->AggregateRound({Uniform(*s, 0, 1, 0, 1.0f), Uniform(*s, 0, 3, 0, 5.0f)});
  EXPECT_EQ(s->version(), 1);
  for (float d : Moved(*s, before)) ASSERT_NEAR(d, 4.0f, 1e-5);  // (1*1 + 3*5) / 4
}

TEST(StrategyTest, FedBuffWaitsForKAndDiscountsStaleness) {
  ServerConfig c;
  c.algorithm = Algorithm::kFedBuff;
  c.buffer = 2;
  auto s = Make(c);
  const std::vector<float> before = s->weights();
  EXPECT_FALSE(s->Receive(Uniform(*s, 0, 1, 0, 2.0f)));
  EXPECT_EQ(s->version(), 0);
  EXPECT_TRUE(s->Receive(Uniform(*s, 0, 1, 0, 4.0f)));
  EXPECT_EQ(s->version(), 1);
  EXPECT_NEAR(Moved(*s, before)[0], 3.0f, 1e-5);  // (2 + 4) / K
  s->Receive(Uniform(*s, 0, 1, 0, 2.0f));         // tau = 1
  s->Receive(Uniform(*s, 1, 1, 0, 2.0f));         // tau = 0
  EXPECT_NEAR(Moved(*s, before)[0], 3.0f + (2.0f / std::sqrt(2.0f) + 2.0f) / 2, 1e-5);
  EXPECT_EQ(s->stats().staleness.at(1), 1);
}

TEST(StrategyTest, FttePlansUnderTheBudgetWeighsByVarianceAndTouchesOnlyThePlan) {
  ServerConfig c;
  c.algorithm = Algorithm::kFtte;
  c.buffer = 2;
  c.mask = "budget";
  c.frozen = FrozenStorage::kInt8;
  const int64_t budget = LastLayerBudget();
  auto s = Make(c, Inputs(budget));
  const Plan& plan = s->plan();
  EXPECT_LE(plan.device_peak_bytes, budget);
  EXPECT_TRUE(s->Eligible(budget));
  EXPECT_FALSE(s->Eligible(plan.device_peak_bytes - 1));
  const int64_t trained = plan.mask.Numel(s->layout());
  EXPECT_GT(trained, 0);
  EXPECT_LT(trained, static_cast<int64_t>(s->weights().size()));
  // Equal age and samples; variances 1 and 3 -> median (upper) 3: h = 1/(1+1/3), 1/(1+1).
  const std::vector<float> before = s->weights();
  s->Receive(Uniform(*s, 0, 10, 1.0, 1.0f));
  s->Receive(Uniform(*s, 0, 10, 3.0, 3.0f));
  const double h1 = 1 / (1 + 1.0 / 3), h2 = 0.5;
  const double expected = (h1 * 1 + h2 * 3) / (h1 + h2);
  const std::vector<float> moved = Moved(*s, before);
  int64_t changed = 0;
  for (float d : moved) {
    if (d == 0) continue;
    ++changed;
    ASSERT_NEAR(d, expected, 1e-5);
  }
  EXPECT_EQ(changed, trained);
}

TEST(StrategyTest, APlanCacheGivesTheSamePlanForTheSameInputsOnly) {
  ServerConfig c;
  c.algorithm = Algorithm::kFtte;
  c.mask = "budget";
  c.frozen = FrozenStorage::kInt8;
  // A proxy set, so that the planner's trials run (what the cache saves).
  std::vector<float> x(64 * 784);
  std::vector<int32_t> y(64);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7919) % 255) / 255.0f;
  for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<int32_t>(i % 10);
  PlanCache cache;
  PlanningInputs in = Inputs(LastLayerBudget());
  in.proxy = Samples{x.data(), y.data(), 64};
  const auto plain = Make(c, in);
  in.cache = &cache;
  const auto first = Make(c, in);
  EXPECT_EQ(cache.size(), 1u);
  c.use_age = false;  // an ablation plans alike: served from the cache
  const auto second = Make(c, in);
  EXPECT_EQ(cache.size(), 1u);
  for (const Strategy* s : {first.get(), second.get()}) {
    EXPECT_EQ(s->plan().mask, plain->plan().mask);
    EXPECT_EQ(s->plan().client.micro_batch, plain->plan().client.micro_batch);
    EXPECT_EQ(s->plan().device_peak_bytes, plain->plan().device_peak_bytes);
  }
  // Anything the plan depends on makes a new entry.
  in.client.batch = 4;
  Make(c, in);
  in.seed = 2;
  Make(c, in);
  EXPECT_EQ(cache.size(), 3u);
  in.client.optimizer.lr = 1e-7f;  // small learning rates are told apart too
  Make(c, in);
  in.client.optimizer.lr = 2e-7f;
  Make(c, in);
  EXPECT_EQ(cache.size(), 5u);
}

TEST(StrategyTest, FtteAgeWeightAndMaxStaleness) {
  ServerConfig c;
  Update u;
  u.num_samples = 1;
  EXPECT_NEAR(Strategy::FtteWeight(c, u, 3, 0), 0.5, 1e-12);  // (1+3)^-0.5
  c.sample_exponent = 0.5;
  u.num_samples = 16;
  EXPECT_NEAR(Strategy::FtteWeight(c, u, 0, 0), 4.0, 1e-12);
  c.algorithm = Algorithm::kFtte;
  c.buffer = 1;
  c.max_staleness = 1;
  auto s = Make(c);
  s->Receive(Uniform(*s, 0, 1, 0, 1.0f));
  s->Receive(Uniform(*s, 1, 1, 0, 1.0f));
  EXPECT_FALSE(s->Receive(Uniform(*s, 0, 1, 0, 1.0f)));  // tau 2 > 1
  EXPECT_EQ(s->stats().dropped_stale, 1);
  EXPECT_EQ(s->version(), 2);
}

TEST(StrategyTest, FedAsyncMixesEachUpdateAtOnce) {
  ServerConfig c;
  c.algorithm = Algorithm::kFedAsync;
  c.async_alpha = 0.5;
  auto s = Make(c);
  const std::vector<float> before = s->weights();
  EXPECT_TRUE(s->Receive(Uniform(*s, 0, 1, 0, 2.0f)));
  EXPECT_NEAR(Moved(*s, before)[0], 1.0f, 1e-6);
  EXPECT_TRUE(s->Receive(Uniform(*s, 0, 1, 0, 2.0f)));  // tau 1
  EXPECT_NEAR(Moved(*s, before)[0], 1.0f + 0.5f * 2.0f / std::sqrt(2.0f), 1e-5);
}

// Regression (issue 11): an aggregate that is not finite is refused and changes nothing.
TEST(StrategyTest, ANonFiniteAggregationIsRefusedAndNothingChanges) {
  for (Algorithm a : {Algorithm::kFedBuff, Algorithm::kFedAsync, Algorithm::kFtte}) {
    ServerConfig c;
    c.algorithm = a;
    c.buffer = 1;
    c.server_lr = 10;  // 10 x 3e38 overflows float
    auto s = Make(c);
    const std::vector<float> before = s->weights();
    EXPECT_FALSE(s->Receive(Uniform(*s, 0, 1, 0, 3e38f))) << AlgorithmName(a);
    EXPECT_EQ(s->weights(), before);
    EXPECT_EQ(s->version(), 0);
    EXPECT_EQ(s->stats().refused, 1);
    EXPECT_EQ(s->stats().applied, 0);
    EXPECT_TRUE(s->Receive(Uniform(*s, 0, 1, 0, 1e-3f)));  // the next honest one is applied
    EXPECT_EQ(s->version(), 1);
  }
  ServerConfig c;
  c.algorithm = Algorithm::kFedAvg;
  c.server_lr = 10;
  auto s = Make(c);
  const std::vector<float> before = s->weights();
  s->AggregateRound({Uniform(*s, 0, 1, 0, 3e38f), Uniform(*s, 0, 1, 0, 3e38f)});
  EXPECT_EQ(s->weights(), before);
  EXPECT_EQ(s->version(), 0);
  EXPECT_EQ(s->stats().refused, 1);
}

TEST(StrategyTest, ServerMomentum) {
  ServerConfig c;
  c.algorithm = Algorithm::kFtte;
  c.buffer = 1;
  c.server_momentum = 0.5;
  c.use_variance = false;
  auto s = Make(c);
  const std::vector<float> before = s->weights();
  s->Receive(Uniform(*s, 0, 1, 0, 1.0f));
  s->Receive(Uniform(*s, 1, 1, 0, 1.0f));
  EXPECT_NEAR(Moved(*s, before)[0], 1.0f + 1.5f, 1e-5);
}

// Devices report which rows matter; every period FTTE re-plans from what they reported. An
// update trained under the old plan still counts, row by row.
TEST(StrategyTest, FtteReplansFromDeviceImportanceAndTakesUpdatesOfOldPlans) {
  ServerConfig c;
  c.algorithm = Algorithm::kFtte;
  c.buffer = 1;
  c.mask = "budget";
  c.frozen = FrozenStorage::kInt8;
  c.reselect = Reselect::kPeriodic;
  c.reselect_every = 1;
  c.use_variance = false;
  auto s = Make(c, Inputs(LastLayerBudget()));
  const Mask first = s->plan().mask;
  // Report the trained rows as worthless: the next plan trains other rows.
  Update u = Uniform(*s, 0, 1, 0, 0.0f);
  u.row_sq.assign(static_cast<size_t>(first.Rows()), 0.0f);
  s->Receive(u);
  EXPECT_EQ(s->stats().replans, 1);
  EXPECT_EQ(s->plan().id, 1);
  EXPECT_EQ(s->plan().from_version, 1);
  EXPECT_FALSE(s->plan().mask == first);
  EXPECT_EQ(s->PlanAt(0).mask, first);
  // An update based on version 0 is packed over the first plan's mask and is applied there.
  const std::vector<float> before = s->weights();
  Update old = Uniform(*s, 0, 1, 0, 1.0f);
  EXPECT_EQ(old.delta.size(), static_cast<size_t>(first.Numel(s->layout())));
  s->Receive(old);
  const std::vector<float> moved = Moved(*s, before);
  int64_t changed = 0;
  for (float d : moved) changed += d != 0;
  EXPECT_EQ(changed, first.Numel(s->layout()));
}

TEST(StrategyTest, StateRoundTripsWithPlansAndImportance) {
  ServerConfig c;
  c.algorithm = Algorithm::kFtte;
  c.buffer = 2;
  c.mask = "budget";
  c.frozen = FrozenStorage::kInt8;
  c.reselect = Reselect::kRotating;
  c.reselect_every = 1;
  auto a = Make(c, Inputs(LastLayerBudget()));
  for (int i = 0; i < 3; ++i) {
    Update u = Uniform(*a, a->version(), 4, 0.5, 0.01f);
    u.row_sq.assign(static_cast<size_t>(a->PlanAt(a->version()).mask.Rows()), 1.0f + i);
    a->Receive(u);
  }
  auto b = Make(c, Inputs(LastLayerBudget()));
  ASSERT_TRUE(b->Restore(a->State()).ok());
  EXPECT_EQ(b->version(), a->version());
  EXPECT_EQ(b->weights(), a->weights());
  EXPECT_EQ(b->buffered(), 1);
  EXPECT_EQ(b->plan().mask, a->plan().mask);
  // Both continue alike.
  Update u = Uniform(*a, a->version(), 4, 0.5, 0.02f);
  u.row_sq.assign(static_cast<size_t>(a->plan().mask.Rows()), 2.0f);
  a->Receive(u);
  b->Receive(u);
  EXPECT_EQ(b->weights(), a->weights());
  EXPECT_EQ(b->plan().mask, a->plan().mask);
  // A state of another model is refused.
  ServerState bad = a->State();
  bad.weights.pop_back();
  EXPECT_FALSE(b->Restore(bad).ok());
}

// Robust aggregation (issue 11): one update far from the others moves the model by little.
TEST(StrategyTest, MedianAndTrimmedMeanIgnoreOneOutlierCoordinateWise) {
  for (Rule rule : {Rule::kMedian, Rule::kTrimmedMean}) {
    ServerConfig c;
    c.algorithm = Algorithm::kFedBuff;
    c.buffer = 5;
    c.rule = rule;
    c.trim_fraction = 0.2;  // 5 values: drops one at each end
    auto s = Make(c);
    const std::vector<float> before = s->weights();
    for (float v : {1.0f, 2.0f, 3.0f, 4.0f, 1000.0f}) s->Receive(Uniform(*s, 0, 1, 0, v));
    ASSERT_EQ(s->version(), 1);
    // FedBuff's weights (all fresh) sum to 1: median 3, trimmed mean (2 + 3 + 4) / 3 = 3.
    for (float d : Moved(*s, before)) ASSERT_NEAR(d, 3.0f, 1e-4) << RuleName(rule);
  }
}

TEST(StrategyTest, KrumLeavesOutTheUpdateFarthestFromTheRest) {
  ServerConfig c;
  c.algorithm = Algorithm::kFedAvg;
  c.concurrency = 5;
  c.rule = Rule::kKrum;
  c.krum_f = 1;
  auto s = Make(c);
  const std::vector<float> before = s->weights();
  s->AggregateRound({Uniform(*s, 0, 1, 0, 1.0f), Uniform(*s, 0, 1, 0, 1.1f),
                     Uniform(*s, 0, 1, 0, 0.9f), Uniform(*s, 0, 1, 0, 1.0f),
                     Uniform(*s, 0, 1, 0, -50.0f)});
  EXPECT_EQ(s->stats().filtered, 1);
  for (float d : Moved(*s, before)) ASSERT_NEAR(d, 1.0f, 1e-4);  // mean of the four kept
}

TEST(StrategyTest, RobustRulesWorkOnSparseMasksAndLeaveUntrainedRowsAlone) {
  // FTTE's budget plan trains a subset of rows: the median moves those rows and no other.
  ServerConfig c;
  c.algorithm = Algorithm::kFtte;
  c.buffer = 3;
  c.mask = "budget";
  c.frozen = FrozenStorage::kInt8;
  c.rule = Rule::kMedian;
  c.use_variance = false;
  auto s = Make(c, Inputs(LastLayerBudget()));
  const std::vector<float> before = s->weights();
  for (float v : {1.0f, 5.0f, 2.0f}) s->Receive(Uniform(*s, 0, 1, 0, v));
  ASSERT_EQ(s->version(), 1);
  int64_t changed = 0;
  for (float d : Moved(*s, before)) {
    if (d == 0) continue;
    ++changed;
    ASSERT_NEAR(d, 2.0f, 1e-5);
  }
  EXPECT_EQ(changed, s->plan().mask.Numel(s->layout()));
}

TEST(StrategyTest, ClipAndSampleCapBoundAnUpdateRelativeToRecentOnes) {
  ServerConfig c;
  c.algorithm = Algorithm::kFedAsync;
  c.async_alpha = 1;
  c.staleness_exponent = 0;
  c.clip_multiplier = 2;
  c.sample_cap_multiplier = 3;
  auto s = Make(c);
  const double dim = static_cast<double>(s->weights().size());
  // Warm-up: honest updates of norm 0.01 * sqrt(dim), 10 samples each, are left as they are.
  for (int64_t i = 0; i < ServerConfig::kRobustWarmup; ++i) {
    s->Receive(Uniform(*s, s->version(), 10, 0, 0.01f));
  }
  EXPECT_EQ(s->stats().clipped, 0);
  EXPECT_EQ(s->stats().samples_capped, 0);
  // An update 1000x larger (within any fixed bound a server would set) moves by 2x an honest one.
  const std::vector<float> before = s->weights();
  s->Receive(Uniform(*s, s->version(), 1 << 20, 0, 10.0f));
  EXPECT_EQ(s->stats().clipped, 1);
  EXPECT_EQ(s->stats().samples_capped, 1);
  double sq = 0;
  for (float d : Moved(*s, before)) sq += static_cast<double>(d) * d;
  EXPECT_NEAR(std::sqrt(sq), 2 * 0.01 * std::sqrt(dim), 1e-3 * std::sqrt(dim));
  // The window keeps the raw values: state round-trips them, and one outlier moves no median.
  const ServerState st = s->State();
  EXPECT_EQ(st.recent_norms.size(), static_cast<size_t>(ServerConfig::kRobustWarmup + 1));
  EXPECT_EQ(st.recent_samples.back(), 1 << 20);
  auto t = Make(c);
  ASSERT_TRUE(t->Restore(st).ok());
  EXPECT_EQ(t->State().recent_norms, st.recent_norms);
}

TEST(StrategyTest, RobustSettingsThatCannotWorkAreRefusedWithTheFix) {
  ServerConfig c;
  c.algorithm = Algorithm::kFedBuff;
  c.buffer = 4;
  c.rule = Rule::kKrum;
  c.krum_f = 1;
  auto s = Strategy::Create(c, Inputs());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("needs at least 5 updates"), std::string::npos);
  c.rule = Rule::kMedian;
  c.algorithm = Algorithm::kFedAsync;
  s = Strategy::Create(c, Inputs());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("clip_multiplier"), std::string::npos);
  c.algorithm = Algorithm::kFedBuff;
  c.rule = Rule::kTrimmedMean;
  c.trim_fraction = 0.5;
  EXPECT_FALSE(Strategy::Create(c, Inputs()).ok());
  EXPECT_EQ(ParseRule("trimmed_mean").value(), Rule::kTrimmedMean);
  EXPECT_NE(ParseRule("mode").status().message().find("mean, median, trimmed_mean or krum"),
            std::string::npos);
}

// Differential privacy: the clip bounds every update, the aggregate is the age-weighted sum over
// the fixed K with no sample or variance weights, the noise has the calibrated deviation, and
// the accountant charges each device for the aggregations its updates went into.
TEST(StrategyTest, PrivateAggregationClipsWeighsOverKAndAddsCalibratedNoise) {
  ServerConfig c;
  c.algorithm = Algorithm::kFtte;
  c.buffer = 2;
  c.dp_clip = 1.0;
  c.dp_noise_multiplier = 0;  // first without noise: the exact sum
  auto s = Make(c);
  const int64_t n = s->plan().mask.Numel(s->layout());
  const float big = 10.0f / std::sqrt(static_cast<float>(n));  // norm 10: clipped to 1
  const std::vector<float> before = s->weights();
  Update a = Uniform(*s, 0, 1000, 5.0, big), b = Uniform(*s, 0, 1, 0.0, 0.5f / std::sqrt(n));
  a.device = 1;
  b.device = 2;
  s->Receive(a);
  s->Receive(b);
  EXPECT_EQ(s->stats().dp_clipped, 1);
  // (clip(a) + b) / K: a's 1000 samples and variance change nothing.
  const float want = (1.0f / std::sqrt(static_cast<float>(n)) + 0.5f / std::sqrt(n)) / 2;
  for (float d : Moved(*s, before)) ASSERT_NEAR(d, want, 1e-6);
  EXPECT_TRUE(std::isinf(s->PrivacySpent().epsilon));  // no noise: no privacy

  c.dp_noise_multiplier = 2.0;
  auto noisy = Make(c);
  const std::vector<float> start = noisy->weights();
  Update z = Uniform(*noisy, 0, 1, 0, 0.0f);
  z.device = 1;
  noisy->Receive(z);
  z.device = 1;  // the same device twice in one aggregation: its load is 2^2
  noisy->Receive(z);
  double sum = 0, sq = 0;
  for (float d : Moved(*noisy, start)) {
    sum += d;
    sq += static_cast<double>(d) * d;
  }
  const double mean = sum / static_cast<double>(n), sd = std::sqrt(sq / n - mean * mean);
  EXPECT_NEAR(sd, 2.0 * 1.0 / 2, 0.02);  // z * clip / K
  EXPECT_NEAR(mean, 0.0, 0.02);
  const Strategy::Privacy p = noisy->PrivacySpent();
  EXPECT_EQ(p.max_load, 4);
  std::vector<double> orders = DefaultRdpOrders(), rdp;
  for (double o : orders) rdp.push_back(4 * o / (2 * 2.0 * 2.0));
  EXPECT_DOUBLE_EQ(p.epsilon, EpsilonFromRdp(orders, rdp, c.dp_delta).epsilon);
  // The same seed repeats the noise; another changes it.
  auto again = Make(c);
  again->Receive(z);
  again->Receive(z);
  EXPECT_EQ(again->weights(), noisy->weights());
  c.dp_seed = 7;
  auto other = Make(c);
  other->Receive(z);
  other->Receive(z);
  EXPECT_NE(other->weights(), noisy->weights());
}

// A per-device budget: an update that would take its device's load above dp_max_load is refused,
// so no device spends more than the target epsilon.
TEST(StrategyTest, APrivacyBudgetRefusesUpdatesOfDevicesThatSpentIt) {
  ServerConfig c;
  c.algorithm = Algorithm::kFedAsync;
  c.dp_clip = 1;
  c.dp_noise_multiplier = 1;
  c.dp_max_load = 2;
  auto s = Make(c);
  Update u = Uniform(*s, 0, 1, 0, 1e-3f);
  u.device = 5;
  EXPECT_TRUE(s->CanContribute(5));
  s->Receive(u);
  u.base_version = s->version();
  s->Receive(u);
  EXPECT_FALSE(s->CanContribute(5));
  EXPECT_TRUE(s->CanContribute(6));
  u.base_version = s->version();
  EXPECT_FALSE(s->Receive(u));
  EXPECT_EQ(s->version(), 2);
  EXPECT_EQ(s->stats().dp_refused, 1);
  EXPECT_EQ(s->PrivacySpent().max_load, 2);
  // In a buffer, a second update of one device would cost 2^2 - 1 more: refused at load 2.
  c.algorithm = Algorithm::kFedBuff;
  c.buffer = 3;
  c.dp_max_load = 3;
  auto b = Make(c);
  Update v = Uniform(*b, 0, 1, 0, 1e-3f);
  v.device = 1;
  b->Receive(v);
  EXPECT_FALSE(b->Receive(v));  // 1 + (2^2 - 1) = 4 > 3
  EXPECT_EQ(b->stats().dp_refused, 1);
  EXPECT_EQ(b->buffered(), 1);
}

TEST(StrategyTest, PrivacyWorksForFedAsyncAndFedAvgAndRefusesRobustRules) {
  ServerConfig c;
  c.dp_clip = 0.5;
  c.dp_noise_multiplier = 1.0;
  c.algorithm = Algorithm::kFedAsync;
  auto a = Make(c);
  Update u = Uniform(*a, 0, 1, 0, 1.0f);
  u.device = 3;
  for (int i = 0; i < 3; ++i) a->Receive(u);
  EXPECT_EQ(a->stats().dp_load.at(3), 3);  // three aggregations of one update each
  EXPECT_EQ(a->stats().dp_clipped, 3);
  c.algorithm = Algorithm::kFedAvg;
  c.concurrency = 4;
  auto f = Make(c);
  std::vector<Update> round;
  for (int64_t d = 0; d < 3; ++d) {
    round.push_back(Uniform(*f, 0, 10 * (d + 1), 0, 1e-4f));
    round.back().device = d;
  }
  f->AggregateRound(round);
  EXPECT_EQ(f->version(), 1);
  EXPECT_EQ(f->stats().received, 3);
  EXPECT_EQ(f->stats().dp_load.size(), 3u);
  EXPECT_GT(f->PrivacySpent().epsilon, 0);

  ServerConfig bad;
  bad.dp_clip = 1;
  bad.clip_multiplier = 3;
  EXPECT_NE(ValidateServerConfig(bad).message().find("privacy"), std::string::npos);
  bad.clip_multiplier = 0;
  bad.dp_delta = 0;
  EXPECT_NE(ValidateServerConfig(bad).message().find("delta in (0, 1)"), std::string::npos);
}

// Adaptive clipping: the bound moves geometrically towards the target quantile of the update
// norms, the updates' noise rises so that both releases cost one Gaussian mechanism of z, and
// the bound survives State/Restore.
TEST(StrategyTest, AdaptiveClippingFollowsTheQuantileAndSplitsTheNoise) {
  ServerConfig c;
  c.algorithm = Algorithm::kFedBuff;
  c.buffer = 4;
  c.dp_clip = 10;  // far above the norms (all 1)
  c.dp_noise_multiplier = 0;
  c.dp_quantile = 0.5;
  c.dp_quantile_rate = 0.2;
  c.dp_quantile_noise = 1e-9;  // (almost) exact counts: the path is known
  auto s = Make(c);
  const float one = 1.0f / std::sqrt(static_cast<float>(s->plan().mask.Numel(s->layout())));
  auto feed = [&](Strategy& t, int aggregations) {
    for (int a = 0; a < aggregations; ++a) {
      for (int64_t d = 0; d < c.buffer; ++d) {
        Update u = Uniform(t, t.version(), 1, 0, one);
        u.device = d;
        t.Receive(u);
      }
    }
  };
  feed(*s, 1);  // every update within: C <- C exp(-0.2 (1 - 0.5))
  EXPECT_NEAR(s->dp_clip(), 10 * std::exp(-0.1), 1e-6);
  feed(*s, 40);  // ... until it crosses the norms, then it oscillates around them
  EXPECT_GT(s->dp_clip(), std::exp(-0.1) - 1e-6);
  EXPECT_LT(s->dp_clip(), std::exp(0.1) + 1e-6);
  EXPECT_GT(s->stats().dp_clipped, 0);
  // The bound is state: a restored strategy goes on from it.
  auto r = Make(c);
  ASSERT_TRUE(r->Restore(s->State()).ok());
  EXPECT_EQ(r->dp_clip(), s->dp_clip());
  feed(*r, 3);
  feed(*s, 3);
  EXPECT_EQ(r->dp_clip(), s->dp_clip());
  EXPECT_EQ(r->weights(), s->weights());

  // Noise: z^-2 = z_update^-2 + (2 sigma_b)^-2; the default sigma_b is max(K / 20, 2 z).
  c.dp_noise_multiplier = 1;
  c.dp_quantile_noise = 2;
  EXPECT_NEAR(Make(c)->DpUpdateNoise(), 1 / std::sqrt(1 - 1.0 / 16), 1e-12);
  c.dp_quantile_noise = 0;
  EXPECT_EQ(Make(c)->DpQuantileNoise(), 2);
  EXPECT_DOUBLE_EQ(Make(c)->DpQuantileRate(), 0.2);  // the configured rate
  c.dp_quantile_rate = 0;  // the default: 0.2 scaled down by the count's noise over K / 20
  EXPECT_DOUBLE_EQ(Make(c)->DpQuantileRate(), 0.2 * (4.0 / 20) / 2);
  c.buffer = 100;
  EXPECT_EQ(Make(c)->DpQuantileNoise(), 5);
  c.dp_quantile = 0;  // a fixed clip: the noise is z
  EXPECT_EQ(Make(c)->DpUpdateNoise(), 1);
  EXPECT_EQ(Make(c)->DpQuantileNoise(), 0);
  // The accountant is unchanged: a run's epsilon depends on z and the loads only.
  c.dp_quantile = 0.5;
  auto q = Make(c);
  feed(*q, 2);
  auto fixed = c;
  fixed.dp_quantile = 0;
  auto f = Make(fixed);
  feed(*f, 2);
  EXPECT_EQ(q->PrivacySpent().epsilon, f->PrivacySpent().epsilon);

  ServerConfig bad = c;
  bad.dp_quantile_noise = 0.5;  // not above z / 2: no privacy left for the updates
  EXPECT_NE(ValidateServerConfig(bad).message().find("quantile_noise > noise_multiplier / 2"),
            std::string::npos);
  bad.dp_quantile_noise = 0;
  bad.dp_quantile = 1;
  EXPECT_NE(ValidateServerConfig(bad).message().find("adaptive_quantile must be in [0, 1)"),
            std::string::npos);
}

// Distributed DP: devices clip and add z * clip / sqrt(K) each; K shares make the central noise,
// the server adds only what is missing, weights are uniform, and an update longer than clip +
// noise allow is refused.
TEST(StrategyTest, DistributedPrivacyAddsUpToTheCentralNoise) {
  ServerConfig c;
  c.algorithm = Algorithm::kFedBuff;
  c.buffer = 4;
  c.dp_clip = 1;
  c.dp_noise_multiplier = 2;
  c.dp_distributed = true;
  ASSERT_TRUE(ValidateServerConfig(c).ok());
  auto s = Make(c);
  EXPECT_DOUBLE_EQ(s->DpDeviceNoise(), 2.0 * 1 / 2);  // z C / sqrt(K)
  EXPECT_EQ(s->plan().client.dp_clip, 1);
  EXPECT_EQ(s->plan().client.dp_noise_stddev, s->DpDeviceNoise());
  const int64_t n = s->plan().mask.Numel(s->layout());
  // Four devices' zero updates, each noised by its device: the sum's noise is z C / K.
  std::vector<float> before = s->weights();
  for (int64_t d = 0; d < 4; ++d) {
    Update u = Uniform(*s, 0, 1, 0, 0.0f);
    u.device = d;
    u.base_version = s->version();
    PrivatizeUpdate(&u.delta, 1, s->DpDeviceNoise(), DerivedNoiseKey(static_cast<uint64_t>(d)));
    s->Receive(u);
  }
  ASSERT_EQ(s->version(), 1);
  double sq = 0;
  for (float d : Moved(*s, before)) sq += static_cast<double>(d) * d;
  EXPECT_NEAR(std::sqrt(sq / n), 2.0 * 1 / 4, 0.01);
  // Un-noised updates of a full buffer: the server adds nothing (the devices' shares are due),
  // and stale ones weigh as much as fresh ones.
  auto quiet = Make(c);
  before = quiet->weights();
  for (int64_t d = 0; d < 4; ++d) {
    Update u = Uniform(*quiet, 0, 1, 0, 1e-4f);
    u.device = d;
    quiet->Receive(u);
  }
  for (float d : Moved(*quiet, before)) ASSERT_NEAR(d, 1e-4f, 1e-8);
  // A FedAvg round of 4 with 2 updates: the server adds the two missing shares.
  c.algorithm = Algorithm::kFedAvg;
  c.concurrency = 4;
  auto f = Make(c);
  before = f->weights();
  std::vector<Update> round;
  for (int64_t d = 0; d < 2; ++d) {
    round.push_back(Uniform(*f, 0, 1, 0, 0.0f));
    round.back().device = d;
  }
  f->AggregateRound(round);
  sq = 0;
  for (float d : Moved(*f, before)) sq += static_cast<double>(d) * d;
  EXPECT_NEAR(std::sqrt(sq / n), 2.0 * 1 / 4 * std::sqrt(0.5), 0.01);
  // Too long for clip + noise: refused and counted, not aggregated.
  Update huge = Uniform(*quiet, quiet->version(), 1, 0, 2.0f);  // norm 2 sqrt(n): > 1 + noise
  huge.device = 9;
  EXPECT_FALSE(quiet->Receive(huge));
  EXPECT_EQ(quiet->stats().dp_oversized, 1);
  EXPECT_EQ(quiet->buffered(), 0);
  // Not with adaptive clipping.
  ServerConfig bad = c;
  bad.dp_quantile = 0.5;
  EXPECT_NE(ValidateServerConfig(bad).message().find("distributed mode needs"), std::string::npos);
}

TEST(StrategyTest, ParseAlgorithmAndReselect) {
  EXPECT_EQ(ParseAlgorithm("fedbuff").value(), Algorithm::kFedBuff);
  auto bad = ParseAlgorithm("fedprox");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("fedavg, fedasync, fedbuff or ftte"), std::string::npos);
  EXPECT_EQ(ParseReselect("rotating").value(), Reselect::kRotating);
  EXPECT_FALSE(ParseReselect("sometimes").ok());
}

}  // namespace
}  // namespace ftte::fl

namespace ftte::fl {
namespace {

// The cohort sum the members of a secure aggregation would produce: each weighted update
// expanded to model coordinates.
std::vector<float> CohortSum(const Strategy& s, const std::vector<Update>& members,
                             const std::vector<double>& w) {
  std::vector<float> sum(s.weights().size(), 0.0f);
  for (size_t i = 0; i < members.size(); ++i) {
    AddMasked(members[i].delta, static_cast<float>(w[i]), s.PlanAt(members[i].base_version).mask,
              s.layout(), &sum);
  }
  return sum;
}

// Without per-update statistics in play (equal variances), a cohort's secure sum moves the
// model exactly as the same updates through the buffer do, for FedBuff and FTTE, stale members
// and mixed masks included.
TEST(StrategyTest, ACohortSumAggregatesLikeTheBuffer) {
  for (Algorithm a : {Algorithm::kFedBuff, Algorithm::kFtte}) {
    ServerConfig c;
    c.algorithm = a;
    c.buffer = 3;
    c.mask = "budget";
    c.frozen = FrozenStorage::kInt8;
    c.server_momentum = a == Algorithm::kFtte ? 0.5 : 0;
    if (a == Algorithm::kFtte) {  // a new plan after every aggregation: members' masks differ
      c.reselect = Reselect::kRotating;
      c.reselect_every = 1;
    }
    ServerConfig secure = c;
    secure.secure_cohort = 3;
    auto plain = Make(c, Inputs(LastLayerBudget()));
    auto sa = Make(secure, Inputs(LastLayerBudget()));
    for (int round = 0; round < 3; ++round) {
      std::vector<Update> members;
      for (int i = 0; i < 3; ++i) {
        const int64_t base = std::max<int64_t>(0, plain->version() - i);  // ages 0, 1, 2
        Update u = Uniform(*plain, base, 10 + 7 * i, 0.5, 0.01f * static_cast<float>(i + 1));
        u.device = i;
        members.push_back(std::move(u));
      }
      for (const Update& u : members) plain->Receive(u);
      std::vector<Update> known = members;
      for (Update& u : known) u.delta.clear();  // what the server may know of a member
      const std::vector<double> w = sa->CohortWeights(known);
      ASSERT_TRUE(sa->ReceiveCohort(known, w, CohortSum(*sa, members, w)));
      ASSERT_EQ(sa->version(), plain->version());
      for (size_t v = 0; v < sa->weights().size(); ++v) {
        ASSERT_NEAR(sa->weights()[v], plain->weights()[v], 1e-6) << AlgorithmName(a) << " " << v;
      }
    }
    EXPECT_EQ(sa->stats().applied, plain->stats().applied);
    EXPECT_EQ(sa->stats().staleness, plain->stats().staleness);
    if (a == Algorithm::kFtte) {
      EXPECT_GT(sa->stats().replans, 0);
      EXPECT_FALSE(sa->PlanAt(0).mask == sa->plan().mask);
    }
  }
}

TEST(StrategyTest, SecureAggregationRefusesWhatNeedsSingleUpdates) {
  ServerConfig c;
  c.algorithm = Algorithm::kFtte;
  c.buffer = 10;
  c.secure_cohort = 8;
  EXPECT_NE(ValidateServerConfig(c).message().find("set cohort >= buffer"), std::string::npos);
  c.secure_cohort = 12;
  EXPECT_NE(ValidateServerConfig(c).message().find("raise concurrency"), std::string::npos);
  c.secure_cohort = 10;
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  c.rule = Rule::kMedian;
  EXPECT_NE(ValidateServerConfig(c).message().find("never sees"), std::string::npos);
  c.rule = Rule::kMean;
  c.dp_clip = 1;
  c.dp_noise_multiplier = 1;
  EXPECT_NE(ValidateServerConfig(c).message().find("mode = \"distributed\""), std::string::npos);
  c.dp_distributed = true;
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  c.algorithm = Algorithm::kFedAsync;
  EXPECT_NE(ValidateServerConfig(c).message().find("not fedasync"), std::string::npos);
}

TEST(StrategyTest, InitialWeightsStartTheModelAndAreChecked) {
  ServerConfig c;
  c.algorithm = Algorithm::kFedBuff;
  PlanningInputs in = Inputs();
  const int64_t n = TotalNumel(Make(c)->layout());
  in.initial_weights.assign(static_cast<size_t>(n), 0.25f);
  EXPECT_EQ(Make(c, in)->weights(), in.initial_weights);
  in.initial_weights.pop_back();
  auto bad = Strategy::Create(c, in);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("initial weights hold " + std::to_string(n - 1)),
            std::string::npos)
      << bad.status().message();
}

}  // namespace
}  // namespace ftte::fl
