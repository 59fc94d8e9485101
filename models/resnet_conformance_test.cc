// torchvision ResNet18 / ResNet50 (224×224) and their CIFAR variants (32×32) against PyTorch
// 1.13: resnet_torch.py builds each with torch.manual_seed(0) random init (batch-norm statistics
// randomized too), writes its state_dict as a hand-made safetensors file and as a torch.save
// .pth, and the eval-mode logits of a seeded input; qlab loads each file (LoadWeights), builds
// the model strictly (BuildResNet with the state dict: every name and shape must match), runs it
// with the float reference interpreter and with the FP32 engine, and compares.
//
// Tolerance: max |qlab − torch| ≤ kTolerance × max |torch logits|, kTolerance = 1e-4. Both sides
// compute in float32 but add in different orders (PyTorch: oneDNN/im2col GEMM blocking; qlab:
// plain loops), so every conv output carries a rounding difference of about
// 2^-24 × sqrt(K) of its scale (K = C·kh·kw terms, up to 4608 here: ~4e-6), and these
// differences propagate through ~20 (ResNet18) or ~50 (ResNet50) conv/BN layers plus the
// residual sums. They are of random sign, so they grow roughly like the square root of the depth
// (√50 × 4e-6 ≈ 3e-5) and are not amplified much by a network whose layers keep the activation
// scale (He init, BN). 1e-4 leaves ~3× headroom over that estimate; any real mistake (a wrong
// stride, padding, BN statistic, shortcut or weight layout) changes logits by O(1) of their scale
// and fails by orders of magnitude. Observed on this machine (printed by each test): relative
// 6.3e-7 (ResNet18), 6.1e-7 (ResNet50), 5.1e-7 (ResNet18 CIFAR), 1.3e-6 (ResNet50 CIFAR), i.e.
// the differences partly cancel and the bound keeps ~80× headroom over what is seen.
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "engine/fp32_engine.h"
#include "models/resnet.h"
#include "models/weights.h"
#include "models/safetensors.h"
#include "models/testing/logits.h"
#include "quant/graph/interpreter.h"

namespace qlab {
namespace {

constexpr double kTolerance = 1e-4;

std::string OutDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

class ResNetConformanceTest : public ::testing::Test {
 protected:
  // One Python process for all models: importing torch takes about a second.
  static void SetUpTestSuite() {
    const std::string command =
        absl::StrCat("/usr/bin/python3 models/resnet_torch.py random ", OutDir());
    python_ok_ = std::system(command.c_str()) == 0;
  }

  void Check(const std::string& name) {
    ASSERT_TRUE(python_ok_) << "resnet_torch.py failed: is python3-torch installed "
                               "(tools/setup.sh)?";
    absl::StatusOr<LoadedSafetensors> io =
        LoadSafetensors(absl::StrCat(OutDir(), "/", name, ".io.safetensors"));
    ASSERT_TRUE(io.ok()) << io.status();
    const Tensor& input = io->tensors.at("input");
    const Tensor& reference = io->tensors.at("logits");
    // The same state_dict through both weight formats (torch.save's zip via the restricted
    // unpickler, and safetensors), each run by the reference interpreter and the FP32 engine.
    for (const char* file : {".weights.safetensors", ".pth"}) {
      SCOPED_TRACE(file);
      absl::StatusOr<LoadedWeights> weights = LoadWeights(absl::StrCat(OutDir(), "/", name, file));
      ASSERT_TRUE(weights.ok()) << weights.status();
      absl::StatusOr<Graph> model = BuildResNet(*ModelByName(name), weights->tensors);
      ASSERT_TRUE(model.ok()) << model.status();
      absl::StatusOr<RunResult> run = RunGraph(*model, {input});
      ASSERT_TRUE(run.ok()) << run.status();
      absl::StatusOr<Fp32Engine> engine = Fp32Engine::Create(*model, 2);
      ASSERT_TRUE(engine.ok()) << engine.status();
      absl::StatusOr<Tensor> fast = engine->Run(input);
      ASSERT_TRUE(fast.ok()) << fast.status();
      for (const Tensor* logits : {&run->outputs[0], &*fast}) {
        const testing::LogitsComparison c = testing::CompareLogits(*logits, reference, kTolerance);
        std::cout << name << file << (logits == &*fast ? " engine: " : " interpreter: ")
                  << c.summary << "\n";
        EXPECT_LE(c.relative, kTolerance) << name << ": " << c.summary;
        EXPECT_EQ(c.argmax_mismatches, 0) << name << ": " << c.summary;
        // Sanity of the reference itself: random-init logits are not all zero.
        EXPECT_GT(c.max_abs_reference, 0.0);
      }
    }
  }

  static bool python_ok_;
};

bool ResNetConformanceTest::python_ok_ = false;

TEST_F(ResNetConformanceTest, ResNet18) { Check("resnet18"); }
TEST_F(ResNetConformanceTest, ResNet50) { Check("resnet50"); }
TEST_F(ResNetConformanceTest, ResNet18Cifar) { Check("resnet18_cifar"); }
TEST_F(ResNetConformanceTest, ResNet50Cifar) { Check("resnet50_cifar"); }

}  // namespace
}  // namespace qlab
