// lattq C++ runtime example: build a 2-bit affine-lattice layer in memory, pack it to the kernel
// layout, run it through the native CPU path (and the CUDA path when the package has it and a GPU is
// present), and check the result against an independent double-precision evaluation of the format's
// definition (docs/format.md §2-3).  Exit code 0 means every check passed.
#include <lattq/lattq.h>
#ifdef LATTQ_EXAMPLE_WITH_CUDA
#include <cuda_runtime.h>
#include <lattq/lattq_cuda.h>
#endif

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

struct Rng {  // small deterministic generator (splitmix64)
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
  double normal() {
    double u = uniform() + 1e-12, v = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
};

// Orthonormal block Hadamard along a vector, Sylvester order: H[i][j] = (-1)^popcount(i&j) / sqrt(B).
void hadamard(std::vector<double>& v, int block) {
  std::vector<double> out(v.size());
  for (size_t base = 0; base < v.size(); base += block)
    for (int i = 0; i < block; ++i) {
      double acc = 0;
      for (int j = 0; j < block; ++j) acc += (__builtin_popcount(i & j) & 1 ? -1.0 : 1.0) * v[base + j];
      out[base + i] = acc / std::sqrt(double(block));
    }
  v = out;
}

bool check(const char* what, lattq_status st) {
  if (st != LATTQ_OK) {
    std::fprintf(stderr, "%s failed: %s (%s)\n", what, lattq_status_string(st), lattq_last_error());
    return false;
  }
  return true;
}

}  // namespace

int main() {
  const int bits = 2, dim = 4;
  const int64_t N = 96, K = 256, M = 3;
  const int had_in = 64, had_out = 32;
  Rng rng{20261123};

  lattq_layer_desc desc{bits, dim, N, K, had_in, had_out};
  if (!check("lattq_validate_desc", lattq_validate_desc(&desc))) return 1;

  // Canonical codes: random 2-bit fields, little-endian bitstream per row.
  const int64_t row_bytes = K * bits / 8;
  std::vector<uint8_t> canonical(N * row_bytes);
  for (auto& c : canonical) c = uint8_t(rng.next() & 0xFF);
  std::vector<float> A(dim * dim), b(dim), su(K), sv(N), bias(N), x(M * K);
  const double s = 1.0 / std::sqrt(1.25);
  for (int i = 0; i < dim; ++i)
    for (int j = 0; j < dim; ++j) A[i * dim + j] = float((i == j ? s : 0.0) + 0.05 * rng.normal());
  for (auto& v : b) v = float(-1.5 * s + 0.05 * rng.normal());
  for (auto& v : su) v = float(rng.uniform() < 0.5 ? -1.0 : 1.0);
  for (auto& v : sv) v = float(0.02 * (1.0 + rng.uniform()));
  for (auto& v : bias) v = float(0.1 * rng.normal());
  for (auto& v : x) v = float(rng.normal());

  // Pack to the kernel layout and run the CPU path.
  std::vector<uint8_t> packed(lattq_packed_bytes(&desc));
  if (!check("lattq_pack", lattq_pack(&desc, canonical.data(), packed.data()))) return 1;
  lattq_layer layer{desc, LATTQ_LAYOUT_TILED, packed.data(), A.data(), b.data(), su.data(), sv.data(), bias.data()};
  size_t ws_bytes = 0;
  if (!check("lattq_forward_workspace_size", lattq_forward_workspace_size(&desc, M, &ws_bytes))) return 1;
  std::vector<uint8_t> ws_storage(ws_bytes + 64);
  void* ws = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(ws_storage.data()) + 63) & ~uintptr_t(63));
  std::vector<float> y(M * N);
  if (!check("lattq_forward", lattq_forward(&layer, x.data(), LATTQ_F32, M, y.data(), ws, ws_bytes, 0))) return 1;

  // Independent double-precision evaluation from the definition.
  double err2 = 0, ref2 = 0;
  std::vector<double> ref(M * N);
  for (int64_t m = 0; m < M; ++m) {
    std::vector<double> u(K), t(N);
    for (int64_t k = 0; k < K; ++k) u[k] = double(su[k]) * x[m * K + k];
    hadamard(u, had_in);
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t g = 0; g < K / dim; ++g) {
        const uint8_t code = canonical[n * row_bytes + g];  // k=2, d=4: one byte per group
        for (int i = 0; i < dim; ++i) {
          double w = b[i];
          for (int j = 0; j < dim; ++j) w += double(A[i * dim + j]) * ((code >> (2 * j)) & 3);
          acc += w * u[g * dim + i];
        }
      }
      t[n] = acc;
    }
    hadamard(t, had_out);
    for (int64_t n = 0; n < N; ++n) {
      ref[m * N + n] = double(sv[n]) * t[n] + bias[n];
      const double e = y[m * N + n] - ref[m * N + n];
      err2 += e * e;
      ref2 += ref[m * N + n] * ref[m * N + n];
    }
  }
  const double rel = std::sqrt(err2 / ref2);
  std::printf("lattq %s (format v%d): CPU forward %lldx%lld, m=%lld: relative error vs float64 %.3g\n",
              lattq_version_string(), lattq_format_version(), (long long)N, (long long)K, (long long)M, rel);
  if (!(rel <= 1e-5)) {
    std::fprintf(stderr, "FAIL: CPU relative error %.3g > 1e-5\n", rel);
    return 1;
  }

