// ResNet graph construction. A small Builder adds conv/bn/relu/... nodes together with their
// parameter nodes, naming both after the PyTorch module path, so that the three families below
// read like their PyTorch forward() methods.
#include "models/resnet.h"

#include <cmath>
#include <limits>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace qlab {
namespace {

std::vector<ResNetSpec> Registry() {
  using F = ResNetFamily;
  using B = ResNetBlock;
  return {
      {"resnet18", F::kTorchvision, B::kBasic, {2, 2, 2, 2}, 1000, 224},
      {"resnet50", F::kTorchvision, B::kBottleneck, {3, 4, 6, 3}, 1000, 224},
      {"resnet18_cifar", F::kTorchvisionCifar, B::kBasic, {2, 2, 2, 2}, 10, 32},
      {"resnet50_cifar", F::kTorchvisionCifar, B::kBottleneck, {3, 4, 6, 3}, 10, 32},
      {"resnet20", F::kCifarOptionA, B::kBasic, {3, 3, 3}, 10, 32},
      {"resnet32", F::kCifarOptionA, B::kBasic, {5, 5, 5}, 10, 32},
      {"resnet44", F::kCifarOptionA, B::kBasic, {7, 7, 7}, 10, 32},
      {"resnet56", F::kCifarOptionA, B::kBasic, {9, 9, 9}, 10, 32},
  };
}

class Builder {
 public:
  explicit Builder(const ResNetOptions& options) : options_(options), rng_(options.seed) {}

  Graph& graph() { return graph_; }

  absl::StatusOr<NodeId> Conv(const std::string& name, NodeId x, int64_t out_channels,
                              int64_t kernel, int64_t stride, int64_t padding) {
    const int64_t in_channels = graph_.node(x).shape[1];
    const int64_t fan_in = in_channels * kernel * kernel;
    // He (kaiming) uniform: variance 2 / fan_in keeps activations at scale through ReLUs.
    QLAB_ASSIGN_OR_RETURN(
        NodeId w, Param(name + ".weight", {out_channels, in_channels, kernel, kernel},
                        std::sqrt(6.0f / static_cast<float>(fan_in))));
    Conv2dAttrs attrs;
    attrs.stride = {stride, stride};
    attrs.padding = {padding, padding};
    return graph_.AddNode(OpKind::kConv2d, name, {x, w}, attrs);  // bias=False, as in PyTorch
  }

  absl::StatusOr<NodeId> BatchNorm(const std::string& name, NodeId x) {
    const int64_t c = graph_.node(x).shape[1];
    QLAB_ASSIGN_OR_RETURN(NodeId weight, Constant(name + ".weight", c, 1.0f));
    QLAB_ASSIGN_OR_RETURN(NodeId bias, Constant(name + ".bias", c, 0.0f));
    QLAB_ASSIGN_OR_RETURN(NodeId mean, Constant(name + ".running_mean", c, 0.0f));
    QLAB_ASSIGN_OR_RETURN(NodeId var, Constant(name + ".running_var", c, 1.0f));
    return graph_.AddNode(OpKind::kBatchNorm, name, {x, weight, bias, mean, var},
                          BatchNormAttrs{});  // eps 1e-5, nn.BatchNorm2d's default
  }

  absl::StatusOr<NodeId> Linear(const std::string& name, NodeId x, int64_t out_features) {
    const int64_t in_features = graph_.node(x).shape[1];
    const float bound = 1.0f / std::sqrt(static_cast<float>(in_features));
    QLAB_ASSIGN_OR_RETURN(NodeId w, Param(name + ".weight", {out_features, in_features}, bound));
    QLAB_ASSIGN_OR_RETURN(NodeId b, Param(name + ".bias", {out_features}, bound));
    return graph_.AddNode(OpKind::kLinear, name, {x, w, b});
  }

  absl::StatusOr<NodeId> Op(OpKind op, const std::string& name, std::vector<NodeId> inputs,
                            NodeAttrs attrs = {}) {
    return graph_.AddNode(op, name, std::move(inputs), std::move(attrs));
  }

