// lattq CUDA C API entry points: argument checks, workspace sizing, dispatch.
#include <cstdio>
#include <cstring>

#include "kernels.cuh"

using namespace lattq_cuda;

// Variants in cuda/src/fast_v2_fused.cu (FUSED_GEMV, TILED_GEMM, WGMMA, WGMMA_F16) and cuda/src/decode_gemv.cu (GEMV, GEMV_PDL).
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
bool wgmma_wh_preferred(const lattq_layer_desc* d, int64_t m, bool in_group);
const char* wgmma_f16_unsupported_reason(const lattq_layer_desc* d, int32_t dtype);
bool wgmma_f16_preferred(const lattq_layer_desc* d, int64_t m);
size_t wgmma_f16_workspace_bytes(const lattq_layer_desc* d, int64_t m);
lattq_status wgmma_f16_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                               void* ws, size_t ws_bytes, cudaStream_t s);
const char* gemv_unsupported_reason(const lattq_layer_desc* d, int32_t dtype);
size_t gemv_pdl_workspace_bytes(const lattq_layer_desc* d, int64_t m);
bool gemv_pdl_preferred(const lattq_layer_desc* d, int64_t m);
size_t gemv_pdl_group_workspace_bytes(const lattq_layer_desc* d, int count, int64_t m);
lattq_status gemv_forward(const char* fn, const lattq_layer* Ls, int count, const void* x, int32_t dtype, int64_t m,
                          void* const* y, bool pre, void* ws, cudaStream_t s);
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

// in_group: lattq_cuda_forward_group's choice (group_variant), which keeps session 18's rule for WGMMA at m <= 32
static int32_t pick_variant(const lattq_layer_desc* d, int32_t layout, int32_t dtype, int64_t m, int32_t variant,
                            bool in_group = false) {
  if (variant != LATTQ_VARIANT_AUTO) return variant;
  if (layout != LATTQ_LAYOUT_TILED) return LATTQ_VARIANT_REFERENCE;
  if (imma_unsupported_reason(d, dtype, LATTQ_VARIANT_IMMA)[0] != 0) return LATTQ_VARIANT_REFERENCE;
  const bool hopper_gemm = wgmma_unsupported_reason(d, dtype)[0] == 0 && wgmma_available();
  const bool f16_gemm = hopper_gemm && wgmma_f16_unsupported_reason(d, dtype)[0] == 0 && wgmma_f16_preferred(d, m);
  // m = 8..32: the integer WGMMA kernel on WGMMA_F16's frame where wgmma_wh_preferred says (sessions 18-19), for f16
  // and bf16, ahead of WGMMA_F16 and GEMV_PDL
  if (hopper_gemm && wgmma_wh_preferred(d, m, in_group)) return LATTQ_VARIANT_WGMMA;
  // m = 8..16: the f16-rate GEMM where wgmma_f16_preferred says (session 17: the 70B-sized layers, and at m >= 9 also
  // n < k), ahead of GEMV_PDL
  if (m >= 8 && m <= 16 && f16_gemm) return LATTQ_VARIANT_WGMMA_F16;
  // GEMV with its prologue kernel behind PDL (sm_90; session 7 and 9 rules in gemv_pdl_preferred): m = 1 on the
  // largest layers, m = 2 on most, m = 3..15 on all, m = 16 at n <= 4096
  if (gemv_unsupported_reason(d, dtype)[0] == 0 && gemv_pdl_preferred(d, m)) return LATTQ_VARIANT_GEMV_PDL;
  // The single-launch GEMV kernel (H100, bench/results/bench_gemm.md, session 6): m = 1 for every k; m = 2 with
  // k <= 16384; m <= 4 up to 14336 x 4096 weights (k <= 16384); m <= 8 up to 4096 x 4096.  Beyond that IMMA's
  // separate prologue kernel scales better with m.  At k = 28672 GEMV lost to IMMA at m = 1 until its split-K
  // plan started counting the clusters that fit at once (4 splits had put 64 clusters of 4 in two waves).
  const int64_t nk = d->n * d->k;
  const bool gemv_rule = m == 1 || (m == 2 && d->k <= 16384) || (m <= 4 && d->k <= 16384 && nk <= 14336LL * 4096) ||
                         (m <= 8 && nk <= 4096LL * 4096);
  if (gemv_rule && gemv_unsupported_reason(d, dtype)[0] == 0) return LATTQ_VARIANT_GEMV;
  // Hopper: for bf16 the f16-rate GEMM where wgmma_f16_preferred says (from m = 16 to 256 on, by shape), else the
  // wgmma GEMM from m = 64 on, and from m = 16 where its CTAs fill the GPU (wgmma_preferred)
  if (hopper_gemm) {
    if (f16_gemm) return LATTQ_VARIANT_WGMMA_F16;
    if (wgmma_preferred(d, m)) return LATTQ_VARIANT_WGMMA;
  }
  return LATTQ_VARIANT_IMMA;  // measured faster than IMMA_WIDE at every m
}

