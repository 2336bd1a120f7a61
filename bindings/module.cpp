// pybind11 module lattq._C: the only bridge between Python and the lattq C APIs.
//
// Every tensor crosses this boundary as a plain "descriptor" tuple of integers
//     (data_ptr, dtype_code, shape_tuple, strides_tuple_in_elements, device)
// where device is -1 for host memory and the CUDA ordinal otherwise.  No torch, no libtorch: the
// Python side (lattq/_native.py) builds the descriptors and allocates outputs and workspace.
//
// This file holds no numerical logic.  It validates the descriptors (dtype, shape consistency with
// the layer descriptor, contiguity from the strides, alignment, device), releases the GIL around
// the native call, and turns every non-OK status into a Python exception that names the argument:
//   TypeError    wrong dtype (and malformed descriptors)
//   ValueError   shape / layout / alignment / non-finite / invalid argument / workspace
//   RuntimeError device, missing CUDA, unsupported, internal
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "lattq/lattq.h"
#ifdef LATTQ_WITH_CUDA
#include "lattq/lattq_cuda.h"
#endif

namespace py = pybind11;

namespace {

// ---- dtype codes of the descriptors -----------------------------------------------------------
// Activation dtypes reuse the lattq_dtype ids; the others are binding-only codes.
enum BindDtype : int {
  BD_F32 = LATTQ_F32,
  BD_F16 = LATTQ_F16,
  BD_BF16 = LATTQ_BF16,
  BD_U8 = 16,
  BD_I8 = 17,
  BD_U16 = 18,
  BD_I16 = 19,
  BD_I32 = 20,
  BD_I64 = 21,
  BD_F64 = 22,
};

const char* dtype_name(int d) {
  switch (d) {
    case BD_F32: return "float32";
    case BD_F16: return "float16";
    case BD_BF16: return "bfloat16";
    case BD_U8: return "uint8";
    case BD_I8: return "int8";
    case BD_U16: return "uint16";
    case BD_I16: return "int16";
    case BD_I32: return "int32";
    case BD_I64: return "int64";
    case BD_F64: return "float64";
    default: return "unknown";
  }
}

int64_t dtype_size(int d) {
  switch (d) {
    case BD_F32: case BD_I32: return 4;
    case BD_F16: case BD_BF16: case BD_U16: case BD_I16: return 2;
    case BD_U8: case BD_I8: return 1;
    case BD_I64: case BD_F64: return 8;
    default: return 0;
  }
}

// Messages are built with std::string / snprintf only: no iostreams (an extension sharing the process
// with torch must not depend on the locale machinery of whichever libstdc++ was loaded first).
std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) o += ", ";
    o += std::to_string(s[i]);
  }
  return o + "]";
}

std::string hex_str(uintptr_t v) {
  char buf[2 + 2 * sizeof(uintptr_t) + 1];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return std::string(buf);
}

std::string device_str(int dev) { return dev < 0 ? std::string("cpu") : "cuda:" + std::to_string(dev); }

struct TensorArg {
  std::string name;
  uintptr_t ptr = 0;
  int dtype = -1;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;
  int device = -1;

