#include "secure_client.h"

#include <algorithm>

#include "wire.h"

namespace ftte::net {

namespace secagg = fl::secagg;

SecureHandIn::SecureHandIn(fl::Update u, fl::Mask mask, std::vector<fl::ParamLayout> layout,
                           const fl::Secret32& secret)
    : u_(std::move(u)), mask_(std::move(mask)), layout_(std::move(layout)), secret_(secret) {
  req_.set_update_id(u_.update_id);
  req_.mutable_join()->set_base_version(u_.base_version);
  req_.mutable_join()->set_num_samples(u_.num_samples);
}

Status SecureHandIn::Advertise(const v1::SecureCohort& c) {
  config_.cohort_id = c.id();
  config_.members = c.members();
  config_.neighbours = c.neighbours();
  config_.threshold = c.threshold();
  config_.graph_seed = c.graph_seed();
  config_.length = c.length();
  config_.range = c.range();
  weight_ = c.weight();
  FTTE_RETURN_IF_ERROR(secagg::ValidateCohort(config_));
  FTTE_ASSIGN_OR_RETURN(cohort_mask_, UnpackMaskBits(c.mask(), layout_));
  if (cohort_mask_.Numel(layout_) != config_.length || c.member() < 0 ||
      c.member() >= config_.members || !(weight_ >= 0 && weight_ <= 1)) {
    return InvalidArgument("inconsistent cohort (its length, this member's index or weight)");
  }
  for (size_t k = 0; k < mask_.rows.size(); ++k) {
    for (size_t r = 0; r < mask_.rows[k].size(); ++r) {
      if (mask_.rows[k][r] && !cohort_mask_.rows[k][r]) {
        return InvalidArgument("the cohort's mask leaves out rows this update trained");
      }
    }
  }
  member_.emplace(config_, c.member(), secret_);
  req_.set_cohort_id(config_.cohort_id);
  *req_.mutable_advert() = AdvertToProto(member_->Advertise());
  return Status::Ok();
}

Result<SecureHandIn::State> SecureHandIn::OnReply(const v1::SecureStepResponse& reply) {
  using K = v1::SecureStepResponse;
  message_ = reply.message();
  wait_s_ = 0;
  if (reply.kind() == K::ACCEPTED) return State::kAccepted;
  if (reply.kind() == K::LEFT_OUT) return State::kLeftOut;
  const int round = reply.kind() == K::ADVERTISE    ? 0
                    : reply.kind() == K::SHARE_KEYS ? 1
                    : reply.kind() == K::MASK_INPUT ? 2
                    : reply.kind() == K::UNMASK     ? 3
                                                    : -1;
  if (round < next_round_) {  // WAIT, or a step already answered: poll
    if (round < 0)
      wait_s_ = static_cast<double>(std::max<int64_t>(reply.retry_after_ms(), 10)) / 1000;
    req_.clear_message();
    return State::kRunning;
  }
  if (round > next_round_) {
    return FailedPrecondition("the server skipped a round of the secure protocol");
  }
  auto bad = [](const char* what, const Status& s) {
    return FailedPrecondition(std::string(what) + ": " + s.message());
  };
  if (round == 0) {
    if (Status s = Advertise(reply.cohort()); !s.ok())
      return bad("the server sent a bad cohort", s);
  } else if (round == 1) {
    std::vector<secagg::KeyAdvert> adverts;
    for (const v1::SecureAdvert& a : reply.adverts()) {
      auto ad = AdvertFromProto(a, config_.cohort_id);
      if (!ad.ok()) return bad("the server sent a bad advert", ad.status());
      adverts.push_back(*ad);
    }
    auto shares = member_->ShareKeys(adverts);
    if (!shares.ok()) return bad("key shares", shares.status());
    *req_.mutable_shares() = SharesToProto(*shares);
  } else if (round == 2) {
    std::vector<secagg::EncryptedShare> received;
    for (const v1::SecureShare& e : reply.shares()) received.push_back(ShareFromProto(e));
    std::vector<float> full(static_cast<size_t>(fl::TotalNumel(layout_)), 0.0f);
    fl::AddMasked(u_.delta, static_cast<float>(weight_), mask_, layout_, &full);
    const std::vector<float> packed = fl::PackMasked(full, cohort_mask_, layout_);
    auto input = member_->MaskInput(received, packed.data());
    if (!input.ok()) return bad("masked input", input.status());
    req_.set_masked_input(MaskedInputToBytes(*input));
  } else {
    auto unmask = member_->Reveal({reply.survivors().begin(), reply.survivors().end()});
    if (!unmask.ok()) return bad("unmasking", unmask.status());
    *req_.mutable_unmask() = UnmaskToProto(*unmask);
  }
  next_round_ = round + 1;
  return State::kRunning;
}

}  // namespace ftte::net
