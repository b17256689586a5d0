// A keyboard's private part of the model: a bigram "cache" counted over the text this person
// typed, mixed with the global model's next-word distribution (Kuhn & De Mori 1990, the
// personal dictionary of phone keyboards). It lives on the device only and is never uploaded;
// the global model underneath can change (federated updates) and the mixture follows it.
//
// With c(.) counts over the person's text (ids, <eos> ending each line; a message starts with
// the history (<eos>, <eos>)), u v the last two ids of the context, N the number of ids and
// absolute discounting at each order (n(h .) = distinct w seen after history h):
//   Pu(w)        = c(w) / N                                           (the person's unigram)
//   Pb(w | v)    = max(c(v w) - D, 0) / c(v .) + D n(v .) / c(v .) Pu(w)       (Pu if v unseen)
//   Pt(w | u v)  = max(c(u v w) - D, 0) / c(u v .) + D n(u v .) / c(u v .) Pb(w | v)
//                                                                        (Pb if u v unseen)
//   lambda(v)    = lambda_max c(v .) / (c(v .) + kappa)                  (0 if v unseen)
//   P(w | ctx)   = (1 - lambda(v)) Pg(w | ctx) + lambda(v) Pt(w | u v)
// A line start (v = <eos>) has the history (<eos>, <eos>) wherever it is. The three parameters
// (lambda_max, kappa, D) are fitted on the device (Fit) by leaving one message out: each of the
// newest messages is scored with the counts of all the others, and the grid point with the best
// log-likelihood of those words under the mixture wins (lambda_max = 0, the global model alone,
// is on the grid). Cost of a mixture: O(vocab) per prediction. With no text,
// P = Pg.
//
// A PersonalNgram is a value; not thread-safe.
#ifndef FTTE_DATA_PERSONAL_LM_H_
#define FTTE_DATA_PERSONAL_LM_H_

#include <cstdint>
#include <functional>
#include <span>
#include <unordered_map>
#include <vector>

namespace ftte::data {

struct PersonalParams {
  double lambda_max = 0.5;  // in [0, 1)
  double kappa = 2;         // >= 0
  double discount = 0.75;   // in (0, 1)
  bool operator==(const PersonalParams&) const = default;
};

// What Fit did: held-out ids scored (targets other than <unk>), their mean log-likelihood
// under the global model alone and under the chosen mixture, grid points tried.
struct PersonalFit {
  int64_t scored = 0;
  double global_log_likelihood = 0, personal_log_likelihood = 0;
  int64_t grid_points = 0;
  bool complete = true;  // false: stopped by `keep_going` before the grid was done
};

class PersonalNgram {
 public:
  explicit PersonalNgram(int64_t vocab, PersonalParams params = {});

  // Counts one stream of ids (a message: lines ending in <eos>); the first id's history is
  // (<eos>, <eos>) (a message starts a line). Ids outside [0, vocab) abort (FTTE_CHECK).
  void Add(std::span<const int32_t> ids);
  // Uncounts a stream added before (a message the retention policy drops).
  void Remove(std::span<const int32_t> ids);
  void Clear();

  // P(. | context) into probs[0..vocab), given the global model's distribution `global` (sums
  // to 1) after the same context (ids, <eos> first at a line start; only the last two matter).
  void Mix(std::span<const int32_t> context, std::span<const float> global,
           std::span<double> probs) const;

  // The global model's distribution for position t of `stream` (whose ids [0, t) are the
  // context; stream[t] is the target). Fit calls it once per held-out position.
  using GlobalFn =
      std::function<void(std::span<const int32_t> stream, int64_t t, std::vector<float>* probs)>;
  // Counts `messages` (oldest first; each a stream as for Add) and fits the parameters on them
  // (the newest messages up to 2,000 scored ids, each left out in turn). Too little text
  // (fewer than 2 messages or 20 scored ids) keeps the current parameters. `keep_going` (may be
  // empty) is asked between grid points; false stops with the best so far. `unscored` is <unk>'s
  // id.
  // Grid points Fit scores (keep_going is asked before each but the first).
  static constexpr int64_t kFitGridPoints = 1 + 8 * 4 * 3;
  PersonalFit Fit(const std::vector<std::vector<int32_t>>& messages, const GlobalFn& global,
                  int32_t unscored, const std::function<bool()>& keep_going = {});

  const PersonalParams& params() const { return params_; }
  void set_params(const PersonalParams& p) { params_ = p; }
  int64_t vocab() const { return vocab_; }
  int64_t tokens() const { return total_; }

 private:
  struct History {
    int64_t total = 0;
    std::unordered_map<int32_t, int64_t> next;  // w -> c(v w)
  };
  void Count(int32_t u, int32_t v, int32_t w, int64_t delta);
  static uint64_t Key(int32_t u, int32_t v) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(u)) << 32) | static_cast<uint32_t>(v);
  }
  // Mix for one target only: P(w | u v).
  double Probability(int32_t u, int32_t v, int32_t w, double global_w) const;

  int64_t vocab_;
  PersonalParams params_;
  int64_t total_ = 0;
  std::vector<int64_t> unigram_;
  std::unordered_map<int32_t, History> bigram_;
  std::unordered_map<uint64_t, History> trigram_;
};

}  // namespace ftte::data

#endif  // FTTE_DATA_PERSONAL_LM_H_
