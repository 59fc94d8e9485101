// Histogram collection and the range methods (see histogram.h).
//
// The kTorch113 paths reproduce PyTorch 1.13's float32 arithmetic operation by operation (its
// tensors are float32, its Python scalars double; each comment names the PyTorch expression), so
// that ranges, and therefore scales, come out bit-identical. The batch binning is the Highway
// kernel of kernels/histogram, which implements torch.histc's bin rule.
#include "calibration/histogram.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <limits>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/histogram/histogram.h"
#include "kernels/histogram/torch_l2_error.h"
#include "kernels/histogram/torch_l2_error_ref.h"
#include "kernels/quantize/quantize.h"

namespace qlab::calibration {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// How many parts a batch of n elements is split into (see kParallelMinElements). The hardware
// thread count is read once: glibc's hardware_concurrency() opens and reads
// /sys/devices/system/cpu/online, 5 us a call here, paid by every pass of every batch otherwise.
int WorkersFor(size_t n) {
  if (n < kParallelMinElements) return 1;
  static const int hardware = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(hardware, 1, kMaxWorkers);
}

// Spins (with the CPU's pause hint) until done() or `limit` has passed; returns done().
template <typename Done>
bool SpinUntil(const Done& done, std::chrono::microseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    if (std::chrono::steady_clock::now() >= deadline) return done();
  }
}

// The helper threads of RunParts: started on first use and kept for the life of the process
// (the object is never destroyed, so no exit-time join can hang), because starting a thread costs
// 15-30 us on this machine against a few us to wake one, and a calibration step runs a batch's
// two passes back to back. One caller at a time: a caller that finds them in use (observers
// calibrating on several threads at once) runs its job alone, and so does a job that starts
// another one (ParallelTasks' tasks running batch passes): it already has the helpers.
//
// Waiting spins for kSpin before it sleeps, on both sides: a helper that has just finished a job
// watches for the next one, and the caller watches for the helpers to finish. A batch takes two
// or three passes in a row (range, bins), and a sleeping thread takes tens of microseconds to
// wake (a futex wake, then the scheduler, on a virtual machine an interrupt to an idle vCPU),
// which at 1 M elements was a quarter of the observer's time. The spin is bounded so that a
// process that has stopped calibrating gives its cores back at once.
class Helpers {
 public:
  static Helpers& Get() {
    static Helpers* const helpers = new Helpers(kMaxWorkers - 1);
    return *helpers;
  }

  // Runs job(0) on the caller's thread and job(1) .. job(count) on the helpers that pick it up
  // before job(0) returns; the slots of helpers that did not (their core busy with another
  // process) are withdrawn, so a helper that never got a core does not delay the caller. One
  // that started and was then preempted does: the caller waits for every job that started, as
  // it must (the job reads the caller's data). `job` must therefore be complete by itself
  // whichever slots run: RunParts' workers claim chunks from a shared count until none is left.
  void Run(int count, const std::function<void(int)>& job) {
    if (inside_job_ || count <= 0 || helpers_ == 0) {
      job(0);
      return;
    }
    std::unique_lock<std::mutex> exclusive(run_mu_, std::try_to_lock);
    if (!exclusive.owns_lock()) {
      job(0);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &job;
      unclaimed_.store(std::min(count, helpers_), std::memory_order_relaxed);
    }
    wake_.notify_all();
    inside_job_ = true;
    job(0);
    inside_job_ = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      unclaimed_.store(0, std::memory_order_relaxed);  // no helper claims a slot from here on
    }
    if (!SpinUntil([this] { return running_.load(std::memory_order_acquire) == 0; }, kSpin)) {
      std::unique_lock<std::mutex> lock(mu_);
      idle_.wait(lock, [this] { return running_.load(std::memory_order_relaxed) == 0; });
    }
    std::lock_guard<std::mutex> lock(mu_);
    job_ = nullptr;
  }

 private:
  static constexpr std::chrono::microseconds kSpin{200};

  explicit Helpers(int helpers) : helpers_(helpers) {
    for (int i = 0; i < helpers; ++i) std::thread([this] { Loop(); }).detach();
  }

  void Loop() {
    for (;;) {
      SpinUntil([this] { return unclaimed_.load(std::memory_order_relaxed) > 0; }, kSpin);
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [this] { return unclaimed_.load(std::memory_order_relaxed) > 0; });
      // count, count - 1, ..., 1
      const int slot = unclaimed_.fetch_sub(1, std::memory_order_relaxed);
      const std::function<void(int)>* job = job_;
      running_.fetch_add(1, std::memory_order_relaxed);
      lock.unlock();
      inside_job_ = true;
      (*job)(slot);
      inside_job_ = false;
      lock.lock();
      // Release: the caller, which may read running_ without the lock, then sees the job's
      // writes.
      if (running_.fetch_sub(1, std::memory_order_release) == 1) idle_.notify_all();
    }
  }

  // Whether this thread is running a job (nested Run calls run alone, see above).
  static thread_local bool inside_job_;
  const int helpers_;
  std::mutex run_mu_;  // held by the caller whose job the helpers serve
  std::mutex mu_;      // guards job_; unclaimed_ and running_ change only under it
  std::condition_variable wake_;
  std::condition_variable idle_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<int> unclaimed_{0};  // job slots not yet taken by a helper (read unlocked to spin)
  std::atomic<int> running_{0};    // helpers inside a job (read unlocked to spin)
};

