// Variant LATTQ_VARIANT_FUSED_GEMV, a single-launch k=2, d=4 decode-path kernel (docs/kernels.md; validated
// on the H100 in sessions 2-3, slower than IMMA and GEMV, so never picked by LATTQ_VARIANT_AUTO).
//
// Same arithmetic as fast_imma.cu (masked code words are u8 A fragments of mma.m16n8k32.u8.s8; the
// activations v = A^T H_in(SU x) are 16-bit (f16/bf16) or 24-bit (f32) fixed point per (token, 1024-wide
// K slice), split into 2 / 3 exact int8 digits), but one launch does everything:
//
//   grid (token columns of 8, 128-row groups, K splits); on sm_90 the K splits of one (column, row group)
//   form a thread-block cluster (1, 1, splits <= 8).
//   1. each thread issues the 16-byte code loads of its first K slice (weights do not depend on the
//      previous kernel), then griddepcontrol.wait (programmatic dependent launch on sm_90);
//   2. per chunk of up to SB slices of the CTA's K range, a per-CTA prologue: one warp per (token, slice)
//      loads x, scales by SU, runs the block Hadamard (had_in <= 1024) as a warp-level FWHT (5 in-register
//      stages + 5 shuffle stages, no barriers), folds v = A^T u and c = b.u, takes the slice maximum and
//      writes the digits straight into shared memory in mma-fragment order (8-byte stores);
//   3. the mma main loop over the chunk (codes: register ring one slice ahead, 16-byte L1::no_allocate
//      loads; digits: LDS.128), int32 -> fp32 flush per slice;
//   4. split-K reduction through distributed shared memory inside the cluster (each rank reduces the
//      tokens t with t % splits == rank, in a fixed rank order: deterministic), then the fused epilogue
//      (+c, block Hadamard over the 128 rows when had_out <= 128, SV, bias, cast).
//   No global workspace, no counters, no zeroing: graph-replay safe by construction.  sm_80 (no clusters):
//   splits = 1, the CTA walks the whole K range chunk by chunk.
//   had_in > 1024 / had_out > 128: the reference FWHT stages run before / after (as in fast_imma.cu).
//
// The file also holds the EXPERIMENTAL tiled GEMM for m >= 64 (LATTQ_VARIANT_TILED_GEMM, further below); it
// shares the warp-level prologue (prologue_pair) with the fused kernel.
#include <cooperative_groups.h>

#include <cstdio>
#include <cstdlib>

#include "device_utils.cuh"
#include "kernels.cuh"

namespace lattq_cuda {

namespace {

namespace cg = cooperative_groups;
using namespace dev;

constexpr int SK = 1024;        // K slice (one activation scale per (token, slice))
constexpr int WARPS = 8;        // warps per CTA, one 16-row tile each
constexpr int TN = WARPS * 16;  // rows per CTA
constexpr int MAX_SPLITS = 8;   // portable cluster size

template <int PARTS> struct QF;
template <> struct QF<2> { static constexpr float QMAX = 32639.f; };
template <> struct QF<3> { static constexpr float QMAX = 8355711.f; };

// digit bytes of one K slice for 8 tokens: 4 quads x 8 steps x 32 lanes x PARTS x 8 bytes
template <int PARTS> constexpr int slice_bytes() { return 4 * 8 * 32 * PARTS * 8; }
// slices of digits resident in shared memory at once (48 KB: two CTAs per SM)
template <int PARTS> constexpr int chunk_slices() { return PARTS == 2 ? 3 : 2; }

struct FusedParams {
  const uint8_t* codes;
  const float* A;
  const float* b;
  const float* su;
  const float* sv;
  const float* bias;
  const void* x;   // activations (dtype) or, if u_pre, the fp32 u = H_in(SU x)
  int u_pre;
  int64_t n, k, m;
  int64_t C;       // 16-byte chunks per row
  int64_t T;       // 16-row tiles
  int nslices, nq; // K slices, quads (256 weights)
  int had_in, had_out;
  int splits, sps; // K splits (= cluster size), slices per split
  float* tout;     // [m][n] fp32 t when had_out is not fused, else nullptr
  void* y;
  // tiled GEMM only (prologue output in the workspace)
  uint8_t* vq;     // digits [mpad / 8][nq4][QB]
  float* scale;    // [mpad][nslices]
  float* cpart;    // [mpad][nslices]
  int nq4;         // quads rounded up to whole slices
  float* tinv;     // WGMMA_F16 only: [mpad] 1 / (the token's power-of-two scale of the fp16 image)
  // WGMMA_F16 stream-K (sk_ctas = G > 0): partial sums [G][RT ND / 4][256] float4 and one flag per stream-K CTA
  // (the prologue kernel clears the flags); sk_dp data-parallel CTAs (whole tiles 0 .. sk_dp - 1) come before them
  float* skpart;
  unsigned* skflag;
  int sk_ctas;
  int sk_dp;
  unsigned sleep_ns;  // WGMMA_F16's producer: suspend-time hint of its "empty" waits (0: retry without one)
  int preq;           // WGMMA_F16's frame: code-ring quads issued before the PDL wait (the rest right after it)
};





// Per-CTA prologue for one (token, slice) pair, executed by one warp.  Lane l owns the 32 contiguous
// elements 32 l .. 32 l + 31 of the slice (= groups 8 l .. 8 l + 7).  Writes the digits of this token into
// `dig` (the slice's digit block, fragment order) and returns (lane 0) the scale and the c part.
// Where the digit words go.  FragStore: the mma.m16n8k32 B-fragment order of the IMMA path (8-byte unit
// (((ql * 8 + st) * 32 + token * 4 + tig) * PARTS + part) of the slice block `dig`).  Other stores (the
// wgmma B image below) receive the same words: w0 / w1 hold the digits of K positions tig * 4 + 0..3 and
// 16 + tig * 4 + 0..3 of mma step st of quad ql (one byte per position, position order).
template <int PARTS> struct FragStore {
  uint8_t* dig;
  int tk;
  __device__ __forceinline__ void operator()(int ql, int st, int tig, int pt, uint32_t w0, uint32_t w1) const {
    *reinterpret_cast<uint2*>(dig + ((((ql * 8 + st) * 32 + tk * 4 + tig) * PARTS + pt) * 8)) = make_uint2(w0, w1);
  }
};

// The fold of one warp's slice: v = A^T u and c = b . u per group of 4 (u[] becomes v), the warp-wide slice maximum of
// |v| and the c part (the same value on every lane).  Shared by prologue_fold and wh_fold_fast.
__device__ __forceinline__ void fold_slice(float (&u)[32], const float* Ar, const float* br, float& mx_out,
                                           float& c_out) {
  float mx = 0.f, cp = 0.f;
#pragma unroll
  for (int g = 0; g < 8; ++g) {
    float v[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float acc = 0.f;
#pragma unroll
      for (int j = 0; j < 4; ++j) acc = fmaf(Ar[j * 4 + i], u[4 * g + j], acc);
      v[i] = acc;
      mx = fmaxf(mx, fabsf(acc));
      cp = fmaf(br[i], u[4 * g + i], cp);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) u[4 * g + i] = v[i];
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    cp += __shfl_xor_sync(0xffffffffu, cp, o);
  }
  mx_out = mx;
  c_out = cp;
}

// u = x su for a lane's 32 K positions: 32 16-bit x values in 4 uint4 words, su in 8 float4
template <typename T>
__device__ __forceinline__ void scale_x32(const uint4 (&xr)[4], const float4 (&s4)[8], float (&u)[32]) {
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const float4 v4 = (j & 1) == 0 ? unpack4<T>(xr[j >> 1].x, xr[j >> 1].y) : unpack4<T>(xr[j >> 1].z, xr[j >> 1].w);
    u[4 * j] = v4.x * s4[j].x;
    u[4 * j + 1] = v4.y * s4[j].y;
    u[4 * j + 2] = v4.z * s4[j].z;
    u[4 * j + 3] = v4.w * s4[j].w;
  }
}

// The input transform of one (token, slice) pair, one warp: u = H_in(SU x) (or the precomputed fp32 u), then the
// fold v = A^T u per group of 4.  Lane l ends with v of the slice's K positions 32 l .. 32 l + 31 in u[] and
// returns the warp-wide slice maximum of |v| and the c part b . u (the same value on every lane).  Padding
// tokens (tok >= m) and K positions past k give zeros.
// xs: the token's x row staged in shared memory (16-bit T, k % 8 == 0; wh_prep_kernel), else nullptr (x from global).
template <typename T>
__device__ __forceinline__ void prologue_fold(const FusedParams& p, int64_t tok, int sl, float (&u)[32],
                                              const float* Ar, const float* br, float& mx_out, float& c_out,
                                              const T* xs = nullptr) {
  const int lane = threadIdx.x & 31;
  const int64_t k0 = (int64_t)sl * SK + lane * 32;
  // 16-byte loads where the alignment allows them (x rows of 16-bit T when k % 8 == 0, su when 16-byte aligned):
  // a lane's 32 elements are contiguous, so every load instruction of the warp touches 32 sectors, and 4-byte su
  // loads made the prologue kernels L1-bound (session 10)
  const bool x16 = sizeof(T) == 2 && !p.u_pre && (p.k & 7) == 0;
  const bool su16 = (reinterpret_cast<uintptr_t>(p.su) & 15) == 0;
  if (x16 && su16) {
    // the common case without branches between the loads: all 4 x and 8 su loads of the lane are issued before the
    // first use (in the generic loop below each j's loads sit in their own branch, and the warp waited for them one
    // after the other: the WGMMA_F16 prologue stalled on L1TEX a third of its cycles, session 11).  k % 8 == 0:
    // kk < k means all 8 (x) or 4 (su) elements are in range.
    const bool tok_ok = tok < p.m;
    uint4 xr[4];
    float4 s4[8];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t kk = k0 + 8 * j;
      xr[j] = make_uint4(0u, 0u, 0u, 0u);
      if (tok_ok && kk < p.k)
        xr[j] = xs != nullptr ? *reinterpret_cast<const uint4*>(xs + kk)
                              : __ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + tok * p.k + kk));
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t kk = k0 + 4 * j;
      s4[j] = make_float4(0.f, 0.f, 0.f, 0.f);
      if (tok_ok && kk < p.k) s4[j] = __ldg(reinterpret_cast<const float4*>(p.su + kk));
    }
    scale_x32<T>(xr, s4, u);
  } else {
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int64_t kk = k0 + 4 * j;
    float4 v4 = make_float4(0.f, 0.f, 0.f, 0.f);
    if (kk < p.k && tok < p.m) {  // padding tokens (GEMM prologue): zero digits, scale 1, c 0
      if (p.u_pre) {
        v4 = load4<float>(p.x, tok * p.k + kk);
      } else {
        if (x16) {  // k % 8 == 0: kk + 8 <= k for even j; the odd j took its half from the even j's load
          if ((j & 1) == 0) {
            const uint4 r = xs != nullptr ? *reinterpret_cast<const uint4*>(xs + kk)
                                          : __ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + tok * p.k + kk));
            v4 = unpack4<T>(r.x, r.y);
            const float4 w4 = unpack4<T>(r.z, r.w);
            u[4 * j + 4] = w4.x;
            u[4 * j + 5] = w4.y;
            u[4 * j + 6] = w4.z;
            u[4 * j + 7] = w4.w;
          } else {
            v4 = make_float4(u[4 * j], u[4 * j + 1], u[4 * j + 2], u[4 * j + 3]);
          }
        } else {
          v4 = load4<T>(p.x, tok * p.k + kk);
        }
        const float4 s4 = su16 ? __ldg(reinterpret_cast<const float4*>(p.su + kk))
                               : make_float4(__ldg(p.su + kk), __ldg(p.su + kk + 1), __ldg(p.su + kk + 2),
                                             __ldg(p.su + kk + 3));
        v4.x *= s4.x;
        v4.y *= s4.y;
        v4.z *= s4.z;
        v4.w *= s4.w;
      }
    }
    u[4 * j] = v4.x;
    u[4 * j + 1] = v4.y;
    u[4 * j + 2] = v4.z;
    u[4 * j + 3] = v4.w;
  }
  }
  if (!p.u_pre && p.had_in > 1) {
    // in-register stages h = 1..16 (partner index i ^ h inside the lane), cross-lane stages h = 32..512
    warp_block_hadamard(u, p.had_in, lane);
    const float sc = rsqrtf((float)p.had_in);
#pragma unroll
    for (int i = 0; i < 32; ++i) u[i] *= sc;
  }
  fold_slice(u, Ar, br, mx_out, c_out);
}

template <typename T, int PARTS, class Store>
__device__ __forceinline__ void prologue_words(const FusedParams& p, int64_t tok, int sl, const Store& store,
                                               float* scale_out, float* c_out, const float* Ar,
                                               const float* br) {
  const int lane = threadIdx.x & 31;
  float u[32], mx, cp;
  prologue_fold<T>(p, tok, sl, u, Ar, br, mx, cp);
  const float inv = mx > 0.f ? QF<PARTS>::QMAX / mx : 0.f;
  if (lane == 0) {
    *scale_out = mx > 0.f ? mx / QF<PARTS>::QMAX : 1.f;
    *c_out = cp;
  }
  // Fragment order (as fast_imma.cu): group t of the slice -> quad ql = t >> 6, chunk tig = (t >> 4) & 3,
  // gi = t & 15, step st = (gi >> 3) * 4 + s, byte (gi >> 2 & 1) * 4 + (gi & 3) of the 8-byte unit
  // (((ql * 8 + st) * 32 + token * 4 + tig) * PARTS + part).  Lane l holds t = 8 l .. 8 l + 7: one quad,
  // one chunk, one half (pp = l & 1) of the 16 groups, i.e. both 4-byte words of the unit.
  const int ql = lane >> 3, tig = (lane >> 1) & 3, pp = lane & 1;
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    uint32_t w[PARTS][2];
#pragma unroll
    for (int pt = 0; pt < PARTS; ++pt) w[pt][0] = w[pt][1] = 0u;
#pragma unroll
    for (int g = 0; g < 8; ++g) {
      // clamp: v*inv can round one unit above QMAX, which would overflow the top int8 digit
      int q = max(-(int)QF<PARTS>::QMAX, min((int)QF<PARTS>::QMAX, __float2int_rn(u[4 * g + s] * inv)));
#pragma unroll
      for (int pt = 0; pt < PARTS; ++pt) {
        const int dgt = pt == PARTS - 1 ? q : (((q + 128) & 255) - 128);
        q = (q - dgt) >> 8;
        w[pt][g >> 2] |= ((uint32_t)(uint8_t)(int8_t)dgt) << (8 * (g & 3));
      }
    }
    const int st = pp * 4 + s;
#pragma unroll
    for (int pt = 0; pt < PARTS; ++pt) store(ql, st, tig, pt, w[pt][0], w[pt][1]);
  }
}

template <typename T, int PARTS>
__device__ __forceinline__ void prologue_pair(const FusedParams& p, int64_t tok, int sl, int tk, uint8_t* dig,
                                              float* scale_out, float* c_out, const float* Ar,
                                              const float* br) {
  prologue_words<T, PARTS>(p, tok, sl, FragStore<PARTS>{dig, tk}, scale_out, c_out, Ar, br);
}

template <typename T, int PARTS>
__global__ void __launch_bounds__(256, PARTS == 2 ? 2 : 1) fused_gemv_kernel(FusedParams p) {
  constexpr int SB = chunk_slices<PARTS>();
  constexpr int QB = slice_bytes<PARTS>() / 4;  // digit bytes per quad
  extern __shared__ __align__(16) uint8_t dsm[];  // [SB slices][4 quads][QB]
  __shared__ float part_tile[8][TN + 1];  // this CTA's partial t (+ its c part), read by the cluster
  __shared__ float fin[8][TN + 1];        // reduced tile of the tokens this CTA finishes
  __shared__ float ssc[8][SB];
  __shared__ float scp[8][SB];
  __shared__ float csum[8];
  __shared__ float sAb[20];
  __shared__ float s_svb[2][TN];

  // warp index through a shuffle: the compiler then knows it is warp-uniform, so the prologue's shuffles
  // (inside warp-uniform branches) need no WARPSYNC.COLLECTIVE wrapping
  const int warp = __shfl_sync(0xffffffffu, (int)(threadIdx.x >> 5), 0), lane = threadIdx.x & 31;
  const int g = lane >> 2, tig = lane & 3;
  const int col = blockIdx.x, rg = blockIdx.y, split = blockIdx.z;
  const int64_t tileI = (int64_t)rg * WARPS + warp;
  const bool tile_ok = tileI < p.T;
  const int sl0 = split * p.sps;
  const int sl1 = min(p.nslices, sl0 + p.sps);
  const int q1 = min(p.nq, sl1 * 4);
  const int64_t n0 = (int64_t)rg * TN;
  const int64_t tok0 = (int64_t)col * 8;
  const int ntok = (int)(p.m - tok0 < 8 ? p.m - tok0 : 8);
  const int nrow = (int)(p.n - n0 < TN ? p.n - n0 : TN);

  // 1. codes of the first slice in flight before anything else (they do not depend on earlier kernels)
  const uint8_t* cbase = p.codes + (tileI * p.C) * 256 + g * 16;
  auto load_quad = [&](int q, uint4& lo, uint4& hi) {
    const int64_t chunk = (int64_t)q * 4 + tig;
    if (tile_ok && q < q1 && chunk < p.C) {
      const uint8_t* ptr = cbase + chunk * 256;
      lo = ldg_stream(ptr);
      hi = ldg_stream(ptr + 128);
    } else {
      lo = make_uint4(0, 0, 0, 0);
      hi = lo;
    }
  };
  uint4 cb[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i) load_quad(sl0 * 4 + i, cb[i][0], cb[i][1]);
  // SV and bias of the CTA's rows into shared memory now (latency hidden behind the prologue), not registers
  if (threadIdx.x < TN) {
    const int rr = threadIdx.x;
    s_svb[0][rr] = rr < nrow ? __ldg(p.sv + n0 + rr) : 0.f;
    s_svb[1][rr] = (p.bias != nullptr && rr < nrow) ? __ldg(p.bias + n0 + rr) : 0.f;
  }
  // A and b in shared memory (broadcast reads in the prologue; keeps 20 registers free for the code ring)
  if (threadIdx.x < 16) sAb[threadIdx.x] = __ldg(p.A + threadIdx.x);
  else if (threadIdx.x < 20) sAb[threadIdx.x] = __ldg(p.b + threadIdx.x - 16);

  // padding tokens keep zero digits for the whole kernel (their scale is 0 as well)
  {
    uint4* z = reinterpret_cast<uint4*>(dsm);
    for (int i = threadIdx.x; i < SB * slice_bytes<PARTS>() / 16; i += 256) z[i] = make_uint4(0, 0, 0, 0);
  }
  if (threadIdx.x < 8) csum[threadIdx.x] = 0.f;
  pdl_wait();  // x (and u / the previous layer's output) is ready from here on
  pdl_launch_dependents();

  float accf[4] = {0.f, 0.f, 0.f, 0.f};
  for (int cs = sl0; cs < sl1; cs += SB) {
    const int ce = min(sl1, cs + SB);
    const int nsl = ce - cs;
    __syncthreads();  // previous chunk's digits fully consumed (and the zero fill done)
    // 2. prologue of this chunk: one warp per real (token, slice) pair, spread over all warps (m = 1 with 3
    //    slices uses 3 warps); padding tokens get scale 0 and c part 0 (their digits stay zero)
    {
      // pair index pr = sj * ntok + tk, pr = warp, warp + 8, ... (no integer division by the runtime ntok)
      int tk = warp, sj = 0;
      while (tk >= ntok) {
        tk -= ntok;
        ++sj;
      }
      while (sj < nsl) {
        prologue_pair<T, PARTS>(p, tok0 + tk, cs + sj, tk, dsm + (size_t)sj * slice_bytes<PARTS>(), &ssc[tk][sj],
                                &scp[tk][sj], sAb, sAb + 16);
        tk += WARPS;
        while (tk >= ntok) {
          tk -= ntok;
          ++sj;
        }
      }
    }
    for (int i = threadIdx.x; i < 8 * nsl; i += 256) {
      const int tk = i % 8, sj = i / 8;
      if (tk >= ntok) {
        ssc[tk][sj] = 0.f;
        scp[tk][sj] = 0.f;
      }
    }
    __syncthreads();
    if (threadIdx.x < 8) {  // fixed order: deterministic
      float c = csum[threadIdx.x];
      for (int j = 0; j < nsl; ++j) c += scp[threadIdx.x][j];
      csum[threadIdx.x] = c;
    }
    // 3. main loop over the chunk's slices
    for (int sl = cs; sl < ce; ++sl) {
      int acc[4][PARTS][4];
#pragma unroll
      for (int s = 0; s < 4; ++s)
#pragma unroll
        for (int pt = 0; pt < PARTS; ++pt)
#pragma unroll
          for (int c = 0; c < 4; ++c) acc[s][pt][c] = 0;
      const uint8_t* sdig = dsm + (size_t)(sl - cs) * slice_bytes<PARTS>();
#pragma unroll
      for (int qi = 0; qi < 4; ++qi) {
        const int q = sl * 4 + qi;
        const uint4 lo = cb[qi][0], hi = cb[qi][1];
        load_quad(q + 4, cb[qi][0], cb[qi][1]);  // next slice (may belong to the next chunk)
        if (q < q1) {
          const uint32_t wl[4] = {lo.x, lo.y, lo.z, lo.w};
          const uint32_t wh[4] = {hi.x, hi.y, hi.z, hi.w};
#pragma unroll
          for (int pp = 0; pp < 2; ++pp) {
#pragma unroll
            for (int s = 0; s < 4; ++s) {
              const uint32_t M = 0x03030303u << (2 * s);
              const uint32_t a0 = wl[2 * pp] & M, a1 = wh[2 * pp] & M;
              const uint32_t a2 = wl[2 * pp + 1] & M, a3 = wh[2 * pp + 1] & M;
              const int st = pp * 4 + s;
              const uint8_t* bp = sdig + (size_t)qi * QB + (st * 32 + lane) * PARTS * 8;
              if (PARTS == 2) {
                const uint4 bv = *reinterpret_cast<const uint4*>(bp);
                mma_u8s8(acc[s][0], a0, a1, a2, a3, bv.x, bv.y);
                mma_u8s8(acc[s][1], a0, a1, a2, a3, bv.z, bv.w);
              } else {
#pragma unroll
                for (int pt = 0; pt < PARTS; ++pt) {
                  const uint2 bv = *reinterpret_cast<const uint2*>(bp + pt * 8);
                  mma_u8s8(acc[s][pt], a0, a1, a2, a3, bv.x, bv.y);
                }
              }
            }
          }
        }
      }
      // flush: sum_s 4^-s sum_part 256^part acc, times the (token, slice) scale (0 for padding tokens)
      const float sc0 = ssc[2 * tig][sl - cs];
      const float sc1 = ssc[2 * tig + 1][sl - cs];
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        float v = 0.f;
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          float vs = 0.f;
#pragma unroll
          for (int pt = PARTS - 1; pt >= 0; --pt) vs = vs * 256.f + (float)acc[s][pt][c];
          v = fmaf(vs, 1.f / (float)(1 << (2 * s)), v);
        }
        accf[c] = fmaf(v, (c & 1) ? sc1 : sc0, accf[c]);
      }
    }
  }
  __syncthreads();  // csum complete

  // 4. partial tile (+ this split's c part, so that the cluster sum carries the whole c)
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    const int tk = 2 * tig + (c & 1);
    part_tile[tk][warp * 16 + g + ((c & 2) ? 8 : 0)] = accf[c] + csum[tk];
  }
  int rank = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (p.splits > 1) {
    cg::cluster_group cl = cg::this_cluster();
    rank = (int)cl.block_rank();
    cl.sync();  // every partial tile of the cluster is written
    for (int i = threadIdx.x; i < 8 * TN; i += 256) {
      const int tk = i / TN, rr = i % TN;
      if (tk % p.splits != rank || tk >= ntok) continue;
      float sum = 0.f;
      for (int r = 0; r < p.splits; ++r) sum += cl.map_shared_rank(&part_tile[0][0], r)[tk * (TN + 1) + rr];
      fin[tk][rr] = rr < nrow ? sum : 0.f;
    }
    cl.sync();  // no CTA leaves while its shared memory may still be read
  } else
