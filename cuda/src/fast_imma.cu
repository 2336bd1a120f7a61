// Fast k=2, d=4 layer forward on integer tensor cores (variants LATTQ_VARIANT_IMMA / _WIDE).
//
// Idea (docs/kernels.md): t = Z v + c with Z the raw 2-bit codes.  A code byte holds the 4 fields of one
// group; masking a 32-bit word with 0x03030303 << 2s leaves four u8 values z*4^s (s = coordinate), which
// are directly an A-fragment register of mma.m16n8k32.u8.s8 - one LOP per 4 weights, no conversion.
// The activations v are quantized per (token, 1024-wide K slice) to 16-bit (f16/bf16) or 24-bit (f32)
// fixed point and split into 2 or 3 signed 8-bit digits, each one mma; int32 accumulation is exact, so
// the only error is that of the fixed-point v (2^-16 / 2^-24 of the slice maximum).
//
// Stages (two launches; the second starts early via programmatic dependent launch on sm_90):
//   prologue  grid (slices, m_pad): SU, block Hadamard (had_in <= 1024) in shared memory, v = A^T u,
//             per-slice c and scale, digits written in mma-fragment order; zeroes the split-K counters.
//   main      grid (column groups, row groups of 128, K splits): 16-byte code loads one slice ahead,
//             B digits through cp.async double buffer, mma, per-slice float flush, split-K partials with a
//             last-CTA-done counter, fused epilogue (c, block Hadamard over N when had_out <= 128, SV,
//             bias, cast).  Larger had_in / had_out use the reference FWHT stages around these kernels.
#include <cstdlib>

#include "device_utils.cuh"
#include "kernels.cuh"

