#include "ftte/sim/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace ftte::sim {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kOneMethod[] = "[[method]]\nname = \"ftte\"\n";

// Every key of the schema, each set away from its default.
constexpr char kEveryKey[] = R"(seed = 7
threads = 2
model = "lenet5"
dataset = "fashion-mnist"
data_dir = "/tmp/fmnist"
partition = "shards:2"
train_limit = 5000
test_limit = 1000
duration_s = 900
eval_every_s = 30.5
target_accuracy = 0.75
calibration_samples = 64

[client]
local_epochs = 2
local_steps = 5
batch = 16
lr = 0.1
momentum = 0.5
weight_decay = 0.001
optimizer = "adamw"
frozen = "int8"

[devices]
count = 500
flops_min = 1e9
flops_max = 5e10
memory_min_mib = 16
memory_max_mib = 128.5
uplink_mbps_min = 8
uplink_mbps_max = 40
downlink_mbps_min = 16
downlink_mbps_max = 160
latency_s = 0.2
availability = 0.8
straggler_fraction = 0.9
slowdown_min = 3
slowdown_max = 30
trace_csv = "devices.csv"

[[method]]
name = "ftte-no-age"
algorithm = "ftte"
concurrency = 50
buffer = 20
server_lr = 0.5
server_momentum = 0.9
staleness_exponent = 1.5
variance_lambda = 2
sample_exponent = 0
max_staleness = 40
async_alpha = 0.3
use_age = false
use_variance = false
round_deadline_s = 120
mask = "full"
budget_quantile = 0.1
frozen = "float32"
upload_sparse = false
upload_int8 = true
)";

Result<SimConfig> Parse(const std::string& text) { return ParseSimConfig(text, "exp.toml"); }

std::string ErrorOf(const std::string& text) {
  Result<SimConfig> r = Parse(text);
  EXPECT_FALSE(r.ok()) << "expected an error for:\n" << text;
  return r.ok() ? "" : r.status().message();
}

TEST(ConfigTest, EmptyFileTakesDefaultsButNeedsAMethod) {
  EXPECT_THAT(ErrorOf(""), HasSubstr("no methods"));
  Result<SimConfig> r = Parse(kOneMethod);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const SimConfig& c = r.value();
  const SimConfig d;
  EXPECT_EQ(c.seed, d.seed);
  EXPECT_EQ(c.model, "cnn");
  EXPECT_EQ(c.dataset, "fashion-mnist");
  EXPECT_EQ(c.partition, "dirichlet:0.5");
  EXPECT_EQ(c.test_limit, 2000);
  EXPECT_EQ(c.duration_s, d.duration_s);
  EXPECT_EQ(c.client.batch, d.client.batch);
  EXPECT_EQ(c.population.devices, d.population.devices);
  EXPECT_EQ(c.population.memory_min, d.population.memory_min);
  EXPECT_EQ(c.population.uplink_max, d.population.uplink_max);
  ASSERT_EQ(c.methods.size(), 1u);
  EXPECT_EQ(c.methods[0].name, "ftte");
  EXPECT_EQ(c.methods[0].server.algorithm, fl::Algorithm::kFtte);
}

TEST(ConfigTest, AlgorithmDefaults) {
  Result<SimConfig> r = Parse(
      "[[method]]\nname = \"ftte\"\n[[method]]\nname = \"fedbuff\"\n"
      "[[method]]\nalgorithm = \"fedavg\"\n[[method]]\nname = \"async\"\n"
      "algorithm = \"fedasync\"\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto& m = r.value().methods;
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0].server.mask, "budget");
  EXPECT_EQ(m[0].server.frozen, FrozenStorage::kInt8);
  EXPECT_TRUE(m[0].upload.sparse);
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_EQ(m[i].server.mask, "full") << m[i].name;
    EXPECT_EQ(m[i].server.frozen, FrozenStorage::kFloat32) << m[i].name;
    EXPECT_FALSE(m[i].upload.sparse) << m[i].name;
  }
  EXPECT_EQ(m[1].server.algorithm, fl::Algorithm::kFedBuff);
  EXPECT_EQ(m[2].name, "fedavg");  // the name defaults to the algorithm
  EXPECT_EQ(m[3].server.algorithm, fl::Algorithm::kFedAsync);
}

