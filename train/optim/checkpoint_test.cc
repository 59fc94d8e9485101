// Tests of training checkpoints (train/optim/checkpoint.h): bit-exact round trips, refusal to
// overwrite, clear errors for truncated, corrupted and wrongly labelled files, finding the latest
// checkpoint, and loading a checkpoint's model through the ordinary weight loaders.
#include "train/optim/checkpoint.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "gtest/gtest.h"
#include "models/resnet.h"
#include "models/safetensors.h"
#include "models/state_dict.h"
#include "models/weights.h"
#include "train/optim/sgd.h"

namespace qlab::train {
namespace {

// A fresh folder per test under TEST_TMPDIR.
std::string TestDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", info->name());
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream bytes;
  bytes << file.rdbuf();
  return bytes.str();
}

// The names in `dir`, sorted.
std::vector<std::string> ListFolder(const std::string& dir) {
  std::vector<std::string> names;
  DIR* listing = ::opendir(dir.c_str());
  if (listing == nullptr) return names;
  while (const dirent* entry = ::readdir(listing)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(listing);
  std::sort(names.begin(), names.end());
  return names;
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <typename T>
Tensor MakeTensor(DType dtype, Shape shape, const std::vector<T>& values) {
  Tensor t = *Tensor::Create(dtype, shape);
  std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  return t;
}

float FloatFromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Every float class that a lossy path could change: signed zero, a denormal, infinities, a NaN
// with a payload, the extremes.
TrainingState ExampleState() {
  TrainingState s;
  s.model["conv1.weight"] = MakeTensor<float>(
      DType::kFloat32, {2, 1, 2, 2},
      {-0.0f, FloatFromBits(0x00000001u), INFINITY, -INFINITY, FloatFromBits(0x7fc01234u),
       std::numeric_limits<float>::max(), std::numeric_limits<float>::lowest(), 0.1f});
  s.model["bn1.running_var"] = MakeTensor<float>(DType::kFloat32, {3}, {1.0f, 2.5f, 1e-30f});
  s.model["bn1.num_batches_tracked"] = MakeTensor<int32_t>(DType::kInt32, {}, {123456});
  s.model["quant.weight_int8"] = MakeTensor<int8_t>(DType::kInt8, {4}, {-128, -1, 0, 127});
  s.model["quant.zero_point"] = MakeTensor<uint8_t>(DType::kUInt8, {2}, {0, 255});
  s.momentum["conv1.weight"] = {1.0f, -2.0f, FloatFromBits(0x80000001u), 3.0f, 4.0f, 5.0f,
                                6.0f, 7.0f};
  s.momentum["bn1.weight"] = {};  // a zero-size parameter still has its (empty) buffer
  s.epoch = 17;
  s.step = 17 * 391;
  s.seed = std::numeric_limits<uint64_t>::max();
  s.config_json = R"({"model": "resnet20", "lr": 0.1, "schedule": "cosine"})";
  return s;
}

void ExpectSameBits(const Tensor& a, const Tensor& b, const std::string& name) {
  EXPECT_EQ(a.dtype(), b.dtype()) << name;
  EXPECT_EQ(a.shape(), b.shape()) << name;
  ASSERT_EQ(a.nbytes(), b.nbytes()) << name;
  // Empty tensors may have no storage: memcmp on a null pointer is undefined even for 0 bytes.
  if (a.nbytes() == 0) return;
  EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()), 0) << name;
}

void ExpectSameState(const TrainingState& a, const TrainingState& b) {
  ASSERT_EQ(a.model.size(), b.model.size());
  for (const auto& [name, tensor] : a.model) {
    ASSERT_EQ(b.model.count(name), 1u) << name;
    ExpectSameBits(tensor, b.model.at(name), name);
  }
  ASSERT_EQ(a.momentum.size(), b.momentum.size());
  for (const auto& [name, buffer] : a.momentum) {
    ASSERT_EQ(b.momentum.count(name), 1u) << name;
    const std::vector<float>& other = b.momentum.at(name);
    ASSERT_EQ(buffer.size(), other.size()) << name;
    // An empty vector's data() may be null (memcmp on null is undefined, even for 0 bytes: UBSan).
    if (buffer.empty()) continue;
    EXPECT_EQ(std::memcmp(buffer.data(), other.data(), buffer.size() * sizeof(float)), 0) << name;
  }
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.config_json, b.config_json);
}

bool Contains(const absl::Status& status, const std::string& text) {
  return status.message().find(text) != absl::string_view::npos;
}

