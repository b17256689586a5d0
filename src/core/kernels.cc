// The kernels. Short rows (tens of values: a row of a convolution window or of a pooled plane)
// are where plain loops lose most: the auto-vectoriser spends its time in alias checks and scalar
// remainders there. So spans go in blocks of a fixed size, and where blocks need shuffles or
// masks, through the portable vector extensions of GCC (12 or later) and Clang; other compilers
// get the plain loops (the Ref* versions, or the block code on the scalar path).
#include "ftte/core/kernels.h"

#ifdef FTTE_WITH_OPENBLAS
#include <cblas.h>
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define FTTE_VECTOR_EXTENSIONS 1
#endif

namespace ftte {

#ifdef FTTE_VECTOR_EXTENSIONS
namespace {

// Vectors of 4, 8 and 16 lanes of floats, int32 (comparison results, bit patterns) and bytes.
using F4 = float __attribute__((vector_size(16)));
using I4 = int32_t __attribute__((vector_size(16)));
using B4 = uint8_t __attribute__((vector_size(4)));
using F8 = float __attribute__((vector_size(32)));
using I8 = int32_t __attribute__((vector_size(32)));
using B8 = uint8_t __attribute__((vector_size(8)));
using F16 = float __attribute__((vector_size(64)));
using I16 = int32_t __attribute__((vector_size(64)));
using B16 = uint8_t __attribute__((vector_size(16)));

// Vectors go in and out of functions by reference only: passed by value, a 32-byte vector
// changes the calling convention with and without AVX, which GCC warns about.
template <typename V>
void Load(const void* p, V& v) {
  std::memcpy(&v, p, sizeof(v));
}
template <typename V>
void Store(const V& v, void* p) {
  std::memcpy(p, &v, sizeof(v));
}

}  // namespace
#endif  // FTTE_VECTOR_EXTENSIONS

void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
#ifdef FTTE_WITH_OPENBLAS
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m), static_cast<blasint>(n),
              static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda), b,
              static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
#else
  PortableGemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
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

void Int8GemmNT(int64_t n, int64_t rows, int64_t k, const float* x, int64_t ldx, const int8_t* q,
                int64_t ldq, const float* scale, float beta, float* y, int64_t ldy) {
  constexpr int64_t kLanes = 8;
  for (int64_t r = 0; r < rows; ++r) {
    const int8_t* qr = q + r * ldq;
    for (int64_t i = 0; i < n; ++i) {
      const float* xi = x + i * ldx;
      float lane[kLanes] = {};
      int64_t j = 0;
      for (; j + kLanes <= k; j += kLanes) {
        for (int64_t l = 0; l < kLanes; ++l) lane[l] += xi[j + l] * static_cast<float>(qr[j + l]);
      }
      for (int64_t l = 0; j < k; ++j, ++l) lane[l] += xi[j] * static_cast<float>(qr[j]);
      const float dot =
          ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
      float& out = y[i * ldy + r];
      out = (beta == 0.0f ? 0.0f : beta * out) + scale[r] * dot;
    }
  }
}

void Int8GemmNN(int64_t n, int64_t rows, int64_t cols, const float* dy, int64_t lddy,
                const int8_t* q, int64_t ldq, const float* scale, float beta, float* dx,
                int64_t lddx) {
  for (int64_t i = 0; i < n; ++i) {
    float* __restrict out = dx + i * lddx;
    if (beta == 0.0f) {
      std::fill(out, out + cols, 0.0f);
    } else if (beta != 1.0f) {
      for (int64_t j = 0; j < cols; ++j) out[j] *= beta;
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float c = dy[i * lddy + r] * scale[r];
      const int8_t* __restrict qr = q + r * ldq;
      for (int64_t j = 0; j < cols; ++j) out[j] += c * static_cast<float>(qr[j]);
    }
  }
}

