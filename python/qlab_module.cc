// _qlab: the pybind11 extension module behind the `qlab` Python package (python/qlab).
//
// This file is the boundary between numpy and qlab's C++: it validates every numpy argument once
// (dtype, C-contiguity, rank) and turns it into a qlab Tensor, calls the C++ API, and turns the
// result back into numpy arrays and Python dicts. absl::Status errors become Python exceptions by
// code (InvalidArgument/OutOfRange -> ValueError, NotFound/DataLoss -> OSError, Unimplemented ->
// NotImplementedError, others -> RuntimeError) with the message, so nothing below ever sees a bad
// argument and nothing crashes the interpreter.
//
// Copies: a C-contiguous input of the right dtype is used in place, without a copy: the qlab
// Tensor wraps the numpy buffer (Tensor::WrapExternal) and holds a reference to the array, so the
// array lives as long as any Tensor viewing it, however long C++ keeps it. Only an array whose
// data are not aligned to its element size (possible with np.frombuffer(..., offset=1)) is
// copied, because C++ may not read a float through a misaligned pointer; nothing in qlab needs
// more than element alignment. Arrays that are not C-contiguous raise ValueError (never a silent
// copy). Outputs are not copied either: the returned numpy array points into the result Tensor's
// storage and keeps it alive through a capsule. While C++ runs with the GIL released, another
// Python thread must not write to an input array (as with numpy's own C loops).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "calibration/observer.h"
#include "calibration/registry.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "engine/fp32_engine.h"
#include "engine/int8_engine.h"
#include "experiments/ptq.h"
#include "kernels/qconv/qconv.h"
#include "kernels/qgemm/output_stage.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/threadpool/threadpool.h"
#include "models/data/batch_loader.h"
#include "models/data/data_root.h"
#include "models/data/dataset.h"
#include "models/data/random.h"
#include "models/data/transforms.h"
#include "models/evaluate.h"
#include "models/resnet.h"
#include "models/weights.h"
#include "nlohmann/json.hpp"
#include "quant/backend_quantizers.h"
#include "quant/convert.h"
#include "quant/graph/fold_batch_norm.h"
#include "quant/graph/graph.h"
#include "quant/prepare.h"
#include "quant/qparams.h"
#include "quant/quantize_tensor.h"

namespace py = pybind11;

namespace qlab::python {
namespace {

// ---- Errors -----------------------------------------------------------------------------------

// Raises the Python exception for a non-OK status. pybind11 turns error_already_set back into the
// pending Python exception when it unwinds out of the binding, so no C++ exception escapes.
void ThrowIfError(const absl::Status& status) {
  if (status.ok()) return;
  PyObject* type = PyExc_RuntimeError;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      type = PyExc_ValueError;
      break;
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kDataLoss:
      type = PyExc_OSError;
      break;
    case absl::StatusCode::kUnimplemented:  // e.g. a legacy-format checkpoint
      type = PyExc_NotImplementedError;     // a RuntimeError subclass
      break;
    default:
      break;
  }
  PyErr_SetString(type, std::string(status.message()).c_str());
  throw py::error_already_set();
}

template <typename T>
T ValueOrThrow(absl::StatusOr<T> value) {
  ThrowIfError(value.status());
  return *std::move(value);
}

[[noreturn]] void ThrowValueError(const std::string& message) {
  PyErr_SetString(PyExc_ValueError, message.c_str());
  throw py::error_already_set();
}

[[noreturn]] void ThrowTypeError(const std::string& message) {
  PyErr_SetString(PyExc_TypeError, message.c_str());
  throw py::error_already_set();
}

// ---- numpy <-> Tensor --------------------------------------------------------------------------

std::optional<DType> DTypeOfArray(const py::array& a) {
  if (a.dtype().is(py::dtype::of<float>())) return DType::kFloat32;
  if (a.dtype().is(py::dtype::of<int8_t>())) return DType::kInt8;
  if (a.dtype().is(py::dtype::of<uint8_t>())) return DType::kUInt8;
  if (a.dtype().is(py::dtype::of<int32_t>())) return DType::kInt32;
  return std::nullopt;
}

py::dtype NumpyDType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return py::dtype::of<float>();
    case DType::kInt8:
      return py::dtype::of<int8_t>();
    case DType::kUInt8:
      return py::dtype::of<uint8_t>();
    case DType::kInt32:
      return py::dtype::of<int32_t>();
  }
  return py::dtype::of<float>();
}

// The one validation of a numpy argument: a numpy array (no silent conversion of lists or other
// dtypes, which would hide a float64 -> float32 rounding), of one of `allowed` dtypes,
// C-contiguous, of rank within [min_rank, max_rank]. `what` names the argument in messages.
// Returns the array and its dtype; the array is used in place by the caller.
std::pair<py::array, DType> CheckedArray(const py::handle& object, const char* what,
                                         std::initializer_list<DType> allowed, int min_rank = 1,
                                         int max_rank = kMaxRank) {
  if (!py::isinstance<py::array>(object)) {
    ThrowTypeError(absl::StrCat(what, " must be a numpy.ndarray, got ",
                                std::string(py::str(py::type::of(object)))));
  }
  py::array a = py::reinterpret_borrow<py::array>(object);
  const std::optional<DType> dtype = DTypeOfArray(a);
  if (!dtype || std::find(allowed.begin(), allowed.end(), *dtype) == allowed.end()) {
    std::vector<std::string> names;
    for (DType d : allowed) names.emplace_back(DTypeName(d));
    ThrowTypeError(absl::StrCat(what, " must have dtype ", absl::StrJoin(names, " or "), ", got ",
                                std::string(py::str(a.dtype())),
                                " (convert with .astype(), qlab never converts silently)"));
  }
  if (!(a.flags() & py::array::c_style)) {
    ThrowValueError(absl::StrCat(what, " must be C-contiguous (use numpy.ascontiguousarray)"));
  }
  const int rank = static_cast<int>(a.ndim());
  if (rank < min_rank || rank > max_rank) {
    ThrowValueError(absl::StrCat(
        what, " must have rank ",
        min_rank == max_rank ? absl::StrCat(min_rank) : absl::StrCat(min_rank, "..", max_rank),
        ", got rank ", rank));
  }
  return {std::move(a), *dtype};
}

bool AlignedToElements(const py::array& a, DType dtype) {
  return reinterpret_cast<uintptr_t>(a.data()) % DTypeSize(dtype) == 0;
}

// A reference to `a` owned by C++: released (under the GIL, which the releasing thread may not
// hold) when the last Tensor viewing the array goes.
std::shared_ptr<void> HoldArray(const py::array& a) {
  return std::shared_ptr<void>(new py::object(a), [](void* held) {
    py::gil_scoped_acquire gil;
    delete static_cast<py::object*>(held);
  });
}

// A validated numpy argument (see CheckedArray) as a qlab Tensor over the array's own memory
// (no copy; the Tensor keeps the array alive). Copied only when misaligned for its dtype.
Tensor TensorFromArray(const py::handle& object, const char* what,
                       std::initializer_list<DType> allowed, int min_rank = 1,
                       int max_rank = kMaxRank, Layout layout = Layout::kRowMajor) {
  auto [a, dtype] = CheckedArray(object, what, allowed, min_rank, max_rank);
  Shape shape;
  for (int i = 0; i < a.ndim(); ++i) shape.push_back(a.shape(i));
  if (AlignedToElements(a, dtype)) {
    // const_cast: qlab only reads its inputs (every consumer takes `const Tensor&`).
    return ValueOrThrow(Tensor::WrapExternal(dtype, std::move(shape), layout,
                                             const_cast<void*>(a.data()), HoldArray(a)));
  }
  Tensor t = ValueOrThrow(Tensor::Create(dtype, std::move(shape), layout));
  if (t.nbytes() > 0) std::memcpy(t.raw_data(), a.data(), t.nbytes());
  return t;
}