namespace lattq_cuda {

namespace {

using namespace dev;

constexpr int SK = 1024;      // K slice: one activation scale per (token, slice)
constexpr int QW = 256;       // weights per quad (4 chunks of 64)
constexpr int WARPS = 8;      // warps per main CTA, one 16-row tile each
constexpr int TN = WARPS * 16;  // rows per main CTA

struct ImmaParams {
  const uint8_t* codes;
  const float* A;
  const float* b;
  const float* su;
  const float* sv;
  const float* bias;
  const void* x;      // activations (dtype) or, if u_pre, fp32 u
  int u_pre;          // 1: x is the fp32 u = H_in(SU x) precomputed
  int64_t n, k, m;
  int64_t C;          // chunks per row
  int64_t T;          // 16-row tiles
  int nslices, nq;    // K slices, quads
  int had_in, had_out;
  int splits, sps;    // K splits, slices per split
  int ncols;          // column groups (8*NT tokens each)
  int mpad;           // tokens rounded up to the column group
  uint8_t* vq;        // digits, [m_tile][quad][step 8][lane 32][part][8 bytes]
  float* scale;       // [mpad][nslices]
  float* cpart;       // [mpad][nslices]
  float* partial;     // [splits][m][n]
  unsigned* counters; // [ncols][row groups]
  float* tout;        // [m][n] fp32 t when had_out is not fused, else unused
  void* y;
};


template <int PARTS> struct Q;
template <> struct Q<2> { static constexpr float QMAX = 32639.f; };
template <> struct Q<3> { static constexpr float QMAX = 8355711.f; };

// ---------------------------------------------------------------------------------------------
// Prologue: one CTA (256 threads) per (slice, token); thread t owns group t of the slice.
template <typename T, int PARTS>
__global__ void __launch_bounds__(256) imma_prologue_kernel(ImmaParams p) {
  pdl_launch_dependents();
  __shared__ float su_[SK];
  __shared__ float red[2][8];
  __shared__ __align__(16) uint8_t stage[SK * PARTS];
  const int sl = blockIdx.x;
  const int64_t tok = blockIdx.y;
  const int t = threadIdx.x;
  if (sl == 0 && tok == 0) {
    for (int i = t; i < p.ncols * (int)cdiv(p.n, TN); i += blockDim.x) p.counters[i] = 0u;
  }
  float Ar[16], br[4];
#pragma unroll
  for (int i = 0; i < 16; ++i) Ar[i] = __ldg(p.A + i);
#pragma unroll
  for (int i = 0; i < 4; ++i) br[i] = __ldg(p.b + i);
  const int64_t k0 = (int64_t)sl * SK;
  const bool real = tok < p.m;
  float u[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    int64_t kk = k0 + 4 * t + i;
    float val = 0.f;
    if (real && kk < p.k) {
      if (p.u_pre) val = static_cast<const float*>(p.x)[tok * p.k + kk];
      else val = to_f(static_cast<const T*>(p.x)[tok * p.k + kk]) * p.su[kk];
    }
    u[i] = val;
  }
  if (!p.u_pre && p.had_in > 1) {
#pragma unroll
    for (int i = 0; i < 4; ++i) su_[4 * t + i] = u[i];
    __syncthreads();
    for (int h = 1; h < p.had_in; h <<= 1) {
      for (int i = t; i < SK / 2; i += 256) {
        int lo = (i / h) * 2 * h + (i % h);
        float a = su_[lo], b = su_[lo + h];
        su_[lo] = a + b;
        su_[lo + h] = a - b;
      }
      __syncthreads();
    }
    float sc = rsqrtf((float)p.had_in);
#pragma unroll
    for (int i = 0; i < 4; ++i) u[i] = su_[4 * t + i] * sc;
  }
  float v[4];
  float cp = 0.f, mx = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float acc = 0.f;
#pragma unroll
    for (int j = 0; j < 4; ++j) acc = fmaf(Ar[j * 4 + i], u[j], acc);
    v[i] = acc;
    mx = fmaxf(mx, fabsf(acc));
    cp = fmaf(br[i], u[i], cp);
  }
  // block reductions: max |v|, sum b.u (deterministic order)
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    cp += __shfl_xor_sync(0xffffffffu, cp, o);
  }
  if ((t & 31) == 0) {
    red[0][t >> 5] = mx;
    red[1][t >> 5] = cp;
  }
  __syncthreads();
  mx = 0.f;
  cp = 0.f;
#pragma unroll
  for (int w = 0; w < 8; ++w) {
    mx = fmaxf(mx, red[0][w]);
    cp += red[1][w];
  }
  float scale = mx > 0.f ? mx / Q<PARTS>::QMAX : 1.f;
  float inv = mx > 0.f ? Q<PARTS>::QMAX / mx : 0.f;
  if (t == 0) {
    p.scale[tok * p.nslices + sl] = scale;
    p.cpart[tok * p.nslices + sl] = real ? cp : 0.f;
  }
  // digits into fragment order: weight (ql, tig, gi, s) -> step st = (gi/8)*4 + s, unit (ql, st, tig, part),
  // byte r*4 + b with r = (gi/4)&1, b = gi&3.
  const int ql = t >> 6, tig = (t >> 4) & 3, gi = t & 15;
  const int pp = gi >> 3, r = (gi >> 2) & 1, bb = gi & 3;
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    // clamp: v*inv can round one unit above QMAX, which would overflow the top int8 digit
    int q = max(-(int)Q<PARTS>::QMAX, min((int)Q<PARTS>::QMAX, __float2int_rn(v[s] * inv)));
    int st = pp * 4 + s;
    int unit0 = ((ql * 8 + st) * 4 + tig) * PARTS;
#pragma unroll
    for (int part = 0; part < PARTS; ++part) {
      int dgt = part == PARTS - 1 ? q : (((q + 128) & 255) - 128);
      q = (q - dgt) >> 8;
      stage[(unit0 + part) * 8 + r * 4 + bb] = (uint8_t)(int8_t)dgt;
    }
  }
  __syncthreads();
  // copy out: 128*PARTS units of 8 bytes
  const int64_t mt = tok >> 3, g = tok & 7;
  for (int i = t; i < 128 * PARTS; i += 256) {
    int part = i % PARTS, rest = i / PARTS;
    int tg = rest & 3, st = (rest >> 2) & 7, qq = rest >> 5;
    int64_t q = (int64_t)sl * 4 + qq;
    if (q >= p.nq) continue;
    int64_t U = (((mt * p.nq + q) * 8 + st) * 32 + g * 4 + tg) * PARTS + part;
    *reinterpret_cast<uint2*>(p.vq + U * 8) = *reinterpret_cast<const uint2*>(stage + i * 8);
  }
}

