// The four strategies (strategy.h). Each file holds one: fedavg.cc, fedasync.cc, fedbuff.cc,
// ftte_strategy.cc.
#ifndef FTTE_FL_STRATEGIES_H_
#define FTTE_FL_STRATEGIES_H_

#include "ftte/fl/strategy.h"

namespace ftte::fl {

// McMahan et al. 2017: rounds of `concurrency` sampled devices (the driver samples and waits,
// with over_selection and round_deadline_s), dense full-model updates weighted by samples.
class FedAvgStrategy : public Strategy {
 public:
  using Strategy::Strategy;
  bool synchronous() const override { return true; }
  void AggregateRound(const std::vector<Update>& updates) override;
};

// Xie et al. 2019: every update applied at once, mixed by alpha * s(tau).
class FedAsyncStrategy : public Strategy {
 public:
  using Strategy::Strategy;
  bool Receive(const Update& u) override;
};

// Nguyen et al. 2022: a buffer of K dense updates, each weighed 1/sqrt(1 + tau) / K.
class FedBuffStrategy : public Strategy {
 public:
  using Strategy::Strategy;

 protected:
  std::vector<double> BufferWeights(const std::vector<Update>& buffer) const override;
};

// DESIGN.md §3: a buffer of K sparse updates over the planned subset, weighed
// n^p s(tau) h(v) and normalised; federated importance and re-planning.
class FtteStrategy : public Strategy {
 public:
  using Strategy::Strategy;

 protected:
  Status Init() override;
  std::vector<double> BufferWeights(const std::vector<Update>& buffer) const override;
  void Observe(const Update& u) override;
  void AfterAggregation() override;

 private:
  // The table with priors for rows no device has reported (the mean per value of the reported
  // rows of the same parameter, else of all), times the rotation bonus.
  RowImportance EffectiveImportance() const;
  // Plans under the budget from `importance`; a new plan only if the subset changed.
  Status Replan(const RowImportance& importance);
};

}  // namespace ftte::fl

#endif  // FTTE_FL_STRATEGIES_H_
