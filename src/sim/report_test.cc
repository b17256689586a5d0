#include "ftte/sim/report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ftte/sim/config.h"

namespace ftte::sim {
namespace {

using ::testing::HasSubstr;
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
  EXPECT_EQ(j["format"], "ftte-sim-results/1");
  EXPECT_EQ(j["config"]["seed"], 0);
  EXPECT_EQ(j["config"]["devices"]["count"], 100);
  EXPECT_EQ(j["config"]["method"].size(), 3u);
  EXPECT_FALSE(j["config"].contains("threads"));
  ASSERT_EQ(j["methods"].size(), 2u);
  const auto& a = j["methods"][0];
  EXPECT_EQ(a["name"], "ftte");
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
  EXPECT_TRUE(j["methods"][1]["time_to_target_s"].is_null());
  EXPECT_EQ(j["methods"][1]["excluded_devices"], 57);
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
  EXPECT_EQ(t["methods"][0]["wall_s"], 99.0);
}

TEST(ReportTest, WrittenFilesAreByteIdenticalAcrossRuns) {
  const fs::path d1 = FreshDir("same1"), d2 = FreshDir("same2");
  const SimConfig c = DefaultSimConfig();
  ReportOptions no_plot;
  no_plot.plot = false;
  ASSERT_TRUE(WriteResults(d1.string(), c, SampleResults(), no_plot).ok());
  ASSERT_TRUE(WriteResults(d2.string(), c, SampleResults(), no_plot).ok());
  for (const char* f : {"results.json", "results.csv", "config.toml", "accuracy.gp"}) {
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
            "method,virtual_s,accuracy,loss,bytes_up,bytes_down,version\n"
            "ftte,0,0.1,2.3,0,100,0\n"
            "ftte,60,0.55,1.2,500,2000,5\n"
            "ftte,120,0.7125,0.8,1000000,3000000,11\n"
            "fedavg,0,0.1,2.3,0,0,0\n"
            "fedavg,120,0.4,1.7,9000000,9000000,3\n");
}

TEST(ReportTest, SummaryTableHasEveryColumn) {
  const std::string t = SummaryTable(SampleResults());
  std::istringstream lines(t);
  std::string header, row1, row2, extra;
  std::getline(lines, header);
  std::getline(lines, row1);
  std::getline(lines, row2);
  EXPECT_FALSE(std::getline(lines, extra));
  for (const char* col : {"method", "final acc", "time to target", "peak dev mem", "upload",
                          "download", "excluded", "updates", "wall s"}) {
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

TEST(ReportTest, PlotScriptHasOneLinePerMethodAndTheTarget) {
  SimConfig c = DefaultSimConfig();
  c.duration_s = 120;
  const std::string gp = PlotScript(c, SampleResults());
  EXPECT_THAT(gp, HasSubstr("set output 'accuracy.svg'"));
  EXPECT_THAT(gp, HasSubstr("$m0 << EOD\n0 10\n60 55\n120 71.25\nEOD\n"));
  EXPECT_THAT(gp, HasSubstr("title 'ftte'"));
  EXPECT_THAT(gp, HasSubstr("title 'fedavg'"));
  EXPECT_THAT(gp, HasSubstr("title 'target 60%'"));
  EXPECT_THAT(gp, HasSubstr("virtual time (s)"));
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
  EXPECT_TRUE(fs::exists(d / "accuracy.gp"));
  EXPECT_TRUE(fs::exists(d / "results.json"));
  EXPECT_FALSE(fs::exists(d / "accuracy.svg"));
  EXPECT_FALSE(fs::exists(d / "accuracy.log"));
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
  EXPECT_FALSE(fs::exists(d / "accuracy.log"));
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