// ---------------------------------------------------------------------------------------------



template <int N>
__device__ __forceinline__ void cp_async_wait_dyn(int pending) {
  // wait until at most `pending` groups are outstanding (pending in 0..N-1, compile-time ladder)
  if (pending <= 0) cp_async_wait<0>();
  else if (pending == 1) cp_async_wait<1>();
  else if (pending == 2) cp_async_wait<2>();
  else if (pending == 3) cp_async_wait<3>();
  else if (pending == 4) cp_async_wait<4>();
  else if (pending == 5) cp_async_wait<5>();
  else cp_async_wait<6>();
}

template <int PARTS> constexpr int qbytes() { return 8 * 32 * PARTS * 8; }  // B bytes per (quad, m-tile)

template <typename T, int PARTS, int NT>
__global__ void __launch_bounds__(256, (NT == 1 && PARTS == 2) ? 2 : 1) imma_main_kernel(ImmaParams p) {
  constexpr int QB = qbytes<PARTS>();
  extern __shared__ __align__(16) uint8_t bsm[];  // [NT][quads of this split][QB]
  __shared__ float tile[8 * NT][TN + 1];
  __shared__ float ssc[8 * NT][8];  // per-(token, slice) scales of this split (sps <= 8)
  __shared__ float csum[8 * NT];
  __shared__ unsigned s_last;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, tig = lane & 3;
  const int col = blockIdx.x;                 // column group (fastest: CTAs sharing codes run together)
  const int rg = blockIdx.y;                  // row group
  const int split = blockIdx.z;
  const int64_t tileI = (int64_t)rg * WARPS + warp;
  const bool tile_ok = tileI < p.T;
  const int sl0 = split * p.sps;
  const int sl1 = min(p.nslices, sl0 + p.sps);
  const int q0 = sl0 * 4;
  const int q1 = min(p.nq, sl1 * 4);
  const int nqs = q1 - q0;
  const int64_t n0 = (int64_t)rg * TN;
  const int64_t tok0 = (int64_t)col * NT * 8;
  const int ntok = (int)(p.m - tok0 < NT * 8 ? p.m - tok0 : NT * 8);
  const int nrow = (int)(p.n - n0 < TN ? p.n - n0 : TN);

  // code pointer for (quad q): rows g and g+8 of chunk 4q+tig
  const uint8_t* cbase = p.codes + (tileI * p.C) * 256 + g * 16;
  auto load_quad = [&](int q, uint4& lo, uint4& hi) {
    int64_t chunk = (int64_t)q * 4 + tig;
    if (tile_ok && q < q1 && chunk < p.C) {
      const uint8_t* ptr = cbase + chunk * 256;
      lo = ldg_stream(ptr);
      hi = ldg_stream(ptr + 128);
    } else {
      lo = make_uint4(0, 0, 0, 0);
      hi = lo;
    }
  };

  // prefetch the first slice of codes and the epilogue parameters before waiting on the prologue
  uint4 cb[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i) load_quad(q0 + i, cb[i][0], cb[i][1]);
  const int my_row = threadIdx.x % TN;
  const float sv_r = my_row < nrow ? __ldg(p.sv + n0 + my_row) : 0.f;
  const float bias_r = (p.bias != nullptr && my_row < nrow) ? __ldg(p.bias + n0 + my_row) : 0.f;
  pdl_wait();

  // B digits of this split: one cp.async group per slice; only 16-byte units of real tokens are copied
  {
    const int units_q = QB / 16;  // per (quad, m-tile)
    for (int sl = sl0; sl < sl1; ++sl) {
      const int qa = sl * 4 - q0, qb = min(q1, sl * 4 + 4) - q0;
      const int per = (qb - qa) * units_q;
      for (int i = threadIdx.x; i < NT * per; i += 256) {
        const int nt = i / per, rem = i % per;
        const int ql = qa + rem / units_q, u = rem % units_q;
        const int within = u % (16 * PARTS);  // 16-byte unit inside its (quad, step): 32 lanes x PARTS*8 B
        const int tk = (within * 16) / (PARTS * 8) / 4;                             // token of that unit
        if ((int64_t)(nt * 8 + tk) < ntok) {
          const int64_t mt = (int64_t)col * NT + nt;
          cp_async16(bsm + ((size_t)nt * nqs + ql) * QB + (size_t)u * 16,
                     p.vq + ((mt * p.nq + q0 + ql) * (int64_t)QB) + (int64_t)u * 16);
        }
      }
      cp_async_commit();
    }
  }
  for (int i = threadIdx.x; i < NT * 8 * 8; i += 256) {
    const int tk = i >> 3, j = i & 7;
    ssc[tk][j] = (tk < ntok && sl0 + j < sl1) ? p.scale[(tok0 + tk) * p.nslices + sl0 + j] : 0.f;
  }
  if (threadIdx.x < NT * 8) {
    float c = 0.f;
    if ((int)threadIdx.x < ntok)
      for (int s2 = 0; s2 < p.nslices; ++s2) c += p.cpart[(tok0 + threadIdx.x) * p.nslices + s2];
    csum[threadIdx.x] = c;
  }

  float accf[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int c = 0; c < 4; ++c) accf[nt][c] = 0.f;

  for (int sl = sl0; sl < sl1; ++sl) {
    cp_async_wait_dyn<7>(sl1 - sl - 1);
    __syncthreads();
    int acc[NT][4][PARTS][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int s = 0; s < 4; ++s)
#pragma unroll
        for (int pt = 0; pt < PARTS; ++pt)
#pragma unroll
          for (int c = 0; c < 4; ++c) acc[nt][s][pt][c] = 0;
#pragma unroll
    for (int qi = 0; qi < 4; ++qi) {
      const int q = sl * 4 + qi;
      if (q < q1) {
        const uint32_t wl[4] = {cb[qi][0].x, cb[qi][0].y, cb[qi][0].z, cb[qi][0].w};
        const uint32_t wh[4] = {cb[qi][1].x, cb[qi][1].y, cb[qi][1].z, cb[qi][1].w};
#pragma unroll
        for (int pp = 0; pp < 2; ++pp) {
#pragma unroll
          for (int s = 0; s < 4; ++s) {
            const uint32_t M = 0x03030303u << (2 * s);
            const uint32_t a0 = wl[2 * pp] & M, a1 = wh[2 * pp] & M;
            const uint32_t a2 = wl[2 * pp + 1] & M, a3 = wh[2 * pp + 1] & M;
            const int st = pp * 4 + s;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
              const uint8_t* bp = bsm + ((size_t)nt * nqs + (q - q0)) * QB + (st * 32 + lane) * PARTS * 8;
              if (PARTS == 2) {
                uint4 bv = *reinterpret_cast<const uint4*>(bp);
                mma_u8s8(acc[nt][s][0], a0, a1, a2, a3, bv.x, bv.y);
                mma_u8s8(acc[nt][s][1], a0, a1, a2, a3, bv.z, bv.w);
              } else {
#pragma unroll
                for (int pt = 0; pt < PARTS; ++pt) {
                  uint2 bv = *reinterpret_cast<const uint2*>(bp + pt * 8);
                  mma_u8s8(acc[nt][s][pt], a0, a1, a2, a3, bv.x, bv.y);
                }
              }
            }
          }
        }
      }
      // refill the slot after its last use (no register copy that would wait for the load)
      load_quad(q + 4, cb[qi][0], cb[qi][1]);
    }
    // flush: value = sum_s 4^-s sum_part 256^part acc, times the (token, slice) scale
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const float sc0 = ssc[nt * 8 + 2 * tig][sl - sl0];  // padding tokens: 0
      const float sc1 = ssc[nt * 8 + 2 * tig + 1][sl - sl0];
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        float v = 0.f;
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          float vs = 0.f;
#pragma unroll
          for (int pt = PARTS - 1; pt >= 0; --pt) vs = vs * 256.f + (float)acc[nt][s][pt][c];
          v = fmaf(vs, 1.f / (float)(1 << (2 * s)), v);
        }
        accf[nt][c] = fmaf(v, (c & 1) ? sc1 : sc0, accf[nt][c]);
      }
    }
  }
  cp_async_wait<0>();

  // ---- partial tile into shared memory: tile[token][row]
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int c = 0; c < 4; ++c) tile[nt * 8 + 2 * tig + (c & 1)][warp * 16 + g + ((c & 2) ? 8 : 0)] = accf[nt][c];
  __syncthreads();

  if (p.splits > 1) {
    for (int i = threadIdx.x; i < ntok * TN; i += 256) {
      int tk = i / TN, rr = i % TN;
      if (rr < nrow) p.partial[((int64_t)split * p.m + tok0 + tk) * p.n + n0 + rr] = tile[tk][rr];
    }
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
      unsigned* ctr = &p.counters[(int64_t)col * gridDim.y + rg];
      unsigned old = atomicAdd(ctr, 1u);
      s_last = (old == (unsigned)p.splits - 1) ? 1u : 0u;
      if (s_last) *ctr = 0u;  // reset for the next launch / graph replay
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    for (int i = threadIdx.x; i < ntok * TN; i += 256) {
      int tk = i / TN, rr = i % TN;
      float sum = 0.f;
      if (rr < nrow)
        for (int sp = 0; sp < p.splits; ++sp)
          sum += __ldcg(&p.partial[((int64_t)sp * p.m + tok0 + tk) * p.n + n0 + rr]);
      tile[tk][rr] = sum;
    }
    __syncthreads();
  }
  // ---- epilogue: + c, Hadamard over rows (blocks of had_out <= TN), SV, bias, cast
  for (int i = threadIdx.x; i < ntok * TN; i += 256) {
    int tk = i / TN, rr = i % TN;
    tile[tk][rr] = rr < nrow ? tile[tk][rr] + csum[tk] : 0.f;
  }
  __syncthreads();
  if (p.tout != nullptr) {  // had_out not fused: hand t to the separate epilogue
    for (int i = threadIdx.x; i < ntok * TN; i += 256) {
      int tk = i / TN, rr = i % TN;
      if (rr < nrow) p.tout[(tok0 + tk) * p.n + n0 + rr] = tile[tk][rr];
    }
    return;
  }
  for (int h = 1; h < p.had_out; h <<= 1) {
    for (int i = threadIdx.x; i < ntok * (TN / 2); i += 256) {
      int tk = i / (TN / 2), j = i % (TN / 2);
      int lo = (j / h) * 2 * h + (j % h);
      float a = tile[tk][lo], b = tile[tk][lo + h];
      tile[tk][lo] = a + b;
      tile[tk][lo + h] = a - b;
    }
    __syncthreads();
  }
  const float hs = rsqrtf((float)p.had_out);
  T* y = static_cast<T*>(p.y);
  for (int i = threadIdx.x; i < ntok * TN; i += 256) {
    int tk = i / TN, rr = i % TN;
    if (rr < nrow) {  // rr == threadIdx.x % TN: sv_r / bias_r were prefetched for this row
      y[(tok0 + tk) * p.n + n0 + rr] = from_f<T>(fmaf(tile[tk][rr] * hs, sv_r, bias_r));
    }
  }
}

