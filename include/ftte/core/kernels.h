// Numerical kernels, single-threaded (see thread_pool.h). Gemm calls CBLAS (OpenBLAS), or
// PortableGemm in builds without it (FTTE_WITH_OPENBLAS=OFF); the others work on short rows in
// fixed-size vector blocks (see kernels.cc). The Ref* versions are plain loops kept in the tree as
// the oracle that tests compare the fast ones against. Pointer arguments never alias unless a
// comment says they may.
#ifndef FTTE_CORE_KERNELS_H_
#define FTTE_CORE_KERNELS_H_

#include <cstdint>

namespace ftte {

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major, leading dimensions given.
// op(X) = X^T when trans_X. Single-threaded (see thread_pool.h).
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
// The blocked GEMM of builds without OpenBLAS (gemm.cc), compiled in every build so that tests
// and benchmarks compare it with RefGemm and OpenBLAS. Same contract as Gemm.
void PortableGemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc);
void RefGemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
             int64_t ldc);

// Products with int8 rows (one float scale per row), for passes of a few samples: there,
// dequantising a tile for Gemm costs more than the product itself. Each output sums its terms in
// a fixed order (eight lanes, then combined), so results depend only on the shapes.
// y[i, r] = beta * y[i, r] + scale[r] * sum_j x[i, j] q[r, j], for i < n, r < rows, j < k (x rows
// ldx apart, q rows ldq apart, y rows ldy apart).
void Int8GemmNT(int64_t n, int64_t rows, int64_t k, const float* x, int64_t ldx, const int8_t* q,
                int64_t ldq, const float* scale, float beta, float* y, int64_t ldy);
// dx[i, j] = beta * dx[i, j] + sum_r dy[i, r] scale[r] q[r, j], for i < n, r < rows, j < cols.
void Int8GemmNN(int64_t n, int64_t rows, int64_t cols, const float* dy, int64_t lddy,
                const int8_t* q, int64_t ldq, const float* scale, float beta, float* dx,
                int64_t lddx);

// Geometry of a 2-D convolution / pooling window over one sample.
struct ConvGeometry {
  int64_t channels, height, width;  // input
  int64_t kernel, stride, padding;
  int64_t out_height() const { return (height + 2 * padding - kernel) / stride + 1; }
  int64_t out_width() const { return (width + 2 * padding - kernel) / stride + 1; }
  int64_t col_rows() const { return channels * kernel * kernel; }
  int64_t col_cols() const { return out_height() * out_width(); }
  int64_t padded_width() const { return width + 2 * padding; }
  // Floats of the scratch Im2Col and Col2Im work in: one zero-padded channel plane, its rows
  // widened by up to a vector's width (about (H + 2 pad) (W + 2 pad + 15) floats).
  int64_t scratch_size() const;
};

// col[C*k*k, OH*OW] from x[C, H, W]; zeros where the window hangs over the padding. `scratch`
// holds scratch_size() floats (contents on entry and exit are unspecified). Writes only col.
void Im2Col(const ConvGeometry& g, const float* x, float* col, float* scratch);
// The columns of output rows [y0, y1) only: col[C*k*k, (y1 - y0) * OW], a tile of Im2Col's.
void Im2ColRows(const ConvGeometry& g, const float* x, int64_t y0, int64_t y1, float* col,
                float* scratch);
// dx[C, H, W] = sum of col entries back into their pixels (dx is overwritten). `scratch` as
// for Im2Col.
void Col2Im(const ConvGeometry& g, const float* col, float* dx, float* scratch);
// dx += the entries of a tile col[C*k*k, (y1 - y0) * OW] of output rows [y0, y1) (as
// Im2ColRows makes) back into their pixels. Tiles covering all rows sum to Col2Im's dx.
void Col2ImRowsAdd(const ConvGeometry& g, const float* col, int64_t y0, int64_t y1, float* dx,
                   float* scratch);
// Element-by-element versions of the two above, the oracle for them.
void RefIm2Col(const ConvGeometry& g, const float* x, float* col);
void RefCol2Im(const ConvGeometry& g, const float* col, float* dx);

// One output row of a 2x2, stride-2 max pool over input rows r0 and r1 (2 * ow values each):
// y[j] = the maximum of r0[2j], r0[2j+1], r1[2j], r1[2j+1], the first maximum in that order
// winning (a NaN wins only in the first place), and, unless arg is null, arg[j] = its place
// 0..3.
void MaxPool2x2Row(const float* r0, const float* r1, int64_t ow, float* y, uint8_t* arg);
// Its backward: each dy[j] goes to the place arg[j] names in d0 / d1 (input rows as above, 2 *
// ow values each, overwritten), the other three places get 0.
void MaxPool2x2BackwardRow(const float* dy, const uint8_t* arg, int64_t ow, float* d0, float* d1);
// Element-by-element versions of the two above, the oracle for them.
void RefMaxPool2x2Row(const float* r0, const float* r1, int64_t ow, float* y, uint8_t* arg);
void RefMaxPool2x2BackwardRow(const float* dy, const uint8_t* arg, int64_t ow, float* d0,
                              float* d1);

// ReLU. The sign mask holds one bit per value, (y > 0), by groups of 64 values in 8 bytes:
// value 16 k + l of a group (k < 4, l < 16) is bit k + 4 (l % 2) of byte l / 2, the order that
// vector code packs and unpacks fastest. A mask for n values takes 8 ceil(n / 64) bytes.
constexpr int64_t kReluGroup = 64;
// y = max(x, 0) (NaN gives 0) for n values, y may be x; unless mask is null, also its sign mask.
void ReluForward(const float* x, int64_t n, float* y, uint8_t* mask);
// dx = dy where the mask bit is set, else 0, for n values; dx may be dy.
void ReluBackward(const float* dy, const uint8_t* mask, int64_t n, float* dx);

// y[i] = exp(x[i] - shift) for n values with x[i] <= shift (a softmax row less its max), y may
// be x. A vectorised polynomial (Cephes' expf): relative error below 2e-7 against std::exp;
// results below FLT_MIN (x - shift < -87.3) are flushed to 0. Several times faster than calling
// std::exp per value, which is scalar.
void ExpShifted(const float* x, int64_t n, float shift, float* y);

}  // namespace ftte

#endif  // FTTE_CORE_KERNELS_H_
