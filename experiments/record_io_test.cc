// Record files: atomic writes that refuse to overwrite, JSON read-back, CSV append with header
// checks and quoting; provenance fields from a real git repository made in the test.
#include "experiments/record_io.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "experiments/provenance.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qlab::experiments {
namespace {

using ::testing::HasSubstr;

std::string TempDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");  // Bazel's per-test scratch directory
  return tmp != nullptr ? tmp : "/tmp";
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(RecordIoTest, JsonRoundTripAndNoSilentOverwrite) {
  const std::string path = TempDir() + "/runs/a/record.json";  // parents created
  const nlohmann::json record = {{"model", "resnet20"}, {"top1", 91.5}};
  ASSERT_TRUE(WriteJsonFile(path, record, /*overwrite=*/false).ok());
  EXPECT_EQ(*ReadJsonFile(path), record);
  const absl::Status again = WriteJsonFile(path, {{"model", "other"}}, false);
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.message(), HasSubstr(path));
  EXPECT_EQ(*ReadJsonFile(path), record);  // untouched
  ASSERT_TRUE(WriteJsonFile(path, {{"model", "other"}}, /*overwrite=*/true).ok());
  EXPECT_EQ((*ReadJsonFile(path))["model"], "other");
  // No temporary files left behind.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(TempDir() + "/runs/a")) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST(RecordIoTest, MalformedJsonIsDataLoss) {
  const std::string path = TempDir() + "/bad.json";
  std::ofstream(path) << "{\"truncated\": ";
  EXPECT_EQ(ReadJsonFile(path).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadJsonFile(TempDir() + "/missing.json").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RecordIoTest, CsvAppendsUnderOneHeaderAndQuotes) {
  const std::string path = TempDir() + "/summary.csv";
  ASSERT_TRUE(AppendCsvRow(path, {"model", "note"}, {"resnet20", "plain"}).ok());
  ASSERT_TRUE(AppendCsvRow(path, {"model", "note"}, {"resnet56", "a, \"quoted\" note"}).ok());
  EXPECT_EQ(ReadAll(path),
            "model,note\nresnet20,plain\nresnet56,\"a, \"\"quoted\"\" note\"\n");
  const absl::Status other = AppendCsvRow(path, {"model", "top1"}, {"x", "1"});
  EXPECT_EQ(other.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(AppendCsvRow(path, {"model", "note"}, {"only one"}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ProvenanceTest, ReadsCommitAndDirtiness) {
  const std::string repo = TempDir() + "/repo";
  std::filesystem::create_directories(repo);
  const std::string git = "git -C " + repo + " ";
  ASSERT_EQ(std::system((git + "init -q && " + git + "-c user.name=t -c user.email=t@t commit -q "
                                                     "--allow-empty -m x")
                            .c_str()),
            0);
  Provenance p = CollectProvenance(repo);
  EXPECT_EQ(p.git_commit.size(), 40u);
  EXPECT_FALSE(p.git_dirty);
  std::ofstream(repo + "/f.txt") << "1";
  ASSERT_EQ(std::system((git + "add f.txt").c_str()), 0);
  p = CollectProvenance(repo);
  EXPECT_TRUE(p.git_dirty);
  EXPECT_GT(p.cpu_cores, 0);
  EXPECT_FALSE(p.highway_target.empty());
  // Not a repository: unknown, not an error.
  EXPECT_EQ(CollectProvenance(TempDir() + "/runs").git_commit, "unknown");
}

}  // namespace
}  // namespace qlab::experiments
