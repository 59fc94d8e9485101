// Replays every fuzz target's seed corpus (tests/fuzz/corpus/<target>/, including the minimized
// regression inputs of crashes fuzzing found) plus deterministic mutations of each seed, through
// the same entry points the libFuzzer binaries use. Built by the default toolchain (gcc) in
// `bazel test //...`, so a parser regression on a known-bad input fails CI even where no fuzzer
// runs; under `--config=asan` / `--config=ubsan` it is also a short sanitizer smoke run.
//
// "Passing" means returning: a crash, a sanitizer report or a violated property (a target's
// std::abort) kills the test.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "interchange/onnx_import.h"
#include "models/data/image.h"
#include "models/pth/pth_loader.h"
#include "tests/fuzz/fuzz_targets.h"
#include "tests/fuzz/observer_seeds.h"

namespace qlab::fuzz {
namespace {

using Target = int (*)(const uint8_t*, size_t);

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// The files of corpus/<target> in the test's runfiles, sorted so the replay order is stable.
std::vector<std::string> Corpus(const std::string& target) {
  const std::filesystem::path dir = std::filesystem::path("tests/fuzz/corpus") / target;
  std::vector<std::filesystem::path> paths;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) paths.push_back(entry.path());
  std::sort(paths.begin(), paths.end());
  std::vector<std::string> files;
  for (const auto& path : paths) files.push_back(ReadFile(path));
  return files;
}

void Run(Target target, const std::string& bytes) {
  target(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// The seed itself; truncations (every length for small seeds, 64 evenly spaced lengths for
// larger ones), because truncated files are the commonest damage; then `mutations` copies with
// 1-4 random byte edits (overwrite with a random or boundary byte, insert, erase), from a fixed
// seed so that any failure replays exactly.
void ReplayWithMutations(Target target, const std::string& seed, uint32_t rng_seed, int mutations) {
  Run(target, seed);
  const size_t step = seed.size() <= 512 ? 1 : seed.size() / 64;
  for (size_t length = 0; length < seed.size(); length += step) {
    Run(target, seed.substr(0, length));
  }
  std::mt19937 rng(rng_seed);
  const char kBoundary[] = {'\0', '\x01', '\x7f', '\x80', '\xff'};
  for (int m = 0; m < mutations; ++m) {
    std::string input = seed;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !input.empty(); ++e) {
      const size_t at = rng() % input.size();
      switch (rng() % 4) {
        case 0:
          input[at] = static_cast<char>(rng());
          break;
        case 1:
          input[at] = kBoundary[rng() % sizeof(kBoundary)];
          break;
        case 2:
          input.insert(at, 1, static_cast<char>(rng()));
          break;
        default:
          input.erase(at, 1);
          break;
      }
    }
    Run(target, input);
  }
}

void ReplayCorpus(const std::string& name, Target target, int mutations) {
  const std::vector<std::string> corpus = Corpus(name);
  ASSERT_FALSE(corpus.empty()) << "no seeds in tests/fuzz/corpus/" << name;
  for (size_t i = 0; i < corpus.size(); ++i) {
    SCOPED_TRACE("corpus/" + name + " file #" + std::to_string(i));
    ReplayWithMutations(target, corpus[i], static_cast<uint32_t>(1000 + i), mutations);
  }
}

TEST(FuzzCorpusReplayTest, Safetensors) { ReplayCorpus("safetensors", FuzzSafetensors, 300); }

TEST(FuzzCorpusReplayTest, RestrictedUnpickler) {
  ReplayCorpus("restricted_unpickler", FuzzRestrictedUnpickler, 300);
}

TEST(FuzzCorpusReplayTest, PthZip) { ReplayCorpus("pth_zip", FuzzPthZip, 100); }

TEST(FuzzCorpusReplayTest, PthStateDict) { ReplayCorpus("pth_state_dict", FuzzPthStateDict, 100); }

TEST(FuzzCorpusReplayTest, Cifar10Binary) { ReplayCorpus("cifar10_binary", FuzzCifar10Binary, 50); }

TEST(FuzzCorpusReplayTest, SweepConfig) { ReplayCorpus("sweep_config", FuzzSweepConfig, 300); }

// Few mutations: a mutated header may still declare an image of up to kMaxImagePixels, which
// takes a while to decode.
TEST(FuzzCorpusReplayTest, ImageFolder) { ReplayCorpus("image_folder", FuzzImageFolder, 20); }

TEST(FuzzCorpusReplayTest, TarGz) { ReplayCorpus("tar_gz", FuzzTarGz, 50); }

TEST(FuzzCorpusReplayTest, OnnxImport) {
  // The seeds must import, or the fuzzer would only ever explore the error paths.
  for (const char* seed : {"branches_opset13.onnx", "conv_bn_relu_opset11_bn_kept.onnx",
                           "conv_bn_relu_opset17_bn_folded.onnx"}) {
    const std::string bytes = ReadFile(std::string("tests/fuzz/corpus/onnx_import/") + seed);
    const auto graph = ImportOnnx(bytes, ImportOptions{});
    EXPECT_TRUE(graph.ok()) << seed << ": " << graph.status();
  }
  ReplayCorpus("onnx_import", FuzzOnnxImport, 200);
}

// Found by image_folder_fuzzer (a timeout): a 299-byte JPEG whose frame header declares
// 14895 x 12259 pixels; OpenCV allocated the 548 MB buffer and libjpeg filled it with gray from
// almost no data, and converting it took over 10 s under the sanitizers. DecodeImage now refuses
// headers beyond kMaxImagePixels (PIL's decompression-bomb limit) before decoding.
TEST(FuzzRegressionTest, JpegDeclaringTooManyPixelsIsRefusedBeforeDecoding) {
  const std::string jpeg =
      ReadFile("tests/fuzz/corpus/image_folder/regression_jpeg_declaring_182_megapixels");
  ASSERT_EQ(jpeg.size(), 299u);
  const auto image = data::DecodeImage(jpeg, "bomb.jpg");
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument) << image.status();
  EXPECT_NE(image.status().message().find("image bomb.jpg: 14895x12259 exceeds the decoding limit"),
            std::string::npos)
      << image.status();
}

// Found by pth_state_dict_fuzzer: two tensors share storage "0", the second declaring 135
// elements where the first (and the archive) has 64; the loader used to bound the second tensor by
// 135 and read past the 256 cached bytes. Now DataLoss naming the storage. (The replay above only
// catches the overflow under ASan; this checks the Status under any build.)
TEST(FuzzRegressionTest, StorageReusedWithLargerNumelIsDataLoss) {
  const std::string pickle =
      ReadFile("tests/fuzz/corpus/pth_state_dict/regression_storage_reused_with_larger_numel");
  ASSERT_FALSE(pickle.empty());
  const std::string zip = TorchZipWithPickle(pickle);
  const std::string path =
      WriteFuzzFile("regression", reinterpret_cast<const uint8_t*>(zip.data()), zip.size());
  const auto loaded = pth::LoadPth(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss) << loaded.status();
  EXPECT_NE(loaded.status().message().find("storage '0' is referenced as 135 elements"),
            std::string::npos)
      << loaded.status();
}

// Both ONNX findings below are 5,681-byte mutations of branches_opset13.onnx that now end in the
// same place: a Pad fed a one-element width list, InvalidArgument naming the Pad.
void ExpectPadWidthError(const std::string& corpus_file) {
  const std::string model = ReadFile("tests/fuzz/corpus/onnx_import/" + corpus_file);
  ASSERT_EQ(model.size(), 5681u);
  const auto graph = ImportOnnx(model, ImportOptions{});
  ASSERT_FALSE(graph.ok());
  EXPECT_EQ(graph.status().code(), absl::StatusCode::kInvalidArgument) << graph.status();
  EXPECT_NE(graph.status().message().find("(Pad): pads [0,0] need 8 entries"), std::string::npos)
      << graph.status();
}

// Found by onnx_import_fuzzer (UBSan): a mutated branches_opset13.onnx whose folded integer Slice
// has a step of -(2^63 - 1); counting its elements overflowed int64. Fixed in interchange/ (steps
// clamped to the axis length). By ONNX's rules that step takes one element of the pad-width
// list PyTorch computes, so the Pad fed by it has 2 widths instead of 2 x rank: InvalidArgument
// naming the Pad, with no undefined behaviour on the way (the replay runs it under the sanitizers).
TEST(FuzzRegressionTest, OnnxSliceStepNearInt64MinIsInvalidArgument) {
  ExpectPadWidthError("regression_slice_step_overflow");
}

// Found by onnx_import_fuzzer (std::length_error from vector::reserve in the integer-folding
// Gather, with signed-overflow checks off): the overflowing Slice count above became a negative
// element count. Fixed with the same clamp; the same one-element pad list as above results.
TEST(FuzzRegressionTest, OnnxFoldedGatherWithHostileSliceIsInvalidArgument) {
  ExpectPadWidthError("regression_gather_reserve_length_error");
}

// The observer seeds are regenerated here from SaveObserver, so they follow format changes; the
// checked-in corpus/observer_file (seeds from make_observer_seeds plus any regressions) too.
TEST(FuzzCorpusReplayTest, ObserverFile) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  auto seeds = ObserverSeedFiles(tmp != nullptr ? tmp : "/tmp");
  ASSERT_TRUE(seeds.ok()) << seeds.status();
  for (size_t i = 0; i < seeds->size(); ++i) {
    SCOPED_TRACE("observer seed " + (*seeds)[i].first);
    ReplayWithMutations(FuzzObserverFile, (*seeds)[i].second, static_cast<uint32_t>(2000 + i), 100);
  }
  ReplayCorpus("observer_file", FuzzObserverFile, 20);
}

}  // namespace
}  // namespace qlab::fuzz