namespace {

// Copies and adds of short spans (a row of a convolution window is tens of floats), in blocks
// of a fixed size that compile to whole vector loads and stores. Plain loops over such short
// spans spend more time in alias checks and scalar remainders than in copying.
constexpr int64_t kBlock = 16;

template <int64_t kN>
void CopyBlock(const float* src, float* dst) {
  std::memcpy(dst, src, sizeof(float) * kN);
}

// dst[0, n) = src[0, n). The last block of a span overlaps the previous one instead of
// falling back to a scalar loop: a copy may write the same value twice. Always inlined: it runs
// once per row of a window, and a call costs about as much as the copy.
[[gnu::always_inline]] inline void CopySpan(const float* src, float* dst, int64_t n) {
  if (n >= kBlock) {
    int64_t i = 0;
    for (; i + kBlock <= n; i += kBlock) CopyBlock<kBlock>(src + i, dst + i);
    if (i < n) CopyBlock<kBlock>(src + n - kBlock, dst + n - kBlock);
  } else if (n >= kBlock / 2) {
    CopyBlock<kBlock / 2>(src, dst);
    CopyBlock<kBlock / 2>(src + n - kBlock / 2, dst + n - kBlock / 2);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
  }
}

// Copies src[0, n) in whole blocks: it reads and writes up to n rounded up to a multiple of
// kBlock, the values past n being whatever follows src. For spans written in increasing address
// order, each overwriting what the one before wrote past its end. (Measured faster than
// CopySpan's overlapping last block.)
void CopySpanOverrunning(const float* src, float* dst, int64_t n) {
  if (n <= kBlock) {
    CopyBlock<kBlock>(src, dst);
    return;
  }
  for (int64_t i = 0; i < n; i += kBlock) CopyBlock<kBlock>(src + i, dst + i);
}

int64_t BlocksOf(int64_t n) { return (n + kBlock - 1) / kBlock; }

void ZeroSpan(float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = 0.0f;
}

// Adds go in blocks of half the width, which measured faster: a wide block straddles two cache
// lines more often, and reloading one stored a moment ago stalls more often.
constexpr int64_t kAddBlock = kBlock / 2;

// dst[0, kAddBlock) += src[j] for j < n (0 < n <= kAddBlock), + 0 for the others, through
// local copies so that the compiler need not prove that src and dst do not alias. The mask is
// applied to the bits so that it compiles to one vector AND; values past n stay as they were
// (but for -0 turning into +0).
constexpr uint32_t kKeep[2 * kAddBlock] = {~0u, ~0u, ~0u, ~0u, ~0u, ~0u, ~0u, ~0u};
void AddBlock(const float* src, float* dst, int64_t n) {
  const uint32_t* keep = kKeep + (kAddBlock - n);  // n all-ones words, then zero words
  uint32_t bits[kAddBlock];
  float a[kAddBlock], b[kAddBlock];
  std::memcpy(bits, src, sizeof(bits));
  for (int64_t j = 0; j < kAddBlock; ++j) bits[j] &= keep[j];
  std::memcpy(a, bits, sizeof(a));
  std::memcpy(b, dst, sizeof(b));
  for (int64_t j = 0; j < kAddBlock; ++j) b[j] += a[j];
  std::memcpy(dst, b, sizeof(b));
}

int64_t AddBlocksOf(int64_t n) { return (n + kAddBlock - 1) / kAddBlock; }

// Copies padded rows [pr0, pr1) of channel plane x[H, W], zero-padded by g.padding on every
// side, into p (rows W + 2 pad apart).
void PadPlaneRows(const ConvGeometry& g, const float* x, float* p, int64_t pr0, int64_t pr1) {
  const int64_t wp = g.padded_width();
  for (int64_t pr = pr0; pr < pr1; ++pr) {
    float* dst = p + (pr - pr0) * wp;
    const int64_t r = pr - g.padding;
    if (r < 0 || r >= g.height) {
      ZeroSpan(dst, wp);
      continue;
    }
    ZeroSpan(dst, g.padding);
    CopySpan(x + r * g.width, dst + g.padding, g.width);
    ZeroSpan(dst + g.padding + g.width, g.padding);
  }
}

}  // namespace

