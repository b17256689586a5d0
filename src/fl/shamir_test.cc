#include "ftte/fl/shamir.h"

#include <gtest/gtest.h>

namespace ftte::fl {
namespace {

Secret32 Filled(uint8_t first) {
  Secret32 s;
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<uint8_t>(first + 37 * i);
  return s;
}

TEST(ShamirTest, AnyThresholdSharesRebuildTheSecret) {
  KeyStream random(Filled(1));
  const Secret32 secret = Filled(200);
  const std::vector<uint32_t> xs = {1, 2, 3, 5, 8, 13, 21};
  const auto shares = ShamirSplit(secret, 4, xs, &random);
  ASSERT_EQ(shares.size(), xs.size());
  for (size_t skip = 0; skip + 4 <= shares.size(); ++skip) {
    std::vector<ShamirShare> subset(shares.begin() + skip, shares.begin() + skip + 4);
    auto got = ShamirCombine(subset, 4);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, secret);
  }
  std::vector<ShamirShare> mixed = {shares[6], shares[0], shares[4], shares[2]};
  EXPECT_EQ(ShamirCombine(mixed, 4).value(), secret);
}

TEST(ShamirTest, TheLargestSecretRoundTrips) {
  Secret32 secret;
  secret.fill(0xff);  // every chunk at its maximum, still below the prime
  KeyStream random(Filled(3));
  const auto shares = ShamirSplit(secret, 2, {7, 9}, &random);
  EXPECT_EQ(ShamirCombine(shares, 2).value(), secret);
}

TEST(ShamirTest, FewerThanThresholdSharesAreRefused) {
  KeyStream random(Filled(4));
  const auto shares = ShamirSplit(Filled(5), 3, {1, 2, 3}, &random);
  auto got = ShamirCombine({shares[0], shares[1]}, 3);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("2 shares cannot rebuild"), std::string::npos);
}

// Below the threshold the shares say nothing: for threshold 2, one share is consistent with
// every secret (here: a second share can be chosen to give any other secret).
TEST(ShamirTest, AnAlteredShareGivesAnotherSecretAndEvaluateFindsIt) {
  KeyStream random(Filled(6));
  const Secret32 secret = Filled(7);
  auto shares = ShamirSplit(secret, 3, {1, 2, 3, 4}, &random);
  // The polynomial through three shares predicts the fourth.
  EXPECT_EQ(ShamirEvaluate(shares, 3, 4), shares[3].y);
  auto altered = shares;
  altered[1].y[2] ^= 1;
  auto got = ShamirCombine(altered, 3);
  EXPECT_TRUE(!got.ok() || *got != secret);
  EXPECT_NE(ShamirEvaluate(altered, 3, 4), shares[3].y);
}

TEST(ShamirTest, SplittingIsDeterministicInTheStream) {
  KeyStream a(Filled(8)), b(Filled(8)), c(Filled(9));
  const auto sa = ShamirSplit(Filled(10), 3, {1, 2, 3}, &a);
  const auto sb = ShamirSplit(Filled(10), 3, {1, 2, 3}, &b);
  const auto sc = ShamirSplit(Filled(10), 3, {1, 2, 3}, &c);
  EXPECT_EQ(sa[0].y, sb[0].y);
  EXPECT_NE(sa[0].y, sc[0].y);
}

}  // namespace
}  // namespace ftte::fl
