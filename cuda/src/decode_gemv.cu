// Decode-path k=2, d=4 layer forward, f16/bf16, batch 1..16: LATTQ_VARIANT_GEMV (one launch per layer, each CTA
// runs the input transform of its K range) and LATTQ_VARIANT_GEMV_PDL (session 7: the transform runs once per layer
// in gemv_prep_kernel, whose digits the main kernel copies from the workspace; the main kernel launches through
// programmatic dependent launch while the prologue runs and streams its first codes meanwhile).  docs/kernels.md.
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
//  * GEMV: per-CTA prologue, all 8 warps: unit = (token, quad of 256 K), lane = 8 elements, the block Hadamard
//    (had_in <= 256) as 3 in-register + 5 shuffle stages; no global workspace, no second kernel.  GEMV_PDL: the
//    same prologue once per layer in gemv_prep_kernel (32 warps, one unit each; two with 16-token columns), digits through the workspace.
//  * No barrier inside the main loop; the codes stream through a register ring of 4 (GEMV) or 8 (GEMV_PDL)
//    quads (16-byte L1::no_allocate loads issued before griddepcontrol.wait: they do not depend on the
//    previous kernel).
//  * Split-K over a thread-block cluster (sm_90, <= 8 CTAs) reduced through distributed shared memory in a
//    fixed rank order (deterministic); the output Hadamard (had_out <= 128), SV, bias and the cast run
//    per token in one warp with shuffles.  No counters; GEMV needs no workspace, GEMV_PDL's is rewritten in
//    full by every launch: graph-replay safe by construction.
//
// Layout (TILED v1, unchanged): lane (g, tig) of the warp owning 16-row tile T reads, for quad q, rows g
// and g + 8 of chunk 4q + tig (16-byte loads, a warp reads 1 KB contiguous).
#include <atomic>
#include <cstdlib>

#include "device_utils.cuh"
#include "kernels.cuh"

