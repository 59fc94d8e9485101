// Test helper shared by the end-to-end training tests: two training checkpoints hold the same
// state, bit for bit (every model tensor, the momentum buffers, the step and the epoch). Used to
// show that a resumed run, or an interrupted and resumed one, reaches what an uninterrupted run
// reached.
#ifndef QLAB_TESTS_CHECKPOINT_EXPECTATIONS_H_
#define QLAB_TESTS_CHECKPOINT_EXPECTATIONS_H_

#include <string>

namespace qlab::test_support {

// gtest expectations (non-fatal for the contents, fatal when a file does not load).
void ExpectSameCheckpoint(const std::string& a_path, const std::string& b_path);

}  // namespace qlab::test_support

#endif  // QLAB_TESTS_CHECKPOINT_EXPECTATIONS_H_