// A numpy view of `t`'s storage that keeps `t` alive (no copy).
py::array ArrayFromTensor(const Tensor& t) {
  auto* owner = new Tensor(t);
  py::capsule keep_alive(owner, [](void* p) { delete static_cast<Tensor*>(p); });
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  return py::array(NumpyDType(t.dtype()), shape, owner->raw_data(), keep_alive);
}

// ---- Quantization parameters -----------------------------------------------------------------

DType ParseIntDType(const std::string& name) {
  if (name == "int8") return DType::kInt8;
  if (name == "uint8") return DType::kUInt8;
  if (name == "int32") return DType::kInt32;
  ThrowValueError(
      absl::StrCat("dtype must be \"int8\", \"uint8\" or \"int32\", got \"", name, "\""));
}

QScheme ParseQScheme(const std::string& name) {
  for (QScheme s : {QScheme::kPerTensorAffine, QScheme::kPerTensorSymmetric,
                    QScheme::kPerChannelAffine, QScheme::kPerChannelSymmetric}) {
    if (name == QSchemeName(s)) return s;
  }
  ThrowValueError(
      absl::StrCat("qscheme must be per_tensor_affine, per_tensor_symmetric, "
                   "per_channel_affine or per_channel_symmetric, got \"",
                   name, "\""));
}

// A Python float/int or a 1-D sequence/array of them, as a vector.
template <typename T>
std::vector<T> ScalarOrVector(const py::handle& object, const char* what) {
  try {
    if (py::isinstance<py::float_>(object) || py::isinstance<py::int_>(object)) {
      return {object.cast<T>()};
    }
    py::array_t<T, py::array::c_style | py::array::forcecast> a =
        py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(object);
    if (!a || a.ndim() > 1) throw py::cast_error();
    return std::vector<T>(a.data(), a.data() + a.size());
  } catch (const py::cast_error&) {
    ThrowTypeError(absl::StrCat(what, " must be a number or a 1-D sequence of numbers"));
  }
}

// QuantParams from the kernel functions' Python arguments; `axis` None is per tensor. The
// scheme is recorded as affine: the kernels only read scales and zero points.
QuantParams MakeParams(const Tensor& x, const py::handle& scale, const py::handle& zero_point,
                       DType dtype, std::optional<int> quant_min, std::optional<int> quant_max,
                       std::optional<int> axis) {
  QuantParams p;
  p.dtype = dtype;
  const auto limits = ValueOrThrow(DTypeRange(dtype));
  p.quant_min = quant_min.value_or(limits.first);
  p.quant_max = quant_max.value_or(limits.second);
  p.scales = ScalarOrVector<float>(scale, "scale");
  p.zero_points = ScalarOrVector<int32_t>(zero_point, "zero_point");
  if (axis) {
    const int a = *axis < 0 ? *axis + x.rank() : *axis;
    if (a < 0 || a >= x.rank()) {
      ThrowValueError(absl::StrCat("axis ", *axis, " is out of range for rank ", x.rank()));
    }
    p.qscheme = QScheme::kPerChannelAffine;
    p.axis = a;
  } else {
    p.qscheme = QScheme::kPerTensorAffine;
    p.axis = -1;
  }
  return p;
}

py::dict QParamsToDict(const QuantParams& p) {
  py::dict d;
  d["dtype"] = std::string(DTypeName(p.dtype));
  d["quant_min"] = p.quant_min;
  d["quant_max"] = p.quant_max;
  d["qscheme"] = std::string(QSchemeName(p.qscheme));
  d["axis"] = p.axis;
  d["scales"] = p.scales;
  d["zero_points"] = p.zero_points;
  return d;
}

// ---- Integer GEMM and convolution (kernels/qgemm, kernels/qconv) ------------------------------

// The output stage's Python arguments (output_stage.h has the formulas), validated and owned.
// QConvOutput is the owned form the convolution operator takes; the GEMM borrows its arrays.
kernels::QConvOutput ParseOutputStage(const std::string& out_dtype, const py::handle& multiplier,
                                      int64_t out_zero_point, std::optional<int64_t> out_min,
                                      std::optional<int64_t> out_max, bool relu,
                                      const std::string& requantization, size_t channels) {
  kernels::QConvOutput out;
  if (out_dtype == "int32") {
    out.type = kernels::QOutputType::kS32;
  } else if (out_dtype == "float32") {
    out.type = kernels::QOutputType::kF32;
  } else if (out_dtype == "uint8") {
    out.type = kernels::QOutputType::kU8;
  } else if (out_dtype == "int8") {
    out.type = kernels::QOutputType::kS8;
  } else {
    ThrowValueError(
        absl::StrCat("out_dtype must be \"int32\", \"float32\", \"uint8\" or \"int8\", got \"",
                     out_dtype, "\""));
  }
  if (requantization != "float" && requantization != "fixed_point") {
    ThrowValueError(absl::StrCat("requantization must be \"float\" or \"fixed_point\", got \"",
                                 requantization, "\""));
  }
  const bool quantized_output =
      out.type == kernels::QOutputType::kU8 || out.type == kernels::QOutputType::kS8;
  if (!quantized_output) {
    // int32 and float32 outputs have no zero point, clamp or rounding to choose.
    if (out_zero_point != 0 || out_min || out_max || relu || requantization != "float") {
      ThrowValueError(absl::StrCat(
          "out_zero_point, out_min, out_max, relu and requantization apply to int8/uint8 "
          "outputs only (out_dtype is \"",
          out_dtype, "\")"));
    }
  }
  if (out.type == kernels::QOutputType::kS32) {
    if (!multiplier.is_none()) {
      ThrowValueError("multiplier must be None for out_dtype=\"int32\" (the raw accumulators)");
    }
    return out;
  }
  if (multiplier.is_none()) {
    ThrowValueError(absl::StrCat("out_dtype=\"", out_dtype, "\" needs a multiplier"));
  }
  out.multipliers = ScalarOrVector<float>(multiplier, "multiplier");
  if (out.multipliers.size() != 1 && out.multipliers.size() != channels) {
    ThrowValueError(
        absl::StrCat("multiplier must have 1 entry (per tensor) or one per output "
                     "channel (",
                     channels, "), got ", out.multipliers.size()));
  }
  for (size_t c = 0; c < out.multipliers.size(); ++c) {
    const float m = out.multipliers[c];
    if (!(std::isfinite(m) && m > 0.0f)) {
      ThrowValueError(absl::StrCat("multiplier[", c, "] must be finite and > 0, got ", m));
    }
  }
  if (!quantized_output) return out;

  const int32_t type_min = out.type == kernels::QOutputType::kU8 ? 0 : -128;
  const int32_t type_max = out.type == kernels::QOutputType::kU8 ? 255 : 127;
  auto check_in_type = [&](const char* what, int64_t v) {
    if (v < type_min || v > type_max) {
      ThrowValueError(absl::StrCat(what, " must lie in [", type_min, ", ", type_max, "] for ",
                                   out_dtype, " output, got ", v));
    }
  };
  check_in_type("out_zero_point", out_zero_point);
  out.zero_point = static_cast<int32_t>(out_zero_point);
  out.min = static_cast<int32_t>(out_min.value_or(type_min));
  out.max = static_cast<int32_t>(out_max.value_or(type_max));
  check_in_type("out_min", out_min.value_or(type_min));
  check_in_type("out_max", out_max.value_or(type_max));
  if (relu) out.min = std::max(out.min, out.zero_point);  // quantized 0.0
  if (out.min > out.max) {
    ThrowValueError(absl::StrCat("the output clamp is empty: min ", out.min, " > max ", out.max,
                                 relu ? " (relu raised min to out_zero_point)" : ""));
  }
  if (requantization == "fixed_point") {
    out.requantization = kernels::QRequantization::kFixedPoint;
    for (size_t c = 0; c < out.multipliers.size(); ++c) {
      absl::StatusOr<FixedPointMultiplier> fixed = QuantizeMultiplier(out.multipliers[c]);
      if (!fixed.ok()) {
        ThrowValueError(absl::StrCat("multiplier[", c, "]: ", fixed.status().message()));
      }
      out.fixed_multipliers.push_back(fixed->multiplier);
      out.shifts.push_back(fixed->shift);
    }
    out.multipliers.clear();
  }
  return out;
}

