// lattq C++17 API (core, CPU).  The C API in lattq.h is a thin extern "C" wrapper over this.
//
// - Every function returns lattq::Status (no exceptions cross this API); on error a message that names
//   the offending argument exactly as the C API parameter is named is available from last_error()
//   (thread-local), e.g. "lattq_forward: argument 'x' is not aligned to 2 bytes (bf16)".
// - All buffers are caller-owned; LayerView holds non-owning pointers.  forward() never allocates.
// - The numeric ids (status, dtype, layout, encode method) are those of lattq.h.
#ifndef LATTQ_LATTQ_HPP
#define LATTQ_LATTQ_HPP

#include <cstddef>
#include <cstdint>

#include "lattq/lattq.h"

namespace lattq {

enum class Status : int32_t {
  Ok = LATTQ_OK,
  InvalidArgument = LATTQ_ERR_INVALID_ARGUMENT,
  Dtype = LATTQ_ERR_DTYPE,
  Shape = LATTQ_ERR_SHAPE,
  Alignment = LATTQ_ERR_ALIGNMENT,
  Layout = LATTQ_ERR_LAYOUT,
  NonFinite = LATTQ_ERR_NONFINITE,
  Unsupported = LATTQ_ERR_UNSUPPORTED,
  Workspace = LATTQ_ERR_WORKSPACE,
  Device = LATTQ_ERR_DEVICE,
  NoCuda = LATTQ_ERR_NO_CUDA,
  Internal = LATTQ_ERR_INTERNAL,
};

enum class Dtype : int32_t { F32 = LATTQ_F32, F16 = LATTQ_F16, BF16 = LATTQ_BF16 };
enum class Layout : int32_t { Canonical = LATTQ_LAYOUT_CANONICAL, Tiled = LATTQ_LAYOUT_TILED };
enum class EncodeMethod : int32_t {
  Auto = LATTQ_ENCODE_AUTO,
  Exhaustive = LATTQ_ENCODE_EXHAUSTIVE,
  Orthogonal = LATTQ_ENCODE_ORTHOGONAL
};
// CPU kernel families for lattq::forward (runtime dispatch by cpuid; Auto = best supported).
enum class CpuKernel : int32_t {
  Auto = LATTQ_CPU_KERNEL_AUTO,
  Scalar = LATTQ_CPU_KERNEL_SCALAR,
  Avx2 = LATTQ_CPU_KERNEL_AVX2,
  Avx512 = LATTQ_CPU_KERNEL_AVX512
};

// Same fields and memory layout as lattq_layer_desc.
struct LayerDesc {
  int32_t bits = 2;
  int32_t dim = 4;
  int64_t n = 0;
  int64_t k = 0;
  int32_t had_in = 1;
  int32_t had_out = 1;
};

// Non-owning view of a quantized layer; same fields and memory layout as lattq_layer.
struct LayerView {
  LayerDesc desc;
  int32_t layout = LATTQ_LAYOUT_TILED;
  const uint8_t* codes = nullptr;
  const float* A = nullptr;
  const float* b = nullptr;
  const float* su = nullptr;
  const float* sv = nullptr;
  const float* bias = nullptr;
};

inline const char* to_string(Status s) { return lattq_status_string(static_cast<lattq_status>(s)); }

const char* version_string();
int32_t format_version();
const char* last_error();

Status validate_desc(const LayerDesc* desc);
Status validate_layer(const LayerView* layer);
int64_t canonical_bytes(const LayerDesc* desc);  // -1 on invalid desc
int64_t packed_bytes(const LayerDesc* desc);     // -1 on invalid desc
Status pack(const LayerDesc* desc, const uint8_t* canonical, uint8_t* packed);
Status unpack(const LayerDesc* desc, const uint8_t* packed, uint8_t* canonical);

Status decode(const LayerView* layer, int32_t with_transforms, float* out);
Status encode_vectors(int32_t bits, int32_t dim, const float* A, const float* b, const float* x, int64_t count,
                      int32_t method, uint16_t* idx, float* sq_err);
Status encode_matrix(const LayerDesc* desc, const float* A, const float* b, const float* w_hat, int32_t method,
                     uint8_t* canonical);

Status fwht_f32(float* data, int64_t rows, int64_t len, int32_t block);

Status forward_workspace_size(const LayerDesc* desc, int64_t m, size_t* bytes);
Status forward(const LayerView* layer, const void* x, int32_t dtype, int64_t m, void* y, void* workspace,
               size_t workspace_bytes, int32_t num_threads);

void set_num_threads(int32_t n);
int32_t get_num_threads();

Status set_cpu_kernel(int32_t kernel);
int32_t get_cpu_kernel();  // the kernel forward uses now (never Auto)
const char* cpu_kernel_name(int32_t kernel);

// Element conversions used by the core (round-to-nearest-even, NaN stays NaN, Inf stays Inf).
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
float bfloat16_to_float(uint16_t h);
uint16_t float_to_bfloat16(float f);

}  // namespace lattq

#endif  // LATTQ_LATTQ_HPP
