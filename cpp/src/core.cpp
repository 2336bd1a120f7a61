// lattq core: errors, versions, element conversions, validation, pack/unpack, decode, encode, FWHT.
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <vector>

#include "internal.hpp"

#ifndef LATTQ_VERSION_STRING
#define LATTQ_VERSION_STRING "0.0.0"
#endif

namespace lattq {
namespace detail {

namespace {
thread_local char g_last_error[1024] = {0};
}

Status set_error(Status s, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(g_last_error, sizeof(g_last_error), fmt, ap);
  va_end(ap);
  return s;
}

void clear_error() { g_last_error[0] = 0; }

static const char* const kBitsList = "1, 2, 3, 4";
static const char* const kDimList = "1, 2, 4, 8";
static const int64_t kMaxExtent = int64_t(1) << 31;

Status check_desc(const char* fn, const char* arg, const LayerDesc* d) {
  if (!d) return set_error(Status::InvalidArgument, "%s: argument '%s' is null", fn, arg);
  if (d->bits < 1 || d->bits > 4)
    return set_error(Status::InvalidArgument, "%s: argument '%s.bits' = %d is not one of %s", fn, arg, (int)d->bits,
                     kBitsList);
  if (d->dim != 1 && d->dim != 2 && d->dim != 4 && d->dim != 8)
    return set_error(Status::InvalidArgument, "%s: argument '%s.dim' = %d is not one of %s", fn, arg, (int)d->dim,
                     kDimList);
  if (d->bits * d->dim > LATTQ_MAX_CODE_BITS)
    return set_error(Status::InvalidArgument,
                     "%s: arguments '%s.bits' * '%s.dim' = %d * %d = %d exceed the maximum code size of %d bits", fn,
                     arg, arg, (int)d->bits, (int)d->dim, (int)(d->bits * d->dim), LATTQ_MAX_CODE_BITS);
  if (d->n < 1 || d->n > kMaxExtent)
    return set_error(Status::Shape, "%s: argument '%s.n' = %lld must be in [1, 2^31]", fn, arg, (long long)d->n);
  if (d->k < 1 || d->k > kMaxExtent)
    return set_error(Status::Shape, "%s: argument '%s.k' = %lld must be in [1, 2^31]", fn, arg, (long long)d->k);
  if (d->k % d->dim != 0)
    return set_error(Status::Shape, "%s: argument '%s.k' = %lld is not divisible by %s.dim = %d", fn, arg,
                     (long long)d->k, arg, (int)d->dim);
  if ((d->k * d->bits) % 8 != 0)
    return set_error(Status::Shape, "%s: argument '%s.k' = %lld times %s.bits = %d is not a multiple of 8", fn, arg,
                     (long long)d->k, arg, (int)d->bits);
  if (!is_pow2(d->had_in))
    return set_error(Status::InvalidArgument, "%s: argument '%s.had_in' = %d is not a power of two", fn, arg,
                     (int)d->had_in);
  if (d->k % d->had_in != 0)
    return set_error(Status::Shape, "%s: argument '%s.had_in' = %d does not divide %s.k = %lld", fn, arg,
                     (int)d->had_in, arg, (long long)d->k);
  if (!is_pow2(d->had_out))
    return set_error(Status::InvalidArgument, "%s: argument '%s.had_out' = %d is not a power of two", fn, arg,
                     (int)d->had_out);
  if (d->n % d->had_out != 0)
    return set_error(Status::Shape, "%s: argument '%s.had_out' = %d does not divide %s.n = %lld", fn, arg,
                     (int)d->had_out, arg, (long long)d->n);
  return Status::Ok;
}

Status check_finite(const char* fn, const char* arg, const float* p, int64_t count) {
  // fast vectorizable pass on the bit patterns (exponent all ones = NaN/Inf), then locate the index
  uint32_t bad = 0;
  for (int64_t i = 0; i < count; ++i) {
    uint32_t u;
    std::memcpy(&u, p + i, 4);
    bad |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
  }
  if (!bad) return Status::Ok;
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(p[i]))
      return set_error(Status::NonFinite, "%s: argument '%s' contains NaN/Inf at index %lld", fn, arg, (long long)i);
  }
  return Status::Ok;
}

