// `bazel run //experiments:ptq -- --export_onnx` end to end: the real binary runs a tiny PTQ
// (ResNet20 from the shared checkpoint, x86 quantizer, 32 calibration and 20 evaluation images)
// with a bare --export_onnx and --export_onnx_fp32, and then
//   - both ONNX files exist where the flag's help says (<out>/<model>.onnx, <model>_fp32.onnx);
//   - onnx.checker (Debian's python3-onnx, full check) accepts them;
//   - the record's "exports" section names each file with its real sha256 and size;
//   - a second run asking for the same file fails before doing any work and leaves it intact,
//     even with --overwrite (which replaces records, never exports).
// Plus the flag's path rules (OnnxExportPath / OnnxFp32Path) case by case.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/sha256.h"
#include "experiments/ptq.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qlab::experiments {
namespace {

std::string TestTmpDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return tmp != nullptr ? tmp : "/tmp";
}

TEST(PtqExportTest, PathRules) {
  EXPECT_EQ(OnnxExportPath("", "/r", "resnet20", false), "");
  EXPECT_EQ(OnnxExportPath("false", "/r", "resnet20", false), "");
  EXPECT_EQ(OnnxExportPath("0", "/r", "resnet20", true), "");
  EXPECT_EQ(OnnxExportPath("true", "/r", "resnet20", false), "/r/resnet20.onnx");
  EXPECT_EQ(OnnxExportPath("1", "/r", "resnet56", true), "/r/resnet56.onnx");
  EXPECT_EQ(OnnxExportPath("/x/m.onnx", "/r", "resnet20", false), "/x/m.onnx");
  EXPECT_EQ(OnnxExportPath("/x/m.onnx", "/r", "resnet20", true), "/x/m_resnet20.onnx");
  EXPECT_EQ(OnnxExportPath("/x/onnx", "/r", "resnet20", false), "/x/onnx/resnet20.onnx");
  EXPECT_EQ(OnnxExportPath("/x/onnx/", "/r", "resnet20", true), "/x/onnx/resnet20.onnx");
  EXPECT_EQ(OnnxFp32Path("/r/resnet20.onnx"), "/r/resnet20_fp32.onnx");
}

TEST(PtqExportTest, BinaryWritesRecordedOnnxFiles) {
  const std::string tmp = TestTmpDir();
  const std::string out = tmp + "/run";
  // Tests may not write into the workspace: the training archive is extracted under TEST_TMPDIR.
  const std::string command = absl::StrCat(
      "experiments/ptq --model=resnet20 --quantizer=x86 --calib_images=32 --eval_images=20 "
      "--batch_size=20 --sqnr_images=0 --timing_runs=0 --threads=2 --cache_dir=",
      tmp, "/cache --out=", out, " --export_onnx --export_onnx_fp32");
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  const std::string onnx = out + "/resnet20.onnx";
  const std::string fp32 = out + "/resnet20_fp32.onnx";
  ASSERT_TRUE(std::filesystem::exists(onnx)) << onnx;
  ASSERT_TRUE(std::filesystem::exists(fp32)) << fp32;
  const std::string check =
      absl::StrCat("/usr/bin/python3 interchange/onnx_check.py ", onnx, " ", fp32);
  EXPECT_EQ(std::system(check.c_str()), 0) << check << " (needs python3-onnx: tools/setup.sh)";

  std::ifstream record_file(out + "/resnet20.json");
  const nlohmann::json record = nlohmann::json::parse(record_file, nullptr, false);
  ASSERT_FALSE(record.is_discarded());
  ASSERT_TRUE(record.contains("exports")) << record.dump(2).substr(0, 2000);
  for (const auto& [key, path] : {std::pair{"onnx", onnx}, std::pair{"onnx_fp32", fp32}}) {
    SCOPED_TRACE(key);
    const nlohmann::json& entry = record["exports"][key];
    EXPECT_EQ(entry.value("path", ""), path);
    const absl::StatusOr<std::string> sha256 = Sha256File(path);
    ASSERT_TRUE(sha256.ok()) << sha256.status();
    EXPECT_EQ(entry.value("sha256", ""), *sha256);
    EXPECT_EQ(entry.value("bytes", int64_t{0}),
              static_cast<int64_t>(std::filesystem::file_size(path)));
  }
  // The converted model stores int8 weights where the FP32 one stores floats: about 4x smaller
  // (scales and zero points add a little), so anything above half the FP32 size is wrong.
  EXPECT_LT(std::filesystem::file_size(onnx), std::filesystem::file_size(fp32) / 2);

  // Asking again for the same file: refused before calibrating, the file untouched.
  const std::string before = Sha256File(onnx).value();
  const std::string again = absl::StrCat(
      "experiments/ptq --model=resnet20 --quantizer=x86 --cache_dir=", tmp, "/cache --out=", out,
      " --overwrite --export_onnx=", onnx, " 2>", tmp, "/again.txt");
  EXPECT_NE(std::system(again.c_str()), 0) << again;
  std::ifstream again_file(tmp + "/again.txt");
  const std::string message((std::istreambuf_iterator<char>(again_file)),
                            std::istreambuf_iterator<char>());
  EXPECT_NE(message.find("never replaced"), std::string::npos) << message;
  EXPECT_EQ(Sha256File(onnx).value(), before);
}

}  // namespace
}  // namespace qlab::experiments