thread_local bool Helpers::inside_job_ = false;

// Runs part(w, begin, end) over [0, n) cut into chunks of ParallelChunk(n) elements; returns when
// all are done. Worker 0 (the caller's thread) takes chunks from the front of the batch forwards,
// worker 1 (the helper) from the back backwards, until they meet: a shared count of the chunks
// claimed keeps them from taking the same one. Taking chunks instead of fixed halves keeps a busy
// core from holding half the batch hostage: if the helper is not scheduled (another process
// holds its core), the caller simply takes every chunk, as a single thread would. Taking them
// from the two ends rather than in turn from one counter keeps each thread's reads contiguous:
// the 16 M range pass, which streams from memory, took 0.67-0.73 ms that way against 0.79-0.95
// for the same chunks handed out in turn (two-thread harness, medians of 20).
template <typename Part>
void RunParts(size_t n, int workers, const Part& part) {
  static_assert(kMaxWorkers <= 2, "RunParts hands chunks out from the batch's two ends");
  const size_t chunk = ParallelChunk(n);
  const size_t chunks = (n + chunk - 1) / chunk;
  std::atomic<size_t> claimed{0};
  const std::function<void(int)> work = [&](int w) {
    for (size_t taken = 0;; ++taken) {
      if (claimed.fetch_add(1, std::memory_order_relaxed) >= chunks) return;
      const size_t begin = (w == 0 ? taken : chunks - 1 - taken) * chunk;
      part(w, begin, std::min(n, begin + chunk));
    }
  };
  Helpers::Get().Run(workers - 1, work);
}

// kernels::HistogramAccumulate over x[0, n), split over the workers, each into its own counts
// (integer counts add exactly), then summed into `counts`.
void AccumulateParallel(const float* x, size_t n, const kernels::HistogramBinning& binning,
                        int64_t* counts) {
  const int workers = WorkersFor(n);
  if (workers == 1) {
    kernels::HistogramAccumulate(x, n, binning, counts);
    return;
  }
  std::vector<std::vector<int64_t>> parts(static_cast<size_t>(workers),
                                          std::vector<int64_t>(binning.bins, 0));
  RunParts(n, workers, [&](int w, size_t begin, size_t end) {
    kernels::HistogramAccumulate(x + begin, end - begin, binning,
                                 parts[static_cast<size_t>(w)].data());
  });
  for (const std::vector<int64_t>& part : parts) {
    for (size_t j = 0; j < binning.bins; ++j) counts[j] += part[j];
  }
}

// The histogram kernel over every run of `values`: one run (the per-tensor case) split over the
// workers; several (a channel of an NCHW tensor), run after run on the calling thread.
void AccumulateRuns(const ValueRuns& values, const kernels::HistogramBinning& binning,
                    int64_t* counts) {
  if (values.runs == 1) {
    AccumulateParallel(values.x, values.run_length, binning, counts);
    return;
  }
  for (size_t r = 0; r < values.runs; ++r) {
    kernels::HistogramAccumulate(values.x + r * values.run_stride, values.run_length, binning,
                                 counts);
  }
}

// The number of finite values (a point mass histogram's count).
size_t CountFinite(const ValueRuns& values) {
  size_t finite = 0;
  for (size_t r = 0; r < values.runs; ++r) {
    const float* run = values.x + r * values.run_stride;
    for (size_t i = 0; i < values.run_length; ++i) finite += std::isfinite(run[i]) ? 1 : 0;
  }
  return finite;
}

// kernels::HistogramAccumulateIfInside over x[0, n), split over the workers as above. A worker
// that finds an element outside [inside_lo, inside_hi] stops: the others skip the chunks left.
// True with the counts added to `counts`, or false with `counts` unchanged.
bool AccumulateIfInsideParallel(const float* x, size_t n, const kernels::HistogramBinning& binning,
                                float inside_lo, float inside_hi, int64_t* counts) {
  const int workers = WorkersFor(n);
  if (workers == 1) {
    return kernels::HistogramAccumulateIfInside(x, n, binning, inside_lo, inside_hi, counts);
  }
  // The first values on the calling thread alone: a batch that widens the range usually shows
  // it there, and then no helper is woken (and possibly waited for) for nothing.
  constexpr size_t kProbe = size_t{1} << 14;
  std::vector<int64_t> probe(binning.bins, 0);
  if (!kernels::HistogramAccumulateIfInside(x, kProbe, binning, inside_lo, inside_hi,
                                            probe.data())) {
    return false;
  }
  x += kProbe;
  n -= kProbe;  // n >= kParallelMinElements > kProbe here
  std::vector<std::vector<int64_t>> parts(static_cast<size_t>(workers),
                                          std::vector<int64_t>(binning.bins, 0));
  parts[0] = std::move(probe);
  std::atomic<bool> outside{false};
  RunParts(n, workers, [&](int w, size_t begin, size_t end) {
    if (outside.load(std::memory_order_relaxed)) return;
    if (!kernels::HistogramAccumulateIfInside(x + begin, end - begin, binning, inside_lo, inside_hi,
                                              parts[static_cast<size_t>(w)].data())) {
      outside.store(true, std::memory_order_relaxed);
    }
  });
  if (outside.load()) return false;
  for (const std::vector<int64_t>& part : parts) {
    for (size_t j = 0; j < binning.bins; ++j) counts[j] += part[j];
  }
  return true;
}

