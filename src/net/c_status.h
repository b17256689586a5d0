// What the C APIs share: the error codes (FTTE_ERR_*, include/ftte/net/ftte_device.h) of a
// Status, and the device options.
#ifndef FTTE_NET_C_STATUS_H_
#define FTTE_NET_C_STATUS_H_

#include "ftte/core/status.h"
#include "ftte/net/device.h"
#include "ftte/net/ftte_device.h"

namespace ftte::net {

inline int CCode(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOk:
      return FTTE_OK;
    case StatusCode::kInvalidArgument:
      return FTTE_ERR_INVALID_ARGUMENT;
    case StatusCode::kDataLoss:
      return FTTE_ERR_DATA_LOSS;
    case StatusCode::kNotFound:
      return FTTE_ERR_NOT_FOUND;
    case StatusCode::kUnauthenticated:
      return FTTE_ERR_UNAUTHENTICATED;
    case StatusCode::kFailedPrecondition:
      return FTTE_ERR_PRECONDITION;
    case StatusCode::kUnavailable:
      return FTTE_ERR_UNAVAILABLE;
    default:
      return FTTE_ERR_INTERNAL;
  }
}

// The runtime's options from the C ones (c_api.cc). Errors name the missing or bad field.
Result<DeviceOptions> DeviceOptionsFromC(const ftte_device_options* options);
// The C stats of a device.
ftte_device_stats DeviceStatsToC(const DeviceStats& stats);

}  // namespace ftte::net

#endif  // FTTE_NET_C_STATUS_H_
