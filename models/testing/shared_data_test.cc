// SharedDataRoot from inside the sandbox: the runfile //models:BUILD resolves to the workspace,
// whose sibling shared/data holds the README; a missing anchor is a NotFound that says what to do.
#include "models/testing/shared_data.h"

#include <sys/stat.h>

#include <string>

#include "gtest/gtest.h"

namespace qlab::testing {
namespace {

TEST(SharedDataTest, FindsTheSharedFolderThroughARunfile) {
  absl::StatusOr<std::string> root = SharedDataRoot("models/BUILD");
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(root->substr(root->size() - 12), "/shared/data");
  struct stat st;
  EXPECT_EQ(::stat((*root + "/README.md").c_str(), &st), 0);
  EXPECT_TRUE(SharedDataPath("models/BUILD", "README.md").ok());
}

TEST(SharedDataTest, MissingThingsAreNotFoundWithAdvice) {
  absl::StatusOr<std::string> root = SharedDataRoot("models/no_such_file");
  EXPECT_EQ(root.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(root.status().message()).find("data"), std::string::npos);
  absl::StatusOr<std::string> path = SharedDataPath("models/BUILD", "no-such-set/x.bin");
  ASSERT_EQ(path.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(path.status().message()).find("no-such-set/x.bin"), std::string::npos);
  EXPECT_NE(std::string(path.status().message()).find("../shared/data"), std::string::npos);
}

}  // namespace
}  // namespace qlab::testing
