// The coordinator's side of secure aggregation (coordinator.h: SecureStep): cohorts of jobs
// handed in through the SecAgg+ protocol of fl/secagg.h, in memory only; what reaches the log
// is a cohort's sum.
#include <sodium.h>

#include <algorithm>

#include "coordinator.h"
#include "wire.h"

namespace ftte::net {

namespace secagg = fl::secagg;

namespace {

uint64_t RandomId() {  // in [1, 2^63): positive as an int64 too
  uint64_t id = 0;
  while (id == 0) {
    randombytes_buf(&id, sizeof id);
    id >>= 1;
  }
  return id;
}

const char* RoundName(int round) {
  static const char* names[] = {"adverts", "key shares", "masked inputs", "unmasking"};
  return names[round];
}

}  // namespace

Result<v1::SecureStepResponse> Coordinator::SecureStep(int64_t device,
                                                       const v1::SecureStepRequest& req) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!config_.secure) {
    return FailedPrecondition(
        "this federation does not aggregate securely; hand updates in with SubmitUpdate");
  }
  DeviceRec& d = devices_[static_cast<size_t>(device)];
  if (!d.eligible) {
    return Reject(device, "ineligible",
                  FailedPrecondition("this device is excluded: its memory budget is below a "
                                     "job's need"));
  }
  // Already in an applied sum (now, or before: the acknowledgement was lost, or the server
  // restarted since): ACCEPTED, answered no earlier than the sum's record is durable.
  auto in_sum = [&] {
    return std::find(d.recent_ids.begin(), d.recent_ids.end(), req.update_id()) !=
           d.recent_ids.end();
  };
  if (!in_sum() && done_ && d.cohort == 0) {  // no new cohort once the federation is done
    if (d.forming) {
      forming_.erase(std::find_if(forming_.begin(), forming_.end(),
                                  [&](const fl::Update& u) { return u.device == device; }));
      LeaveOut(device, "the federation is done");
    }
    return LeftOutResponse("the federation is done; this update is in no sum");
  }
  if (!in_sum()) {
    if (req.has_join()) {
      const bool same = d.secure_update == req.update_id() && d.left_out.empty();
      if (!same) FTTE_RETURN_IF_ERROR(SecureJoin(device, req.update_id(), req.join()));
    } else if (d.secure_update != req.update_id()) {
      return LeftOutResponse(
          "no hand-in of this update is under way (the server restarted, or it was never "
          "joined); fetch new work");
    } else if (req.message_case() != v1::SecureStepRequest::MESSAGE_NOT_SET) {
      FTTE_RETURN_IF_ERROR(SecureMessage(device, req));
    }
    if (!in_sum()) {
      if (d.left_out.empty()) SetLease(device, clock_() + config_.lease_s);  // polls keep the slot
      return NextSecureStep(device);
    }
  }
  v1::SecureStepResponse resp;
  resp.set_kind(v1::SecureStepResponse::ACCEPTED);
  resp.set_version(strategy_->version());
  const int64_t appended = store_->appended();
  lock.unlock();
  FTTE_RETURN_IF_ERROR(store_->WaitDurable(appended));
  return resp;
}

Status Coordinator::SecureJoin(int64_t device, int64_t update_id, const v1::SecureJoin& join) {
  DeviceRec& d = devices_[static_cast<size_t>(device)];
  if (d.forming || d.cohort != 0) {
    return Reject(
        device, "secure: second update",
        FailedPrecondition("this device is already handing in update " +
                           std::to_string(d.secure_update) + "; one update per device at a time"));
  }
  if (update_id < 0) {
    return Reject(device, "secure: update id", InvalidArgument("update_id must be >= 0"));
  }
  FTTE_RETURN_IF_ERROR(CheckVersion(device, join.base_version()));
  FTTE_RETURN_IF_ERROR(CheckSamples(device, join.num_samples()));
  FTTE_RETURN_IF_ERROR(CheckLease(device, join.base_version()));
  FTTE_RETURN_IF_ERROR(CheckBudget(device));
  fl::Update u;
  u.device = device;
  u.update_id = update_id;
  u.base_version = join.base_version();
  u.num_samples = join.num_samples();
  forming_.push_back(u);
  d.secure_update = update_id;
  d.left_out.clear();
  d.forming = true;
  d.cohort = 0;
  d.member = -1;
  if (static_cast<int64_t>(forming_.size()) >= config_.strategy.secure_cohort) FormCohort();
  return Status::Ok();
}