namespace lattq_cuda {

namespace {

using namespace dev;

constexpr int GW = 8;            // warps per CTA, one 16-row tile each
constexpr int GTN = GW * 16;     // rows per CTA
constexpr int GTOK = 4;          // tokens per CTA column (2 digit columns each = the 8 mma columns)
constexpr int GTOK16 = 16;       // GEMV_PDL at m >= 5 (session 9): 16 tokens per column, 4 mmas per code fragment
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
// GEMV_PDL's prologue kernel, CTA 0 thread 0: start, after its PDL wait, after the loads barrier (x and SU have
// landed), after the maxima barrier (Hadamard, fold, maxima done), end (slots 0..4); lattq_debug_prep_trace()
__device__ unsigned long long g_prep_trace[16];
__device__ __forceinline__ void prep_stamp(int i) {
  if (threadIdx.x == 0 && blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0) {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    g_prep_trace[i] = t;
  }
}
#define PREP_STAMP(i) prep_stamp(i)
#else
#define GEMV_STAMP(i) ((void)0)
#define PREP_STAMP(i) ((void)0)
#endif

// One layer of a launch.  A launch serves 1..GMAXG layers that read the same x (Q, K and V; gate and up:
// lattq_cuda_forward_group): same K, so the same digit chunks, split-K plan and code row length; its row groups
// (blockIdx.y) are those of layer 0, then layer 1, ...  A CTA never spans two layers.
constexpr int GMAXG = 8;  // = LATTQ_CUDA_MAX_GROUP
struct GemvSeg {
  const uint8_t* codes;
  const float* A;
  const float* b;
  const float* su;
  const float* sv;
  const float* bias;
  void* y;
  int64_t n;
  int64_t T;  // 16-row tiles
  int rg0;    // first row group (blockIdx.y) of this layer
  int had_in, had_out;
};

// The kernel parameters with room for NSEG layers: 1 for one-layer launches (GROUP = false), GMAXG for groups.  A
// one-layer launch passes a ~200-byte struct, not the ~800 bytes of the group table: each launch copies its
// parameters, and the larger struct measured 0.1-0.3 us slower per call (session-8 A/B, docs/kernels.md).
template <int NSEG>
struct GemvParamsN {
  GemvSeg seg[NSEG];
  int nseg;
  const void* x;
  uint8_t* ws_dig;  // GEMV_PDL: digits of v, [column][quad] in the compact chunk layout (chunk_prologue)
  float* ws_sc;     // GEMV_PDL: [column][chunk][4] fixed-point scale of each (token, chunk)
  float* ws_c;      // GEMV_PDL: [column][chunk][4] c part of each (token, chunk)
  size_t ws_seg;    // GEMV_PDL: workspace bytes per layer (layer i's three arrays start i * ws_seg bytes later)
  int64_t k, m;
  int64_t C;      // 16-byte chunks per row
  int nq;         // quads (256 K) of the layer
  int qps;        // quads per K split
  int splits;     // K splits (= cluster size on sm_90)
  int cq;         // chunk length in quads (from min(m, 4), the same for every column)
  int cps;        // chunks per split, cdiv(qps, cq)
  int trig;       // GEMV_PDL prologue kernel: where it lets the main kernel launch (prep_trigger)
};

// the layer of row group rg (layers are in row-group order).  GROUP = false (one layer, the common case): 0, so every
// p.seg[0] field is a fixed constant-bank address the compiler may reload instead of keeping a register (a dynamic
// index made the one-layer kernels 1-6 us slower at m = 1 and 4 on the H100: session 8, docs/kernels.md)
template <int NSEG>
__device__ __forceinline__ int gemv_seg_of(const GemvParamsN<NSEG>& p, int rg) {
  if (NSEG == 1) return 0;
  int si = 0;
#pragma unroll
  for (int i = 1; i < NSEG; ++i) si += (i < p.nseg && rg >= p.seg[i].rg0) ? 1 : 0;
  return si;
}

// GEMV_PDL's split-K through the workspace (the GRED kernel instances, session 22; one-layer launches at m <= 4): after
// the layer's three workspace arrays come the partial tiles, [row group][split][GTOK][GTN] floats (their c parts
// included), then one arrival counter per row group, zeroed by the prologue kernel.  Their addresses follow from
// ws_sc and ws_c (the arrays are sc bytes apart, and the partial tiles start sc bytes after ws_c), so the kernel
// parameters keep their size: a larger struct measured 0.1-0.3 us slower per call (sessions 8 and 22).  The partial
// tiles are bounded by GRED_MAX_CTAS row groups x splits per launch, so that the workspace size does not depend on the
// device (1 MB at most).
constexpr int64_t GRED_MAX_CTAS = 512;
__host__ __device__ constexpr size_t gred_part_bytes(int64_t rgroups) {
  return ((size_t)(rgroups * GMAXS < GRED_MAX_CTAS ? rgroups * GMAXS : GRED_MAX_CTAS) * GTOK * GTN * sizeof(float) + 255) /
         256 * 256;
}
template <int NSEG>
__device__ __forceinline__ float* gred_part(const GemvParamsN<NSEG>& p) {
  const uint8_t* c = reinterpret_cast<const uint8_t*>(p.ws_c);
  return reinterpret_cast<float*>(const_cast<uint8_t*>(c) + (c - reinterpret_cast<const uint8_t*>(p.ws_sc)));
}
template <int NSEG>
__device__ __forceinline__ unsigned* gred_cnt(const GemvParamsN<NSEG>& p) {
  return reinterpret_cast<unsigned*>(reinterpret_cast<uint8_t*>(gred_part(p)) +
                                     gred_part_bytes((p.seg[0].n + GTN - 1) / GTN));
}

template <typename P>
__device__ __forceinline__ P* ws_at(P* base, size_t bytes) {
  return reinterpret_cast<P*>(reinterpret_cast<uint8_t*>(base) + bytes);
}

// chunk length in quads for `ntok` tokens: ntok * cq <= 32, a multiple of 4 (the code ring period)
__host__ __device__ inline int chunk_quads(int ntok) { return ntok <= 1 ? 32 : ntok == 2 ? 16 : 8; }

// Compact digit layout of a chunk for ntok tokens: quad qu at qu * 512 ntok bytes, in it step st (= pp * 4 + s,
// 32 K-rows of the mma) at st * 64 ntok, B column cl (= 2 tk + digit) at cl * 32, then 8 bytes per lane tig: the
// int8 B fragment (b0, b1) of mma.m16n8k32 for lane (g = cl, tig).  So main-loop lane l reads its fragment at
// st * 64 ntok + 8 l, lanes of padding columns (l >= 8 ntok) read nothing, and nothing is stored for them.
constexpr int GQT = 512;  // digit bytes per quad and token

// The input transform of one digit chunk (quads [c0, c0 + nqc) of tokens tok0 .. tok0 + ntok - 1) on NW warps of
// the CTA: unit u = qu * ntok + tk, warp w takes u = w, w + NW, ..., lane = 8 elements.  x * SU, block Hadamard
// (had_in <= 256: 3 in-register + 5 shuffle stages), v = A^T u and the c part; then the per-token chunk maximum
// (one barrier), scale and int8 digits of v in the compact layout at `dig` (shared or global memory).  Thread
// tk < ntok sets sscale[tk] and adds the chunk's c part to csum[tk].  Three barriers: after the loads (so the
// caller needs none before: the first orders its shared-state writes and the previous chunk's reads), after the
// maxima, at the end.
// With sul != nullptr (NW = 32, one unit per warp), the caller has already loaded the lane's 8 SU values there.
template <typename T, int NW, int TOK, typename P>
__device__ __forceinline__ void chunk_prologue(const P& p, const GemvSeg& S, const float* sAb, int c0, int nqc, int64_t tok0,
                                               int ntok, int warp, int lane, uint8_t* dig, float (*smax)[32],
                                               float (*scp)[32], float* sscale, float* csum,
                                               const float* sul = nullptr) {
  // units per warp: nqc * ntok <= 32 (TOK = 4: chunk_quads) or <= 64 (TOK = 16: 4 quads of 16 tokens)
  constexpr int J = (TOK == GTOK ? 32 : 64) / NW;
  static_assert(J >= 1 && (TOK == GTOK || NW == 32), "16-token columns: the prologue kernel only");
  const float hin = rsqrtf((float)S.had_in);
  float v[J][8];
  // (a) every unit's x * SU in flight at once: one memory latency for the whole chunk
#pragma unroll
  for (int j = 0; j < J; ++j) {
    const int u = warp + NW * j;
    if (u < nqc * ntok) {
      const int qu = u / ntok, tk = u - qu * ntok;
      const int64_t kk = (int64_t)(c0 + qu) * 256 + lane * 8;
      const int64_t tok = tok0 + tk;
#pragma unroll
      for (int h2 = 0; h2 < 2; ++h2) {
        float4 x4 = make_float4(0.f, 0.f, 0.f, 0.f);
        const int64_t k4 = kk + 4 * h2;
        if (k4 < p.k) {
          // x comes from the PDL predecessor, read after griddepcontrol.wait (its writes are complete and visible).
          // ld.global.cg here made GEMV_PDL 0.2-2.1 us slower per call on the H100 (m = 1: 11008x4096 18.7 vs 16.6,
          // 28672x8192 39.0 vs 36.9; bench/results/gpu/h100_session7/decode_ldcg_a6ddd84.json vs decode_0c7a5fa.json),
          // so x keeps the read-only path (__ldg) like every lattq prologue.
          x4 = load4<T>(p.x, tok * p.k + k4);
          if (sul != nullptr) {
            x4.x *= sul[4 * h2];
            x4.y *= sul[4 * h2 + 1];
            x4.z *= sul[4 * h2 + 2];
            x4.w *= sul[4 * h2 + 3];
          } else {
            x4.x *= __ldg(S.su + k4);  // su is only 4-byte aligned (API contract)
            x4.y *= __ldg(S.su + k4 + 1);
            x4.z *= __ldg(S.su + k4 + 2);
            x4.w *= __ldg(S.su + k4 + 3);
          }
        }
        v[j][4 * h2] = x4.x;
        v[j][4 * h2 + 1] = x4.y;
        v[j][4 * h2 + 2] = x4.z;
        v[j][4 * h2 + 3] = x4.w;
      }
    }
  }
  // the prologue kernel, trigger 3: the main kernel may launch once every unit's x and SU loads are issued (ahead of
  // its code stream in the memory system; they are in flight, not landed)
  if (NW == 32 && p.trig == 3) pdl_launch_dependents();
  // the caller's shared state (sAb, csum, sscale) is set, and the previous chunk's digits, maxima and scales are
  // no longer read: the loads above were issued before this barrier, the writes below come after it
  __syncthreads();
  if (NW == 32) PREP_STAMP(2);
  if (NW == 32 && p.trig == 4) pdl_launch_dependents();  // trigger 4: once x and SU have landed
  // (b) block Hadamard, fold, unit maximum and c part
#pragma unroll
  for (int j = 0; j < J; ++j) {
    const int u = warp + NW * j;
    if (u < nqc * ntok) {
      const int qu = u / ntok, tk = u - qu * ntok;
      float e[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) e[i] = v[j][i];
      // block Hadamard (had_in <= 256): h = 1, 2, 4 inside the lane, h = 8 .. 128 across lanes
      warp_block_hadamard(e, S.had_in, lane);
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
  if (NW == GW) GEMV_STAMP(2);
  if (NW == 32) {  // the prologue kernel
    PREP_STAMP(3);
    if (p.trig == 1) pdl_launch_dependents();
  }
  // chunk scale per token, c part: warp tk reduces its token's nqc <= 32 unit values with shuffles (a fixed tree:
  // deterministic; one thread looping over 32 shared-memory values held its warp ~0.5 us in the critical path)
  if (warp < ntok) {
    float mx = lane < nqc ? smax[warp][lane] : 0.f, c = lane < nqc ? scp[warp][lane] : 0.f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      c += __shfl_xor_sync(0xffffffffu, c, o);
    }
    if (lane == 0) {
      csum[warp] += c;
      sscale[warp] = mx > 0.f ? mx / GQMAX : 0.f;
    }
  }
  // digits: lane l holds groups 2l, 2l+1 of its quad = bytes 2(l&3), 2(l&3)+1 of the 8-byte fragment of
  // step pp * 4 + s (pp = (l >> 2) & 1), column 2 tk + digit, tig' = l >> 3
#pragma unroll
  for (int j = 0; j < J; ++j) {
    const int u = warp + NW * j;
    if (u < nqc * ntok) {
      const int qu = u / ntok, tk = u - qu * ntok;
      float mx = lane < nqc ? smax[tk][lane] : 0.f;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float inv = mx > 0.f ? GQMAX / mx : 0.f;
      const int pp = (lane >> 2) & 1, tg = lane >> 3, c = lane & 3;
      uint8_t* base = dig + qu * (GQT * ntok) + (2 * tk * 4 + tg) * 8 + 2 * c;
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
        uint8_t* unit0 = base + (pp * 4 + s) * (64 * ntok);
        *reinterpret_cast<uint16_t*>(unit0) = (uint16_t)lo2;
        *reinterpret_cast<uint16_t*>(unit0 + 32) = (uint16_t)hi2;  // next column (+4 tig x 8 bytes)
      }
    }
  }
  __syncthreads();
}

// GEMV_PDL prologue kernel: grid (token columns, chunks per split, splits x layers), 32 warps, one unit each (two with 16-token columns).  It lets the
// main kernel launch at once (it streams its first codes meanwhile), waits for x, and writes the chunk's digits,
// scales and c parts to the workspace: the transform runs once per layer instead of once per CTA.
template <typename T, bool GROUP, int TOK, bool GRED = false>
__global__ void __launch_bounds__(1024, 1) gemv_prep_kernel(GemvParamsN<GROUP ? GMAXG : 1> p) {
  __shared__ float smax[TOK][32];
  __shared__ float scp[TOK][32];
  __shared__ float sscale[TOK];
  __shared__ float csum[TOK];
  __shared__ float sAb[20];
  PREP_STAMP(0);
  if (p.trig == 0) pdl_launch_dependents();
  const int col = blockIdx.x, j = blockIdx.y, si = GROUP ? blockIdx.z / p.splits : 0, split = blockIdx.z - si * p.splits;
  const GemvSeg& S = p.seg[si];
  const size_t wso = (size_t)si * p.ws_seg;  // this layer's part of the workspace
  const int c0 = split * p.qps + j * p.cq;
  const int c1 = min(p.nq, min((split + 1) * p.qps, c0 + p.cq));
  if (c0 >= c1) return;  // the short last split
  const int64_t tok0 = (int64_t)col * TOK;
  const int ntok = (int)(p.m - tok0 < TOK ? p.m - tok0 : TOK);
  if (threadIdx.x < 20) {
    sAb[threadIdx.x] = threadIdx.x < 16 ? __ldg(S.A + threadIdx.x) : __ldg(S.b + threadIdx.x - 16);
  } else if (threadIdx.x < 20 + TOK) {
    csum[threadIdx.x - 20] = 0.f;
    sscale[threadIdx.x - 20] = 0.f;
  }
  // the lane's SU values do not depend on the previous kernel: load them before waiting for it (one unit per warp:
  // 4-token columns; 16-token ones have two and load SU with x)
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float sul[8];
  if (TOK == GTOK) {
    const int u = warp, qu = u / max(ntok, 1);
    const int64_t kk = (int64_t)(c0 + qu) * 256 + lane * 8;
#pragma unroll
    for (int i = 0; i < 8; ++i) sul[i] = (u < (c1 - c0) * ntok && kk + i < p.k) ? __ldg(S.su + kk + i) : 0.f;
  }
  pdl_wait();  // x is ready, and the previous layer no longer reads the workspace
  PREP_STAMP(1);
  if (GRED && col == 0 && j == 0 && split == 0) {
    // the main kernel reads its arrival counters only after its PDL wait, i.e. after this kernel has completed
    const int rgs = (int)((S.n + GTN - 1) / GTN);
    unsigned* cnt = gred_cnt(p);
    for (int i = threadIdx.x; i < rgs; i += blockDim.x) cnt[i] = 0u;
  }
  uint8_t* dig = ws_at(p.ws_dig, wso) + (size_t)col * p.nq * (GQT * TOK) + (size_t)c0 * (GQT * ntok);
  chunk_prologue<T, 32, TOK>(p, S, sAb, c0, c1 - c0, tok0, ntok, warp, lane, dig, smax, scp, sscale, csum,
                             TOK == GTOK ? sul : nullptr);
  if (threadIdx.x < (unsigned)ntok) {
    const size_t at = ((size_t)col * p.splits * p.cps + (size_t)split * p.cps + j) * TOK + threadIdx.x;
    ws_at(p.ws_sc, wso)[at] = sscale[threadIdx.x];
    ws_at(p.ws_c, wso)[at] = csum[threadIdx.x];
  }
  PREP_STAMP(4);
}

// The main kernel.  PRE = false (GEMV): each CTA runs the input transform of its chunks itself (chunk_prologue on
// its 8 warps).  PRE = true (GEMV_PDL): gemv_prep_kernel ran it; the CTA copies each chunk's digits from the
// workspace into a double buffer (cp.async, the next chunk in flight while this one is consumed).
// TOK = 4: one mma per code fragment serves both digits of 4 tokens, the 4 steps of a quad accumulate apart (the
// masked fields are z * 4^s).  TOK = 16 (GEMV_PDL only, session 9): a column of 16 tokens, so the codes are read once
// for m <= 16 instead of once per 4 tokens; each code fragment feeds 4 mmas (tokens 4j .. 4j + 3), the fields are
// shifted down (z itself) so the steps share one accumulator per mma.
// GRED (session 22; LATTQ_GEMV_GRED, off by default): the split-K partials are summed through the workspace
// (gred_part, gred_cnt) instead of a cluster.  It is an instance of its own: with the same code behind a runtime flag,
// ptxas scheduled the one-layer GEMV_PDL kernel differently, and calls that never took the flag ran 1-1.5 us slower
// (28672x8192 m = 1: 35.4 against 33.9 us; bench/results/gpu/h100_session22/var_a6557d1*.log).
template <typename T, bool PRE, bool GROUP, int TOK, int SCHED = 0, bool GRED = false>
__global__ void __launch_bounds__(256, 2) gemv_kernel(GemvParamsN<GROUP ? GMAXG : 1> p) {
  static_assert(TOK == GTOK || (PRE && TOK == GTOK16), "16-token columns: GEMV_PDL only");
  constexpr int NJ = TOK / 4;                     // mmas per code fragment
  static_assert(!GRED || (PRE && !GROUP && TOK == GTOK), "split-K through the workspace: one-layer GEMV_PDL, 4 tokens");
  extern __shared__ __align__(16) uint8_t dig[];  // PRE ? 2 : 1 chunk(s) of digits, compact layout
  __shared__ __align__(16) float ptile[TOK][GTN];  // partial t of this CTA (+ its c part), read by the cluster
  __shared__ float smax[PRE ? 1 : GTOK][32];
  __shared__ float scp[PRE ? 1 : GTOK][32];
  __shared__ float sscale[GTOK];
  __shared__ float csum[GTOK];
  __shared__ float sAb[20];
  __shared__ __align__(16) float s_sv[GTN];
  __shared__ __align__(16) float s_bias[GTN];

  GEMV_STAMP(0);
  const int warp = __shfl_sync(0xffffffffu, (int)(threadIdx.x >> 5), 0), lane = threadIdx.x & 31;
  const int g = lane >> 2, tig = lane & 3;
  const int col = blockIdx.x, split = blockIdx.z;
  const int si = gemv_seg_of(p, blockIdx.y);
  const GemvSeg& S = p.seg[si];
  const int rg = blockIdx.y - S.rg0;
  const int64_t tileI = (int64_t)rg * GW + warp;
  const bool tile_ok = tileI < S.T;
  const int q0 = split * p.qps;
  const int q1 = min(p.nq, q0 + p.qps);
  const int64_t n0 = (int64_t)rg * GTN;
  const int64_t tok0 = (int64_t)col * TOK;
  const int ntok = (int)(p.m - tok0 < TOK ? p.m - tok0 : TOK);
  const int nrow = (int)(S.n - n0 < GTN ? S.n - n0 : GTN);
  const int cq = p.cq;
  const int qbytes = GQT * ntok;  // digit bytes per quad of this column

  // 1. the first RING quads of codes in flight before anything else.  GEMV_PDL, free of the prologue's registers,
  // keeps 8 quads in its ring at TOK = 4 (chunk lengths are multiples of 8); at TOK = 16 the 4 mma accumulators take
  // registers and each quad carries 4x the mma work: 4 quads (chunks of 4)
  // RB: refill batch (below).  4-token columns: batches of 4 quads; 16-token columns keep refilling each slot right
  // after its use (RB = 1), which measured faster there (their mma work per quad is 4x).  SCHED = 3
  // (LATTQ_GEMV_SCHED=3, measurements): RB = 1 everywhere, the sessions 4-19 schedule.
  constexpr int RING = TOK == GTOK16 ? 4 : PRE ? 8 : 4;
  constexpr int RB = SCHED == 3 || TOK == GTOK16 ? 1 : 4;
  // quad q of this lane: rows g, g + 8 of chunk 4q + tig; valid while q < qlim (tile, split and row end)
  const uint8_t* cptr = S.codes + (tileI * p.C + tig) * 256 + g * 16;
  const int64_t qc = (p.C - tig + 3) >> 2;
  const int qlim = tile_ok ? (int)(qc < q1 ? qc : q1) : 0;
  // Batched refills (RB > 1) have no zero fill on the load path: a register write of a slot (`else lo = 0`) waits for
  // every code load in flight, since they all share one scoreboard (ptxas, sm_90a), which serialised the refills of a
  // batch.  Their slots start at zero (tiles past the layer's end never load), a slot past qlim keeps its old codes,
  // and quad_mma zeroes those of the k tail (quads from qfull on, where some lanes are past the row's end); past q1 a
  // slot is never used.  RB = 1 keeps the sessions 4-19 code (zero fill; 16-token columns measured slower without it).
  auto load_quad = [&](int q, uint4& lo, uint4& hi) {
    if (q < qlim) {
      const uint8_t* ptr = cptr + (int64_t)q * 1024;
      lo = ldg_stream(ptr);
      hi = ldg_stream(ptr + 128);
    } else if constexpr (RB == 1) {
      lo = make_uint4(0, 0, 0, 0);
      hi = lo;
    }
  };
  const int qfull = (int)(p.C >> 2);  // quads whose 4 chunks are inside the row for every lane
  uint4 cb[RING][2];
  if constexpr (RB > 1) {
#pragma unroll
    for (int i = 0; i < RING; ++i) cb[i][0] = cb[i][1] = make_uint4(0, 0, 0, 0);
  }
#pragma unroll
  for (int i = 0; i < RING; ++i) load_quad(q0 + i, cb[i][0], cb[i][1]);
  // SV and bias are needed only by the epilogue: held in registers (their latency hides behind the main loop) and
  // stored to shared memory before the barrier that precedes it
  float r_sv = 0.f, r_bias = 0.f;
  if (threadIdx.x < GTN) {
    const int rr = threadIdx.x;
    r_sv = rr < nrow ? __ldg(S.sv + n0 + rr) : 0.f;
    r_bias = (S.bias != nullptr && rr < nrow) ? __ldg(S.bias + n0 + rr) : 0.f;
  } else if (threadIdx.x < GTN + 20) {
    const int i = threadIdx.x - GTN;
    if (!PRE) sAb[i] = i < 16 ? __ldg(S.A + i) : __ldg(S.b + i - 16);
  } else if (!PRE && threadIdx.x < GTN + 20 + GTOK) {
    const int i = threadIdx.x - GTN - 20;
    csum[i] = 0.f;
    sscale[i] = 0.f;  // padding tokens keep scale 0 (their digit columns are never loaded)
  }
  pdl_wait();  // x (GEMV) / the prologue kernel's workspace (GEMV_PDL) is ready from here on
  pdl_launch_dependents();
  // GEMV_PDL: copy chunk jj of this CTA into buffer jj & 1 (one commit group per chunk, empty past the end)
  const size_t bufbytes = (size_t)cq * GQT * min(p.m, (int64_t)TOK);
  const size_t wso = (size_t)si * p.ws_seg;  // GEMV_PDL: this layer's part of the workspace
  const uint8_t* wsd = PRE ? ws_at(p.ws_dig, wso) + (size_t)col * p.nq * (GQT * TOK) : nullptr;
  auto stage = [&](int jj) {
    const int a0 = q0 + jj * cq;
    if (a0 < q1) {
      const int nb = (min(q1, a0 + cq) - a0) * qbytes;
      const uint8_t* src = wsd + (size_t)a0 * qbytes;
      uint8_t* dst = dig + (jj & 1) * bufbytes;
      for (int o = threadIdx.x * 16; o < nb; o += 256 * 16) cp_async16(dst + o, src + o);
    }
    cp_async_commit();
  };
  // scale / c part of token 4 j + tig (GEMV_PDL): [column][chunk][TOK] at scat + TOK * chunk + 4 j
  const size_t scat = ((size_t)col * p.splits * p.cps + (size_t)split * p.cps) * TOK + tig;
  float cacc[NJ];  // GEMV_PDL: the c part of token 4 j + tig over the CTA's chunks
#pragma unroll
  for (int j = 0; j < NJ; ++j) cacc[j] = 0.f;
  if (PRE) {
    stage(0);
    stage(1);
  }
  // no barrier here: chunk_prologue's first one orders sAb, csum and sscale (GEMV); GEMV_PDL waits on its first
  // chunk with one
  GEMV_STAMP(1);

  float accf[NJ][2];  // rows g and g + 8 of token 4 j + tig
#pragma unroll
  for (int j = 0; j < NJ; ++j) accf[j][0] = accf[j][1] = 0.f;

  int jc = 0;
  for (int c0 = q0; c0 < q1; c0 += cq, ++jc) {
    const int c1 = min(q1, c0 + cq);
    float sc[NJ];
#pragma unroll
    for (int j = 0; j < NJ; ++j) sc[j] = 0.f;
    const uint8_t* dchunk = dig;
    if (PRE) {
#pragma unroll
      for (int j = 0; j < NJ; ++j) {
        if (4 * j + tig < ntok) {  // L2 reads (written by the prologue kernel), in flight during the chunk
          const size_t at = scat + (size_t)jc * TOK + 4 * j;
          sc[j] = __ldcg(ws_at(p.ws_sc, wso) + at);
          cacc[j] += __ldcg(ws_at(p.ws_c, wso) + at);
        }
      }
      GEMV_STAMP(2);
      cp_async_wait<1>();  // chunk jc has landed (chunk jc + 1 may still be in flight)
      __syncthreads();
      dchunk = dig + (jc & 1) * bufbytes;
    } else {
      chunk_prologue<T, GW, GTOK>(p, S, sAb, c0, c1 - c0, tok0, ntok, warp, lane, dig, smax, scp, sscale, csum);
    }
    GEMV_STAMP(3);
    // 3. main loop over the chunk's quads: no barrier.  TOK = 4: one mma per step for both digits of 4 tokens, step s
    // accumulates the masked fields z * 4^s apart (acc[s]).  TOK = 16: mma j covers B columns 8 j .. 8 j + 7 = both
    // digits of tokens 4 j .. 4 j + 3 (compact layout: a column every 32 bytes, so + 256 j), the fields are shifted
    // down to z and the steps share acc[j]; mmas of padding token groups are skipped (warp-uniform).  Either way
    // padding lanes load nothing, and |sum| per chunk stays exact in int32 (TOK = 16: <= 4 quads x 256 x 3 x 128).
    int acc[4][4];
#pragma unroll
    for (int s = 0; s < 4; ++s)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[s][c] = 0;
    // the mma work of quad q (ring slot qi)
    auto quad_mma = [&](int qi, int q) {
      const uint8_t* bq = dchunk + (q - c0) * qbytes + lane * 8;
      uint4 lo = cb[qi][0], hi = cb[qi][1];
      if constexpr (RB > 1)
        if (q >= qfull && q >= qlim) lo = hi = make_uint4(0, 0, 0, 0);  // the k tail: this lane's chunks are past the row
#pragma unroll
      for (int pp = 0; pp < 2; ++pp) {
        const uint32_t wl0 = pp ? lo.z : lo.x, wl1 = pp ? lo.w : lo.y;
        const uint32_t wh0 = pp ? hi.z : hi.x, wh1 = pp ? hi.w : hi.y;
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          const uint8_t* bs = bq + (pp * 4 + s) * (64 * ntok);
          if constexpr (TOK == GTOK) {
            const uint32_t M = 0x03030303u << (2 * s);
            uint2 bv = make_uint2(0u, 0u);
            if (g < 2 * ntok) bv = *reinterpret_cast<const uint2*>(bs);
            mma_u8s8(acc[s], wl0 & M, wh0 & M, wl1 & M, wh1 & M, bv.x, bv.y);
          } else {
            const uint32_t a0 = (wl0 >> (2 * s)) & 0x03030303u, a1 = (wh0 >> (2 * s)) & 0x03030303u;
            const uint32_t a2 = (wl1 >> (2 * s)) & 0x03030303u, a3 = (wh1 >> (2 * s)) & 0x03030303u;
#pragma unroll
            for (int j = 0; j < NJ; ++j) {
              if (4 * j < ntok) {  // warp-uniform
                uint2 bv = make_uint2(0u, 0u);
                if (8 * j + g < 2 * ntok) bv = *reinterpret_cast<const uint2*>(bs + 256 * j);
                mma_u8s8(acc[j], a0, a1, a2, a3, bv.x, bv.y);
              }
            }
          }
        }
      }
    };
    // Batches of RB quads: the mma work of a batch, then its slots' refills (each refill lands in the registers of a slot
    // whose last use is done: no register copy that would wait for it).  Every code load of a warp sets the same
    // scoreboard, and the first use of a quad waits for that scoreboard to drain, that is for all of the warp's code
    // loads in flight (ptxas, sm_90a).  Refilling each slot right after its use (RB = 1, sessions 4-19) therefore left
    // about one quad per warp in flight; batches keep RB quads in flight at each wait (docs/kernels.md, session 20).
    // The refills address one base pointer, computed before the batch's mma work, with immediate offsets: address
    // temporaries of their own would take the registers of used slots, and writing those waits for the loads in flight.
    if constexpr (RB == 1) {  // refill each slot right after its use
      for (int qq = c0; qq < c1; qq += RING) {
#pragma unroll
        for (int qi = 0; qi < RING; ++qi) {
          if (qq + qi < c1) {  // warp-uniform
            quad_mma(qi, qq + qi);
            load_quad(qq + qi + RING, cb[qi][0], cb[qi][1]);
          }
        }
      }
    } else {
      for (int qq = c0; qq < c1; qq += RING) {
  #pragma unroll
        for (int h = 0; h < RING; h += RB) {
          const uint8_t* nb = cptr + (int64_t)(qq + h + RING) * 1024;
          const int nleft = qlim - (qq + h + RING);  // refills of this batch at offsets < nleft are inside the row
  #pragma unroll
          for (int qi = h; qi < h + RB; ++qi)
            if (qq + qi < c1) quad_mma(qi, qq + qi);  // warp-uniform
  #pragma unroll
          for (int qi = h; qi < h + RB; ++qi)
            if (qq + qi < c1 && qi - h < nleft) {
              cb[qi][0] = ldg_stream(nb + (qi - h) * 1024);
              cb[qi][1] = ldg_stream(nb + (qi - h) * 1024 + 128);
            }
        }
      }
    }
    GEMV_STAMP(4);
    // flush: column 2 tig = digit 0, 2 tig + 1 = digit 1 of token 4 j + tig; value = d0 + 256 d1 (TOK = 4: summed over
    // the steps with weights 4^-s)
    if constexpr (TOK == GTOK) {
      if (!PRE) sc[0] = sscale[tig];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float val = 0.f;
#pragma unroll
        for (int s = 0; s < 4; ++s)
          val = fmaf(fmaf((float)acc[s][2 * r + 1], 256.f, (float)acc[s][2 * r]), 1.f / (float)(1 << (2 * s)), val);
        accf[0][r] = fmaf(val, sc[0], accf[0][r]);
      }
    } else {
#pragma unroll
      for (int j = 0; j < NJ; ++j)
#pragma unroll
        for (int r = 0; r < 2; ++r)
          accf[j][r] = fmaf(fmaf((float)acc[j][2 * r + 1], 256.f, (float)acc[j][2 * r]), sc[j], accf[j][r]);
    }
    if (PRE) {
      __syncthreads();  // buffer jc & 1 is no longer read
      stage(jc + 2);
    }
  }
  // 4. partial tile (+ this split's c part: the cluster sum then carries the whole c; csum is complete since
  // chunk_prologue's last barrier), SV and bias for the epilogue
  if (threadIdx.x < GTN) {
    s_sv[threadIdx.x] = r_sv;
    s_bias[threadIdx.x] = r_bias;
  }
#pragma unroll
  for (int j = 0; j < NJ; ++j) {
    const int tk = 4 * j + tig;
    if (tk < ntok) {
      const float cpart = PRE ? cacc[j] : csum[tig];
      ptile[tk][warp * 16 + g] = accf[j][0] + cpart;
      ptile[tk][warp * 16 + g + 8] = accf[j][1] + cpart;
    }
  }
  const int nsp = p.splits;
  // gred (session 22; one-layer GEMV_PDL launches with one 4-token column): the splits are separate CTAs, not a
  // cluster, so that a launch of up to 2 CTAs per SM fits at once (clusters of 3 and 4 pack less densely).  Each writes
  // its partial tile to the workspace; the last to arrive (one counter per row group) sums all of them in split order,
  // as the cluster's rank order, and runs the epilogue; the others leave.
  constexpr bool gred = GRED;
  if constexpr (gred) {
    float* gpart = gred_part(p) + (size_t)blockIdx.y * nsp * (GTOK * GTN);
    __shared__ int s_last;
    __syncthreads();  // ptile is written
    if (threadIdx.x < ntok * (GTN / 4))
      __stcg(reinterpret_cast<float4*>(gpart + (size_t)split * (GTOK * GTN)) + threadIdx.x,
             reinterpret_cast<const float4*>(&ptile[0][0])[threadIdx.x]);
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) s_last = atomicAdd(gred_cnt(p) + blockIdx.y, 1u) == (unsigned)(nsp - 1);
    __syncthreads();
    if (!s_last) return;
    __threadfence();  // the other splits' tiles, written before their counter increments, are visible from here on
  } else if (nsp > 1) {
    cluster_sync_all();  // every partial tile of the cluster is written
  } else {
    __syncthreads();
  }
  const int rank = nsp > 1 && !gred ? cluster_rank() : 0;
  const int nfin = gred ? 1 : nsp;  // CTAs that finish tokens
  GEMV_STAMP(5);
  // 5. rank r finishes tokens tk = r, r + nsp, ... (gred: the last CTA all of them): one warp per token, lane l owns
  // rows 4l .. 4l + 3
  for (int tk = rank + warp * nfin; tk < ntok; tk += GW * nfin) {  // warp-uniform
    float4 t4 = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int r = 0; r < nsp; ++r) {  // fixed order
      float4 o;
      if constexpr (gred) {
        o = __ldcg(reinterpret_cast<const float4*>(gred_part(p) + ((size_t)blockIdx.y * nsp + r) * (GTOK * GTN) + tk * GTN +
                                                   4 * lane));
      } else {
        const float* src = nsp > 1 ? map_rank(&ptile[tk][4 * lane], r) : &ptile[tk][4 * lane];
        o = *reinterpret_cast<const float4*>(src);
      }
      t4.x += o.x;
      t4.y += o.y;
      t4.z += o.z;
      t4.w += o.w;
    }
    float e[4] = {t4.x, t4.y, t4.z, t4.w};
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (4 * lane + i >= nrow) e[i] = 0.f;
    warp_block_hadamard(e, S.had_out, lane);  // had_out <= 128: h = 1, 2 inside the lane, 4 .. 64 across lanes
    const float hs = rsqrtf((float)S.had_out);
    T* y = static_cast<T*>(S.y) + (tok0 + tk) * S.n + n0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int rr = 4 * lane + i;
      if (rr < nrow) y[rr] = from_f<T>(fmaf(e[i] * hs, s_sv[rr], s_bias[rr]));
    }
  }
  GEMV_STAMP(6);
  if (nsp > 1 && !gred) cluster_sync_all();  // no CTA leaves while its shared memory may still be read
}