TEST(CheckpointTest, RoundTripIsBitExact) {
  const std::string path = TestDir() + "/" + CheckpointFileName(17);
  const TrainingState state = ExampleState();
  ASSERT_TRUE(SaveCheckpoint(path, state).ok());
  absl::StatusOr<TrainingState> loaded = LoadCheckpoint(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameState(state, *loaded);
}

TEST(CheckpointTest, EmptyConfigAndNoMomentumRoundTrip) {
  const std::string path = TestDir() + "/plain.safetensors";
  TrainingState state;
  state.model["fc.bias"] = MakeTensor<float>(DType::kFloat32, {2}, {0.5f, -0.5f});
  ASSERT_TRUE(SaveCheckpoint(path, state).ok());
  absl::StatusOr<TrainingState> loaded = LoadCheckpoint(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameState(state, *loaded);
}

TEST(CheckpointTest, NeverOverwritesAndLeavesNoTemporaryFiles) {
  const std::string dir = TestDir();
  const std::string path = dir + "/" + CheckpointFileName(3);
  WriteBytes(path, "a file the user had");
  absl::Status s = SaveCheckpoint(path, ExampleState());
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(Contains(s, path)) << s;
  EXPECT_EQ(ReadBytes(path), "a file the user had");

  // Over an earlier checkpoint too: the first one stays loadable and unchanged.
  const std::string second = dir + "/" + CheckpointFileName(4);
  ASSERT_TRUE(SaveCheckpoint(second, ExampleState()).ok());
  const std::string before = ReadBytes(second);
  TrainingState other = ExampleState();
  other.epoch = 99;
  EXPECT_EQ(SaveCheckpoint(second, other).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadBytes(second), before);
  EXPECT_EQ(LoadCheckpoint(second)->epoch, 17);

  // Only the two files remain (no "<path>.tmp-XXXXXX" left behind).
  EXPECT_EQ(ListFolder(dir),
            (std::vector<std::string>{CheckpointFileName(3), CheckpointFileName(4)}));
}

TEST(CheckpointTest, SaveRejectsBadStateNamingIt) {
  const std::string dir = TestDir();
  TrainingState reserved = ExampleState();
  reserved.model["optimizer.lr"] = MakeTensor<float>(DType::kFloat32, {1}, {0.1f});
  absl::Status s = SaveCheckpoint(dir + "/a.safetensors", reserved);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(s, "optimizer.lr")) << s;

  TrainingState negative = ExampleState();
  negative.epoch = -1;
  EXPECT_EQ(SaveCheckpoint(dir + "/b.safetensors", negative).code(),
            absl::StatusCode::kInvalidArgument);

  TrainingState bad_json = ExampleState();
  bad_json.config_json = "{\"lr\": ";
  s = SaveCheckpoint(dir + "/c.safetensors", bad_json);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(s, "config_json")) << s;
  // Nothing was written for any of them.
  for (const char* name : {"/a.safetensors", "/b.safetensors", "/c.safetensors"}) {
    EXPECT_NE(::access((dir + name).c_str(), F_OK), 0) << name;
  }
}

TEST(CheckpointTest, TruncatedFilesFailNamingTheFile) {
  const std::string dir = TestDir();
  const std::string good = dir + "/good.safetensors";
  ASSERT_TRUE(SaveCheckpoint(good, ExampleState()).ok());
  const std::string bytes = ReadBytes(good);
  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), 8);
  ASSERT_LT(8 + header_length, bytes.size());
  // Cut inside the length, inside the header, inside the data, and one byte short.
  for (const size_t keep : {size_t{0}, size_t{5}, size_t{8 + header_length / 2},
                            size_t{8 + header_length + 3}, bytes.size() - 1}) {
    const std::string path = absl::StrCat(dir, "/cut-", keep, ".safetensors");
    WriteBytes(path, bytes.substr(0, keep));
    const absl::StatusOr<TrainingState> loaded = LoadCheckpoint(path);
    ASSERT_FALSE(loaded.ok()) << "kept " << keep << " of " << bytes.size() << " bytes";
    std::cout << loaded.status() << "\n";
    EXPECT_TRUE(Contains(loaded.status(), path)) << loaded.status();
    if (keep > 8 + header_length) {
      // The header is intact and promises data that is not there.
      EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss) << loaded.status();
    }
  }
  const absl::StatusOr<TrainingState> missing = LoadCheckpoint(dir + "/absent.safetensors");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(missing.status(), dir + "/absent.safetensors")) << missing.status();
}

