// Measurement probe (session 9, not part of the library): how fast can a kernel stream the 2-bit codes of one layer
// with the GEMV main loop's access pattern, and what does the cold-L2 flush method cost the timed region?
//
//   nvcc -O3 -arch=sm_90a -std=c++17 tools/dev/stream_probe.cu -o /tmp/stream_probe && /tmp/stream_probe
//
// Kernels (each only reads the codes and xors them into one word per thread):
//   ring<R>: the GEMV main-loop pattern: 256 threads, warp w of row group rg owns 16-row tile 8 rg + w, lane (g, tig)
//            reads 2 x 16 B per quad at (tile * C + tig) * 256 + g * 16 + q * 1024 (+128), a ring of R quads refilled
//            after use; grid (1, N / 128, splits)
//   flat:    persistent grid-stride 16-byte loads, 8 in flight per thread (a read-bandwidth kernel)
//   empty:   one thread, nothing (the fixed cost of the timed region)
// Session 20 (docs/kernels.md, "Code loads in batches"): sk (balanced grids), ring with 2- or 1-warp CTAs and with
// 512-byte lane halves, flat_ring, flat_block, ring_split, cpa_ring (a shared-memory cp.async ring) and batch_ring
// (GEMV's addresses and grid, loads issued in batches).  Every code load of a warp sets one scoreboard, and the
// ring's first use of a quad waits for all of them: batch_ring<4> reads as fast as flat, ring<8> does not.
// Flushes before each repetition: write (cudaMemsetAsync of 400 MB, what bench_gemm.py does) or read (a read kernel
// over the same buffer, which leaves clean lines in L2).  Median of 50 after 5 warm-up calls, CUDA events.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <vector>

#include "probe_check.h"

__device__ __forceinline__ uint4 ldg_na(const void* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

// QM = false: the TILED layout (1 KB blocks tile-major: a warp's quads are contiguous); QM = true: the same blocks
// quad-major (block q * T + tile), so the warps of the GPU read neighbouring blocks at the same time
// LM = true (session 20): lane l reads bytes 16 l and 512 + 16 l of each 1 KB block (two contiguous 512 B halves per
// warp instruction) instead of TILED's tig * 256 + g * 16 and + 128 (4 lines 256 B apart per instruction)
// NW (session 20): warps per CTA (8 in GEMV; 2 or 1 spread the tiles over the SMs within a CTA of each other)
template <int R, bool QM = false, bool LM = false, int NW = 8>
__global__ void __launch_bounds__(NW * 32, 16 / NW) ring_kernel(const uint8_t* codes, int64_t T, int64_t C, int nq, int qps,
                                                      uint32_t* out) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
  const int64_t tile = (int64_t)blockIdx.y * NW + warp;
  const int q0 = blockIdx.z * qps, q1 = min(nq, q0 + qps);
  const int lo_off = LM ? lane * 16 : tig * 256 + g * 16, hi_off = LM ? 512 : 128;
  const uint8_t* cptr = QM ? codes + tile * 1024 + lo_off : codes + tile * C * 256 + lo_off;
  const int64_t qstride = QM ? T * 1024 : 1024;
  const int qlim = tile < T ? q1 : 0;
  uint4 cb[R][2];
  auto load = [&](int q, uint4& lo, uint4& hi) {
    if (q < qlim) {
      lo = ldg_na(cptr + (int64_t)q * qstride);
      hi = ldg_na(cptr + (int64_t)q * qstride + hi_off);
    } else {
      lo = make_uint4(0, 0, 0, 0);
      hi = lo;
    }
  };
#pragma unroll
  for (int i = 0; i < R; ++i) load(q0 + i, cb[i][0], cb[i][1]);
  uint32_t acc = 0;
  for (int qq = q0; qq < q1; qq += R) {
#pragma unroll
    for (int i = 0; i < R; ++i) {
      if (qq + i < q1) {
        acc ^= cb[i][0].x ^ cb[i][0].y ^ cb[i][0].z ^ cb[i][0].w ^ cb[i][1].x ^ cb[i][1].y ^ cb[i][1].z ^ cb[i][1].w;
        load(qq + i + R, cb[i][0], cb[i][1]);
      }
    }
  }
  out[((size_t)blockIdx.z * gridDim.y + blockIdx.y) * (NW * 32) + threadIdx.x] = acc;
}

