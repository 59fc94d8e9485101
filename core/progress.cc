// ProgressLine (core/progress.h).
#include "core/progress.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <utility>

#include "absl/strings/str_format.h"

namespace qlab {
namespace {

double SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

ProgressLine::ProgressLine(std::string label, int64_t total, std::string unit, FILE* out)
    : ProgressLine(std::move(label), total, std::move(unit), out, isatty(fileno(out)) != 0,
                   SteadySeconds) {}

ProgressLine::ProgressLine(std::string label, int64_t total, std::string unit, FILE* out,
                           bool interactive, Clock clock)
    : label_(std::move(label)),
      total_(total),
      unit_(std::move(unit)),
      out_(out),
      interactive_(interactive),
      clock_(std::move(clock)),
      start_(clock_()) {}

std::string ProgressLine::Line() const {
  const double elapsed = clock_() - start_;
  const double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  std::string line =
      absl::StrFormat("%s  %d/%d %s  %.1f %s/s", label_, done_, total_, unit_, rate, unit_);
  if (finished_) {
    absl::StrAppendFormat(&line, "  %s", FormatDuration(elapsed));
  } else if (rate > 0 && total_ > done_) {
    absl::StrAppendFormat(&line, "  ETA %s",
                          FormatDuration(static_cast<double>(total_ - done_) / rate));
  }
  return line;
}

void ProgressLine::Print(bool final_line) {
  const std::string line = Line();
  if (interactive_) {
    // \033[K clears what a longer previous line left behind.
    std::fprintf(out_, "\r%s\033[K%s", line.c_str(), final_line ? "\n" : "");
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

void ProgressLine::Advance(int64_t count) {
  done_ += count;
  if (interactive_) {
    const double now = clock_();
    if (last_print_ < 0 || now - last_print_ >= 0.1) {
      last_print_ = now;
      Print(false);
    }
    return;
  }
  const int decile = total_ > 0 ? static_cast<int>(10 * done_ / total_) : 0;
  if (decile > last_decile_ && done_ < total_) {
    last_decile_ = decile;
    Print(false);
  }
}

void ProgressLine::Finish() {
  if (finished_) return;
  finished_ = true;
  Print(true);
}

}  // namespace qlab