void Coordinator::FormCohort() {
  auto made =
      secagg::MakeCohortConfig(static_cast<int64_t>(forming_.size()), config_.secure_neighbours,
                               config_.secure_threshold, config_.secure_range);
  FTTE_CHECK(made.ok()) << made.status().ToString();  // LoadServeConfig checked the parameters
  if (next_cohort_ == 0) next_cohort_ = RandomId();
  const uint64_t id = next_cohort_++;
  Cohort c;
  c.config = *made;
  c.config.cohort_id = id;
  randombytes_buf(&c.config.graph_seed, sizeof c.config.graph_seed);
  fl::Mask mask = strategy_->PlanAt(forming_.front().base_version).mask;
  for (const fl::Update& u : forming_) {
    const fl::Mask& m = strategy_->PlanAt(u.base_version).mask;
    for (size_t k = 0; k < mask.rows.size(); ++k) {
      for (size_t r = 0; r < mask.rows[k].size(); ++r) mask.rows[k][r] |= m.rows[k][r];
    }
  }
  c.config.length = mask.Numel(layout_);
  c.mask = PackMaskBits(mask, layout_);
  c.weights = strategy_->CohortWeights(forming_);
  c.members = std::move(forming_);
  forming_.clear();
  c.server = std::make_unique<secagg::CohortServer>(c.config);
  c.in.assign(c.members.size(), 1);
  c.sent.assign(c.members.size(), 0);
  c.deadline = clock_() + config_.secure_round_timeout_s;
  for (size_t i = 0; i < c.members.size(); ++i) {
    DeviceRec& d = devices_[static_cast<size_t>(c.members[i].device)];
    d.forming = false;
    d.cohort = id;
    d.member = static_cast<int32_t>(i);
  }
  log_("cohort " + std::to_string(id) + " formed: " + std::to_string(c.config.members) +
       " members, " + std::to_string(c.config.neighbours) + " neighbours each, threshold " +
       std::to_string(c.config.threshold) + ", " + std::to_string(c.config.length) + " values");
  cohorts_.emplace(id, std::move(c));
}

Status Coordinator::SecureMessage(int64_t device, const v1::SecureStepRequest& req) {
  DeviceRec& d = devices_[static_cast<size_t>(device)];
  if (d.forming || d.cohort == 0 || !d.left_out.empty()) return Status::Ok();  // answered by state
  if (req.cohort_id() != d.cohort) {
    return Reject(device, "secure: cohort",
                  InvalidArgument("the message is for cohort " + std::to_string(req.cohort_id()) +
                                  "; this device is in cohort " + std::to_string(d.cohort)));
  }
  Cohort& c = cohorts_.at(d.cohort);
  const int32_t m = d.member;
  int round = 0;
  switch (req.message_case()) {
    case v1::SecureStepRequest::kAdvert:
      round = 0;
      break;
    case v1::SecureStepRequest::kShares:
      round = 1;
      break;
    case v1::SecureStepRequest::kMaskedInput:
      round = 2;
      break;
    case v1::SecureStepRequest::kUnmask:
      round = 3;
      break;
    default:
      return Reject(device, "secure: round",
                    InvalidArgument("a join for an update already joined; poll instead"));
  }
  if (round < c.round || (round == c.round && c.sent[m])) return Status::Ok();  // a retry
  if (round > c.round) {
    return Reject(device, "secure: round",
                  FailedPrecondition(std::string("cohort round '") + RoundName(c.round) +
                                     "' is in progress; a message for '" + RoundName(round) +
                                     "' is early (poll for the next step)"));
  }
  Status s;
  if (round == 0) {
    auto a = AdvertFromProto(req.advert(), c.config.cohort_id);
    s = a.ok() ? c.server->ReceiveAdvert(m, *a) : a.status();
  } else if (round == 1) {
    auto sh = SharesFromProto(req.shares(), c.config.cohort_id, m);
    s = sh.ok() ? c.server->ReceiveShares(m, *sh) : sh.status();
  } else if (round == 2) {
    auto in = MaskedInputFromBytes(req.masked_input(), c.config.cohort_id, m, c.config.length);
    s = in.ok() ? c.server->ReceiveMaskedInput(m, std::move(*in)) : in.status();
  } else {
    auto un = UnmaskFromProto(req.unmask(), c.config.cohort_id, m);
    s = un.ok() ? c.server->ReceiveUnmask(m, *un) : un.status();
  }
  if (!s.ok()) return Reject(device, "secure: protocol", InvalidArgument(s.message()));
  c.sent[m] = 1;
  bool all = true;
  for (size_t i = 0; i < c.in.size(); ++i) all = all && (!c.in[i] || c.sent[i]);
  if (all) CloseCohortRound(d.cohort);
  return Status::Ok();
}

