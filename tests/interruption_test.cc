// Ctrl-C in the middle of a long run, on the real binaries: //experiments:sweep and
// //experiments:train are started as child processes (posix_spawn, found in the test's
// runfiles), sent SIGINT once their first result is on disk (a sweep's first record, a training
// run's first checkpoint), and then checked:
//   * every file left is whole: JSON parses, CSV rows have all their fields and a line end,
//     checkpoints load; no temporary file is left beside them;
//   * --resume finishes the run, and its results equal those of an uninterrupted run of the same
//     config apart from timings (records, summary.csv; the final checkpoint's tensors and
//     momentum bit for bit, the training log without its images/s column).
// Small but real runs on the shared data (ResNet20 from the shared checkpoint; a few hundred
// images), so that the binaries' own I/O, signal handling and resume paths are what is tested.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "experiments/ptq.h"
#include "experiments/record_io.h"
#include "gtest/gtest.h"
#include "tests/checkpoint_expectations.h"
#include "nlohmann/json.hpp"
#include "train/optim/checkpoint.h"

extern char** environ;

namespace qlab::experiments {
namespace {

namespace fs = std::filesystem;

std::string TmpDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return tmp != nullptr ? tmp : "/tmp";
}

// A binary of this workspace in the test's runfiles (the test's `data`).
std::string Binary(const std::string& label_path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir != nullptr && workspace != nullptr) {
    return absl::StrCat(srcdir, "/", workspace, "/", label_path);
  }
  return label_path;  // run by hand from the runfiles folder
}

class Child {
 public:
  explicit Child(std::vector<std::string> args) {
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    spawned_ = posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) == 0;
  }
  ~Child() {
    if (spawned_ && !waited_) {
      kill(pid_, SIGKILL);
      Wait();
    }
  }
  bool spawned() const { return spawned_; }
  void Signal(int sig) { kill(pid_, sig); }
  int Wait() {
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    waited_ = true;
    return status;
  }
  // True once `done` holds, false if the child exited first or `timeout` passed.
  bool PollUntil(const std::function<bool()>& done, std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (done()) return true;
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        waited_ = true;
        return done();
      }
      // Polling every 20 ms: a sweep run or a training epoch takes seconds, so the signal
      // reliably lands in the middle of the next one.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

 private:
  pid_t pid_ = 0;
  bool spawned_ = false;
  bool waited_ = false;
};

// Exit status 0, or a readable description of what happened instead.
std::string Describe(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("status ", status);
}

int RunToEnd(const std::vector<std::string>& args) {
  Child child(args);
  if (!child.spawned()) return -1;
  return child.Wait();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code error;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, error)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool IsTemporary(const std::string& name) {
  return absl::StrContains(name, ".tmp") || absl::StrContains(name, "-tmp");
}

// Every row of a CSV file ends with a newline and has the header's number of fields (none of
// qlab's CSV fields written here contain commas).
void ExpectWholeCsv(const std::string& path) {
  const std::string text = ReadFile(path);
  ASSERT_FALSE(text.empty()) << path;
  EXPECT_EQ(text.back(), '\n') << path << ": the last row is cut";
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  const size_t fields = std::vector<std::string>(absl::StrSplit(lines[0], ',')).size();
  for (const std::string& line : lines) {
    EXPECT_EQ(std::vector<std::string>(absl::StrSplit(line, ',')).size(), fields)
        << path << ": row \"" << line << "\"";
  }
}

// CSV rows without the column named `drop` (a timing).
std::vector<std::string> CsvWithout(const std::string& path, const std::string& drop) {
  std::vector<std::string> lines = absl::StrSplit(ReadFile(path), '\n', absl::SkipEmpty());
  std::vector<std::string> out;
  if (lines.empty()) return out;
  const std::vector<std::string> header = absl::StrSplit(lines[0], ',');
  const size_t column = std::find(header.begin(), header.end(), drop) - header.begin();
  for (const std::string& line : lines) {
    std::vector<std::string> fields = absl::StrSplit(line, ',');
    if (column < fields.size()) fields.erase(fields.begin() + column);
    out.push_back(absl::StrJoin(fields, ","));
  }
  return out;
}

