// Format: descriptor validation, sizes, pack/unpack (bit-exact tolerance), element conversions.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "lattq/lattq.h"
#include "lattq/lattq.hpp"
#include "oracle.hpp"

namespace {

struct BD {
  int bits, dim;
};
std::vector<BD> valid_bits_dims() {
  std::vector<BD> v;
  for (int b = 1; b <= 4; ++b)
    for (int d : {1, 2, 4, 8})
      if (b * d <= 16) v.push_back({b, d});
  return v;
}
// smallest K step so that K % dim == 0 and K*bits % 8 == 0
int64_t k_step(int bits, int dim) {
  int64_t s = dim;
  while ((s * bits) % 8) s += dim;
  return s;
}

}  // namespace

TEST(Version, Strings) {
  EXPECT_EQ(lattq_format_version(), LATTQ_FORMAT_VERSION);
  EXPECT_EQ(lattq_format_version(), 1);
  EXPECT_GT(std::strlen(lattq_version_string()), 0u);
  EXPECT_STREQ(lattq_status_string(LATTQ_OK), "LATTQ_OK");
  EXPECT_STREQ(lattq_status_string(LATTQ_ERR_WORKSPACE), "LATTQ_ERR_WORKSPACE");
  EXPECT_STREQ(lattq::version_string(), lattq_version_string());
}

TEST(Format, SizesFollowTheSpec) {
  for (BD bd : valid_bits_dims()) {
    const int64_t ks = k_step(bd.bits, bd.dim);
    for (int64_t n : {1, 15, 16, 17, 33}) {
      for (int64_t k : {ks, ks * 3, ks * 17, ks * 64}) {
        lattq_layer_desc d{bd.bits, bd.dim, n, k, 1, 1};
        ASSERT_EQ(lattq_validate_desc(&d), LATTQ_OK) << lattq_last_error();
        const int64_t R = k * bd.bits / 8;
        EXPECT_EQ(lattq_canonical_bytes(&d), n * R);
        EXPECT_EQ(lattq_packed_bytes(&d), ((n + 15) / 16) * ((R + 15) / 16) * 256);
      }
    }
  }
}

TEST(Pack, MatchesIndependentFormulaAndRoundTripsBitExact) {
  for (uint64_t seed : oracle::seeds()) {
    LATTQ_SEED_TRACE(seed);
    oracle::Rng rng(seed);
    for (BD bd : valid_bits_dims()) {
      const int64_t ks = k_step(bd.bits, bd.dim);
      for (int64_t n : {1, 5, 16, 17, 40}) {
        // ragged: row bytes not a multiple of 16 in most cases
        for (int64_t mult : {int64_t(1), int64_t(3), rng.uniform(1, 50)}) {
          const int64_t k = ks * mult;
          lattq_layer_desc d{bd.bits, bd.dim, n, k, 1, 1};
          const int64_t R = k * bd.bits / 8;
          std::vector<uint8_t> canon(static_cast<size_t>(n * R));
          for (auto& c : canon) c = rng.byte();
          const int64_t pb = lattq_packed_bytes(&d);
          std::vector<uint8_t> packed(static_cast<size_t>(pb), 0xAB);  // garbage: padding must be zeroed by pack
          ASSERT_EQ(lattq_pack(&d, canon.data(), packed.data()), LATTQ_OK) << lattq_last_error();
          // independent formula: every canonical byte at its offset, everything else zero
          std::vector<uint8_t> expect(static_cast<size_t>(pb), 0);
          for (int64_t r = 0; r < n; ++r)
            for (int64_t byte = 0; byte < R; ++byte)
              expect[static_cast<size_t>(oracle::tiled_offset(r, byte, R))] = canon[static_cast<size_t>(r * R + byte)];
          ASSERT_EQ(packed, expect) << "bits=" << bd.bits << " dim=" << bd.dim << " n=" << n << " k=" << k;
          std::vector<uint8_t> back(static_cast<size_t>(n * R), 0x5A);
          ASSERT_EQ(lattq_unpack(&d, packed.data(), back.data()), LATTQ_OK) << lattq_last_error();
          ASSERT_EQ(back, canon);
        }
      }
    }
  }
}

TEST(Pack, FieldOrderIsLittleEndianBitstream) {
  // k=2, d=4: byte g of a row is exactly the code index of group g (docs/format.md §3)
  std::vector<uint8_t> row = {0xE4, 0x1B};  // 0xE4 = fields 0,1,2,3
  EXPECT_EQ(oracle::field(row.data(), 0, 2), 0u);
  EXPECT_EQ(oracle::field(row.data(), 1, 2), 1u);
  EXPECT_EQ(oracle::field(row.data(), 2, 2), 2u);
  EXPECT_EQ(oracle::field(row.data(), 3, 2), 3u);
  EXPECT_EQ(oracle::field(row.data(), 4, 2), 3u);
  // k=3: field 2 straddles bytes 0 and 1 (bits 6,7,8)
  std::vector<uint8_t> r3 = {0x80, 0x01, 0x00};
  EXPECT_EQ(oracle::field(r3.data(), 2, 3), 6u);
}

