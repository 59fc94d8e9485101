// Ctrl-C (SIGINT) and SIGTERM for long runs: results files are never left half-written.
//
// Results are written as a temporary file renamed into place (experiments/record_io.h,
// models/safetensors.h). Killed between those steps, a run would leave the temporary behind;
// killed mid-append, a CSV row could be cut. The runners (//experiments:sweep, train, qat, ptq)
// call InstallInterruptHandler() first thing; every results write is a CriticalWrite. A signal
// that arrives outside all CriticalWrites ends the process at once, exactly as the default action
// would (killed by that signal); one that arrives during a CriticalWrite is held until the last
// open CriticalWrite closes, and then ends the process the same way. Earlier results are thus
// always whole, and an interrupted run resumes from what it completed (--resume).
#ifndef QLAB_CORE_INTERRUPT_H_
#define QLAB_CORE_INTERRUPT_H_

namespace qlab {

// Idempotent. Without it (libraries, tests), signals keep their default behaviour and
// CriticalWrite costs two atomic operations.
void InstallInterruptHandler();

// The signal held during a CriticalWrite (0: none). For tests and diagnostics.
int PendingInterrupt();

// Scope of one results write (create temporary, write, flush, rename; or one appended row).
// Nests and may be open on several threads at once.
class CriticalWrite {
 public:
  CriticalWrite();
  ~CriticalWrite();
  CriticalWrite(const CriticalWrite&) = delete;
  CriticalWrite& operator=(const CriticalWrite&) = delete;
};

}  // namespace qlab

#endif  // QLAB_CORE_INTERRUPT_H_
