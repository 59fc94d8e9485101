// TrainingEngine: reverse-mode differentiation over a quant/graph Graph, for FP32 training and
// quantization-aware training (QAT) of qlab's models on the fast fp32 kernels.
//
// Create() walks the graph once in topological order and records one step per compute node;
// ForwardBackward() runs the steps forward in training mode (batch-norm batch statistics and
// running-stat updates, observers fed), evaluates the softmax cross-entropy of the logits, and
// runs the steps backward, leaving every trainable parameter's gradient in its buffer for the
// optimizer (train/optim/sgd.h). Activations live in NHWC inside the engine (the kernels' layout);
// parameters keep PyTorch's layout (OIHW, [out, in], [C]), so their names, shapes and gradients
// are the state_dict's.
//
// QAT. CreateQat() takes a model prepared by PrepareQat (quant/prepare.h): its kFakeQuantize
// nodes quantize-dequantize with their slot's current parameters, gradients pass by the
// straight-through estimator (zero outside the clip range, as PyTorch), and, in LSQ mode, each
// slot's scale (and zero point for affine schemes) becomes a trained parameter with LSQ's
// gradient scale 1 / sqrt(numel * quant_max). A convolution whose fake-quantized weight feeds a
// batch norm is trained as PyTorch's QAT ConvBn modules do (torch/ao/nn/intrinsic/qat/modules/
// conv_fused.py, _forward_approximate): the weight is scaled by gamma / sqrt(running_var + eps)
// before fake quantization, the convolution output divided back, and the batch norm applied
// after in training mode, so the quantized weights are the ones convert will fold. Batch-norm
// statistics and observers can be frozen after some steps (FreezeBatchNormStatistics,
// FreezeObservers). WriteBackQat() then puts the trained weights into the prepared model with
// the batch norms folded, ready for Convert and the int8 engine (the same path as PTQ).
//
// QAT's int8 forward (QatOptions::int8_forward, on by default): a convolution whose input comes
// straight from a per-tensor fake quantizer of at most 256 levels and whose weight is
// fake-quantized symmetric to int8 computes conv(fq(x), fq(w)) on kernels/qconv's int8 VNNI
// convolution: the integer codes are recovered from this step's fake-quantized values and
// parameters, the weights re-packed on the pool every step (kernels/qconv/fake_quant_weights.h),
// and the output is the same float tensor (sx * sw[o] * the exact int32 sum, + bias), so the
// backward does not change. The results differ from the fp32 GEMM's only by its rounding of the sum
// (and the flips of a later fake quantizer's rounding that this can cause at ties).
//
// Determinism: for a given graph, batch and seed the results do not depend on the thread count
// (every kernel used reduces in a fixed order).
//
//   QLAB_ASSIGN_OR_RETURN(auto engine, TrainingEngine::Create(model, {.threads = 2}));
//   QLAB_ASSIGN_OR_RETURN(Sgd sgd, Sgd::Create(...));
//   for (TrainableParameter& p : engine->parameters()) sgd.AddParameter(p.name, p.value, ...);
//   QLAB_ASSIGN_OR_RETURN(StepStats s, engine->ForwardBackward(batch.images, batch.labels));
//   sgd.Step(engine->pool());
#ifndef QLAB_TRAIN_TRAINING_ENGINE_H_
#define QLAB_TRAIN_TRAINING_ENGINE_H_

#include <pthreadpool.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tensor.h"
#include "quant/graph/graph.h"
#include "quant/prepare.h"

