// Tests of TrainingLog (train/optim/training_log.h): a new log refuses an existing file, rows
// are flushed as written, floats round-trip, and resuming appends after validating the header.
#include "train/optim/training_log.h"

#include <sys/stat.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace qlab::train {
namespace {

std::string TestPath(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/" +
                          ::testing::UnitTest::GetInstance()->current_test_info()->name();
  ::mkdir(dir.c_str(), 0755);
  return dir + "/" + name;
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream bytes;
  bytes << file.rdbuf();
  return bytes.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << bytes;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

TEST(TrainingLogTest, CreateWritesHeaderAndFlushesEveryRow) {
  const std::string path = TestPath("log.csv");
  absl::StatusOr<TrainingLog> log = TrainingLog::Create(path);
  ASSERT_TRUE(log.ok()) << log.status();
  // The header is on disk before any row.
  EXPECT_EQ(ReadFile(path), std::string(kTrainingLogHeader) + "\n");

  TrainingLogRow row;
  row.step = 100;
  row.epoch = 0;
  row.loss = 2.0153768f;
  row.lr = 0.1f;
  row.train_accuracy = 0.25390625f;
  row.images_per_second = 1843.22f;
  ASSERT_TRUE(log->Append(row).ok());
  // Read while the log is still open: the row was flushed, not left in a buffer.
  const std::vector<std::string> lines = Lines(ReadFile(path));
  ASSERT_EQ(lines.size(), 2u);
  const std::vector<std::string> cells = absl::StrSplit(lines[1], ',');
  ASSERT_EQ(cells.size(), 7u);
  EXPECT_EQ(cells[0], "100");
  EXPECT_EQ(cells[1], "0");
  EXPECT_EQ(cells[5], "");  // test accuracy not measured at this row
  // Every printed float reads back as the same float.
  EXPECT_EQ(std::strtof(cells[2].c_str(), nullptr), *row.loss);
  EXPECT_EQ(std::strtof(cells[3].c_str(), nullptr), *row.lr);
  EXPECT_EQ(std::strtof(cells[4].c_str(), nullptr), *row.train_accuracy);
  EXPECT_EQ(std::strtof(cells[6].c_str(), nullptr), *row.images_per_second);
}

// %.9g round-trips every float32; checked on values whose shortest form needs all 9 digits.
TEST(TrainingLogTest, FloatsRoundTrip) {
  const float values[] = {0.1f,
                          1.0f / 3.0f,
                          std::nextafter(1.0f, 2.0f),
                          std::numeric_limits<float>::min(),
                          std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::max(),
                          -123456.789f};
  for (float v : values) {
    TrainingLogRow row;
    row.loss = v;
    const std::vector<std::string> cells = absl::StrSplit(FormatTrainingLogRow(row), ',');
    ASSERT_EQ(cells.size(), 7u);
    EXPECT_EQ(std::strtof(cells[2].c_str(), nullptr), v) << cells[2];
  }
  TrainingLogRow empty;
  empty.step = 7;
  empty.epoch = 1;
  EXPECT_EQ(FormatTrainingLogRow(empty), "7,1,,,,,");
}

TEST(TrainingLogTest, CreateRefusesAnExistingFile) {
  const std::string path = TestPath("log.csv");
  WriteFile(path, "results the user had\n");
  const absl::StatusOr<TrainingLog> log = TrainingLog::Create(path);
  EXPECT_EQ(log.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(log.status().message().find(path), absl::string_view::npos) << log.status();
  EXPECT_EQ(ReadFile(path), "results the user had\n");
}

TEST(TrainingLogTest, ResumeAppendsAfterTheExistingRows) {
  const std::string path = TestPath("log.csv");
  {
    absl::StatusOr<TrainingLog> log = TrainingLog::Create(path);
    ASSERT_TRUE(log.ok()) << log.status();
    TrainingLogRow row;
    row.step = 1;
    row.loss = 2.5f;
    ASSERT_TRUE(log->Append(row).ok());
  }
  const std::string before = ReadFile(path);
  absl::StatusOr<TrainingLog> resumed = TrainingLog::OpenForResume(path);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  TrainingLogRow row;
  row.step = 2;
  row.epoch = 1;
  row.test_accuracy = 0.5f;
  ASSERT_TRUE(resumed->Append(row).ok());
  const std::string after = ReadFile(path);
  ASSERT_EQ(after.substr(0, before.size()), before);  // nothing rewritten
  EXPECT_EQ(Lines(after).size(), 3u);
  EXPECT_EQ(Lines(after).back(), FormatTrainingLogRow(row));
}

TEST(TrainingLogTest, ResumeValidatesTheFile) {
  const absl::StatusOr<TrainingLog> missing = TrainingLog::OpenForResume(TestPath("absent.csv"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);

  const std::string other = TestPath("other.csv");
  WriteFile(other, "epoch,accuracy\n1,0.5\n");
  const absl::StatusOr<TrainingLog> wrong = TrainingLog::OpenForResume(other);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.status().message().find("epoch,accuracy"), absl::string_view::npos)
      << wrong.status();
  EXPECT_NE(wrong.status().message().find(other), absl::string_view::npos) << wrong.status();

  const std::string cut = TestPath("cut.csv");
  const std::string cut_content = std::string(kTrainingLogHeader) + "\n1,0,2.5,0.1,,,\n2,0,2.4";
  WriteFile(cut, cut_content);
  const absl::StatusOr<TrainingLog> partial = TrainingLog::OpenForResume(cut);
  EXPECT_EQ(partial.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadFile(cut), cut_content);  // left for the user to repair

  const std::string empty = TestPath("empty.csv");
  WriteFile(empty, "");
  EXPECT_EQ(TrainingLog::OpenForResume(empty).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qlab::train
