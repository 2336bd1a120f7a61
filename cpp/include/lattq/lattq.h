/*
 * lattq C API (core, CPU).  Plain C99 header: no CUDA, no Python, no torch.
 *
 * Conventions
 *  - Every function returns a lattq_status; LATTQ_OK == 0.  On error a human-readable message that
 *    names the offending argument is available from lattq_last_error() (thread-local).
 *  - All buffers are caller-owned.  Nothing here allocates on the hot path (lattq_forward), nothing
 *    keeps a pointer after returning.
 *  - Matrices are dense row-major with the documented shapes; "K" is in_features, "N" out_features.
 *  - The format (bit order, layouts, ids) is specified in docs/format.md and in lattq/format.hpp;
 *    this header is the single source of truth for the numeric ids.
 */
#ifndef LATTQ_LATTQ_H
#define LATTQ_LATTQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define LATTQ_API
#else
#define LATTQ_API __attribute__((visibility("default")))
#endif

/* ---- format constants ---------------------------------------------------------------------- */
#define LATTQ_FORMAT_VERSION 1
#define LATTQ_TILE_ROWS 16   /* rows per tile in the TILED kernel layout   */
#define LATTQ_TILE_BYTES 16  /* bytes per row-chunk in the TILED layout    */
#define LATTQ_MAX_BITS 4
#define LATTQ_MAX_DIM 8
#define LATTQ_MAX_CODE_BITS 16 /* bits * dim <= 16 */

typedef enum lattq_status {
  LATTQ_OK = 0,
  LATTQ_ERR_INVALID_ARGUMENT = 1, /* null pointer, bad enum, bad parameter value          */
  LATTQ_ERR_DTYPE = 2,            /* unsupported / mismatching dtype                        */
  LATTQ_ERR_SHAPE = 3,            /* sizes inconsistent or not divisible as required        */
  LATTQ_ERR_ALIGNMENT = 4,        /* pointer not aligned as required                        */
  LATTQ_ERR_LAYOUT = 5,           /* non-contiguous / wrong code layout                     */
  LATTQ_ERR_NONFINITE = 6,        /* NaN or Inf in a parameter or input that must be finite */
  LATTQ_ERR_UNSUPPORTED = 7,      /* valid request this build / device cannot serve         */
  LATTQ_ERR_WORKSPACE = 8,        /* workspace missing or too small                         */
  LATTQ_ERR_DEVICE = 9,           /* CUDA runtime error, or pointer on the wrong device     */
  LATTQ_ERR_NO_CUDA = 10,         /* built without CUDA                                     */
  LATTQ_ERR_INTERNAL = 11
} lattq_status;

/* activation / output element types */
typedef enum lattq_dtype { LATTQ_F32 = 0, LATTQ_F16 = 1, LATTQ_BF16 = 2 } lattq_dtype;

/* code layouts */
typedef enum lattq_layout {
  LATTQ_LAYOUT_CANONICAL = 0, /* row-major little-endian bitstream, see docs/format.md   */
  LATTQ_LAYOUT_TILED = 1      /* kernel layout produced by lattq_pack (v1: 16x16B tiles) */
} lattq_layout;

/* encode methods */
typedef enum lattq_encode_method {
  LATTQ_ENCODE_AUTO = 0,       /* orthogonal fast path when A = s*Q (Q orthogonal), else exhaustive */
  LATTQ_ENCODE_EXHAUSTIVE = 1, /* all 2^(bits*dim) codewords                                         */
  LATTQ_ENCODE_ORTHOGONAL = 2  /* box rounding in Q^T coordinates; error if A is not s*orthogonal     */
} lattq_encode_method;

/* Shape and lattice family of one quantized linear layer. */
typedef struct lattq_layer_desc {
  int32_t bits;    /* k: bits per coordinate, 1..4                                   */
  int32_t dim;     /* d: lattice dimension, one of 1, 2, 4, 8; bits*dim <= 16        */
  int64_t n;       /* out_features (N)                                               */
  int64_t k;       /* in_features  (K); K % dim == 0 and (K*bits) % 8 == 0           */
  int32_t had_in;  /* Hadamard block over K: power of two dividing K; 1 = identity  */
  int32_t had_out; /* Hadamard block over N: power of two dividing N; 1 = identity  */
} lattq_layer_desc;

/* A quantized linear layer: y = SV * H_out^T( What @ H_in(SU * x) ) + bias,
 * What[n, d*g : d*g+d] = A @ z[n,g] + b. */
typedef struct lattq_layer {
  lattq_layer_desc desc;
  int32_t layout;       /* lattq_layout of `codes`                                   */
  const uint8_t* codes; /* canonical: N * (K*bits/8) bytes; tiled: lattq_packed_bytes */
  const float* A;       /* dim*dim, row-major (A[i*dim+j] = A_ij)                      */
  const float* b;       /* dim                                                        */
  const float* su;      /* K                                                          */
  const float* sv;      /* N                                                          */
  const float* bias;    /* N, or NULL                                                 */
} lattq_layer;

/* ---- introspection -------------------------------------------------------------------------- */
LATTQ_API const char* lattq_version_string(void);
LATTQ_API int32_t lattq_format_version(void);
LATTQ_API const char* lattq_status_string(lattq_status s);
/* Message of the last failing call on this thread (empty string if none). */
LATTQ_API const char* lattq_last_error(void);

