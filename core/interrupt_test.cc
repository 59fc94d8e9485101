// A signal during a CriticalWrite is held until the write closes, then ends the process as the
// default action would; outside one it ends the process at once. Each case runs in a death-test
// child (fork), which signals itself and leaves a marker file to show how far it got.
#include "core/interrupt.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace qlab {
namespace {

std::string Marker(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return std::string(tmp != nullptr ? tmp : "/tmp") + "/" + name;
}

void Touch(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f != nullptr) std::fclose(f);
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

TEST(InterruptDeathTest, SignalOutsideWritesEndsAtOnce) {
  const std::string marker = Marker("outside");
  EXPECT_EXIT(
      {
        InstallInterruptHandler();
        std::raise(SIGINT);
        Touch(marker);  // never reached
        std::exit(0);
      },
      ::testing::KilledBySignal(SIGINT), "");
  EXPECT_FALSE(Exists(marker));
}

TEST(InterruptDeathTest, SignalDuringWriteIsHeldUntilItCloses) {
  const std::string during = Marker("during");
  const std::string after = Marker("after");
  EXPECT_EXIT(
      {
        InstallInterruptHandler();
        {
          CriticalWrite outer;
          {
            CriticalWrite inner;  // nested: only the outermost close acts
            std::raise(SIGTERM);
            if (PendingInterrupt() != SIGTERM) std::exit(3);
          }
          Touch(during);  // the write completes after the signal
        }
        Touch(after);  // never reached: the process ended as the write closed
        std::exit(0);
      },
      ::testing::KilledBySignal(SIGTERM), "");
  EXPECT_TRUE(Exists(during));
  EXPECT_FALSE(Exists(after));
}

TEST(InterruptTest, WithoutSignalsWritesCostNothingVisible) {
  InstallInterruptHandler();
  { CriticalWrite write; }
  EXPECT_EQ(PendingInterrupt(), 0);
}

}  // namespace
}  // namespace qlab
