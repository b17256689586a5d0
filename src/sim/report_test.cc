#include "ftte/sim/report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ftte/sim/config.h"

namespace ftte::sim {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace fs = std::filesystem;

std::vector<MethodResult> SampleResults() {
  MethodResult a;
  a.name = "ftte";
  a.algorithm = "ftte";
  a.final_accuracy = 0.7125;
  a.time_to_target_s = 480;
  a.peak_device_memory_bytes = 5 << 20;
  a.predicted_device_memory_bytes = 5 << 20;
  a.budget_bytes = 8 << 20;
  a.trainable_params = 12345;
  a.bytes_up = 1000000;
  a.bytes_down = 3000000;
  a.excluded_devices = 0;
  a.updates_received = 120;
  a.updates_applied = 110;
  a.dropped_stale = 10;
  a.versions = 11;
  a.staleness = {{0, 50}, {1, 40}, {3, 20}};
  a.wall_s = 12.5;
  a.series = {{0, 0.1, 2.3, 0, 100, 0},
              {60, 0.55, 1.2, 500, 2000, 5},
              {120, 0.7125, 0.8, 1000000, 3000000, 11}};
  a.targets = {{0.6, 120.0, std::nullopt, 480.0, 1000000}};
  MethodResult b;
  b.name = "fedavg";
  b.algorithm = "fedavg";
  b.final_accuracy = 0.4;
  b.peak_device_memory_bytes = 26 << 20;
  b.bytes_up = 9000000;
  b.bytes_down = 9000000;
  b.excluded_devices = 57;
  b.updates_applied = 30;
  b.wall_s = 3.25;
  b.series = {{0, 0.1, 2.3, 0, 0, 0}, {120, 0.4, 1.7, 9000000, 9000000, 3}};
  b.targets = {{0.6, std::nullopt, std::nullopt, std::nullopt, std::nullopt}};
  return {a, b};
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

fs::path FreshDir(const std::string& name) {
  const fs::path d = fs::path(::testing::TempDir()) / ("ftte_report_" + name);
  fs::remove_all(d);
  return d;
}

TEST(ReportTest, ResultsJsonHoldsEveryField) {
  const SimConfig config = DefaultSimConfig();
  const auto j = nlohmann::json::parse(ResultsJson(config, SampleResults()));
  EXPECT_EQ(j["format"], "ftte-sim-results/2");
  EXPECT_EQ(j["config"]["seed"], 0);
  EXPECT_EQ(j["config"]["devices"]["count"], 100);
  EXPECT_EQ(j["config"]["method"].size(), 3u);
  EXPECT_FALSE(j["config"].contains("threads"));
  EXPECT_EQ(j["seeds"], nlohmann::json::array({0}));
  ASSERT_EQ(j["methods"].size(), 2u);
  const auto& m = j["methods"][0];
  EXPECT_EQ(m["name"], "ftte");
  EXPECT_EQ(m["summary"]["final_accuracy"]["mean"], 0.7125);
  EXPECT_EQ(m["summary"]["final_accuracy"]["n"], 1);
  EXPECT_EQ(m["summary"]["time_to_target_s"]["reached"], 1);
  ASSERT_EQ(m["runs"].size(), 1u);
  const auto& a = m["runs"][0];
  EXPECT_EQ(a["seed"], 0);
  EXPECT_EQ(a["final_accuracy"], 0.7125);
  EXPECT_EQ(a["time_to_target_s"], 480.0);
  EXPECT_EQ(a["peak_device_memory_bytes"], 5 << 20);
  EXPECT_EQ(a["bytes_up"], 1000000);
  EXPECT_EQ(a["bytes_down"], 3000000);
  EXPECT_EQ(a["updates_applied"], 110);
  EXPECT_EQ(a["dropped_stale"], 10);
  EXPECT_EQ(a["staleness"][2]["tau"], 3);
  EXPECT_EQ(a["staleness"][2]["count"], 20);
  ASSERT_EQ(a["series"].size(), 3u);
  EXPECT_EQ(a["series"][1]["t"], 60.0);
  EXPECT_EQ(a["series"][1]["accuracy"], 0.55);
  EXPECT_EQ(a["series"][1]["version"], 5);
  EXPECT_FALSE(a.contains("wall_s"));
  EXPECT_TRUE(j["methods"][1]["runs"][0]["time_to_target_s"].is_null());
  EXPECT_EQ(j["methods"][1]["summary"]["time_to_target_s"]["reached"], 0);
  EXPECT_EQ(j["methods"][1]["runs"][0]["excluded_devices"], 57);
}

// Three seeds: the mean and Student's 95% half-width (t = 4.303 for 2 degrees of freedom).
TEST(ReportTest, SeedsAreSummarisedWithMeanAndInterval) {
  std::vector<MethodResult> runs;
  for (int s = 0; s < 3; ++s) {
    MethodResult r = SampleResults()[0];
    r.seed = static_cast<uint64_t>(s);
    r.final_accuracy = 0.70 + 0.01 * s;  // 0.70, 0.71, 0.72: sd 0.01
    r.time_to_target_s = s == 2 ? std::nullopt : std::optional<double>(400 + 100 * s);
    runs.push_back(r);
  }
  SimConfig c = DefaultSimConfig();
  c.seeds = {0, 1, 2};
  const auto j = nlohmann::json::parse(ResultsJson(c, runs));
  EXPECT_EQ(j["seeds"], nlohmann::json::array({0, 1, 2}));
  const auto& acc = j["methods"][0]["summary"]["final_accuracy"];
  EXPECT_NEAR(acc["mean"].get<double>(), 0.71, 1e-12);
  EXPECT_NEAR(acc["ci95"].get<double>(), 4.303 * 0.01 / std::sqrt(3.0), 1e-9);
  EXPECT_EQ(acc["n"], 3);
  const auto& held = j["methods"][0]["summary"]["time_to_target_s"];
  EXPECT_EQ(held["reached"], 2);
  EXPECT_NEAR(held["mean"].get<double>(), 450, 1e-9);
  EXPECT_EQ(j["methods"][0]["runs"].size(), 3u);
  const std::string table = SummaryTable(runs);
  EXPECT_THAT(table, HasSubstr("71.00+-2.48%"));
  EXPECT_THAT(table, HasSubstr("7.5 min (2/3)"));
  EXPECT_THAT(table, HasSubstr("means over 3 seeds"));
  const Stat one = Summarize95({5});
  EXPECT_EQ(one.mean, 5);
  EXPECT_EQ(one.ci95, 0);
}

// First crossing, three-evaluation moving average, and held (stays above until the end).
TEST(ReportTest, TargetTimesThreeWays) {
  std::vector<SeriesPoint> s;
  const double acc[] = {0.1, 0.62, 0.40, 0.58, 0.65, 0.61, 0.64};
  for (int i = 0; i < 7; ++i) s.push_back({30.0 * i, acc[i], 0, 100 * i, 0, i});
  const std::vector<TargetTime> t = TargetTimes(s, {0.6, 0.9}, false);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].first_s, 30);      // 0.62 at t=30, then it fell back
  EXPECT_EQ(t[0].smoothed_s, 150);  // (0.58 + 0.65 + 0.61) / 3 at t=150
  EXPECT_EQ(t[0].held_s, 120);      // from 0.65 on, never below 0.6 again
  EXPECT_EQ(t[0].bytes_up_at_held, 400);
  EXPECT_FALSE(t[1].first_s || t[1].smoothed_s || t[1].held_s);
}

