// Decode-path k=2, d=4 layer forward (LATTQ_VARIANT_GEMV): one launch per layer for batch 1..8, f16/bf16.
//
// Why a third kernel (docs/kernels.md, "GEMV"): Nsight Compute on the IMMA path at m = 1 showed a kernel
// bound by instruction issue and barriers, not by memory (28672x8192: 12.9M warp instructions, 1.29 TB/s,
// stalls led by barrier / fixed-latency waits / short scoreboard; the separate prologue kernel alone took
// ~10k cycles).  This kernel keeps the exact-integer arithmetic of the IMMA path (masked code words are the
// u8 A fragments of mma.m16n8k32.u8.s8; v = A^T H_in(SU x) in 16-bit fixed point split into two int8
// digits) and changes the schedule:
//
//  * Digits as mma columns.  A CTA serves 4 tokens; B column 2t + d holds digit d of token t, so one mma
//    covers both digits of 4 tokens (the IMMA path spent one mma per digit on 8 token columns of which
//    7 are padding at m = 1).  Lanes of padding columns skip their shared-memory load.
//  * One scale per (token, chunk of up to 32 quads) instead of per 1024-wide slice: the int32 accumulators
//    are flushed once per chunk (at most 2048 groups x 192 x 128 < 2^31, exact).
//  * Per-CTA prologue, all 8 warps: unit = (token, quad of 256 K), lane = 8 elements, the block Hadamard
//    (had_in <= 256) as 3 in-register + 5 shuffle stages; no global workspace, no second kernel.
//  * No barrier inside the main loop; the codes stream through a 4-quad register ring (16-byte
//    L1::no_allocate loads issued before griddepcontrol.wait: they do not depend on the previous kernel).
//  * Split-K over a thread-block cluster (sm_90, <= 8 CTAs) reduced through distributed shared memory in a
//    fixed rank order (deterministic); the output Hadamard (had_out <= 128), SV, bias and the cast run
//    per token in one warp with shuffles.  No workspace, no counters: graph-replay safe by construction.
//
// Layout (TILED v1, unchanged): lane (g, tig) of the warp owning 16-row tile T reads, for quad q, rows g
// and g + 8 of chunk 4q + tig (16-byte loads, a warp reads 1 KB contiguous).
#include <cstdlib>

#include "device_utils.cuh"
#include "kernels.cuh"