// The activation zero point's range for an int8 or uint8 activation array.
void CheckActivationZeroPoint(const char* what, int64_t zero_point, DType dtype) {
  const int64_t lo = dtype == DType::kUInt8 ? 0 : -128;
  const int64_t hi = dtype == DType::kUInt8 ? 255 : 127;
  if (zero_point < lo || zero_point > hi) {
    ThrowValueError(absl::StrCat(what, " must lie in [", lo, ", ", hi, "] for ", DTypeName(dtype),
                                 " activations, got ", zero_point));
  }
}

// Optional int32 bias with one entry per output channel. |bias| is bounded so that
// acc + bias fits in int32 for any data (output_stage.h's precondition): |acc| <= K * 255 * 128.
const int32_t* CheckedBias(const py::handle& bias, int64_t channels, int64_t k,
                           std::optional<py::array>* keep) {
  if (bias.is_none()) return nullptr;
  auto [a, dtype] = CheckedArray(bias, "bias", {DType::kInt32}, 1, 1);
  if (a.shape(0) != channels) {
    ThrowValueError(absl::StrCat("bias must have one entry per output channel (", channels,
                                 "), got ", a.shape(0)));
  }
  if (!AlignedToElements(a, dtype)) ThrowValueError("bias is not aligned to 4 bytes");
  const auto* b = static_cast<const int32_t*>(a.data());
  const int64_t limit = int64_t{2147483647} - k * 255 * 128;
  for (int64_t c = 0; c < channels; ++c) {
    if (b[c] > limit || b[c] < -limit) {
      ThrowValueError(absl::StrCat("bias[", c, "] = ", b[c],
                                   " is too large: acc + bias could "
                                   "overflow int32 (|bias| must be <= 2^31 - 1 - K*255*128 = ",
                                   limit, ")"));
    }
  }
  *keep = std::move(a);
  return b;
}

DType OutputDType(kernels::QOutputType type) {
  switch (type) {
    case kernels::QOutputType::kS32:
      return DType::kInt32;
    case kernels::QOutputType::kF32:
      return DType::kFloat32;
    case kernels::QOutputType::kU8:
      return DType::kUInt8;
    case kernels::QOutputType::kS8:
      return DType::kInt8;
  }
  return DType::kInt32;
}

kernels::QOutputStage BorrowStage(const kernels::QConvOutput& out, const int32_t* bias) {
  kernels::QOutputStage stage;
  stage.type = out.type;
  stage.bias = bias;
  stage.requantization = out.requantization;
  stage.per_channel = out.requantization == kernels::QRequantization::kFloat
                          ? out.multipliers.size() > 1
                          : out.fixed_multipliers.size() > 1;
  stage.multipliers = out.multipliers.empty() ? nullptr : out.multipliers.data();
  stage.fixed_multipliers = out.fixed_multipliers.empty() ? nullptr : out.fixed_multipliers.data();
  stage.shifts = out.shifts.empty() ? nullptr : out.shifts.data();
  stage.zero_point = out.zero_point;
  stage.min = out.min;
  stage.max = out.max;
  return stage;
}

// qlab.qgemm: see python/qlab/__init__.py for the contract.
py::array QGemm(const py::handle& a_object, int64_t a_zero_point, const py::handle& b_object,
                const py::handle& bias_object, const std::string& b_layout,
                const std::string& out_dtype, const py::handle& multiplier, int64_t out_zero_point,
                std::optional<int64_t> out_min, std::optional<int64_t> out_max, bool relu,
                const std::string& requantization) {
  const auto [a, a_dtype] = CheckedArray(a_object, "a", {DType::kUInt8, DType::kInt8}, 2, 2);
  const auto [b, b_dtype] = CheckedArray(b_object, "b", {DType::kInt8}, 2, 2);
  if (b_layout != "kn" && b_layout != "nk") {
    ThrowValueError(
        absl::StrCat("b_layout must be \"kn\" (b is [K, N]) or \"nk\" (b is [N, K], "
                     "PyTorch's linear weight), got \"",
                     b_layout, "\""));
  }
  const bool kn = b_layout == "kn";
  const int64_t m = a.shape(0), k = a.shape(1);
  const int64_t b_k = kn ? b.shape(0) : b.shape(1);
  const int64_t n = kn ? b.shape(1) : b.shape(0);
  if (b_k != k) {
    ThrowValueError(
        absl::StrFormat("mismatched K: a is [%d, %d] but b (b_layout=\"%s\") is "
                        "[%d, %d], K=%d",
                        m, k, b_layout, b.shape(0), b.shape(1), b_k));
  }
  if (k < 1 || k > 65536) ThrowValueError(absl::StrCat("K must lie in [1, 65536], got ", k));
  if (n < 1) ThrowValueError("b must have at least one output column (N >= 1)");
  CheckActivationZeroPoint("a_zero_point", a_zero_point, a_dtype);
  std::optional<py::array> bias_keep;
  const int32_t* bias = CheckedBias(bias_object, n, k, &bias_keep);
  const kernels::QConvOutput out =
      ParseOutputStage(out_dtype, multiplier, out_zero_point, out_min, out_max, relu,
                       requantization, static_cast<size_t>(n));
  Tensor c = ValueOrThrow(Tensor::Create(OutputDType(out.type), {m, n}));
  {
    py::gil_scoped_release release;
    const auto* b_data = static_cast<const int8_t*>(b.data());
    const kernels::PackedWeights packed = kn ? kernels::PackWeights(b_data, k, n, n)
                                             : kernels::PackWeightsStrided(b_data, k, n, 1, k);
    const kernels::QOutputStage stage = BorrowStage(out, bias);
    if (m > 0) {
      if (a_dtype == DType::kUInt8) {
        kernels::QGemmU8S8_OutputStage(static_cast<const uint8_t*>(a.data()), m, k,
                                       static_cast<int32_t>(a_zero_point), packed, stage,
                                       c.raw_data(), n);
      } else {
        kernels::QGemmS8S8_OutputStage(static_cast<const int8_t*>(a.data()), m, k,
                                       static_cast<int32_t>(a_zero_point), packed, stage,
                                       c.raw_data(), n);
      }
    }
  }
  return ArrayFromTensor(c);
}

// A Python int or a sequence of `n` ints (stride, padding, dilation), each >= min_value.
std::vector<int64_t> IntOrTuple(const py::handle& object, const char* what,
                                std::initializer_list<size_t> sizes, int64_t min_value) {
  std::vector<int64_t> values;
  if (py::isinstance<py::int_>(object)) {
    values.push_back(object.cast<int64_t>());
  } else if (py::isinstance<py::sequence>(object) && !py::isinstance<py::str>(object)) {
    for (const py::handle item : py::reinterpret_borrow<py::sequence>(object)) {
      if (!py::isinstance<py::int_>(item)) {
        ThrowTypeError(
            absl::StrCat(what, " must hold ints, got ", std::string(py::str(py::type::of(item)))));
      }
      values.push_back(item.cast<int64_t>());
    }
  } else {
    ThrowTypeError(absl::StrCat(what, " must be an int or a tuple of ints, got ",
                                std::string(py::str(py::type::of(object)))));
  }
  if (values.size() != 1 && std::find(sizes.begin(), sizes.end(), values.size()) == sizes.end()) {
    ThrowValueError(absl::StrCat(what, " must be an int or a tuple of ",
                                 absl::StrJoin(sizes, " or "), " ints, got ", values.size()));
  }
  for (int64_t v : values) {
    if (v < min_value) ThrowValueError(absl::StrCat(what, " must be >= ", min_value, ", got ", v));
  }
  return values;
}