int64_t ConvGeometry::scratch_size() const {
  return (height + 2 * padding) * (padded_width() + kBlock - 1) + kBlock;
}

// Im2Col and Col2Im. They go through a zero-padded copy of one channel plane (in the scratch),
// so that every window row is a span of fixed length with no bounds to check; at stride 1 it is
// a contiguous span.

void Im2Col(const ConvGeometry& g, const float* x, float* col, float* scratch) {
  Im2ColRows(g, x, 0, g.out_height(), col, scratch);
}

void Im2ColRows(const ConvGeometry& g, const float* x, int64_t y0, int64_t y1, float* col,
                float* scratch) {
  const int64_t ow = g.out_width(), k = g.kernel, s = g.stride, rows = y1 - y0;
  const int64_t wp = g.padded_width(), span = rows * ow, col_size = g.col_rows() * span;
  // Output row y0 + y reads padded rows (y0 + y) s + ki: scratch row y s + ki.
  const int64_t pr0 = y0 * s, pr1 = (y1 - 1) * s + k;
  for (int64_t c = 0; c < g.channels; ++c) {
    PadPlaneRows(g, x + c * g.height * g.width, scratch, pr0, pr1);
    for (int64_t ki = 0; ki < k; ++ki) {
      for (int64_t kj = 0; kj < k; ++kj) {
        float* row = col + ((c * k + ki) * k + kj) * span;
        const float* src = scratch + ki * wp + kj;
        if (s != 1) {
          for (int64_t y = 0; y < rows; ++y) {
            const float* sr = src + y * s * wp;
            for (int64_t xo = 0; xo < ow; ++xo) row[y * ow + xo] = sr[xo * s];
          }
          continue;
        }
        // Rows of col are written in order, so a span may overrun into the next one, but not
        // past the end of col. (The reads stay inside the scratch.)
        const int64_t blocked = BlocksOf(ow) * kBlock;
        for (int64_t y = 0; y < rows; ++y) {
          float* out = row + y * ow;
          if (out - col + blocked <= col_size) {
            CopySpanOverrunning(src + y * wp, out, ow);
          } else {
            CopySpan(src + y * wp, out, ow);
          }
        }
      }
    }
  }
}

#ifdef FTTE_VECTOR_EXTENSIONS
namespace {

// Col2Im at stride 1 for padded rows of at most 32 values: each padded row of dx is summed in
// one or two 16-lane registers and written once, with no scratch plane. The span of window
// (ki, kj) lands kj lanes to the right: it is loaded from kj floats before its start (the tail
// of the span before it in col, which always exists for kj > 0) and the lanes outside
// [kj, kj + ow) are masked off. Rows whose loads would run past the end of col go value by
// value.
constexpr int64_t kRowLanes = 32;

void Col2ImInRegisters(const ConvGeometry& g, const float* col, float* dx) {
  const int64_t oh = g.out_height(), ow = g.out_width(), k = g.kernel, plane = oh * ow;
  const bool two = g.padded_width() > kRowLanes / 2;  // the second register is needed
  const int64_t lanes = two ? kRowLanes : kRowLanes / 2;
  const int64_t col_size = g.col_rows() * plane;
  const I16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  for (int64_t c = 0; c < g.channels; ++c) {
    const float* cc = col + c * k * k * plane;  // window (ki, kj) at (ki * k + kj) * plane
    for (int64_t iy = 0; iy < g.height; ++iy) {
      const int64_t r = iy + g.padding;  // the padded row, fed by output rows r - ki
      const int64_t ki0 = std::max<int64_t>(0, r - oh + 1), ki1 = std::min(k - 1, r);
      float sums[kRowLanes] = {};
      // The last load of the row, window (ki1, k - 1), reads furthest.
      const int64_t last = (c * k * k + ki1 * k + k - 1) * plane + (r - ki1) * ow - (k - 1);
      if (last + lanes <= col_size) {
        F16 acc0 = {}, acc1 = {};
        for (int64_t kj = 0; kj < k; ++kj) {
          const auto lo = static_cast<int32_t>(kj), hi = static_cast<int32_t>(kj + ow);
          const I16 keep0 = (lane >= lo) & (lane < hi);
          const I16 keep1 = (lane + 16 >= lo) & (lane + 16 < hi);
          for (int64_t ki = ki0; ki <= ki1; ++ki) {
            const float* src = cc + (ki * k + kj) * plane + (r - ki) * ow - kj;
            I16 bits;
            F16 v;
            Load(src, bits);
            Store(bits & keep0, &v);
            acc0 += v;
            if (two) {
              Load(src + 16, bits);
              Store(bits & keep1, &v);
              acc1 += v;
            }
          }
        }
        Store(acc0, sums);
        Store(acc1, sums + 16);
      } else {
        for (int64_t kj = 0; kj < k; ++kj) {
          for (int64_t ki = ki0; ki <= ki1; ++ki) {
            const float* src = cc + (ki * k + kj) * plane + (r - ki) * ow;
            for (int64_t xo = 0; xo < ow; ++xo) sums[xo + kj] += src[xo];
          }
        }
      }
      CopySpan(sums + g.padding, dx + (c * g.height + iy) * g.width, g.width);
    }
  }
}

}  // namespace
#endif  // FTTE_VECTOR_EXTENSIONS

