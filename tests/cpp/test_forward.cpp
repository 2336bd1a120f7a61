// lattq_forward against the float64 oracle (unfolded math, explicit Hadamard matrices), for every CPU
// kernel this machine can run, both code layouts, f32/bf16/f16 activations, many shapes and batch sizes.
//
// Tolerances:
//  * "numeric tolerance" (fp32 activations): relative Frobenius error <= 1e-5.
//  * bf16/f16: the kernel converts x exactly to fp32, computes in fp32 and rounds y once to the dtype.
//    Elementwise |rd(y32) - y| <= |rd(y) - y| + 2 |y32 - y| (a rounding boundary between y32 and y costs
//    at most the distance twice), so  err <= err_round + 2 * 1e-5, where err_round is the error of
//    rounding the exact float64 result (computed from the dtype-rounded inputs) to the dtype.  Also
//    err <= u (1 + 1e-5) + 1e-5 with u the unit roundoff of the dtype (2^-8 bf16, 2^-11 f16).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "lattq/lattq.h"
#include "lattq/lattq.hpp"
#include "oracle.hpp"

namespace {

constexpr double kNumericTol = 1e-5;

struct AlignedBuf {
  void* p = nullptr;
  explicit AlignedBuf(size_t bytes) {
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) p = nullptr;
  }
  ~AlignedBuf() { std::free(p); }
  AlignedBuf(const AlignedBuf&) = delete;
  AlignedBuf& operator=(const AlignedBuf&) = delete;
};

int64_t k_step(int bits, int dim) {
  int64_t s = dim;
  while ((s * bits) % 8) s += dim;
  return s;
}

oracle::Layer make_layer(oracle::Rng& rng, int bits, int dim, int64_t n, int64_t k, int64_t had_in, int64_t had_out,
                         bool bias, float sv_scale = 1.0f) {
  oracle::Layer L;
  L.bits = bits;
  L.dim = dim;
  L.n = n;
  L.k = k;
  L.had_in = had_in;
  L.had_out = had_out;
  L.has_bias = bias;
  L.canonical.resize(static_cast<size_t>(n * L.row_bytes()));
  for (auto& c : L.canonical) c = rng.byte();
  // A = s*Q-like plus a perturbation (non-orthogonal), b as in the authors' init, both random
  for (int i = 0; i < dim * dim; ++i) L.A.push_back(0.3f * rng.normalf() + (i % (dim + 1) == 0 ? 0.9f : 0.0f));
  for (int i = 0; i < dim; ++i) L.b.push_back(-1.2f + 0.3f * rng.normalf());
  for (int64_t i = 0; i < k; ++i) L.su.push_back(rng.normalf());
  for (int64_t i = 0; i < n; ++i) L.sv.push_back(sv_scale * rng.normalf());
  for (int64_t i = 0; i < n; ++i) L.bias.push_back(bias ? rng.normalf() : 0.0f);
  return L;
}

struct Packed {
  std::vector<uint8_t> bytes;
};

lattq_layer view(const oracle::Layer& L, int layout, const std::vector<uint8_t>& packed) {
  lattq_layer v{};
  v.desc = {L.bits, L.dim, L.n, L.k, int32_t(L.had_in), int32_t(L.had_out)};
  v.layout = layout;
  v.codes = layout == LATTQ_LAYOUT_TILED ? packed.data() : L.canonical.data();
  v.A = L.A.data();
  v.b = L.b.data();
  v.su = L.su.data();
  v.sv = L.sv.data();
  v.bias = L.has_bias ? L.bias.data() : nullptr;
  return v;
}

std::vector<uint8_t> pack(const oracle::Layer& L) {
  lattq_layer_desc d{L.bits, L.dim, L.n, L.k, int32_t(L.had_in), int32_t(L.had_out)};
  std::vector<uint8_t> p(static_cast<size_t>(lattq_packed_bytes(&d)));
  EXPECT_EQ(lattq_pack(&d, L.canonical.data(), p.data()), LATTQ_OK);
  return p;
}

uint16_t to_dtype_bits(float f, int dtype) {
  return dtype == LATTQ_F16 ? lattq::float_to_half(f) : lattq::float_to_bfloat16(f);
}
double from_dtype_bits(uint16_t h, int dtype) {
  return dtype == LATTQ_F16 ? lattq::half_to_float(h) : lattq::bfloat16_to_float(h);
}

