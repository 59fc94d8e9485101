// Histogram calibration: one collected histogram of a tensor's values, and every way qlab turns
// it into a clipping range ("collect once, compute many", as NVIDIA's pytorch-quantization
// `compute_amax(method=...)`): the full range, PyTorch's L2 search, percentile, TensorRT's
// entropy (KL divergence) and MSE, all from the same counts, without seeing the data again.
//
//   Histogram h(2048, HistogramBinning::kExact);
//   for (...) QLAB_RETURN_IF_ERROR(h.Add(batch_values, n, batch_min, batch_max));
//   ClipRange l2  = ComputeRange(h, {RangeMethod::kTorchL2}, target).value();
//   ClipRange p   = ComputeRange(h, {RangeMethod::kPercentile, 99.99}, target).value();
//   ClipRange kl  = ComputeRange(h, {RangeMethod::kEntropy}, target).value();
//   ClipRange mse = ComputeRange(h, {RangeMethod::kMse}, target).value();
//
// Collection follows PyTorch 1.13's HistogramObserver: `bins` equal bins over the observed
// [min, max]; a batch inside the current range is added bin by bin; a batch that widens the range
// re-bins the old counts onto the wider grid. Two binnings:
//   kTorch113  bit-identical to PyTorch 1.13, including its quirks: torch.histc is called with
//              the range truncated to integers (`int(min_val)`, `int(max_val)`), so values outside
//              [trunc(min), trunc(max)] are not counted although min/max still describe the full
//              range; after a constant batch (min == max) the next batch restarts the histogram;
//              growth relaxes the max so that the new bin width is a whole multiple of the old
//              one / upsample_rate, and re-bins by PyTorch's upsample-then-integrate rule.
//   kExact     bins over the exact [min, max], every finite value counted; growth re-bins the
//              old counts by exact overlap (each old bin's count spread uniformly over its width
//              and split between the new bins in proportion to the overlap), in double.
// Merging two histograms (any ranges) re-bins both onto the union range by exact overlap and
// adds them: counts are conserved exactly and aligned grids (same range, or a range that is a
// whole multiple of the other's bin width) merge without any smearing.
#ifndef QLAB_CALIBRATION_HISTOGRAM_H_
#define QLAB_CALIBRATION_HISTOGRAM_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quant/qparams.h"

namespace qlab::calibration {

enum class HistogramBinning { kTorch113, kExact };

// The values one batch adds to one histogram: x[r * run_stride + i] for r < runs and
// i < run_length. One run is a contiguous array; several are, for instance, one channel of an
// NCHW tensor (a run of H*W values per image, C*H*W apart).
struct ValueRuns {
  const float* x;
  size_t runs;
  size_t run_length;
  size_t run_stride;
  size_t size() const { return runs * run_length; }
};

class Histogram {
 public:
  // PyTorch's default upsample rate for re-binning (kTorch113 only).
  static constexpr int kUpsampleRate = 128;

  // `bins` must be in [2, 2^24] (checked by the registry).
  Histogram(int bins, HistogramBinning binning);

  // Adds a batch: the finite values of x[0, n), whose range (finite values only) is
  // [batch_min, batch_max]. Non-finite values are never counted.
  void Add(const float* x, size_t n, float batch_min, float batch_max);
  // The same for values in runs (per-channel histograms); counts are those Add would give the
  // values copied into one array.
  void Add(const ValueRuns& values, float batch_min, float batch_max);

  // Steady-state calibration in one pass instead of two (range, then bins): if every value of
  // `values` (one run) lies inside [min(), max()] and Add would keep that range, adds them exactly
  // as Add would and returns true; otherwise changes nothing and returns false, and the caller
  // computes the batch's range and calls Add. The check rides on the binning pass and stops at
  // the first block (512 values) holding a value outside, so a batch that widens the range
  // usually costs a few blocks more, and at worst (one outlier at the end) a second pass.
  bool AddIfInsideRange(const ValueRuns& values);

  // Adds `other`'s counts (see the file comment). InvalidArgument for a different bin count or
  // binning.
  absl::Status Merge(const Histogram& other);

  void Reset();

  bool empty() const { return min_ > max_; }
  int bins() const { return static_cast<int>(counts_.size()); }
  HistogramBinning binning() const { return binning_; }
  // The range the bins are taken to cover: bin i is [min + i*w, min + (i+1)*w], w = (max-min)/bins.
  float min() const { return min_; }
  float max() const { return max_; }
  const std::vector<double>& counts() const { return counts_; }
  double total() const;

  // Rebuilds a histogram from saved parts; InvalidArgument naming the field when inconsistent.
  static absl::StatusOr<Histogram> FromParts(HistogramBinning binning, float min, float max,
                                             std::vector<double> counts);

 private:
  void AddTorch113(const ValueRuns& values, float batch_min, float batch_max);
  void AddExact(const ValueRuns& values, float batch_min, float batch_max);

