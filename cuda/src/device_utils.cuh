// Device helpers shared by the fast k=2, d=4 kernels (fast_imma.cu, fast_v2_fused.cu, decode_gemv.cu):
// programmatic dependent launch, streaming 16-byte loads, the u8 x s8 integer mma, cp.async, vector loads
// of 4 activations.  Internal header, not installed.
#pragma once

#include "common.cuh"

namespace lattq_cuda {
namespace dev {

// programmatic dependent launch (sm_90; no-ops below)
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// 16-byte read-only streaming load that does not allocate in L1 (the codes are read once per CTA)
__device__ __forceinline__ uint4 ldg_stream(const void* ptr) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(ptr));
  return r;
}

// c += A (16 x 32 u8, row) * B (32 x 8 s8, col), exact int32
__device__ __forceinline__ void mma_u8s8(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// 4 consecutive activations starting at element `off` (off % 4 == 0 and rows of k % 4 == 0 elements, so the
// 8-byte (16-bit types) or 16-byte (f32) vector is aligned when x is 16-byte aligned)
// four 16-bit values packed in two words (the lower half first) as fp32
template <typename T> __device__ __forceinline__ float4 unpack4(uint32_t lo, uint32_t hi);
template <> __device__ __forceinline__ float4 unpack4<__half>(uint32_t lo, uint32_t hi) {
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&lo));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&hi));
  return make_float4(a.x, a.y, b.x, b.y);
}
template <> __device__ __forceinline__ float4 unpack4<__nv_bfloat16>(uint32_t lo, uint32_t hi) {
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&lo));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&hi));
  return make_float4(a.x, a.y, b.x, b.y);
}
template <> __device__ __forceinline__ float4 unpack4<float>(uint32_t, uint32_t) {  // not used: 4-byte T
  return make_float4(0.f, 0.f, 0.f, 0.f);
}
template <typename T> __device__ __forceinline__ float4 load4(const void* x, int64_t off);
template <> __device__ __forceinline__ float4 load4<float>(const void* x, int64_t off) {
  return __ldg(reinterpret_cast<const float4*>(static_cast<const float*>(x) + off));
}
template <> __device__ __forceinline__ float4 load4<__half>(const void* x, int64_t off) {
  uint2 r = __ldg(reinterpret_cast<const uint2*>(static_cast<const __half*>(x) + off));
  __half2 a = *reinterpret_cast<__half2*>(&r.x), b = *reinterpret_cast<__half2*>(&r.y);
  float2 fa = __half22float2(a), fb = __half22float2(b);
  return make_float4(fa.x, fa.y, fb.x, fb.y);
}
template <> __device__ __forceinline__ float4 load4<__nv_bfloat16>(const void* x, int64_t off) {
  uint2 r = __ldg(reinterpret_cast<const uint2*>(static_cast<const __nv_bfloat16*>(x) + off));
  __nv_bfloat162 a = *reinterpret_cast<__nv_bfloat162*>(&r.x), b = *reinterpret_cast<__nv_bfloat162*>(&r.y);
  float2 fa = __bfloat1622float2(a), fb = __bfloat1622float2(b);
  return make_float4(fa.x, fa.y, fb.x, fb.y);
}

// Orthonormal-up-to-scale block Walsh-Hadamard over a warp's 32 x N values (lane l holds elements N l .. N l + N - 1
// in e) for blocks of `had` elements (a power of two <= 32 N): stages h < N pair elements inside the lane, stages
// h = N .. 16 N pair lane l with lane l ^ (h / N), the lower lane keeping a + b.  Unscaled (the caller multiplies by
// had^-1/2).  Every lane of the warp must call it with the same `had`.
// Every in-lane butterfly stage h = 1 .. N / 2 of e (unscaled): for callers that know the block spans the N elements.
template <int N>
__device__ __forceinline__ void lane_butterflies(float (&e)[N]) {
#pragma unroll
  for (int h = 1; h < N; h <<= 1)
#pragma unroll
    for (int i = 0; i < N; ++i)
      if ((i & h) == 0) {
        const float a = e[i], b = e[i + h];
        e[i] = a + b;
        e[i + h] = a - b;
      }
}

template <int N>
__device__ __forceinline__ void warp_block_hadamard(float (&e)[N], int had, int lane) {
#pragma unroll
  for (int h = 1; h < N; h <<= 1) {
    if (h < had) {
#pragma unroll
      for (int i = 0; i < N; ++i) {
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
    if (hl * N < had) {
      // upper lane: o - e, lower lane: e + o, as one FFMA (the product by +-1 is exact: the same single rounding)
      const float sg = (lane & hl) != 0 ? -1.f : 1.f;
#pragma unroll
      for (int i = 0; i < N; ++i) {
        const float o = __shfl_xor_sync(0xffffffffu, e[i], hl);
        e[i] = fmaf(sg, e[i], o);
      }
    }
  }
}

// thread-block clusters (sm_90; single-CTA no-ops below): full cluster barrier (release / acquire), the
// shared-memory address of `p` in CTA `rank` of the cluster, this CTA's rank
__device__ __forceinline__ void cluster_sync_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ const float* map_rank(const float* p, int rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint64_t out;
  asm volatile("mapa.u64 %0, %1, %2;" : "=l"(out) : "l"(p), "r"(rank));
  return reinterpret_cast<const float*>(out);
#else
  (void)rank;
  return p;
#endif
}
__device__ __forceinline__ int cluster_rank() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return (int)r;
#else
  return 0;
#endif
}

}  // namespace dev
}  // namespace lattq_cuda
