#include "ftte/core/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace ftte {

namespace {

// "cannot <action> '<path>': <OS reason><hint>", built by appending: GCC 12 warns (-Wrestrict,
// a false positive) on "lit" + std::string&&.
Status OsError(std::string_view action, const std::string& path, std::string_view hint = "") {
  std::string m = "cannot ";
  m.append(action).append(" '").append(path).append("': ").append(std::strerror(errno));
  m.append(hint);
  return IoError(std::move(m));
}

Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  const char* p = bytes.data();
  size_t size = bytes.size();
  while (size > 0) {
    const ssize_t n = ::write(fd, p, std::min<size_t>(size, size_t{1} << 30));
    if (n < 0) {
      if (errno == EINTR) continue;
      return OsError("write", path, "; is the disk full?");
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Writes the chunks to `tmp` and makes it durable. The caller removes `tmp` on failure.
Status WriteDurably(const std::string& tmp, const std::vector<std::string_view>& chunks, int mode) {
  ScopedFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (fd.get() < 0) {
    return OsError("create", tmp, "; does the directory exist and is it writable?");
  }
  for (std::string_view chunk : chunks) FTTE_RETURN_IF_ERROR(WriteAll(fd.get(), chunk, tmp));
  if (::fsync(fd.get()) != 0) return OsError("fsync", tmp);
  if (fd.Close() != 0) return OsError("close", tmp);
  return Status::Ok();
}

// Persists the rename itself; without this a crash could forget the new directory entry.
Status SyncParentDirectory(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) parent = ".";
  const std::string dir = parent.string();
  ScopedFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return OsError("open directory", dir);
  // Some file systems cannot fsync directories (EINVAL); the rename is then as durable as it gets.
  if (::fsync(fd.get()) != 0 && errno != EINVAL) {
    return OsError("fsync directory", dir);
  }
  return Status::Ok();
}

}  // namespace

ScopedFd::~ScopedFd() {
  if (fd_ >= 0) ::close(fd_);
}

int ScopedFd::Close() {
  const int rc = ::close(fd_);
  fd_ = -1;
  return rc;
}

Result<std::string> ReadWholeFile(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return NotFound("'" + path + "' does not exist");
    return OsError("open", path);
  }
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return OsError("read", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Status WriteFileAtomically(const std::string& path, const std::vector<std::string_view>& chunks,
                           int mode) {
  const std::string tmp = path + ".tmp";
  Status s = WriteDurably(tmp, chunks, mode);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    s = OsError("rename", tmp, " to " + path);
  }
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  return SyncParentDirectory(path);
}

}  // namespace ftte
