// Reference ("obviously correct") CUDA kernels: decode, block FWHT, and the layer forward as separate
// stages (prologue: SU, block Hadamard, A^T fold, c; main loop: t = Z v + c; epilogue: Hadamard over N,
// SV, bias).  Every (bits, dim), TILED and CANONICAL codes, f32/f16/bf16 activations, fp32 math.
#include "kernels.cuh"

namespace lattq_cuda {

// ---- code field access ----------------------------------------------------------------------
// Byte `byte` of canonical row `n` (zero past the row for TILED reads of the padding).
__device__ __forceinline__ uint32_t code_byte(const uint8_t* codes, int layout, int64_t n, int64_t byte,
                                              int64_t R, int64_t C) {
  if (byte >= R) return 0;
  if (layout == LATTQ_LAYOUT_CANONICAL) return codes[n * R + byte];
  return codes[((n / 16) * C + byte / 16) * 256 + (n % 16) * 16 + (byte % 16)];
}
// Field j (k bits at bit k*j) of row n.
__device__ __forceinline__ uint32_t code_field(const uint8_t* codes, int layout, int bits, int64_t n, int64_t j,
                                               int64_t R, int64_t C) {
  int64_t bit = (int64_t)bits * j;
  int64_t byte = bit >> 3;
  uint32_t w = code_byte(codes, layout, n, byte, R, C);
  if ((bit & 7) + bits > 8) w |= code_byte(codes, layout, n, byte + 1, R, C) << 8;
  return (w >> (bit & 7)) & ((1u << bits) - 1u);
}

// What[n, d g + i] = b_i + sum_j A_ij z_j, evaluated as ((b_i + A_i0 z_0) + A_i1 z_1) + ... with
// round-to-nearest single operations (no FMA contraction), the order of the CPU decode.
__global__ void decode_kernel(DecodeParams p) {
  int64_t groups = p.k / p.dim;
  int64_t total = p.n * groups;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    int64_t n = idx / groups, g = idx % groups;
    float z[8];
    for (int j = 0; j < p.dim; ++j) z[j] = (float)code_field(p.codes, p.layout, p.bits, n, g * p.dim + j, p.R, p.C);
    for (int i = 0; i < p.dim; ++i) {
      float acc = p.b[i];
      for (int j = 0; j < p.dim; ++j) acc = __fadd_rn(acc, __fmul_rn(p.A[i * p.dim + j], z[j]));
      p.out[n * p.k + g * p.dim + i] = acc;
    }
  }
}

// ---- block FWHT -----------------------------------------------------------------------------
// One CTA per (row, block): load into shared memory as fp32, log2(block) butterfly stages, scale.
// `pre` (nullable, length len) multiplies the input elementwise before the transform (SU).
template <typename T>
__global__ void fwht_smem_kernel(T* data, int64_t len, int block, int log2b, float scale, int do_scale) {
  extern __shared__ float sh[];
  int64_t row = blockIdx.y;
  T* base = data + row * len + (int64_t)blockIdx.x * block;
  for (int i = threadIdx.x; i < block; i += blockDim.x) sh[i] = to_f(base[i]);
  __syncthreads();
  for (int s = 0; s < log2b; ++s) {
    int h = 1 << s;
    for (int i = threadIdx.x; i < block / 2; i += blockDim.x) {
      int lo = ((i >> s) << (s + 1)) | (i & (h - 1));
      float a = sh[lo], b = sh[lo + h];
      sh[lo] = a + b;
      sh[lo + h] = a - b;
    }
    __syncthreads();
  }
  for (int i = threadIdx.x; i < block; i += blockDim.x) base[i] = from_f<T>(do_scale ? sh[i] * scale : sh[i]);
}

// One butterfly stage with distance h over fp32 data in global memory (blocks larger than shared memory).
__global__ void fwht_stage_kernel(float* data, int64_t total_pairs, int64_t h, float scale) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total_pairs;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t lo = (i / h) * 2 * h + (i % h);
    float a = data[lo], b = data[lo + h];
    data[lo] = (a + b) * scale;
    data[lo + h] = (a - b) * scale;
  }
}