namespace lattq_cuda {

namespace {

using namespace dev;

constexpr int GW = 8;            // warps per CTA, one 16-row tile each
constexpr int GTN = GW * 16;     // rows per CTA
constexpr int GTOK = 4;          // tokens per CTA column (2 digit columns each = the 8 mma columns)
constexpr int GQB = 8 * 256;     // digit bytes per quad: 8 steps x 8 columns x 32 bytes
constexpr int GMAXS = 8;         // portable cluster size
constexpr float GQMAX = 32639.f; // 16-bit fixed point, two int8 digits (see fast_imma.cu)

#ifdef LATTQ_GEMV_TRACE
// Measurement builds only (-DLATTQ_GEMV_TRACE; bench/kernels/probe_latency.py --trace-lib): thread 0 of each CTA
// stamps the phases of the kernel, %globaltimer in slots 0..6 (slot 7: the SM id) and clock64 in 8..14 of its
// 16-slot record, read back (and cleared) with lattq_debug_gemv_trace().  Never compiled into the library
// otherwise.
constexpr int GTRACE_CTAS = 4096;
__device__ unsigned long long g_gemv_trace[GTRACE_CTAS * 16];
__device__ __forceinline__ void gemv_stamp(int i) {
  const unsigned cta = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  if (threadIdx.x == 0 && cta < GTRACE_CTAS) {
    unsigned long long t;
    unsigned smid;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    g_gemv_trace[cta * 16 + i] = t;
    g_gemv_trace[cta * 16 + 8 + i] = (unsigned long long)clock64();
    if (i == 0) g_gemv_trace[cta * 16 + 7] = smid;
  }
}
#define GEMV_STAMP(i) gemv_stamp(i)
#else
#define GEMV_STAMP(i) ((void)0)
#endif

struct GemvParams {
  const uint8_t* codes;
  const float* A;
  const float* b;
  const float* su;
  const float* sv;
  const float* bias;
  const void* x;
  void* y;
  int64_t n, k, m;
  int64_t C;      // 16-byte chunks per row
  int64_t T;      // 16-row tiles
  int nq;         // quads (256 K) of the layer
  int qps;        // quads per K split
  int splits;     // K splits (= cluster size on sm_90)
  int cq;         // chunk length in quads (from min(m, 4), the same for every column)
  int had_in, had_out;
};

// chunk length in quads for `ntok` tokens: ntok * cq <= 32, a multiple of 4 (the code ring period)
__host__ __device__ inline int chunk_quads(int ntok) { return ntok <= 1 ? 32 : ntok == 2 ? 16 : 8; }

template <typename T>
__global__ void __launch_bounds__(256, 2) gemv_kernel(GemvParams p) {
  extern __shared__ __align__(16) uint8_t dig[];  // [chunk quads][8 steps][8 columns][4 tig][8 bytes]
  __shared__ __align__(16) float ptile[GTOK][GTN];  // partial t of this CTA (+ its c part), read by the cluster
  __shared__ float smax[GTOK][32];
  __shared__ float scp[GTOK][32];
  __shared__ float sscale[GTOK];
  __shared__ float csum[GTOK];
  __shared__ float sAb[20];
  __shared__ __align__(16) float s_sv[GTN];
  __shared__ __align__(16) float s_bias[GTN];

  GEMV_STAMP(0);
  const int warp = __shfl_sync(0xffffffffu, (int)(threadIdx.x >> 5), 0), lane = threadIdx.x & 31;
  const int g = lane >> 2, tig = lane & 3;
  const int col = blockIdx.x, rg = blockIdx.y, split = blockIdx.z;
  const int64_t tileI = (int64_t)rg * GW + warp;
  const bool tile_ok = tileI < p.T;
  const int q0 = split * p.qps;
  const int q1 = min(p.nq, q0 + p.qps);
  const int64_t n0 = (int64_t)rg * GTN;
  const int64_t tok0 = (int64_t)col * GTOK;
  const int ntok = (int)(p.m - tok0 < GTOK ? p.m - tok0 : GTOK);
  const int nrow = (int)(p.n - n0 < GTN ? p.n - n0 : GTN);
  const int cq = p.cq;

  // 1. the first 4 quads of codes in flight before anything else
  // quad q of this lane: rows g, g + 8 of chunk 4q + tig; valid while q < qlim (tile, split and row end)
  const uint8_t* cptr = p.codes + (tileI * p.C + tig) * 256 + g * 16;
  const int64_t qc = (p.C - tig + 3) >> 2;
  const int qlim = tile_ok ? (int)(qc < q1 ? qc : q1) : 0;
  auto load_quad = [&](int q, uint4& lo, uint4& hi) {
    if (q < qlim) {
      const uint8_t* ptr = cptr + (int64_t)q * 1024;
      lo = ldg_stream(ptr);
      hi = ldg_stream(ptr + 128);
    } else {
      lo = make_uint4(0, 0, 0, 0);
      hi = lo;
    }
  };
  uint4 cb[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i) load_quad(q0 + i, cb[i][0], cb[i][1]);
  if (threadIdx.x < GTN) {
    const int rr = threadIdx.x;
    s_sv[rr] = rr < nrow ? __ldg(p.sv + n0 + rr) : 0.f;
    s_bias[rr] = (p.bias != nullptr && rr < nrow) ? __ldg(p.bias + n0 + rr) : 0.f;
  } else if (threadIdx.x < GTN + 20) {
    const int i = threadIdx.x - GTN;
    sAb[i] = i < 16 ? __ldg(p.A + i) : __ldg(p.b + i - 16);
  } else if (threadIdx.x < GTN + 20 + GTOK) {
    const int i = threadIdx.x - GTN - 20;
    csum[i] = 0.f;
    sscale[i] = 0.f;  // padding tokens keep scale 0 (their digit columns are never loaded)
  }
  pdl_wait();  // x is ready from here on
  pdl_launch_dependents();
  __syncthreads();  // sAb, csum, sscale
  GEMV_STAMP(1);

  const bool colok = g < 2 * ntok;  // this lane's B column belongs to a real token
  float accf[2] = {0.f, 0.f};       // rows g and g + 8 of token tig
  const float hin = rsqrtf((float)p.had_in);

  for (int c0 = q0; c0 < q1; c0 += cq) {
    const int c1 = min(q1, c0 + cq);
    const int nqc = c1 - c0;
    if (c0 != q0) __syncthreads();  // the previous chunk's digits and scales are no longer read
    // 2. prologue: unit u = qu * ntok + tk, warp w takes u = w, w + 8, w + 16, w + 24
    float v[4][8];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int u = warp + GW * j;
      if (u < nqc * ntok) {
        const int qu = u / ntok, tk = u - qu * ntok;
        const int64_t kk = (int64_t)(c0 + qu) * 256 + lane * 8;
        const int64_t tok = tok0 + tk;
        float e[8];
#pragma unroll
        for (int h2 = 0; h2 < 2; ++h2) {
          float4 x4 = make_float4(0.f, 0.f, 0.f, 0.f);
          const int64_t k4 = kk + 4 * h2;
          if (k4 < p.k) {
            x4 = load4<T>(p.x, tok * p.k + k4);
            x4.x *= __ldg(p.su + k4);  // su is only 4-byte aligned (API contract)
            x4.y *= __ldg(p.su + k4 + 1);
            x4.z *= __ldg(p.su + k4 + 2);
            x4.w *= __ldg(p.su + k4 + 3);
          }
          e[4 * h2] = x4.x;
          e[4 * h2 + 1] = x4.y;
          e[4 * h2 + 2] = x4.z;
          e[4 * h2 + 3] = x4.w;
        }
        // block Hadamard (had_in <= 256): h = 1, 2, 4 inside the lane, h = 8 .. 128 across lanes
#pragma unroll
        for (int h = 1; h < 8; h <<= 1) {
          if (h < p.had_in) {
#pragma unroll
            for (int i = 0; i < 8; ++i) {
              if ((i & h) == 0) {
                const float a = e[i], b = e[i + h];
                e[i] = a + b;
                e[i + h] = a - b;
              }
            }
          }
        }
#pragma unroll
        for (int hl = 1; hl < 32; hl <<= 1) {
          if (hl * 8 < p.had_in) {
            const bool upper = (lane & hl) != 0;
#pragma unroll
            for (int i = 0; i < 8; ++i) {
              const float o = __shfl_xor_sync(0xffffffffu, e[i], hl);
              e[i] = upper ? o - e[i] : e[i] + o;
            }
          }
        }
        // fold: v = A^T u, c = b . u for the lane's 2 groups; unit maximum of |v|
        float mx = 0.f, cp = 0.f;
#pragma unroll
        for (int gg = 0; gg < 2; ++gg) {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            float acc = 0.f;
#pragma unroll
            for (int jj = 0; jj < 4; ++jj) acc = fmaf(sAb[jj * 4 + i], e[4 * gg + jj], acc);
            acc *= hin;
            v[j][4 * gg + i] = acc;
            mx = fmaxf(mx, fabsf(acc));
            cp = fmaf(sAb[16 + i], e[4 * gg + i] * hin, cp);
          }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
          cp += __shfl_xor_sync(0xffffffffu, cp, o);
        }
        if (lane == 0) {
          smax[tk][qu] = mx;
          scp[tk][qu] = cp;
        }
      }
    }
    __syncthreads();
    GEMV_STAMP(2);
    // chunk scale per token, c part (fixed order: deterministic)
    if (threadIdx.x < (unsigned)ntok) {
      float mx = 0.f, c = csum[threadIdx.x];
      for (int qu = 0; qu < nqc; ++qu) {
        mx = fmaxf(mx, smax[threadIdx.x][qu]);
        c += scp[threadIdx.x][qu];
      }
      csum[threadIdx.x] = c;
      sscale[threadIdx.x] = mx > 0.f ? mx / GQMAX : 0.f;
    }
    // digits: lane l holds groups 2l, 2l+1 of its quad = bytes 2(l&3), 2(l&3)+1 of the 8-byte unit
    // (step pp * 4 + s with pp = (l >> 2) & 1, column 2 tk + part, tig' = l >> 3)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int u = warp + GW * j;
      if (u < nqc * ntok) {
        const int qu = u / ntok, tk = u - qu * ntok;
        float mx = lane < nqc ? smax[tk][lane] : 0.f;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        const float inv = mx > 0.f ? GQMAX / mx : 0.f;
        const int pp = (lane >> 2) & 1, tg = lane >> 3, c = lane & 3;
        uint8_t* base = dig + (size_t)qu * GQB;
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          uint32_t lo2 = 0, hi2 = 0;  // digit 0 / digit 1 bytes of the two groups
#pragma unroll
          for (int gg = 0; gg < 2; ++gg) {
            // clamp: v*inv can round one unit above GQMAX, which would overflow the top int8 digit
            int q = max(-(int)GQMAX, min((int)GQMAX, __float2int_rn(v[j][4 * gg + s] * inv)));
            const int d0 = ((q + 128) & 255) - 128;
            const int d1 = (q - d0) >> 8;
            lo2 |= ((uint32_t)(uint8_t)(int8_t)d0) << (8 * gg);
            hi2 |= ((uint32_t)(uint8_t)(int8_t)d1) << (8 * gg);
          }
          const int st = pp * 4 + s;
          uint8_t* unit0 = base + ((st * 8 + 2 * tk) * 4 + tg) * 8 + 2 * c;
          *reinterpret_cast<uint16_t*>(unit0) = (uint16_t)lo2;
          *reinterpret_cast<uint16_t*>(unit0 + 32) = (uint16_t)hi2;  // next column (+4 tig x 8 bytes)
        }
      }
    }
    __syncthreads();
    GEMV_STAMP(3);
    // 3. main loop over the chunk's quads: no barrier; one mma per (step) for both digits of 4 tokens
    int acc[4][4];
