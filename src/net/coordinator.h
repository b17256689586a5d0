// The server's logic without the network: enrolment, work, validation of every update before
// it reaches the strategy's buffer, durability, leases, evaluation. The gRPC service
// (server.cc) is a thin adapter over it, and the tests drive it directly.
//
// Thread-safe: every public method may be called from any thread (one mutex; Tick's
// evaluation runs outside it).
//
// Durability: an update is logged (state_store.h) and on disk before Submit returns ACCEPTED
// (group commit: submissions waiting at once share one flush), a device is sent only model
// values whose log is on disk, and the log is replayed through the same code on restart, so an
// acknowledged update is never lost and never applied twice (a resubmitted update id is
// answered DUPLICATE).
#ifndef FTTE_NET_COORDINATOR_H_
#define FTTE_NET_COORDINATOR_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "ftte/core/model.h"
#include "ftte/core/trainer.h"
#include "ftte/fl/secagg.h"
#include "ftte/fl/strategy.h"
#include "ftte/net/server.h"
#include "ftte/v1/federation.pb.h"
#include "state_store.h"

namespace ftte::net {

class Coordinator {
 public:
  using Clock = std::function<double()>;  // monotonic seconds
  using Logger = std::function<void(const std::string&)>;

  // Builds the strategy and its first plan (FTTE: from the proxy set if [model] proxy_samples
  // > 0, else from the devices' reports; never from `eval`), then resumes from
  // config.state_dir if it holds state, or starts it. Fails if the state was written for another
  // model or strategy, or is unreadable. `initial_weights` (GetWeights order; empty: the
  // seed's initialisation) start a new federation from a pretrained model ([model] init).
  static Result<std::unique_ptr<Coordinator>> Create(const ServeConfig& config,
                                                     data::ImageDataset eval, Clock clock,
                                                     Logger log,
                                                     std::vector<float> initial_weights = {});
  ~Coordinator();

  Result<v1::EnrollResponse> Enroll(const v1::EnrollRequest& request);
  // The device id a bearer token belongs to, or Unauthenticated.
  Result<int64_t> Authenticate(const std::string& token) const;
  // Ok for the operator's credential ([auth] admin_token), Unauthenticated for anything else
  // (device tokens included).
  Status AuthenticateAdmin(const std::string& token) const;
  Result<v1::Work> GetWork(int64_t device, const v1::GetWorkRequest& request);
  // Validates and, if valid, durably accepts an update. A rejection is an error naming the
  // reason; it is counted by reason and logged, and changes nothing.
  Result<v1::SubmitResponse> Submit(int64_t device, const v1::SubmitRequest& request);
  // Secure aggregation ([secure_aggregation] on): one call of a job's hand-in through a cohort
  // (federation.proto SecureStep). A join is checked as Submit checks an update's public part
  // (the lease, the issued version, staleness, the sample count, the privacy budget); the
  // rounds' messages go to the cohort's fl::secagg::CohortServer, which refuses any that break
  // the protocol. A round closes when every member still in has sent or at its deadline
  // (Tick). Cohorts live in memory only: the state directory and the log receive a cohort's
  // sum once it is unmasked (one record, then ACCEPTED to its members), never a masked or
  // unmasked single update, so a restart drops the cohorts in flight (their members are told
  // LEFT_OUT and fetch new work) and never unmasks a partial sum.
  Result<v1::SecureStepResponse> SecureStep(int64_t device, const v1::SecureStepRequest& request);
  v1::HeartbeatResponse Heartbeat(int64_t device);
  v1::StatusResponse GetStatus() const;

  // Periodic duties (call every ~100 ms from one thread): expired leases, the FedAvg round
  // deadline, snapshots, and evaluation when eval_every versions have passed.
  Status Tick();
  // Writes a snapshot now (and starts a fresh log).
  Status Checkpoint();
  bool done() const;
  // True once done and every eligible device has been answered DONE (it will not call again).
  bool everyone_told_done() const;

  // Inspection (tests, benchmarks).
  int64_t version() const;
  std::vector<float> weights() const;
  fl::Mask mask() const;  // the current plan's
  const std::vector<fl::ParamLayout>& layout() const { return layout_; }
  int64_t predicted_peak_bytes() const;  // of one job of the current plan
  std::map<std::string, int64_t> rejected() const;
  int64_t accepted() const;
  StateStore& store_for_test() { return *store_; }

 private:
  static constexpr size_t kRecentIds = 8;
  struct DeviceRec {
    std::string name;
    std::string token_hash;  // BLAKE2b-256 of its current token
    int64_t budget = 0;
    bool eligible = false;
    // The last kRecentIds accepted update ids, oldest first: a retried submission (its
    // acknowledgement lost) can only be of these, since an update answers the device's one
    // outstanding lease. Bounded, unlike the set of every id ever accepted.
    std::deque<int64_t> recent_ids;
    int64_t accepted = 0;       // updates accepted from this device, ever
    double lease_until = -1;    // holds a training slot until then (soft state)
    double leased_at = -1e300;  // when it was last given a new job (soft: the rate cap)
    double last_seen = -1e300;  // when it last asked for work (soft: counts it as active)
    // Its accepted updates in aggregation number `pending_in` (the share cap; counts of an
    // earlier aggregation are stale, so nothing is reset device by device).
    int64_t pending = 0, pending_in = -1;
    int64_t lease_version = -1;  // the model version its outstanding work was given
    bool told_done = false;
    // Secure aggregation (soft state: a restart forgets it): the update being handed in, the
    // cohort it is in (0: none yet), its index there, and why it is in no sum (set when it was
    // left out; answered until the device hands in another update).
    int64_t secure_update = -1;
    bool forming = false;
    uint64_t cohort = 0;
    int32_t member = -1;
    std::string left_out;
  };
  // A cohort running the protocol (secure aggregation).
  struct Cohort {
    fl::secagg::CohortConfig config;
    std::unique_ptr<fl::secagg::CohortServer> server;
    std::vector<fl::Update> members;  // the public part only (device, ids, version, samples)
    std::vector<double> weights;
    std::string mask;  // the union of the members' plans' masks, as mask bits
    int round = 0;     // in progress: 0 adverts, 1 shares, 2 masked inputs, 3 unmasking
    double deadline = 0;
    std::vector<uint8_t> in, sent;  // members still taking part; those that sent this round
    std::vector<std::vector<fl::secagg::KeyAdvert>> adverts;      // round 0's output
    std::vector<std::vector<fl::secagg::EncryptedShare>> shares;  // round 1's
    std::vector<int32_t> survivors;                               // round 2's
  };