Status check_layer(const char* fn, const char* arg, const LayerView* l) {
  if (!l) return set_error(Status::InvalidArgument, "%s: argument '%s' is null", fn, arg);
  char name[64];
  std::snprintf(name, sizeof(name), "%s.desc", arg);
  Status s = check_desc(fn, name, &l->desc);
  if (s != Status::Ok) return s;
  if (l->layout != LATTQ_LAYOUT_CANONICAL && l->layout != LATTQ_LAYOUT_TILED)
    return set_error(Status::Layout, "%s: argument '%s.layout' = %d is not a known layout (0 = CANONICAL, 1 = TILED)",
                     fn, arg, (int)l->layout);
  struct P {
    const void* p;
    const char* f;
  } ptrs[] = {{l->codes, "codes"}, {l->A, "A"}, {l->b, "b"}, {l->su, "su"}, {l->sv, "sv"}};
  for (const P& q : ptrs)
    if (!q.p) return set_error(Status::InvalidArgument, "%s: argument '%s.%s' is null", fn, arg, q.f);
  const int64_t d = l->desc.dim;
  struct F {
    const float* p;
    int64_t n;
    const char* f;
  } fins[] = {{l->A, d * d, "A"}, {l->b, d, "b"}, {l->su, l->desc.k, "su"}, {l->sv, l->desc.n, "sv"},
              {l->bias, l->desc.n, "bias"}};
  for (const F& q : fins) {
    if (!q.p) continue;
    std::snprintf(name, sizeof(name), "%s.%s", arg, q.f);
    s = check_finite(fn, name, q.p, q.n);
    if (s != Status::Ok) return s;
  }
  return Status::Ok;
}

void fwht_vec(float* x, int64_t len, int64_t block) {
  if (block <= 1) return;
  const float scale = 1.0f / std::sqrt(static_cast<float>(block));
  for (int64_t base = 0; base < len; base += block) {
    float* v = x + base;
    for (int64_t h = 1; h < block; h *= 2) {
      for (int64_t i = 0; i < block; i += 2 * h) {
        float* a = v + i;
        float* b = v + i + h;
        for (int64_t j = 0; j < h; ++j) {
          const float p = a[j], q = b[j];
          a[j] = p + q;
          b[j] = p - q;
        }
      }
    }
    for (int64_t j = 0; j < block; ++j) v[j] *= scale;
  }
}

}  // namespace detail

using detail::ceil_div;
using detail::check_desc;
using detail::check_finite;
using detail::check_layer;
using detail::set_error;

// ---- introspection ---------------------------------------------------------------------------
const char* version_string() { return LATTQ_VERSION_STRING; }
int32_t format_version() { return LATTQ_FORMAT_VERSION; }
const char* last_error() { return detail::g_last_error; }

