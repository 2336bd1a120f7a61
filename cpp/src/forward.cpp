// lattq_forward: the CPU inference path.  Persistent thread pool, runtime ISA dispatch, no allocation.
//
//   u = H_in(SU * x);  v_g = A^T u_g;  c = sum_g b . u_g;  t = Z v + c;  y = SV * H_out^T t + bias
//
// Phases per call: (1) prologue per token (convert, SU, FWHT, A^T fold, c, permute v for the kernel),
// (2) integer-code GEMV/GEMM over 16-row tiles split across threads, (3) epilogue per token (c,
// FWHT, SV, bias, convert).  All scratch lives in the caller's workspace.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "internal.hpp"

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#include <immintrin.h>
#define LATTQ_PAUSE() _mm_pause()
#else
#define LATTQ_PAUSE() ((void)0)
#endif

namespace lattq {
namespace detail {
namespace {

// ---- thread pool -------------------------------------------------------------------------------
// Tasks pull their work items from an atomic counter (dynamic scheduling), so a worker that is slow to
// wake up (busy machine) never holds the caller back: the caller runs every item that is left and only
// waits for workers that actually joined the job.  The job state word makes joining and closing atomic:
// [generation:32][closed:1][active:31].
typedef void (*TaskFn)(void* ctx, int index, int count);

class ThreadPool {
 public:
  static ThreadPool& instance() {
    static ThreadPool pool;
    return pool;
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
      gen_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  // Makes sure at least n - 1 workers exist (threads are created here only: once, when the pool first
  // reaches the size in use, never per call).
  void ensure(int n) {
    std::lock_guard<std::mutex> lk(grow_mu_);
    while (int(workers_.size()) < n - 1) {
      const int id = int(workers_.size());
      workers_.emplace_back([this, id] { loop(id); });
    }
    size_.store(int(workers_.size()) + 1);
  }
  int size() const { return size_.load(); }

  // Runs fn(ctx, i, count) on up to `count` threads (the caller is i = 0).  fn must pull its work from
  // shared counters so that any subset of participants completes the job.  If the pool is busy (a
  // concurrent call from another thread) the caller does all the work alone.
  void run(int count, TaskFn fn, void* ctx) {
    if (count <= 1 || size() <= 1 || !call_mu_.try_lock()) {
      fn(ctx, 0, 1);
      return;
    }
    count = std::min(count, size());
    uint64_t g;
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = fn;
      ctx_ = ctx;
      count_ = count;
      g = gen_.load() + 1;
      state_.store((g & 0xffffffffu) << 32);
      gen_.store(g);
    }
    cv_.notify_all();
    fn(ctx, 0, count);
    // close the job once no worker is inside it; late workers then skip it.  A joined worker that
    // was preempted (busy machine) gets the CPU back sooner if we yield instead of spinning.
    for (int spin = 0;; ++spin) {
      uint64_t st = state_.load(std::memory_order_acquire);
      if ((st & kActiveMask) == 0) {
        if (state_.compare_exchange_weak(st, st | kClosed, std::memory_order_acq_rel)) break;
      } else if (spin < 4096) {
        LATTQ_PAUSE();
      } else {
        std::this_thread::yield();
      }
    }
    call_mu_.unlock();
  }

 private:
  static constexpr uint64_t kClosed = uint64_t(1) << 31;
  static constexpr uint64_t kActiveMask = kClosed - 1;

