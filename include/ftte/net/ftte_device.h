/* The C API of the ftte device runtime: what an Android (JNI) or iOS (Swift) app embeds to take
 * part in a federation. It builds without any server code (cmake -DFTTE_WITH_SERVER=OFF).
 *
 * Life of a device:
 *   ftte_device_options o;  ftte_device_options_init(&o);  o.server = "host:443"; ...
 *   ftte_device* d = ftte_device_create(&o, err, sizeof err);      NULL on error (see err)
 *   ftte_device_set_data(d, images, labels, n) or ftte_device_load_idx(d, dir)
 *   int rc = ftte_device_run(d);   blocks; 0 when done, else an FTTE_ERR_* code
 *   ftte_device_stop(d);           from another thread: run() returns soon after
 *   ftte_device_destroy(d);
 * Samples stay on the device; only model updates are sent, over TLS unless insecure is set.
 * Functions other than ftte_device_stop and ftte_device_get_stats must not run concurrently on
 * one device. No global state: several devices may live in one process. */
#ifndef FTTE_NET_FTTE_DEVICE_H_
#define FTTE_NET_FTTE_DEVICE_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
  FTTE_OK = 0,
  FTTE_ERR_INVALID_ARGUMENT = 1, /* bad options or data */
  FTTE_ERR_NOT_FOUND = 2,        /* a file (certificate, data) is missing */
  FTTE_ERR_UNAUTHENTICATED = 3,  /* the enrolment key was refused */
  FTTE_ERR_PRECONDITION = 4,     /* e.g. the memory budget is below what a job needs */
  FTTE_ERR_UNAVAILABLE = 5,      /* the server stayed unreachable for max_attempts tries */
  FTTE_ERR_INTERNAL = 6,
  FTTE_ERR_DATA_LOSS = 7, /* a file (data, saved state) is truncated or corrupt */
  FTTE_ERR_CANCELLED = 8  /* stopped by a *_stop call */
};

typedef struct ftte_device ftte_device;

typedef struct {
  const char* server;      /* "host:port" */
  const char* root_ca;     /* PEM file of the CA the server certificate chains to; NULL = system */
  const char* client_cert; /* mutual TLS: PEM certificate and key files; NULL = none */
  const char* client_key;
  int insecure; /* nonzero: plain text (loopback tests only) */
  const char* enroll_key;
  const char* name; /* stable device name */
  int64_t memory_budget_bytes;
  int64_t max_updates; /* 0 = until the server says the federation is done */
  int max_attempts;    /* consecutive transient failures before giving up; 0 = never */
  uint64_t seed;
  int verbose; /* nonzero: progress lines on stderr */
} ftte_device_options;

/* Fills sensible defaults (64 MiB budget, retry forever, quiet). */
void ftte_device_options_init(ftte_device_options* options);

/* Returns NULL on error and writes a message naming the problem into err (if err_len > 0). */
ftte_device* ftte_device_create(const ftte_device_options* options, char* err, size_t err_len);

/* The device's training samples, copied: n samples of sample_numel floats each (for an image
 * model: C*H*W pixels in [0, 1]) and n labels. */
int ftte_device_set_data(ftte_device* device, const float* samples, int64_t sample_numel,
                         const int32_t* labels, int64_t n);
/* Or loads them from an IDX directory (train-images-idx3-ubyte[.gz] + labels), keeping at most
 * max_samples (0 = all). */
int ftte_device_load_idx(ftte_device* device, const char* dir, int64_t max_samples);

int ftte_device_run(ftte_device* device);
void ftte_device_stop(ftte_device* device);

typedef struct {
  int64_t accepted, duplicates, rejected, retries, version;
  int64_t predicted_peak_bytes, measured_peak_bytes;
  double last_loss;
} ftte_device_stats;
void ftte_device_get_stats(const ftte_device* device, ftte_device_stats* stats);

/* The message of the last failed call on this device ("" if none). Valid until the next call. */
const char* ftte_device_last_error(const ftte_device* device);

void ftte_device_destroy(ftte_device* device);

#ifdef __cplusplus
}
#endif

#endif /* FTTE_NET_FTTE_DEVICE_H_ */