TEST(ReportTest, ResultsJsonIsByteIdenticalWhateverTheThreadsAndWallTimes) {
  SimConfig c1 = DefaultSimConfig();
  SimConfig c2 = c1;
  c2.threads = 2;
  std::vector<MethodResult> r1 = SampleResults(), r2 = SampleResults();
  r2[0].wall_s = 99;
  r2[1].wall_s = 0.001;
  EXPECT_EQ(ResultsJson(c1, r1), ResultsJson(c1, SampleResults()));
  EXPECT_EQ(ResultsJson(c1, r1), ResultsJson(c2, r2));
  EXPECT_EQ(ResultsCsv(r1), ResultsCsv(r2));
  // ... while a real difference shows.
  r2[0].series[1].accuracy = 0.56;
  EXPECT_NE(ResultsJson(c1, r1), ResultsJson(c1, r2));
  // Wall times and threads live in timing.json.
  const auto t = nlohmann::json::parse(TimingJson(c2, r2));
  EXPECT_EQ(t["threads"], 2);
  EXPECT_EQ(t["runs"][0]["wall_s"], 99.0);
}

// What --resume reads back gives the same results files as the uninterrupted run.
TEST(ReportTest, RunFilesRoundTripAndBelongToTheirConfiguration) {
  const SimConfig c = DefaultSimConfig();
  std::vector<MethodResult> back;
  for (const MethodResult& r : SampleResults()) {
    Result<MethodResult> parsed = ParseRunFile(RunFileText(c, r), c, "runs/x.json");
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    back.push_back(parsed.value());
  }
  EXPECT_EQ(ResultsJson(c, back), ResultsJson(c, SampleResults()));
  EXPECT_EQ(ResultsCsv(back), ResultsCsv(SampleResults()));
  // The wall time comes back too, so timing.json after a resume is not zeros.
  EXPECT_EQ(TimingJson(c, back), TimingJson(c, SampleResults()));
  EXPECT_EQ(back[0].wall_s, 12.5);
  // Another configuration: refused, naming the way out. Threads and seeds do not count.
  SimConfig other = c;
  other.duration_s += 1;
  Result<MethodResult> wrong = ParseRunFile(RunFileText(c, SampleResults()[0]), other, "r.json");
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.status().message(), HasSubstr("another configuration"));
  EXPECT_THAT(wrong.status().message(), HasSubstr("--resume"));
  SimConfig more_threads = c;
  more_threads.threads = 2;
  more_threads.seeds = {0, 5};
  EXPECT_TRUE(ParseRunFile(RunFileText(c, SampleResults()[0]), more_threads, "r.json").ok());
  EXPECT_FALSE(ParseRunFile("{\"format\": \"ftte-sim-run/1\", \"conf", c, "r.json").ok());
  EXPECT_EQ(RunFileName("ftte", 3), "ftte-seed3.json");
}