  ThreadPool() {
    unsigned hc = std::thread::hardware_concurrency();
    ensure(hc == 0 ? 1 : int(std::min(hc, 256u)));
  }
  void loop(int id) {
    uint64_t seen = 0;
    for (;;) {
      // spin for a short while (the next layer call is usually microseconds away), then sleep
      auto t0 = std::chrono::steady_clock::now();
      int spins = 0;
      while (gen_.load(std::memory_order_acquire) == seen) {
        LATTQ_PAUSE();
        if ((++spins & 255) == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(100)) {
          std::unique_lock<std::mutex> lk(mu_);
          cv_.wait(lk, [&] { return gen_.load() != seen; });
          break;
        }
      }
      TaskFn fn;
      void* ctx;
      int count;
      uint64_t g;
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (stop_) return;
        g = seen = gen_.load();
        fn = fn_;
        ctx = ctx_;
        count = count_;
      }
      if (id + 1 >= count) continue;
      // join the job if it is still open
      bool joined = false;
      for (;;) {
        uint64_t st = state_.load(std::memory_order_acquire);
        if ((st >> 32) != (g & 0xffffffffu) || (st & kClosed)) break;
        if (state_.compare_exchange_weak(st, st + 1, std::memory_order_acq_rel)) {
          joined = true;
          break;
        }
      }
      if (!joined) continue;
      fn(ctx, id + 1, count);
      state_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex grow_mu_, call_mu_, mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<uint64_t> state_{kClosed};
  std::atomic<int> size_{1};
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int count_ = 0;
  bool stop_ = false;
};

// Default thread count of lattq_forward (num_threads <= 0): one thread or the pool, whichever has been
// faster per weight recently.  On an idle machine the pool wins; when the other cores are taken (other
// processes, or another runtime's threads spinning between its own parallel regions, as torch's OpenMP
// threads do right after a matmul) a single thread is often faster.  Every 16th call tries the other
// choice, so the decision follows the machine.  Results are bit-identical either way (each output row is
// computed by exactly one thread in the same order), so this only affects speed.
class AutoThreads {
 public:
  // true: use the pool for this call
  bool choose() {
    const uint32_t c = calls_.fetch_add(1, std::memory_order_relaxed);
    const int64_t e0 = ema_[0].load(std::memory_order_relaxed), e1 = ema_[1].load(std::memory_order_relaxed);
    if (e1 == 0) return true;  // measure each mode once
    if (e0 == 0) return false;
    const bool pool_better = e1 <= e0;
    return (c % 16 == 15) ? !pool_better : pool_better;
  }
  // cost of one call in picoseconds per weight x token, for the mode used; the first sample of each
  // mode is dropped (page faults of a fresh workspace, thread start-up)
  void update(bool pool, int64_t ps_per_weight) {
    if (seen_[pool ? 1 : 0].fetch_add(1, std::memory_order_relaxed) == 0) return;
    std::atomic<int64_t>& e = ema_[pool ? 1 : 0];
    const int64_t old = e.load(std::memory_order_relaxed);
    e.store(old == 0 ? ps_per_weight : old + (ps_per_weight - old) / 4, std::memory_order_relaxed);
  }

