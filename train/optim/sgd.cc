// Sgd (train/optim/sgd.h): validation, registration, checkpoint state, and the elementwise update
// spread over a pthreadpool in fixed chunks.
#include "train/optim/sgd.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/status_macros.h"
#include "kernels/threadpool/pool_flags.h"
#include "train/ops/vector_clones.h"

namespace qlab::train {
namespace {

// Elements per work item: 64 KiB of each array, large enough that scheduling costs nothing and
// small enough that a ResNet's large layers spread over both cores.
constexpr size_t kChunkElements = 16384;

absl::Status CheckFinite(const char* field, float value) {
  if (!std::isfinite(value)) {
    return absl::InvalidArgumentError(absl::StrCat("SGD ", field, " must be finite, got ", value));
  }
  return absl::OkStatus();
}

// The per-step constants, in float as PyTorch's CPU kernels use them (a Python float alpha is
// converted to the tensor's float type).
struct UpdateConstants {
  float lr;
  float momentum;
  float gradient_weight;  // 1 - dampening, rounded once to float as PyTorch does
  float weight_decay;
  bool nesterov;
  bool first_step;  // buffers are initialized to the (decayed) gradient instead of updated
};

// The update of elements [begin, end) of one parameter: the formula in sgd.h, one rounding per
// operation (no fused multiply-add), vectorized by the compiler (vector_clones.h).
QLAB_VECTOR_CLONES void UpdateRange(const UpdateConstants& c, bool apply_weight_decay,
                                    const float* __restrict grad, float* __restrict value,
                                    float* __restrict buffer, size_t begin, size_t end) {
  const float weight_decay = apply_weight_decay ? c.weight_decay : 0.0f;
  for (size_t i = begin; i < end; ++i) {
    float d = grad[i];
    if (weight_decay != 0.0f) d = d + weight_decay * value[i];
    if (buffer != nullptr) {
      const float b = c.first_step ? d : c.momentum * buffer[i] + c.gradient_weight * d;
      buffer[i] = b;
      d = c.nesterov ? d + c.momentum * b : b;
    }
    value[i] = value[i] - c.lr * d;
  }
}

}  // namespace

absl::Status ValidateSgdOptions(const SgdOptions& options) {
  QLAB_RETURN_IF_ERROR(CheckFinite("lr", options.lr));
  QLAB_RETURN_IF_ERROR(CheckFinite("momentum", options.momentum));
  QLAB_RETURN_IF_ERROR(CheckFinite("dampening", options.dampening));
  QLAB_RETURN_IF_ERROR(CheckFinite("weight_decay", options.weight_decay));
  if (options.lr < 0.0f) {
    return absl::InvalidArgumentError(absl::StrCat("SGD lr must be >= 0, got ", options.lr));
  }
  if (options.momentum < 0.0f || options.momentum >= 1.0f) {
    return absl::InvalidArgumentError(
        absl::StrCat("SGD momentum must be in [0, 1), got ", options.momentum));
  }
  if (options.dampening < 0.0f || options.dampening > 1.0f) {
    return absl::InvalidArgumentError(
        absl::StrCat("SGD dampening must be in [0, 1], got ", options.dampening));
  }
  if (options.weight_decay < 0.0f) {
    return absl::InvalidArgumentError(
        absl::StrCat("SGD weight_decay must be >= 0, got ", options.weight_decay));
  }
  if (options.nesterov && (options.momentum == 0.0f || options.dampening != 0.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SGD nesterov requires momentum > 0 and dampening 0, got momentum ",
                     options.momentum, ", dampening ", options.dampening));
  }
  return absl::OkStatus();
}

absl::StatusOr<Sgd> Sgd::Create(SgdOptions options) {
  QLAB_RETURN_IF_ERROR(ValidateSgdOptions(options));
  return Sgd(options);
}

Sgd::Sgd(SgdOptions options) : options_(options) {
  QLAB_CHECK_MSG(ValidateSgdOptions(options).ok(),
                 "Sgd constructed with invalid options: use Sgd::Create to validate them");
}

