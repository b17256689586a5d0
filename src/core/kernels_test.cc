// Kernels without a layer of their own: ExpShifted against std::exp; im2col / col2im tiles.
#include "ftte/core/kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "ftte/core/rng.h"

namespace ftte {
namespace {

TEST(ExpShiftedTest, MatchesStdExpToTwoUlpsAndFlushesUnderflowToZero) {
  std::vector<float> x;
  for (float t = -100.0f; t <= 0.0f; t += 0.001953125f) x.push_back(t + 3.5f);
  x.push_back(3.5f);  // exp(0) = 1 exactly
  std::vector<float> y(x.size());
  ExpShifted(x.data(), static_cast<int64_t>(x.size()), 3.5f, y.data());
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double t = static_cast<double>(x[i] - 3.5f);
    const double want = std::exp(t);
    if (want < FLT_MIN) {
      EXPECT_LE(y[i], FLT_MIN) << "t = " << t;
      continue;
    }
    worst = std::max(worst, std::abs(y[i] - want) / want);
  }
  EXPECT_LT(worst, 2e-7);
  EXPECT_EQ(y.back(), 1.0f);
  // The scalar remainder path gives the same bits as the vector path.
  for (size_t i = 0; i < x.size(); i += 97) {
    float one;
    ExpShifted(&x[i], 1, 3.5f, &one);
    EXPECT_EQ(one, y[i]) << "t = " << x[i] - 3.5f;
  }
  // In place.
  std::vector<float> z = x;
  ExpShifted(z.data(), static_cast<int64_t>(z.size()), 3.5f, z.data());
  EXPECT_EQ(z, y);
}

}  // namespace
}  // namespace ftte