#pragma unroll
    for (int s = 0; s < 4; ++s)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[s][c] = 0;
    for (int qq = c0; qq < c1; qq += 4) {
#pragma unroll
      for (int qi = 0; qi < 4; ++qi) {
        const int q = qq + qi;
        if (q < c1) {  // warp-uniform
          const uint8_t* bq = dig + (size_t)(q - c0) * GQB + lane * 8;
#pragma unroll
          for (int pp = 0; pp < 2; ++pp) {
            const uint32_t wl0 = pp ? cb[qi][0].z : cb[qi][0].x, wl1 = pp ? cb[qi][0].w : cb[qi][0].y;
            const uint32_t wh0 = pp ? cb[qi][1].z : cb[qi][1].x, wh1 = pp ? cb[qi][1].w : cb[qi][1].y;
#pragma unroll
            for (int s = 0; s < 4; ++s) {
              const uint32_t M = 0x03030303u << (2 * s);
              uint2 bv = make_uint2(0u, 0u);
              if (colok) bv = *reinterpret_cast<const uint2*>(bq + (pp * 4 + s) * 256);
              mma_u8s8(acc[s], wl0 & M, wh0 & M, wl1 & M, wh1 & M, bv.x, bv.y);
            }
          }
          // refill the slot only after its last use: the load then lands in the same registers (no register
          // copy that would wait for it), and 3 quads stay in flight while this warp computes
          load_quad(q + 4, cb[qi][0], cb[qi][1]);
        }
      }
    }
    GEMV_STAMP(4);
    // flush: column 2 tig = digit 0, 2 tig + 1 = digit 1 of token tig; value = sum_s 4^-s (d0 + 256 d1)
    const float sc = sscale[tig];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float val = 0.f;