absl::Status Sgd::AddParameter(std::string name, float* value, const float* grad, size_t size,
                               bool apply_weight_decay) {
  if (name.empty()) return absl::InvalidArgumentError("SGD parameter with an empty name");
  if (size > 0 && (value == nullptr || grad == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SGD parameter \"", name, "\": null value or gradient for ", size, " elements"));
  }
  if (size > 0 && grad < value + size && value < grad + size) {
    return absl::InvalidArgumentError(
        absl::StrCat("SGD parameter \"", name, "\": gradient and value arrays overlap"));
  }
  if (index_by_name_.count(name) > 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("SGD parameter \"", name, "\" is already registered"));
  }
  if (has_momentum_buffers_) {
    return absl::FailedPreconditionError(
        absl::StrCat("SGD parameter \"", name,
                     "\" registered after momentum buffers exist: register every parameter "
                     "before the first step or restore"));
  }
  index_by_name_.emplace(name, parameters_.size());
  parameters_.push_back(Parameter{std::move(name), value, grad, size, apply_weight_decay, {}});
  return absl::OkStatus();
}

void Sgd::set_lr(float lr) {
  QLAB_CHECK_MSG(std::isfinite(lr) && lr >= 0.0f, "Sgd::set_lr: lr must be finite and >= 0");
  options_.lr = lr;
}

void Sgd::Step(pthreadpool_t pool) {
  const bool use_momentum = options_.momentum != 0.0f;
  UpdateConstants constants;
  constants.lr = options_.lr;
  constants.momentum = options_.momentum;
  constants.gradient_weight = static_cast<float>(1.0 - static_cast<double>(options_.dampening));
  constants.weight_decay = options_.weight_decay;
  constants.nesterov = options_.nesterov;
  constants.first_step = use_momentum && !has_momentum_buffers_;
  if (constants.first_step) {
    // Allocated here, on the calling thread; the chunks below fill them.
    for (Parameter& p : parameters_) p.momentum_buffer.resize(p.size);
    has_momentum_buffers_ = true;
  }

  struct Chunk {
    Parameter* parameter;
    size_t begin;
    size_t end;
  };
  std::vector<Chunk> chunks;
  for (Parameter& p : parameters_) {
    for (size_t begin = 0; begin < p.size; begin += kChunkElements) {
      chunks.push_back({&p, begin, std::min(p.size, begin + kChunkElements)});
    }
  }
  struct Task {
    const std::vector<Chunk>* chunks;
    const UpdateConstants* constants;
    bool use_momentum;
  } task{&chunks, &constants, use_momentum};
  auto run_chunk = [](void* context, size_t index) {
    const Task& t = *static_cast<const Task*>(context);
    const Chunk& chunk = (*t.chunks)[index];
    Parameter& p = *chunk.parameter;
    UpdateRange(*t.constants, p.apply_weight_decay, p.grad, p.value,
                t.use_momentum ? p.momentum_buffer.data() : nullptr, chunk.begin, chunk.end);
  };
  // pthreadpool runs everything on the caller when `pool` is null.
  pthreadpool_parallelize_1d(pool, run_chunk, &task, chunks.size(), kernels::PoolFlags(pool));
}

std::map<std::string, std::vector<float>> Sgd::MomentumBuffers() const {
  std::map<std::string, std::vector<float>> buffers;
  if (!has_momentum_buffers_) return buffers;
  for (const Parameter& p : parameters_) buffers.emplace(p.name, p.momentum_buffer);
  return buffers;
}

absl::Status Sgd::RestoreMomentumBuffers(const std::map<std::string, std::vector<float>>& buffers) {
  if (buffers.empty()) {
    for (Parameter& p : parameters_) p.momentum_buffer.clear();
    has_momentum_buffers_ = false;
    return absl::OkStatus();
  }
  if (options_.momentum == 0.0f) {
    return absl::InvalidArgumentError(absl::StrCat("momentum buffers given (", buffers.size(),
                                                   ", e.g. \"", buffers.begin()->first,
                                                   "\") but this SGD has momentum 0"));
  }
  for (const auto& [name, buffer] : buffers) {
    const auto it = index_by_name_.find(name);
    if (it == index_by_name_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("momentum buffer for unknown parameter \"", name, "\""));
    }
    const size_t expected = parameters_[it->second].size;
    if (buffer.size() != expected) {
      return absl::InvalidArgumentError(absl::StrCat("momentum buffer for parameter \"", name,
                                                     "\" has ", buffer.size(),
                                                     " elements, the parameter ", expected));
    }
  }
  for (const Parameter& p : parameters_) {
    if (buffers.count(p.name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("no momentum buffer for parameter \"", p.name, "\""));
    }
  }
  for (Parameter& p : parameters_) p.momentum_buffer = buffers.at(p.name);
  has_momentum_buffers_ = true;
  return absl::OkStatus();
}

}  // namespace qlab::train
