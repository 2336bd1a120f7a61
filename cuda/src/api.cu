// lattq CUDA C API entry points: argument checks, workspace sizing, dispatch.
#include "kernels.cuh"

using namespace lattq_cuda;

// Variants in cuda/src/fast_v2_fused.cu (FUSED_GEMV, TILED_GEMM, WGMMA) and cuda/src/decode_gemv.cu (GEMV, GEMV_PDL).
namespace lattq_cuda {
const char* fused_unsupported_reason(const lattq_layer_desc* d, int32_t dtype);
size_t fused_workspace_bytes(const lattq_layer_desc* d, int64_t m, int32_t dtype);
lattq_status fused_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                           void* ws, size_t ws_bytes, cudaStream_t s);
const char* gemm_unsupported_reason(const lattq_layer_desc* d, int32_t dtype);
size_t gemm_workspace_bytes(const lattq_layer_desc* d, int64_t m, int32_t dtype);
lattq_status gemm_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                          void* ws, size_t ws_bytes, cudaStream_t s);
const char* wgmma_unsupported_reason(const lattq_layer_desc* d, int32_t dtype);
size_t wgmma_workspace_bytes(const lattq_layer_desc* d, int64_t m, int32_t dtype);
lattq_status wgmma_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                           void* ws, size_t ws_bytes, cudaStream_t s);
bool wgmma_available();
bool wgmma_preferred(const lattq_layer_desc* d, int64_t m);
const char* gemv_unsupported_reason(const lattq_layer_desc* d, int32_t dtype);
size_t gemv_pdl_workspace_bytes(const lattq_layer_desc* d, int64_t m);
bool gemv_pdl_preferred(const lattq_layer_desc* d, int64_t m);
lattq_status gemv_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                          bool pre, void* ws, cudaStream_t s);
}  // namespace lattq_cuda

