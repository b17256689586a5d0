#include "state_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

namespace ftte::net {

namespace {

Status Errno(const std::string& what) { return IoError(what + ": " + std::strerror(errno)); }

Status WriteAll(int fd, const char* p, size_t n, const std::string& what) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Errno(what);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

uint32_t Crc(const std::string& s) {
  return static_cast<uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size())));
}

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return Errno("open " + dir);
  const int rc = ::fsync(fd);
  ::close(fd);
  return rc == 0 ? Status::Ok() : Errno("fsync " + dir);
}

}  // namespace

Result<std::unique_ptr<StateStore>> StateStore::Open(const std::string& dir, bool fsync) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return IoError("state directory '" + dir + "' cannot be created: " + ec.message() +
                   "; choose another [server] state_dir");
  }
  return std::unique_ptr<StateStore>(new StateStore(dir, fsync));
}

StateStore::~StateStore() {
  if (log_fd_ >= 0) ::close(log_fd_);
}

std::string StateStore::LogPath(int64_t generation) const {
  return dir_ + "/log-" + std::to_string(generation) + ".wal";
}

Result<StateStore::Loaded> StateStore::Load() {
  Loaded loaded;
  const std::string snap_path = dir_ + "/snapshot.pb";
  if (std::filesystem::exists(snap_path)) {
    std::ifstream in(snap_path, std::ios::binary);
    state::Snapshot s;
    if (!in || !s.ParseFromIstream(&in)) {
      return DataLoss("state snapshot '" + snap_path +
                      "' is unreadable; restore it from a backup or remove the state directory "
                      "to start over");
    }
    generation_ = s.log_generation();
    loaded.snapshot = std::move(s);
  }
  // Records of the current generation; older logs are leftovers of a finished snapshot.
  const std::string path = LogPath(generation_);
  int64_t valid = 0;
  if (std::filesystem::exists(path)) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string bytes = ss.str();
    // The record at `at`, if it is whole and intact.
    auto record = [&](size_t at, state::LogRecord* r) -> std::optional<size_t> {
      if (at + 8 > bytes.size()) return std::nullopt;
      const uint32_t len = GetU32(bytes.data() + at);
      const uint32_t crc = GetU32(bytes.data() + at + 4);
      if (at + 8 + len > bytes.size()) return std::nullopt;
      const std::string payload = bytes.substr(at + 8, len);
      if (Crc(payload) != crc || !r->ParseFromString(payload)) return std::nullopt;
      return at + 8 + len;
    };
    size_t at = 0;
    while (at < bytes.size()) {
      state::LogRecord r;
      const std::optional<size_t> next = record(at, &r);
      if (!next) break;
      loaded.log.push_back(std::move(r));
      at = *next;
    }
    // A crash mid-append leaves a torn last record; an intact record *after* a bad one means
    // the bad one is damage in the middle of the log, and those after it were acknowledged:
    // starting would silently drop them.
    if (at + 8 <= bytes.size()) {
      const size_t skip = at + 8 + GetU32(bytes.data() + at);
      state::LogRecord r;
      if (skip < bytes.size() && record(skip, &r)) {
        return DataLoss("state log '" + path + "' has a damaged record at byte " +
                        std::to_string(at) + " followed by intact ones (" +
                        std::to_string(loaded.log.size()) +
                        " records before it are fine); the server will not start and drop "
                        "acknowledged updates silently. Restore the state directory from a "
                        "backup, or accept the loss of that record and all after it with: "
                        "truncate -s " +
                        std::to_string(at) + " '" + path + "'");
      }
    }
    valid = static_cast<int64_t>(at);
    loaded.torn_bytes = static_cast<int64_t>(bytes.size()) - valid;
  }
  FTTE_RETURN_IF_ERROR(OpenLog(generation_, true));
  if (loaded.torn_bytes > 0 && ::ftruncate(log_fd_, valid) != 0) return Errno("truncate " + path);
  log_bytes_ = valid;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("log-", 0) == 0 && e.path().string() != path) {
      std::filesystem::remove(e.path());
    }
  }
  return loaded;
}

