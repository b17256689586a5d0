#include "ftte/data/partition.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "ftte/core/rng.h"

namespace ftte::data {
namespace {

// Every index in [0, size) appears in exactly one client, and nothing else appears.
void ExpectExactCover(const Partition& p, int64_t size) {
  std::vector<int> seen(static_cast<size_t>(size), 0);
  for (const auto& client : p) {
    for (int64_t i : client) {
      ASSERT_GE(i, 0);
      ASSERT_LT(i, size);
      ++seen[static_cast<size_t>(i)];
    }
  }
  for (int64_t i = 0; i < size; ++i) ASSERT_EQ(seen[static_cast<size_t>(i)], 1) << "index " << i;
}

// `per_class` samples of each of `classes` labels, interleaved (label i % classes).
std::vector<int32_t> BalancedLabels(int64_t per_class, int classes) {
  std::vector<int32_t> labels(static_cast<size_t>(per_class * classes));
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int32_t>(i % classes);
  return labels;
}

std::vector<int32_t> RandomLabels(int64_t n, int classes, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (auto& l : labels) l = static_cast<int32_t>(rng.Below(static_cast<uint64_t>(classes)));
  return labels;
}

int64_t MinSize(const Partition& p) {
  int64_t m = INT64_MAX;
  for (const auto& c : p) m = std::min(m, static_cast<int64_t>(c.size()));
  return m;
}

void ExpectInvalid(const Status& s, const std::vector<std::string>& fragments) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  for (const auto& f : fragments) {
    EXPECT_NE(s.message().find(f), std::string::npos) << "\"" << f << "\" not in: " << s.message();
  }
}

// ---- IID ----

TEST(PartitionIidTest, CoversEveryIndexOnceWithBalancedSizes) {
  auto p = PartitionIid(103, 10, 1);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->size(), 10u);
  ExpectExactCover(*p, 103);
  for (size_t k = 0; k < p->size(); ++k) EXPECT_EQ((*p)[k].size(), k < 3 ? 11u : 10u);
}

TEST(PartitionIidTest, SameSeedSamePartitionDifferentSeedDifferent) {
  EXPECT_EQ(PartitionIid(1000, 7, 42).value(), PartitionIid(1000, 7, 42).value());
  EXPECT_NE(PartitionIid(1000, 7, 42).value(), PartitionIid(1000, 7, 43).value());
}

TEST(PartitionIidTest, ShufflesBeforeDealing) {
  Partition unshuffled(4);
  for (int64_t i = 0; i < 100; ++i) unshuffled[static_cast<size_t>(i % 4)].push_back(i);
  EXPECT_NE(PartitionIid(100, 4, 0).value(), unshuffled);
}

TEST(PartitionIidTest, OneClientPerSampleIsAllowed) {
  auto p = PartitionIid(5, 5, 3);
  ASSERT_TRUE(p.ok());
  ExpectExactCover(*p, 5);
  EXPECT_EQ(MinSize(*p), 1);
}

TEST(PartitionIidTest, RejectsBadArguments) {
  ExpectInvalid(PartitionIid(10, 0, 1).status(), {"clients must be >= 1", "got 0"});
  ExpectInvalid(PartitionIid(10, -3, 1).status(), {"clients", "got -3"});
  ExpectInvalid(PartitionIid(4, 5, 1).status(),
                {"clients (5)", "number of samples (4)", "lower clients"});
  ExpectInvalid(PartitionIid(0, 1, 1).status(), {"number of samples (0)"});
  ExpectInvalid(PartitionIid(-1, 1, 1).status(), {"size must be >= 0"});
}

// ---- Dirichlet ----

TEST(PartitionDirichletTest, CoversEveryIndexOnceAndNoClientIsEmpty) {
  const auto labels = RandomLabels(1000, 10, 7);
  auto p = PartitionDirichlet(labels, 10, 20, 0.5, 1);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->size(), 20u);
  ExpectExactCover(*p, 1000);
  EXPECT_GE(MinSize(*p), 1);
}

