#include "job_runner.h"

#include "ftte/core/check.h"
#include "ftte/fl/privacy.h"

namespace ftte::sim {

JobRunner::JobRunner(int threads, const std::string& model_name, const data::ImageDataset* train)
    : model_name_(model_name), train_(train) {
  FTTE_CHECK(threads >= 1);
  UseSingleThreadedBlas();
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { WorkerLoop(); });
}

JobRunner::~JobRunner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

int64_t JobRunner::Submit(Job job) {
  int64_t ticket;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ticket = next_ticket_++;
    queue_.emplace_back(ticket, std::move(job));
  }
  work_cv_.notify_one();
  return ticket;
}

fl::ClientResult JobRunner::Wait(int64_t ticket) {
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return done_.count(ticket) > 0; });
  fl::ClientResult r = std::move(done_.at(ticket));
  done_.erase(ticket);
  return r;
}

void JobRunner::WorkerLoop() {
  auto trainer = fl::ClientTrainer::Create(model_name_);
  FTTE_CHECK(trainer.ok()) << trainer.status().ToString();
  for (;;) {
    std::pair<int64_t, Job> item;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    const Job& j = item.second;
    fl::ClientResult r = trainer.value()->Train(
        *j.weights, j.plan->mask, j.data ? *j.data : *train_, *j.indices, j.plan->client, j.seed);
    if (j.plan->client.dp_clip > 0) {  // distributed DP: the device's clip and noise share
      fl::PrivatizeUpdate(&r.update.delta, j.plan->client.dp_clip, j.plan->client.dp_noise_stddev,
                          fl::DerivedNoiseKey(j.seed));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_.emplace(item.first, std::move(r));
    }
    done_cv_.notify_all();
  }
}

}  // namespace ftte::sim
