// Checks shared by the lattq CUDA entry points.
#include "common.cuh"

namespace lattq_cuda {

lattq_status check_device_ptr(const char* fn, const char* arg, const void* p, bool nullable) {
  if (p == nullptr) {
    if (nullable) return LATTQ_OK;
    return LQ_ERR(InvalidArgument, "%s: argument '%s' is NULL", fn, arg);
  }
  cudaPointerAttributes attr;
  cudaError_t e = cudaPointerGetAttributes(&attr, p);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls are not affected
    return LQ_ERR(Device, "%s: argument '%s' (%p) is not a CUDA device pointer (%s)", fn, arg, p,
                  cudaGetErrorString(e));
  }
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged) {
    return LQ_ERR(Device, "%s: argument '%s' (%p) is %s memory, expected device memory", fn, arg, p,
                  attr.type == cudaMemoryTypeHost ? "pinned host" : "host (unregistered)");
  }
  if (attr.type != cudaMemoryTypeDevice) return LATTQ_OK;
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    cudaGetLastError();
    return LQ_ERR(Device, "%s: cudaGetDevice failed", fn);
  }
  if (attr.device != dev) {
    return LQ_ERR(Device, "%s: argument '%s' lives on device %d but the current device is %d", fn, arg,
                  attr.device, dev);
  }
  return LATTQ_OK;
}

lattq_status check_align(const char* fn, const char* arg, const void* p, size_t align) {
  if (p != nullptr && (reinterpret_cast<uintptr_t>(p) % align) != 0)
    return LQ_ERR(Alignment, "%s: argument '%s' (%p) is not aligned to %zu bytes", fn, arg, p, align);
  return LATTQ_OK;
}

lattq_status check_launch(const char* fn, const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return LQ_ERR(Device, "%s: launching %s failed: %s", fn, what, cudaGetErrorString(e));
  return LATTQ_OK;
}

lattq_status check_desc_cuda(const char* fn, const lattq_layer_desc* d) {
  if (d == nullptr) return LQ_ERR(InvalidArgument, "%s: argument 'desc' is NULL", fn);
  return st(lattq::detail::check_desc(fn, "layer.desc", reinterpret_cast<const lattq::LayerDesc*>(d)));
}

lattq_status check_layer_cuda(const char* fn, const lattq_layer* L, bool tiled_only) {
  if (L == nullptr) return LQ_ERR(InvalidArgument, "%s: argument 'layer' is NULL", fn);
  lattq_status s = check_desc_cuda(fn, &L->desc);
  if (s) return s;
  if (L->layout != LATTQ_LAYOUT_TILED && (tiled_only || L->layout != LATTQ_LAYOUT_CANONICAL))
    return LQ_ERR(Layout, "%s: argument 'layer.layout' = %d is not supported here (expected %s)", fn, L->layout,
                  tiled_only ? "LATTQ_LAYOUT_TILED (1)" : "LATTQ_LAYOUT_TILED (1) or LATTQ_LAYOUT_CANONICAL (0)");
  if ((s = check_device_ptr(fn, "layer.codes", L->codes))) return s;
  if ((s = check_align(fn, "layer.codes", L->codes, L->layout == LATTQ_LAYOUT_TILED ? 16 : 1))) return s;
  if ((s = check_device_ptr(fn, "layer.A", L->A))) return s;
  if ((s = check_align(fn, "layer.A", L->A, 4))) return s;
  if ((s = check_device_ptr(fn, "layer.b", L->b))) return s;
  if ((s = check_align(fn, "layer.b", L->b, 4))) return s;
  return LATTQ_OK;
}

int current_device() {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    cudaGetLastError();
    dev = 0;
  }
  return dev;
}

const DeviceProps& device_props() {
  static DeviceProps cache[16];
  const int dev = current_device();
  DeviceProps& d = cache[dev & 15];
  if (d.sm == 0) {
    if (cudaDeviceGetAttribute(&d.sm, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&d.major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&d.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
      cudaGetLastError();  // no usable answer: assume an H100-sized part at the sm_80 feature level
      d.sm = 132;
      d.major = 8;
      d.smem_optin = 99 * 1024;
    }
  }
  return d;
}

}  // namespace lattq_cuda
