// SIMD "direct" GEMV kernel: per weight one field extraction, one int->float conversion and one FMA
// per token; used for m > kLutMaxM on AVX-512 and for all m on AVX2.  Included by one translation
// unit per instruction set, which first defines the vector helpers (vf, vi, W, load_bytes_epi32,
// ...) and LATTQ_SIMD_MB.  Everything here has internal linkage so that code built for one ISA can
// never be picked by the linker for another.
//
// Data: see GemvArgs in gemv_args.hpp.  Lanes hold W byte positions of a 16-byte row chunk; field f
// of byte p multiplies vp[(c*F + f)*16 + p].  Four rows (one 64-byte line of a TILED chunk) and up to
// LATTQ_SIMD_MB tokens are accumulated in registers; lanes are summed once per (row, token).
namespace {

constexpr int RB = 4;

template <int BITS, bool TILED, int MB>
void gemv_tile(const lattq::detail::GemvArgs& a, int64_t tile, int64_t tok0) {
  constexpr int F = 8 / BITS;
  constexpr int NA = MB == 1 ? 2 : 1;  // two accumulators per row when there is one token (FMA latency)
  const int64_t C = a.chunks, R = a.row_bytes;
  alignas(64) uint8_t tmp[RB][16];
  const float* vbase = a.vp + tok0 * a.vp_stride;
  const vi mask = set1_epi32((1 << BITS) - 1);
  const bool has_next_tile = (tile + 1) * 16 < a.n;
  for (int rg = 0; rg < 16; rg += RB) {
    const int64_t row0 = tile * 16 + rg;
    if (row0 >= a.n) break;
    vf acc[RB][MB][NA];
    for (int r = 0; r < RB; ++r)
      for (int t = 0; t < MB; ++t)
        for (int u = 0; u < NA; ++u) acc[r][t][u] = zero_ps();
    const uint8_t* tbase = a.codes + tile * C * 256 + rg * 16;
    for (int64_t c = 0; c < C; ++c) {
      const uint8_t* p[RB];
      if (TILED) {
        for (int r = 0; r < RB; ++r) p[r] = tbase + c * 256 + r * 16;
        if (c + 4 < C) __builtin_prefetch(tbase + (c + 4) * 256);
        if (has_next_tile) __builtin_prefetch(tbase + (C + c) * 256);  // same line of the next tile
      } else {
        const bool full = (c + 1) * 16 <= R;
        for (int r = 0; r < RB; ++r) {
          const int64_t row = row0 + r;
          if (row < a.n && full) {
            p[r] = a.codes + row * R + c * 16;
          } else {
            std::memset(tmp[r], 0, 16);
            if (row < a.n) std::memcpy(tmp[r], a.codes + row * R + c * 16, size_t(R - c * 16));
            p[r] = tmp[r];
          }
        }
      }
      for (int q = 0; q < 16 / W; ++q) {
        vi x[RB];
        for (int r = 0; r < RB; ++r) x[r] = load_bytes_epi32(p[r] + q * W);
        for (int f = 0; f < F; ++f) {
          vf fl[RB];
          for (int r = 0; r < RB; ++r) fl[r] = cvt_ps(and_si(srli_epi32(x[r], f * BITS), mask));
          for (int t = 0; t < MB; ++t) {
            const vf vv = loadu_ps(vbase + t * a.vp_stride + (c * F + f) * 16 + q * W);
            for (int r = 0; r < RB; ++r) acc[r][t][f % NA] = fmadd_ps(fl[r], vv, acc[r][t][f % NA]);
          }
        }
      }
    }
    for (int r = 0; r < RB; ++r) {
      const int64_t row = row0 + r;
      if (row >= a.n) break;
      for (int t = 0; t < MB; ++t) {
        vf s = acc[r][t][0];
        for (int u = 1; u < NA; ++u) s = add_ps(s, acc[r][t][u]);
        a.t[(tok0 + t) * a.t_stride + row] = hsum_ps(s);
      }
    }
  }
}

template <int BITS, bool TILED, int MB>
void gemv_tiles_mb(const lattq::detail::GemvArgs& a, int64_t tile, int64_t tok0, int64_t mb) {
  if constexpr (MB > 1) {
    if (mb < MB) return gemv_tiles_mb<BITS, TILED, MB - 1>(a, tile, tok0, mb);
  }
  gemv_tile<BITS, TILED, MB>(a, tile, tok0);
}

template <int BITS>
void gemv_run(const lattq::detail::GemvArgs& a, int64_t tile_begin, int64_t tile_end) {
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    for (int64_t tok0 = 0; tok0 < a.m; tok0 += LATTQ_SIMD_MB) {
      const int64_t mb = a.m - tok0 < LATTQ_SIMD_MB ? a.m - tok0 : LATTQ_SIMD_MB;
      if (a.layout == LATTQ_LAYOUT_TILED)
        gemv_tiles_mb<BITS, true, LATTQ_SIMD_MB>(a, tile, tok0, mb);
      else
        gemv_tiles_mb<BITS, false, LATTQ_SIMD_MB>(a, tile, tok0, mb);
    }
  }
}

lattq::detail::GemvFn simd_get(int32_t bits) {
  switch (bits) {
    case 1: return &gemv_run<1>;
    case 2: return &gemv_run<2>;
    case 4: return &gemv_run<4>;
    default: return nullptr;  // 3-bit fields straddle bytes: portable kernel
  }
}

}  // namespace
