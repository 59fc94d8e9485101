#include "bench/command_output.h"

#include <cstdio>

namespace qlab::bench {

std::string CommandOutput(const std::string& command) {
  std::FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  std::string out;
  char buf[4096];
  size_t got = 0;
  while ((got = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, got);
  if (pclose(pipe) != 0) out.clear();
  return out;
}

}  // namespace qlab::bench