// Session 20: the ring pattern over a balanced grid (stream-K over the flattened units), G CTAs of 256 threads.
//   RGSK = true:  units are (row group of 8 tiles, quad), row-group-major; CTA c takes units [c U / G, (c + 1) U / G),
//                 warp w reads tile 8 rg + w of each unit (a CTA straddles at most a few row groups)
//   RGSK = false: units are (tile, quad), tile-major; warp v of the grid takes units [v U / W, (v + 1) U / W)
template <int R, bool RGSK>
__global__ void __launch_bounds__(256, 2) sk_kernel(const uint8_t* codes, int64_t T, int64_t C, int nq, uint32_t* out) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
  const int64_t RG = T / 8;
  const int64_t U = RGSK ? RG * nq : T * nq;
  const int64_t W = RGSK ? gridDim.x : (int64_t)gridDim.x * 8;
  const int64_t v = RGSK ? blockIdx.x : (int64_t)blockIdx.x * 8 + warp;
  const int64_t u0 = v * U / W, u1 = (v + 1) * U / W;
  uint4 cb[R][2];
  auto load = [&](int64_t u, uint4& lo, uint4& hi) {
    if (u < u1) {
      const int64_t tile = RGSK ? (u / nq) * 8 + warp : u / nq;
      const int64_t q = u % nq;
      const uint8_t* a = codes + (tile * C + tig) * 256 + g * 16 + q * 1024;
      lo = ldg_na(a);
      hi = ldg_na(a + 128);
    } else {
      lo = make_uint4(0, 0, 0, 0);
      hi = lo;
    }
  };
#pragma unroll
  for (int i = 0; i < R; ++i) load(u0 + i, cb[i][0], cb[i][1]);
  uint32_t acc = 0;
  for (int64_t uu = u0; uu < u1; uu += R) {
#pragma unroll
    for (int i = 0; i < R; ++i) {
      if (uu + i < u1) {
        acc ^= cb[i][0].x ^ cb[i][0].y ^ cb[i][0].z ^ cb[i][0].w ^ cb[i][1].x ^ cb[i][1].y ^ cb[i][1].z ^ cb[i][1].w;
        load(uu + i + R, cb[i][0], cb[i][1]);
      }
    }
  }
  out[(size_t)blockIdx.x * 256 + threadIdx.x] = acc;
}