 private:
  std::atomic<uint32_t> calls_{0};
  std::atomic<uint32_t> seen_[2] = {{0}, {0}};
  std::atomic<int64_t> ema_[2] = {{0}, {0}};
};
AutoThreads g_auto_threads;

std::atomic<int32_t> g_num_threads{0};  // 0: hardware concurrency
std::atomic<int32_t> g_kernel{LATTQ_CPU_KERNEL_AUTO};

bool cpu_has_avx2() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}
bool cpu_has_avx512() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}
bool kernel_available(int32_t k) {
  switch (k) {
    case LATTQ_CPU_KERNEL_SCALAR: return true;
    case LATTQ_CPU_KERNEL_AVX2: return gemv_avx2_get(2) != nullptr && cpu_has_avx2();
    case LATTQ_CPU_KERNEL_AVX512: return gemv_avx512_get(2) != nullptr && cpu_has_avx512();
    default: return false;
  }
}
int32_t resolve_kernel() {
  const int32_t k = g_kernel.load();
  if (k != LATTQ_CPU_KERNEL_AUTO) return k;
  static const int32_t best = kernel_available(LATTQ_CPU_KERNEL_AVX512) ? LATTQ_CPU_KERNEL_AVX512
                              : kernel_available(LATTQ_CPU_KERNEL_AVX2) ? LATTQ_CPU_KERNEL_AVX2
                                                                        : LATTQ_CPU_KERNEL_SCALAR;
  return best;
}
GemvFn pick_gemv(int32_t bits) {
  GemvFn f = nullptr;
  switch (resolve_kernel()) {
    case LATTQ_CPU_KERNEL_AVX512: f = gemv_avx512_get(bits); break;
    case LATTQ_CPU_KERNEL_AVX2: f = gemv_avx2_get(bits); break;
    default: break;
  }
  return f ? f : gemv_scalar_get(bits);
}

}  // namespace

FwhtFn pick_fwht() {
  if (resolve_kernel() == LATTQ_CPU_KERNEL_AVX512 && fwht_avx512_get()) return fwht_avx512_get();
  return &fwht_vec;
}

namespace {

struct KernelPick {
  GemvFn gemv;
  bool lut;  // the prologue builds nibble tables instead of the permuted v
};
KernelPick pick_kernels(int32_t bits, bool lut_ok) {
  KernelPick k{nullptr, false};
  if (lut_ok && resolve_kernel() == LATTQ_CPU_KERNEL_AVX512) {
    k.gemv = gemv_avx512_lut_get(bits);
    k.lut = k.gemv != nullptr;
  }
  if (!k.gemv) k.gemv = pick_gemv(bits);
  return k;
}

// Rows of activations per pass (prologue, GEMV, epilogue); larger batches loop over such blocks, so
// the workspace does not grow beyond this many rows.
constexpr int64_t kTokenBlock = 64;

// ---- workspace layout --------------------------------------------------------------------------
struct Plan {
  int64_t n, k, r, C, T, F;  // F = 8/bits (0 for bits == 3)
  bool lut_ok;               // workspace sized for the nibble-table kernel too
  int64_t vp_stride, u_stride, t_stride;
  size_t off_vp, off_u, off_t, off_c, total;
};

Plan make_plan(const LayerDesc& d, int64_t m) {
  Plan p{};
  p.n = d.n;
  p.k = d.k;
  p.r = d.k * d.bits / 8;
  p.C = ceil_div(p.r, 16);
  p.T = ceil_div(p.n, 16);
  p.F = (d.bits == 3) ? 0 : 8 / d.bits;
  p.vp_stride = p.F ? p.C * 16 * p.F : ceil_div(p.k, 16) * 16;
  // The workspace does not depend on the kernel chosen at call time (room for the nibble tables when
  // they can be used), and never shrinks as m grows (a buffer sized for the largest batch serves all).
  p.lut_ok = p.F != 0 && m <= kLutMaxM;
  if (p.lut_ok) p.vp_stride = p.C * 512;
  int64_t vp_floats = m * p.vp_stride;
  if (p.F != 0 && m > kLutMaxM) vp_floats = std::max(vp_floats, kLutMaxM * p.C * 512);
  p.u_stride = ceil_div(p.k, 16) * 16;
  p.t_stride = p.T * 16;
  size_t off = 0;
  p.off_vp = off;
  off = align_up(off + size_t(vp_floats) * 4, 64);
  p.off_u = off;
  off = align_up(off + size_t(m * p.u_stride) * 4, 64);
  p.off_t = off;
  off = align_up(off + size_t(m * p.t_stride) * 4, 64);
  p.off_c = off;
  off = align_up(off + size_t(m) * 4, 64);
  p.total = off;
  return p;
}

struct FwdCtx {
  const LayerView* layer;
  const Plan* plan;
  const void* x;
  int32_t dtype;
  int64_t m;
  void* y;
  float* vp;
  float* u;
  float* t;
  float* c;
  GemvFn gemv;
  FwhtFn fwht;
  bool lut;
  GemvArgs args;
  int64_t tiles_per_item;
  std::atomic<int64_t> next_token{0}, next_out{0}, next_item{0};
};

inline float load_elem(const void* base, int32_t dtype, int64_t i) {
  switch (dtype) {
    case LATTQ_F16: return half_to_float(static_cast<const uint16_t*>(base)[i]);
    case LATTQ_BF16: return bfloat16_to_float(static_cast<const uint16_t*>(base)[i]);
    default: return static_cast<const float*>(base)[i];
  }
}

// v_g = A^T u_g in place; returns c = sum_g b . u_g = sum_j b_j (sum_g u_{g,j}) (float64 sums).
template <int D>
double fold(float* u, int64_t K, const float* A, const float* b) {
  float At[D][D];
  for (int i = 0; i < D; ++i)
    for (int j = 0; j < D; ++j) At[i][j] = A[j * D + i];
  double s[D] = {};
  for (int64_t g = 0; g < K; g += D) {
    float ug[D];
    for (int j = 0; j < D; ++j) {
      ug[j] = u[g + j];
      s[j] += double(ug[j]);
    }
    for (int i = 0; i < D; ++i) {
      float acc = 0.0f;
      for (int j = 0; j < D; ++j) acc += At[i][j] * ug[j];
      u[g + i] = acc;
    }
  }
  double c = 0;
  for (int j = 0; j < D; ++j) c += double(b[j]) * s[j];
  return c;
}

void prologue_token(const FwdCtx& cx, int64_t tok) {
  const LayerView& L = *cx.layer;
  const Plan& p = *cx.plan;
  const int64_t K = p.k, d = L.desc.dim;
  float* u = cx.u + tok * p.u_stride;
  if (cx.dtype == LATTQ_F32) {
    const float* xs = static_cast<const float*>(cx.x) + tok * K;
    for (int64_t j = 0; j < K; ++j) u[j] = xs[j] * L.su[j];
  } else {
    for (int64_t j = 0; j < K; ++j) u[j] = load_elem(cx.x, cx.dtype, tok * K + j) * L.su[j];
  }
  cx.fwht(u, K, L.desc.had_in);
  // c = sum_g b . u_g ; v_g = A^T u_g (in place)
  double c = 0;
  switch (d) {
    case 1: c = fold<1>(u, K, L.A, L.b); break;
    case 2: c = fold<2>(u, K, L.A, L.b); break;
    case 4: c = fold<4>(u, K, L.A, L.b); break;
    default: c = fold<8>(u, K, L.A, L.b); break;
  }
  cx.c[tok] = static_cast<float>(c);
  float* vp = cx.vp + tok * p.vp_stride;
  if (cx.lut) {
    build_lut_tables(u, K, L.desc.bits, 0, p.C, vp);
  } else if (p.F) {
    const int64_t F = p.F;
    for (int64_t cc = 0; cc < p.C; ++cc)
      for (int64_t f = 0; f < F; ++f) {
        float* dst = vp + (cc * F + f) * 16;
        for (int64_t q = 0; q < 16; ++q) {
          const int64_t j = (cc * 16 + q) * F + f;
          dst[q] = j < K ? u[j] : 0.0f;
        }
      }
  } else {
    std::memcpy(vp, u, size_t(K) * 4);
    for (int64_t j = K; j < p.vp_stride; ++j) vp[j] = 0.0f;
  }
}

void epilogue_token(const FwdCtx& cx, int64_t tok) {
  const LayerView& L = *cx.layer;
  const Plan& p = *cx.plan;
  const int64_t N = p.n;
  float* t = cx.t + tok * p.t_stride;
  const float c = cx.c[tok];
  for (int64_t i = 0; i < N; ++i) t[i] += c;
  cx.fwht(t, N, L.desc.had_out);
  if (cx.dtype == LATTQ_F32) {
    float* ys = static_cast<float*>(cx.y) + tok * N;
    if (L.bias)
      for (int64_t i = 0; i < N; ++i) ys[i] = t[i] * L.sv[i] + L.bias[i];
    else
      for (int64_t i = 0; i < N; ++i) ys[i] = t[i] * L.sv[i];
  } else {
    uint16_t* ys = static_cast<uint16_t*>(cx.y) + tok * N;
    const bool h = cx.dtype == LATTQ_F16;
    for (int64_t i = 0; i < N; ++i) {
      const float v = t[i] * L.sv[i] + (L.bias ? L.bias[i] : 0.0f);
      ys[i] = h ? float_to_half(v) : float_to_bfloat16(v);
    }
  }
}

void task_prologue(void* ctx, int, int) {
  FwdCtx& cx = *static_cast<FwdCtx*>(ctx);
  for (int64_t tok; (tok = cx.next_token.fetch_add(1)) < cx.m;) prologue_token(cx, tok);
}
void task_epilogue(void* ctx, int, int) {
  FwdCtx& cx = *static_cast<FwdCtx*>(ctx);
  for (int64_t tok; (tok = cx.next_out.fetch_add(1)) < cx.m;) epilogue_token(cx, tok);
}
void task_gemv(void* ctx, int, int) {
  FwdCtx& cx = *static_cast<FwdCtx*>(ctx);
  const int64_t T = cx.plan->T, per = cx.tiles_per_item;
  for (int64_t it; (it = cx.next_item.fetch_add(1)) * per < T;) {
    const int64_t b = it * per, e = std::min(T, b + per);
    cx.gemv(cx.args, b, e);
  }
}

const char* dtype_name(int32_t dt) {
  switch (dt) {
    case LATTQ_F32: return "f32";
    case LATTQ_F16: return "f16";
    case LATTQ_BF16: return "bf16";
    default: return "?";
  }
}

struct ForCtx {
  RangeFn fn;
  void* ctx;
  int64_t items, per;
  std::atomic<int64_t> next{0};
};
void task_for(void* c, int, int) {
  ForCtx& f = *static_cast<ForCtx*>(c);
  for (int64_t it; (it = f.next.fetch_add(1)) * f.per < f.items;)
    f.fn(f.ctx, it * f.per, std::min(f.items, (it + 1) * f.per));
}

}  // namespace

void parallel_for(int64_t items, int64_t min_per_item, RangeFn fn, void* ctx) {
  if (items <= 0) return;
  const int nt = get_num_threads();
  ThreadPool& pool = ThreadPool::instance();
  if (nt <= 1 || items <= min_per_item) {
    fn(ctx, 0, items);
    return;
  }
  ForCtx f;
  f.fn = fn;
  f.ctx = ctx;
  f.items = items;
  f.per = std::max<int64_t>(min_per_item, items / (int64_t(nt) * 8));
  if (nt > pool.size()) pool.ensure(nt);
  pool.run(nt, task_for, &f);
}

}  // namespace detail

