// Decode, encode (nearest codeword), FWHT: against float64 oracles written from the math.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "lattq/lattq.h"
#include "oracle.hpp"

namespace {

int64_t k_step(int bits, int dim) {
  int64_t s = dim;
  while ((s * bits) % 8) s += dim;
  return s;
}

oracle::Layer random_layer(oracle::Rng& rng, int bits, int dim, int64_t n, int64_t k, int64_t had_in, int64_t had_out) {
  oracle::Layer L;
  L.bits = bits;
  L.dim = dim;
  L.n = n;
  L.k = k;
  L.had_in = had_in;
  L.had_out = had_out;
  L.canonical.resize(static_cast<size_t>(n * L.row_bytes()));
  for (auto& c : L.canonical) c = rng.byte();
  for (int i = 0; i < dim * dim; ++i) L.A.push_back(rng.normalf() * 0.5f);
  for (int i = 0; i < dim; ++i) L.b.push_back(rng.normalf());
  for (int64_t i = 0; i < k; ++i) L.su.push_back(rng.normalf());
  for (int64_t i = 0; i < n; ++i) L.sv.push_back(rng.normalf());
  for (int64_t i = 0; i < n; ++i) L.bias.push_back(rng.normalf());
  return L;
}

// Orthogonal d x d matrix (float64) by Gram-Schmidt of a random Gaussian matrix.
std::vector<double> random_orthogonal(oracle::Rng& rng, int d) {
  std::vector<double> q(static_cast<size_t>(d * d));
  for (auto& v : q) v = rng.normal();
  for (int i = 0; i < d; ++i) {  // rows orthonormal
    for (int j = 0; j < i; ++j) {
      double dot = 0;
      for (int c = 0; c < d; ++c) dot += q[static_cast<size_t>(i * d + c)] * q[static_cast<size_t>(j * d + c)];
      for (int c = 0; c < d; ++c) q[static_cast<size_t>(i * d + c)] -= dot * q[static_cast<size_t>(j * d + c)];
    }
    double nrm = 0;
    for (int c = 0; c < d; ++c) nrm += q[static_cast<size_t>(i * d + c)] * q[static_cast<size_t>(i * d + c)];
    for (int c = 0; c < d; ++c) q[static_cast<size_t>(i * d + c)] /= std::sqrt(nrm);
  }
  return q;
}

// Brute force nearest codeword in float64: returns (index, error).
std::pair<uint32_t, double> brute_nearest(int bits, int dim, const float* A, const float* b, const float* x) {
  double best = INFINITY;
  uint32_t bi = 0;
  for (uint32_t c = 0; c < (1u << (bits * dim)); ++c) {
    double e = 0;
    for (int i = 0; i < dim; ++i) {
      double w = b[i];
      for (int j = 0; j < dim; ++j) w += double(A[i * dim + j]) * double((c >> (bits * j)) & ((1u << bits) - 1));
      e += (w - x[i]) * (w - x[i]);
    }
    if (e < best) {
      best = e;
      bi = c;
    }
  }
  return {bi, best};
}

double codeword_err(int bits, int dim, const float* A, const float* b, const float* x, uint32_t c) {
  double e = 0;
  for (int i = 0; i < dim; ++i) {
    double w = b[i];
    for (int j = 0; j < dim; ++j) w += double(A[i * dim + j]) * double((c >> (bits * j)) & ((1u << bits) - 1));
    e += (w - x[i]) * (w - x[i]);
  }
  return e;
}

lattq_layer view(const oracle::Layer& L, int layout, const uint8_t* codes) {
  lattq_layer v{};
  v.desc = {L.bits, L.dim, L.n, L.k, int32_t(L.had_in), int32_t(L.had_out)};
  v.layout = layout;
  v.codes = codes;
  v.A = L.A.data();
  v.b = L.b.data();
  v.su = L.su.data();
  v.sv = L.sv.data();
  v.bias = L.has_bias ? L.bias.data() : nullptr;
  return v;
}

}  // namespace