TEST(PartitionDirichletTest, SameSeedSamePartitionDifferentSeedDifferent) {
  const auto labels = RandomLabels(2000, 10, 7);
  EXPECT_EQ(PartitionDirichlet(labels, 10, 30, 0.5, 9).value(),
            PartitionDirichlet(labels, 10, 30, 0.5, 9).value());
  EXPECT_NE(PartitionDirichlet(labels, 10, 30, 0.5, 9).value(),
            PartitionDirichlet(labels, 10, 30, 0.5, 10).value());
}

TEST(PartitionDirichletTest, SmallAlphaGivesFewerLabelsPerClientThanLargeAlpha) {
  const auto labels = BalancedLabels(200, 10);
  const PartitionStats skewed =
      Summarize(PartitionDirichlet(labels, 10, 20, 0.1, 5).value(), labels);
  const PartitionStats iidish =
      Summarize(PartitionDirichlet(labels, 10, 20, 100, 5).value(), labels);
  EXPECT_LT(skewed.mean_labels_per_client, 5.0);
  EXPECT_GT(iidish.mean_labels_per_client, 9.5);
  // Large alpha also balances sizes: 2000 / 20 = 100 each, give or take.
  EXPECT_GT(iidish.min_size, 70);
  EXPECT_LT(iidish.max_size, 130);
}

// For one class, a client's share is Beta(alpha, (K - 1) alpha), so the squared coefficient of
// variation of client sizes is (K - 1) / (K alpha + 1). A wrong Gamma shape (e.g. a broken
// alpha < 1 boost) moves it far outside the tolerance.
TEST(PartitionDirichletTest, ClientSizeSpreadMatchesDirichletVariance) {
  const std::vector<int32_t> labels(100000, 0);
  const int64_t k = 1000;
  for (double alpha : {0.3, 1.0, 5.0}) {
    // min_per_client = 0: no redraws, so the sizes follow the Dirichlet exactly.
    auto p = PartitionDirichlet(labels, 1, k, alpha, 11, 0);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    ExpectExactCover(*p, 100000);
    double sum = 0, sum_sq = 0;
    for (const auto& c : *p) {
      sum += static_cast<double>(c.size());
      sum_sq += static_cast<double>(c.size()) * static_cast<double>(c.size());
    }
    const double mean = sum / k;
    const double cv2 = (sum_sq / k - mean * mean) / (mean * mean);
    const double expected = (k - 1.0) / (k * alpha + 1.0);
    EXPECT_NEAR(cv2 / expected, 1.0, 0.25) << "alpha " << alpha << ": cv^2 " << cv2;
  }
}

TEST(PartitionDirichletTest, HonoursMinPerClient) {
  const auto labels = RandomLabels(500, 10, 3);
  auto p = PartitionDirichlet(labels, 10, 50, 0.1, 2, /*min_per_client=*/5);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ExpectExactCover(*p, 500);
  EXPECT_GE(MinSize(*p), 5);
}

// Tiny alpha with many clients: no redraw gives every client 2 samples, so the top-up must.
TEST(PartitionDirichletTest, TopsUpWhenRedrawsCannotMeetTheMinimum) {
  const auto labels = BalancedLabels(100, 2);
  auto p = PartitionDirichlet(labels, 2, 100, 0.01, 4, /*min_per_client=*/2);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ExpectExactCover(*p, 200);
  for (const auto& c : *p) EXPECT_EQ(c.size(), 2u);  // 100 clients * 2 = all 200 samples
  EXPECT_EQ(p.value(), PartitionDirichlet(labels, 2, 100, 0.01, 4, 2).value());
}

TEST(PartitionDirichletTest, SkipsEmptyClassesAndToleratesOneClient) {
  const std::vector<int32_t> labels = {3, 3, 0, 3};  // classes 1 and 2 are empty
  auto p = PartitionDirichlet(labels, 5, 1, 0.5, 1);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ExpectExactCover(*p, 4);
}

TEST(PartitionDirichletTest, SixtyThousandSamplesOverFiveHundredClients) {
  const auto labels = RandomLabels(60000, 10, 1);
  auto p = PartitionDirichlet(labels, 10, 500, 0.5, 2024);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->size(), 500u);
  ExpectExactCover(*p, 60000);
  EXPECT_GE(MinSize(*p), 1);
}

