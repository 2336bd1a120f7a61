// Internal helpers of the lattq core (not installed).
#ifndef LATTQ_SRC_INTERNAL_HPP
#define LATTQ_SRC_INTERNAL_HPP

#include <cstddef>
#include <cstdint>

#include "gemv_args.hpp"
#include "lattq/lattq.hpp"

namespace lattq {
namespace detail {

// Thread-local last-error message.  set_error formats printf-style and returns `s`.
Status set_error(Status s, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void clear_error();

inline bool is_pow2(int64_t x) { return x >= 1 && (x & (x - 1)) == 0; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

// Validation shared by the entry points.  `fn` is the C API function name used in messages,
// `arg` the name of the parameter holding the descriptor ("desc" or "layer.desc").
Status check_desc(const char* fn, const char* arg, const LayerDesc* desc);
Status check_layer(const char* fn, const char* arg, const LayerView* layer);
Status check_finite(const char* fn, const char* arg, const float* p, int64_t count);

// Runs fn(ctx, begin, end) over [0, items) on the library thread pool (dynamic chunks of at least
// min_per_item items; single-threaded when small).  fn must not throw.
typedef void (*RangeFn)(void* ctx, int64_t begin, int64_t end);
void parallel_for(int64_t items, int64_t min_per_item, RangeFn fn, void* ctx);

// FWHT of the selected CPU kernel family (AVX-512 or portable fwht_vec); both give identical bits.
FwhtFn pick_fwht();

// In-place orthonormal block FWHT of one vector of length len (block divides len).
void fwht_vec(float* x, int64_t len, int64_t block);

}  // namespace detail
}  // namespace lattq

#endif