TEST(ConfigTest, ExplicitSettingsBeatAlgorithmDefaults) {
  Result<SimConfig> r =
      Parse("[[method]]\nname = \"fedbuff\"\nmask = \"budget\"\nupload_sparse = true\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r.value().methods[0].server.mask, "budget");
  EXPECT_TRUE(r.value().methods[0].upload.sparse);
}

TEST(ConfigTest, EveryKey) {
  Result<SimConfig> r = Parse(kEveryKey);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const SimConfig& c = r.value();
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.threads, 2);
  EXPECT_EQ(c.model, "lenet5");
  EXPECT_EQ(c.data_dir, "/tmp/fmnist");
  EXPECT_EQ(c.partition, "shards:2");
  EXPECT_EQ(c.train_limit, 5000);
  EXPECT_EQ(c.test_limit, 1000);
  EXPECT_EQ(c.duration_s, 900);
  EXPECT_EQ(c.eval_every_s, 30.5);
  EXPECT_EQ(c.target_accuracy, 0.75);
  EXPECT_EQ(c.calibration_samples, 64);

  EXPECT_EQ(c.client.local_epochs, 2);
  EXPECT_EQ(c.client.local_steps, 5);
  EXPECT_EQ(c.client.batch, 16);
  EXPECT_FLOAT_EQ(c.client.optimizer.lr, 0.1f);
  EXPECT_FLOAT_EQ(c.client.optimizer.momentum, 0.5f);
  EXPECT_FLOAT_EQ(c.client.optimizer.weight_decay, 0.001f);
  EXPECT_EQ(c.client.optimizer.kind, OptimizerConfig::Kind::kAdamW);
  EXPECT_EQ(c.client.frozen, FrozenStorage::kInt8);

  const PopulationConfig& p = c.population;
  EXPECT_EQ(p.devices, 500);
  EXPECT_EQ(p.flops_min, 1e9);
  EXPECT_EQ(p.flops_max, 5e10);
  EXPECT_EQ(p.memory_min, int64_t{16} << 20);
  EXPECT_EQ(p.memory_max, int64_t{257} << 19);  // 128.5 MiB
  EXPECT_EQ(p.uplink_min, 1e6);                 // 8 megabits/s = 1 MB/s
  EXPECT_EQ(p.uplink_max, 5e6);
  EXPECT_EQ(p.downlink_min, 2e6);
  EXPECT_EQ(p.downlink_max, 20e6);
  EXPECT_EQ(p.latency_s, 0.2);
  EXPECT_EQ(p.availability, 0.8);
  EXPECT_EQ(p.straggler_fraction, 0.9);
  EXPECT_EQ(p.slowdown_min, 3);
  EXPECT_EQ(p.slowdown_max, 30);
  EXPECT_EQ(p.trace_csv, "devices.csv");

  ASSERT_EQ(c.methods.size(), 1u);
  const MethodConfig& m = c.methods[0];
  EXPECT_EQ(m.name, "ftte-no-age");
  EXPECT_EQ(m.server.algorithm, fl::Algorithm::kFtte);
  EXPECT_EQ(m.server.concurrency, 50);
  EXPECT_EQ(m.server.buffer, 20);
  EXPECT_EQ(m.server.server_lr, 0.5);
  EXPECT_EQ(m.server.server_momentum, 0.9);
  EXPECT_EQ(m.server.staleness_exponent, 1.5);
  EXPECT_EQ(m.server.variance_lambda, 2);
  EXPECT_EQ(m.server.sample_exponent, 0);
  EXPECT_EQ(m.server.max_staleness, 40);
  EXPECT_EQ(m.server.async_alpha, 0.3);
  EXPECT_FALSE(m.server.use_age);
  EXPECT_FALSE(m.server.use_variance);
  EXPECT_EQ(m.server.round_deadline_s, 120);
  EXPECT_EQ(m.server.mask, "full");
  EXPECT_EQ(m.budget_quantile, 0.1);
  EXPECT_EQ(m.server.frozen, FrozenStorage::kFloat32);
  EXPECT_FALSE(m.upload.sparse);
  EXPECT_TRUE(m.upload.int8);
}