// Runs lattq_forward; x holds values representable in dtype.  Returns y as doubles.
std::vector<double> run(const lattq_layer& v, const std::vector<float>& x, int dtype, int64_t m, int threads) {
  const int64_t K = v.desc.k, N = v.desc.n;
  size_t wsb = 0;
  EXPECT_EQ(lattq_forward_workspace_size(&v.desc, m, &wsb), LATTQ_OK);
  AlignedBuf ws(wsb);
  std::vector<double> out(static_cast<size_t>(m * N));
  if (dtype == LATTQ_F32) {
    std::vector<float> y(static_cast<size_t>(m * N), NAN);
    EXPECT_EQ(lattq_forward(&v, x.data(), dtype, m, y.data(), ws.p, wsb, threads), LATTQ_OK) << lattq_last_error();
    for (size_t i = 0; i < y.size(); ++i) out[i] = y[i];
  } else {
    std::vector<uint16_t> xh(static_cast<size_t>(m * K)), y(static_cast<size_t>(m * N), 0x7fff);
    for (size_t i = 0; i < xh.size(); ++i) xh[i] = to_dtype_bits(x[i], dtype);
    EXPECT_EQ(lattq_forward(&v, xh.data(), dtype, m, y.data(), ws.p, wsb, threads), LATTQ_OK) << lattq_last_error();
    for (size_t i = 0; i < y.size(); ++i) out[i] = from_dtype_bits(y[i], dtype);
  }
  return out;
}

std::vector<double> reference(const oracle::Layer& L, const std::vector<float>& x, int64_t m) {
  std::vector<double> ref;
  ref.reserve(static_cast<size_t>(m * L.n));
  for (int64_t t = 0; t < m; ++t) {
    std::vector<double> xt(x.begin() + t * L.k, x.begin() + (t + 1) * L.k);
    const std::vector<double> y = oracle::forward(L, xt);
    ref.insert(ref.end(), y.begin(), y.end());
  }
  return ref;
}

std::vector<float> activations(oracle::Rng& rng, int64_t m, int64_t k, int dtype) {
  std::vector<float> x(static_cast<size_t>(m * k));
  for (auto& v : x) {
    v = rng.normalf();
    if (dtype != LATTQ_F32) v = float(from_dtype_bits(to_dtype_bits(v, dtype), dtype));  // representable
  }
  return x;
}

// Checks one forward against the oracle with the tolerance of its dtype.
void check(const std::vector<double>& got, const std::vector<double>& ref, int dtype, const std::string& what) {
  const double err = oracle::rel_frobenius(got, ref);
  if (dtype == LATTQ_F32) {
    EXPECT_LE(err, kNumericTol) << "numeric tolerance, " << what;
    return;
  }
  std::vector<double> rounded(ref.size());
  for (size_t i = 0; i < ref.size(); ++i)
    rounded[i] = dtype == LATTQ_F16 ? oracle::round_f16(ref[i]) : oracle::round_bf16(ref[i]);
  const double err_round = oracle::rel_frobenius(rounded, ref);
  const double u = dtype == LATTQ_F16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
  EXPECT_LE(err, err_round + 2 * kNumericTol) << what << " (err_round " << err_round << ")";
  EXPECT_LE(err, u * (1 + kNumericTol) + kNumericTol) << what;
  EXPECT_GT(err_round, 0.0) << what;  // the comparison above is meaningful only if rounding happened
}

std::vector<int> kernels() {
  std::vector<int> ks;
  for (int k : {LATTQ_CPU_KERNEL_SCALAR, LATTQ_CPU_KERNEL_AVX2, LATTQ_CPU_KERNEL_AVX512})
    if (lattq_set_cpu_kernel(k) == LATTQ_OK) ks.push_back(k);
  lattq_set_cpu_kernel(LATTQ_CPU_KERNEL_AUTO);
  return ks;
}

struct KernelGuard {
  explicit KernelGuard(int k) { EXPECT_EQ(lattq_set_cpu_kernel(k), LATTQ_OK); }
  ~KernelGuard() { lattq_set_cpu_kernel(LATTQ_CPU_KERNEL_AUTO); }
};

}  // namespace

