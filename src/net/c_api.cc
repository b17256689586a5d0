// The C API over net::Device (include/ftte/net/ftte_device.h). No exception or C++ type
// crosses it.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>

#include "c_status.h"
#include "ftte/data/idx.h"
#include "ftte/net/device.h"
#include "ftte/net/ftte_device.h"

struct ftte_device {
  ftte::net::DeviceOptions options;
  ftte::data::ImageDataset data;
  std::unique_ptr<ftte::net::Device> device;  // created when run() first needs it
  mutable std::mutex mu;                      // guards `device` for stop() and get_stats()
  std::string last_error;
};

namespace {

int Fail(ftte_device* d, const ftte::Status& s) {
  d->last_error = s.ToString();
  return ftte::net::CCode(s);
}

std::string Str(const char* s) { return s ? s : ""; }

}  // namespace

namespace ftte::net {

Result<DeviceOptions> DeviceOptionsFromC(const ftte_device_options* o) {
  if (!o) return InvalidArgument("options are NULL");
  if (!o->server || !o->name || !o->enroll_key) {
    return InvalidArgument("options need server, name and enroll_key");
  }
  if (o->memory_budget_bytes <= 0) return InvalidArgument("memory_budget_bytes must be > 0");
  DeviceOptions p;
  p.server = o->server;
  p.root_ca = Str(o->root_ca);
  p.client_cert = Str(o->client_cert);
  p.client_key = Str(o->client_key);
  p.insecure = o->insecure != 0;
  p.enroll_key = o->enroll_key;
  p.name = o->name;
  p.memory_budget_bytes = o->memory_budget_bytes;
  p.max_updates = o->max_updates;
  p.max_attempts = o->max_attempts;
  p.seed = o->seed;
  if (o->verbose) p.log = [](const std::string& m) { std::cerr << m << "\n"; };
  return p;
}

ftte_device_stats DeviceStatsToC(const DeviceStats& s) {
  ftte_device_stats out;
  std::memset(&out, 0, sizeof out);
  out.accepted = s.accepted;
  out.duplicates = s.duplicates;
  out.rejected = s.rejected;
  out.retries = s.retries;
  out.version = s.version;
  out.predicted_peak_bytes = s.predicted_peak_bytes;
  out.measured_peak_bytes = s.measured_peak_bytes;
  out.last_loss = s.last_loss;
  return out;
}

}  // namespace ftte::net

extern "C" {

void ftte_device_options_init(ftte_device_options* o) {
  std::memset(o, 0, sizeof *o);
  o->memory_budget_bytes = 64 << 20;
}

ftte_device* ftte_device_create(const ftte_device_options* o, char* err, size_t err_len) {
  auto fail = [&](const std::string& m) -> ftte_device* {
    if (err && err_len > 0) std::snprintf(err, err_len, "%s", m.c_str());
    return nullptr;
  };
  auto options = ftte::net::DeviceOptionsFromC(o);
  if (!options.ok()) return fail(options.status().message());
  auto d = std::make_unique<ftte_device>();
  d->options = std::move(options).value();
  return d.release();
}

int ftte_device_set_data(ftte_device* d, const float* samples, int64_t sample_numel,
                         const int32_t* labels, int64_t n) {
  if (!d) return FTTE_ERR_INVALID_ARGUMENT;
  if (!samples || !labels || n <= 0 || sample_numel <= 0) {
    return Fail(d,
                ftte::InvalidArgument("set_data needs samples, labels, n > 0, sample_numel > 0"));
  }
  ftte::data::ImageDataset ds;
  ds.size = n;
  ds.channels = 1;
  ds.height = 1;
  ds.width = static_cast<int>(sample_numel);
  ds.images.assign(samples, samples + n * sample_numel);
  ds.labels.assign(labels, labels + n);
  for (int32_t l : ds.labels) ds.num_classes = std::max(ds.num_classes, l + 1);
  d->data = std::move(ds);
  return FTTE_OK;
}

int ftte_device_load_idx(ftte_device* d, const char* dir, int64_t max_samples) {
  if (!d || !dir) return FTTE_ERR_INVALID_ARGUMENT;
  auto ds = ftte::data::LoadFashionMnist(dir, true);
  if (!ds.ok()) return Fail(d, ds.status());
  d->data = max_samples > 0 ? ds->Head(max_samples) : std::move(ds).value();
  return FTTE_OK;
}

int ftte_device_run(ftte_device* d) {
  if (!d) return FTTE_ERR_INVALID_ARGUMENT;
  {
    std::lock_guard<std::mutex> lock(d->mu);
    if (!d->device) {
      auto dev = ftte::net::Device::Create(d->options, d->data);
      if (!dev.ok()) return Fail(d, dev.status());
      d->device = std::move(dev).value();
    }
  }
  ftte::Status s = d->device->Run();
  if (!s.ok()) return Fail(d, s);
  d->last_error.clear();
  return FTTE_OK;
}

void ftte_device_stop(ftte_device* d) {
  if (!d) return;
  std::lock_guard<std::mutex> lock(d->mu);
  if (d->device) d->device->Stop();
}

void ftte_device_get_stats(const ftte_device* d, ftte_device_stats* out) {
  if (!d || !out) return;
  std::memset(out, 0, sizeof *out);
  std::lock_guard<std::mutex> lock(d->mu);
  if (!d->device) return;
  *out = ftte::net::DeviceStatsToC(d->device->stats());
}

const char* ftte_device_last_error(const ftte_device* d) { return d ? d->last_error.c_str() : ""; }

void ftte_device_destroy(ftte_device* d) { delete d; }

}  // extern "C"