struct GemvPlan {
  int64_t tok, nq, ncols, rgroups, splits, qps, cq, cps;
  size_t smem;
  bool gred;  // split-K through the workspace (the GRED kernel instances), not a cluster
};

int64_t gemv_resident(int splits, size_t smem, bool pre, int64_t tok);
size_t gemv_smem(int64_t m, int64_t qps, bool pre, int64_t tok);

// Tokens per CTA column of GEMV_PDL (GEMV: always 4).  16 reads the codes once per 16 tokens instead of once per 4,
// but a layer has 4x fewer CTAs (split-K makes up part of it) with 4x the mma work each.  H100, session 9
// (bench/results/gpu/h100_session9/tok_cc4d82c.json, cold L2, same run; the 7 benchmark shapes):
//  * m = 5..8: 16 is faster on 12 of 14 rows (28672x8192 m = 8: 50.3 vs 60.7 us; 4096x14336 m = 5: 21.1 vs 27.2) and
//    at most 1.2 us slower on the others (4096x4096 m = 8, 8192x28672 m = 8);
//  * m = 9..16: 4 wins where its cdiv(m, 4) columns of row groups fit in one wave of resident CTAs and k <= 12288
//    (4096x4096 m = 16: 18.5 vs 26.2; 11008x4096 m = 12: 23.7 vs 28.4), 16 elsewhere (14336x4096 m = 12: 29.9 vs
//    34.1, two waves at 4; 4096x14336 m = 12: 29.8 vs 33.9; 28672x8192 m = 16: 77.4 vs 104.6).
// LATTQ_GEMV_TOK = 4 or 16 forces the width at m >= 5 (measurements and tests; read per launch like
// LATTQ_GEMV_MAX_SPLITS; the workspace is sized for both widths, so it may change between calls).
int64_t gemv_tok(int64_t m, bool pre, int64_t k, int64_t rgroups) {
  if (!pre || m <= GTOK) return GTOK;
  if (const char* e = std::getenv("LATTQ_GEMV_TOK")) {
    const int v = std::atoi(e);
    if (v == GTOK || v == GTOK16) return v;
  }
  if (m <= 2 * GTOK || m > GTOK16 || k > 12288) return GTOK16;
  const int64_t nq = cdiv(k, 256);
  const bool one_wave = cdiv(m, GTOK) * rgroups <= gemv_resident(1, gemv_smem(m, nq, true, GTOK), true, GTOK);
  return one_wave ? GTOK : GTOK16;
}