TEST(Decode, BothLayoutsAndTransformsMatchOracle) {
  for (uint64_t seed : oracle::seeds()) {
    LATTQ_SEED_TRACE(seed);
    oracle::Rng rng(seed);
    for (int bits = 1; bits <= 4; ++bits)
      for (int dim : {1, 2, 4, 8}) {
        if (bits * dim > 16) continue;
        const int64_t ks = k_step(bits, dim);
        const int64_t k = ks * 8, n = 20;
        const int64_t had_in = k & -k, had_out = 4;
        oracle::Layer L = random_layer(rng, bits, dim, n, k, had_in, had_out);
        lattq_layer_desc d{bits, dim, n, k, int32_t(had_in), int32_t(had_out)};
        std::vector<uint8_t> packed(static_cast<size_t>(lattq_packed_bytes(&d)));
        ASSERT_EQ(lattq_pack(&d, L.canonical.data(), packed.data()), LATTQ_OK);
        // oracle What and W = diag(SV) H_out^T What H_in diag(SU), float64, explicit matrices
        std::vector<double> what(static_cast<size_t>(n * k)), w;
        for (int64_t r = 0; r < n; ++r) {
          oracle::what_row(L, r, w);
          std::copy(w.begin(), w.end(), what.begin() + r * k);
        }
        const std::vector<double> hi = oracle::hadamard(had_in), ho = oracle::hadamard(had_out);
        std::vector<double> tmp(static_cast<size_t>(n * k), 0.0), W(static_cast<size_t>(n * k), 0.0);
        for (int64_t r = 0; r < n; ++r)
          for (int64_t c = 0; c < k; ++c) {
            const int64_t base = c / had_in * had_in;
            double acc = 0;
            for (int64_t j = 0; j < had_in; ++j) acc += what[static_cast<size_t>(r * k + base + j)] * hi[static_cast<size_t>(j * had_in + c - base)];
            tmp[static_cast<size_t>(r * k + c)] = acc;
          }
        for (int64_t r = 0; r < n; ++r)
          for (int64_t c = 0; c < k; ++c) {
            const int64_t base = r / had_out * had_out;
            double acc = 0;
            for (int64_t i = 0; i < had_out; ++i) acc += ho[static_cast<size_t>(i * had_out + r - base)] * tmp[static_cast<size_t>((base + i) * k + c)];
            W[static_cast<size_t>(r * k + c)] = double(L.sv[static_cast<size_t>(r)]) * acc * double(L.su[static_cast<size_t>(c)]);
          }
        for (int layout : {LATTQ_LAYOUT_CANONICAL, LATTQ_LAYOUT_TILED}) {
          lattq_layer v = view(L, layout, layout == LATTQ_LAYOUT_TILED ? packed.data() : L.canonical.data());
          std::vector<float> out(static_cast<size_t>(n * k));
          ASSERT_EQ(lattq_decode(&v, 0, out.data()), LATTQ_OK) << lattq_last_error();
          std::vector<double> got(out.begin(), out.end());
          // numeric tolerance: fp32 evaluation of at most 8 products per entry
          EXPECT_LE(oracle::rel_frobenius(got, what), 1e-6) << "bits=" << bits << " dim=" << dim << " layout=" << layout;
          ASSERT_EQ(lattq_decode(&v, 1, out.data()), LATTQ_OK) << lattq_last_error();
          got.assign(out.begin(), out.end());
          EXPECT_LE(oracle::rel_frobenius(got, W), 1e-5) << "bits=" << bits << " dim=" << dim << " layout=" << layout;
        }
      }
  }
}

TEST(Decode, RejectsBadArguments) {
  oracle::Rng rng(3);
  oracle::Layer L = random_layer(rng, 2, 4, 16, 64, 16, 16);
  lattq_layer v = view(L, LATTQ_LAYOUT_CANONICAL, L.canonical.data());
  std::vector<float> out(16 * 64);
  EXPECT_EQ(lattq_decode(&v, 2, out.data()), LATTQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lattq_last_error()).find("'with_transforms'"), std::string::npos);
  EXPECT_EQ(lattq_decode(&v, 0, nullptr), LATTQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lattq_last_error()).find("'out'"), std::string::npos);
  v.layout = 9;
  EXPECT_EQ(lattq_decode(&v, 0, out.data()), LATTQ_ERR_LAYOUT);
  EXPECT_NE(std::string(lattq_last_error()).find("'layer.layout' = 9"), std::string::npos) << lattq_last_error();
}