static lattq_status check_variant(const char* fn, int32_t variant) {
  if (variant < LATTQ_VARIANT_AUTO || variant > LATTQ_VARIANT_WGMMA_F16)
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
    if ((variant == LATTQ_VARIANT_WGMMA_F16 || (variant == LATTQ_VARIANT_AUTO && m >= 8)) &&
        wgmma_f16_unsupported_reason(desc, dt)[0] == 0)
      need = std::max(need, wgmma_f16_workspace_bytes(desc, m));
    // AUTO takes GEMV_PDL only up to m = 16 (gemv_pdl_preferred)
    if ((variant == LATTQ_VARIANT_GEMV_PDL || (variant == LATTQ_VARIANT_AUTO && m <= 16)) &&
        gemv_unsupported_reason(desc, dt)[0] == 0)
      need = std::max(need, gemv_pdl_workspace_bytes(desc, m));
  }
  *bytes = need;
  return LATTQ_OK;
}

// A layer's own arguments (everything but x, y and the workspace), as lattq_cuda_forward checks them.
static lattq_status check_forward_layer(const char* fn, const lattq_layer* layer) {
  lattq_status s;
  if ((s = check_layer_cuda(fn, layer, false))) return s;
  if ((s = check_device_ptr(fn, "layer.su", layer->su))) return s;
  if ((s = check_align(fn, "layer.su", layer->su, 4))) return s;
  if ((s = check_device_ptr(fn, "layer.sv", layer->sv))) return s;
  if ((s = check_align(fn, "layer.sv", layer->sv, 4))) return s;
  if ((s = check_device_ptr(fn, "layer.bias", layer->bias, true))) return s;
  return check_align(fn, "layer.bias", layer->bias, 4);
}

static lattq_status check_forward_args(const char* fn, int32_t dtype, int64_t m, int32_t variant) {
  lattq_status s;
  if ((s = check_variant(fn, variant))) return s;
  if (dtype != LATTQ_F32 && dtype != LATTQ_F16 && dtype != LATTQ_BF16)
    return LQ_ERR(Dtype, "%s: argument 'dtype' = %d is not LATTQ_F32 (0), LATTQ_F16 (1) or LATTQ_BF16 (2)", fn, dtype);
  if (m < 0) return LQ_ERR(Shape, "%s: argument 'm' = %lld is negative", fn, (long long)m);
  if (m > 65535) return LQ_ERR(Shape, "%s: argument 'm' = %lld exceeds the supported maximum 65535", fn, (long long)m);
  return LATTQ_OK;
}

