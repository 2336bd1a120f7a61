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
template <int R, bool QM = false>
__global__ void __launch_bounds__(256, 2) ring_kernel(const uint8_t* codes, int64_t T, int64_t C, int nq, int qps,
                                                      uint32_t* out) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
  const int64_t tile = (int64_t)blockIdx.y * 8 + warp;
  const int q0 = blockIdx.z * qps, q1 = min(nq, q0 + qps);
  const uint8_t* cptr = QM ? codes + tile * 1024 + tig * 256 + g * 16 : codes + (tile * C + tig) * 256 + g * 16;
  const int64_t qstride = QM ? T * 1024 : 1024;
  const int qlim = tile < T ? q1 : 0;
  uint4 cb[R][2];
  auto load = [&](int q, uint4& lo, uint4& hi) {
    if (q < qlim) {
      lo = ldg_na(cptr + (int64_t)q * qstride);
      hi = ldg_na(cptr + (int64_t)q * qstride + 128);
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
  out[((size_t)blockIdx.z * gridDim.y + blockIdx.y) * 256 + threadIdx.x] = acc;
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