#pragma unroll
      for (int s = 0; s < 4; ++s)
        val = fmaf(fmaf((float)acc[s][2 * r + 1], 256.f, (float)acc[s][2 * r]), 1.f / (float)(1 << (2 * s)), val);
      accf[r] = fmaf(val, sc, accf[r]);
    }
  }
  __syncthreads();  // csum complete

  // 4. partial tile (+ this split's c part: the cluster sum then carries the whole c)
  if (tig < ntok) {
    ptile[tig][warp * 16 + g] = accf[0] + csum[tig];
    ptile[tig][warp * 16 + g + 8] = accf[1] + csum[tig];
  }
  const int nsp = p.splits;
  const int rank = nsp > 1 ? cluster_rank() : 0;
  if (nsp > 1) cluster_sync_all();  // every partial tile of the cluster is written
  else __syncthreads();
  GEMV_STAMP(5);
  // 5. rank r finishes tokens tk = r, r + nsp, ...: one warp per token, lane l owns rows 4l .. 4l + 3
  const int tk = rank + warp * nsp;
  if (warp < GTOK && tk < ntok) {
    float4 t4 = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int r = 0; r < nsp; ++r) {  // fixed order
      const float* src = nsp > 1 ? map_rank(&ptile[tk][4 * lane], r) : &ptile[tk][4 * lane];
      const float4 o = *reinterpret_cast<const float4*>(src);
      t4.x += o.x;
      t4.y += o.y;
      t4.z += o.z;
      t4.w += o.w;
    }
    float e[4] = {t4.x, t4.y, t4.z, t4.w};
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (4 * lane + i >= nrow) e[i] = 0.f;
    if (p.had_out > 1) {
      const float a0 = e[0] + e[1], a1 = e[0] - e[1], a2 = e[2] + e[3], a3 = e[2] - e[3];
      e[0] = a0;
      e[1] = a1;
      e[2] = a2;
      e[3] = a3;
    }
    if (p.had_out > 2) {
      const float a0 = e[0] + e[2], a1 = e[1] + e[3], a2 = e[0] - e[2], a3 = e[1] - e[3];
      e[0] = a0;
      e[1] = a1;
      e[2] = a2;
      e[3] = a3;
    }