  int64_t numel() const {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
  void* data() const { return reinterpret_cast<void*>(ptr); }
};

// Our own exception types (internal linkage), turned into Python exceptions by a module-local
// translator.  Throwing pybind11's builtin exception classes is avoided on purpose: when another
// extension in the process (e.g. torch) shares pybind11's internals but was built with a different
// pybind11 version, a global translator may handle those classes with a mismatching ABI.
struct LattqTypeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct LattqValueError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct LattqRuntimeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void type_error(const std::string& m) { throw LattqTypeError(m); }
[[noreturn]] void value_error(const std::string& m) { throw LattqValueError(m); }
[[noreturn]] void runtime_error(const std::string& m) { throw LattqRuntimeError(m); }

TensorArg parse(const py::handle& obj, const char* name) {
  TensorArg t;
  t.name = name;
  if (!py::isinstance<py::tuple>(obj) || py::len(obj) != 5)
    type_error(std::string("argument '") + name +
               "': expected a tensor descriptor tuple (data_ptr, dtype, shape, strides, device)");
  py::tuple tup = py::reinterpret_borrow<py::tuple>(obj);
  try {
    t.ptr = tup[0].cast<uintptr_t>();
    t.dtype = tup[1].cast<int>();
    t.shape = tup[2].cast<std::vector<int64_t>>();
    t.strides = tup[3].cast<std::vector<int64_t>>();
    t.device = tup[4].cast<int>();
  } catch (const py::cast_error&) {
    type_error(std::string("argument '") + name +
               "': malformed tensor descriptor; expected (int data_ptr, int dtype, tuple shape, tuple strides, int device)");
  }
  if (t.shape.size() != t.strides.size())
    value_error(std::string("argument '") + name + "': shape " + shape_str(t.shape) + " and strides " +
                shape_str(t.strides) + " have different lengths");
  for (auto s : t.shape)
    if (s < 0) value_error(std::string("argument '") + name + "': negative size in shape " + shape_str(t.shape));
  if (dtype_size(t.dtype) == 0)
    type_error(std::string("argument '") + name + "': unknown dtype code " + std::to_string(t.dtype));
  return t;
}

bool is_none(const py::handle& h) { return h.is_none(); }

void expect_dtype(const TensorArg& t, std::initializer_list<int> allowed) {
  for (int d : allowed)
    if (t.dtype == d) return;
  std::string names;
  for (int d : allowed) names += std::string(names.empty() ? "" : " or ") + dtype_name(d);
  type_error("argument '" + t.name + "' has dtype " + dtype_name(t.dtype) + "; expected " + names);
}

void expect_shape(const TensorArg& t, const std::vector<int64_t>& want, const std::string& why = "") {
  if (t.shape != want)
    value_error("argument '" + t.name + "' has shape " + shape_str(t.shape) + "; expected " + shape_str(want) +
                (why.empty() ? "" : " (" + why + ")"));
}

void expect_contiguous(const TensorArg& t) {
  int64_t expected = 1;
  for (int i = static_cast<int>(t.shape.size()) - 1; i >= 0; --i) {
    if (t.shape[i] != 1 && t.strides[i] != expected)
      value_error("argument '" + t.name + "' is not contiguous (shape " + shape_str(t.shape) + ", strides " +
                  shape_str(t.strides) + "); lattq needs dense row-major memory");
    expected *= t.shape[i];
  }
}

void expect_aligned(const TensorArg& t, uintptr_t align) {
  if (t.numel() == 0) return;
  if (t.ptr == 0) value_error("argument '" + t.name + "' has a null data pointer");
  if (t.ptr % align)
    value_error("argument '" + t.name + "' data pointer " + hex_str(t.ptr) + " is not aligned to " +
                std::to_string(align) + " bytes");
}

void expect_cpu(const TensorArg& t) {
  if (t.device != -1)
    runtime_error("argument '" + t.name + "' is on " + device_str(t.device) +
                  " but this is the CPU path; pass host (cpu) memory");
}

void expect_cuda(const TensorArg& t, int device) {
  if (t.device < 0)
    runtime_error("argument '" + t.name + "' is on cpu but this is the CUDA path; pass device memory on " +
                  device_str(device));
  if (t.device != device)
    runtime_error("argument '" + t.name + "' is on " + device_str(t.device) + " but the other arguments are on " +
                  device_str(device));
}

const char* status_name(int s) {
  switch (s) {
    case LATTQ_OK: return "OK";
    case LATTQ_ERR_INVALID_ARGUMENT: return "ERR_INVALID_ARGUMENT";
    case LATTQ_ERR_DTYPE: return "ERR_DTYPE";
    case LATTQ_ERR_SHAPE: return "ERR_SHAPE";
    case LATTQ_ERR_ALIGNMENT: return "ERR_ALIGNMENT";
    case LATTQ_ERR_LAYOUT: return "ERR_LAYOUT";
    case LATTQ_ERR_NONFINITE: return "ERR_NONFINITE";
    case LATTQ_ERR_UNSUPPORTED: return "ERR_UNSUPPORTED";
    case LATTQ_ERR_WORKSPACE: return "ERR_WORKSPACE";
    case LATTQ_ERR_DEVICE: return "ERR_DEVICE";
    case LATTQ_ERR_NO_CUDA: return "ERR_NO_CUDA";
    case LATTQ_ERR_INTERNAL: return "ERR_INTERNAL";
    default: return "ERR_UNKNOWN";
  }
}

// Turn a status into the matching Python exception (message includes lattq_last_error()).
void check(lattq_status s, const char* fn) {
  if (s == LATTQ_OK) return;
  const char* last = lattq_last_error();
  std::string msg = std::string("lattq.") + fn + " failed (" + status_name(s) + "): " +
                    ((last && *last) ? last : lattq_status_string(s));
  switch (s) {
    case LATTQ_ERR_DTYPE: type_error(msg);
    case LATTQ_ERR_INVALID_ARGUMENT:
    case LATTQ_ERR_SHAPE:
    case LATTQ_ERR_ALIGNMENT:
    case LATTQ_ERR_LAYOUT:
    case LATTQ_ERR_NONFINITE:
    case LATTQ_ERR_WORKSPACE: value_error(msg);
    default: runtime_error(msg);
  }
}

// ---- layer descriptor ----------------------------------------------------------------------------
lattq_layer_desc parse_desc(const py::handle& obj) {
  if (!py::isinstance<py::tuple>(obj) || py::len(obj) != 6)
    type_error("argument 'desc': expected a tuple (bits, dim, n, k, had_in, had_out)");
  py::tuple t = py::reinterpret_borrow<py::tuple>(obj);
  lattq_layer_desc d{};
  try {
    d.bits = t[0].cast<int32_t>();
    d.dim = t[1].cast<int32_t>();
    d.n = t[2].cast<int64_t>();
    d.k = t[3].cast<int64_t>();
    d.had_in = t[4].cast<int32_t>();
    d.had_out = t[5].cast<int32_t>();
  } catch (const py::cast_error&) {
    type_error("argument 'desc': (bits, dim, n, k, had_in, had_out) must all be integers");
  }
  check(lattq_validate_desc(&d), "validate_desc");
  return d;
}

int64_t row_bytes(const lattq_layer_desc& d) { return d.k * d.bits / 8; }

// Validate every tensor of a layer against its descriptor (not the values: the core does that on the
// host) and build the C struct.  device: -1 for the CPU path, else the CUDA ordinal.
lattq_layer make_layer(const lattq_layer_desc& desc, int layout, const TensorArg& codes, const TensorArg& A,
                       const TensorArg& b, const TensorArg& su, const TensorArg& sv, const TensorArg* bias,
                       int device) {
  if (layout != LATTQ_LAYOUT_CANONICAL && layout != LATTQ_LAYOUT_TILED)
    value_error("argument 'layout': unknown code layout id " + std::to_string(layout) +
                " (expected 0 = CANONICAL or 1 = TILED)");
  std::vector<const TensorArg*> all = {&codes, &A, &b, &su, &sv};
  if (bias) all.push_back(bias);
  for (auto* t : all) {
    if (device < 0) expect_cpu(*t);
    else expect_cuda(*t, device);
  }
  expect_dtype(codes, {BD_U8});
  if (layout == LATTQ_LAYOUT_TILED) {
    int64_t pb = lattq_packed_bytes(&desc);
    expect_shape(codes, {pb}, "TILED codes are a flat uint8 buffer of lattq_packed_bytes(desc)");
  } else {
    if (codes.shape.size() == 1) expect_shape(codes, {desc.n * row_bytes(desc)}, "canonical codes, N*K*bits/8");
    else expect_shape(codes, {desc.n, row_bytes(desc)}, "canonical codes [N, K*bits/8]");
  }
  expect_contiguous(codes);
  expect_aligned(codes, device < 0 ? 1 : 16);
  const std::vector<std::pair<const TensorArg*, std::vector<int64_t>>> params = {
      {&A, {desc.dim, desc.dim}}, {&b, {desc.dim}}, {&su, {desc.k}}, {&sv, {desc.n}}};
  for (auto& p : params) {
    expect_dtype(*p.first, {BD_F32});
    expect_shape(*p.first, p.second);
    expect_contiguous(*p.first);
    expect_aligned(*p.first, 4);
  }
  if (bias) {
    expect_dtype(*bias, {BD_F32});
    expect_shape(*bias, {desc.n});
    expect_contiguous(*bias);
    expect_aligned(*bias, 4);
  }
  lattq_layer L{};
  L.desc = desc;
  L.layout = layout;
  L.codes = static_cast<const uint8_t*>(codes.data());
  L.A = static_cast<const float*>(A.data());
  L.b = static_cast<const float*>(b.data());
  L.su = static_cast<const float*>(su.data());
  L.sv = static_cast<const float*>(sv.data());
  L.bias = bias ? static_cast<const float*>(bias->data()) : nullptr;
  return L;
}

struct LayerArgs {
  lattq_layer_desc desc;
  TensorArg codes, A, b, su, sv, bias;
  bool has_bias;
};

LayerArgs parse_layer(const py::handle& desc, const py::handle& codes, const py::handle& A, const py::handle& b,
                      const py::handle& su, const py::handle& sv, const py::handle& bias) {
  LayerArgs a;
  a.desc = parse_desc(desc);
  a.codes = parse(codes, "codes");
  a.A = parse(A, "A");
  a.b = parse(b, "b");
  a.su = parse(su, "su");
  a.sv = parse(sv, "sv");
  a.has_bias = !is_none(bias);
  if (a.has_bias) a.bias = parse(bias, "bias");
  return a;
}

// Activation / output tensor [m, len] of an activation dtype.
void check_act(const TensorArg& t, int64_t m, int64_t len, int dtype, uintptr_t align) {
  expect_dtype(t, {BD_F32, BD_F16, BD_BF16});
  if (t.dtype != dtype)
    type_error("argument '" + t.name + "' has dtype " + dtype_name(t.dtype) + " but 'x' has dtype " +
               dtype_name(dtype) + "; they must match");
  expect_shape(t, {m, len});
  expect_contiguous(t);
  expect_aligned(t, align);
}

TensorArg parse_x(const py::handle& x, int64_t k) {
  TensorArg t = parse(x, "x");
  expect_dtype(t, {BD_F32, BD_F16, BD_BF16});
  if (t.shape.size() != 2 || t.shape[1] != k)
    value_error("argument 'x' has shape " + shape_str(t.shape) + "; expected [m, " + std::to_string(k) +
                "] (m rows of in_features = " + std::to_string(k) + ")");
  if (t.shape[0] < 1) value_error("argument 'x' has no rows (m = 0)");
  return t;
}

// ---- CPU functions ------------------------------------------------------------------------------
void py_validate_layer(py::handle desc, int layout, py::handle codes, py::handle A, py::handle b, py::handle su,
                       py::handle sv, py::handle bias) {
  LayerArgs a = parse_layer(desc, codes, A, b, su, sv, bias);
  lattq_layer L = make_layer(a.desc, layout, a.codes, a.A, a.b, a.su, a.sv, a.has_bias ? &a.bias : nullptr, -1);
  lattq_status s;
  {
    py::gil_scoped_release nogil;
    s = lattq_validate_layer(&L);
  }
  check(s, "validate_layer");
}

int64_t py_canonical_bytes(py::handle desc) {
  lattq_layer_desc d = parse_desc(desc);
  return lattq_canonical_bytes(&d);
}

int64_t py_packed_bytes(py::handle desc) {
  lattq_layer_desc d = parse_desc(desc);
  return lattq_packed_bytes(&d);
}

void py_pack(py::handle desc, py::handle canonical, py::handle packed) {
  lattq_layer_desc d = parse_desc(desc);
  TensorArg c = parse(canonical, "canonical"), p = parse(packed, "packed");
  for (auto* t : {&c, &p}) {
    expect_cpu(*t);
    expect_dtype(*t, {BD_U8});
    expect_contiguous(*t);
  }
  if (c.shape.size() == 1) expect_shape(c, {d.n * row_bytes(d)}, "canonical codes, N*K*bits/8");
  else expect_shape(c, {d.n, row_bytes(d)}, "canonical codes [N, K*bits/8]");
  expect_shape(p, {lattq_packed_bytes(&d)}, "TILED codes are a flat buffer of lattq_packed_bytes(desc)");
  uintptr_t c0 = c.ptr, c1 = c.ptr + c.numel(), p0 = p.ptr, p1 = p.ptr + p.numel();
  if (c0 < p1 && p0 < c1) value_error("arguments 'canonical' and 'packed' overlap in memory");
  lattq_status s;
  {
    py::gil_scoped_release nogil;
    s = lattq_pack(&d, static_cast<const uint8_t*>(c.data()), static_cast<uint8_t*>(p.data()));
  }
  check(s, "pack");
}

void py_unpack(py::handle desc, py::handle packed, py::handle canonical) {
  lattq_layer_desc d = parse_desc(desc);
  TensorArg p = parse(packed, "packed"), c = parse(canonical, "canonical");
  for (auto* t : {&c, &p}) {
    expect_cpu(*t);
    expect_dtype(*t, {BD_U8});
    expect_contiguous(*t);
  }
  expect_shape(p, {lattq_packed_bytes(&d)}, "TILED codes are a flat buffer of lattq_packed_bytes(desc)");
  if (c.shape.size() == 1) expect_shape(c, {d.n * row_bytes(d)}, "canonical codes, N*K*bits/8");
  else expect_shape(c, {d.n, row_bytes(d)}, "canonical codes [N, K*bits/8]");
  uintptr_t c0 = c.ptr, c1 = c.ptr + c.numel(), p0 = p.ptr, p1 = p.ptr + p.numel();
  if (c0 < p1 && p0 < c1) value_error("arguments 'packed' and 'canonical' overlap in memory");
  lattq_status s;
  {
    py::gil_scoped_release nogil;
    s = lattq_unpack(&d, static_cast<const uint8_t*>(p.data()), static_cast<uint8_t*>(c.data()));
  }
  check(s, "unpack");
}

void py_decode(py::handle desc, int layout, py::handle codes, py::handle A, py::handle b, py::handle su,
               py::handle sv, py::handle bias, bool with_transforms, py::handle out) {
  LayerArgs a = parse_layer(desc, codes, A, b, su, sv, bias);
  lattq_layer L = make_layer(a.desc, layout, a.codes, a.A, a.b, a.su, a.sv, a.has_bias ? &a.bias : nullptr, -1);
  TensorArg o = parse(out, "out");
  expect_cpu(o);
  expect_dtype(o, {BD_F32});
  expect_shape(o, {a.desc.n, a.desc.k});
  expect_contiguous(o);
  expect_aligned(o, 4);
  lattq_status s;
  {
    py::gil_scoped_release nogil;
    s = lattq_decode(&L, with_transforms ? 1 : 0, static_cast<float*>(o.data()));
  }
  check(s, "decode");
}

void py_encode_vectors(int bits, int dim, py::handle A_, py::handle b_, py::handle x_, int method, py::handle idx_,
                       py::handle sq_err_) {
  TensorArg A = parse(A_, "A"), b = parse(b_, "b"), x = parse(x_, "x"), idx = parse(idx_, "idx");
  bool has_err = !is_none(sq_err_);
  TensorArg err;
  if (has_err) err = parse(sq_err_, "sq_err");
  if (dim < 1) value_error("argument 'dim' must be positive, got " + std::to_string(dim));
  for (auto* t : {&A, &b, &x, &idx}) expect_cpu(*t);
  if (has_err) expect_cpu(err);
  for (auto* t : {&A, &b, &x}) {
    expect_dtype(*t, {BD_F32});
    expect_contiguous(*t);
    expect_aligned(*t, 4);
  }
  expect_shape(A, {dim, dim});
  expect_shape(b, {dim});
  if (x.shape.size() != 2 || x.shape[1] != dim)
    value_error("argument 'x' has shape " + shape_str(x.shape) + "; expected [count, " + std::to_string(dim) + "]");
  int64_t count = x.shape[0];
  expect_dtype(idx, {BD_U16, BD_I16});
  expect_shape(idx, {count});
  expect_contiguous(idx);
  expect_aligned(idx, 2);
  if (has_err) {
    expect_dtype(err, {BD_F32});
    expect_shape(err, {count});
    expect_contiguous(err);
    expect_aligned(err, 4);
  }
  lattq_status s;
  {
    py::gil_scoped_release nogil;
    s = lattq_encode_vectors(bits, dim, static_cast<const float*>(A.data()), static_cast<const float*>(b.data()),
                             static_cast<const float*>(x.data()), count, method,
                             static_cast<uint16_t*>(idx.data()), has_err ? static_cast<float*>(err.data()) : nullptr);
  }
  check(s, "encode_vectors");
}

void py_encode_matrix(py::handle desc, py::handle A_, py::handle b_, py::handle w_, int method, py::handle out_) {
  lattq_layer_desc d = parse_desc(desc);
  TensorArg A = parse(A_, "A"), b = parse(b_, "b"), w = parse(w_, "w_hat"), out = parse(out_, "canonical");
  for (auto* t : {&A, &b, &w, &out}) {
    expect_cpu(*t);
    expect_contiguous(*t);
  }
  for (auto* t : {&A, &b, &w}) {
    expect_dtype(*t, {BD_F32});
    expect_aligned(*t, 4);
  }
  expect_shape(A, {d.dim, d.dim});
  expect_shape(b, {d.dim});
  expect_shape(w, {d.n, d.k});
  expect_dtype(out, {BD_U8});
  if (out.shape.size() == 1) expect_shape(out, {d.n * row_bytes(d)}, "canonical codes, N*K*bits/8");
  else expect_shape(out, {d.n, row_bytes(d)}, "canonical codes [N, K*bits/8]");
  lattq_status s;
  {
    py::gil_scoped_release nogil;
    s = lattq_encode_matrix(&d, static_cast<const float*>(A.data()), static_cast<const float*>(b.data()),
                            static_cast<const float*>(w.data()), method, static_cast<uint8_t*>(out.data()));
  }
  check(s, "encode_matrix");
}

void py_fwht(py::handle data_, int block) {
  TensorArg t = parse(data_, "data");
  expect_cpu(t);
  expect_dtype(t, {BD_F32});
  if (t.shape.size() != 2) value_error("argument 'data' has shape " + shape_str(t.shape) + "; expected [rows, len]");
  expect_contiguous(t);
  expect_aligned(t, 4);
  if (t.numel() == 0) return;
  lattq_status s;
  {
    py::gil_scoped_release nogil;
    s = lattq_fwht_f32(static_cast<float*>(t.data()), t.shape[0], t.shape[1], block);
  }
  check(s, "fwht");
}

size_t py_forward_workspace_size(py::handle desc, int64_t m) {
  lattq_layer_desc d = parse_desc(desc);
  if (m < 1) value_error("argument 'm' must be >= 1, got " + std::to_string(m));
  size_t bytes = 0;
  check(lattq_forward_workspace_size(&d, m, &bytes), "forward_workspace_size");
  return bytes;
}

void py_forward(py::handle desc, int layout, py::handle codes, py::handle A, py::handle b, py::handle su,
                py::handle sv, py::handle bias, py::handle x_, py::handle y_, py::handle ws_, int num_threads) {
  LayerArgs a = parse_layer(desc, codes, A, b, su, sv, bias);
  lattq_layer L = make_layer(a.desc, layout, a.codes, a.A, a.b, a.su, a.sv, a.has_bias ? &a.bias : nullptr, -1);
  TensorArg x = parse_x(x_, a.desc.k);
  expect_cpu(x);
  int64_t m = x.shape[0];
  uintptr_t esz = static_cast<uintptr_t>(dtype_size(x.dtype));
  check_act(x, m, a.desc.k, x.dtype, esz);
  TensorArg y = parse(y_, "y");
  expect_cpu(y);
  check_act(y, m, a.desc.n, x.dtype, esz);
  size_t need = 0;
  check(lattq_forward_workspace_size(&a.desc, m, &need), "forward_workspace_size");
  void* ws_ptr = nullptr;
  size_t ws_bytes = 0;
  if (!is_none(ws_)) {
    TensorArg ws = parse(ws_, "workspace");
    expect_cpu(ws);
    expect_dtype(ws, {BD_U8});
    expect_contiguous(ws);
    expect_aligned(ws, 64);
    ws_ptr = ws.data();
    ws_bytes = static_cast<size_t>(ws.numel());
  }
  if (ws_bytes < need)
    value_error("argument 'workspace' has " + std::to_string(ws_bytes) + " bytes; lattq_forward needs " +
                std::to_string(need) + " for m = " + std::to_string(m));
  lattq_status s;
  {
    py::gil_scoped_release nogil;
    s = lattq_forward(&L, x.data(), x.dtype, m, y.data(), ws_ptr, ws_bytes, num_threads);
  }
  check(s, "forward");
}

#ifdef LATTQ_WITH_CUDA
// ---- CUDA functions -----------------------------------------------------------------------------
size_t py_cuda_forward_workspace_size(py::handle desc, int64_t m, int variant) {
  lattq_layer_desc d = parse_desc(desc);
  if (m < 1) value_error("argument 'm' must be >= 1, got " + std::to_string(m));
  size_t bytes = 0;
  check(lattq_cuda_forward_workspace_size(&d, m, variant, &bytes), "cuda_forward_workspace_size");
  return bytes;
}

// The caller's workspace (a 256-byte aligned uint8 CUDA tensor on `dev`, or None) checked against the `need` bytes
// that `fn` asks for m rows: its pointer and size.
std::pair<void*, size_t> cuda_workspace(py::handle ws_, int dev, size_t need, const char* fn, int64_t m) {
  void* ptr = nullptr;
  size_t bytes = 0;
  if (!is_none(ws_)) {
    TensorArg ws = parse(ws_, "workspace");
    expect_cuda(ws, dev);
    expect_dtype(ws, {BD_U8});
    expect_contiguous(ws);
    expect_aligned(ws, 256);
    ptr = ws.data();
    bytes = static_cast<size_t>(ws.numel());
  }
  if (bytes < need)
    value_error("argument 'workspace' has " + std::to_string(bytes) + " bytes; " + fn + " needs " +
                std::to_string(need) + " for m = " + std::to_string(m));
  return {ptr, bytes};
}

void py_cuda_forward(py::handle desc, py::handle codes, py::handle A, py::handle b, py::handle su, py::handle sv,
                     py::handle bias, py::handle x_, py::handle y_, py::handle ws_, int variant, uintptr_t stream) {
  LayerArgs a = parse_layer(desc, codes, A, b, su, sv, bias);
  TensorArg x = parse_x(x_, a.desc.k);
  expect_cuda(x, x.device < 0 ? 0 : x.device);
  int dev = x.device;
  lattq_layer L = make_layer(a.desc, LATTQ_LAYOUT_TILED, a.codes, a.A, a.b, a.su, a.sv,
                             a.has_bias ? &a.bias : nullptr, dev);
  int64_t m = x.shape[0];
  check_act(x, m, a.desc.k, x.dtype, 16);
  TensorArg y = parse(y_, "y");
  expect_cuda(y, dev);
  check_act(y, m, a.desc.n, x.dtype, 16);
  size_t need = 0;
  check(lattq_cuda_forward_workspace_size(&a.desc, m, variant, &need), "cuda_forward_workspace_size");
  auto [ws_ptr, ws_bytes] = cuda_workspace(ws_, dev, need, "lattq_cuda_forward", m);
  lattq_status s;
  {
    py::gil_scoped_release nogil;
    s = lattq_cuda_forward(&L, x.data(), x.dtype, m, y.data(), ws_ptr, ws_bytes, variant,
                           reinterpret_cast<void*>(stream));
  }
  check(s, "cuda_forward");
}

// Re-throws the exception of layer i's checks with "layers[i]: " in front (same Python exception type).
template <typename F>
auto in_layer(int i, F f) -> decltype(f()) {
  const std::string pre = "layers[" + std::to_string(i) + "]: ";
  try {
    return f();
  } catch (const LattqTypeError& e) {
    throw LattqTypeError(pre + e.what());
  } catch (const LattqValueError& e) {
    throw LattqValueError(pre + e.what());
  } catch (const LattqRuntimeError& e) {
    throw LattqRuntimeError(pre + e.what());
  }
}

std::vector<lattq_layer_desc> parse_descs(const py::sequence& descs) {
  std::vector<lattq_layer_desc> ds;
  for (size_t i = 0; i < descs.size(); ++i) ds.push_back(in_layer((int)i, [&] { return parse_desc(descs[i]); }));
  return ds;
}

void check_group_count(size_t cnt) {
  if (cnt < 1 || cnt > LATTQ_CUDA_MAX_GROUP)
    value_error("a group has 1.." + std::to_string(LATTQ_CUDA_MAX_GROUP) + " layers, got " + std::to_string(cnt));
}

size_t py_cuda_forward_group_workspace_size(py::sequence descs, int64_t m, int variant) {
  check_group_count(descs.size());
  std::vector<lattq_layer_desc> ds = parse_descs(descs);
  if (m < 1) value_error("argument 'm' must be >= 1, got " + std::to_string(m));
  size_t bytes = 0;
  check(lattq_cuda_forward_group_workspace_size(ds.data(), (int32_t)ds.size(), m, variant, &bytes),
        "cuda_forward_group_workspace_size");
  return bytes;
}

// Several layers on one x (lattq_cuda_forward_group): lists of per-layer arguments, one output tensor per layer.
void py_cuda_forward_group(py::sequence descs, py::sequence codes, py::sequence A, py::sequence b, py::sequence su,
                           py::sequence sv, py::sequence bias, py::handle x_, py::sequence ys, py::handle ws_,
                           int variant, uintptr_t stream) {
  const size_t cnt = descs.size();
  check_group_count(cnt);
  for (const py::sequence* l : {&codes, &A, &b, &su, &sv, &bias, &ys})
    if (l->size() != cnt)
      value_error("every per-layer list must have " + std::to_string(cnt) + " entries (one per layer), got " +
                  std::to_string(l->size()));
  std::vector<lattq_layer_desc> ds = parse_descs(descs);
  TensorArg x = parse_x(x_, ds[0].k);
  expect_cuda(x, x.device < 0 ? 0 : x.device);
  const int dev = x.device;
  const int64_t m = x.shape[0];
  check_act(x, m, ds[0].k, x.dtype, 16);
  std::vector<LayerArgs> a(cnt);
  std::vector<lattq_layer> Ls(cnt);
  std::vector<TensorArg> y(cnt);
  std::vector<void*> yp(cnt);
  for (size_t i = 0; i < cnt; ++i) {
    in_layer((int)i, [&] {
      a[i] = parse_layer(descs[i], codes[i], A[i], b[i], su[i], sv[i], bias[i]);
      if (a[i].desc.k != ds[0].k)
        value_error("in_features = " + std::to_string(a[i].desc.k) + " but layers[0] has " +
                    std::to_string(a[0].desc.k) + ": a group shares its input");
      Ls[i] = make_layer(a[i].desc, LATTQ_LAYOUT_TILED, a[i].codes, a[i].A, a[i].b, a[i].su, a[i].sv,
                         a[i].has_bias ? &a[i].bias : nullptr, dev);
      y[i] = parse(ys[i], "y");
      expect_cuda(y[i], dev);
      check_act(y[i], m, a[i].desc.n, x.dtype, 16);
      yp[i] = y[i].data();
      return 0;
    });
  }
  size_t need = 0;
  check(lattq_cuda_forward_group_workspace_size(ds.data(), (int32_t)cnt, m, variant, &need),
        "cuda_forward_group_workspace_size");
  auto [ws_ptr, ws_bytes] = cuda_workspace(ws_, dev, need, "lattq_cuda_forward_group", m);
  lattq_status s;
  {
    py::gil_scoped_release nogil;
    s = lattq_cuda_forward_group(Ls.data(), (int32_t)cnt, x.data(), x.dtype, m, yp.data(), ws_ptr, ws_bytes, variant,
                                 reinterpret_cast<void*>(stream));
  }
  check(s, "cuda_forward_group");
}

void py_cuda_decode(py::handle desc, int layout, py::handle codes, py::handle A, py::handle b, py::handle su,
                    py::handle sv, py::handle out_, uintptr_t stream) {
  LayerArgs a = parse_layer(desc, codes, A, b, su, sv, py::none());
  TensorArg o = parse(out_, "out");
  expect_cuda(o, o.device < 0 ? 0 : o.device);
  lattq_layer L = make_layer(a.desc, layout, a.codes, a.A, a.b, a.su, a.sv, nullptr, o.device);
  expect_dtype(o, {BD_F32});
  expect_shape(o, {a.desc.n, a.desc.k});
  expect_contiguous(o);
  expect_aligned(o, 16);
  lattq_status s;
  {
    py::gil_scoped_release nogil;
    s = lattq_cuda_decode(&L, static_cast<float*>(o.data()), reinterpret_cast<void*>(stream));
  }
  check(s, "cuda_decode");
}

void py_cuda_fwht(py::handle data_, int block, uintptr_t stream) {
  TensorArg t = parse(data_, "data");
  expect_cuda(t, t.device < 0 ? 0 : t.device);
  expect_dtype(t, {BD_F32, BD_F16, BD_BF16});
  if (t.shape.size() != 2) value_error("argument 'data' has shape " + shape_str(t.shape) + "; expected [rows, len]");
  expect_contiguous(t);
  expect_aligned(t, 16);
  if (t.numel() == 0) return;
  lattq_status s;
  {
    py::gil_scoped_release nogil;
    s = lattq_cuda_fwht(t.data(), t.dtype, t.shape[0], t.shape[1], block, reinterpret_cast<void*>(stream));
  }
  check(s, "cuda_fwht");
}
#endif

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "lattq native bindings (no torch): tensors are (data_ptr, dtype, shape, strides, device) tuples";
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const LattqTypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const LattqValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const LattqRuntimeError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

