// Fuzz target for the .tar.gz reader (models/data/tar_gz.h): the bytes are the archive file,
// read with ForEachTarGzFile and OpenTarGzImageFolder. zlib's gzread passes a file without the
// gzip magic through unchanged, so seeds that are plain tar archives fuzz the tar header parser
// directly while the .tar.gz seeds fuzz the gzip layer. Every member handed out must have a
// safe relative path (the extractor writes there) and at most kMaxTarMemberBytes bytes.
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "models/data/tar_gz.h"
#include "tests/fuzz/fuzz_targets.h"

namespace qlab::fuzz {

int FuzzTarGz(const uint8_t* data, size_t size) {
  const std::string path = WriteFuzzFile("tar_gz", data, size);
  (void)data::ForEachTarGzFile(path, [](const std::string& member, std::string bytes) {
    if (member.empty() || member[0] == '/' || member == ".." || absl::StartsWith(member, "../") ||
        absl::StrContains(member, "/../") || absl::EndsWith(member, "/..") ||
        static_cast<int64_t>(bytes.size()) > data::kMaxTarMemberBytes) {
      std::abort();
    }
    return absl::OkStatus();
  });
  auto dataset = data::OpenTarGzImageFolder(path, "");
  if (dataset.ok() && (*dataset)->size() > 0) {
    (void)(*dataset)->name(0);
    (void)(*dataset)->label(0);
  }
  return 0;
}

}  // namespace qlab::fuzz

QLAB_FUZZ_ENTRY_POINT(qlab::fuzz::FuzzTarGz)
