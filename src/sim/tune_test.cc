// [tune]: the grid, how a point changes a method, the choice over trials (fake runs), the
// validation split, and the configuration errors.
#include "ftte/sim/tune.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "ftte/data/idx.h"
#include "ftte/sim/config.h"

namespace ftte::sim {
namespace {

using testing::HasSubstr;

constexpr char kTuned[] = R"(
model = "mlp"
duration_s = 600
eval_every_s = 30
target_accuracy = 0.5

[tune]
server_step = [0.5, 2]
batch = [8, 32]
local_steps = [5]
duration_s = 120
validation = 500

[[method]]
name = "ftte"
server_lr = 1.5

[[method]]
name = "fedasync"
async_alpha = 0.6

[[method]]
name = "ftte-no-age"
algorithm = "ftte"
use_age = false
tune_like = "ftte"
)";

SimConfig Tuned() { return ParseSimConfig(kTuned, "tuned.toml").value(); }

std::string ErrorOf(const std::string& toml) {
  Result<SimConfig> r = ParseSimConfig(toml, "exp.toml");
  return r.ok() ? "(accepted)" : r.status().message();
}

TEST(TuneTest, TheGridIsTheProductOfTheListsInOrder) {
  const std::vector<TrialPoint> g = TuneGrid(Tuned().tune);
  ASSERT_EQ(g.size(), 4u);
  EXPECT_EQ(g[0].server_step, 0.5);
  EXPECT_EQ(g[0].batch, 8);
  EXPECT_EQ(g[1].batch, 32);
  EXPECT_EQ(g[2].server_step, 2);
  for (const TrialPoint& p : g) EXPECT_EQ(p.local_steps, 5);
  // Nothing to tune: the configured setting alone.
  const std::vector<TrialPoint> none = TuneGrid(TuneConfig{});
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].server_step, 1);
  EXPECT_EQ(none[0].batch, 0);
}

TEST(TuneTest, APointScalesTheServerStepAndSetsLocalTraining) {
  const SimConfig c = Tuned();
  const MethodConfig ftte = WithPoint(c.methods[0], {2, 8, 5});
  EXPECT_EQ(ftte.server.server_lr, 3.0);
  EXPECT_EQ(ftte.batch, 8);
  EXPECT_EQ(ftte.local_steps, 5);
  // FedAsync's step is alpha, which stays a mixing weight (at most 1).
  EXPECT_DOUBLE_EQ(WithPoint(c.methods[1], {0.5, 0, 0}).server.async_alpha, 0.3);
  EXPECT_EQ(WithPoint(c.methods[1], {2, 0, 0}).server.async_alpha, 1.0);
  EXPECT_EQ(WithPoint(c.methods[1], {2, 0, 0}).batch, 0);  // 0: [client]'s batch
}

TEST(TuneTest, ATrialIsOneMethodOnTheValidationSplitForTheTuningHorizon) {
  SimConfig c = Tuned();
  c.seeds = {3, 4};
  const SimConfig t = TrialConfig(c, c.methods[0], {2, 8, 5}, 1);
  ASSERT_EQ(t.methods.size(), 1u);
  EXPECT_EQ(t.methods[0].name, "tune-ftte-2");
  EXPECT_EQ(t.methods[0].server.server_lr, 3.0);
  EXPECT_TRUE(t.on_validation);
  EXPECT_EQ(t.duration_s, 120);
  EXPECT_EQ(t.seed, 3u);
  EXPECT_TRUE(t.seeds.empty());
}

// Fake trials: the score is higher for a chosen point; every method sees the same grid.
TEST(TuneTest, EachMethodTakesItsBestTrialAndAblationsTakeTheirMethods) {
  const SimConfig c = Tuned();
  std::vector<std::string> ran;
  auto run = [&](const SimConfig& trial, size_t index, size_t total) -> Result<MethodResult> {
    EXPECT_EQ(total, 8u);  // 2 methods tune (4 points each); the ablation has no trials
    EXPECT_EQ(index, ran.size());
    ran.push_back(trial.methods[0].name);
    MethodResult r;
    const MethodConfig& m = trial.methods[0];
    // FTTE is best at batch 8, step x2; FedAsync ties everywhere (the first point wins).
    const bool best =
        m.server.algorithm == fl::Algorithm::kFtte && m.batch == 8 && m.server.server_lr == 3.0;
    const double acc = m.server.algorithm == fl::Algorithm::kFtte ? (best ? 0.8 : 0.4) : 0.6;
    r.series = {{0, 0.1}, {60, acc}, {120, acc}};
    r.final_accuracy = acc;
    r.targets = TargetTimes(r.series, {0.5}, false);
    return r;
  };
  Result<std::vector<MethodTuning>> t = Tune(c, run);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(ran.front(), "tune-ftte-1");
  EXPECT_EQ(ran.back(), "tune-fedasync-4");
  ASSERT_EQ(t.value().size(), 3u);
  EXPECT_EQ(t.value()[0].chosen.batch, 8);
  EXPECT_EQ(t.value()[0].chosen.server_step, 2);
  EXPECT_EQ(t.value()[0].trials.size(), 4u);
  EXPECT_NEAR(t.value()[0].trials[2].score, (0.1 + 0.8 + 0.8) / 3, 1e-12);
  EXPECT_EQ(t.value()[1].chosen.server_step, 0.5);  // ties: the earlier point
  EXPECT_EQ(t.value()[1].chosen.batch, 8);
  EXPECT_TRUE(t.value()[2].trials.empty());
  EXPECT_EQ(t.value()[2].chosen.batch, 8);  // as ftte
  EXPECT_TRUE(CheckTargetReached(c, t.value()).ok());

  const SimConfig applied = ApplyTuning(c, t.value());
  EXPECT_FALSE(applied.tune.Enabled());
  EXPECT_EQ(applied.methods[0].server.server_lr, 3.0);
  EXPECT_EQ(applied.methods[2].server.server_lr, 2.0);  // its own server_lr (1) x 2
  EXPECT_FALSE(applied.methods[2].server.use_age);
  EXPECT_TRUE(applied.methods[2].tune_like.empty());
  // The applied config is a file that reruns the measured runs without tuning.
  const std::string text = FormatSimConfig(applied);
  EXPECT_THAT(text, testing::Not(HasSubstr("[tune]")));
  EXPECT_THAT(text, HasSubstr("batch = 8"));
  ASSERT_TRUE(ParseSimConfig(text, "applied.toml").ok());

  const std::string json = TuningJson(c, t.value());
  EXPECT_THAT(json, HasSubstr("\"format\": \"ftte-sim-tuning/1\""));
  EXPECT_THAT(json, HasSubstr("\"tune_like\": \"ftte\""));
  EXPECT_THAT(json, HasSubstr("\"server_lr\": 3.0"));
}

