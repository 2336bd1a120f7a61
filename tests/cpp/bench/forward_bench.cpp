// Timing of lattq_forward (CPU) for the layer shapes of the acceptance targets.
// Usage: lattq_forward_bench [reps] [threads] [kernel: 0 auto,1 scalar,2 avx2,3 avx512] [shapes as NxKxM ...]
// Prints one line per (shape, m): median / min microseconds over `reps` calls after warm-up.
// LATTQ_BENCH_COLD=1: before every timed call, write a 96 MiB buffer (larger than L2 + L3) so that the
// codes come from DRAM, as in a model whose layers do not fit in the caches.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "lattq/lattq.h"

namespace {
struct Shape {
  long long n, k, m;
};

void* aligned(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return nullptr;
  return p;
}
}  // namespace

int main(int argc, char** argv) {
  int reps = argc > 1 ? std::atoi(argv[1]) : 50;
  int threads = argc > 2 ? std::atoi(argv[2]) : 0;
  int kernel = argc > 3 ? std::atoi(argv[3]) : 0;
  std::vector<Shape> shapes;
  for (int i = 4; i < argc; ++i) {
    Shape s{};
    if (std::sscanf(argv[i], "%lldx%lldx%lld", &s.n, &s.k, &s.m) == 3) shapes.push_back(s);
  }
  if (shapes.empty()) shapes = {{4096, 4096, 1}, {11008, 4096, 1}, {4096, 11008, 1}, {4096, 4096, 8}};
  if (lattq_set_cpu_kernel(kernel) != LATTQ_OK) {
    std::fprintf(stderr, "%s\n", lattq_last_error());
    return 1;
  }
  std::printf("kernel=%s threads=%d\n", lattq_cpu_kernel_name(lattq_get_cpu_kernel()),
              threads > 0 ? threads : lattq_get_num_threads());
  std::mt19937_64 rng(1234);
  const bool cold = std::getenv("LATTQ_BENCH_COLD") && std::atoi(std::getenv("LATTQ_BENCH_COLD")) != 0;
  std::vector<uint8_t> flush(cold ? (size_t(96) << 20) : 0);
  if (cold) std::printf("cold caches: %zu MiB written before each call\n", flush.size() >> 20);
  for (const Shape& s : shapes) {
    lattq_layer_desc d{2, 4, s.n, s.k, 128, 128};
    if (s.k % 128) d.had_in = int32_t(s.k & -s.k) > 128 ? 128 : int32_t(s.k & -s.k);
    if (s.n % 128) d.had_out = int32_t(s.n & -s.n) > 128 ? 128 : int32_t(s.n & -s.n);
    const int64_t cb = lattq_canonical_bytes(&d), pb = lattq_packed_bytes(&d);
    std::vector<uint8_t> canon(static_cast<size_t>(cb));
    for (auto& c : canon) c = uint8_t(rng());
    uint8_t* packed = static_cast<uint8_t*>(aligned(size_t(pb)));
    lattq_pack(&d, canon.data(), packed);
    std::normal_distribution<float> nd;
    float A[16], b[4];
    for (auto& a : A) a = nd(rng);
    for (auto& a : b) a = nd(rng);
    std::vector<float> su(size_t(s.k)), sv(size_t(s.n)), bias(size_t(s.n));
    for (auto& v : su) v = nd(rng);
    for (auto& v : sv) v = nd(rng);
    for (auto& v : bias) v = nd(rng);
    lattq_layer L{d, LATTQ_LAYOUT_TILED, packed, A, b, su.data(), sv.data(), bias.data()};
    std::vector<float> x(size_t(s.k * s.m)), y(size_t(s.n * s.m));
    for (auto& v : x) v = nd(rng);
    size_t wsb = 0;
    lattq_forward_workspace_size(&d, s.m, &wsb);
    void* ws = aligned(wsb);
    std::vector<double> ts;
    for (int r = 0; r < reps + 5; ++r) {
      if (cold) std::memset(flush.data(), r & 0xff, flush.size());
      auto t0 = std::chrono::steady_clock::now();
      lattq_status st = lattq_forward(&L, x.data(), LATTQ_F32, s.m, y.data(), ws, wsb, threads);
      auto t1 = std::chrono::steady_clock::now();
      if (st != LATTQ_OK) {
        std::fprintf(stderr, "forward failed: %s\n", lattq_last_error());
        return 1;
      }
      if (r >= 5) ts.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    std::sort(ts.begin(), ts.end());
    const double med = ts[ts.size() / 2];
    std::printf("n=%lld k=%lld m=%lld  median %.1f us  min %.1f us  (%.2f GB/s of codes, %.2f Gweights/s)\n", s.n, s.k,
                s.m, med, ts[0], double(cb) / med * 1e-3, double(s.n) * s.k * s.m / med * 1e-3);
    std::free(ws);
    std::free(packed);
  }
  return 0;
}
