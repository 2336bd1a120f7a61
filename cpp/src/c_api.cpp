// extern "C" wrapper over the C++ API (lattq.hpp).  No exception crosses this boundary.
#include <cstddef>
#include <new>
#include <type_traits>

#include "internal.hpp"

static_assert(sizeof(lattq::LayerDesc) == sizeof(lattq_layer_desc), "LayerDesc must mirror lattq_layer_desc");
static_assert(offsetof(lattq::LayerDesc, had_out) == offsetof(lattq_layer_desc, had_out), "LayerDesc layout");
static_assert(sizeof(lattq::LayerView) == sizeof(lattq_layer), "LayerView must mirror lattq_layer");
static_assert(offsetof(lattq::LayerView, bias) == offsetof(lattq_layer, bias), "LayerView layout");
static_assert(std::is_standard_layout<lattq::LayerView>::value, "LayerView must be standard layout");

namespace {
inline const lattq::LayerDesc* cpp(const lattq_layer_desc* d) { return reinterpret_cast<const lattq::LayerDesc*>(d); }
inline const lattq::LayerView* cpp(const lattq_layer* l) { return reinterpret_cast<const lattq::LayerView*>(l); }
inline lattq_status c(lattq::Status s) { return static_cast<lattq_status>(s); }

template <class F>
lattq_status guarded(const char* fn, F&& f) {
  try {
    return c(f());
  } catch (const std::bad_alloc&) {
    return c(lattq::detail::set_error(lattq::Status::Internal, "%s: out of memory", fn));
  } catch (...) {
    return c(lattq::detail::set_error(lattq::Status::Internal, "%s: internal error", fn));
  }
}
}  // namespace

extern "C" {

const char* lattq_version_string(void) { return lattq::version_string(); }
int32_t lattq_format_version(void) { return lattq::format_version(); }
const char* lattq_last_error(void) { return lattq::last_error(); }

const char* lattq_status_string(lattq_status s) {
  switch (s) {
    case LATTQ_OK: return "LATTQ_OK";
    case LATTQ_ERR_INVALID_ARGUMENT: return "LATTQ_ERR_INVALID_ARGUMENT";
    case LATTQ_ERR_DTYPE: return "LATTQ_ERR_DTYPE";
    case LATTQ_ERR_SHAPE: return "LATTQ_ERR_SHAPE";
    case LATTQ_ERR_ALIGNMENT: return "LATTQ_ERR_ALIGNMENT";
    case LATTQ_ERR_LAYOUT: return "LATTQ_ERR_LAYOUT";
    case LATTQ_ERR_NONFINITE: return "LATTQ_ERR_NONFINITE";
    case LATTQ_ERR_UNSUPPORTED: return "LATTQ_ERR_UNSUPPORTED";
    case LATTQ_ERR_WORKSPACE: return "LATTQ_ERR_WORKSPACE";
    case LATTQ_ERR_DEVICE: return "LATTQ_ERR_DEVICE";
    case LATTQ_ERR_NO_CUDA: return "LATTQ_ERR_NO_CUDA";
    case LATTQ_ERR_INTERNAL: return "LATTQ_ERR_INTERNAL";
  }
  return "LATTQ_ERR_UNKNOWN";
}

lattq_status lattq_validate_desc(const lattq_layer_desc* desc) {
  return guarded("lattq_validate_desc", [&] { return lattq::validate_desc(cpp(desc)); });
}
lattq_status lattq_validate_layer(const lattq_layer* layer) {
  return guarded("lattq_validate_layer", [&] { return lattq::validate_layer(cpp(layer)); });
}
int64_t lattq_canonical_bytes(const lattq_layer_desc* desc) { return lattq::canonical_bytes(cpp(desc)); }
int64_t lattq_packed_bytes(const lattq_layer_desc* desc) { return lattq::packed_bytes(cpp(desc)); }
lattq_status lattq_pack(const lattq_layer_desc* desc, const uint8_t* canonical, uint8_t* packed) {
  return guarded("lattq_pack", [&] { return lattq::pack(cpp(desc), canonical, packed); });
}
lattq_status lattq_unpack(const lattq_layer_desc* desc, const uint8_t* packed, uint8_t* canonical) {
  return guarded("lattq_unpack", [&] { return lattq::unpack(cpp(desc), packed, canonical); });
}
lattq_status lattq_decode(const lattq_layer* layer, int32_t with_transforms, float* out) {
  return guarded("lattq_decode", [&] { return lattq::decode(cpp(layer), with_transforms, out); });
}
lattq_status lattq_encode_vectors(int32_t bits, int32_t dim, const float* A, const float* b, const float* x,
                                  int64_t count, int32_t method, uint16_t* idx, float* sq_err) {
  return guarded("lattq_encode_vectors",
                 [&] { return lattq::encode_vectors(bits, dim, A, b, x, count, method, idx, sq_err); });
}
lattq_status lattq_encode_matrix(const lattq_layer_desc* desc, const float* A, const float* b, const float* w_hat,
                                 int32_t method, uint8_t* canonical) {
  return guarded("lattq_encode_matrix",
                 [&] { return lattq::encode_matrix(cpp(desc), A, b, w_hat, method, canonical); });
}
lattq_status lattq_fwht_f32(float* data, int64_t rows, int64_t len, int32_t block) {
  return guarded("lattq_fwht_f32", [&] { return lattq::fwht_f32(data, rows, len, block); });
}
lattq_status lattq_forward_workspace_size(const lattq_layer_desc* desc, int64_t m, size_t* bytes) {
  return guarded("lattq_forward_workspace_size", [&] { return lattq::forward_workspace_size(cpp(desc), m, bytes); });
}
lattq_status lattq_forward(const lattq_layer* layer, const void* x, int32_t dtype, int64_t m, void* y,
                           void* workspace, size_t workspace_bytes, int32_t num_threads) {
  return guarded("lattq_forward", [&] {
    return lattq::forward(cpp(layer), x, dtype, m, y, workspace, workspace_bytes, num_threads);
  });
}
void lattq_set_num_threads(int32_t n) {
  try {
    lattq::set_num_threads(n);
  } catch (...) {
  }
}
int32_t lattq_get_num_threads(void) { return lattq::get_num_threads(); }
lattq_status lattq_set_cpu_kernel(int32_t kernel) {
  return guarded("lattq_set_cpu_kernel", [&] { return lattq::set_cpu_kernel(kernel); });
}
int32_t lattq_get_cpu_kernel(void) { return lattq::get_cpu_kernel(); }
const char* lattq_cpu_kernel_name(int32_t kernel) { return lattq::cpu_kernel_name(kernel); }

}  // extern "C"