TEST(PartitionDirichletTest, RejectsBadArguments) {
  const auto labels = BalancedLabels(10, 2);  // 20 samples
  ExpectInvalid(PartitionDirichlet(labels, 2, 4, 0.0, 1).status(), {"alpha", "> 0"});
  ExpectInvalid(PartitionDirichlet(labels, 2, 4, -1.0, 1).status(), {"alpha"});
  ExpectInvalid(PartitionDirichlet(labels, 2, 4, std::nan(""), 1).status(), {"alpha"});
  ExpectInvalid(PartitionDirichlet(labels, 2, 4, INFINITY, 1).status(), {"alpha", "finite"});
  ExpectInvalid(PartitionDirichlet(labels, 2, 0, 0.5, 1).status(), {"clients must be >= 1"});
  ExpectInvalid(PartitionDirichlet(labels, 2, 21, 0.5, 1).status(),
                {"clients (21)", "number of samples (20)", "lower clients"});
  ExpectInvalid(
      PartitionDirichlet(labels, 2, 5, 0.5, 1, 5).status(),
      {"min_per_client (5)", "number of samples (20)", "lower clients or min_per_client"});
  ExpectInvalid(PartitionDirichlet(labels, 2, 5, 0.5, 1, -1).status(), {"min_per_client", ">= 0"});
  ExpectInvalid(PartitionDirichlet(labels, 0, 5, 0.5, 1).status(), {"num_classes must be >= 1"});
  ExpectInvalid(PartitionDirichlet({0, 1, 7}, 2, 1, 0.5, 1).status(),
                {"labels[2] = 7", "num_classes=2"});
  ExpectInvalid(PartitionDirichlet({0, -1}, 2, 1, 0.5, 1).status(), {"labels[1] = -1"});
}

// ---- Shards ----

TEST(PartitionShardsTest, CoversEveryIndexOnceWithEqualShards) {
  const auto labels = RandomLabels(1003, 10, 8);
  auto p = PartitionShards(labels, 50, 2, 1);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->size(), 50u);
  ExpectExactCover(*p, 1003);
  // 100 shards of 10 or 11 samples; a client holds two of them.
  for (const auto& c : *p) {
    EXPECT_GE(c.size(), 20u);
    EXPECT_LE(c.size(), 22u);
  }
}

TEST(PartitionShardsTest, AlignedShardsGiveAtMostShardsPerClientLabels) {
  // 10 classes of 100 samples, 200 shards of 5: every shard is single-label.
  const auto labels = BalancedLabels(100, 10);
  for (int64_t per_client : {1, 2, 4}) {
    const Partition p = PartitionShards(labels, 200 / per_client, per_client, 3).value();
    ExpectExactCover(p, 1000);
    for (const auto& c : p) {
      std::vector<bool> has(10, false);
      int distinct = 0;
      for (int64_t i : c) {
        if (!has[static_cast<size_t>(labels[static_cast<size_t>(i)])]) ++distinct;
        has[static_cast<size_t>(labels[static_cast<size_t>(i)])] = true;
      }
      EXPECT_LE(distinct, per_client);
    }
    EXPECT_LE(Summarize(p, labels).mean_labels_per_client, static_cast<double>(per_client));
  }
}

TEST(PartitionShardsTest, UnalignedShardsSpanAtMostTwoLabelsEach) {
  // Classes (~300 samples) are far larger than shards (~30), so a shard straddles at most one
  // class boundary.
  const auto labels = RandomLabels(3000, 10, 4);
  const Partition p = PartitionShards(labels, 50, 2, 6).value();
  for (const auto& c : p) {
    std::vector<bool> has(10, false);
    int distinct = 0;
    for (int64_t i : c) {
      if (!has[static_cast<size_t>(labels[static_cast<size_t>(i)])]) ++distinct;
      has[static_cast<size_t>(labels[static_cast<size_t>(i)])] = true;
    }
    EXPECT_LE(distinct, 2 * 2);
  }
  EXPECT_LT(Summarize(p, labels).mean_labels_per_client, 3.0);
}