namespace qlab::train {

struct TrainingEngineOptions {
  int threads = 2;
  // PyTorch's CrossEntropyLoss(label_smoothing=...).
  float label_smoothing = 0.0f;
};

struct QatOptions {
  // Learned step size (Esser et al., 2020): slot scales become trained parameters initialized
  // from the slot's current parameters (calibrate first). Otherwise the scales follow the
  // observers (PyTorch's default QAT: moving-average min/max).
  bool lsq = false;
  // LSQ's own initialization instead of the calibrated observer's parameters: scale =
  // 2 * mean(|x|) / sqrt(Q_P) (per output channel for per-channel weights, from the weights; per
  // tensor for activations, from the Calibrate passes), zero point at the bottom of the range for
  // affine schemes (x = 0 maps to quant_min), 0 for symmetric ones. Q_P = quant_max - zero point.
  bool lsq_mean_abs_init = false;
  // PACT (Choi et al., 2018): every activation fake quantizer whose calibrated range starts at 0
  // (zero point at quant_min: post-ReLU values) quantizes [0, alpha] with its clipping level alpha
  // a trained parameter ("<slot name>.alpha"), initialized to the top of the calibrated range;
  // backward as train/ops/fake_quant_grad.h's PactBackward. Other fake quantizers (weights,
  // signed activations) keep following their observers. Not together with lsq.
  bool pact = false;
  // The forward of every convolution whose input is the output of a per-tensor fake quantizer of
  // at most 256 levels (signed ranges shifted to unsigned codes, the zero point with them) and
  // whose weight is fake-quantized symmetric to [-128, 127] (per channel or per tensor) runs on
  // the int8 VNNI convolution (kernels/qconv) instead of the fp32 GEMM: conv(fq(x), fq(w)) = sx *
  // sw[o] * sum (qx - zx) * qw exactly, an int32 sum and one float multiply, so the two paths
  // differ only by the fp32 GEMM's rounding of its sum (which can flip a downstream fake
  // quantizer's rounding at a tie). The integer codes are recovered from this step's fake-quantized
  // values and parameters; the backward is the fp32 one either way. Other convolutions (dilated,
  // grouped, the input not fake-quantized or not in those ranges, fake quantization switched off)
  // keep the fp32 path.
  bool int8_forward = true;
  // Tests and debugging: every int8 convolution also runs the fp32 one on the same input and
  // weights, and TrainingEngine::int8_forward_check_last_forward() reports the largest
  // difference (slow: both paths run).
  bool check_int8_forward = false;
};

// A trained tensor: a model parameter (state_dict name and PyTorch shape), an LSQ scale
// ("<slot name>.scale", "<slot name>.zero_point") or a PACT clipping level ("<slot name>.alpha").
// value/grad point into the engine and stay valid for its lifetime.
struct TrainableParameter {
  std::string name;
  Shape shape;
  float* value = nullptr;
  const float* grad = nullptr;
  size_t size = 0;
  // Conv/linear weights: the tensors weight decay usually applies to (not biases, batch-norm
  // affine parameters or quantization scales).
  bool is_weight = false;
};

struct StepStats {
  double loss = 0.0;    // mean cross-entropy over the batch
  int64_t correct = 0;  // top-1 hits in the batch
  int64_t count = 0;    // batch size
};

class TrainingEngine {
 public:
  // FP32 training of a float graph (as models/resnet.h builds it: one NCHW image input, one
  // [N, classes] logits output, eval-mode batch-norm nodes that the engine runs in training mode).
  // InvalidArgument naming the node for an op or attribute the engine cannot differentiate.
  static absl::StatusOr<std::unique_ptr<TrainingEngine>> Create(
      const Graph& graph, const TrainingEngineOptions& options);
  // QAT of `prepared` (PrepareQat's output, not owned, must outlive the engine): fake-quantize
  // nodes read and feed its slots.
  static absl::StatusOr<std::unique_ptr<TrainingEngine>> CreateQat(
      PreparedModel* prepared, const TrainingEngineOptions& options, const QatOptions& qat);

  ~TrainingEngine();
  TrainingEngine(const TrainingEngine&) = delete;
  TrainingEngine& operator=(const TrainingEngine&) = delete;

  // One training step's forward and backward on `images` (float32 NCHW [N, C, H, W], the
  // graph's input shape but any N >= 1) with `labels` (N class indices): gradients of the mean
  // loss are left in the parameters' grad buffers (overwritten, not accumulated). Updates
  // batch-norm running statistics (unless frozen) and feeds observers (unless frozen).
  // InvalidArgument for a wrong shape, a label out of range or a non-finite loss.
  absl::StatusOr<StepStats> ForwardBackward(const Tensor& images, absl::Span<const int> labels);

