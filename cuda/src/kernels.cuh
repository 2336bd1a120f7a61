// Parameter structs and launchers of the lattq CUDA kernels (internal).
#pragma once
#include <algorithm>
#include <type_traits>

#include "common.cuh"

namespace lattq_cuda {

inline size_t align256(size_t x) { return (x + 255) / 256 * 256; }

struct DecodeParams {
  const uint8_t* codes;
  int layout, bits, dim;
  int64_t n, k, R, C;
  const float* A;
  const float* b;
  float* out;
};

struct RefGemvParams {
  const uint8_t* codes;
  int layout, bits;
  int64_t n, k, R, C, m;
  const float* v;
  const float* c;
  float* t;
};

lattq_status fwht_launch(const char* fn, void* data, int32_t dtype, int64_t rows, int64_t len, int32_t block,
                         cudaStream_t s);
lattq_status decode_launch(const char* fn, const lattq_layer* L, float* out, cudaStream_t s);

size_t ref_workspace_bytes(const lattq_layer_desc* d, int64_t m);
lattq_status ref_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                         void* ws, cudaStream_t s);

lattq_status ref_scale_in_launch(const char* fn, const void* x, int32_t dtype, const float* su, float* u, int64_t m,
                                 int64_t k, int nblocks, cudaStream_t s);
lattq_status ref_epilogue_launch(const char* fn, const float* t, const float* sv, const float* bias, void* y,
                                 int32_t dtype, int64_t m, int64_t n, cudaStream_t s);

// ---- fast k=2, d=4 path (fast_imma.cu) --------------------------------------------------------
// Returns "" if the layer/variant can use the fast path, else a reason.
const char* imma_unsupported_reason(const lattq_layer_desc* d, int32_t dtype, int32_t variant);
size_t imma_workspace_bytes(const lattq_layer_desc* d, int64_t m, int32_t dtype, int32_t variant);
lattq_status imma_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                          void* ws, size_t ws_bytes, int32_t variant, cudaStream_t s);

}  // namespace lattq_cuda