// qlab.qconv2d: see python/qlab/__init__.py for the contract. kernels/qconv runs one group,
// uint8 activations, no dilation; this function maps the rest onto it exactly:
//   int8 x      -> x + 128 as uint8 with zero point + 128 ((x - zp) is unchanged; one copy);
//   dilation d  -> the filter spread out with zero taps (a zero weight adds 0 whatever it meets);
//   groups g    -> one convolution per group on that group's channels (copied out and back).
py::array QConv2d(const py::handle& x_object, int64_t x_zero_point, const py::handle& w_object,
                  const py::handle& bias_object, const py::handle& stride_object,
                  const py::handle& padding_object, const py::handle& dilation_object,
                  int64_t groups, const std::string& out_dtype, const py::handle& multiplier,
                  int64_t out_zero_point, std::optional<int64_t> out_min,
                  std::optional<int64_t> out_max, bool relu, const std::string& requantization,
                  int threads) {
  const auto [x, x_dtype] = CheckedArray(x_object, "x", {DType::kUInt8, DType::kInt8}, 4, 4);
  const auto [w, w_dtype] = CheckedArray(w_object, "w", {DType::kInt8}, 4, 4);
  (void)w_dtype;
  if (groups < 1) ThrowValueError(absl::StrCat("groups must be >= 1, got ", groups));
  if (threads < 1) ThrowValueError(absl::StrCat("threads must be >= 1, got ", threads));
  const int64_t batch = x.shape(0), in_h = x.shape(1), in_w = x.shape(2), cin = x.shape(3);
  const int64_t cout = w.shape(0), kh = w.shape(1), kw = w.shape(2), cin_g = w.shape(3);
  if (cin % groups != 0 || cout % groups != 0) {
    ThrowValueError(absl::StrCat("groups=", groups, " must divide the input channels (", cin,
                                 ") and the output channels (", cout, ")"));
  }
  if (cin_g != cin / groups) {
    ThrowValueError(absl::StrCat("w must be OHWI [out, kh, kw, in/groups] = [", cout, ", ", kh,
                                 ", ", kw, ", ", cin / groups, "] for x with ", cin,
                                 " channels and groups=", groups, ", got in/groups=", cin_g));
  }
  if (batch < 1 || in_h < 1 || in_w < 1 || cin < 1 || cout < 1 || kh < 1 || kw < 1) {
    ThrowValueError(absl::StrCat("x ", ShapeString({batch, in_h, in_w, cin}), " and w ",
                                 ShapeString({cout, kh, kw, cin_g}),
                                 " must have no zero-sized dimension"));
  }
  CheckActivationZeroPoint("x_zero_point", x_zero_point, x_dtype);
  const std::vector<int64_t> stride = IntOrTuple(stride_object, "stride", {2}, 1);
  const std::vector<int64_t> dilation = IntOrTuple(dilation_object, "dilation", {2}, 1);
  const std::vector<int64_t> padding = IntOrTuple(padding_object, "padding", {2, 4}, 0);
  const int64_t stride_h = stride[0], stride_w = stride.back();
  const int64_t dil_h = dilation[0], dil_w = dilation.back();
  // padding: p, (ph, pw) or (top, bottom, left, right).
  const int64_t pad_top = padding[0];
  const int64_t pad_bottom = padding.size() == 4 ? padding[1] : padding[0];
  const int64_t pad_left = padding.size() == 4 ? padding[2] : padding.back();
  const int64_t pad_right = padding.size() == 4 ? padding[3] : padding.back();
  const int64_t eff_kh = dil_h * (kh - 1) + 1, eff_kw = dil_w * (kw - 1) + 1;
  if (in_h + pad_top + pad_bottom < eff_kh || in_w + pad_left + pad_right < eff_kw) {
    ThrowValueError(absl::StrCat("the (dilated) kernel ", eff_kh, "x", eff_kw,
                                 " is larger than the padded input ", in_h + pad_top + pad_bottom,
                                 "x", in_w + pad_left + pad_right));
  }
  std::optional<py::array> bias_keep;
  const int32_t* bias = CheckedBias(bias_object, cout, eff_kh * eff_kw * cin_g, &bias_keep);
  const kernels::QConvOutput out =
      ParseOutputStage(out_dtype, multiplier, out_zero_point, out_min, out_max, relu,
                       requantization, static_cast<size_t>(cout));

  const int64_t cout_g = cout / groups;
  kernels::QConvShape shape;
  shape.batch = batch;
  shape.input_height = in_h;
  shape.input_width = in_w;
  shape.input_channels = cin_g;
  shape.output_channels = cout_g;
  shape.kernel_height = eff_kh;
  shape.kernel_width = eff_kw;
  shape.stride_height = stride_h;
  shape.stride_width = stride_w;
  shape.padding_top = pad_top;
  shape.padding_left = pad_left;
  shape.padding_bottom = pad_bottom;
  shape.padding_right = pad_right;
  const int64_t out_h = shape.output_height(), out_w = shape.output_width();
  const int64_t pixels = batch * in_h * in_w, out_pixels = batch * out_h * out_w;

  // Per group: its filter (dilated if asked), bias and multipliers; Create validates the rest
  // (padding smaller than the kernel, K <= 65536) with messages naming the value.
  std::vector<kernels::QConvU8S8_NHWC> convs;
  const int32_t zero_point_u8 =
      static_cast<int32_t>(x_dtype == DType::kInt8 ? x_zero_point + 128 : x_zero_point);
  const auto* w_data = static_cast<const int8_t*>(w.data());
  for (int64_t g = 0; g < groups; ++g) {
    const int8_t* filter = w_data + g * cout_g * kh * kw * cin_g;
    std::vector<int8_t> dilated;
    if (dil_h > 1 || dil_w > 1) {
      dilated.assign(cout_g * eff_kh * eff_kw * cin_g, 0);
      for (int64_t o = 0; o < cout_g; ++o) {
        for (int64_t ky = 0; ky < kh; ++ky) {
          for (int64_t kx = 0; kx < kw; ++kx) {
            std::memcpy(&dilated[((o * eff_kh + ky * dil_h) * eff_kw + kx * dil_w) * cin_g],
                        &filter[((o * kh + ky) * kw + kx) * cin_g], cin_g);
          }
        }
      }
      filter = dilated.data();
    }
    kernels::QConvOutput group_out = out;
    auto slice = [&](auto& v) {
      if (v.size() > 1) {
        v.assign(v.begin() + g * cout_g, v.begin() + (g + 1) * cout_g);
      }
    };
    slice(group_out.multipliers);
    slice(group_out.fixed_multipliers);
    slice(group_out.shifts);
    convs.push_back(ValueOrThrow(kernels::QConvU8S8_NHWC::Create(
        shape, zero_point_u8, filter, bias ? bias + g * cout_g : nullptr, group_out)));
  }

  const DType y_dtype = OutputDType(out.type);
  const size_t y_size = DTypeSize(y_dtype);
  Tensor y = ValueOrThrow(Tensor::Create(y_dtype, {batch, out_h, out_w, cout}, Layout::kNHWC));
  {
    py::gil_scoped_release release;
    std::optional<kernels::ThreadPool> pool;
    if (threads > 1) pool.emplace(threads);
    const auto* x_bytes = static_cast<const uint8_t*>(x.data());
    std::vector<uint8_t> shifted;  // int8 x as uint8 (x + 128 == x ^ 0x80 on the byte)
    if (x_dtype == DType::kInt8) {
      shifted.resize(pixels * cin);
      for (size_t i = 0; i < shifted.size(); ++i) shifted[i] = x_bytes[i] ^ 0x80;
      x_bytes = shifted.data();
    }
    if (groups == 1) {
      convs[0].Run(x_bytes, y.raw_data(), pool ? &*pool : nullptr);
    } else {
      std::vector<uint8_t> group_x(pixels * cin_g);
      std::vector<uint8_t> group_y(out_pixels * cout_g * y_size);
      auto* y_bytes = static_cast<uint8_t*>(y.raw_data());
      for (int64_t g = 0; g < groups; ++g) {
        for (int64_t p = 0; p < pixels; ++p) {
          std::memcpy(&group_x[p * cin_g], &x_bytes[p * cin + g * cin_g], cin_g);
        }
        convs[g].Run(group_x.data(), group_y.data(), pool ? &*pool : nullptr);
        for (int64_t p = 0; p < out_pixels; ++p) {
          std::memcpy(&y_bytes[(p * cout + g * cout_g) * y_size], &group_y[p * cout_g * y_size],
                      cout_g * y_size);
        }
      }
    }
  }
  return ArrayFromTensor(y);
}

