// One method of a simulation run (private to src/sim): the event loop that drives a
// fl::Strategy in virtual time, and the evaluator it records with. RunMethod (simulator.h) is
// MethodRun(...).Run().
#ifndef FTTE_SIM_METHOD_RUN_H_
#define FTTE_SIM_METHOD_RUN_H_

#include <map>
#include <memory>
#include <queue>
#include <set>
#include <vector>

#include "ftte/fl/strategy.h"
#include "ftte/sim/simulator.h"
#include "job_runner.h"
#include "secure_cohort.h"

namespace ftte::sim::internal {

// Evaluates weights on the test set (cached by version) or on a subset of a dataset. For a
// language model <unk> is never a right answer (TrainerOptions::unscored_class): accuracies
// are correct / scored. On a cluster (cluster.h) every rank evaluates its share of the
// micro-batches and all get the whole result, equal to one process's (every rank must call
// alike).
class Evaluator {
 public:
  Evaluator(const std::string& model, const data::ImageDataset* test, int threads,
            bool language_model, Cluster& cluster = ProcessCluster());
  const StepResult& Evaluate(const std::vector<float>& w, int64_t version);
  StepResult EvaluateSubset(const std::vector<float>& w, const data::ImageDataset& data,
                            const std::vector<int64_t>& indices);

 private:
  StepResult Run(const data::ImageDataset& data);

  const data::ImageDataset* test_;
  Cluster& cluster_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Trainer> trainer_;
  int64_t cached_version_ = -1;
  StepResult cached_;
};

// Language models, after federated training: the final global model's top-3 on every device's
// held-out text, and (with [personalize] steps > 0) each chosen device fine-tuned from it on
// its own training data under the final plan's mask, before vs after. The fine-tuning jobs run
// on the workers while the main thread evaluates.
void Personalize(const SimConfig& config, const Environment& env, const fl::Strategy& strategy,
                 JobRunner& runner, Evaluator& eval, MethodResult* res);

// A device's local training in flight, ordered by virtual time, then by submission
// (deterministic ties).
struct Event {
  double time;
  int64_t seq;
  int64_t device;
  int64_t ticket;
  int64_t base_version;
  int64_t up_bytes;
  bool uploaded = true;    // false: training ended at `time`; the upload (real bytes) follows
  int64_t cohort = -1;     // >= 0: a secure-aggregation cohort's protocol ends at `time`
  bool free_slot = false;  // secure aggregation: a member's masked input is in; start another
  bool operator>(const Event& o) const { return time != o.time ? time > o.time : seq > o.seq; }
};

class MethodRun {
 public:
  MethodRun(const SimConfig& config, const MethodConfig& method, const Environment& env,
            const Progress& progress);
  Result<MethodResult> Run();

 private:
  Status Setup();
  // The current plan as shared by jobs, with its per-job costs; refreshed when it changes.
  // Jobs run `run_plan`: the plan with whole-batch passes (the same training up to float
  // rounding, see TrainerOptions::micro_batch, and several times faster for the small
  // micro-batches of tight budgets); the device's memory is measured by one real step at the
  // planned micro-batch (`measured_peak`).
  struct PlanCosts {
    std::shared_ptr<const fl::Plan> plan, run_plan;
    int64_t step_flops = 0;
    int64_t up_bytes = 0;  // one update over the whole mask
    int64_t measured_peak = 0;
  };
  const PlanCosts& Current();
  int64_t PickDevice();
  int64_t DownloadBytes(int64_t device);
  double ComputeSeconds(int64_t device, const PlanCosts& costs) const;
  Event Start(int64_t device, double t);
  Event Upload(Event e);  // natural sparsity: the real bytes, once training has run
  fl::Update Take(const Event& e);
  // [attack]: picks the attackers (by the seed, alike for every method) and gives label
  // flippers their flipped samples; Corrupt turns a malicious job's update into the attack's.
  void SetupAttack();
  void Corrupt(int64_t ticket, fl::Update* u) const;
  void RecordUntil(double t);
  void RunRounds();
  void RunAsync();
  // Secure aggregation: a finished job joins the cohort being filled; a full cohort runs the
  // protocol (its end is an event); CompleteCohort aggregates its sum and frees its devices.
  template <typename Queue>
  void JoinCohort(fl::Update u, double t, Queue* events);
  void CompleteCohort(int64_t cohort);
  void Finish();

  const SimConfig& config_;
  const MethodConfig& method_;
  const Environment& env_;
  Progress progress_;
  std::string spec_;
  MethodResult res_;
  std::unique_ptr<fl::Strategy> strategy_;
  std::unique_ptr<JobRunner> runner_;
  std::unique_ptr<Evaluator> eval_;
  PlanCosts costs_;
  int64_t full_down_ = 0;  // the whole model, dense
  Rng rng_;
  std::vector<bool> busy_;
  std::vector<int64_t> rounds_, synced_;
  std::map<int64_t, fl::ClientResult> stash_;  // results fetched early (by ticket)
  std::map<int64_t, int64_t> ticket_peak_;     // the measured device peak of each job's plan
  std::shared_ptr<const std::vector<float>> snapshot_;
  int64_t snapshot_version_ = -1;
  int64_t seq_ = 0;
  double next_eval_ = 0;
  // [attack]
  std::vector<uint8_t> attacker_;                       // per device
  data::ImageDataset flipped_;                          // label flippers' samples, flipped
  std::map<int64_t, std::vector<int64_t>> flipped_at_;  // device -> its samples in flipped_
  std::set<int64_t> malicious_;                         // tickets of malicious jobs
  int64_t malicious_launched_ = 0;
  // [secure_aggregation]
  bool secure_ = false;
  fl::secagg::CohortConfig cohort_config_;
  std::vector<fl::Update> filling_;  // finished jobs of the cohort being filled
  struct Cohort {
    std::vector<fl::Update> members;  // what the server knows of them (no deltas)
    std::vector<double> w;
    SecureCohortResult result;
  };
  std::map<int64_t, Cohort> cohorts_;  // running the protocol, by id
  int64_t cohort_count_ = 0;
  int64_t waiting_slots_ = 0;  // free slots no idle device was found for (retried per cohort)
  double protocol_s_ = 0;
};

}  // namespace ftte::sim::internal

#endif  // FTTE_SIM_METHOD_RUN_H_