struct Plan {
  int parts, nt;
  int64_t nslices, nq, ncols, mpad, rgroups, splits, sps;
  bool fuse_in, fuse_out;
  size_t smem;
  size_t off_vq, off_scale, off_cpart, off_partial, off_counters, off_u, off_t, total;
};

int cc_major() { return device_props().major; }
// dynamic shared memory for the B digits: 96 KB, less where the opt-in limit is small (sm_86/89: 99 KB)
int64_t dyn_smem_limit() { return std::min<int64_t>(96 * 1024, (int64_t)device_props().smem_optin - 10 * 1024); }


Plan make_plan(const lattq_layer_desc* d, int64_t m, int32_t dtype, int32_t variant) {
  Plan P;
  P.parts = dtype == LATTQ_F32 ? 3 : 2;
  P.nt = (variant == LATTQ_VARIANT_IMMA_WIDE && P.parts == 2) ? 2 : 1;
  P.nslices = cdiv(d->k, SK);
  P.nq = cdiv(d->k, QW);
  P.ncols = cdiv(std::max<int64_t>(m, 1), 8 * P.nt);
  P.mpad = P.ncols * 8 * P.nt;
  P.rgroups = cdiv(d->n, TN);
  int64_t base = P.rgroups * P.ncols;
  // K splits: aim at `ctas_per_sm` CTAs per SM (LATTQ_IMMA_CTAS_PER_SM overrides, for tuning sweeps)
  int ctas_per_sm = 2;
  if (const char* e = std::getenv("LATTQ_IMMA_CTAS_PER_SM")) {
    int v = std::atoi(e);
    if (v >= 1 && v <= 64) ctas_per_sm = v;
  }
  int64_t target = std::max<int64_t>(1, cdiv((int64_t)ctas_per_sm * device_props().sm, base));
  P.sps = cdiv(P.nslices, std::min<int64_t>(target, P.nslices));
  // the B digits of a whole split live in shared memory: at most ~96 KB per CTA
  const int64_t per_slice = (int64_t)P.nt * 4 * 8 * 32 * P.parts * 8;
  P.sps = std::max<int64_t>(1, std::min<int64_t>(std::min<int64_t>(P.sps, 7), dyn_smem_limit() / per_slice));
  P.splits = cdiv(P.nslices, P.sps);
  P.smem = (size_t)(P.sps * per_slice);
  P.fuse_in = d->had_in <= SK;
  P.fuse_out = d->had_out <= TN;
  size_t o = 0;
  auto take = [&](size_t bytes) { size_t at = o; o += align256(bytes); return at; };
  P.off_vq = take((size_t)(P.mpad / 8) * P.nq * 8 * 32 * P.parts * 8);
  P.off_scale = take((size_t)P.mpad * P.nslices * 4);
  P.off_cpart = take((size_t)P.mpad * P.nslices * 4);
  P.off_partial = take(P.splits > 1 ? (size_t)P.splits * m * d->n * 4 : 0);
  P.off_counters = take((size_t)P.ncols * P.rgroups * 4);
  P.off_u = take(P.fuse_in ? 0 : (size_t)m * d->k * 4);
  P.off_t = take(P.fuse_out ? 0 : (size_t)m * d->n * 4);
  P.total = o;
  return P;
}

