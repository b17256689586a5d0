// Language-model datasets: per-user token streams cut into fixed-length next-token samples, with
// the last part of each user's text held out for evaluation, and the natural partition (one user
// = one device).
//
// For a user whose text encodes to n ids s[0..n), the last h = floor(n * holdout_fraction) ids
// are held out (HeldOutStart). The train stream is s[0..n-h); the test stream is s[n-h-1..n), one
// id earlier so that every held-out id is a target exactly once (its first id is context only).
// Each stream of m ids yields samples k = 0, 1, ...: x = stream[kT .. kT+T), labels =
// stream[kT+1 .. kT+T+1), so every id but the stream's first is a target exactly once. The last
// chunk, if short, is padded (x id 0, label -1 = ignore) with LastChunk::kPad, or dropped with
// LastChunk::kDrop. A stream of fewer than 2 ids yields no sample.
//
// Samples live in ImageDataset (dataset.h): channels = height = 1, width = T, ids stored as float,
// labels_per_sample = T, num_classes = tokenizer size. Samples are ordered by user, then position.
#ifndef FTTE_DATA_LM_DATA_H_
#define FTTE_DATA_LM_DATA_H_

#include <cstdint>
#include <string>
#include <vector>

#include "ftte/core/status.h"
#include "ftte/data/dataset.h"
#include "ftte/data/partition.h"
#include "ftte/data/text.h"
#include "ftte/data/tokenizer.h"

namespace ftte::data {

inline constexpr int32_t kIgnoreLabel = -1;

enum class LastChunk {
  kPad,   // keep a short last chunk, padded with id 0 and label -1 (no target is lost)
  kDrop,  // drop it (every sample is full)
};

// Index of the first held-out token of a stream of n tokens: n - floor(n * holdout_fraction).
// Aborts (FTTE_CHECK) unless n >= 0 and 0 <= holdout_fraction < 1.
int64_t HeldOutStart(int64_t n, double holdout_fraction);

// Trains a tokenizer (tokenizer.h) on the training part of each user's text only: the first
// HeldOutStart(pieces, holdout_fraction) pieces, so held-out words never enter the vocabulary.
// kSubword, whose pieces need the model, trains on the whole lines within the first
// HeldOutStart(bytes, holdout_fraction) bytes: the held-out ids of MakeLanguageModelData are the
// last floor(n * holdout_fraction) ids, which cover about the same text (ids per byte vary a
// little along a text, so a few words at the boundary may have been seen by the vocabulary).
// Use the same holdout_fraction as MakeLanguageModelData. O(corpus bytes).
// Errors: holdout_fraction outside [0, 1), or those of Tokenizer::FromCounts.
Result<Tokenizer> TrainTokenizer(TokenizerKind kind, const TextCorpus& corpus, int64_t max_size,
                                 double holdout_fraction = 0.1);

struct LanguageModelData {
  ImageDataset train, test;
  // train_by_user[u] / test_by_user[u]: indices into train / test of corpus.users[u]'s samples,
  // ascending. A user with too little text has an empty list; give devices only users whose
  // list is non-empty (ClientTrainer::Train needs at least one sample).
  Partition train_by_user, test_by_user;
  int64_t tokens = 0;          // ids over all users
  int64_t train_targets = 0;   // labels != -1 in train
  int64_t test_targets = 0;    // labels != -1 in test
  int64_t unknown_tokens = 0;  // ids equal to <unk> over all users
};

// Tokenizes every user and builds the datasets above. Cost: O(corpus bytes) time, and
// 8 * (tokens + padding) bytes for ids and labels. Errors: context < 1, holdout_fraction outside
// [0, 1), or a corpus without users.
Result<LanguageModelData> MakeLanguageModelData(const TextCorpus& corpus,
                                                const Tokenizer& tokenizer, int64_t context,
                                                double holdout_fraction = 0.1,
                                                LastChunk last = LastChunk::kPad);

}  // namespace ftte::data

#endif  // FTTE_DATA_LM_DATA_H_
