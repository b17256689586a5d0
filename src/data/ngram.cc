#include "ftte/data/ngram.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "ftte/core/check.h"

namespace ftte::data {

namespace {

// Chen & Goodman's estimate n1 / (n1 + 2 n2) from how many counts are 1 and 2, kept in
// [0.1, 1] so that the lower order always gets some weight (every id a probability > 0).
double Discount(const std::vector<int64_t>& counts) {
  int64_t n1 = 0, n2 = 0;
  for (int64_t c : counts) {
    n1 += c == 1;
    n2 += c == 2;
  }
  const double d =
      n1 + 2 * n2 > 0 ? static_cast<double>(n1) / static_cast<double>(n1 + 2 * n2) : 0.5;
  return std::clamp(d, 0.1, 1.0);
}

// Calls fn(u, v, y) for every counted position (label >= 0) of `data`: v the id there, u the
// one before it (KneserNey3::kStart at a sample's first position), y its label. Aborts on an id
// or label outside [0, vocab): the datasets come from MakeLanguageModelData.
template <typename Fn>
void ForEachPosition(const ImageDataset& data, int64_t vocab, Fn fn) {
  auto id = [&](float f) {
    const auto i = static_cast<int32_t>(f);
    FTTE_CHECK(i >= 0 && i < vocab) << "id " << f << " outside the vocabulary of " << vocab;
    return i;
  };
  for (int64_t i = 0; i < data.size; ++i) {
    const float* x = data.image(i);
    const int32_t* y = data.label(i);
    for (int64_t t = 0; t < data.labels_per_sample; ++t) {
      if (y[t] < 0) continue;
      FTTE_CHECK(y[t] < vocab) << "label " << y[t] << " outside the vocabulary of " << vocab;
      fn(t > 0 ? id(x[t - 1]) : KneserNey3::kStart, id(x[t]), y[t]);
    }
  }
}

}  // namespace

double NgramScores::top1() const {
  return scored > 0 ? static_cast<double>(correct) / static_cast<double>(scored) : 0.0;
}
double NgramScores::top3() const {
  return scored > 0 ? static_cast<double>(correct_top3) / static_cast<double>(scored) : 0.0;
}
double NgramScores::perplexity() const {
  return positions > 0 ? std::exp(loss_sum / static_cast<double>(positions)) : 1.0;
}

uint64_t KneserNey3::Key(int32_t u, int32_t v) const {
  return static_cast<uint64_t>(u + 1) * static_cast<uint64_t>(vocab_) + static_cast<uint64_t>(v);
}

int64_t KneserNey3::CountOf(const Continuations& c, int32_t w) {
  const auto it =
      std::lower_bound(c.counts.begin(), c.counts.end(), std::pair<int32_t, int64_t>{w, 0});
  return it != c.counts.end() && it->first == w ? it->second : 0;
}

KneserNey3::KneserNey3(const ImageDataset& train, int64_t vocab) : vocab_(vocab) {
  FTTE_CHECK(vocab >= 1 && vocab <= (int64_t{1} << 20)) << "vocabulary of " << vocab;
  const auto v_count = static_cast<uint64_t>(vocab);
  // Every (u, v, w) occurrence as one key, counted by sorting.
  std::vector<uint64_t> keys;
  ForEachPosition(train, vocab, [&](int32_t u, int32_t v, int32_t w) {
    keys.push_back(Key(u, v) * v_count + static_cast<uint64_t>(w));
  });
  std::sort(keys.begin(), keys.end());
  std::vector<int64_t> tri_counts;
  std::vector<uint64_t> pairs;  // (v, w) of each distinct (u, v, w): counted, N1+(. v w)
  for (size_t a = 0; a < keys.size();) {
    size_t b = a;
    while (b < keys.size() && keys[b] == keys[a]) ++b;
    const auto count = static_cast<int64_t>(b - a);
    const uint64_t history = keys[a] / v_count;
    const auto w = static_cast<int32_t>(keys[a] % v_count);
    const auto v = static_cast<int32_t>(history % v_count);
    Continuations& c = trigrams_[history];
    c.total += count;
    ++c.types;
    c.counts.emplace_back(w, count);  // ascending w within a history: keys are sorted
    tri_counts.push_back(count);
    pairs.push_back(static_cast<uint64_t>(v) * v_count + static_cast<uint64_t>(w));
    a = b;
  }
  d3_ = Discount(tri_counts);

  std::sort(pairs.begin(), pairs.end());
  std::vector<int64_t> bi_counts, cont1(static_cast<size_t>(vocab), 0);
  bigrams_.resize(static_cast<size_t>(vocab));
  for (size_t a = 0; a < pairs.size();) {
    size_t b = a;
    while (b < pairs.size() && pairs[b] == pairs[a]) ++b;
    const auto n = static_cast<int64_t>(b - a);
    const auto w = static_cast<int32_t>(pairs[a] % v_count);
    Continuations& c = bigrams_[static_cast<size_t>(pairs[a] / v_count)];
    c.total += n;
    ++c.types;
    c.counts.emplace_back(w, n);
    bi_counts.push_back(n);
    ++cont1[static_cast<size_t>(w)];
    a = b;
  }
  d2_ = Discount(bi_counts);
  d1_ = Discount(cont1);
  int64_t total1 = 0, types1 = 0;
  for (int64_t c : cont1) {
    total1 += c;
    types1 += c > 0;
  }
  unigram_.assign(static_cast<size_t>(vocab), 1.0 / static_cast<double>(vocab));
  if (total1 > 0) {
    const double t = static_cast<double>(total1);
    const double rest = d1_ * static_cast<double>(types1) / t / static_cast<double>(vocab);
    for (size_t w = 0; w < cont1.size(); ++w) {
      unigram_[w] = std::max(static_cast<double>(cont1[w]) - d1_, 0.0) / t + rest;
    }
  }
  by_unigram_.resize(static_cast<size_t>(vocab));
  for (int32_t w = 0; w < vocab; ++w) by_unigram_[static_cast<size_t>(w)] = w;
  std::stable_sort(by_unigram_.begin(), by_unigram_.end(), [&](int32_t a, int32_t b) {
    return unigram_[static_cast<size_t>(a)] > unigram_[static_cast<size_t>(b)];
  });
}

double KneserNey3::P1(int32_t w) const { return unigram_[static_cast<size_t>(w)]; }

double KneserNey3::P2(int32_t v, int32_t w) const {
  const Continuations& c = bigrams_[static_cast<size_t>(v)];
  if (c.total == 0) return P1(w);
  const double t = static_cast<double>(c.total);
  return std::max(static_cast<double>(CountOf(c, w)) - d2_, 0.0) / t +
         d2_ * static_cast<double>(c.types) / t * P1(w);
}

double KneserNey3::Probability(int32_t u, int32_t v, int32_t w) const {
  const auto it = trigrams_.find(Key(u, v));
  if (it == trigrams_.end()) return P2(v, w);
  const Continuations& c = it->second;
  const double t = static_cast<double>(c.total);
  return std::max(static_cast<double>(CountOf(c, w)) - d3_, 0.0) / t +
         d3_ * static_cast<double>(c.types) / t * P2(v, w);
}

NgramScores KneserNey3::Evaluate(const ImageDataset& test, int32_t unscored) const {
  NgramScores s;
  std::vector<char> candidate(static_cast<size_t>(vocab_), 0);
  std::vector<int32_t> marked;
  ForEachPosition(test, vocab_, [&](int32_t u, int32_t v, int32_t y) {
    ++s.positions;
    s.loss_sum -= std::log(Probability(u, v, y));
    if (y == unscored) return;
    ++s.scored;
    // The three most likely ids (probability descending, id ascending): among the ids seen
    // after this history or after v, and the others, which rank as P1 does.
    std::array<std::pair<double, int32_t>, 3> top;
    top.fill({-1.0, -1});
    auto offer = [&](int32_t w) {
      const std::pair<double, int32_t> p{Probability(u, v, w), w};
      auto better = [](const auto& a, const auto& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
      };
      for (size_t k = 0; k < top.size(); ++k) {
        if (top[k].second < 0 || better(p, top[k])) {
          std::move_backward(top.begin() + static_cast<std::ptrdiff_t>(k), top.end() - 1,
                             top.end());
          top[k] = p;
          return;
        }
      }
    };
    auto mark = [&](const Continuations& c) {
      for (const auto& [w, n] : c.counts) {
        if (w == unscored || candidate[static_cast<size_t>(w)]) continue;
        candidate[static_cast<size_t>(w)] = 1;
        marked.push_back(w);
        offer(w);
      }
    };
    if (const auto it = trigrams_.find(Key(u, v)); it != trigrams_.end()) mark(it->second);
    mark(bigrams_[static_cast<size_t>(v)]);
    int others = 0;
    for (size_t k = 0; k < by_unigram_.size() && others < 3; ++k) {
      const int32_t w = by_unigram_[k];
      if (w == unscored || candidate[static_cast<size_t>(w)]) continue;
      offer(w);
      ++others;
    }
    for (int32_t w : marked) candidate[static_cast<size_t>(w)] = 0;
    marked.clear();
    s.correct += top[0].second == y;
    s.correct_top3 += top[0].second == y || top[1].second == y || top[2].second == y;
  });
  return s;
}

}  // namespace ftte::data