void Col2Im(const ConvGeometry& g, const float* col, float* dx, float* scratch) {
#ifdef FTTE_VECTOR_EXTENSIONS
  if (g.stride == 1 && g.padded_width() <= kRowLanes) {
    Col2ImInRegisters(g, col, dx);
    return;
  }
#endif
  const int64_t oh = g.out_height(), ow = g.out_width(), k = g.kernel, s = g.stride;
  const int64_t hp = g.height + 2 * g.padding;
  // At stride 1 every span is added in whole blocks: the row pitch of the scratch plane leaves
  // room for the rounded-up tail of the last column's span.
  const int64_t blocked = AddBlocksOf(ow) * kAddBlock;
  const int64_t wd = s == 1 ? blocked + k - 1 : g.padded_width();
  const int64_t col_size = g.col_rows() * oh * ow;
  for (int64_t c = 0; c < g.channels; ++c) {
    std::memset(scratch, 0, sizeof(float) * hp * wd);
    // Loop order: consecutive spans land on different rows at the same column offset, so no
    // span reloads, shifted by a few floats, values stored a moment ago (a load straddling
    // pending stores cannot take its value from them and stalls).
    for (int64_t kj = 0; kj < k; ++kj) {
      const float* rows = col + (c * k * k + kj) * oh * ow;  // window (ki, kj) at ki * k * oh * ow
      for (int64_t y = 0; y < oh; ++y) {
        for (int64_t ki = 0; ki < k; ++ki) {
          const float* src = rows + (ki * k * oh + y) * ow;
          float* dst = scratch + (y * s + ki) * wd + kj;
          if (s != 1) {
            for (int64_t xo = 0; xo < ow; ++xo) dst[xo * s] += src[xo];
          } else if (src - col + blocked <= col_size) {
            for (int64_t i = 0; i < ow; i += kAddBlock) {
              AddBlock(src + i, dst + i, std::min(kAddBlock, ow - i));
            }
          } else {
            for (int64_t i = 0; i < ow; ++i) dst[i] += src[i];  // the end of col: read no further
          }
        }
      }
    }
    float* dxc = dx + c * g.height * g.width;
    for (int64_t r = 0; r < g.height; ++r) {
      CopySpan(scratch + (g.padding + r) * wd + g.padding, dxc + r * g.width, g.width);
    }
  }
}