TEST(Encode, ExhaustiveIsTrueNearestForRandomMatrices) {
  for (uint64_t seed : oracle::seeds()) {
    LATTQ_SEED_TRACE(seed);
    oracle::Rng rng(seed);
    for (int bits = 1; bits <= 4; ++bits)
      for (int dim : {1, 2, 4, 8}) {
        if (bits * dim > 12) continue;  // keep the brute force small; 16-bit codes tested below
        std::vector<float> A(static_cast<size_t>(dim * dim)), b(static_cast<size_t>(dim));
        for (auto& a : A) a = rng.normalf();  // general, non-orthogonal
        for (auto& a : b) a = rng.normalf();
        const int64_t count = 200;
        std::vector<float> x(static_cast<size_t>(count * dim));
        for (auto& a : x) a = rng.normalf() * 2.0f;
        std::vector<uint16_t> idx(static_cast<size_t>(count));
        std::vector<float> err(static_cast<size_t>(count));
        for (int method : {LATTQ_ENCODE_EXHAUSTIVE, LATTQ_ENCODE_AUTO}) {
          ASSERT_EQ(lattq_encode_vectors(bits, dim, A.data(), b.data(), x.data(), count, method, idx.data(), err.data()),
                    LATTQ_OK)
              << lattq_last_error();
          for (int64_t i = 0; i < count; ++i) {
            const auto ref = brute_nearest(bits, dim, A.data(), b.data(), &x[static_cast<size_t>(i * dim)]);
            const double mine = codeword_err(bits, dim, A.data(), b.data(), &x[static_cast<size_t>(i * dim)], idx[static_cast<size_t>(i)]);
            // exact nearest up to float64 evaluation-order noise (a different index only at a tie)
            ASSERT_LE(mine, ref.second * (1 + 1e-12) + 1e-300) << "bits=" << bits << " dim=" << dim << " i=" << i;
            if (idx[static_cast<size_t>(i)] != ref.first) ASSERT_NEAR(mine, ref.second, 1e-12 * (1 + ref.second));
            ASSERT_NEAR(err[static_cast<size_t>(i)], ref.second, 1e-6 * (1 + ref.second));
          }
        }
      }
  }
}

TEST(Encode, SixteenBitCodes) {
  oracle::Rng rng(11);
  for (auto bd : {std::pair<int, int>{2, 8}, {4, 4}}) {
    const int bits = bd.first, dim = bd.second;
    std::vector<float> A(static_cast<size_t>(dim * dim)), b(static_cast<size_t>(dim));
    for (auto& a : A) a = rng.normalf();
    for (auto& a : b) a = rng.normalf();
    std::vector<float> x(static_cast<size_t>(5 * dim));
    for (auto& a : x) a = rng.normalf() * 3.0f;
    std::vector<uint16_t> idx(5);
    ASSERT_EQ(lattq_encode_vectors(bits, dim, A.data(), b.data(), x.data(), 5, LATTQ_ENCODE_EXHAUSTIVE, idx.data(), nullptr),
              LATTQ_OK);
    for (int i = 0; i < 5; ++i) {
      const auto ref = brute_nearest(bits, dim, A.data(), b.data(), &x[static_cast<size_t>(i * dim)]);
      EXPECT_LE(codeword_err(bits, dim, A.data(), b.data(), &x[static_cast<size_t>(i * dim)], idx[static_cast<size_t>(i)]), ref.second * (1 + 1e-12));
    }
  }
}