void Coordinator::CloseCohortRound(uint64_t id) {
  Cohort& c = cohorts_.at(id);
  const int round = c.round;
  // A member that missed a round before the unmasking is in no sum. One that sent its masked
  // input but not its shares afterwards is still a survivor: its update is in the sum.
  if (round < 3) {
    for (size_t i = 0; i < c.in.size(); ++i) {
      if (c.in[i] && !c.sent[i]) {
        c.in[i] = 0;
        LeaveOut(c.members[i].device, "it missed round '" + std::string(RoundName(round)) +
                                          "' of cohort " + std::to_string(id) +
                                          " (secure_aggregation.round_timeout_s)");
      }
    }
  }
  Status failed;
  if (round == 0) {
    auto r = c.server->CloseAdverts();
    if (r.ok()) c.adverts = std::move(*r);
    failed = r.status();
  } else if (round == 1) {
    auto r = c.server->CloseShares();
    if (r.ok()) c.shares = std::move(*r);
    c.adverts.clear();
    failed = r.status();
  } else if (round == 2) {
    auto r = c.server->CloseMaskedInputs();
    if (r.ok()) c.survivors = std::move(*r);
    c.shares.clear();
    failed = r.status();
  } else {
    auto r = c.server->Finish();
    if (!r.ok()) return EndCohort(id, r.status().message());
    state::LogRecord rec;
    state::CohortSum* sum = rec.mutable_cohort();
    std::vector<uint8_t> contributes(c.members.size(), 0);
    for (int32_t m : r->contributors) contributes[static_cast<size_t>(m)] = 1;
    for (size_t i = 0; i < c.members.size(); ++i) {
      if (!contributes[i]) continue;
      state::CohortSum::Member* p = sum->add_members();
      p->set_device_id(c.members[i].device);
      p->set_update_id(c.members[i].update_id);
      p->set_base_version(c.members[i].base_version);
      p->set_num_samples(c.members[i].num_samples);
      p->set_weight(c.weights[i]);
    }
    sum->set_mask(c.mask);
    *sum->mutable_sum() = {r->sum.begin(), r->sum.end()};
    for (size_t i = 0; i < c.members.size(); ++i) {
      if (c.in[i] && !contributes[i]) {
        c.in[i] = 0;
        LeaveOut(c.members[i].device,
                 "its revealed shares failed verification in cohort " + std::to_string(id));
      }
    }
    // Acknowledged (ACCEPTED, by the recent ids ApplyCohort records) no earlier than durable.
    auto appended = store_->AppendAsync(rec);
    if (!appended.ok())
      return EndCohort(id, "the log refused its sum: " + appended.status().message());
    const int64_t refused = strategy_->stats().refused;
    if (Status s = ApplyCohort(*sum); !s.ok()) return EndCohort(id, s.message());
    log_("cohort " + std::to_string(id) + ": the sum of " + std::to_string(sum->members_size()) +
         " updates applied, version " + std::to_string(strategy_->version()) +
         (strategy_->stats().refused > refused ? " (refused: the result was not finite)" : ""));
    return EndCohort(id, "");
  }
  if (!failed.ok()) return EndCohort(id, failed.message());
  c.round = round + 1;
  c.sent.assign(c.members.size(), 0);
  c.deadline = clock_() + config_.secure_round_timeout_s;
}

void Coordinator::EndCohort(uint64_t id, const std::string& reason) {
  Cohort& c = cohorts_.at(id);
  if (!reason.empty()) {
    ++secure_aborted_;
    log_("cohort " + std::to_string(id) + " aborted, its updates discarded: " + reason);
  }
  for (size_t i = 0; i < c.members.size(); ++i) {
    if (!c.in[i]) continue;
    const int64_t device = c.members[i].device;
    if (!reason.empty()) {
      LeaveOut(device, "cohort " + std::to_string(id) + " aborted: " + reason);
    } else {
      DeviceRec& d = devices_[static_cast<size_t>(device)];
      d.secure_update = -1;  // in the sum: its recent ids answer a retry
      d.cohort = 0;
      d.member = -1;
      SetLease(device, -1);
    }
  }
  cohorts_.erase(id);
}