TEST(Forward, KernelSelection) {
  EXPECT_NE(lattq_get_cpu_kernel(), LATTQ_CPU_KERNEL_AUTO);
  EXPECT_EQ(lattq_set_cpu_kernel(LATTQ_CPU_KERNEL_SCALAR), LATTQ_OK);
  EXPECT_EQ(lattq_get_cpu_kernel(), LATTQ_CPU_KERNEL_SCALAR);
  EXPECT_EQ(lattq_set_cpu_kernel(42), LATTQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lattq_last_error()).find("'kernel' = 42"), std::string::npos);
  EXPECT_EQ(lattq_get_cpu_kernel(), LATTQ_CPU_KERNEL_SCALAR);  // unchanged
  EXPECT_EQ(lattq_set_cpu_kernel(LATTQ_CPU_KERNEL_AUTO), LATTQ_OK);
  EXPECT_STREQ(lattq_cpu_kernel_name(LATTQ_CPU_KERNEL_AVX512), "avx512");
  std::printf("[ info ] auto kernel: %s; kernels runnable here:", lattq_cpu_kernel_name(lattq_get_cpu_kernel()));
  for (int k : kernels()) std::printf(" %s", lattq_cpu_kernel_name(k));
  std::printf("\n");
}

// Every (bits, dim), both layouts, ragged N and row bytes, all kernels, with and without bias.
TEST(Forward, AllBitsDimsLayoutsKernels) {
  for (uint64_t seed : oracle::seeds()) {
    LATTQ_SEED_TRACE(seed);
    oracle::Rng rng(seed);
    for (int kern : kernels()) {
      KernelGuard kg(kern);
      for (int bits = 1; bits <= 4; ++bits)
        for (int dim : {1, 2, 4, 8}) {
          if (bits * dim > 16) continue;
          const int64_t k = k_step(bits, dim) * 40;  // row bytes: 40*step*bits/8, mostly not a multiple of 16
          const int64_t n = 40;                       // 2.5 tiles
          oracle::Layer L = make_layer(rng, bits, dim, n, k, k & -k, 8, (bits + dim) % 2 == 0);
          const std::vector<uint8_t> packed = pack(L);
          for (int64_t m : {1, 3, 9}) {
            const std::vector<float> x = activations(rng, m, k, LATTQ_F32);
            const std::vector<double> ref = reference(L, x, m);
            for (int layout : {LATTQ_LAYOUT_TILED, LATTQ_LAYOUT_CANONICAL}) {
              const lattq_layer v = view(L, layout, packed);
              check(run(v, x, LATTQ_F32, m, 2), ref, LATTQ_F32,
                    std::string(lattq_cpu_kernel_name(kern)) + " bits=" + std::to_string(bits) + " dim=" +
                        std::to_string(dim) + " m=" + std::to_string(m) + " layout=" + std::to_string(layout));
            }
          }
        }
    }
  }
}

// Batch sizes 1..33 and 64, 65, 130 (register-block remainders, table and direct paths, token blocks of
// 64 rows per pass), several thread counts.
TEST(Forward, BatchSizesAndThreads) {
  for (uint64_t seed : oracle::seeds()) {
    LATTQ_SEED_TRACE(seed);
    oracle::Rng rng(seed);
    oracle::Layer L = make_layer(rng, 2, 4, 200, 384, 128, 8, true);
    const std::vector<uint8_t> packed = pack(L);
    for (int kern : kernels()) {
      KernelGuard kg(kern);
      for (int64_t m : {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17, 31, 32, 33, 64, 65, 130}) {
        const std::vector<float> x = activations(rng, m, L.k, LATTQ_F32);
        const std::vector<double> ref = reference(L, x, m);
        for (int threads : {1, 2, 3, 0}) {
          check(run(view(L, LATTQ_LAYOUT_TILED, packed), x, LATTQ_F32, m, threads), ref, LATTQ_F32,
                std::string(lattq_cpu_kernel_name(kern)) + " m=" + std::to_string(m) + " threads=" + std::to_string(threads));
        }
      }
    }
  }
}

// Hadamard blocks 1/16/64/128/full on both sides.
TEST(Forward, HadamardBlocks) {
  for (uint64_t seed : oracle::seeds()) {
    LATTQ_SEED_TRACE(seed);
    oracle::Rng rng(seed);
    for (int64_t had : {1, 16, 64, 128, 512}) {
      oracle::Layer L = make_layer(rng, 2, 4, 512, 512, had, had == 512 ? 512 : (had == 1 ? 128 : 1), true);
      const std::vector<uint8_t> packed = pack(L);
      const std::vector<float> x = activations(rng, 3, L.k, LATTQ_F32);
      const std::vector<double> ref = reference(L, x, 3);
      check(run(view(L, LATTQ_LAYOUT_TILED, packed), x, LATTQ_F32, 3, 0), ref, LATTQ_F32, "had=" + std::to_string(had));
    }
  }
}