int gemv_max_splits() {
  int cap = device_props().major >= 9 ? GMAXS : 1;
  if (const char* e = std::getenv("LATTQ_GEMV_MAX_SPLITS")) {  // tuning / tests: 1 = the sm_80 code path
    const int v = std::atoi(e);
    if (v >= 1 && v <= GMAXS) cap = std::min(cap, v);
  }
  return cap;
}

// chunk length of the layer's columns (every column uses the one of the first, the widest): 4-token columns
// chunk_quads (32 units of (token, quad) at most), 16-token ones 4 quads (64 units; a multiple of their ring)
int64_t gemv_cq(int64_t m, int64_t tok) {
  if (tok == GTOK16) return 4;
  return chunk_quads((int)std::min<int64_t>(GTOK, std::max<int64_t>(m, 1)));
}

// dynamic shared memory: one chunk of digits (GEMV) or two (GEMV_PDL's double buffer): at most 32 KB for 4-token
// columns, 64 KB for 16-token ones (above the 48 KB default: gemv_smem_optin)
size_t gemv_smem(int64_t m, int64_t qps, bool pre, int64_t tok) {
  const int64_t ntok_max = std::min<int64_t>(tok, std::max<int64_t>(m, 1));
  return (size_t)std::min<int64_t>(gemv_cq(m, tok), qps) * GQT * ntok_max * (pre ? 2 : 1);
}