// --- sweep -----------------------------------------------------------------------------------

constexpr int kSweepRuns = 4;

std::string WriteSweepConfig() {
  // Four ResNet20 runs of a few seconds each (one per quantizer and granularity mix).
  const nlohmann::json config = {{"models", {"resnet20"}},
                                 {"quantizers", {"xnnpack", "x86"}},
                                 {"weight_granularities", {"per_channel", "per_tensor"}},
                                 {"calibrators", {"minmax"}},
                                 {"calib_images", 32},
                                 {"eval_images", 100},
                                 {"batch_size", 50},
                                 {"timing_runs", 0},
                                 {"sqnr_images", 4},
                                 {"threads", 2}};
  const std::string path = TmpDir() + "/interrupt_sweep.json";
  std::ofstream(path) << config.dump(2);
  return path;
}

std::vector<std::string> SweepArgs(const std::string& config, const std::string& out, bool resume) {
  std::vector<std::string> args = {Binary("experiments/sweep"), "--config=" + config,
                                   "--out=" + out, "--cache_dir=" + TmpDir() + "/cache"};
  if (resume) args.push_back("--resume");
  return args;
}

std::vector<std::string> RecordFiles(const std::string& dir) {
  std::vector<std::string> records;
  for (const std::string& name : FilesIn(dir)) {
    if (absl::EndsWith(name, ".json") && name != "sweep_config.json") records.push_back(name);
  }
  return records;
}

TEST(InterruptionTest, InterruptedSweepKeepsWholeRecordsAndResumesToTheSameResults) {
  const std::string config = WriteSweepConfig();
  const std::string full = TmpDir() + "/sweep_full";
  const std::string cut = TmpDir() + "/sweep_cut";

  // The uninterrupted reference (also extracts the training archive into the scratch cache).
  const int full_status = RunToEnd(SweepArgs(config, full, /*resume=*/false));
  ASSERT_EQ(Describe(full_status), "exit 0");
  ASSERT_EQ(RecordFiles(full).size(), static_cast<size_t>(kSweepRuns));

  {
    Child child(SweepArgs(config, cut, /*resume=*/false));
    ASSERT_TRUE(child.spawned());
    ASSERT_TRUE(
        child.PollUntil([&] { return !RecordFiles(cut).empty(); }, std::chrono::seconds(300)))
        << "no record appeared";
    child.Signal(SIGINT);
    const int status = child.Wait();
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << Describe(status);
  }
  // Interrupted midway: some records, no summary or report, nothing half-written.
  const std::vector<std::string> kept = RecordFiles(cut);
  ASSERT_GE(kept.size(), 1u);
  ASSERT_LT(kept.size(), static_cast<size_t>(kSweepRuns)) << "the sweep finished before SIGINT";
  for (const std::string& name : FilesIn(cut)) {
    EXPECT_FALSE(IsTemporary(name)) << name;
    if (absl::EndsWith(name, ".json")) {
      EXPECT_TRUE(ReadJsonFile(cut + "/" + name).ok()) << name;
    }
  }
  EXPECT_FALSE(FileExists(cut + "/summary.csv"));
  EXPECT_FALSE(FileExists(cut + "/report.html"));
  const std::string kept_bytes = ReadFile(cut + "/" + kept[0]);

  const int resume_status = RunToEnd(SweepArgs(config, cut, /*resume=*/true));
  ASSERT_EQ(Describe(resume_status), "exit 0");
  // The records finished before the signal are kept as they were, not rerun.
  EXPECT_EQ(ReadFile(cut + "/" + kept[0]), kept_bytes);
  ASSERT_EQ(RecordFiles(cut), RecordFiles(full));
  for (const std::string& name : RecordFiles(full)) {
    SCOPED_TRACE(name);
    const auto a = ReadJsonFile(full + "/" + name);
    const auto b = ReadJsonFile(cut + "/" + name);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(DeterministicPart(*a).dump(2), DeterministicPart(*b).dump(2));
  }
  ExpectWholeCsv(cut + "/summary.csv");
  EXPECT_EQ(CsvWithout(cut + "/summary.csv", "fp32_batch1_median_ms"),
            CsvWithout(full + "/summary.csv", "fp32_batch1_median_ms"));
  EXPECT_TRUE(FileExists(cut + "/report.html"));
  for (const std::string& name : FilesIn(cut)) EXPECT_FALSE(IsTemporary(name)) << name;
}