TEST(Pack, RejectsBadArguments) {
  lattq_layer_desc d{2, 4, 16, 64, 1, 1};
  std::vector<uint8_t> a(4096), b(4096);
  EXPECT_EQ(lattq_pack(&d, nullptr, b.data()), LATTQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lattq_last_error()).find("'canonical'"), std::string::npos) << lattq_last_error();
  EXPECT_EQ(lattq_pack(&d, a.data(), nullptr), LATTQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lattq_last_error()).find("'packed'"), std::string::npos) << lattq_last_error();
  EXPECT_EQ(lattq_unpack(&d, nullptr, b.data()), LATTQ_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(lattq_unpack(&d, a.data(), nullptr), LATTQ_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(lattq_pack(&d, a.data(), a.data() + 8), LATTQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lattq_last_error()).find("overlap"), std::string::npos) << lattq_last_error();
  EXPECT_EQ(lattq_pack(nullptr, a.data(), b.data()), LATTQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lattq_last_error()).find("'desc'"), std::string::npos) << lattq_last_error();
  lattq_layer_desc bad = d;
  bad.k = 10;
  EXPECT_EQ(lattq_pack(&bad, a.data(), b.data()), LATTQ_ERR_SHAPE);
  EXPECT_EQ(lattq_canonical_bytes(&bad), -1);
  EXPECT_EQ(lattq_packed_bytes(&bad), -1);
  EXPECT_EQ(lattq_packed_bytes(nullptr), -1);
}

// ---- descriptor validation: every field ----------------------------------------------------------
struct DescCase {
  const char* what;
  lattq_layer_desc d;
  lattq_status status;
  const char* needle;
};

TEST(Desc, EveryFieldValidated) {
  const lattq_layer_desc ok{2, 4, 64, 128, 16, 64};
  ASSERT_EQ(lattq_validate_desc(&ok), LATTQ_OK);
  auto with = [&](auto f) {
    lattq_layer_desc d = ok;
    f(d);
    return d;
  };
  const DescCase cases[] = {
      {"bits 0", with([](lattq_layer_desc& d) { d.bits = 0; }), LATTQ_ERR_INVALID_ARGUMENT, "'desc.bits' = 0"},
      {"bits 5", with([](lattq_layer_desc& d) { d.bits = 5; }), LATTQ_ERR_INVALID_ARGUMENT, "'desc.bits' = 5"},
      {"dim 3", with([](lattq_layer_desc& d) { d.dim = 3; }), LATTQ_ERR_INVALID_ARGUMENT, "'desc.dim' = 3"},
      {"dim 16", with([](lattq_layer_desc& d) { d.dim = 16; }), LATTQ_ERR_INVALID_ARGUMENT, "'desc.dim' = 16"},
      {"bits*dim 24", with([](lattq_layer_desc& d) { d.bits = 3; d.dim = 8; }), LATTQ_ERR_INVALID_ARGUMENT,
       "'desc.dim'"},
      {"n 0", with([](lattq_layer_desc& d) { d.n = 0; }), LATTQ_ERR_SHAPE, "'desc.n' = 0"},
      {"n negative", with([](lattq_layer_desc& d) { d.n = -16; }), LATTQ_ERR_SHAPE, "'desc.n' = -16"},
      {"k 0", with([](lattq_layer_desc& d) { d.k = 0; }), LATTQ_ERR_SHAPE, "'desc.k' = 0"},
      {"k huge", with([](lattq_layer_desc& d) { d.k = int64_t(1) << 40; }), LATTQ_ERR_SHAPE, "'desc.k'"},
      {"k % dim", with([](lattq_layer_desc& d) { d.k = 130; d.had_in = 1; }), LATTQ_ERR_SHAPE, "'desc.k' = 130"},
      {"k*bits % 8", with([](lattq_layer_desc& d) { d.bits = 3; d.dim = 1; d.k = 12; d.had_in = 1; }),
       LATTQ_ERR_SHAPE, "'desc.k' = 12"},
      {"had_in not pow2", with([](lattq_layer_desc& d) { d.had_in = 48; }), LATTQ_ERR_INVALID_ARGUMENT,
       "'desc.had_in' = 48 is not a power of two"},
      {"had_in 0", with([](lattq_layer_desc& d) { d.had_in = 0; }), LATTQ_ERR_INVALID_ARGUMENT, "'desc.had_in' = 0"},
      {"had_in negative", with([](lattq_layer_desc& d) { d.had_in = -4; }), LATTQ_ERR_INVALID_ARGUMENT,
       "'desc.had_in' = -4"},
      {"had_in does not divide k", with([](lattq_layer_desc& d) { d.had_in = 256; }), LATTQ_ERR_SHAPE,
       "'desc.had_in' = 256 does not divide"},
      {"had_out not pow2", with([](lattq_layer_desc& d) { d.had_out = 12; }), LATTQ_ERR_INVALID_ARGUMENT,
       "'desc.had_out' = 12 is not a power of two"},
      {"had_out does not divide n", with([](lattq_layer_desc& d) { d.had_out = 128; }), LATTQ_ERR_SHAPE,
       "'desc.had_out' = 128 does not divide"},
  };
  for (const DescCase& c : cases) {
    EXPECT_EQ(lattq_validate_desc(&c.d), c.status) << c.what;
    EXPECT_NE(std::string(lattq_last_error()).find(c.needle), std::string::npos)
        << c.what << ": message '" << lattq_last_error() << "' does not contain '" << c.needle << "'";
    EXPECT_NE(std::string(lattq_last_error()).find("lattq_validate_desc"), std::string::npos) << c.what;
    EXPECT_EQ(lattq_canonical_bytes(&c.d), -1) << c.what;
  }
  EXPECT_EQ(lattq_validate_desc(nullptr), LATTQ_ERR_INVALID_ARGUMENT);
  // a 576 = 64*9 dimension takes a 64 block, not 128
  lattq_layer_desc d576{2, 4, 1536, 576, 64, 512};
  EXPECT_EQ(lattq_validate_desc(&d576), LATTQ_OK) << lattq_last_error();
  d576.had_in = 128;
  EXPECT_EQ(lattq_validate_desc(&d576), LATTQ_ERR_SHAPE);
}