extern "C" {

int32_t lattq_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

static int32_t pick_variant(const lattq_layer_desc* d, int32_t layout, int32_t dtype, int64_t m, int32_t variant) {
  if (variant != LATTQ_VARIANT_AUTO) return variant;
  if (layout != LATTQ_LAYOUT_TILED) return LATTQ_VARIANT_REFERENCE;
  if (imma_unsupported_reason(d, dtype, LATTQ_VARIANT_IMMA)[0] != 0) return LATTQ_VARIANT_REFERENCE;
  // GEMV with its prologue kernel behind PDL (sm_90; session 7 rules in gemv_pdl_preferred): m = 1 on the largest
  // layers, m = 2..8 on most, m <= 16 at n <= 4096
  if (gemv_unsupported_reason(d, dtype)[0] == 0 && gemv_pdl_preferred(d, m)) return LATTQ_VARIANT_GEMV_PDL;
  // The single-launch GEMV kernel (H100, bench/results/bench_gemm.md, session 6): m = 1 for every k; m = 2 with
  // k <= 16384; m <= 4 up to 14336 x 4096 weights (k <= 16384); m <= 8 up to 4096 x 4096.  Beyond that IMMA's
  // separate prologue kernel scales better with m.  At k = 28672 GEMV lost to IMMA at m = 1 until its split-K
  // plan started counting the clusters that fit at once (4 splits had put 64 clusters of 4 in two waves).
  const int64_t nk = d->n * d->k;
  const bool gemv_rule = m == 1 || (m == 2 && d->k <= 16384) || (m <= 4 && d->k <= 16384 && nk <= 14336LL * 4096) ||
                         (m <= 8 && nk <= 4096LL * 4096);
  if (gemv_rule && gemv_unsupported_reason(d, dtype)[0] == 0) return LATTQ_VARIANT_GEMV;
  // Hopper: the wgmma GEMM from m = 64 on, and from m = 16 where its CTAs fill the GPU (wgmma_preferred)
  if (wgmma_unsupported_reason(d, dtype)[0] == 0 && wgmma_available() && wgmma_preferred(d, m))
    return LATTQ_VARIANT_WGMMA;
  return LATTQ_VARIANT_IMMA;  // measured faster than IMMA_WIDE at every m
}

static lattq_status check_variant(const char* fn, int32_t variant) {
  if (variant < LATTQ_VARIANT_AUTO || variant > LATTQ_VARIANT_GEMV_PDL)
    return LQ_ERR(InvalidArgument, "%s: argument 'variant' = %d is not a lattq_cuda_variant", fn, variant);
  return LATTQ_OK;
}

lattq_status lattq_cuda_forward_workspace_size(const lattq_layer_desc* desc, int64_t m, int32_t variant,
                                               size_t* bytes) {
  const char* fn = "lattq_cuda_forward_workspace_size";
  lattq_status s;
  if (bytes == nullptr) return LQ_ERR(InvalidArgument, "%s: argument 'bytes' is NULL", fn);
  if (desc == nullptr) return LQ_ERR(InvalidArgument, "%s: argument 'desc' is NULL", fn);
  if ((s = st(lattq::detail::check_desc(fn, "desc", reinterpret_cast<const lattq::LayerDesc*>(desc))))) return s;
  if (m < 0) return LQ_ERR(Shape, "%s: argument 'm' = %lld is negative", fn, (long long)m);
  if ((s = check_variant(fn, variant))) return s;
  // The size must cover whatever the dispatcher picks for any dtype: take the maximum.  Only AUTO can
  // land on the reference path; an explicit variant needs only its own workspace (FUSED_GEMV with
  // fused transforms needs none).
  size_t need = (variant == LATTQ_VARIANT_AUTO || variant == LATTQ_VARIANT_REFERENCE) ? ref_workspace_bytes(desc, m) : 0;
  const int32_t dts[3] = {LATTQ_F32, LATTQ_F16, LATTQ_BF16};
  for (int32_t dt : dts) {
    for (int32_t v = LATTQ_VARIANT_IMMA; v <= LATTQ_VARIANT_IMMA_WIDE; ++v) {
      if (variant != LATTQ_VARIANT_AUTO && variant != v) continue;
      if (imma_unsupported_reason(desc, dt, v)[0] == 0) need = std::max(need, imma_workspace_bytes(desc, m, dt, v));
    }
    if (variant == LATTQ_VARIANT_FUSED_GEMV && fused_unsupported_reason(desc, dt)[0] == 0)
      need = std::max(need, fused_workspace_bytes(desc, m, dt));
    if (variant == LATTQ_VARIANT_TILED_GEMM && gemm_unsupported_reason(desc, dt)[0] == 0)
      need = std::max(need, gemm_workspace_bytes(desc, m, dt));
    if ((variant == LATTQ_VARIANT_WGMMA || variant == LATTQ_VARIANT_AUTO) && wgmma_unsupported_reason(desc, dt)[0] == 0)
      need = std::max(need, wgmma_workspace_bytes(desc, m, dt));
    // AUTO takes GEMV_PDL only up to m = 16 (gemv_pdl_preferred)
    if ((variant == LATTQ_VARIANT_GEMV_PDL || (variant == LATTQ_VARIANT_AUTO && m <= 16)) &&
        gemv_unsupported_reason(desc, dt)[0] == 0)
      need = std::max(need, gemv_pdl_workspace_bytes(desc, m));
  }
  *bytes = need;
  return LATTQ_OK;
}

lattq_status lattq_cuda_forward(const lattq_layer* layer, const void* x, int32_t dtype, int64_t m, void* y,
                                void* workspace, size_t workspace_bytes, int32_t variant, void* stream) {
  const char* fn = "lattq_cuda_forward";
  lattq_status s;
  if ((s = check_layer_cuda(fn, layer, false))) return s;
  if ((s = check_variant(fn, variant))) return s;
  if (dtype != LATTQ_F32 && dtype != LATTQ_F16 && dtype != LATTQ_BF16)
    return LQ_ERR(Dtype, "%s: argument 'dtype' = %d is not LATTQ_F32 (0), LATTQ_F16 (1) or LATTQ_BF16 (2)", fn, dtype);
  if (m < 0) return LQ_ERR(Shape, "%s: argument 'm' = %lld is negative", fn, (long long)m);
  if (m > 65535) return LQ_ERR(Shape, "%s: argument 'm' = %lld exceeds the supported maximum 65535", fn, (long long)m);
  const lattq_layer_desc* d = &layer->desc;
  if ((s = check_device_ptr(fn, "layer.su", layer->su))) return s;
  if ((s = check_align(fn, "layer.su", layer->su, 4))) return s;
  if ((s = check_device_ptr(fn, "layer.sv", layer->sv))) return s;
  if ((s = check_align(fn, "layer.sv", layer->sv, 4))) return s;
  if ((s = check_device_ptr(fn, "layer.bias", layer->bias, true))) return s;
  if ((s = check_align(fn, "layer.bias", layer->bias, 4))) return s;
  if (m == 0) return LATTQ_OK;
  if ((s = check_device_ptr(fn, "x", x))) return s;
  if ((s = check_align(fn, "x", x, 16))) return s;
  if ((s = check_device_ptr(fn, "y", y))) return s;
  if ((s = check_align(fn, "y", y, 16))) return s;
  if ((s = check_device_ptr(fn, "workspace", workspace, true))) return s;
  if ((s = check_align(fn, "workspace", workspace, 256))) return s;
  int32_t v = pick_variant(d, layer->layout, dtype, m, variant);
  size_t need = 0;
  if (v == LATTQ_VARIANT_REFERENCE) {
    need = ref_workspace_bytes(d, m);
  } else {
    if (layer->layout != LATTQ_LAYOUT_TILED)
      return LQ_ERR(Layout, "%s: variant %d needs 'layer.layout' = LATTQ_LAYOUT_TILED", fn, v);
    const char* why = v == LATTQ_VARIANT_FUSED_GEMV   ? fused_unsupported_reason(d, dtype)
                      : v == LATTQ_VARIANT_TILED_GEMM ? gemm_unsupported_reason(d, dtype)
                      : v == LATTQ_VARIANT_GEMV || v == LATTQ_VARIANT_GEMV_PDL ? gemv_unsupported_reason(d, dtype)
                      : v == LATTQ_VARIANT_WGMMA      ? wgmma_unsupported_reason(d, dtype)
                                                      : imma_unsupported_reason(d, dtype, v);
    if (why[0]) return LQ_ERR(Unsupported, "%s: variant %d cannot run this layer: %s", fn, v, why);
    need = v == LATTQ_VARIANT_FUSED_GEMV   ? fused_workspace_bytes(d, m, dtype)
           : v == LATTQ_VARIANT_TILED_GEMM ? gemm_workspace_bytes(d, m, dtype)
           : v == LATTQ_VARIANT_GEMV       ? 0
           : v == LATTQ_VARIANT_GEMV_PDL   ? gemv_pdl_workspace_bytes(d, m)
           : v == LATTQ_VARIANT_WGMMA      ? wgmma_workspace_bytes(d, m, dtype)
                                           : imma_workspace_bytes(d, m, dtype, v);
  }
  // a variant that needs no workspace (FUSED_GEMV with fused transforms) accepts workspace == NULL
  if ((need > 0 && workspace == nullptr) || workspace_bytes < need)
    return LQ_ERR(Workspace, "%s: argument 'workspace' has %zu bytes, %zu needed (see lattq_cuda_forward_workspace_size)",
                  fn, workspace == nullptr ? (size_t)0 : workspace_bytes, need);
  cudaStream_t cs = static_cast<cudaStream_t>(stream);
  if (v == LATTQ_VARIANT_REFERENCE) return ref_forward(fn, layer, x, dtype, m, y, workspace, cs);
  if (v == LATTQ_VARIANT_FUSED_GEMV) return fused_forward(fn, layer, x, dtype, m, y, workspace, workspace_bytes, cs);
  if (v == LATTQ_VARIANT_TILED_GEMM) return gemm_forward(fn, layer, x, dtype, m, y, workspace, workspace_bytes, cs);
  if (v == LATTQ_VARIANT_GEMV || v == LATTQ_VARIANT_GEMV_PDL)
    return gemv_forward(fn, layer, x, dtype, m, y, v == LATTQ_VARIANT_GEMV_PDL, workspace, cs);
  if (v == LATTQ_VARIANT_WGMMA) return wgmma_forward(fn, layer, x, dtype, m, y, workspace, workspace_bytes, cs);
  return imma_forward(fn, layer, x, dtype, m, y, workspace, workspace_bytes, v, cs);
}

lattq_status lattq_cuda_decode(const lattq_layer* layer, float* out, void* stream) {
  const char* fn = "lattq_cuda_decode";
  lattq_status s;
  if ((s = check_layer_cuda(fn, layer, false))) return s;
  if ((s = check_device_ptr(fn, "out", out))) return s;
  if ((s = check_align(fn, "out", out, 4))) return s;
  return decode_launch(fn, layer, out, static_cast<cudaStream_t>(stream));
}

lattq_status lattq_cuda_fwht(void* data, int32_t dtype, int64_t rows, int64_t len, int32_t block, void* stream) {
  const char* fn = "lattq_cuda_fwht";
  lattq_status s;
  if (dtype != LATTQ_F32 && dtype != LATTQ_F16 && dtype != LATTQ_BF16)
    return LQ_ERR(Dtype, "%s: argument 'dtype' = %d is not LATTQ_F32 (0), LATTQ_F16 (1) or LATTQ_BF16 (2)", fn, dtype);
  if (rows < 0) return LQ_ERR(Shape, "%s: argument 'rows' = %lld is negative", fn, (long long)rows);
  if (len <= 0) return LQ_ERR(Shape, "%s: argument 'len' = %lld must be positive", fn, (long long)len);
  if (!is_pow2(block)) return LQ_ERR(Shape, "%s: argument 'block' = %d is not a power of two", fn, block);
  if (len % block) return LQ_ERR(Shape, "%s: argument 'block' = %d does not divide 'len' = %lld", fn, block, (long long)len);
  if (rows > 65535) return LQ_ERR(Shape, "%s: argument 'rows' = %lld exceeds 65535", fn, (long long)rows);
  if (rows == 0) return LATTQ_OK;
  if ((s = check_device_ptr(fn, "data", data))) return s;
  if ((s = check_align(fn, "data", data, dtype_size(dtype)))) return s;
  return fwht_launch(fn, data, dtype, rows, len, block, static_cast<cudaStream_t>(stream));
}

}  // extern "C"
