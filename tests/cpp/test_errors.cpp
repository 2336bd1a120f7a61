// Error paths of lattq_forward / lattq_validate_layer / lattq_forward_workspace_size: each bad input
// returns the right status and a message that names the argument as the C API parameter is named.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <thread>
#include <string>
#include <vector>

#include "lattq/lattq.h"

namespace {

struct Fixture {
  lattq_layer_desc d{2, 4, 32, 128, 64, 16};
  std::vector<uint8_t> codes;
  std::vector<float> A, b, su, sv, bias;
  lattq_layer layer{};
  void* ws = nullptr;
  size_t wsb = 0;
  std::vector<float> x, y;
  std::vector<uint16_t> xh, yh;
  int64_t m = 3;

  Fixture() {
    codes.assign(static_cast<size_t>(lattq_packed_bytes(&d)), 0x1b);
    A = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    b = {-1.5f, -1.5f, -1.5f, -1.5f};
    su.assign(128, 1.0f);
    sv.assign(32, 1.0f);
    bias.assign(32, 0.5f);
    layer = {d, LATTQ_LAYOUT_TILED, codes.data(), A.data(), b.data(), su.data(), sv.data(), bias.data()};
    EXPECT_EQ(lattq_forward_workspace_size(&d, m, &wsb), LATTQ_OK);
    if (posix_memalign(&ws, 64, wsb + 128) != 0) ws = nullptr;
    x.assign(static_cast<size_t>(m * 128 + 8), 0.25f);
    y.assign(static_cast<size_t>(m * 32 + 8), 0.0f);
    xh.assign(static_cast<size_t>(m * 128 + 8), 0x3c00);
    yh.assign(static_cast<size_t>(m * 32 + 8), 0);
  }
  ~Fixture() { std::free(ws); }
  lattq_status fwd() { return lattq_forward(&layer, x.data(), LATTQ_F32, m, y.data(), ws, wsb, 0); }
};

void expect_error(lattq_status got, lattq_status want, const std::string& needle, const std::string& what) {
  EXPECT_EQ(got, want) << what << ": " << lattq_last_error();
  const std::string msg = lattq_last_error();
  EXPECT_NE(msg.find(needle), std::string::npos) << what << ": message '" << msg << "' lacks '" << needle << "'";
}

}  // namespace

TEST(Errors, BaselineIsValid) {
  Fixture f;
  EXPECT_EQ(lattq_validate_layer(&f.layer), LATTQ_OK) << lattq_last_error();
  EXPECT_EQ(f.fwd(), LATTQ_OK) << lattq_last_error();
  // m = 0 is a no-op
  EXPECT_EQ(lattq_forward(&f.layer, nullptr, LATTQ_F32, 0, nullptr, nullptr, 0, 0), LATTQ_OK);
}

TEST(Errors, EveryDescFieldThroughForward) {
  struct C {
    const char* what;
    std::function<void(lattq_layer_desc&)> mut;
    lattq_status st;
    const char* needle;
  };
  const C cases[] = {
      {"bits", [](lattq_layer_desc& d) { d.bits = 7; }, LATTQ_ERR_INVALID_ARGUMENT, "'layer.desc.bits' = 7"},
      {"dim", [](lattq_layer_desc& d) { d.dim = 5; }, LATTQ_ERR_INVALID_ARGUMENT, "'layer.desc.dim' = 5"},
      {"bits*dim", [](lattq_layer_desc& d) { d.bits = 4; d.dim = 8; }, LATTQ_ERR_INVALID_ARGUMENT, "'layer.desc.dim'"},
      {"n", [](lattq_layer_desc& d) { d.n = 0; }, LATTQ_ERR_SHAPE, "'layer.desc.n' = 0"},
      {"k", [](lattq_layer_desc& d) { d.k = -4; }, LATTQ_ERR_SHAPE, "'layer.desc.k' = -4"},
      {"k % dim", [](lattq_layer_desc& d) { d.k = 126; d.had_in = 2; }, LATTQ_ERR_SHAPE, "'layer.desc.k' = 126 is not divisible"},
      {"k % had_in", [](lattq_layer_desc& d) { d.k = 96; }, LATTQ_ERR_SHAPE, "'layer.desc.had_in' = 64 does not divide"},
      {"had_in pow2", [](lattq_layer_desc& d) { d.had_in = 48; }, LATTQ_ERR_INVALID_ARGUMENT,
       "'layer.desc.had_in' = 48 is not a power of two"},
      {"had_out pow2", [](lattq_layer_desc& d) { d.had_out = 3; }, LATTQ_ERR_INVALID_ARGUMENT,
       "'layer.desc.had_out' = 3 is not a power of two"},
      {"n % had_out", [](lattq_layer_desc& d) { d.had_out = 64; }, LATTQ_ERR_SHAPE,
       "'layer.desc.had_out' = 64 does not divide"},
  };
  for (const C& c : cases) {
    Fixture f;
    c.mut(f.layer.desc);
    expect_error(f.fwd(), c.st, c.needle, c.what);
    EXPECT_NE(std::string(lattq_last_error()).find("lattq_forward:"), std::string::npos);
    expect_error(lattq_validate_layer(&f.layer), c.st, c.needle, std::string("validate ") + c.what);
    size_t bytes = 0;
    expect_error(lattq_forward_workspace_size(&f.layer.desc, 1, &bytes), c.st,
                 std::string(c.needle).replace(1, 6, ""), std::string("workspace_size ") + c.what);
  }
}

