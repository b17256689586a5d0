// Files that survive a crash at any moment.
#ifndef FTTE_CORE_FILE_H_
#define FTTE_CORE_FILE_H_

#include <string>
#include <string_view>
#include <vector>

#include "ftte/core/status.h"

namespace ftte {

// Owns a file descriptor; closes it when destroyed.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd();
  int get() const { return fd_; }
  // Closes now so the caller sees the error (close can report deferred write failures).
  int Close();

 private:
  int fd_;
};

// The whole file. Errors: NotFound, IoError.
Result<std::string> ReadWholeFile(const std::string& path);

// Writes the concatenation of `chunks` to `path` atomically: "<path>.tmp" (created with
// `mode`), fsync'ed, renamed over `path`, then the containing directory fsync'ed. After a crash
// `path` holds the old or the new complete file. Errors: IoError naming the file and the OS's
// reason; the temporary file is removed.
Status WriteFileAtomically(const std::string& path, const std::vector<std::string_view>& chunks,
                           int mode = 0644);

}  // namespace ftte

#endif  // FTTE_CORE_FILE_H_