void Col2ImRowsAdd(const ConvGeometry& g, const float* col, int64_t y0, int64_t y1, float* dx,
                   float* scratch) {
  const int64_t ow = g.out_width(), k = g.kernel, s = g.stride, rows = y1 - y0;
  const int64_t span = rows * ow, col_size = g.col_rows() * span;
  // The padded rows these output rows touch, [pr0, pr0 + hp), summed in the scratch first.
  const int64_t pr0 = y0 * s, hp = (rows - 1) * s + k;
  const int64_t blocked = AddBlocksOf(ow) * kAddBlock;
  const int64_t wd = s == 1 ? blocked + k - 1 : g.padded_width();
  for (int64_t c = 0; c < g.channels; ++c) {
    std::memset(scratch, 0, sizeof(float) * hp * wd);
    for (int64_t kj = 0; kj < k; ++kj) {
      for (int64_t y = 0; y < rows; ++y) {
        for (int64_t ki = 0; ki < k; ++ki) {
          const float* src = col + ((c * k + ki) * k + kj) * span + y * ow;
          float* dst = scratch + (y * s + ki) * wd + kj;
          if (s != 1) {
            for (int64_t xo = 0; xo < ow; ++xo) dst[xo * s] += src[xo];
          } else if (src - col + blocked <= col_size) {
            for (int64_t i = 0; i < ow; i += kAddBlock) {
              AddBlock(src + i, dst + i, std::min(kAddBlock, ow - i));
            }
          } else {
            for (int64_t i = 0; i < ow; ++i) dst[i] += src[i];  // the end of col: read no further
          }
        }
      }
    }
    float* dxc = dx + c * g.height * g.width;
    for (int64_t pr = pr0; pr < pr0 + hp; ++pr) {
      const int64_t r = pr - g.padding;
      if (r < 0 || r >= g.height) continue;
      const float* src = scratch + (pr - pr0) * wd + g.padding;
      float* dst = dxc + r * g.width;
      for (int64_t i = 0; i < g.width; ++i) dst[i] += src[i];
    }
  }
}

void RefIm2Col(const ConvGeometry& g, const float* x, float* col) {
  const int64_t oh = g.out_height(), ow = g.out_width(), k = g.kernel;
  for (int64_t c = 0; c < g.channels; ++c) {
    for (int64_t ki = 0; ki < k; ++ki) {
      for (int64_t kj = 0; kj < k; ++kj) {
        float* row = col + ((c * k + ki) * k + kj) * oh * ow;
        for (int64_t y = 0; y < oh; ++y) {
          for (int64_t xo = 0; xo < ow; ++xo) {
            const int64_t iy = y * g.stride - g.padding + ki, ix = xo * g.stride - g.padding + kj;
            const bool inside = iy >= 0 && iy < g.height && ix >= 0 && ix < g.width;
            row[y * ow + xo] = inside ? x[(c * g.height + iy) * g.width + ix] : 0.0f;
          }
        }
      }
    }
  }
}

void RefCol2Im(const ConvGeometry& g, const float* col, float* dx) {
  const int64_t oh = g.out_height(), ow = g.out_width(), k = g.kernel;
  for (int64_t i = 0; i < g.channels * g.height * g.width; ++i) dx[i] = 0.0f;
  for (int64_t c = 0; c < g.channels; ++c) {
    for (int64_t ki = 0; ki < k; ++ki) {
      for (int64_t kj = 0; kj < k; ++kj) {
        const float* row = col + ((c * k + ki) * k + kj) * oh * ow;
        for (int64_t y = 0; y < oh; ++y) {
          for (int64_t xo = 0; xo < ow; ++xo) {
            const int64_t iy = y * g.stride - g.padding + ki, ix = xo * g.stride - g.padding + kj;
            if (iy < 0 || iy >= g.height || ix < 0 || ix >= g.width) continue;
            dx[(c * g.height + iy) * g.width + ix] += row[y * ow + xo];
          }
        }
      }
    }
  }
}

// Max pooling. Rows of 8 (or 4) outputs and more go in vector blocks: the even / odd split of
// the input rows is one shuffle there, while the auto-vectoriser turns it into scalar code around
// short rows.

