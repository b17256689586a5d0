#include "ftte/fl/server.h"

#include <algorithm>
#include <cmath>

#include "ftte/core/check.h"

namespace ftte::fl {

const char* AlgorithmName(Algorithm a) {
  switch (a) {
    case Algorithm::kFedAvg:
      return "fedavg";
    case Algorithm::kFedAsync:
      return "fedasync";
    case Algorithm::kFedBuff:
      return "fedbuff";
    case Algorithm::kFtte:
      return "ftte";
  }
  return "unknown";
}

Result<Algorithm> ParseAlgorithm(const std::string& s) {
  for (Algorithm a :
       {Algorithm::kFedAvg, Algorithm::kFedAsync, Algorithm::kFedBuff, Algorithm::kFtte}) {
    if (s == AlgorithmName(a)) return a;
  }
  return InvalidArgument("unknown algorithm '" + s + "'; use fedavg, fedasync, fedbuff or ftte");
}

Server::Server(const ServerConfig& config, std::vector<float> weights, Mask mask,
               std::vector<ParamLayout> layout)
    : config_(config),
      weights_(std::move(weights)),
      mask_(std::move(mask)),
      layout_(std::move(layout)) {
  FTTE_CHECK(static_cast<int64_t>(weights_.size()) == TotalNumel(layout_));
  FTTE_CHECK(config_.buffer >= 1 && config_.concurrency >= 1);
  momentum_.assign(static_cast<size_t>(mask_.Numel(layout_)), 0.0);
}

double Server::Staleness(int64_t tau) const {
  return std::pow(1.0 + static_cast<double>(tau), -config_.staleness_exponent);
}

double Server::FtteWeight(const ServerConfig& c, const Update& u, int64_t tau,
                          double median_variance) {
  double w = std::pow(static_cast<double>(std::max<int64_t>(u.num_samples, 1)), c.sample_exponent);
  if (c.use_age) w *= std::pow(1.0 + static_cast<double>(tau), -c.staleness_exponent);
  if (c.use_variance && median_variance > 0) {
    w /= 1.0 + c.variance_lambda * u.variance / median_variance;
  }
  return w;
}

void Server::Apply(const std::vector<double>& aggregate) {
  // Heavy-ball momentum on the aggregate, then the server step on the mask's rows.
  std::vector<float> step(aggregate.size());
  for (size_t i = 0; i < aggregate.size(); ++i) {
    momentum_[i] = config_.server_momentum * momentum_[i] + aggregate[i];
    step[i] = static_cast<float>(momentum_[i]);
  }
  AddMasked(step, static_cast<float>(config_.server_lr), mask_, layout_, &weights_);
  ++version_;
  ++stats_.aggregations;
}

bool Server::Receive(const Update& u) {
  FTTE_CHECK(config_.algorithm != Algorithm::kFedAvg) << "FedAvg aggregates whole rounds";
  FTTE_CHECK(u.base_version <= version_) << "update from the future";
  FTTE_CHECK(u.delta.size() == momentum_.size()) << "update does not match the mask";
  ++stats_.received;
  const int64_t tau = version_ - u.base_version;
  if (config_.max_staleness >= 0 && tau > config_.max_staleness) {
    ++stats_.dropped_stale;
    return false;
  }
  if (config_.algorithm == Algorithm::kFedAsync) {
    ++stats_.applied;
    ++stats_.staleness[tau];
    std::vector<double> agg(u.delta.size());
    const double mix = config_.async_alpha * Staleness(tau);
    for (size_t i = 0; i < agg.size(); ++i) agg[i] = mix * u.delta[i];
    Apply(agg);
    return true;
  }
  buffer_.push_back(u);
  if (static_cast<int64_t>(buffer_.size()) < config_.buffer) return false;

  // Buffer full: weigh each update by its age measured now.
  std::vector<double> w(buffer_.size());
  if (config_.algorithm == Algorithm::kFedBuff) {
    for (size_t i = 0; i < buffer_.size(); ++i) {
      // FedBuff (Nguyen et al. 2022): s(tau) = 1/sqrt(1 + tau), sum divided by K.
      w[i] = 1.0 / std::sqrt(1.0 + static_cast<double>(version_ - buffer_[i].base_version)) /
             static_cast<double>(buffer_.size());
    }
  } else {
    std::vector<double> v;
    for (const Update& b : buffer_) v.push_back(b.variance);
    std::nth_element(v.begin(), v.begin() + static_cast<int64_t>(v.size() / 2), v.end());
    const double median = v[v.size() / 2];
    double total = 0;
    for (size_t i = 0; i < buffer_.size(); ++i) {
      w[i] = FtteWeight(config_, buffer_[i], version_ - buffer_[i].base_version, median);
      total += w[i];
    }
    for (double& x : w) x /= total;
  }
  std::vector<double> agg(momentum_.size(), 0.0);
  for (size_t i = 0; i < buffer_.size(); ++i) {
    ++stats_.applied;
    ++stats_.staleness[version_ - buffer_[i].base_version];
    const std::vector<float>& d = buffer_[i].delta;
    for (size_t j = 0; j < agg.size(); ++j) agg[j] += w[i] * d[j];
  }
  buffer_.clear();
  Apply(agg);
  return true;
}

ServerState Server::State() const { return {version_, weights_, momentum_, buffer_, stats_}; }

Status Server::Restore(ServerState state) {
  if (state.weights.size() != weights_.size() || state.momentum.size() != momentum_.size()) {
    return InvalidArgument(
        "server state holds " + std::to_string(state.weights.size()) + " weights and " +
        std::to_string(state.momentum.size()) + " momentum values; this model and mask need " +
        std::to_string(weights_.size()) + " and " + std::to_string(momentum_.size()));
  }
  for (const Update& u : state.buffer) {
    if (u.delta.size() != momentum_.size() || u.base_version > state.version) {
      return InvalidArgument("server state holds a buffered update that does not fit the mask");
    }
  }
  version_ = state.version;
  weights_ = std::move(state.weights);
  momentum_ = std::move(state.momentum);
  buffer_ = std::move(state.buffer);
  stats_ = std::move(state.stats);
  return Status::Ok();
}

void Server::AggregateRound(const std::vector<Update>& updates) {
  FTTE_CHECK(config_.algorithm == Algorithm::kFedAvg);
  stats_.received += static_cast<int64_t>(updates.size());
  if (updates.empty()) return;
  double total = 0;
  for (const Update& u : updates) total += static_cast<double>(u.num_samples);
  std::vector<double> agg(momentum_.size(), 0.0);
  for (const Update& u : updates) {
    FTTE_CHECK(u.delta.size() == agg.size());
    FTTE_CHECK(u.base_version == version_) << "FedAvg update from another round";
    ++stats_.applied;
    ++stats_.staleness[0];
    const double w = static_cast<double>(u.num_samples) / total;
    for (size_t j = 0; j < agg.size(); ++j) agg[j] += w * u.delta[j];
  }
  Apply(agg);
}

}  // namespace ftte::fl