TEST(PartitionShardsTest, SameSeedSamePartitionDifferentSeedDifferent) {
  const auto labels = RandomLabels(600, 10, 1);
  EXPECT_EQ(PartitionShards(labels, 30, 2, 5).value(), PartitionShards(labels, 30, 2, 5).value());
  EXPECT_NE(PartitionShards(labels, 30, 2, 5).value(), PartitionShards(labels, 30, 2, 6).value());
}

TEST(PartitionShardsTest, RejectsBadArguments) {
  const auto labels = BalancedLabels(10, 2);  // 20 samples
  ExpectInvalid(PartitionShards(labels, 0, 2, 1).status(), {"clients must be >= 1"});
  ExpectInvalid(PartitionShards(labels, 5, 0, 1).status(), {"shards_per_client must be >= 1"});
  ExpectInvalid(PartitionShards(labels, 5, -2, 1).status(), {"shards_per_client", "got -2"});
  ExpectInvalid(PartitionShards(labels, 7, 3, 1).status(),
                {"clients (7) * shards_per_client (3)", "number of samples (20)",
                 "lower clients or shards_per_client"});
  ExpectInvalid(PartitionShards(labels, 2, INT64_MAX / 2, 1).status(), {"shards_per_client"});
  EXPECT_TRUE(PartitionShards(labels, 10, 2, 1).ok());  // exactly one sample per shard
}

// ---- Natural ----

TEST(PartitionNaturalTest, OneClientPerGroupInOrderOfFirstAppearance) {
  auto p = PartitionNatural({7, 3, 7, 9, 3, -5, 7});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p.value(), (Partition{{0, 2, 6}, {1, 4}, {3}, {5}}));
}

TEST(PartitionNaturalTest, CoversEveryIndexOnce) {
  std::vector<int64_t> groups(1000);
  Rng rng(2);
  for (auto& g : groups) g = static_cast<int64_t>(rng.Below(37)) * 1000003;
  auto p = PartitionNatural(groups);
  ASSERT_TRUE(p.ok());
  ExpectExactCover(*p, 1000);
  EXPECT_EQ(p->size(), 37u);
}

TEST(PartitionNaturalTest, RejectsEmptyInput) {
  ExpectInvalid(PartitionNatural({}).status(), {"group_of_sample is empty"});
}

// ---- By name ----

TEST(PartitionSampleTest, MoreClientsThanSamplesEachWithDistinctSortedDraws) {
  const Partition p = PartitionSample(100, 1000, 7, 3).value();
  ASSERT_EQ(p.size(), 1000u);
  std::vector<int64_t> hits(100, 0);
  for (const auto& mine : p) {
    ASSERT_EQ(mine.size(), 7u);
    EXPECT_TRUE(std::is_sorted(mine.begin(), mine.end()));
    EXPECT_EQ(std::adjacent_find(mine.begin(), mine.end()), mine.end()) << "a repeated sample";
    for (int64_t i : mine) {
      ASSERT_GE(i, 0);
      ASSERT_LT(i, 100);
      ++hits[i];
    }
  }
  // Uniform: 70 draws per sample on average; none far off.
  EXPECT_GT(*std::min_element(hits.begin(), hits.end()), 35);
  EXPECT_LT(*std::max_element(hits.begin(), hits.end()), 110);
  // A client's draw depends on the seed and its index only; all of them at per_client = size.
  EXPECT_EQ(PartitionSample(100, 10, 7, 3).value()[4], p[4]);
  EXPECT_NE(PartitionSample(100, 10, 7, 4).value()[4], p[4]);
  EXPECT_EQ(PartitionSample(5, 2, 5, 1).value()[1], (std::vector<int64_t>{0, 1, 2, 3, 4}));
}

TEST(PartitionSampleTest, RejectsBadArguments) {
  ExpectInvalid(PartitionSample(100, 4, 101, 1).status(), {"1 to 100 samples per client"});
  ExpectInvalid(PartitionSample(100, 4, 0, 1).status(), {"1 to 100"});
  ExpectInvalid(PartitionSample(100, 0, 5, 1).status(), {"clients must be positive"});
  ExpectInvalid(PartitionSample(0, 4, 5, 1).status(), {"empty"});
}