TEST(Encode, TiesGoToTheSmallerIndex) {
  // A = I, b = 0, bits = 2: x = 1.5 is equidistant from 1 and 2 -> index 1; (1.5, 0.5) -> z = (1, 0)
  const float A1[1] = {1.0f}, b1[1] = {0.0f};
  const float x1[3] = {1.5f, 0.5f, 2.5f};
  uint16_t idx[3];
  for (int method : {LATTQ_ENCODE_EXHAUSTIVE, LATTQ_ENCODE_ORTHOGONAL, LATTQ_ENCODE_AUTO}) {
    ASSERT_EQ(lattq_encode_vectors(2, 1, A1, b1, x1, 3, method, idx, nullptr), LATTQ_OK);
    EXPECT_EQ(idx[0], 1) << method;
    EXPECT_EQ(idx[1], 0) << method;
    EXPECT_EQ(idx[2], 2) << method;
  }
  const float A2[4] = {1, 0, 0, 1}, b2[2] = {0, 0}, x2[2] = {1.5f, 0.5f};
  for (int method : {LATTQ_ENCODE_EXHAUSTIVE, LATTQ_ENCODE_ORTHOGONAL}) {
    ASSERT_EQ(lattq_encode_vectors(2, 2, A2, b2, x2, 1, method, idx, nullptr), LATTQ_OK);
    EXPECT_EQ(idx[0], 1) << method;  // z = (1, 0)
  }
}

TEST(Encode, OrthogonalFastPathEqualsExhaustive) {
  for (uint64_t seed : oracle::seeds()) {
    LATTQ_SEED_TRACE(seed);
    oracle::Rng rng(seed);
    for (int bits = 1; bits <= 4; ++bits)
      for (int dim : {1, 2, 4, 8}) {
        if (bits * dim > 12) continue;
        // (a) exactly representable orthogonal matrix: signed permutation times a power-of-two scale
        //     (and the 4x4 Hadamard/2, entries +-0.5): ties are impossible to misjudge, indices must agree
        // (b) random orthogonal Q in float32 (rounded): squared errors must agree to fp32 level
        for (int variant = 0; variant < 2; ++variant) {
          std::vector<float> A(static_cast<size_t>(dim * dim), 0.0f), b(static_cast<size_t>(dim));
          const double s = variant == 0 ? 0.5 : 0.7 + rng.normal() * 0.1;
          if (variant == 0) {
            if (dim == 4 && (seed & 1)) {
              for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) A[static_cast<size_t>(i * 4 + j)] = float(s * ((oracle::popcount(uint64_t(i & j)) & 1) ? -0.5 : 0.5));
            } else {
              std::vector<int> perm(static_cast<size_t>(dim));
              for (int i = 0; i < dim; ++i) perm[static_cast<size_t>(i)] = i;
              std::shuffle(perm.begin(), perm.end(), rng.g);
              for (int i = 0; i < dim; ++i) A[static_cast<size_t>(i * dim + perm[static_cast<size_t>(i)])] = float((rng.g() & 1) ? s : -s);
            }
          } else {
            const std::vector<double> q = random_orthogonal(rng, dim);
            for (int i = 0; i < dim * dim; ++i) A[static_cast<size_t>(i)] = float(s * q[static_cast<size_t>(i)]);
          }
          for (auto& a : b) a = rng.normalf();
          const int64_t count = 300;
          std::vector<float> x(static_cast<size_t>(count * dim));
          for (auto& a : x) a = rng.normalf() * float(s) * float(1 << bits);
          std::vector<uint16_t> fast(static_cast<size_t>(count)), exh(static_cast<size_t>(count)), autoi(static_cast<size_t>(count));
          std::vector<float> ef(static_cast<size_t>(count)), ee(static_cast<size_t>(count));
          ASSERT_EQ(lattq_encode_vectors(bits, dim, A.data(), b.data(), x.data(), count, LATTQ_ENCODE_ORTHOGONAL, fast.data(),
                                         ef.data()),
                    LATTQ_OK)
              << lattq_last_error();
          ASSERT_EQ(lattq_encode_vectors(bits, dim, A.data(), b.data(), x.data(), count, LATTQ_ENCODE_EXHAUSTIVE, exh.data(),
                                         ee.data()),
                    LATTQ_OK);
          ASSERT_EQ(lattq_encode_vectors(bits, dim, A.data(), b.data(), x.data(), count, LATTQ_ENCODE_AUTO, autoi.data(), nullptr),
                    LATTQ_OK);
          EXPECT_EQ(autoi, fast) << "AUTO must take the orthogonal path on s*Q";
          for (int64_t i = 0; i < count; ++i) {
            const auto ref = brute_nearest(bits, dim, A.data(), b.data(), &x[static_cast<size_t>(i * dim)]);
            if (variant == 0) {
              ASSERT_EQ(fast[static_cast<size_t>(i)], exh[static_cast<size_t>(i)]) << "bits=" << bits << " dim=" << dim << " i=" << i;
              ASSERT_EQ(fast[static_cast<size_t>(i)], ref.first);
            } else {
              const double mf = codeword_err(bits, dim, A.data(), b.data(), &x[static_cast<size_t>(i * dim)], fast[static_cast<size_t>(i)]);
              ASSERT_LE(mf, ref.second + 1e-5 * (1 + ref.second)) << "bits=" << bits << " dim=" << dim << " i=" << i;
            }
          }
        }
      }
  }
}

