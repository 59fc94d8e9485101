// The tar reader of models/data/tar_gz.h over zlib's gzip stream. A tar archive is a sequence of
// 512-byte headers, each followed by its member's bytes padded to 512; two zero blocks end it.
#include "models/data/tar_gz.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"
#include "models/data/image.h"

namespace qlab::data {
namespace {

namespace fs = std::filesystem;
constexpr int kBlock = 512;

// RAII owner of a gzFile.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path), file_(gzopen(path.c_str(), "rb")) {}
  ~GzReader() {
    if (file_ != nullptr) gzclose(file_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;
  bool ok() const { return file_ != nullptr; }

  // Reads exactly n bytes; *eof is set (and OK returned) only when 0 bytes were left.
  absl::Status Read(char* out, int64_t n, bool* eof = nullptr) {
    int64_t done = 0;
    while (done < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(n - done, 1 << 20));
      const int got = gzread(file_, out + done, chunk);
      if (got < 0) {
        int code = 0;
        return absl::DataLossError(absl::StrCat(path_, ": corrupt gzip stream: ",
                                                gzerror(file_, &code)));
      }
      if (got == 0) {
        if (done == 0 && eof != nullptr) {
          *eof = true;
          return absl::OkStatus();
        }
        return absl::DataLossError(absl::StrCat(path_, ": archive truncated"));
      }
      done += got;
    }
    if (eof != nullptr) *eof = false;
    return absl::OkStatus();
  }

  // Reads exactly n bytes into a string grown as the bytes arrive, so that a header claiming a
  // large member costs memory only for what the archive really holds.
  absl::StatusOr<std::string> ReadString(int64_t n) {
    std::string bytes;
    while (static_cast<int64_t>(bytes.size()) < n) {
      const int64_t chunk = std::min<int64_t>(n - static_cast<int64_t>(bytes.size()), 1 << 20);
      const size_t at = bytes.size();
      bytes.resize(at + static_cast<size_t>(chunk));
      QLAB_RETURN_IF_ERROR(Read(bytes.data() + at, chunk));
    }
    return bytes;
  }

 private:
  std::string path_;
  gzFile file_;
};

// A NUL-terminated (or full-width) header field.
std::string Field(const char* header, int offset, int width) {
  const char* begin = header + offset;
  return std::string(begin, strnlen(begin, width));
}

// The size field: octal text, or GNU's base-256 (high bit of the first byte set) for big files.
absl::StatusOr<int64_t> ParseSize(const char* header, const std::string& archive) {
  const auto* field = reinterpret_cast<const unsigned char*>(header + 124);
  int64_t size = 0;
  bool too_big = false;  // past kMaxTarMemberBytes: the exact value no longer matters
  if (field[0] & 0x80) {
    for (int i = 1; i < 12 && !too_big; ++i) {
      too_big = size > (kMaxTarMemberBytes >> 8);  // another byte would pass the limit
      if (!too_big) size = (size << 8) | field[i];
    }
  } else {
    for (int i = 0; i < 12 && field[i] != 0 && field[i] != ' '; ++i) {
      if (field[i] < '0' || field[i] > '7') {
        return absl::DataLossError(absl::StrCat(archive, ": bad tar size field"));
      }
      too_big = too_big || size > (kMaxTarMemberBytes >> 3);
      if (!too_big) size = size * 8 + (field[i] - '0');
    }
  }
  if (too_big || size > kMaxTarMemberBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(archive, ": member of ", too_big ? "more than " : "",
                     too_big ? kMaxTarMemberBytes : size, " bytes exceeds the limit of ",
                     kMaxTarMemberBytes));
  }
  return size;
}

bool ChecksumMatches(const char* header) {
  unsigned sum = 0;
  for (int i = 0; i < kBlock; ++i) {
    sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(header[i]);
  }
  int64_t stored = 0;
  const std::string field = Field(header, 148, 8);
  size_t i = 0;
  while (i < field.size() && field[i] == ' ') ++i;
  for (; i < field.size() && field[i] >= '0' && field[i] <= '7'; ++i) stored = stored * 8 + (field[i] - '0');
  return stored == static_cast<int64_t>(sum);
}

// The "path" record of a pax extended header ("<len> path=<value>\n" records).
std::string PaxPath(absl::string_view records) {
  std::string path;
  while (!records.empty()) {
    const size_t space = records.find(' ');
    int64_t length = 0;
    if (space == absl::string_view::npos || !absl::SimpleAtoi(records.substr(0, space), &length) ||
        length <= static_cast<int64_t>(space) || length > static_cast<int64_t>(records.size())) {
      break;
    }
    absl::string_view record = records.substr(space + 1, length - space - 2);  // minus '\n'
    if (absl::ConsumePrefix(&record, "path=")) path = std::string(record);
    records.remove_prefix(length);
  }
  return path;
}

bool IsSafeMemberPath(absl::string_view path) {
  if (path.empty() || path[0] == '/') return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") return false;
  }
  return true;
}