// The variant that runs this layer and the workspace it needs, or the error that lattq_cuda_forward reports.
static lattq_status plan_forward(const char* fn, const lattq_layer* layer, int32_t dtype, int64_t m, int32_t variant,
                                 int32_t* v_out, size_t* need_out) {
  const lattq_layer_desc* d = &layer->desc;
  const int32_t v = pick_variant(d, layer->layout, dtype, m, variant);
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
                      : v == LATTQ_VARIANT_WGMMA_F16  ? wgmma_f16_unsupported_reason(d, dtype)
                                                      : imma_unsupported_reason(d, dtype, v);
    if (why[0]) return LQ_ERR(Unsupported, "%s: variant %d cannot run this layer: %s", fn, v, why);
    need = v == LATTQ_VARIANT_FUSED_GEMV   ? fused_workspace_bytes(d, m, dtype)
           : v == LATTQ_VARIANT_TILED_GEMM ? gemm_workspace_bytes(d, m, dtype)
           : v == LATTQ_VARIANT_GEMV       ? 0
           : v == LATTQ_VARIANT_GEMV_PDL   ? gemv_pdl_workspace_bytes(d, m)
           : v == LATTQ_VARIANT_WGMMA      ? wgmma_workspace_bytes(d, m, dtype)
           : v == LATTQ_VARIANT_WGMMA_F16  ? wgmma_f16_workspace_bytes(d, m)
                                           : imma_workspace_bytes(d, m, dtype, v);
  }
  *v_out = v;
  *need_out = need;
  return LATTQ_OK;
}

// Launches variant v (from plan_forward) on a layer whose arguments and workspace are checked.
static lattq_status run_planned(const char* fn, const lattq_layer* layer, int32_t v, const void* x, int32_t dtype,
                                int64_t m, void* y, void* workspace, size_t workspace_bytes, cudaStream_t cs) {
  if (v == LATTQ_VARIANT_REFERENCE) return ref_forward(fn, layer, x, dtype, m, y, workspace, cs);
  if (v == LATTQ_VARIANT_FUSED_GEMV) return fused_forward(fn, layer, x, dtype, m, y, workspace, workspace_bytes, cs);
  if (v == LATTQ_VARIANT_TILED_GEMM) return gemm_forward(fn, layer, x, dtype, m, y, workspace, workspace_bytes, cs);
  if (v == LATTQ_VARIANT_GEMV || v == LATTQ_VARIANT_GEMV_PDL)
    return gemv_forward(fn, layer, 1, x, dtype, m, &y, v == LATTQ_VARIANT_GEMV_PDL, workspace, cs);
  if (v == LATTQ_VARIANT_WGMMA) return wgmma_forward(fn, layer, x, dtype, m, y, workspace, workspace_bytes, cs);
  if (v == LATTQ_VARIANT_WGMMA_F16)
    return wgmma_f16_forward(fn, layer, x, dtype, m, y, workspace, workspace_bytes, cs);
  return imma_forward(fn, layer, x, dtype, m, y, workspace, workspace_bytes, v, cs);
}

lattq_status lattq_cuda_forward(const lattq_layer* layer, const void* x, int32_t dtype, int64_t m, void* y,
                                void* workspace, size_t workspace_bytes, int32_t variant, void* stream) {
  const char* fn = "lattq_cuda_forward";
  lattq_status s;
  if ((s = check_forward_layer(fn, layer))) return s;
  if ((s = check_forward_args(fn, dtype, m, variant))) return s;
  if (m == 0) return LATTQ_OK;
  if ((s = check_device_ptr(fn, "x", x))) return s;
  if ((s = check_align(fn, "x", x, 16))) return s;
  if ((s = check_device_ptr(fn, "y", y))) return s;
  if ((s = check_align(fn, "y", y, 16))) return s;
  if ((s = check_device_ptr(fn, "workspace", workspace, true))) return s;
  if ((s = check_align(fn, "workspace", workspace, 256))) return s;
  int32_t v = 0;
  size_t need = 0;
  if ((s = plan_forward(fn, layer, dtype, m, variant, &v, &need))) return s;
  // a variant that needs no workspace (FUSED_GEMV with fused transforms) accepts workspace == NULL
  if ((need > 0 && workspace == nullptr) || workspace_bytes < need)
    return LQ_ERR(Workspace, "%s: argument 'workspace' has %zu bytes, %zu needed (see lattq_cuda_forward_workspace_size)",
                  fn, workspace == nullptr ? (size_t)0 : workspace_bytes, need);
  return run_planned(fn, layer, v, x, dtype, m, y, workspace, workspace_bytes, static_cast<cudaStream_t>(stream));
}