TEST(ConfigTest, FormatReadsBackToTheSameConfig) {
  for (const SimConfig& c : {Parse(kEveryKey).value(), DefaultSimConfig()}) {
    const std::string text = FormatSimConfig(c);
    Result<SimConfig> back = ParseSimConfig(text, "formatted.toml");
    ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << text;
    EXPECT_EQ(FormatSimConfig(back.value()), text);
    EXPECT_EQ(back.value().population.memory_max, c.population.memory_max);
    EXPECT_EQ(back.value().client.optimizer.lr, c.client.optimizer.lr);
  }
  // Floats are written in their shortest form, never as 0.1000000014901161.
  EXPECT_THAT(FormatSimConfig(Parse(kEveryKey).value()), HasSubstr("\nlr = 0.1\n"));
}

TEST(ConfigTest, AttackAndRobustKeysReadBackAndAreHiddenWhenOff) {
  const char* text =
      "[attack]\nkind = \"sign_flip\"\nfraction = 0.1\nscale = 5\nmax_updates = 1\n"
      "[[method]]\nname = \"fedbuff\"\nbuffer = 5\naggregation = \"krum\"\nkrum_f = 1\n"
      "clip_multiplier = 3\nsample_cap_multiplier = 4\nrobust_window = 50\n"
      "trim_fraction = 0.2\n";
  Result<SimConfig> c = Parse(text);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->attack.kind, "sign_flip");
  EXPECT_EQ(c->attack.max_updates, 1);
  const fl::ServerConfig& s = c->methods[0].server;
  EXPECT_EQ(s.rule, fl::Rule::kKrum);
  EXPECT_EQ(s.clip_multiplier, 3);
  EXPECT_EQ(s.robust_window, 50);
  const std::string formatted = FormatSimConfig(c.value());
  EXPECT_THAT(formatted, HasSubstr("[attack]\nkind = \"sign_flip\""));
  EXPECT_THAT(formatted, HasSubstr("aggregation = \"krum\""));
  EXPECT_EQ(FormatSimConfig(ParseSimConfig(formatted, "x").value()), formatted);
  // Off (the defaults): neither appears, so earlier runs' configs and digests stay the same.
  const std::string plain = FormatSimConfig(Parse("[[method]]\nname = \"fedbuff\"\n").value());
  EXPECT_THAT(plain, Not(HasSubstr("attack")));
  EXPECT_THAT(plain, Not(HasSubstr("aggregation")));
  // Settings that cannot work are refused before any work, naming the fix.
  EXPECT_THAT(ErrorOf("[[method]]\nname = \"fedbuff\"\nbuffer = 4\naggregation = \"krum\"\n"),
              HasSubstr("needs at least 5 updates per aggregation"));
  EXPECT_THAT(ErrorOf("[attack]\nkind = \"scale\"\n[[method]]\nname = \"fedbuff\"\n"),
              HasSubstr("attacks nobody"));
  EXPECT_THAT(ErrorOf("[attack]\nkind = \"backdoor\"\n[[method]]\nname = \"fedbuff\"\n"),
              HasSubstr("label_flip"));
}

TEST(ConfigTest, UnknownKeysNameTheKeyTheTableAndTheAcceptedKeys) {
  std::string e = ErrorOf("[[method]]\nname = \"fedbuff\"\nbuffr = 20\n");
  EXPECT_THAT(e, HasSubstr("exp.toml:3:1"));
  EXPECT_THAT(e, HasSubstr("unknown key 'buffr'"));
  EXPECT_THAT(e, HasSubstr("[[method]] #1 ('fedbuff')"));
  EXPECT_THAT(e, HasSubstr("did you mean 'buffer'?"));
  EXPECT_THAT(e, HasSubstr("accepted keys: name, algorithm, concurrency, buffer"));

  e = ErrorOf(std::string("[devices]\ncuont = 5\n") + kOneMethod);
  EXPECT_THAT(e, HasSubstr("unknown key 'cuont' in [devices]"));
  EXPECT_THAT(e, HasSubstr("did you mean 'count'?"));

  e = ErrorOf(std::string("[client]\nepochs = 5\n") + kOneMethod);
  EXPECT_THAT(e, HasSubstr("unknown key 'epochs' in [client]"));
  EXPECT_THAT(e, HasSubstr("local_epochs"));

  e = ErrorOf(std::string("sed = 1\n") + kOneMethod);
  EXPECT_THAT(e, HasSubstr("exp.toml:1:1: unknown key 'sed' in the top level"));
  EXPECT_THAT(e, HasSubstr("did you mean 'seed'?"));

  e = ErrorOf(std::string("[server]\nx = 1\n") + kOneMethod);
  EXPECT_THAT(e, HasSubstr("unknown key 'server'"));
  EXPECT_THAT(e, HasSubstr("devices"));  // the accepted list names the tables too
}

