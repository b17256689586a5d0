// Status and Result<T>: the error channel at every fallible boundary (files, config, user input).
//
// A Status is either OK or carries a code and a message. Messages name the problem and, where
// possible, the fix ("...: expected IDX magic 0x00000803, got 0x1f8b0808; is the file still
// gzip-compressed?"). Nothing here throws.
#ifndef FTTE_CORE_STATUS_H_
#define FTTE_CORE_STATUS_H_

#include <optional>
#include <string>
#include <utility>

#include "ftte/core/check.h"

namespace ftte {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // the caller passed something malformed (flag, config value, shape)
  kNotFound,         // a file, key or name that does not exist
  kDataLoss,         // a file is truncated or corrupt
  kIoError,          // the OS refused a read or write
  kFailedPrecondition,
  kUnimplemented,
  kInternal,
  kUnauthenticated,  // a network call without valid credentials
  kUnavailable,      // a server that cannot be reached now; retrying may help
};

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "InvalidArgument: <message>", or "OK".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}

inline Status Unauthenticated(std::string m) {
  return {StatusCode::kUnauthenticated, std::move(m)};
}
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }

// Either a value or a non-OK Status. Accessing value() of an error aborts (a programming error).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    FTTE_CHECK(!status_.ok()) << "Result constructed from an OK status without a value";
  }

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & {
    FTTE_CHECK(ok()) << status_.ToString();
    return *value_;
  }
  const T& value() const& {
    FTTE_CHECK(ok()) << status_.ToString();
    return *value_;
  }
  T&& value() && {
    FTTE_CHECK(ok()) << status_.ToString();
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace ftte

// Returns early from the enclosing function if `expr` (a Status) is not OK.
#define FTTE_RETURN_IF_ERROR(expr)     \
  do {                                 \
    ::ftte::Status _ftte_s = (expr);   \
    if (!_ftte_s.ok()) return _ftte_s; \
  } while (0)

#define FTTE_CONCAT_INNER(a, b) a##b
#define FTTE_CONCAT(a, b) FTTE_CONCAT_INNER(a, b)
// `FTTE_ASSIGN_OR_RETURN(auto x, MakeX());` declares x from a Result or returns its Status.
#define FTTE_ASSIGN_OR_RETURN(lhs, expr) \
  FTTE_ASSIGN_OR_RETURN_IMPL(FTTE_CONCAT(_ftte_r_, __LINE__), lhs, expr)
#define FTTE_ASSIGN_OR_RETURN_IMPL(r, lhs, expr) \
  auto r = (expr);                               \
  if (!r.ok()) return r.status();                \
  lhs = std::move(r).value()

#endif  // FTTE_CORE_STATUS_H_
