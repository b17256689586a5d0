// The one pool of threads of a process part (a trainer, a simulator). While a pool exists,
// OpenBLAS runs single-threaded: ftte splits GEMMs into tasks itself, so BLAS threads and pool
// threads never oversubscribe the cores.
//
// Determinism: ParallelFor hands out tasks whose number and boundaries are chosen by the caller
// from the problem size, never from the thread count, and tasks write disjoint outputs; so the
// result is bit-identical for any number of threads.
#ifndef FTTE_CORE_THREAD_POOL_H_
#define FTTE_CORE_THREAD_POOL_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ftte {

class ThreadPool {
 public:
  // `threads` >= 1 counts the calling thread: ThreadPool(1) starts no thread.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }

  // Runs fn(task, worker) for task in [0, tasks), worker in [0, size()), and returns when all
  // are done. Not reentrant: fn must not call ParallelFor on the same pool.
  void ParallelFor(int64_t tasks, const std::function<void(int64_t task, int worker)>& fn);

 private:
  void WorkerLoop(int worker);
  void RunTasks(int worker);

  int size_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  int64_t tasks_ = 0;
  int64_t next_ = 0;
  int64_t generation_ = 0;
  int busy_ = 0;
  bool stop_ = false;
};

// Sets OpenBLAS to one thread (idempotent). Called by ThreadPool's constructor.
void UseSingleThreadedBlas();

}  // namespace ftte

#endif  // FTTE_CORE_THREAD_POOL_H_