// the main kernel of (PRE, TOK) for occupancy queries and the shared-memory opt-in (its GROUP and dtype instances
// have the same resources)
template <bool PRE, int TOK>
const void* gemv_main_fn() {
  return (const void*)gemv_kernel<__half, PRE, false, TOK>;
}

// Lets the 16-token kernels of dtype T use 64 KB of dynamic shared memory: once per device (cudaFuncSetAttribute
// applies to the current device's context); cached so the launch path makes no driver call after the first.
template <typename T>
cudaError_t gemv_smem_optin() {
  static std::atomic<int> done[16] = {};  // devices >= 16 are not cached: they opt in on every launch
  const int cur = current_device();
  if (cur >= 0 && cur < 16 && done[cur].load(std::memory_order_relaxed)) return cudaSuccess;
  const int bytes = 2 * 4 * GQT * GTOK16;
  for (const void* f : {(const void*)gemv_kernel<T, true, false, GTOK16>, (const void*)gemv_kernel<T, true, true, GTOK16>}) {
    const cudaError_t e = cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (e != cudaSuccess) return e;
  }
  if (cur >= 0 && cur < 16) done[cur].store(1, std::memory_order_relaxed);
  return cudaSuccess;
}

template <bool PRE, int TOK>
int gemv_occupancy(int splits, size_t smem) {
  if (TOK == GTOK16 && gemv_smem_optin<__half>() != cudaSuccess) return 0;
  int n = 0;
  if (splits == 1) {
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_main_fn<PRE, TOK>(), 256, smem) == cudaSuccess)
      n *= std::max(1, device_props().sm);
    return n;
  }
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
  return cudaOccupancyMaxActiveClusters(&n, gemv_main_fn<PRE, TOK>(), &cfg) == cudaSuccess ? n : 0;
}