static int max_smem_floats() {
  int dev = 0, optin = 0;
  cudaGetDevice(&dev);
  if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
    cudaGetLastError();
    optin = 48 * 1024;
  }
  int f = optin / 4;
  int p = 1;
  while (p * 2 <= f) p *= 2;
  return p;
}

template <typename T>
static lattq_status fwht_launch_t(const char* fn, T* data, int64_t rows, int64_t len, int block, cudaStream_t s) {
  if (block <= 1 || rows == 0) return LATTQ_OK;
  int smem_cap = max_smem_floats();
  int log2b = ilog2(block);
  if (block <= smem_cap) {
    size_t smem = (size_t)block * 4;
    if (smem > 48 * 1024) {
      if (cudaFuncSetAttribute(fwht_smem_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess)
        return check_launch(fn, "fwht (shared-memory limit)");
    }
    if (rows > 65535) return LQ_ERR(Shape, "%s: argument 'rows' = %lld exceeds 65535", fn, (long long)rows);
    dim3 grid((unsigned)(len / block), (unsigned)rows);
    fwht_smem_kernel<T><<<grid, 512, smem, s>>>(data, len, block, log2b, 1.0f / sqrtf((float)block), 1);
    return check_launch(fn, "fwht_smem_kernel");
  }
  // Large blocks: H_B = H_(B/S) (x) H_S: transform sub-blocks of S in shared memory, then the remaining
  // stages in global memory (fp32 data only; scaling folded into the stages).
  if (!std::is_same<T, float>::value)
    return LQ_ERR(Unsupported, "%s: Hadamard block %d exceeds the shared-memory limit (%d) for a 16-bit dtype",
                  fn, block, smem_cap);
  int S = smem_cap;
  size_t smem = (size_t)S * 4;
  if (cudaFuncSetAttribute(fwht_smem_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess)
    return check_launch(fn, "fwht (shared-memory limit)");
  if (rows > 65535) return LQ_ERR(Shape, "%s: argument 'rows' = %lld exceeds 65535", fn, (long long)rows);
  dim3 grid((unsigned)(len / S), (unsigned)rows);
  fwht_smem_kernel<T><<<grid, 512, smem, s>>>(data, len, S, ilog2(S), 1.0f / sqrtf((float)S), 1);
  lattq_status r = check_launch(fn, "fwht_smem_kernel");
  if (r) return r;
  int64_t pairs = rows * len / 2;
  int nb = (int)std::min<int64_t>(cdiv(pairs, 256), 8192);
  for (int64_t h = S; h < block; h *= 2) {
    fwht_stage_kernel<<<nb, 256, 0, s>>>(reinterpret_cast<float*>(data), pairs, h, 0.70710678118654752f);
    if ((r = check_launch(fn, "fwht_stage_kernel"))) return r;
  }
  return LATTQ_OK;
}

lattq_status fwht_launch(const char* fn, void* data, int32_t dtype, int64_t rows, int64_t len, int32_t block,
                         cudaStream_t s) {
  switch (dtype) {
    case LATTQ_F32: return fwht_launch_t(fn, static_cast<float*>(data), rows, len, block, s);
    case LATTQ_F16: return fwht_launch_t(fn, static_cast<__half*>(data), rows, len, block, s);
    case LATTQ_BF16: return fwht_launch_t(fn, static_cast<__nv_bfloat16*>(data), rows, len, block, s);
  }
  return LQ_ERR(Dtype, "%s: argument 'dtype' = %d is not LATTQ_F32/F16/BF16", fn, dtype);
}

// ---- reference forward stages ---------------------------------------------------------------
template <typename T>
__global__ void ref_scale_in_kernel(const T* __restrict__ x, const float* __restrict__ su, float* __restrict__ u,
                                    int64_t m, int64_t k) {
  int64_t total = m * k;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
    u[i] = to_f(x[i]) * su[i % k];
}

// One CTA per token: v_g = A^T u_g in place, c = sum_g b . u_g (deterministic tree reduction).
__global__ void ref_fold_kernel(float* __restrict__ uv, float* __restrict__ c, const float* __restrict__ A,
                                const float* __restrict__ b, int64_t k, int dim) {
  __shared__ float red[1024];
  float* row = uv + (int64_t)blockIdx.x * k;
  int64_t groups = k / dim;
  float part = 0.f;
  for (int64_t g = threadIdx.x; g < groups; g += blockDim.x) {
    float u[8], v[8];
    for (int j = 0; j < dim; ++j) u[j] = row[g * dim + j];
    for (int i = 0; i < dim; ++i) {
      float acc = 0.f;
      for (int j = 0; j < dim; ++j) acc = fmaf(A[j * dim + i], u[j], acc);  // (A^T u)_i = sum_j A_ji u_j
      v[i] = acc;
    }
    for (int j = 0; j < dim; ++j) part = fmaf(b[j], u[j], part);
    for (int i = 0; i < dim; ++i) row[g * dim + i] = v[i];
  }
  red[threadIdx.x] = part;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if ((int)threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) c[blockIdx.x] = red[0];
}

// t[tok, n] = sum_j z[n, j] v[tok, j] + c[tok]: one warp per row n, tokens in chunks of 8.
__global__ void ref_gemv_kernel(RefGemvParams p) {
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t n = (int64_t)blockIdx.x * (blockDim.x / 32) + warp;
  if (n >= p.n) return;
  for (int64_t t0 = 0; t0 < p.m; t0 += 8) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int nt = (int)(p.m - t0 < 8 ? p.m - t0 : 8);
    for (int64_t j = lane; j < p.k; j += 32) {
      float z = (float)code_field(p.codes, p.layout, p.bits, n, j, p.R, p.C);
#pragma unroll
      for (int t = 0; t < 8; ++t)
        if (t < nt) acc[t] = fmaf(z, p.v[(t0 + t) * p.k + j], acc[t]);
    }
#pragma unroll
    for (int t = 0; t < 8; ++t) {
      float a = acc[t];
      for (int o = 16; o > 0; o >>= 1) a += __shfl_xor_sync(0xffffffffu, a, o);
      if (lane == 0 && t < nt) p.t[(t0 + t) * p.n + n] = a + p.c[t0 + t];
    }
  }
}

template <typename T>
__global__ void ref_epilogue_kernel(const float* __restrict__ t, const float* __restrict__ sv,
                                    const float* __restrict__ bias, T* __restrict__ y, int64_t m, int64_t n) {
  int64_t total = m * n;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t col = i % n;
    float r = t[i] * sv[col];
    if (bias) r += bias[col];
    y[i] = from_f<T>(r);
  }
}

