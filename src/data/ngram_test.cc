#include "ftte/data/ngram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <tuple>

#include "ftte/core/rng.h"

namespace ftte::data {
namespace {

// lm_data.h's layout: a stream cut into samples of t ids, x = ids, labels = the next ids, the
// last sample padded with label -1.
ImageDataset Samples(const std::vector<int32_t>& stream, int64_t t, int vocab) {
  ImageDataset d;
  d.channels = d.height = 1;
  d.width = static_cast<int>(t);
  d.num_classes = vocab;
  d.labels_per_sample = t;
  for (size_t at = 0; at + 1 < stream.size(); at += static_cast<size_t>(t)) {
    for (int64_t k = 0; k < t; ++k) {
      const size_t i = at + static_cast<size_t>(k);
      const bool in = i + 1 < stream.size();
      d.images.push_back(in ? static_cast<float>(stream[i]) : 0.0f);
      d.labels.push_back(in ? stream[i + 1] : -1);
    }
    ++d.size;
  }
  return d;
}

std::vector<int32_t> RandomStream(uint64_t seed, size_t n, int vocab) {
  Rng rng(seed);
  std::vector<int32_t> s(n);
  // Skewed, with structure: the next id depends on the previous one half of the time.
  for (size_t i = 0; i < n; ++i) {
    const auto r = static_cast<int32_t>(rng.Next() % static_cast<uint64_t>(vocab));
    s[i] = i > 0 && rng.Next() % 2 == 0 ? (s[i - 1] * 7 + 3) % vocab : r % (1 + r % vocab);
  }
  return s;
}

TEST(KneserNey3Test, ProbabilitiesSumToOneForSeenAndUnseenHistories) {
  const int vocab = 12;
  const KneserNey3 lm(Samples(RandomStream(1, 3000, vocab), 8, vocab), vocab);
  for (int32_t u = KneserNey3::kStart; u < vocab; ++u) {
    for (int32_t v = 0; v < vocab; ++v) {
      double sum = 0;
      for (int32_t w = 0; w < vocab; ++w) {
        const double p = lm.Probability(u, v, w);
        EXPECT_GT(p, 0.0);
        sum += p;
      }
      EXPECT_NEAR(sum, 1.0, 1e-9) << "history (" << u << ", " << v << ")";
    }
  }
}

// A second computation, written from the formulas with ordered maps: the same probabilities.
TEST(KneserNey3Test, MatchesAnIndependentComputationOfTheFormulas) {
  const int vocab = 9;
  const ImageDataset train = Samples(RandomStream(2, 700, vocab), 5, vocab);
  std::map<std::tuple<int, int, int>, int64_t> c3;
  for (int64_t i = 0; i < train.size; ++i) {
    for (int64_t t = 0; t < 5; ++t) {
      const int32_t y = train.label(i)[t];
      if (y < 0) continue;
      const int u = t > 0 ? static_cast<int>(train.image(i)[t - 1]) : -1;
      ++c3[{u, static_cast<int>(train.image(i)[t]), y}];
    }
  }
  auto discount = [](const std::vector<int64_t>& cs) {
    double n1 = 0, n2 = 0;
    for (int64_t c : cs) {
      n1 += c == 1;
      n2 += c == 2;
    }
    return n1 + 2 * n2 > 0 ? std::clamp(n1 / (n1 + 2 * n2), 0.1, 1.0) : 0.5;
  };
  std::map<std::pair<int, int>, int64_t> n2;  // N1+(. v w)
  std::vector<int64_t> all3;
  for (const auto& [k, c] : c3) {
    ++n2[{std::get<1>(k), std::get<2>(k)}];
    all3.push_back(c);
  }
  std::map<int, int64_t> n1;  // N1+(. w)
  std::vector<int64_t> all2, all1;
  for (const auto& [k, c] : n2) {
    ++n1[k.second];
    all2.push_back(c);
  }
  for (int w = 0; w < vocab; ++w) all1.push_back(n1.count(w) ? n1[w] : 0);
  const double d3 = discount(all3), d2 = discount(all2), d1 = discount(all1);
  double total1 = 0, types1 = 0;
  for (const auto& [w, c] : n1) total1 += static_cast<double>(c), types1 += 1;
  auto p1 = [&](int w) {
    const double c = n1.count(w) ? static_cast<double>(n1[w]) : 0.0;
    return std::max(c - d1, 0.0) / total1 + d1 * types1 / total1 / vocab;
  };
  auto p2 = [&](int v, int w) {
    double total = 0, types = 0;
    for (const auto& [k, c] : n2) {
      if (k.first == v) total += static_cast<double>(c), types += 1;
    }
    if (total == 0) return p1(w);
    const double c = n2.count({v, w}) ? static_cast<double>(n2[{v, w}]) : 0.0;
    return std::max(c - d2, 0.0) / total + d2 * types / total * p1(w);
  };
  auto p3 = [&](int u, int v, int w) {
    double total = 0, types = 0;
    for (const auto& [k, c] : c3) {
      if (std::get<0>(k) == u && std::get<1>(k) == v) total += static_cast<double>(c), types += 1;
    }
    if (total == 0) return p2(v, w);
    const double c = c3.count({u, v, w}) ? static_cast<double>(c3[{u, v, w}]) : 0.0;
    return std::max(c - d3, 0.0) / total + d3 * types / total * p2(v, w);
  };
  const KneserNey3 lm(train, vocab);
  for (int u = -1; u < vocab; ++u) {
    for (int v = 0; v < vocab; ++v) {
      for (int w = 0; w < vocab; ++w) {
        ASSERT_NEAR(lm.Probability(u, v, w), p3(u, v, w), 1e-12) << u << " " << v << " " << w;
      }
    }
  }
}

// Top-1 and top-3 equal a ranking of the whole vocabulary by probability (id ascending on ties)
// with the unscored id left out; positions labelled with it count for perplexity only.
TEST(KneserNey3Test, RanksLikeASortOfTheWholeVocabularyWithoutTheUnscoredId) {
  const int vocab = 15;
  const KneserNey3 lm(Samples(RandomStream(3, 4000, vocab), 6, vocab), vocab);
  const ImageDataset test = Samples(RandomStream(4, 600, vocab), 6, vocab);
  for (int32_t unscored : {-1, 0, 3}) {
    NgramScores want;
    for (int64_t i = 0; i < test.size; ++i) {
      for (int64_t t = 0; t < 6; ++t) {
        const int32_t y = test.label(i)[t];
        if (y < 0) continue;
        const auto v = static_cast<int32_t>(test.image(i)[t]);
        const int32_t u = t > 0 ? static_cast<int32_t>(test.image(i)[t - 1]) : KneserNey3::kStart;
        ++want.positions;
        want.loss_sum -= std::log(lm.Probability(u, v, y));
        if (y == unscored) continue;
        ++want.scored;
        std::vector<std::pair<double, int32_t>> all;
        for (int32_t w = 0; w < vocab; ++w) {
          if (w != unscored) all.emplace_back(-lm.Probability(u, v, w), w);
        }
        std::sort(all.begin(), all.end());
        want.correct += all[0].second == y;
        want.correct_top3 += all[0].second == y || all[1].second == y || all[2].second == y;
      }
    }
    const NgramScores got = lm.Evaluate(test, unscored);
    EXPECT_EQ(got.positions, want.positions);
    EXPECT_EQ(got.scored, want.scored);
    EXPECT_EQ(got.correct, want.correct) << "unscored " << unscored;
    EXPECT_EQ(got.correct_top3, want.correct_top3) << "unscored " << unscored;
    EXPECT_NEAR(got.loss_sum, want.loss_sum, 1e-9);
    if (unscored >= 0) {
      EXPECT_LT(got.scored, got.positions);
    }
  }
}

TEST(KneserNey3Test, LearnsARepeatedPatternAndNeverSuggestsTheUnscoredId) {
  // 0 is the most frequent id, but never a right answer.
  std::vector<int32_t> stream;
  for (int i = 0; i < 300; ++i) stream.insert(stream.end(), {0, 0, 0, 5, 6, 7});
  const ImageDataset data = Samples(stream, 6, 8);
  const KneserNey3 lm(data, 8);
  const NgramScores s = lm.Evaluate(data, 0);
  // Scored targets are 5 (after 0 0, which 0 follows as often), 6 and 7: with 0 passed over,
  // each is the most likely after its two predecessors.
  EXPECT_EQ(s.scored, s.correct);
  EXPECT_GT(s.scored, 0);
  EXPECT_NEAR(s.top1(), 1.0, 0);
  EXPECT_LT(s.perplexity(), 2.0);
  EXPECT_EQ(NgramScores{}.top1(), 0.0);
  EXPECT_EQ(NgramScores{}.perplexity(), 1.0);
}

}  // namespace
}  // namespace ftte::data
