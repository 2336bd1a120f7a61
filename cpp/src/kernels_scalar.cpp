// Portable forward kernel (plain C++, any architecture, any bit width): byte lookup tables.  The
// fallback where no SIMD kernel applies (non-x86, CPUs without AVX2, 3-bit codes).
#include <cstring>

#include "gemv_args.hpp"

namespace lattq {
namespace detail {
namespace {

// Pointer to the 16-byte chunk c of row `row`; ragged / missing data is copied into `tmp` zero-padded.
inline const uint8_t* chunk_ptr(const GemvArgs& a, int64_t row, int64_t c, uint8_t* tmp) {
  if (a.layout == LATTQ_LAYOUT_TILED) return a.codes + ((row / 16) * a.chunks + c) * 256 + (row % 16) * 16;
  if (row < a.n && (c + 1) * 16 <= a.row_bytes) return a.codes + row * a.row_bytes + c * 16;
  std::memset(tmp, 0, 16);
  if (row < a.n) std::memcpy(tmp, a.codes + row * a.row_bytes + c * 16, size_t(a.row_bytes - c * 16));
  return tmp;
}

// Byte lookup tables: a code byte is a linear function of its 8 bits (field bit i has weight 2^i),
// also when fields straddle bytes (bits = 3).  Per 16-byte chunk and token, 16 tables of 256 floats
// (16 KiB, on the stack) are built with one add per entry; then each code byte costs one lookup
// and one add.  Partial sums go to t chunk by chunk.
void gemv_byte_lut(const GemvArgs& a, int64_t tile_begin, int64_t tile_end) {
  const int bits = a.bits;
  const int64_t F = (bits == 3) ? 0 : 8 / bits;
  const int64_t row_begin = tile_begin * 16, row_end = tile_end * 16 < a.n ? tile_end * 16 : a.n;
  float tbl[16][256];
  uint8_t tmp[16];
  for (int64_t t = 0; t < a.m; ++t) {
    const float* v = a.vp + t * a.vp_stride;
    float* out = a.t + t * a.t_stride;
    for (int64_t row = row_begin; row < row_end; ++row) out[row] = 0.0f;
    for (int64_t c = 0; c < a.chunks; ++c) {
      for (int p = 0; p < 16; ++p) {
        const int64_t byte = c * 16 + p;
        float w[8];
        for (int b = 0; b < 8; ++b) {
          const int64_t bit = byte * 8 + b;  // bit of the row bitstream
          const int64_t j = bit / bits;      // weight index
          float val;
          if (F)
            val = byte < a.row_bytes ? v[(c * F + b / bits) * 16 + p] : 0.0f;
          else
            val = j < a.k ? v[j] : 0.0f;
          w[b] = static_cast<float>(1 << (bit % bits)) * val;
        }
        float* T = tbl[p];
        T[0] = 0.0f;
        for (int x = 1; x < 256; ++x) {
          int lb = 0;
          while (!((x >> lb) & 1)) ++lb;
          T[x] = T[x & (x - 1)] + w[lb];
        }
      }
      for (int64_t row = row_begin; row < row_end; ++row) {
        const uint8_t* q = chunk_ptr(a, row, c, tmp);
        float s0 = 0.0f, s1 = 0.0f;
        for (int p = 0; p < 16; p += 2) {
          s0 += tbl[p][q[p]];
          s1 += tbl[p + 1][q[p + 1]];
        }
        out[row] += s0 + s1;
      }
    }
  }
}

}  // namespace

GemvFn gemv_scalar_get(int32_t bits) { return (bits >= 1 && bits <= 4) ? &gemv_byte_lut : nullptr; }

}  // namespace detail
}  // namespace lattq