TEST(CheckpointTest, CorruptedBytesFailNamingTheFile) {
  const std::string dir = TestDir();
  const std::string good = dir + "/good.safetensors";
  ASSERT_TRUE(SaveCheckpoint(good, ExampleState()).ok());
  const std::string bytes = ReadBytes(good);

  std::string broken_json = bytes;
  broken_json[8] = 'x';  // the header's opening brace
  std::string huge_header = bytes;
  huge_header[7] = '\x7f';  // header length ~2^62: more than the file holds
  std::string wrong_offsets = bytes;
  const size_t offsets = wrong_offsets.find("\"data_offsets\":[0,");
  ASSERT_NE(offsets, std::string::npos);
  wrong_offsets[offsets + 16] = '8';  // the first tensor now starts at 8: a hole and an overlap
  const std::vector<std::pair<std::string, std::string>> corrupted = {
      {"json", broken_json}, {"length", huge_header}, {"offsets", wrong_offsets}};
  for (const auto& [name, content] : corrupted) {
    const std::string path = absl::StrCat(dir, "/", name, ".safetensors");
    WriteBytes(path, content);
    const absl::StatusOr<TrainingState> loaded = LoadCheckpoint(path);
    ASSERT_FALSE(loaded.ok()) << name;
    std::cout << loaded.status() << "\n";
    EXPECT_TRUE(Contains(loaded.status(), path)) << loaded.status();
  }
}

// A checkpoint written by SaveCheckpoint, then changed by `edit` at the safetensors level.
template <typename Edit>
absl::Status LoadEdited(const std::string& dir, const std::string& name, Edit edit,
                        std::string* path) {
  const std::string good = absl::StrCat(dir, "/", name, ".good.safetensors");
  QLAB_CHECK(SaveCheckpoint(good, ExampleState()).ok());
  SafetensorsFile file = *ReadSafetensors(good);
  edit(file);
  *path = absl::StrCat(dir, "/", name, ".safetensors");
  QLAB_CHECK(WriteSafetensors(*path, file).ok());
  return LoadCheckpoint(*path).status();
}

TEST(CheckpointTest, MissingOrWrongMetadataIsNamed) {
  const std::string dir = TestDir();
  struct Case {
    const char* name;
    const char* key;
    const char* value;  // null: remove the key
    const char* named;  // must appear in the message, besides the path
  };
  const Case cases[] = {
      {"no_epoch", "epoch", nullptr, "\"epoch\""},
      {"no_format", "format", nullptr, "\"format\""},
      {"no_config", "config", nullptr, "\"config\""},
      {"epoch_text", "epoch", "seventeen", "seventeen"},
      {"epoch_negative", "epoch", "-3", "-3"},
      {"step_padded", "global_step", " 12", "global_step"},
      {"seed_negative", "seed", "-1", "seed"},
      {"version", "format_version", "2", "\"2\""},
      {"format", "format", "someone.elses_checkpoint", "someone.elses_checkpoint"},
      {"config", "config", "{not json", "{not json"},
  };
  for (const Case& c : cases) {
    std::string path;
    const absl::Status s = LoadEdited(
        dir, c.name,
        [&](SafetensorsFile& f) {
          if (c.value == nullptr) {
            f.metadata.erase(c.key);
          } else {
            f.metadata[c.key] = c.value;
          }
        },
        &path);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << s;
    std::cout << s << "\n";
    EXPECT_TRUE(Contains(s, path)) << s;
    EXPECT_TRUE(Contains(s, c.named)) << s;
  }
}

TEST(CheckpointTest, BadOptimizerTensorsAreNamed) {
  const std::string dir = TestDir();
  std::string path;
  absl::Status s = LoadEdited(
      dir, "momentum_i32",
      [](SafetensorsFile& f) {
        for (SafetensorsTensor& t : f.tensors) {
          if (t.name == "optimizer.momentum.conv1.weight") t.dtype = SafetensorsDType::kI32;
        }
      },
      &path);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(Contains(s, "optimizer.momentum.conv1.weight")) << s;
  EXPECT_TRUE(Contains(s, path)) << s;

  s = LoadEdited(
      dir, "unknown_optimizer_tensor",
      [](SafetensorsFile& f) {
        f.tensors.push_back(
            {"optimizer.step_count", SafetensorsDType::kI32, {}, std::string("\1\0\0\0", 4)});
      },
      &path);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(Contains(s, "optimizer.step_count")) << s;
}