// How many CTAs (splits = 1) or clusters of `splits` CTAs can be resident at once with `smem` bytes of dynamic
// shared memory each.  The cluster count can be well below slots / splits (H100, 2 CTAs per SM: Nsight Compute
// reported 79 clusters of 3 and 62 of 4, not 88 and 66), and a cluster that does not fit runs in a second wave
// (the session-6 trace of 11008 x 4096 at m = 1 with 3 splits: 86 clusters, CTAs starting 10 us late).
// Cached per (device, kernel, splits, smem in 2 KB units); the fallback is 2 CTAs per SM.
int64_t gemv_resident(int splits, size_t smem, bool pre, int64_t tok) {
  static int cache[16][3][GMAXS + 1][33] = {};
  const int cur = current_device();
  const int kind = !pre ? 0 : tok == GTOK ? 1 : 2;
  int& c = cache[cur & 15][kind][splits][std::min<size_t>(32, smem / 2048)];
  if (c == 0) {
    int n = kind == 0 ? gemv_occupancy<false, GTOK>(splits, smem)
            : kind == 1 ? gemv_occupancy<true, GTOK>(splits, smem)
                        : gemv_occupancy<true, GTOK16>(splits, smem);
    if (n <= 0) {
      cudaGetLastError();
      n = std::max(1, device_props().sm) * 2 / splits;
    }
    c = std::max(1, n);
  }
  return c;
}

// LATTQ_GEMV_GRED (session 22; read per launch): 0 (the default) = split-K through clusters only; 1 = through the
// workspace wherever it may (one-layer GEMV_PDL launches at m <= 4, rgroups x splits <= GRED_MAX_CTAS); 2 = through
// the workspace only where its best plan costs GRED_MARGIN less than the cluster's (8192x28672 at m <= 4: 4 splits in
// one wave instead of 3).  Off by default because it did not pay on the H100 (docs/kernels.md, "Session 22"): as
// instances of their own, 8192x28672 took 37.4-37.5 us at m = 1 against 37.0-37.2 for the cluster plan, 38.6-38.7
// against 37.6-38.0 at m = 2, and 40.8-41.2 against 41.2-41.7 at m = 4 (bench/results/gpu/h100_session22/
// var_ed13251.log); at the same split count the round trip through the workspace cost 0.3-2 us (ab_736f026.log).
int gemv_gred_mode() {
  if (const char* e = std::getenv("LATTQ_GEMV_GRED")) {
    const int v = std::atoi(e);
    if (v >= 0 && v <= 2) return v;
  }
  return 0;
}
constexpr int64_t GRED_MARGIN = 3;  // quads (the cost unit of make_gemv_plan)

// Split-K choice: minimise waves x (quads per CTA + 3) + splits: the prologue / epilogue counted as 3 quads,
// the cluster reduction as one quad per rank (session-4 sweep on the H100: 4096x4096 at m = 1 took 12.2 us
// with 4 splits, 15.7 us with 8); ties go to fewer splits.  Waves count the clusters that fit at once
// (gemv_resident), not the CTA slots; with gred (separate CTAs summed through the workspace) the CTA slots.
// A grouped launch is planned as one layer with the row groups of all its layers (never gred).
GemvPlan make_gemv_plan(int64_t k, int64_t rgroups, int64_t m, bool pre, bool one_layer) {
  GemvPlan P;
  P.tok = gemv_tok(m, pre, k, rgroups);
  P.nq = cdiv(k, 256);
  P.ncols = cdiv(std::max<int64_t>(m, 1), P.tok);
  P.rgroups = rgroups;
  P.cq = gemv_cq(m, P.tok);
  const int cap = gemv_max_splits();
  const int mode = gemv_gred_mode();
  const bool gred_ok = pre && one_layer && P.ncols == 1 && P.tok == GTOK && mode != 0;
  // best[0]: split counts reduced by clusters; best[1]: through the workspace (s > 1)
  int64_t best_s[2] = {1, 1}, best_cost[2] = {INT64_MAX, INT64_MAX};
  for (int64_t s = 1; s <= cap && s <= P.nq; ++s) {
    const int64_t qps = cdiv(P.nq, s);
    const int64_t splits = cdiv(P.nq, qps);
    if (splits != s) continue;
    const size_t smem = gemv_smem(m, qps, pre, P.tok);
    for (int g = 0; g < 2; ++g) {
      if (g == 1 && !(gred_ok && s > 1 && P.rgroups * s <= GRED_MAX_CTAS)) continue;
      const int64_t fit = g ? gemv_resident(1, smem, pre, P.tok) / s : gemv_resident((int)s, smem, pre, P.tok);
      const int64_t waves = cdiv(P.ncols * P.rgroups, std::max<int64_t>(1, fit));
      const int64_t cost = waves * (qps + 3) + splits;  // + cluster reduction (sweep: 4096x4096)
      if (cost < best_cost[g]) {
        best_cost[g] = cost;
        best_s[g] = s;
      }
    }
  }
  // LATTQ_GEMV_GRED=1 takes the workspace plan where it has one; =2 only where it beats the cluster's by GRED_MARGIN
  const bool g = best_cost[1] != INT64_MAX &&
                 (mode == 1 ? best_cost[1] <= best_cost[0] || best_s[0] > 1 : best_cost[1] + GRED_MARGIN < best_cost[0]);
  P.splits = best_s[g ? 1 : 0];
  P.gred = g;
  P.qps = cdiv(P.nq, P.splits);
  P.cps = cdiv(P.qps, P.cq);
  P.smem = gemv_smem(m, P.qps, pre, P.tok);
  return P;
}

