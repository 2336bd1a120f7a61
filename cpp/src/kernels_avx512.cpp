// AVX-512 (F/BW/VL) forward kernels.  Compiled with -mavx512f -mavx512bw -mavx512vl -mfma on x86-64
// GCC/Clang (see cpp/CMakeLists.txt); elsewhere this file compiles to stubs.  Selected at run time by
// cpuid.
//
// Two kernels:
//  * LUT (m <= kLutMaxM, i.e. batch 1; bits in {1,2,4}): lanes = the 16 rows of a TILED tile.  A 16-row x 16-byte
//    chunk is transposed into four registers D_j (lane L = bytes 4j..4j+3 of row L); each nibble of
//    them indexes (vpermps ignores index bits above 3, so only shifts are needed) a 16-float table
//    per (byte position, nibble) that holds the partial dot product of that nibble's fields with the
//    folded activations v.  Per 16 rows x 4 weights (k=2): 2 shifts, 2 vpermps, 2 adds per token.
//    Chunks are processed in K-blocks whose tables stay in L1 while all tiles of the thread pass.
//    Measured on Zen 4: ~43 G weights/s per core, bound by the shift + vpermps issue rate (0.87 ns per
//    nibble in a micro-benchmark).  Tried and measured slower: sharing table loads between two tiles
//    (1.6x slower), moving 1-3 of the 8 nibbles per dword to the FMA units (convert + FMA with the
//    broadcast v value: +1%, +12%, +23% time).
//  * direct (gemv_simd.inl): field extract + convert + FMA, for larger m (FMA-bound, ~55 G weight x
//    tokens/s per core, the fp32 peak of a dense GEMM).
#include <cstdint>
#include <cstring>

#include "gemv_args.hpp"