TEST(ReportTest, WrittenFilesAreByteIdenticalAcrossRuns) {
  const fs::path d1 = FreshDir("same1"), d2 = FreshDir("same2");
  const SimConfig c = DefaultSimConfig();
  ReportOptions no_plot;
  no_plot.plot = false;
  ASSERT_TRUE(WriteResults(d1.string(), c, SampleResults(), no_plot).ok());
  ASSERT_TRUE(WriteResults(d2.string(), c, SampleResults(), no_plot).ok());
  for (const char* f : {"results.json", "results.csv", "config.toml", "plots.gp"}) {
    EXPECT_FALSE(ReadFile(d1 / f).empty()) << f;
    EXPECT_EQ(ReadFile(d1 / f), ReadFile(d2 / f)) << f;
  }
  // config.toml reads back to the same configuration.
  Result<SimConfig> back = LoadSimConfig((d1 / "config.toml").string());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(FormatSimConfig(back.value()), FormatSimConfig(c));
}

TEST(ReportTest, CsvHasOneRowPerSeriesPoint) {
  const std::string csv = ResultsCsv(SampleResults());
  EXPECT_EQ(csv,
            "method,seed,virtual_s,accuracy,loss,bytes_up,bytes_down,version\n"
            "ftte,0,0,0.1,2.3,0,100,0\n"
            "ftte,0,60,0.55,1.2,500,2000,5\n"
            "ftte,0,120,0.7125,0.8,1000000,3000000,11\n"
            "fedavg,0,0,0.1,2.3,0,0,0\n"
            "fedavg,0,120,0.4,1.7,9000000,9000000,3\n");
}

TEST(ReportTest, SummaryTableHasEveryColumn) {
  const std::string t = SummaryTable(SampleResults());
  std::istringstream lines(t);
  std::string header, row1, row2, extra;
  std::getline(lines, header);
  std::getline(lines, row1);
  std::getline(lines, row2);
  EXPECT_FALSE(std::getline(lines, extra));
  for (const char* col : {"method", "final acc", "target held at", "peak dev mem", "up/update",
                          "upload", "download", "excluded", "updates", "wall s"}) {
    EXPECT_THAT(header, HasSubstr(col));
  }
  EXPECT_THAT(row1, HasSubstr("ftte"));
  EXPECT_THAT(row1, HasSubstr("71.25%"));
  EXPECT_THAT(row1, HasSubstr("8.0 min"));
  EXPECT_THAT(row1, HasSubstr("5.00 MiB"));
  EXPECT_THAT(row1, HasSubstr("110"));
  EXPECT_THAT(row1, HasSubstr("12.5"));
  EXPECT_THAT(row2, HasSubstr("fedavg"));
  EXPECT_THAT(row2, HasSubstr("never"));
  EXPECT_THAT(row2, HasSubstr("26.00 MiB"));
  EXPECT_THAT(row2, HasSubstr("57"));
  // Fixed width: every line is as long as the header.
  EXPECT_EQ(row1.size(), header.size());
  EXPECT_EQ(row2.size(), header.size());
}