// ---- Observer ----------------------------------------------------------------------------------

class PyObserver {
 public:
  explicit PyObserver(std::unique_ptr<calibration::Observer> observer)
      : observer_(std::move(observer)) {}

  static PyObserver Create(const std::string& spec, int channel_axis, bool skip_non_finite) {
    calibration::ObserverOptions options;
    options.channel_axis = channel_axis;
    options.skip_non_finite = skip_non_finite;
    return PyObserver(ValueOrThrow(calibration::CreateObserver(spec, options)));
  }

  void Observe(const py::handle& x) {
    const Tensor t = TensorFromArray(x, "x", {DType::kFloat32});
    ThrowIfError(observer_->Observe(t));
  }

  void Merge(const PyObserver& other) { ThrowIfError(observer_->Merge(*other.observer_)); }

  py::dict ComputeQParams(const std::string& dtype, std::optional<int> quant_min,
                          std::optional<int> quant_max, const std::string& qscheme,
                          float eps) const {
    QuantTarget target;
    target.dtype = ParseIntDType(dtype);
    const auto limits = ValueOrThrow(DTypeRange(target.dtype));
    target.quant_min = quant_min.value_or(limits.first);
    target.quant_max = quant_max.value_or(limits.second);
    target.qscheme = ParseQScheme(qscheme);
    target.eps = eps;
    ThrowIfError(target.Validate());
    const QuantParams p = ValueOrThrow(observer_->ComputeQParams(target));
    const calibration::Observer::Ranges r = ValueOrThrow(observer_->ComputeRanges(target));
    py::dict d = QParamsToDict(p);
    d["mins"] = r.mins;
    d["maxs"] = r.maxs;
    return d;
  }

  void Save(const std::string& path) const {
    ThrowIfError(calibration::SaveObserver(*observer_, path));
  }

  const calibration::Observer& observer() const { return *observer_; }

 private:
  std::unique_ptr<calibration::Observer> observer_;
};

// ---- Model -------------------------------------------------------------------------------------

class PyModel {
 public:
  PyModel(const std::string& name, const std::string& weights_path, int threads)
      : name_(name), threads_(threads) {
    if (threads < 1) ThrowValueError(absl::StrCat("threads must be >= 1, got ", threads));
    spec_ = ValueOrThrow(ModelByName(name));
    if (weights_path.empty()) {
      graph_ = ValueOrThrow(BuildResNet(spec_));
    } else {
      LoadedWeights weights = ValueOrThrow(LoadWeights(weights_path));
      graph_ = ValueOrThrow(BuildResNet(spec_, weights.tensors));
    }
    // The flow quantizes the folded model, as experiments/ptq does.
    ValueOrThrow(FoldBatchNorm(graph_));
  }

  py::array RunFp32(const py::handle& images) {
    const std::unique_lock<std::mutex> lock = LockModel();
    const Tensor input = Images(images);
    if (!fp32_)
      fp32_ = std::make_shared<Fp32Engine>(ValueOrThrow(Fp32Engine::Create(graph_, threads_)));
    return Run(fp32_, input);
  }

  void Quantize(const py::handle& calibration_images, const std::string& quantizer_name,
                const std::string& calibrator, int batch_size) {
    const std::unique_lock<std::mutex> lock = LockModel();
    if (batch_size < 1) ThrowValueError(absl::StrCat("batch_size must be >= 1, got ", batch_size));
    const Tensor images = Images(calibration_images);
    PreparedModel prepared = Prepare(quantizer_name, calibrator);
    const int64_t n = images.dim(0);
    absl::Status status;
    {
      py::gil_scoped_release release;
      for (int64_t begin = 0; begin < n && status.ok(); begin += batch_size) {
        absl::StatusOr<Tensor> batch =
            images.Slice(begin, std::min<int64_t>(n, begin + batch_size));
        status = batch.status();
        if (status.ok()) status = prepared.Calibrate({*batch});
      }
    }
    ThrowIfError(status);
    Finish(prepared);
  }

  // Calibrates on `images` images of a named dataset, chosen as experiments/ptq chooses them
  // (data::SeededSubset(size, images, seed), read in dataset order), decoded and preprocessed in
  // C++ (the model's eval transform), then converts.
  void QuantizeOnDataset(const std::string& dataset_name, int64_t images, uint64_t seed,
                         const std::string& quantizer_name, const std::string& calibrator,
                         int batch_size, const std::string& data_root,
                         const std::string& cache_dir) {
    const std::unique_lock<std::mutex> lock = LockModel();
    if (batch_size < 1) ThrowValueError(absl::StrCat("batch_size must be >= 1, got ", batch_size));
    const std::unique_ptr<data::Dataset> dataset = OpenDataset(dataset_name, data_root, cache_dir);
    if (images < 1 || images > dataset->size()) {
      ThrowValueError(absl::StrCat("images must lie in [1, ", dataset->size(), "] for ",
                                   dataset_name, ", got ", images));
    }
    const std::unique_ptr<data::Transform> transform = EvalTransform();
    PreparedModel prepared = Prepare(quantizer_name, calibrator);
    absl::Status status;
    {
      py::gil_scoped_release release;
      data::LoaderOptions options;
      options.batch_size = batch_size;
      absl::StatusOr<std::unique_ptr<data::BatchLoader>> loader = data::BatchLoader::Create(
          *dataset, data::SeededSubset(dataset->size(), images, seed), *transform, options);
      status = loader.status();
      while (status.ok()) {
        absl::StatusOr<std::optional<data::Batch>> batch = (*loader)->Next();
        status = batch.status();
        if (!status.ok() || !*batch) break;
        status = prepared.Calibrate({(*batch)->images});
      }
    }
    ThrowIfError(status);
    Finish(prepared);
  }

