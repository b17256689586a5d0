#include "ftte/fl/changed_rows.h"

#include <gtest/gtest.h>

namespace ftte::fl {
namespace {

// An "embedding" of 100 rows of 8, a 4x3 matrix and a bias of 5: the mask trains rows
// 10..59 of the embedding, every row of the matrix, and no bias.
const std::vector<ParamLayout> kLayout = {
    {"0.weight", 100, 8}, {"1.weight", 4, 3}, {"1.bias", 5, 1}};

Mask TheMask() {
  Mask m = Mask::Full(kLayout);
  for (int r = 0; r < 100; ++r) m.rows[0][r] = r >= 10 && r < 60;
  m.rows[2].assign(5, 0);
  return m;
}

// A delta over TheMask in which only embedding rows 12, 13 and 40 and matrix row 2 change.
Update SparseUpdate(const Mask& mask) {
  Update u;
  u.device = 3;
  u.base_version = 7;
  u.num_samples = 11;
  u.delta.assign(static_cast<size_t>(mask.Numel(kLayout)), 0.0f);
  for (int row : {12, 13, 40}) {
    for (int j = 0; j < 8; ++j) u.delta[(row - 10) * 8 + j] = 0.25f * (j + 1) - row * 0.01f;
  }
  u.delta[50 * 8 + 2 * 3 + 1] = -1.5f;  // matrix row 2
  u.delta[13 * 8 - 80 + 3] = 0.0f;      // a zero inside a changed row stays
  return u;
}

TEST(ChangedRowsTest, FindsTheRowsWithANonZeroValue) {
  const Mask mask = TheMask();
  const Mask changed = ChangedRows(SparseUpdate(mask).delta, mask, kLayout);
  EXPECT_TRUE(IsSubsetOf(changed, mask));
  int rows = 0;
  for (int r = 0; r < 100; ++r) rows += changed.rows[0][r];
  EXPECT_EQ(rows, 3);
  EXPECT_TRUE(changed.rows[0][12] && changed.rows[0][13] && changed.rows[0][40]);
  EXPECT_EQ(changed.rows[1], (std::vector<uint8_t>{0, 0, 1, 0}));
  EXPECT_EQ(changed.rows[2], std::vector<uint8_t>(5, 0));
}

TEST(ChangedRowsTest, DecodedAndExpandedEqualsTheDenseUpdateAndIsSmaller) {
  const Mask mask = TheMask();
  const Update u = SparseUpdate(mask);
  for (bool int8 : {false, true}) {
    const std::string natural = EncodeChangedRows(u, mask, kLayout, {false, int8});
    const std::string sparse = EncodeUpdate(u, mask, kLayout, {true, int8});
    EXPECT_LT(natural.size() * 4, sparse.size()) << "int8 " << int8;
    EXPECT_EQ(static_cast<int64_t>(natural.size()),
              EncodedSize(ChangedRows(u.delta, mask, kLayout), kLayout, {true, int8}));
    auto decoded = DecodeUpdate(natural, kLayout);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    auto expanded = ExpandToMask(decoded.value(), mask, kLayout);
    ASSERT_TRUE(expanded.ok()) << expanded.status().ToString();
    EXPECT_EQ(expanded->device, 3);
    EXPECT_EQ(expanded->base_version, 7);
    EXPECT_EQ(expanded->num_samples, 11);
    ASSERT_EQ(expanded->delta.size(), u.delta.size());
    const auto dense = DecodeUpdate(sparse, kLayout).value();
    for (size_t i = 0; i < u.delta.size(); ++i) {
      // Zero rows decode to exact zeros; float32 values are exact, int8 ones equal the
      // quantisation of the full-mask encoding only up to the scale, so compare to u.
      if (u.delta[i] == 0.0f) {
        EXPECT_EQ(expanded->delta[i], 0.0f) << i;
      }
      if (int8) {
        EXPECT_NEAR(expanded->delta[i], dense.update.delta[i], 0.02f) << i;
      } else {
        EXPECT_EQ(expanded->delta[i], u.delta[i]) << i;
      }
    }
  }
}

TEST(ChangedRowsTest, AnUpdateWithoutChangesCarriesNoValues) {
  const Mask mask = TheMask();
  Update u = SparseUpdate(mask);
  std::fill(u.delta.begin(), u.delta.end(), -0.0f);
  const std::string bytes = EncodeChangedRows(u, mask, kLayout, {});
  EXPECT_EQ(static_cast<int64_t>(bytes.size()),
            EncodedSize(ChangedRows(u.delta, mask, kLayout), kLayout, {true, false}));
  auto expanded = ExpandToMask(DecodeUpdate(bytes, kLayout).value(), mask, kLayout);
  ASSERT_TRUE(expanded.ok());
  EXPECT_EQ(expanded->delta, std::vector<float>(u.delta.size(), 0.0f));
}

TEST(ChangedRowsTest, RowsOutsideTheServersMaskAreRejected) {
  const Mask mask = TheMask();
  // A dense update (every row) against a partial mask, and one touching the frozen bias.
  Update full = SparseUpdate(Mask::Full(kLayout));
  auto dense =
      DecodeUpdate(EncodeUpdate(full, Mask::Full(kLayout), kLayout, {false, false}), kLayout);
  ASSERT_TRUE(dense.ok());
  auto r = ExpandToMask(dense.value(), mask, kLayout);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("outside the server's mask"), std::string::npos);
  Mask bias_only = Mask::Full(kLayout);
  for (auto& rows : bias_only.rows) std::fill(rows.begin(), rows.end(), 0);
  bias_only.rows[2][4] = 1;
  Update b;
  b.delta = {2.0f};
  auto decoded = DecodeUpdate(EncodeUpdate(b, bias_only, kLayout, {}), kLayout).value();
  EXPECT_FALSE(ExpandToMask(decoded, mask, kLayout).ok());
  EXPECT_TRUE(ExpandToMask(decoded, Mask::Full(kLayout), kLayout).ok());
}

}  // namespace
}  // namespace ftte::fl