#endif
  {
    __syncthreads();
    for (int i = threadIdx.x; i < 8 * TN; i += 256) {
      const int tk = i / TN, rr = i % TN;
      fin[tk][rr] = rr < nrow ? part_tile[tk][rr] : 0.f;
    }
  }
  __syncthreads();
  const int nsp = p.splits > 1 ? p.splits : 1;
  if (p.tout != nullptr) {  // had_out not fused: hand t to the separate epilogue stages
    for (int i = threadIdx.x; i < 8 * TN; i += 256) {
      const int tk = i / TN, rr = i % TN;
      if (tk % nsp == rank && tk < ntok && rr < nrow) p.tout[(tok0 + tk) * p.n + n0 + rr] = fin[tk][rr];
    }
    return;
  }
  for (int h = 1; h < p.had_out; h <<= 1) {
    for (int i = threadIdx.x; i < 8 * (TN / 2); i += 256) {
      const int tk = i / (TN / 2), j = i % (TN / 2);
      if (tk % nsp != rank || tk >= ntok) continue;
      const int lo = (j / h) * 2 * h + (j % h);
      const float a = fin[tk][lo], b = fin[tk][lo + h];
      fin[tk][lo] = a + b;
      fin[tk][lo + h] = a - b;
    }
    __syncthreads();
  }
  const float hs = rsqrtf((float)p.had_out);
  T* y = static_cast<T*>(p.y);
  for (int i = threadIdx.x; i < 8 * TN; i += 256) {
    const int tk = i / TN, rr = i % TN;
    if (tk % nsp == rank && tk < ntok && rr < nrow)
      y[(tok0 + tk) * p.n + n0 + rr] = from_f<T>(fmaf(fin[tk][rr] * hs, s_svb[0][rr], s_svb[1][rr]));
  }
}


// =============================================================================================
// Tiled GEMM for m >= 64 (LATTQ_VARIANT_TILED_GEMM; validated on the H100, not yet picked by AUTO).
//
// prologue kernel: grid (K slices, mpad / 8), 8 warps, warp w = token 8 * blockIdx.y + w: the same
//   prologue_pair as the fused kernel, digits written to the workspace in fragment order
//   ([m-tile][quad][step][lane][digit][8 B], the IMMA layout), per-(token, slice) scale and c part;
//   padding tokens get zero digits.
// main kernel: CTA = 128 rows x 64 tokens, 8 warps as 4 (rows: 32 = 2 tiles of 16) x 2 (tokens: 32 =
//   4 tiles of 8).  B digits of one quad (64 tokens: 8 x QB bytes) per stage, 3-stage cp.async ring;
//   codes straight from global memory into registers (TILED layout: lane (g, tig) loads rows g and g + 8
//   of chunk 4q + tig of each of its 2 row tiles), one quad ahead.  Each code word is decoded once per
//   warp with SHF + LOP ((w >> 2s) & 0x03030303 = four u8 z values, no 4^s factor, so one int32
//   accumulator set per digit) and used by 4 token tiles x 2 digits = 8 IMMA; each LDS.128 of B digits
//   feeds 2 row tiles x 2 digits = 4 IMMA.  Per-slice int32 -> fp32 flush with the (token, slice) scale;
//   epilogue in shared memory (reusing the ring): + c, block Hadamard over the 128 rows (had_out <= 128),
//   SV, bias, cast.
// =============================================================================================
constexpr int GM_TOK = 64;      // tokens per CTA
// cp.async ring stages: 3 x 32 KB (f16/bf16), 2 x 48 KB (f32): 96 KB either way, under the 99 KB opt-in
// limit of sm_86 / sm_89
template <int PARTS> constexpr int gm_stages() { return PARTS == 2 ? 3 : 2; }

// wgmma B image of the digits (LATTQ_VARIANT_WGMMA): per (token tile of ntok tokens, quad) 8 steps of
// 2 ntok columns x 32 bytes, column c = 2 token + digit, each step in the no-swizzle K-major core-matrix order
// [c / 8][K half][c % 8][16 bytes] (K-direction core matrices 128 bytes apart, 8-column groups 256 apart).
struct WgStore {
  uint8_t* blk;  // block of (token tile, first quad of the slice)
  int ncol, tk;
  __device__ __forceinline__ void operator()(int ql, int st, int tig, int pt, uint32_t w0, uint32_t w1) const {
    const int c = 2 * tk + pt;
    uint8_t* b = blk + (size_t)(ql * 8 + st) * ncol * 32 + (c >> 3) * 256 + (c & 7) * 16 + tig * 4;
    *reinterpret_cast<uint32_t*>(b) = w0;
    *reinterpret_cast<uint32_t*>(b + 128) = w1;
  }
};

// WG_NTOK = 0: digits in the IMMA fragment order (TILED_GEMM); > 0: the wgmma B image for WG_NTOK-token tiles.
template <typename T, int PARTS, int WG_NTOK>
__global__ void __launch_bounds__(256) gemm_prologue_kernel(FusedParams p) {
  const int warp = __shfl_sync(0xffffffffu, (int)(threadIdx.x >> 5), 0);
  __shared__ float sAb[20];
  if (threadIdx.x < 16) sAb[threadIdx.x] = __ldg(p.A + threadIdx.x);
  else if (threadIdx.x < 20) sAb[threadIdx.x] = __ldg(p.b + threadIdx.x - 16);
  pdl_wait();
  pdl_launch_dependents();
  __syncthreads();
  const int sl = blockIdx.x;
  const int64_t mt = blockIdx.y;
  const int64_t tok = mt * 8 + warp;
  float sc = 0.f, cp = 0.f;
  if constexpr (WG_NTOK == 0) {
    constexpr int QB = slice_bytes<PARTS>() / 4;
    uint8_t* dig = p.vq + ((mt * p.nq4) + (int64_t)sl * 4) * QB;
    prologue_pair<T, PARTS>(p, tok, sl, warp, dig, &sc, &cp, sAb, sAb + 16);
  } else {
    constexpr int NCOL = 2 * WG_NTOK;
    const int64_t wt = tok / WG_NTOK;
    uint8_t* blk = p.vq + ((wt * p.nq4) + (int64_t)sl * 4) * (int64_t)(8 * NCOL * 32);
    prologue_words<T, PARTS>(p, tok, sl, WgStore{blk, NCOL, (int)(tok % WG_NTOK)}, &sc, &cp, sAb, sAb + 16);
  }
  if ((threadIdx.x & 31) == 0) {
    p.scale[tok * p.nslices + sl] = tok < p.m ? sc : 0.f;
    p.cpart[tok * p.nslices + sl] = tok < p.m ? cp : 0.f;
  }
}


// Epilogue of the tiled kernels (256 threads, threadIdx.x < 256) over the CTA's fp32 tile t[token][row] in
// shared memory (c already added): the fp32 t to p.tout when had_out is not fused, else the block Hadamard
// over the 128 rows (had_out <= 128), SV, bias and the cast to y.  sv_r / bias_r belong to row
// threadIdx.x % TN; `sync` is the barrier of the 256 threads.
// ROWS (128 or 256) rows per tile: a 256-row tile holds two independent 128-row Hadamard blocks (had_out <= 128).
template <typename T, class Sync, int ROWS = TN>
__device__ __forceinline__ void tile_epilogue(const FusedParams& p, float (*tile)[ROWS + 1], int ntok, int nrow,
                                              int64_t tok0, int64_t n0, float sv_r, float bias_r, const Sync& sync) {
  static_assert(ROWS == TN || ROWS == 2 * TN, "128 or 256 rows");
  if (p.tout != nullptr) {
    for (int i = threadIdx.x; i < ntok * ROWS; i += 256) {
      const int tk = i / ROWS, rr = i % ROWS;
      if (rr < nrow) p.tout[(tok0 + tk) * p.n + n0 + rr] = tile[tk][rr];
    }
    return;
  }
  for (int h = 1; h < p.had_out; h <<= 1) {
    for (int i = threadIdx.x; i < ntok * (ROWS / 2); i += 256) {
      const int tk = i / (ROWS / 2), j = i % (ROWS / 2);
      const int lo = (j / h) * 2 * h + (j % h);
      const float a = tile[tk][lo], b = tile[tk][lo + h];
      tile[tk][lo] = a + b;
      tile[tk][lo + h] = a - b;
    }
    sync();
  }
  const float hs = rsqrtf((float)p.had_out);
  T* y = static_cast<T*>(p.y);
  for (int i = threadIdx.x; i < ntok * ROWS; i += 256) {
    const int tk = i / ROWS, rr = i % ROWS;  // rr == threadIdx.x % ROWS
    if (rr < nrow) y[(tok0 + tk) * p.n + n0 + rr] = from_f<T>(fmaf(tile[tk][rr] * hs, sv_r, bias_r));
  }
}

template <typename T, int PARTS>
__global__ void __launch_bounds__(256, 1) gemm_main_kernel(FusedParams p) {
  constexpr int QB = slice_bytes<PARTS>() / 4;  // digit bytes per (quad, 8-token tile)
  constexpr int STAGE = 8 * QB;                   // 64 tokens
  constexpr int GM_STAGES = gm_stages<PARTS>();
  extern __shared__ __align__(16) uint8_t gsm[];  // [GM_STAGES][8 token tiles][QB]; epilogue: tile[64][TN+1]
  __shared__ float csum[GM_TOK];

  const int warp = __shfl_sync(0xffffffffu, (int)(threadIdx.x >> 5), 0), lane = threadIdx.x & 31;
  const int g = lane >> 2, tig = lane & 3;
  const int wr = warp & 3, wt = warp >> 2;  // row warp (2 tiles of 16 rows), token warp (4 tiles of 8)
  const int col = blockIdx.x, rg = blockIdx.y;
  const int64_t n0 = (int64_t)rg * TN;
  const int64_t tok0 = (int64_t)col * GM_TOK;
  const int ntok = (int)(p.m - tok0 < GM_TOK ? p.m - tok0 : GM_TOK);
  const int nrow = (int)(p.n - n0 < TN ? p.n - n0 : TN);
  const int64_t mt0 = tok0 / 8;
  const int nq = p.nq;

  const uint8_t* cbase[2];
  bool row_ok[2];
#pragma unroll
  for (int rt = 0; rt < 2; ++rt) {
    const int64_t tileI = (int64_t)rg * WARPS + wr * 2 + rt;
    row_ok[rt] = tileI < p.T;
    cbase[rt] = p.codes + (row_ok[rt] ? tileI : 0) * p.C * 256 + g * 16;
  }
  auto load_codes = [&](int q, uint4 (&c)[2][2]) {
    const int64_t chunk = (int64_t)q * 4 + tig;
#pragma unroll
    for (int rt = 0; rt < 2; ++rt) {
      if (row_ok[rt] && q < nq && chunk < p.C) {
        const uint8_t* ptr = cbase[rt] + chunk * 256;
        c[rt][0] = ldg_stream(ptr);
        c[rt][1] = ldg_stream(ptr + 128);
      } else {
        c[rt][0] = make_uint4(0, 0, 0, 0);
        c[rt][1] = c[rt][0];
      }
    }
  };
  auto issue_b = [&](int q) {  // B digits of quad q for the CTA's 8 token tiles -> stage q % GM_STAGES
    if (q < nq) {
      uint8_t* dst = gsm + (size_t)(q % GM_STAGES) * STAGE;
      for (int i = threadIdx.x; i < STAGE / 16; i += 256) {
        const int nt = i / (QB / 16), u = i % (QB / 16);
        cp_async16(dst + (size_t)nt * QB + u * 16, p.vq + ((mt0 + nt) * p.nq4 + q) * (int64_t)QB + (int64_t)u * 16);
      }
    }
    cp_async_commit();  // always commit (possibly empty) so that the group count stays uniform
  };

  uint4 cn[2][2];
  load_codes(0, cn);
  const int my_row = threadIdx.x % TN;
  const float sv_r = my_row < nrow ? __ldg(p.sv + n0 + my_row) : 0.f;
  const float bias_r = (p.bias != nullptr && my_row < nrow) ? __ldg(p.bias + n0 + my_row) : 0.f;
  pdl_wait();  // the prologue's digits, scales and c parts are visible from here on
  if (threadIdx.x < GM_TOK) {
    float c = 0.f;
    if ((int)threadIdx.x < ntok)
      for (int j = 0; j < p.nslices; ++j) c += p.cpart[(tok0 + threadIdx.x) * p.nslices + j];
    csum[threadIdx.x] = c;
  }
#pragma unroll
  for (int i = 0; i < GM_STAGES - 1; ++i) issue_b(i);

  float accf[2][4][4];
  int acc[2][4][PARTS][4];
#pragma unroll
  for (int rt = 0; rt < 2; ++rt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        accf[rt][nt][c] = 0.f;
#pragma unroll
        for (int pt = 0; pt < PARTS; ++pt) acc[rt][nt][pt][c] = 0;
      }

  for (int q = 0; q < nq; ++q) {
    cp_async_wait<GM_STAGES - 2>();
    __syncthreads();           // stage q % GM_STAGES complete for all threads; stage (q - 1) free
    issue_b(q + GM_STAGES - 1);
    uint4 cc[2][2];
#pragma unroll
    for (int rt = 0; rt < 2; ++rt) {
      cc[rt][0] = cn[rt][0];
      cc[rt][1] = cn[rt][1];
    }
    load_codes(q + 1, cn);
    const uint8_t* sb = gsm + (size_t)(q % GM_STAGES) * STAGE;
#pragma unroll
    for (int pp = 0; pp < 2; ++pp) {
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        uint32_t a[2][4];
#pragma unroll
        for (int rt = 0; rt < 2; ++rt) {
          const uint32_t wl0 = pp ? cc[rt][0].z : cc[rt][0].x, wl1 = pp ? cc[rt][0].w : cc[rt][0].y;
          const uint32_t wh0 = pp ? cc[rt][1].z : cc[rt][1].x, wh1 = pp ? cc[rt][1].w : cc[rt][1].y;
          a[rt][0] = (wl0 >> (2 * s)) & 0x03030303u;
          a[rt][1] = (wh0 >> (2 * s)) & 0x03030303u;
          a[rt][2] = (wl1 >> (2 * s)) & 0x03030303u;
          a[rt][3] = (wh1 >> (2 * s)) & 0x03030303u;
        }
        const int st = pp * 4 + s;
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
          const uint8_t* bp = sb + (size_t)(wt * 4 + nt) * QB + (st * 32 + lane) * PARTS * 8;
          if (PARTS == 2) {
            const uint4 bv = *reinterpret_cast<const uint4*>(bp);
#pragma unroll
            for (int rt = 0; rt < 2; ++rt) {
              mma_u8s8(acc[rt][nt][0], a[rt][0], a[rt][1], a[rt][2], a[rt][3], bv.x, bv.y);
              mma_u8s8(acc[rt][nt][1], a[rt][0], a[rt][1], a[rt][2], a[rt][3], bv.z, bv.w);
            }
          } else {
#pragma unroll
            for (int pt = 0; pt < PARTS; ++pt) {
              const uint2 bv = *reinterpret_cast<const uint2*>(bp + pt * 8);
#pragma unroll
              for (int rt = 0; rt < 2; ++rt)
                mma_u8s8(acc[rt][nt][pt], a[rt][0], a[rt][1], a[rt][2], a[rt][3], bv.x, bv.y);
            }
          }
        }
      }
    }
    if ((q & 3) == 3 || q == nq - 1) {  // end of a K slice: flush with the (token, slice) scales
      const int sl = q >> 2;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const int64_t t0 = tok0 + (wt * 4 + nt) * 8 + 2 * tig;  // rows < mpad: scales of padding tokens are 0
        const float sc0 = __ldg(p.scale + t0 * p.nslices + sl);
        const float sc1 = __ldg(p.scale + (t0 + 1) * p.nslices + sl);
#pragma unroll
        for (int rt = 0; rt < 2; ++rt)
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            float v = 0.f;
#pragma unroll
            for (int pt = PARTS - 1; pt >= 0; --pt) {
              v = v * 256.f + (float)acc[rt][nt][pt][c];
              acc[rt][nt][pt][c] = 0;
            }
            accf[rt][nt][c] = fmaf(v, (c & 1) ? sc1 : sc0, accf[rt][nt][c]);
          }
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // ring no longer read: reuse it for the output tile

  float (*tile)[TN + 1] = reinterpret_cast<float (*)[TN + 1]>(gsm);
#pragma unroll
  for (int rt = 0; rt < 2; ++rt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int tk = (wt * 4 + nt) * 8 + 2 * tig + (c & 1);
        const int rr = (wr * 2 + rt) * 16 + g + ((c & 2) ? 8 : 0);
        tile[tk][rr] = rr < nrow ? accf[rt][nt][c] + csum[tk] : 0.f;
      }
  __syncthreads();
  tile_epilogue<T>(p, tile, ntok, nrow, tok0, n0, sv_r, bias_r, [] { __syncthreads(); });
}


// =============================================================================================
// WGMMA GEMM (LATTQ_VARIANT_WGMMA; sm_90a, f16/bf16).  Same arithmetic as TILED_GEMM (u8 code fields x s8
// digits of v, exact int32, per-(token, slice) fp32 flush), on Hopper's asynchronous warpgroup MMA:
//
//   prologue kernel: gemm_prologue_kernel<T, 2, NTOK>, the digits written as the wgmma B image (WgStore).
//   main kernel: CTA = 128 rows x NTOK tokens, two warpgroups (warp w owns the 16-row tile w, as in every
//     lattq kernel).  Thread 0 streams the B image of each quad (8 x 2 NTOK x 32 bytes) into a WG_STAGES-deep
//     shared-memory ring with cp.async.bulk, completion on an mbarrier per stage ("full"); every warp releases
//     a stage through a second mbarrier ("empty") once the wgmmas that read it have completed
//     (wgmma.wait_group 1 after the next quad is issued), and thread 0 then refills it.  (A separate producer
//     warp was tried first: 9 warps leave 168 registers per thread and ptxas serialised the wgmmas at 64
//     tokens.)
//   The A operand comes from registers: the masked code words ((w >> 2s) & 0x03030303, as TILED_GEMM) are
//     exactly the m64nNk32 u8 A fragment of the warp's 16 rows, so a quad costs 32 SHF/LOP per thread and
//     8 wgmma.m64n(2 NTOK)k32 per warpgroup; codes stream from global memory through a 4-quad register ring.
//   Digits are B columns (column 2t + d = digit d of token t), so a thread's accumulators d[4j + 0/1] (row g)
//   and d[4j + 2/3] (row g + 8) are the two digits of token 4j + tig: flushed per K slice into fp32 with the
//   (token, slice) scale; scale-d = 0 on the slice's first wgmma restarts the int32 sums.
//   Epilogue: fp32 tile in the (drained) ring, tile_epilogue.
// =============================================================================================
constexpr int WG_STAGES = 4;
constexpr int WG_THREADS = 256;  // 2 warpgroups; thread 0 also issues the B copies
template <int NTOK> constexpr int wg_stage_bytes() { return 8 * 2 * NTOK * 32; }  // digit bytes per (quad, tile)

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)  // sm_90a device code only (the kernel body below is guarded the same way)
// wgmma.mma_async m64nNk32, u8 A (4 registers per thread: rows g / g + 8, K tig * 4 + 0..3 / 16 + ..., the
// mma.m16n8k32 fragment of warp w's 16 rows) x s8 B (shared memory, descriptor) -> s32 D (N / 2 registers).
// scale_d = 0 overwrites D (first step of a K slice), 1 accumulates.  sm_90a only.
template <int N> struct Wgmma;
template <> struct Wgmma<16> {
  static __device__ __forceinline__ void mma(int (&d)[8], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                             uint64_t desc, int scale_d) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %13, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n16k32.s32.u8.s8 {%0,%1,%2,%3,%4,%5,%6,%7}, {%8,%9,%10,%11}, %12, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc), "r"(scale_d));
  }
};
template <> struct Wgmma<32> {
  static __device__ __forceinline__ void mma(int (&d)[16], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                             uint64_t desc, int scale_d) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k32.s32.u8.s8 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, {%16,%17,%18,%19}, %20, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc), "r"(scale_d));
  }
};
template <> struct Wgmma<64> {
  static __device__ __forceinline__ void mma(int (&d)[32], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                             uint64_t desc, int scale_d) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k32.s32.u8.s8 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc), "r"(scale_d));
  }
};
template <> struct Wgmma<128> {
  static __device__ __forceinline__ void mma(int (&d)[64], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                             uint64_t desc, int scale_d) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.s32.u8.s8 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, {%64,%65,%66,%67}, %68, p;\n}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc), "r"(scale_d));
  }
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t* b, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(b)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t* b, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* b) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(b)) : "memory");
}
// wait for the phase of parity `parity` to complete; CLUSTER: acquire at cluster scope (remote arrivals)
template <bool CLUSTER = false> __device__ __forceinline__ void mbar_wait(uint64_t* b, unsigned parity) {
  unsigned done = 0;
  do {
    if (CLUSTER)
      asm volatile(
          "{\n.reg .pred P;\nmbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 P, [%1], %2;\n"
          "selp.u32 %0, 1, 0, P;\n}\n"
          : "=r"(done)
          : "r"(smem_addr(b)), "r"(parity)
          : "memory");
    else
      asm volatile(
          "{\n.reg .pred P;\nmbarrier.try_wait.parity.shared::cta.b64 P, [%1], %2;\nselp.u32 %0, 1, 0, P;\n}\n"
          : "=r"(done)
          : "r"(smem_addr(b)), "r"(parity)
          : "memory");
  } while (!done);
}
// the same wait for a thread that is usually early (WGMMA_F16's producer on its "empty" barriers): the suspend-time
// hint lets it sleep until the phase completes instead of retrying.  Without it, the producer thread's retries were
// 753,500 of the 23.9M warp instructions of wh_main_kernel at 28672x8192, m = 16 (session 17, Nsight Compute)
__device__ __forceinline__ void mbar_wait_sleep(uint64_t* b, unsigned parity, unsigned ns) {
  if (ns == 0) return mbar_wait(b, parity);
  unsigned done = 0;
  do {
    asm volatile(
        "{\n.reg .pred P;\nmbarrier.try_wait.parity.shared::cta.b64 P, [%1], %2, %3;\nselp.u32 %0, 1, 0, P;\n}\n"
        : "=r"(done)
        : "r"(smem_addr(b)), "r"(parity), "r"(ns)
        : "memory");
  } while (!done);
}
// arrive on the mbarrier at the same shared-memory offset in CTA `rank` of the cluster
__device__ __forceinline__ void mbar_arrive_remote(uint64_t* b, int rank) {
  uint32_t ra;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(ra) : "r"(smem_addr(b)), "r"(rank));
  asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];" ::"r"(ra) : "memory");
}
// bulk copy into the same shared-memory offset of every CTA in `mask`, completion on each one's mbarrier
__device__ __forceinline__ void bulk_g2s_multicast(void* dst, const void* src, unsigned bytes, uint64_t* bar,
                                                   uint16_t mask) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1], %2, [%3], "
      "%4;" ::"r"(smem_addr(dst)),
      "l"(src), "r"(bytes), "r"(smem_addr(bar)), "h"(mask)
      : "memory");
}
// bytes (multiple of 16, 16-byte aligned ends) global -> shared, completion counted on the mbarrier
__device__ __forceinline__ void bulk_g2s(void* dst, const void* src, unsigned bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                   smem_addr(dst)),
               "l"(src), "r"(bytes), "r"(smem_addr(bar))
               : "memory");
}
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
template <int N> __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// keeps the compiler from moving accumulator reads / writes across the asynchronous wgmma boundaries
template <int ND> __device__ __forceinline__ void fence_regs(int (&d)[ND]) {
#pragma unroll
  for (int i = 0; i < ND; ++i) asm volatile("" : "+r"(d[i])::"memory");
}
// shared-memory matrix descriptor, no swizzle: start address, K-direction core-matrix stride 128 bytes
// (leading byte offset), 8-column-group stride 256 bytes (stride byte offset)
__device__ __forceinline__ uint64_t wg_desc(uint32_t saddr) {
  return (uint64_t)((saddr & 0x3FFFF) >> 4) | ((uint64_t)(128 >> 4) << 16) | ((uint64_t)(256 >> 4) << 32);
}
// shared-memory matrix descriptor of the WGMMA_F16 image: K-major, 128-byte swizzle, 8-row groups 1024 bytes apart
// (stride byte offset; the leading byte offset is unused when a k16 step lies inside one 128-byte row); step t of a
// stage starts 32 t bytes into it.  wh_desc_lo(stage) is the low word (start address / 16, leading byte offset);
// wh_desc_step(lo, t) is the descriptor of step t: the start-address field moves by 2 per step and never carries (a
// stage is 1024-byte aligned and below 256 KB), so each step costs one add instead of the whole construction
__device__ __forceinline__ uint32_t wh_desc_lo(uint32_t saddr) { return ((saddr & 0x3FFFF) >> 4) | (1u << 16); }
__device__ __forceinline__ uint64_t wh_desc_step(uint32_t lo, int t) {
  return (uint64_t)(lo + 2u * (uint32_t)t) | ((uint64_t)((1024u >> 4) | (1u << 30)) << 32);
}
__device__ __forceinline__ void consumer_sync() { asm volatile("bar.sync 1, 256;" ::: "memory"); }
// a flag between CTAs: the writer's CTA has synchronised after its stores; the fence makes them visible (cumulative)
// before the flag
__device__ __forceinline__ void flag_release(unsigned* f, unsigned v) {
  asm volatile("fence.acq_rel.gpu;\nst.relaxed.gpu.global.u32 [%0], %1;" ::"l"(f), "r"(v) : "memory");
}
__device__ __forceinline__ unsigned flag_acquire(const unsigned* f) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(f) : "memory");
  return v;
}
#endif

