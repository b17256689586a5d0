#include "ftte/core/thread_pool.h"

#ifdef FTTE_WITH_OPENBLAS
#include <cblas.h>
#endif

#include "ftte/core/check.h"

namespace ftte {

void UseSingleThreadedBlas() {
#ifdef FTTE_WITH_OPENBLAS
  openblas_set_num_threads(1);
#endif
}

ThreadPool::ThreadPool(int threads) : size_(threads) {
  FTTE_CHECK(threads >= 1) << "thread count must be >= 1, got " << threads;
  UseSingleThreadedBlas();
  for (int w = 1; w < size_; ++w) threads_.emplace_back([this, w] { WorkerLoop(w); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::RunTasks(int worker) {
  for (;;) {
    int64_t task;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (next_ >= tasks_) return;
      task = next_++;
    }
    (*fn_)(task, worker);
  }
}

void ThreadPool::WorkerLoop(int worker) {
  int64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      ++busy_;
    }
    RunTasks(worker);
    {
      std::lock_guard<std::mutex> lock(mu_);
      --busy_;
    }
    done_cv_.notify_all();
  }
}

void ThreadPool::ParallelFor(int64_t tasks, const std::function<void(int64_t, int)>& fn) {
  if (tasks <= 0) return;
  if (size_ == 1 || tasks == 1) {
    for (int64_t t = 0; t < tasks; ++t) fn(t, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    tasks_ = tasks;
    next_ = 0;
    ++generation_;
  }
  start_cv_.notify_all();
  RunTasks(0);
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return busy_ == 0 && next_ >= tasks_; });
  fn_ = nullptr;
}

}  // namespace ftte