  // ---- constants (mirrored by lattq.format; checked by tests/python/test_format.py) ----
  m.attr("FORMAT_VERSION") = LATTQ_FORMAT_VERSION;
  m.attr("TILE_ROWS") = LATTQ_TILE_ROWS;
  m.attr("TILE_BYTES") = LATTQ_TILE_BYTES;
  m.attr("MAX_BITS") = LATTQ_MAX_BITS;
  m.attr("MAX_DIM") = LATTQ_MAX_DIM;
  m.attr("MAX_CODE_BITS") = LATTQ_MAX_CODE_BITS;
  py::dict status;
  status["OK"] = static_cast<int>(LATTQ_OK);
  status["ERR_INVALID_ARGUMENT"] = static_cast<int>(LATTQ_ERR_INVALID_ARGUMENT);
  status["ERR_DTYPE"] = static_cast<int>(LATTQ_ERR_DTYPE);
  status["ERR_SHAPE"] = static_cast<int>(LATTQ_ERR_SHAPE);
  status["ERR_ALIGNMENT"] = static_cast<int>(LATTQ_ERR_ALIGNMENT);
  status["ERR_LAYOUT"] = static_cast<int>(LATTQ_ERR_LAYOUT);
  status["ERR_NONFINITE"] = static_cast<int>(LATTQ_ERR_NONFINITE);
  status["ERR_UNSUPPORTED"] = static_cast<int>(LATTQ_ERR_UNSUPPORTED);
  status["ERR_WORKSPACE"] = static_cast<int>(LATTQ_ERR_WORKSPACE);
  status["ERR_DEVICE"] = static_cast<int>(LATTQ_ERR_DEVICE);
  status["ERR_NO_CUDA"] = static_cast<int>(LATTQ_ERR_NO_CUDA);
  status["ERR_INTERNAL"] = static_cast<int>(LATTQ_ERR_INTERNAL);
  m.attr("STATUS") = status;
  m.attr("DTYPE_F32") = static_cast<int>(LATTQ_F32);
  m.attr("DTYPE_F16") = static_cast<int>(LATTQ_F16);
  m.attr("DTYPE_BF16") = static_cast<int>(LATTQ_BF16);
  // binding-only dtype codes for non-activation tensors
  m.attr("DTYPE_U8") = static_cast<int>(BD_U8);
  m.attr("DTYPE_I8") = static_cast<int>(BD_I8);
  m.attr("DTYPE_U16") = static_cast<int>(BD_U16);
  m.attr("DTYPE_I16") = static_cast<int>(BD_I16);
  m.attr("DTYPE_I32") = static_cast<int>(BD_I32);
  m.attr("DTYPE_I64") = static_cast<int>(BD_I64);
  m.attr("DTYPE_F64") = static_cast<int>(BD_F64);
  m.attr("LAYOUT_CANONICAL") = static_cast<int>(LATTQ_LAYOUT_CANONICAL);
  m.attr("LAYOUT_TILED") = static_cast<int>(LATTQ_LAYOUT_TILED);
  m.attr("ENCODE_AUTO") = static_cast<int>(LATTQ_ENCODE_AUTO);
  m.attr("ENCODE_EXHAUSTIVE") = static_cast<int>(LATTQ_ENCODE_EXHAUSTIVE);
  m.attr("ENCODE_ORTHOGONAL") = static_cast<int>(LATTQ_ENCODE_ORTHOGONAL);
#ifdef LATTQ_WITH_CUDA
  m.attr("has_cuda") = true;
  m.attr("VARIANT_AUTO") = static_cast<int>(LATTQ_VARIANT_AUTO);
  m.attr("VARIANT_REFERENCE") = static_cast<int>(LATTQ_VARIANT_REFERENCE);
#else
  m.attr("has_cuda") = false;
#endif
#ifdef LATTQ_VERSION_STRING
  m.attr("__version__") = LATTQ_VERSION_STRING;
#endif