// CL = 2: the CTAs of row groups 2i and 2i + 1 form a cluster and share the B image: each loads half of every
// stage and multicasts it to both, so the L2 -> SM traffic of B halves; a stage is refilled once the warps of
// both CTAs released it (each warp arrives on both CTAs' "empty" barrier).
template <typename T, int NTOK, int CL>
__global__ void __launch_bounds__(WG_THREADS, 1) wgmma_main_kernel(FusedParams p) {
#if !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  // compiled for another architecture: the host never launches it there (wgmma_forward checks sm_90 and
  // LATTQ_CUDA_SM90A); trap rather than return garbage if that check is ever bypassed
  __trap();
#else
  constexpr int NCOL = 2 * NTOK;
  constexpr int SB = wg_stage_bytes<NTOK>();
  constexpr int ND = NCOL / 2;  // int32 accumulators per thread
  constexpr int NJ = NTOK / 4;  // tokens per thread: 4 j + tig
  constexpr int RING = 4;  // quads of codes in registers (a K slice)
  static_assert((size_t)NTOK * (TN + 1) * 4 <= (size_t)WG_STAGES * SB, "the epilogue tile fits the ring");
  extern __shared__ __align__(128) uint8_t wsm[];  // [WG_STAGES][SB]; epilogue: tile[NTOK][TN + 1]
  __shared__ __align__(8) uint64_t full[WG_STAGES];
  __shared__ __align__(8) uint64_t empty[WG_STAGES];
  __shared__ float csum[NTOK];

  const int warp = __shfl_sync(0xffffffffu, (int)(threadIdx.x >> 5), 0), lane = threadIdx.x & 31;
  const int col = blockIdx.x, rg = blockIdx.y;
  const int64_t n0 = (int64_t)rg * TN;
  const int64_t tok0 = (int64_t)col * NTOK;
  const int ntok = (int)(p.m - tok0 < NTOK ? p.m - tok0 : NTOK);
  const int nrow = (int)(p.n - n0 < TN ? p.n - n0 : TN);
  const int nq = p.nq;
  if (threadIdx.x == 0) {
#pragma unroll
    for (int i = 0; i < WG_STAGES; ++i) {
      mbar_init(&full[i], 1);
      mbar_init(&empty[i], WARPS * CL);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  const int crank = CL > 1 ? cluster_rank() : 0;
  if (CL > 1) cluster_sync_all();  // both CTAs' barriers are initialised before any remote arrive / multicast
  else __syncthreads();

  // thread 0 is also the producer: B image of quad q -> stage q % WG_STAGES (after the prologue kernel)
  const uint8_t* bsrc = p.vq + (int64_t)col * p.nq4 * SB;
  auto issue_b = [&](int q) {
    const int s = q % WG_STAGES;
    mbar_expect_tx(&full[s], SB);  // the whole stage: this CTA's part and the peer's multicast
    if (CL == 1) {
      bulk_g2s(wsm + (size_t)s * SB, bsrc + (int64_t)q * SB, SB, &full[s]);
    } else {
      constexpr unsigned PART = SB / CL;
      bulk_g2s_multicast(wsm + (size_t)s * SB + crank * PART, bsrc + (int64_t)q * SB + crank * PART, PART, &full[s],
                         (uint16_t)((1u << CL) - 1));
    }
  };
  const int g = lane >> 2, tig = lane & 3;
  const int64_t tileI = (int64_t)rg * WARPS + warp;
  const bool tile_ok = tileI < p.T;
  const uint8_t* cbase = p.codes + (tile_ok ? tileI : 0) * p.C * 256 + g * 16;
  auto load_quad = [&](int q, uint4& lo, uint4& hi) {
    const int64_t chunk = (int64_t)q * 4 + tig;
    if (tile_ok && q < nq && chunk < p.C) {
      const uint8_t* ptr = cbase + chunk * 256;
      lo = ldg_stream(ptr);
      hi = ldg_stream(ptr + 128);
    } else {
      lo = make_uint4(0, 0, 0, 0);
      hi = lo;
    }
  };
  uint4 cb[RING][2];
#pragma unroll
  for (int i = 0; i < RING; ++i) load_quad(i, cb[i][0], cb[i][1]);
  const int my_row = threadIdx.x % TN;
  const float sv_r = my_row < nrow ? __ldg(p.sv + n0 + my_row) : 0.f;
  const float bias_r = (p.bias != nullptr && my_row < nrow) ? __ldg(p.bias + n0 + my_row) : 0.f;
  pdl_wait();  // digits, scales and c parts of the prologue kernel
  if (threadIdx.x == 0)
    for (int q = 0; q < min(nq, WG_STAGES); ++q) issue_b(q);
  if (threadIdx.x < NTOK) {
    float c = 0.f;
    if ((int)threadIdx.x < ntok)
      for (int j = 0; j < p.nslices; ++j) c += p.cpart[(tok0 + threadIdx.x) * p.nslices + j];
    csum[threadIdx.x] = c;
  }

  float facc[NJ][2];
#pragma unroll
  for (int j = 0; j < NJ; ++j) facc[j][0] = facc[j][1] = 0.f;
  int d[ND];
#pragma unroll
  for (int i = 0; i < ND; ++i) d[i] = 0;

  for (int qb = 0; qb < nq; qb += 4) {
#pragma unroll
    for (int qi = 0; qi < 4; ++qi) {
      const int q = qb + qi;
      const int ri = qi % RING;
      if (q < nq) {
        const int s = q % WG_STAGES;
        mbar_wait(&full[s], (unsigned)(q / WG_STAGES) & 1u);
        const uint32_t base = smem_addr(wsm + (size_t)s * SB);
#pragma unroll
        for (int pp = 0; pp < 2; ++pp) {
          const uint32_t wl0 = pp ? cb[ri][0].z : cb[ri][0].x, wl1 = pp ? cb[ri][0].w : cb[ri][0].y;
          const uint32_t wh0 = pp ? cb[ri][1].z : cb[ri][1].x, wh1 = pp ? cb[ri][1].w : cb[ri][1].y;
          uint32_t a[4][4];
#pragma unroll
          for (int s4 = 0; s4 < 4; ++s4) {
            a[s4][0] = (wl0 >> (2 * s4)) & 0x03030303u;
            a[s4][1] = (wh0 >> (2 * s4)) & 0x03030303u;
            a[s4][2] = (wl1 >> (2 * s4)) & 0x03030303u;
            a[s4][3] = (wh1 >> (2 * s4)) & 0x03030303u;
          }
          wgmma_fence();
          fence_regs(d);
#pragma unroll
          for (int s4 = 0; s4 < 4; ++s4) {
            const int st = pp * 4 + s4;
            Wgmma<NCOL>::mma(d, a[s4][0], a[s4][1], a[s4][2], a[s4][3], wg_desc(base + st * NCOL * 32),
                             (qi == 0 && pp == 0 && s4 == 0) ? 0 : 1);
          }
        }
        wgmma_commit();
        load_quad(q + RING, cb[ri][0], cb[ri][1]);  // the slot's words are in a[] by now
        wgmma_wait<1>();                            // quad q - 1 complete: its stage may be refilled
        fence_regs(d);
        if (q > 0 && lane == 0) {
          mbar_arrive(&empty[(q - 1) % WG_STAGES]);
          if (CL > 1) mbar_arrive_remote(&empty[(q - 1) % WG_STAGES], crank ^ 1);
        }
        // refill the stage of quad q - 1 (warp-uniform blocking wait; a polling refill that never blocks warp 0
        // measured 5-13% slower on the H100, rev ce663db sweep)
        if (warp == 0 && q > 0 && q - 1 + WG_STAGES < nq) {
          mbar_wait<(CL > 1)>(&empty[(q - 1) % WG_STAGES], (unsigned)((q - 1) / WG_STAGES) & 1u);
          if (lane == 0) issue_b(q - 1 + WG_STAGES);
        }
        if (qi == 3 || q == nq - 1) {  // end of a K slice (4 quads): flush with the (token, slice) scale
          wgmma_wait<0>();
          fence_regs(d);
          const int sl = q >> 2;
#pragma unroll
          for (int j = 0; j < NJ; ++j) {
            const float sc = __ldg(p.scale + (tok0 + 4 * j + tig) * p.nslices + sl);  // 0 for padding tokens
            facc[j][0] = fmaf((float)d[4 * j] + 256.f * (float)d[4 * j + 1], sc, facc[j][0]);
            facc[j][1] = fmaf((float)d[4 * j + 2] + 256.f * (float)d[4 * j + 3], sc, facc[j][1]);
          }
        }
      }
    }
  }
  consumer_sync();  // every consumer's wgmmas are complete (flush after the last quad): the ring is free

  float (*tile)[TN + 1] = reinterpret_cast<float (*)[TN + 1]>(wsm);
#pragma unroll
  for (int j = 0; j < NJ; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int tk = 4 * j + tig, rr = warp * 16 + g + 8 * h;
      tile[tk][rr] = rr < nrow ? facc[j][h] + csum[tk] : 0.f;
    }
  consumer_sync();
  tile_epilogue<T>(p, tile, ntok, nrow, tok0, n0, sv_r, bias_r, [] { consumer_sync(); });
  if (CL > 1) cluster_sync_all();  // the peer may still arrive on this CTA's barriers until it is done
#endif
}

// =============================================================================================
// WGMMA_F16 GEMM (LATTQ_VARIANT_WGMMA_F16; sm_90a, f16/bf16; session 10).  t = Z v + c on the f16 tensor-core
// rate with fp32 accumulation over the whole of K, so that there is no per-slice flush and a token costs one B
// column instead of WGMMA's two int8 digit columns:
//
//   v in fp16: each token's v is scaled by a power of two S_t (max |v S_t| < 2^15, from the token's maximum over
//     all of K) and rounded once to fp16 (11 significant bits; the products z (v S_t) and their fp32 sums are
//     then exact up to fp32 rounding); the epilogue multiplies by 1 / S_t.  One prologue kernel, wh_prep_kernel
//     (persistent CTAs taking whole tokens: the token's maximum, then the fp16 B image and the c parts); it triggers
//     the main kernel's launch at its start (all its CTAs are resident, so the main kernel's cannot crowd them out).
//   z in fp16, centred: a code word w (16 fields of 2 bits) gives 8 A registers of two fp16 each with one LOP3 and
//     one HFMA2: with the fields moved to position P = 1..4 of each half, (w' & 0x00030003 << 2P) | 0x6400 6400 is
//     1024 + z 4^P (exact), and HFMA2(., 4^-P, -1024 4^-P - 1.5) is z - 1.5 exactly (P = 0 would need the
//     constant -1025.5, which fp16 cannot hold).  Register e (0..7) holds fields e and e + 8 of the word: e = 1..4
//     from w, e = 0 from w << 2, e = 5 from w >> 8, e = 6, 7 from w >> 10.  c absorbs 1.5 times the sum of the rounded v (wh_prep_kernel), so
//     the rounding errors of v enter t with the weights z - 1.5 (mean square 1.25) instead of z (3.5): with
//     uncentred z, f16 activations measured up to 2.5x the dense-in-f16 error (the bound is 2x).
//   Which K position meets which B slot: the A fragment of wgmma.m64nNk16 (rows g / g + 8, K slots 2 tig, +1 and
//     8 + 2 tig, +1) is filled from the lane's TILED code words.  Word j (0..3: lo.x / .y / .z / .w with hi for
//     row g + 8) of quad Q feeds stage j (64 K positions, 4 k16 steps); in step t, slots 2 tig + h (h = 0, 1) come
//     from register e = 2 t, slots 8 + 2 tig + h from e = 2 t + 1, h selecting the field e + 8 h.  In the TILED
//     layout byte b of word j of lane tig is the code word of group (tig * 16 + (j >> 1) * 8 + (j & 1) * 4 + b) of
//     the quad and its field s4 the group's element s4 (docs/format.md); field p = 4 b + s4.  wh_store_image
//     writes v of that K position into that slot.
//   CTA: 128 RT rows x NT tokens (RT = 1, 2; NT = 64, 128), two consumer warpgroups and a producer warpgroup.
//     Consumer warpgroup wg runs RT wgmma.m64nNTk16 per k16 step, warp w' supplying the A rows of 16-row tiles
//     (wg RT + r) 4 + w'.  The producer (one thread) streams 64-K stages of the image (128 NT bytes) by cp.async.bulk into
//     a ring ("full" / "empty" mbarriers).  Codes come through a register ring of wh_rq quads.  One commit group per
//     k16 step, wgmma.wait_group 1: a warpgroup keeps one step queued while it decodes the next.
//   Epilogue: tile[token][row] = d / S_t + c in the drained ring, tile_epilogue over the 128 RT rows.
// =============================================================================================
// 2 consumer warpgroups + 1 producer warpgroup.  A lone producer warp (288 threads) would cost the same: registers
// are allocated per SM sub-partition, so 9 warps cap every thread at 168 (ptxas then spilled and serialised the
// 128-token, 256-row wgmmas).  setmaxnreg moves the producer's registers to the consumers: 128 x 40 + 256 x 232.
constexpr int WH_THREADS = 384;
// quads of codes in registers: 4 where the accumulators leave room (NT RT <= 128: up to 64 of them per thread; at
// m = 64 the code stream, not the tensor cores, paces the CTA), else 2.  Deeper rings compile without spills (8 quads
// at 32 x 128, 6 at 32 x 256 and 64 x 128, 4 at 64 x 256) but were 1-11% slower at m = 16..64 on every shape in an
// A/B of the two builds in one call (session 17, h100_session17/ab_ring_2e2c3d3.log: 28672x8192 m = 16 58.7 against
// 53.2 us), although at m = 16 the first decode of each ring slot waited on its code load in 11% of the stall
// samples (Nsight Compute)
template <int NT, int RT> constexpr int wh_rq() { return NT * RT <= 64 || (NT * RT <= 128 && RT == 1) ? 4 : 2; }
// k16 steps per wgmma commit group (one group stays queued while the next is decoded): 4 (a whole stage) where the
// accumulators leave room (NT RT <= 128), else 2
template <int NT, int RT> constexpr int wh_gs() { return NT * RT <= 128 ? 4 : 2; }
// A stage of the image: F16, 64 K positions x NT tokens x 2 bytes; I8 (the integer form, session 18), 128 K positions x
// 2 NT digit columns x 1 byte.  512 NT bytes per quad either way (4 and 2 stages).
template <int NT, bool I8 = false> constexpr int wh_stage_bytes() { return I8 ? 128 * 2 * NT : 64 * NT * 2; }
template <bool I8> constexpr int wh_stages_per_quad() { return I8 ? 2 : 4; }
// ring: at least 96 KB, and at least the epilogue tile (NT x (128 RT + 4) fp32, SV and bias)
template <int NT, int RT> constexpr int wh_tile_bytes() { return (NT * (128 * RT + 4) + 2 * 128 * RT) * 4; }
template <int NT, int RT, bool I8 = false> constexpr int wh_stages() {
  return (wh_tile_bytes<NT, RT>() > 96 * 1024 ? wh_tile_bytes<NT, RT>() + wh_stage_bytes<NT, I8>() - 1 : 96 * 1024) /
         wh_stage_bytes<NT, I8>();
}
// the had_out = 128 epilogue's output tile (session 15): the cast outputs, token-major, each token's 128 RT rows then 16
// bytes of padding, past the ring (which holds the fp32 tile), so that the stores to y leave in whole 128-byte lines
template <int NT, int RT, bool I8 = false> constexpr int wh_out_off() {
  return wh_stages<NT, RT, I8>() * wh_stage_bytes<NT, I8>();
}
template <int NT, int RT> constexpr int wh_out_stride() { return 128 * RT * 2 + 16; }
// the main kernel's dynamic shared memory, without the 1024 bytes of the ring's alignment
template <int NT, int RT, bool I8 = false> constexpr int wh_smem_bytes() {
  return wh_out_off<NT, RT, I8>() + NT * wh_out_stride<NT, RT>();
}

// fp16 image of the token's v, K-major with the 128-byte swizzle (session 13; it was the no-swizzle core-matrix
// order before): stage block (token tile tt, quad Q, stage j) at ((tt nq4 + Q) 4 + j) 128 NT bytes; token n's row of
// the stage (its 64 K positions) at (n / 8) 1024 + (n % 8) 128; K positions 8 c .. 8 c + 7 of the row (chunk c = 2 t +
// kh: k16 step t, K half kh) at 16 (c ^ (n % 8)); slot 2 tig + h at 2 (2 tig + h) bytes of the chunk.  A token owns
// whole 128-byte lines, so the image can be written in whole lines: with the no-swizzle order every line held 16 bytes
// of 8 tokens, written by 8 CTAs in 4-byte pieces, and the stores took about 40% of the prologue at 8192 x 28672, m =
// 2048 (h100_session13/prof_wip2.log, prof_wip4.log).
// Writes the fp16 image of v S (u[]: v of the lane's 32 K positions of slice sl, as prologue_fold leaves them) and
// returns the warp's sum of the rounded v (every lane).  Lane l holds groups 8 l .. 8 l + 7 of the slice (u[4 gg + s4]:
// element s4 of group gg): quad ql = l >> 3, code chunk (lane tig of the main kernel) tg = (l & 7) >> 1, half
// pp = l & 1 of the chunk's 16 groups, as in prologue_words.  Group gg is byte b = gg & 3 of word j = 2 pp + (gg >> 2);
// element s4 is field p = 4 b + s4: register e = p & 7, half h = p >> 3 = b >> 1, step t = e >> 1, K half kh = e & 1,
// slot 2 tg + h.  The slice's 16 lines (L = 4 ql + stage) go through the warp's 2 KB scratch `scr` in shared memory:
// 4-byte stores there (line L's chunks rotated by L / 2 so that one store instruction meets every bank once), then
// 16-byte loads and stores of whole lines to global.
template <int NT>
__device__ __forceinline__ float wh_store_image(const FusedParams& p, int64_t tok, int sl, const float (&u)[32],
                                                float S, uint8_t* scr) {
  const int lane = threadIdx.x & 31;
  const int ql = lane >> 3, tg = (lane & 7) >> 1, pp = lane & 1;
  const int64_t tt = tok / NT;
  const int n = (int)(tok % NT), sw = n & 7;
  float vsum = 0.f;
#pragma unroll
  for (int h16 = 0; h16 < 2; ++h16) {
    const int L = 4 * ql + 2 * pp + h16;  // stage 2 pp + h16 of quad ql
    uint8_t* row = scr + L * 128 + tg * 4;
    const int rot = sw ^ (L >> 1);
#pragma unroll
    for (int bm = 0; bm < 2; ++bm)
#pragma unroll
      for (int s4 = 0; s4 < 4; ++s4) {
        const int e = 4 * bm + s4;  // both b = bm (h = 0) and b = bm + 2 (h = 1)
        const __half2 hv = __floats2half2_rn(u[4 * (4 * h16 + bm) + s4] * S, u[4 * (4 * h16 + bm + 2) + s4] * S);
        *reinterpret_cast<__half2*>(row + (e ^ rot) * 16) = hv;
        const float2 vr = __half22float2(hv);
        vsum += vr.x + vr.y;
      }
  }
  __syncwarp();
  constexpr int SBY = wh_stage_bytes<NT>();
  uint8_t* g = p.vq + (tt * p.nq4 + (int64_t)sl * 4) * 4 * SBY + (n >> 3) * 1024 + sw * 128;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int L = 4 * i + (lane >> 3), q = lane & 7;  // a quarter warp per line
    const uint4 v = *reinterpret_cast<const uint4*>(scr + L * 128 + q * 16);
    *reinterpret_cast<uint4*>(g + (size_t)L * SBY + (q ^ (L >> 1)) * 16) = v;
  }
  __syncwarp();  // scr is free again
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) vsum += __shfl_xor_sync(0xffffffffu, vsum, o);
  return vsum;
}