TEST(TuneTest, ATargetNoTrialReachedIsRefused) {
  SimConfig c = Tuned();
  auto run = [](const SimConfig&, size_t, size_t) -> Result<MethodResult> {
    MethodResult r;
    r.series = {{0, 0.1}, {60, 0.3}};
    r.final_accuracy = 0.3;
    r.targets = TargetTimes(r.series, {0.5}, false);
    return r;
  };
  Result<std::vector<MethodTuning>> t = Tune(c, run);
  ASSERT_TRUE(t.ok());
  const Status s = CheckTargetReached(c, t.value());
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("best ended at 0.3"));
  EXPECT_THAT(s.message(), HasSubstr("lower target_accuracy"));
}

TEST(TuneTest, ATrialErrorNamesTheMethodAndThePoint) {
  auto run = [](const SimConfig&, size_t, size_t) -> Result<MethodResult> {
    return InvalidArgument("boom");
  };
  Result<std::vector<MethodTuning>> t = Tune(Tuned(), run);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("tuning ftte (server step x0.5, batch 8"));
  EXPECT_THAT(t.status().message(), HasSubstr("boom"));
}

TEST(TuneTest, ConfigsThatCannotTuneFairlyAreRefusedWithTheFix) {
  const std::string method = "[[method]]\nname = \"ftte\"\n";
  EXPECT_THAT(ErrorOf("[tune]\nbatch = [8]\n" + method), HasSubstr("needs validation > 0"));
  EXPECT_THAT(ErrorOf("[tune]\nbatch = [0]\n" + method), HasSubstr("integers in [1, 65536]"));
  EXPECT_THAT(ErrorOf("[tune]\nserver_step = [-1]\n" + method), HasSubstr("numbers > 0"));
  EXPECT_THAT(ErrorOf(method + "tune_like = \"fedbuff\"\n"), HasSubstr("names no other method"));
  EXPECT_THAT(ErrorOf("eval_every_s = 60\n[tune]\nbatch = [8]\nvalidation = 10\nduration_s = "
                      "30\n" +
                      method),
              HasSubstr("a trial would never be scored"));
  // --set reaches [tune] too.
  SimConfig c = Tuned();
  ASSERT_TRUE(ApplyOverride(&c, "tune.batch", "[4, 16]").ok());
  EXPECT_EQ(c.tune.batch, (std::vector<int64_t>{4, 16}));
}

TEST(TuneTest, TheValidationSplitIsCarvedFromTrainingDataNotTheTestSet) {
  if (!std::filesystem::exists(std::filesystem::path(data::kFashionMnistDir) /
                               "train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "Fashion-MNIST is not installed (scripts/setup.sh installs it)";
  }
  SimConfig c = Tuned();
  c.train_limit = 2000;
  c.test_limit = 300;
  c.population.devices = 10;
  const Environment plain = MakeEnvironment(c).value();
  c.on_validation = true;
  const Environment val = MakeEnvironment(c).value();
  EXPECT_EQ(val.test.size, 500);
  EXPECT_EQ(val.train.size, 1500);
  // Every validation sample is a training sample that no device holds any more.
  const size_t pixels = static_cast<size_t>(28 * 28);
  std::set<std::vector<float>> train, test;
  auto image = [&](const data::ImageDataset& d, int64_t i) {
    const float* p = d.images.data() + static_cast<size_t>(i) * pixels;
    return std::vector<float>(p, p + pixels);
  };
  for (int64_t i = 0; i < plain.train.size; ++i) train.insert(image(plain.train, i));
  for (int64_t i = 0; i < plain.test.size; ++i) test.insert(image(plain.test, i));
  std::set<std::vector<float>> kept;
  for (int64_t i = 0; i < val.train.size; ++i) kept.insert(image(val.train, i));
  int64_t from_test = 0;
  for (int64_t i = 0; i < val.test.size; ++i) {
    const std::vector<float> v = image(val.test, i);
    EXPECT_TRUE(train.count(v)) << i;
    EXPECT_FALSE(kept.count(v)) << i;
    from_test += static_cast<int64_t>(test.count(v));
  }
  EXPECT_EQ(from_test, 0);
  int64_t held = 0;
  for (const auto& p : val.partition) held += static_cast<int64_t>(p.size());
  EXPECT_EQ(held, 1500);
  // Too large a split is refused.
  c.tune.validation = 2000;
  EXPECT_THAT(MakeEnvironment(c).status().message(), HasSubstr("leaves no training data"));
}

}  // namespace
}  // namespace ftte::sim
