/*
 * lattq CUDA API.  Plain C header: it does not include cuda_runtime.h, streams are passed as void*
 * (a cudaStream_t; NULL is the legacy default stream).  All pointers in a lattq_layer passed here
 * are DEVICE pointers (codes in the TILED layout), x / y / workspace too.
 *
 * Rules: no allocation, no synchronisation, no host<->device copies inside these calls; every call
 * takes a stream and returns a lattq_status (lattq_last_error() has the message).  Safe to call during
 * CUDA-graph capture.
 */
#ifndef LATTQ_LATTQ_CUDA_H
#define LATTQ_LATTQ_CUDA_H

#include "lattq/lattq.h"

#ifdef __cplusplus
extern "C" {
#endif

/* kernel variants for lattq_cuda_forward (LATTQ_VARIANT_AUTO lets the dispatcher choose) */
typedef enum lattq_cuda_variant {
  LATTQ_VARIANT_AUTO = 0,
  LATTQ_VARIANT_REFERENCE = 1, /* simple, obviously-correct kernels (always available)              */
  /* fast variants (bits=2, dim=4, TILED codes only); see docs/kernels.md */
  LATTQ_VARIANT_IMMA = 2,      /* int8 tensor-core decode kernel, 8 tokens per CTA column (any m)    */
  LATTQ_VARIANT_IMMA_WIDE = 3, /* same main loop, 16 tokens per CTA column (f16/bf16; f32 uses 8)   */
  /* single-launch decode kernel, 8 tokens per CTA column (per-CTA prologue, split-K through a cluster on
   * sm_90, fused epilogue, no workspace for had_in <= 1024 and had_out <= 128); superseded by GEMV (6). */
  LATTQ_VARIANT_FUSED_GEMV = 4,
  /* tiled GEMM for m >= 64: prologue kernel (int8 digits of v in the workspace), then CTA tiles of 128
   * rows x 64 tokens, each code word decoded once per warp and used for 32 tokens.  Any m works. */
  LATTQ_VARIANT_TILED_GEMM = 5,
  /* decode kernel for m = 1..8 (f16/bf16, had_in <= 256, had_out <= 128): one launch, 4 tokens per CTA
   * column with both int8 digits of v as mma columns, per-CTA prologue on all warps, split-K through a
   * thread-block cluster on sm_90, no workspace.  Any m works (re-streams the codes per 4 tokens). */
  LATTQ_VARIANT_GEMV = 6,
  /* tensor-core GEMM on Hopper's wgmma (sm_90a builds on sm_90 GPUs, f16/bf16): the TILED_GEMM prologue
   * writes the int8 digits of v as the wgmma B image, CTA = 128 rows x 8..64 tokens, codes decoded in
   * registers as the A operand, B streamed by cp.async.bulk.  Any m works.  LATTQ_ERR_UNSUPPORTED elsewhere. */
  LATTQ_VARIANT_WGMMA = 7,
  /* GEMV (6) with the input transform moved to a small prologue kernel that runs once per layer (digits of v
   * in the workspace) and overlaps the main kernel's first code loads through programmatic dependent launch
   * (sm_90; in stream order elsewhere).  Same constraints as GEMV; needs a workspace. */
  LATTQ_VARIANT_GEMV_PDL = 8,
  /* tensor-core GEMM on Hopper's wgmma at the f16 rate (sm_90a builds on sm_90 GPUs, bf16 activations; f16 ones are
   * LATTQ_ERR_UNSUPPORTED, WGMMA serves them; session 10): two
   * prologue kernels write v as an fp16 B image (one power-of-two scale per token), the codes are decoded in
   * registers to fp16 z values (the A operand), fp32 accumulation over the whole of K; CTA = 128 or 256 rows x 64
   * or 128 tokens, a producer warp streams B by cp.async.bulk.  Any m works.  LATTQ_ERR_UNSUPPORTED elsewhere. */
  LATTQ_VARIANT_WGMMA_F16 = 9
} lattq_cuda_variant;

/* Number of visible CUDA devices; 0 when there is no driver or device (never an error). */
LATTQ_API int32_t lattq_cuda_device_count(void);

/* Workspace bytes needed by lattq_cuda_forward for m activation rows and this variant. */
LATTQ_API lattq_status lattq_cuda_forward_workspace_size(const lattq_layer_desc* desc, int64_t m,
                                                         int32_t variant, size_t* bytes);

/* y (m x N, dtype) = layer(x (m x K, dtype)).  dtype: LATTQ_F32, LATTQ_F16 or LATTQ_BF16.
 * x, y: 16-byte aligned; codes: 16-byte aligned TILED layout; workspace 256-byte aligned. */
LATTQ_API lattq_status lattq_cuda_forward(const lattq_layer* layer, const void* x, int32_t dtype, int64_t m,
                                          void* y, void* workspace, size_t workspace_bytes, int32_t variant,
                                          void* stream);

/* Most layers in one lattq_cuda_forward_group call. */
#define LATTQ_CUDA_MAX_GROUP 8

/* Workspace bytes needed by lattq_cuda_forward_group for these `count` layers (same k), m rows, this variant. */
LATTQ_API lattq_status lattq_cuda_forward_group_workspace_size(const lattq_layer_desc* descs, int32_t count, int64_t m,
                                                               int32_t variant, size_t* bytes);

/* Several layers that read the same input, e.g. the Q, K and V projections or gate and up:
 * y[i] (m x N_i, dtype) = layers[i](x (m x K, dtype)) for i < count (1..LATTQ_CUDA_MAX_GROUP); every layer has the
 * same K; y is a host array of `count` device pointers.  When every layer is TILED and served by GEMV (f16/bf16,
 * had_in <= 256, had_out <= 128), GEMV and GEMV_PDL serve all the layers in one launch (GEMV_PDL: one prologue
 * kernel + one main kernel); so does AUTO where it would pick one of them for a single layer of sum(N_i) rows, or
 * for every layer alone, by its rules for groups (at m = 8..16 these take the WGMMA variant on fewer layers than
 * lattq_cuda_forward's AUTO does; docs/kernels.md, "Grouped layers" and the variant table).  Otherwise the layers
 * run one after the other on `stream` as lattq_cuda_forward would run them, sharing the workspace.  The split-K
 * plan of one launch is made for the whole group, so results equal lattq_cuda_forward's up to fp32 summation order.
 * The argument, layout, support and workspace checks of every layer run before anything is launched (a message
 * names the failing layer as layers[i]); a launch failure (a driver error) can still come after earlier layers ran. */
LATTQ_API lattq_status lattq_cuda_forward_group(const lattq_layer* layers, int32_t count, const void* x, int32_t dtype,
                                                int64_t m, void* const* y, void* workspace, size_t workspace_bytes,
                                                int32_t variant, void* stream);

/* Codes (TILED or CANONICAL) -> What (N x K fp32, lattice domain, no transforms). Bit-exact equal to
 * lattq_decode(layer, 0, out) on the CPU. */
LATTQ_API lattq_status lattq_cuda_decode(const lattq_layer* layer, float* out, void* stream);

/* In place orthonormal block Walsh-Hadamard transform over rows x len elements of `dtype`. */
LATTQ_API lattq_status lattq_cuda_fwht(void* data, int32_t dtype, int64_t rows, int64_t len, int32_t block,
                                       void* stream);

#ifdef __cplusplus
}
#endif
#endif /* LATTQ_LATTQ_CUDA_H */