// The integer image (session 18: the WGMMA variant at m <= 32 on this kernel pair): WGMMA's exact digits, v of each
// (token, 1024-wide slice) as 16-bit fixed point (q = round(v inv), |q| <= 32639, inv = 32639 / the slice's maximum)
// split into q = lo + 256 hi, two int8 digit columns per token (column 2 n: lo, 2 n + 1: hi), K-major with the 128-byte
// swizzle as the F16 image: stage block (token tile tt, quad Q, half pp) at ((tt nq4 + Q) 2 + pp) 256 NT bytes; digit
// column c's row of the stage (its 128 K positions, one byte each) at (c / 8) 1024 + (c % 8) 128; K step t (32
// positions, 4 per stage) at bytes 32 t .. 32 t + 31 of the row, 16-byte chunk ch at 16 (ch ^ (c % 8)).  Which K
// position meets which slot: the A fragment of wgmma.m64nNk32 (rows g / g + 8, K slots 4 tig + b and 16 + 4 tig + b)
// takes, in step t of half pp, field t of the bytes b of the lane's words 2 pp (slots < 16) and 2 pp + 1; byte b of
// word j of lane tig is the code word of group 16 tig + 8 (j >> 1) + 4 (j & 1) + b of the quad.  So slot 16 jj + 4 tig
// + b of step t holds element t of group 16 tig + 8 pp + 4 jj + b.  Lane l of the prologue warp holds groups 8 l ..
// 8 l + 7 of the slice: quad ql = l >> 3, tig = (l & 7) >> 1, pp = l & 1, and its u[4 (4 jj + b) + t] is that
// element.  The slice's 16 rows (8 stages x 2 digits) go through the warp's 2 KB scratch as in wh_store_image (row
// R = 2 L + digit of stage L = 2 ql + pp, chunk ch at position ch ^ L: one store instruction meets every bank once).
template <int NT>
__device__ __forceinline__ void wh_store_digits(const FusedParams& p, int64_t tok, int sl, const float (&u)[32],
                                                float inv, uint8_t* scr) {
  const int lane = threadIdx.x & 31;
  const int tg = (lane & 7) >> 1, L = 2 * (lane >> 3) + (lane & 1);
  const int64_t tt = tok / NT;
  const int tokl = (int)(tok % NT);
  constexpr int QM = (int)QF<2>::QMAX;
#pragma unroll
  for (int t = 0; t < 4; ++t)
#pragma unroll
    for (int jj = 0; jj < 2; ++jj) {
      uint32_t lo = 0u, hi = 0u;
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        // clamp: v inv can round one unit above QMAX, which would overflow the top digit
        const int q = max(-QM, min(QM, __float2int_rn(u[4 * (4 * jj + b) + t] * inv)));
        const int h = (q + 128) >> 8;  // floor: lo = q - 256 h in [-128, 127], h in [-127, 127]
        lo |= (uint32_t)((q - (h << 8)) & 255) << (8 * b);
        hi |= (uint32_t)(h & 255) << (8 * b);
      }
      const int ch = 2 * t + jj;
      *reinterpret_cast<uint32_t*>(scr + (2 * L) * 128 + (ch ^ L) * 16 + 4 * tg) = lo;
      *reinterpret_cast<uint32_t*>(scr + (2 * L + 1) * 128 + (ch ^ L) * 16 + 4 * tg) = hi;
    }
  __syncwarp();
  constexpr int SBY = wh_stage_bytes<NT, true>();
  uint8_t* g = p.vq + (tt * p.nq4 + (int64_t)sl * 4) * 2 * SBY;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int R = 4 * i + (lane >> 3), cp = lane & 7;  // a quarter warp per row
    const int Lr = R >> 1, c = 2 * tokl + (R & 1), ch = cp ^ Lr;
    const uint4 v = *reinterpret_cast<const uint4*>(scr + R * 128 + cp * 16);
    *reinterpret_cast<uint4*>(g + (size_t)Lr * SBY + (c >> 3) * 1024 + (c & 7) * 128 + (ch ^ (c & 7)) * 16) = v;
  }
  __syncwarp();  // scr is free again
}

// The input transform of one whole (token, slice) pair for wh_prep_kernel's common case, one warp (session 13):
// the token's x row staged in shared memory (xs), 16-byte aligned su, the slice entirely inside K, a real token and
// 32 <= had_in <= 1024.  Same result as prologue_fold up to rounding (the 1 / sqrt(had_in) of the Hadamard is folded
// into As and bs, the A and b it receives), with none of its per-element range checks, 32-bit offsets and all 12
// loads issued before the first use: Nsight Compute showed the general path spending about a third of the prologue's
// instructions on 64-bit index arithmetic and range tests (h100_session13/ncuprep_675ee48.log).
template <typename T>
__device__ __forceinline__ void wh_fold_regs(const uint4 (&xr)[4], const float4 (&s4)[8], int had, float (&u)[32],
                                             const float* As, const float* bs, float& mx_out, float& c_out) {
  const int lane = threadIdx.x & 31;
  scale_x32<T>(xr, s4, u);
  // in-register stages h = 1..16 (had >= 32), cross-lane stages h = 32 .. had / 2
  lane_butterflies(u);
#pragma unroll
  for (int hl = 1; hl < 32; hl <<= 1) {
    if (hl * 32 < had) {
      const float sg = (lane & hl) != 0 ? -1.f : 1.f;
#pragma unroll
      for (int i = 0; i < 32; ++i) u[i] = fmaf(sg, u[i], __shfl_xor_sync(0xffffffffu, u[i], hl));
    }
  }
  fold_slice(u, As, bs, mx_out, c_out);
}
// a lane's 32 x values (4 x 16 bytes) of the slice starting at element off (xs: a row in global or shared memory)
template <typename T> __device__ __forceinline__ void wh_load_x(const T* __restrict__ xs, int off, uint4 (&xr)[4]) {
  off += (threadIdx.x & 31) * 32;
#pragma unroll
  for (int j = 0; j < 4; ++j) xr[j] = *reinterpret_cast<const uint4*>(xs + off + 8 * j);
}
// and its SU (N = 8 float4)
template <int N>
__device__ __forceinline__ void wh_load_su(const float* __restrict__ su, int off, float4 (&s4)[N]) {
  off += (threadIdx.x & 31) * 32;
#pragma unroll
  for (int j = 0; j < N; ++j) s4[j] = __ldg(reinterpret_cast<const float4*>(su + off + 4 * j));
}
template <typename T>
__device__ __forceinline__ void wh_fold_fast(const T* __restrict__ xs, const float* __restrict__ su, int off, int had,
                                             float (&u)[32], const float* As, const float* bs, float& mx_out,
                                             float& c_out) {
  uint4 xr[4];
  float4 s4[8];
  wh_load_x<T>(xs, off, xr);
  wh_load_su(su, off, s4);
  wh_fold_regs<T>(xr, s4, had, u, As, bs, mx_out, c_out);
}

// The WGMMA_F16 prologue, one kernel (session 11; it replaced a maxima kernel and an image kernel that each read x
// from DRAM).  Persistent CTAs of W = min(slices, 16) warps walk the tokens (tok = blockIdx.x, + gridDim.x, ...);
// warp w takes the slices w, w + W, ...  Pass 1 folds every slice (prologue_fold); the token's maximum over all of
// K comes from one shared-memory reduction; pass 2 writes the image.  A warp's last slice keeps its v in registers;
// past 16 slices (k > 16384) its earlier slices' v waits in shared memory beside the staged rows where that fits
// (session 12; folding them again, as before, made 8192 x 28672 slower than in session 10), else they are folded
// again (LATTQ_WGMMA_F16_PREP_KEEP=0 forces that: tests).  x rows (16-bit, k % 8 == 0) are
// staged in shared memory by cp.async.bulk, double-buffered: the next-but-one token's row is in flight while a token
// is transformed, so the loads do not wait on the registers of the transform (a warp-per-(token, slice) grid with
// x loads to registers ran at 0.4-0.8 TB/s: one dependent chain of latencies per wave).  su comes through L1: a
// warp's slices are the same for every token.
#ifdef LATTQ_GEMV_TRACE
// Trace builds only (-DLATTQ_GEMV_TRACE; dev step whtrace, bench/kernels/probe_latency.py --trace-lib --wh-cases):
// %globaltimer stamps of the WGMMA_F16 kernels, read back (and cleared) with lattq_debug_wh_trace().  Main kernel,
// thread 0 of each CTA (consumer warp 0): slots 0 entry, 1 PDL wait returned, 2 first stage landed, 3 main loop done,
// 4 stream-K fixup done (the epilogue starts), 5 end, 6 (had_out = 128) the epilogue's tile stored, 7 the SM id.
// Prologue kernel, thread 0 of each CTA: 0 entry, 1 PDL wait returned, 2 end, 3 the SM id.  Never compiled into the
// library otherwise.
constexpr int WTRACE_CTAS = 4096;
__device__ unsigned long long g_wh_trace[WTRACE_CTAS * 8];
__device__ unsigned long long g_whp_trace[WTRACE_CTAS * 4];
__device__ __forceinline__ unsigned long long gtimer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ unsigned smid_now() {
  unsigned s;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
  return s;
}
__device__ __forceinline__ void wh_stamp(int i) {
  const unsigned cta = blockIdx.x + gridDim.x * blockIdx.y;
  if (threadIdx.x == 0 && cta < WTRACE_CTAS) {
    g_wh_trace[cta * 8 + i] = gtimer();
    if (i == 0) g_wh_trace[cta * 8 + 7] = smid_now();
  }
}
__device__ __forceinline__ void whp_stamp(int i) {
  if (threadIdx.x == 0 && blockIdx.x < WTRACE_CTAS) {
    g_whp_trace[blockIdx.x * 4 + i] = gtimer();
    if (i == 0) g_whp_trace[blockIdx.x * 4 + 3] = smid_now();
  }
}
// g_wh_nostore != 0 (lattq_debug_wh_nostore): the had_out = 128 epilogue skips its y stores (results wrong by design)
__device__ int g_wh_nostore;
#define WH_STAMP(i) wh_stamp(i)
#define WH_NOSTORE() (g_wh_nostore != 0)
#define WHP_STAMP(i) whp_stamp(i)
#else
#define WH_STAMP(i) ((void)0)
#define WHP_STAMP(i) ((void)0)
#define WH_NOSTORE() false
#endif

constexpr int WH_PREP_MAXW = 16;
inline int wh_prep_warps(int64_t nslices) { return (int)std::min<int64_t>(nslices, WH_PREP_MAXW); }
inline bool wh_prep_bulk(const FusedParams& p, int32_t dt) {  // x rows by cp.async.bulk (16-byte aligned rows)
  return dt != LATTQ_F32 && !p.u_pre && (p.k & 7) == 0 && (reinterpret_cast<uintptr_t>(p.x) & 15) == 0;
}
constexpr int WH_PREP_SCR = 2048;  // image scratch per warp (one slice of one token)
// x rows staged in shared memory for WH_PREP_STAGE_K0 < k <= WH_PREP_STAGE_K1, else read in place (session 15)
constexpr int64_t WH_PREP_STAGE_K0 = 8192, WH_PREP_STAGE_K1 = 16384;
// the prologue's dynamic shared memory without the kept slices: the warps' image scratch, then 2 x rows if bulk
inline size_t wh_prep_smem(const FusedParams& p, int W, bool bulk) {
  return (size_t)W * WH_PREP_SCR + (bulk ? 2 * align256((size_t)p.k * 2) : 0);
}