// --- training --------------------------------------------------------------------------------

constexpr int kEpochs = 3;

std::vector<std::string> TrainArgs(const std::string& dir, bool resume) {
  // ResNet20 from scratch, 3 epochs of 192 images: about a second per epoch on 2 cores.
  std::vector<std::string> args = {Binary("experiments/train"),
                                   "--model=resnet20",
                                   absl::StrCat("--epochs=", kEpochs),
                                   "--train_images=192",
                                   "--train_batch_size=32",
                                   "--epoch_eval_images=100",
                                   "--lr=0.05",
                                   "--warmup_epochs=0.5",
                                   "--seed=7",
                                   "--log_every_steps=1",
                                   "--threads=2",
                                   "--cache_dir=" + TmpDir() + "/cache"};
  args.push_back(resume ? "--resume=" + dir : "--out=" + dir);
  return args;
}

std::string CheckpointPath(const std::string& dir, int epoch) {
  return absl::StrCat(dir, "/", train::CheckpointFileName(epoch));
}

TEST(InterruptionTest, InterruptedTrainingResumesFromItsCheckpointToTheSameWeights) {
  const std::string full = TmpDir() + "/train_full";
  const std::string cut = TmpDir() + "/train_cut";
  const int full_status = RunToEnd(TrainArgs(full, /*resume=*/false));
  ASSERT_EQ(Describe(full_status), "exit 0");
  ASSERT_TRUE(FileExists(CheckpointPath(full, kEpochs)));

  {
    Child child(TrainArgs(cut, /*resume=*/false));
    ASSERT_TRUE(child.spawned());
    ASSERT_TRUE(child.PollUntil([&] { return FileExists(CheckpointPath(cut, 1)); },
                                std::chrono::seconds(300)))
        << "no checkpoint appeared";
    child.Signal(SIGINT);
    const int status = child.Wait();
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << Describe(status);
  }
  ASSERT_FALSE(FileExists(CheckpointPath(cut, kEpochs))) << "training finished before SIGINT";
  EXPECT_FALSE(FileExists(cut + "/record.json"));
  for (const std::string& name : FilesIn(cut)) {
    SCOPED_TRACE(name);
    EXPECT_FALSE(IsTemporary(name));
    if (absl::EndsWith(name, ".safetensors")) {
      EXPECT_TRUE(train::LoadCheckpoint(cut + "/" + name).ok());
    }
  }
  ExpectWholeCsv(cut + "/log.csv");

  const int resume_status = RunToEnd(TrainArgs(cut, /*resume=*/true));
  ASSERT_EQ(Describe(resume_status), "exit 0");
  for (int epoch = 1; epoch <= kEpochs; ++epoch) {
    SCOPED_TRACE(absl::StrCat("epoch ", epoch));
    test_support::ExpectSameCheckpoint(CheckpointPath(full, epoch), CheckpointPath(cut, epoch));
  }
  ExpectWholeCsv(cut + "/log.csv");
  EXPECT_EQ(CsvWithout(cut + "/log.csv", "images_per_second"),
            CsvWithout(full + "/log.csv", "images_per_second"));
  const auto full_record = ReadJsonFile(full + "/record.json");
  const auto cut_record = ReadJsonFile(cut + "/record.json");
  ASSERT_TRUE(full_record.ok() && cut_record.ok());
  EXPECT_EQ((*cut_record)["results"].dump(), (*full_record)["results"].dump());
  for (const std::string& name : FilesIn(cut)) EXPECT_FALSE(IsTemporary(name)) << name;
}

}  // namespace
}  // namespace qlab::experiments