TEST(CheckpointTest, LatestCheckpointPicksTheHighestEpochNumerically) {
  const std::string dir = TestDir();
  EXPECT_EQ(LatestCheckpoint(dir).status().code(), absl::StatusCode::kNotFound);
  const absl::StatusOr<std::string> absent = LatestCheckpoint(dir + "/absent");
  EXPECT_EQ(absent.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(absent.status(), dir + "/absent")) << absent.status();

  for (int64_t epoch : {2, 10, 9}) {
    TrainingState s = ExampleState();
    s.epoch = epoch;
    ASSERT_TRUE(SaveCheckpoint(dir + "/" + CheckpointFileName(epoch), s).ok());
  }
  // Names that must not be taken for checkpoints.
  for (const char* decoy :
       {"checkpoint-epoch-11.safetensors.tmp-Ab12Cd", "checkpoint-epoch-012.safetensors",
        "checkpoint-epoch--20.safetensors", "checkpoint-epoch-+30.safetensors",
        "checkpoint-epoch-x.safetensors", "checkpoint-epoch-.safetensors",
        "model-epoch-50.safetensors", "checkpoint-epoch-40.pth"}) {
    WriteBytes(dir + "/" + decoy, "not a checkpoint");
  }
  const absl::StatusOr<std::string> latest = LatestCheckpoint(dir);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(*latest, dir + "/checkpoint-epoch-10.safetensors");
  EXPECT_EQ(LoadCheckpoint(*latest)->epoch, 10);
}

// Resume as the training engine will: optimizer buffers through a checkpoint back into an Sgd.
TEST(CheckpointTest, MomentumBuffersRestoreIntoSgd) {
  std::vector<float> w = {1.0f, 2.0f, 3.0f}, g = {0.5f, -0.25f, 1.0f};
  Sgd sgd{SgdOptions()};
  ASSERT_TRUE(sgd.AddParameter("fc.weight", w.data(), g.data(), w.size(), true).ok());
  sgd.Step(nullptr);
  TrainingState state;
  state.model["fc.weight"] = MakeTensor<float>(DType::kFloat32, {3}, w);
  state.momentum = sgd.MomentumBuffers();
  const std::string path = TestDir() + "/" + CheckpointFileName(1);
  ASSERT_TRUE(SaveCheckpoint(path, state).ok());

  absl::StatusOr<TrainingState> loaded = LoadCheckpoint(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  std::vector<float> w2(3), g2(3);
  std::memcpy(w2.data(), loaded->model.at("fc.weight").data<float>(), 3 * sizeof(float));
  Sgd resumed{SgdOptions()};
  ASSERT_TRUE(resumed.AddParameter("fc.weight", w2.data(), g2.data(), 3, true).ok());
  ASSERT_TRUE(resumed.RestoreMomentumBuffers(loaded->momentum).ok());
  EXPECT_EQ(resumed.MomentumBuffers(), sgd.MomentumBuffers());
}

// The model part of a checkpoint is a plain state dict for models/weights.h; LoadStateDict is
// strict, so the optimizer tensors are dropped with ModelStateDict first.
TEST(CheckpointTest, ModelLoadsThroughLoadWeightsAndBuildResNet) {
  const ResNetSpec spec = *ModelByName("resnet20");
  absl::StatusOr<Graph> original = BuildResNet(spec);  // seeded deterministic parameters
  ASSERT_TRUE(original.ok()) << original.status();
  TrainingState state;
  state.model = ExtractStateDict(*original);
  for (const auto& [name, tensor] : state.model) {
    state.momentum[name] = std::vector<float>(static_cast<size_t>(tensor.numel()), 0.5f);
  }
  const std::string path = TestDir() + "/" + CheckpointFileName(0);
  ASSERT_TRUE(SaveCheckpoint(path, state).ok());

  absl::StatusOr<LoadedWeights> weights = LoadWeights(path);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->format, "safetensors");
  const std::map<std::string, Tensor> model = ModelStateDict(weights->tensors);
  EXPECT_EQ(weights->tensors.size(), 2 * state.model.size());  // model + one buffer each
  ASSERT_EQ(model.size(), state.model.size());
  for (const auto& [name, tensor] : state.model) ExpectSameBits(tensor, model.at(name), name);

  // Strict loading refuses the optimizer tensors, naming them; the model part loads.
  const absl::StatusOr<Graph> with_optimizer = BuildResNet(spec, weights->tensors);
  EXPECT_EQ(with_optimizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(with_optimizer.status(), "optimizer.momentum.")) << with_optimizer.status();
  absl::StatusOr<Graph> rebuilt = BuildResNet(spec, model);
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  const StateDict rebuilt_weights = ExtractStateDict(*rebuilt);
  for (const auto& [name, tensor] : state.model) {
    ExpectSameBits(tensor, rebuilt_weights.at(name), name);
  }
}

}  // namespace
}  // namespace qlab::train