// I8 (session 18): the integer image (wh_store_digits), one scale per (token, slice) instead of the token's S_t, so a
// slice's digits are written as soon as it is folded: no token maximum, no pass 2, nothing kept, and the CTAs take
// (token, slice group) units instead of whole tokens.
template <typename T, int NT, bool I8 = false>
__global__ void __launch_bounds__(32 * WH_PREP_MAXW) wh_prep_kernel(FusedParams p, int W, int64_t mpad, int bulk,
                                                                    int keep, int fast, int pre, int early) {
#if !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __trap();  // WGMMA_F16 runs only on sm_90 with an sm_90a build (wgmma_f16_forward's checks)
#else
  // a 2 KB image scratch per warp (wh_store_image); bulk: then 2 x rows of x; keep: then the kept v and c parts
  extern __shared__ __align__(128) uint8_t psm[];
  __shared__ __align__(8) uint64_t full[2];
  __shared__ float sAb[20];
  __shared__ float sAs[20];  // A and b times 1 / sqrt(had_in), for wh_fold_fast
  __shared__ float smx[WH_PREP_MAXW];
  WHP_STAMP(0);
  const int warp = __shfl_sync(0xffffffffu, (int)(threadIdx.x >> 5), 0), lane = threadIdx.x & 31;
  const size_t rowb = (size_t)p.k * sizeof(T), bufb = (rowb + 255) / 256 * 256;  // as wh_prep_smem
  const int nper = (p.nslices + W - 1) / W;  // slices of warp 0 (the most); kept: all but each warp's last
  uint8_t* const scr = psm + warp * WH_PREP_SCR;
  uint8_t* const xsm = psm + W * WH_PREP_SCR;
  float4* kv = reinterpret_cast<float4*>(xsm + (bulk == 1 ? 2 * bufb : 0));  // [W (nper - 1)][8][32 lanes]
  float* kc = reinterpret_cast<float*>(kv + (size_t)W * (nper - 1) * 256);
  if (threadIdx.x < 20) {
    const float a = threadIdx.x < 16 ? __ldg(p.A + threadIdx.x) : __ldg(p.b + threadIdx.x - 16);
    sAb[threadIdx.x] = a;
    sAs[threadIdx.x] = a * rsqrtf((float)p.had_in);
  }
  // the whole slices of real tokens take wh_fold_fast where its conditions hold (x rows staged, su aligned, 32 <=
  // had_in <= 1024 fused); LATTQ_WGMMA_F16_PREP_FAST=0 (fast = 0) keeps the general path everywhere (tests)
  const bool fastok = fast && bulk != 0 && !p.u_pre && p.had_in >= 32 && p.had_in <= 1024 &&
                      (reinterpret_cast<uintptr_t>(p.su) & 15) == 0;
  if (threadIdx.x == 0) {
    mbar_init(&full[0], 1);
    mbar_init(&full[1], 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  auto issue = [&](int64_t tok, int b) {  // one thread; padding tokens load nothing (they come last)
    if (tok < p.m) {
      mbar_expect_tx(&full[b], (unsigned)rowb);
      bulk_g2s(xsm + b * bufb, static_cast<const T*>(p.x) + tok * p.k, (unsigned)rowb, &full[b]);
    }
  };
  pdl_wait();  // x is the previous kernel's output (and the previous main kernel has read its stream-K flags)
  WHP_STAMP(1);
  if (blockIdx.x == 0)
    for (int i = threadIdx.x; i < p.sk_ctas; i += blockDim.x) p.skflag[i] = 0u;
  uint4 xpre_r[4];  // see pass 2
  float4 spre[8];
  const int fullsl = (int)(p.k / SK);  // slices entirely inside K
  if constexpr (I8) {
    // Units (token, group of W slices) over the persistent grid, warp w taking slice sg W + w of unit (token, sg):
    // with no token maximum to wait for, one token's slices spread over several CTAs.  (One CTA per token, as below,
    // left the 28 slices of a token of 8192 x 28672 two rounds of 16 warps on 16 SMs at m = 16: 11.3 us warm.)
    // x is read in place (bulk 2) or by the general path (0); early as below.
    const int sgn = (p.nslices + W - 1) / W;
    const int64_t units = mpad * sgn;
    int64_t un = blockIdx.x;
    bool xp = early && bulk == 2 && fastok && un < units && un / sgn < p.m && (int)(un % sgn) * W + warp < fullsl;
    if (xp) {
      wh_load_x<T>(static_cast<const T*>(p.x) + (un / sgn) * p.k, ((int)(un % sgn) * W + warp) * SK, xpre_r);
      wh_load_su(p.su, ((int)(un % sgn) * W + warp) * SK, spre);
    }
    pdl_launch_dependents();
    __syncthreads();  // sAs, sAb
    for (; un < units; un += gridDim.x, xp = false) {
      const int64_t tok = un / sgn;
      const int sl = (int)(un % sgn) * W + warp;
      if (sl >= p.nslices) continue;
      const T* xs = bulk == 2 && tok < p.m ? static_cast<const T*>(p.x) + tok * p.k : nullptr;
      float u[32], m1, cp;
      if (xp) wh_fold_regs<T>(xpre_r, spre, p.had_in, u, sAs, sAs + 16, m1, cp);
      else if (fastok && xs != nullptr && sl < fullsl) wh_fold_fast<T>(xs, p.su, sl * SK, p.had_in, u, sAs, sAs + 16, m1, cp);
      else prologue_fold<T>(p, tok, sl, u, sAb, sAb + 16, m1, cp, xs);
      wh_store_digits<NT>(p, tok, sl, u, m1 > 0.f ? QF<2>::QMAX / m1 : 0.f, scr);
      if (lane == 0) {
        p.scale[tok * p.nslices + sl] = tok < p.m ? (m1 > 0.f ? m1 / QF<2>::QMAX : 1.f) : 0.f;
        p.cpart[tok * p.nslices + sl] = tok < p.m ? cp : 0.f;
      }
    }
    WHP_STAMP(2);
    return;
  }
  auto tok_at = [&](int i) -> int64_t { return (int64_t)i * gridDim.x + blockIdx.x; };  // the CTA's i-th token
  // early (x read in place): the x and SU loads of each warp's first slice of the CTA's first token go out before the
  // main kernel may launch, so they enter the memory system ahead of its code ring (GEMV_PDL's trigger 3, session 9)
  bool xpre = early && bulk == 2 && fastok && tok_at(0) < p.m && warp < fullsl;
  if (xpre) {
    wh_load_x<T>(static_cast<const T*>(p.x) + tok_at(0) * p.k, warp * SK, xpre_r);
    wh_load_su(p.su, warp * SK, spre);
  }
  // The grid is persistent (at most the CTAs that fit the GPU at once, all resident), so the main kernel may launch
  // now: its CTAs take the SMs this grid leaves free (at small m most of them) or that its CTAs leave, issue their
  // first code loads and wait in griddepcontrol.wait for this grid to complete.
  pdl_launch_dependents();
  __syncthreads();
  if (bulk == 1 && threadIdx.x == 0) {
    issue(tok_at(0), 0);
    issue(tok_at(1), 1);
  }
  for (int it = 0;; ++it) {
    const int64_t tok = tok_at(it);
    if (tok >= mpad) break;
    const int b = it & 1;
    const T* xs = nullptr;
    if (bulk == 1 && tok < p.m) {
      mbar_wait(&full[b], (unsigned)(it >> 1) & 1u);
      xs = reinterpret_cast<const T*>(xsm + b * bufb);
    } else if (bulk == 2 && tok < p.m) {
      xs = static_cast<const T*>(p.x) + tok * p.k;  // read in place (16-byte loads)
    }
    float u[32], mx = 0.f, cp = 0.f;
    int jk = 0;
    for (int sl = warp; sl < p.nslices; sl += W, ++jk) {  // warp < slices: W <= slices
      float m1;
      if (jk == 0 && xpre) {  // the first slice's x (and SU) came in during the previous token's pass 2 (or early)
        if (pre == 1 && it > 0) wh_load_su(p.su, sl * SK, spre);
        wh_fold_regs<T>(xpre_r, spre, p.had_in, u, sAs, sAs + 16, m1, cp);
      } else if (fastok && xs != nullptr && sl < fullsl) {
        wh_fold_fast<T>(xs, p.su, sl * SK, p.had_in, u, sAs, sAs + 16, m1, cp);
      } else {
        prologue_fold<T>(p, tok, sl, u, sAb, sAb + 16, m1, cp, xs);
      }
      mx = fmaxf(mx, m1);
      if (keep && sl + W < p.nslices) {  // not the warp's last slice: its v waits in shared memory for pass 2
        float4* dst = kv + (size_t)(warp * (nper - 1) + jk) * 256 + lane;
#pragma unroll
        for (int i = 0; i < 8; ++i) dst[32 * i] = make_float4(u[4 * i], u[4 * i + 1], u[4 * i + 2], u[4 * i + 3]);
        if (lane == 0) kc[warp * (nper - 1) + jk] = cp;
      }
    }
    if (lane == 0) smx[warp] = mx;
    __syncthreads();
    float tm = 0.f;
    for (int i = 0; i < W; ++i) tm = fmaxf(tm, smx[i]);
    int ex = 0;
    frexpf(tm, &ex);  // tm = f 2^ex, 0.5 <= f < 1: tm 2^(15 - ex) < 2^15
    const float S = tm > 0.f ? ldexpf(1.f, 15 - ex) : 1.f;
    const float iS = 1.f / S;  // a power of two: exact
    if (warp == 0 && lane == 0) p.tinv[tok] = iS;
    // x read in place (bulk 2), pre >= 1: the x loads of this warp's first slice of the CTA's next token go out now and
    // land while this token's image is written; pre 2 (the default) its SU loads too (the same slice for every token).
    // Session 16 (h100_session16/prof_wip2_pre.log, warm prologue times): pre 2 1-6% faster than 0 on the 5 cases
    // where a CTA walks more than one token in place, pre 1 mixed.  Pass 2 holds few registers, and the next pass 1
    // uses these first.
    {
      const int64_t tn = tok_at(it + 1);
      xpre = pre > 0 && bulk == 2 && fastok && tn < p.m && warp < fullsl;
      if (xpre) {
        wh_load_x<T>(static_cast<const T*>(p.x) + tn * p.k, warp * SK, xpre_r);
        if (pre == 2) wh_load_su(p.su, warp * SK, spre);
      }
    }
    // a warp's last slice: u and cp are still that slice's if each warp has one slice or the others were kept
    const bool last_kept = keep || W == p.nslices;
    const int nmine = (p.nslices - warp + W - 1) / W;  // this warp's slices: warp + j W, j < nmine
    for (int jj = 0; jj < nmine; ++jj) {
      const int j = jj == 0 ? nmine - 1 : jj - 1;  // the last slice first: its v may still be in u
      const int sl = warp + j * W;
      if (j < nmine - 1 && keep) {
        const float4* src = kv + (size_t)(warp * (nper - 1) + j) * 256 + lane;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const float4 v = src[32 * i];
          u[4 * i] = v.x;
          u[4 * i + 1] = v.y;
          u[4 * i + 2] = v.z;
          u[4 * i + 3] = v.w;
        }
        cp = kc[warp * (nper - 1) + j];
      } else if (!last_kept || j < nmine - 1) {
        float m1;
        if (fastok && xs != nullptr && sl < fullsl) wh_fold_fast<T>(xs, p.su, sl * SK, p.had_in, u, sAs, sAs + 16, m1, cp);
        else prologue_fold<T>(p, tok, sl, u, sAb, sAb + 16, m1, cp, xs);
      }
      // t = Z v + c = (Z - 1.5) v_r + (c + 1.5 sum v_r) up to the rounding of v: the centred z values halve the
      // weight of v's rounding errors (E[(z - 1.5)^2] = 1.25 against E[z^2] = 3.5)
      const float vsum = wh_store_image<NT>(p, tok, sl, u, S, scr);
      if (lane == 0) p.cpart[tok * p.nslices + sl] = tok < p.m ? fmaf(1.5f * vsum, iS, cp) : 0.f;
    }
    __syncthreads();  // buffer b and smx are free
    if (bulk == 1 && threadIdx.x == 0) issue(tok_at(it + 2), b);
  }
  WHP_STAMP(2);
#endif
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// wgmma.mma_async m64nNk16, f16 A from registers (the mma.m16n8k16 A fragment of the warp's 16 rows) x f16 B
// (shared memory, K-major, descriptor) -> f32 D (N / 2 registers), accumulating.  sm_90a only.
template <int N> struct WgmmaH;
template <> struct WgmmaH<16> {
  static __device__ __forceinline__ void mma(float (&d)[8], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                             uint64_t desc) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n16k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7}, {%8,%9,%10,%11}, %12, 1, 1, 1, 0;\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc));
  }
};
template <> struct WgmmaH<32> {
  static __device__ __forceinline__ void mma(float (&d)[16], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                             uint64_t desc) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, {%16,%17,%18,%19}, %20, 1, 1, 1, 0;\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc));
  }
};
template <> struct WgmmaH<64> {
  static __device__ __forceinline__ void mma(float (&d)[32], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                             uint64_t desc) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, 1, 1, 1, 0;\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc));
  }
};
template <> struct WgmmaH<128> {
  static __device__ __forceinline__ void mma(float (&d)[64], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                             uint64_t desc) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, {%64,%65,%66,%67}, %68, 1, 1, 1, 0;\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc));
  }
};
template <int ND> __device__ __forceinline__ void fence_regs(float (&d)[ND]) {
#pragma unroll
  for (int i = 0; i < ND; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
// register e (0..7) of code word w as two fp16 values z - 1.5 (fields e and e + 8), exact: LOP3 + HFMA2
template <int E> __device__ __forceinline__ uint32_t wh_decode(uint32_t w) {
  // field position P >= 1 in each half: -1024 4^-P - 1.5 must be an fp16 value (-1025.5 is not)
  constexpr int P = E == 0 || E == 5 || E == 6 ? 1 : E < 5 ? E : 2;
  const uint32_t src = E == 0 ? (w << 2) : E < 5 ? w : E == 5 ? (w >> 8) : (w >> 10);
  // 1024 + z 4^P in each half: one LOP3 ((a & b) | c).  Written as C, the two constants made ptxas emit an AND and
  // an OR (LOP3 takes one immediate); session-17 SASS of wh_main_kernel: 2 LOP3 per HFMA2
  uint32_t t;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(t) : "r"(src), "n"(0x00030003u << (2 * P)), "n"(0x64006400u));
  const __half2 sc = __float2half2_rn(1.f / (float)(1 << (2 * P)));
  const __half2 of = __float2half2_rn(-1024.f / (float)(1 << (2 * P)) - 1.5f);
  const __half2 z = __hfma2(*reinterpret_cast<const __half2*>(&t), sc, of);
  return *reinterpret_cast<const uint32_t*>(&z);
}
#endif

// The token of fp32 accumulator 4 jn + 2 h + c of a thread (row g + 8 h): the wgmma.m64nNTk16 D fragment's column 8 jn +
// 2 tig + c (F16); I8, the flushed sum of the digit columns of token 4 j + tig, j = 2 jn + c (wh_main_kernel)
template <bool I8> __device__ __forceinline__ int wh_tok(int jn, int tig, int c) {
  return I8 ? 8 * jn + 4 * c + tig : 8 * jn + 2 * tig + c;
}

// I8 (session 18; the WGMMA variant at m <= 32): the integer image of wh_store_digits, wgmma.m64n(2 NT)k32 with u8 A
// fields ((w >> 2 t) & 0x03030303: the TILED words are the A fragment, two instructions per 4 weights against 9 per 8
// in f16) and s8 B digits, int32 sums per (token, slice) flushed at each slice's end (and a stream-K segment's):
// wgmma.wait_group 0, (lo + 256 hi) times the slice's scale into the fp32 sums (exact in int32: |lo + 256 hi| <=
// 1024 x 3 x 32639 < 2^31).  The rest (producer, stream-K, epilogue) is the F16 kernel's.
template <typename T, int NT, int RT, bool I8 = false>
__global__ void __launch_bounds__(WH_THREADS, 1) wh_main_kernel(FusedParams p) {
#if !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __trap();  // the host launches this only on sm_90 with an sm_90a build (wgmma_forward's checks)
#else
  constexpr int ROWS = TN * RT;
  constexpr int SB = wh_stage_bytes<NT, I8>();
  constexpr int SPQ = wh_stages_per_quad<I8>();
  constexpr int STAGES = wh_stages<NT, RT, I8>();
  constexpr int ND = NT / 2;
  constexpr int NI = I8 ? NT : 1;  // int32 accumulators per 64-row tile (N = 2 NT digit columns)
  static_assert((size_t)NT * (ROWS + 4) * 4 + 2 * ROWS * 4 <= (size_t)STAGES * SB, "the epilogue tile fits the ring");
  // [STAGES][SB]; epilogue: tile[NT][ROWS + 4] + SV and bias (had_out = 128), else tile[NT][ROWS + 1]
  // the ring's stages start at a 1024-byte boundary, as the 128-byte swizzle of the image requires (the host adds
  // 1024 bytes to the dynamic shared memory for this)
  extern __shared__ __align__(128) uint8_t wsm_raw[];
  uint8_t* const wsm = wsm_raw + ((1024u - (smem_addr(wsm_raw) & 1023u)) & 1023u);
  __shared__ __align__(8) uint64_t full[STAGES];
  __shared__ __align__(8) uint64_t empty[STAGES];
  __shared__ float csum[NT];
  __shared__ float stinv[NT];
  __shared__ float svb[2][ROWS];  // SV and bias of the epilogue's rows (shared memory: no registers over the loop)
  WH_STAMP(0);

  const int warp = __shfl_sync(0xffffffffu, (int)(threadIdx.x >> 5), 0), lane = threadIdx.x & 31;
  // Work.  Plain grid (p.sk_ctas = 0): CTA (col, rg) = (blockIdx.x, blockIdx.y) takes its tile over all of K.
  // Stream-K (p.sk_ctas = G > 0; a 1-D grid of D = p.sk_dp + G CTAs): tiles are numbered ti = rg ncols + col (the
  // plain grid's launch order).  CTA b < D takes tile b whole (data-parallel).  The U = (tiles - D) nq (tile, quad)
  // units of the remaining tiles, in tile order, are cut into G ranges of U / G <= nq units, stream-K CTA c = b - D
  // taking [c U / G, (c + 1) U / G): at most two segments, the tail of one tile and then the head of the next.  A
  // tail (a piece that does not start at quad 0) leaves its partial sums in the workspace (slot c) and raises flag
  // c; the head's CTA finishes the tile: it adds the partials of the CTAs after it in CTA order (deterministic) and
  // runs the epilogue.  Those CTAs computed their tails first, so the wait is short; it waits only on higher CTAs,
  // which are resident or can become so (G <= SMs, one CTA per SM, and the data-parallel CTAs wait on nothing).
  // m <= 64 (one token tile) has D = 0; above, the host plans D = whole waves of tiles and G for the last, partial
  // wave (session 14).
  const bool skm = p.sk_ctas > 0;
  const int nq = p.nq;
  const int64_t rgroups = (p.n + ROWS - 1) / ROWS, ncols = (p.m + NT - 1) / NT;
  // segment 0: tile (colA, rgA), quads [qA0, qA1); segment 1 (nseg = 2): tile (colB, rgB), quads [0, qB1)
  int nseg = 1, colA = (int)blockIdx.x, rgA = (int)blockIdx.y, qA0 = 0, qA1 = nq, colB = 0, rgB = 0, qB1 = 0;
  // stream-K CTA c = blockIdx.x - sk_dp (< 0: a whole tile) and its U units (recomputed after the main loop rather
  // than kept in registers over it)
  const int sk_c = skm ? (int)blockIdx.x - p.sk_dp : -1;
  auto sk_units = [&]() { return (ncols * rgroups - p.sk_dp) * (int64_t)nq; };
  if (skm) {
    int64_t ti = blockIdx.x;
    if (sk_c >= 0) {
      const int64_t U = sk_units(), G = p.sk_ctas, u0 = sk_c * U / G, u1 = (sk_c + 1) * U / G, t0 = u0 / nq;
      ti = p.sk_dp + t0;
      qA0 = (int)(u0 - t0 * nq);
      qA1 = (int)std::min<int64_t>(nq, u1 - t0 * nq);
      if (u1 > (t0 + 1) * nq) {
        nseg = 2;
        qB1 = (int)(u1 - (t0 + 1) * nq);
        colB = (int)((ti + 1) % ncols);
        rgB = (int)((ti + 1) / ncols);
      }
    }
    colA = (int)(ti % ncols);
    rgA = (int)(ti / ncols);
  }
  const int col = nseg == 2 ? colB : colA;  // the tile of the last segment (the epilogue's, if it finishes one)
  const int rgf = nseg == 2 ? rgB : rgA;
  if (threadIdx.x == 0) {
#pragma unroll
    for (int i = 0; i < STAGES; ++i) {
      mbar_init(&full[i], 1);
      mbar_init(&empty[i], WARPS);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (warp >= WARPS) {  // producer warpgroup; its warp 8 streams the segments' stages of the image into the ring
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
    if (warp > WARPS) return;
    pdl_wait();
    if (lane == 0) {
      int gr = 0;  // running stage: ring slot gr % STAGES
      for (int sgi = 0; sgi < nseg; ++sgi) {
        const uint8_t* src = p.vq + (int64_t)(sgi == 0 ? colA : colB) * p.nq4 * SPQ * SB;
        for (int gs = sgi == 0 ? qA0 * SPQ : 0; gs < (sgi == 0 ? qA1 : qB1) * SPQ; ++gs, ++gr) {
          const int s = gr % STAGES;
          if (gr >= STAGES) mbar_wait_sleep(&empty[s], (unsigned)(gr / STAGES - 1) & 1u, p.sleep_ns);
          mbar_expect_tx(&full[s], SB);
          bulk_g2s(wsm + (size_t)s * SB, src + (int64_t)gs * SB, SB, &full[s]);
        }
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  const int g = lane >> 2, tig = lane & 3;
  const int wg = warp >> 2, wq = warp & 3;
  constexpr int RQ = wh_rq<NT, RT>();
  constexpr int GS = I8 && NT * RT > 32 ? 2 : wh_gs<NT, RT>();
  if (threadIdx.x < ROWS) {
    const int64_t n0 = (int64_t)rgf * ROWS;
    const int nrow = (int)(p.n - n0 < ROWS ? p.n - n0 : ROWS), rr = threadIdx.x;
    svb[0][rr] = rr < nrow ? __ldg(p.sv + n0 + rr) : 0.f;
    svb[1][rr] = (p.bias != nullptr && rr < nrow) ? __ldg(p.bias + n0 + rr) : 0.f;
  }
  float d[RT][ND];
  // I8: the slice's int32 sums, restarted by the slice's first wgmmas (scale-d 0 while `fresh`: zeroing them after
  // each flush instead made ptxas inject warpgroup.arrive before the wgmmas, C7519), and the slice's scales of tokens
  // 4 j + tig
  int di[RT][NI];
  float scv[I8 ? NT / 4 : 1];
  int fresh = 1;
#pragma unroll
  for (int r = 0; r < RT; ++r)
#pragma unroll
    for (int i = 0; i < NI; ++i) di[r][i] = 0;
  // running stage gr, as the producer's: slot s = gr % STAGES, phase ph = (gr / STAGES) & 1, kept incrementally (the
  // division by STAGES = 24 cost a dozen uniform instructions per stage); sp = the slot of stage gr - 1
  int gr = 0, s = 0, sp = STAGES - 1;
  unsigned ph = 0;
  auto next_stage = [&]() {  // stage gr read: advance to gr + 1
    sp = s;
    ++gr;
    if (++s == STAGES) {
      s = 0;
      ph ^= 1u;
    }
  };
  for (int sgi = 0; sgi < nseg; ++sgi) {
    const int rg = sgi == 0 ? rgA : rgB, qs = sgi == 0 ? qA0 : 0, qe = sgi == 0 ? qA1 : qB1;
    const uint8_t* cbase[RT];
    bool tile_ok[RT];
#pragma unroll
    for (int r = 0; r < RT; ++r) {
      const int64_t tileI = (int64_t)rg * (8 * RT) + (wg * RT + r) * 4 + wq;
      tile_ok[r] = tileI < p.T;
      cbase[r] = p.codes + (tile_ok[r] ? tileI : 0) * p.C * 256 + g * 16;
    }
    auto load_quad = [&](int q, uint4 (&c)[RT][2]) {
      const int64_t chunk = (int64_t)q * 4 + tig;
#pragma unroll
      for (int r = 0; r < RT; ++r) {
        if (tile_ok[r] && q < qe && chunk < p.C) {
          c[r][0] = ldg_stream(cbase[r] + chunk * 256);
          c[r][1] = ldg_stream(cbase[r] + chunk * 256 + 128);
        } else {
          c[r][0] = make_uint4(0, 0, 0, 0);
          c[r][1] = c[r][0];
        }
      }
    };
    uint4 cb[RQ][RT][2];
#pragma unroll
    for (int i = 0; i < RQ; ++i)
      if (sgi > 0 || i < p.preq) load_quad(qs + i, cb[i]);
    if (sgi == 0) {
      pdl_wait();  // image, 1 / S_t and c parts of the prologue kernel (which also cleared the stream-K flags)
#pragma unroll
      for (int i = 0; i < RQ; ++i)
        if (i >= p.preq) load_quad(qs + i, cb[i]);
      WH_STAMP(1);
      if (threadIdx.x < NT) {
        const int64_t tok0 = (int64_t)col * NT;
        float c = 0.f;
        if (tok0 + threadIdx.x < p.m)
          for (int j = 0; j < p.nslices; ++j) c += p.cpart[(tok0 + threadIdx.x) * p.nslices + j];
        csum[threadIdx.x] = c;
        stinv[threadIdx.x] = I8 ? 1.f : p.tinv[tok0 + threadIdx.x];
      }
    }
#pragma unroll
    for (int r = 0; r < RT; ++r)
#pragma unroll
      for (int i = 0; i < ND; ++i) d[r][i] = 0.f;

    for (int qb = qs; qb < qe; qb += RQ) {
#pragma unroll
      for (int qi = 0; qi < RQ; ++qi) {
        const int q = qb + qi;
        if (q < qe) {
          if constexpr (I8) {
            if (q == qs || (q & 3) == 0) {  // a slice starts: its scales (used at its end, 4 quads later)
#pragma unroll
              for (int j = 0; j < NT / 4; ++j)
                scv[j] = __ldcg(p.scale + ((int64_t)(sgi == 0 ? colA : colB) * NT + 4 * j + tig) * p.nslices + (q >> 2));
            }
#pragma unroll
            for (int j = 0; j < 2; ++j) {  // stage j: words 2 j (K slots < 16) and 2 j + 1 of rows g and g + 8
              uint32_t w0[RT], w1[RT], v0[RT], v1[RT];
#pragma unroll
              for (int r = 0; r < RT; ++r) {
                w0[r] = j == 0 ? cb[qi][r][0].x : cb[qi][r][0].z;
                w1[r] = j == 0 ? cb[qi][r][0].y : cb[qi][r][0].w;
                v0[r] = j == 0 ? cb[qi][r][1].x : cb[qi][r][1].z;
                v1[r] = j == 0 ? cb[qi][r][1].y : cb[qi][r][1].w;
              }
              mbar_wait(&full[s], ph);
#ifdef LATTQ_GEMV_TRACE
              if (gr == 0) WH_STAMP(2);
#endif
              const uint32_t dlo = wh_desc_lo(smem_addr(wsm + (size_t)s * SB));
#pragma unroll
              for (int t0 = 0; t0 < 4; t0 += GS) {
                uint32_t a[GS][RT][4];
#pragma unroll
                for (int tt = 0; tt < GS; ++tt)
#pragma unroll
                  for (int r = 0; r < RT; ++r) {
                    const int sh = 2 * (t0 + tt);  // field t of every byte
                    a[tt][r][0] = (w0[r] >> sh) & 0x03030303u;
                    a[tt][r][1] = (v0[r] >> sh) & 0x03030303u;
                    a[tt][r][2] = (w1[r] >> sh) & 0x03030303u;
                    a[tt][r][3] = (v1[r] >> sh) & 0x03030303u;
#pragma unroll
                    for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(a[tt][r][i]));
                  }
                // (the empty asm pins the fields before the fence: NVVM otherwise sank the AND of field 0 between
                // the wgmmas of the two row tiles, and ptxas injected a warpgroup.arrive per stage, C7519)
                wgmma_fence();
#pragma unroll
                for (int r = 0; r < RT; ++r) fence_regs(di[r]);
#pragma unroll
                for (int tt = 0; tt < GS; ++tt)
#pragma unroll
                  for (int r = 0; r < RT; ++r)
                    Wgmma<2 * NT>::mma(di[r], a[tt][r][0], a[tt][r][1], a[tt][r][2], a[tt][r][3],
                                       wh_desc_step(dlo, t0 + tt), j == 0 && t0 == 0 && tt == 0 ? 1 - fresh : 1);
                fresh = 0;
                wgmma_commit();
                wgmma_wait<1>();
#pragma unroll
                for (int r = 0; r < RT; ++r) fence_regs(di[r]);
                if (t0 == 0 && gr > 0 && lane == 0) mbar_arrive(&empty[sp]);  // stage gr - 1 read
              }
              next_stage();
            }
            if ((q & 3) == 3 || q == qe - 1) {  // the slice (or the segment) ends: flush its sums
              wgmma_wait<0>();
#pragma unroll
              for (int r = 0; r < RT; ++r) fence_regs(di[r]);
#pragma unroll
              for (int r = 0; r < RT; ++r)
#pragma unroll
                for (int jn = 0; jn < NT / 8; ++jn)
#pragma unroll
                  for (int h = 0; h < 2; ++h)
#pragma unroll
                    for (int c = 0; c < 2; ++c) {
                      const int j = 2 * jn + c;  // token 4 j + tig: digit columns 8 j + 2 tig (lo), + 1 (hi)
                      const int v = di[r][4 * j + 2 * h] + 256 * di[r][4 * j + 2 * h + 1];
                      d[r][4 * jn + 2 * h + c] = fmaf((float)v, scv[j], d[r][4 * jn + 2 * h + c]);
                    }
              fresh = 1;
            }
          } else {
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            uint32_t wl[RT], wh[RT];
#pragma unroll
            for (int r = 0; r < RT; ++r) {
              wl[r] = j == 0 ? cb[qi][r][0].x : j == 1 ? cb[qi][r][0].y : j == 2 ? cb[qi][r][0].z : cb[qi][r][0].w;
              wh[r] = j == 0 ? cb[qi][r][1].x : j == 1 ? cb[qi][r][1].y : j == 2 ? cb[qi][r][1].z : cb[qi][r][1].w;
            }
            mbar_wait(&full[s], ph);
#ifdef LATTQ_GEMV_TRACE
            if (gr == 0) WH_STAMP(2);
#endif
            const uint32_t dlo = wh_desc_lo(smem_addr(wsm + (size_t)s * SB));
#pragma unroll
            for (int t0 = 0; t0 < 4; t0 += GS) {  // one commit group per GS k16 steps
              uint32_t a[GS][RT][4];
#pragma unroll
              for (int tt = 0; tt < GS; ++tt)
#pragma unroll
                for (int r = 0; r < RT; ++r) {
                  switch (t0 + tt) {  // registers e = 2 t (slots 2 tig + h) and 2 t + 1 (slots 8 + 2 tig + h)
                    case 0: a[tt][r][0] = wh_decode<0>(wl[r]); a[tt][r][1] = wh_decode<0>(wh[r]);
                            a[tt][r][2] = wh_decode<1>(wl[r]); a[tt][r][3] = wh_decode<1>(wh[r]); break;
                    case 1: a[tt][r][0] = wh_decode<2>(wl[r]); a[tt][r][1] = wh_decode<2>(wh[r]);
                            a[tt][r][2] = wh_decode<3>(wl[r]); a[tt][r][3] = wh_decode<3>(wh[r]); break;
                    case 2: a[tt][r][0] = wh_decode<4>(wl[r]); a[tt][r][1] = wh_decode<4>(wh[r]);
                            a[tt][r][2] = wh_decode<5>(wl[r]); a[tt][r][3] = wh_decode<5>(wh[r]); break;
                    default: a[tt][r][0] = wh_decode<6>(wl[r]); a[tt][r][1] = wh_decode<6>(wh[r]);
                             a[tt][r][2] = wh_decode<7>(wl[r]); a[tt][r][3] = wh_decode<7>(wh[r]); break;
                  }
                }
              wgmma_fence();
#pragma unroll
              for (int r = 0; r < RT; ++r) fence_regs(d[r]);
#pragma unroll
              for (int tt = 0; tt < GS; ++tt)
#pragma unroll
                for (int r = 0; r < RT; ++r)
                  WgmmaH<NT>::mma(d[r], a[tt][r][0], a[tt][r][1], a[tt][r][2], a[tt][r][3],
                                  wh_desc_step(dlo, t0 + tt));
              wgmma_commit();
              wgmma_wait<1>();  // the previous group is complete
#pragma unroll
              for (int r = 0; r < RT; ++r) fence_regs(d[r]);
              if (t0 == 0 && gr > 0 && lane == 0) mbar_arrive(&empty[sp]);  // stage gr - 1 read
            }
            next_stage();
          }
          }
          load_quad(q + RQ, cb[qi]);  // the slot's words are decoded by now
          // stream-K: the ring's loads past this segment's end would load nothing; instead warm L2 with the codes
          // of the next segment's first RQ quads, whose ring starts cold (about 1 us of DRAM latency per CTA)
          if (sgi + 1 < nseg && q + RQ >= qe) {
            const int qn = q + RQ - qe;
#pragma unroll
            for (int r = 0; r < RT; ++r) {
              const int64_t tileI = (int64_t)rgB * (8 * RT) + (wg * RT + r) * 4 + wq;
              const int64_t chunk = (int64_t)qn * 4 + tig;
              if (tileI < p.T && qn < nq && chunk < p.C) {
                const uint8_t* a = p.codes + tileI * p.C * 256 + g * 16 + chunk * 256;
                asm volatile("prefetch.global.L2 [%0];" ::"l"(a));
                asm volatile("prefetch.global.L2 [%0];" ::"l"(a + 128));
              }
            }
          }
        }
      }
    }
    wgmma_wait<0>();
#pragma unroll
    for (int r = 0; r < RT; ++r) fence_regs(d[r]);
    WH_STAMP(3);
    if (qs > 0) {  // a tail (stream-K): partial sums to slot sk_c (fragment order, coalesced), flag sk_c
      float4* dst = reinterpret_cast<float4*>(p.skpart) + (int64_t)sk_c * (RT * ND / 4) * 256 + threadIdx.x;
#pragma unroll
      for (int r = 0; r < RT; ++r)
#pragma unroll
        for (int i4 = 0; i4 < ND / 4; ++i4)
          __stcg(dst + (r * (ND / 4) + i4) * 256, make_float4(d[r][4 * i4], d[r][4 * i4 + 1], d[r][4 * i4 + 2], d[r][4 * i4 + 3]));
      consumer_sync();
      if (threadIdx.x == 0) flag_release(p.skflag + sk_c, 1u);
      if (sgi == nseg - 1) {  // a tail as the last segment: the row group is finished elsewhere
        WH_STAMP(4);
        WH_STAMP(5);
        return;
      }
    }
  }
  if (sk_c >= 0 && (nseg == 2 ? qB1 : qA1) < nq) {  // a head short of the tile's end: add the tails, CTA order
    const int64_t U = sk_units(), G = p.sk_ctas, t_end = ((int64_t)sk_c * U / G / nq + nseg) * nq;
    for (int64_t c2 = (int64_t)sk_c + 1; c2 < G && c2 * U / G < t_end; ++c2) {
      if (threadIdx.x == 0)
        while (flag_acquire(p.skflag + c2) == 0u) __nanosleep(32);
      consumer_sync();
      const float4* src = reinterpret_cast<const float4*>(p.skpart) + c2 * (RT * ND / 4) * 256 + threadIdx.x;
#pragma unroll
      for (int r = 0; r < RT; ++r)
#pragma unroll
        for (int i4 = 0; i4 < ND / 4; ++i4) {
          const float4 v = __ldcg(src + (r * (ND / 4) + i4) * 256);
          d[r][4 * i4] += v.x;
          d[r][4 * i4 + 1] += v.y;
          d[r][4 * i4 + 2] += v.z;
          d[r][4 * i4 + 3] += v.w;
        }
    }
  }
  consumer_sync();  // every consumer's wgmmas are complete: the ring is free; csum / stinv / svb written
  WH_STAMP(4);
  const int64_t tok0 = (int64_t)col * NT;
  const int ntok = (int)(p.m - tok0 < NT ? p.m - tok0 : NT);
  const int64_t n0 = (int64_t)rgf * ROWS;
  const int nrow = (int)(p.n - n0 < ROWS ? p.n - n0 : ROWS);
  const int my_row = threadIdx.x % ROWS;
  const float sv_r = svb[0][my_row], bias_r = svb[1][my_row];

  // t = d / S_t + c (rows past n: 0, they enter the output Hadamard)
#pragma unroll
  for (int r = 0; r < RT; ++r)
#pragma unroll
    for (int jn = 0; jn < NT / 8; ++jn)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int tk = wh_tok<I8>(jn, tig, c), rr = ((wg * RT + r) * 4 + wq) * 16 + g + 8 * h;
          float& v = d[r][4 * jn + 2 * h + c];
          v = rr < nrow ? fmaf(v, stinv[tk], csum[tk]) : 0.f;
        }
  if (p.had_out == TN && p.tout == nullptr) {
    // had_out = 128 (session 15): the butterflies over row bit 3 (rows g / g + 8 of the thread) and, with RT = 2, bit
    // 6 (r: row = wg 128 + r 64 + wq 16 + 8 h + g) run in registers; one pass over a shared-memory tile (row stride
    // ROWS + 4: the fragment stores and the pass's 16-byte loads meet no bank conflicts) runs the rest, bits 0..2, 4, 5
    // (and 6 with RT = 1), on items of 32 (64) values of one token, then applies SV (times 128^-1/2), the bias and the
    // cast into the output tile (8 consecutive rows per 16-byte store).  The output tile then leaves for y in whole
    // token rows (128 RT rows, 16 bytes per lane).  Session 14's epilogue ran bits 0..2 as shuffles and stored 2-byte
    // values straight to y, in 32-byte pieces of 8 tokens' rows: the per-CTA trace measured 6.6-15 us per tile, and
    // this pass with the y stores dropped 2.2-4.7 us (h100_session15/whtrace_*).
#pragma unroll
    for (int r = 0; r < RT; ++r)
#pragma unroll
      for (int i = 0; i < ND; ++i)
        if ((i & 2) == 0) {  // h = 0 holds row g, i + 2 row g + 8
          const float v = d[r][i], w = d[r][i + 2];
          d[r][i] = v + w;
          d[r][i + 2] = v - w;
        }
    if constexpr (RT == 2) {
#pragma unroll
      for (int i = 0; i < ND; ++i) {  // r = 0: row bit 6 clear, r = 1: set
        const float v = d[0][i], w = d[1][i];
        d[0][i] = v + w;
        d[1][i] = v - w;
      }
    }
    constexpr int S = ROWS + 4;
    float* tl = reinterpret_cast<float*>(wsm);
    float* ssv = reinterpret_cast<float*>(wsm + (size_t)NT * S * 4);
    float* sbias = ssv + ROWS;
#pragma unroll
    for (int r = 0; r < RT; ++r)
#pragma unroll
      for (int jn = 0; jn < NT / 8; ++jn)
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int c = 0; c < 2; ++c)
            tl[wh_tok<I8>(jn, tig, c) * S + ((wg * RT + r) * 4 + wq) * 16 + g + 8 * h] = d[r][4 * jn + 2 * h + c];
    if (threadIdx.x < ROWS) {  // my_row == threadIdx.x
      ssv[my_row] = sv_r * rsqrtf((float)TN);
      sbias[my_row] = bias_r;
    }
    consumer_sync();
    WH_STAMP(6);
    // item it: token tk = 8 (rest % (NT / 8)) + (it & 7), row bit 3 = b3, rows base + (j & 7) + 16 (j >> 3) for value j,
    // base = 64 (rest / (NT / 8)) + 8 b3 (RT = 2: 128-row block and bit 6); lanes l and l + 8 store the two halves of
    // the same 32-byte sector
    constexpr int NV = RT == 2 ? 32 : 64;
    constexpr int NIT = NT * 2 * (RT == 2 ? 4 : 1);
    constexpr int OS = wh_out_stride<NT, RT>();
    uint8_t* const ot = wsm + wh_out_off<NT, RT, I8>();
    for (int it = threadIdx.x; it < NIT; it += 256) {
      const int b3 = (it >> 3) & 1, rest = it >> 4;
      const int tk = 8 * (rest % (NT / 8)) + (it & 7), base = 64 * (rest / (NT / 8)) + 8 * b3;
      const float* src = tl + tk * S + base;
      float v[NV];
#pragma unroll
      for (int q = 0; q < NV / 8; ++q) {
        const float4 a = *reinterpret_cast<const float4*>(src + 16 * q);
        const float4 b = *reinterpret_cast<const float4*>(src + 16 * q + 4);
        v[8 * q] = a.x, v[8 * q + 1] = a.y, v[8 * q + 2] = a.z, v[8 * q + 3] = a.w;
        v[8 * q + 4] = b.x, v[8 * q + 5] = b.y, v[8 * q + 6] = b.z, v[8 * q + 7] = b.w;
      }
      lane_butterflies(v);
      {
#pragma unroll
        for (int q = 0; q < NV / 8; ++q) {
          const int rr = base + 16 * q;  // rows rr .. rr + 7
          const float4 s0 = *reinterpret_cast<const float4*>(ssv + rr), s1 = *reinterpret_cast<const float4*>(ssv + rr + 4);
          const float4 c0 = *reinterpret_cast<const float4*>(sbias + rr), c1 = *reinterpret_cast<const float4*>(sbias + rr + 4);
          const float sc[8] = {s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w};
          const float bc[8] = {c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w};
          __align__(16) T o[8];
#pragma unroll
          for (int e = 0; e < 8; ++e) o[e] = from_f<T>(fmaf(v[8 * q + e], sc[e], bc[e]));
          *reinterpret_cast<uint4*>(ot + tk * OS + rr * 2) = *reinterpret_cast<const uint4*>(o);
        }
      }
    }
    consumer_sync();
    // the output tile to y: a token's row of 128 RT outputs is 16 RT lanes x 16 bytes (whole 128-byte lines where n
    // is a multiple of 64)
    constexpr int LPT = 16 * RT;  // lanes per token row
    const bool vec = (p.n & 7) == 0 && (reinterpret_cast<uintptr_t>(p.y) & 15) == 0;
    T* y = static_cast<T*>(p.y);
    for (int i = threadIdx.x; i < NT * LPT && !WH_NOSTORE(); i += 256) {
      const int tk = i / LPT, rr = (i % LPT) * 8;
      if (tk >= ntok || rr >= nrow) continue;
      const uint4 o = *reinterpret_cast<const uint4*>(ot + tk * OS + rr * 2);
      T* yr = y + (tok0 + tk) * p.n + n0 + rr;
      if (vec && rr + 8 <= nrow) {
        *reinterpret_cast<uint4*>(yr) = o;
      } else {
        const uint32_t ow[4] = {o.x, o.y, o.z, o.w};
        static_assert(sizeof(T) == 2, "16-bit outputs");
#pragma unroll
        for (int e = 0; e < 8; ++e)
          if (rr + e < nrow) reinterpret_cast<uint16_t*>(yr)[e] = (uint16_t)(ow[e >> 1] >> (16 * (e & 1)));
      }
    }
    WH_STAMP(5);
    return;
  }
  float (*tile)[ROWS + 1] = reinterpret_cast<float (*)[ROWS + 1]>(wsm);
#pragma unroll
  for (int r = 0; r < RT; ++r)
#pragma unroll
    for (int jn = 0; jn < NT / 8; ++jn)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int c = 0; c < 2; ++c)
          tile[wh_tok<I8>(jn, tig, c)][((wg * RT + r) * 4 + wq) * 16 + g + 8 * h] = d[r][4 * jn + 2 * h + c];
  consumer_sync();
  tile_epilogue<T, void (*)(), ROWS>(p, tile, ntok, nrow, tok0, n0, sv_r, bias_r, consumer_sync);
  WH_STAMP(5);
#endif
}

struct FusedPlan {
  int parts;
  int64_t nslices, nq, ncols, rgroups, splits, sps;
  bool fuse_in, fuse_out;
  size_t smem;
  size_t off_u, off_t, total;
};


// with_device = false: only the workspace part (device independent), for lattq_cuda_forward_workspace_size
FusedPlan make_fused_plan(const lattq_layer_desc* d, int64_t m, int32_t dtype, bool with_device) {
  FusedPlan P;
  P.parts = dtype == LATTQ_F32 ? 3 : 2;
  P.nslices = cdiv(d->k, SK);
  P.nq = cdiv(d->k, 256);
  P.ncols = cdiv(std::max<int64_t>(m, 1), 8);
  P.rgroups = cdiv(d->n, TN);
  P.fuse_in = d->had_in <= SK;
  P.fuse_out = d->had_out <= TN;
  P.splits = 1;
  P.sps = P.nslices;
  if (with_device && device_props().major >= 9) {
    // K splits (cluster size <= 8): aim at about two CTAs per SM (LATTQ_FUSED_CTAS_PER_SM overrides)
    int ctas_per_sm = 2;
    if (const char* e = std::getenv("LATTQ_FUSED_CTAS_PER_SM")) {
      const int v = std::atoi(e);
      if (v >= 1 && v <= 64) ctas_per_sm = v;
    }
    const int64_t base = P.rgroups * P.ncols;
    const int64_t want = cdiv((int64_t)ctas_per_sm * device_props().sm, base);
    // LATTQ_FUSED_MAX_SPLITS (1..8) caps the cluster size: 1 runs the sm_80 code path (whole K per CTA) on sm_90
    int64_t cap = MAX_SPLITS;
    if (const char* e = std::getenv("LATTQ_FUSED_MAX_SPLITS")) {
      const int v = std::atoi(e);
      if (v >= 1 && v <= MAX_SPLITS) cap = v;
    }
    const int64_t s = std::max<int64_t>(1, std::min<int64_t>({want, cap, P.nslices}));
    P.sps = cdiv(P.nslices, s);
    P.splits = cdiv(P.nslices, P.sps);
  }
  const int sb = P.parts == 2 ? chunk_slices<2>() : chunk_slices<3>();
  const int sbytes = P.parts == 2 ? slice_bytes<2>() : slice_bytes<3>();
  P.smem = (size_t)sb * sbytes;
  size_t o = 0;
  auto take = [&](size_t bytes) { size_t at = o; o += align256(bytes); return at; };
  P.off_u = take(P.fuse_in ? 0 : (size_t)m * d->k * 4);
  P.off_t = take(P.fuse_out ? 0 : (size_t)m * d->n * 4);
  P.total = o;
  return P;
}

template <typename T, int PARTS>
lattq_status fused_launch_t(const char* fn, const lattq_layer* L, const void* x, int64_t m, void* y, char* ws,
                            const FusedPlan& P, cudaStream_t s) {
  const lattq_layer_desc& d = L->desc;
  const int32_t dt = std::is_same<T, float>::value ? LATTQ_F32 : std::is_same<T, __half>::value ? LATTQ_F16 : LATTQ_BF16;
  FusedParams p = {};
  p.codes = L->codes;
  p.A = L->A;
  p.b = L->b;
  p.su = L->su;
  p.sv = L->sv;
  p.bias = L->bias;
  p.x = x;
  p.u_pre = P.fuse_in ? 0 : 1;
  p.n = d.n;
  p.k = d.k;
  p.m = m;
  p.C = cdiv(d.k / 4, 16);
  p.T = cdiv(d.n, 16);
  p.nslices = (int)P.nslices;
  p.nq = (int)P.nq;
  p.had_in = d.had_in;
  p.had_out = d.had_out;
  p.splits = (int)P.splits;
  p.sps = (int)P.sps;
  p.tout = P.fuse_out ? nullptr : reinterpret_cast<float*>(ws + P.off_t);
  p.y = y;
  lattq_status r;
  if (!P.fuse_in) {  // u = H_in(SU x) by the reference stages (fp32)
    float* u = reinterpret_cast<float*>(ws + P.off_u);
    const int nb = (int)std::max<int64_t>(1, std::min<int64_t>(cdiv(m * d.k, 256), 65536));
    if ((r = ref_scale_in_launch(fn, x, dt, L->su, u, m, d.k, nb, s))) return r;
    if ((r = fwht_launch(fn, u, LATTQ_F32, m, d.k, d.had_in, s))) return r;
    p.x = u;
  }
  static int smem_set[16] = {};  // per template instance and device
  const int cur = current_device();
  if (!smem_set[cur & 15]) {
    if (cudaFuncSetAttribute(fused_gemv_kernel<T, PARTS>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)P.smem) !=
        cudaSuccess) {
      cudaGetLastError();
      return LQ_ERR(Device, "%s: cannot set the dynamic shared memory of fused_gemv_kernel to %zu bytes", fn, P.smem);
    }
    smem_set[cur & 15] = 1;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3((unsigned)P.ncols, (unsigned)P.rgroups, (unsigned)P.splits);
  cfg.blockDim = dim3(256);
  cfg.dynamicSmemBytes = P.smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[2];
  int na = 0;
  if (device_props().major >= 9) {
    attr[na].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[na].val.programmaticStreamSerializationAllowed = 1;
    ++na;
    if (P.splits > 1) {
      attr[na].id = cudaLaunchAttributeClusterDimension;
      attr[na].val.clusterDim.x = 1;
      attr[na].val.clusterDim.y = 1;
      attr[na].val.clusterDim.z = (unsigned)P.splits;
      ++na;
    }
  }
  cfg.attrs = attr;
  cfg.numAttrs = na;
  const cudaError_t e = cudaLaunchKernelEx(&cfg, fused_gemv_kernel<T, PARTS>, p);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return LQ_ERR(Device, "%s: launching fused_gemv_kernel (grid %lld x %lld x %lld, cluster %lld) failed: %s", fn,
                  (long long)P.ncols, (long long)P.rgroups, (long long)P.splits, (long long)P.splits,
                  cudaGetErrorString(e));
  }
  if ((r = check_launch(fn, "fused_gemv_kernel"))) return r;
  if (!P.fuse_out) {
    float* t = reinterpret_cast<float*>(ws + P.off_t);
    if ((r = fwht_launch(fn, t, LATTQ_F32, m, d.n, d.had_out, s))) return r;
    if ((r = ref_epilogue_launch(fn, t, L->sv, L->bias, y, dt, m, d.n, s))) return r;
  }
  return LATTQ_OK;
}