#pragma unroll
    for (int hl = 1; hl < 32; hl <<= 1) {
      if (hl * 4 < p.had_out) {
        const bool upper = (lane & hl) != 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float o = __shfl_xor_sync(0xffffffffu, e[i], hl);
          e[i] = upper ? o - e[i] : e[i] + o;
        }
      }
    }
    const float hs = rsqrtf((float)p.had_out);
    T* y = static_cast<T*>(p.y) + (tok0 + tk) * p.n + n0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int rr = 4 * lane + i;
      if (rr < nrow) y[rr] = from_f<T>(fmaf(e[i] * hs, s_sv[rr], s_bias[rr]));
    }
  }
  GEMV_STAMP(6);
  if (nsp > 1) cluster_sync_all();  // no CTA leaves while its shared memory may still be read
}

struct GemvPlan {
  int64_t nq, ncols, rgroups, splits, qps;
  size_t smem;
};

int gemv_max_splits() {
  int cap = device_props().major >= 9 ? GMAXS : 1;
  if (const char* e = std::getenv("LATTQ_GEMV_MAX_SPLITS")) {  // tuning / tests: 1 = the sm_80 code path
    const int v = std::atoi(e);
    if (v >= 1 && v <= GMAXS) cap = std::min(cap, v);
  }
  return cap;
}

