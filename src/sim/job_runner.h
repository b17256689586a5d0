// Worker threads that run local training jobs for the simulator. Each worker owns one
// ClientTrainer (a model replica). Jobs run in submission order; Wait(ticket) blocks until that
// job's result is ready. Results depend only on the job, never on which worker ran it.
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
  JobRunner(int threads, const std::string& model_name, const data::ImageDataset* train);
  ~JobRunner();
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  int64_t Submit(Job job);
  fl::ClientResult Wait(int64_t ticket);

 private:
  void WorkerLoop();

  std::string model_name_;
  const data::ImageDataset* train_;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<std::pair<int64_t, Job>> queue_;
  std::map<int64_t, fl::ClientResult> done_;
  int64_t next_ticket_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace ftte::sim

#endif  // FTTE_SIM_JOB_RUNNER_H_