// ---- several layers on one input (lattq_cuda_forward_group) ------------------------------------------------------
// The message of a failed per-layer step, re-issued with the layer's index (same status code).
// The inner message's own "lattq_cuda_...: " prefix is dropped: "fn: layers[i]: argument 'layer.A' is NULL".
static lattq_status in_layer(const char* fn, int i, lattq_status s) {
  if (s == LATTQ_OK) return s;
  char msg[768];
  std::snprintf(msg, sizeof msg, "%s", lattq_last_error());
  const char* body = msg;
  if (std::strncmp(msg, "lattq_cuda_", 11) == 0) {
    const char* colon = std::strstr(msg, ": ");
    if (colon != nullptr) body = colon + 2;
  }
  return st(set_error(static_cast<Status>(s), "%s: layers[%d]: %s", fn, i, body));
}

// before anything reads the caller's arrays
static lattq_status check_group_count(const char* fn, int32_t count) {
  if (count < 1 || count > LATTQ_CUDA_MAX_GROUP)
    return LQ_ERR(InvalidArgument, "%s: argument 'count' = %d is outside 1..%d (LATTQ_CUDA_MAX_GROUP)", fn, count,
                  LATTQ_CUDA_MAX_GROUP);
  return LATTQ_OK;
}

static lattq_status check_group_descs(const char* fn, const lattq_layer_desc* const* descs, int32_t count) {
  for (int32_t i = 0; i < count; ++i)
    if (descs[i]->k != descs[0]->k)
      return LQ_ERR(Shape, "%s: layers[%d] has k = %lld but layers[0] has k = %lld: a group shares its input", fn, i,
                    (long long)descs[i]->k, (long long)descs[0]->k);
  return LATTQ_OK;
}

