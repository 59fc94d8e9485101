// Sgd: stochastic gradient descent with momentum, exactly as torch.optim.SGD in PyTorch 1.13, for
// qlab's native training and quantization-aware training (issue 8).
//
// The training engine owns every parameter and its gradient as a raw float array and registers
// each pair once under its state_dict name; Step() then updates all of them in place. Per element,
// with g the gradient and p the parameter (PyTorch's _single_tensor_sgd, in float32):
//     d = g + weight_decay * p                   (only where weight decay applies)
//     first step:  buf = d                        (a copy: no dampening on the first step)
//     later steps: buf = momentum * buf + (1 - dampening) * d
//     d = nesterov ? d + momentum * buf : buf     (no buffer at all when momentum == 0)
//     p = p - lr * d
// Each product is rounded before its sum (the build has -ffp-contract=off), where PyTorch's
// vectorized add-with-alpha may fuse them: results agree to a few float ulps, not bit for bit
// (train/optim/sgd_test.cc states the bound).
//
// Step() splits the parameters into fixed chunks spread over a pthreadpool; the update is
// elementwise, so every element is computed by the same code from the same inputs whatever thread
// runs it: results are bit-identical for any thread count.
//
//   SgdOptions options;
//   options.nesterov = true;
//   QLAB_ASSIGN_OR_RETURN(Sgd sgd, Sgd::Create(options));
//   QLAB_RETURN_IF_ERROR(sgd.AddParameter("conv1.weight", w, dw, w_size,
//                                         /*apply_weight_decay=*/true));
//   QLAB_RETURN_IF_ERROR(sgd.AddParameter("bn1.bias", b, db, b_size,
//   /*apply_weight_decay=*/false)); for (int64_t step = 0; step < total_steps; ++step) {
//     ... forward, backward (fills dw, db) ...
//     sgd.set_lr(static_cast<float>(LearningRate(schedule, step)));
//     sgd.Step(pool);
//   }
#ifndef QLAB_TRAIN_OPTIM_SGD_H_
#define QLAB_TRAIN_OPTIM_SGD_H_

#include <pthreadpool.h>

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qlab::train {

// torch.optim.SGD's hyper-parameters (qlab's defaults: the CIFAR ResNet recipe).
struct SgdOptions {
  float lr = 0.1f;
  float momentum = 0.9f;
  float dampening = 0.f;
  float weight_decay = 5e-4f;
  bool nesterov = false;
};

// InvalidArgument naming the value for: a non-finite option; lr < 0 or weight_decay < 0 (PyTorch
// rejects these too); momentum outside [0, 1) (PyTorch accepts momentum >= 1, but then the buffer
// never decays and training diverges); dampening outside [0, 1] (PyTorch accepts it; it would
// make the gradient's weight 1 - dampening negative or above one); nesterov without momentum or
// with dampening (as PyTorch).
absl::Status ValidateSgdOptions(const SgdOptions& options);

class Sgd {
 public:
  // Validates `options` (ValidateSgdOptions).
  static absl::StatusOr<Sgd> Create(SgdOptions options);
  // For options known to be valid (constants in code); invalid options are a bug in the caller
  // and stop the program (QLAB_CHECK). Use Create for options that come from a user.
  explicit Sgd(SgdOptions options);

  // Registers a parameter: `value` and `grad` are `size` floats owned by the caller, which must
  // outlive this optimizer and not move. `apply_weight_decay` false for batch-norm weights and
  // biases, and biases, when the recipe says so (the caller decides). Errors: InvalidArgument for
  // an empty name, null pointers with size > 0, or `grad` overlapping `value`; AlreadyExists for
  // a name already registered; FailedPrecondition once momentum buffers exist (after a Step or a
  // RestoreMomentumBuffers), because a parameter without a buffer could then not be checkpointed
  // consistently with the others.
  absl::Status AddParameter(std::string name, float* value, const float* grad, size_t size,
                            bool apply_weight_decay);

  // The learning rate the next Step() uses (a schedule sets it before every step). QLAB_CHECKs
  // that it is finite and >= 0: a schedule producing anything else is broken.
  void set_lr(float lr);
  float lr() const { return options_.lr; }
  const SgdOptions& options() const { return options_; }

  // One update of every registered parameter from its current gradient, spread over `pool` (null:
  // the calling thread only). Bit-identical results for any thread count.
  void Step(pthreadpool_t pool);

  // Momentum buffers by parameter name, for checkpoints: one per registered parameter once a
  // Step() has run (or buffers were restored) with momentum != 0; empty before that, and always
  // empty with momentum == 0 (PyTorch then keeps no buffer either).
  std::map<std::string, std::vector<float>> MomentumBuffers() const;

  // Restores buffers saved by MomentumBuffers(). An empty map means "no buffers yet" (the next
  // step starts them from the gradient, as a fresh optimizer would). Otherwise the map must name
  // exactly the registered parameters with their sizes, and momentum must be != 0;
  // InvalidArgument naming the first unknown, missing or wrongly sized parameter, and then the
  // optimizer is left unchanged.
  absl::Status RestoreMomentumBuffers(const std::map<std::string, std::vector<float>>& buffers);

  size_t num_parameters() const { return parameters_.size(); }

 private:
  struct Parameter {
    std::string name;
    float* value;
    const float* grad;
    size_t size;
    bool apply_weight_decay;
    std::vector<float> momentum_buffer;  // empty until the first step (or a restore)
  };

  std::vector<Parameter> parameters_;  // in registration order
  std::map<std::string, size_t> index_by_name_;
  SgdOptions options_;
  // True once buffers exist: every parameter then has one (AddParameter is refused from then on).
  bool has_momentum_buffers_ = false;
};

}  // namespace qlab::train

#endif  // QLAB_TRAIN_OPTIM_SGD_H_
