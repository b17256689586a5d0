// FTTE_CHECK: aborts with file, line and a message when an internal invariant is broken
// (a shape mismatch inside a kernel, an out-of-range index computed by ftte itself). Never
// used for user input: that gets a Status.
#ifndef FTTE_CORE_CHECK_H_
#define FTTE_CORE_CHECK_H_

#include <sstream>

namespace ftte::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* expr);
  [[noreturn]] ~CheckFailure();
  template <typename T>
  CheckFailure& operator<<(const T& v) {
    stream_ << v;
    return *this;
  }

 private:
  std::ostringstream stream_;
};

// Lets `FTTE_CHECK(x) << "msg";` compile to a void expression.
struct Voidify {
  void operator&(const CheckFailure&) {}
};

}  // namespace ftte::internal

#define FTTE_CHECK(cond) \
  (cond) ? (void)0       \
         : ::ftte::internal::Voidify() & ::ftte::internal::CheckFailure(__FILE__, __LINE__, #cond)

#endif  // FTTE_CORE_CHECK_H_