#ifdef FTTE_VECTOR_EXTENSIONS
namespace {

// even, odd = the even and odd elements of the concatenation lo:hi; lo, hi = back again.
void Unzip(const F8& lo, const F8& hi, F8& even, F8& odd) {
  even = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
  odd = __builtin_shufflevector(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15);
}
void Zip(const F8& even, const F8& odd, F8& lo, F8& hi) {
  lo = __builtin_shufflevector(even, odd, 0, 8, 1, 9, 2, 10, 3, 11);
  hi = __builtin_shufflevector(even, odd, 4, 12, 5, 13, 6, 14, 7, 15);
}
void Unzip(const F4& lo, const F4& hi, F4& even, F4& odd) {
  even = __builtin_shufflevector(lo, hi, 0, 2, 4, 6);
  odd = __builtin_shufflevector(lo, hi, 1, 3, 5, 7);
}
void Zip(const F4& even, const F4& odd, F4& lo, F4& hi) {
  lo = __builtin_shufflevector(even, odd, 0, 4, 1, 5);
  hi = __builtin_shufflevector(even, odd, 2, 6, 3, 7);
}

// kW outputs (F, I, B: float, int32 and byte vectors of kW lanes).
template <typename F, typename I, typename B>
void MaxPoolBlock(const float* r0, const float* r1, float* y, uint8_t* arg) {
  constexpr int kW = sizeof(F) / sizeof(float);
  F lo, hi, a, b, c, d;
  Load(r0, lo);
  Load(r0 + kW, hi);
  Unzip(lo, hi, a, b);
  Load(r1, lo);
  Load(r1 + kW, hi);
  Unzip(lo, hi, c, d);
  const F m1 = b > a ? b : a;
  const F m2 = c > m1 ? c : m1;
  const F m = d > m2 ? d : m2;
  Store(m, y);
  if (arg == nullptr) return;
  // Comparisons give -1 (true) or 0 per lane; the place is the first of a, b, c equal to m.
  const I not_a = ~((a == m) | (m != m)) & 1, not_b = (b != m) & 1, not_c = (c != m) & 1;
  const I place = not_a * (1 + not_b * (1 + not_c));
  Store(__builtin_convertvector(place, B), arg);
}

template <typename F, typename I, typename B>
void MaxPoolBackwardBlock(const float* dy, const uint8_t* arg, float* d0, float* d1) {
  constexpr int kW = sizeof(F) / sizeof(float);
  I g;  // the bits of dy, masked below
  B bytes;
  Load(dy, g);
  Load(arg, bytes);
  const I place = __builtin_convertvector(bytes, I);
  F a, b, c, d, lo, hi;
  Store(g & (place == 0), &a);
  Store(g & (place == 1), &b);
  Store(g & (place == 2), &c);
  Store(g & (place == 3), &d);
  Zip(a, b, lo, hi);
  Store(lo, d0);
  Store(hi, d0 + kW);
  Zip(c, d, lo, hi);
  Store(lo, d1);
  Store(hi, d1 + kW);
}

// Runs block(j) over a row of n outputs in blocks of kW, the last block overlapping the one
// before (it computes a few outputs again, writing the same values) instead of leaving a
// remainder. Needs n >= kW.
template <int kW, typename Block>
void OverlappingBlocks(int64_t n, Block block) {
  for (int64_t j = 0;; j += kW) {
    j = std::min<int64_t>(j, n - kW);
    block(j);
    if (j + kW == n) return;
  }
}

}  // namespace
#endif  // FTTE_VECTOR_EXTENSIONS

void MaxPool2x2Row(const float* r0, const float* r1, int64_t ow, float* y, uint8_t* arg) {
#ifdef FTTE_VECTOR_EXTENSIONS
  auto at = [arg](int64_t j) { return arg == nullptr ? nullptr : arg + j; };
  if (ow >= 8) {
    OverlappingBlocks<8>(
        ow, [&](int64_t j) { MaxPoolBlock<F8, I8, B8>(r0 + 2 * j, r1 + 2 * j, y + j, at(j)); });
    return;
  }
  if (ow >= 4) {
    OverlappingBlocks<4>(
        ow, [&](int64_t j) { MaxPoolBlock<F4, I4, B4>(r0 + 2 * j, r1 + 2 * j, y + j, at(j)); });
    return;
  }
#endif
  RefMaxPool2x2Row(r0, r1, ow, y, arg);
}

