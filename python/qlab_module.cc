// _qlab: the pybind11 extension module behind the `qlab` Python package (python/qlab).
//
// This file is the boundary between numpy and qlab's C++: it validates every numpy argument once
// (dtype, C-contiguity, rank) and turns it into a qlab Tensor, calls the C++ API, and turns the
// result back into numpy arrays and Python dicts. absl::Status errors become Python exceptions by
// code (InvalidArgument -> ValueError, NotFound/DataLoss -> OSError, others -> RuntimeError) with
// the message, so nothing below ever sees a bad argument and nothing crashes the interpreter.
//
// Copies: qlab's Tensor owns 64-byte-aligned reference-counted storage and has no way to wrap
// foreign memory, so inputs are copied once into a Tensor (one memcpy). Outputs are not copied:
// the returned numpy array points into the result Tensor's storage and keeps it alive through a
// capsule.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "calibration/observer.h"
#include "calibration/registry.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "engine/fp32_engine.h"
#include "engine/int8_engine.h"
#include "experiments/ptq.h"
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
Tensor TensorFromArray(const py::handle& object, const char* what,
                       std::initializer_list<DType> allowed, int min_rank = 1,
                       int max_rank = kMaxRank, Layout layout = Layout::kRowMajor) {
  if (!py::isinstance<py::array>(object)) {
    ThrowTypeError(absl::StrCat(what, " must be a numpy.ndarray, got ",
                                std::string(py::str(py::type::of(object)))));
  }
  const py::array a = py::reinterpret_borrow<py::array>(object);
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
  Shape shape;
  for (int i = 0; i < rank; ++i) shape.push_back(a.shape(i));
  Tensor t = ValueOrThrow(Tensor::Create(*dtype, shape, layout));
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
    const Tensor input = Images(images);
    if (!fp32_)
      fp32_ = std::make_shared<Fp32Engine>(ValueOrThrow(Fp32Engine::Create(graph_, threads_)));
    return Run(fp32_, input);
  }

  void Quantize(const py::handle& calibration_images, const std::string& quantizer_name,
                const std::string& calibrator, int batch_size) {
    if (batch_size < 1) ThrowValueError(absl::StrCat("batch_size must be >= 1, got ", batch_size));
    const Tensor images = Images(calibration_images);
    const Backend backend = ValueOrThrow(ParseBackend(quantizer_name));
    std::unique_ptr<BackendQuantizer> quantizer =
        ValueOrThrow(BackendQuantizer::Create(backend, calibrator));
    PreparedModel prepared = ValueOrThrow(PrepareWith(graph_, *quantizer));
    const int64_t n = images.dim(0);
    {
      py::gil_scoped_release release;
      for (int64_t begin = 0; begin < n; begin += batch_size) {
        absl::StatusOr<Tensor> batch =
            images.Slice(begin, std::min<int64_t>(n, begin + batch_size));
        absl::Status status = batch.status();
        if (status.ok()) status = prepared.Calibrate({*batch});
        if (!status.ok()) {
          py::gil_scoped_acquire acquire;
          ThrowIfError(status);
        }
      }
    }
    converted_ = ValueOrThrow(Convert(prepared));
    int8_.reset();
  }

  py::array RunInt8(const py::handle& images) {
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

  std::string Dump(const std::string& which) const {
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
  bool quantized() const { return converted_.has_value(); }

 private:
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

  // The engines are not re-entrant, so each run holds a reference to its engine and runs with the
  // GIL released: the array was copied into `input` before.
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

  py::class_<PyModel>(m, "Model", "A qlab ResNet: FP32 and int8 engines, the PTQ flow.")
      .def(py::init<const std::string&, const std::string&, int>(), py::arg("name"),
           py::arg("weights_path") = "", py::arg("threads") = 2)
      .def("run_fp32", &PyModel::RunFp32, py::arg("images"))
      .def("quantize", &PyModel::Quantize, py::arg("calibration_images"),
           py::arg("quantizer") = "xnnpack", py::arg("calibrator") = "",
           py::arg("batch_size") = 100)
      .def("run_int8", &PyModel::RunInt8, py::arg("images"))
      .def("dump", &PyModel::Dump, py::arg("which") = "float")
      .def("lowering_report", &PyModel::LoweringReport)
      .def_property_readonly("name", &PyModel::name)
      .def_property_readonly("image_size", &PyModel::image_size)
      .def_property_readonly("num_classes", &PyModel::num_classes)
      .def_property_readonly("quantized", &PyModel::quantized);
  m.def("model_names", &ModelNames, "Names Model() accepts.");
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