// GEMV_PDL workspace: digits [column][quad] (512 B per quad and token of the column), then scales and c parts
// [column][chunk][tokens per column].  The chunk count is bounded over every split count the plan may pick
// (1 .. GMAXS) and both column widths (gemv_tok), so the size depends only on the layer and m, not on the device, its
// occupancy, LATTQ_GEMV_MAX_SPLITS or LATTQ_GEMV_TOK: a size queried anywhere fits the plan of any device.  The plan's
// chunks (split * cps + j < splits * cps) index into that bound.
// At m <= 4 gred's partial tiles and counters follow the layer's three arrays (seg bytes).  Groups never reduce
// through the workspace but take total bytes per layer, so that a group's size stays count x one layer's.
struct GemvWs {
  size_t dig, sc, seg, part, cnt, total;
};
GemvWs gemv_ws_layout(const lattq_layer_desc* d, int64_t m) {
  const int64_t nq = cdiv(d->k, 256);
  GemvWs w = {0, 0, 0, 0, 0, 0};
  for (const int64_t tok : {(int64_t)GTOK, (int64_t)GTOK16}) {
    if (tok == GTOK16 && m <= GTOK) continue;
    const int64_t ncols = cdiv(std::max<int64_t>(m, 1), tok), cq = gemv_cq(m, tok);
    int64_t nch = 0;
    for (int64_t s = 1; s <= GMAXS; ++s) nch = std::max(nch, s * cdiv(cdiv(nq, s), cq));
    w.dig = std::max(w.dig, align256((size_t)ncols * nq * GQT * tok));
    w.sc = std::max(w.sc, align256((size_t)ncols * nch * tok * sizeof(float)));
  }
  w.seg = w.dig + 2 * w.sc;
  if (m <= GTOK) {
    const int64_t rg = cdiv(d->n, GTN);
    w.part = gred_part_bytes(rg);  // = gred_cnt - gred_part in the kernels
    w.cnt = align256((size_t)rg * sizeof(unsigned));
  }
  w.total = w.seg + w.part + w.cnt;
  return w;
}

// LATTQ_GEMV_PDL_ATTR=0: launch without programmatic stream serialization (plain stream order; griddepcontrol.wait
// is then a no-op).  Measurements only (session 8: back-to-back launches with and without the overlap), read per
// launch like LATTQ_GEMV_MAX_SPLITS.  On sm_90 the clusters still apply.
bool pdl_attr() {
  const char* e = std::getenv("LATTQ_GEMV_PDL_ATTR");
  return e == nullptr || std::atoi(e) != 0;
}

cudaError_t launch_ex(const void* fn_ptr, dim3 grid, dim3 block, size_t smem, int cluster_z, cudaStream_t s,
                      void* p) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[2];
  int na = 0;
  if (device_props().major >= 9) {
    if (pdl_attr()) {
      attr[na].id = cudaLaunchAttributeProgrammaticStreamSerialization;
      attr[na].val.programmaticStreamSerializationAllowed = 1;
      ++na;
    }
    if (cluster_z > 1) {  // the split-K reduction needs the cluster (distributed shared memory)
      attr[na].id = cudaLaunchAttributeClusterDimension;
      attr[na].val.clusterDim.x = 1;
      attr[na].val.clusterDim.y = 1;
      attr[na].val.clusterDim.z = (unsigned)cluster_z;
      ++na;
    }
  }
  cfg.attrs = attr;
  cfg.numAttrs = na;
  void* args[] = {p};  // the address of the kernel's one parameter (a GemvParamsN)
  return cudaLaunchKernelExC(&cfg, fn_ptr, args);
}

// Where the prologue kernel triggers the main kernel's launch: 0 = first thing (default: the main kernel's code
// loads overlap the whole prologue), 1 = after its maxima barrier (x and SU have landed, Hadamard and fold are done:
// its loads do not queue behind the main kernel's), 2 = never (at exit: no overlap), 3 = once its x and SU loads are
// issued (session 9), 4 = once they have landed (session 9).  Default: 3 from m = 16, where the prologue's x
// (m x k activations) is largest and queues longest behind the code stream, else 0.  H100, session 9, cold L2: at
// m = 16, 3 was faster than 0 on all 7 shapes in two runs, by 0.3-2.4 us (bench/results/gpu/h100_session9/
// trig_01cc583.log: 28672x8192 75.7 vs 77.9, 4096x14336 32.1 vs 34.4; trig_9045939.log: 75.7 vs 78.0, 32.0 vs 34.3);
// at m = 12 neither won (within 1.3 us either way; 4 was best on the 16-token shapes); at m = 8 they tied within
// 0.1 us; at m = 1..4 the results were mixed (3 ahead on 4096x4096 and at m = 4 on the n = 4096 / 11008 shapes, e.g.
// 13.2 vs 14.9 us; 0 ahead on most m = 1..2 rows, e.g. 28672x8192 m = 1 36.7 vs 37.2), and 4096x14336 at m = 2 had a
// pathological median with 3 (198.4 us against 18.7; 63.5 with 4), not understood.  LATTQ_GEMV_PDL_TRIGGER overrides it, for
// measurements and tests (read per launch, like LATTQ_GEMV_MAX_SPLITS, so tests can change it between calls).
int prep_trigger(int64_t m) {
  if (const char* e = std::getenv("LATTQ_GEMV_PDL_TRIGGER")) {
    const int v = std::atoi(e);
    if (v >= 0 && v <= 4) return v;
  }
  return m >= 16 ? 3 : 0;
}

// LATTQ_GEMV_SCHED=3 (session 20, measurements and tests; read per launch): one-layer launches with 4-token columns
// refill each ring slot right after its use, the sessions 4-19 schedule (gemv_kernel's SCHED); anything else = the
// default
template <typename T, bool PRE, bool GROUP, int TOK>
const void* gemv_main_sched(bool gred) {
  if constexpr (PRE && !GROUP && TOK == GTOK) {
    if (gred) return (const void*)gemv_kernel<T, true, false, GTOK, 0, true>;  // (LATTQ_GEMV_SCHED does not apply)
  }
  if constexpr (!GROUP && TOK == GTOK) {
    const char* e = std::getenv("LATTQ_GEMV_SCHED");
    if (e != nullptr && std::atoi(e) == 3) return (const void*)gemv_kernel<T, PRE, false, TOK, 3>;
  }
  return (const void*)gemv_kernel<T, PRE, GROUP, TOK>;
}