using detail::set_error;

// m * (N + K) stays far from int64 overflow (n, k <= 2^31 by validation); the workspace size is
// computed in 64 bits and also checked against SIZE_MAX.
static const int64_t kMaxRows = int64_t(1) << 31;
// weight x token products below which lattq_forward stays single-threaded (measured: 576x1536, m = 1,
// 23 us on one core; 2 threads on the loaded 2-core machine gave a 150 us median)
static const int64_t kMinParallelWork = int64_t(1) << 21;

void set_num_threads(int32_t n) {
  detail::g_num_threads.store(n > 0 ? std::min(n, 256) : 0);
  if (n > 0) detail::ThreadPool::instance().ensure(std::min(n, 256));
}
int32_t get_num_threads() {
  const int32_t n = detail::g_num_threads.load();
  if (n > 0) return n;
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : int32_t(std::min(hc, 256u));
}

Status set_cpu_kernel(int32_t kernel) {
  if (kernel == LATTQ_CPU_KERNEL_AUTO || detail::kernel_available(kernel)) {
    detail::g_kernel.store(kernel);
    return Status::Ok;
  }
  if (kernel < LATTQ_CPU_KERNEL_AUTO || kernel > LATTQ_CPU_KERNEL_AVX512)
    return set_error(Status::InvalidArgument,
                     "lattq_set_cpu_kernel: argument 'kernel' = %d is not a known kernel (0 = AUTO, 1 = SCALAR, 2 = AVX2, "
                     "3 = AVX512)",
                     (int)kernel);
  return set_error(Status::Unsupported,
                   "lattq_set_cpu_kernel: argument 'kernel' = %d (%s) is not supported by this CPU or build", (int)kernel,
                   cpu_kernel_name(kernel));
}
int32_t get_cpu_kernel() { return detail::resolve_kernel(); }
const char* cpu_kernel_name(int32_t kernel) {
  switch (kernel) {
    case LATTQ_CPU_KERNEL_AUTO: return "auto";
    case LATTQ_CPU_KERNEL_SCALAR: return "scalar";
    case LATTQ_CPU_KERNEL_AVX2: return "avx2";
    case LATTQ_CPU_KERNEL_AVX512: return "avx512";
    default: return "unknown";
  }
}