TEST(Encode, OrthogonalOnGeneralMatrixIsAnError) {
  const float A[4] = {1.0f, 0.3f, 0.0f, 1.0f}, b[2] = {0, 0}, x[2] = {0.2f, 0.9f};
  uint16_t idx[1];
  EXPECT_EQ(lattq_encode_vectors(2, 2, A, b, x, 1, LATTQ_ENCODE_ORTHOGONAL, idx, nullptr), LATTQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lattq_last_error()).find("'A' is not a scaled orthogonal"), std::string::npos) << lattq_last_error();
  // AUTO falls back to the exhaustive search
  ASSERT_EQ(lattq_encode_vectors(2, 2, A, b, x, 1, LATTQ_ENCODE_AUTO, idx, nullptr), LATTQ_OK);
  EXPECT_EQ(idx[0], brute_nearest(2, 2, A, b, x).first);
}

TEST(Encode, RejectsBadArguments) {
  const float A[4] = {1, 0, 0, 1}, b[2] = {0, 0}, x[2] = {0, 0};
  const float An[4] = {1, NAN, 0, 1}, xn[2] = {0, INFINITY};
  uint16_t idx[1];
  struct Case {
    lattq_status st;
    const char* needle;
    lattq_status got;
  } cases[] = {
      {LATTQ_ERR_INVALID_ARGUMENT, "'bits' = 5", lattq_encode_vectors(5, 2, A, b, x, 1, 0, idx, nullptr)},
      {LATTQ_ERR_INVALID_ARGUMENT, "'dim' = 3", lattq_encode_vectors(2, 3, A, b, x, 1, 0, idx, nullptr)},
      {LATTQ_ERR_INVALID_ARGUMENT, "'A' is null", lattq_encode_vectors(2, 2, nullptr, b, x, 1, 0, idx, nullptr)},
      {LATTQ_ERR_INVALID_ARGUMENT, "'b' is null", lattq_encode_vectors(2, 2, A, nullptr, x, 1, 0, idx, nullptr)},
      {LATTQ_ERR_INVALID_ARGUMENT, "'x' is null", lattq_encode_vectors(2, 2, A, b, nullptr, 1, 0, idx, nullptr)},
      {LATTQ_ERR_INVALID_ARGUMENT, "'idx' is null", lattq_encode_vectors(2, 2, A, b, x, 1, 0, nullptr, nullptr)},
      {LATTQ_ERR_INVALID_ARGUMENT, "'method' = 7", lattq_encode_vectors(2, 2, A, b, x, 1, 7, idx, nullptr)},
      {LATTQ_ERR_SHAPE, "'count' = -1", lattq_encode_vectors(2, 2, A, b, x, -1, 0, idx, nullptr)},
      {LATTQ_ERR_NONFINITE, "'A' contains NaN/Inf at index 1", lattq_encode_vectors(2, 2, An, b, x, 1, 0, idx, nullptr)},
      {LATTQ_ERR_NONFINITE, "'x' contains NaN/Inf at index 1", lattq_encode_vectors(2, 2, A, b, xn, 1, 0, idx, nullptr)},
  };
  // messages are per call: re-run each to read its message
  EXPECT_EQ(cases[0].got, cases[0].st);
  for (auto& c : cases) EXPECT_EQ(c.got, c.st) << c.needle;
  EXPECT_EQ(lattq_encode_vectors(2, 2, An, b, x, 1, 0, idx, nullptr), LATTQ_ERR_NONFINITE);
  EXPECT_NE(std::string(lattq_last_error()).find("'A' contains NaN/Inf at index 1"), std::string::npos) << lattq_last_error();
  EXPECT_EQ(lattq_encode_vectors(2, 2, A, b, xn, 1, 0, idx, nullptr), LATTQ_ERR_NONFINITE);
  EXPECT_NE(std::string(lattq_last_error()).find("'x' contains NaN/Inf at index 1"), std::string::npos) << lattq_last_error();
  EXPECT_EQ(lattq_encode_vectors(2, 3, A, b, x, 1, 0, idx, nullptr), LATTQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lattq_last_error()).find("'dim' = 3"), std::string::npos) << lattq_last_error();
  // count 0 with null buffers is a valid no-op
  EXPECT_EQ(lattq_encode_vectors(2, 2, A, b, nullptr, 0, 0, nullptr, nullptr), LATTQ_OK);
}

