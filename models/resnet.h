// ResNet builders: the float models qlab quantizes, emitted as quant/graph Graphs whose
// parameter nodes are named exactly like PyTorch's state_dict keys.
//
// Three families, each matching a PyTorch definition node for node (conformance tests in
// models/resnet_conformance_test.cc compare logits with PyTorch 1.13 on the same weights):
//   * torchvision ResNet18 / ResNet50 (ImageNet, 1000 classes, 224×224): 7×7/2 conv stem, 3×3/2
//     max pool, BasicBlock or Bottleneck (stride on the 3×3 conv: "ResNet v1.5"), 1×1 conv + BN
//     `downsample` shortcut, adaptive average pool, `fc`.
//   * The CIFAR-10 variants of those two (32×32, 10 classes): the same network with a 3×3/1
//     stem conv and no max pool; names as torchvision's (`downsample`, `fc`).
//   * He et al. (2016) CIFAR ResNet20/32/44/56 as in github.com/akamaster/pytorch_resnet_cifar10
//     (the shared pretrained checkpoints): 16-32-64 channels, 3 stages of n basic blocks
//     (6n + 2 layers), option-A shortcut x[:, :, ::2, ::2] zero-padded by planes/4 channels on
//     both sides (a strided_slice and a channel_pad node, no parameters), `linear`.
//
// Node names follow the PyTorch module path: "conv1", "bn1", "layer1.0.conv1",
// "layer2.0.downsample.0", "fc"; a module called more than once gets FX's suffixes
// ("layer1.0.relu", "layer1.0.relu_1"); the residual sum is "layerS.B.add"; the option-A
// shortcut is "layerS.B.shortcut.slice" → "layerS.B.shortcut". Batch-norm nodes are eval-mode
// and take (x, weight, bias, running_mean, running_var); `num_batches_tracked` has no node.
//
//   QLAB_ASSIGN_OR_RETURN(ResNetSpec spec, ModelByName("resnet20"));
//   QLAB_ASSIGN_OR_RETURN(LoadedSafetensors w, LoadSafetensors(".../resnet20.safetensors"));
//   ResNetOptions options;
//   options.batch = 8;
//   QLAB_ASSIGN_OR_RETURN(Graph model, BuildResNet(spec, w.tensors, options));
//   // model: input "x" float32[8,3,32,32] → output "linear" float32[8,10]
#ifndef QLAB_MODELS_RESNET_H_
#define QLAB_MODELS_RESNET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/state_dict.h"
#include "quant/graph/graph.h"

namespace qlab {

enum class ResNetFamily : uint8_t {
  kTorchvision,       // ImageNet stem (7×7/2 conv + max pool), downsample shortcut, "fc"
  kTorchvisionCifar,  // the same with a 3×3/1 stem and no max pool
  kCifarOptionA,      // He et al. CIFAR: 16-32-64, option-A shortcut, "linear"
};

enum class ResNetBlock : uint8_t {
  kBasic,       // two 3×3 convs (expansion 1)
  kBottleneck,  // 1×1, 3×3 (strided), 1×1 ×4 (expansion 4)
};

struct ResNetSpec {
  std::string name;  // "resnet18", "resnet50_cifar", "resnet20", ...
  ResNetFamily family = ResNetFamily::kTorchvision;
  ResNetBlock block = ResNetBlock::kBasic;
  std::vector<int> blocks_per_stage;  // {2, 2, 2, 2} for ResNet18, {3, 3, 3} for ResNet20
  int64_t num_classes = 1000;
  int64_t image_size = 224;  // the input height = width the model is meant for
};

// Names ModelByName knows, in a fixed order.
std::vector<std::string> ModelNames();
// "resnet18", "resnet50" (torchvision, ImageNet), "resnet18_cifar", "resnet50_cifar",
// "resnet20", "resnet32", "resnet44", "resnet56". InvalidArgument listing the known names.
absl::StatusOr<ResNetSpec> ModelByName(absl::string_view name);

// Placeholder parameter values when no state dict is given. Batch norms always start as PyTorch
// initializes them (weight 1, bias 0, running mean 0, running variance 1).
enum class ParameterInit : uint8_t {
  kZeros,          // conv and linear weights and biases 0 (the model outputs zeros)
  kDeterministic,  // seeded uniform: conv ±sqrt(6/fan_in) (He), linear ±1/sqrt(fan_in)
};

struct ResNetOptions {
  int64_t batch = 1;       // the batch recorded in the graph (RunGraph accepts any batch)
  int64_t image_size = 0;  // input height = width; 0: the spec's
  ParameterInit init = ParameterInit::kDeterministic;
  uint32_t seed = 0;  // for kDeterministic
};

// The model with placeholder parameters. InvalidArgument for a spec that does not describe a
// network (no stages, a non-positive block count or class count, an image too small for the
// strides).
absl::StatusOr<Graph> BuildResNet(const ResNetSpec& spec, const ResNetOptions& options = {});

// The model with its parameters taken from `weights`, strictly (models/state_dict.h: every
// missing, unexpected or mismatched name in one InvalidArgument).
absl::StatusOr<Graph> BuildResNet(const ResNetSpec& spec, const StateDict& weights,
                                  const ResNetOptions& options = {},
                                  const LoadStateDictOptions& load = {});

}  // namespace qlab

#endif  // QLAB_MODELS_RESNET_H_
