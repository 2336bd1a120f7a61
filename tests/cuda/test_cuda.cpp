// lattq CUDA tests: decode bit-exact vs the CPU core, FWHT and layer forward vs float64 oracles written
// from docs/format.md §2 (never from the code under test), every variant and dtype, error paths,
// non-default stream and CUDA-graph replay.  No GoogleTest: exit 0 = pass, 1 = failure, 77 = no GPU.
//
// Usage: lattq_cuda_tests [--quick] [--seed N] [--only NAME[,NAME...]]  (names: errors decode fwht generic graph forward
//        batches fused_splits gemv_splits chain group wgmma_settings wgmma_wh; --only runs just those, e.g. for a targeted
//        racecheck)
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <utility>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <memory>
#include <vector>

#include "lattq/lattq.h"
#include "lattq/lattq.hpp"
#include "lattq/lattq_cuda.h"

namespace {

int g_fail = 0, g_pass = 0;
std::mt19937_64 rng;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (cond) {                                            \
      ++g_pass;                                            \
    } else {                                               \
      ++g_fail;                                            \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__);     \
      std::printf(__VA_ARGS__);                            \
      std::printf("\n");                                   \
    }                                                      \
  } while (0)

#define CUDA_OK(x)                                                                          \
  do {                                                                                      \
    cudaError_t e_ = (x);                                                                   \
    if (e_ != cudaSuccess) {                                                                \
      std::printf("CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, __LINE__, #x); \
      std::exit(1);                                                                         \
    }                                                                                       \
  } while (0)

// Parallel loop over [0, n) with std::thread (the float64 oracles of the large shapes).
template <typename F>
void parallel_for(int64_t n, F f) {
  int nt = (int)std::max(1u, std::min(32u, std::thread::hardware_concurrency()));
  std::vector<std::thread> th;
  for (int t = 0; t < nt; ++t)
    th.emplace_back([=, &f] {
      for (int64_t i = t; i < n; i += nt) f(i);
    });
  for (auto& x : th) x.join();
}

double randn() { return std::normal_distribution<double>(0.0, 1.0)(rng); }
double randu(double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); }
int64_t randi(int64_t a, int64_t b) { return std::uniform_int_distribution<int64_t>(a, b)(rng); }

template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) { CUDA_OK(cudaMalloc(&p, std::max<size_t>(1, count) * sizeof(T))); }
  ~DevBuf() { cudaFree(p); }
  void put(const std::vector<T>& h) { CUDA_OK(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    CUDA_OK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

// ---- independent float64 oracle (docs/format.md §2) ----------------------------------------
uint32_t field(const std::vector<uint8_t>& canon, int64_t R, int bits, int64_t n, int64_t j) {
  uint32_t v = 0;
  for (int b = 0; b < bits; ++b) {
    int64_t bit = (int64_t)bits * j + b;
    v |= ((canon[n * R + bit / 8] >> (bit % 8)) & 1u) << b;
  }
  return v;
}

void fwht64(double* x, int64_t len, int64_t block) {
  if (block <= 1) return;
  const double s = 1.0 / std::sqrt((double)block);
  for (int64_t base = 0; base < len; base += block) {
    double* p = x + base;
    for (int64_t h = 1; h < block; h *= 2)
      for (int64_t i = 0; i < block; i += 2 * h)
        for (int64_t j = i; j < i + h; ++j) {
          double a = p[j], b = p[j + h];
          p[j] = a + b;
          p[j + h] = a - b;
        }
    for (int64_t i = 0; i < block; ++i) p[i] *= s;
  }
}

struct HostLayer {
  lattq_layer_desc d;
  std::vector<uint8_t> canon, tiled;
  std::vector<float> A, b, su, sv, bias;
  bool has_bias;
};

HostLayer make_layer(int bits, int dim, int64_t n, int64_t k, int had_in, int had_out, bool bias) {
  HostLayer L;
  L.d = {bits, dim, n, k, had_in, had_out};
  int64_t R = k * bits / 8;
  L.canon.resize(n * R);
  for (auto& c : L.canon) c = (uint8_t)randi(0, 255);
  int64_t pb = lattq_packed_bytes(&L.d);
  L.tiled.assign(pb > 0 ? pb : 0, 0xEE);
  if (pb <= 0 || lattq_pack(&L.d, L.canon.data(), L.tiled.data()) != LATTQ_OK) {
    std::printf("lattq_pack failed: %s\n", lattq_last_error());
    std::exit(1);
  }
  double s = 1.0 / std::sqrt(1.25);
  L.A.resize(dim * dim);
  for (int i = 0; i < dim; ++i)
    for (int j = 0; j < dim; ++j) L.A[i * dim + j] = (float)((i == j ? s : 0.0) + 0.2 * randn());
  L.b.resize(dim);
  for (auto& v : L.b) v = (float)(-1.5 * s + 0.3 * randn());
  L.su.resize(k);
  for (auto& v : L.su) v = (float)((randi(0, 1) ? 1 : -1) * randu(0.5, 1.5));
  L.sv.resize(n);
  for (auto& v : L.sv) v = (float)((randi(0, 1) ? 1 : -1) * randu(0.01, 0.03));
  L.has_bias = bias;
  L.bias.resize(n);
  for (auto& v : L.bias) v = (float)(0.1 * randn());
  return L;
}

// The input side of the oracle: v[t] = A^T-fold of H_in(SU x[t]) per group and the per-token constant c[t] = b . u.
void oracle_fold(const HostLayer& L, const std::vector<double>& x, int64_t m, std::vector<double>& v,
                 std::vector<double>& c) {
  const int64_t k = L.d.k;
  const int dim = L.d.dim;
  v.assign(m * k, 0.0);
  c.assign(m, 0.0);
  parallel_for(m, [&](int64_t t) {
    double* u = &v[t * k];
    for (int64_t j = 0; j < k; ++j) u[j] = x[t * k + j] * (double)L.su[j];
    fwht64(u, k, L.d.had_in);
    for (int64_t g = 0; g < k / dim; ++g) {
      double ug[8], vg[8];
      for (int j = 0; j < dim; ++j) ug[j] = u[g * dim + j];
      for (int i = 0; i < dim; ++i) {
        vg[i] = 0;
        for (int j = 0; j < dim; ++j) vg[i] += (double)L.A[j * dim + i] * ug[j];
        c[t] += (double)L.b[i] * ug[i];
      }
      for (int i = 0; i < dim; ++i) u[g * dim + i] = vg[i];
    }
  });
}

// y64[m][n] for activations x64 (already rounded to the activation dtype), folded math in float64.
std::vector<double> oracle_forward(const HostLayer& L, const std::vector<double>& x, int64_t m) {
  const int64_t n = L.d.n, k = L.d.k, R = k * L.d.bits / 8;
  std::vector<double> v, c, y(m * n);
  oracle_fold(L, x, m, v, c);
  std::vector<double> tt(m * n);
  parallel_for(n, [&](int64_t r) {
    std::vector<double> zrow(k);
    for (int64_t j = 0; j < k; ++j) zrow[j] = field(L.canon, R, L.d.bits, r, j);
    for (int64_t t = 0; t < m; ++t) {
      const double* vv = &v[t * k];
      double acc = 0;
      for (int64_t j = 0; j < k; ++j) acc += zrow[j] * vv[j];
      tt[t * n + r] = acc + c[t];
    }
  });
  for (int64_t t = 0; t < m; ++t) {
    fwht64(&tt[t * n], n, L.d.had_out);
    for (int64_t r = 0; r < n; ++r)
      y[t * n + r] = (double)L.sv[r] * tt[t * n + r] + (L.has_bias ? (double)L.bias[r] : 0.0);
  }
  return y;
}

// Row r of What H_in (k values into w): the decoded codewords A z + b of the row, then the input Hadamard.
void what_hin_row(const HostLayer& L, int64_t r, double* w) {
  const int64_t k = L.d.k, R = k * L.d.bits / 8;
  const int dim = L.d.dim;
  for (int64_t g = 0; g < k / dim; ++g) {
    double z[8];
    for (int j = 0; j < dim; ++j) z[j] = field(L.canon, R, L.d.bits, r, g * dim + j);
    for (int i = 0; i < dim; ++i) {
      double a = L.b[i];
      for (int j = 0; j < dim; ++j) a += (double)L.A[i * dim + j] * z[j];
      w[g * dim + i] = a;
    }
  }
  fwht64(w, k, L.d.had_in);
}

// Effective dense weight W (n x k) in float64: W = diag(SV) H_out^T What H_in diag(SU).
std::vector<double> dense_weight(const HostLayer& L) {
  const int64_t n = L.d.n, k = L.d.k;
  std::vector<double> W(n * k);
  for (int64_t r = 0; r < n; ++r) what_hin_row(L, r, &W[r * k]);
  if (L.d.had_out > 1) {
    std::vector<double> col(n);
    for (int64_t j = 0; j < k; ++j) {
      for (int64_t r = 0; r < n; ++r) col[r] = W[r * k + j];
      fwht64(col.data(), n, L.d.had_out);
      for (int64_t r = 0; r < n; ++r) W[r * k + j] = col[r];
    }
  }
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < k; ++j) W[r * k + j] *= (double)L.sv[r] * (double)L.su[j];
  return W;
}

double round_to(int32_t dt, double v) {
  float f = (float)v;
  if (dt == LATTQ_F16) return lattq::half_to_float(lattq::float_to_half(f));
  if (dt == LATTQ_BF16) return lattq::bfloat16_to_float(lattq::float_to_bfloat16(f));
  return f;
}

double rel_err(const std::vector<double>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double d = a[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

const char* dt_name(int32_t dt) { return dt == LATTQ_F32 ? "f32" : dt == LATTQ_F16 ? "f16" : "bf16"; }
const char* var_name(int32_t v) {
  switch (v) {
    case LATTQ_VARIANT_AUTO: return "auto";
    case LATTQ_VARIANT_REFERENCE: return "reference";
    case LATTQ_VARIANT_IMMA: return "imma";
    case LATTQ_VARIANT_IMMA_WIDE: return "imma_wide";
    case LATTQ_VARIANT_FUSED_GEMV: return "fused_gemv";
    case LATTQ_VARIANT_TILED_GEMM: return "tiled_gemm";
    case LATTQ_VARIANT_GEMV: return "gemv";
    case LATTQ_VARIANT_WGMMA: return "wgmma";
    case LATTQ_VARIANT_GEMV_PDL: return "gemv_pdl";
    case LATTQ_VARIANT_WGMMA_F16: return "wgmma_f16";
  }
  return "?";
}

// The documented contract of LATTQ_VARIANT_GEMV and GEMV_PDL (lattq_cuda.h): f16/bf16, had_in <= 256, had_out <= 128;
// anything else must be refused with LATTQ_ERR_UNSUPPORTED.
bool gemv_serves(const lattq_layer_desc& d, int32_t dt) {
  return dt != LATTQ_F32 && d.had_in <= 256 && d.had_out <= 128;
}

// The documented contract of LATTQ_VARIANT_WGMMA and WGMMA_F16 (lattq_cuda.h): f16/bf16 on an sm_90 GPU (the test build
// includes sm_90a, as every lattq build for Hopper does); anything else must be refused with
// LATTQ_ERR_UNSUPPORTED.
bool wgmma_serves(int32_t dt) {
  int dev = 0, major = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  return dt != LATTQ_F32 && major == 9;
}

// LATTQ_VARIANT_WGMMA_F16 (lattq_cuda.h): bf16 only, on an sm_90 GPU
bool wgmma_f16_serves(int32_t dt) { return dt == LATTQ_BF16 && wgmma_serves(dt); }

// Whether a variant serves (desc, dt) by its documented contract; the others must refuse with LATTQ_ERR_UNSUPPORTED.
bool variant_serves(int32_t var, const lattq_layer_desc& d, int32_t dt) {
  if (var == LATTQ_VARIANT_GEMV || var == LATTQ_VARIANT_GEMV_PDL) return gemv_serves(d, dt);
  if (var == LATTQ_VARIANT_WGMMA) return wgmma_serves(dt);
  if (var == LATTQ_VARIANT_WGMMA_F16) return wgmma_f16_serves(dt);
  return true;
}

// Device copy of a host layer.
struct DevLayer {
  DevBuf<uint8_t> codes, canon;
  DevBuf<float> A, b, su, sv, bias;
  lattq_layer L;
  lattq_layer Lc;
  explicit DevLayer(const HostLayer& h)
      : codes(h.tiled.size()), canon(h.canon.size()), A(h.A.size()), b(h.b.size()), su(h.su.size()),
        sv(h.sv.size()), bias(h.bias.size()) {
    codes.put(h.tiled);
    canon.put(h.canon);
    A.put(h.A);
    b.put(h.b);
    su.put(h.su);
    sv.put(h.sv);
    bias.put(h.bias);
    L.desc = h.d;
    L.layout = LATTQ_LAYOUT_TILED;
    L.codes = codes.p;
    L.A = A.p;
    L.b = b.p;
    L.su = su.p;
    L.sv = sv.p;
    L.bias = h.has_bias ? bias.p : nullptr;
    Lc = L;
    Lc.layout = LATTQ_LAYOUT_CANONICAL;
    Lc.codes = canon.p;
  }
};

std::vector<uint16_t> to16(int32_t dt, const std::vector<double>& x) {
  std::vector<uint16_t> r(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    r[i] = dt == LATTQ_F16 ? lattq::float_to_half((float)x[i]) : lattq::float_to_bfloat16((float)x[i]);
  return r;
}

// Activations (values representable in dt) to a device buffer in dt, and back as float64.
void put_act(int32_t dt, const std::vector<double>& x, void* dst) {
  if (dt == LATTQ_F32) {
    std::vector<float> xf(x.begin(), x.end());
    CUDA_OK(cudaMemcpy(dst, xf.data(), xf.size() * 4, cudaMemcpyHostToDevice));
  } else {
    std::vector<uint16_t> xh = to16(dt, x);
    CUDA_OK(cudaMemcpy(dst, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
  }
}

std::vector<double> get_act(int32_t dt, const void* src, int64_t count) {
  std::vector<double> y(count);
  if (dt == LATTQ_F32) {
    std::vector<float> yf(count);
    CUDA_OK(cudaMemcpy(yf.data(), src, count * 4, cudaMemcpyDeviceToHost));
    for (int64_t i = 0; i < count; ++i) y[i] = yf[i];
  } else {
    std::vector<uint16_t> yh(count);
    CUDA_OK(cudaMemcpy(yh.data(), src, count * 2, cudaMemcpyDeviceToHost));
    for (int64_t i = 0; i < count; ++i)
      y[i] = dt == LATTQ_F16 ? lattq::half_to_float(yh[i]) : lattq::bfloat16_to_float(yh[i]);
  }
  return y;
}

// Runs lattq_cuda_forward and returns y as float64 (NaN-poisoned output first).
bool run_forward(const DevLayer& D, const lattq_layer& L, const std::vector<double>& x, int32_t dt, int64_t m,
                 int32_t variant, std::vector<double>& y, cudaStream_t stream, lattq_status* status = nullptr) {
  const int64_t n = L.desc.n, k = L.desc.k;
  size_t es = dt == LATTQ_F32 ? 4 : 2;
  DevBuf<uint8_t> dx(m * k * es), dy(m * n * es);
  put_act(dt, x, dx.p);
  CUDA_OK(cudaMemset(dy.p, 0xFF, m * n * es));  // NaN poison
  size_t wsb = 0;
  lattq_status s = lattq_cuda_forward_workspace_size(&L.desc, m, variant, &wsb);
  if (s != LATTQ_OK) {
    std::printf("workspace_size failed: %s\n", lattq_last_error());
    return false;
  }
  DevBuf<uint8_t> ws(wsb);
  CUDA_OK(cudaMemset(ws.p, 0xA5, wsb));  // garbage: kernels must not rely on a zeroed workspace
  // the copies and memsets above run on the legacy default stream, which a cudaStreamNonBlocking `stream` does
  // not wait for: without this the forward could overlap them (seen once: a memset landing on the workspace
  // of a running forward, rel err 1)
  CUDA_OK(cudaDeviceSynchronize());
  s = lattq_cuda_forward(&L, dx.p, dt, m, dy.p, ws.p, wsb, variant, stream);
  if (status) *status = s;
  if (s != LATTQ_OK) {
    if (!status) std::printf("forward failed: %s\n", lattq_last_error());
    return false;
  }
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaGetLastError());
  y = get_act(dt, dy.p, m * n);
  (void)D;
  return true;
}

// ---- tests ----------------------------------------------------------------------------------
void test_decode(bool quick) {
  const int bitss[4] = {1, 2, 3, 4}, dims[4] = {1, 2, 4, 8};
  for (int bits : bitss)
    for (int dim : dims) {
      if (bits * dim > 16) continue;
      int64_t step = std::lcm((int64_t)dim, (int64_t)(8 / std::gcd(8, bits)));  // k % dim == 0, k*bits % 8 == 0
      int64_t k = step * randi(1, quick ? 12 : 40);
      int64_t n = randi(1, quick ? 40 : 70);
      HostLayer h = make_layer(bits, dim, n, k, 1, 1, false);
      DevLayer D(h);
      std::vector<float> cpu(n * k);
      lattq_layer hl = {h.d, LATTQ_LAYOUT_CANONICAL, h.canon.data(), h.A.data(), h.b.data(), h.su.data(), h.sv.data(), nullptr};
      lattq_status s = lattq_decode(&hl, 0, cpu.data());
      CHECK(s == LATTQ_OK, "cpu decode bits=%d dim=%d: %s", bits, dim, lattq_last_error());
      for (int layout = 0; layout < 2; ++layout) {
        DevBuf<float> out(n * k);
        CUDA_OK(cudaMemset(out.p, 0xFF, n * k * 4));
        s = lattq_cuda_decode(layout ? &D.L : &D.Lc, out.p, nullptr);
        CUDA_OK(cudaDeviceSynchronize());
        CHECK(s == LATTQ_OK, "cuda decode: %s", lattq_last_error());
        std::vector<float> g = out.get();
        CHECK(std::memcmp(g.data(), cpu.data(), n * k * 4) == 0, "decode bits=%d dim=%d layout=%d n=%lld k=%lld not bit-exact",
              bits, dim, layout, (long long)n, (long long)k);
      }
    }
  std::printf("decode: all (bits, dim), TILED and CANONICAL checked\n");
}

void test_fwht(bool quick) {
  const int blocks[] = {1, 2, 8, 64, 128, 1024, 4096, 16384, 65536};
  for (int block : blocks) {
    if (quick && block > 4096) continue;
    for (int32_t dt : {LATTQ_F32, LATTQ_F16, LATTQ_BF16}) {
      int64_t rows = randi(1, 3), len = (int64_t)block * randi(1, 3);
      std::vector<double> x(rows * len);
      for (auto& v : x) v = round_to(dt, randn());
      std::vector<double> ref = x;
      for (int64_t r = 0; r < rows; ++r) fwht64(&ref[r * len], len, block);
      size_t es = dt == LATTQ_F32 ? 4 : 2;
      DevBuf<uint8_t> d(rows * len * es);
      if (dt == LATTQ_F32) {
        std::vector<float> f(x.begin(), x.end());
        CUDA_OK(cudaMemcpy(d.p, f.data(), f.size() * 4, cudaMemcpyHostToDevice));
      } else {
        auto h = to16(dt, x);
        CUDA_OK(cudaMemcpy(d.p, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
      }
      lattq_status s = lattq_cuda_fwht(d.p, dt, rows, len, block, nullptr);
      if (dt != LATTQ_F32 && block == 65536 && s == LATTQ_ERR_UNSUPPORTED) {
        CHECK(std::strstr(lattq_last_error(), "block") != nullptr, "message should name the block: %s", lattq_last_error());
        continue;
      }
      CHECK(s == LATTQ_OK, "fwht %s block %d: %s", dt_name(dt), block, lattq_last_error());
      CUDA_OK(cudaDeviceSynchronize());
      std::vector<double> got(rows * len);
      if (dt == LATTQ_F32) {
        std::vector<float> f(rows * len);
        CUDA_OK(cudaMemcpy(f.data(), d.p, f.size() * 4, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < f.size(); ++i) got[i] = f[i];
      } else {
        std::vector<uint16_t> h(rows * len);
        CUDA_OK(cudaMemcpy(h.data(), d.p, h.size() * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < h.size(); ++i)
          got[i] = dt == LATTQ_F16 ? lattq::half_to_float(h[i]) : lattq::bfloat16_to_float(h[i]);
      }
      double e = rel_err(got, ref);
      // fp32 math: ~log2(block) roundings of 2^-24; 16-bit dtypes: output rounding (2^-11 / 2^-8 relative).
      double tol = dt == LATTQ_F32 ? 1e-6 : dt == LATTQ_F16 ? 1e-3 : 8e-3;
      CHECK(e <= tol, "fwht %s block %d rel err %.3g > %.3g", dt_name(dt), block, e, tol);
    }
  }
  std::printf("fwht: blocks 1..65536, f32/f16/bf16 checked\n");
}

struct Shape {
  int64_t n, k;
  int had_in, had_out;
  bool bias;
};

void test_forward(bool quick) {
  std::vector<Shape> shapes = {
      {24, 40, 8, 8, true},        // tiny, partial quad and slice
      {136, 1088, 64, 8, false},   // K = 64*17: partial quads; N not a multiple of 128
      {576, 1536, 64, 64, true},   // SmolLM2-like
      {1536, 576, 64, 64, false},
      {200, 2048, 2048, 8, true},  // full-dimension had_in (> 1024: unfused prologue)
      {256, 512, 128, 256, false}, // had_out > 128: unfused epilogue
      {4096, 4096, 128, 128, false},
      {11008, 4096, 128, 128, true},
      {128, 32768, 1024, 128, true},  // long K, one row group: fused_gemv walks several digit chunks per CTA
  };
  if (quick) shapes.resize(6);
  for (const Shape& S : shapes) {
    HostLayer h = make_layer(2, 4, S.n, S.k, S.had_in, S.had_out, S.bias);
    DevLayer D(h);
    std::vector<double> Wd[3];  // dense weight rounded to f16 / bf16
    {
      std::vector<double> W = dense_weight(h);
      for (int32_t dt : {LATTQ_F16, LATTQ_BF16}) {
        Wd[dt].resize(W.size());
        parallel_for((int64_t)W.size() / S.k, [&](int64_t r) {
          for (int64_t j = 0; j < S.k; ++j) Wd[dt][r * S.k + j] = round_to(dt, W[r * S.k + j]);
        });
      }
    }
    bool big = S.n * S.k > 4000000;
    std::vector<int64_t> ms;
    if (big) ms = {1, 7, 16, 33};
    else if (quick) ms = {1, 2, 5, 8, 9, 17, 33};
    else for (int64_t m = 1; m <= 33; ++m) ms.push_back(m);
    if (!big && !quick) ms.push_back(129);
    cudaStream_t stream;
    CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    for (int64_t m : ms) {
      std::vector<double> x0(m * S.k);
      for (auto& v : x0) v = randn();
      for (int64_t j = 0; j < S.k; j += 97) x0[j] *= 50.0;  // outliers in token 0
      double worst[3][10] = {};
      for (int32_t dt : {LATTQ_F32, LATTQ_F16, LATTQ_BF16}) {
        std::vector<double> x(x0.size());
        for (size_t i = 0; i < x.size(); ++i) x[i] = round_to(dt, x0[i]);
        std::vector<double> ref = oracle_forward(h, x, m);
        // the same layer computed densely in dtype: W and x in dtype, fp32-style accumulation, output rounded
        double dense_err = 0;
        if (dt != LATTQ_F32) {
          std::vector<double> yd(m * S.n);
          parallel_for(S.n, [&](int64_t r) {
            const double* w = &Wd[dt][r * S.k];
            for (int64_t t = 0; t < m; ++t) {
              double acc = 0;
              for (int64_t j = 0; j < S.k; ++j) acc += w[j] * x[t * S.k + j];
              yd[t * S.n + r] = round_to(dt, acc + (S.bias ? (double)h.bias[r] : 0.0));
            }
          });
          dense_err = rel_err(yd, ref);
        }
        for (int32_t var : {LATTQ_VARIANT_REFERENCE, LATTQ_VARIANT_IMMA, LATTQ_VARIANT_IMMA_WIDE, LATTQ_VARIANT_AUTO,
                            LATTQ_VARIANT_FUSED_GEMV, LATTQ_VARIANT_TILED_GEMM, LATTQ_VARIANT_GEMV,
                            LATTQ_VARIANT_WGMMA, LATTQ_VARIANT_GEMV_PDL, LATTQ_VARIANT_WGMMA_F16}) {
          std::vector<double> y;
          if (!variant_serves(var, h.d, dt)) {
            lattq_status st = LATTQ_OK;
            bool ran = run_forward(D, D.L, x, dt, m, var, y, stream, &st);
            CHECK(!ran && st == LATTQ_ERR_UNSUPPORTED, "%s %s n=%lld k=%lld had_in=%d had_out=%d must be UNSUPPORTED, got %d",
                  var_name(var), dt_name(dt), (long long)S.n, (long long)S.k, S.had_in, S.had_out, (int)st);
            continue;
          }
          bool ok = run_forward(D, D.L, x, dt, m, var, y, stream);
          CHECK(ok, "forward %s %s n=%lld k=%lld m=%lld failed", var_name(var), dt_name(dt), (long long)S.n,
                (long long)S.k, (long long)m);
          if (!ok) continue;
          bool finite = true;
          for (double v : y) finite = finite && std::isfinite(v);
          CHECK(finite, "forward %s %s n=%lld k=%lld m=%lld: non-finite output (unwritten?)", var_name(var),
                dt_name(dt), (long long)S.n, (long long)S.k, (long long)m);
          double e = rel_err(y, ref);
          double tol = dt == LATTQ_F32 ? 1e-5 : 2.0 * dense_err;
          CHECK(e <= tol, "forward %s %s n=%lld k=%lld m=%lld: rel err %.3g > tol %.3g", var_name(var), dt_name(dt),
                (long long)S.n, (long long)S.k, (long long)m, e, tol);
          worst[dt][var] = std::max(worst[dt][var], dt == LATTQ_F32 ? e : e / dense_err);
        }
        if (m == ms.back() || m == 1) {
          std::printf("  n=%-6lld k=%-6lld m=%-4lld %-4s dense-in-dtype err %.3g | ", (long long)S.n, (long long)S.k,
                      (long long)m, dt_name(dt), dense_err);
          for (int v = 0; v < 10; ++v)
            std::printf("%s %.3g%s  ", var_name(v), worst[dt][v], dt == LATTQ_F32 ? "" : "x");
          std::printf("\n");
        }
      }
    }
    // CANONICAL codes through the reference (and AUTO) path
    {
      int64_t m = 3;
      std::vector<double> x(m * S.k);
      for (auto& v : x) v = randn();
      std::vector<double> ref = oracle_forward(h, x, m), y;
      for (int32_t var : {LATTQ_VARIANT_REFERENCE, LATTQ_VARIANT_AUTO}) {
        bool ok = run_forward(D, D.Lc, x, LATTQ_F32, m, var, y, stream);
        CHECK(ok && rel_err(y, ref) <= 1e-5, "canonical forward %s rel err %.3g", var_name(var), ok ? rel_err(y, ref) : -1.0);
      }
    }
    CUDA_OK(cudaStreamDestroy(stream));
  }
  std::printf("forward: shapes, m, dtypes, variants checked\n");
}

// Output rows [r0, r0 + len) that the output Hadamard keeps among themselves (r0 and len multiples of had_out).
struct RowBlock {
  int64_t r0, len;
};

// The float64 oracle (oracle_forward's math) on some output blocks only: y[t][i] over the blocks' rows i in order.
// It costs rows x k x m instead of n x k x m, so the shapes can be checked at m = 2048.
std::vector<double> oracle_rows(const HostLayer& L, const std::vector<double>& x, int64_t m,
                                const std::vector<RowBlock>& blocks, int64_t rows) {
  const int64_t k = L.d.k, R = k * L.d.bits / 8;
  std::vector<double> v, c;
  oracle_fold(L, x, m, v, c);
  std::vector<uint8_t> z(rows * k);  // the blocks' code values, one byte each (small enough to stay in cache)
  std::vector<int64_t> row(rows);
  for (int64_t i = 0, b = 0; b < (int64_t)blocks.size(); ++b)
    for (int64_t q = 0; q < blocks[b].len; ++q, ++i) row[i] = blocks[b].r0 + q;
  parallel_for(rows, [&](int64_t i) {
    for (int64_t j = 0; j < k; ++j) z[i * k + j] = (uint8_t)field(L.canon, R, L.d.bits, row[i], j);
  });
  std::vector<double> y(m * rows);
  parallel_for(m, [&](int64_t t) {  // one token's v at a time (k doubles) against every sampled row
    const double* vv = &v[t * k];
    double* yt = &y[t * rows];
    for (int64_t i = 0; i < rows; ++i) {
      const uint8_t* zi = &z[i * k];
      double acc = 0;
      for (int64_t j = 0; j < k; ++j) acc += zi[j] * vv[j];
      yt[i] = acc + c[t];
    }
    for (int64_t off = 0, b = 0; b < (int64_t)blocks.size(); off += blocks[b].len, ++b)
      fwht64(yt + off, blocks[b].len, L.d.had_out);
    for (int64_t i = 0; i < rows; ++i) yt[i] = (double)L.sv[row[i]] * yt[i] + (L.has_bias ? (double)L.bias[row[i]] : 0.0);
  });
  return y;
}

// The same rows computed densely in dt, as torch would with W and x in dt (exact accumulation, output rounded to dt):
// the effective weight's rows (dense_weight's math on the blocks), rounded to dt.
std::vector<double> dense_rows(const HostLayer& L, const std::vector<double>& x, int64_t m, int32_t dt,
                               const std::vector<RowBlock>& blocks, int64_t rows) {
  const int64_t k = L.d.k;
  std::vector<double> W(rows * k);
  std::vector<int64_t> row(rows);
  for (int64_t i = 0, b = 0; b < (int64_t)blocks.size(); ++b)
    for (int64_t q = 0; q < blocks[b].len; ++q, ++i) row[i] = blocks[b].r0 + q;
  parallel_for(rows, [&](int64_t i) { what_hin_row(L, row[i], &W[i * k]); });
  for (int64_t off = 0, b = 0; b < (int64_t)blocks.size(); off += blocks[b].len, ++b)
    if (L.d.had_out > 1)
      parallel_for(k, [&](int64_t j) {
        std::vector<double> col(blocks[b].len);
        for (int64_t q = 0; q < blocks[b].len; ++q) col[q] = W[(off + q) * k + j];
        fwht64(col.data(), blocks[b].len, L.d.had_out);
        for (int64_t q = 0; q < blocks[b].len; ++q) W[(off + q) * k + j] = col[q];
      });
  parallel_for(rows, [&](int64_t i) {
    for (int64_t j = 0; j < k; ++j) W[i * k + j] = round_to(dt, W[i * k + j] * (double)L.sv[row[i]] * (double)L.su[j]);
  });
  std::vector<double> y(m * rows);
  parallel_for(m, [&](int64_t t) {
    const double* xt = &x[t * k];
    for (int64_t i = 0; i < rows; ++i) {
      const double* w = &W[i * k];
      double acc = 0;
      for (int64_t j = 0; j < k; ++j) acc += w[j] * xt[j];
      y[t * rows + i] = round_to(dt, acc + (L.has_bias ? (double)L.bias[row[i]] : 0.0));
    }
  });
  return y;
}

// The correctness protocol at full size: its benchmark shapes and awkward ones, batches 1 .. 2048 with the odd
// sizes it names, f16 and bf16, every variant (a variant that does not serve a dtype or layer must refuse it with
// LATTQ_ERR_UNSUPPORTED) plus the dispatcher's pick. Error against the float64 oracle at most 2x the error of the same
// layer computed densely in the dtype, both over sampled output blocks: the first and the last block and two random
// ones (all of them in small layers); every output must be written and finite (run_forward poisons y with NaN).
void test_batches(bool quick) {
  std::vector<Shape> shapes = {
      {4096, 4096, 128, 128, false},  {11008, 4096, 128, 128, true},  {4096, 11008, 128, 128, false},
      {14336, 4096, 128, 128, false}, {4096, 14336, 128, 128, true},  {28672, 8192, 128, 128, false},
      {8192, 28672, 128, 128, true},  {136, 1088, 64, 8, true},       {24, 40, 8, 8, false},
      {200, 2048, 2048, 8, true},
  };
  std::vector<int64_t> ms = {1, 2, 3, 7, 9, 16, 17, 33, 64, 127, 129, 512, 2048};
  if (quick) {
    shapes = {{4096, 4096, 128, 128, false}, {136, 1088, 64, 8, true}};
    ms = {1, 17, 129};
  }
  const int32_t vars[] = {LATTQ_VARIANT_AUTO,      LATTQ_VARIANT_REFERENCE,  LATTQ_VARIANT_IMMA,
                          LATTQ_VARIANT_IMMA_WIDE, LATTQ_VARIANT_FUSED_GEMV, LATTQ_VARIANT_TILED_GEMM,
                          LATTQ_VARIANT_GEMV,      LATTQ_VARIANT_WGMMA,      LATTQ_VARIANT_GEMV_PDL,
                          LATTQ_VARIANT_WGMMA_F16};
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (const Shape& S : shapes) {
    const auto t0 = std::chrono::steady_clock::now();
    HostLayer h = make_layer(2, 4, S.n, S.k, S.had_in, S.had_out, S.bias);
    DevLayer D(h);
    const int64_t B = std::max<int64_t>(S.had_out, 64), nb = (S.n + B - 1) / B;
    double worst[10] = {};  // largest error / dense-in-dtype error per variant over m and dtypes
    for (int64_t m : ms) {
      std::vector<int64_t> pick;
      if (nb <= 4) {
        for (int64_t b = 0; b < nb; ++b) pick.push_back(b);
      } else {
        pick = {0, nb - 1};
        while ((int64_t)pick.size() < 4) {
          const int64_t b = randi(1, nb - 2);
          if (std::find(pick.begin(), pick.end(), b) == pick.end()) pick.push_back(b);
        }
        std::sort(pick.begin(), pick.end());
      }
      std::vector<RowBlock> blocks;
      int64_t rows = 0;
      for (int64_t b : pick) {
        blocks.push_back({b * B, std::min(B, S.n - b * B)});
        rows += blocks.back().len;
      }
      std::vector<double> x0(m * S.k);
      for (auto& v : x0) v = randn();
      for (int64_t j = 0; j < S.k; j += 97) x0[j] *= 50.0;  // outliers in token 0
      for (int32_t dt : {LATTQ_F16, LATTQ_BF16}) {
        std::vector<double> x(x0.size());
        for (size_t i = 0; i < x.size(); ++i) x[i] = round_to(dt, x0[i]);
        const std::vector<double> ref = oracle_rows(h, x, m, blocks, rows);
        const double dense_err = rel_err(dense_rows(h, x, m, dt, blocks, rows), ref);
        for (int32_t var : vars) {
          std::vector<double> y;
          if (!variant_serves(var, h.d, dt)) {
            lattq_status st = LATTQ_OK;
            const bool ran = run_forward(D, D.L, x, dt, m, var, y, stream, &st);
            CHECK(!ran && st == LATTQ_ERR_UNSUPPORTED, "batches %s %s n=%lld k=%lld m=%lld must be UNSUPPORTED, got %d",
                  var_name(var), dt_name(dt), (long long)S.n, (long long)S.k, (long long)m, (int)st);
            continue;
          }
          const bool ok = run_forward(D, D.L, x, dt, m, var, y, stream);
          CHECK(ok, "batches %s %s n=%lld k=%lld m=%lld failed", var_name(var), dt_name(dt), (long long)S.n,
                (long long)S.k, (long long)m);
          if (!ok) continue;
          int64_t bad = 0;
          for (double v : y) bad += !std::isfinite(v);
          CHECK(bad == 0, "batches %s %s n=%lld k=%lld m=%lld: %lld outputs not finite (unwritten?)", var_name(var),
                dt_name(dt), (long long)S.n, (long long)S.k, (long long)m, (long long)bad);
          std::vector<double> ys(m * rows);
          for (int64_t t = 0; t < m; ++t)
            for (int64_t off = 0, b = 0; b < (int64_t)blocks.size(); off += blocks[b].len, ++b)
              for (int64_t q = 0; q < blocks[b].len; ++q) ys[t * rows + off + q] = y[t * S.n + blocks[b].r0 + q];
          const double e = rel_err(ys, ref);
          CHECK(e <= 2.0 * dense_err, "batches %s %s n=%lld k=%lld m=%lld: rel err %.3g > 2 x dense-in-dtype %.3g",
                var_name(var), dt_name(dt), (long long)S.n, (long long)S.k, (long long)m, e, dense_err);
          worst[var] = std::max(worst[var], e / dense_err);
        }
      }
    }
    std::printf("  batches n=%-6lld k=%-6lld m=%lld..%lld f16/bf16 (%.0f s), worst err / dense-in-dtype err: ", (long long)S.n,
                (long long)S.k, (long long)ms.front(), (long long)ms.back(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    for (int v = 0; v < 10; ++v) std::printf("%s %.3gx  ", var_name(v), worst[v]);
    std::printf("\n");
  }
  CUDA_OK(cudaStreamDestroy(stream));
  std::printf("batches: the issue's shapes and batches, f16/bf16, every variant checked\n");
}

// Experimental fused_gemv: every K-split count (cluster size 1 = the sm_80 code path, 2, 3, 8) against the
// float64 oracle, f32 (tol 1e-5) and bf16 (2x the dense-in-bf16 error is checked in test_forward; here the
// split count must not change the result beyond fp32 summation order: compared with split 1).
void test_fused_splits() {
  const Shape cases[] = {{128, 32768, 1024, 128, true}, {576, 1536, 64, 64, false}, {300, 9216, 256, 4, true}};
  for (const Shape& S : cases) {
    HostLayer h = make_layer(2, 4, S.n, S.k, S.had_in, S.had_out, S.bias);
    DevLayer D(h);
    for (int64_t m : {1, 3, 8, 11}) {
      std::vector<double> x(m * S.k);
      for (auto& v : x) v = randn();
      std::vector<double> ref = oracle_forward(h, x, m), y1;
      for (const char* cap : {"1", "2", "3", "8"}) {
        setenv("LATTQ_FUSED_MAX_SPLITS", cap, 1);
        std::vector<double> y;
        bool ok = run_forward(D, D.L, x, LATTQ_F32, m, LATTQ_VARIANT_FUSED_GEMV, y, nullptr);
        double e = ok ? rel_err(y, ref) : -1;
        CHECK(ok && e <= 1e-5, "fused_gemv f32 n=%lld k=%lld m=%lld max_splits=%s: rel err %.3g", (long long)S.n,
              (long long)S.k, (long long)m, cap, e);
        std::vector<double> xb(x.size());
        for (size_t i = 0; i < x.size(); ++i) xb[i] = round_to(LATTQ_BF16, x[i]);
        ok = run_forward(D, D.L, xb, LATTQ_BF16, m, LATTQ_VARIANT_FUSED_GEMV, y, nullptr);
        CHECK(ok, "fused_gemv bf16 max_splits=%s failed", cap);
        if (!ok) continue;
        if (cap[0] == '1') {
          y1 = y;
        } else {
          // different split counts sum the same fp32 partials in a different grouping: bf16 outputs may differ
          // by one rounding step, plus the fp32 reassociation error near cancellations (1e-5 of the largest output)
          double ymax = 0;
          for (double v : y1) ymax = std::max(ymax, std::fabs(v));
          bool close = true;
          for (size_t i = 0; i < y.size(); ++i)
            close = close && std::fabs(y[i] - y1[i]) <= std::ldexp(std::fabs(y1[i]), -7) + 1e-5 * ymax;
          CHECK(close, "fused_gemv bf16 n=%lld k=%lld m=%lld: max_splits=%s differs from max_splits=1 by more than one bf16 step",
                (long long)S.n, (long long)S.k, (long long)m, cap);
        }
      }
      unsetenv("LATTQ_FUSED_MAX_SPLITS");
    }
  }
  std::printf("forward: fused_gemv split counts checked\n");
}

// Other (bits, dim): reference and AUTO paths (fast variants must refuse cleanly).
void test_forward_generic() {
  struct C { int bits, dim; int64_t n, k; };
  const C cs[] = {{1, 1, 40, 64}, {1, 8, 33, 128}, {3, 1, 20, 64}, {3, 4, 24, 96}, {4, 2, 17, 64}, {2, 2, 30, 80}, {4, 4, 16, 32}, {2, 8, 9, 64}};
  for (const C& c : cs) {
    HostLayer h = make_layer(c.bits, c.dim, c.n, c.k, 16, 1, true);
    DevLayer D(h);
    int64_t m = randi(1, 9);
    std::vector<double> x(m * c.k);
    for (auto& v : x) v = randn();
    std::vector<double> ref = oracle_forward(h, x, m), y;
    for (int32_t var : {LATTQ_VARIANT_REFERENCE, LATTQ_VARIANT_AUTO}) {
      bool ok = run_forward(D, D.L, x, LATTQ_F32, m, var, y, nullptr);
      double e = ok ? rel_err(y, ref) : -1;
      CHECK(ok && e <= 1e-5, "generic bits=%d dim=%d %s rel err %.3g", c.bits, c.dim, var_name(var), e);
    }
    for (int32_t fv : {LATTQ_VARIANT_IMMA, LATTQ_VARIANT_FUSED_GEMV, LATTQ_VARIANT_TILED_GEMM, LATTQ_VARIANT_GEMV,
                       LATTQ_VARIANT_WGMMA, LATTQ_VARIANT_GEMV_PDL, LATTQ_VARIANT_WGMMA_F16}) {
      lattq_status st = LATTQ_OK;
      bool ok = run_forward(D, D.L, x, LATTQ_F32, m, fv, y, nullptr, &st);
      CHECK(!ok && st == LATTQ_ERR_UNSUPPORTED && std::strstr(lattq_last_error(), "bits"),
            "%s on bits=%d dim=%d should be UNSUPPORTED naming bits, got %d: %s", var_name(fv), c.bits, c.dim, (int)st,
            lattq_last_error());
    }
  }
  std::printf("forward: generic (bits, dim) via reference path checked\n");
}

// GEMV: every K-split count (cluster size 1 = the sm_80 code path, 2, 3, 8) and several digit chunks per CTA,
// bf16 and f16, each against the float64 oracle with the bound (2x the error of the same layer
// computed densely in the dtype).  Results of different split counts are not compared with each other: the
// fixed-point scale of v is per (token, chunk), and the chunks follow the split, so two split counts round v
// differently (each within the bound).
// One variant under several settings of its environment knobs ("VAR=value VAR2=value"), bf16 and f16, each
// against the float64 oracle with the bound (2x the error of the same layer computed densely in the
// dtype).  Settings are not compared with each other: they may change the rounding of v (GEMV's digit chunks
// follow the K split).
// outliers: token 0 gets every 97th input scaled by 50 (as test_forward), which stretches its fixed-point or
// power-of-two scale.
void check_env_settings(const char* what, int32_t variant, const std::vector<Shape>& cases,
                        const std::vector<int64_t>& ms, const std::vector<std::string>& settings,
                        bool outliers = false, bool with_f16 = true) {
  for (const Shape& S : cases) {
    HostLayer h = make_layer(2, 4, S.n, S.k, S.had_in, S.had_out, S.bias);
    DevLayer D(h);
    std::vector<double> W = dense_weight(h);
    for (int32_t dt : {LATTQ_BF16, LATTQ_F16}) {
      if (dt == LATTQ_F16 && !with_f16) continue;
      for (int64_t m : ms) {
        std::vector<double> x(m * S.k);
        for (auto& v : x) v = round_to(dt, randn());
        if (outliers)
          for (int64_t j = 0; j < S.k; j += 97) x[j] = round_to(dt, 50.0 * x[j]);
        std::vector<double> ref = oracle_forward(h, x, m), yd(m * S.n);
        parallel_for(S.n, [&](int64_t r) {
          for (int64_t t = 0; t < m; ++t) {
            double acc = 0;
            for (int64_t j = 0; j < S.k; ++j) acc += round_to(dt, W[r * S.k + j]) * x[t * S.k + j];
            yd[t * S.n + r] = round_to(dt, acc + (S.bias ? (double)h.bias[r] : 0.0));
          }
        });
        const double dense_err = rel_err(yd, ref);
        for (const std::string& set : settings) {
          std::vector<std::string> names;
          size_t i = 0;
          while (i < set.size()) {
            size_t j = set.find(' ', i);
            if (j == std::string::npos) j = set.size();
            const std::string kv = set.substr(i, j - i);
            const size_t eq = kv.find('=');
            names.push_back(kv.substr(0, eq));
            setenv(names.back().c_str(), kv.substr(eq + 1).c_str(), 1);
            i = j + 1;
          }
          std::vector<double> y;
          bool ok = run_forward(D, D.L, x, dt, m, variant, y, nullptr);
          const double e = ok ? rel_err(y, ref) : -1;
          CHECK(ok && e <= 2.0 * dense_err, "%s %s n=%lld k=%lld m=%lld [%s]: rel err %.3g > 2 x %.3g", what,
                dt_name(dt), (long long)S.n, (long long)S.k, (long long)m, set.c_str(), e, dense_err);
          for (const std::string& nm : names) unsetenv(nm.c_str());
        }
      }
    }
  }
  std::printf("forward: %s settings checked\n", what);
}

// GEMV: every K-split count (cluster size 1 = the sm_80 code path, 2, 3, 8) and several digit chunks per CTA.
void test_gemv_splits(bool quick) {
  std::vector<Shape> cases = {{576, 1536, 64, 64, false}, {256, 16384, 128, 128, true}, {300, 9216, 256, 4, true}};
  if (quick) cases.resize(2);  // the sanitizer runs (racecheck is slow); k = 16384 with 1 split = 2 .. 8 chunks per CTA
  std::vector<int64_t> ms = quick ? std::vector<int64_t>{1, 5} : std::vector<int64_t>{1, 2, 3, 5, 8, 12};
  for (int32_t var : {LATTQ_VARIANT_GEMV, LATTQ_VARIANT_GEMV_PDL})
    check_env_settings(var == LATTQ_VARIANT_GEMV ? "gemv split counts" : "gemv_pdl split counts", var, cases, ms,
                       {"LATTQ_GEMV_MAX_SPLITS=1", "LATTQ_GEMV_MAX_SPLITS=2", "LATTQ_GEMV_MAX_SPLITS=3",
                        "LATTQ_GEMV_MAX_SPLITS=8"});
  // GEMV_PDL: every trigger point of the prologue kernel (the main kernel waits for its completion either way)
  check_env_settings("gemv_pdl trigger points", LATTQ_VARIANT_GEMV_PDL, cases, ms,
                     {"LATTQ_GEMV_PDL_TRIGGER=0", "LATTQ_GEMV_PDL_TRIGGER=1 LATTQ_GEMV_MAX_SPLITS=2",
                      "LATTQ_GEMV_PDL_TRIGGER=2 LATTQ_GEMV_MAX_SPLITS=3", "LATTQ_GEMV_PDL_TRIGGER=3",
                      "LATTQ_GEMV_PDL_TRIGGER=4 LATTQ_GEMV_MAX_SPLITS=2"});
  // GEMV_PDL's split-K through the workspace (session 22; one-layer launches at m <= 4, LATTQ_GEMV_GRED=1 wherever it
  // may, =2 where its plan beats the cluster's; off by default) against the cluster (=0): accuracy at every split
  // count, then bit-equal results at the same split count
  // (both sum the partial tiles in split order; these layers' row groups fit in one wave either way, so both plans
  // pick the same count).  The 10240-row layer (80 row groups) cannot reduce 8 splits through the workspace
  // (80 x 8 > GRED_MAX_CTAS = 512) and takes the cluster there.
  const std::vector<int64_t> ms_g = quick ? std::vector<int64_t>{1, 4} : std::vector<int64_t>{1, 2, 3, 4};
  std::vector<Shape> gcases = cases;
  if (!quick) gcases.push_back({10240, 2048, 128, 128, false});
  check_env_settings("gemv_pdl split-K through the workspace", LATTQ_VARIANT_GEMV_PDL, gcases, ms_g,
                     {"LATTQ_GEMV_GRED=0", "LATTQ_GEMV_GRED=1 LATTQ_GEMV_MAX_SPLITS=2",
                      "LATTQ_GEMV_GRED=1 LATTQ_GEMV_MAX_SPLITS=3", "LATTQ_GEMV_GRED=1 LATTQ_GEMV_MAX_SPLITS=8",
                      "LATTQ_GEMV_GRED=0 LATTQ_GEMV_MAX_SPLITS=8", "LATTQ_GEMV_GRED=1", "LATTQ_GEMV_GRED=2"});
  for (const Shape& S : cases) {
    const HostLayer h = make_layer(2, 4, S.n, S.k, S.had_in, S.had_out, S.bias);
    DevLayer D(h);
    for (int64_t m : ms_g) {
      std::vector<double> x(m * S.k);
      for (auto& v : x) v = round_to(LATTQ_BF16, randn());
      for (const char* cap : {"2", "3", "8"}) {
        setenv("LATTQ_GEMV_MAX_SPLITS", cap, 1);
        std::vector<double> y[2];
        bool ok = true;
        for (int g = 0; g < 2; ++g) {
          setenv("LATTQ_GEMV_GRED", g ? "1" : "0", 1);
          ok = run_forward(D, D.L, x, LATTQ_BF16, m, LATTQ_VARIANT_GEMV_PDL, y[g], nullptr) && ok;
        }
        unsetenv("LATTQ_GEMV_GRED");
        unsetenv("LATTQ_GEMV_MAX_SPLITS");
        CHECK(ok && y[0] == y[1], "gemv_pdl n=%lld k=%lld m=%lld, at most %s splits: the workspace reduction differs "
              "from the cluster's", (long long)S.n, (long long)S.k, (long long)m, cap);
      }
    }
  }
  // GEMV_PDL from m = 5: both column widths (16 tokens, the default, and 4), short 16-token columns (m = 5, 8, 13)
  // and a full column plus a short one (m = 17, 31), the split counts the plans reach (1, 2, 3, 6, 8) and the trigger
  // points of the 16-token kernels
  const std::vector<int64_t> ms16 = quick ? std::vector<int64_t>{5, 16} : std::vector<int64_t>{5, 8, 13, 16, 17, 31};
  check_env_settings("gemv_pdl column widths", LATTQ_VARIANT_GEMV_PDL, cases, ms16,
                     {"LATTQ_GEMV_TOK=4", "LATTQ_GEMV_TOK=16", "LATTQ_GEMV_TOK=16 LATTQ_GEMV_MAX_SPLITS=1",
                      "LATTQ_GEMV_TOK=16 LATTQ_GEMV_MAX_SPLITS=2", "LATTQ_GEMV_TOK=16 LATTQ_GEMV_MAX_SPLITS=8",
                      "LATTQ_GEMV_TOK=16 LATTQ_GEMV_PDL_TRIGGER=1", "LATTQ_GEMV_TOK=16 LATTQ_GEMV_PDL_TRIGGER=2"});
  // the main loop's code-load schedules (session 20: the default refill batches and LATTQ_GEMV_SCHED=3, the sessions
  // 4-19 refill-after-use) with both column widths; k = 1600 ends in a partial quad (25 chunks of 16 bytes per row: the
  // k-tail zeroing of quad_mma), n = 200 in a partial row group
  std::vector<Shape> sched_cases = cases;
  sched_cases.push_back({200, 1600, 64, 8, true});
  const std::vector<int64_t> ms_sched = quick ? std::vector<int64_t>{1, 16} : std::vector<int64_t>{1, 3, 5, 12, 16};
  for (int32_t var : {LATTQ_VARIANT_GEMV, LATTQ_VARIANT_GEMV_PDL})
    check_env_settings(var == LATTQ_VARIANT_GEMV ? "gemv schedules" : "gemv_pdl schedules", var, sched_cases, ms_sched,
                       {"LATTQ_GEMV_SCHED=0", "LATTQ_GEMV_SCHED=3", "LATTQ_GEMV_SCHED=3 LATTQ_GEMV_MAX_SPLITS=3",
                        "LATTQ_GEMV_MAX_SPLITS=3", "LATTQ_GEMV_TOK=4", "LATTQ_GEMV_SCHED=3 LATTQ_GEMV_TOK=4"});
  // the workspace size does not depend on the column width (a size queried once serves any LATTQ_GEMV_TOK)
  for (const Shape& S : cases) {
    const HostLayer h = make_layer(2, 4, S.n, S.k, S.had_in, S.had_out, S.bias);
    for (int64_t m : ms16) {
      size_t sz[3] = {0, 0, 0};
      const char* toks[3] = {nullptr, "4", "16"};
      for (int i = 0; i < 3; ++i) {
        if (toks[i]) setenv("LATTQ_GEMV_TOK", toks[i], 1);
        CHECK(lattq_cuda_forward_workspace_size(&h.d, m, LATTQ_VARIANT_GEMV_PDL, &sz[i]) == LATTQ_OK,
              "gemv_pdl workspace size m=%lld: %s", (long long)m, lattq_last_error());
        unsetenv("LATTQ_GEMV_TOK");
      }
      CHECK(sz[0] == sz[1] && sz[0] == sz[2], "gemv_pdl workspace size n=%lld k=%lld m=%lld depends on LATTQ_GEMV_TOK: "
            "%zu / %zu / %zu", (long long)S.n, (long long)S.k, (long long)m, sz[0], sz[1], sz[2]);
    }
  }
}

// WGMMA: both cluster sizes (1; 2 = B multicast to the CTA pair, including an odd number of row groups, whose
// padding CTA computes nothing) with every token tile.
// WGMMA at m <= 32 on WGMMA_F16's frame (its own group, so that the sanitizers can run it alone)
void test_wgmma_wh(bool quick) {
  if (!wgmma_serves(LATTQ_BF16)) return;
  // WGMMA at m <= 32 (session 18): the integer image on WGMMA_F16's frame, f16 and bf16, a token with outliers; every
  // CTA shape it takes (16 / 32 tokens x 128 / 256 rows; 16 tokens at m > 16 gives two token columns), the layers
  // above plus k > 16 K (a partial 18th slice), stream-K off / 3 CTAs / one quad per CTA (stream-K segments that
  // start and end inside a slice: partial flushes), the prologue modes and unit sizes (1, 3, 16 warps; 2 CTAs walking
  // many units), and the session-5 kernel (LATTQ_WGMMA_WH=0)
  std::vector<Shape> icases = {{300, 2304, 64, 4, true}, {640, 1088, 64, 128, false}, {576, 2048, 2048, 8, true},
                               {512, 512, 128, 256, false}, {256, 4096, 1024, 128, false}};
  icases.push_back({130, 17600, 64, 2, false});
  if (quick) icases.resize(2);
  const std::vector<int64_t> ims = quick ? std::vector<int64_t>{3, 17} : std::vector<int64_t>{1, 5, 9, 16, 17, 31, 32};
  std::vector<std::string> isets = {""};
  for (const char* t : {"16x1", "16x2", "32x1", "32x2"}) isets.push_back(std::string("LATTQ_WGMMA_F16_TILE=") + t);
  for (const char* e : {"LATTQ_WGMMA_F16_SK=0", "LATTQ_WGMMA_F16_SK=3", "LATTQ_WGMMA_F16_SK=1000",
                        "LATTQ_WGMMA_F16_TILE=32x1 LATTQ_WGMMA_F16_SK=1000", "LATTQ_WGMMA_F16_PREP_BULK=0",
                        "LATTQ_WGMMA_F16_PREP_BULK=1", "LATTQ_WGMMA_F16_PREP_FAST=0", "LATTQ_WGMMA_F16_PREP_EARLY=0",
                        "LATTQ_WGMMA_F16_PREP_CTAS=3", "LATTQ_WGMMA_F16_PREP_CTAS=2 LATTQ_WGMMA_F16_PREP_PRE=0",
                        "LATTQ_WGMMA_F16_SLEEP_NS=0", "LATTQ_WGMMA_PREP_WARPS=1", "LATTQ_WGMMA_PREP_WARPS=3",
                        "LATTQ_WGMMA_PREP_WARPS=16", "LATTQ_WGMMA_PREP_WARPS=3 LATTQ_WGMMA_F16_PREP_CTAS=2",
                        "LATTQ_WGMMA_F16_PREQ=0", "LATTQ_WGMMA_F16_PREQ=1 LATTQ_WGMMA_F16_SK=1000",
                        "LATTQ_WGMMA_WH=0"})
    isets.push_back(e);
  check_env_settings("wgmma (m <= 32) CTA shapes", LATTQ_VARIANT_WGMMA, icases, ims, isets, true, true);
  // the default plan's split-K over 256-row tiles (session 19): 64 tiles x 2 CTAs on a 132-SM H100 (the layers above
  // take 128-row tiles, which give more CTAs there)
  if (!quick)
    check_env_settings("wgmma (m <= 32) split-K, 256-row tiles", LATTQ_VARIANT_WGMMA, {{16384, 2048, 128, 128, true}},
                       {9, 32}, {""}, true, true);
}

void test_wgmma_settings(bool quick) {
  if (!wgmma_serves(LATTQ_BF16)) return;
  std::vector<Shape> cases = {{300, 2304, 64, 4, true}, {1024, 4096, 128, 128, false}};
  if (quick) cases.resize(1);
  std::vector<int64_t> ms = quick ? std::vector<int64_t>{5, 70} : std::vector<int64_t>{1, 9, 33, 70, 129};
  std::vector<std::string> sets;
  for (const char* cl : {"1", "2"})
    for (const char* nt : {"8", "16", "32", "64"})
      sets.push_back(std::string("LATTQ_WGMMA_CLUSTER=") + cl + " LATTQ_WGMMA_NTOK=" + nt);
  check_env_settings("wgmma cluster / token tile", LATTQ_VARIANT_WGMMA, cases, ms, sets);
  // WGMMA_F16: every CTA shape (16 / 32 / 64 / 128 tokens x 128 / 256 rows), partial token tiles, partial 256-row groups
  // (300, 640 and 576 rows), partial quads and slices (k = 1088, 2304), the unfused transforms (had_in 2048,
  // had_out 256), had_in 1024 (every cross-lane Hadamard stage), a token with outliers (x50) next to ordinary ones,
  // the prologue without its bulk x staging and without its fast path
  std::vector<Shape> fcases = {{300, 2304, 64, 4, true}, {640, 1088, 64, 128, false}, {576, 2048, 2048, 8, true},
                               {512, 512, 128, 256, false}, {256, 4096, 1024, 128, false}};
  if (quick) fcases.resize(2);
  std::vector<int64_t> fms = quick ? std::vector<int64_t>{3, 70, 129} : std::vector<int64_t>{1, 9, 64, 65, 129, 200};
  std::vector<std::string> fsets;
  for (const char* t : {"16x1", "16x2", "32x1", "32x2", "64x1", "64x2", "128x1", "128x2"})
    fsets.push_back(std::string("LATTQ_WGMMA_F16_TILE=") + t);
  fsets.push_back("LATTQ_WGMMA_F16_PREP_BULK=0");  // the prologue's x from global, general path
  fsets.push_back("LATTQ_WGMMA_F16_PREP_BULK=1");  // x rows staged by cp.async.bulk (the default up to k = 16 K)
  fsets.push_back("LATTQ_WGMMA_F16_PREP_BULK=2");  // x rows read in place by the lean transform (default above)
  fsets.push_back("LATTQ_WGMMA_F16_PREP_FAST=0");  // the general input transform for every slice
  // x and SU of a warp's first slice of the next token loaded during this token's pass 2 (default), x only, neither
  fsets.push_back("LATTQ_WGMMA_F16_PREP_PRE=1");
  fsets.push_back("LATTQ_WGMMA_F16_PREP_PRE=0");
  // the first token's first-slice loads issued before the main kernel may launch (the default) or not; with x-only
  // next-token loads
  fsets.push_back("LATTQ_WGMMA_F16_PREP_EARLY=0");
  fsets.push_back("LATTQ_WGMMA_F16_PREP_EARLY=1 LATTQ_WGMMA_F16_PREP_PRE=1");
  // the main kernel's producer retrying its barrier waits without the suspend-time hint (the default sleeps)
  fsets.push_back("LATTQ_WGMMA_F16_SLEEP_NS=0");
  // the code ring's first quads loaded before the PDL wait: none, or one (the rest after it; the default: all)
  fsets.push_back("LATTQ_WGMMA_F16_PREQ=0");
  fsets.push_back("LATTQ_WGMMA_F16_PREQ=1 LATTQ_WGMMA_F16_SK=1000");
  // a grid of 2-3 prologue CTAs: many tokens per CTA (as at prefill sizes), so the next-token loads and the staged
  // rows' double buffer run
  fsets.push_back("LATTQ_WGMMA_F16_PREP_CTAS=3");
  fsets.push_back("LATTQ_WGMMA_F16_PREP_CTAS=3 LATTQ_WGMMA_F16_PREP_PRE=1");
  fsets.push_back("LATTQ_WGMMA_F16_PREP_CTAS=3 LATTQ_WGMMA_F16_PREP_EARLY=0");
  fsets.push_back("LATTQ_WGMMA_F16_PREP_CTAS=2 LATTQ_WGMMA_F16_PREP_EARLY=1 LATTQ_WGMMA_F16_PREP_PRE=0");
  fsets.push_back("LATTQ_WGMMA_F16_PREP_CTAS=3 LATTQ_WGMMA_F16_PREP_FAST=0");
  fsets.push_back("LATTQ_WGMMA_F16_PREP_CTAS=2 LATTQ_WGMMA_F16_PREP_PRE=0");
  fsets.push_back("LATTQ_WGMMA_F16_PREP_CTAS=3 LATTQ_WGMMA_F16_PREP_BULK=1");
  fsets.push_back("LATTQ_WGMMA_F16_PREP_CTAS=2 LATTQ_WGMMA_F16_PREP_BULK=0");
  // stream-K at m <= 64 (the default there where it has more CTAs than row groups; 64 x 128 CTAs on these small
  // layers): off, 3 CTAs (uneven ranges, CTAs spanning two row groups), one quad per CTA (up to 8 tails per row
  // group), and the same with 64 x 256 CTAs
  fsets.push_back("LATTQ_WGMMA_F16_SK=0");
  fsets.push_back("LATTQ_WGMMA_F16_SK=3");
  fsets.push_back("LATTQ_WGMMA_F16_SK=1000");
  fsets.push_back("LATTQ_WGMMA_F16_TILE=64x2 LATTQ_WGMMA_F16_SK=3");
  fsets.push_back("LATTQ_WGMMA_F16_TILE=64x2 LATTQ_WGMMA_F16_SK=1000");
  // stream-K over several token tiles (m > 64; planned for the last, partial wave of large layers): every tile
  // stream-K with as many CTAs as there are units (up to one quad each, many tails per tile); one whole tile first,
  // then 3 CTAs (segments in two different token tiles); both with the 128 x 256 and 64 x 128 CTA shapes
  fsets.push_back("LATTQ_WGMMA_F16_SK_DP=0");
  fsets.push_back("LATTQ_WGMMA_F16_SK_DP=1 LATTQ_WGMMA_F16_SK=3");
  fsets.push_back("LATTQ_WGMMA_F16_TILE=128x2 LATTQ_WGMMA_F16_SK_DP=1 LATTQ_WGMMA_F16_SK=3");
  fsets.push_back("LATTQ_WGMMA_F16_TILE=64x1 LATTQ_WGMMA_F16_SK_DP=2");
  check_env_settings("wgmma_f16 CTA shapes", LATTQ_VARIANT_WGMMA_F16, fcases, fms, fsets, true, false);
  // k > 16 K (18 slices, the last partial, on 16 prologue warps): x read in place (default) or staged; the v of a
  // warp's first slice kept in shared memory (default) or folded again; stream-K spreads the two 128-row groups over 69 CTAs (34-35 per row group)
  const std::vector<Shape> kcases = {{130, 17600, 64, 2, false}};
  const std::vector<int64_t> kms = quick ? std::vector<int64_t>{3} : std::vector<int64_t>{1, 64, 129};
  check_env_settings("wgmma_f16 k > 16K", LATTQ_VARIANT_WGMMA_F16, kcases, kms,
                     {"LATTQ_WGMMA_F16_PREP_KEEP=1", "LATTQ_WGMMA_F16_PREP_KEEP=0", "LATTQ_WGMMA_F16_PREP_FAST=0",
                      "LATTQ_WGMMA_F16_PREP_PRE=0", "LATTQ_WGMMA_F16_PREP_EARLY=0", "LATTQ_WGMMA_F16_PREP_CTAS=2",
                      "LATTQ_WGMMA_F16_PREP_CTAS=2 LATTQ_WGMMA_F16_PREP_BULK=1",
                      "LATTQ_WGMMA_F16_PREP_BULK=1", "LATTQ_WGMMA_F16_PREP_BULK=1 LATTQ_WGMMA_F16_PREP_KEEP=0",
                      "LATTQ_WGMMA_F16_PREP_KEEP=0 LATTQ_WGMMA_F16_PREP_BULK=0", "LATTQ_WGMMA_F16_SK=0",
                      "LATTQ_WGMMA_F16_SK_DP=0"},
                     false, false);
  // each token's power-of-two scale S_t: SU over four decades and tokens far from the ordinary range, each token
  // against the float64 oracle with the bound on its own (a whole-batch error would hide one token): zeros,
  // x 1e15, x 1e-15, a single input at the smallest |SU| and at the largest, outliers; the general transform and a
  // two-CTA prologue grid (several tokens per CTA) too
  {
    HostLayer h = make_layer(2, 4, 256, 4096, 1024, 128, true);
    for (auto& v : h.su) v = (float)((randi(0, 1) ? 1 : -1) * std::pow(10.0, randu(-2.0, 2.0)));
    DevLayer D(h);
    const std::vector<double> W = dense_weight(h);
    const int64_t m = 9, n = 256, k = 4096;
    int64_t jmin = 0, jmax = 0;
    for (int64_t j = 1; j < k; ++j) {
      if (std::fabs(h.su[j]) < std::fabs(h.su[jmin])) jmin = j;
      if (std::fabs(h.su[j]) > std::fabs(h.su[jmax])) jmax = j;
    }
    std::vector<double> x(m * k, 0.0);
    for (int64_t t = 0; t < m; ++t) {
      if (t == 1 || t == 4 || t == 5) continue;
      const double sc = t == 2 ? 1e15 : t == 3 ? 1e-15 : 1.0;
      for (int64_t j = 0; j < k; ++j)
        x[t * k + j] = round_to(LATTQ_BF16, sc * randn() * (t == 6 && j % 97 == 0 ? 50.0 : 1.0));
    }
    x[4 * k + jmin] = 1.0;
    x[5 * k + jmax] = 1.0;
    const std::vector<double> ref = oracle_forward(h, x, m);
    std::vector<double> yd(m * n);
    for (int64_t t = 0; t < m; ++t)
      for (int64_t r = 0; r < n; ++r) {
        double acc = 0;
        for (int64_t j = 0; j < k; ++j) acc += round_to(LATTQ_BF16, W[r * k + j]) * x[t * k + j];
        yd[t * n + r] = round_to(LATTQ_BF16, acc + h.bias[r]);
      }
    for (const char* set : {"", "LATTQ_WGMMA_F16_PREP_FAST=0", "LATTQ_WGMMA_F16_PREP_CTAS=2",
                            "LATTQ_WGMMA_F16_PREP_EARLY=0"}) {
      const char* eq = std::strchr(set, '=');
      const std::string name = eq ? std::string(set, eq - set) : std::string();
      if (eq) setenv(name.c_str(), eq + 1, 1);
      for (int64_t mm : {m, (int64_t)3}) {  // all nine tokens, and the first three alone
        std::vector<double> y, xs(x.begin(), x.begin() + mm * k);
        const bool ok = run_forward(D, D.L, xs, LATTQ_BF16, mm, LATTQ_VARIANT_WGMMA_F16, y, nullptr);
        CHECK(ok, "wgmma_f16 scales [%s] m=%lld: %s", set, (long long)mm, lattq_last_error());
        for (int64_t t = 0; ok && t < mm; ++t) {
          const std::vector<double> yt(y.begin() + t * n, y.begin() + (t + 1) * n),
              rt(ref.begin() + t * n, ref.begin() + (t + 1) * n), dt(yd.begin() + t * n, yd.begin() + (t + 1) * n);
          const double e = rel_err(yt, rt), de = rel_err(dt, rt);
          CHECK(e <= 2.0 * de, "wgmma_f16 scales [%s] m=%lld token %lld: rel err %.3g > 2 x %.3g", set, (long long)mm,
                (long long)t, e, de);
        }
      }
      if (eq) unsetenv(name.c_str());
    }
    std::printf("forward: wgmma_f16 token scales checked\n");
  }
  // stream-K's sums are in a fixed order: two runs give the same bits
  {
    const HostLayer h = make_layer(2, 4, 300, 2304, 64, 4, true);
    DevLayer D(h);
    const int64_t m = 9;
    std::vector<double> x(m * 2304), y1, y2;
    for (auto& v : x) v = round_to(LATTQ_BF16, randn());
    const bool ok = run_forward(D, D.L, x, LATTQ_BF16, m, LATTQ_VARIANT_WGMMA_F16, y1, nullptr) &&
                    run_forward(D, D.L, x, LATTQ_BF16, m, LATTQ_VARIANT_WGMMA_F16, y2, nullptr);
    CHECK(ok && y1 == y2, "wgmma_f16 stream-K: two runs differ (or failed: %s)", lattq_last_error());
  }
  {  // the same over several token tiles (m > 64, every tile stream-K)
    const HostLayer h = make_layer(2, 4, 300, 2304, 64, 4, true);
    DevLayer D(h);
    const int64_t m = 200;
    std::vector<double> x(m * 2304), y1, y2;
    for (auto& v : x) v = round_to(LATTQ_BF16, randn());
    setenv("LATTQ_WGMMA_F16_SK_DP", "0", 1);
    const bool ok = run_forward(D, D.L, x, LATTQ_BF16, m, LATTQ_VARIANT_WGMMA_F16, y1, nullptr) &&
                    run_forward(D, D.L, x, LATTQ_BF16, m, LATTQ_VARIANT_WGMMA_F16, y2, nullptr);
    unsetenv("LATTQ_WGMMA_F16_SK_DP");
    CHECK(ok && y1 == y2, "wgmma_f16 stream-K, m = 200: two runs differ (or failed: %s)", lattq_last_error());
  }
}

void test_errors() {
  HostLayer h = make_layer(2, 4, 64, 256, 64, 64, false);
  DevLayer D(h);
  int64_t m = 2;
  size_t wsb = 0;
  CHECK(lattq_cuda_forward_workspace_size(&h.d, m, 0, &wsb) == LATTQ_OK, "ws size");
  DevBuf<uint8_t> ws(wsb + 512), x(m * 256 * 4 + 64), y(m * 64 * 4 + 64);
  std::vector<float> hx(m * 256, 1.0f);
  auto expect = [&](lattq_status got, lattq_status want, const char* needle, const char* what) {
    CHECK(got == want, "%s: status %d, expected %d (%s)", what, (int)got, (int)want, lattq_last_error());
    CHECK(std::strstr(lattq_last_error(), needle) != nullptr, "%s: message '%s' should mention '%s'", what,
          lattq_last_error(), needle);
  };
  expect(lattq_cuda_forward(&D.L, hx.data(), LATTQ_F32, m, y.p, ws.p, wsb, 0, nullptr), LATTQ_ERR_DEVICE, "'x'", "host x");
  expect(lattq_cuda_forward(&D.L, x.p + 4, LATTQ_F32, m, y.p, ws.p, wsb, 0, nullptr), LATTQ_ERR_ALIGNMENT, "'x'", "misaligned x");
  expect(lattq_cuda_forward(&D.L, x.p, LATTQ_F32, m, y.p + 2, ws.p, wsb, 0, nullptr), LATTQ_ERR_ALIGNMENT, "'y'", "misaligned y");
  expect(lattq_cuda_forward(&D.L, x.p, LATTQ_F32, m, y.p, ws.p + 16, wsb, 0, nullptr), LATTQ_ERR_ALIGNMENT, "'workspace'", "misaligned ws");
  expect(lattq_cuda_forward(&D.L, x.p, LATTQ_F32, m, y.p, ws.p, 16, 0, nullptr), LATTQ_ERR_WORKSPACE, "workspace", "small ws");
  expect(lattq_cuda_forward(&D.L, x.p, LATTQ_F32, m, y.p, nullptr, 0, 0, nullptr), LATTQ_ERR_WORKSPACE, "workspace", "null ws");
  expect(lattq_cuda_forward(&D.L, x.p, 7, m, y.p, ws.p, wsb, 0, nullptr), LATTQ_ERR_DTYPE, "dtype", "bad dtype");
  expect(lattq_cuda_forward(&D.L, x.p, LATTQ_F32, -1, y.p, ws.p, wsb, 0, nullptr), LATTQ_ERR_SHAPE, "'m'", "negative m");
  expect(lattq_cuda_forward(&D.L, x.p, LATTQ_F32, m, y.p, ws.p, wsb, 99, nullptr), LATTQ_ERR_INVALID_ARGUMENT, "variant", "bad variant");
  expect(lattq_cuda_forward(&D.L, x.p, LATTQ_F32, m, y.p, ws.p, wsb, LATTQ_VARIANT_WGMMA_F16 + 1, nullptr),
         LATTQ_ERR_INVALID_ARGUMENT, "variant", "first id past the last variant");
  expect(lattq_cuda_forward(&D.Lc, x.p, LATTQ_F32, m, y.p, ws.p, wsb, LATTQ_VARIANT_IMMA, nullptr), LATTQ_ERR_LAYOUT, "layout", "canonical imma");
  expect(lattq_cuda_forward(&D.Lc, x.p, LATTQ_F32, m, y.p, ws.p, wsb, LATTQ_VARIANT_FUSED_GEMV, nullptr), LATTQ_ERR_LAYOUT, "layout",
         "canonical fused_gemv");
  expect(lattq_cuda_forward(&D.Lc, x.p, LATTQ_BF16, m, y.p, ws.p, wsb, LATTQ_VARIANT_GEMV, nullptr), LATTQ_ERR_LAYOUT, "layout",
         "canonical gemv");
  expect(lattq_cuda_forward(&D.L, x.p, LATTQ_F32, m, y.p, ws.p, wsb, LATTQ_VARIANT_GEMV, nullptr), LATTQ_ERR_UNSUPPORTED, "f16 or bf16",
         "gemv f32");
  if (wgmma_serves(LATTQ_BF16))  // WGMMA_F16 refuses f16 (and f32) activations, naming bf16
    expect(lattq_cuda_forward(&D.L, x.p, LATTQ_F16, m, y.p, ws.p, wsb, LATTQ_VARIANT_WGMMA_F16, nullptr),
           LATTQ_ERR_UNSUPPORTED, "bf16", "wgmma_f16 f16");
  {  // gemv needs no workspace at all
    size_t gb = 1;
    CHECK(lattq_cuda_forward_workspace_size(&h.d, m, LATTQ_VARIANT_GEMV, &gb) == LATTQ_OK && gb == 0,
          "gemv workspace: %zu bytes, expected 0", gb);
    CHECK(lattq_cuda_forward(&D.L, x.p, LATTQ_BF16, m, y.p, nullptr, 0, LATTQ_VARIANT_GEMV, nullptr) == LATTQ_OK,
          "gemv with workspace NULL: %s", lattq_last_error());
    CUDA_OK(cudaDeviceSynchronize());
  }
  {  // gemv_pdl keeps the digits of v in the workspace: it needs one and refuses a missing or short one
    size_t pb = 0;
    CHECK(lattq_cuda_forward_workspace_size(&h.d, m, LATTQ_VARIANT_GEMV_PDL, &pb) == LATTQ_OK && pb > 0,
          "gemv_pdl workspace: %zu bytes, expected > 0", pb);
    size_t ab = 0;
    CHECK(lattq_cuda_forward_workspace_size(&h.d, m, LATTQ_VARIANT_AUTO, &ab) == LATTQ_OK && ab >= pb,
          "AUTO workspace %zu bytes must cover gemv_pdl's %zu", ab, pb);
    expect(lattq_cuda_forward(&D.L, x.p, LATTQ_BF16, m, y.p, nullptr, 0, LATTQ_VARIANT_GEMV_PDL, nullptr),
           LATTQ_ERR_WORKSPACE, "workspace", "gemv_pdl null ws");
    expect(lattq_cuda_forward(&D.L, x.p, LATTQ_BF16, m, y.p, ws.p, pb - 256, LATTQ_VARIANT_GEMV_PDL, nullptr),
           LATTQ_ERR_WORKSPACE, "workspace", "gemv_pdl short ws");
    expect(lattq_cuda_forward(&D.L, x.p, LATTQ_F32, m, y.p, ws.p, wsb, LATTQ_VARIANT_GEMV_PDL, nullptr),
           LATTQ_ERR_UNSUPPORTED, "f16 or bf16", "gemv_pdl f32");
  }
  {  // fused_gemv with fused transforms (had_in <= 1024, had_out <= 128) needs no workspace at all
    size_t fb = 1;
    CHECK(lattq_cuda_forward_workspace_size(&h.d, m, LATTQ_VARIANT_FUSED_GEMV, &fb) == LATTQ_OK && fb == 0,
          "fused_gemv workspace for fused transforms: %zu bytes, expected 0", fb);
    CHECK(lattq_cuda_forward(&D.L, x.p, LATTQ_F32, m, y.p, nullptr, 0, LATTQ_VARIANT_FUSED_GEMV, nullptr) == LATTQ_OK,
          "fused_gemv with workspace NULL (0 bytes needed): %s", lattq_last_error());
    CUDA_OK(cudaDeviceSynchronize());
  }
  lattq_layer bad = D.L;
  bad.desc.bits = 5;
  CHECK(lattq_cuda_forward(&bad, x.p, LATTQ_F32, m, y.p, ws.p, wsb, 0, nullptr) != LATTQ_OK &&
            std::strstr(lattq_last_error(), "bits"), "bad bits: %s", lattq_last_error());
  bad = D.L;
  bad.desc.had_in = 48;
  CHECK(lattq_cuda_forward(&bad, x.p, LATTQ_F32, m, y.p, ws.p, wsb, 0, nullptr) != LATTQ_OK &&
            std::strstr(lattq_last_error(), "had_in"), "bad had_in: %s", lattq_last_error());
  bad = D.L;
  bad.layout = 9;
  expect(lattq_cuda_forward(&bad, x.p, LATTQ_F32, m, y.p, ws.p, wsb, 0, nullptr), LATTQ_ERR_LAYOUT, "layout", "bad layout");
  bad = D.L;
  bad.su = h.su.data();
  expect(lattq_cuda_forward(&bad, x.p, LATTQ_F32, m, y.p, ws.p, wsb, 0, nullptr), LATTQ_ERR_DEVICE, "su", "host su");
  bad = D.L;
  bad.codes = D.codes.p + 8;
  expect(lattq_cuda_forward(&bad, x.p, LATTQ_F32, m, y.p, ws.p, wsb, 0, nullptr), LATTQ_ERR_ALIGNMENT, "codes", "misaligned codes");
  bad = D.L;
  bad.A = nullptr;
  expect(lattq_cuda_forward(&bad, x.p, LATTQ_F32, m, y.p, ws.p, wsb, 0, nullptr), LATTQ_ERR_INVALID_ARGUMENT, "layer.A", "null A");
  expect(lattq_cuda_forward(nullptr, x.p, LATTQ_F32, m, y.p, ws.p, wsb, 0, nullptr), LATTQ_ERR_INVALID_ARGUMENT, "layer", "null layer");
  std::vector<float> hout(64 * 256);
  expect(lattq_cuda_decode(&D.L, hout.data(), nullptr), LATTQ_ERR_DEVICE, "'out'", "decode host out");
  expect(lattq_cuda_fwht(x.p, LATTQ_F32, 1, 96, 64, nullptr), LATTQ_ERR_SHAPE, "block", "fwht block not dividing");
  expect(lattq_cuda_fwht(x.p, LATTQ_F32, 1, 96, 3, nullptr), LATTQ_ERR_SHAPE, "power of two", "fwht block not pow2");
  expect(lattq_cuda_fwht(hx.data(), LATTQ_F32, 1, 64, 64, nullptr), LATTQ_ERR_DEVICE, "'data'", "fwht host data");
  expect(lattq_cuda_fwht(x.p + 2, LATTQ_F32, 1, 64, 64, nullptr), LATTQ_ERR_ALIGNMENT, "'data'", "fwht misaligned");
  CHECK(lattq_cuda_forward_workspace_size(&h.d, 1, 0, nullptr) == LATTQ_ERR_INVALID_ARGUMENT, "ws null bytes");
  CUDA_OK(cudaDeviceSynchronize());
  CUDA_OK(cudaGetLastError());
  std::printf("error paths checked\n");
}

// Back to back on one stream, no synchronisation in between, one shared workspace: two layers of different shapes
// (4096 x 2048, then 2048 x 4096) alternate, ping-ponging between two activation buffers, so each buffer is
// overwritten right after the layer that read it.  Programmatic dependent launch lets a kernel start before its
// predecessor ends; this checks that no kernel reads x or the workspace early, overwrites the workspace while the
// previous layer still reads it, or writes y while the previous layer still reads that buffer: the final buffers
// must equal those of the same calls made one at a time with a synchronisation after each (bit for bit: every
// variant is deterministic).  GEMV_PDL runs under each trigger point of its prologue kernel.  Also: GEMV and
// GEMV_PDL compute the same arithmetic in the same order (their split-K plans agree on these shapes), so their
// synchronised results must be bit-identical.
void test_chain(bool quick) {
  HostLayer h0 = make_layer(2, 4, 4096, 2048, 128, 128, true), h1 = make_layer(2, 4, 2048, 4096, 64, 32, false);
  DevLayer D0(h0), D1(h1);
  const int steps = quick ? 4 : 8;  // quick: the sanitizer runs
  struct Run {
    int32_t var;
    const char* trig;        // LATTQ_GEMV_PDL_TRIGGER, or nullptr
    const char* attr = "1";  // LATTQ_GEMV_PDL_ATTR ("0": launched without PDL, plain stream order)
    const char* tok = "4";   // LATTQ_GEMV_TOK: GEMV_PDL's column width from m = 5 ("16": not bit-equal to GEMV's)
    const char* gred = "0";  // LATTQ_GEMV_GRED ("1": GEMV_PDL's split-K through the workspace, whose counters the next
                             // call's prologue kernel clears right after this call's main kernel)
  };
  std::vector<Run> runs = {{LATTQ_VARIANT_GEMV, nullptr},       {LATTQ_VARIANT_GEMV_PDL, "0"},
                           {LATTQ_VARIANT_GEMV_PDL, "1"},       {LATTQ_VARIANT_GEMV_PDL, "2"},
                           {LATTQ_VARIANT_GEMV, nullptr, "0"},  {LATTQ_VARIANT_GEMV_PDL, "0", "0"},
                           {LATTQ_VARIANT_IMMA, nullptr},       {LATTQ_VARIANT_AUTO, nullptr},
                           {LATTQ_VARIANT_GEMV_PDL, "0", "1", "16"}, {LATTQ_VARIANT_GEMV_PDL, "1", "1", "16"},
                           {LATTQ_VARIANT_GEMV_PDL, "0", "0", "16"}, {LATTQ_VARIANT_GEMV_PDL, "3"},
                           {LATTQ_VARIANT_GEMV_PDL, "4"},       {LATTQ_VARIANT_GEMV_PDL, "3", "1", "16"},
                           {LATTQ_VARIANT_GEMV_PDL, "0", "1", "4", "1"}, {LATTQ_VARIANT_GEMV_PDL, "3", "0", "4", "1"}};
  if (quick)
    runs = {{LATTQ_VARIANT_GEMV, nullptr}, {LATTQ_VARIANT_GEMV_PDL, "0"}, {LATTQ_VARIANT_GEMV_PDL, "1"},
            {LATTQ_VARIANT_GEMV, nullptr, "0"}, {LATTQ_VARIANT_GEMV_PDL, "0", "1", "16"}, {LATTQ_VARIANT_GEMV_PDL, "3"},
            {LATTQ_VARIANT_GEMV_PDL, "0", "1", "4", "1"}};
  // WGMMA at m <= 32 (sm_90a, WGMMA_F16's frame): the next call's prologue clears the stream-K flags and rewrites the
  // image in the same workspace right after this call's main kernel
  if (wgmma_serves(LATTQ_BF16)) runs.push_back({LATTQ_VARIANT_WGMMA, nullptr});
  const std::vector<int64_t> ms = quick ? std::vector<int64_t>{1, 5} : std::vector<int64_t>{1, 3, 6, 12, 16};
  for (int64_t m : ms) {
    std::vector<double> x(m * 2048);
    for (auto& v : x) v = round_to(LATTQ_BF16, randn());
    const auto xh = to16(LATTQ_BF16, x);
    DevBuf<uint16_t> a(m * 2048), b(m * 4096);  // layer 0: a -> b, layer 1: b -> a
    std::vector<uint16_t> gemv_a, gemv_b;       // GEMV's synchronised result, for the GEMV_PDL comparison
    for (const Run& r : runs) {
      if (r.trig) setenv("LATTQ_GEMV_PDL_TRIGGER", r.trig, 1);
      setenv("LATTQ_GEMV_PDL_ATTR", r.attr, 1);
      setenv("LATTQ_GEMV_TOK", r.tok, 1);
      setenv("LATTQ_GEMV_GRED", r.gred, 1);
      size_t w0 = 0, w1 = 0;
      CHECK(lattq_cuda_forward_workspace_size(&h0.d, m, r.var, &w0) == LATTQ_OK &&
                lattq_cuda_forward_workspace_size(&h1.d, m, r.var, &w1) == LATTQ_OK,
            "chain %s m=%lld: workspace size: %s", var_name(r.var), (long long)m, lattq_last_error());
      const size_t wsb = std::max<size_t>(std::max(w0, w1), 256);
      DevBuf<uint8_t> ws(wsb);
      cudaStream_t s;
      CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
      std::vector<uint16_t> out_a[2], out_b[2];
      for (int mode = 0; mode < 2; ++mode) {  // 0: synchronise after every call, 1: back to back
        a.put(xh);
        CUDA_OK(cudaMemset(b.p, 0xFF, m * 4096 * 2));
        CUDA_OK(cudaMemset(ws.p, 0x5A, wsb));
        CUDA_OK(cudaDeviceSynchronize());
        for (int i = 0; i < steps; ++i) {
          const bool odd = i & 1;
          const lattq_status st = lattq_cuda_forward(odd ? &D1.L : &D0.L, odd ? (void*)b.p : (void*)a.p, LATTQ_BF16, m,
                                                     odd ? (void*)a.p : (void*)b.p, ws.p, wsb, r.var, s);
          CHECK(st == LATTQ_OK, "chain %s m=%lld step %d: %s", var_name(r.var), (long long)m, i, lattq_last_error());
          if (mode == 0) CUDA_OK(cudaStreamSynchronize(s));
        }
        CUDA_OK(cudaStreamSynchronize(s));
        out_a[mode] = a.get();
        out_b[mode] = b.get();
      }
      CUDA_OK(cudaStreamDestroy(s));
      if (r.trig) unsetenv("LATTQ_GEMV_PDL_TRIGGER");
      unsetenv("LATTQ_GEMV_PDL_ATTR");
      unsetenv("LATTQ_GEMV_TOK");
      unsetenv("LATTQ_GEMV_GRED");
      bool finite = true;
      for (uint16_t v : out_a[0]) finite = finite && std::isfinite(lattq::bfloat16_to_float(v));
      for (uint16_t v : out_b[0]) finite = finite && std::isfinite(lattq::bfloat16_to_float(v));
      CHECK(finite, "chain %s m=%lld: non-finite output", var_name(r.var), (long long)m);
      CHECK(out_a[0] == out_a[1] && out_b[0] == out_b[1],
            "chain %s (trigger %s, PDL attr %s, tok %s, gred %s) m=%lld: back-to-back result differs from the synchronised "
            "one", var_name(r.var), r.trig ? r.trig : "-", r.attr, r.tok, r.gred, (long long)m);
      if (r.var == LATTQ_VARIANT_GEMV && r.attr[0] == '1') {
        gemv_a = out_a[0];
        gemv_b = out_b[0];
      } else if ((r.var == LATTQ_VARIANT_GEMV_PDL || r.var == LATTQ_VARIANT_GEMV) && (m <= 4 || r.tok[0] == '4')) {
        CHECK(out_a[0] == gemv_a && out_b[0] == gemv_b,
              "chain m=%lld: %s (trigger %s, PDL attr %s, gred %s) differs from gemv", (long long)m, var_name(r.var),
              r.trig ? r.trig : "-", r.attr, r.gred);
      }
    }
  }
  std::printf("forward: back-to-back chains checked\n");
}

// lattq_cuda_forward_group: layers of one K with different N, Hadamard blocks and bias, on one input.  Every output
// against the float64 oracle (f16 / bf16: 2x the dense-in-dtype error, f32: 1e-5 of max(||ref||, its natural scale));
// GEMV / GEMV_PDL bit-identical to the single-layer calls when the split-K plans and column widths agree
// (LATTQ_GEMV_MAX_SPLITS=1, LATTQ_GEMV_TOK set), every other variant (which runs the
// layers one by one) bit-identical always; a graph-captured group replays bit for bit; the error paths name the layer
// and nothing is launched when any layer is refused.
struct GroupCase {
  int64_t k;
  std::vector<Shape> layers;  // Shape.k unused
};

bool run_group(std::vector<DevLayer*>& D, const std::vector<double>& x, int32_t dt, int64_t m, int32_t variant,
               std::vector<std::vector<double>>& ys, cudaStream_t stream, lattq_status* status = nullptr) {
  const int cnt = (int)D.size();
  const int64_t k = D[0]->L.desc.k;
  const size_t es = dt == LATTQ_F32 ? 4 : 2;
  std::vector<lattq_layer> Ls;
  std::vector<lattq_layer_desc> ds;
  for (DevLayer* d : D) {
    Ls.push_back(d->L);
    ds.push_back(d->L.desc);
  }
  DevBuf<uint8_t> dx(m * k * es);
  put_act(dt, x, dx.p);
  std::vector<std::unique_ptr<DevBuf<uint8_t>>> dy;
  std::vector<void*> yp;
  for (int i = 0; i < cnt; ++i) {
    dy.emplace_back(new DevBuf<uint8_t>(m * Ls[i].desc.n * es));
    CUDA_OK(cudaMemset(dy.back()->p, 0xFF, m * Ls[i].desc.n * es));  // NaN poison
    yp.push_back(dy.back()->p);
  }
  size_t wsb = 0;
  lattq_status s = lattq_cuda_forward_group_workspace_size(ds.data(), cnt, m, variant, &wsb);
  if (s != LATTQ_OK) {
    std::printf("group workspace_size failed: %s\n", lattq_last_error());
    return false;
  }
  DevBuf<uint8_t> ws(std::max<size_t>(wsb, 1));
  CUDA_OK(cudaMemset(ws.p, 0xA5, std::max<size_t>(wsb, 1)));
  CUDA_OK(cudaDeviceSynchronize());
  s = lattq_cuda_forward_group(Ls.data(), cnt, dx.p, dt, m, yp.data(), ws.p, wsb, variant, stream);
  if (status) *status = s;
  if (s != LATTQ_OK) {
    if (!status) std::printf("group forward failed: %s\n", lattq_last_error());
    return false;
  }
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaGetLastError());
  ys.assign(cnt, {});
  for (int i = 0; i < cnt; ++i) ys[i] = get_act(dt, yp[i], m * Ls[i].desc.n);
  return true;
}

void test_group(bool quick) {
  std::vector<GroupCase> cases = {
      {1024, {{512, 0, 128, 64, true}, {136, 0, 64, 8, false}, {1040, 0, 256, 16, true}}},  // QKV-like, odd N
      {512, {{24, 0, 8, 8, false}, {200, 0, 32, 8, true}, {64, 0, 64, 64, false}, {128, 0, 128, 128, true},
             {8, 0, 8, 8, true}, {300, 0, 16, 4, false}, {40, 0, 8, 8, true}, {1, 0, 1, 1, false}}},  // 8 layers
      {1088, {{384, 0, 64, 128, false}}},  // one layer, partial quads
      {2048, {{4096, 0, 128, 128, false}, {4096, 0, 128, 128, true}}},  // gate / up-like
  };
  if (quick) cases.resize(2);
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (const GroupCase& G : cases) {
    std::vector<HostLayer> hs;
    for (const Shape& S : G.layers) hs.push_back(make_layer(2, 4, S.n, G.k, S.had_in, S.had_out, S.bias));
    std::vector<std::unique_ptr<DevLayer>> own;
    std::vector<DevLayer*> D;
    for (const HostLayer& h : hs) {
      own.emplace_back(new DevLayer(h));
      D.push_back(own.back().get());
    }
    const int cnt = (int)hs.size();
    std::vector<int64_t> ms = quick ? std::vector<int64_t>{1, 5} : std::vector<int64_t>{1, 2, 3, 4, 7, 9, 16, 17, 70};
    for (int64_t m : ms) {
      std::vector<double> x0(m * G.k);
      for (auto& v : x0) v = randn();
      for (int32_t dt : {LATTQ_F32, LATTQ_F16, LATTQ_BF16}) {
        std::vector<double> x(x0.size());
        for (size_t i = 0; i < x.size(); ++i) x[i] = round_to(dt, x0[i]);
        std::vector<std::vector<double>> refs(cnt);
        std::vector<double> tols(cnt), floors(cnt, 0.0);
        for (int i = 0; i < cnt; ++i) {
          refs[i] = oracle_forward(hs[i], x, m);
          if (dt == LATTQ_F32) {
            // f32: 1e-5 relative, with the layer's natural output scale as the floor of the denominator:
            // ||(|W| |x| + |bias|)|| / sqrt(k), about 0.6-0.8 ||ref|| for outputs without cancellation (so no looser
            // there), but not an accidentally tiny value.  The n = 1 layer at m = 1 has one output; a near-cancelling
            // draw made it fail a plain relative check (5e-5) under memcheck in session 9, with the same result from
            // the one-layer IMMA call.
            tols[i] = 1e-5;
            const int64_t n = hs[i].d.n;
            const std::vector<double> W = dense_weight(hs[i]);
            double ss = 0;
            for (int64_t r = 0; r < n; ++r)
              for (int64_t t = 0; t < m; ++t) {
                double a = hs[i].has_bias ? std::fabs((double)hs[i].bias[r]) : 0.0;
                for (int64_t j = 0; j < G.k; ++j) a += std::fabs(W[r * G.k + j] * x[t * G.k + j]);
                ss += a * a;
              }
            floors[i] = std::sqrt(ss / (double)G.k);
            continue;
          }
          const int64_t n = hs[i].d.n;
          std::vector<double> W = dense_weight(hs[i]), yd(m * n);
          for (auto& w : W) w = round_to(dt, w);
          parallel_for(n, [&](int64_t r) {
            for (int64_t t = 0; t < m; ++t) {
              double acc = 0;
              for (int64_t j = 0; j < G.k; ++j) acc += W[r * G.k + j] * x[t * G.k + j];
              yd[t * n + r] = round_to(dt, acc + (hs[i].has_bias ? (double)hs[i].bias[r] : 0.0));
            }
          });
          // floored at one output rounding (2^-11 f16, 2^-8 bf16 relative): the exact result rounded to the dtype may
          // be off by that much, and with the n = 1 layer at m = 1 the dense error is one draw that can be far smaller
          // (seed 114792843165, f16: dense 9.3e-5, every variant 4.24e-4 = 0.87 of a rounding step, IMMA included)
          tols[i] = std::max(2.0 * rel_err(yd, refs[i]), std::ldexp(1.0, dt == LATTQ_F16 ? -11 : -8));
        }
        std::vector<int32_t> vars = {LATTQ_VARIANT_AUTO, LATTQ_VARIANT_GEMV, LATTQ_VARIANT_GEMV_PDL, LATTQ_VARIANT_IMMA,
                                     LATTQ_VARIANT_REFERENCE};
        if (wgmma_serves(dt) && m >= 16) vars.push_back(LATTQ_VARIANT_WGMMA);
        for (int32_t var : vars) {
          const bool gemv_like = var == LATTQ_VARIANT_GEMV || var == LATTQ_VARIANT_GEMV_PDL;
          bool serves = true;
          for (const HostLayer& h : hs) serves = serves && (!gemv_like || gemv_serves(h.d, dt));
          std::vector<std::vector<double>> ys;
          if (!serves) {
            lattq_status st = LATTQ_OK;
            const bool ran = run_group(D, x, dt, m, var, ys, stream, &st);
            CHECK(!ran && st == LATTQ_ERR_UNSUPPORTED && std::strstr(lattq_last_error(), "layers["),
                  "group %s %s k=%lld must be UNSUPPORTED naming the layer, got %d (%s)", var_name(var), dt_name(dt),
                  (long long)G.k, (int)st, lattq_last_error());
            continue;
          }
          const bool ok = run_group(D, x, dt, m, var, ys, stream);
          CHECK(ok, "group %s %s k=%lld m=%lld failed", var_name(var), dt_name(dt), (long long)G.k, (long long)m);
          if (!ok) continue;
          for (int i = 0; i < cnt; ++i) {
            bool finite = true;
            for (double v : ys[i]) finite = finite && std::isfinite(v);
            double e = rel_err(ys[i], refs[i]);
            if (floors[i] > 0) {  // f32: relative to max(||ref||, natural scale)
              double num = 0, den = 0;
              for (size_t j = 0; j < refs[i].size(); ++j) {
                num += (ys[i][j] - refs[i][j]) * (ys[i][j] - refs[i][j]);
                den += refs[i][j] * refs[i][j];
              }
              e = std::sqrt(num) / std::max(std::sqrt(den), floors[i]);
            }
            CHECK(finite && e <= tols[i], "group %s %s k=%lld m=%lld layer %d (n=%lld): rel err %.3g > tol %.3g%s",
                  var_name(var), dt_name(dt), (long long)G.k, (long long)m, i, (long long)hs[i].d.n, e, tols[i],
                  finite ? "" : " (non-finite output)");
          }
          // against the single-layer calls, bit for bit where the arithmetic is the same: the layers that run one by
          // one always; one GEMV / GEMV_PDL launch when its split-K plan equals the single layers' (1 split).  AUTO
          // may pick another variant for the group than for one layer: checked against the oracle only.
          if (var == LATTQ_VARIANT_AUTO) continue;
          if (gemv_like) {  // same split plan and column width (a group's width follows all its row groups)
            setenv("LATTQ_GEMV_MAX_SPLITS", "1", 1);
            setenv("LATTQ_GEMV_TOK", m % 2 ? "16" : "4", 1);
            CHECK(run_group(D, x, dt, m, var, ys, stream), "group %s 1 split failed", var_name(var));
          }
          for (int i = 0; i < cnt && i < (int)ys.size(); ++i) {
            std::vector<double> yi;
            bool same = run_forward(*D[i], D[i]->L, x, dt, m, var, yi, stream) && yi.size() == ys[i].size();
            for (size_t j = 0; same && j < yi.size(); ++j) same = yi[j] == ys[i][j];
            CHECK(same, "group %s %s k=%lld m=%lld layer %d differs from lattq_cuda_forward%s", var_name(var),
                  dt_name(dt), (long long)G.k, (long long)m, i, gemv_like ? " (1 split)" : "");
          }
          if (gemv_like) {
            unsetenv("LATTQ_GEMV_MAX_SPLITS");
            unsetenv("LATTQ_GEMV_TOK");
          }
        }
      }
    }
    // graph capture of the group, GEMV_PDL at m = 3, replayed bit for bit
    {
      const int64_t m = 3;
      std::vector<double> x(m * G.k);
      for (auto& v : x) v = round_to(LATTQ_BF16, randn());
      std::vector<std::vector<double>> y0;
      CHECK(run_group(D, x, LATTQ_BF16, m, LATTQ_VARIANT_GEMV_PDL, y0, stream), "group direct run: %s", lattq_last_error());
      auto xh = to16(LATTQ_BF16, x);
      DevBuf<uint16_t> dx(xh.size());
      dx.put(xh);
      std::vector<std::unique_ptr<DevBuf<uint16_t>>> dy;
      std::vector<void*> yp;
      std::vector<lattq_layer> Ls;
      std::vector<lattq_layer_desc> ds;
      for (int i = 0; i < cnt; ++i) {
        dy.emplace_back(new DevBuf<uint16_t>(m * hs[i].d.n));
        yp.push_back(dy.back()->p);
        Ls.push_back(D[i]->L);
        ds.push_back(hs[i].d);
      }
      size_t wsb = 0;
      CHECK(lattq_cuda_forward_group_workspace_size(ds.data(), cnt, m, LATTQ_VARIANT_GEMV_PDL, &wsb) == LATTQ_OK, "ws");
      DevBuf<uint8_t> ws(wsb);
      CUDA_OK(cudaMemset(ws.p, 0x5A, wsb));
      CUDA_OK(cudaDeviceSynchronize());
      cudaGraph_t graph;
      cudaGraphExec_t exec;
      CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
      const lattq_status st =
          lattq_cuda_forward_group(Ls.data(), cnt, dx.p, LATTQ_BF16, m, yp.data(), ws.p, wsb, LATTQ_VARIANT_GEMV_PDL, stream);
      CUDA_OK(cudaStreamEndCapture(stream, &graph));
      CHECK(st == LATTQ_OK, "group capture: %s", lattq_last_error());
      CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
      for (int rep = 0; rep < 3; ++rep) {
        for (int i = 0; i < cnt; ++i) CUDA_OK(cudaMemsetAsync(yp[i], 0xFF, m * hs[i].d.n * 2, stream));
        CUDA_OK(cudaGraphLaunch(exec, stream));
        CUDA_OK(cudaStreamSynchronize(stream));
        bool same = true;
        for (int i = 0; i < cnt; ++i) {
          std::vector<uint16_t> yh = dy[i]->get();
          for (size_t j = 0; j < yh.size(); ++j) same = same && lattq::bfloat16_to_float(yh[j]) == (float)y0[i][j];
        }
        CHECK(same, "group graph replay %d differs from the direct run", rep);
      }
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
    }
  }
  // error paths
  {
    HostLayer h0 = make_layer(2, 4, 64, 256, 64, 64, false), h1 = make_layer(2, 4, 128, 256, 64, 64, true),
              h2 = make_layer(2, 4, 64, 512, 64, 64, false);
    DevLayer D0(h0), D1(h1), D2(h2);
    const int64_t m = 2;
    DevBuf<uint8_t> x(m * 512 * 4), y0(m * 64 * 4), y1(m * 128 * 4), ws(1 << 20);
    void* yp[2] = {y0.p, y1.p};
    lattq_layer Ls[2] = {D0.L, D1.L};
    auto expect = [&](lattq_status got, lattq_status want, const char* needle, const char* what) {
      CHECK(got == want, "group %s: status %d, expected %d (%s)", what, (int)got, (int)want, lattq_last_error());
      CHECK(std::strstr(lattq_last_error(), needle) != nullptr, "group %s: message '%s' should mention '%s'", what,
            lattq_last_error(), needle);
    };
    expect(lattq_cuda_forward_group(Ls, 0, x.p, LATTQ_BF16, m, yp, ws.p, 1 << 20, 0, stream), LATTQ_ERR_INVALID_ARGUMENT,
           "count", "count 0");
    expect(lattq_cuda_forward_group(Ls, LATTQ_CUDA_MAX_GROUP + 1, x.p, LATTQ_BF16, m, yp, ws.p, 1 << 20, 0, stream),
           LATTQ_ERR_INVALID_ARGUMENT, "count", "count 9");
    expect(lattq_cuda_forward_group(nullptr, 2, x.p, LATTQ_BF16, m, yp, ws.p, 1 << 20, 0, stream),
           LATTQ_ERR_INVALID_ARGUMENT, "layers", "null layers");
    expect(lattq_cuda_forward_group(Ls, 2, x.p, LATTQ_BF16, m, nullptr, ws.p, 1 << 20, 0, stream),
           LATTQ_ERR_INVALID_ARGUMENT, "'y'", "null y");
    lattq_layer mixed[2] = {D0.L, D2.L};
    expect(lattq_cuda_forward_group(mixed, 2, x.p, LATTQ_BF16, m, yp, ws.p, 1 << 20, 0, stream), LATTQ_ERR_SHAPE,
           "layers[1] has k = 512", "k mismatch");
    lattq_layer_desc mixed_d[2] = {h0.d, h2.d}, ds0[1] = {h0.d};
    size_t b = 0;
    expect(lattq_cuda_forward_group_workspace_size(mixed_d, 2, m, 0, &b), LATTQ_ERR_SHAPE, "k = 512", "ws k mismatch");
    std::vector<float> hy(m * 128);
    void* yhost[2] = {y0.p, hy.data()};
    expect(lattq_cuda_forward_group(Ls, 2, x.p, LATTQ_BF16, m, yhost, ws.p, 1 << 20, 0, stream), LATTQ_ERR_DEVICE,
           "'y[1]'", "host y[1]");
    void* ymis[2] = {y0.p, y1.p + 2};
    expect(lattq_cuda_forward_group(Ls, 2, x.p, LATTQ_BF16, m, ymis, ws.p, 1 << 20, 0, stream), LATTQ_ERR_ALIGNMENT,
           "'y[1]'", "misaligned y[1]");
    lattq_layer badl[2] = {D0.L, D1.L};
    badl[1].A = nullptr;
    expect(lattq_cuda_forward_group(badl, 2, x.p, LATTQ_BF16, m, yp, ws.p, 1 << 20, 0, stream),
           LATTQ_ERR_INVALID_ARGUMENT, "layers[1]: argument 'layer.A'", "null A in layer 1 (one prefix)");
    expect(lattq_cuda_forward_group_workspace_size(ds0, 0, m, 0, &b), LATTQ_ERR_INVALID_ARGUMENT, "count",
           "ws count 0");
    expect(lattq_cuda_forward_group_workspace_size(ds0, LATTQ_CUDA_MAX_GROUP + 1, m, 0, &b), LATTQ_ERR_INVALID_ARGUMENT,
           "count", "ws count 9");
    CHECK(lattq_cuda_forward_group(Ls, 2, x.p, LATTQ_BF16, 0, yp, nullptr, 0, 0, stream) == LATTQ_OK,
          "group m = 0 (nothing to do, no workspace): %s", lattq_last_error());
    expect(lattq_cuda_forward_group(Ls, 2, x.p, LATTQ_F32, m, yp, ws.p, 1 << 20, LATTQ_VARIANT_GEMV, stream),
           LATTQ_ERR_UNSUPPORTED, "layers[0]", "gemv f32");
    size_t pb = 0;
    lattq_layer_desc ds[2] = {h0.d, h1.d};
    CHECK(lattq_cuda_forward_group_workspace_size(ds, 2, m, LATTQ_VARIANT_GEMV_PDL, &pb) == LATTQ_OK && pb > 0,
          "group gemv_pdl workspace %zu", pb);
    size_t p0 = 0;
    lattq_cuda_forward_workspace_size(&h0.d, m, LATTQ_VARIANT_GEMV_PDL, &p0);
    CHECK(pb == 2 * p0, "group gemv_pdl workspace %zu bytes, expected 2 x %zu", pb, p0);
    size_t ab = 0;
    CHECK(lattq_cuda_forward_group_workspace_size(ds, 2, m, LATTQ_VARIANT_AUTO, &ab) == LATTQ_OK && ab >= pb,
          "group AUTO workspace %zu must cover gemv_pdl's %zu", ab, pb);
    expect(lattq_cuda_forward_group(Ls, 2, x.p, LATTQ_BF16, m, yp, ws.p, pb - 256, LATTQ_VARIANT_GEMV_PDL, stream),
           LATTQ_ERR_WORKSPACE, "workspace", "group gemv_pdl short ws");
    // nothing launched when a later layer is refused: layer 1 is CANONICAL, IMMA needs TILED
    lattq_layer canon1[2] = {D0.L, D1.Lc};
    CUDA_OK(cudaMemset(y0.p, 0xFF, m * 64 * 2));
    CUDA_OK(cudaDeviceSynchronize());
    expect(lattq_cuda_forward_group(canon1, 2, x.p, LATTQ_BF16, m, yp, ws.p, 1 << 20, LATTQ_VARIANT_IMMA, stream),
           LATTQ_ERR_LAYOUT, "layers[1]", "canonical layer 1 with imma");
    CUDA_OK(cudaDeviceSynchronize());
    const std::vector<uint8_t> y0h = y0.get();
    bool untouched = true;
    for (size_t j = 0; j < (size_t)m * 64 * 2; ++j) untouched = untouched && y0h[j] == 0xFF;
    CHECK(untouched, "group: layer 0 ran although layer 1 was refused");
    // CANONICAL layers under AUTO run one by one through the reference path
    CUDA_OK(cudaMemset(x.p, 0, m * 512 * 4));
    CUDA_OK(cudaDeviceSynchronize());
    CHECK(lattq_cuda_forward_group(canon1, 2, x.p, LATTQ_F32, m, yp, ws.p, 1 << 20, 0, stream) == LATTQ_OK,
          "group AUTO with a canonical layer: %s", lattq_last_error());
    CUDA_OK(cudaStreamSynchronize(stream));
  }
  CUDA_OK(cudaStreamDestroy(stream));
  std::printf("forward_group: layers, m, dtypes, variants, graph replay and errors checked\n");
}

// Non-default stream + CUDA graph capture and replays: identical results, and graph-replay safe counters.
void test_graph() {
  HostLayer h = make_layer(2, 4, 1024, 4096, 128, 128, true);
  DevLayer D(h);
  for (int32_t var : {LATTQ_VARIANT_IMMA, LATTQ_VARIANT_IMMA_WIDE, LATTQ_VARIANT_REFERENCE, LATTQ_VARIANT_FUSED_GEMV,
                      LATTQ_VARIANT_TILED_GEMM, LATTQ_VARIANT_GEMV, LATTQ_VARIANT_WGMMA, LATTQ_VARIANT_GEMV_PDL}) {
    if (var == LATTQ_VARIANT_WGMMA && !wgmma_serves(LATTQ_BF16)) continue;
    int64_t m = var == LATTQ_VARIANT_IMMA_WIDE ? 24 : (var == LATTQ_VARIANT_TILED_GEMM || var == LATTQ_VARIANT_WGMMA) ? 70 : 3;
    std::vector<double> x(m * h.d.k);
    for (auto& v : x) v = round_to(LATTQ_BF16, randn());
    std::vector<double> y0;
    cudaStream_t s;
    CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CHECK(run_forward(D, D.L, x, LATTQ_BF16, m, var, y0, s), "direct run");
    auto xh = to16(LATTQ_BF16, x);
    DevBuf<uint16_t> dx(xh.size()), dy(m * h.d.n);
    dx.put(xh);
    size_t wsb = 0;
    lattq_cuda_forward_workspace_size(&h.d, m, var, &wsb);
    DevBuf<uint8_t> ws(wsb);
    CUDA_OK(cudaMemset(ws.p, 0x5A, wsb));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    lattq_status st = lattq_cuda_forward(&D.L, dx.p, LATTQ_BF16, m, dy.p, ws.p, wsb, var, s);
    CUDA_OK(cudaStreamEndCapture(s, &graph));
    CHECK(st == LATTQ_OK, "capture: %s", lattq_last_error());
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    for (int rep = 0; rep < 5; ++rep) {
      CUDA_OK(cudaMemsetAsync(dy.p, 0xFF, m * h.d.n * 2, s));
      CUDA_OK(cudaGraphLaunch(exec, s));
      CUDA_OK(cudaStreamSynchronize(s));
      std::vector<uint16_t> yh = dy.get();
      bool same = true;
      for (size_t i = 0; i < yh.size(); ++i) same = same && (lattq::bfloat16_to_float(yh[i]) == (float)y0[i]);
      CHECK(same, "graph replay %d of %s differs from the direct run", rep, var_name(var));
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    CUDA_OK(cudaStreamDestroy(s));
  }
  std::printf("stream + graph replay checked\n");
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string only;  // comma list of test names, empty = all
  uint64_t seed = (uint64_t)std::chrono::steady_clock::now().time_since_epoch().count();
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--seed") && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
    else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else {
      std::fprintf(stderr, "unknown argument '%s' (usage: lattq_cuda_tests [--quick] [--seed N] [--only NAMES])\n", argv[i]);
      return 2;
    }
  }
  if (const char* e = std::getenv("LATTQ_TEST_SEED")) seed = std::strtoull(e, nullptr, 10);
  if (lattq_cuda_device_count() <= 0) {
    std::printf("SKIP: no CUDA device\n");
    return 77;
  }
  rng.seed(seed);
  cudaDeviceProp prop;
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  std::printf("lattq_cuda_tests on %s (sm_%d%d), seed %llu%s\n", prop.name, prop.major, prop.minor,
              (unsigned long long)seed, quick ? ", quick" : "");
  const std::pair<const char*, std::function<void()>> tests[] = {
      {"errors", [] { test_errors(); }},
      {"decode", [&] { test_decode(quick); }},
      {"fwht", [&] { test_fwht(quick); }},
      {"generic", [] { test_forward_generic(); }},
      {"graph", [] { test_graph(); }},
      {"forward", [&] { test_forward(quick); }},
      {"batches", [&] { test_batches(quick); }},
      {"fused_splits", [] { test_fused_splits(); }},
      {"gemv_splits", [&] { test_gemv_splits(quick); }},
      {"chain", [&] { test_chain(quick); }},
      {"group", [&] { test_group(quick); }},
      {"wgmma_settings", [&] { test_wgmma_settings(quick); }},
      {"wgmma_wh", [&] { test_wgmma_wh(quick); }},
  };
  for (size_t i = 0; !only.empty() && i <= only.size();) {  // every name in --only must exist
    size_t j = only.find(',', i);
    if (j == std::string::npos) j = only.size();
    const std::string nm = only.substr(i, j - i);
    bool known = false;
    for (const auto& t : tests) known = known || nm == t.first;
    if (!known) {
      std::fprintf(stderr, "--only: no test named '%s'\n", nm.c_str());
      return 2;
    }
    i = j + 1;
  }
  int ran = 0;
  for (const auto& t : tests) {
    if (!only.empty() && ("," + only + ",").find(std::string(",") + t.first + ",") == std::string::npos) continue;
    t.second();
    ++ran;
  }
  if (ran == 0) {
    std::fprintf(stderr, "--only '%s' names no test\n", only.c_str());
    return 2;
  }
  std::printf("%d checks passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
