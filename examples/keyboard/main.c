/* A keyboard in plain C, using only the public C API (include/ftte/net/ftte_keyboard.h): a person
 * types messages, sees the three suggestions the keyboard offered before each word, and the
 * keyboard learns from what they typed. Everything stays in STATE_DIR on this machine.
 *
 *   keyboard --state DIR [--model CKPT] [--key-file FILE] [--quiet]
 *            [--server HOST:PORT --enroll-key-file FILE [--name NAME] [--tls-ca PEM | --insecure]]
 *
 * CKPT (needed the first time only) is a language model from
 *   ftte train --model lstm_lm --data bible --vocab 2000 --context 16 --save CKPT
 * FILE holds 32 bytes: the state is then encrypted at rest with that key.
 *
 * Each input line is a message the person typed, or a command:
 *   :suggest TEXT   the three suggestions after TEXT (ending inside a word completes it)
 *   :train          refit the personal part (what an app does while the phone charges)
 *   :eval FILE      next-word top-1 / top-3 over FILE, global model alone vs with personal part
 *   :stats          what the keyboard holds
 *   :federate [N]   join the federation at --server with the typed text until it is done (or N
 *                   updates are accepted); the keyboard then uses the federation's model. It
 *                   enrols with the keyboard's own name (kept in its state) unless --name.
 *   :save           save now (also done by :train and at the end)
 *   :quit           save and leave (as does the end of input)
 * Scriptable: `keyboard --state DIR < session.txt`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftte/net/ftte_keyboard.h"

static int fail(const char* what, ftte_keyboard* k) {
  fprintf(stderr, "keyboard: %s: %s\n", what, ftte_keyboard_last_error(k));
  return 1;
}

static void print_suggestions(const ftte_suggestion* s, int n) {
  for (int i = 0; i < 3; ++i) {
    const char* w = i >= n ? "" : s[i].end_of_line ? "<end>" : s[i].text;
    printf("%s%-12s", i ? " | " : "[", w);
  }
  printf("]");
}

static int word_byte(char c) {
  const unsigned char u = (unsigned char)c;
  return (u >= '0' && u <= '9') || ((u | 0x20) >= 'a' && (u | 0x20) <= 'z') || u >= 0x80;
}

/* Shows, for each word of the message, the suggestions offered before it was typed (* = the
 * word was among them), then the suggestions for what comes next. */
static int show_message(ftte_keyboard* k, const char* line, size_t len) {
  size_t i = 0;
  int words = 0, hits = 0;
  ftte_suggestion s[3];
  int n = 0;
  while (i < len) {
    while (i < len && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i >= len) break;
    /* A word (letters, digits, non-ASCII; ' and - inside), or one punctuation mark. */
    size_t end = i + 1;
    if (word_byte(line[i])) {
      while (end < len && (word_byte(line[end]) || ((line[end] == '\'' || line[end] == '-') &&
                                                    end + 1 < len && word_byte(line[end + 1])))) {
        ++end;
      }
    }
    /* The text before the word plus a space (spaces do not change what the model reads): the
     * next-word suggestions, also before punctuation typed right after a word. */
    char* before = malloc(i + 1);
    if (!before) return 1;
    memcpy(before, line, i);
    before[i] = ' ';
    const int prc = ftte_keyboard_predict(k, before, i + 1, 3, 1, s, &n);
    free(before);
    if (prc != FTTE_OK) return fail("predict", k);
    int hit = 0;
    for (int j = 0; j < n; ++j) {
      if (strlen(s[j].text) == end - i && strncasecmp(s[j].text, line + i, end - i) == 0) hit = 1;
    }
    printf("  %-14.*s%s ", (int)(end - i), line + i, hit ? "*" : " ");
    print_suggestions(s, n);
    printf("\n");
    words++;
    hits += hit;
    i = end;
  }
  if (ftte_keyboard_predict(k, "", 0, 3, 1, s, &n) != FTTE_OK) return fail("predict", k);
  printf("  %-15s ", "next line:");
  print_suggestions(s, n);
  printf("\n  %d of %d words were suggested\n", hits, words);
  return 0;
}