#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 reports false positives inside avx512fintrin.h (_mm512_undefined_* operands).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if defined(__GNUC__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
namespace {
constexpr int W = 16;
typedef __m512 vf;
typedef __m512i vi;
inline vi load_bytes_epi32(const uint8_t* p) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline vi set1_epi32(int v) { return _mm512_set1_epi32(v); }
inline vi srli_epi32(vi x, int s) { return _mm512_srli_epi32(x, unsigned(s)); }
inline vi and_si(vi a, vi b) { return _mm512_and_si512(a, b); }
inline vf cvt_ps(vi x) { return _mm512_cvtepi32_ps(x); }
inline vf zero_ps() { return _mm512_setzero_ps(); }
inline vf loadu_ps(const float* p) { return _mm512_loadu_ps(p); }
inline vf fmadd_ps(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
inline vf add_ps(vf a, vf b) { return _mm512_add_ps(a, b); }
inline float hsum_ps(vf v) { return _mm512_reduce_add_ps(v); }
}  // namespace
#define LATTQ_SIMD_MB 4
#include "gemv_simd.inl"

namespace {

// Loads the 16x16-byte chunk and returns D_0..D_3 (lane L = dword j of row L).
inline void load_transpose(const uint8_t* chunk, vi d[4]) {
  const vi s0 = _mm512_loadu_si512(chunk), s1 = _mm512_loadu_si512(chunk + 64);
  const vi s2 = _mm512_loadu_si512(chunk + 128), s3 = _mm512_loadu_si512(chunk + 192);
  // lanes 0..7: dword j0 of rows 0..7 (of the pair), lanes 8..15: dword j0+1
  const vi i01 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
  const vi i23 = _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
  const vi p01 = _mm512_permutex2var_epi32(s0, i01, s1);
  const vi q01 = _mm512_permutex2var_epi32(s0, i23, s1);
  const vi p23 = _mm512_permutex2var_epi32(s2, i01, s3);
  const vi q23 = _mm512_permutex2var_epi32(s2, i23, s3);
  d[0] = _mm512_shuffle_i64x2(p01, p23, 0x44);
  d[1] = _mm512_shuffle_i64x2(p01, p23, 0xEE);
  d[2] = _mm512_shuffle_i64x2(q01, q23, 0x44);
  d[3] = _mm512_shuffle_i64x2(q01, q23, 0xEE);
}

// Pointer to the 256-byte chunk c of `tile` (TILED), or a zero-padded copy gathered from the canonical rows.
inline const uint8_t* lut_chunk(const lattq::detail::GemvArgs& a, int64_t tile, int64_t c, uint8_t* buf) {
  if (a.layout == LATTQ_LAYOUT_TILED) return a.codes + (tile * a.chunks + c) * 256;
  std::memset(buf, 0, 256);
  const int64_t len = (c + 1) * 16 <= a.row_bytes ? 16 : a.row_bytes - c * 16;
  for (int r = 0; r < 16; ++r) {
    const int64_t row = tile * 16 + r;
    if (row < a.n) std::memcpy(buf + r * 16, a.codes + row * a.row_bytes + c * 16, size_t(len));
  }
  return buf;
}

// NT consecutive tiles (sharing every table load), one token, chunks [c0, c1).
template <int NT>
void lut_tiles(const lattq::detail::GemvArgs& a, int64_t tile0, int64_t tok, int64_t c0, int64_t c1, bool first) {
  alignas(64) uint8_t buf[NT][256];
  constexpr int NACC = 4;  // independent add chains per tile (vaddps latency)
  vf acc[NT][NACC];
  for (int i = 0; i < NT; ++i)
    for (int u = 0; u < NACC; ++u) acc[i][u] = _mm512_setzero_ps();
  const float* tb = a.vp + tok * a.vp_stride;
  for (int64_t c = c0; c < c1; ++c) {
    vi d[NT][4];
    for (int i = 0; i < NT; ++i) {
      const uint8_t* chunk = lut_chunk(a, tile0 + i, c, buf[i]);
      if (a.layout == LATTQ_LAYOUT_TILED && (tile0 + i + 1) * 16 < a.n) {
        // same chunk of the next tile (processed one tile-block later): DRAM latency cover across
        // the jump between tiles, which the hardware stream prefetcher does not anticipate
        const char* nxt = reinterpret_cast<const char*>(chunk + a.chunks * 256);
        for (int l = 0; l < 4; ++l) _mm_prefetch(nxt + 64 * l, _MM_HINT_T0);
      }
      load_transpose(chunk, d[i]);
    }
    const float* tc = tb + c * 512;
    for (int j = 0; j < 4; ++j) {
      for (int s = 0; s < 8; ++s) {  // nibble s of the dword: byte p = 4j + s/2, half h = s%2
        const vf table = _mm512_load_ps(tc + (j * 8 + s) * 16);  // ((4j + s/2)*2 + s%2)*16
        for (int i = 0; i < NT; ++i) {
          const vi idx = s == 0 ? d[i][j] : _mm512_srli_epi32(d[i][j], unsigned(4 * s));
          acc[i][s % NACC] = _mm512_add_ps(acc[i][s % NACC], _mm512_permutexvar_ps(idx, table));
        }
      }
    }
  }
  for (int i = 0; i < NT; ++i) {
    float* out = a.t + tok * a.t_stride + (tile0 + i) * 16;
    vf s = _mm512_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]), _mm512_add_ps(acc[i][2], acc[i][3]));
    if (!first) s = _mm512_add_ps(s, _mm512_load_ps(out));
    _mm512_store_ps(out, s);
  }
}

void lut_run(const lattq::detail::GemvArgs& a, int64_t tile_begin, int64_t tile_end) {
  // K-block: the tables of one token (2 KiB per chunk) within ~24 KiB of L1 while the tiles pass
  const int64_t kbc = 12;
  for (int64_t c0 = 0; c0 < a.chunks; c0 += kbc) {
    const int64_t c1 = c0 + kbc < a.chunks ? c0 + kbc : a.chunks;
    for (int64_t tok = 0; tok < a.m; ++tok) {
      // one tile at a time: sharing table loads between two tiles (lut_tiles<2>) measured 1.6x slower
      for (int64_t tile = tile_begin; tile < tile_end; ++tile) lut_tiles<1>(a, tile, tok, c0, c1, c0 == 0);
    }
  }
}

}  // namespace