TEST(Errors, NullPointers) {
  {
    Fixture f;
    expect_error(lattq_forward(nullptr, f.x.data(), LATTQ_F32, f.m, f.y.data(), f.ws, f.wsb, 0), LATTQ_ERR_INVALID_ARGUMENT,
                 "'layer' is null", "layer");
  }
  const char* fields[] = {"codes", "A", "b", "su", "sv"};
  for (const char* fld : fields) {
    Fixture f;
    const std::string s = fld;
    if (s == "codes") f.layer.codes = nullptr;
    if (s == "A") f.layer.A = nullptr;
    if (s == "b") f.layer.b = nullptr;
    if (s == "su") f.layer.su = nullptr;
    if (s == "sv") f.layer.sv = nullptr;
    expect_error(f.fwd(), LATTQ_ERR_INVALID_ARGUMENT, "'layer." + s + "' is null", s);
  }
  Fixture f;
  f.layer.bias = nullptr;  // bias is optional
  EXPECT_EQ(f.fwd(), LATTQ_OK);
  expect_error(lattq_forward(&f.layer, nullptr, LATTQ_F32, f.m, f.y.data(), f.ws, f.wsb, 0), LATTQ_ERR_INVALID_ARGUMENT,
               "'x' is null", "x");
  expect_error(lattq_forward(&f.layer, f.x.data(), LATTQ_F32, f.m, nullptr, f.ws, f.wsb, 0), LATTQ_ERR_INVALID_ARGUMENT,
               "'y' is null", "y");
  expect_error(lattq_forward(&f.layer, f.x.data(), LATTQ_F32, f.m, f.y.data(), nullptr, f.wsb, 0), LATTQ_ERR_WORKSPACE,
               "'workspace' is null", "workspace");
  size_t* none = nullptr;
  expect_error(lattq_forward_workspace_size(&f.d, 1, none), LATTQ_ERR_INVALID_ARGUMENT, "'bytes' is null", "bytes");
  expect_error(lattq_validate_layer(nullptr), LATTQ_ERR_INVALID_ARGUMENT, "'layer' is null", "validate null");
}

TEST(Errors, Alignment) {
  Fixture f;
  // f32: x / y must be 4-byte aligned
  const char* xb = reinterpret_cast<const char*>(f.x.data());
  char* yb = reinterpret_cast<char*>(f.y.data());
  expect_error(lattq_forward(&f.layer, xb + 2, LATTQ_F32, f.m, f.y.data(), f.ws, f.wsb, 0), LATTQ_ERR_ALIGNMENT,
               "'x' is not aligned to 4 bytes (f32)", "x f32");
  expect_error(lattq_forward(&f.layer, f.x.data(), LATTQ_F32, f.m, yb + 1, f.ws, f.wsb, 0), LATTQ_ERR_ALIGNMENT,
               "'y' is not aligned to 4 bytes (f32)", "y f32");
  // bf16 / f16: 2 bytes
  const char* xhb = reinterpret_cast<const char*>(f.xh.data());
  char* yhb = reinterpret_cast<char*>(f.yh.data());
  expect_error(lattq_forward(&f.layer, xhb + 1, LATTQ_BF16, f.m, f.yh.data(), f.ws, f.wsb, 0), LATTQ_ERR_ALIGNMENT,
               "lattq_forward: argument 'x' is not aligned to 2 bytes (bf16)", "x bf16");
  expect_error(lattq_forward(&f.layer, f.xh.data(), LATTQ_F16, f.m, yhb + 1, f.ws, f.wsb, 0), LATTQ_ERR_ALIGNMENT,
               "'y' is not aligned to 2 bytes (f16)", "y f16");
  EXPECT_EQ(lattq_forward(&f.layer, xhb + 2, LATTQ_BF16, f.m, yhb + 2, f.ws, f.wsb, 0), LATTQ_OK) << lattq_last_error();
  // workspace: 64 bytes
  char* wsc = static_cast<char*>(f.ws);
  expect_error(lattq_forward(&f.layer, f.x.data(), LATTQ_F32, f.m, f.y.data(), wsc + 16, f.wsb, 0), LATTQ_ERR_ALIGNMENT,
               "'workspace' is not aligned to 64 bytes", "workspace");
  EXPECT_EQ(lattq_forward(&f.layer, f.x.data(), LATTQ_F32, f.m, f.y.data(), wsc + 64, f.wsb, 0), LATTQ_OK);
}

