// The PyTorch side of the side-by-side benchmarks: each runs a timing script under
// /usr/bin/python3 and reads the JSON it prints. This runs such a command and returns its stdout.
#ifndef QLAB_BENCH_COMMAND_OUTPUT_H_
#define QLAB_BENCH_COMMAND_OUTPUT_H_

#include <string>

namespace qlab::bench {

// Everything `command` (run by /bin/sh, no input) wrote to stdout, or "" when it could not be
// started or exited with a non-zero status, so that a failed script never passes half its output
// on to the JSON parser.
std::string CommandOutput(const std::string& command);

}  // namespace qlab::bench

#endif  // QLAB_BENCH_COMMAND_OUTPUT_H_