 private:
  // A weight of `shape`: zeros, or uniform in ±bound from the seeded generator.
  absl::StatusOr<NodeId> Param(const std::string& name, Shape shape, float bound) {
    QLAB_ASSIGN_OR_RETURN(Tensor t, Tensor::Create(DType::kFloat32, std::move(shape)));
    if (options_.init == ParameterInit::kDeterministic) {
      std::uniform_real_distribution<float> dist(-bound, bound);
      float* p = t.data<float>();
      for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng_);
    }
    return graph_.AddParameter(name, std::move(t));
  }

  absl::StatusOr<NodeId> Constant(const std::string& name, int64_t size, float value) {
    QLAB_ASSIGN_OR_RETURN(Tensor t, Tensor::Create(DType::kFloat32, {size}));
    std::fill(t.data<float>(), t.data<float>() + size, value);
    return graph_.AddParameter(name, std::move(t));
  }

  ResNetOptions options_;
  std::mt19937 rng_;
  Graph graph_;
};

// conv → bn, the unit every block is made of.
absl::StatusOr<NodeId> ConvBn(Builder& b, const std::string& prefix, const std::string& conv,
                              const std::string& bn, NodeId x, int64_t channels, int64_t kernel,
                              int64_t stride, int64_t padding) {
  QLAB_ASSIGN_OR_RETURN(NodeId c, b.Conv(prefix + conv, x, channels, kernel, stride, padding));
  return b.BatchNorm(prefix + bn, c);
}

// torchvision BasicBlock / Bottleneck: the residual branch, the shortcut (downsample when the
// stride or width changes), add, relu.
absl::StatusOr<NodeId> TorchvisionBlock(Builder& b, const std::string& p, NodeId x,
                                        ResNetBlock kind, int64_t planes, int64_t stride) {
  const int64_t in_channels = b.graph().node(x).shape[1];
  const int64_t expansion = kind == ResNetBlock::kBottleneck ? 4 : 1;
  const int64_t out_channels = planes * expansion;
  NodeId out;
  if (kind == ResNetBlock::kBasic) {
    QLAB_ASSIGN_OR_RETURN(out, ConvBn(b, p, "conv1", "bn1", x, planes, 3, stride, 1));
    QLAB_ASSIGN_OR_RETURN(out, b.Op(OpKind::kRelu, p + "relu", {out}));
    QLAB_ASSIGN_OR_RETURN(out, ConvBn(b, p, "conv2", "bn2", out, planes, 3, 1, 1));
  } else {
    QLAB_ASSIGN_OR_RETURN(out, ConvBn(b, p, "conv1", "bn1", x, planes, 1, 1, 0));
    QLAB_ASSIGN_OR_RETURN(out, b.Op(OpKind::kRelu, p + "relu", {out}));
    QLAB_ASSIGN_OR_RETURN(out, ConvBn(b, p, "conv2", "bn2", out, planes, 3, stride, 1));
    QLAB_ASSIGN_OR_RETURN(out, b.Op(OpKind::kRelu, p + "relu_1", {out}));
    QLAB_ASSIGN_OR_RETURN(out, ConvBn(b, p, "conv3", "bn3", out, out_channels, 1, 1, 0));
  }
  NodeId shortcut = x;
  if (stride != 1 || in_channels != out_channels) {
    QLAB_ASSIGN_OR_RETURN(shortcut, ConvBn(b, p, "downsample.0", "downsample.1", x, out_channels,
                                           1, stride, 0));
  }
  QLAB_ASSIGN_OR_RETURN(out, b.Op(OpKind::kAdd, p + "add", {out, shortcut}));
  const std::string last_relu = kind == ResNetBlock::kBasic ? "relu_1" : "relu_2";
  return b.Op(OpKind::kRelu, p + last_relu, {out});
}