  // ---- introspection ----
  m.def("version", []() { return std::string(lattq_version_string()); }, "Version string of the core library.");
  m.def("format_version", []() { return lattq_format_version(); }, "Format version implemented by the core.");
  m.def("status_string", [](int s) { return std::string(lattq_status_string(static_cast<lattq_status>(s))); },
        py::arg("status"));
  m.def("last_error", []() { return std::string(lattq_last_error()); },
        "Message of the last failing native call on this thread.");
  m.def("cuda_device_count", []() -> int {
#ifdef LATTQ_WITH_CUDA
    int n;
    {
      py::gil_scoped_release nogil;
      n = lattq_cuda_device_count();
    }
    return n;
#else
    return 0;
#endif
  }, "CUDA devices usable by the lattq kernels (0 when built without CUDA).");

  // ---- CPU (core) ----
  m.def("validate_desc", [](py::handle desc) { parse_desc(desc); }, py::arg("desc"),
        "Raise ValueError naming the bad field unless (bits, dim, n, k, had_in, had_out) is valid.");
  m.def("validate_layer", &py_validate_layer, py::arg("desc"), py::arg("layout"), py::arg("codes"), py::arg("A"),
        py::arg("b"), py::arg("su"), py::arg("sv"), py::arg("bias"));
  m.def("canonical_bytes", &py_canonical_bytes, py::arg("desc"));
  m.def("packed_bytes", &py_packed_bytes, py::arg("desc"));
  m.def("pack", &py_pack, py::arg("desc"), py::arg("canonical"), py::arg("packed"));
  m.def("unpack", &py_unpack, py::arg("desc"), py::arg("packed"), py::arg("canonical"));
  m.def("decode", &py_decode, py::arg("desc"), py::arg("layout"), py::arg("codes"), py::arg("A"), py::arg("b"),
        py::arg("su"), py::arg("sv"), py::arg("bias"), py::arg("with_transforms"), py::arg("out"));
  m.def("encode_vectors", &py_encode_vectors, py::arg("bits"), py::arg("dim"), py::arg("A"), py::arg("b"),
        py::arg("x"), py::arg("method"), py::arg("idx"), py::arg("sq_err"));
  m.def("encode_matrix", &py_encode_matrix, py::arg("desc"), py::arg("A"), py::arg("b"), py::arg("w_hat"),
        py::arg("method"), py::arg("canonical"));
  m.def("fwht", &py_fwht, py::arg("data"), py::arg("block"));
  m.def("forward_workspace_size", &py_forward_workspace_size, py::arg("desc"), py::arg("m"));
  m.def("forward", &py_forward, py::arg("desc"), py::arg("layout"), py::arg("codes"), py::arg("A"), py::arg("b"),
        py::arg("su"), py::arg("sv"), py::arg("bias"), py::arg("x"), py::arg("y"), py::arg("workspace"),
        py::arg("num_threads") = 0);
  m.def("set_num_threads", [](int n) { lattq_set_num_threads(n); }, py::arg("n"));
  m.def("get_num_threads", []() { return lattq_get_num_threads(); });
  m.attr("CPU_KERNEL_AUTO") = static_cast<int>(LATTQ_CPU_KERNEL_AUTO);
  m.attr("CPU_KERNEL_SCALAR") = static_cast<int>(LATTQ_CPU_KERNEL_SCALAR);
  m.attr("CPU_KERNEL_AVX2") = static_cast<int>(LATTQ_CPU_KERNEL_AVX2);
  m.attr("CPU_KERNEL_AVX512") = static_cast<int>(LATTQ_CPU_KERNEL_AVX512);
  m.def("set_cpu_kernel", [](int kernel) { check(lattq_set_cpu_kernel(kernel), "set_cpu_kernel"); },
        py::arg("kernel"), "Force the CPU forward kernel family (AUTO picks the best one; RuntimeError if unsupported).");
  m.def("get_cpu_kernel", []() { return lattq_get_cpu_kernel(); });
  m.def("cpu_kernel_name", [](int kernel) { return std::string(lattq_cpu_kernel_name(kernel)); }, py::arg("kernel"));

#ifdef LATTQ_WITH_CUDA
  // ---- CUDA ----
  m.def("cuda_forward_workspace_size", &py_cuda_forward_workspace_size, py::arg("desc"), py::arg("m"),
        py::arg("variant") = 0);
  m.def("cuda_forward", &py_cuda_forward, py::arg("desc"), py::arg("codes"), py::arg("A"), py::arg("b"),
        py::arg("su"), py::arg("sv"), py::arg("bias"), py::arg("x"), py::arg("y"), py::arg("workspace"),
        py::arg("variant"), py::arg("stream"));
  m.attr("CUDA_MAX_GROUP") = LATTQ_CUDA_MAX_GROUP;
  m.def("cuda_forward_group_workspace_size", &py_cuda_forward_group_workspace_size, py::arg("descs"), py::arg("m"),
        py::arg("variant") = 0);
  m.def("cuda_forward_group", &py_cuda_forward_group, py::arg("descs"), py::arg("codes"), py::arg("A"), py::arg("b"),
        py::arg("su"), py::arg("sv"), py::arg("bias"), py::arg("x"), py::arg("ys"), py::arg("workspace"),
        py::arg("variant"), py::arg("stream"));
  m.def("cuda_decode", &py_cuda_decode, py::arg("desc"), py::arg("layout"), py::arg("codes"), py::arg("A"),
        py::arg("b"), py::arg("su"), py::arg("sv"), py::arg("out"), py::arg("stream"));
  m.def("cuda_fwht", &py_cuda_fwht, py::arg("data"), py::arg("block"), py::arg("stream"));
#endif
}