TEST(ConfigTest, WrongTypesNameTheKeyAndTheExpectedType) {
  std::string e = ErrorOf(std::string("[devices]\ncount = \"many\"\n") + kOneMethod);
  EXPECT_THAT(e, HasSubstr("exp.toml:2:9: devices.count must be an integer"));
  EXPECT_THAT(e, HasSubstr("\"many\""));

  e = ErrorOf(std::string("[devices]\ncount = 100.0\n") + kOneMethod);
  EXPECT_THAT(e, HasSubstr("write 100"));

  e = ErrorOf(std::string("[client]\nlr = \"fast\"\n") + kOneMethod);
  EXPECT_THAT(e, HasSubstr("client.lr must be a number"));

  e = ErrorOf("[[method]]\nname = \"ftte\"\nuse_age = 1\n");
  EXPECT_THAT(e, HasSubstr("use_age must be true or false"));

  e = ErrorOf("[[method]]\nname = 5\n");
  EXPECT_THAT(e, HasSubstr("name must be a string"));

  e = ErrorOf(std::string("client = 3\n") + kOneMethod);
  EXPECT_THAT(e, HasSubstr("client must be a table"));

  e = ErrorOf("[method]\nname = \"ftte\"\n");
  EXPECT_THAT(e, HasSubstr("[[method]] (two brackets)"));
}

TEST(ConfigTest, OutOfRangeValuesNameTheKeyAndTheRange) {
  auto with = [](const std::string& s) { return s + "\n" + kOneMethod; };
  EXPECT_THAT(ErrorOf(with("[devices]\ncount = -3")),
              HasSubstr("devices.count must be in [1, 10000000], got -3"));
  EXPECT_THAT(ErrorOf(with("[devices]\navailability = 1.5")),
              HasSubstr("devices.availability must be in (0, 1], got 1.5"));
  EXPECT_THAT(ErrorOf(with("[devices]\navailability = 0")),
              HasSubstr("devices.availability must be in (0, 1]"));
  EXPECT_THAT(ErrorOf(with("[devices]\nstraggler_fraction = -0.1")),
              HasSubstr("devices.straggler_fraction must be in [0, 1], got -0.1"));
  EXPECT_THAT(ErrorOf(with("[devices]\nslowdown_min = 0.5")),
              HasSubstr("devices.slowdown_min must be >= 1"));
  EXPECT_THAT(ErrorOf(with("[devices]\nmemory_min_mib = 64\nmemory_max_mib = 8")),
              HasSubstr("devices.memory_min_mib is above devices.memory_max_mib"));
  EXPECT_THAT(ErrorOf(with("[devices]\nflops_min = 3e10")),
              HasSubstr("devices.flops_min is above devices.flops_max"));
  EXPECT_THAT(ErrorOf(with("[client]\nmomentum = 1")),
              HasSubstr("client.momentum must be in [0, 1), got 1"));
  EXPECT_THAT(ErrorOf(with("[client]\noptimizer = \"rmsprop\"")),
              HasSubstr("\"sgd\", \"adam\", \"adamw\""));
  EXPECT_THAT(ErrorOf(with("[client]\nlocal_epochs = 0\nlocal_steps = 0")), HasSubstr("both 0"));
  EXPECT_THAT(ErrorOf(with("seed = -1")), HasSubstr("seed must be >= 0"));
  EXPECT_THAT(ErrorOf(with("threads = 0")), HasSubstr("threads must be in [1, 256]"));
  EXPECT_THAT(ErrorOf(with("target_accuracy = 70")),
              HasSubstr("target_accuracy must be in (0, 1]"));
  EXPECT_THAT(ErrorOf(with("duration_s = 60\neval_every_s = 120")),
              HasSubstr("eval_every_s (120) is longer than duration_s (60)"));
  EXPECT_THAT(ErrorOf(with("partition = \"dirichlet:-1\"")),
              HasSubstr("\"dirichlet:A\" with A > 0 (e.g. \"dirichlet:0.5\")"));
  EXPECT_THAT(ErrorOf(with("partition = \"random\"")), HasSubstr("partition must be \"iid\""));
  EXPECT_THAT(ErrorOf(with("dataset = \"mnist\"")), HasSubstr("\"fashion-mnist\", \"cifar10\""));
  EXPECT_THAT(ErrorOf(with("dataset = \"cifar10\"\nmodel = \"resnet8\"")),
              HasSubstr("needs data_dir"));
  EXPECT_THAT(ErrorOf(with("model = \"resnet8\"")),
              HasSubstr("does not take fashion-mnist images"));
  EXPECT_THAT(ErrorOf(with("model = \"gpt5\"")), HasSubstr("model:"));

  EXPECT_THAT(ErrorOf("[[method]]\nname = \"ftte\"\nconcurrency = 0\n"),
              HasSubstr("[[method]] #1 ('ftte'): concurrency must be >= 1, got 0"));
  EXPECT_THAT(ErrorOf("[[method]]\nname = \"ftte\"\nbudget_quantile = 2\n"),
              HasSubstr("budget_quantile must be in [0, 1]"));
  EXPECT_THAT(ErrorOf("[[method]]\nname = \"ftte\"\nmask = \"last\"\n"),
              HasSubstr("\"full\", \"budget\""));
  EXPECT_THAT(ErrorOf("[[method]]\nname = \"ftte\"\nmax_staleness = -2\n"),
              HasSubstr("max_staleness must be >= -1"));
  EXPECT_THAT(ErrorOf("[[method]]\nname = \"a b\"\nalgorithm = \"ftte\"\n"),
              HasSubstr("letters, digits"));
}

