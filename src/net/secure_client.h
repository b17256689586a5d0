// A device's side of a secure hand-in (federation.proto SecureStep) without the network: the
// request to send now, and from each reply the next one. The device runtime drives it over gRPC;
// tests drive it against the coordinator directly.
#ifndef FTTE_NET_SECURE_CLIENT_H_
#define FTTE_NET_SECURE_CLIENT_H_

#include <optional>
#include <vector>

#include "ftte/core/status.h"
#include "ftte/fl/secagg.h"
#include "ftte/fl/update.h"
#include "ftte/v1/federation.pb.h"

namespace ftte::net {

class SecureHandIn {
 public:
  enum class State { kRunning, kAccepted, kLeftOut };

  // `u` is the job's update (delta over `mask`, its base version, samples and id); `secret`
  // seeds the member's keys (fl::secagg::RandomSecret() on a device).
  SecureHandIn(fl::Update u, fl::Mask mask, std::vector<fl::ParamLayout> layout,
               const fl::Secret32& secret);

  // The request to send: the join, a round's message, or a poll. A retry after a lost reply
  // sends it again unchanged (the server answers a repeated message as a poll).
  const v1::SecureStepRequest& request() const { return req_; }
  // Takes the reply to request(). kRunning: send request() next, after wait_s(). kAccepted: the
  // cohort's sum holds the update. kLeftOut: it is in no sum (message() says why). Errors: the
  // server sent something inconsistent (a bad cohort, a skipped round, a failed protocol
  // check); the hand-in is over.
  Result<State> OnReply(const v1::SecureStepResponse& reply);
  double wait_s() const { return wait_s_; }
  const std::string& message() const { return message_; }
  // Weighted values outside the cohort's range (clamped by the fixed point).
  int64_t clamped() const { return member_ ? member_->clamped() : 0; }

 private:
  Status Advertise(const v1::SecureCohort& c);

  fl::Update u_;
  fl::Mask mask_;
  std::vector<fl::ParamLayout> layout_;
  fl::Secret32 secret_;
  v1::SecureStepRequest req_;
  std::optional<fl::secagg::Member> member_;
  fl::secagg::CohortConfig config_;
  fl::Mask cohort_mask_;
  double weight_ = 0;
  int next_round_ = 0;  // the round whose message goes next
  double wait_s_ = 0;
  std::string message_;
};

}  // namespace ftte::net

#endif  // FTTE_NET_SECURE_CLIENT_H_
