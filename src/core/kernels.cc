#include "ftte/core/kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>

namespace ftte {

void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

void RefGemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
             int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < k; ++p) {
        float av = trans_a ? a[p * lda + i] : a[i * lda + p];
        float bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
        acc += static_cast<double>(av) * bv;
      }
      float prev = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
      c[i * ldc + j] = alpha * static_cast<float>(acc) + prev;
    }
  }
}

void Im2Col(const ConvGeometry& g, const float* x, float* col) {
  const int64_t oh = g.out_height(), ow = g.out_width(), k = g.kernel;
  for (int64_t c = 0; c < g.channels; ++c) {
    const float* xc = x + c * g.height * g.width;
    for (int64_t ki = 0; ki < k; ++ki) {
      for (int64_t kj = 0; kj < k; ++kj) {
        float* row = col + ((c * k + ki) * k + kj) * oh * ow;
        for (int64_t y = 0; y < oh; ++y) {
          int64_t iy = y * g.stride - g.padding + ki;
          float* out = row + y * ow;
          if (iy < 0 || iy >= g.height) {
            for (int64_t xo = 0; xo < ow; ++xo) out[xo] = 0.0f;
            continue;
          }
          const float* xrow = xc + iy * g.width;
          if (g.stride == 1) {
            // Valid output columns are those whose input column lies inside the row: copy that
            // span in one go and zero the padded edges.
            const int64_t x0 = kj - g.padding;
            const int64_t lo = std::clamp<int64_t>(-x0, 0, ow);
            const int64_t hi = std::clamp<int64_t>(g.width - x0, lo, ow);
            // Plain loops: rows are short (tens of values), where library calls cost more.
            for (int64_t xo = 0; xo < lo; ++xo) out[xo] = 0.0f;
            const float* src = xrow + x0;
            for (int64_t xo = lo; xo < hi; ++xo) out[xo] = src[xo];
            for (int64_t xo = hi; xo < ow; ++xo) out[xo] = 0.0f;
          } else {
            for (int64_t xo = 0; xo < ow; ++xo) {
              int64_t ix = xo * g.stride - g.padding + kj;
              out[xo] = (ix >= 0 && ix < g.width) ? xrow[ix] : 0.0f;
            }
          }
        }
      }
    }
  }
}

void Col2Im(const ConvGeometry& g, const float* col, float* dx) {
  const int64_t oh = g.out_height(), ow = g.out_width(), k = g.kernel;
  std::memset(dx, 0, sizeof(float) * g.channels * g.height * g.width);
  for (int64_t c = 0; c < g.channels; ++c) {
    float* dxc = dx + c * g.height * g.width;
    for (int64_t ki = 0; ki < k; ++ki) {
      for (int64_t kj = 0; kj < k; ++kj) {
        const float* row = col + ((c * k + ki) * k + kj) * oh * ow;
        for (int64_t y = 0; y < oh; ++y) {
          int64_t iy = y * g.stride - g.padding + ki;
          if (iy < 0 || iy >= g.height) continue;
          float* drow = dxc + iy * g.width;
          const float* crow = row + y * ow;
          if (g.stride == 1) {
            const int64_t x0 = kj - g.padding;
            const int64_t lo = std::clamp<int64_t>(-x0, 0, ow);
            const int64_t hi = std::clamp<int64_t>(g.width - x0, lo, ow);
            float* d = drow + x0;
            for (int64_t xo = lo; xo < hi; ++xo) d[xo] += crow[xo];
          } else {
            for (int64_t xo = 0; xo < ow; ++xo) {
              int64_t ix = xo * g.stride - g.padding + kj;
              if (ix >= 0 && ix < g.width) drow[ix] += crow[xo];
            }
          }
        }
      }
    }
  }
}

}  // namespace ftte