#ifdef LATTQ_EXAMPLE_WITH_CUDA
  if (lattq_cuda_device_count() > 0) {
    auto up = [](const void* h, size_t n) { void* d = nullptr; cudaMalloc(&d, n); cudaMemcpy(d, h, n, cudaMemcpyHostToDevice); return d; };
    lattq_layer dl = layer;
    dl.codes = static_cast<const uint8_t*>(up(packed.data(), packed.size()));
    dl.A = static_cast<const float*>(up(A.data(), A.size() * 4));
    dl.b = static_cast<const float*>(up(b.data(), b.size() * 4));
    dl.su = static_cast<const float*>(up(su.data(), su.size() * 4));
    dl.sv = static_cast<const float*>(up(sv.data(), sv.size() * 4));
    dl.bias = static_cast<const float*>(up(bias.data(), bias.size() * 4));
    void* dx = up(x.data(), x.size() * 4);
    void* dy = nullptr;
    cudaMalloc(&dy, y.size() * 4);
    size_t dws_bytes = 0;
    if (!check("lattq_cuda_forward_workspace_size", lattq_cuda_forward_workspace_size(&desc, M, LATTQ_VARIANT_AUTO, &dws_bytes))) return 1;
    void* dws = nullptr;
    cudaMalloc(&dws, dws_bytes ? dws_bytes : 1);
    if (!check("lattq_cuda_forward", lattq_cuda_forward(&dl, dx, LATTQ_F32, M, dy, dws, dws_bytes, LATTQ_VARIANT_AUTO, nullptr))) return 1;
    std::vector<float> gy(y.size());
    if (cudaMemcpy(gy.data(), dy, gy.size() * 4, cudaMemcpyDeviceToHost) != cudaSuccess) {
      std::fprintf(stderr, "FAIL: cudaMemcpy\n");
      return 1;
    }
    double gerr2 = 0;
    for (size_t i = 0; i < gy.size(); ++i) gerr2 += (gy[i] - ref[i]) * (gy[i] - ref[i]);
    const double grel = std::sqrt(gerr2 / ref2);
    std::printf("CUDA forward: relative error vs float64 %.3g\n", grel);
    if (!(grel <= 1e-5)) {
      std::fprintf(stderr, "FAIL: CUDA relative error %.3g > 1e-5\n", grel);
      return 1;
    }
  } else {
    std::printf("CUDA forward: skipped (package has CUDA kernels, no device visible)\n");
  }
#endif
  std::printf("OK\n");
  return 0;
}
