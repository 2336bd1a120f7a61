// Shared helpers of the lattq CUDA kernels: error reporting (the core's thread-local last-error
// mechanism), pointer/alignment checks, dtype load/store.  Internal header, not installed.
#pragma once

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <cstdint>
#include <cstdio>

#include "internal.hpp"  // lattq::detail::set_error (core's thread-local last error)
#include "lattq/lattq.h"
#include "lattq/lattq_cuda.h"

namespace lattq_cuda {

using lattq::Status;
using lattq::detail::set_error;

inline lattq_status st(Status s) { return static_cast<lattq_status>(s); }

#define LQ_ERR(code, ...) st(set_error(Status::code, __VA_ARGS__))

// ---- dtype helpers --------------------------------------------------------------------------
inline size_t dtype_size(int32_t dt) { return dt == LATTQ_F32 ? 4 : 2; }
inline const char* dtype_name(int32_t dt) {
  return dt == LATTQ_F32 ? "f32" : dt == LATTQ_F16 ? "f16" : dt == LATTQ_BF16 ? "bf16" : "?";
}

template <int DT> struct DT_;
template <> struct DT_<LATTQ_F32> { using T = float; };
template <> struct DT_<LATTQ_F16> { using T = __half; };
template <> struct DT_<LATTQ_BF16> { using T = __nv_bfloat16; };

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

__host__ __device__ inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline bool is_pow2(int64_t x) { return x >= 1 && (x & (x - 1)) == 0; }
inline int ilog2(int64_t x) { int l = 0; while ((int64_t(1) << l) < x) ++l; return l; }

// ---- checks ---------------------------------------------------------------------------------
// A device pointer of the current device (or managed memory).  Host pointers -> LATTQ_ERR_DEVICE.
lattq_status check_device_ptr(const char* fn, const char* arg, const void* p, bool nullable = false);
lattq_status check_align(const char* fn, const char* arg, const void* p, size_t align);
lattq_status check_launch(const char* fn, const char* what);
lattq_status check_desc_cuda(const char* fn, const lattq_layer_desc* d);
lattq_status check_layer_cuda(const char* fn, const lattq_layer* L, bool tiled_only);

// The current device's ordinal (0 when the runtime cannot say; the error is cleared).
int current_device();

// Properties of the current device, queried once per device (host overhead matters at batch 1).
struct DeviceProps {
  int sm = 0, major = 0, smem_optin = 0;
};
const DeviceProps& device_props();

}  // namespace lattq_cuda