Status StateStore::OpenLog(int64_t generation, bool keep) {
  std::lock_guard<std::mutex> lock(fd_mu_);
  if (log_fd_ >= 0) ::close(log_fd_);
  const std::string path = LogPath(generation);
  log_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | (keep ? 0 : O_TRUNC), 0600);
  if (log_fd_ < 0) return Errno("open " + path);
  generation_ = generation;
  log_bytes_ = 0;
  return Status::Ok();
}

Status StateStore::Append(const state::LogRecord& record) {
  FTTE_ASSIGN_OR_RETURN(int64_t sequence, AppendAsync(record));
  return WaitDurable(sequence);
}

Result<int64_t> StateStore::AppendAsync(const state::LogRecord& record) {
  FTTE_CHECK(log_fd_ >= 0) << "StateStore::Append before Load";
  std::string payload;
  record.SerializeToString(&payload);
  std::string frame;
  PutU32(&frame, static_cast<uint32_t>(payload.size()));
  PutU32(&frame, Crc(payload));
  frame += payload;
  std::lock_guard<std::mutex> lock(fd_mu_);
  FTTE_RETURN_IF_ERROR(
      WriteAll(log_fd_, frame.data(), frame.size(), "append " + LogPath(generation_)));
  log_bytes_ += static_cast<int64_t>(frame.size());
  return ++appended_;
}

int64_t StateStore::appended() const {
  std::lock_guard<std::mutex> lock(fd_mu_);
  return appended_;
}

Status StateStore::WaitDurable(int64_t sequence) {
  if (!fsync_ || synced_ >= sequence) return Status::Ok();
  std::lock_guard<std::mutex> sync_lock(sync_mu_);
  if (synced_ >= sequence) return Status::Ok();  // a flush that started later covered it
  int fd = -1;
  int64_t target = 0;
  {
    // A duplicate descriptor stays valid if a snapshot switches logs meanwhile.
    std::lock_guard<std::mutex> lock(fd_mu_);
    target = appended_;
    fd = ::dup(log_fd_);
  }
  if (fd < 0) return Errno("dup log");
  if (flush_hook_for_test) flush_hook_for_test();
  const int rc = ::fdatasync(fd);
  ::close(fd);
  if (rc != 0) return Errno("fdatasync " + dir_);
  ++syncs_;
  int64_t seen = synced_.load();
  while (seen < target && !synced_.compare_exchange_weak(seen, target)) {
  }
  return Status::Ok();
}

Status StateStore::WriteSnapshot(state::Snapshot* snapshot) {
  // No flush runs during the rotation: one that synced the new, empty log could otherwise mark
  // records durable that are only in the old log, before the snapshot holding them is on disk.
  // WaitDurable calls block here until the snapshot covers their records.
  std::lock_guard<std::mutex> sync_lock(sync_mu_);
  const int64_t next = generation_ + 1;
  snapshot->set_log_generation(next);
  std::string bytes;
  snapshot->SerializeToString(&bytes);
  const std::string tmp = dir_ + "/snapshot.tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return Errno("open " + tmp);
  Status s = WriteAll(fd, bytes.data(), bytes.size(), "write " + tmp);
  if (s.ok() && fsync_ && ::fsync(fd) != 0) s = Errno("fsync " + tmp);
  ::close(fd);
  FTTE_RETURN_IF_ERROR(s);
  // Create the new (empty) log before the snapshot that points at it becomes visible.
  const int64_t old = generation_;
  const int64_t old_bytes = log_bytes_;
  const std::string old_log = LogPath(old);
  FTTE_RETURN_IF_ERROR(OpenLog(next, false));
  if (rotation_hook_for_test) rotation_hook_for_test();
  if (::rename(tmp.c_str(), (dir_ + "/snapshot.pb").c_str()) != 0) {
    Status err = Errno("rename " + tmp);
    // Keep appending where a restart will look.
    FTTE_RETURN_IF_ERROR(OpenLog(old, true));
    log_bytes_ = old_bytes;
    return err;
  }
  if (fsync_) FTTE_RETURN_IF_ERROR(SyncDir(dir_));
  // The snapshot holds every record appended so far: they are durable now.
  const int64_t all = appended();
  int64_t seen = synced_.load();
  while (seen < all && !synced_.compare_exchange_weak(seen, all)) {
  }
  std::filesystem::remove(old_log);
  return Status::Ok();
}

}  // namespace ftte::net