// torch.histc(x, bins, min=lo, max=hi) added to `counts` (as float32 counts, like PyTorch's).
// `lo`/`hi` are the doubles histc receives; equal bounds fall back to the data's range, then to
// [lo - 1, hi + 1], as histc does.
std::vector<double> Histc(const ValueRuns& values, int bins, double lo, double hi,
                          float data_min, float data_max) {
  if (lo == hi) {
    lo = data_min;
    hi = data_max;
  }
  if (lo == hi) {
    lo -= 1;
    hi += 1;
  }
  std::vector<int64_t> counts(static_cast<size_t>(bins), 0);
  const kernels::HistogramBinning binning{static_cast<float>(lo), static_cast<float>(hi),
                                          static_cast<uint32_t>(bins)};
  if (binning.lo < binning.hi) {
    AccumulateRuns(values, binning, counts.data());
  } else {
    // Bounds that collapse in float32 (a range narrower than one float ulp): one bin holds all.
    counts[0] += static_cast<int64_t>(CountFinite(values));
  }
  // float32 counts, as PyTorch's histogram buffer holds them.
  return std::vector<double>(counts.begin(), counts.end());
}

// Spreads `mass` uniformly over [a, b] into `dst` (bins of `width` from `lo`); a point mass
// (a == b) goes to the bin holding it. Positions outside the grid are clamped into it.
void Deposit(std::vector<double>& dst, double lo, double width, double a, double b,
             double mass) {
  if (mass == 0.0) return;
  const int n = static_cast<int>(dst.size());
  auto bin_of = [&](double v) {
    if (!(width > 0.0)) return 0;
    const double pos = std::floor((v - lo) / width);
    return static_cast<int>(std::clamp(pos, 0.0, static_cast<double>(n - 1)));
  };
  if (!(b > a)) {
    dst[static_cast<size_t>(bin_of(a))] += mass;
    return;
  }
  const int first = bin_of(a), last = bin_of(b);
  if (first == last) {
    dst[static_cast<size_t>(first)] += mass;
    return;
  }
  const double density = mass / (b - a);
  double deposited = 0.0;
  for (int k = first; k < last; ++k) {
    const double edge_lo = k == first ? a : lo + k * width;
    const double edge_hi = lo + (k + 1) * width;
    const double part = density * std::max(0.0, edge_hi - edge_lo);
    dst[static_cast<size_t>(k)] += part;
    deposited += part;
  }
  // The remainder, so that the mass is conserved exactly whatever the rounding above.
  dst[static_cast<size_t>(last)] += mass - deposited;
}

// `s + v + v + ... + v` (m times) summed left to right in double, as PyTorch's cumsum does.
// When every partial sum is exactly representable (s and v multiples of v's float32 ulp, and the
// magnitudes below 2^53 of those ulps) the result is exactly s + m * v, computed in one step;
// otherwise the additions run one by one.
double AddRepeated(double s, double v, int64_t m) {
  if (v == 0.0) return s;
  int exponent = 0;
  std::frexp(v, &exponent);
  const double ulp = std::ldexp(1.0, exponent - 24);  // float32's ulp at v (v is a float value)
  // s is a multiple of the power of two `ulp` iff s / ulp (exact: a change of exponent) is an
  // integer; cheaper than fmod, which this loop once spent much of its time in.
  const double s_in_ulps = s / ulp;
  if (std::trunc(s_in_ulps) == s_in_ulps &&
      std::abs(s) + static_cast<double>(m) * std::abs(v) < std::ldexp(ulp, 53) &&
      std::abs(v) >= std::numeric_limits<float>::min()) {
    return s + static_cast<double>(m) * v;
  }
  for (int64_t i = 0; i < m; ++i) s += v;
  return s;
}

}  // namespace

void ParallelTasks(size_t count, size_t total_elements, const std::function<void(size_t)>& task) {
  const int workers = count > 1 ? WorkersFor(total_elements) : 1;
  std::atomic<size_t> next{0};
  const std::function<void(int)> work = [&](int) {
    for (size_t i = next.fetch_add(1, std::memory_order_relaxed); i < count;
         i = next.fetch_add(1, std::memory_order_relaxed)) {
      task(i);
    }
  };
  Helpers::Get().Run(workers - 1, work);
}

BatchMinMax ParallelMinMax(const float* x, size_t n) {
  const int workers = WorkersFor(n);
  std::vector<kernels::MinMaxResult> parts(static_cast<size_t>(workers),
                                           kernels::MinMaxResult{kInf, -kInf, 0});
  RunParts(n, workers, [&](int w, size_t begin, size_t end) {
    const kernels::MinMaxResult chunk = kernels::MinMax(x + begin, end - begin);
    kernels::MinMaxResult& mine = parts[static_cast<size_t>(w)];
    mine.min = std::min(mine.min, chunk.min);
    mine.max = std::max(mine.max, chunk.max);
    mine.nan_count += chunk.nan_count;
  });
  BatchMinMax r{kInf, -kInf, 0};
  for (const kernels::MinMaxResult& part : parts) {
    r.min = std::min(r.min, part.min);
    r.max = std::max(r.max, part.max);
    r.nan_count += part.nan_count;
  }
  return r;
}

