// SHA-256 against the FIPS 180-4 example vectors and against Python's hashlib (an independent
// implementation) on seeded random data of every length around the 64-byte block boundary.
#include "core/sha256.h"

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "gtest/gtest.h"

namespace qlab {
namespace {

std::string Hex(absl::string_view bytes) {
  Sha256 h;
  h.Update(bytes);
  return h.HexDigest();
}

TEST(Sha256Test, FipsExampleVectors) {
  // The published examples of FIPS 180-4 / NIST CSRC "SHA256.pdf".
  EXPECT_EQ(Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256Test, AgreesWithPythonHashlibAcrossBlockBoundaries) {
  std::mt19937 rng(7);
  std::string data;
  for (int i = 0; i < 200; ++i) data.push_back(static_cast<char>(rng() & 0xff));
  std::string script = "import hashlib,sys\nd=sys.stdin.buffer.read()\n"
                       "print(' '.join(hashlib.sha256(d[:n]).hexdigest() for n in range(len(d)+1)))";
  // Bazel gives each test a private scratch directory.
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string out_path = std::string(tmp != nullptr ? tmp : "/tmp") + "/sha_out.txt";
  const std::string command = "/usr/bin/python3 -c \"" + script + "\" > " + out_path;
  FILE* pipe = popen(command.c_str(), "w");
  ASSERT_NE(pipe, nullptr);
  fwrite(data.data(), 1, data.size(), pipe);
  ASSERT_EQ(pclose(pipe), 0);
  FILE* out = fopen(out_path.c_str(), "r");
  ASSERT_NE(out, nullptr);
  char digest[65];
  for (size_t n = 0; n <= data.size(); ++n) {
    ASSERT_EQ(fscanf(out, "%64s", digest), 1);
    // Also fed in two pieces, to cover Update's buffering.
    Sha256 split;
    split.Update(data.data(), n / 3);
    split.Update(data.data() + n / 3, n - n / 3);
    ASSERT_EQ(split.HexDigest(), std::string(digest)) << "length " << n;
  }
  fclose(out);
}

TEST(Sha256Test, MissingFileIsNotFound) {
  EXPECT_EQ(Sha256File("/nonexistent/weights.safetensors").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace qlab
