#include "wire.h"

#include <gtest/gtest.h>

namespace ftte::net {
namespace {

std::vector<fl::ParamLayout> Layout() { return {{"a", 5, 3}, {"b", 6, 1}}; }

TEST(WireTest, MaskBitsRoundTrip) {
  fl::Mask m;
  m.rows = {{1, 0, 1, 1, 0}, {0, 0, 0, 0, 0, 1}};
  const std::string bits = PackMaskBits(m, Layout());
  ASSERT_EQ(bits.size(), 2u);  // 11 rows
  auto back = UnpackMaskBits(bits, Layout());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->rows, m.rows);
}

TEST(WireTest, MaskBitsOfTheWrongSizeOrWithStrayBitsAreRefused) {
  auto short_bits = UnpackMaskBits(std::string(1, '\0'), Layout());
  ASSERT_FALSE(short_bits.ok());
  EXPECT_NE(short_bits.status().message().find("11 rows need 2"), std::string::npos);
  std::string stray(2, '\0');
  stray[1] = static_cast<char>(0x80);  // bit 15: past row 10
  auto s = UnpackMaskBits(stray, Layout());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("past the model's last row"), std::string::npos);
}

TEST(WireTest, HyperparametersRoundTripAndAreRangeChecked) {
  fl::ClientConfig c;
  c.local_steps = 7;
  c.batch = 16;
  c.optimizer.lr = 0.25f;
  c.frozen = FrozenStorage::kInt8;
  c.dp_clip = 0.5;
  c.dp_noise_stddev = 0.25;
  v1::Hyperparameters h = HyperparametersToProto(c, true);
  auto back = HyperparametersFromProto(h);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->dp_clip, 0.5);
  EXPECT_EQ(back->dp_noise_stddev, 0.25);
  EXPECT_EQ(back->local_steps, 7);
  EXPECT_EQ(back->batch, 16);
  EXPECT_EQ(back->optimizer.lr, 0.25f);
  EXPECT_EQ(back->frozen, FrozenStorage::kInt8);
  h.set_batch(0);
  EXPECT_FALSE(HyperparametersFromProto(h).ok());
  h.set_batch(8);
  h.set_learning_rate(std::nanf(""));
  EXPECT_FALSE(HyperparametersFromProto(h).ok());
  h.set_learning_rate(0.1f);
  h.set_frozen_storage("fp4");
  EXPECT_FALSE(HyperparametersFromProto(h).ok());
  h.set_frozen_storage("int8");
  h.set_dp_noise_stddev(-1);
  EXPECT_FALSE(HyperparametersFromProto(h).ok());
  h.set_dp_noise_stddev(1);
  h.set_dp_clip(0);  // noise without a clip
  EXPECT_FALSE(HyperparametersFromProto(h).ok());
}

TEST(WireTest, StatusCodesMapBothWays) {
  EXPECT_EQ(ToGrpc(Unauthenticated("x")).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ToGrpc(FailedPrecondition("x")).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"), "call").code(),
            StatusCode::kUnavailable);
  EXPECT_TRUE(IsTransient(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "")));
  EXPECT_FALSE(IsTransient(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "")));
}

}  // namespace
}  // namespace ftte::net