template <typename T, int PARTS, int NT>
lattq_status launch_t(const char* fn, const lattq_layer* L, const void* x, int64_t m, void* y, char* ws,
                      const Plan& P, cudaStream_t s) {
  const lattq_layer_desc& d = L->desc;
  ImmaParams p;
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
  p.ncols = (int)P.ncols;
  p.mpad = (int)P.mpad;
  p.vq = reinterpret_cast<uint8_t*>(ws + P.off_vq);
  p.scale = reinterpret_cast<float*>(ws + P.off_scale);
  p.cpart = reinterpret_cast<float*>(ws + P.off_cpart);
  p.partial = reinterpret_cast<float*>(ws + P.off_partial);
  p.counters = reinterpret_cast<unsigned*>(ws + P.off_counters);
  p.tout = P.fuse_out ? nullptr : reinterpret_cast<float*>(ws + P.off_t);
  p.y = y;
  lattq_status r;
  if (!P.fuse_in) {  // u = H_in(SU x) by the reference stages (fp32), then the prologue folds it
    float* u = reinterpret_cast<float*>(ws + P.off_u);
    int nb = (int)std::max<int64_t>(1, std::min<int64_t>(cdiv(m * d.k, 256), 65536));
    if ((r = ref_scale_in_launch(fn, x, std::is_same<T, float>::value ? LATTQ_F32
                                        : std::is_same<T, __half>::value ? LATTQ_F16 : LATTQ_BF16,
                                 L->su, u, m, d.k, nb, s)))
      return r;
    if ((r = fwht_launch(fn, u, LATTQ_F32, m, d.k, d.had_in, s))) return r;
    p.x = u;
  }
  imma_prologue_kernel<T, PARTS><<<dim3((unsigned)P.nslices, (unsigned)m), 256, 0, s>>>(p);  // real tokens only
  if ((r = check_launch(fn, "imma_prologue_kernel"))) return r;

  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3((unsigned)P.ncols, (unsigned)P.rgroups, (unsigned)P.splits);
  cfg.blockDim = dim3(256);
  cfg.dynamicSmemBytes = P.smem;
  static int smem_set[16] = {};  // per template instance and device: raise the dynamic smem limit once
  int cur_dev = 0;
  if (cudaGetDevice(&cur_dev) != cudaSuccess) {
    cudaGetLastError();
    cur_dev = 0;
  }
  int& smem_done = smem_set[cur_dev & 15];
  if (smem_done < (int)P.smem) {
    const int lim = (int)dyn_smem_limit();
    if (cudaFuncSetAttribute(imma_main_kernel<T, PARTS, NT>, cudaFuncAttributeMaxDynamicSharedMemorySize, lim) !=
        cudaSuccess) {
      cudaGetLastError();
      return LQ_ERR(Device, "%s: cannot raise the shared-memory limit of imma_main_kernel to %d bytes", fn, lim);
    }
    smem_done = lim;
  }
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = cc_major() >= 9 ? 1 : 0;  // programmatic dependent launch needs sm_90
  cudaError_t e = cudaLaunchKernelEx(&cfg, imma_main_kernel<T, PARTS, NT>, p);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return LQ_ERR(Device, "%s: launching imma_main_kernel failed: %s", fn, cudaGetErrorString(e));
  }
  if ((r = check_launch(fn, "imma_main_kernel"))) return r;
  if (!P.fuse_out) {
    float* t = reinterpret_cast<float*>(ws + P.off_t);
    if ((r = fwht_launch(fn, t, LATTQ_F32, m, d.n, d.had_out, s))) return r;
    if ((r = ref_epilogue_launch(fn, t, L->sv, L->bias, y,
                                 std::is_same<T, float>::value ? LATTQ_F32
                                 : std::is_same<T, __half>::value ? LATTQ_F16 : LATTQ_BF16,
                                 m, d.n, s)))
      return r;
  }
  return LATTQ_OK;
}

}  // namespace