// The one launch of a group: GEMV / GEMV_PDL when every layer is TILED and GEMV serves it (AUTO: when the dispatcher
// picks one of them for a layer of sum(n) rows, or every layer alone would take one of them, and the row groups of
// all the layers fit one grid); 0 = run the layers one by one.
static int32_t group_variant(const lattq_layer* layers, int32_t count, int32_t dtype, int64_t m, int32_t variant) {
  if (variant != LATTQ_VARIANT_AUTO && variant != LATTQ_VARIANT_GEMV && variant != LATTQ_VARIANT_GEMV_PDL) return 0;
  lattq_layer_desc all = layers[0].desc;
  all.n = 0;
  int64_t rgroups = 0;
  for (int32_t i = 0; i < count; ++i) {
    if (layers[i].layout != LATTQ_LAYOUT_TILED || gemv_unsupported_reason(&layers[i].desc, dtype)[0] != 0) return 0;
    all.n += layers[i].desc.n;
    rgroups += cdiv(layers[i].desc.n, 128);
  }
  if (variant != LATTQ_VARIANT_AUTO) return variant;
  if (rgroups > 65535) return 0;  // sum(n) > 8.4M rows: more row groups than one grid holds
  const int32_t v = pick_variant(&all, LATTQ_LAYOUT_TILED, dtype, m, LATTQ_VARIANT_AUTO, true);
  if (v == LATTQ_VARIANT_GEMV || v == LATTQ_VARIANT_GEMV_PDL) return v;
  // The rules for one layer of sum(n) rows say no (m = 5..16 with sum(n) above 16384 / 4096), but every layer alone
  // would take GEMV / GEMV_PDL: one launch still wins where measured (session-8 H100 runs, forced GEMV_PDL group vs
  // the layers one by one: Llama-2-7B QKV at m = 16 37.2 vs 54.0 us and gate/up at m = 8 37.4 vs 45.3 at 50b6601,
  // bench/results/gpu/h100_session8/bench_group_50b6601.md; 37.8 vs 50.0 and 37.4 vs 42.1 at 649fbfb,
  // bench/results/bench_group.md).  Where a layer alone takes IMMA / WGMMA (Llama-3-70B gate/up at m = 8: 101.9 us
  // one by one vs 117.0 grouped at 649fbfb) the layers run one by one.
  bool pdl = false, each = true, all_gemm = true;
  for (int32_t i = 0; i < count; ++i) {
    const int32_t vi = pick_variant(&layers[i].desc, LATTQ_LAYOUT_TILED, dtype, m, LATTQ_VARIANT_AUTO, true);
    each = each && (vi == LATTQ_VARIANT_GEMV || vi == LATTQ_VARIANT_GEMV_PDL);
    pdl = pdl || vi == LATTQ_VARIANT_GEMV_PDL;
    all_gemm = all_gemm && (vi == LATTQ_VARIANT_WGMMA_F16 || vi == LATTQ_VARIANT_WGMMA);
  }
  if (each) return pdl ? LATTQ_VARIANT_GEMV_PDL : LATTQ_VARIANT_GEMV;
  // Where every layer alone takes WGMMA_F16 or WGMMA (m = 16 since session 17, m = 9..32 WGMMA since session 18), the
  // layers run one by one: Llama-2-7B gate/up at m = 16 measured 42.6 us one by one (WGMMA_F16) against 46.3 as one
  // GEMV_PDL group (bench_group at 1f89dd0)
  if (all_gemm) return 0;
  // m = 9..16 on sm_90: one layer takes GEMV_PDL only up to n = 4096, but one GEMV_PDL launch for a group of up to
  // 24576 x 4096 weights still beat the layers one by one at 649fbfb (m = 16: Llama-3-70B QKV, 10240 x 8192, 54.5 vs
  // 64.1 us; Llama-2-7B gate/up, 22016 x 4096, 52.2 vs 56.1), and lost above (Llama-3-8B gate/up, 28672 x 4096,
  // 62.1 vs 57.3; bench/results/bench_group.json).  With this rule (ea17881) AUTO took 53.9 and 52.0 us there
  // (bench/results/gpu/h100_session8/bench_group_ea17881.json).
  if (m > 8 && m <= 16 && device_props().major == 9 && all.n * all.k <= 24576LL * 4096) return LATTQ_VARIANT_GEMV_PDL;
  return 0;
}

lattq_status lattq_cuda_forward_group_workspace_size(const lattq_layer_desc* descs, int32_t count, int64_t m,
                                                     int32_t variant, size_t* bytes) {
  const char* fn = "lattq_cuda_forward_group_workspace_size";
  if (bytes == nullptr) return LQ_ERR(InvalidArgument, "%s: argument 'bytes' is NULL", fn);
  if (descs == nullptr) return LQ_ERR(InvalidArgument, "%s: argument 'descs' is NULL", fn);
  const lattq_layer_desc* ds[LATTQ_CUDA_MAX_GROUP];
  lattq_status s;
  if ((s = check_group_count(fn, count))) return s;
  size_t need = 0;
  for (int32_t i = 0; i < count; ++i) {
    size_t one = 0;
    if ((s = in_layer(fn, i, lattq_cuda_forward_workspace_size(&descs[i], m, variant, &one)))) return s;
    need = std::max(need, one);  // the layers run one by one: they share it
    ds[i] = &descs[i];
  }
  if ((s = check_group_descs(fn, ds, count))) return s;
  // one GEMV_PDL launch for all: a workspace part per layer (AUTO takes GEMV_PDL only up to m = 16)
  if (variant == LATTQ_VARIANT_GEMV_PDL || (variant == LATTQ_VARIANT_AUTO && m <= 16)) {
    bool gemv_all = true;
    for (int32_t i = 0; i < count; ++i) gemv_all = gemv_all && gemv_unsupported_reason(&descs[i], LATTQ_BF16)[0] == 0;
    if (gemv_all) need = std::max(need, gemv_pdl_group_workspace_bytes(&descs[0], count, m));
  }
  *bytes = need;
  return LATTQ_OK;
}

