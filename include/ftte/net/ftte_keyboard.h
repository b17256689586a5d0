/* The C API of a keyboard that learns on the phone: what an app embeds to suggest next words
 * from a model that knows what this person types, without sending the text anywhere. It builds
 * without any server code, beside ftte_device.h (the same library, the same error codes).
 *
 * Life of a keyboard:
 *   ftte_keyboard_options o;  ftte_keyboard_options_init(&o);
 *   o.state_dir = "<app files>/keyboard";  o.base_model = "<app assets>/lm.safetensors";
 *   o.key = key32;                          optional: encrypt the state at rest
 *   ftte_keyboard* k = ftte_keyboard_open(&o, err, sizeof err);     NULL on error (see err)
 *   ftte_keyboard_add_text(k, "what the person sent\n", len, 0);    each message they type
 *   ftte_keyboard_predict(k, "what they are typing", len, 3, out, &n);  the suggestion bar
 *   ftte_keyboard_personalize(k, &session);   while charging and idle: refit the personal part
 *   ftte_keyboard_save(k);                    atomic; also done by personalize and close
 *   ftte_keyboard_close(k);
 *
 * The model is two parts. The global part is the federation's language model (a checkpoint
 * written by `ftte train --model lstm_lm --data ... --save` or by a federation); the personal
 * part is counted and fitted on this person's text only and is never uploaded. Suggestions mix
 * the two (include/ftte/data/personal_lm.h has the formula). <unk> is never suggested.
 *
 * State: one file, <state_dir>/state.ftte, holding the global model with its tokenizer, the
 * text store, the personal part and the federation identity; replaced atomically (write, fsync,
 * rename, fsync the directory), so a kill at any moment leaves the previous or the new state, never
 * a mix. With a key it is encrypted and authenticated (XChaCha20-Poly1305 from libsodium); without
 * one it carries a BLAKE2b checksum. The directory is locked while open: a second open fails.
 *
 * Text store: each added message with its time; the oldest are dropped when the store exceeds
 * store_max_bytes or a message is older than store_max_age_s.
 *
 * Errors: every call returns FTTE_OK or an FTTE_ERR_* code (ftte_device.h) and leaves a message
 * naming the problem and the fix in ftte_keyboard_last_error; a failed call changes nothing (in
 * memory or on disk). Functions other than ftte_keyboard_stop must not run concurrently on one
 * keyboard. */
#ifndef FTTE_NET_FTTE_KEYBOARD_H_
#define FTTE_NET_FTTE_KEYBOARD_H_

#include <stddef.h>
#include <stdint.h>

#include "ftte/net/ftte_device.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FTTE_KEYBOARD_KEY_BYTES 32

typedef struct ftte_keyboard ftte_keyboard;

typedef struct {
  const char* state_dir;  /* required; created (one level) if missing */
  const char* base_model; /* checkpoint to start from when state_dir holds no state; else unused */
  const uint8_t* key; /* FTTE_KEYBOARD_KEY_BYTES bytes to encrypt the state at rest; NULL = plain */
  int64_t store_max_bytes; /* text kept at most (default 1 MiB) */
  int64_t store_max_age_s; /* messages older than this are dropped (default 90 days; 0 = never) */
  int threads;             /* threads for predictions and fitting (default 1) */
} ftte_keyboard_options;

void ftte_keyboard_options_init(ftte_keyboard_options* options);

/* Opens the state in options->state_dir, or creates it from options->base_model (and saves it)
 * when the directory holds none. NULL on error, with a message in err (if err_len > 0):
 * FTTE_ERR_* meanings: NOT_FOUND (no state and no base model), DATA_LOSS (a corrupt state
 * file), UNAUTHENTICATED (a wrong key, or an encrypted state opened without one),
 * INVALID_ARGUMENT (a foreign directory or file, bad options), PRECONDITION (the directory is
 * open elsewhere). The code is written to *code if code is not NULL. */
ftte_keyboard* ftte_keyboard_open(const ftte_keyboard_options* options, int* code, char* err,
                                  size_t err_len);

/* Adds one message the person typed (UTF-8; lines end in '\n', a final line may omit it) to the
 * store and to the personal part at once. unix_time_s = when it was typed (0 = now). Refused:
 * invalid UTF-8 (the message gives the byte offset), text without any word, a message larger
 * than store_max_bytes. Not saved until the next save. */
int ftte_keyboard_add_text(ftte_keyboard* keyboard, const char* text, size_t len,
                           int64_t unix_time_s);