  HistogramBinning binning_;
  float min_;
  float max_;
  // Counts as doubles: kTorch113 keeps every value rounded to float32 where PyTorch's float32
  // buffer rounds; kExact keeps integer counts exact up to 2^53.
  std::vector<double> counts_;
};

// `counts` over [lo, hi] re-binned by exact overlap onto `bins` bins over [new_lo, new_hi], which
// must contain [lo, hi]. A zero-width source (lo == hi) is a point mass, put in the bin holding
// it. Exposed for tests.
std::vector<double> RebinExact(const std::vector<double>& counts, double lo, double hi,
                               int bins, double new_lo, double new_hi);

// The histogram of |x| derived from one of x: `bins` bins over [0, max(|min|, |max|)], each signed
// bin's count spread uniformly over the |x| interval it covers (a bin straddling 0 is split at 0).
struct AbsHistogram {
  std::vector<double> counts;
  double amax = 0.0;
};
AbsHistogram FoldAbs(const Histogram& h, int bins);

// ---------------------------------------------------------------------------------------------
// Batch statistics on both cores.
//
// Above kParallelMinElements, the two passes over a batch (its range, then its bins) each run on
// up to kMaxWorkers threads (at most the machine's hardware threads; the caller's thread is one
// of them): the batch is cut into chunks of ParallelChunk(n) elements that the workers take in
// turn, each worker accumulates its own min/max/NaN count or bin counts with the Highway
// kernels, and the workers' results are combined. Min, max, NaN counts and bin counts are exact
// selections or integer sums, so the result is identical to one pass over the whole batch,
// whatever the split (but for the sign of a zero min or max, which the SIMD min/max reduction
// leaves to lane order anyway: -0 == +0). Below the threshold a thread costs more than it saves.
inline constexpr size_t kParallelMinElements = size_t{1} << 18;
inline constexpr size_t kParallelChunk = size_t{1} << 17;
inline constexpr int kMaxWorkers = 2;
// Chunks of kParallelChunk elements, or of n / kParallelChunksPerPass for batches larger than
// kParallelChunksPerPass chunks: each chunk costs the binning kernel a few microseconds of set-up
// (its partial histograms, the first block's indices, a prefetch stream to start), and 32 chunks
// still balance the two workers. At 16 M elements, 512 K-element chunks took the binning pass
// from 2.47 to 2.36 ms.
inline constexpr size_t kParallelChunksPerPass = 32;
constexpr size_t ParallelChunk(size_t n) {
  return n / kParallelChunksPerPass > kParallelChunk ? n / kParallelChunksPerPass : kParallelChunk;
}

// The range of x[0, n): min and max of the non-NaN values (infinities included) and the NaN
// count; min = +Inf, max = -Inf when there is no such value.
struct BatchMinMax {
  float min;
  float max;
  size_t nan_count;
};
BatchMinMax ParallelMinMax(const float* x, size_t n);

// Runs task(i) for every i in [0, count), on up to kMaxWorkers threads (the caller's one of them)
// when `total_elements` (the work, in elements) reaches kParallelMinElements, else on the calling
// thread; returns when all are done. Tasks are taken in turn from a shared counter, so which
// thread runs a task varies: each task must compute the same thing on any thread (per-channel
// histograms: one channel per task). Batch passes started inside a task run on its thread only.
void ParallelTasks(size_t count, size_t total_elements, const std::function<void(size_t)>& task);

// ---------------------------------------------------------------------------------------------
// Compute many: clipping ranges from one histogram.
enum class RangeMethod {
  kMax,         // the observed [min, max]
  kTorchL2,     // PyTorch 1.13 HistogramObserver._non_linear_param_search (L2 error)
  kPercentile,  // symmetric targets: amax = percentile of |x|; affine: [P(100-p), P(p)] of x
  kEntropy,     // TensorRT's KL-divergence threshold on |x|
  kMse,         // the amax minimizing the target's expected squared quantization error
};
const char* RangeMethodName(RangeMethod m);

struct RangeRequest {
  RangeMethod method = RangeMethod::kMax;
  double percentile = 99.99;  // kPercentile only, in (0, 100]
};

struct ClipRange {
  float min;
  float max;
};

// FailedPrecondition for an empty histogram; InvalidArgument for a per-channel or invalid target.
// Methods that choose an amax on |x| (entropy, MSE) return [-amax, amax] for symmetric targets
// and [max(min, -amax), min(max, amax)] for affine ones ([0, amax] for post-ReLU data).
absl::StatusOr<ClipRange> ComputeRange(const Histogram& h, const RangeRequest& request,
                                       const QuantTarget& target);

// The individual methods, for tests and reports.
ClipRange TorchL2Range(const Histogram& h, int dst_nbins);
// The smallest |x| bin edge below which at least p% of the counts lie.
double PercentileAmax(const AbsHistogram& h, double p);
// TensorRT / pytorch-quantization `_compute_amax_entropy`: candidate thresholds i = start_bin ..
// bins (in bins of |x|), the reference distribution bins[0, i) with the outliers added to its
// last bin, the candidate one the reference merged into `num_quant_bins` bins and expanded back
// over the non-empty source bins; the threshold with the least KL divergence (the last of equal
// ones) wins. Bin 0 takes bin 1's count first, as pytorch-quantization does, so that a spike of
// exact zeros (ReLU) does not dominate the divergence.
double EntropyAmax(const AbsHistogram& h, int num_quant_bins, int start_bin = 128);
// Candidates amax = (i + 0.5) * w of the |x| histogram (bin centers, i >= start_bin); error
// sum_j count_j * (fakequant(center_j) - center_j)^2 over the signed histogram's bin centers,
// with the target's scale/zero point for the candidate range. The smallest error wins (the
// first of equal ones).
double MseAmax(const Histogram& h, const AbsHistogram& abs, const QuantTarget& target,
               int start_bin = 128);

}  // namespace qlab::calibration

#endif  // QLAB_CALIBRATION_HISTOGRAM_H_