TEST(Encode, MatrixRoundTripsThroughDecode) {
  for (uint64_t seed : oracle::seeds()) {
    LATTQ_SEED_TRACE(seed);
    oracle::Rng rng(seed);
    for (int bits = 1; bits <= 4; ++bits)
      for (int dim : {1, 2, 4}) {
        const int64_t n = 9, k = k_step(bits, dim) * 5;
        oracle::Layer L = random_layer(rng, bits, dim, n, k, 1, 1);
        // What exactly on the lattice: decode of random codes -> encode must return the same codes
        lattq_layer v = view(L, LATTQ_LAYOUT_CANONICAL, L.canonical.data());
        std::vector<float> what(static_cast<size_t>(n * k));
        ASSERT_EQ(lattq_decode(&v, 0, what.data()), LATTQ_OK);
        lattq_layer_desc d = v.desc;
        std::vector<uint8_t> codes(static_cast<size_t>(n * L.row_bytes()));
        ASSERT_EQ(lattq_encode_matrix(&d, L.A.data(), L.b.data(), what.data(), LATTQ_ENCODE_EXHAUSTIVE, codes.data()), LATTQ_OK)
            << lattq_last_error();
        // the codewords of the codes found are the nearest ones: with a generic A, the encoded point
        // is exactly (up to fp32 rounding of What) the original codeword
        for (int64_t r = 0; r < n; ++r)
          for (int64_t g = 0; g < k / dim; ++g) {
            uint32_t c0 = 0, c1 = 0;
            for (int j = 0; j < dim; ++j) {
              c0 |= oracle::field(&L.canonical[static_cast<size_t>(r * L.row_bytes())], g * dim + j, bits) << (bits * j);
              c1 |= oracle::field(&codes[static_cast<size_t>(r * L.row_bytes())], g * dim + j, bits) << (bits * j);
            }
            const double e1 = codeword_err(bits, dim, L.A.data(), L.b.data(), &what[static_cast<size_t>(r * k + g * dim)], c1);
            const double e0 = codeword_err(bits, dim, L.A.data(), L.b.data(), &what[static_cast<size_t>(r * k + g * dim)], c0);
            ASSERT_LE(e1, e0 + 1e-12);
          }
      }
  }
}

TEST(Fwht, MatchesExplicitHadamardAndIsAnInvolution) {
  for (uint64_t seed : oracle::seeds()) {
    LATTQ_SEED_TRACE(seed);
    oracle::Rng rng(seed);
    for (int32_t block : {1, 2, 16, 64, 128, 512}) {
      const int64_t rows = 3, len = int64_t(block) * 3;
      std::vector<float> x(static_cast<size_t>(rows * len));
      for (auto& v : x) v = rng.normalf();
      std::vector<float> y = x;
      ASSERT_EQ(lattq_fwht_f32(y.data(), rows, len, block), LATTQ_OK) << lattq_last_error();
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<double> ref(x.begin() + r * len, x.begin() + (r + 1) * len);
        oracle::block_hadamard(ref, block);
        std::vector<double> got(y.begin() + r * len, y.begin() + (r + 1) * len);
        EXPECT_LE(oracle::rel_frobenius(got, ref), 1e-6) << "block " << block;  // numeric tolerance (fp32)
      }
      ASSERT_EQ(lattq_fwht_f32(y.data(), rows, len, block), LATTQ_OK);
      std::vector<double> back(y.begin(), y.end()), orig(x.begin(), x.end());
      EXPECT_LE(oracle::rel_frobenius(back, orig), 1e-6) << "involution, block " << block;
    }
  }
}