const char* imma_unsupported_reason(const lattq_layer_desc* d, int32_t dtype, int32_t variant) {
  (void)dtype;
  (void)variant;
  if (d->bits != 2 || d->dim != 4) return "needs bits = 2 and dim = 4";
  if (d->n > (int64_t)65535 * TN) return "n too large";
  return "";
}

size_t imma_workspace_bytes(const lattq_layer_desc* d, int64_t m, int32_t dtype, int32_t variant) {
  return make_plan(d, m, dtype, variant).total;
}

lattq_status imma_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                          void* ws, size_t ws_bytes, int32_t variant, cudaStream_t s) {
  Plan P = make_plan(&L->desc, m, dtype, variant);
  if (ws_bytes < P.total) return LQ_ERR(Workspace, "%s: workspace too small (%zu < %zu)", fn, ws_bytes, P.total);
  if (P.mpad > 65535 || P.nslices > 2147483647) return LQ_ERR(Shape, "%s: m or k too large for this variant", fn);
  char* w = static_cast<char*>(ws);
  switch (dtype) {
    case LATTQ_F32: return launch_t<float, 3, 1>(fn, L, x, m, y, w, P, s);
    case LATTQ_F16:
      return P.nt == 2 ? launch_t<__half, 2, 2>(fn, L, x, m, y, w, P, s) : launch_t<__half, 2, 1>(fn, L, x, m, y, w, P, s);
    case LATTQ_BF16:
      return P.nt == 2 ? launch_t<__nv_bfloat16, 2, 2>(fn, L, x, m, y, w, P, s)
                       : launch_t<__nv_bfloat16, 2, 1>(fn, L, x, m, y, w, P, s);
  }
  return LQ_ERR(Dtype, "%s: argument 'dtype' = %d is not supported", fn, dtype);
}

}  // namespace lattq_cuda