namespace lattq {
namespace detail {
void build_lut_tables(const float* v, int64_t k, int32_t bits, int64_t c_begin, int64_t c_end, float* tbl) {
  const int per = 4 / bits;
  const unsigned mask = (1u << bits) - 1u;
  alignas(64) float zf[4][16];
  for (int i = 0; i < 4; ++i)
    for (int q = 0; q < 16; ++q) zf[i][q] = i < per ? static_cast<float>((unsigned(q) >> (bits * i)) & mask) : 0.0f;
  const __m512 z0 = _mm512_load_ps(zf[0]), z1 = _mm512_load_ps(zf[1]), z2 = _mm512_load_ps(zf[2]),
               z3 = _mm512_load_ps(zf[3]);
  const int64_t full = k * bits / 8;  // bytes whose fields all lie below k
  for (int64_t pos = c_begin * 16; pos < c_end * 16; ++pos) {
    for (int h = 0; h < 2; ++h) {
      const int64_t w0 = (pos * 8 + 4 * h) / bits;
      float* T = tbl + (pos * 2 + h) * 16;
      if (pos >= full) {
        _mm512_store_ps(T, _mm512_setzero_ps());
        continue;
      }
      __m512 t = _mm512_mul_ps(z0, _mm512_set1_ps(v[w0]));
      if (per > 1) t = _mm512_fmadd_ps(z1, _mm512_set1_ps(v[w0 + 1]), t);
      if (per > 2) {
        t = _mm512_fmadd_ps(z2, _mm512_set1_ps(v[w0 + 2]), t);
        t = _mm512_fmadd_ps(z3, _mm512_set1_ps(v[w0 + 3]), t);
      }
      _mm512_store_ps(T, t);
    }
  }
}
// Stages h = 1, 2, 4, 8 inside one register (partner lane i ^ h: x*sign + partner, exact), stages
// h >= 16 between registers; scale 1/sqrt(block) at the end.  Same operation order per element pair as
// the portable version, so results agree bit for bit up to the final scaling.
static void fwht_avx512(float* x, int64_t len, int64_t block) {
  if (block < 16) {
    // tiny blocks: scalar butterflies
    const float scale = 1.0f / __builtin_sqrtf(static_cast<float>(block));
    for (int64_t base = 0; base < len; base += block) {
      float* v = x + base;
      for (int64_t h = 1; h < block; h *= 2)
        for (int64_t i = 0; i < block; i += 2 * h)
          for (int64_t j = i; j < i + h; ++j) {
            const float p = v[j], q = v[j + h];
            v[j] = p + q;
            v[j + h] = p - q;
          }
      for (int64_t j = 0; j < block; ++j) v[j] *= scale;
    }
    return;
  }
  __m512i perm[4];
  __m512 sign[4];
  for (int s = 0; s < 4; ++s) {
    alignas(64) int32_t pi[16];
    alignas(64) float sg[16];
    for (int i = 0; i < 16; ++i) {
      pi[i] = i ^ (1 << s);
      sg[i] = (i & (1 << s)) ? -1.0f : 1.0f;
    }
    perm[s] = _mm512_load_si512(pi);
    sign[s] = _mm512_load_ps(sg);
  }
  const __m512 scale = _mm512_set1_ps(1.0f / __builtin_sqrtf(static_cast<float>(block)));
  for (int64_t base = 0; base < len; base += block) {
    float* v = x + base;
    for (int64_t i = 0; i < block; i += 16) {
      __m512 r = _mm512_loadu_ps(v + i);
      for (int s = 0; s < 4; ++s) r = _mm512_fmadd_ps(r, sign[s], _mm512_permutexvar_ps(perm[s], r));
      _mm512_storeu_ps(v + i, r);
    }
    for (int64_t h = 16; h < block; h *= 2)
      for (int64_t i = 0; i < block; i += 2 * h)
        for (int64_t j = i; j < i + h; j += 16) {
          const __m512 p = _mm512_loadu_ps(v + j), q = _mm512_loadu_ps(v + j + h);
          _mm512_storeu_ps(v + j, _mm512_add_ps(p, q));
          _mm512_storeu_ps(v + j + h, _mm512_sub_ps(p, q));
        }
    for (int64_t i = 0; i < block; i += 16) _mm512_storeu_ps(v + i, _mm512_mul_ps(_mm512_loadu_ps(v + i), scale));
  }
}
FwhtFn fwht_avx512_get() { return &fwht_avx512; }
GemvFn gemv_avx512_get(int32_t bits) { return simd_get(bits); }
GemvFn gemv_avx512_lut_get(int32_t bits) { return (bits == 1 || bits == 2 || bits == 4) ? &lut_run : nullptr; }
}  // namespace detail
}  // namespace lattq
#else
namespace lattq {
namespace detail {
GemvFn gemv_avx512_get(int32_t) { return nullptr; }
GemvFn gemv_avx512_lut_get(int32_t) { return nullptr; }
FwhtFn fwht_avx512_get() { return nullptr; }
void build_lut_tables(const float*, int64_t, int32_t, int64_t, int64_t, float*) {}  // never called: no LUT kernel
}  // namespace detail
}  // namespace lattq
#endif