TEST(Fwht, RejectsBadArguments) {
  std::vector<float> x(48);
  EXPECT_EQ(lattq_fwht_f32(x.data(), 1, 48, 48), LATTQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lattq_last_error()).find("'block' = 48 is not a power of two"), std::string::npos);
  EXPECT_EQ(lattq_fwht_f32(x.data(), 1, 48, 32), LATTQ_ERR_SHAPE);
  EXPECT_NE(std::string(lattq_last_error()).find("'len' = 48"), std::string::npos);
  EXPECT_EQ(lattq_fwht_f32(nullptr, 1, 48, 16), LATTQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lattq_last_error()).find("'data' is null"), std::string::npos);
  EXPECT_EQ(lattq_fwht_f32(x.data(), -1, 48, 16), LATTQ_ERR_SHAPE);
  EXPECT_EQ(lattq_fwht_f32(x.data(), 1, -48, 16), LATTQ_ERR_SHAPE);
  EXPECT_EQ(lattq_fwht_f32(x.data(), 1, 48, 0), LATTQ_ERR_INVALID_ARGUMENT);
}

TEST(Encode, LargeCountUsesThreadsAndStaysExact) {
  const uint64_t seed = oracle::fresh_seed();
  LATTQ_SEED_TRACE(seed);
  oracle::Rng rng(seed);
  const int bits = 2, dim = 4;
  std::vector<float> A(16), b(4);
  for (auto& a : A) a = rng.normalf();
  for (auto& a : b) a = rng.normalf();
  const int64_t count = 5000;
  std::vector<float> x(static_cast<size_t>(count * dim));
  for (auto& a : x) a = rng.normalf() * 2.0f;
  std::vector<uint16_t> idx(static_cast<size_t>(count));
  std::vector<float> err(static_cast<size_t>(count));
  ASSERT_EQ(lattq_encode_vectors(bits, dim, A.data(), b.data(), x.data(), count, LATTQ_ENCODE_AUTO, idx.data(), err.data()),
            LATTQ_OK);
  for (int64_t i = 0; i < count; ++i) {
    const auto ref = brute_nearest(bits, dim, A.data(), b.data(), &x[static_cast<size_t>(i * dim)]);
    const double mine = codeword_err(bits, dim, A.data(), b.data(), &x[static_cast<size_t>(i * dim)], idx[static_cast<size_t>(i)]);
    ASSERT_LE(mine, ref.second * (1 + 1e-12)) << i;
    ASSERT_NEAR(err[static_cast<size_t>(i)], ref.second, 1e-6 * (1 + ref.second)) << i;
  }
}

TEST(Fwht, AllKernelsGiveIdenticalBits) {
  const uint64_t seed = oracle::fresh_seed();
  LATTQ_SEED_TRACE(seed);
  oracle::Rng rng(seed);
  for (int32_t block : {1, 4, 8, 16, 32, 128, 4096}) {
    const int64_t len = 8192;
    std::vector<float> x(static_cast<size_t>(2 * len));
    for (auto& v : x) v = rng.normalf();
    std::vector<std::vector<float>> outs;
    for (int k : {LATTQ_CPU_KERNEL_SCALAR, LATTQ_CPU_KERNEL_AVX2, LATTQ_CPU_KERNEL_AVX512}) {
      if (lattq_set_cpu_kernel(k) != LATTQ_OK) continue;
      std::vector<float> y = x;
      ASSERT_EQ(lattq_fwht_f32(y.data(), 2, len, block), LATTQ_OK);
      outs.push_back(y);
    }
    lattq_set_cpu_kernel(LATTQ_CPU_KERNEL_AUTO);
    for (size_t i = 1; i < outs.size(); ++i) EXPECT_EQ(outs[i], outs[0]) << "block " << block;  // bit-exact
  }
}
