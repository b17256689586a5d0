// The server's durable state: a snapshot plus a write-ahead log of what was accepted since.
//
// Files in the state directory:
//   snapshot.pb      the latest snapshot (state.proto Snapshot), replaced atomically: written
//                    to snapshot.tmp, fsync'd, renamed over, and the directory fsync'd;
//   log-<G>.wal      records appended after the snapshot whose log_generation is G; each
//                    record is u32 length, u32 CRC-32 of the payload, payload (LogRecord).
// Append returns once the record is on disk (fdatasync unless fsync is off), so an update the
// server has acknowledged survives kill -9. A torn or corrupt tail (a crash mid-append) is
// cut off on open: such a record was never acknowledged.
//
// Threading: Load, Append, AppendAsync and WriteSnapshot are serialised by the caller (the
// coordinator's lock); WaitDurable may run concurrently with them and with itself. Group
// commit: an fdatasync covers every record appended before it started, so many concurrent
// submissions share one disk flush. A snapshot's rotation to a new log excludes flushes: a
// record is reported durable only once it is on disk in its log or in a durable snapshot.
#ifndef FTTE_NET_STATE_STORE_H_
#define FTTE_NET_STATE_STORE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ftte/core/status.h"
#include "state.pb.h"

namespace ftte::net {

class StateStore {
 public:
  // Creates the directory if needed. Fails if it cannot be created or written.
  static Result<std::unique_ptr<StateStore>> Open(const std::string& dir, bool fsync);
  ~StateStore();

  // What the directory holds: the snapshot (none on a first start) and the records of its log.
  struct Loaded {
    std::optional<state::Snapshot> snapshot;
    std::vector<state::LogRecord> log;
    int64_t torn_bytes = 0;  // bytes cut off the end of the log
  };
  Result<Loaded> Load();

  // Durably appends one record to the current log (AppendAsync + WaitDurable).
  Status Append(const state::LogRecord& record);
  // Appends without waiting for the disk; returns the record's sequence number.
  Result<int64_t> AppendAsync(const state::LogRecord& record);
  // Blocks until every record up to `sequence` is on disk (no-op when fsync is off).
  Status WaitDurable(int64_t sequence);
  // The sequence number of the last appended record.
  int64_t appended() const;
  // Writes `snapshot` (its log_generation is set here) and starts an empty log after it.
  Status WriteSnapshot(state::Snapshot* snapshot);

  const std::string& dir() const { return dir_; }
  int64_t log_bytes() const { return log_bytes_; }
  int64_t syncs() const { return syncs_; }  // fdatasync calls so far

  // Tests: runs inside WriteSnapshot once the new log is open, before the snapshot is renamed
  // into place (the window a crash-consistency bug would use).
  std::function<void()> rotation_hook_for_test;
  // Tests: runs inside WaitDurable before its flush, holding the flush lock.
  std::function<void()> flush_hook_for_test;

 private:
  StateStore(std::string dir, bool fsync) : dir_(std::move(dir)), fsync_(fsync) {}
  std::string LogPath(int64_t generation) const;
  Status OpenLog(int64_t generation, bool truncate_to_valid);

  std::string dir_;
  bool fsync_;
  int64_t generation_ = 0;
  int log_fd_ = -1;
  int64_t log_bytes_ = 0;
  mutable std::mutex fd_mu_;  // guards log_fd_ and appended_ against WaitDurable
  std::mutex sync_mu_;        // one flush at a time
  int64_t appended_ = 0;
  std::atomic<int64_t> synced_{0};
  std::atomic<int64_t> syncs_{0};
};

}  // namespace ftte::net

#endif  // FTTE_NET_STATE_STORE_H_
