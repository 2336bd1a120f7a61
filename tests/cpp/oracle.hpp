// Test helpers: seeds and float64 oracles written from docs/format.md, independent of the library
// (they never call lattq code).
#ifndef LATTQ_TESTS_ORACLE_HPP
#define LATTQ_TESTS_ORACLE_HPP

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace oracle {

// Seeds: two fixed ones plus one fresh per run (time based, or LATTQ_TEST_SEED to reproduce).
inline uint64_t fresh_seed() {
  static const uint64_t s = [] {
    if (const char* e = std::getenv("LATTQ_TEST_SEED")) return uint64_t(std::strtoull(e, nullptr, 10));
    return uint64_t(std::chrono::high_resolution_clock::now().time_since_epoch().count());
  }();
  return s;
}
inline std::vector<uint64_t> seeds() { return {1u, 20260523u, fresh_seed()}; }
#define LATTQ_SEED_TRACE(seed) \
  SCOPED_TRACE("seed = " + std::to_string(seed) + " (rerun with LATTQ_TEST_SEED=" + std::to_string(seed) + ")")

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t s) : g(s) {}
  double normal() { return std::normal_distribution<double>(0.0, 1.0)(g); }
  float normalf() { return float(normal()); }
  uint8_t byte() { return uint8_t(g() & 0xff); }
  int64_t uniform(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(g); }
};

// Field j (bits wide) of a canonical row, bit by bit: field bit b is row bit bits*j + b, and row bit i is
// bit i % 8 of byte i / 8.
inline uint32_t field(const uint8_t* row, int64_t j, int bits) {
  uint32_t z = 0;
  for (int b = 0; b < bits; ++b) {
    const int64_t i = int64_t(bits) * j + b;
    z |= uint32_t((row[i / 8] >> (i % 8)) & 1) << b;
  }
  return z;
}

// TILED byte offset of canonical byte `byte` of row `n` (docs/format.md §4).
inline int64_t tiled_offset(int64_t n, int64_t byte, int64_t row_bytes) {
  const int64_t C = (row_bytes + 15) / 16;
  return ((n / 16) * C + byte / 16) * 256 + (n % 16) * 16 + byte % 16;
}

inline int popcount(uint64_t x) {
  int c = 0;
  while (x) {
    c += int(x & 1);
    x >>= 1;
  }
  return c;
}

// Explicit orthonormal Sylvester Hadamard matrix (row-major B x B).
inline std::vector<double> hadamard(int64_t B) {
  std::vector<double> h(static_cast<size_t>(B * B));
  const double s = 1.0 / std::sqrt(double(B));
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j < B; ++j) h[static_cast<size_t>(i * B + j)] = (popcount(uint64_t(i & j)) & 1) ? -s : s;
  return h;
}

// y = (I ⊗ H_B) x for one vector, by explicit matrix-vector products.
inline void block_hadamard(std::vector<double>& x, int64_t B) {
  if (B == 1) return;
  const std::vector<double> h = hadamard(B);
  std::vector<double> tmp(static_cast<size_t>(B));
  for (size_t base = 0; base < x.size(); base += static_cast<size_t>(B)) {
    for (int64_t i = 0; i < B; ++i) {
      double acc = 0;
      for (int64_t j = 0; j < B; ++j) acc += h[static_cast<size_t>(i * B + j)] * x[base + static_cast<size_t>(j)];
      tmp[static_cast<size_t>(i)] = acc;
    }
    for (int64_t i = 0; i < B; ++i) x[base + static_cast<size_t>(i)] = tmp[static_cast<size_t>(i)];
  }
}

struct Layer {
  int bits, dim;
  int64_t n, k;
  int64_t had_in, had_out;
  std::vector<uint8_t> canonical;  // n x R
  std::vector<float> A, b, su, sv, bias;
  bool has_bias = true;
  int64_t row_bytes() const { return k * bits / 8; }
};

// Lattice-domain weight row (float64): What[n, d g + i] = sum_j A_ij z_j + b_i.
inline void what_row(const Layer& L, int64_t n, std::vector<double>& out) {
  out.assign(static_cast<size_t>(L.k), 0.0);
  const uint8_t* row = L.canonical.data() + n * L.row_bytes();
  for (int64_t g = 0; g < L.k / L.dim; ++g)
    for (int i = 0; i < L.dim; ++i) {
      double acc = L.b[static_cast<size_t>(i)];
      for (int j = 0; j < L.dim; ++j) acc += double(L.A[static_cast<size_t>(i * L.dim + j)]) * double(field(row, g * L.dim + j, L.bits));
      out[static_cast<size_t>(g * L.dim + i)] = acc;
    }
}

// y = SV ⊙ H_outᵀ(What · H_in(SU ⊙ x)) + bias in float64, unfolded (no A^T fold), for one token.
inline std::vector<double> forward(const Layer& L, const std::vector<double>& x) {
  std::vector<double> u(static_cast<size_t>(L.k));
  for (int64_t j = 0; j < L.k; ++j) u[static_cast<size_t>(j)] = x[static_cast<size_t>(j)] * double(L.su[static_cast<size_t>(j)]);
  block_hadamard(u, L.had_in);
  std::vector<double> t(static_cast<size_t>(L.n)), w;
  for (int64_t n = 0; n < L.n; ++n) {
    what_row(L, n, w);
    double acc = 0;
    for (int64_t j = 0; j < L.k; ++j) acc += w[static_cast<size_t>(j)] * u[static_cast<size_t>(j)];
    t[static_cast<size_t>(n)] = acc;
  }
  block_hadamard(t, L.had_out);  // H symmetric: H^T = H
  for (int64_t n = 0; n < L.n; ++n)
    t[static_cast<size_t>(n)] = t[static_cast<size_t>(n)] * double(L.sv[static_cast<size_t>(n)]) + (L.has_bias ? double(L.bias[static_cast<size_t>(n)]) : 0.0);
  return t;
}

inline double rel_frobenius(const std::vector<double>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1.0));
}

// Reference rounding of a double to IEEE half / bfloat16 values (returned as double), by searching the
// representable neighbours: nearest, ties to even significand.
inline double round_to_format(double x, int mant_bits, int min_exp, double max_finite) {
  if (x == 0 || !std::isfinite(x)) return x;
  const double ax = std::fabs(x);
  int e2 = 0;
  std::frexp(ax, &e2);  // ax = m 2^e2, m in [0.5, 1)
  int e = e2 - 1;
  if (e < min_exp) e = min_exp;
  const double ulp = std::ldexp(1.0, e - mant_bits);
  const double lo = std::floor(ax / ulp) * ulp, hi = lo + ulp;
  double r;
  if (ax - lo < hi - ax) r = lo;
  else if (ax - lo > hi - ax) r = hi;
  else r = (std::fmod(lo / ulp, 2.0) == 0.0) ? lo : hi;
  if (r > max_finite) {
    // overflow: RNE rounds to infinity at or beyond max + ulp/2
    r = HUGE_VAL;
  }
  return x < 0 ? -r : r;
}
inline double round_f16(double x) { return round_to_format(x, 10, -14, 65504.0); }
inline double round_bf16(double x) { return round_to_format(x, 7, -126, 3.3895313892515355e38); }

}  // namespace oracle

#endif