std::vector<double> RebinExact(const std::vector<double>& counts, double lo, double hi,
                               int bins, double new_lo, double new_hi) {
  std::vector<double> out(static_cast<size_t>(bins), 0.0);
  const double new_width = (new_hi - new_lo) / bins;
  const double width = (hi - lo) / static_cast<double>(counts.size());
  for (size_t i = 0; i < counts.size(); ++i) {
    const double a = lo + static_cast<double>(i) * width;
    const double b = i + 1 == counts.size() ? hi : lo + static_cast<double>(i + 1) * width;
    Deposit(out, new_lo, new_width, a, b, counts[i]);
  }
  return out;
}

Histogram::Histogram(int bins, HistogramBinning binning)
    : binning_(binning), min_(kInf), max_(-kInf), counts_(static_cast<size_t>(bins), 0.0) {}

void Histogram::Reset() {
  min_ = kInf;
  max_ = -kInf;
  std::fill(counts_.begin(), counts_.end(), 0.0);
}

double Histogram::total() const {
  double t = 0.0;
  for (double c : counts_) t += c;
  return t;
}

void Histogram::Add(const float* x, size_t n, float batch_min, float batch_max) {
  Add(ValueRuns{x, 1, n, n}, batch_min, batch_max);
}

void Histogram::Add(const ValueRuns& values, float batch_min, float batch_max) {
  if (binning_ == HistogramBinning::kTorch113) {
    AddTorch113(values, batch_min, batch_max);
  } else {
    AddExact(values, batch_min, batch_max);
  }
}

bool Histogram::AddIfInsideRange(const ValueRuns& values) {
  // A point mass (min == max) is not speculated on: kTorch113 restarts after it, and kExact's
  // single bin is counted without the kernel.
  if (empty() || !(min_ < max_) || values.runs != 1) return false;
  const int bins = this->bins();
  kernels::HistogramBinning binning{min_, max_, static_cast<uint32_t>(bins)};
  if (binning_ == HistogramBinning::kTorch113) {
    // AddTorch113 for a batch inside [min_, max_]: the combined range is [min_, max_] before
    // _adjust_min_max, which must leave it unchanged (start_idx is then 0), or the batch
    // re-bins the old counts whatever its values.
    const float hist_bin_width =
        (max_ - min_) / static_cast<float>(static_cast<int64_t>(bins) * kUpsampleRate);
    const float grid = static_cast<float>(bins) * hist_bin_width;
    const int64_t downsample_rate = static_cast<int64_t>(std::ceil((max_ - min_) / grid));
    const float e = static_cast<float>(downsample_rate) * grid - (max_ - min_);
    if (max_ + e != max_) return false;
    // torch.histc's bounds; equal ones would fall back to the batch's own range.
    const double lo = std::trunc(static_cast<double>(min_));
    const double hi = std::trunc(static_cast<double>(max_));
    if (lo == hi) return false;
    binning.lo = static_cast<float>(lo);
    binning.hi = static_cast<float>(hi);
    if (!(binning.lo < binning.hi)) return false;
  }
  std::vector<int64_t> counts(static_cast<size_t>(bins), 0);
  if (!AccumulateIfInsideParallel(values.x, values.run_length, binning, min_, max_,
                                  counts.data())) {
    return false;
  }
  for (size_t i = 0; i < counts.size(); ++i) {
    if (binning_ == HistogramBinning::kTorch113) {
      // AddTorch113's same-range case: float32 counts, as PyTorch's buffer.
      counts_[i] =
          static_cast<float>(static_cast<float>(counts[i]) + static_cast<float>(counts_[i]));
    } else {
      counts_[i] += static_cast<double>(counts[i]);
    }
  }
  return true;
}

