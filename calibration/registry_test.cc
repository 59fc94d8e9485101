// Tests of the registry: spec parsing (names, positional and key=value arguments, defaults,
// errors listing what exists), ValidateObserverSpec, and observer files (round trip, atomic
// replacement, and DataLoss naming the field for every kind of damage).
#include "calibration/registry.h"

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qlab::calibration {
namespace {

const QuantTarget kInt8Affine{DType::kInt8, -128, 127, QScheme::kPerTensorAffine};
const QuantTarget kInt8PerChannel{DType::kInt8, -128, 127, QScheme::kPerChannelAffine};

Tensor Random(uint32_t seed, Shape shape) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor t = Tensor::Create(DType::kFloat32, shape).value();
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(RegistryTest, CreatesEveryMinMaxSpecWithCanonicalSpec) {
  const std::vector<std::pair<std::string, std::string>> specs = {
      {"minmax", "minmax"},
      {"moving_average", "moving_average:c=0.01"},
      {"moving_average:c=0.25", "moving_average:c=0.25"},
      {"moving_average:0.5", "moving_average:c=0.5"},
      {"per_channel_minmax", "per_channel_minmax"},
      {"per_channel_moving_average:c=1", "per_channel_moving_average:c=1"},
  };
  for (const auto& [spec, canonical] : specs) {
    auto o = CreateObserver(spec);
    ASSERT_TRUE(o.ok()) << spec << ": " << o.status();
    EXPECT_EQ((*o)->spec(), canonical);
    // The canonical spec recreates the same observer.
    EXPECT_EQ(CreateObserver(canonical).value()->spec(), canonical);
  }
}

TEST(RegistryTest, UnknownNamesListWhatExists) {
  const auto o = CreateObserver("minmaxx");
  ASSERT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  for (const std::string& name : ObserverNames()) {
    EXPECT_NE(o.status().message().find(name), std::string::npos) << o.status();
  }
  EXPECT_EQ(CreateObserver("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RegistryTest, BadArgumentsListWhatIsAccepted) {
  for (const char* spec : {"moving_average:c=0", "moving_average:c=1.5", "moving_average:c=x",
                           "moving_average:d=0.1", "moving_average:c=0.1,c=0.2",
                           "moving_average:c=nan", "minmax:3", "minmax:c=0.1",
                           "moving_average:", "per_channel_moving_average:c=-1"}) {
    const auto o = CreateObserver(spec);
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument) << spec;
    EXPECT_NE(o.status().message().find(spec), std::string::npos) << o.status();
    EXPECT_FALSE(ValidateObserverSpec(spec).ok()) << spec;
  }
  const auto o = CreateObserver("moving_average:c=2");
  EXPECT_NE(o.status().message().find("c in (0, 1]"), std::string::npos) << o.status();
}

TEST(RegistryTest, ValidateReportsPerChannel) {
  bool per_channel = true;
  ASSERT_TRUE(ValidateObserverSpec("minmax", &per_channel).ok());
  EXPECT_FALSE(per_channel);
  ASSERT_TRUE(ValidateObserverSpec("per_channel_moving_average:c=0.1", &per_channel).ok());
  EXPECT_TRUE(per_channel);
  EXPECT_TRUE(ValidateObserverSpec("moving_average").ok());
}

TEST(RegistryTest, NamesAreSorted) {
  const std::vector<std::string> names = ObserverNames();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_NE(std::find(names.begin(), names.end(), "per_channel_minmax"), names.end());
}

TEST(ObserverFileTest, SaveLoadRoundTripKeepsSpecOptionsAndState) {
  ObserverOptions options;
  options.channel_axis = 1;
  options.skip_non_finite = true;
  auto o = CreateObserver("per_channel_moving_average:c=0.2", options).value();
  ASSERT_TRUE(o->Observe(Random(1, {2, 3, 4})).ok());
  ASSERT_TRUE(o->Observe(Random(2, {2, 3, 4})).ok());
  const std::string path = TempPath("pcma.observer");
  ASSERT_TRUE(SaveObserver(*o, path).ok());
  EXPECT_FALSE(std::ifstream(path + ".tmp." + std::to_string(getpid())).good());
  auto loaded = LoadObserver(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->spec(), o->spec());
  EXPECT_EQ((*loaded)->options().channel_axis, 1);
  EXPECT_TRUE((*loaded)->options().skip_non_finite);
  EXPECT_EQ((*loaded)->num_batches(), 2);
  EXPECT_EQ((*loaded)->ComputeQParams(kInt8PerChannel).value().scales,
            o->ComputeQParams(kInt8PerChannel).value().scales);
  // Saving again over an existing file replaces it.
  ASSERT_TRUE(o->Observe(Random(3, {2, 3, 4})).ok());
  ASSERT_TRUE(SaveObserver(*o, path).ok());
  EXPECT_EQ(LoadObserver(path).value()->num_batches(), 3);
}

TEST(ObserverFileTest, DamagedFilesAreDataLossNamingTheField) {
  auto o = CreateObserver("minmax").value();
  ASSERT_TRUE(o->Observe(Random(1, {16})).ok());
  const std::string path = TempPath("minmax.observer");
  ASSERT_TRUE(SaveObserver(*o, path).ok());
  const std::string good = ReadFile(path);
  const size_t newline = good.find('\n');
  ASSERT_NE(newline, std::string::npos);
  const nlohmann::json header = nlohmann::json::parse(good.substr(0, newline));
  const std::string payload = good.substr(newline + 1);
  const std::string damaged = TempPath("damaged.observer");

  auto expect_loss = [&](const std::string& bytes, const std::string& mention) {
    WriteFile(damaged, bytes);
    const auto loaded = LoadObserver(damaged);
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss) << mention;
    EXPECT_NE(loaded.status().message().find(mention), std::string::npos) << loaded.status();
    EXPECT_NE(loaded.status().message().find(damaged), std::string::npos) << loaded.status();
  };
  expect_loss(good.substr(0, good.size() - 3), "binary_bytes");
  expect_loss(good + "zz", "binary_bytes");
  expect_loss("no header here", "newline");
  expect_loss("[1,2]\n", "JSON object");
  auto edited = [&](const char* field, const nlohmann::json& value) {
    nlohmann::json h = header;
    if (value.is_null()) {
      h.erase(field);
    } else {
      h[field] = value;
    }
    return h.dump() + "\n" + payload;
  };
  expect_loss(edited("format", "png"), "format");
  expect_loss(edited("version", 99), "version");
  expect_loss(edited("spec", "nonsense"), "spec");
  expect_loss(edited("spec", nullptr), "spec");
  expect_loss(edited("options", nullptr), "options");
  expect_loss(edited("state", nullptr), "state");
  expect_loss(edited("binary_bytes", "many"), "binary_bytes");
  nlohmann::json h = header;
  h["state"]["num_batches"] = "three";
  expect_loss(h.dump() + "\n" + payload, "num_batches");
  EXPECT_EQ(LoadObserver(TempPath("does_not_exist")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ObserverFileTest, SaveToUnwritablePlaceFails) {
  auto o = CreateObserver("minmax").value();
  EXPECT_FALSE(SaveObserver(*o, "/nonexistent_dir/x.observer").ok());
}

}  // namespace
}  // namespace qlab::calibration
