// Numerical kernels. Fast versions call CBLAS (OpenBLAS); the Ref* versions are plain loops
// kept in the tree as the oracle that tests compare the fast ones against.
#ifndef FTTE_CORE_KERNELS_H_
#define FTTE_CORE_KERNELS_H_

#include <cstdint>

namespace ftte {

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major, leading dimensions given.
// op(X) = X^T when trans_X. Single-threaded (see thread_pool.h).
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc);
void RefGemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
             int64_t ldc);

// Geometry of a 2-D convolution / pooling window over one sample.
struct ConvGeometry {
  int64_t channels, height, width;    // input
  int64_t kernel, stride, padding;
  int64_t out_height() const { return (height + 2 * padding - kernel) / stride + 1; }
  int64_t out_width() const { return (width + 2 * padding - kernel) / stride + 1; }
  int64_t col_rows() const { return channels * kernel * kernel; }
  int64_t col_cols() const { return out_height() * out_width(); }
};

// col[C*k*k, OH*OW] from x[C, H, W]; zeros where the window hangs over the padding.
void Im2Col(const ConvGeometry& g, const float* x, float* col);
// dx[C, H, W] = sum of col entries back into their pixels (dx is overwritten).
void Col2Im(const ConvGeometry& g, const float* col, float* dx);

}  // namespace ftte

#endif  // FTTE_CORE_KERNELS_H_