// The model shapes: 576x1536, 1536x576 (576 = 64*9 takes a 64 block), f32/bf16/f16.
TEST(Forward, SmolShapesAllDtypes) {
  for (uint64_t seed : oracle::seeds()) {
    LATTQ_SEED_TRACE(seed);
    oracle::Rng rng(seed);
    struct S {
      int64_t n, k, hin, hout;
    };
    for (S s : {S{576, 1536, 128, 64}, S{1536, 576, 64, 128}}) {
      oracle::Layer L = make_layer(rng, 2, 4, s.n, s.k, s.hin, s.hout, true, 0.01f);
      const std::vector<uint8_t> packed = pack(L);
      for (int dtype : {LATTQ_F32, LATTQ_BF16, LATTQ_F16}) {
        for (int64_t m : {1, 5, 17}) {
          const std::vector<float> x = activations(rng, m, s.k, dtype);
          const std::vector<double> ref = reference(L, x, m);
          double mx = 0;
          for (double r : ref) mx = std::fmax(mx, std::fabs(r));
          ASSERT_LT(mx, 30000.0) << "test data must stay inside the f16 range";
          for (int kern : kernels()) {
            KernelGuard kg(kern);
            check(run(view(L, LATTQ_LAYOUT_TILED, packed), x, dtype, m, 0), ref, dtype,
                  std::string(lattq_cpu_kernel_name(kern)) + " " + std::to_string(s.n) + "x" + std::to_string(s.k) +
                      " dtype=" + std::to_string(dtype) + " m=" + std::to_string(m));
          }
        }
      }
    }
  }
}

// Llama-sized layers: 4096x4096 (small m) and 11008x4096 (m = 1), default kernel.
TEST(Forward, LargeShapes) {
  const uint64_t seed = oracle::fresh_seed();
  LATTQ_SEED_TRACE(seed);
  oracle::Rng rng(seed);
  {
    oracle::Layer L = make_layer(rng, 2, 4, 4096, 4096, 128, 128, true);
    const std::vector<uint8_t> packed = pack(L);
    for (int64_t m : {1, 2}) {
      const std::vector<float> x = activations(rng, m, L.k, LATTQ_F32);
      const std::vector<double> ref = reference(L, x, m);
      check(run(view(L, LATTQ_LAYOUT_TILED, packed), x, LATTQ_F32, m, 0), ref, LATTQ_F32, "4096x4096 m=" + std::to_string(m));
    }
    const std::vector<float> xb = activations(rng, 1, L.k, LATTQ_BF16);
    check(run(view(L, LATTQ_LAYOUT_TILED, packed), xb, LATTQ_BF16, 1, 0), reference(L, xb, 1), LATTQ_BF16, "4096x4096 bf16");
  }
  {
    oracle::Layer L = make_layer(rng, 2, 4, 11008, 4096, 128, 256, false);
    const std::vector<uint8_t> packed = pack(L);
    const std::vector<float> x = activations(rng, 1, L.k, LATTQ_F32);
    check(run(view(L, LATTQ_LAYOUT_TILED, packed), x, LATTQ_F32, 1, 0), reference(L, x, 1), LATTQ_F32, "11008x4096 m=1");
  }
}

// Activations may contain anything: no error, non-finite outputs only where they propagate.
TEST(Forward, NonFiniteActivationsAreNotAnError) {
  oracle::Rng rng(5);
  oracle::Layer L = make_layer(rng, 2, 4, 32, 64, 16, 16, true);
  const std::vector<uint8_t> packed = pack(L);
  std::vector<float> x = activations(rng, 2, 64, LATTQ_F32);
  x[3] = NAN;
  const std::vector<double> y = run(view(L, LATTQ_LAYOUT_TILED, packed), x, LATTQ_F32, 2, 0);
  bool any_nan_first = false;
  for (int i = 0; i < 32; ++i) any_nan_first |= std::isnan(y[static_cast<size_t>(i)]);
  EXPECT_TRUE(any_nan_first);
  // the second token is unaffected
  std::vector<float> x2(x.begin() + 64, x.end());
  const std::vector<double> ref = reference(L, x2, 1);
  check(std::vector<double>(y.begin() + 32, y.end()), ref, LATTQ_F32, "second token");
}