TEST(Errors, WorkspaceTooSmallAndOverlaps) {
  Fixture f;
  expect_error(lattq_forward(&f.layer, f.x.data(), LATTQ_F32, f.m, f.y.data(), f.ws, f.wsb - 1, 0), LATTQ_ERR_WORKSPACE,
               "'workspace_bytes' = " + std::to_string(f.wsb - 1), "too small");
  expect_error(lattq_forward(&f.layer, f.x.data(), LATTQ_F32, f.m, f.y.data(), f.ws, 0, 0), LATTQ_ERR_WORKSPACE,
               "'workspace_bytes' = 0", "zero");
  // the size never shrinks with m (a buffer sized for the largest batch serves every smaller one)
  size_t prev = 0;
  for (int64_t m = 0; m <= 40; ++m) {
    size_t sz = 0;
    ASSERT_EQ(lattq_forward_workspace_size(&f.d, m, &sz), LATTQ_OK);
    EXPECT_GE(sz, prev) << "m=" << m;
    prev = sz;
  }
  EXPECT_GT(prev, f.wsb);
  // beyond one token block (64 rows per pass) the size stays constant
  size_t s64 = 0, s1000 = 0;
  ASSERT_EQ(lattq_forward_workspace_size(&f.d, 64, &s64), LATTQ_OK);
  ASSERT_EQ(lattq_forward_workspace_size(&f.d, 1000, &s1000), LATTQ_OK);
  EXPECT_EQ(s64, s1000);
  expect_error(lattq_forward(&f.layer, f.x.data(), LATTQ_F32, f.m, static_cast<float*>(f.ws), f.ws, f.wsb, 0),
               LATTQ_ERR_INVALID_ARGUMENT, "'y' and 'workspace' overlap", "overlap");
  size_t b = 0;
  expect_error(lattq_forward_workspace_size(&f.d, -1, &b), LATTQ_ERR_SHAPE, "'m' = -1", "m negative");
  expect_error(lattq_forward_workspace_size(&f.d, int64_t(1) << 40, &b), LATTQ_ERR_SHAPE, "'m' = 1099511627776",
               "m huge");
  expect_error(lattq_forward(&f.layer, f.x.data(), LATTQ_F32, int64_t(1) << 40, f.y.data(), f.ws, f.wsb, 0),
               LATTQ_ERR_SHAPE, "lattq_forward: argument 'm' = 1099511627776", "forward m huge");
  lattq_layer_desc huge{2, 4, int64_t(1) << 31, int64_t(1) << 31, 1, 1};
  expect_error(lattq_forward_workspace_size(&huge, int64_t(1) << 31, &b), LATTQ_ERR_SHAPE, "does not fit in 64 bits",
               "workspace overflow");
}

TEST(Errors, NonFiniteParameters) {
  struct C {
    const char* name;
    int64_t index;
  };
  for (C c : {C{"su", 17}, C{"sv", 5}, C{"A", 6}, C{"b", 2}, C{"bias", 31}}) {
    for (float bad : {NAN, INFINITY, -INFINITY}) {
      Fixture f;
      const std::string s = c.name;
      std::vector<float>& v = s == "su" ? f.su : s == "sv" ? f.sv : s == "A" ? f.A : s == "b" ? f.b : f.bias;
      v[static_cast<size_t>(c.index)] = bad;
      const std::string needle = "argument 'layer." + s + "' contains NaN/Inf at index " + std::to_string(c.index);
      expect_error(f.fwd(), LATTQ_ERR_NONFINITE, needle, s);
      expect_error(lattq_validate_layer(&f.layer), LATTQ_ERR_NONFINITE, needle, "validate " + s);
      expect_error(lattq_decode(&f.layer, 1, f.y.data()), LATTQ_ERR_NONFINITE, needle, "decode " + s);
    }
  }
}

TEST(Errors, LayoutDtypeAndM) {
  Fixture f;
  f.layer.layout = 2;
  expect_error(f.fwd(), LATTQ_ERR_LAYOUT, "'layer.layout' = 2 is not a known layout", "layout");
  f.layer.layout = -1;
  expect_error(f.fwd(), LATTQ_ERR_LAYOUT, "'layer.layout' = -1", "layout -1");
  f.layer.layout = LATTQ_LAYOUT_TILED;
  expect_error(lattq_forward(&f.layer, f.x.data(), 3, f.m, f.y.data(), f.ws, f.wsb, 0), LATTQ_ERR_DTYPE, "'dtype' = 3",
               "dtype");
  expect_error(lattq_forward(&f.layer, f.x.data(), -1, f.m, f.y.data(), f.ws, f.wsb, 0), LATTQ_ERR_DTYPE, "'dtype' = -1",
               "dtype -1");
  expect_error(lattq_forward(&f.layer, f.x.data(), LATTQ_F32, -2, f.y.data(), f.ws, f.wsb, 0), LATTQ_ERR_SHAPE, "'m' = -2",
               "m");
}

TEST(Errors, LastErrorIsThreadLocal) {
  Fixture f;
  f.layer.layout = 7;
  EXPECT_EQ(f.fwd(), LATTQ_ERR_LAYOUT);
  std::string other;
  std::thread t([&] { other = lattq_last_error(); });
  t.join();
  EXPECT_EQ(other, "");
  EXPECT_NE(std::string(lattq_last_error()).find("'layer.layout' = 7"), std::string::npos);
}
