#include "ftte/data/personal_lm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "ftte/data/tokenizer.h"

namespace ftte::data {
namespace {

constexpr int64_t kVocab = 8;
constexpr int32_t kEos = Tokenizer::kEosId;

std::vector<float> Uniform() { return std::vector<float>(kVocab, 1.0f / kVocab); }

std::vector<double> MixOf(const PersonalNgram& p, std::vector<int32_t> context) {
  std::vector<double> out(kVocab);
  const std::vector<float> g = Uniform();
  p.Mix(context, g, out);
  return out;
}

TEST(PersonalNgramTest, WithoutTextTheMixtureIsTheGlobalModel) {
  PersonalNgram p(kVocab);
  const std::vector<double> m = MixOf(p, {3});
  for (double x : m) EXPECT_DOUBLE_EQ(x, 1.0 / kVocab);
}

TEST(PersonalNgramTest, MixtureMatchesTheFormulaAndSumsToOne) {
  PersonalNgram p(kVocab, {0.5, 2.0, 0.75});
  const std::vector<int32_t> msg = {2, 3, 2, 4, kEos};  // bigrams: eos-2, 2-3, 3-2, 2-4, 4-eos
  p.Add(msg);
  // After (6, 2): the pair was never seen, so Pt = Pb. c(2 .) = 2 (3 and 4 once each),
  // n(2 .) = 2, lambda = 0.5 * 2 / 4 = 0.25; Pu(3) = 1/5;
  // Pb(3 | 2) = (1 - 0.75) / 2 + 0.75 * 2 / 2 * 1/5 = 0.275.
  const std::vector<double> m = MixOf(p, {6, 2});
  EXPECT_NEAR(std::accumulate(m.begin(), m.end(), 0.0), 1.0, 1e-12);
  EXPECT_NEAR(m[3], 0.75 / kVocab + 0.25 * 0.275, 1e-12);
  // 5 was never typed: only the global part and no unigram mass.
  EXPECT_NEAR(m[5], 0.75 / kVocab, 1e-12);
  // After (3, 2), seen once, followed by 4: Pt(3 | 3 2) = 0 + 0.75 * 1 / 1 * Pb(3 | 2);
  // Pt(4 | 3 2) = (1 - 0.75) + 0.75 * Pb(4 | 2), Pb(4 | 2) = 0.275 too.
  const std::vector<double> t = MixOf(p, {3, 2});
  EXPECT_NEAR(std::accumulate(t.begin(), t.end(), 0.0), 1.0, 1e-12);
  EXPECT_NEAR(t[3], 0.75 / kVocab + 0.25 * 0.75 * 0.275, 1e-12);
  EXPECT_NEAR(t[4], 0.75 / kVocab + 0.25 * (0.25 + 0.75 * 0.275), 1e-12);
  // A history never seen: the global model alone.
  const std::vector<double> unseen = MixOf(p, {6});
  EXPECT_DOUBLE_EQ(unseen[3], 1.0 / kVocab);
}

TEST(PersonalNgramTest, RemoveUndoesAdd) {
  PersonalNgram p(kVocab);
  const std::vector<int32_t> a = {2, 3, kEos}, b = {4, 5, kEos};
  p.Add(a);
  const std::vector<double> only_a = MixOf(p, {2});
  p.Add(b);
  p.Remove(b);
  EXPECT_EQ(MixOf(p, {2}), only_a);
  EXPECT_EQ(p.tokens(), 3);
  p.Remove(a);
  EXPECT_EQ(p.tokens(), 0);
  EXPECT_DOUBLE_EQ(MixOf(p, {2})[3], 1.0 / kVocab);
}

// The person always types "2 3 4 <eos>"; a uniform global model cannot know that.
std::vector<std::vector<int32_t>> Habit(int n) {
  return std::vector<std::vector<int32_t>>(static_cast<size_t>(n), {2, 3, 4, kEos});
}

TEST(PersonalNgramTest, FitTrustsThePersonalPartWhenItPredictsBetter) {
  PersonalNgram p(kVocab);
  const PersonalFit fit = p.Fit(
      Habit(60),
      [](std::span<const int32_t>, int64_t, std::vector<float>* probs) { *probs = Uniform(); },
      Tokenizer::kUnkId);
  EXPECT_TRUE(fit.complete);
  EXPECT_GE(fit.scored, 20);
  EXPECT_EQ(fit.grid_points, 97);
  EXPECT_GT(fit.personal_log_likelihood, fit.global_log_likelihood + 1.0);
  EXPECT_GE(p.params().lambda_max, 0.8);
  EXPECT_EQ(p.tokens(), 240);  // everything counted after the fit
  EXPECT_GT(MixOf(p, {2, 3})[4], 0.7);
}

TEST(PersonalNgramTest, FitKeepsTheGlobalModelWhenItIsAlreadyRight) {
  PersonalNgram p(kVocab);
  // Messages of pseudo-random ids (no habit to learn), and a global model that puts 0.99 on
  // the true next id: any personal weight only costs.
  std::vector<std::vector<int32_t>> messages(60);
  uint32_t x = 12345;
  for (auto& m : messages) {
    for (int i = 0; i < 3; ++i) {
      x = x * 1664525u + 1013904223u;
      m.push_back(2 + static_cast<int32_t>((x >> 16) % 6));
    }
    m.push_back(kEos);
  }
  const PersonalFit fit = p.Fit(
      messages,
      [](std::span<const int32_t> stream, int64_t t, std::vector<float>* probs) {
        probs->assign(kVocab, 0.01f / (kVocab - 1));
        (*probs)[static_cast<size_t>(stream[static_cast<size_t>(t)])] = 0.99f;
      },
      Tokenizer::kUnkId);
  EXPECT_EQ(p.params().lambda_max, 0.0);
  EXPECT_DOUBLE_EQ(fit.personal_log_likelihood, fit.global_log_likelihood);
}

TEST(PersonalNgramTest, FitWithTooLittleTextOnlyCounts) {
  const PersonalParams params{0.3, 1.0, 0.5};
  PersonalNgram p(kVocab, params);
  int calls = 0;
  const PersonalFit fit = p.Fit(
      Habit(3),
      [&](std::span<const int32_t>, int64_t, std::vector<float>* probs) {
        ++calls;
        *probs = Uniform();
      },
      Tokenizer::kUnkId);
  EXPECT_EQ(fit.scored, 0);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(p.params(), params);
  EXPECT_EQ(p.tokens(), 12);
}

TEST(PersonalNgramTest, FitStopsWhenAskedAndKeepsTheBestSoFar) {
  PersonalNgram p(kVocab);
  int asked = 0;
  const PersonalFit fit = p.Fit(
      Habit(60),
      [](std::span<const int32_t>, int64_t, std::vector<float>* probs) { *probs = Uniform(); },
      Tokenizer::kUnkId, [&] { return ++asked <= 5; });
  EXPECT_FALSE(fit.complete);
  EXPECT_EQ(fit.grid_points, 6);  // the global model alone, then five grid points
  EXPECT_GT(p.params().lambda_max, 0.0);
  EXPECT_EQ(p.tokens(), 240);
}

}  // namespace
}  // namespace ftte::data