  // Top-1/top-5 of one engine on the first `images` images of a named dataset (0: all) through
  // models/evaluate.h's Evaluate, as experiments/ptq evaluates.
  py::dict Evaluate(const std::string& dataset_name, const std::string& engine, int64_t images,
                    int batch_size, const std::string& data_root, const std::string& cache_dir,
                    bool show_progress) {
    const std::unique_lock<std::mutex> lock = LockModel();
    if (batch_size < 1) ThrowValueError(absl::StrCat("batch_size must be >= 1, got ", batch_size));
    if (images < 0) ThrowValueError(absl::StrCat("images must be >= 0 (0: all), got ", images));
    const BatchRunner runner = Runner(engine);
    const std::unique_ptr<data::Dataset> dataset = OpenDataset(dataset_name, data_root, cache_dir);
    std::vector<int64_t> order = data::AllIndices(*dataset);
    if (images > 0 && images < static_cast<int64_t>(order.size())) order.resize(images);
    const std::unique_ptr<data::Transform> transform = EvalTransform();
    EvalOptions options;
    options.batch_size = batch_size;
    options.show_progress = show_progress;
    options.label = absl::StrCat("eval ", name_, " ", engine);
    absl::StatusOr<EvalResult> result;
    {
      py::gil_scoped_release release;
      result = qlab::Evaluate(*dataset, std::move(order), *transform, runner, options);
    }
    const EvalResult r = ValueOrThrow(std::move(result));
    py::dict d;
    d["dataset"] = dataset_name;
    d["engine"] = engine;
    d["images"] = r.images;
    d["top1"] = r.top1();
    d["top5"] = r.top5();
    d["top1_correct"] = r.top1_correct;
    d["top5_correct"] = r.top5_correct;
    d["indices"] = r.indices;
    d["predictions"] = r.predictions;
    d["per_class_correct"] = r.per_class_correct;
    d["per_class_total"] = r.per_class_total;
    d["seconds"] = r.seconds;
    return d;
  }

  py::array RunInt8(const py::handle& images) {
    const std::unique_lock<std::mutex> lock = LockModel();
    const Tensor input = Images(images);
    if (!converted_) {
      PyErr_SetString(PyExc_RuntimeError,
                      "run_int8 needs a quantized model: call quantize() first");
      throw py::error_already_set();
    }
    if (!int8_) {
      int8_ = std::make_shared<Int8Engine>(ValueOrThrow(Int8Engine::Create(*converted_, threads_)));
    }
    return Run(int8_, input);
  }

  py::array RunFakeQuant(const py::handle& images) {
    const std::unique_lock<std::mutex> lock = LockModel();
    const Tensor input = Images(images);
    const BatchRunner runner = Runner("fake_quant");
    absl::StatusOr<Tensor> out;
    {
      py::gil_scoped_release release;
      out = runner(input);
    }
    return ArrayFromTensor(ValueOrThrow(std::move(out)));
  }

  std::string Dump(const std::string& which) {
    const std::unique_lock<std::mutex> lock = LockModel();
    if (which == "float") return graph_.Dump();
    if (which == "converted") {
      if (!converted_) {
        PyErr_SetString(PyExc_RuntimeError, "no converted model: call quantize() first");
        throw py::error_already_set();
      }
      return converted_->Dump();
    }
    ThrowValueError(absl::StrCat("which must be \"float\" or \"converted\", got \"", which, "\""));
  }

  std::string LoweringReport() {
    const std::unique_lock<std::mutex> lock = LockModel();
    if (!converted_) {
      PyErr_SetString(PyExc_RuntimeError, "no converted model: call quantize() first");
      throw py::error_already_set();
    }
    if (!int8_) {
      int8_ = std::make_shared<Int8Engine>(ValueOrThrow(Int8Engine::Create(*converted_, threads_)));
    }
    return int8_->report().Summary();
  }

  const std::string& name() const { return name_; }
  int64_t image_size() const { return spec_.image_size; }
  int64_t num_classes() const { return spec_.num_classes; }
  bool quantized() {
    const std::unique_lock<std::mutex> lock = LockModel();
    return converted_.has_value();
  }

 private:
  // Serializes the methods of one Model: its engines reuse their buffers (not thread-safe) and
  // quantize replaces the converted graph they were built from. Lock order is always mutex, then
  // GIL: the mutex is taken with the GIL released (a thread never waits for it while holding the
  // GIL), so a thread holding it can always get the GIL back.
  std::unique_lock<std::mutex> LockModel() {
    py::gil_scoped_release release;
    return std::unique_lock<std::mutex>(mutex_);
  }

  // NCHW float32 images with 3 channels; the engines check the spatial size.
  static Tensor Images(const py::handle& images) {
    Tensor t = TensorFromArray(images, "images", {DType::kFloat32}, 4, 4, Layout::kNCHW);
    if (t.dim(1) != 3) {
      ThrowValueError(
          absl::StrCat("images must be NCHW with 3 channels, got shape ", ShapeString(t.shape())));
    }
    if (t.dim(0) == 0) ThrowValueError("images must hold at least one image");
    return t;
  }

  // Annotates the folded model with the backend quantizer and inserts observers.
  PreparedModel Prepare(const std::string& quantizer_name, const std::string& calibrator) {
    const Backend backend = ValueOrThrow(ParseBackend(quantizer_name));
    std::unique_ptr<BackendQuantizer> quantizer =
        ValueOrThrow(BackendQuantizer::Create(backend, calibrator));
    return ValueOrThrow(PrepareWith(graph_, *quantizer));
  }

  // Converts a calibrated model; the engines of the previous one, if any, are dropped.
  void Finish(const PreparedModel& prepared) {
    converted_ = ValueOrThrow(Convert(prepared));
    int8_.reset();
    fake_quant_.reset();
  }

  // The datasets by name (models/data/data_root.h), under `data_root` (empty: the workspace's
  // ../shared/data). The training archive is extracted once into `cache_dir` (empty:
  // <workspace>/.cache).
  std::unique_ptr<data::Dataset> OpenDataset(const std::string& name, const std::string& data_root,
                                             const std::string& cache_dir) const {
    if (name != "cifar10_train" && name != "cifar10_test" && name != "imagenet_val1300") {
      ThrowValueError(
          absl::StrCat("dataset must be \"cifar10_train\", \"cifar10_test\" or "
                       "\"imagenet_val1300\", got \"",
                       name, "\""));
    }
    const std::string root = ValueOrThrow(data::ResolveDataRoot(data_root));
    std::unique_ptr<data::Dataset> dataset;
    if (name == "cifar10_train") {
      const std::string cache = cache_dir.empty() ? ValueOrThrow(data::CacheDir()) : cache_dir;
      absl::StatusOr<std::unique_ptr<data::Dataset>> opened;
      {
        py::gil_scoped_release release;  // the first call extracts 50,000 PNGs
        opened = data::OpenCifar10Train(root, cache);
      }
      dataset = ValueOrThrow(std::move(opened));
    } else if (name == "cifar10_test") {
      dataset = ValueOrThrow(data::OpenCifar10Test(root));
    } else {
      dataset = ValueOrThrow(data::OpenImageNetVal1300(root));
    }
    const int64_t classes = static_cast<int64_t>(dataset->class_names().size());
    if (classes != spec_.num_classes) {
      ThrowValueError(absl::StrCat("dataset ", name, " has ", classes, " classes but model ", name_,
                                   " has ", spec_.num_classes));
    }
    return dataset;
  }

  // The preprocessing the model's checkpoints expect (models/data/transforms.h).
  std::unique_ptr<data::Transform> EvalTransform() const {
    if (spec_.num_classes == 10) {
      return std::make_unique<data::CifarEvalTransform>(data::NormalizeParams{},
                                                        static_cast<int>(spec_.image_size));
    }
    return std::make_unique<data::ImageNetEvalTransform>();
  }

