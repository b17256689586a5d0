// PortableGemm: the GEMM of builds without OpenBLAS (FTTE_WITH_OPENBLAS=OFF, e.g. an app that
// does not want a 30 MB BLAS in its package). The classic blocked scheme of GotoBLAS and BLIS,
// kept small: op(B) is packed in panels of kNr columns (kKc rows at a time), op(A) in panels of
// kMr rows, so the inner loop reads both contiguously whatever the transposes, and a kMr x kNr
// tile of C lives in vector registers for a whole panel. The vectors are GCC/Clang vector
// extensions, which compile to NEON on arm64 and to SSE/AVX on x86-64; nothing is
// architecture-specific.
//
// Each C element sums its k terms in order within a block of kKc, then adds the block to C: the
// result depends on the shapes only, never on threads or on where the operands live.
#include <algorithm>
#include <cstring>
#include <vector>

#include "ftte/core/kernels.h"

namespace ftte {
namespace {

constexpr int64_t kMr = 6;    // rows of a register tile
constexpr int64_t kNr = 16;   // columns of a register tile (two vectors of 8)
constexpr int64_t kKc = 256;  // depth of a packed block
constexpr int64_t kMc = 72;   // rows of A packed at a time (kMc x kKc: 72 KiB, in L2)
constexpr int64_t kNc = 256;  // columns of B packed at a time (kKc x kNc: 256 KiB)

using V8 = float __attribute__((vector_size(32)));

// Packs rows [p0, p0 + kb) x columns [j0, j0 + nb) of op(B) into panels of kNr columns:
// panel q holds kb rows of kNr values, zero beyond nb.
void PackB(bool trans_b, const float* b, int64_t ldb, int64_t p0, int64_t kb, int64_t j0,
           int64_t nb, float* out) {
  for (int64_t jp = 0; jp < nb; jp += kNr) {
    const int64_t w = std::min(kNr, nb - jp);
    for (int64_t p = 0; p < kb; ++p) {
      float* dst = out + jp * kb + p * kNr;
      if (!trans_b) {
        std::memcpy(dst, b + (p0 + p) * ldb + j0 + jp, static_cast<size_t>(w) * sizeof(float));
      } else {
        for (int64_t j = 0; j < w; ++j) dst[j] = b[(j0 + jp + j) * ldb + p0 + p];
      }
      std::fill(dst + w, dst + kNr, 0.0f);
    }
  }
}

// Packs rows [i0, i0 + mb) x columns [p0, p0 + kb) of op(A) into panels of kMr rows, stored
// depth-major (the kMr values of one p together), zero beyond mb.
void PackA(bool trans_a, const float* a, int64_t lda, int64_t i0, int64_t mb, int64_t p0,
           int64_t kb, float* out) {
  for (int64_t ip = 0; ip < mb; ip += kMr) {
    const int64_t h = std::min(kMr, mb - ip);
    float* panel = out + ip * kb;
    for (int64_t p = 0; p < kb; ++p) {
      float* dst = panel + p * kMr;
      for (int64_t r = 0; r < h; ++r) {
        const int64_t i = i0 + ip + r, col = p0 + p;
        dst[r] = trans_a ? a[col * lda + i] : a[i * lda + col];
      }
      for (int64_t r = h; r < kMr; ++r) dst[r] = 0.0f;
    }
  }
}

// C tile (h x w of a kMr x kNr tile) += alpha * Apanel * Bpanel over depth kb.
void MicroKernel(int64_t kb, const float* ap, const float* bp, float alpha, float* c, int64_t ldc,
                 int64_t h, int64_t w) {
  V8 acc[kMr][2] = {};
  for (int64_t p = 0; p < kb; ++p) {
    V8 b0, b1;
    std::memcpy(&b0, bp + p * kNr, sizeof(V8));
    std::memcpy(&b1, bp + p * kNr + 8, sizeof(V8));
    for (int64_t r = 0; r < kMr; ++r) {
      const float av = ap[p * kMr + r];
      acc[r][0] += av * b0;
      acc[r][1] += av * b1;
    }
  }
  for (int64_t r = 0; r < h; ++r) {
    float tile[kNr];
    std::memcpy(tile, &acc[r][0], sizeof(V8));
    std::memcpy(tile + 8, &acc[r][1], sizeof(V8));
    float* row = c + r * ldc;
    for (int64_t j = 0; j < w; ++j) row[j] += alpha * tile[j];
  }
}

}  // namespace

void PortableGemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc) {
  if (m == 0 || n == 0) return;
  for (int64_t i = 0; i < m; ++i) {  // BLAS semantics: beta == 0 never reads C
    float* row = c + i * ldc;
    if (beta == 0.0f) {
      std::fill(row, row + n, 0.0f);
    } else if (beta != 1.0f) {
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
    }
  }
  if (k == 0 || alpha == 0.0f) return;
  // Per-thread packing buffers (at most 320 KiB), reused across calls.
  thread_local std::vector<float> packed_a, packed_b;
  packed_a.resize(static_cast<size_t>(kMc * kKc));
  packed_b.resize(static_cast<size_t>(kKc * kNc));
  for (int64_t j0 = 0; j0 < n; j0 += kNc) {
    const int64_t nb = std::min(kNc, n - j0);
    for (int64_t p0 = 0; p0 < k; p0 += kKc) {
      const int64_t kb = std::min(kKc, k - p0);
      PackB(trans_b, b, ldb, p0, kb, j0, nb, packed_b.data());
      for (int64_t i0 = 0; i0 < m; i0 += kMc) {
        const int64_t mb = std::min(kMc, m - i0);
        PackA(trans_a, a, lda, i0, mb, p0, kb, packed_a.data());
        for (int64_t jp = 0; jp < nb; jp += kNr) {
          for (int64_t ip = 0; ip < mb; ip += kMr) {
            MicroKernel(kb, packed_a.data() + ip * kb, packed_b.data() + jp * kb, alpha,
                        c + (i0 + ip) * ldc + j0 + jp, ldc, std::min(kMr, mb - ip),
                        std::min(kNr, nb - jp));
          }
        }
      }
    }
  }
}

}  // namespace ftte