static int eval_file(ftte_keyboard* k, const char* path) {
  FILE* f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "keyboard: cannot open %s\n", path);
    return 1;
  }
  size_t cap = 1 << 16, len = 0, got;
  char* text = malloc(cap);
  while (text && (got = fread(text + len, 1, cap - len, f)) > 0) {
    len += got;
    if (len == cap) text = realloc(text, cap *= 2);
  }
  fclose(f);
  if (!text) return 1;
  ftte_keyboard_eval e;
  const int rc = ftte_keyboard_evaluate(k, text, len, &e);
  free(text);
  if (rc != FTTE_OK) return fail("eval", k);
  printf(
      "eval %s: %lld words; global top-1 %.2f%% top-3 %.2f%% perplexity %.1f; "
      "with personal top-1 %.2f%% top-3 %.2f%% perplexity %.1f\n",
      path, (long long)e.scored, 100 * e.global_top1, 100 * e.global_top3, e.global_perplexity,
      100 * e.top1, 100 * e.top3, e.perplexity);
  return 0;
}

static void progress(void* user, double fraction) {
  (void)user;
  if (isatty(STDERR_FILENO)) fprintf(stderr, "\rtraining %3.0f%%", 100 * fraction);
}

static int read_key(const char* path, uint8_t key[FTTE_KEYBOARD_KEY_BYTES]) {
  FILE* f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "keyboard: cannot open key file %s\n", path);
    return 1;
  }
  const size_t n = fread(key, 1, FTTE_KEYBOARD_KEY_BYTES, f);
  const int extra = fgetc(f) != EOF;
  fclose(f);
  if (n != FTTE_KEYBOARD_KEY_BYTES || extra) {
    fprintf(stderr, "keyboard: %s must hold exactly %d bytes (e.g. head -c 32 /dev/urandom)\n",
            path, FTTE_KEYBOARD_KEY_BYTES);
    return 1;
  }
  return 0;
}

/* Reads the first line of `path` into buf (the enrolment secret). */
static int read_line(const char* path, char* buf, size_t cap) {
  FILE* f = fopen(path, "r");
  if (!f || !fgets(buf, (int)cap, f)) {
    fprintf(stderr, "keyboard: cannot read the enrolment key file %s\n", path);
    if (f) fclose(f);
    return 1;
  }
  fclose(f);
  buf[strcspn(buf, "\r\n")] = '\0';
  return 0;
}

static int federate(ftte_keyboard* k, const ftte_device_options* fed, const char* arg) {
  if (!fed->server) {
    fprintf(stderr, "keyboard: :federate needs --server HOST:PORT and --enroll-key-file FILE\n");
    return 1;
  }
  ftte_device_options o = *fed;
  if (*arg) o.max_updates = atoll(arg);
  ftte_device_stats st;
  if (ftte_keyboard_federate(k, &o, &st) != FTTE_OK) return fail("federate", k);
  ftte_keyboard_stats ks;
  ftte_keyboard_get_stats(k, &ks);
  printf(
      "federated as %s: %lld updates accepted, %lld refused; the keyboard now uses model "
      "version %lld\n",
      ks.device_name, (long long)st.accepted, (long long)st.rejected, (long long)ks.model_version);
  return 0;
}