Status forward_workspace_size(const LayerDesc* desc, int64_t m, size_t* bytes) {
  const char* fn = "lattq_forward_workspace_size";
  Status s = detail::check_desc(fn, "desc", desc);
  if (s != Status::Ok) return s;
  if (m < 0) return set_error(Status::Shape, "%s: argument 'm' = %lld is negative", fn, (long long)m);
  if (m > kMaxRows)
    return set_error(Status::Shape, "%s: argument 'm' = %lld exceeds the maximum of 2^31 rows per call", fn,
                     (long long)m);
  if (!bytes) return set_error(Status::InvalidArgument, "%s: argument 'bytes' is null", fn);
  // the plan sums m * (strides) * 4 bytes: refuse sizes that do not fit in 63 bits
  const double approx = double(m) * 4.0 *
                        (double(desc->k) * 64.0 / desc->bits + double(desc->k) + double(desc->n) + 1024.0);
  if (approx > 9.0e18)
    return set_error(Status::Shape, "%s: the workspace for argument 'm' = %lld rows does not fit in 64 bits", fn,
                     (long long)m);
  *bytes = detail::make_plan(*desc, std::min(m, detail::kTokenBlock)).total;
  return Status::Ok;
}

Status forward(const LayerView* layer, const void* x, int32_t dtype, int64_t m, void* y, void* workspace,
               size_t workspace_bytes, int32_t num_threads) {
  const char* fn = "lattq_forward";
  Status s = detail::check_layer(fn, "layer", layer);
  if (s != Status::Ok) return s;
  if (dtype != LATTQ_F32 && dtype != LATTQ_F16 && dtype != LATTQ_BF16)
    return set_error(Status::Dtype, "%s: argument 'dtype' = %d is not one of 0 (f32), 1 (f16), 2 (bf16)", fn,
                     (int)dtype);
  if (m < 0) return set_error(Status::Shape, "%s: argument 'm' = %lld is negative", fn, (long long)m);
  if (m > kMaxRows)
    return set_error(Status::Shape, "%s: argument 'm' = %lld exceeds the maximum of 2^31 rows per call", fn,
                     (long long)m);
  if (m == 0) return Status::Ok;
  const size_t esize = dtype == LATTQ_F32 ? 4 : 2;
  if (!x) return set_error(Status::InvalidArgument, "%s: argument 'x' is null", fn);
  if (!y) return set_error(Status::InvalidArgument, "%s: argument 'y' is null", fn);
  if (reinterpret_cast<uintptr_t>(x) % esize)
    return set_error(Status::Alignment, "%s: argument 'x' is not aligned to %zu bytes (%s)", fn, esize,
                     detail::dtype_name(dtype));
  if (reinterpret_cast<uintptr_t>(y) % esize)
    return set_error(Status::Alignment, "%s: argument 'y' is not aligned to %zu bytes (%s)", fn, esize,
                     detail::dtype_name(dtype));
  {
    size_t need = 0;
    Status ws_status = forward_workspace_size(&layer->desc, m, &need);
    if (ws_status != Status::Ok) {
      std::string msg = last_error();
      const std::string from = "lattq_forward_workspace_size";
      if (msg.compare(0, from.size(), from) == 0) msg.replace(0, from.size(), fn);
      return set_error(ws_status, "%s", msg.c_str());
    }
  }
  // tokens are processed in blocks of at most kTokenBlock rows: the workspace stays bounded
  const detail::Plan plan = detail::make_plan(layer->desc, std::min(m, detail::kTokenBlock));
  if (!workspace)
    return set_error(Status::Workspace, "%s: argument 'workspace' is null (%zu bytes required)", fn, plan.total);
  if (workspace_bytes < plan.total)
    return set_error(Status::Workspace, "%s: argument 'workspace_bytes' = %zu is smaller than the %zu bytes required", fn,
                     workspace_bytes, plan.total);
  if (reinterpret_cast<uintptr_t>(workspace) % 64)
    return set_error(Status::Alignment, "%s: argument 'workspace' is not aligned to 64 bytes", fn);
  {
    const uintptr_t ws = reinterpret_cast<uintptr_t>(workspace), we = ws + plan.total;
    const uintptr_t yb = reinterpret_cast<uintptr_t>(y), ye = yb + size_t(m * layer->desc.n) * esize;
    const uintptr_t xb = reinterpret_cast<uintptr_t>(x), xe = xb + size_t(m * layer->desc.k) * esize;
    if (ws < ye && yb < we)
      return set_error(Status::InvalidArgument, "%s: arguments 'y' and 'workspace' overlap", fn);
    if (ws < xe && xb < we)
      return set_error(Status::InvalidArgument, "%s: arguments 'x' and 'workspace' overlap", fn);
  }

  uint8_t* ws = static_cast<uint8_t*>(workspace);
  const auto t_call = std::chrono::steady_clock::now();
  int nt = num_threads > 0 ? std::min(num_threads, 256) : get_num_threads();
  // Small problems (< ~50 us of work on one core) run on the calling thread: the pool handshake, and
  // on a busy machine the risk of waiting for a preempted worker, cost more than the second core saves.
  const double work = double(plan.n) * double(plan.k) * double(m);
  if (work < double(kMinParallelWork)) nt = 1;
  detail::ThreadPool& pool = detail::ThreadPool::instance();
  // default thread count: pool or calling thread, whichever has been faster (see AutoThreads)
  const bool autotune = num_threads <= 0 && nt > 1;
  if (autotune && !detail::g_auto_threads.choose()) nt = 1;
  if (nt > pool.size()) pool.ensure(nt);
  const detail::KernelPick pick = detail::pick_kernels(layer->desc.bits, plan.lut_ok);

  for (int64_t tok0 = 0; tok0 < m; tok0 += detail::kTokenBlock) {
    const int64_t mb = std::min(detail::kTokenBlock, m - tok0);
    detail::FwdCtx cx;
    cx.layer = layer;
    cx.plan = &plan;
    cx.x = static_cast<const uint8_t*>(x) + size_t(tok0 * layer->desc.k) * esize;
    cx.dtype = dtype;
    cx.m = mb;
    cx.y = static_cast<uint8_t*>(y) + size_t(tok0 * layer->desc.n) * esize;
    cx.vp = reinterpret_cast<float*>(ws + plan.off_vp);
    cx.u = reinterpret_cast<float*>(ws + plan.off_u);
    cx.t = reinterpret_cast<float*>(ws + plan.off_t);
    cx.c = reinterpret_cast<float*>(ws + plan.off_c);
    cx.gemv = pick.gemv;
    cx.lut = pick.lut;
    cx.fwht = detail::pick_fwht();
    detail::GemvArgs& a = cx.args;
    a.codes = layer->codes;
    a.layout = layer->layout;
    a.bits = layer->desc.bits;
    a.n = plan.n;
    a.k = plan.k;
    a.row_bytes = plan.r;
    a.chunks = plan.C;
    a.vp = cx.vp;
    a.vp_stride = plan.vp_stride;
    a.m = mb;
    a.t = cx.t;
    a.t_stride = plan.t_stride;
    // work items: about 16 per thread (small, so that the caller never waits long for a worker's
    // last item), at least one tile each
    cx.tiles_per_item = std::max<int64_t>(1, plan.T / (int64_t(nt) * 16));
    const int nt_tok = int(std::min<int64_t>(nt, mb));
    const int nt_tile = int(std::min<int64_t>(nt, plan.T));
    if (nt_tok > 1)
      pool.run(nt_tok, detail::task_prologue, &cx);
    else
      detail::task_prologue(&cx, 0, 1);
    if (nt_tile > 1)
      pool.run(nt_tile, detail::task_gemv, &cx);
    else
      detail::task_gemv(&cx, 0, 1);
    if (nt_tok > 1)
      pool.run(nt_tok, detail::task_epilogue, &cx);
    else
      detail::task_epilogue(&cx, 0, 1);
  }
  if (autotune) {
    const double ps = std::chrono::duration<double, std::pico>(std::chrono::steady_clock::now() - t_call).count();
    detail::g_auto_threads.update(nt > 1, int64_t(ps / work) + 1);
  }
  return Status::Ok;
}

}  // namespace lattq