// Concurrent calls from several threads (the pool serves one, the others run inline): all correct.
TEST(Forward, ConcurrentCallers) {
  oracle::Rng rng(9);
  oracle::Layer L = make_layer(rng, 2, 4, 256, 512, 128, 16, true);
  const std::vector<uint8_t> packed = pack(L);
  const std::vector<float> x = activations(rng, 2, L.k, LATTQ_F32);
  const std::vector<double> ref = reference(L, x, 2);
  std::vector<std::vector<double>> outs(4);
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&, i] {
      for (int r = 0; r < 20; ++r) outs[static_cast<size_t>(i)] = run(view(L, LATTQ_LAYOUT_TILED, packed), x, LATTQ_F32, 2, 2);
    });
  for (auto& t : ts) t.join();
  for (const auto& o : outs) check(o, ref, LATTQ_F32, "concurrent");
}

TEST(Forward, ThreadSettings) {
  const int32_t before = lattq_get_num_threads();
  EXPECT_GE(before, 1);
  lattq_set_num_threads(3);
  EXPECT_EQ(lattq_get_num_threads(), 3);
  lattq_set_num_threads(0);
  EXPECT_GE(lattq_get_num_threads(), 1);
}

// Random shapes, bit widths, dims, Hadamard blocks, layouts and batch sizes (fresh seed each run).
TEST(Forward, RandomShapes) {
  for (uint64_t seed : oracle::seeds()) {
    LATTQ_SEED_TRACE(seed);
    oracle::Rng rng(seed);
    for (int trial = 0; trial < 12; ++trial) {
      const int bits = int(rng.uniform(1, 4));
      std::vector<int> dims;
      for (int d : {1, 2, 4, 8})
        if (bits * d <= 16) dims.push_back(d);
      const int dim = dims[static_cast<size_t>(rng.uniform(0, int64_t(dims.size()) - 1))];
      const int64_t k = k_step(bits, dim) * rng.uniform(1, 96);
      const int64_t n = rng.uniform(1, 300);
      const int64_t had_in = std::min<int64_t>(k & -k, int64_t(1) << rng.uniform(0, 8));
      const int64_t had_out = std::min<int64_t>(n & -n, int64_t(1) << rng.uniform(0, 8));
      const int64_t m = rng.uniform(1, 20);
      oracle::Layer L = make_layer(rng, bits, dim, n, k, had_in, had_out, rng.uniform(0, 1) == 1);
      const std::vector<uint8_t> packed = pack(L);
      const std::vector<float> x = activations(rng, m, k, LATTQ_F32);
      const std::vector<double> ref = reference(L, x, m);
      const int layout = rng.uniform(0, 1) ? LATTQ_LAYOUT_TILED : LATTQ_LAYOUT_CANONICAL;
      check(run(view(L, layout, packed), x, LATTQ_F32, m, 0), ref, LATTQ_F32,
            "bits=" + std::to_string(bits) + " dim=" + std::to_string(dim) + " n=" + std::to_string(n) + " k=" +
                std::to_string(k) + " had=" + std::to_string(had_in) + "/" + std::to_string(had_out) +
                " m=" + std::to_string(m) + " layout=" + std::to_string(layout));
    }
  }
}