// akamaster's BasicBlock with option A: the shortcut subsamples by 2 and zero-pads planes/4
// channels on both sides when the stride or the width changes.
absl::StatusOr<NodeId> OptionABlock(Builder& b, const std::string& p, NodeId x, int64_t planes,
                                    int64_t stride) {
  const int64_t in_channels = b.graph().node(x).shape[1];
  NodeId out;
  QLAB_ASSIGN_OR_RETURN(out, ConvBn(b, p, "conv1", "bn1", x, planes, 3, stride, 1));
  QLAB_ASSIGN_OR_RETURN(out, b.Op(OpKind::kRelu, p + "relu", {out}));
  QLAB_ASSIGN_OR_RETURN(out, ConvBn(b, p, "conv2", "bn2", out, planes, 3, 1, 1));
  NodeId shortcut = x;
  if (stride != 1 || in_channels != planes) {
    // x[:, :, ::2, ::2] — the slice is by 2 regardless of `stride`, exactly as the reference
    // lambda; F.pad(..., (0, 0, 0, 0, planes // 4, planes // 4)).
    constexpr int64_t kAll = std::numeric_limits<int64_t>::max();  // clamped like Python's end
    StridedSliceAttrs slice{{0, 0, 0, 0}, {kAll, kAll, kAll, kAll}, {1, 1, 2, 2}};
    QLAB_ASSIGN_OR_RETURN(shortcut, b.Op(OpKind::kStridedSlice, p + "shortcut.slice", {x}, slice));
    ChannelPadAttrs pad{planes / 4, planes / 4};
    QLAB_ASSIGN_OR_RETURN(shortcut, b.Op(OpKind::kChannelPad, p + "shortcut", {shortcut}, pad));
  }
  QLAB_ASSIGN_OR_RETURN(out, b.Op(OpKind::kAdd, p + "add", {out, shortcut}));
  return b.Op(OpKind::kRelu, p + "relu_1", {out});
}

absl::Status CheckSpec(const ResNetSpec& spec, const ResNetOptions& options) {
  const size_t stages = spec.family == ResNetFamily::kCifarOptionA ? 3 : 4;
  if (spec.blocks_per_stage.size() != stages) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model \"", spec.name, "\" needs ", stages, " stages, got blocks_per_stage [",
        absl::StrJoin(spec.blocks_per_stage, ","), "]"));
  }
  for (int n : spec.blocks_per_stage) {
    if (n < 1) {
      return absl::InvalidArgumentError(absl::StrCat("model \"", spec.name,
                                                     "\": blocks_per_stage [",
                                                     absl::StrJoin(spec.blocks_per_stage, ","),
                                                     "] must be positive"));
    }
  }
  if (spec.family == ResNetFamily::kCifarOptionA && spec.block != ResNetBlock::kBasic) {
    return absl::InvalidArgumentError(
        absl::StrCat("model \"", spec.name, "\": option-A CIFAR ResNets have basic blocks only"));
  }
  if (spec.num_classes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("model \"", spec.name, "\": num_classes ", spec.num_classes));
  }
  if (options.batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat("batch ", options.batch, " must be >= 1"));
  }
  const int64_t size = options.image_size > 0 ? options.image_size : spec.image_size;
  if (size < 1 || size > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("model \"", spec.name, "\": image size ", size, " outside [1, 4096]"));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> ModelNames() {
  std::vector<std::string> names;
  for (const ResNetSpec& spec : Registry()) names.push_back(spec.name);
  return names;
}

absl::StatusOr<ResNetSpec> ModelByName(absl::string_view name) {
  for (ResNetSpec& spec : Registry()) {
    if (spec.name == name) return std::move(spec);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown model \"", name,
                                                 "\" (known: ", absl::StrJoin(ModelNames(), ", "),
                                                 ")"));
}