  // The same step with knowledge distillation: the loss is train/ops' DistillationCrossEntropy
  // against `teacher_logits` (float32 [N, classes], e.g. the FP32 model's on the same images)
  // with weight `teacher_weight` in [0, 1]. InvalidArgument for a teacher of the wrong shape or a
  // weight outside [0, 1], as well as the cases above.
  absl::StatusOr<StepStats> ForwardBackwardDistilled(const Tensor& images,
                                                     absl::Span<const int> labels,
                                                     const Tensor& teacher_logits,
                                                     float teacher_weight);

  // Evaluation-mode forward (running statistics, observers not fed): logits [N, classes].
  absl::StatusOr<Tensor> Predict(const Tensor& images);

  // QAT calibration: an evaluation-mode forward (running statistics) that feeds the observers,
  // to give them ranges before training (and LSQ its initial scales).
  absl::Status Calibrate(const Tensor& images);
  // LSQ: turns every fake-quantized slot's current parameters (from its calibrated observer) into
  // trained scale (and, for affine schemes, zero-point) parameters, appended to parameters();
  // PACT: the clipping levels of the activation slots it applies to, likewise.
  // Call after Calibrate and before handing parameters() to the optimizer. FailedPrecondition
  // naming the slot when an observer has seen nothing; a no-op outside LSQ and PACT or when done.
  absl::Status InitializeLearnedScales();

  std::vector<TrainableParameter>& parameters() { return trainable_; }
  pthreadpool_t pool() const;

  // Batch norms use their running statistics from now on and stop updating them (PyTorch's
  // freeze_bn_stats / model.apply(torch.nn.intrinsic.qat.freeze_bn_stats)).
  void FreezeBatchNormStatistics();
  // Observers stop being fed (torch.ao.quantization.disable_observer).
  void FreezeObservers();
  bool batch_norm_frozen() const;

  // How many convolutions the last forward ran on the int8 kernels (QatOptions::int8_forward).
  int int8_convolutions_last_forward() const;
  // QatOptions::check_int8_forward: over the int8 convolutions of the last forward, the largest
  // max |int8 output - fp32 output| / max |fp32 output| (0 when none ran).
  double int8_forward_check_last_forward() const;

  // Every parameter and batch-norm running statistic by state_dict name (copies), and LSQ
  // scales by their names: a checkpoint's model part.
  std::map<std::string, Tensor> StateDict() const;
  // Restores what StateDict() returned (resume). InvalidArgument naming a missing tensor or a
  // shape mismatch; tensors the engine does not know are an error too.
  absl::Status LoadStateDict(const std::map<std::string, Tensor>& state);

  // FP32: the input graph with every parameter replaced by its trained value (running
  // statistics included), ready for evaluation, PTQ or export.
  absl::StatusOr<Graph> TrainedGraph() const;

  // QAT: writes the trained parameters into the prepared model's graph, folds each QAT
  // conv -> batch_norm pair into the convolution (weight * gamma / sqrt(running_var + eps), bias
  // as FoldBatchNorm), feeds the folded weights to the weight observers when the slots follow
  // observers (unless frozen; what they saw in training is kept, as PyTorch's convert does), and
  // in LSQ and PACT modes pins every learned slot to its learned parameters. Afterwards
  // Convert(prepared) gives the Q/DQ reference model of the trained network. The engine must not
  // be used after this.
  absl::Status WriteBackQat();

 private:
  struct Impl;
  TrainingEngine();
  absl::StatusOr<StepStats> ForwardBackwardImpl(const Tensor& images, absl::Span<const int> labels,
                                                const Tensor* teacher_logits, float teacher_weight);
  std::unique_ptr<Impl> impl_;
  std::vector<TrainableParameter> trainable_;
};

}  // namespace qlab::train

#endif  // QLAB_TRAIN_TRAINING_ENGINE_H_