void Histogram::AddTorch113(const ValueRuns& values, float batch_min, float batch_max) {
  const int bins = this->bins();
  // `same_values = min_val.item() == max_val.item()`; uninitialized is +inf/-inf.
  if (empty() || min_ == max_) {
    min_ = batch_min;
    max_ = batch_max;
    // torch.histc(x, bins, min=int(min_val), max=int(max_val)): Python's int() truncates.
    counts_ = Histc(values, bins, std::trunc(static_cast<double>(min_)),
                    std::trunc(static_cast<double>(max_)), batch_min, batch_max);
    return;
  }
  float combined_min = std::min(batch_min, min_);
  float combined_max = std::max(batch_max, max_);
  // _adjust_min_max, float32 tensors throughout:
  //   hist_bin_width = (max_val - min_val) / (bins * upsample_rate)
  const float hist_bin_width =
      (max_ - min_) / static_cast<float>(static_cast<int64_t>(bins) * kUpsampleRate);
  //   downsample_rate = int(ceil((combined_max - combined_min) / (bins * hist_bin_width)))
  const float grid = static_cast<float>(bins) * hist_bin_width;
  const int64_t downsample_rate =
      static_cast<int64_t>(std::ceil((combined_max - combined_min) / grid));
  //   e = downsample_rate * (bins * hist_bin_width) - (combined_max - combined_min)
  const float e = static_cast<float>(downsample_rate) * grid - (combined_max - combined_min);
  combined_max = combined_max + e;
  //   start_idx = int(round((min_val - combined_min) / hist_bin_width)), half to even
  const int64_t start_idx =
      static_cast<int64_t>(std::nearbyint((min_ - combined_min) / hist_bin_width));

  std::vector<double> combined =
      Histc(values, bins, std::trunc(static_cast<double>(combined_min)),
            std::trunc(static_cast<double>(combined_max)), batch_min, batch_max);
  if (combined_min == min_ && combined_max == max_) {
    for (size_t i = 0; i < combined.size(); ++i) {
      combined[i] = static_cast<float>(static_cast<float>(combined[i]) +
                                       static_cast<float>(counts_[i]));
    }
  } else {
    // _combine_histograms: the old histogram repeated upsample_rate times per bin, placed at
    // start_idx in a zero array of bins * downsample_rate, integrated in double (cumsum,
    // sequentially) and sampled every downsample_rate; differences (the previous integral
    // stored through a float32 tensor) divided by upsample_rate, cast to float32 and added.
    const int64_t up = kUpsampleRate;
    const int64_t region_begin = start_idx;
    const int64_t region_end =
        std::min<int64_t>(start_idx + bins * up, static_cast<int64_t>(bins) * downsample_rate);
    double integral = 0.0;
    int64_t next = region_begin;  // next upsampled element not yet integrated
    float previous = 0.0f;        // shifted_integral_histogram, a float32 tensor
    for (int64_t k = 0; k < bins; ++k) {
      const int64_t sample = (k + 1) * downsample_rate;  // integrate elements [0, sample)
      while (next < region_end && next < sample) {
        const int64_t run = (next - region_begin) / up;
        const int64_t m = std::min({region_begin + (run + 1) * up, region_end, sample}) - next;
        const double v = static_cast<float>(counts_[static_cast<size_t>(run)]);
        integral = AddRepeated(integral, v, m);
        next += m;
      }
      const double interpolated = (integral - static_cast<double>(previous)) /
                                  static_cast<double>(up);
      combined[static_cast<size_t>(k)] =
          static_cast<float>(static_cast<float>(combined[static_cast<size_t>(k)]) +
                             static_cast<float>(interpolated));
      previous = static_cast<float>(integral);
    }
  }
  counts_ = std::move(combined);
  min_ = combined_min;
  max_ = combined_max;
}

void Histogram::AddExact(const ValueRuns& values, float batch_min, float batch_max) {
  const int bins = this->bins();
  const float new_min = empty() ? batch_min : std::min(batch_min, min_);
  const float new_max = empty() ? batch_max : std::max(batch_max, max_);
  if (!empty() && (new_min != min_ || new_max != max_)) {
    counts_ = RebinExact(counts_, min_, max_, bins, new_min, new_max);
  }
  min_ = new_min;
  max_ = new_max;
  if (min_ < max_) {
    std::vector<int64_t> counts(static_cast<size_t>(bins), 0);
    AccumulateRuns(values, {min_, max_, static_cast<uint32_t>(bins)}, counts.data());
    for (size_t i = 0; i < counts.size(); ++i) counts_[i] += static_cast<double>(counts[i]);
  } else {
    // A point mass: every finite value equals min_ (== max_).
    counts_[0] += static_cast<double>(CountFinite(values));
  }
}

absl::Status Histogram::Merge(const Histogram& other_ref) {
  if (other_ref.bins() != bins() || other_ref.binning() != binning_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot merge a histogram of ", other_ref.bins(), " bins into one of ", bins(),
        other_ref.binning() != binning_ ? " with another binning" : ""));
  }
  if (other_ref.empty()) return absl::OkStatus();
  const Histogram other = other_ref;  // a copy: merging a histogram into itself
  if (empty()) {
    *this = other;
    return absl::OkStatus();
  }
  const float lo = std::min(min_, other.min_), hi = std::max(max_, other.max_);
  std::vector<double> mine = (lo == min_ && hi == max_)
                                 ? counts_
                                 : RebinExact(counts_, min_, max_, bins(), lo, hi);
  const std::vector<double> theirs =
      (lo == other.min_ && hi == other.max_)
          ? other.counts_
          : RebinExact(other.counts_, other.min_, other.max_, bins(), lo, hi);
  for (size_t i = 0; i < mine.size(); ++i) mine[i] += theirs[i];
  counts_ = std::move(mine);
  min_ = lo;
  max_ = hi;
  return absl::OkStatus();
}

absl::StatusOr<Histogram> Histogram::FromParts(HistogramBinning binning, float min, float max,
                                               std::vector<double> counts) {
  if (counts.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat("histogram: ", counts.size(), " bins"));
  }
  Histogram h(static_cast<int>(counts.size()), binning);
  const bool empty = min == kInf && max == -kInf;
  if (!empty && !(std::isfinite(min) && std::isfinite(max) && min <= max)) {
    return absl::InvalidArgumentError(
        absl::StrCat("histogram: range [", min, ", ", max, "] is not a finite range"));
  }
  for (size_t i = 0; i < counts.size(); ++i) {
    if (!(counts[i] >= 0.0) || std::isinf(counts[i]) || (empty && counts[i] != 0.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram: counts[", i, "] = ", counts[i], " is impossible"));
    }
  }
  h.min_ = min;
  h.max_ = max;
  h.counts_ = std::move(counts);
  return h;
}