// The C++ API (lattq.hpp) mirrors the C API: same statuses, same results.
TEST(CppApi, MirrorsTheCApi) {
  oracle::Rng rng(77);
  oracle::Layer L = make_layer(rng, 2, 4, 48, 256, 64, 16, true);
  lattq::LayerDesc d;
  d.bits = 2;
  d.dim = 4;
  d.n = 48;
  d.k = 256;
  d.had_in = 64;
  d.had_out = 16;
  ASSERT_EQ(lattq::validate_desc(&d), lattq::Status::Ok);
  ASSERT_EQ(lattq::packed_bytes(&d), lattq_packed_bytes(reinterpret_cast<const lattq_layer_desc*>(&d)));
  std::vector<uint8_t> packed(static_cast<size_t>(lattq::packed_bytes(&d)));
  ASSERT_EQ(lattq::pack(&d, L.canonical.data(), packed.data()), lattq::Status::Ok);
  EXPECT_EQ(packed, pack(L));
  lattq::LayerView v;
  v.desc = d;
  v.layout = LATTQ_LAYOUT_TILED;
  v.codes = packed.data();
  v.A = L.A.data();
  v.b = L.b.data();
  v.su = L.su.data();
  v.sv = L.sv.data();
  v.bias = L.bias.data();
  ASSERT_EQ(lattq::validate_layer(&v), lattq::Status::Ok);
  const int64_t m = 3;
  size_t wsb = 0;
  ASSERT_EQ(lattq::forward_workspace_size(&d, m, &wsb), lattq::Status::Ok);
  AlignedBuf ws(wsb);
  const std::vector<float> x = activations(rng, m, 256, LATTQ_F32);
  std::vector<float> y(static_cast<size_t>(m * 48));
  ASSERT_EQ(lattq::forward(&v, x.data(), LATTQ_F32, m, y.data(), ws.p, wsb, 0), lattq::Status::Ok) << lattq::last_error();
  const std::vector<double> yc = run(view(L, LATTQ_LAYOUT_TILED, packed), x, LATTQ_F32, m, 0);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(double(y[i]), yc[i]);  // same code path: identical
  check(std::vector<double>(y.begin(), y.end()), reference(L, x, m), LATTQ_F32, "C++ API");
  v.desc.had_in = 48;
  EXPECT_EQ(lattq::forward(&v, x.data(), LATTQ_F32, m, y.data(), ws.p, wsb, 0), lattq::Status::InvalidArgument);
  EXPECT_NE(std::string(lattq::last_error()).find("'layer.desc.had_in' = 48 is not a power of two"), std::string::npos);
  EXPECT_STREQ(lattq::to_string(lattq::Status::Workspace), "LATTQ_ERR_WORKSPACE");
}

// Each output row is computed by exactly one thread, in the same order whatever the thread count (and
// the default count is chosen at run time): outputs must be bit-identical across thread counts.
TEST(Forward, BitIdenticalAcrossThreadCounts) {
  const uint64_t seed = oracle::fresh_seed();
  LATTQ_SEED_TRACE(seed);
  oracle::Rng rng(seed);
  oracle::Layer L = make_layer(rng, 2, 4, 1024, 2048, 128, 64, true);
  const std::vector<uint8_t> packed = pack(L);
  for (int64_t m : {1, 3, 70}) {
    const std::vector<float> x = activations(rng, m, L.k, LATTQ_F32);
    const std::vector<double> ref1 = run(view(L, LATTQ_LAYOUT_TILED, packed), x, LATTQ_F32, m, 1);
    for (int threads : {2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) {
      const std::vector<double> y = run(view(L, LATTQ_LAYOUT_TILED, packed), x, LATTQ_F32, m, threads);
      ASSERT_EQ(y, ref1) << "m=" << m << " threads=" << threads;
    }
  }
}

// Heavy-tailed activations (an outlier 1e4 times the rest, as in LLM residual streams): still within
// the numeric tolerance on every kernel.
TEST(Forward, OutlierActivations) {
  for (uint64_t seed : oracle::seeds()) {
    LATTQ_SEED_TRACE(seed);
    oracle::Rng rng(seed);
    oracle::Layer L = make_layer(rng, 2, 4, 512, 1024, 128, 128, true);
    const std::vector<uint8_t> packed = pack(L);
    std::vector<float> x = activations(rng, 2, L.k, LATTQ_F32);
    x[static_cast<size_t>(rng.uniform(0, L.k - 1))] *= 1e4f;
    x[static_cast<size_t>(L.k + rng.uniform(0, L.k - 1))] *= -3e3f;
    const std::vector<double> ref = reference(L, x, 2);
    for (int kern : kernels()) {
      KernelGuard kg(kern);
      check(run(view(L, LATTQ_LAYOUT_TILED, packed), x, LATTQ_F32, 2, 0), ref, LATTQ_F32,
            std::string("outliers ") + lattq_cpu_kernel_name(kern));
      std::vector<float> x1(x.begin(), x.begin() + L.k);
      check(run(view(L, LATTQ_LAYOUT_TILED, packed), x1, LATTQ_F32, 1, 0), reference(L, x1, 1), LATTQ_F32,
            std::string("outliers m=1 ") + lattq_cpu_kernel_name(kern));
    }
  }
}