static int grid_for(int64_t total) { return (int)std::max<int64_t>(1, std::min<int64_t>(cdiv(total, 256), 65536)); }

size_t ref_workspace_bytes(const lattq_layer_desc* d, int64_t m) {
  return align256((size_t)m * d->k * 4) + align256((size_t)m * 4) + align256((size_t)m * d->n * 4);
}

template <typename T>
static lattq_status ref_forward_t(const char* fn, const lattq_layer* L, const T* x, int64_t m, T* y, void* ws,
                                  cudaStream_t s) {
  const lattq_layer_desc& d = L->desc;
  char* w = static_cast<char*>(ws);
  float* uv = reinterpret_cast<float*>(w);
  w += align256((size_t)m * d.k * 4);
  float* c = reinterpret_cast<float*>(w);
  w += align256((size_t)m * 4);
  float* t = reinterpret_cast<float*>(w);
  lattq_status r;
  ref_scale_in_kernel<T><<<grid_for(m * d.k), 256, 0, s>>>(x, L->su, uv, m, d.k);
  if ((r = check_launch(fn, "ref_scale_in_kernel"))) return r;
  if ((r = fwht_launch_t<float>(fn, uv, m, d.k, d.had_in, s))) return r;
  ref_fold_kernel<<<(unsigned)m, 256, 0, s>>>(uv, c, L->A, L->b, d.k, d.dim);
  if ((r = check_launch(fn, "ref_fold_kernel"))) return r;
  RefGemvParams p;
  p.codes = L->codes;
  p.layout = L->layout;
  p.bits = d.bits;
  p.n = d.n;
  p.k = d.k;
  p.R = d.k * d.bits / 8;
  p.C = cdiv(p.R, 16);
  p.v = uv;
  p.c = c;
  p.t = t;
  p.m = m;
  ref_gemv_kernel<<<(unsigned)cdiv(d.n, 8), 256, 0, s>>>(p);
  if ((r = check_launch(fn, "ref_gemv_kernel"))) return r;
  if ((r = fwht_launch_t<float>(fn, t, m, d.n, d.had_out, s))) return r;
  ref_epilogue_kernel<T><<<grid_for(m * d.n), 256, 0, s>>>(t, L->sv, L->bias, y, m, d.n);
  return check_launch(fn, "ref_epilogue_kernel");
}