// ---- tiled GEMM host side -------------------------------------------------------------------
struct GemmPlan {
  int parts;
  int wg_ntok;     // 0: TILED_GEMM; else WGMMA with tiles of wg_ntok tokens
  int wg_cluster;  // WGMMA: CTAs (row groups) sharing each B stage by multicast, 1 or 2
  int64_t nslices, nq, nq4, mpad, ncols, rgroups;
  bool fuse_in, fuse_out;
  size_t smem;
  size_t off_vq, off_scale, off_cpart, off_u, off_t, total;
};

// WGMMA token tile (LATTQ_WGMMA_NTOK = 8|16|32|64 forces one): the smallest of 8 / 16 / 32 that holds m, else 64
// unless 64-token tiles leave SMs idle (fewer CTAs than SMs: then 32; H100 sweep, bench/results: 4096x4096 at
// m = 64 31.0 us with 32 vs 38.1 with 64, 28672x8192 93.6 with 64 vs 126.0 with 32).  sms = 0: the workspace
// bound (64, the largest padding of m).
int wg_ntok_for(int64_t m, int64_t rgroups, int sms) {
  if (const char* e = std::getenv("LATTQ_WGMMA_NTOK")) {
    const int v = std::atoi(e);
    if (v == 8 || v == 16 || v == 32 || v == 64) return v;
  }
  if (sms == 0) return 64;
  if (m <= 32) return m <= 8 ? 8 : m <= 16 ? 16 : 32;
  return rgroups * cdiv(m, 64) < sms ? 32 : 64;
}

// wgmma_sms: 0 = the device-independent workspace bound (any token tile fits), else the device's SM count
GemmPlan make_gemm_plan(const lattq_layer_desc* d, int64_t m, int32_t dtype, bool wgmma = false, int wgmma_sms = 0) {
  GemmPlan P;
  P.parts = dtype == LATTQ_F32 ? 3 : 2;
  P.wg_ntok = wgmma ? wg_ntok_for(m, cdiv(d->n, TN), wgmma_sms) : 0;
  if (wgmma && wgmma_sms == 0) P.wg_ntok = 64;  // sizing: the largest token padding whatever the knobs say
  // LATTQ_WGMMA_CLUSTER = 2 shares each B stage between two row groups by multicast.  Measured slower at every
  // size (H100: 28672x8192 m = 2048 2888 us vs 2331 us), so off unless forced (tests, sweeps).
  P.wg_cluster = 1;
  if (wgmma) {
    if (const char* e = std::getenv("LATTQ_WGMMA_CLUSTER")) {
      const int v = std::atoi(e);
      if (v == 1 || v == 2) P.wg_cluster = v;
    }
  }
  P.nslices = cdiv(d->k, SK);
  P.nq = cdiv(d->k, 256);
  P.nq4 = P.nslices * 4;
  const int tile_tok = wgmma ? P.wg_ntok : GM_TOK;
  P.ncols = cdiv(std::max<int64_t>(m, 1), tile_tok);
  P.mpad = P.ncols * tile_tok;
  P.rgroups = cdiv(d->n, TN);
  P.fuse_in = d->had_in <= SK;
  P.fuse_out = d->had_out <= TN;
  const size_t qb = (size_t)(P.parts == 2 ? slice_bytes<2>() : slice_bytes<3>()) / 4;
  P.smem = (size_t)(P.parts == 2 ? gm_stages<2>() : gm_stages<3>()) * 8 * qb;  // >= the 64 x 129 fp32 epilogue tile
  size_t vq_bytes = (size_t)(P.mpad / 8) * P.nq4 * qb;
  if (wgmma) {  // 512 bytes per (token, quad) either way (f16/bf16); the ring holds WG_STAGES quads of a tile
    P.smem = (size_t)WG_STAGES * 512 * P.wg_ntok;
    vq_bytes = (size_t)P.mpad * P.nq4 * 512;
  }
  size_t o = 0;
  auto take = [&](size_t bytes) { size_t at = o; o += align256(bytes); return at; };
  P.off_vq = take(vq_bytes);
  P.off_scale = take((size_t)P.mpad * P.nslices * 4);
  P.off_cpart = take((size_t)P.mpad * P.nslices * 4);
  P.off_u = take(P.fuse_in ? 0 : (size_t)m * d->k * 4);
  P.off_t = take(P.fuse_out ? 0 : (size_t)m * d->n * 4);
  P.total = o;
  return P;
}

// The parameters shared by the tiled GEMMs (TILED_GEMM, WGMMA: GemmPlan; WGMMA_F16: WhPlan): layer, shapes, K slices
// and quads, the unfused-transform buffers; the callers add their workspace arrays.
template <class Plan>
FusedParams tiled_params(const lattq_layer* L, const void* x, int64_t m, void* y, char* ws, const Plan& P) {
  const lattq_layer_desc& d = L->desc;
  FusedParams p = {};
  p.codes = L->codes;
  p.A = L->A;
  p.b = L->b;
  p.su = L->su;
  p.sv = L->sv;
  p.bias = L->bias;
  p.x = x;
  p.u_pre = P.fuse_in ? 0 : 1;
  p.n = d.n;
  p.k = d.k;
  p.m = m;
  p.C = cdiv(d.k / 4, 16);
  p.T = cdiv(d.n, 16);
  p.nslices = (int)P.nslices;
  p.nq = (int)P.nq;
  p.nq4 = (int)P.nq4;
  p.had_in = d.had_in;
  p.had_out = d.had_out;
  p.splits = 1;
  p.sps = (int)P.nslices;
  p.tout = P.fuse_out ? nullptr : reinterpret_cast<float*>(ws + P.off_t);
  p.y = y;
  return p;
}

// TILED_GEMM (WG_NTOK = 0) and WGMMA (WG_NTOK = token tile): the same workspace, prologue and transforms
template <typename T, int PARTS, int WG_NTOK>
lattq_status gemm_launch_t(const char* fn, const lattq_layer* L, const void* x, int64_t m, void* y, char* ws,
                           const GemmPlan& P, cudaStream_t s) {
  const lattq_layer_desc& d = L->desc;
  const int32_t dt = std::is_same<T, float>::value ? LATTQ_F32 : std::is_same<T, __half>::value ? LATTQ_F16 : LATTQ_BF16;
  static_assert(sizeof(float) * GM_TOK * (TN + 1) <= gm_stages<PARTS>() * 8 * (slice_bytes<PARTS>() / 4),
                "the epilogue tile fits the ring");
  FusedParams p = tiled_params(L, x, m, y, ws, P);
  p.vq = reinterpret_cast<uint8_t*>(ws + P.off_vq);
  p.scale = reinterpret_cast<float*>(ws + P.off_scale);
  p.cpart = reinterpret_cast<float*>(ws + P.off_cpart);
  const char* vname = WG_NTOK ? "wgmma" : "tiled_gemm";
  const size_t static_smem = WG_NTOK ? WG_NTOK * 4 + 2 * WG_STAGES * 8 : GM_TOK * 4;
  if ((size_t)device_props().smem_optin < P.smem + static_smem)
    return LQ_ERR(Unsupported, "%s: variant %s needs %zu bytes of shared memory per block, this device allows %d",
                  fn, vname, P.smem + static_smem, device_props().smem_optin);
  lattq_status r;
  if (!P.fuse_in) {
    float* u = reinterpret_cast<float*>(ws + P.off_u);
    const int nb = (int)std::max<int64_t>(1, std::min<int64_t>(cdiv(m * d.k, 256), 65536));
    if ((r = ref_scale_in_launch(fn, x, dt, L->su, u, m, d.k, nb, s))) return r;
    if ((r = fwht_launch(fn, u, LATTQ_F32, m, d.k, d.had_in, s))) return r;
    p.x = u;
  }
  gemm_prologue_kernel<T, PARTS, WG_NTOK><<<dim3((unsigned)P.nslices, (unsigned)(P.mpad / 8)), 256, 0, s>>>(p);
  if ((r = check_launch(fn, "gemm_prologue_kernel"))) return r;
  void (*kern)(FusedParams);
  if constexpr (WG_NTOK == 0) kern = gemm_main_kernel<T, PARTS>;
  else kern = P.wg_cluster > 1 ? wgmma_main_kernel<T, WG_NTOK, 2> : wgmma_main_kernel<T, WG_NTOK, 1>;
  const int cl = WG_NTOK ? P.wg_cluster : 1;
  static int smem_set[16][2] = {};  // per device and kernel (cluster size 1 / 2)
  const int cur = current_device();
  if (!smem_set[cur & 15][cl - 1]) {
    if (cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)P.smem) != cudaSuccess) {
      cudaGetLastError();
      return LQ_ERR(Device, "%s: cannot set the dynamic shared memory of the %s kernel to %zu bytes", fn, vname, P.smem);
    }
    smem_set[cur & 15][cl - 1] = 1;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3((unsigned)P.ncols, (unsigned)(cdiv(P.rgroups, cl) * cl), 1);
  cfg.blockDim = dim3(WG_NTOK ? WG_THREADS : 256);
  cfg.dynamicSmemBytes = P.smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  attr[1].id = cudaLaunchAttributeClusterDimension;
  attr[1].val.clusterDim.x = 1;
  attr[1].val.clusterDim.y = (unsigned)cl;
  attr[1].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = device_props().major >= 9 ? (cl > 1 ? 2 : 1) : 0;
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kern, p);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return LQ_ERR(Device, "%s: launching the %s main kernel failed: %s", fn, vname, cudaGetErrorString(e));
  }
  if ((r = check_launch(fn, vname))) return r;
  if (!P.fuse_out) {
    float* t = reinterpret_cast<float*>(ws + P.off_t);
    if ((r = fwht_launch(fn, t, LATTQ_F32, m, d.n, d.had_out, s))) return r;
    if ((r = ref_epilogue_launch(fn, t, L->sv, L->bias, y, dt, m, d.n, s))) return r;
  }
  return LATTQ_OK;
}

}  // namespace

