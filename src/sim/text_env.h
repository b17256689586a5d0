// The text half of MakeEnvironment (private to src/sim): corpus, tokenizer, next-word samples
// and the natural partition, one device per user with training text.
#ifndef FTTE_SIM_TEXT_ENV_H_
#define FTTE_SIM_TEXT_ENV_H_

#include "ftte/sim/simulator.h"

namespace ftte::sim::internal {

// Fills every field of `env` from a text dataset (config.dataset is bible-chapters, bible-books
// or text-dir). Evaluation uses test_limit held-out samples spread evenly over the users (every
// k-th sample; 0 = all), since samples are ordered by user. Errors: the loaders' (with their
// install hints), no user with training text, a device trace shorter than the users.
Status MakeTextEnvironment(const SimConfig& config, Environment* env);

// Tuning trials: the tune.validation training samples (of n) that become the evaluated set,
// drawn at random by the seed, ascending. Error: validation >= n (no training data left).
Result<std::vector<int64_t>> ValidationIndices(const SimConfig& config, int64_t n);

}  // namespace ftte::sim::internal

#endif  // FTTE_SIM_TEXT_ENV_H_