// ---- element conversions -----------------------------------------------------------------------
static inline uint32_t f2u(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
static inline float u2f(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ffu;
  if (e == 0) {
    const float v = static_cast<float>(m) * 5.9604644775390625e-08f;  // m * 2^-24, exact
    return u2f(f2u(v) | sign);
  }
  if (e == 31) return u2f(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u));
  return u2f(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t float_to_half(float f) {
  uint32_t x = f2u(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return static_cast<uint16_t>(sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (x >= 0x47800000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65536: overflow
  if (x < 0x38800000u) {                                                // half subnormal or zero
    if (x < 0x33000000u) return sign;                                   // < 2^-25 rounds to 0
    const uint32_t e = x >> 23;
    const uint32_t m = (x & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  const uint32_t e = (x >> 23) - 112, m = x & 0x7fffffu;
  uint32_t q = (e << 10) | (m >> 13);
  const uint32_t rem = m & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q;  // carry may reach 0x7c00 = inf: correct
  return static_cast<uint16_t>(sign | q);
}

float bfloat16_to_float(uint16_t h) { return u2f(uint32_t(h) << 16); }

uint16_t float_to_bfloat16(float f) {
  const uint32_t x = f2u(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// ---- validation / sizes -------------------------------------------------------------------------
Status validate_desc(const LayerDesc* desc) { return check_desc("lattq_validate_desc", "desc", desc); }

Status validate_layer(const LayerView* layer) { return check_layer("lattq_validate_layer", "layer", layer); }

static int64_t canonical_bytes_unchecked(const LayerDesc& d) { return d.n * (d.k * d.bits / 8); }
static int64_t packed_bytes_unchecked(const LayerDesc& d) {
  const int64_t r = d.k * d.bits / 8;
  return ceil_div(d.n, LATTQ_TILE_ROWS) * ceil_div(r, LATTQ_TILE_BYTES) * (LATTQ_TILE_ROWS * LATTQ_TILE_BYTES);
}

int64_t canonical_bytes(const LayerDesc* desc) {
  if (check_desc("lattq_canonical_bytes", "desc", desc) != Status::Ok) return -1;
  return canonical_bytes_unchecked(*desc);
}
int64_t packed_bytes(const LayerDesc* desc) {
  if (check_desc("lattq_packed_bytes", "desc", desc) != Status::Ok) return -1;
  return packed_bytes_unchecked(*desc);
}

static bool overlap(const void* a, size_t na, const void* b, size_t nb) {
  const uintptr_t pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return pa < pb + nb && pb < pa + na;
}

// ---- pack / unpack -----------------------------------------------------------------------------
Status pack(const LayerDesc* desc, const uint8_t* canonical, uint8_t* packed) {
  const char* fn = "lattq_pack";
  Status s = check_desc(fn, "desc", desc);
  if (s != Status::Ok) return s;
  if (!canonical) return set_error(Status::InvalidArgument, "%s: argument 'canonical' is null", fn);
  if (!packed) return set_error(Status::InvalidArgument, "%s: argument 'packed' is null", fn);
  const int64_t n = desc->n, r = desc->k * desc->bits / 8, C = ceil_div(r, 16), T = ceil_div(n, 16);
  if (overlap(canonical, size_t(canonical_bytes_unchecked(*desc)), packed, size_t(packed_bytes_unchecked(*desc))))
    return set_error(Status::InvalidArgument, "%s: arguments 'canonical' and 'packed' overlap", fn);
  std::memset(packed, 0, size_t(T * C * 256));
  for (int64_t row = 0; row < n; ++row) {
    const uint8_t* src = canonical + row * r;
    uint8_t* dst = packed + (row / 16) * C * 256 + (row % 16) * 16;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t len = (c + 1) * 16 <= r ? 16 : r - c * 16;
      std::memcpy(dst + c * 256, src + c * 16, size_t(len));
    }
  }
  return Status::Ok;
}

Status unpack(const LayerDesc* desc, const uint8_t* packed, uint8_t* canonical) {
  const char* fn = "lattq_unpack";
  Status s = check_desc(fn, "desc", desc);
  if (s != Status::Ok) return s;
  if (!packed) return set_error(Status::InvalidArgument, "%s: argument 'packed' is null", fn);
  if (!canonical) return set_error(Status::InvalidArgument, "%s: argument 'canonical' is null", fn);
  const int64_t n = desc->n, r = desc->k * desc->bits / 8, C = ceil_div(r, 16);
  if (overlap(canonical, size_t(canonical_bytes_unchecked(*desc)), packed, size_t(packed_bytes_unchecked(*desc))))
    return set_error(Status::InvalidArgument, "%s: arguments 'packed' and 'canonical' overlap", fn);
  for (int64_t row = 0; row < n; ++row) {
    uint8_t* dst = canonical + row * r;
    const uint8_t* src = packed + (row / 16) * C * 256 + (row % 16) * 16;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t len = (c + 1) * 16 <= r ? 16 : r - c * 16;
      std::memcpy(dst + c * 16, src + c * 256, size_t(len));
    }
  }
  return Status::Ok;
}

// ---- decode ------------------------------------------------------------------------------------
// Field j (bits wide) of a canonical row.
static inline uint32_t get_field(const uint8_t* row, int64_t j, int32_t bits) {
  const int64_t bit = j * bits;
  const int64_t byte = bit >> 3;
  const int sh = int(bit & 7);
  uint32_t w = row[byte];
  if (sh + bits > 8) w |= uint32_t(row[byte + 1]) << 8;
  return (w >> sh) & ((1u << bits) - 1u);
}

Status decode(const LayerView* layer, int32_t with_transforms, float* out) {
  const char* fn = "lattq_decode";
  Status s = check_layer(fn, "layer", layer);
  if (s != Status::Ok) return s;
  if (with_transforms != 0 && with_transforms != 1)
    return set_error(Status::InvalidArgument, "%s: argument 'with_transforms' = %d must be 0 or 1", fn,
                     (int)with_transforms);
  if (!out) return set_error(Status::InvalidArgument, "%s: argument 'out' is null", fn);
  const LayerDesc& d = layer->desc;
  const int64_t n = d.n, k = d.k, r = k * d.bits / 8, C = ceil_div(r, 16), dim = d.dim, G = k / dim;
  std::vector<uint8_t> rowbuf(size_t(C * 16 + 1), 0);
  const float* A = layer->A;
  const float* b = layer->b;
  uint32_t z[LATTQ_MAX_DIM];
  for (int64_t row = 0; row < n; ++row) {
    const uint8_t* src;
    if (layer->layout == LATTQ_LAYOUT_CANONICAL) {
      src = layer->codes + row * r;
    } else {
      const uint8_t* t = layer->codes + (row / 16) * C * 256 + (row % 16) * 16;
      for (int64_t c = 0; c < C; ++c) std::memcpy(&rowbuf[size_t(c * 16)], t + c * 256, 16);
      src = rowbuf.data();
    }
    float* o = out + row * k;
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t j = 0; j < dim; ++j) z[j] = get_field(src, g * dim + j, d.bits);
      for (int64_t i = 0; i < dim; ++i) {
        float acc = b[i];
        for (int64_t j = 0; j < dim; ++j) acc += A[i * dim + j] * static_cast<float>(z[j]);
        o[g * dim + i] = acc;
      }
    }
  }
  if (with_transforms) {
    const detail::FwhtFn fwht = detail::pick_fwht();
    for (int64_t row = 0; row < n; ++row) fwht(out + row * k, k, d.had_in);  // What H_in
    const int64_t B = d.had_out;
    if (B > 1) {  // H_out^T (...) : butterflies across rows
      const float scale = 1.0f / std::sqrt(static_cast<float>(B));
      for (int64_t base = 0; base < n; base += B) {
        for (int64_t h = 1; h < B; h *= 2)
          for (int64_t i = 0; i < B; i += 2 * h)
            for (int64_t j = 0; j < h; ++j) {
              float* pa = out + (base + i + j) * k;
              float* pb = out + (base + i + j + h) * k;
              for (int64_t c = 0; c < k; ++c) {
                const float p = pa[c], q = pb[c];
                pa[c] = p + q;
                pb[c] = p - q;
              }
            }
        for (int64_t i = 0; i < B * k; ++i) out[base * k + i] *= scale;
      }
    }
    for (int64_t row = 0; row < n; ++row) {
      float* o = out + row * k;
      const float svr = layer->sv[row];
      for (int64_t c = 0; c < k; ++c) o[c] *= svr * layer->su[c];
    }
  }
  return Status::Ok;
}

// ---- encode ------------------------------------------------------------------------------------
namespace {
constexpr double kOrthoTol = 1e-5;

// Returns s^2 > 0 if A^T A = s^2 I within kOrthoTol (relative), else 0; *dev receives the deviation.
double scaled_orthogonal(const float* A, int dim, double* dev) {
  double G[LATTQ_MAX_DIM][LATTQ_MAX_DIM];
  double tr = 0;
  for (int i = 0; i < dim; ++i)
    for (int j = 0; j < dim; ++j) {
      double acc = 0;
      for (int r = 0; r < dim; ++r) acc += double(A[r * dim + i]) * double(A[r * dim + j]);
      G[i][j] = acc;
      if (i == j) tr += acc;
    }
  const double s2 = tr / dim;
  if (!(s2 > 0) || !std::isfinite(s2)) {
    *dev = INFINITY;
    return 0;
  }
  double mx = 0;
  for (int i = 0; i < dim; ++i)
    for (int j = 0; j < dim; ++j) mx = std::fmax(mx, std::fabs(G[i][j] - (i == j ? s2 : 0.0)) / s2);
  *dev = mx;
  return mx <= kOrthoTol ? s2 : 0;
}

struct Encoder {
  int bits = 0, dim = 0;
  bool ortho = false;
  double s2 = 0;
  double A[LATTQ_MAX_DIM * LATTQ_MAX_DIM] = {0}, b[LATTQ_MAX_DIM] = {0};
  std::vector<double> cw;  // 2^(bits*dim) x dim codewords (exhaustive)

  void init(int bits_, int dim_, const float* A_, const float* b_, bool ortho_, double s2_) {
    bits = bits_;
    dim = dim_;
    ortho = ortho_;
    s2 = s2_;
    for (int i = 0; i < dim * dim; ++i) A[i] = A_[i];
    for (int i = 0; i < dim; ++i) b[i] = b_[i];
    if (!ortho) {
      const int64_t ncw = int64_t(1) << (bits * dim);
      cw.assign(size_t(ncw * dim), 0.0);
      for (int64_t c = 0; c < ncw; ++c)
        for (int i = 0; i < dim; ++i) {
          double acc = b[i];
          for (int j = 0; j < dim; ++j) acc += A[i * dim + j] * double((c >> (bits * j)) & ((1 << bits) - 1));
          cw[size_t(c * dim + i)] = acc;
        }
    }
  }

  double err_of(const float* x, uint32_t c) const {
    double e = 0;
    for (int i = 0; i < dim; ++i) {
      double acc = b[i];
      for (int j = 0; j < dim; ++j) acc += A[i * dim + j] * double((c >> (bits * j)) & ((1u << bits) - 1u));
      const double diff = acc - double(x[i]);
      e += diff * diff;
    }
    return e;
  }

  uint32_t encode(const float* x, double* err) const {
    if (ortho) {
      const double top = double((1 << bits) - 1);
      uint32_t c = 0;
      for (int i = 0; i < dim; ++i) {
        double y = 0;
        for (int r = 0; r < dim; ++r) y += A[r * dim + i] * (double(x[r]) - b[r]);
        y /= s2;
        double z = std::ceil(y - 0.5);  // round half down: ties go to the smaller index
        z = z < 0 ? 0 : (z > top ? top : z);
        c |= uint32_t(z) << (bits * i);
      }
      if (err) *err = err_of(x, c);
      return c;
    }
    const int64_t ncw = int64_t(1) << (bits * dim);
    double best = INFINITY;
    uint32_t bi = 0;
    const double* p = cw.data();
    for (int64_t c = 0; c < ncw; ++c, p += dim) {
      double e = 0;
      for (int i = 0; i < dim; ++i) {
        const double diff = p[i] - double(x[i]);
        e += diff * diff;
      }
      if (e < best) {
        best = e;
        bi = uint32_t(c);
      }
    }
    if (err) *err = best;
    return bi;
  }
};

Status check_lattice(const char* fn, int32_t bits, int32_t dim, const float* A, const float* b, int32_t method,
                     bool* ortho, double* s2) {
  if (bits < 1 || bits > 4)
    return set_error(Status::InvalidArgument, "%s: argument 'bits' = %d is not one of %s", fn, (int)bits,
                     detail::kBitsList);
  if (dim != 1 && dim != 2 && dim != 4 && dim != 8)
    return set_error(Status::InvalidArgument, "%s: argument 'dim' = %d is not one of %s", fn, (int)dim,
                     detail::kDimList);
  if (bits * dim > LATTQ_MAX_CODE_BITS)
    return set_error(Status::InvalidArgument, "%s: arguments 'bits' * 'dim' = %d exceed the maximum code size of %d bits",
                     fn, (int)(bits * dim), LATTQ_MAX_CODE_BITS);
  if (!A) return set_error(Status::InvalidArgument, "%s: argument 'A' is null", fn);
  if (!b) return set_error(Status::InvalidArgument, "%s: argument 'b' is null", fn);
  Status s = check_finite(fn, "A", A, int64_t(dim) * dim);
  if (s != Status::Ok) return s;
  s = check_finite(fn, "b", b, dim);
  if (s != Status::Ok) return s;
  if (method != LATTQ_ENCODE_AUTO && method != LATTQ_ENCODE_EXHAUSTIVE && method != LATTQ_ENCODE_ORTHOGONAL)
    return set_error(Status::InvalidArgument,
                     "%s: argument 'method' = %d is not a known encode method (0 = AUTO, 1 = EXHAUSTIVE, 2 = ORTHOGONAL)",
                     fn, (int)method);
  *ortho = false;
  *s2 = 0;
  if (method != LATTQ_ENCODE_EXHAUSTIVE) {
    double dev = 0;
    const double sq = scaled_orthogonal(A, dim, &dev);
    if (sq > 0) {
      *ortho = true;
      *s2 = sq;
    } else if (method == LATTQ_ENCODE_ORTHOGONAL) {
      return set_error(Status::InvalidArgument,
                       "%s: argument 'A' is not a scaled orthogonal matrix s*Q (max |A^T A - s^2 I| / s^2 = %.3g > %.1g); "
                       "use method AUTO or EXHAUSTIVE",
                       fn, dev, kOrthoTol);
    }
  }
  return Status::Ok;
}
}  // namespace

Status encode_vectors(int32_t bits, int32_t dim, const float* A, const float* b, const float* x, int64_t count,
                      int32_t method, uint16_t* idx, float* sq_err) {
  const char* fn = "lattq_encode_vectors";
  bool ortho;
  double s2;
  Status s = check_lattice(fn, bits, dim, A, b, method, &ortho, &s2);
  if (s != Status::Ok) return s;
  if (count < 0) return set_error(Status::Shape, "%s: argument 'count' = %lld is negative", fn, (long long)count);
  if (count > 0 && !x) return set_error(Status::InvalidArgument, "%s: argument 'x' is null", fn);
  if (count > 0 && !idx) return set_error(Status::InvalidArgument, "%s: argument 'idx' is null", fn);
  s = check_finite(fn, "x", x, count * dim);
  if (s != Status::Ok) return s;
  struct Job {
    Encoder enc;
    const float* x;
    int64_t dim;
    uint16_t* idx;
    float* sq_err;
  } job;
  job.enc.init(bits, dim, A, b, ortho, s2);
  job.x = x;
  job.dim = dim;
  job.idx = idx;
  job.sq_err = sq_err;
  detail::parallel_for(
      count, 256,
      [](void* ctx, int64_t begin, int64_t end) {
        const Job& j = *static_cast<const Job*>(ctx);
        for (int64_t i = begin; i < end; ++i) {
          double e = 0;
          j.idx[i] = static_cast<uint16_t>(j.enc.encode(j.x + i * j.dim, j.sq_err ? &e : nullptr));
          if (j.sq_err) j.sq_err[i] = static_cast<float>(e);
        }
      },
      &job);
  return Status::Ok;
}

Status encode_matrix(const LayerDesc* desc, const float* A, const float* b, const float* w_hat, int32_t method,
                     uint8_t* canonical) {
  const char* fn = "lattq_encode_matrix";
  Status s = check_desc(fn, "desc", desc);
  if (s != Status::Ok) return s;
  bool ortho;
  double s2;
  s = check_lattice(fn, desc->bits, desc->dim, A, b, method, &ortho, &s2);
  if (s != Status::Ok) return s;
  if (!w_hat) return set_error(Status::InvalidArgument, "%s: argument 'w_hat' is null", fn);
  if (!canonical) return set_error(Status::InvalidArgument, "%s: argument 'canonical' is null", fn);
  const int64_t n = desc->n, k = desc->k, dim = desc->dim, r = k * desc->bits / 8, G = k / dim;
  const int kd = desc->bits * desc->dim;
  s = check_finite(fn, "w_hat", w_hat, n * k);
  if (s != Status::Ok) return s;
  struct Job {
    Encoder enc;
    const float* w_hat;
    uint8_t* canonical;
    int64_t k, dim, r, G;
    int kd;
  } job;
  job.enc.init(desc->bits, desc->dim, A, b, ortho, s2);
  job.w_hat = w_hat;
  job.canonical = canonical;
  job.k = k;
  job.dim = dim;
  job.r = r;
  job.G = G;
  job.kd = kd;
  std::memset(canonical, 0, size_t(n * r));
  // rows are independent (each owns its bytes): encode them on the thread pool
  detail::parallel_for(
      n, 1,
      [](void* ctx, int64_t row_begin, int64_t row_end) {
        const Job& j = *static_cast<const Job*>(ctx);
        for (int64_t row = row_begin; row < row_end; ++row) {
          uint8_t* dst = j.canonical + row * j.r;
          for (int64_t g = 0; g < j.G; ++g) {
            const uint32_t c = j.enc.encode(j.w_hat + row * j.k + g * j.dim, nullptr);
            const int64_t bit0 = g * j.kd;
            for (int i = 0; i < j.kd; ++i)
              if ((c >> i) & 1u) dst[(bit0 + i) >> 3] |= uint8_t(1u << ((bit0 + i) & 7));
          }
        }
      },
      &job);
  return Status::Ok;
}

// ---- FWHT --------------------------------------------------------------------------------------
Status fwht_f32(float* data, int64_t rows, int64_t len, int32_t block) {
  const char* fn = "lattq_fwht_f32";
  if (rows < 0) return set_error(Status::Shape, "%s: argument 'rows' = %lld is negative", fn, (long long)rows);
  if (len < 0) return set_error(Status::Shape, "%s: argument 'len' = %lld is negative", fn, (long long)len);
  if (!detail::is_pow2(block))
    return set_error(Status::InvalidArgument, "%s: argument 'block' = %d is not a power of two", fn, (int)block);
  if (len % block != 0)
    return set_error(Status::Shape, "%s: argument 'block' = %d does not divide argument 'len' = %lld", fn, (int)block,
                     (long long)len);
  if (rows > 0 && len > 0 && !data) return set_error(Status::InvalidArgument, "%s: argument 'data' is null", fn);
  const detail::FwhtFn f = detail::pick_fwht();
  for (int64_t i = 0; i < rows; ++i) f(data + i * len, len, block);
  return Status::Ok;
}

}  // namespace lattq
