#include "mpi_cluster.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#ifdef FTTE_WITH_MPI
#include <mpi.h>
#include <sodium.h>
#include <sys/resource.h>
#endif

namespace ftte::cli {

namespace {

// The size of the job mpirun started this process in (Open MPI, or MPICH's PMI), or 0.
int LaunchedSize() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    if (const char* v = std::getenv(name); v != nullptr) return std::atoi(v);
  }
  return 0;
}

#ifdef FTTE_WITH_MPI

// The first 8 bytes of the value's BLAKE2b digest (libsodium, as everywhere in ftte).
uint64_t Digest(const std::string& value) {
  unsigned char h[crypto_generichash_BYTES];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(value.data()),
                     value.size(), nullptr, 0);
  uint64_t out = 0;
  std::memcpy(&out, h, sizeof out);
  return out;
}

// Waits for a nonblocking operation without spinning: the worker threads of this rank keep the
// cores (Open MPI's blocking calls busy-poll).
void Complete(MPI_Request* request) {
  int done = 0;
  // A short spin for the quick answers, then sleeps growing to 1 ms (the wait is for a device's
  // training, typically milliseconds or more).
  for (int64_t polls = 0, sleep_us = 10;; ++polls) {
    MPI_Test(request, &done, MPI_STATUS_IGNORE);
    if (done) return;
    if (polls < 32) continue;
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
    sleep_us = std::min<int64_t>(1000, sleep_us * 2);
  }
}

class MpiCluster final : public sim::Cluster, public MpiSession {
 public:
  MpiCluster() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiCluster() override { End(false); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  sim::Cluster& cluster() override { return *this; }

  void Broadcast(int root, std::vector<uint8_t>* bytes) override {
    uint64_t n = bytes->size();
    ++broadcasts_;
    MPI_Request request;
    MPI_Ibcast(&n, 1, MPI_UINT64_T, root, MPI_COMM_WORLD, &request);
    Complete(&request);
    bytes->resize(n);
    broadcast_bytes_ += n;
    // Chunks below MPI's int count limit.
    constexpr uint64_t kChunk = uint64_t{1} << 30;
    for (uint64_t at = 0; at < n; at += kChunk) {
      const int count = static_cast<int>(std::min(kChunk, n - at));
      MPI_Ibcast(bytes->data() + at, count, MPI_BYTE, root, MPI_COMM_WORLD, &request);
      Complete(&request);
    }
  }

  Status Agree(const std::string& what, const std::string& value) override {
    const uint64_t mine = Digest(value);
    std::vector<uint64_t> all(static_cast<size_t>(size_));
    MPI_Request request;
    MPI_Iallgather(&mine, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD, &request);
    Complete(&request);
    std::string differ;
    for (int r = 1; r < size_; ++r) {
      if (all[static_cast<size_t>(r)] != all[0]) {
        differ += (differ.empty() ? "" : ", ") + std::to_string(r);
      }
    }
    if (differ.empty()) return Status::Ok();
    failed_together_ = true;  // every rank got this verdict and stops: no abort needed
    return FailedPrecondition("the ranks of this mpirun disagree on " + what + ": rank(s) " +
                              differ + " differ from rank 0; start every rank with the same " +
                              "ftte build, the same files and the same flags");
  }

  void End(bool abort_job) override {
    if (ended_) return;
    ended_ = true;
    if (abort_job && size_ > 1 && !failed_together_) MPI_Abort(MPI_COMM_WORLD, 1);
    // (Every rank made the same broadcasts: all report, or none.)
    if (size_ > 1 && !failed_together_ && broadcasts_ > 0) Report();
    MPI_Finalize();
  }

 private:
  // On rank 0: what crossed between the ranks and each rank's peak memory (for
  // bench/sim_bench.py; collective).
  void Report() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    const int64_t mine = static_cast<int64_t>(usage.ru_maxrss) * 1024;
    std::vector<int64_t> all(static_cast<size_t>(size_));
    MPI_Request request;
    MPI_Igather(&mine, 1, MPI_INT64_T, all.data(), 1, MPI_INT64_T, 0, MPI_COMM_WORLD, &request);
    Complete(&request);
    if (rank_ != 0) return;
    int64_t sum = 0, max = 0;
    for (int64_t v : all) {
      sum += v;
      max = std::max(max, v);
    }
    std::fprintf(stderr,
                 "mpi: %d ranks, %lld broadcasts of %lld bytes in all; peak RSS per rank max "
                 "%lld bytes, sum %lld bytes\n",
                 size_, static_cast<long long>(broadcasts_),
                 static_cast<long long>(broadcast_bytes_), static_cast<long long>(max),
                 static_cast<long long>(sum));
  }

  int rank_ = 0, size_ = 1;
  int64_t broadcasts_ = 0, broadcast_bytes_ = 0;
  bool ended_ = false;
  bool failed_together_ = false;
};

// This executable's bytes: ranks on other hosts must run the same build.
std::string OwnBinary() {
  std::ifstream in("/proc/self/exe", std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

#endif  // FTTE_WITH_MPI

}  // namespace

Result<std::unique_ptr<MpiSession>> JoinMpiIfLaunched() {
  const int size = LaunchedSize();
  if (size <= 0) return std::unique_ptr<MpiSession>();
#ifdef FTTE_WITH_MPI
  int provided = 0;
  // Only the main thread calls MPI; the worker threads train.
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  auto cluster = std::make_unique<MpiCluster>();
  if (Status st = cluster->Agree("the ftte executable", OwnBinary()); !st.ok()) {
    cluster->End(false);  // every rank sees the same verdict: none waits for another
    return st;
  }
  return std::unique_ptr<MpiSession>(std::move(cluster));
#else
  if (size == 1) return std::unique_ptr<MpiSession>();
  return FailedPrecondition(
      "mpirun started " + std::to_string(size) +
      " ranks, but this ftte was built without MPI, so each would run the whole simulation "
      "alone; install Open MPI (scripts/setup.sh installs libopenmpi-dev) and rebuild "
      "(cmake --preset release: FTTE_WITH_MPI is on when Open MPI is found)");
#endif
}

}  // namespace ftte::cli
