// Forward-kernel interface shared by the per-ISA translation units.  Deliberately free of C++ inline
// functions (only the C header), so that ISA-specific TUs emit no COMDAT code the linker could share.
#ifndef LATTQ_SRC_GEMV_ARGS_HPP
#define LATTQ_SRC_GEMV_ARGS_HPP

#include <cstdint>

#include "lattq/lattq.h"

namespace lattq {
namespace detail {

// ---- forward kernels -------------------------------------------------------------------------
// t[tok*t_stride + row] = sum_j z[row, j] * v[tok][j] for rows of tiles [tile_begin, tile_end),
// where for bits in {1,2,4} vp holds v permuted per 16-byte chunk:
//   vp[tok*vp_stride + (c*F + f)*16 + p] = v[(c*16 + p)*F + f]   (F = 8/bits, zero past K)
// and for bits == 3 vp holds v in natural order (zero padded).
struct GemvArgs {
  const uint8_t* codes;
  int32_t layout;   // LATTQ_LAYOUT_TILED or LATTQ_LAYOUT_CANONICAL
  int32_t bits;
  int64_t n;
  int64_t k;
  int64_t row_bytes;  // R
  int64_t chunks;     // C = ceil(R/16)
  const float* vp;
  int64_t vp_stride;
  int64_t m;
  float* t;
  int64_t t_stride;
};
typedef void (*GemvFn)(const GemvArgs& a, int64_t tile_begin, int64_t tile_end);

// Nibble lookup-table kernel (AVX-512, bits in {1, 2, 4}, m <= kLutMaxM; handles any m correctly).  vp then holds, per token,
// tables tbl[((c*16 + p)*2 + h)*16 + v] = sum over the fields i of nibble h of byte p of chunk c:
// ((v >> (bits*i)) & mask) * v_w, w = ((c*16 + p)*8 + 4h)/bits + i  (zero past K);  vp_stride = C*512.
// t receives the full sums as in GemvFn.
// Measured on Zen 4 (4096x4096, one thread): tables 435 us/token; direct kernel 832 us at m = 2,
// 1.26 ms at m = 4 (FMA-bound): the tables pay only for a single token.
constexpr int64_t kLutMaxM = 1;
GemvFn gemv_avx512_lut_get(int32_t bits);
// Builds the tables of one token for chunks [c_begin, c_end) from v (natural order, length k).
// Lives with the LUT kernel (AVX-512 translation unit); only called when that kernel is selected.
void build_lut_tables(const float* v, int64_t k, int32_t bits, int64_t c_begin, int64_t c_end, float* tbl);

// Per-ISA kernel getters; nullptr if the kernel family is not compiled into this build or does not
// handle `bits`.
GemvFn gemv_scalar_get(int32_t bits);
GemvFn gemv_avx2_get(int32_t bits);
GemvFn gemv_avx512_get(int32_t bits);

// In-place orthonormal block FWHT of one vector (len a multiple of block, block a power of two):
// AVX-512 version (nullptr when not compiled in); the portable one is fwht_vec (internal.hpp).
typedef void (*FwhtFn)(float* x, int64_t len, int64_t block);
FwhtFn fwht_avx512_get();

}  // namespace detail
}  // namespace lattq

#endif