const char* fused_unsupported_reason(const lattq_layer_desc* d, int32_t dtype) {
  (void)dtype;
  if (d->bits != 2 || d->dim != 4) return "needs bits = 2 and dim = 4";
  if (d->n > (int64_t)65535 * TN) return "n too large";
  if (cdiv(d->k, SK) > 2147483647 / 4) return "k too large";
  return "";
}

size_t fused_workspace_bytes(const lattq_layer_desc* d, int64_t m, int32_t dtype) {
  return make_fused_plan(d, m, dtype, false).total;
}

lattq_status fused_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                           void* ws, size_t ws_bytes, cudaStream_t s) {
  const FusedPlan P = make_fused_plan(&L->desc, m, dtype, true);
  if (ws_bytes < P.total) return LQ_ERR(Workspace, "%s: workspace too small (%zu < %zu)", fn, ws_bytes, P.total);
  if (P.ncols > 2147483647 || P.rgroups > 65535) return LQ_ERR(Shape, "%s: m or n too large for this variant", fn);
  char* w = static_cast<char*>(ws);
  switch (dtype) {
    case LATTQ_F32: return fused_launch_t<float, 3>(fn, L, x, m, y, w, P, s);
    case LATTQ_F16: return fused_launch_t<__half, 2>(fn, L, x, m, y, w, P, s);
    case LATTQ_BF16: return fused_launch_t<__nv_bfloat16, 2>(fn, L, x, m, y, w, P, s);
  }
  return LQ_ERR(Dtype, "%s: argument 'dtype' = %d is not supported", fn, dtype);
}

}  // namespace lattq_cuda

namespace lattq_cuda {

const char* gemm_unsupported_reason(const lattq_layer_desc* d, int32_t dtype) {
  (void)dtype;
  if (d->bits != 2 || d->dim != 4) return "needs bits = 2 and dim = 4";
  if (d->n > (int64_t)65535 * TN) return "n too large";
  if (cdiv(d->k, SK) > 65535) return "k too large";
  return "";
}

size_t gemm_workspace_bytes(const lattq_layer_desc* d, int64_t m, int32_t dtype) {
  return make_gemm_plan(d, m, dtype).total;
}

lattq_status gemm_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                          void* ws, size_t ws_bytes, cudaStream_t s) {
  const GemmPlan P = make_gemm_plan(&L->desc, m, dtype);
  if (ws_bytes < P.total) return LQ_ERR(Workspace, "%s: workspace too small (%zu < %zu)", fn, ws_bytes, P.total);
  if (P.rgroups > 65535) return LQ_ERR(Shape, "%s: n too large for this variant", fn);
  char* w = static_cast<char*>(ws);
  switch (dtype) {
    case LATTQ_F32: return gemm_launch_t<float, 3, 0>(fn, L, x, m, y, w, P, s);
    case LATTQ_F16: return gemm_launch_t<__half, 2, 0>(fn, L, x, m, y, w, P, s);
    case LATTQ_BF16: return gemm_launch_t<__nv_bfloat16, 2, 0>(fn, L, x, m, y, w, P, s);
  }
  return LQ_ERR(Dtype, "%s: argument 'dtype' = %d is not supported", fn, dtype);
}

}  // namespace lattq_cuda

namespace lattq_cuda {

const char* wgmma_unsupported_reason(const lattq_layer_desc* d, int32_t dtype) {
  const char* why = gemm_unsupported_reason(d, dtype);
  if (why[0]) return why;
  if (dtype == LATTQ_F32) return "needs f16 or bf16 activations";
#ifndef LATTQ_CUDA_SM90A
  return "this build has no sm_90a code (CMAKE_CUDA_ARCHITECTURES without 90a)";
#else
  return "";
#endif
}

bool wgmma_wh_serves(int64_t m);
size_t wgmma_wh_workspace_bytes(const lattq_layer_desc* d, int64_t m);
lattq_status wgmma_wh_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                              void* ws, size_t ws_bytes, cudaStream_t s);

// the session-5 kernel's workspace, and at m <= 32 the integer kernel's (wgmma_wh_serves): a size queried with either
// setting fits both
size_t wgmma_workspace_bytes(const lattq_layer_desc* d, int64_t m, int32_t dtype) {
  const size_t a = make_gemm_plan(d, m, dtype, true, 0).total;
  return m <= 32 ? std::max(a, wgmma_wh_workspace_bytes(d, m)) : a;
}

// WGMMA runs here: an sm_90 device and a build with sm_90a code
bool wgmma_available() {
#ifdef LATTQ_CUDA_SM90A
  return device_props().major == 9;
#else
  return false;
#endif
}

// AUTO's choice of WGMMA (H100, bench/results/bench_gemm.md): every m >= 64 (faster than IMMA and TILED_GEMM on
// all seven issue shapes); 16 <= m < 64 only when the CTAs fill the GPU (n >= 11008 at m = 16: 28672x8192 66 us
// vs IMMA 84; 4096 x K loses: 29 / 47 / 55 us vs 21 / 29 / 37).
bool wgmma_preferred(const lattq_layer_desc* d, int64_t m) {
  if (m >= 64) return true;
  if (m < 16) return false;
  const int64_t ctas = cdiv(d->n, TN) * cdiv(m, m <= 16 ? 16 : 32);
  return ctas >= (m <= 16 ? 80 : 64);
}

lattq_status wgmma_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                           void* ws, size_t ws_bytes, cudaStream_t s) {
  if (device_props().major != 9)
    return LQ_ERR(Unsupported, "%s: variant wgmma needs an sm_90 (Hopper) GPU, this one is sm_%d", fn,
                  device_props().major * 10);
  if (dtype != LATTQ_F16 && dtype != LATTQ_BF16)
    return LQ_ERR(Unsupported, "%s: variant wgmma needs f16 or bf16 activations", fn);
  if (wgmma_wh_serves(m)) return wgmma_wh_forward(fn, L, x, dtype, m, y, ws, ws_bytes, s);
  const GemmPlan P = make_gemm_plan(&L->desc, m, dtype, true, device_props().sm);
  if (ws_bytes < P.total) return LQ_ERR(Workspace, "%s: workspace too small (%zu < %zu)", fn, ws_bytes, P.total);
  if (P.rgroups > 65535) return LQ_ERR(Shape, "%s: n too large for this variant", fn);
  char* w = static_cast<char*>(ws);
  const bool f16 = dtype == LATTQ_F16;
  switch (P.wg_ntok) {
    case 8: return f16 ? gemm_launch_t<__half, 2, 8>(fn, L, x, m, y, w, P, s) : gemm_launch_t<__nv_bfloat16, 2, 8>(fn, L, x, m, y, w, P, s);
    case 16: return f16 ? gemm_launch_t<__half, 2, 16>(fn, L, x, m, y, w, P, s) : gemm_launch_t<__nv_bfloat16, 2, 16>(fn, L, x, m, y, w, P, s);
    case 32: return f16 ? gemm_launch_t<__half, 2, 32>(fn, L, x, m, y, w, P, s) : gemm_launch_t<__nv_bfloat16, 2, 32>(fn, L, x, m, y, w, P, s);
    default: return f16 ? gemm_launch_t<__half, 2, 64>(fn, L, x, m, y, w, P, s) : gemm_launch_t<__nv_bfloat16, 2, 64>(fn, L, x, m, y, w, P, s);
  }
}

// ---- WGMMA_F16 host side ---------------------------------------------------------------------
namespace {

struct WhPlan {
  int nt, rt;  // token tile (16 | 32 | 64 | 128), 128-row tiles per CTA (1 | 2)
  bool i8;     // the integer image (the WGMMA variant at m <= 32, session 18): 16 | 32 tokens
  int64_t nslices, nq, nq4, mpad, ncols, rgroups;
  bool fuse_in, fuse_out;
  int sk;  // stream-K CTAs (0: the plain grid of tiles)
  int64_t sk_dp;  // data-parallel CTAs (whole tiles) launched before the stream-K ones
  size_t smem;
  size_t off_img, off_cpart, off_tinv, off_scale, off_u, off_t, off_skpart, off_skflag, total;
};

// Stream-K.  One token tile (m <= 64): CTAs of at least WH_SK_MINQ quads each, at most WH_SK_MAXG of them.  Several
// token tiles (m > 64): the whole waves of tiles run data-parallel and at most WH_SK_MAXG stream-K CTAs share the
// last, partial wave.  The workspace holds WH_SK_MAXG partial tiles whatever the device: 64 KB each (64 x 256) at
// m <= 64, 128 KB (128 x 256) above.
constexpr int WH_SK_MAXG = 160;
constexpr int WH_SK_MINQ = 2;
// stream-K off (LATTQ_WGMMA_F16_SK=0)
bool wh_sk_off() {
  const char* e = std::getenv("LATTQ_WGMMA_F16_SK");
  return e != nullptr && std::strtol(e, nullptr, 10) == 0;
}

// Waves of a launch of `tiles` CTAs (one CTA fills an SM) at m > 64 over K of nq quads: ceil(tiles / SMs) for the
// plain grid (sk = false); with stream-K over the last, partial wave (sk = true), its fraction plus the fixup's cost
// (partial tiles written, waited for and added, a second pipeline start): max(0.1, 5 / nq) waves, fitted to the H100
// sweep of session 14 (h100_session14/sksweep_wip1.log: by the wave count the stream-K phase took 15-25 us more than
// its fraction of a wave at 11008 x 4096 and 28672 x 8192, m = 512).
// dp: the data-parallel CTAs where stream-K can run here (the partial wave has at most WH_SK_MAXG tiles and the waves
// shrink by at least 7%), else -1.
double wh_waves(int64_t tiles, int64_t nq, int sms, bool sk, int64_t* dp) {
  const int64_t full = tiles / sms, rest = tiles - full * sms;
  const double plain = (double)cdiv(tiles, (int64_t)sms);
  const double hybrid = (double)full + (double)rest / sms + std::max(0.1, 5.0 / (double)std::max<int64_t>(nq, 1));
  const bool ok = rest > 0 && rest <= std::min(sms, WH_SK_MAXG) && hybrid <= 0.93 * plain && !wh_sk_off();
  if (dp != nullptr) *dp = ok ? full * sms : -1;
  return sk && ok ? hybrid : plain;
}

// CTA shape (LATTQ_WGMMA_F16_TILE = "NTxRT", e.g. "128x2", forces one) and, at m > 64, whether stream-K runs the last
// wave (sk).  One CTA fills an SM, so a launch takes wh_waves(CTAs) waves of CTAs that each cost their work (NT RT)
// times the shape's cost per unit of work: 1.0 (128x2), 1.09 (128x1), 1.23 (64x2), 1.45 (64x1), from the H100 sweep
// of 4096x4096 at m = 2048 (session 11, where all four shapes take the same number of waves x work).  The cheapest
// shape wins unless a larger one is within 2%.  On the 21 swept cases (7 layer shapes at m = 64, 512, 2048) this picked
// the fastest of the four every time; the session-10 rule (256 rows where those CTAs fill the GPU) missed 4 of them by
// 3-23%.  Stream-K's best shape is taken only where it beats the plain grid's best by 3% (session 14: the plain
// grid's partial last wave runs faster than a full one, which the wave count does not see; at 11008 x 4096, m = 512,
// 128 x 1 plain measured 96.9-98.8 us against 103 for 128 x 2 with stream-K).  sms = 0: the workspace bound
// (128-token padding whatever the knob says).
void wh_tile_for(int64_t m, int64_t n, int64_t nq, int sms, int& nt, int& rt, bool& forced, bool& sk) {
  static const struct { int nt, rt; double cost; } shapes[] = {{128, 2, 1.0}, {128, 1, 1.09}, {64, 2, 1.23}, {64, 1, 1.45}};
  nt = 128;
  rt = 2;
  sk = false;
  auto ctas = [&](int i) { return cdiv(n, (int64_t)TN * shapes[i].rt) * cdiv(std::max<int64_t>(m, 1), shapes[i].nt); };
  if (sms > 0) {
    double best[2] = {0.0, 0.0};  // plain, stream-K
    int pick[2] = {-1, -1};
    for (int v = 0; v < 2; ++v)
      for (int i = 0; i < 4; ++i) {
        int64_t dp = -1;
        const double w = wh_waves(ctas(i), nq, sms, v == 1, &dp);
        if (v == 1 && (m <= 64 || dp < 0)) continue;
        const double t = w * shapes[i].nt * shapes[i].rt * shapes[i].cost;
        if (pick[v] < 0 || t < 0.98 * best[v]) {
          best[v] = t;
          pick[v] = i;
        }
      }
    sk = pick[1] >= 0 && best[1] < 0.97 * best[0];
    nt = shapes[pick[sk ? 1 : 0]].nt;
    rt = shapes[pick[sk ? 1 : 0]].rt;
  }
  forced = false;
  if (const char* e = std::getenv("LATTQ_WGMMA_F16_TILE")) {
    int a = 0, b = 0;
    if (std::sscanf(e, "%dx%d", &a, &b) == 2 && (a == 16 || a == 32 || a == 64 || a == 128) && (b == 1 || b == 2)) {
      nt = a;
      rt = b;
      forced = true;
      int64_t dp = -1;
      wh_waves(cdiv(n, (int64_t)TN * rt) * cdiv(std::max<int64_t>(m, 1), nt), nq, sms > 0 ? sms : 1, true, &dp);
      sk = m > 64 && sms > 0 && dp >= 0;
    }
  }
  if (sms == 0) nt = 128;
}

// Stream-K CTAs G (0: the plain grid) and the data-parallel CTAs before them (dp).
// - m <= 64 (session 12): one token tile, where a plain grid has one CTA per row group (16-224 CTAs on the issue's
//   shapes, a fraction of the SMs or under two waves).  G = min(SMs, WH_SK_MAXG, U / WH_SK_MINQ) CTAs share the U
//   (row group, quad) units, provided G exceeds the row groups (each CTA then spans at most two row groups), dp = 0.
//   Quad units: splitting boundary quads by 64-K stage (a conditional stage inside the unrolled quad loop) balanced
//   the CTAs better but slowed the 64 x 256 CTAs by a third (session 12, rows_296f290).
// - m > 64 (session 14), where wh_tile_for chose it (sk): dp = the whole waves of tiles, and G = min(SMs, WH_SK_MAXG)
//   CTAs share the rest (fewer than G tiles, so again at most two segments per CTA).  At m = 512 a 28672 x 8192 layer
//   has 448 tiles of 128 x 256 on 132 SMs: 3.39 waves, which the plain grid runs in 4.
// LATTQ_WGMMA_F16_SK = 0 turns it off, = G sets G where it runs (clamped to [stream-K tiles, min(SMs, WH_SK_MAXG,
// units)]); LATTQ_WGMMA_F16_SK_DP = D (m > 64) forces it with D data-parallel CTAs (clamped to [0, tiles - 1]).
// Tests and measurements.
int wh_sk_ctas(int64_t m, int64_t ncols, int64_t rgroups, int64_t nq, int sms, bool sk, int64_t& dp) {
  dp = 0;
  if (sms <= 0 || wh_sk_off()) return 0;
  const char* e = std::getenv("LATTQ_WGMMA_F16_SK");
  const long force = e != nullptr ? std::strtol(e, nullptr, 10) : -1;
  const int64_t gmax = std::min<int64_t>(sms, WH_SK_MAXG);
  if (m <= 64) {
    if (ncols != 1) return 0;
    const int64_t U = rgroups * nq;
    int64_t G = std::min<int64_t>(gmax, U / WH_SK_MINQ);
    if (force > 0) G = std::max<int64_t>(rgroups, std::min<int64_t>(force, std::min<int64_t>(gmax, U)));
    return G > rgroups ? (int)G : 0;
  }
  const int64_t tiles = ncols * rgroups;
  if (const char* ed = std::getenv("LATTQ_WGMMA_F16_SK_DP"))
    dp = std::max<int64_t>(0, std::min<int64_t>(std::strtol(ed, nullptr, 10), tiles - 1));
  else
    dp = sk ? tiles / sms * sms : -1;
  const int64_t R = tiles - dp;
  if (dp < 0 || R > gmax) {
    dp = 0;
    return 0;
  }
  const int64_t G = force > 0 ? std::max<int64_t>(R, std::min<int64_t>(force, std::min<int64_t>(gmax, R * nq))) : gmax;
  return (int)std::min<int64_t>(G, R * nq);
}

// i8: the WGMMA variant's plan at m <= 32 (wh_i8_serves): the same CTA shapes and stream-K, with 16 tokens up to m = 16
// and 32 above (N = 32 / 64 digit columns) whatever the layer; LATTQ_WGMMA_F16_TILE applies where it names 16 or 32.
WhPlan make_wh_plan(const lattq_layer_desc* d, int64_t m, int sms, bool i8 = false) {
  WhPlan P;
  P.i8 = i8;
  bool forced = false, sk = false;
  wh_tile_for(m, d->n, cdiv(d->k, 256), sms, P.nt, P.rt, forced, sk);
  // Stream-K's CTA shape (where wh_sk_ctas takes it): 128 rows for layers up to 14336 x 4096 weights, else 256, which
  // read the image from L2 half as often per weight (H100 at m = 16 and 64, session 12, sweep_65d6251.log: 128 rows
  // faster by 1-18% on the n = 4096 / k = 4096 shapes, 256 by 12-20% on 8192 x 28672 and 28672 x 8192); 32 tokens up
  // to m = 32 (6-12% faster than 64 at m = 16 and 32, sweep_99d4a41.log: the wgmmas cost about the same per k16 step
  // at N = 32 and 64, so halving N saves little), else 64.  16 tokens up to m = 16 (session 17, same-call A/B,
  // h100_session17/ab_tile16_*_8de7ff2.log: 256-row CTAs 5-10% faster at m = 8..16, 28672x8192 m = 16 48.7 against
  // 53.1 us; 128-row CTAs 1-5% faster where n >= k, 1-3% slower at m = 16 on 4096x11008 and 4096x14336, which keep 32)
  if (sms > 0 && m <= 64 && !forced) {
    const int64_t nq = cdiv(d->k, 256);
    const bool small = d->n * d->k <= 14336LL * 4096;
    int64_t dp = 0;
    for (int rt : {small ? 1 : 2, small ? 2 : 1})
      if (wh_sk_ctas(m, 1, cdiv(d->n, (int64_t)TN * rt), nq, sms, true, dp) > 0) {
        P.nt = m <= 16 && (rt == 2 || d->n >= d->k) ? 16 : m <= 32 ? 32 : 64;
        P.rt = rt;
        break;
      }
  }
  if (i8 && !(forced && P.nt <= 32)) P.nt = sms > 0 && m <= 16 ? 16 : 32;  // sizing (sms = 0): the larger padding
  P.nslices = cdiv(d->k, SK);
  P.nq = cdiv(d->k, 256);
  P.nq4 = P.nslices * 4;
  P.ncols = cdiv(std::max<int64_t>(m, 1), P.nt);
  P.mpad = P.ncols * P.nt;
  P.sk_dp = 0;
  // I8 (session 19): split-K, each CTA taking 1 / s of one tile's K (a single stream-K segment, no CTA spans two
  // tiles), s = min(SMs / tiles, quads / 4): at most one CTA per SM and at least 4 quads per CTA (s = 1: the plain
  // grid); 128- or 256-row tiles, whichever gives more CTAs (256 on a tie).  On the H100 at m = 16
  // (h100_session19/split_97dd23d.log, ab_sk_828e586.log: same-call rows over forced CTA shapes and CTA counts) this
  // took 3-15% off the stream-K plan's 132 CTAs on all 7 issue shapes (14336x4096 25.7 -> 21.8 us, 28672x8192 44.6 ->
  // 43.0, 8192x28672 45.0 -> 43.5, 4096x4096 18.8 -> 16.8 with 128 rows): its CTAs of 27 or 28 quads straddled tiles
  // and slices, and the fixup waits and second pipeline starts cost more than the even split saved.  Forced CTA shapes
  // and stream-K settings (LATTQ_WGMMA_F16_TILE, LATTQ_WGMMA_F16_SK) keep the stream-K plan, as do layers of more
  // 256-row tiles than SMs.
  int64_t tiles_sk = 0, s_sk = 0;
  int rt_sk = 0;
  if (i8 && sms > 0 && !forced && std::getenv("LATTQ_WGMMA_F16_SK") == nullptr && P.ncols == 1)
    for (int rt : {2, 1}) {
      const int64_t t = cdiv(d->n, (int64_t)TN * rt);
      if (t > sms) continue;
      const int64_t sp = std::max<int64_t>(1, std::min<int64_t>({sms / t, P.nq / 4, WH_SK_MAXG / t}));
      if (t * sp > tiles_sk * s_sk) {
        tiles_sk = t;
        s_sk = sp;
        rt_sk = rt;
      }
    }
  if (rt_sk > 0) {
    P.rt = rt_sk;
    P.rgroups = tiles_sk;
    P.sk = s_sk > 1 ? (int)(tiles_sk * s_sk) : 0;
  } else {
    P.rgroups = cdiv(d->n, (int64_t)TN * P.rt);
    P.sk = m > 64 || P.nt <= 64 ? wh_sk_ctas(m, P.ncols, P.rgroups, P.nq, sms, sk, P.sk_dp) : 0;
  }
  P.fuse_in = d->had_in <= SK;
  P.fuse_out = d->had_out <= TN;
  P.smem = i8          ? (size_t)(P.nt == 16 ? (P.rt == 1 ? wh_smem_bytes<16, 1, true>() : wh_smem_bytes<16, 2, true>())
                                          : (P.rt == 1 ? wh_smem_bytes<32, 1, true>() : wh_smem_bytes<32, 2, true>()))
           : P.nt == 16 ? (size_t)(P.rt == 1 ? wh_smem_bytes<16, 1>() : wh_smem_bytes<16, 2>())
           : P.nt == 32 ? (size_t)(P.rt == 1 ? wh_smem_bytes<32, 1>() : wh_smem_bytes<32, 2>())
           : P.nt == 64 ? (size_t)(P.rt == 1 ? wh_smem_bytes<64, 1>() : wh_smem_bytes<64, 2>())
                        : (size_t)(P.rt == 1 ? wh_smem_bytes<128, 1>() : wh_smem_bytes<128, 2>());
  P.smem += 1024;  // the kernel aligns the ring to 1024 bytes (the image's 128-byte swizzle)
  size_t o = 0;
  auto take = [&](size_t bytes) { size_t at = o; o += align256(bytes); return at; };
  P.off_img = take((size_t)P.mpad * P.nq4 * 512);  // 256 K positions x 2 bytes per (token, quad)
  P.off_cpart = take((size_t)P.mpad * P.nslices * 4);
  P.off_tinv = take((size_t)P.mpad * 4);
  P.off_scale = take(i8 ? (size_t)P.mpad * P.nslices * 4 : 0);  // I8: one scale per (token, slice)
  P.off_u = take(P.fuse_in ? 0 : (size_t)m * d->k * 4);
  P.off_t = take(P.fuse_out ? 0 : (size_t)m * d->n * 4);
  // stream-K: WH_SK_MAXG partial tiles of the largest stream-K tile (64 x 256 at m <= 64, else 128 x 256), whatever
  // the device and the plan
  P.off_skpart = take((size_t)WH_SK_MAXG * (m <= 64 ? 64 : 128) * 256 * 4);
  const size_t skg = WH_SK_MAXG;
  P.off_skflag = take(skg * 4);
  P.total = o;
  return P;
}

// launch with programmatic stream serialization (sm_90 only: the kernel's griddepcontrol.wait orders it)
template <typename... Args>
cudaError_t launch_pdl(void (*kern)(Args...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kern, args...);
}

template <typename T, int NT, bool I8> size_t* wh_prep_smem_granted() {
  static size_t granted[16] = {};
  return granted;
}

// I8: the WGMMA variant's kernel pair at m <= 32 (the integer image), else WGMMA_F16's
template <typename T, int NT, int RT, bool I8 = false>
lattq_status wh_launch_t(const char* fn, const lattq_layer* L, const void* x, int64_t m, void* y, char* ws,
                         const WhPlan& P, cudaStream_t s) {
  const lattq_layer_desc& d = L->desc;
  const int32_t dt = std::is_same<T, __half>::value ? LATTQ_F16 : LATTQ_BF16;
  FusedParams p = tiled_params(L, x, m, y, ws, P);
  p.vq = reinterpret_cast<uint8_t*>(ws + P.off_img);
  p.cpart = reinterpret_cast<float*>(ws + P.off_cpart);
  p.tinv = reinterpret_cast<float*>(ws + P.off_tinv);
  p.scale = reinterpret_cast<float*>(ws + P.off_scale);
  const char* vname = I8 ? "wgmma" : "wgmma_f16";
  p.sk_ctas = P.sk;
  p.sk_dp = (int)P.sk_dp;
  p.skpart = reinterpret_cast<float*>(ws + P.off_skpart);
  p.skflag = reinterpret_cast<unsigned*>(ws + P.off_skflag);
  // the producer's suspend-time hint (LATTQ_WGMMA_F16_SLEEP_NS; 0 = retry without a hint, as before session 17)
  const char* sn = std::getenv("LATTQ_WGMMA_F16_SLEEP_NS");
  p.sleep_ns = sn != nullptr ? (unsigned)std::max(0L, std::min(1000000L, std::strtol(sn, nullptr, 10))) : 1000000u;
  // the code-ring quads the main kernel loads before its PDL wait (LATTQ_WGMMA_F16_PREQ, default all of them)
  const char* pq = std::getenv("LATTQ_WGMMA_F16_PREQ");
  p.preq = pq != nullptr ? (int)std::max(0L, std::strtol(pq, nullptr, 10)) : 1 << 20;
  const size_t static_smem = 2 * NT * 4 + 2 * TN * RT * 4 + 2 * wh_stages<NT, RT, I8>() * 8;
  if ((size_t)device_props().smem_optin < P.smem + static_smem)
    return LQ_ERR(Unsupported, "%s: variant %s needs %zu bytes of shared memory per block, this device allows %d", fn,
                  vname, P.smem + static_smem, device_props().smem_optin);
  lattq_status r;
  if (!P.fuse_in) {
    float* u = reinterpret_cast<float*>(ws + P.off_u);
    const int nb = (int)std::max<int64_t>(1, std::min<int64_t>(cdiv(m * d.k, 256), 65536));
    if ((r = ref_scale_in_launch(fn, x, dt, L->su, u, m, d.k, nb, s))) return r;
    if ((r = fwht_launch(fn, u, LATTQ_F32, m, d.k, d.had_in, s))) return r;
    p.x = u;
  }
  // I8: W warps per unit of (token, W slices), LATTQ_WGMMA_PREP_WARPS=w (1..16) sets W (measurements)
  int W = wh_prep_warps(P.nslices);
  if (I8) {
    const char* pw = std::getenv("LATTQ_WGMMA_PREP_WARPS");
    const long w = pw != nullptr ? std::strtol(pw, nullptr, 10) : 8;
    W = (int)std::min<int64_t>(P.nslices, std::max(1L, std::min<long>(w, WH_PREP_MAXW)));
  }
  // x rows: bulk = 1 staged in shared memory by cp.async.bulk (double-buffered; where two rows fit), 2 read in place
  // by 16-byte loads (session 15), both through the lean transform (16-bit x, k % 8 == 0, 16-byte aligned rows); 0 the
  // general path.  Staging for 8192 < k <= 16384, else in place: on the H100 (h100_session15/prof_s15wip4.log, warm
  // prologue times at m = 512 and 2048 on the 7 shapes) reading in place was 3-6% faster at k = 4096, 0-7% at 8192
  // and 13-16% at 28672 (the staged rows and kept slices leave su too little L1 there), staging 1-2.5% faster at k =
  // 11008 and 14336.  LATTQ_WGMMA_F16_PREP_BULK=0/1/2 forces a mode where it applies (tests, measurements).
  const char* pb = std::getenv("LATTQ_WGMMA_F16_PREP_BULK");
  const bool xvec = wh_prep_bulk(p, dt);
  const bool sfit = wh_prep_smem(p, W, true) + 1024 <= (size_t)device_props().smem_optin;
  int bulk = !xvec ? 0 : sfit && d.k > WH_PREP_STAGE_K0 && d.k <= WH_PREP_STAGE_K1 ? 1 : 2;
  if (pb != nullptr && pb[0] == '0') bulk = 0;
  if (pb != nullptr && pb[0] == '1' && xvec && sfit) bulk = 1;
  if (pb != nullptr && pb[0] == '2' && xvec) bulk = 2;
  if (I8 && bulk == 1) bulk = 2;  // the I8 units read x in place
  // v of all but each warp's last slice kept in shared memory (k > 16 K) where it fits, else folded again in pass 2
  const int64_t nper = cdiv(P.nslices, (int64_t)W);
  const size_t keepb = nper > 1 && !I8 ? (size_t)W * (nper - 1) * (4096 + 4) : 0;
  const char* pk = std::getenv("LATTQ_WGMMA_F16_PREP_KEEP");
  const bool keep = keepb > 0 && wh_prep_smem(p, W, bulk == 1) + keepb + 1024 <= (size_t)device_props().smem_optin &&
                    !(pk != nullptr && pk[0] == '0');
  const size_t psmem = wh_prep_smem(p, W, bulk == 1) + (keep ? keepb : 0);
  const char* pf = std::getenv("LATTQ_WGMMA_F16_PREP_FAST");
  const bool fast = !(pf != nullptr && pf[0] == '0');
  // the largest dynamic shared memory granted to this prologue kernel (per kernel, not per wh_launch_t instance: the
  // 128- and 256-row launches share it, and a smaller grant by one must not undo the other's larger one), per device
  size_t* psmem_set = wh_prep_smem_granted<T, NT, I8>();
  const int cur = current_device();
  if (psmem > psmem_set[cur & 15]) {
    if (cudaFuncSetAttribute(wh_prep_kernel<T, NT, I8>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)psmem) !=
        cudaSuccess) {
      cudaGetLastError();
      return LQ_ERR(Device, "%s: cannot set the dynamic shared memory of the %s prologue to %zu bytes", fn, vname,
                    psmem);
    }
    psmem_set[cur & 15] = psmem;
  }
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, wh_prep_kernel<T, NT, I8>, 32 * W, psmem) != cudaSuccess ||
      per_sm < 1) {
    cudaGetLastError();
    per_sm = 1;
  }
  const int64_t units = I8 ? P.mpad * cdiv(P.nslices, (int64_t)W) : P.mpad;
  int64_t pctas = std::min<int64_t>(units, (int64_t)per_sm * device_props().sm);
  // LATTQ_WGMMA_F16_PREP_CTAS=c caps the grid (tests: many tokens per CTA at small m, as at prefill sizes)
  if (const char* pc = std::getenv("LATTQ_WGMMA_F16_PREP_CTAS"))
    pctas = std::max<int64_t>(1, std::min<int64_t>(pctas, std::strtol(pc, nullptr, 10)));
  // the next token's first-slice loads during pass 2: LATTQ_WGMMA_F16_PREP_PRE=0 none, 1 x only, 2 x and SU (default)
  const char* pr = std::getenv("LATTQ_WGMMA_F16_PREP_PRE");
  const int pre = pr != nullptr && (pr[0] == '0' || pr[0] == '1') ? pr[0] - '0' : 2;
  // the first token's first-slice loads before the main kernel's launch: LATTQ_WGMMA_F16_PREP_EARLY=0 off, 1 on (the
  // default: session 17, h100_session17/ab_early_34ebd24.log, 0.8% faster cold calls over 21 cases, 13 faster by
  // 0.5-3.3%, one slower by 0.9%)
  const char* pe = std::getenv("LATTQ_WGMMA_F16_PREP_EARLY");
  const int early = pe != nullptr && pe[0] == '0' ? 0 : 1;
  cudaError_t e = launch_pdl(wh_prep_kernel<T, NT, I8>, dim3((unsigned)pctas), dim3(32 * W), psmem, s, p, W, P.mpad,
                             bulk, (int)keep, (int)fast, pre, early);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return LQ_ERR(Device, "%s: launching the %s prologue kernel failed: %s", fn, vname, cudaGetErrorString(e));
  }
  if ((r = check_launch(fn, I8 ? "wgmma prologue" : "wgmma_f16 prologue"))) return r;
  static int smem_set[16] = {};  // per template instance and device
  if (!smem_set[cur & 15]) {
    if (cudaFuncSetAttribute(wh_main_kernel<T, NT, RT, I8>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             (int)P.smem) != cudaSuccess) {
      cudaGetLastError();
      return LQ_ERR(Device, "%s: cannot set the dynamic shared memory of the %s kernel to %zu bytes", fn, vname, P.smem);
    }
    smem_set[cur & 15] = 1;
  }
  const dim3 grid = P.sk > 0 ? dim3((unsigned)(P.sk_dp + P.sk)) : dim3((unsigned)P.ncols, (unsigned)P.rgroups);
  e = launch_pdl(wh_main_kernel<T, NT, RT, I8>, grid, dim3(WH_THREADS), P.smem, s, p);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return LQ_ERR(Device, "%s: launching the %s main kernel failed: %s", fn, vname, cudaGetErrorString(e));
  }
  if ((r = check_launch(fn, vname))) return r;
  if (!P.fuse_out) {
    float* t = reinterpret_cast<float*>(ws + P.off_t);
    if ((r = fwht_launch(fn, t, LATTQ_F32, m, d.n, d.had_out, s))) return r;
    if ((r = ref_epilogue_launch(fn, t, L->sv, L->bias, y, dt, m, d.n, s))) return r;
  }
  return LATTQ_OK;
}

