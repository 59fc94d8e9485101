// InstallInterruptHandler and CriticalWrite (core/interrupt.h).
//
// The handler and CriticalWrite's destructor meet as in Dekker's algorithm: the handler stores
// the pending signal, then reads the count of open writes; a closing write decrements the count,
// then reads the pending signal. With sequentially consistent atomics at least one of them sees
// the other's store, so a held signal is always acted on, and never while a write is open.
// Lock-free atomics, signal() and raise() are async-signal-safe.
#include "core/interrupt.h"

#include <atomic>
#include <csignal>
#include <mutex>

namespace qlab {
namespace {

std::atomic<int> open_writes{0};
std::atomic<int> pending_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "used from a signal handler");

// Ends the process by `sig` with its default action, so that the parent sees "killed by SIGINT"
// as it would without the handler.
void DieBy(int sig) {
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

extern "C" void OnInterrupt(int sig) {
  pending_signal.store(sig);
  if (open_writes.load() == 0) DieBy(sig);
}

}  // namespace

void InstallInterruptHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action = {};
    action.sa_handler = OnInterrupt;
    sigemptyset(&action.sa_mask);
    // Interrupted reads and writes restart instead of failing with EINTR: a held signal must
    // not turn into an I/O error in the write it waits for.
    action.sa_flags = SA_RESTART;
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
  });
}

int PendingInterrupt() { return pending_signal.load(); }

CriticalWrite::CriticalWrite() { open_writes.fetch_add(1); }

CriticalWrite::~CriticalWrite() {
  if (open_writes.fetch_sub(1) == 1) {
    const int sig = pending_signal.load();
    if (sig != 0) DieBy(sig);
  }
}

}  // namespace qlab