void MaxPool2x2BackwardRow(const float* dy, const uint8_t* arg, int64_t ow, float* d0, float* d1) {
#ifdef FTTE_VECTOR_EXTENSIONS
  if (ow >= 8) {
    OverlappingBlocks<8>(ow, [&](int64_t j) {
      MaxPoolBackwardBlock<F8, I8, B8>(dy + j, arg + j, d0 + 2 * j, d1 + 2 * j);
    });
    return;
  }
  if (ow >= 4) {
    OverlappingBlocks<4>(ow, [&](int64_t j) {
      MaxPoolBackwardBlock<F4, I4, B4>(dy + j, arg + j, d0 + 2 * j, d1 + 2 * j);
    });
    return;
  }
#endif
  RefMaxPool2x2BackwardRow(dy, arg, ow, d0, d1);
}

void RefMaxPool2x2Row(const float* r0, const float* r1, int64_t ow, float* y, uint8_t* arg) {
  for (int64_t j = 0; j < ow; ++j) {
    const float v[4] = {r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]};
    int best = 0;
    for (int k = 1; k < 4; ++k) {
      if (v[k] > v[best]) best = k;
    }
    y[j] = v[best];
    if (arg != nullptr) arg[j] = static_cast<uint8_t>(best);
  }
}

void RefMaxPool2x2BackwardRow(const float* dy, const uint8_t* arg, int64_t ow, float* d0,
                              float* d1) {
  for (int64_t j = 0; j < ow; ++j) {
    float* place[4] = {d0 + 2 * j, d0 + 2 * j + 1, d1 + 2 * j, d1 + 2 * j + 1};
    for (int k = 0; k < 4; ++k) *place[k] = arg[j] == k ? dy[j] : 0.0f;
  }
}

// ReLU, by groups of kReluGroup values (the mask layout is in kernels.h).

