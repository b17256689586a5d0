// The reference every next-word result is read against: an interpolated Kneser-Ney 3-gram
// (Chen & Goodman 1998, one discount per order, D = n1 / (n1 + 2 n2)) counted on the same
// training samples as the neural model and scored on the same held-out positions.
//
// Samples are lm_data.h's: x = T ids stored as floats, labels = the next ids (-1: ignore). A
// position t predicts labels[t] from (x[t-1], x[t]); at t = 0 the earlier id is a start symbol,
// so the 3-gram sees no more of the past than a model of context T does at that position.
//
//   P3(w | u v) = max(c(uvw) - D3, 0) / c(uv.) + D3 N1+(uv.) / c(uv.) P2(w | v)
//   P2(w | v)   = max(N1+(.vw) - D2, 0) / N1+(.v.) + D2 N1+(.v. types) / N1+(.v.) P1(w)
//   P1(w)       = max(N1+(.w) - D1, 0) / N1+(..) + D1 N1+(. types) / N1+(..) / V
// falling back to the lower order where a history was never seen. Every id of the vocabulary
// gets a probability > 0 and they sum to 1, so perplexity is finite.
#ifndef FTTE_DATA_NGRAM_H_
#define FTTE_DATA_NGRAM_H_

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "ftte/data/dataset.h"

namespace ftte::data {

// Counts as the Trainer reports them (trainer.h StepResult): positions with a label >= 0;
// `scored`, those whose label is not the unscored class; right answers over scored positions
// with the unscored class never predicted; loss summed over all positions (natural log).
struct NgramScores {
  int64_t positions = 0, scored = 0, correct = 0, correct_top3 = 0;
  double loss_sum = 0;
  double top1() const;        // correct / scored (0 if none)
  double top3() const;        // correct_top3 / scored
  double perplexity() const;  // exp(loss_sum / positions) (1 if none)
};

class KneserNey3 {
 public:
  // Counts every position of `train` (labels >= 0). vocab = the ids' range, >= 1. Aborts
  // (FTTE_CHECK) on an id outside [0, vocab): the datasets come from MakeLanguageModelData.
  KneserNey3(const ImageDataset& train, int64_t vocab);

  // P(w | u v); u = kStart when v is the first id of a sample.
  double Probability(int32_t u, int32_t v, int32_t w) const;

  // Scores every position of `test` as above; `unscored` (< 0: none) is the <unk> id.
  // Cost: per position, the continuations seen after its history plus a few.
  NgramScores Evaluate(const ImageDataset& test, int32_t unscored) const;

  static constexpr int32_t kStart = -1;

 private:
  struct Continuations {
    int64_t total = 0;  // count (3-gram) or continuation count (2-gram) summed over w
    int64_t types = 0;  // distinct w
    std::vector<std::pair<int32_t, int64_t>> counts;  // (w, count), ascending w
  };
  uint64_t Key(int32_t u, int32_t v) const;
  double P1(int32_t w) const;
  double P2(int32_t v, int32_t w) const;
  // Count of w in c (0 if absent).
  static int64_t CountOf(const Continuations& c, int32_t w);

  int64_t vocab_;
  double d1_ = 0, d2_ = 0, d3_ = 0;
  std::unordered_map<uint64_t, Continuations> trigrams_;  // by (u, v)
  std::vector<Continuations> bigrams_;                    // by v: N1+(. v w)
  std::vector<double> unigram_;                           // P1
  std::vector<int32_t> by_unigram_;                       // ids by P1 descending, id ascending
};

}  // namespace ftte::data

#endif  // FTTE_DATA_NGRAM_H_
