// Small graphs and seeded tensors shared by the quantization-flow tests.
//
// Builders QLAB_CHECK their own Status results: a failure here is a bug in the test helper (or
// in the graph library, whose own tests then fail too), not a condition a test asserts on.
#ifndef QLAB_QUANT_TESTING_TEST_GRAPHS_H_
#define QLAB_QUANT_TESTING_TEST_GRAPHS_H_

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/tensor.h"
#include "quant/graph/graph.h"

namespace qlab::testing {

// Uniform in [low, high), seeded.
inline Tensor UniformTensor(Shape shape, float low, float high, uint32_t seed) {
  absl::StatusOr<Tensor> t = Tensor::Create(DType::kFloat32, std::move(shape));
  QLAB_CHECK(t.ok());
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(low, high);
  float* p = t->data<float>();
  for (int64_t i = 0; i < t->numel(); ++i) p[i] = dist(rng);
  return *t;
}

template <typename T>
T Ok(absl::StatusOr<T> value) {
  QLAB_CHECK_MSG(value.ok(), "test graph builder failed");
  return *std::move(value);
}

inline NodeId Param(Graph& g, const std::string& name, Shape shape, float scale, uint32_t seed) {
  return Ok(g.AddParameter(name, UniformTensor(std::move(shape), -scale, scale, seed)));
}

// conv2d `name` with weight [out, in, k, k] (+ bias [out]) reading `x`.
inline NodeId Conv(Graph& g, const std::string& name, NodeId x, int64_t in, int64_t out,
                   int64_t k, int64_t stride, int64_t padding, uint32_t seed, bool bias = true) {
  const float fan_in_scale = 1.0f / std::sqrt(static_cast<float>(in * k * k));
  std::vector<NodeId> inputs = {x, Param(g, name + ".weight", {out, in, k, k}, fan_in_scale, seed)};
  if (bias) inputs.push_back(Param(g, name + ".bias", {out}, 0.1f, seed + 1));
  Conv2dAttrs attrs;
  attrs.stride = {stride, stride};
  attrs.padding = {padding, padding};
  return Ok(g.AddNode(OpKind::kConv2d, name, inputs, attrs));
}

// batch_norm `name` over `channels` with random (valid) statistics.
inline NodeId BatchNorm(Graph& g, const std::string& name, NodeId x, int64_t channels,
                        uint32_t seed) {
  const NodeId gamma = Ok(g.AddParameter(name + ".weight", UniformTensor({channels}, 0.5f, 1.5f, seed)));
  const NodeId beta = Param(g, name + ".bias", {channels}, 0.2f, seed + 1);
  const NodeId mean = Param(g, name + ".running_mean", {channels}, 0.2f, seed + 2);
  const NodeId var =
      Ok(g.AddParameter(name + ".running_var", UniformTensor({channels}, 0.5f, 2.0f, seed + 3)));
  return Ok(g.AddNode(OpKind::kBatchNorm, name, {x, gamma, beta, mean, var}, BatchNormAttrs{}));
}

inline NodeId Unary(Graph& g, OpKind op, const std::string& name, NodeId x) {
  return Ok(g.AddNode(op, name, {x}));
}

// A residual CNN with every op family the quantizers annotate:
//   x[N,3,12,12] -> conv1 -> bn1 -> relu1 -> maxpool(2) -> conv2 -> bn2 -> add(+maxpool out)
//   -> relu2 -> global avg pool -> flatten -> fc(10)
inline Graph SmallResidualNet(int64_t batch = 2) {
  Graph g;
  const NodeId x = Ok(g.AddInput("x", {batch, 3, 12, 12}));
  NodeId h = Conv(g, "conv1", x, 3, 8, 3, 1, 1, 11);
  h = BatchNorm(g, "bn1", h, 8, 21);
  h = Unary(g, OpKind::kRelu, "relu1", h);
  Pool2dAttrs pool;
  const NodeId pooled = Ok(g.AddNode(OpKind::kMaxPool2d, "maxpool", {h}, pool));
  h = Conv(g, "conv2", pooled, 8, 8, 3, 1, 1, 31);
  h = BatchNorm(g, "bn2", h, 8, 41);
  h = Ok(g.AddNode(OpKind::kAdd, "add", {h, pooled}));
  h = Unary(g, OpKind::kRelu, "relu2", h);
  h = Ok(g.AddNode(OpKind::kAdaptiveAvgPool2d, "avgpool", {h}, AdaptiveAvgPool2dAttrs{}));
  h = Ok(g.AddNode(OpKind::kFlatten, "flatten", {h}, FlattenAttrs{}));
  const NodeId fc_w = Param(g, "fc.weight", {10, 8}, 0.35f, 51);
  const NodeId fc_b = Param(g, "fc.bias", {10}, 0.1f, 52);
  h = Ok(g.AddNode(OpKind::kLinear, "fc", {h, fc_w, fc_b}));
  QLAB_CHECK(g.SetOutputs({h}).ok());
  return g;
}

}  // namespace qlab::testing

#endif  // QLAB_QUANT_TESTING_TEST_GRAPHS_H_