  Coordinator(const ServeConfig& config, Clock clock, Logger log);
  Status Init(data::ImageDataset eval, std::vector<float> initial_weights);
  Status Restore(const StateStore::Loaded& loaded);
  Status RestoreImportance(const state::Snapshot& s, fl::ImportanceTable* table) const;
  state::Snapshot MakeSnapshot() const;
  void AddDevice(const state::Device& d);
  // Applies an accepted update (live and on replay).
  void Apply(const fl::Update& u);
  void CloseRound();
  // Checks shared by Submit and a secure join: the base version is one the server issued to
  // this device's outstanding lease and not too stale.
  Status CheckVersion(int64_t device, int64_t base_version);
  Status CheckLease(int64_t device, int64_t base_version);
  Status CheckSamples(int64_t device, int64_t num_samples);
  // Refuses an update the strategy would drop for a spent privacy budget.
  Status CheckBudget(int64_t device);
  // Records an accepted update id (a retry is answered from the recent ones).
  void RecordAccepted(int64_t device, int64_t update_id);
  // Secure aggregation.
  Status SecureJoin(int64_t device, int64_t update_id, const v1::SecureJoin& join);
  void FormCohort();
  Status SecureMessage(int64_t device, const v1::SecureStepRequest& req);
  void CloseCohortRound(uint64_t id);
  void EndCohort(uint64_t id, const std::string& reason);  // "" after a sum was applied
  void LeaveOut(int64_t device, const std::string& reason);
  v1::SecureStepResponse NextSecureStep(int64_t device);
  v1::SecureStepResponse LeftOutResponse(const std::string& why) const;
  // Applies a cohort's logged sum (live and on replay).
  Status ApplyCohort(const state::CohortSum& sum);
  // The encoded values of the rows changed since `known_version` (-1 or unknown: all), cached
  // per version. Needs mu_.
  const std::string& ValuesSinceLocked(int64_t known_version);
  Status Reject(int64_t device, const std::string& reason, Status why);
  // Leases and activity are kept ordered by time, so each call costs O(log devices), not a
  // scan of every device: SetLease is the only writer of DeviceRec::lease_until (< 0: none).
  void SetLease(int64_t device, double until);
  int64_t ActiveLeases(double now);  // drops the expired ones first
  // Updates one device may have in the aggregation being filled (ServeConfig::max_share).
  int64_t ShareCap(double now);
  // The device's accepted updates in the aggregation being filled.
  int64_t Pending(const DeviceRec& d) const { return d.pending_in == aggregation_ ? d.pending : 0; }
  // Updates accepted so far: the ids the devices' records hold (kept across restarts).
  int64_t AcceptedLocked() const;

  ServeConfig config_;
  Clock clock_;
  Logger log_;
  std::vector<fl::ParamLayout> layout_;
  std::unique_ptr<StateStore> store_;

  mutable std::mutex mu_;
  std::unique_ptr<fl::Strategy> strategy_;
  std::vector<DeviceRec> devices_;
  std::unordered_map<std::string, int64_t> by_token_, by_name_;  // by token hash, by name
  std::set<std::pair<double, int64_t>> leases_;  // (lease_until, device) of every lease
  std::set<std::pair<double, int64_t>> seen_;    // (last_seen, device), active ones at least
  int64_t aggregation_ = 0;                      // aggregations (and refused ones) so far
  std::vector<fl::Update> round_;  // FedAvg: accepted updates of the round in progress
  double round_started_ = -1;
  int64_t duplicates_ = 0;
  std::map<std::string, int64_t> rejected_;
  std::vector<v1::EvalPoint> evaluations_;
  // Encoded Work.values at the current version, by the device's known version (-1 = all rows):
  // devices at the same version get the same bytes, so each is encoded once.
  int64_t values_cache_version_ = -1;
  std::map<int64_t, std::string> values_cache_;
  double last_snapshot_ = 0;
  bool done_ = false;
  // Secure aggregation: members waiting for a cohort to fill, cohorts in flight by id, counts
  // since this server started.
  std::vector<fl::Update> forming_;
  std::map<uint64_t, Cohort> cohorts_;
  uint64_t next_cohort_ = 0;  // random start: ids do not repeat across restarts
  int64_t secure_cohorts_ = 0, secure_aborted_ = 0, secure_left_out_ = 0;

  // Evaluation (Tick's thread only).
  data::ImageDataset eval_;
  std::unique_ptr<Model> eval_model_;
  std::unique_ptr<Trainer> eval_trainer_;
  int64_t last_eval_version_ = -1;
};

}  // namespace ftte::net

#endif  // FTTE_NET_COORDINATOR_H_
