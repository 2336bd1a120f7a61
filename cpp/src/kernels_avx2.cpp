// AVX2 + FMA forward kernel.  Compiled with -mavx2 -mfma on x86-64 GCC/Clang (see cpp/CMakeLists.txt);
// elsewhere it compiles to a stub.  Selected at run time by cpuid.
#include <cstdint>
#include <cstring>

#include "gemv_args.hpp"

#if defined(__GNUC__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
namespace {
constexpr int W = 8;
typedef __m256 vf;
typedef __m256i vi;
inline vi load_bytes_epi32(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
inline vi set1_epi32(int v) { return _mm256_set1_epi32(v); }
inline vi srli_epi32(vi x, int s) { return _mm256_srli_epi32(x, s); }
inline vi and_si(vi a, vi b) { return _mm256_and_si256(a, b); }
inline vf cvt_ps(vi x) { return _mm256_cvtepi32_ps(x); }
inline vf zero_ps() { return _mm256_setzero_ps(); }
inline vf loadu_ps(const float* p) { return _mm256_loadu_ps(p); }
inline vf fmadd_ps(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline vf add_ps(vf a, vf b) { return _mm256_add_ps(a, b); }
inline float hsum_ps(vf v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
}  // namespace
#define LATTQ_SIMD_MB 2
#include "gemv_simd.inl"
namespace lattq {
namespace detail {
GemvFn gemv_avx2_get(int32_t bits) { return simd_get(bits); }
}  // namespace detail
}  // namespace lattq
#else
namespace lattq {
namespace detail {
GemvFn gemv_avx2_get(int32_t) { return nullptr; }
}  // namespace detail
}  // namespace lattq
#endif