// ---- fp16 / bf16 conversions ---------------------------------------------------------------------
TEST(Convert, HalfRoundTripAllValues) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = lattq::half_to_float(uint16_t(h));
    const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 31 && m != 0) {
      EXPECT_TRUE(std::isnan(f)) << h;
      EXPECT_TRUE(std::isnan(lattq::half_to_float(lattq::float_to_half(f))));
      continue;
    }
    // value from the definition
    double v = e == 0 ? std::ldexp(double(m), -24) : (e == 31 ? HUGE_VAL : std::ldexp(1.0 + m / 1024.0, int(e) - 15));
    if (h & 0x8000) v = -v;
    EXPECT_EQ(double(f), v) << "half bits " << h;
    EXPECT_EQ(lattq::float_to_half(f), uint16_t(h)) << "half bits " << h;
  }
}

TEST(Convert, RoundToNearestEvenAgainstOracle) {
  for (uint64_t seed : oracle::seeds()) {
    LATTQ_SEED_TRACE(seed);
    oracle::Rng rng(seed);
    for (int i = 0; i < 200000; ++i) {
      // random bit patterns over a wide exponent range, plus values near half/bf16 ties
      uint32_t bits = uint32_t(rng.g());
      float f;
      std::memcpy(&f, &bits, 4);
      if (!std::isfinite(f)) continue;
      if (i % 2) f = std::ldexp(float(rng.normal()), int(rng.uniform(-30, 17)));
      if (i % 5 == 0) {  // exact ties for half: 11 significant bits + one half-ulp bit
        const double t = std::ldexp(double(rng.uniform(1024, 2047)) + 0.5, int(rng.uniform(-24, 5)));
        f = float(t);
      }
      const double hf = lattq::half_to_float(lattq::float_to_half(f));
      const double href = oracle::round_f16(f);
      ASSERT_EQ(hf, href) << "f16 of " << f;
      const double bf = lattq::bfloat16_to_float(lattq::float_to_bfloat16(f));
      const double bref = oracle::round_bf16(f);
      ASSERT_EQ(bf, bref) << "bf16 of " << f;
    }
  }
  EXPECT_TRUE(std::isinf(lattq::half_to_float(lattq::float_to_half(65520.0f))));
  EXPECT_EQ(lattq::half_to_float(lattq::float_to_half(65519.0f)), 65504.0f);
  EXPECT_TRUE(std::isnan(lattq::bfloat16_to_float(lattq::float_to_bfloat16(NAN))));
  EXPECT_TRUE(std::isinf(lattq::bfloat16_to_float(lattq::float_to_bfloat16(INFINITY))));
}
