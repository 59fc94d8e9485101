// The conv layer shapes of torchvision's ResNet18 and ResNet50 at 224x224, as data: the rows
// that the int8 (qconv_benchmark) and fp32 (fp32_benchmark) kernel benchmarks time beside oneDNN,
// so that both run exactly the same shapes under the same names.
#ifndef QLAB_BENCH_RESNET_CONV_SHAPES_H_
#define QLAB_BENCH_RESNET_CONV_SHAPES_H_

#include <cstdint>

namespace qlab::bench {

// One conv layer with the input size it sees; padding kernel / 2 on every side, groups 1.
struct ResNetConvShape {
  const char* name;
  int64_t in_c, out_c, size, kernel, stride;
  bool target;        // a 3x3 or 1x1 conv of ResNet18: issue 5's int8 target (>= 0.8x) applies
  int64_t batch = 1;  // images per run
  int64_t Pad() const { return kernel / 2; }
  int64_t OutSize() const { return (size + 2 * Pad() - kernel) / stride + 1; }
  // 2 operations (multiply, add) per multiply-accumulate.
  double Ops() const {
    const double out = static_cast<double>(OutSize());
    return 2.0 * static_cast<double>(batch) * out * out *
           static_cast<double>(out_c * in_c * kernel * kernel);
  }
};

// Every distinct conv shape of ResNet18 at batch 1, one line per stage; then the ResNet50 shapes
// that ResNet18 does not have (torchvision's v1.5 bottlenecks: the stride sits on the 3x3; the
// stride-1 3x3s are ResNet18's shapes); then one batch-8 case.
inline constexpr ResNetConvShape kResNetConvShapes[] = {
    {"r18.conv1_7x7s2_3-64_224", 3, 64, 224, 7, 2, false},          // stem
    {"r18.layer1_3x3_64-64_56", 64, 64, 56, 3, 1, true},            // layer1 (x4)
    {"r18.layer2.0_3x3s2_64-128_56", 64, 128, 56, 3, 2, true},      // layer2 entry
    {"r18.layer2_3x3_128-128_28", 128, 128, 28, 3, 1, true},        // layer2 (x3)
    {"r18.layer2.0.ds_1x1s2_64-128_56", 64, 128, 56, 1, 2, true},   // layer2 downsample
    {"r18.layer3.0_3x3s2_128-256_28", 128, 256, 28, 3, 2, true},    // layer3 entry
    {"r18.layer3_3x3_256-256_14", 256, 256, 14, 3, 1, true},        // layer3 (x3)
    {"r18.layer3.0.ds_1x1s2_128-256_28", 128, 256, 28, 1, 2, true}, // layer3 downsample
    {"r18.layer4.0_3x3s2_256-512_14", 256, 512, 14, 3, 2, true},    // layer4 entry
    {"r18.layer4_3x3_512-512_7", 512, 512, 7, 3, 1, true},          // layer4 (x3)
    {"r18.layer4.0.ds_1x1s2_256-512_14", 256, 512, 14, 1, 2, true}, // layer4 downsample
    {"r50.layer1_1x1_64-256_56", 64, 256, 56, 1, 1, false},         // layer1 expand
    {"r50.layer1_1x1_256-64_56", 256, 64, 56, 1, 1, false},         // layer1 reduce
    {"r50.layer2_1x1_512-128_28", 512, 128, 28, 1, 1, false},       // layer2 reduce
    {"r50.layer3_1x1_1024-256_14", 1024, 256, 14, 1, 1, false},     // layer3 reduce
    {"r50.layer4_1x1_2048-512_7", 2048, 512, 7, 1, 1, false},       // layer4 reduce
    {"r50.layer4_1x1_512-2048_7", 512, 2048, 7, 1, 1, false},       // layer4 expand
    {"r50.layer1.0.conv1_1x1_64-64_56", 64, 64, 56, 1, 1, false},
    {"r50.layer2.0.conv1_1x1_256-128_56", 256, 128, 56, 1, 1, false},
    {"r50.layer2.0.conv2_3x3s2_128-128_56", 128, 128, 56, 3, 2, false},
    {"r50.layer2_1x1_128-512_28", 128, 512, 28, 1, 1, false},         // layer2 expand
    {"r50.layer2.0.ds_1x1s2_256-512_56", 256, 512, 56, 1, 2, false},
    {"r50.layer3.0.conv1_1x1_512-256_28", 512, 256, 28, 1, 1, false},
    {"r50.layer3.0.conv2_3x3s2_256-256_28", 256, 256, 28, 3, 2, false},
    {"r50.layer3_1x1_256-1024_14", 256, 1024, 14, 1, 1, false},       // layer3 expand
    {"r50.layer3.0.ds_1x1s2_512-1024_28", 512, 1024, 28, 1, 2, false},
    {"r50.layer4.0.conv1_1x1_1024-512_14", 1024, 512, 14, 1, 1, false},
    {"r50.layer4.0.conv2_3x3s2_512-512_14", 512, 512, 14, 3, 2, false},
    {"r50.layer4.0.ds_1x1s2_1024-2048_14", 1024, 2048, 14, 1, 2, false},
    {"r18.layer3_3x3_256-256_14_batch8", 256, 256, 14, 3, 1, false, 8},
};

}  // namespace qlab::bench

#endif  // QLAB_BENCH_RESNET_CONV_SHAPES_H_