lattq_status ref_forward(const char* fn, const lattq_layer* L, const void* x, int32_t dtype, int64_t m, void* y,
                         void* ws, cudaStream_t s) {
  if (m > 2147483647LL) return LQ_ERR(Shape, "%s: argument 'm' = %lld is too large", fn, (long long)m);
  switch (dtype) {
    case LATTQ_F32: return ref_forward_t(fn, L, (const float*)x, m, (float*)y, ws, s);
    case LATTQ_F16: return ref_forward_t(fn, L, (const __half*)x, m, (__half*)y, ws, s);
    case LATTQ_BF16: return ref_forward_t(fn, L, (const __nv_bfloat16*)x, m, (__nv_bfloat16*)y, ws, s);
  }
  return LQ_ERR(Dtype, "%s: argument 'dtype' = %d is not LATTQ_F32/F16/BF16", fn, dtype);
}

lattq_status ref_scale_in_launch(const char* fn, const void* x, int32_t dtype, const float* su, float* u, int64_t m,
                                 int64_t k, int nblocks, cudaStream_t s) {
  switch (dtype) {
    case LATTQ_F32: ref_scale_in_kernel<float><<<nblocks, 256, 0, s>>>((const float*)x, su, u, m, k); break;
    case LATTQ_F16: ref_scale_in_kernel<__half><<<nblocks, 256, 0, s>>>((const __half*)x, su, u, m, k); break;
    default: ref_scale_in_kernel<__nv_bfloat16><<<nblocks, 256, 0, s>>>((const __nv_bfloat16*)x, su, u, m, k); break;
  }
  return check_launch(fn, "ref_scale_in_kernel");
}

lattq_status ref_epilogue_launch(const char* fn, const float* t, const float* sv, const float* bias, void* y,
                                 int32_t dtype, int64_t m, int64_t n, cudaStream_t s) {
  int nb = grid_for(m * n);
  switch (dtype) {
    case LATTQ_F32: ref_epilogue_kernel<float><<<nb, 256, 0, s>>>(t, sv, bias, (float*)y, m, n); break;
    case LATTQ_F16: ref_epilogue_kernel<__half><<<nb, 256, 0, s>>>(t, sv, bias, (__half*)y, m, n); break;
    default: ref_epilogue_kernel<__nv_bfloat16><<<nb, 256, 0, s>>>(t, sv, bias, (__nv_bfloat16*)y, m, n); break;
  }
  return check_launch(fn, "ref_epilogue_kernel");
}

lattq_status decode_launch(const char* fn, const lattq_layer* L, float* out, cudaStream_t s) {
  DecodeParams p;
  p.codes = L->codes;
  p.layout = L->layout;
  p.bits = L->desc.bits;
  p.dim = L->desc.dim;
  p.n = L->desc.n;
  p.k = L->desc.k;
  p.R = p.k * p.bits / 8;
  p.C = cdiv(p.R, 16);
  p.A = L->A;
  p.b = L->b;
  p.out = out;
  decode_kernel<<<grid_for(p.n * (p.k / p.dim)), 256, 0, s>>>(p);
  return check_launch(fn, "decode_kernel");
}

}  // namespace lattq_cuda