namespace ftte {
namespace {

// Tiles of Im2Col by output rows, and Col2Im's tiles adding up, against the element-by-element
// oracles, over strides, paddings, kernels and tile heights (including uneven last tiles).
TEST(Im2ColTest, RowTilesMatchTheOracleAndCol2ImTilesAddUp) {
  Rng rng(3);
  for (int64_t stride : {1, 2}) {
    for (int64_t pad : {0, 1, 2}) {
      for (int64_t k : {1, 3, 5}) {
        const ConvGeometry g{3, 11, 9, k, stride, pad};
        if (g.out_height() < 1 || g.out_width() < 1) continue;
        SCOPED_TRACE("k " + std::to_string(k) + " stride " + std::to_string(stride) + " pad " +
                     std::to_string(pad));
        const int64_t oh = g.out_height(), ow = g.out_width(), ckk = g.col_rows();
        std::vector<float> x(static_cast<size_t>(g.channels * g.height * g.width));
        for (float& v : x) v = static_cast<float>(rng.Normal());
        std::vector<float> want(static_cast<size_t>(ckk * oh * ow));
        RefIm2Col(g, x.data(), want.data());
        std::vector<float> dx_want(x.size());
        RefCol2Im(g, want.data(), dx_want.data());
        std::vector<float> scratch(static_cast<size_t>(g.scratch_size()));
        std::vector<float> dx(x.size());
        Col2Im(g, want.data(), dx.data(), scratch.data());
        for (size_t i = 0; i < dx.size(); ++i)
          ASSERT_NEAR(dx[i], dx_want[i], 1e-5 + 1e-6 * std::fabs(dx_want[i])) << i;
        for (int64_t rows : {int64_t{1}, int64_t{2}, int64_t{3}, oh}) {
          std::fill(dx.begin(), dx.end(), 0.0f);
          for (int64_t y0 = 0; y0 < oh; y0 += rows) {
            const int64_t y1 = std::min(oh, y0 + rows), span = (y1 - y0) * ow;
            std::vector<float> col(static_cast<size_t>(ckk * span));
            Im2ColRows(g, x.data(), y0, y1, col.data(), scratch.data());
            for (int64_t r = 0; r < ckk; ++r) {
              for (int64_t j = 0; j < span; ++j) {
                ASSERT_EQ(col[r * span + j], want[r * oh * ow + y0 * ow + j])
                    << "tile rows " << rows << " row " << r << " column " << j;
              }
            }
            Col2ImRowsAdd(g, col.data(), y0, y1, dx.data(), scratch.data());
          }
          for (size_t i = 0; i < dx.size(); ++i) {
            ASSERT_NEAR(dx[i], dx_want[i], 1e-5 + 1e-6 * std::fabs(dx_want[i]))
                << "tile rows " << rows << " pixel " << i;
          }
        }
      }
    }
  }
}

// PortableGemm (the GEMM of builds without OpenBLAS) against RefGemm's double sums: every
// transpose, sizes that leave tails of the 4 x 16 register tile and cross the 256-deep and
// 64-row / 256-column packing blocks, leading dimensions wider than the operands, beta 0 (C is
// never read: it holds NaN), 1 and another value, and alpha != 1. Then Gemm, whichever
// implementation this build uses, against the same oracle.
TEST(GemmTest, PortableAndBuildGemmMatchTheReference) {
  Rng rng(11);
  struct Shape {
    int64_t m, n, k;
  };
  for (Shape s : {Shape{1, 1, 1}, Shape{5, 17, 3}, Shape{67, 259, 300}, Shape{4, 16, 256},
                  Shape{130, 33, 513}, Shape{3, 300, 0}}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = (t & 1) != 0, tb = (t & 2) != 0;
      const int64_t lda = (ta ? s.m : s.k) + 3, ldb = (tb ? s.k : s.n) + 2, ldc = s.n + 5;
      std::vector<float> a(static_cast<size_t>((ta ? s.k : s.m) * lda + 1));
      std::vector<float> b(static_cast<size_t>((tb ? s.n : s.k) * ldb + 1));
      for (float& v : a) v = static_cast<float>(rng.Normal());
      for (float& v : b) v = static_cast<float>(rng.Normal());
      for (float beta : {0.0f, 1.0f, -0.5f}) {
        std::vector<float> c0(static_cast<size_t>(s.m * ldc));
        for (float& v : c0) v = beta == 0.0f ? NAN : static_cast<float>(rng.Normal());
        std::vector<float> want = c0, portable = c0, built = c0;
        RefGemm(ta, tb, s.m, s.n, s.k, 0.75f, a.data(), lda, b.data(), ldb, beta, want.data(), ldc);
        PortableGemm(ta, tb, s.m, s.n, s.k, 0.75f, a.data(), lda, b.data(), ldb, beta,
                     portable.data(), ldc);
        Gemm(ta, tb, s.m, s.n, s.k, 0.75f, a.data(), lda, b.data(), ldb, beta, built.data(), ldc);
        const double tol = 1e-5 * (1 + std::sqrt(static_cast<double>(s.k)));
        for (int64_t i = 0; i < s.m; ++i) {
          for (int64_t j = 0; j < ldc; ++j) {
            const size_t e = static_cast<size_t>(i * ldc + j);
            if (j >= s.n) {  // beyond the n columns: untouched
              EXPECT_TRUE(std::memcmp(&portable[e], &c0[e], sizeof(float)) == 0);
              continue;
            }
            const std::string where = std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
                                      std::to_string(s.k) + " t" + std::to_string(t) + " beta " +
                                      std::to_string(beta) + " at " + std::to_string(i) + "," +
                                      std::to_string(j);
            ASSERT_NEAR(portable[e], want[e], tol * (1 + std::fabs(want[e]))) << where;
            ASSERT_NEAR(built[e], want[e], tol * (1 + std::fabs(want[e]))) << where;
          }
        }
      }
    }
  }
}

// The int8 products against plain double loops, with beta 0, 1 and another value, odd sizes
// (tails of the eight lanes) and strides.
TEST(Int8GemmTest, MatchesPlainLoops) {
  Rng rng(8);
  const int64_t n = 3, rows = 5, k = 21, ldx = 23, ldq = 25, ldy = 7;
  std::vector<float> x(static_cast<size_t>(n * ldx)), scale(static_cast<size_t>(rows));
  std::vector<int8_t> q(static_cast<size_t>(rows * ldq));
  for (float& v : x) v = static_cast<float>(rng.Normal());
  for (float& v : scale) v = static_cast<float>(rng.Uniform()) / 100;
  for (int8_t& v : q) v = static_cast<int8_t>(static_cast<int>(rng.Below(255)) - 127);
  for (float beta : {0.0f, 1.0f, 0.5f}) {
    std::vector<float> y(static_cast<size_t>(n * ldy), 2.0f);
    Int8GemmNT(n, rows, k, x.data(), ldx, q.data(), ldq, scale.data(), beta, y.data(), ldy);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t r = 0; r < rows; ++r) {
        double dot = 0;
        for (int64_t j = 0; j < k; ++j) dot += static_cast<double>(x[i * ldx + j]) * q[r * ldq + j];
        const double want = beta * 2.0 + scale[r] * dot;
        EXPECT_NEAR(y[i * ldy + r], want, 1e-5 * (1 + std::fabs(want))) << i << " " << r;
      }
    }
    // dx = dy Q over columns [0, k): dy is x's first `rows` columns.
    std::vector<float> dx(static_cast<size_t>(n * ldx), 3.0f);
    Int8GemmNN(n, rows, k, x.data(), ldx, q.data(), ldq, scale.data(), beta, dx.data(), ldx);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < k; ++j) {
        double sum = 0;
        for (int64_t r = 0; r < rows; ++r) {
          sum += static_cast<double>(x[i * ldx + r]) * scale[r] * q[r * ldq + j];
        }
        const double want = beta * 3.0 + sum;
        EXPECT_NEAR(dx[i * ldx + j], want, 1e-5 * (1 + std::fabs(want))) << i << " " << j;
      }
    }
  }
}

}  // namespace
}  // namespace ftte
