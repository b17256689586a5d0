#include "job_runner.h"

#include <algorithm>
#include <cstring>

#include "ftte/core/check.h"
#include "ftte/fl/privacy.h"

namespace ftte::sim {

JobRunner::JobRunner(int threads, const std::string& model_name, const data::ImageDataset* train,
                     Cluster& cluster)
    : model_name_(model_name),
      train_(train),
      cluster_(cluster),
      outstanding_(static_cast<size_t>(cluster.size()), 0) {
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
    if (cluster_.size() > 1) {
      const int64_t steps =
          fl::LocalSteps(job.plan->client, static_cast<int64_t>(job.indices->size()));
      const auto least = static_cast<int>(
          std::min_element(outstanding_.begin(), outstanding_.end()) - outstanding_.begin());
      outstanding_[least] += steps;
      owner_[ticket] = {least, steps};
      if (least != cluster_.rank()) return ticket;  // another rank trains it
    }
    queue_.emplace_back(ticket, std::move(job));
  }
  work_cv_.notify_one();
  return ticket;
}

fl::ClientResult JobRunner::Wait(int64_t ticket) {
  int owner = 0;
  if (cluster_.size() > 1) {
    const auto it = owner_.find(ticket);
    FTTE_CHECK(it != owner_.end()) << "job " << ticket << " was not submitted or was waited for";
    owner = it->second.first;
    outstanding_[owner] -= it->second.second;
    owner_.erase(it);
  }
  if (owner != cluster_.rank()) {
    std::vector<uint8_t> bytes;
    cluster_.Broadcast(owner, &bytes);
    auto r = DecodeClientResult(bytes);
    FTTE_CHECK(r.ok()) << "job " << ticket << " from rank " << owner << ": "
                       << r.status().ToString();
    return std::move(r).value();
  }
  fl::ClientResult r;
  {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return done_.count(ticket) > 0; });
    r = std::move(done_.at(ticket));
    done_.erase(ticket);
  }
  if (cluster_.size() > 1) {
    std::vector<uint8_t> bytes = EncodeClientResult(r);
    cluster_.Broadcast(owner, &bytes);
  }
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

namespace {

// The header: every integer field, then the two vector lengths.
constexpr size_t kHeaderInts = 9;

template <typename T>
void Put(const T& v, std::vector<uint8_t>* out) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out->insert(out->end(), p, p + sizeof(T));
}

template <typename T>
T Get(const uint8_t** p) {
  T v;
  std::memcpy(&v, *p, sizeof(T));
  *p += sizeof(T);
  return v;
}

}  // namespace

std::vector<uint8_t> EncodeClientResult(const fl::ClientResult& r) {
  const fl::Update& u = r.update;
  std::vector<uint8_t> out;
  out.reserve(kHeaderInts * 8 + 12 + (u.delta.size() + u.row_sq.size()) * sizeof(float));
  for (int64_t v :
       {u.device, u.base_version, u.num_samples, u.update_id, r.steps, r.peak_bytes, r.flops,
        static_cast<int64_t>(u.delta.size()), static_cast<int64_t>(u.row_sq.size())}) {
    Put(v, &out);
  }
  Put(u.loss, &out);
  Put(u.variance, &out);
  const auto* d = reinterpret_cast<const uint8_t*>(u.delta.data());
  out.insert(out.end(), d, d + u.delta.size() * sizeof(float));
  const auto* q = reinterpret_cast<const uint8_t*>(u.row_sq.data());
  out.insert(out.end(), q, q + u.row_sq.size() * sizeof(float));
  return out;
}

Result<fl::ClientResult> DecodeClientResult(const std::vector<uint8_t>& bytes) {
  constexpr size_t kFixed = kHeaderInts * sizeof(int64_t) + sizeof(float) + sizeof(double);
  if (bytes.size() < kFixed) {
    return DataLoss("a job result of " + std::to_string(bytes.size()) +
                    " bytes is shorter than its header (" + std::to_string(kFixed) + ")");
  }
  const uint8_t* p = bytes.data();
  fl::ClientResult r;
  fl::Update& u = r.update;
  u.device = Get<int64_t>(&p);
  u.base_version = Get<int64_t>(&p);
  u.num_samples = Get<int64_t>(&p);
  u.update_id = Get<int64_t>(&p);
  r.steps = Get<int64_t>(&p);
  r.peak_bytes = Get<int64_t>(&p);
  r.flops = Get<int64_t>(&p);
  const auto n_delta = Get<int64_t>(&p);
  const auto n_sq = Get<int64_t>(&p);
  u.loss = Get<float>(&p);
  u.variance = Get<double>(&p);
  const auto rest = static_cast<int64_t>(bytes.size() - kFixed);
  if (n_delta < 0 || n_sq < 0 || rest % 4 != 0 || n_delta > rest / 4 ||
      n_sq != rest / 4 - n_delta) {
    return DataLoss("a job result's header says " + std::to_string(n_delta) + " + " +
                    std::to_string(n_sq) + " floats; it holds " + std::to_string(rest) +
                    " bytes after the header");
  }
  u.delta.resize(static_cast<size_t>(n_delta));
  if (n_delta > 0) std::memcpy(u.delta.data(), p, u.delta.size() * sizeof(float));
  p += u.delta.size() * sizeof(float);
  u.row_sq.resize(static_cast<size_t>(n_sq));
  if (n_sq > 0) std::memcpy(u.row_sq.data(), p, u.row_sq.size() * sizeof(float));
  return r;
}

}  // namespace ftte::sim