  // "fp32", "int8" or "fake_quant" (convert's Q/DQ model on the FP32 engine), engines made on
  // first use and shared with run_fp32 / run_int8.
  BatchRunner Runner(const std::string& engine) {
    if (engine == "fp32") {
      if (!fp32_) {
        fp32_ = std::make_shared<Fp32Engine>(ValueOrThrow(Fp32Engine::Create(graph_, threads_)));
      }
      return [e = fp32_](const Tensor& images) { return e->Run(images); };
    }
    if (engine != "int8" && engine != "fake_quant") {
      ThrowValueError(absl::StrCat("engine must be \"fp32\", \"int8\" or \"fake_quant\", got \"",
                                   engine, "\""));
    }
    if (!converted_) {
      PyErr_SetString(PyExc_RuntimeError, ("engine \"" + engine +
                                           "\" needs a quantized model: call quantize() or "
                                           "quantize_on_dataset() first")
                                              .c_str());
      throw py::error_already_set();
    }
    if (engine == "int8") {
      if (!int8_) {
        int8_ =
            std::make_shared<Int8Engine>(ValueOrThrow(Int8Engine::Create(*converted_, threads_)));
      }
      return [e = int8_](const Tensor& images) { return e->Run(images); };
    }
    if (!fake_quant_) {
      // Double accumulation, as experiments/ptq's fake-quant reference (fp32_engine.h).
      fake_quant_ = std::make_shared<Fp32Engine>(ValueOrThrow(
          Fp32Engine::Create(*converted_, threads_, Fp32Accumulation::kDouble)));
    }
    return [e = fake_quant_](const Tensor& images) { return e->Run(images); };
  }

  // The engines are not re-entrant, so each run holds a reference to its engine and runs with the
  // GIL released; `input` (usually a view of the caller's array) holds the array.
  template <typename Engine>
  static py::array Run(const std::shared_ptr<Engine>& engine, const Tensor& input) {
    absl::StatusOr<Tensor> out;
    {
      py::gil_scoped_release release;
      out = engine->Run(input);
    }
    return ArrayFromTensor(ValueOrThrow(std::move(out)));
  }

  std::string name_;
  int threads_;
  ResNetSpec spec_;
  Graph graph_;
  std::optional<Graph> converted_;
  std::shared_ptr<Fp32Engine> fp32_;
  std::shared_ptr<Int8Engine> int8_;
  std::shared_ptr<Fp32Engine> fake_quant_;
  std::mutex mutex_;
};

}  // namespace
}  // namespace qlab::python