// Visits every member (regular files and folders), with its type flag.
absl::Status ForEachMember(
    const std::string& archive,
    const std::function<absl::Status(char type, const std::string& path, std::string bytes)>&
        visit) {
  GzReader reader(archive);
  if (!reader.ok()) return absl::NotFoundError(absl::StrCat("cannot open archive ", archive));
  char header[kBlock];
  std::string long_name;  // from a GNU 'L' or pax 'x' header, for the next member
  for (;;) {
    bool eof = false;
    QLAB_RETURN_IF_ERROR(reader.Read(header, kBlock, &eof));
    if (eof) return absl::OkStatus();  // tolerated: some writers omit the end blocks
    if (std::all_of(header, header + kBlock, [](char c) { return c == 0; })) {
      return absl::OkStatus();
    }
    if (!ChecksumMatches(header)) {
      return absl::DataLossError(absl::StrCat(archive, ": bad tar header checksum after '",
                                              long_name, "'"));
    }
    QLAB_ASSIGN_OR_RETURN(const int64_t size, ParseSize(header, archive));
    const char type = header[156];
    std::string path = Field(header, 0, 100);
    const std::string prefix = Field(header, 345, 155);
    if (std::memcmp(header + 257, "ustar", 5) == 0 && !prefix.empty()) {
      path = absl::StrCat(prefix, "/", path);
    }
    if (!long_name.empty()) path = std::move(long_name), long_name.clear();
    QLAB_ASSIGN_OR_RETURN(std::string bytes, reader.ReadString(size));
    const int64_t padding = (kBlock - size % kBlock) % kBlock;
    char skip[kBlock];
    QLAB_RETURN_IF_ERROR(reader.Read(skip, padding));
    switch (type) {
      case 'L':
        long_name = std::string(bytes.c_str());
        break;
      case 'x':
        long_name = PaxPath(bytes);
        break;
      case 'g':  // pax global header (git archive stores the commit id): nothing for us
        break;
      case '0':
      case '\0':
      case '5': {
        while (path.size() > 1 && path.back() == '/') path.pop_back();
        if (absl::StartsWith(path, "./")) path = path.substr(2);
        if (path == "." || path.empty()) break;
        if (!IsSafeMemberPath(path)) {
          return absl::InvalidArgumentError(
              absl::StrCat(archive, ": member path '", path, "' leaves the extraction folder"));
        }
        QLAB_RETURN_IF_ERROR(visit(type == '5' ? '5' : '0', path, std::move(bytes)));
        break;
      }
      default:  // links, devices, FIFOs: not part of an image dataset
        break;
    }
  }
}

}  // namespace

absl::Status ForEachTarGzFile(
    const std::string& archive,
    const std::function<absl::Status(const std::string& path, std::string bytes)>& visit) {
  return ForEachMember(archive, [&](char type, const std::string& path, std::string bytes) {
    return type == '0' ? visit(path, std::move(bytes)) : absl::OkStatus();
  });
}

absl::Status ExtractTarGz(const std::string& archive, const std::string& dest_dir) {
  std::error_code error;
  const auto archive_size = fs::file_size(archive, error);
  if (error) return absl::NotFoundError(absl::StrCat("cannot open archive ", archive));
  const std::string marker_text = absl::StrCat("archive ", archive, " size ", archive_size, "\n");
  const fs::path marker = fs::path(dest_dir) / ".qlab-extracted";
  if (absl::StatusOr<std::string> existing = ReadFileBytes(marker.string());
      existing.ok() && *existing == marker_text) {
    return absl::OkStatus();
  }
  const fs::path staging = dest_dir + ".partial";
  fs::remove_all(staging, error);
  fs::create_directories(staging, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", staging.string(), ": ", error.message()));
  }
  QLAB_RETURN_IF_ERROR(ForEachMember(
      archive, [&](char type, const std::string& path, std::string bytes) -> absl::Status {
        const fs::path target = staging / path;
        fs::create_directories(type == '5' ? target : target.parent_path(), error);
        if (error) {
          return absl::PermissionDeniedError(
              absl::StrCat("cannot create folder for ", target.string(), ": ", error.message()));
        }
        if (type == '5') return absl::OkStatus();
        std::ofstream out(target, std::ios::binary);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        if (!out) return absl::DataLossError(absl::StrCat("cannot write ", target.string()));
        return absl::OkStatus();
      }));
  {
    std::ofstream out(staging / ".qlab-extracted", std::ios::binary);
    out << marker_text;
    if (!out) return absl::DataLossError(absl::StrCat("cannot write marker in ", staging.string()));
  }
  fs::remove_all(dest_dir, error);
  fs::rename(staging, dest_dir, error);
  if (error) {
    return absl::PermissionDeniedError(absl::StrCat("cannot move ", staging.string(), " to ",
                                                    dest_dir, ": ", error.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenTarGzImageFolder(const std::string& archive,
                                                              const std::string& prefix) {
  // class name -> (member path -> bytes); std::map gives the sorted order ImageFolder uses.
  std::map<std::string, std::map<std::string, std::string>> classes;
  QLAB_RETURN_IF_ERROR(ForEachTarGzFile(
      archive, [&](const std::string& path, std::string bytes) -> absl::Status {
        absl::string_view rest = path;
        if (!absl::ConsumePrefix(&rest, prefix)) return absl::OkStatus();
        const size_t slash = rest.find('/');
        if (slash == absl::string_view::npos) return absl::OkStatus();  // not in a class folder
        classes[std::string(rest.substr(0, slash))][path] = std::move(bytes);
        return absl::OkStatus();
      }));
  if (classes.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(archive, ": no member below '", prefix, "<class>/'"));
  }
  std::vector<EncodedImage> images;
  std::vector<std::string> class_names;
  for (auto& [class_name, members] : classes) {
    const int label = static_cast<int>(class_names.size());
    class_names.push_back(class_name);
    for (auto& [path, bytes] : members) {
      images.push_back({absl::StrCat(archive, ":", path), label, std::move(bytes)});
    }
  }
  return MakeInMemoryDataset(std::move(images), std::move(class_names));
}

}  // namespace qlab::data
