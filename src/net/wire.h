// Conversions between ftte's types and the protobuf schema (proto/ftte/v1/federation.proto),
// shared by the device runtime and the server. Everything that reads a message validates it
// and returns an error naming the field; nothing here trusts the peer.
#ifndef FTTE_NET_WIRE_H_
#define FTTE_NET_WIRE_H_

#include <grpcpp/grpcpp.h>

#include <string>
#include <string_view>
#include <vector>

#include "ftte/core/status.h"
#include "ftte/fl/client.h"
#include "ftte/fl/secagg.h"
#include "ftte/fl/update.h"
#include "ftte/v1/federation.grpc.pb.h"

namespace ftte::net {

// The revision of federation.proto this build speaks (sent in Enroll).
inline constexpr uint32_t kSchemaRevision = 1;

// One bit per row over all parameters in layout order, least significant bit first.
std::string PackMaskBits(const fl::Mask& mask, const std::vector<fl::ParamLayout>& layout);
// Fails unless `bits` has exactly the bytes the layout needs and no stray bits past the end.
Result<fl::Mask> UnpackMaskBits(std::string_view bits, const std::vector<fl::ParamLayout>& layout);

void LayoutToProto(const std::vector<fl::ParamLayout>& layout,
                   google::protobuf::RepeatedPtrField<v1::ParamShape>* out);
std::vector<fl::ParamLayout> LayoutFromProto(
    const google::protobuf::RepeatedPtrField<v1::ParamShape>& in);

v1::Hyperparameters HyperparametersToProto(const fl::ClientConfig& c, bool int8_upload);
// Checks ranges (batch >= 1, learning rate finite and positive, ...).
Result<fl::ClientConfig> HyperparametersFromProto(const v1::Hyperparameters& h);

// Secure aggregation's messages (fl/secagg.h). The readers check sizes (32-byte keys and
// commitment, 4 bytes per masked value, five field elements per share) and name the field; the
// protocol objects check the rest (membership, rounds, cryptography). `cohort_id` and `member`
// are the sender's, known from the call, never taken from the message.
v1::SecureAdvert AdvertToProto(const fl::secagg::KeyAdvert& a);
Result<fl::secagg::KeyAdvert> AdvertFromProto(const v1::SecureAdvert& p, uint64_t cohort_id);
v1::SecureShare ShareToProto(const fl::secagg::EncryptedShare& s);
fl::secagg::EncryptedShare ShareFromProto(const v1::SecureShare& p);
v1::SecureShares SharesToProto(const fl::secagg::KeyShares& s);
Result<fl::secagg::KeyShares> SharesFromProto(const v1::SecureShares& p, uint64_t cohort_id,
                                              int32_t member);
std::string MaskedInputToBytes(const fl::secagg::MaskedInput& m);
Result<fl::secagg::MaskedInput> MaskedInputFromBytes(std::string_view bytes, uint64_t cohort_id,
                                                     int32_t member, int64_t length);
v1::SecureUnmask UnmaskToProto(const fl::secagg::Unmask& u);
Result<fl::secagg::Unmask> UnmaskFromProto(const v1::SecureUnmask& p, uint64_t cohort_id,
                                           int32_t member);

// Status <-> grpc::Status, codes mapped one to one where both have them.
grpc::Status ToGrpc(const Status& s);
// `what` names the call ("GetWork to 10.0.0.2:50051").
Status FromGrpc(const grpc::Status& s, const std::string& what);
// True for failures a retry may cure (server down, network drop, deadline).
bool IsTransient(const grpc::Status& s);

// The bearer token of a call, or "" if it has none.
std::string BearerToken(const grpc::ServerContext& ctx);

}  // namespace ftte::net

#endif  // FTTE_NET_WIRE_H_