TEST(PartitionByNameTest, DispatchesToThePartitioner) {
  const auto labels = RandomLabels(500, 10, 5);
  EXPECT_EQ(PartitionByName("iid", labels, 10, 8, 3).value(), PartitionIid(500, 8, 3).value());
  EXPECT_EQ(PartitionByName("dirichlet:0.5", labels, 10, 8, 3).value(),
            PartitionDirichlet(labels, 10, 8, 0.5, 3).value());
  EXPECT_EQ(PartitionByName("dirichlet:1e-1", labels, 10, 8, 3).value(),
            PartitionDirichlet(labels, 10, 8, 0.1, 3).value());
  EXPECT_EQ(PartitionByName("shards:2", labels, 10, 8, 3).value(),
            PartitionShards(labels, 8, 2, 3).value());
  EXPECT_EQ(PartitionByName("sample:16", labels, 10, 800, 3).value(),
            PartitionSample(500, 800, 16, 3).value());
}

TEST(PartitionByNameTest, BadSpecsNameTheAcceptedForms) {
  const auto labels = RandomLabels(100, 10, 5);
  const std::vector<std::string> forms = {"\"iid\"", "dirichlet:<alpha>", "dirichlet:0.5",
                                          "shards:<shards_per_client>", "shards:2"};
  for (const std::string spec : {"", "IID", "noniid", "dirichlet", "shards", "iid:2", "random:3"}) {
    const Status s = PartitionByName(spec, labels, 10, 4, 1).status();
    ExpectInvalid(s, forms);
    EXPECT_NE(s.message().find("unknown partition spec \"" + spec + "\""), std::string::npos)
        << s.message();
  }
  for (const std::string spec : {"dirichlet:", "dirichlet:abc", "dirichlet:0.5x", "dirichlet: 1"}) {
    ExpectInvalid(PartitionByName(spec, labels, 10, 4, 1).status(), {"is not a number"});
  }
  for (const std::string spec : {"shards:", "shards:2.5", "shards:two", "sample:", "sample:1.5"}) {
    ExpectInvalid(PartitionByName(spec, labels, 10, 4, 1).status(), {"is not an integer"});
  }
  // Well-formed specs with bad values get the partitioner's own message.
  ExpectInvalid(PartitionByName("dirichlet:0", labels, 10, 4, 1).status(), {"alpha must be"});
  ExpectInvalid(PartitionByName("dirichlet:nan", labels, 10, 4, 1).status(), {"alpha must be"});
  ExpectInvalid(PartitionByName("shards:-1", labels, 10, 4, 1).status(),
                {"shards_per_client must be >= 1"});
  ExpectInvalid(PartitionByName("iid", labels, 10, 0, 1).status(), {"clients must be >= 1"});
}

// ---- Summarize ----

TEST(PartitionSummarizeTest, ComputesSizesAndDistinctLabels) {
  const std::vector<int32_t> labels = {0, 0, 1, 2, 2};
  const PartitionStats s = Summarize({{0, 1, 2}, {3}, {4, 3}}, labels);
  EXPECT_EQ(s.min_size, 1);
  EXPECT_EQ(s.max_size, 3);
  EXPECT_DOUBLE_EQ(s.mean_size, 2.0);
  EXPECT_DOUBLE_EQ(s.mean_labels_per_client, (2.0 + 1.0 + 1.0) / 3.0);
}

TEST(PartitionSummarizeTest, EmptyPartitionIsAllZero) {
  const PartitionStats s = Summarize({}, {});
  EXPECT_EQ(s.min_size, 0);
  EXPECT_EQ(s.max_size, 0);
  EXPECT_EQ(s.mean_size, 0);
  EXPECT_EQ(s.mean_labels_per_client, 0);
}

TEST(PartitionSummarizeDeathTest, IndexOutOfRangeAborts) {
  EXPECT_DEATH(Summarize({{0, 5}}, {0, 1}), "out of range");
}

}  // namespace
}  // namespace ftte::data