/* ---- format --------------------------------------------------------------------------------- */
/* Checks bits/dim/n/k/had_in/had_out; message names the offending field. */
LATTQ_API lattq_status lattq_validate_desc(const lattq_layer_desc* desc);
/* Checks desc, non-null pointers, layout id, and that A, b, su, sv, bias are all finite (host memory). */
LATTQ_API lattq_status lattq_validate_layer(const lattq_layer* layer);
/* Bytes of the codes in canonical layout (N * K*bits/8) and in TILED layout. -1 on invalid desc. */
LATTQ_API int64_t lattq_canonical_bytes(const lattq_layer_desc* desc);
LATTQ_API int64_t lattq_packed_bytes(const lattq_layer_desc* desc);
/* canonical -> TILED (zero padding), and its exact inverse. Buffers must not overlap. */
LATTQ_API lattq_status lattq_pack(const lattq_layer_desc* desc, const uint8_t* canonical, uint8_t* packed);
LATTQ_API lattq_status lattq_unpack(const lattq_layer_desc* desc, const uint8_t* packed, uint8_t* canonical);

/* ---- lattice -------------------------------------------------------------------------------- */
/* Codes (any layout) -> What (N x K fp32, lattice domain, no transforms) if `with_transforms` == 0;
 * the effective dense weight W = diag(SV) H_out^T What H_in diag(SU) (N x K fp32) otherwise. */
LATTQ_API lattq_status lattq_decode(const lattq_layer* layer, int32_t with_transforms, float* out);

/* Nearest codeword for `count` vectors x (count x dim fp32): idx[i] = argmin_c ||A z(c) + b - x_i||^2,
 * z_j(c) = (c >> (bits*j)) & (2^bits - 1).  sq_err (count, nullable) receives the squared error.
 * Ties are broken towards the smaller index. */
LATTQ_API lattq_status lattq_encode_vectors(int32_t bits, int32_t dim, const float* A, const float* b,
                                           const float* x, int64_t count, int32_t method,
                                           uint16_t* idx, float* sq_err);
/* Nearest-codeword encode of a whole lattice-domain matrix What (N x K fp32) into canonical codes. */
LATTQ_API lattq_status lattq_encode_matrix(const lattq_layer_desc* desc, const float* A, const float* b,
                                          const float* w_hat, int32_t method, uint8_t* canonical);

/* ---- transforms ----------------------------------------------------------------------------- */
/* In place, each of `rows` rows of length `len`: orthonormal Walsh-Hadamard transform over consecutive
 * blocks of `block` entries (Sylvester order, scaled by 1/sqrt(block)); block a power of two dividing len. */
LATTQ_API lattq_status lattq_fwht_f32(float* data, int64_t rows, int64_t len, int32_t block);

/* ---- layer forward (reference CPU path, multi-threaded) --------------------------------------- */
/* Required workspace bytes for lattq_forward with m rows of activations. */
LATTQ_API lattq_status lattq_forward_workspace_size(const lattq_layer_desc* desc, int64_t m, size_t* bytes);
/* y (m x N, dtype) = layer(x (m x K, dtype)).  x, y contiguous row-major, aligned to their element size;
 * layer->layout must be TILED or CANONICAL.  workspace: at least lattq_forward_workspace_size bytes, 64-byte
 * aligned.  num_threads <= 0: use the library default (hardware concurrency). fp32 accumulation. */
LATTQ_API lattq_status lattq_forward(const lattq_layer* layer, const void* x, int32_t dtype, int64_t m,
                                    void* y, void* workspace, size_t workspace_bytes, int32_t num_threads);

/* Threads used when num_threads <= 0 (default: hardware concurrency). */
LATTQ_API void lattq_set_num_threads(int32_t n);
LATTQ_API int32_t lattq_get_num_threads(void);

/* CPU kernel family used by lattq_forward.  AUTO (default) picks the best one the CPU supports (cpuid);
 * forcing one is for tests and benchmarks.  Setting a kernel this CPU/build cannot run returns
 * LATTQ_ERR_UNSUPPORTED and leaves the setting unchanged.  The setting is process-wide. */
typedef enum lattq_cpu_kernel {
  LATTQ_CPU_KERNEL_AUTO = 0,
  LATTQ_CPU_KERNEL_SCALAR = 1, /* portable C++, any architecture        */
  LATTQ_CPU_KERNEL_AVX2 = 2,   /* x86-64 AVX2 + FMA                     */
  LATTQ_CPU_KERNEL_AVX512 = 3  /* x86-64 AVX-512 F/BW/VL                */
} lattq_cpu_kernel;
LATTQ_API lattq_status lattq_set_cpu_kernel(int32_t kernel);
/* The kernel lattq_forward uses now (never AUTO). */
LATTQ_API int32_t lattq_get_cpu_kernel(void);
/* "auto", "scalar", "avx2", "avx512", or "unknown". */
LATTQ_API const char* lattq_cpu_kernel_name(int32_t kernel);

#ifdef __cplusplus
} /* extern "C" */
#endif
#endif /* LATTQ_LATTQ_H */
