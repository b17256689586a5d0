// For tests: the ranks of a cluster as threads of one process. ThreadCluster::Run(n, body)
// runs body(rank) on n threads, each with its rank installed as its process cluster, the way
// mpirun runs n processes; Broadcast and Agree synchronise them with a barrier.
#ifndef FTTE_SIM_THREAD_CLUSTER_H_
#define FTTE_SIM_THREAD_CLUSTER_H_

#include <barrier>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ftte/sim/cluster.h"

namespace ftte::sim {

class ThreadCluster {
 public:
  static void Run(int n, const std::function<void(int rank)>& body) {
    ThreadCluster shared(n);
    std::vector<std::unique_ptr<Rank>> ranks;
    for (int r = 0; r < n; ++r) ranks.push_back(std::make_unique<Rank>(&shared, r));
    std::vector<std::thread> threads;
    for (int r = 0; r < n; ++r) {
      threads.emplace_back([&, r] {
        SetProcessCluster(ranks[r].get());
        body(r);
        SetProcessCluster(nullptr);
      });
    }
    for (std::thread& t : threads) t.join();
  }

 private:
  class Rank final : public Cluster {
   public:
    Rank(ThreadCluster* shared, int rank) : shared_(shared), rank_(rank) {}
    int rank() const override { return rank_; }
    int size() const override { return shared_->size_; }
    void Broadcast(int root, std::vector<uint8_t>* bytes) override {
      if (rank_ == root) shared_->buffer_ = *bytes;
      shared_->barrier_.arrive_and_wait();
      if (rank_ != root) *bytes = shared_->buffer_;
      shared_->barrier_.arrive_and_wait();
    }
    Status Agree(const std::string& what, const std::string& value) override {
      shared_->values_[rank_] = value;
      shared_->barrier_.arrive_and_wait();
      bool same = true;
      for (const std::string& v : shared_->values_) same = same && v == shared_->values_[0];
      shared_->barrier_.arrive_and_wait();
      return same ? Status::Ok() : FailedPrecondition("the ranks disagree on " + what);
    }

   private:
    ThreadCluster* shared_;
    int rank_;
  };

  explicit ThreadCluster(int n) : size_(n), barrier_(n), values_(static_cast<size_t>(n)) {}

  int size_;
  std::barrier<> barrier_;
  std::vector<uint8_t> buffer_;
  std::vector<std::string> values_;
};

}  // namespace ftte::sim

#endif  // FTTE_SIM_THREAD_CLUSTER_H_