TEST(ReportTest, PlotScriptHasCurvesBandsTargetsAndThreePlots) {
  SimConfig c = DefaultSimConfig();
  c.duration_s = 120;
  c.targets = {0.5};
  std::string gp = PlotScript(c, SampleResults());
  for (const char* out : {"accuracy.svg", "accuracy-vs-upload.svg", "accuracy-vs-memory.svg"}) {
    EXPECT_THAT(gp, HasSubstr(std::string("set output '") + out + "'"));
  }
  EXPECT_THAT(gp, HasSubstr("$time0 << EOD\n0 10 10 10\n1 55 55 55\n2 71.25 71.25 71.25\nEOD\n"));
  EXPECT_THAT(gp, HasSubstr("with linespoints"));  // markers
  EXPECT_THAT(gp, HasSubstr("title 'ftte'"));
  EXPECT_THAT(gp, HasSubstr("title 'fedavg'"));
  EXPECT_THAT(gp, HasSubstr("title 'target 60%'"));
  EXPECT_THAT(gp, HasSubstr("title 'target 50%'"));
  EXPECT_THAT(gp, HasSubstr("virtual time (min)"));
  EXPECT_THAT(gp, Not(HasSubstr("filledcurves")));  // one seed: no band
  c.seeds = {0, 1};
  std::vector<MethodResult> two = SampleResults();
  two.push_back(two[0]);
  two.back().seed = 1;
  gp = PlotScript(c, two);
  EXPECT_THAT(gp, HasSubstr("filledcurves"));
  EXPECT_THAT(gp, HasSubstr("mean of 2 seeds"));
}

TEST(ReportTest, MissingGnuplotIsAWarningNotAnError) {
  const fs::path d = FreshDir("nognuplot");
  ReportOptions o;
  o.gnuplot = "ftte-test-no-such-gnuplot";
  std::vector<std::string> warnings;
  Status s = WriteResults(d.string(), DefaultSimConfig(), SampleResults(), o, &warnings);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("install gnuplot"));
  EXPECT_TRUE(fs::exists(d / "plots.gp"));
  EXPECT_TRUE(fs::exists(d / "results.json"));
  EXPECT_FALSE(fs::exists(d / "accuracy.svg"));
  EXPECT_FALSE(fs::exists(d / "plots.log"));
}

TEST(ReportTest, FailingGnuplotIsAWarningWithItsOutput) {
  const fs::path d = FreshDir("badgnuplot");
  ReportOptions o;
  o.gnuplot = "false";  // runs, fails
  std::vector<std::string> warnings;
  ASSERT_TRUE(WriteResults(d.string(), DefaultSimConfig(), SampleResults(), o, &warnings).ok());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("failed"));
  EXPECT_THAT(warnings[0], HasSubstr("exit 1"));
}

TEST(ReportTest, GnuplotDrawsTheSvg) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) GTEST_SKIP() << "no gnuplot";
  const fs::path d = FreshDir("svg");
  std::vector<std::string> warnings;
  ASSERT_TRUE(WriteResults(d.string(), DefaultSimConfig(), SampleResults(), {}, &warnings).ok());
  EXPECT_TRUE(warnings.empty()) << warnings[0];
  EXPECT_THAT(ReadFile(d / "accuracy.svg"), HasSubstr("<svg"));
  EXPECT_FALSE(fs::exists(d / "plots.log"));
}

TEST(ReportTest, UnwritableFolderIsAnIoError) {
  const fs::path d = FreshDir("blocked");
  fs::create_directories(d);
  std::ofstream(d / "file") << "x";
  Status s = WriteResults((d / "file" / "out").string(), DefaultSimConfig(), SampleResults());
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_THAT(s.message(), HasSubstr("file/out"));
}

}  // namespace
}  // namespace ftte::sim