template <typename T, bool PRE, bool GROUP, int TOK>
lattq_status gemv_launch_t(const char* fn, const lattq_layer* Ls, int count, const void* x, int64_t m, void* const* y,
                           const GemvPlan& P, void* ws, cudaStream_t s) {
  if (TOK == GTOK16) {
    const cudaError_t e = gemv_smem_optin<T>();
    if (e != cudaSuccess) {
      cudaGetLastError();
      return LQ_ERR(Device, "%s: enabling %d bytes of shared memory for gemv_kernel failed: %s", fn,
                    2 * 4 * GQT * GTOK16, cudaGetErrorString(e));
    }
  }
  GemvParamsN<GROUP ? GMAXG : 1> p = {};
  int64_t rg = 0;
  for (int i = 0; i < count; ++i) {
    const lattq_layer& L = Ls[i];
    GemvSeg& g = p.seg[i];
    g.codes = L.codes;
    g.A = L.A;
    g.b = L.b;
    g.su = L.su;
    g.sv = L.sv;
    g.bias = L.bias;
    g.y = y[i];
    g.n = L.desc.n;
    g.T = cdiv(L.desc.n, 16);
    g.rg0 = (int)rg;
    g.had_in = L.desc.had_in;
    g.had_out = L.desc.had_out;
    rg += cdiv(L.desc.n, GTN);
  }
  p.nseg = count;
  p.x = x;
  p.k = Ls[0].desc.k;
  p.m = m;
  p.C = cdiv(p.k / 4, 16);
  p.nq = (int)P.nq;
  p.qps = (int)P.qps;
  p.splits = (int)P.splits;
  p.cq = (int)P.cq;
  p.cps = (int)P.cps;
  p.trig = PRE ? prep_trigger(m) : 0;
  if (PRE) {
    const GemvWs w = gemv_ws_layout(&Ls[0].desc, m);
    p.ws_dig = static_cast<uint8_t*>(ws);
    p.ws_sc = reinterpret_cast<float*>(static_cast<uint8_t*>(ws) + w.dig);
    p.ws_c = reinterpret_cast<float*>(static_cast<uint8_t*>(ws) + w.dig + w.sc);
    p.ws_seg = w.total;
    const dim3 pg((unsigned)P.ncols, (unsigned)P.cps, (unsigned)(P.splits * count));
    const void* prep = (const void*)gemv_prep_kernel<T, GROUP, TOK>;
    if constexpr (!GROUP && TOK == GTOK)
      if (P.gred) prep = (const void*)gemv_prep_kernel<T, false, GTOK, true>;  // also zeroes the arrival counters
    const cudaError_t e = launch_ex(prep, pg, dim3(1024), 0, 1, s, &p);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return LQ_ERR(Device, "%s: launching gemv_prep_kernel (grid %u x %u x %u) failed: %s", fn, pg.x, pg.y, pg.z,
                    cudaGetErrorString(e));
    }
  }
  const dim3 grid((unsigned)P.ncols, (unsigned)P.rgroups, (unsigned)P.splits);
  // the GROUP instance has the same launch bounds, registers (128) and shared memory: the plan's occupancy holds
  const cudaError_t e =
      launch_ex(gemv_main_sched<T, PRE, GROUP, TOK>(P.gred), grid, dim3(256), P.smem, P.gred ? 1 : (int)P.splits, s, &p);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return LQ_ERR(Device, "%s: launching gemv_kernel (grid %u x %u x %u, cluster %lld) failed: %s", fn, grid.x, grid.y,
                  grid.z, P.gred ? 1LL : (long long)P.splits, cudaGetErrorString(e));
  }
  return check_launch(fn, "gemv_kernel");
}

// the kernel instance of (PRE, GROUP, TOK) for dtype T
template <typename T>
lattq_status gemv_launch_dt(const char* fn, const lattq_layer* Ls, int count, const void* x, int64_t m, void* const* y,
                            const GemvPlan& P, bool pre, void* ws, cudaStream_t s) {
  const bool g = count > 1;
  if (!pre) return g ? gemv_launch_t<T, false, true, GTOK>(fn, Ls, count, x, m, y, P, ws, s)
                     : gemv_launch_t<T, false, false, GTOK>(fn, Ls, count, x, m, y, P, ws, s);
  if (P.tok == GTOK16) return g ? gemv_launch_t<T, true, true, GTOK16>(fn, Ls, count, x, m, y, P, ws, s)
                                : gemv_launch_t<T, true, false, GTOK16>(fn, Ls, count, x, m, y, P, ws, s);
  return g ? gemv_launch_t<T, true, true, GTOK>(fn, Ls, count, x, m, y, P, ws, s)
           : gemv_launch_t<T, true, false, GTOK>(fn, Ls, count, x, m, y, P, ws, s);
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

// Where AUTO takes GEMV_PDL instead of GEMV / IMMA / WGMMA: sm_90 only (elsewhere the prologue kernel runs in plain
// stream order).  From the session-7 H100 runs (bench/results/gpu/h100_session7/, rev f51ba38; cold L2, median):
// at m = 1 it wins on the two 70B shapes (28672x8192 36.2 vs 39.4 us, 8192x28672 41.1 vs 45.8) and loses up to
// 0.7 us on the 7B/8B shapes, whose GEMV prologue is short; at m = 2 it wins except at 4096x4096; at m = 3..4
// everywhere; at m = 16 on the n = 4096 shapes (4096x4096 19.0 vs 21.4, 4096x14336 35.4 vs 38.2; 4096x11008 30.1 vs
// 29.2 is the one loss).  Session 9 (16-token columns, gemv_tok; bench/results/gpu/h100_session9/tok_cc4d82c.json):
// m = 5..8 everywhere (28672x8192, which went to IMMA, now 48.8 / 50.2 us against IMMA's 50.4 / 52.3) and m = 9..15
// everywhere (m = 12: faster than IMMA on all 7 shapes, e.g. 28672x8192 65.9 vs 81.0, 11008x4096 23.7 vs 32.3; WGMMA
// is not dispatched below m = 16).
bool gemv_pdl_preferred(const lattq_layer_desc* d, int64_t m) {
  if (device_props().major != 9) return false;  // measured on the H100 only
  const int64_t nk = d->n * d->k;
  if (m == 1) return nk >= 8192LL * 8192;
  if (m == 2) return nk > 4096LL * 4096;
  if (m < 16) return true;
  if (m == 16) return d->n <= 4096;
  return false;
}

size_t gemv_pdl_workspace_bytes(const lattq_layer_desc* d, int64_t m) {
  return gemv_ws_layout(d, m).total;
}

size_t gemv_pdl_group_workspace_bytes(const lattq_layer_desc* d, int count, int64_t m) {
  return gemv_ws_layout(d, m).total * (size_t)count;
}

// count (1..GMAXG) layers of the same k (checked by the caller) on one x: one launch (two for GEMV_PDL)
lattq_status gemv_forward(const char* fn, const lattq_layer* Ls, int count, const void* x, int32_t dtype, int64_t m,
                          void* const* y, bool pre, void* ws, cudaStream_t s) {
  if (count < 1 || count > GMAXG) return LQ_ERR(InvalidArgument, "%s: %d layers in one launch (1..%d)", fn, count, GMAXG);
  int64_t rgroups = 0;
  for (int i = 0; i < count; ++i) rgroups += cdiv(Ls[i].desc.n, GTN);
  const GemvPlan P = make_gemv_plan(Ls[0].desc.k, rgroups, m, pre, count == 1);
  if (P.ncols > 2147483647 || P.rgroups > 65535 || P.cps > 65535 || P.splits * count > 65535)
    return LQ_ERR(Shape, "%s: m, n or k too large for this variant", fn);
  switch (dtype) {
    case LATTQ_F16: return gemv_launch_dt<__half>(fn, Ls, count, x, m, y, P, pre, ws, s);
    case LATTQ_BF16: return gemv_launch_dt<__nv_bfloat16>(fn, Ls, count, x, m, y, P, pre, ws, s);
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
// the GEMV_PDL prologue kernel's 5 stamps (0 where it did not run), cleared after the read
extern "C" int lattq_debug_prep_trace(unsigned long long* host) {
  void* dptr = nullptr;
  if (cudaMemcpyFromSymbol(host, lattq_cuda::g_prep_trace, 16 * 8) != cudaSuccess) return 1;
  if (cudaGetSymbolAddress(&dptr, lattq_cuda::g_prep_trace) != cudaSuccess) return 1;
  return cudaMemset(dptr, 0, sizeof(lattq_cuda::g_prep_trace)) == cudaSuccess ? 0 : 1;
}
#endif