// The kernels' dynamic shared memory limit (32 quads of digits), set once per device for both instantiations (the
// occupancy queries of the plan need it too).
bool gemv_set_smem() {
  static int done[16] = {};
  const int cur = current_device();
  if (done[cur & 15]) return true;
  if (cudaFuncSetAttribute(gemv_kernel<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize, 32 * GQB) != cudaSuccess ||
      cudaFuncSetAttribute(gemv_kernel<__nv_bfloat16>, cudaFuncAttributeMaxDynamicSharedMemorySize, 32 * GQB) !=
          cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  done[cur & 15] = 1;
  return true;
}

size_t gemv_smem(int64_t m, int64_t qps) {
  const int ntok_max = (int)std::min<int64_t>(GTOK, std::max<int64_t>(m, 1));
  return (size_t)std::min<int64_t>(chunk_quads(ntok_max), qps) * GQB;
}

// How many CTAs (splits = 1) or clusters of `splits` CTAs can be resident at once with `smem` bytes of dynamic
// shared memory each.  The cluster count can be well below slots / splits (H100, 2 CTAs per SM: Nsight Compute
// reported 79 clusters of 3 and 62 of 4, not 88 and 66), and a cluster that does not fit runs in a second wave
// (the session-6 trace of 11008 x 4096 at m = 1 with 3 splits: 86 clusters, CTAs starting 10 us late).
// Cached per (device, splits, smem in 2 KB units); the fallback is 2 CTAs per SM.
int64_t gemv_resident(int splits, size_t smem) {
  static int cache[16][GMAXS + 1][33] = {};
  const int cur = current_device();
  int& c = cache[cur & 15][splits][std::min<size_t>(32, smem / GQB)];
  if (c == 0) {
    int n = 0;
    if (gemv_set_smem()) {
      if (splits == 1) {
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_kernel<__half>, 256, smem) == cudaSuccess)
          n *= std::max(1, device_props().sm);
      } else {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(1, 1, (unsigned)splits);
        cfg.blockDim = dim3(256);
        cfg.dynamicSmemBytes = smem;
        cudaLaunchAttribute attr;
        attr.id = cudaLaunchAttributeClusterDimension;
        attr.val.clusterDim.x = 1;
        attr.val.clusterDim.y = 1;
        attr.val.clusterDim.z = (unsigned)splits;
        cfg.attrs = &attr;
        cfg.numAttrs = 1;
        if (cudaOccupancyMaxActiveClusters(&n, gemv_kernel<__half>, &cfg) != cudaSuccess) n = 0;
      }
    }
    if (n <= 0) {
      cudaGetLastError();
      n = std::max(1, device_props().sm) * 2 / splits;
    }
    c = std::max(1, n);
  }
  return c;
}

// Split-K choice: minimise waves x (quads per CTA + 3) + splits: the prologue / epilogue counted as 3 quads,
// the cluster reduction as one quad per rank (session-4 sweep on the H100: 4096x4096 at m = 1 took 12.2 us
// with 4 splits, 15.7 us with 8); ties go to fewer splits.  Waves count the clusters that fit at once
// (gemv_resident), not the CTA slots.
GemvPlan make_gemv_plan(const lattq_layer_desc* d, int64_t m) {
  GemvPlan P;
  P.nq = cdiv(d->k, 256);
  P.ncols = cdiv(std::max<int64_t>(m, 1), GTOK);
  P.rgroups = cdiv(d->n, GTN);
  const int cap = gemv_max_splits();
  int64_t best_s = 1, best_cost = INT64_MAX;
  for (int64_t s = 1; s <= cap && s <= P.nq; ++s) {
    const int64_t qps = cdiv(P.nq, s);
    const int64_t splits = cdiv(P.nq, qps);
    if (splits != s) continue;
    const int64_t waves = cdiv(P.ncols * P.rgroups, gemv_resident((int)s, gemv_smem(m, qps)));
    const int64_t cost = waves * (qps + 3) + splits;  // + cluster reduction (sweep: 4096x4096)
    if (cost < best_cost) {
      best_cost = cost;
      best_s = s;
    }
  }
  P.splits = best_s;
  P.qps = cdiv(P.nq, best_s);
  P.smem = gemv_smem(m, P.qps);
  return P;
}