PYBIND11_MODULE(_qlab, m) {
  using namespace qlab;          // NOLINT: the binding table names many qlab symbols
  using namespace qlab::python;  // NOLINT
  m.doc() = "qlab's C++ core (pybind11). Use the `qlab` package, which documents it.";

  py::class_<PyObserver>(m, "Observer",
                         "A calibrator from qlab's registry: feed float32 arrays, get qparams.")
      .def(py::init(&PyObserver::Create), py::arg("spec"), py::arg("channel_axis") = -1,
           py::arg("skip_non_finite") = false,
           "Observer(spec, channel_axis=-1, skip_non_finite=False)\n\n"
           "spec is a registry spec: 'minmax', 'moving_average:c=0.01', 'per_channel_minmax',\n"
           "'histogram[:bins=2048]', 'percentile:99.99', 'entropy', 'mse' (see names()).\n"
           "channel_axis is the channel axis of per-channel observers.")
      .def("observe", &PyObserver::Observe, py::arg("x"),
           "Feeds a C-contiguous float32 numpy array. NaN/Inf raise ValueError unless the\n"
           "observer skips them.")
      .def("merge", &PyObserver::Merge, py::arg("other"),
           "Adds another observer's statistics (same kind and arguments) to this one's.")
      .def("compute_qparams", &PyObserver::ComputeQParams, py::arg("dtype") = "int8",
           py::arg("quant_min") = py::none(), py::arg("quant_max") = py::none(),
           py::arg("qscheme") = "per_tensor_affine",
           py::arg("eps") = std::numeric_limits<float>::epsilon(),
           "compute_qparams(dtype='int8', quant_min=None, quant_max=None,\n"
           "                qscheme='per_tensor_affine', eps=float32 epsilon) -> dict\n\n"
           "Quantization parameters with PyTorch 1.13's rules. quant_min/quant_max default to\n"
           "the dtype's range. Returns dict(dtype, quant_min, quant_max, qscheme, axis,\n"
           "scales, zero_points, mins, maxs); mins/maxs are the range before widening to 0.")
      .def("save", &PyObserver::Save, py::arg("path"), "Writes the observer's state to a file.")
      .def_property_readonly(
          "spec", [](const PyObserver& o) { return o.observer().spec(); },
          "The registry spec that recreates this observer.")
      .def_property_readonly("per_channel",
                             [](const PyObserver& o) { return o.observer().per_channel(); })
      .def_property_readonly(
          "num_batches", [](const PyObserver& o) { return o.observer().num_batches(); },
          "Number of observe() calls that added data.")
      .def_property_readonly("non_finite_skipped",
                             [](const PyObserver& o) { return o.observer().non_finite_skipped(); })
      .def("__repr__",
           [](const PyObserver& o) { return "qlab.Observer('" + o.observer().spec() + "')"; });

  m.def(
      "load_observer",
      [](const std::string& path) {
        return PyObserver(ValueOrThrow(calibration::LoadObserver(path)));
      },
      py::arg("path"), "Reads an observer written by Observer.save().");
  m.def("observer_names", &calibration::ObserverNames, "Registered calibrator names, sorted.");

  m.def(
      "quantize",
      [](const py::handle& x, const py::handle& scale, const py::handle& zero_point,
         const std::string& dtype, std::optional<int> quant_min, std::optional<int> quant_max,
         std::optional<int> axis) {
        const Tensor t = TensorFromArray(x, "x", {DType::kFloat32});
        const QuantParams p =
            MakeParams(t, scale, zero_point, ParseIntDType(dtype), quant_min, quant_max, axis);
        return ArrayFromTensor(ValueOrThrow(QuantizeTensor(t, p)));
      },
      py::arg("x"), py::arg("scale"), py::arg("zero_point"), py::arg("dtype") = "int8",
      py::arg("quant_min") = py::none(), py::arg("quant_max") = py::none(),
      py::arg("axis") = py::none());
  m.def(
      "dequantize",
      [](const py::handle& q, const py::handle& scale, const py::handle& zero_point,
         std::optional<int> quant_min, std::optional<int> quant_max, std::optional<int> axis) {
        const Tensor t = TensorFromArray(q, "q", {DType::kInt8, DType::kUInt8, DType::kInt32});
        const QuantParams p =
            MakeParams(t, scale, zero_point, t.dtype(), quant_min, quant_max, axis);
        return ArrayFromTensor(ValueOrThrow(DequantizeTensor(t, p)));
      },
      py::arg("q"), py::arg("scale"), py::arg("zero_point"), py::arg("quant_min") = py::none(),
      py::arg("quant_max") = py::none(), py::arg("axis") = py::none());
  m.def(
      "fake_quantize",
      [](const py::handle& x, const py::handle& scale, const py::handle& zero_point, int quant_min,
         int quant_max, std::optional<int> axis) {
        const Tensor t = TensorFromArray(x, "x", {DType::kFloat32});
        // The container type only bounds the range (quant/quantize_tensor.h): the smallest that
        // holds [quant_min, quant_max].
        const DType dtype = quant_min >= -128 && quant_max <= 127 ? DType::kInt8
                            : quant_min >= 0 && quant_max <= 255  ? DType::kUInt8
                                                                  : DType::kInt32;
        const QuantParams p = MakeParams(t, scale, zero_point, dtype, quant_min, quant_max, axis);
        return ArrayFromTensor(ValueOrThrow(FakeQuantizeTensor(t, p, false)).values);
      },
      py::arg("x"), py::arg("scale"), py::arg("zero_point"), py::arg("quant_min") = -128,
      py::arg("quant_max") = 127, py::arg("axis") = py::none());

  py::class_<PyModel>(m, "Model",
                      "A qlab ResNet (models/resnet.h) with batch norm folded: FP32, fake-quant\n"
                      "and int8 engines and the PTQ flow (annotate, prepare, calibrate, convert).")
      .def(py::init<const std::string&, const std::string&, int>(), py::arg("name"),
           py::arg("weights_path") = "", py::arg("threads") = 2,
           "Model(name, weights_path='', threads=2)\n\n"
           "name: one of model_names() ('resnet20', 'resnet18', ...). weights_path: a state\n"
           "dict in safetensors or torch.save (.pth, zip format; keys as the PyTorch model's,\n"
           "a 'module.' prefix is accepted) -- recognized by content, not by name; empty gives\n"
           "seeded placeholder weights. The legacy pre-1.6 torch format raises\n"
           "NotImplementedError, a missing file OSError. threads: threads of each engine.")
      .def("run_fp32", &PyModel::RunFp32, py::arg("images"),
           "run_fp32(images) -> float32 logits [n, classes]\n\n"
           "images: C-contiguous float32 NCHW [n, 3, H, W], preprocessed (used in place).")
      .def("quantize", &PyModel::Quantize, py::arg("calibration_images"),
           py::arg("quantizer") = "xnnpack", py::arg("calibrator") = "",
           py::arg("batch_size") = 100,
           "quantize(calibration_images, quantizer='xnnpack', calibrator='', batch_size=100)\n\n"
           "Annotates with the backend quantizer ('xnnpack', 'x86', 'tensorrt'), calibrates on\n"
           "the float32 NCHW images in batches of batch_size with the activation calibrator\n"
           "(registry spec; '' keeps the backend's) and converts.")
      .def("quantize_on_dataset", &PyModel::QuantizeOnDataset, py::arg("dataset") = "cifar10_train",
           py::arg("images") = 512, py::arg("seed") = 0, py::arg("quantizer") = "xnnpack",
           py::arg("calibrator") = "", py::arg("batch_size") = 100, py::arg("data_root") = "",
           py::arg("cache_dir") = "",
           "quantize_on_dataset(dataset='cifar10_train', images=512, seed=0, quantizer='xnnpack',\n"
           "                    calibrator='', batch_size=100, data_root='', cache_dir='')\n\n"
           "As quantize(), calibrating on `images` images of a named dataset ('cifar10_train',\n"
           "'cifar10_test', 'imagenet_val1300') picked as `bazel run //experiments:ptq` picks\n"
           "them (a seeded subset: same seed, same images), decoded and preprocessed in C++.\n"
           "data_root: the data folder (default <workspace>/../shared/data); cache_dir: where\n"
           "the training archive is extracted once (default <workspace>/.cache).\n"
           "Calibrate on training images and evaluate on test images.")
      .def("evaluate", &PyModel::Evaluate, py::arg("dataset") = "cifar10_test",
           py::arg("engine") = "fp32", py::arg("images") = 0, py::arg("batch_size") = 100,
           py::arg("data_root") = "", py::arg("cache_dir") = "", py::arg("show_progress") = false,
           "evaluate(dataset='cifar10_test', engine='fp32', images=0, batch_size=100,\n"
           "         data_root='', cache_dir='', show_progress=False) -> dict\n\n"
           "Classification accuracy of one engine ('fp32', 'int8', 'fake_quant') on the first\n"
           "`images` images of a named dataset (0: all of them), with models/evaluate.h as\n"
           "experiments/ptq does. Returns dict(dataset, engine, images, top1, top5,\n"
           "top1_correct, top5_correct, indices, predictions, per_class_correct,\n"
           "per_class_total, seconds).")
      .def("run_int8", &PyModel::RunInt8, py::arg("images"),
           "run_int8(images) -> float32 logits: the converted model lowered onto the int8\n"
           "kernels (lowered on first use). Needs quantize() or quantize_on_dataset().")
      .def("run_fake_quant", &PyModel::RunFakeQuant, py::arg("images"),
           "run_fake_quant(images) -> float32 logits: the converted (quantize/dequantize)\n"
           "model on the FP32 engine.")
      .def("dump", &PyModel::Dump, py::arg("which") = "float",
           "dump(which='float' | 'converted') -> the graph as text.")
      .def("lowering_report", &PyModel::LoweringReport,
           "Which steps of the converted model run on integer kernels and which in float.")
      .def_property_readonly("name", &PyModel::name)
      .def_property_readonly("image_size", &PyModel::image_size)
      .def_property_readonly("num_classes", &PyModel::num_classes)
      .def_property_readonly("quantized", &PyModel::quantized,
                             "True after quantize() or quantize_on_dataset().");
  m.def("model_names", &ModelNames, "Names Model() accepts.");
  m.def(
      "data_root",
      [](const std::string& flag_value) { return ValueOrThrow(data::ResolveDataRoot(flag_value)); },
      py::arg("data_root") = "",
      "data_root(data_root='') -> the data folder datasets are read from: data_root if\n"
      "non-empty, else <workspace>/../shared/data. OSError when it is not a folder.");

  m.def("qgemm", &QGemm, py::arg("a"), py::arg("a_zero_point"), py::arg("b"),
        py::arg("bias") = py::none(), py::arg("b_layout") = "kn", py::arg("out_dtype") = "int32",
        py::arg("multiplier") = py::none(), py::arg("out_zero_point") = 0,
        py::arg("out_min") = py::none(), py::arg("out_max") = py::none(), py::arg("relu") = false,
        py::arg("requantization") = "float",
        "kernels/qgemm with its output stage. Use qlab.qgemm, which documents it.");
  m.def("qconv2d", &QConv2d, py::arg("x"), py::arg("x_zero_point"), py::arg("w"),
        py::arg("bias") = py::none(), py::arg("stride") = 1, py::arg("padding") = 0,
        py::arg("dilation") = 1, py::arg("groups") = 1, py::arg("out_dtype") = "int32",
        py::arg("multiplier") = py::none(), py::arg("out_zero_point") = 0,
        py::arg("out_min") = py::none(), py::arg("out_max") = py::none(), py::arg("relu") = false,
        py::arg("requantization") = "float", py::arg("threads") = 1,
        "kernels/qconv with its output stage. Use qlab.qconv2d, which documents it.");
  m.def(
      "_as_tensor_view",
      [](const py::handle& x) {
        const Tensor t = TensorFromArray(
            x, "x", {DType::kFloat32, DType::kInt8, DType::kUInt8, DType::kInt32}, 0);
        py::array view = ArrayFromTensor(t);
        if (!py::reinterpret_borrow<py::array>(x).writeable()) {
          view.attr("flags").attr("writeable") = false;
        }
        return py::make_tuple(view, reinterpret_cast<uintptr_t>(t.raw_data()));
      },
      py::arg("x"),
      "Debug helper: (the numpy view of the qlab Tensor every entry point makes of x, the\n"
      "Tensor's data address). Shows whether x is used in place (no copy) and kept alive.");
  m.def(
      "ptq_json",
      [](const std::string& config_json) {
        const nlohmann::json parsed =
            nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
        if (parsed.is_discarded()) ThrowValueError("ptq: the config is not valid JSON");
        absl::StatusOr<experiments::PtqConfig> config = experiments::PtqConfigFromJson(parsed);
        ThrowIfError(config.status());
        absl::StatusOr<nlohmann::json> record;
        {
          py::gil_scoped_release release;  // minutes of C++ work: let other Python threads run
          record = experiments::RunPtq(*config);
        }
        ThrowIfError(record.status());
        return record->dump();
      },
      py::arg("config_json"),
      "RunPtq on a JSON config (experiments/ptq.h field names); returns the record as JSON. "
      "Use qlab.ptq(dict).");
}