typedef struct {
  const char* text;   /* the word (NUL-terminated UTF-8); "" for end_of_line; valid until the
                         next call on this keyboard. With a subword tokenizer: the next piece,
                         starting with a space when it starts a word */
  double probability; /* under the mixture of the global and personal parts */
  int end_of_line;    /* nonzero: the likeliest next thing is ending the line */
} ftte_suggestion;

/* The k most likely next words after `context` (the line being typed up to the cursor, UTF-8),
 * likeliest first, written to out[0..*count). When the context ends inside a word (its last
 * character is a letter, digit or non-ASCII), the suggestions complete that word (words of the
 * vocabulary starting with it, ASCII case ignored; possibly none); after a space or punctuation
 * they are the next word. (Word completion is for word tokenizers; the char and subword ones
 * always suggest the next piece.) personal = 0 ranks by the global part alone (for comparison). */
int ftte_keyboard_predict(ftte_keyboard* keyboard, const char* context, size_t len, int k,
                          int personal, ftte_suggestion* out, int* count);

typedef struct {
  int threads;            /* 0 = the keyboard's */
  int64_t time_budget_ms; /* stop fitting after this long (0 = no limit); the best so far is kept */
  /* Called between steps with the fraction done (0..1); may be NULL. */
  void (*progress)(void* user, double fraction);
  void* user;
} ftte_keyboard_session;

typedef struct {
  int64_t messages, store_bytes, tokens; /* the store now */
  int64_t fitted_on;                     /* held-out words the last fit scored (0: not fitted) */
  double lambda_max, kappa, discount;    /* the personal part's parameters */
  double global_log_likelihood, personal_log_likelihood; /* of the last fit's held-out words */
  int64_t dropped_messages;                              /* by the retention policy since open */
  int64_t model_version;   /* the federation's model version of the global part (-1: the base) */
  const char* device_name; /* the name federate enrols with by default; valid until close */
} ftte_keyboard_stats;

/* Refits the personal part on the store (newest tenth held out to choose its parameters, then
 * everything counted) and saves. FTTE_ERR_CANCELLED if ftte_keyboard_stop was called (the best
 * fit so far is kept and saved). */
int ftte_keyboard_personalize(ftte_keyboard* keyboard, const ftte_keyboard_session* session);

/* Takes part in a federation with the text in the store: trains the federation's model (the
 * global part) on it as one device of `ftte serve` and uploads model updates only, never the text
 * or the personal part. Blocks until the server says the federation is done, or
 * options->max_updates are accepted, or ftte_keyboard_stop; then the global part becomes the
 * federation's latest model (the personal part is kept; personalize refits it) and is saved.
 * The server must start from this keyboard's base checkpoint ([model] init): its model is
 * checked against this one (FTTE_ERR_PRECONDITION otherwise, nothing changed). options are
 * ftte_device.h's (server, TLS, enrolment key, name, memory budget, ...); name NULL enrols with
 * the keyboard's own identity, a random name made when the state was created and kept in it
 * (ftte_keyboard_stats.device_name), so the server knows the phone across sessions and
 * restarts of the app; stats, if not NULL,
 * receives the device's counts. Errors as ftte_device_run; no text in the store is
 * FTTE_ERR_PRECONDITION; a final model with a non-finite value is FTTE_ERR_DATA_LOSS (the
 * keyboard keeps its own). */
int ftte_keyboard_federate(ftte_keyboard* keyboard, const ftte_device_options* options,
                           ftte_device_stats* stats);

/* From another thread: personalize or federate returns soon after. */
void ftte_keyboard_stop(ftte_keyboard* keyboard);

typedef struct {
  int64_t scored;                                     /* words scored (targets in the vocabulary) */
  double top1, top3, perplexity;                      /* global + personal */
  double global_top1, global_top3, global_perplexity; /* the global part alone */
} ftte_keyboard_eval;

/* Scores next-word prediction over `text` (the person's messages, as for add_text, read as one
 * stream) without learning from it: for each word, the suggestions before it was typed. */
int ftte_keyboard_evaluate(ftte_keyboard* keyboard, const char* text, size_t len,
                           ftte_keyboard_eval* out);

/* Writes the state atomically. */
int ftte_keyboard_save(ftte_keyboard* keyboard);

void ftte_keyboard_get_stats(const ftte_keyboard* keyboard, ftte_keyboard_stats* stats);
const char* ftte_keyboard_last_error(const ftte_keyboard* keyboard);

/* Saves (if anything changed since the last save) and frees. Returns the save's code. */
int ftte_keyboard_close(ftte_keyboard* keyboard);

#ifdef __cplusplus
}
#endif

#endif /* FTTE_NET_FTTE_KEYBOARD_H_ */