int main(int argc, char** argv) {
  ftte_keyboard_options o;
  ftte_keyboard_options_init(&o);
  ftte_device_options fed;
  ftte_device_options_init(&fed);
  fed.max_attempts = 20;
  char enroll_key[256] = "";
  uint8_t key[FTTE_KEYBOARD_KEY_BYTES];
  int quiet = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--state") == 0 && i + 1 < argc) {
      o.state_dir = argv[++i];
    } else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
      o.base_model = argv[++i];
    } else if (strcmp(argv[i], "--key-file") == 0 && i + 1 < argc) {
      if (read_key(argv[++i], key) != 0) return 2;
      o.key = key;
    } else if (strcmp(argv[i], "--quiet") == 0) {
      quiet = 1;
    } else if (strcmp(argv[i], "--server") == 0 && i + 1 < argc) {
      fed.server = argv[++i];
    } else if (strcmp(argv[i], "--enroll-key-file") == 0 && i + 1 < argc) {
      if (read_line(argv[++i], enroll_key, sizeof enroll_key) != 0) return 2;
      fed.enroll_key = enroll_key;
    } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
      fed.name = argv[++i];
    } else if (strcmp(argv[i], "--tls-ca") == 0 && i + 1 < argc) {
      fed.root_ca = argv[++i];
    } else if (strcmp(argv[i], "--insecure") == 0) {
      fed.insecure = 1;
    } else {
      fprintf(stderr,
              "usage: %s --state DIR [--model CKPT] [--key-file FILE] [--quiet]\n"
              "          [--server HOST:PORT --enroll-key-file FILE [--name NAME]"
              " [--tls-ca PEM | --insecure]]\n",
              argv[0]);
      return 2;
    }
  }
  if (fed.server && !fed.enroll_key) {
    fprintf(stderr, "keyboard: --server needs --enroll-key-file FILE (the federation's secret)\n");
    return 2;
  }
  if (!o.state_dir) {
    fprintf(stderr, "keyboard: --state DIR is required (where the keyboard keeps its state)\n");
    return 2;
  }
  char err[512];
  int code = 0;
  ftte_keyboard* k = ftte_keyboard_open(&o, &code, err, sizeof err);
  if (!k) {
    fprintf(stderr, "keyboard: %s\n", err);
    return 1;
  }
  const int interactive = isatty(STDIN_FILENO);
  char* line = NULL;
  size_t cap = 0;
  ssize_t got;
  int rc = 0;
  for (;;) {
    if (interactive) printf("> "), fflush(stdout);
    if ((got = getline(&line, &cap, stdin)) < 0) break;
    size_t len = (size_t)got;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    if (len == 0) continue;
    if (strcmp(line, ":quit") == 0) break;
    if (strncmp(line, ":suggest ", 9) == 0) {
      ftte_suggestion s[3];
      int n = 0;
      if (ftte_keyboard_predict(k, line + 9, len - 9, 3, 1, s, &n) != FTTE_OK) {
        rc = fail("suggest", k);
        continue;
      }
      print_suggestions(s, n);
      printf("\n");
    } else if (strcmp(line, ":train") == 0) {
      ftte_keyboard_session session = {0};
      session.progress = progress;
      if (ftte_keyboard_personalize(k, &session) != FTTE_OK) {
        rc = fail("train", k);
        continue;
      }
      if (isatty(STDERR_FILENO)) fprintf(stderr, "\r");
      ftte_keyboard_stats st;
      ftte_keyboard_get_stats(k, &st);
      printf(
          "trained on %lld messages: personal weight %.2f (kappa %.0f, discount %.2f); "
          "held-out log-likelihood %.3f -> %.3f over %lld words\n",
          (long long)st.messages, st.lambda_max, st.kappa, st.discount, st.global_log_likelihood,
          st.personal_log_likelihood, (long long)st.fitted_on);
    } else if (strncmp(line, ":eval ", 6) == 0) {
      rc |= eval_file(k, line + 6);
    } else if (strcmp(line, ":stats") == 0) {
      ftte_keyboard_stats st;
      ftte_keyboard_get_stats(k, &st);
      printf("%lld messages, %lld bytes, %lld words kept; %lld dropped by retention\n",
             (long long)st.messages, (long long)st.store_bytes, (long long)st.tokens,
             (long long)st.dropped_messages);
    } else if (strncmp(line, ":federate", 9) == 0 && (line[9] == '\0' || line[9] == ' ')) {
      rc |= federate(k, &fed, line[9] ? line + 10 : "");
    } else if (strcmp(line, ":save") == 0) {
      if (ftte_keyboard_save(k) != FTTE_OK) rc = fail("save", k);
    } else if (line[0] == ':') {
      fprintf(stderr,
              "keyboard: unknown command %s (:suggest :train :eval :stats :federate :save :quit)\n",
              line);
      rc = 1;
    } else {
      if (!quiet && show_message(k, line, len) != 0) rc = 1;
      line[len] = '\n';
      if (ftte_keyboard_add_text(k, line, len + 1, 0) != FTTE_OK) rc = fail("learn", k);
    }
  }
  free(line);
  if (ftte_keyboard_close(k) != FTTE_OK) {
    fprintf(stderr, "keyboard: the final save failed\n");
    return 1;
  }
  return rc;
}