namespace {

// Byte and bit of value i (< kReluGroup) of a group in the ReLU mask.
int64_t MaskByte(int64_t i) { return (i % 16) / 2; }
int MaskBit(int64_t i) { return static_cast<int>(i / 16 + 4 * (i % 2)); }

// A whole or partial group of n values, one at a time.
void ReluGroupPlain(const float* x, int64_t n, float* y, uint8_t* mask) {
  uint8_t bytes[kReluGroup / 8] = {};
  for (int64_t i = 0; i < n; ++i) {
    const bool on = x[i] > 0.0f;
    y[i] = on ? x[i] : 0.0f;
    bytes[MaskByte(i)] |= static_cast<uint8_t>(on << MaskBit(i));
  }
  if (mask != nullptr) std::memcpy(mask, bytes, sizeof(bytes));
}

void ReluBackwardGroupPlain(const float* dy, const uint8_t* mask, int64_t n, float* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = (mask[MaskByte(i)] >> MaskBit(i)) & 1 ? dy[i] : 0.0f;
}

#ifdef FTTE_VECTOR_EXTENSIONS
// A whole group: four vectors of 16 values; lane l of vector k is bit k of a nibble, nibbles
// 2j and 2j + 1 share byte j.
void ReluGroup(const float* x, float* y, uint8_t* mask) {
  F16 v[4];
  for (int k = 0; k < 4; ++k) Load(x + 16 * k, v[k]);
  const F16 zero = {};
  for (int k = 0; k < 4; ++k) Store(v[k] > 0.0f ? v[k] : zero, y + 16 * k);
  if (mask == nullptr) return;
  const I16 nibble =
      ((v[0] > 0.0f) & 1) | ((v[1] > 0.0f) & 2) | ((v[2] > 0.0f) & 4) | ((v[3] > 0.0f) & 8);
  const B16 b = __builtin_convertvector(nibble, B16);
  const B8 even = __builtin_shufflevector(b, b, 0, 2, 4, 6, 8, 10, 12, 14);
  const B8 odd = __builtin_shufflevector(b, b, 1, 3, 5, 7, 9, 11, 13, 15);
  Store(even | (odd << 4), mask);
}

void ReluBackwardGroup(const float* dy, const uint8_t* mask, float* dx) {
  B8 packed;
  Load(mask, packed);
  const B8 lo = packed & 15, hi = packed >> 4;
  const B16 nibbles =
      __builtin_shufflevector(lo, hi, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
  const I16 nibble = __builtin_convertvector(nibbles, I16);
  for (int k = 0; k < 4; ++k) {
    I16 g;  // the bits of dy, masked
    Load(dy + 16 * k, g);
    Store(g & -((nibble >> k) & 1), dx + 16 * k);
  }
}
#endif  // FTTE_VECTOR_EXTENSIONS

}  // namespace

void ReluForward(const float* x, int64_t n, float* y, uint8_t* mask) {
  for (int64_t i = 0; i < n; i += kReluGroup) {
    uint8_t* m = mask == nullptr ? nullptr : mask + i / 8;
#ifdef FTTE_VECTOR_EXTENSIONS
    if (n - i >= kReluGroup) {
      ReluGroup(x + i, y + i, m);
      continue;
    }
#endif
    ReluGroupPlain(x + i, std::min(kReluGroup, n - i), y + i, m);
  }
}

void ReluBackward(const float* dy, const uint8_t* mask, int64_t n, float* dx) {
  for (int64_t i = 0; i < n; i += kReluGroup) {
#ifdef FTTE_VECTOR_EXTENSIONS
    if (n - i >= kReluGroup) {
      ReluBackwardGroup(dy + i, mask + i / 8, dx + i);
      continue;
    }
#endif
    ReluBackwardGroupPlain(dy + i, mask + i / 8, std::min(kReluGroup, n - i), dx + i);
  }
}

namespace {

// exp(t) = 2^m * exp(r), m = round(t / ln 2), r = t - m ln 2 in [-ln2/2, ln2/2] (ln 2 split in
// two so that r is exact), exp(r) by Cephes' expf polynomial; t below ln(FLT_MIN) gives 0. The
// same operations lane-wise (F = float or a float vector, I = the matching int32 type), so the
// vector and scalar paths agree.
constexpr float kExpLog2e = 1.44269504088896341f, kExpLn2Hi = 0.693359375f,
                kExpLn2Lo = -2.12194440e-4f, kExpMin = -87.33654f;

template <typename F>
F ExpPolynomial(const F& r) {
  F p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * r * r + r + 1.0f;
}

float ExpOne(float t) {
  if (t < kExpMin) return 0.0f;
  const float m = std::floor(t * kExpLog2e + 0.5f);
  const float r = t - m * kExpLn2Hi - m * kExpLn2Lo;
  return ExpPolynomial(r) * std::bit_cast<float>((static_cast<int32_t>(m) + 127) << 23);
}

}  // namespace

void ExpShifted(const float* x, int64_t n, float shift, float* y) {
  int64_t i = 0;
#ifdef FTTE_VECTOR_EXTENSIONS
  for (; i + 8 <= n; i += 8) {
    F8 t;
    Load(x + i, t);
    t -= shift;
    const F8 tc = t < kExpMin ? F8{} + kExpMin : t;
    const F8 f = tc * kExpLog2e + 0.5f;
    I8 m = __builtin_convertvector(f, I8);    // truncates toward zero
    m += __builtin_convertvector(m, F8) > f;  // floor: -1 where truncation rounded up
    const F8 mf = __builtin_convertvector(m, F8);
    const F8 r = tc - mf * kExpLn2Hi - mf * kExpLn2Lo;
    const F8 e = ExpPolynomial(r) * reinterpret_cast<F8>((m + 127) << 23);
    const F8 out = t < kExpMin ? F8{} : e;
    Store(out, y + i);
  }
#endif
  for (; i < n; ++i) y[i] = ExpOne(x[i] - shift);
}

}  // namespace ftte