TEST(ConfigTest, MethodNamesAndAlgorithms) {
  EXPECT_THAT(ErrorOf("[[method]]\nname = \"mine\"\n"), HasSubstr("needs algorithm ="));
  EXPECT_THAT(ErrorOf("[[method]]\nname = \"x\"\nalgorithm = \"fedprox\"\n"),
              HasSubstr("unknown algorithm 'fedprox'"));
  EXPECT_THAT(ErrorOf("[[method]]\nname = \"ftte\"\n[[method]]\nname = \"ftte\"\n"),
              HasSubstr("two methods are named 'ftte'"));
}

TEST(ConfigTest, SyntaxErrorsGiveLineAndColumn) {
  const std::string e = ErrorOf("seed = 1\n\nthreads = = 2\n");
  EXPECT_THAT(e, HasSubstr("exp.toml:3:"));
  EXPECT_THAT(e, HasSubstr("(TOML syntax)"));
}

TEST(ConfigTest, LoadSimConfigReportsAMissingFile) {
  Result<SimConfig> r = LoadSimConfig("/nonexistent/exp.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("/nonexistent/exp.toml"));
}

TEST(ConfigTest, DefaultSimConfigIsTheReadmeJob) {
  const SimConfig c = DefaultSimConfig();
  EXPECT_TRUE(ValidateSimConfig(c).ok());
  EXPECT_EQ(c.model, "cnn");
  EXPECT_EQ(c.dataset, "fashion-mnist");
  EXPECT_EQ(c.population.devices, 100);
  ASSERT_EQ(c.methods.size(), 3u);
  EXPECT_EQ(c.methods[0].server.algorithm, fl::Algorithm::kFtte);
  EXPECT_EQ(c.methods[1].server.algorithm, fl::Algorithm::kFedBuff);
  EXPECT_EQ(c.methods[2].server.algorithm, fl::Algorithm::kFedAvg);
}

TEST(ConfigTest, ShippedExperimentsParse) {
  const std::filesystem::path dir = std::filesystem::path(FTTE_SOURCE_DIR) / "experiments";
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".toml") continue;
    Result<SimConfig> r = LoadSimConfig(entry.path().string());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    ++n;
  }
  EXPECT_GE(n, 2);
}

