#include "tests/checkpoint_expectations.h"

#include <cstring>

#include "gtest/gtest.h"
#include "train/optim/checkpoint.h"

namespace qlab::test_support {

void ExpectSameCheckpoint(const std::string& a_path, const std::string& b_path) {
  auto a = train::LoadCheckpoint(a_path);
  auto b = train::LoadCheckpoint(b_path);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(a->model.size(), b->model.size());
  for (const auto& [name, t] : a->model) {
    SCOPED_TRACE(name);
    ASSERT_EQ(b->model.count(name), 1u);
    ASSERT_EQ(t.nbytes(), b->model.at(name).nbytes());
    EXPECT_EQ(0, std::memcmp(t.raw_data(), b->model.at(name).raw_data(), t.nbytes()));
  }
  EXPECT_EQ(a->momentum, b->momentum);
  EXPECT_EQ(a->step, b->step);
  EXPECT_EQ(a->epoch, b->epoch);
}

}  // namespace qlab::test_support
