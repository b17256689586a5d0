#include "ftte/data/personal_lm.h"

#include <algorithm>
#include <cmath>
#include <iterator>

#include "ftte/core/check.h"
#include "ftte/data/tokenizer.h"

namespace ftte::data {

namespace {

// Held-out positions scored by Fit at most (the newest): bounds the global model's forward
// passes, one per position.
constexpr int64_t kMaxFitPositions = 2000;
constexpr int64_t kMinFitPositions = 20;

}  // namespace

PersonalNgram::PersonalNgram(int64_t vocab, PersonalParams params)
    : vocab_(vocab), params_(params), unigram_(static_cast<size_t>(vocab), 0) {
  FTTE_CHECK(vocab > 0);
}

void PersonalNgram::Clear() {
  total_ = 0;
  std::fill(unigram_.begin(), unigram_.end(), 0);
  bigram_.clear();
  trigram_.clear();
}

namespace {

template <typename Map, typename K>
void Bump(Map& map, K key, int32_t w, int64_t delta) {
  auto& h = map[key];
  h.total += delta;
  int64_t& c = h.next[w];
  c += delta;
  FTTE_CHECK(c >= 0);
  if (c == 0) h.next.erase(w);
  if (h.total == 0) map.erase(key);
}

// max(c(h w) - D, 0) / c(h .) + D n(h .) / c(h .) lower, for a history h that was seen.
template <typename History>
double Discounted(const History& h, int32_t w, double d, double lower) {
  auto c = h.next.find(w);
  const double cw = c == h.next.end() ? 0.0 : static_cast<double>(c->second);
  const double n = static_cast<double>(h.total);
  return std::max(cw - d, 0.0) / n + d * static_cast<double>(h.next.size()) / n * lower;
}

}  // namespace

void PersonalNgram::Count(int32_t u, int32_t v, int32_t w, int64_t delta) {
  FTTE_CHECK(w >= 0 && w < vocab_);
  if (v == Tokenizer::kEosId) u = Tokenizer::kEosId;  // a line start: the history is (eos, eos)
  unigram_[static_cast<size_t>(w)] += delta;
  total_ += delta;
  Bump(bigram_, v, w, delta);
  Bump(trigram_, Key(u, v), w, delta);
}

void PersonalNgram::Add(std::span<const int32_t> ids) {
  int32_t u = Tokenizer::kEosId, v = Tokenizer::kEosId;
  for (int32_t w : ids) {
    Count(u, v, w, 1);
    u = v;
    v = w;
  }
}

void PersonalNgram::Remove(std::span<const int32_t> ids) {
  int32_t u = Tokenizer::kEosId, v = Tokenizer::kEosId;
  for (int32_t w : ids) {
    Count(u, v, w, -1);
    u = v;
    v = w;
  }
}

double PersonalNgram::Probability(int32_t u, int32_t v, int32_t w, double global_w) const {
  if (total_ == 0) return global_w;
  auto b = bigram_.find(v);
  if (b == bigram_.end()) return global_w;
  const double d = params_.discount;
  const double pu = static_cast<double>(unigram_[static_cast<size_t>(w)]) / total_;
  double p = Discounted(b->second, w, d, pu);
  if (v == Tokenizer::kEosId) u = Tokenizer::kEosId;
  auto t = trigram_.find(Key(u, v));
  if (t != trigram_.end()) p = Discounted(t->second, w, d, p);
  const double n = static_cast<double>(b->second.total);
  const double lambda = params_.lambda_max * n / (n + params_.kappa);
  return (1 - lambda) * global_w + lambda * p;
}

void PersonalNgram::Mix(std::span<const int32_t> context, std::span<const float> global,
                        std::span<double> probs) const {
  FTTE_CHECK(static_cast<int64_t>(global.size()) == vocab_ &&
             static_cast<int64_t>(probs.size()) == vocab_ && !context.empty());
  const int32_t v = context.back();
  const int32_t u = context.size() >= 2 && v != Tokenizer::kEosId ? context[context.size() - 2]
                                                                  : Tokenizer::kEosId;
  auto b = total_ == 0 ? bigram_.end() : bigram_.find(v);
  if (b == bigram_.end()) {
    std::copy(global.begin(), global.end(), probs.begin());
    return;
  }
  const double d = params_.discount;
  const double n = static_cast<double>(b->second.total);
  const double lambda = params_.lambda_max * n / (n + params_.kappa);
  // probs = lambda * Pt first, built order by order, then the global part added.
  double scale = lambda;  // weight of the unigram term at the lowest order
  auto t = trigram_.find(Key(u, v));
  if (t != trigram_.end()) {
    const double nt = static_cast<double>(t->second.total);
    scale *= d * static_cast<double>(t->second.next.size()) / nt;
  }
  const double scale_b = scale;  // weight of Pb inside Pt
  scale *= d * static_cast<double>(b->second.next.size()) / n / static_cast<double>(total_);
  for (int64_t w = 0; w < vocab_; ++w) {
    probs[static_cast<size_t>(w)] = scale * static_cast<double>(unigram_[static_cast<size_t>(w)]);
  }
  for (const auto& [w, c] : b->second.next) {
    probs[static_cast<size_t>(w)] += scale_b * std::max(static_cast<double>(c) - d, 0.0) / n;
  }
  if (t != trigram_.end()) {
    const double nt = static_cast<double>(t->second.total);
    for (const auto& [w, c] : t->second.next) {
      probs[static_cast<size_t>(w)] += lambda * std::max(static_cast<double>(c) - d, 0.0) / nt;
    }
  }
  for (int64_t w = 0; w < vocab_; ++w) {
    probs[static_cast<size_t>(w)] += (1 - lambda) * global[static_cast<size_t>(w)];
  }
}

PersonalFit PersonalNgram::Fit(const std::vector<std::vector<int32_t>>& messages,
                               const GlobalFn& global, int32_t unscored,
                               const std::function<bool()>& keep_going) {
  PersonalFit fit;
  Clear();
  for (const auto& m : messages) Add(m);
  // The stream of all messages (what the global model reads), and where each starts.
  std::vector<int32_t> stream = {Tokenizer::kEosId};
  std::vector<int64_t> starts;
  for (const auto& m : messages) {
    starts.push_back(static_cast<int64_t>(stream.size()));
    stream.insert(stream.end(), m.begin(), m.end());
  }
  // Leave one message out: each of the newest messages (up to kMaxFitPositions scored ids) is
  // scored with the counts of all the others.
  struct Held {
    size_t message;
    std::vector<int64_t> positions;
    std::vector<double> global;  // Pg of each position's target
  };
  std::vector<Held> held;
  int64_t scored = 0;
  for (size_t i = messages.size(); i-- > 0 && scored < kMaxFitPositions && messages.size() >= 2;) {
    Held h{i, {}, {}};
    for (size_t j = 0; j < messages[i].size(); ++j) {
      if (messages[i][j] != unscored) h.positions.push_back(starts[i] + static_cast<int64_t>(j));
    }
    scored += static_cast<int64_t>(h.positions.size());
    if (!h.positions.empty()) held.push_back(std::move(h));
  }
  if (scored < kMinFitPositions) return fit;
  std::vector<float> probs;
  for (Held& h : held) {
    for (int64_t t : h.positions) {
      global(stream, t, &probs);
      h.global.push_back(probs[static_cast<size_t>(stream[static_cast<size_t>(t)])]);
    }
  }
  auto score = [&](const PersonalParams& p) {
    params_ = p;
    double ll = 0;
    for (const Held& h : held) {
      Remove(messages[h.message]);
      for (size_t k = 0; k < h.positions.size(); ++k) {
        const auto t = static_cast<size_t>(h.positions[k]);
        const int32_t u = t >= 2 ? stream[t - 2] : Tokenizer::kEosId;
        ll += std::log(std::max(Probability(u, stream[t - 1], stream[t], h.global[k]), 1e-300));
      }
      Add(messages[h.message]);
    }
    return ll / static_cast<double>(scored);
  };
  fit.scored = scored;
  PersonalParams best = {0.0, 0.0, 0.75};  // the global model alone
  fit.global_log_likelihood = fit.personal_log_likelihood = score(best);
  fit.grid_points = 1;
  constexpr double kLambdas[] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8};
  constexpr double kKappas[] = {0.0, 1.0, 3.0, 10.0};
  constexpr double kDiscounts[] = {0.5, 0.75, 0.9};
  static_assert(1 + std::size(kLambdas) * std::size(kKappas) * std::size(kDiscounts) ==
                kFitGridPoints);
  for (double lambda : kLambdas) {
    for (double kappa : kKappas) {
      for (double d : kDiscounts) {
        if (keep_going && !keep_going()) {
          fit.complete = false;
          params_ = best;
          return fit;
        }
        const double ll = score({lambda, kappa, d});
        ++fit.grid_points;
        if (ll > fit.personal_log_likelihood) {
          fit.personal_log_likelihood = ll;
          best = {lambda, kappa, d};
        }
      }
    }
  }
  params_ = best;
  return fit;
}

}  // namespace ftte::data