absl::StatusOr<Graph> BuildResNet(const ResNetSpec& spec, const ResNetOptions& options) {
  QLAB_RETURN_IF_ERROR(CheckSpec(spec, options));
  const int64_t size = options.image_size > 0 ? options.image_size : spec.image_size;
  Builder b(options);
  QLAB_ASSIGN_OR_RETURN(NodeId x, b.graph().AddInput("x", {options.batch, 3, size, size}));
  NodeId out;
  NodeId logits;
  if (spec.family == ResNetFamily::kCifarOptionA) {
    QLAB_ASSIGN_OR_RETURN(out, ConvBn(b, "", "conv1", "bn1", x, 16, 3, 1, 1));
    QLAB_ASSIGN_OR_RETURN(out, b.Op(OpKind::kRelu, "relu", {out}));
    for (int stage = 0; stage < 3; ++stage) {
      const int64_t planes = int64_t{16} << stage;
      for (int i = 0; i < spec.blocks_per_stage[stage]; ++i) {
        const int64_t stride = (stage > 0 && i == 0) ? 2 : 1;
        QLAB_ASSIGN_OR_RETURN(
            out, OptionABlock(b, absl::StrCat("layer", stage + 1, ".", i, "."), out, planes,
                              stride));
      }
    }
    // F.avg_pool2d(out, out.size()[3]): one window over the whole (square) map.
    const int64_t k = b.graph().node(out).shape[3];
    Pool2dAttrs pool;
    pool.kernel = {k, k};
    pool.stride = {k, k};
    QLAB_ASSIGN_OR_RETURN(out, b.Op(OpKind::kAvgPool2d, "avgpool", {out}, pool));
    QLAB_ASSIGN_OR_RETURN(out, b.Op(OpKind::kFlatten, "flatten", {out}));
    QLAB_ASSIGN_OR_RETURN(logits, b.Linear("linear", out, spec.num_classes));
  } else {
    if (spec.family == ResNetFamily::kTorchvision) {
      QLAB_ASSIGN_OR_RETURN(out, ConvBn(b, "", "conv1", "bn1", x, 64, 7, 2, 3));
      QLAB_ASSIGN_OR_RETURN(out, b.Op(OpKind::kRelu, "relu", {out}));
      Pool2dAttrs pool;
      pool.kernel = {3, 3};
      pool.stride = {2, 2};
      pool.padding = {1, 1};
      QLAB_ASSIGN_OR_RETURN(out, b.Op(OpKind::kMaxPool2d, "maxpool", {out}, pool));
    } else {
      QLAB_ASSIGN_OR_RETURN(out, ConvBn(b, "", "conv1", "bn1", x, 64, 3, 1, 1));
      QLAB_ASSIGN_OR_RETURN(out, b.Op(OpKind::kRelu, "relu", {out}));
    }
    for (int stage = 0; stage < 4; ++stage) {
      const int64_t planes = int64_t{64} << stage;
      for (int i = 0; i < spec.blocks_per_stage[stage]; ++i) {
        const int64_t stride = (stage > 0 && i == 0) ? 2 : 1;
        QLAB_ASSIGN_OR_RETURN(out, TorchvisionBlock(b, absl::StrCat("layer", stage + 1, ".", i, "."),
                                                    out, spec.block, planes, stride));
      }
    }
    AdaptiveAvgPool2dAttrs pool;  // output 1×1
    QLAB_ASSIGN_OR_RETURN(out, b.Op(OpKind::kAdaptiveAvgPool2d, "avgpool", {out}, pool));
    QLAB_ASSIGN_OR_RETURN(out, b.Op(OpKind::kFlatten, "flatten", {out}));
    QLAB_ASSIGN_OR_RETURN(logits, b.Linear("fc", out, spec.num_classes));
  }
  QLAB_RETURN_IF_ERROR(b.graph().SetOutputs({logits}));
  return std::move(b.graph());
}

absl::StatusOr<Graph> BuildResNet(const ResNetSpec& spec, const StateDict& weights,
                                  const ResNetOptions& options, const LoadStateDictOptions& load) {
  ResNetOptions placeholders = options;
  placeholders.init = ParameterInit::kZeros;  // overwritten below: no need to draw numbers
  QLAB_ASSIGN_OR_RETURN(Graph graph, BuildResNet(spec, placeholders));
  absl::Status status = LoadStateDict(weights, graph, load);
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("model \"", spec.name, "\": ", status.message()));
  }
  return graph;
}

}  // namespace qlab
