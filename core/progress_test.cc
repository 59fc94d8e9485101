// ProgressLine formatting and pacing, with a fake clock and a memory stream.
#include "core/progress.h"

#include <cstdio>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qlab {
namespace {

using ::testing::HasSubstr;

struct MemoryStream {
  char* data = nullptr;
  size_t size = 0;
  FILE* file = open_memstream(&data, &size);
  std::string Text() {
    std::fflush(file);
    return std::string(data, size);
  }
  ~MemoryStream() {
    std::fclose(file);
    free(data);
  }
};

TEST(ProgressLineTest, RateAndEta) {
  double now = 100.0;
  MemoryStream stream;
  ProgressLine p("eval", 1000, "img", stream.file, /*interactive=*/false, [&] { return now; });
  now = 110.0;
  p.Advance(250);  // 25 img/s; 750 left -> 30 s
  EXPECT_EQ(p.Line(), "eval  250/1000 img  25.0 img/s  ETA 0:30");
  now = 140.0;
  p.Advance(750);
  p.Finish();
  EXPECT_THAT(stream.Text(), HasSubstr("eval  1000/1000 img  25.0 img/s  0:40\n"));
}

TEST(ProgressLineTest, NonInteractiveWritesAtMostOneLinePerTenth) {
  double now = 0.0;
  MemoryStream stream;
  ProgressLine p("calib", 100, "img", stream.file, /*interactive=*/false, [&] { return now; });
  for (int i = 0; i < 100; ++i) {
    now += 1.0;
    p.Advance(1);
  }
  p.Finish();
  const std::string text = stream.Text();
  int lines = 0;
  for (const char c : text) lines += c == '\n';
  EXPECT_EQ(lines, 10);  // 10%, 20%, ..., 90%, then the final line
  EXPECT_EQ(text.find('\r'), std::string::npos);
}

TEST(ProgressLineTest, InteractiveRedrawsInPlaceAndThrottles) {
  double now = 0.0;
  MemoryStream stream;
  ProgressLine p("train", 10, "step", stream.file, /*interactive=*/true, [&] { return now; });
  p.Advance(1);  // printed
  now += 0.01;
  p.Advance(1);  // within 100 ms: not printed
  now += 0.2;
  p.Advance(1);  // printed
  const std::string text = stream.Text();
  int redraws = 0;
  for (const char c : text) redraws += c == '\r';
  EXPECT_EQ(redraws, 2);
  EXPECT_EQ(text.find('\n'), std::string::npos);
}

TEST(FormatDurationTest, Formats) {
  EXPECT_EQ(FormatDuration(65), "1:05");
  EXPECT_EQ(FormatDuration(43207), "12:00:07");
  EXPECT_EQ(FormatDuration(-1), "?");
}

}  // namespace
}  // namespace qlab
