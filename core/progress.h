// ProgressLine: the one-line progress display of qlab's long jobs (calibration, evaluation,
// sweeps, training): count, rate and ETA.
//
// On a terminal the line is redrawn in place (carriage return) at most every 100 ms; when the
// stream is not a terminal (CI logs, files) a plain line is written every 10 % so that logs stay
// short. The clock is injectable so the formatting is tested without sleeping.
//
//   ProgressLine progress("eval resnet20", /*total=*/10000, "img");
//   for (...) progress.Advance(batch_size);
//   progress.Finish();   // "eval resnet20  10000/10000 img  2381.0 img/s  12.3 s"
#ifndef QLAB_CORE_PROGRESS_H_
#define QLAB_CORE_PROGRESS_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

namespace qlab {

class ProgressLine {
 public:
  using Clock = std::function<double()>;  // seconds, monotonic

  // `out` defaults to stderr; `interactive` defaults to isatty(out).
  ProgressLine(std::string label, int64_t total, std::string unit, FILE* out = stderr);
  ProgressLine(std::string label, int64_t total, std::string unit, FILE* out, bool interactive,
               Clock clock);

  void Advance(int64_t count);
  // Prints the final line (always, also when not interactive) with the total time.
  void Finish();

  // "label  done/total unit  rate unit/s  ETA m:ss" for the current state.
  std::string Line() const;

 private:
  void Print(bool final_line);

  std::string label_;
  int64_t total_;
  std::string unit_;
  FILE* out_;
  bool interactive_;
  Clock clock_;
  double start_;
  double last_print_ = -1.0;
  int last_decile_ = 0;
  int64_t done_ = 0;
  bool finished_ = false;
};

// "1:05", "12:00:07".
std::string FormatDuration(double seconds);

}  // namespace qlab

#endif  // QLAB_CORE_PROGRESS_H_