lattq_status lattq_cuda_forward_group(const lattq_layer* layers, int32_t count, const void* x, int32_t dtype, int64_t m,
                                      void* const* y, void* workspace, size_t workspace_bytes, int32_t variant,
                                      void* stream) {
  const char* fn = "lattq_cuda_forward_group";
  lattq_status s;
  if (layers == nullptr) return LQ_ERR(InvalidArgument, "%s: argument 'layers' is NULL", fn);
  if (y == nullptr) return LQ_ERR(InvalidArgument, "%s: argument 'y' is NULL (a host array of count pointers)", fn);
  if ((s = check_group_count(fn, count))) return s;
  const lattq_layer_desc* ds[LATTQ_CUDA_MAX_GROUP];
  for (int32_t i = 0; i < count; ++i) {
    if ((s = in_layer(fn, i, check_forward_layer(fn, &layers[i])))) return s;
    ds[i] = &layers[i].desc;
  }
  if ((s = check_group_descs(fn, ds, count))) return s;
  if ((s = check_forward_args(fn, dtype, m, variant))) return s;
  if (m == 0) return LATTQ_OK;
  if ((s = check_device_ptr(fn, "x", x))) return s;
  if ((s = check_align(fn, "x", x, 16))) return s;
  for (int32_t i = 0; i < count; ++i) {
    char arg[16];
    std::snprintf(arg, sizeof arg, "y[%d]", i);
    if ((s = check_device_ptr(fn, arg, y[i]))) return s;
    if ((s = check_align(fn, arg, y[i], 16))) return s;
  }
  if ((s = check_device_ptr(fn, "workspace", workspace, true))) return s;
  if ((s = check_align(fn, "workspace", workspace, 256))) return s;
  const int32_t v = group_variant(layers, count, dtype, m, variant);
  // every layer is checked before anything is launched: the layers that run one by one (v = 0) as
  // lattq_cuda_forward checks them, those of one GEMV / GEMV_PDL launch likewise (the forced variant named)
  int32_t vs[LATTQ_CUDA_MAX_GROUP];
  size_t need = v == LATTQ_VARIANT_GEMV_PDL ? gemv_pdl_group_workspace_bytes(ds[0], count, m) : 0;
  for (int32_t i = 0; i < count; ++i) {
    size_t one = 0;
    if ((s = in_layer(fn, i, plan_forward(fn, &layers[i], dtype, m, v != 0 ? v : variant, &vs[i], &one)))) return s;
    if (v == 0) need = std::max(need, one);
  }
  if ((need > 0 && workspace == nullptr) || workspace_bytes < need)
    return LQ_ERR(Workspace,
                  "%s: argument 'workspace' has %zu bytes, %zu needed (see lattq_cuda_forward_group_workspace_size)", fn,
                  workspace == nullptr ? (size_t)0 : workspace_bytes, need);
  if (v != 0)  // one launch for all
    return gemv_forward(fn, layers, count, x, dtype, m, y, v == LATTQ_VARIANT_GEMV_PDL, workspace,
                        static_cast<cudaStream_t>(stream));
  // one after the other on the stream, sharing the workspace (stream order); everything was checked above
  for (int32_t i = 0; i < count; ++i)
    if ((s = in_layer(fn, i, run_planned(fn, &layers[i], vs[i], x, dtype, m, y[i], workspace, workspace_bytes,
                                         static_cast<cudaStream_t>(stream)))))
      return s;
  return LATTQ_OK;
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
