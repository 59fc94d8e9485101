// Strict state-dict loading: a checkpoint that matches replaces every parameter; any mismatch
// (missing, unexpected, wrong shape or dtype) is reported all at once and leaves the graph as it
// was; "module." prefixes and num_batches_tracked counters are handled as in PyTorch.
#include "models/state_dict.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "models/resnet.h"
#include "models/safetensors.h"
#include "quant/graph/interpreter.h"
#include "quant/graph/graph.h"

namespace qlab {
namespace {

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

Graph Model(ParameterInit init, uint32_t seed = 0) {
  ResNetOptions options;
  options.init = init;
  options.seed = seed;
  absl::StatusOr<Graph> g = BuildResNet(*ModelByName("resnet20"), options);
  EXPECT_TRUE(g.ok()) << g.status();
  return *std::move(g);
}

const Tensor& Param(const Graph& g, const std::string& name) {
  return g.node(*g.FindNode(name)).value;
}

TEST(StateDictTest, MatchingStateDictReplacesEveryParameter) {
  const StateDict weights = ExtractStateDict(Model(ParameterInit::kDeterministic, 7));
  EXPECT_EQ(weights.size(), 97u);  // resnet20: 116 keys in the checkpoint minus 19 counters
  Graph g = Model(ParameterInit::kZeros);
  ASSERT_TRUE(LoadStateDict(weights, g).ok());
  for (const auto& [name, tensor] : weights) {
    EXPECT_TRUE(Param(g, name).SharesStorageWith(tensor)) << name;
  }
}

TEST(StateDictTest, AllMismatchesInOneErrorAndGraphUntouched) {
  StateDict weights = ExtractStateDict(Model(ParameterInit::kDeterministic, 7));
  weights.erase("linear.bias");
  weights.erase("layer3.2.bn2.running_var");
  weights["linear.extra"] = *Tensor::Create(DType::kFloat32, {3});
  weights["conv1.weight"] = *Tensor::Create(DType::kFloat32, {16, 3, 5, 5});
  weights["bn1.weight"] = *Tensor::Create(DType::kInt32, {16});
  Graph g = Model(ParameterInit::kZeros);
  const Tensor before = Param(g, "layer1.0.conv1.weight");
  absl::Status status = LoadStateDict(weights, g);
  ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  const std::string m(status.message());
  EXPECT_TRUE(Contains(m, "2 missing (layer3.2.bn2.running_var, linear.bias)")) << m;
  EXPECT_TRUE(Contains(m, "1 unexpected (linear.extra)")) << m;
  EXPECT_TRUE(Contains(m, "conv1.weight: checkpoint float32[16,3,5,5], model float32[16,3,3,3]"))
      << m;
  EXPECT_TRUE(Contains(m, "bn1.weight: checkpoint int32[16], model float32[16]")) << m;
  // Nothing was loaded, not even the names that matched.
  EXPECT_TRUE(Param(g, "layer1.0.conv1.weight").SharesStorageWith(before));
}

TEST(StateDictTest, LongListsAreCounted) {
  Graph g = Model(ParameterInit::kZeros);
  absl::Status status = LoadStateDict({}, g);
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(Contains(std::string(status.message()), "97 missing")) << status;
  EXPECT_TRUE(Contains(std::string(status.message()), "... 77 more")) << status;
}

TEST(StateDictTest, ModulePrefixAndNumBatchesTracked) {
  const StateDict plain = ExtractStateDict(Model(ParameterInit::kDeterministic, 3));
  StateDict wrapped;
  for (const auto& [name, t] : plain) wrapped["module." + name] = t;
  wrapped["module.bn1.num_batches_tracked"] = *Tensor::Create(DType::kInt32, {});
  Graph g = Model(ParameterInit::kZeros);
  ASSERT_TRUE(LoadStateDict(wrapped, g).ok());
  EXPECT_TRUE(Param(g, "linear.weight").SharesStorageWith(plain.at("linear.weight")));

  // Without stripping every key is unexpected and every parameter missing.
  LoadStateDictOptions keep;
  keep.strip_module_prefix = false;
  absl::Status status = LoadStateDict(wrapped, g, keep);
  EXPECT_TRUE(Contains(std::string(status.message()), "97 missing")) << status;
  EXPECT_TRUE(Contains(std::string(status.message()), "97 unexpected")) << status;

  // Counters are only ignored when asked.
  LoadStateDictOptions strict_counters;
  strict_counters.ignore_num_batches_tracked = false;
  status = LoadStateDict(wrapped, g, strict_counters);
  EXPECT_TRUE(Contains(std::string(status.message()), "1 unexpected (bn1.num_batches_tracked)"))
      << status;

  // "module.x" and "x" together are ambiguous.
  StateDict both = plain;
  both["module.linear.bias"] = plain.at("linear.bias");
  absl::StatusOr<StateDict> stripped = StripModulePrefix(both);
  ASSERT_FALSE(stripped.ok());
  EXPECT_TRUE(Contains(std::string(stripped.status().message()), "module.linear.bias"));
}

// A model's weights saved with SaveSafetensors and loaded into a fresh build give the same
// parameters bit for bit and therefore the same logits (exact: same arithmetic, same order).
TEST(StateDictTest, SafetensorsRoundTripOfAModel) {
  const Graph original = Model(ParameterInit::kDeterministic, 11);
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp != nullptr ? tmp : "/tmp") + "/resnet20.safetensors";
  std::remove(path.c_str());
  ASSERT_TRUE(SaveSafetensors(path, ExtractStateDict(original), {{"arch", "resnet20"}}).ok());
  absl::StatusOr<LoadedSafetensors> loaded = LoadSafetensors(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  absl::StatusOr<Graph> rebuilt = BuildResNet(*ModelByName("resnet20"), loaded->tensors);
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  Tensor x = *Tensor::Create(DType::kFloat32, {2, 3, 32, 32});
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(i % 11) * 0.1f;
  const Tensor a = RunGraph(original, {x})->outputs[0];
  const Tensor b = RunGraph(*rebuilt, {x})->outputs[0];
  EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()), 0);
}

}  // namespace
}  // namespace qlab
