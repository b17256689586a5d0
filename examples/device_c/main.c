/* A device in plain C, using only the C API (include/ftte/net/ftte_device.h): what a phone app
 * does through JNI or Swift. It trains on local Fashion-MNIST samples and takes part until the
 * server says the federation is done.
 *
 *   device_c HOST:PORT ENROLL_KEY NAME [DATA_DIR [SAMPLES [CA_PEM]]]
 * Without CA_PEM it connects in plain text (a loopback demo server with insecure = true). */
#include <stdio.h>
#include <stdlib.h>

#include "ftte/net/ftte_device.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s HOST:PORT ENROLL_KEY NAME [DATA_DIR [SAMPLES [CA_PEM]]]\n", argv[0]);
    return 2;
  }
  ftte_device_options o;
  ftte_device_options_init(&o);
  o.server = argv[1];
  o.enroll_key = argv[2];
  o.name = argv[3];
  o.root_ca = argc > 6 ? argv[6] : NULL;
  o.insecure = argc > 6 ? 0 : 1;
  o.memory_budget_bytes = 16 << 20;
  o.verbose = 1;

  char err[256];
  ftte_device* d = ftte_device_create(&o, err, sizeof err);
  if (!d) {
    fprintf(stderr, "device_c: %s\n", err);
    return 1;
  }
  const char* dir = argc > 4 ? argv[4] : "/usr/share/datasets/fashion-mnist";
  const long long samples = argc > 5 ? atoll(argv[5]) : 1000;
  if (ftte_device_load_idx(d, dir, samples) != FTTE_OK) {
    fprintf(stderr, "device_c: %s\n", ftte_device_last_error(d));
    ftte_device_destroy(d);
    return 1;
  }
  const int rc = ftte_device_run(d);
  ftte_device_stats s;
  ftte_device_get_stats(d, &s);
  printf("device_c: %lld updates accepted, model version %lld, peak %lld KiB (predicted %lld KiB)\n",
         (long long)s.accepted, (long long)s.version, (long long)(s.measured_peak_bytes >> 10),
         (long long)(s.predicted_peak_bytes >> 10));
  if (rc != FTTE_OK) fprintf(stderr, "device_c: %s\n", ftte_device_last_error(d));
  ftte_device_destroy(d);
  return rc == FTTE_OK ? 0 : 1;
}