void Coordinator::LeaveOut(int64_t device, const std::string& reason) {
  DeviceRec& d = devices_[static_cast<size_t>(device)];
  d.left_out = "this update is in no sum: " + reason + "; fetch new work";
  d.forming = false;
  d.cohort = 0;
  d.member = -1;
  SetLease(device, -1);
  ++secure_left_out_;
}

v1::SecureStepResponse Coordinator::NextSecureStep(int64_t device) {
  const DeviceRec& d = devices_[static_cast<size_t>(device)];
  if (!d.left_out.empty()) return LeftOutResponse(d.left_out);
  v1::SecureStepResponse resp;
  resp.set_version(strategy_->version());
  auto wait = [&](const std::string& why) {
    resp.set_kind(v1::SecureStepResponse::WAIT);
    resp.set_retry_after_ms(100);
    resp.set_message(why);
    return resp;
  };
  if (d.forming) {
    return wait("waiting for the cohort to fill (" + std::to_string(forming_.size()) + " of " +
                std::to_string(config_.strategy.secure_cohort) + " members)");
  }
  const Cohort& c = cohorts_.at(d.cohort);
  const auto m = static_cast<size_t>(d.member);
  if (c.sent[m]) return wait(std::string("waiting for the other members' ") + RoundName(c.round));
  switch (c.round) {
    case 0: {
      resp.set_kind(v1::SecureStepResponse::ADVERTISE);
      v1::SecureCohort* p = resp.mutable_cohort();
      p->set_id(c.config.cohort_id);
      p->set_members(c.config.members);
      p->set_neighbours(c.config.neighbours);
      p->set_threshold(c.config.threshold);
      p->set_graph_seed(c.config.graph_seed);
      p->set_length(c.config.length);
      p->set_range(c.config.range);
      p->set_member(d.member);
      p->set_mask(c.mask);
      p->set_weight(c.weights[m]);
      break;
    }
    case 1:
      resp.set_kind(v1::SecureStepResponse::SHARE_KEYS);
      for (const secagg::KeyAdvert& a : c.adverts[m]) *resp.add_adverts() = AdvertToProto(a);
      break;
    case 2:
      resp.set_kind(v1::SecureStepResponse::MASK_INPUT);
      for (const secagg::EncryptedShare& e : c.shares[m]) *resp.add_shares() = ShareToProto(e);
      break;
    default:
      resp.set_kind(v1::SecureStepResponse::UNMASK);
      for (int32_t s : c.survivors) resp.add_survivors(s);
  }
  return resp;
}

v1::SecureStepResponse Coordinator::LeftOutResponse(const std::string& why) const {
  v1::SecureStepResponse resp;
  resp.set_kind(v1::SecureStepResponse::LEFT_OUT);
  resp.set_version(strategy_->version());
  resp.set_message(why);
  return resp;
}

Status Coordinator::ApplyCohort(const state::CohortSum& rec) {
  const std::string where = config_.state_dir + ": a cohort's sum ";
  FTTE_ASSIGN_OR_RETURN(fl::Mask mask, UnpackMaskBits(rec.mask(), layout_));
  if (rec.members_size() == 0 || rec.sum_size() != mask.Numel(layout_)) {
    return DataLoss(where + "does not fit the model (" + std::to_string(rec.sum_size()) +
                    " values, " + std::to_string(rec.members_size()) + " members)");
  }
  std::vector<fl::Update> members;
  std::vector<double> w;
  for (const state::CohortSum::Member& p : rec.members()) {
    if (p.device_id() < 0 || p.device_id() >= static_cast<int64_t>(devices_.size()) ||
        p.base_version() < 0 || p.base_version() > strategy_->version() ||
        !(p.weight() >= 0 && p.weight() <= 1)) {
      return DataLoss(where +
                      "names an unknown device, a version not reached, or a weight "
                      "outside [0, 1]");
    }
    fl::Update u;
    u.device = p.device_id();
    u.update_id = p.update_id();
    u.base_version = p.base_version();
    u.num_samples = p.num_samples();
    members.push_back(u);
    w.push_back(p.weight());
  }
  std::vector<float> full(static_cast<size_t>(fl::TotalNumel(layout_)), 0.0f);
  fl::SetMasked({rec.sum().begin(), rec.sum().end()}, mask, layout_, &full);
  for (const fl::Update& u : members) RecordAccepted(u.device, u.update_id);
  strategy_->ReceiveCohort(members, w, full);
  ++aggregation_;
  ++secure_cohorts_;
  return Status::Ok();
}

}  // namespace ftte::net