template <typename T>
lattq_status gemv_launch_t(const char* fn, const lattq_layer* L, const void* x, int64_t m, void* y, const GemvPlan& P,
                           cudaStream_t s) {
  const lattq_layer_desc& d = L->desc;
  GemvParams p = {};
  p.codes = L->codes;
  p.A = L->A;
  p.b = L->b;
  p.su = L->su;
  p.sv = L->sv;
  p.bias = L->bias;
  p.x = x;
  p.y = y;
  p.n = d.n;
  p.k = d.k;
  p.m = m;
  p.C = cdiv(d.k / 4, 16);
  p.T = cdiv(d.n, 16);
  p.nq = (int)P.nq;
  p.qps = (int)P.qps;
  p.splits = (int)P.splits;
  p.cq = chunk_quads((int)std::min<int64_t>(GTOK, std::max<int64_t>(m, 1)));
  p.had_in = d.had_in;
  p.had_out = d.had_out;
  if (!gemv_set_smem())
    return LQ_ERR(Device, "%s: cannot set the dynamic shared memory of gemv_kernel to %d bytes", fn, 32 * GQB);
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
  const cudaError_t e = cudaLaunchKernelEx(&cfg, gemv_kernel<T>, p);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return LQ_ERR(Device, "%s: launching gemv_kernel (grid %lld x %lld x %lld, cluster %lld) failed: %s", fn,
                  (long long)P.ncols, (long long)P.rgroups, (long long)P.splits, (long long)P.splits,
                  cudaGetErrorString(e));
  }
  return check_launch(fn, "gemv_kernel");
}

}  // namespace

const char* gemv_unsupported_reason(const lattq_layer_desc* d, int32_t dtype) {
  if (d->bits != 2 || d->dim != 4) return "needs bits = 2 and dim = 4";
  if (dtype != LATTQ_F16 && dtype != LATTQ_BF16) return "needs f16 or bf16 activations";
  if (d->had_in > 256) return "needs had_in <= 256";
  if (d->had_out > GTN) return "needs had_out <= 128";
  if (d->n > (int64_t)65535 * GTN) return "n too large";
  if (cdiv(d->k, 256) > 2147483647 / 4) return "k too large";
  return "";
}

lattq_status gemv_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                          cudaStream_t s) {
  const GemvPlan P = make_gemv_plan(&L->desc, m);
  if (P.ncols > 2147483647 || P.rgroups > 65535) return LQ_ERR(Shape, "%s: m or n too large for this variant", fn);
  switch (dtype) {
    case LATTQ_F16: return gemv_launch_t<__half>(fn, L, x, m, y, P, s);
    case LATTQ_BF16: return gemv_launch_t<__nv_bfloat16>(fn, L, x, m, y, P, s);
  }
  return LQ_ERR(Dtype, "%s: argument 'dtype' = %d is not supported by variant gemv (f16, bf16)", fn, dtype);
}

}  // namespace lattq_cuda

#ifdef LATTQ_GEMV_TRACE
// copies the first `records` CTA records to `host` and clears the trace (unwritten records read 0)
extern "C" int lattq_debug_gemv_trace(unsigned long long* host, int records) {
  const int n = records < lattq_cuda::GTRACE_CTAS ? records : lattq_cuda::GTRACE_CTAS;
  void* dptr = nullptr;
  if (cudaMemcpyFromSymbol(host, lattq_cuda::g_gemv_trace, (size_t)n * 16 * 8) != cudaSuccess) return 1;
  if (cudaGetSymbolAddress(&dptr, lattq_cuda::g_gemv_trace) != cudaSuccess) return 1;
  return cudaMemset(dptr, 0, sizeof(lattq_cuda::g_gemv_trace)) == cudaSuccess ? 0 : 1;
}
#endif