TEST(OverrideTest, SetsKeysInEverySection) {
  SimConfig c = DefaultSimConfig();
  const int64_t fedbuff_buffer = c.methods[1].server.buffer;
  ASSERT_TRUE(ApplyOverride(&c, "devices.count", "500").ok());
  ASSERT_TRUE(ApplyOverride(&c, "devices.memory_min_mib", "4").ok());
  ASSERT_TRUE(ApplyOverride(&c, "client.lr", "0.2").ok());
  ASSERT_TRUE(ApplyOverride(&c, "client.optimizer", "\"adam\"").ok());
  ASSERT_TRUE(ApplyOverride(&c, "seed", "42").ok());
  ASSERT_TRUE(ApplyOverride(&c, "partition", "iid").ok());
  ASSERT_TRUE(ApplyOverride(&c, "method.ftte.buffer", "23").ok());
  ASSERT_TRUE(ApplyOverride(&c, "method.ftte.use_age", "false").ok());
  ASSERT_TRUE(ApplyOverride(&c, "method.*.concurrency", "7").ok());
  EXPECT_EQ(c.population.devices, 500);
  EXPECT_EQ(c.population.memory_min, int64_t{4} << 20);
  EXPECT_FLOAT_EQ(c.client.optimizer.lr, 0.2f);
  EXPECT_EQ(c.client.optimizer.kind, OptimizerConfig::Kind::kAdam);
  EXPECT_EQ(c.seed, 42u);
  EXPECT_EQ(c.partition, "iid");
  EXPECT_EQ(c.methods[0].server.buffer, 23);
  EXPECT_FALSE(c.methods[0].server.use_age);
  EXPECT_EQ(c.methods[1].server.buffer, fedbuff_buffer);  // only ftte's changed
  for (const MethodConfig& m : c.methods) EXPECT_EQ(m.server.concurrency, 7) << m.name;
}

TEST(OverrideTest, SettingTheAlgorithmResetsItsDefaults) {
  SimConfig c = DefaultSimConfig();
  ASSERT_TRUE(ApplyOverride(&c, "method.fedavg.algorithm", "ftte").ok());
  EXPECT_EQ(c.methods[2].server.algorithm, fl::Algorithm::kFtte);
  EXPECT_EQ(c.methods[2].server.mask, "budget");
  EXPECT_EQ(c.methods[2].server.frozen, FrozenStorage::kInt8);
  EXPECT_TRUE(c.methods[2].upload.sparse);
}

TEST(OverrideTest, ErrorsLeaveTheConfigUnchanged) {
  SimConfig c = DefaultSimConfig();
  const std::string before = FormatSimConfig(c);
  Status s = ApplyOverride(&c, "devices.count", "lots");
  EXPECT_THAT(s.message(), HasSubstr("devices.count must be an integer, got 'lots'"));
  s = ApplyOverride(&c, "devices.availability", "2");
  EXPECT_THAT(s.message(), HasSubstr("devices.availability must be in (0, 1]"));
  s = ApplyOverride(&c, "devices.cuont", "5");
  EXPECT_THAT(s.message(), HasSubstr("did you mean 'count'?"));
  s = ApplyOverride(&c, "method.fedprox.buffer", "5");
  EXPECT_THAT(s.message(), HasSubstr("no method named 'fedprox' (methods: ftte, fedbuff, fedavg)"));
  s = ApplyOverride(&c, "method.ftte", "5");
  EXPECT_THAT(s.message(), HasSubstr("method.<name>.<key>"));
  s = ApplyOverride(&c, "method.*.buffr", "5");
  EXPECT_THAT(s.message(), HasSubstr("did you mean 'buffer'?"));
  s = ApplyOverride(&c, "duraton_s", "5");
  EXPECT_THAT(s.message(), HasSubstr("did you mean 'duration_s'?"));
  s = ApplyOverride(&c, "method.*.use_age", "maybe");
  EXPECT_THAT(s.message(), HasSubstr("must be true or false"));
  s = ApplyOverride(&c, "duration_s", "inf");
  EXPECT_THAT(s.message(), HasSubstr("finite"));
  EXPECT_EQ(FormatSimConfig(c), before);
}

TEST(FormatDoubleTest, ShortestRoundTrip) {
  EXPECT_EQ(FormatDouble(0.1), "0.1");
  EXPECT_EQ(FormatDouble(3), "3");
  EXPECT_EQ(FormatDouble(2e9), "2e+09");
  EXPECT_EQ(FormatDouble(1.0 / 3), "0.3333333333333333");
  EXPECT_EQ(FormatDouble(-INFINITY), "-inf");
}

}  // namespace
}  // namespace ftte::sim