template <typename T>
lattq_status wh_dispatch(const char* fn, const lattq_layer* L, const void* x, int64_t m, void* y, char* ws,
                         const WhPlan& P, cudaStream_t s) {
  if (P.nt == 16) return P.rt == 1 ? wh_launch_t<T, 16, 1>(fn, L, x, m, y, ws, P, s) : wh_launch_t<T, 16, 2>(fn, L, x, m, y, ws, P, s);
  if (P.nt == 32) return P.rt == 1 ? wh_launch_t<T, 32, 1>(fn, L, x, m, y, ws, P, s) : wh_launch_t<T, 32, 2>(fn, L, x, m, y, ws, P, s);
  if (P.nt == 64) return P.rt == 1 ? wh_launch_t<T, 64, 1>(fn, L, x, m, y, ws, P, s) : wh_launch_t<T, 64, 2>(fn, L, x, m, y, ws, P, s);
  return P.rt == 1 ? wh_launch_t<T, 128, 1>(fn, L, x, m, y, ws, P, s) : wh_launch_t<T, 128, 2>(fn, L, x, m, y, ws, P, s);
}

template <typename T>
lattq_status wi_dispatch(const char* fn, const lattq_layer* L, const void* x, int64_t m, void* y, char* ws,
                         const WhPlan& P, cudaStream_t s) {
  if (P.nt == 16)
    return P.rt == 1 ? wh_launch_t<T, 16, 1, true>(fn, L, x, m, y, ws, P, s) : wh_launch_t<T, 16, 2, true>(fn, L, x, m, y, ws, P, s);
  return P.rt == 1 ? wh_launch_t<T, 32, 1, true>(fn, L, x, m, y, ws, P, s) : wh_launch_t<T, 32, 2, true>(fn, L, x, m, y, ws, P, s);
}

}  // namespace

// The WGMMA variant at m <= 32 (session 18): the integer image on WGMMA_F16's kernel frame (producer warpgroup,
// stream-K, swizzled image, 16-token tiles) instead of the session-5 kernel, unless LATTQ_WGMMA_WH=0 (tests,
// measurements).
bool wgmma_wh_serves(int64_t m) {
  const char* e = std::getenv("LATTQ_WGMMA_WH");
  return m <= 32 && !(e != nullptr && e[0] == '0');
}
size_t wgmma_wh_workspace_bytes(const lattq_layer_desc* d, int64_t m) { return make_wh_plan(d, m, 0, true).total; }
// AUTO's choice of it (H100, same-call rows of wgmma / wgmma_f16 / gemv_pdl at m = 8, 12, 16, 32 on the 7 issue shapes,
// three readings: bench/results/gpu/h100_session18/ab_warps_*.log): the fastest lattq variant at m = 12..32 on every
// shape above 4096² (e.g. 8192x28672 m = 16 45.3-46.3 us against WGMMA_F16's 55.1-55.7, 11008x4096 m = 12 22.3-22.6
// against GEMV_PDL's 24.5-24.8), and at m = 32 on 4096² too (19.5 against 21.0-21.2); at m <= 16 it ties GEMV_PDL on
// 4096² (18.1-18.4 against 18.1-18.3 at m = 16).  At m = 8 GEMV_PDL's 16-token kernel is faster on the 7B/8B shapes
// where n < k or n > 11008 (4096x14336 22.8-22.9 against 26.6-28.1) and it wins only on the 70B FFN shapes
// (28672x8192 43.8-44.2 against WGMMA_F16's 48.9-49.2, 8192x28672 44.6-46.5 against 52.8-54.4).
// Session 19's split-K plan made it faster than GEMV_PDL on one layer of at least 4096² weights at m = 9..16
// (4096² m = 12 17.4 against 18.9 us, m = 16 16.8 against 18.4) and at m = 8 where k < 3 n (4096² 16.4 against 18.0,
// 11008x4096 19.7 against 22.3, 4096x11008 22.9-23.0 against 23.8-24.0, 14336x4096 20.7-20.8 against 22.3-22.7;
// 4096x14336 24.5-24.9 against 22.8; h100_session19/rows_3f02ff3.log, bench_5da7c92.log).  in_group: the session-18
// rule, for lattq_cuda_forward_group's choice between one GEMV_PDL launch and the layers one by one (a group whose
// every layer takes WGMMA runs one by one, and Llama-2-7B QKV, 3 x 4096², at m = 16 takes 32.3 us as one GEMV_PDL
// launch against about 3 x 16.8 one by one).
bool wgmma_wh_preferred(const lattq_layer_desc* d, int64_t m, bool in_group) {
  if (m < 8 || !wgmma_wh_serves(m)) return false;
  const int64_t nk = d->n * d->k;
  if (in_group) return m == 8 ? nk >= 28672LL * 8192 : m > 16 || nk > 4096LL * 4096;
  if (m == 8) return nk >= 28672LL * 8192 || (nk >= 4096LL * 4096 && d->k < 3 * d->n);
  return m > 16 || nk >= 4096LL * 4096;
}
lattq_status wgmma_wh_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                              void* ws, size_t ws_bytes, cudaStream_t s) {
  const WhPlan P = make_wh_plan(&L->desc, m, device_props().sm, true);
  if (ws_bytes < P.total) return LQ_ERR(Workspace, "%s: workspace too small (%zu < %zu)", fn, ws_bytes, P.total);
  if (P.rgroups > 65535) return LQ_ERR(Shape, "%s: n too large for this variant", fn);
  char* w = static_cast<char*>(ws);
  return dtype == LATTQ_F16 ? wi_dispatch<__half>(fn, L, x, m, y, w, P, s)
                            : wi_dispatch<__nv_bfloat16>(fn, L, x, m, y, w, P, s);
}

// bf16 only: v rounded to fp16 (11 significant bits) stays well inside the issue's bound for bf16 activations
// (measured 0.4-0.9x the dense-in-bf16 error), but the dense-in-f16 error is 8x smaller, and with f16 activations
// small layers measured up to 2.4x it (n = 24, k = 40, m = 28; the bound is 2x).  f16 takes WGMMA's exact digits.
const char* wgmma_f16_unsupported_reason(const lattq_layer_desc* d, int32_t dtype) {
  const char* why = wgmma_unsupported_reason(d, dtype);
  if (why[0]) return why;
  if (dtype != LATTQ_BF16) return "needs bf16 activations (f16: use WGMMA)";
  return "";
}

// AUTO's choice of WGMMA_F16 over WGMMA for bf16 (H100, session 10, bench/results/gpu/h100_session10/rows_*):
// m >= 256 on every issue shape but 4096 x 14336 (113.2 vs 111.4 us at m = 256), m >= 128 where n >= 2 k (11008 x
// 4096 43.2 vs 62.3 us; 28672 x 8192 120.3 vs 170.3), and m >= 64 where n >= 2 k.  Session 11 dropped the m = 64
// rule's k <= 4096 (28672 x 8192 at m = 64: 75.1 vs 92.1 us, bench/results/gpu/h100_session11/rows_a70437a.*) and
// took n >= 8192 at m = 128 (8192 x 28672: 156.8 vs 189.3 us; rows_8bb00b2.*).  Session 12's stream-K (m <= 64) and
// 32-token CTAs (m <= 32) make it the fastest lattq variant on all 7 issue shapes from m = 17 to 64 (H100,
// bench/results/gpu/h100_session12: m = 32, sweep_99d4a41: 4096 x 4096 20.9 us against AUTO's 22.3 in bench_8a41158,
// 14336 x 4096 28.3 vs WGMMA's 30.0, 28672 x 8192 64.3 vs 70.7; m = 64, bench_8a41158: 23.0-84.6 us against WGMMA's
// 28.7-102.9), and at m = 16 on 8192 x 28672 (73.7 vs 85.6 us; the layers with n <= 4096 take GEMV_PDL there, and
// the n > k ones tie with WGMMA or lose: 14336 x 4096 27.9 vs 26.7).
// Session 14's stream-K over several token tiles made it faster at m = 128 where n < k too (H100, sksweep_wip2.log
// against WGMMA in bench_e24329b.log: 4096 x 11008 43.0 vs 51.3 us, 4096 x 14336 49.7 vs 60.6; 4096 x 4096 ties at
// 28.8 vs 28.7), so m >= 128 takes it on every shape.
bool wgmma_f16_preferred(const lattq_layer_desc* d, int64_t m) {
  if (m >= 128) return true;
  if (m > 64) return d->n >= 2 * d->k;
  if (m > 16) return true;
  if (m < 8) return false;
  // m = 8..16 (session 17, H100, bench/results/gpu/h100_session17/rows_m8_16_becb25b.log and ab_tile16_*): after its
  // main loop lost a third of its instructions this kernel beat GEMV_PDL at m = 12 and 16 on both 70B shapes
  // (28672x8192 m = 16: 53.7 against 74.9 us, WGMMA 63.5) and on the n < k shapes above 4096² (4096x11008 m = 16: 27.5
  // against 29.6); GEMV_PDL kept 4096² (18.7 against 21.2) and ties or wins at m = 12 on n > k (11008x4096: 24.8
  // against 25.3).  With 16-token CTAs it also wins at m = 8 on the 70B FFN shapes (28672x8192 48.0-48.8 against
  // 50.4-50.7 us, 8192x28672 53.6-53.9 against 58.8-59.4)
  // At m = 16 with its 16-token CTAs it beat WGMMA on the n > k 7B shapes too (full benchmark at ea0fcfd: 11008x4096
  // 24.4 against 26.1 us, 14336x4096 26.2 against 26.8); GEMV_PDL keeps 4096² (18.3 against 20.5)
  // The "70B-sized" rule is the FFN size, 28672 x 8192 weights: an 8192 x 8192 layer (Llama-3-70B's Q) at m = 8 took
  // WGMMA_F16 under a first rule of >= 8192² weights, and its QKV then measured 71.9 us one by one against 33.4 us as
  // one GEMV_PDL group (bench_group at 1f89dd0, h100_session17/bench_group_1f89dd0.md)
  const int64_t nk = d->n * d->k;
  if (m == 16) return nk > 4096LL * 4096;
  if (m == 8) return nk >= 28672LL * 8192;
  return nk >= 28672LL * 8192 || (d->n < d->k && nk > 4096LL * 4096);
}

size_t wgmma_f16_workspace_bytes(const lattq_layer_desc* d, int64_t m) { return make_wh_plan(d, m, 0).total; }

lattq_status wgmma_f16_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                               void* ws, size_t ws_bytes, cudaStream_t s) {
  if (device_props().major != 9)
    return LQ_ERR(Unsupported, "%s: variant wgmma_f16 needs an sm_90 (Hopper) GPU, this one is sm_%d", fn,
                  device_props().major * 10);
  if (dtype != LATTQ_BF16)
    return LQ_ERR(Unsupported, "%s: variant wgmma_f16 needs bf16 activations (f16: use WGMMA)", fn);
  const WhPlan P = make_wh_plan(&L->desc, m, device_props().sm);
  if (ws_bytes < P.total) return LQ_ERR(Workspace, "%s: workspace too small (%zu < %zu)", fn, ws_bytes, P.total);
  if (P.rgroups > 65535) return LQ_ERR(Shape, "%s: n too large for this variant", fn);
  char* w = static_cast<char*>(ws);
  return wh_dispatch<__nv_bfloat16>(fn, L, x, m, y, w, P, s);
}

}  // namespace lattq_cuda

#ifdef LATTQ_GEMV_TRACE
// copies the WGMMA_F16 trace records (main: 8 slots per CTA, prologue: 4) and clears them (unwritten records read 0)
extern "C" int lattq_debug_wh_nostore(int on) {
  return cudaMemcpyToSymbol(lattq_cuda::g_wh_nostore, &on, sizeof(int)) == cudaSuccess ? 0 : 1;
}
extern "C" int lattq_debug_wh_trace(unsigned long long* main_host, unsigned long long* prep_host, int records) {
  const int n = records < lattq_cuda::WTRACE_CTAS ? records : lattq_cuda::WTRACE_CTAS;
  void* dptr = nullptr;
  if (cudaMemcpyFromSymbol(main_host, lattq_cuda::g_wh_trace, (size_t)n * 8 * 8) != cudaSuccess) return 1;
  if (cudaMemcpyFromSymbol(prep_host, lattq_cuda::g_whp_trace, (size_t)n * 4 * 8) != cudaSuccess) return 1;
  if (cudaGetSymbolAddress(&dptr, lattq_cuda::g_wh_trace) != cudaSuccess) return 1;
  if (cudaMemset(dptr, 0, sizeof(lattq_cuda::g_wh_trace)) != cudaSuccess) return 1;
  if (cudaGetSymbolAddress(&dptr, lattq_cuda::g_whp_trace) != cudaSuccess) return 1;
  return cudaMemset(dptr, 0, sizeof(lattq_cuda::g_whp_trace)) == cudaSuccess ? 0 : 1;
}
#endif