AbsHistogram FoldAbs(const Histogram& h, int bins) {
  AbsHistogram out;
  out.counts.assign(static_cast<size_t>(bins), 0.0);
  if (h.empty()) return out;
  const double lo = h.min(), hi = h.max();
  out.amax = std::max(std::abs(lo), std::abs(hi));
  const double width = out.amax / bins;
  const size_t n = h.counts().size();
  const double src_width = (hi - lo) / static_cast<double>(n);
  for (size_t i = 0; i < n; ++i) {
    const double mass = h.counts()[i];
    if (mass == 0.0) continue;
    const double a = lo + static_cast<double>(i) * src_width;
    const double b = i + 1 == n ? hi : lo + static_cast<double>(i + 1) * src_width;
    if (a >= 0.0) {
      Deposit(out.counts, 0.0, width, a, b, mass);
    } else if (b <= 0.0) {
      Deposit(out.counts, 0.0, width, -b, -a, mass);
    } else {  // straddles 0: split in proportion to the two sides
      const double negative = mass * (-a) / (b - a);
      Deposit(out.counts, 0.0, width, 0.0, -a, negative);
      Deposit(out.counts, 0.0, width, 0.0, b, mass - negative);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// PyTorch 1.13 _non_linear_param_search and _compute_quantization_error.
namespace {

// What every candidate's error shares: the source bin width and each bin's density, which depend
// on the histogram only (PyTorch recomputes them per candidate, with the same values), and the
// buffer the per-bin errors go to.
struct L2SearchContext {
  double bin_width;            // (max_val.item() - min_val.item()) / bins: Python doubles
  float bw;                    // the same as the float32 PyTorch's tensors see
  std::vector<float> density;  // hist / bin_width, float32
  std::vector<float> norms;    // per-bin errors of the candidate being evaluated
};

L2SearchContext MakeL2SearchContext(const std::vector<float>& hist, float min_val,
                                    float max_val) {
  L2SearchContext c;
  const int bins = static_cast<int>(hist.size());
  c.bin_width = (static_cast<double>(max_val) - static_cast<double>(min_val)) / bins;
  c.bw = static_cast<float>(c.bin_width);
  c.density.resize(hist.size());
  c.norms.resize(hist.size());
  for (size_t i = 0; i < hist.size(); ++i) c.density[i] = hist[i] / c.bw;
  return c;
}

// _compute_quantization_error: the per-bin errors by the Highway kernel (PyTorch's float32
// arithmetic, see kernels/histogram/torch_l2_error.h), summed here.
double TorchQuantizationError(L2SearchContext& c, int start_bin, int end_bin, int dst_nbins) {
  const double dst_bin_width =
      c.bin_width * static_cast<double>(end_bin - start_bin + 1) / dst_nbins;
  if (dst_bin_width == 0.0) return 0.0;
  // Python scalars meet float32 tensors: they are rounded to float32.
  kernels::TorchL2Grid grid;
  grid.bw = c.bw;
  grid.dbw = static_cast<float>(dst_bin_width);
  grid.half = static_cast<float>(dst_bin_width / 2);
  grid.neg_half = static_cast<float>(-dst_bin_width / 2);
  grid.middle =
      (grid.half * grid.half * grid.half - grid.neg_half * grid.neg_half * grid.neg_half) / 3.0f;
  grid.last = static_cast<float>(dst_nbins - 1);
  grid.start_bin = start_bin;
  if (grid.dbw > 0.0f) {
    kernels::TorchL2BinErrors(c.density.data(), c.density.size(), grid, c.norms.data());
  } else {
    // A destination width that underflows float32 (ranges near 1e-40) is outside the kernel's
    // preconditions; the scalar loop divides by zero as PyTorch's tensors would.
    kernels::TorchL2BinErrorsRef(c.density.data(), c.density.size(), grid, c.norms.data());
  }
  // norm.sum().item(): a float32 sum (PyTorch's own summation order differs from ours; the
  // double sum, in bin order, rounded once is within an ulp of it, see
  // histogram_conformance_test).
  double sum = 0.0;
  for (const float norm : c.norms) sum += norm;
  return static_cast<float>(sum);
}

}  // namespace

ClipRange TorchL2Range(const Histogram& h, int dst_nbins) {
  const int bins = h.bins();
  std::vector<float> hist(h.counts().begin(), h.counts().end());
  const float min_val = h.min(), max_val = h.max();
  // bin_width = (max_val - min_val) / bins: float32 tensors.
  const float bin_width = (max_val - min_val) / static_cast<float>(bins);
  // total = torch.sum(histogram).item(); cSum = torch.cumsum(histogram) (double accumulator,
  // float32 results).
  double total_d = 0.0;
  std::vector<float> csum(hist.size());
  for (size_t i = 0; i < hist.size(); ++i) {
    total_d += hist[i];
    csum[i] = static_cast<float>(total_d);
  }
  const double total = static_cast<float>(total_d);
  L2SearchContext context = MakeL2SearchContext(hist, min_val, max_val);
  const double stepsize = 1e-5;
  double alpha = 0.0, beta = 1.0;
  int start_bin = 0, end_bin = bins - 1;
  double norm_min = std::numeric_limits<double>::infinity();
  while (alpha < beta) {
    const double next_alpha = alpha + stepsize;
    const double next_beta = beta - stepsize;
    // cSum[l] < next_alpha * total: a float32 tensor against a Python float, compared in float32.
    const float alpha_mass = static_cast<float>(next_alpha * total);
    const float beta_mass = static_cast<float>(next_beta * total);
    int l = start_bin, r = end_bin;
    while (l < end_bin && csum[static_cast<size_t>(l)] < alpha_mass) ++l;
    while (r > start_bin && csum[static_cast<size_t>(r)] > beta_mass) --r;
    int next_start_bin = start_bin, next_end_bin = end_bin;
    if (l - start_bin > end_bin - r) {
      next_start_bin = l;
      alpha = next_alpha;
    } else {
      next_end_bin = r;
      beta = next_beta;
    }
    if (next_start_bin == start_bin && next_end_bin == end_bin) continue;
    const double norm =
        TorchQuantizationError(context, next_start_bin, next_end_bin, dst_nbins);
    if (norm > norm_min) break;
    norm_min = norm;
    start_bin = next_start_bin;
    end_bin = next_end_bin;
  }
  // new_min = min_val + bin_width * start_bin; new_max = min_val + bin_width * (end_bin + 1).
  return {min_val + bin_width * static_cast<float>(start_bin),
          min_val + bin_width * static_cast<float>(end_bin + 1)};
}

// ---------------------------------------------------------------------------------------------
// Percentile, entropy, MSE.

double PercentileAmax(const AbsHistogram& h, double p) {
  double total = 0.0;
  for (double c : h.counts) total += c;
  const double width = h.amax / static_cast<double>(h.counts.size());
  const double target = p / 100.0 * total;
  double below = 0.0;
  for (size_t i = 0; i < h.counts.size(); ++i) {
    below += h.counts[i];
    if (below >= target) return static_cast<double>(i + 1) * width;
  }
  return h.amax;
}

namespace {

// Edges of x-percentiles on the signed histogram: the smallest edge with at least q of the mass
// below it (upper), the largest edge with at most 1 - q... (lower: mirror).
ClipRange PercentileRangeAffine(const Histogram& h, double p) {
  const std::vector<double>& c = h.counts();
  const double total = h.total();
  const double width = (static_cast<double>(h.max()) - h.min()) / static_cast<double>(c.size());
  const double tail = (1.0 - p / 100.0) * total;
  // Lower: the largest edge with at most `tail` of the mass below it.
  double below = 0.0;
  size_t lower = 0;
  while (lower < c.size() && below + c[lower] <= tail) below += c[lower++];
  // Upper: the smallest edge with at most `tail` of the mass above it.
  double above = 0.0;
  size_t upper = c.size();
  while (upper > 0 && above + c[upper - 1] <= tail) above += c[--upper];
  if (upper <= lower) {  // a (near) point mass: keep one bin
    upper = std::min(lower + 1, c.size());
    lower = upper - 1;
  }
  return {static_cast<float>(h.min() + static_cast<double>(lower) * width),
          static_cast<float>(h.min() + static_cast<double>(upper) * width)};
}

}  // namespace

double EntropyAmax(const AbsHistogram& h, int num_quant_bins, int start_bin) {
  std::vector<double> bins = h.counts;
  const int n = static_cast<int>(bins.size());
  if (n >= 2) bins[0] = bins[1];
  const double width = h.amax / n;
  // Suffix sums: the outliers beyond each candidate threshold.
  std::vector<double> beyond(static_cast<size_t>(n) + 1, 0.0);
  for (int i = n - 1; i >= 0; --i) beyond[static_cast<size_t>(i)] = beyond[i + 1] + bins[i];
  double best = std::numeric_limits<double>::infinity();
  int best_i = n;
  std::vector<double> merged(static_cast<size_t>(num_quant_bins));
  std::vector<int> nonzero(static_cast<size_t>(num_quant_bins));
  std::vector<int> quant_bin_of(static_cast<size_t>(n));
  for (int i = std::min(start_bin, n); i <= n; ++i) {
    // Source bin j belongs to quantized bin k with space[k] <= j < space[k+1], where
    // space = linspace(0, i, num_quant_bins + 1) in double (numpy's digitize).
    const double step = static_cast<double>(i) / num_quant_bins;
    std::fill(merged.begin(), merged.end(), 0.0);
    std::fill(nonzero.begin(), nonzero.end(), 0);
    int k = 0;
    for (int j = 0; j < i; ++j) {
      while (k + 1 < num_quant_bins && static_cast<double>(k + 1) * step <= j) ++k;
      quant_bin_of[static_cast<size_t>(j)] = k;
      if (bins[static_cast<size_t>(j)] != 0.0) {
        merged[static_cast<size_t>(k)] += bins[static_cast<size_t>(j)];
        ++nonzero[static_cast<size_t>(k)];
      }
    }
    // P: bins[0, i) with the outliers in its last bin; Q: merged bins expanded back over their
    // non-empty source bins. Both normalized; KL(P || Q) = sum p log(p / q).
    double p_total = 0.0, q_total = 0.0;
    for (int j = 0; j < i; ++j) {
      p_total += bins[static_cast<size_t>(j)];
      const int q = quant_bin_of[static_cast<size_t>(j)];
      if (bins[static_cast<size_t>(j)] != 0.0) {
        q_total += merged[static_cast<size_t>(q)] / nonzero[static_cast<size_t>(q)];
      }
    }
    p_total += beyond[static_cast<size_t>(i)];
    if (i == 0 || p_total == 0.0 || q_total == 0.0) continue;
    double kl = 0.0;
    for (int j = 0; j < i; ++j) {
      double p = bins[static_cast<size_t>(j)];
      if (j == i - 1) p += beyond[static_cast<size_t>(i)];
      if (p == 0.0) continue;
      const int q_bin = quant_bin_of[static_cast<size_t>(j)];
      const double q = bins[static_cast<size_t>(j)] != 0.0
                           ? merged[static_cast<size_t>(q_bin)] / nonzero[static_cast<size_t>(q_bin)]
                           : 0.0;
      if (q == 0.0) {
        kl = std::numeric_limits<double>::infinity();
        break;
      }
      kl += (p / p_total) * std::log((p / p_total) / (q / q_total));
    }
    if (kl <= best) {  // the last of equal minima, as pytorch-quantization's argmin over reversed
      best = kl;
      best_i = i;
    }
  }
  return static_cast<double>(best_i) * width;
}

namespace {

// The range a symmetric |x| threshold gives for `target` on data spanning [lo, hi].
ClipRange RangeFromAmax(double amax, const Histogram& h, const QuantTarget& target) {
  const float a = static_cast<float>(amax);
  if (IsSymmetric(target.qscheme)) return {-a, a};
  return {std::max(h.min(), -a), std::min(h.max(), a)};
}

}  // namespace

double MseAmax(const Histogram& h, const AbsHistogram& abs, const QuantTarget& target,
               int start_bin) {
  const int n_abs = static_cast<int>(abs.counts.size());
  const double abs_width = abs.amax / n_abs;
  const size_t n = h.counts().size();
  const double width = (static_cast<double>(h.max()) - h.min()) / static_cast<double>(n);
  double best = std::numeric_limits<double>::infinity();
  double best_amax = abs.amax;
  for (int i = std::min(start_bin, n_abs - 1); i < n_abs; ++i) {
    const double amax = (i + 0.5) * abs_width;
    const ClipRange r = RangeFromAmax(amax, h, target);
    const absl::StatusOr<QuantParams> qp = ChooseQParams(r.min, r.max, target);
    if (!qp.ok()) continue;
    const double scale = qp->scales[0];
    const double zp = qp->zero_points[0];
    double err = 0.0;
    for (size_t j = 0; j < n; ++j) {
      const double count = h.counts()[j];
      if (count == 0.0) continue;
      const double center = h.min() + (static_cast<double>(j) + 0.5) * width;
      const double q = std::clamp(std::nearbyint(center / scale) + zp,
                                  static_cast<double>(target.quant_min),
                                  static_cast<double>(target.quant_max));
      const double d = (q - zp) * scale - center;
      err += count * d * d;
    }
    if (err < best) {
      best = err;
      best_amax = amax;
    }
  }
  return best_amax;
}

const char* RangeMethodName(RangeMethod m) {
  switch (m) {
    case RangeMethod::kMax:
      return "max";
    case RangeMethod::kTorchL2:
      return "torch_l2";
    case RangeMethod::kPercentile:
      return "percentile";
    case RangeMethod::kEntropy:
      return "entropy";
    case RangeMethod::kMse:
      return "mse";
  }
  return "?";
}

absl::StatusOr<ClipRange> ComputeRange(const Histogram& h, const RangeRequest& request,
                                       const QuantTarget& target) {
  QLAB_RETURN_IF_ERROR(target.Validate());
  if (IsPerChannel(target.qscheme)) {
    return absl::InvalidArgumentError(absl::StrCat("histogram ranges are per tensor, got ",
                                                   QSchemeName(target.qscheme)));
  }
  if (h.empty()) {
    return absl::FailedPreconditionError(
        "the histogram is empty: calibrate before computing ranges");
  }
  if (h.min() == h.max() || request.method == RangeMethod::kMax) {
    return ClipRange{h.min(), h.max()};
  }
  switch (request.method) {
    case RangeMethod::kMax:
      break;
    case RangeMethod::kTorchL2: {
      // dst_nbins = 2 ** torch.iinfo(dtype).bits.
      const int dst_nbins = target.dtype == DType::kInt32 ? (1 << 30) : 256;
      return TorchL2Range(h, dst_nbins);
    }
    case RangeMethod::kPercentile: {
      if (!(request.percentile > 0.0 && request.percentile <= 100.0)) {
        return absl::InvalidArgumentError(
            absl::StrCat("percentile must be in (0, 100], got ", request.percentile));
      }
      if (!IsSymmetric(target.qscheme)) return PercentileRangeAffine(h, request.percentile);
      const double amax = PercentileAmax(FoldAbs(h, h.bins()), request.percentile);
      return RangeFromAmax(amax, h, target);
    }
    case RangeMethod::kEntropy: {
      // 2^(bits-1) quantized bins for signed grids, 2^bits for unsigned ones (pytorch-
      // quantization's `1 << (num_bits - 1 + unsigned)`): affine on one-sided data is unsigned.
      const int64_t levels = int64_t{target.quant_max} - target.quant_min + 1;
      const bool is_unsigned = !IsSymmetric(target.qscheme) && h.min() >= 0.0f;
      const int num_quant_bins =
          static_cast<int>(std::clamp<int64_t>(is_unsigned ? levels : levels / 2, 2, 1 << 24));
      return RangeFromAmax(EntropyAmax(FoldAbs(h, h.bins()), num_quant_bins), h, target);
    }
    case RangeMethod::kMse:
      return RangeFromAmax(MseAmax(h, FoldAbs(h, h.bins()), target), h, target);
  }
  return absl::InternalError("unknown range method");
}

}  // namespace qlab::calibration