__global__ void flat_kernel(const uint4* p, size_t n16, uint32_t* out) {
  uint32_t acc = 0;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  for (; i + 7 * stride < n16; i += 8 * stride) {
    uint4 v[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = ldg_na(p + i + j * stride);
#pragma unroll
    for (int j = 0; j < 8; ++j) acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
  }
  for (; i < n16; i += stride) {
    const uint4 v = ldg_na(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  out[(size_t)blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

// session 20: flat's grid-stride order, but each thread keeps R loads in flight and refills one slot at a time (the
// ring's issue pattern over flat's addresses)
template <int R>
__global__ void flat_ring_kernel(const uint4* p, size_t n16, uint32_t* out) {
  uint32_t acc = 0;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  const size_t i0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  uint4 v[R];
#pragma unroll
  for (int j = 0; j < R; ++j) v[j] = i0 + j * stride < n16 ? ldg_na(p + i0 + j * stride) : make_uint4(0, 0, 0, 0);
  for (size_t i = i0; i < n16; i += R * stride) {
#pragma unroll
    for (int j = 0; j < R; ++j) {
      acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
      const size_t nx = i + (j + R) * stride;
      v[j] = nx < n16 ? ldg_na(p + nx) : make_uint4(0, 0, 0, 0);
    }
  }
  out[(size_t)blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

// session 20: which property of flat's order matters?
//   flat_block: warp v of W reads 1 KB blocks v, v + W, ... (lane l: bytes 16 l and 512 + 16 l), R blocks in flight
//   ring_split: quad-major ring8 whose two 512 B halves of each (tile, quad) sit in separate halves of the buffer
template <int R>
__global__ void __launch_bounds__(256, 2) flat_block_kernel(const uint8_t* codes, int64_t nblk, uint32_t* out) {
  const int lane = threadIdx.x & 31;
  const int64_t W = (int64_t)gridDim.x * 8, v = (int64_t)blockIdx.x * 8 + (threadIdx.x >> 5);
  uint4 cb[R][2];
  auto load = [&](int64_t b, uint4& lo, uint4& hi) {
    if (b < nblk) {
      lo = ldg_na(codes + b * 1024 + lane * 16);
      hi = ldg_na(codes + b * 1024 + 512 + lane * 16);
    } else {
      lo = make_uint4(0, 0, 0, 0);
      hi = lo;
    }
  };
#pragma unroll
  for (int i = 0; i < R; ++i) load(v + i * W, cb[i][0], cb[i][1]);
  uint32_t acc = 0;
  for (int64_t b = v; b < nblk; b += R * W) {
#pragma unroll
    for (int i = 0; i < R; ++i) {
      acc ^= cb[i][0].x ^ cb[i][0].y ^ cb[i][0].z ^ cb[i][0].w ^ cb[i][1].x ^ cb[i][1].y ^ cb[i][1].z ^ cb[i][1].w;
      load(b + (i + R) * W, cb[i][0], cb[i][1]);
    }
  }
  out[(size_t)blockIdx.x * 256 + threadIdx.x] = acc;
}

template <int R>
__global__ void __launch_bounds__(256, 2) ring_split_kernel(const uint8_t* codes, int64_t T, int nq, uint32_t* out) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t tile = (int64_t)blockIdx.y * 8 + warp;
  const int64_t half = T * nq * 512;
  uint4 cb[R][2];
  auto load = [&](int q, uint4& lo, uint4& hi) {
    if (q < nq && tile < T) {
      const uint8_t* a = codes + ((int64_t)q * T + tile) * 512 + lane * 16;
      lo = ldg_na(a);
      hi = ldg_na(a + half);
    } else {
      lo = make_uint4(0, 0, 0, 0);
      hi = lo;
    }
  };
#pragma unroll
  for (int i = 0; i < R; ++i) load(i, cb[i][0], cb[i][1]);
  uint32_t acc = 0;
  for (int qq = 0; qq < nq; qq += R) {
#pragma unroll
    for (int i = 0; i < R; ++i) {
      if (qq + i < nq) {
        acc ^= cb[i][0].x ^ cb[i][0].y ^ cb[i][0].z ^ cb[i][0].w ^ cb[i][1].x ^ cb[i][1].y ^ cb[i][1].z ^ cb[i][1].w;
        load(qq + i + R, cb[i][0], cb[i][1]);
      }
    }
  }
  out[(size_t)blockIdx.y * 256 + threadIdx.x] = acc;
}

// session 20: the register ring above waits for *all* of a warp's outstanding code loads before each quad (every LDG
// sets scoreboard 5 and each quad's first use waits for it to drain), so only about one quad per warp stays in flight.
// cpa_ring: the same GEMV tile-major addresses and grid, through a per-warp shared-memory ring of R stages fed by
// per-lane cp.async, consumed after cp.async.wait_group(R - 1) (commit groups complete in order).  Each lane writes and
// reads its own 32 bytes of a stage (at 16 l and 512 + 16 l: no bank conflicts), so no barrier is needed.
__device__ __forceinline__ void cpa16(void* dst, const void* src) {
  const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src));
}
template <int R>
__global__ void __launch_bounds__(256, 2) cpa_ring_kernel(const uint8_t* codes, int64_t T, int64_t C, int nq, int qps,
                                                          uint32_t* out) {
  extern __shared__ uint4 sring[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
  const int64_t tile = (int64_t)blockIdx.y * 8 + warp;
  const int q0 = blockIdx.z * qps, q1 = tile < T ? min(nq, q0 + qps) : q0;
  const uint8_t* cptr = codes + (tile * C + tig) * 256 + g * 16;
  uint4* base = sring + warp * R * 64;
  auto issue = [&](int q) {
    if (q < q1) {
      uint4* st = base + ((q - q0) % R) * 64;
      cpa16(st + lane, cptr + (int64_t)q * 1024);
      cpa16(st + 32 + lane, cptr + (int64_t)q * 1024 + 128);
    }
    asm volatile("cp.async.commit_group;");
  };
#pragma unroll
  for (int i = 0; i < R - 1; ++i) issue(q0 + i);
  uint32_t acc = 0;
  for (int q = q0; q < q1; ++q) {
    issue(q + R - 1);
    asm volatile("cp.async.wait_group %0;" ::"n"(R - 1));
    const uint4* st = base + ((q - q0) % R) * 64;
    const uint4 a = st[lane], b = st[32 + lane];
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w;
  }
  out[((size_t)blockIdx.z * gridDim.y + blockIdx.y) * 256 + threadIdx.x] = acc;
}

// session 20: GEMV's tile-major addresses and grid with the loads issued in batches: consume all R quads of the ring,
// then issue the next R (each batch waits for the whole ring once, as flat does, instead of once per quad)
template <int R>
__global__ void __launch_bounds__(256, 2) batch_ring_kernel(const uint8_t* codes, int64_t T, int64_t C, int nq, int qps,
                                                            uint32_t* out) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
  const int64_t tile = (int64_t)blockIdx.y * 8 + warp;
  const int q0 = blockIdx.z * qps, q1 = min(nq, q0 + qps);
  const int qlim = tile < T ? q1 : 0;
  const uint8_t* cptr = codes + (tile * C + tig) * 256 + g * 16;
  uint4 cb[R][2];
  auto load = [&](int q, uint4& lo, uint4& hi) {
    if (q < qlim) {
      lo = ldg_na(cptr + (int64_t)q * 1024);
      hi = ldg_na(cptr + (int64_t)q * 1024 + 128);
    } else {
      lo = make_uint4(0, 0, 0, 0);
      hi = lo;
    }
  };
#pragma unroll
  for (int i = 0; i < R; ++i) load(q0 + i, cb[i][0], cb[i][1]);
  uint32_t acc = 0;
  for (int qq = q0; qq < q1; qq += R) {
#pragma unroll
    for (int i = 0; i < R; ++i)
      acc ^= cb[i][0].x ^ cb[i][0].y ^ cb[i][0].z ^ cb[i][0].w ^ cb[i][1].x ^ cb[i][1].y ^ cb[i][1].z ^ cb[i][1].w;
#pragma unroll
    for (int i = 0; i < R; ++i) load(qq + i + R, cb[i][0], cb[i][1]);
  }
  out[((size_t)blockIdx.z * gridDim.y + blockIdx.y) * 256 + threadIdx.x] = acc;
}

__global__ void read_flush_kernel(const uint4* p, size_t n16, uint32_t* out) {
  uint32_t acc = 0;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n16; i += (size_t)gridDim.x * blockDim.x) {
    const uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) out[0] = acc;  // practically never: keeps the loads
}

__global__ void empty_kernel(uint32_t* out) {
  if (threadIdx.x == 1000) out[0] = 1;
}

int main() {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  std::printf("device %s, %d SMs, L2 %d MiB\n", prop.name, sms, prop.l2CacheSize >> 20);
  const size_t flush_bytes = std::max<size_t>((size_t)8 * prop.l2CacheSize, (size_t)256 << 20);
  uint8_t *flush, *codes;
  uint32_t* out;
  CK(cudaMalloc(&flush, flush_bytes));
  CK(cudaMemset(flush, 1, flush_bytes));
  const size_t max_codes = (size_t)28672 * 8192 / 4;
  CK(cudaMalloc(&codes, max_codes));
  CK(cudaMemset(codes, 0x5a, max_codes));
  CK(cudaMalloc(&out, (size_t)1 << 24));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));

  auto time = [&](const char* flushmode, const std::function<void()>& fn) {
    std::vector<float> ts;
    for (int r = 0; r < 55; ++r) {
      if (flushmode[0] == 'w') CK(cudaMemsetAsync(flush, r & 0xff, flush_bytes, s));
      else read_flush_kernel<<<sms * 8, 512, 0, s>>>(reinterpret_cast<const uint4*>(flush), flush_bytes / 16, out);
      CK(cudaEventRecord(e0, s));
      fn();
      CK(cudaEventRecord(e1, s));
      CK(cudaEventSynchronize(e1));
      float ms;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      if (r >= 5) ts.push_back(ms * 1e3f);
    }
    std::sort(ts.begin(), ts.end());
    return ts[ts.size() / 2];
  };

  struct Shape {
    int n, k, splits;
  };
  const Shape shapes[] = {{28672, 8192, 1}, {8192, 28672, 3}, {14336, 4096, 1}, {11008, 4096, 2}, {4096, 4096, 4}};
  for (const char* fm : {"write", "read"}) {
    std::printf("== flush %s\n", fm);
    std::printf("empty kernel: %.2f us\n", time(fm, [&] { empty_kernel<<<1, 32, 0, s>>>(out); }));
    for (const Shape& sh : shapes) {
      const size_t bytes = (size_t)sh.n * sh.k / 4;
      const int64_t T = sh.n / 16, C = (sh.k / 4 + 15) / 16;
      const int nq = (sh.k + 255) / 256, qps = (nq + sh.splits - 1) / sh.splits;
      const dim3 grid(1, sh.n / 128, sh.splits);
      auto rate = [&](float us) { return bytes / (us * 1e-6) / 1e12; };
      float t4 = time(fm, [&] { ring_kernel<4><<<grid, 256, 0, s>>>(codes, T, C, nq, qps, out); });
      float t8 = time(fm, [&] { ring_kernel<8><<<grid, 256, 0, s>>>(codes, T, C, nq, qps, out); });
      float t16 = time(fm, [&] { ring_kernel<16><<<grid, 256, 0, s>>>(codes, T, C, nq, qps, out); });
      float tq4 = time(fm, [&] { ring_kernel<4, true><<<grid, 256, 0, s>>>(codes, T, C, nq, qps, out); });
      float tq8 = time(fm, [&] { ring_kernel<8, true><<<grid, 256, 0, s>>>(codes, T, C, nq, qps, out); });
      float tf = time(fm, [&] { flat_kernel<<<sms * 4, 256, 0, s>>>(reinterpret_cast<const uint4*>(codes), bytes / 16, out); });
      float tf2 = time(fm, [&] { flat_kernel<<<sms * 8, 256, 0, s>>>(reinterpret_cast<const uint4*>(codes), bytes / 16, out); });
      float s264 = time(fm, [&] { sk_kernel<8, true><<<2 * sms, 256, 0, s>>>(codes, T, C, nq, out); });
      float s260 = time(fm, [&] { sk_kernel<8, true><<<2 * sms - 4, 256, 0, s>>>(codes, T, C, nq, out); });
      float s132 = time(fm, [&] { sk_kernel<8, true><<<sms, 256, 0, s>>>(codes, T, C, nq, out); });
      float s264r4 = time(fm, [&] { sk_kernel<4, true><<<2 * sms, 256, 0, s>>>(codes, T, C, nq, out); });
      float s264r12 = time(fm, [&] { sk_kernel<12, true><<<2 * sms, 256, 0, s>>>(codes, T, C, nq, out); });
      float w264 = time(fm, [&] { sk_kernel<8, false><<<2 * sms, 256, 0, s>>>(codes, T, C, nq, out); });
      float l8 = time(fm, [&] { ring_kernel<8, false, true><<<grid, 256, 0, s>>>(codes, T, C, nq, qps, out); });
      float lq8 = time(fm, [&] { ring_kernel<8, true, true><<<grid, 256, 0, s>>>(codes, T, C, nq, qps, out); });
      float fr8 = time(fm, [&] { flat_ring_kernel<8><<<sms * 4, 256, 0, s>>>(reinterpret_cast<const uint4*>(codes), bytes / 16, out); });
      float fr16 = time(fm, [&] { flat_ring_kernel<16><<<sms * 2, 256, 0, s>>>(reinterpret_cast<const uint4*>(codes), bytes / 16, out); });
      static bool optin = false;
      if (!optin) {
        CK(cudaFuncSetAttribute(cpa_ring_kernel<8>, cudaFuncAttributeMaxDynamicSharedMemorySize, 8 * 8192));
        CK(cudaFuncSetAttribute(cpa_ring_kernel<12>, cudaFuncAttributeMaxDynamicSharedMemorySize, 12 * 8192));
        CK(cudaFuncSetAttribute(cpa_ring_kernel<4>, cudaFuncAttributeMaxDynamicSharedMemorySize, 4 * 8192));
        optin = true;
      }
      float c4 = time(fm, [&] { cpa_ring_kernel<4><<<grid, 256, 4 * 8192, s>>>(codes, T, C, nq, qps, out); });
      float c8 = time(fm, [&] { cpa_ring_kernel<8><<<grid, 256, 8 * 8192, s>>>(codes, T, C, nq, qps, out); });
      float c12 = time(fm, [&] { cpa_ring_kernel<12><<<grid, 256, 12 * 8192, s>>>(codes, T, C, nq, qps, out); });
      std::printf("  cp.async ring (session 20): 4 stages %.2f us (%.2f TB/s)  8 stages %.2f (%.2f)  12 stages %.2f (%.2f)\n", c4,
                  rate(c4), c8, rate(c8), c12, rate(c12));
      float b4 = time(fm, [&] { batch_ring_kernel<4><<<grid, 256, 0, s>>>(codes, T, C, nq, qps, out); });
      float b8 = time(fm, [&] { batch_ring_kernel<8><<<grid, 256, 0, s>>>(codes, T, C, nq, qps, out); });
      std::printf("  batched ring (session 20): 4 quads %.2f us (%.2f TB/s)  8 quads %.2f (%.2f)\n", b4, rate(b4), b8, rate(b8));
      float fb = time(fm, [&] { flat_block_kernel<8><<<2 * sms, 256, 0, s>>>(codes, (int64_t)bytes / 1024, out); });
      float fbx = time(fm, [&] { flat_block_kernel<8><<<(unsigned)(T / 8), 256, 0, s>>>(codes, (int64_t)bytes / 1024, out); });
      float rs = sh.splits == 1 ? time(fm, [&] { ring_split_kernel<8><<<dim3(1, sh.n / 128), 256, 0, s>>>(codes, T, nq, out); }) : 0.f;
      std::printf("  order (session 20): 1 KB blocks grid-stride 2/SM %.2f us (%.2f TB/s)  same, GEMV's CTA count %.2f (%.2f);  "
                  "quad-major ring8, halves apart %.2f (%.2f)\n", fb, rate(fb), fbx, rate(fbx), rs, rs > 0 ? rate(rs) : 0.f);
      const dim3 g2(1, sh.n / 32, sh.splits), g1(1, sh.n / 16, sh.splits);
      float w2 = time(fm, [&] { ring_kernel<8, false, false, 2><<<g2, 64, 0, s>>>(codes, T, C, nq, qps, out); });
      float w2q = time(fm, [&] { ring_kernel<8, true, false, 2><<<g2, 64, 0, s>>>(codes, T, C, nq, qps, out); });
      float w1 = time(fm, [&] { ring_kernel<8, false, false, 1><<<g1, 32, 0, s>>>(codes, T, C, nq, qps, out); });
      float w1q = time(fm, [&] { ring_kernel<8, true, false, 1><<<g1, 32, 0, s>>>(codes, T, C, nq, qps, out); });
      std::printf("  small CTAs (session 20): ring8 2 warps %.2f us (%.2f TB/s)  quad-major %.2f (%.2f);  1 warp %.2f (%.2f)  "
                  "quad-major %.2f (%.2f)\n", w2, rate(w2), w2q, rate(w2q), w1, rate(w1), w1q, rate(w1q));
      std::printf("  lane map 16 l (session 20): ring8 %.2f us (%.2f TB/s)  quad-major ring8 %.2f (%.2f);  flat ring8 4/SM %.2f (%.2f)  "
                  "flat ring16 2/SM %.2f (%.2f)\n", l8, rate(l8), lq8, rate(lq8), fr8, rate(fr8), fr16, rate(fr16));
      std::printf("  balanced (session 20): row-group stream-K ring8 2/SM %.2f us (%.2f TB/s)  2/SM-4 %.2f (%.2f)  1/SM %.2f (%.2f)  "
                  "ring4 2/SM %.2f (%.2f)  ring12 2/SM %.2f (%.2f)  warp stream-K ring8 2/SM %.2f (%.2f)\n",
                  s264, rate(s264), s260, rate(s260), s132, rate(s132), s264r4, rate(s264r4), s264r12, rate(s264r12), w264, rate(w264));
      std::printf("%dx%d (%.1f MB, %d x %d CTAs): ring4 %.2f us (%.2f TB/s)  ring8 %.2f (%.2f)  ring16 %.2f (%.2f)  "
                  "quad-major ring4 %.2f (%.2f)  ring8 %.2f (%.2f)  flat 4/SM %.2f (%.2f)  flat 8/SM %.2f (%.2f)\n",
                  sh.n, sh.k, bytes / 1e6, sh.n / 128, sh.splits, t4, rate(t4), t8, rate(t8), t16, rate(t16), tq4, rate(tq4), tq8, rate(tq8), tf,
                  rate(tf), tf2, rate(tf2));
    }
  }
  // steady-state read bandwidth over 4 GiB (what bench_gemm.py's floor divides by), no flush
  {
    const size_t big = (size_t)4 << 30;
    uint8_t* b;
    CK(cudaMalloc(&b, big));
    CK(cudaMemset(b, 0, big));
    std::vector<float> ts;
    for (int r = 0; r < 8; ++r) {
      CK(cudaEventRecord(e0, s));
      flat_kernel<<<sms * 8, 256, 0, s>>>(reinterpret_cast<const uint4*>(b), big / 16, out);
      CK(cudaEventRecord(e1, s));
      CK(cudaEventSynchronize(e1));
      float ms;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      ts.push_back(ms);
    }
    std::sort(ts.begin(), ts.end());
    std::printf("4 GiB flat read: %.3f TB/s\n", big / (ts[4] * 1e-3) / 1e12);
    CK(cudaFree(b));
  }
  CK(cudaGetLastError());
  return 0;
}
