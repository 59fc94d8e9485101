#include "core/status_macros.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace qlab {
namespace {

absl::StatusOr<int> ParsePositive(int v) {
  if (v <= 0) return absl::InvalidArgumentError("not positive: " + std::to_string(v));
  return v;
}

absl::StatusOr<int> DoubleIt(int v) {
  QLAB_ASSIGN_OR_RETURN(const int parsed, ParsePositive(v));
  return 2 * parsed;
}

absl::Status CheckBoth(int a, int b) {
  QLAB_RETURN_IF_ERROR(ParsePositive(a).status());
  QLAB_RETURN_IF_ERROR(ParsePositive(b).status());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<int>> MakeBox(int v) { return std::make_unique<int>(v); }

absl::StatusOr<int> AssignToExisting(int v) {
  int value = 0;
  QLAB_ASSIGN_OR_RETURN(value, ParsePositive(v));
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<int> box, MakeBox(value));  // move-only values work
  return *box + 1;
}

TEST(StatusMacrosTest, AssignOrReturnPassesValuesAndErrors) {
  EXPECT_EQ(*DoubleIt(21), 42);
  const absl::StatusOr<int> error = DoubleIt(-1);
  EXPECT_EQ(error.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(error.status().message(), "not positive: -1");
  EXPECT_EQ(*AssignToExisting(4), 5);
  EXPECT_FALSE(AssignToExisting(0).ok());
}

TEST(StatusMacrosTest, ReturnIfErrorStopsAtFirstError) {
  EXPECT_TRUE(CheckBoth(1, 2).ok());
  EXPECT_EQ(CheckBoth(1, -2).message(), "not positive: -2");
  EXPECT_EQ(CheckBoth(-1, -2).message(), "not positive: -1");
}

}  // namespace
}  // namespace qlab
