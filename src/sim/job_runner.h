// Worker threads that run local training jobs for the simulator. Each worker owns one
// ClientTrainer (a model replica). Jobs run in submission order; Wait(ticket) blocks until that
// job's result is ready. Results depend only on the job, never on which worker ran it.
// On a cluster of several ranks (cluster.h) every rank submits the same jobs and waits for them
// in the same order. Each job goes to the rank with the least work outstanding (in local steps;
// ties to the lowest rank), a choice every rank makes alike without talking, and Wait
// broadcasts its result from there, so every rank returns the same result.
#ifndef FTTE_SIM_JOB_RUNNER_H_
#define FTTE_SIM_JOB_RUNNER_H_

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "ftte/fl/client.h"
#include "ftte/fl/strategy.h"
#include "ftte/sim/cluster.h"

namespace ftte::sim {

struct Job {
  std::shared_ptr<const std::vector<float>> weights;
  std::shared_ptr<const fl::Plan> plan;  // the mask and local training of the work
  const std::vector<int64_t>* indices = nullptr;
  uint64_t seed = 0;
  const data::ImageDataset* data = nullptr;  // the samples `indices` point into; null: the
                                             // runner's training set
};

class JobRunner {
 public:
  // The trainers are created from `model_name` (which must be a zoo name).
  JobRunner(int threads, const std::string& model_name, const data::ImageDataset* train,
            Cluster& cluster = ProcessCluster());
  ~JobRunner();
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  int64_t Submit(Job job);
  fl::ClientResult Wait(int64_t ticket);

 private:
  void WorkerLoop();

  std::string model_name_;
  const data::ImageDataset* train_;
  Cluster& cluster_;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<std::pair<int64_t, Job>> queue_;
  std::map<int64_t, fl::ClientResult> done_;
  std::map<int64_t, std::pair<int, int64_t>> owner_;  // ticket -> rank, its local steps
  std::vector<int64_t> outstanding_;                  // per rank: local steps submitted, not waited
  int64_t next_ticket_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// A job's result as bytes, exactly (for the broadcast between ranks of one build), and back.
// Decode refuses bytes of another length than their header says.
std::vector<uint8_t> EncodeClientResult(const fl::ClientResult& r);
Result<fl::ClientResult> DecodeClientResult(const std::vector<uint8_t>& bytes);

}  // namespace ftte::sim

#endif  // FTTE_SIM_JOB_RUNNER_H_
