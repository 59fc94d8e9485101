// Fp32Engine: runs a float quant/graph Graph fast on kernels/fp32 (NHWC internally, batch N,
// several threads): the FP32 baselines and evaluations of qlab's models.
//
// This is the operator layer of XNNPACK's three (graph -> operators -> microkernels): Create()
// validates the graph once, folds batch norms into the convolutions before them
// (quant/graph/fold_batch_norm.h), fuses ReLUs and residual adds into the conv epilogue, packs
// every weight once, and records a flat list of steps in topological order. Run() only executes:
// it converts the NCHW input to NHWC once, runs the steps on buffers reused by liveness (planned
// once per batch size), and converts the outputs back to PyTorch's layout. Its results agree with
// quant/graph's reference interpreter (RunGraph) up to float32 summation order (engine tests state
// the tolerance).
//
//   QLAB_ASSIGN_OR_RETURN(Graph model, BuildResNet(*ModelByName("resnet18")));
//   QLAB_ASSIGN_OR_RETURN(Fp32Engine engine, Fp32Engine::Create(model, /*threads=*/2));
//   QLAB_ASSIGN_OR_RETURN(Tensor logits, engine.Run(images));   // [N,3,224,224] -> [N,1000]
//
// Ops: conv2d (groups 1), linear, batch_norm (folded, or a per-channel affine when it does not
// follow a conv/linear), relu, add, max_pool2d, avg_pool2d, adaptive_avg_pool2d to 1x1, flatten
// (start_dim 1), cat and channel_pad on channels, strided_slice on the spatial and channel axes
// (the option-A shortcut), sigmoid, identity; and convert's Q/DQ reference model: dequantized
// integer parameters are folded into float ones and each static per-tensor quantize ->
// dequantize pair runs as one fake-quantize step, so fake-quant accuracy is evaluated at engine
// speed. Anything else (dynamic or per-channel activation quantization, grouped convs,
// batch-axis slicing) is InvalidArgument naming the node. One graph input (rank 4 NCHW, or rank
// 2 [N, features]).
//
// Not thread-safe: Run() reuses the engine's buffers; use one engine per calling thread.
#ifndef QLAB_ENGINE_FP32_ENGINE_H_
#define QLAB_ENGINE_FP32_ENGINE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "quant/graph/graph.h"

namespace qlab {

// How convolutions and linears sum their K products. kFloat: kernels/fp32's fast float kernels
// (FP32 baselines, latency). kDouble: kernels/fp32/fp32_gemm_double.h, each sum formed in double
// and rounded to float once, so that the result does not depend on a summation order: the
// fake-quant reference the int8 engine is compared with (issue 7) uses it, so that a one-step
// difference between the two is the int8 engine's rounding, not the reference's float order.
enum class Fp32Accumulation : uint8_t { kFloat, kDouble };

class Fp32Engine {
 public:
  // Compiles `graph` (not modified; the engine keeps what it needs) for `threads` >= 1 threads
  // (1: everything on the calling thread). InvalidArgument naming the node for an unsupported op
  // or attribute, or for a graph without exactly one float input.
  // `accumulation` selects how convolutions and linears sum their products.
  static absl::StatusOr<Fp32Engine> Create(
      const Graph& graph, int threads, Fp32Accumulation accumulation = Fp32Accumulation::kFloat);

  Fp32Engine(Fp32Engine&&) noexcept;
  Fp32Engine& operator=(Fp32Engine&&) noexcept;
  ~Fp32Engine();

  // Runs the graph on `input` (the graph input's shape except for the batch, any batch >= 1;
  // float32, NCHW for rank 4) and returns the first graph output in PyTorch's layout (NCHW for
  // rank 4). InvalidArgument for a wrong dtype or shape.
  absl::StatusOr<Tensor> Run(const Tensor& input);
  // All graph outputs, in order.
  absl::StatusOr<std::vector<Tensor>> RunAll(const Tensor& input);

  // Number of execution steps after fusion (for tests and logs).
  int num_steps() const;

 private:
  struct Impl;
  explicit Fp32Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qlab

#endif  // QLAB_ENGINE_FP32_ENGINE_H_
