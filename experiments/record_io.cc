// WriteJsonFile / ReadJsonFile / AppendCsvRow (experiments/record_io.h).
#include "experiments/record_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/interrupt.h"
#include "experiments/provenance.h"

namespace qlab::experiments {
namespace {

absl::Status IoError(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status EnsureParent(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) return absl::OkStatus();
  std::error_code error;
  std::filesystem::create_directories(parent, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create directory ", parent.string(), ": ", error.message()));
  }
  return absl::OkStatus();
}

std::string CsvField(const std::string& field) {
  if (field.find_first_of(",\"\n\r") == std::string::npos) return field;
  std::string quoted = "\"";
  for (const char c : field) quoted += (c == '"') ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

std::string CsvLine(const std::vector<std::string>& fields) {
  std::vector<std::string> quoted;
  for (const std::string& f : fields) quoted.push_back(CsvField(f));
  return absl::StrJoin(quoted, ",") + "\n";
}

}  // namespace

bool FileExists(const std::string& path) {
  std::error_code error;
  return std::filesystem::exists(path, error);
}

std::string UnderWorkspace(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  const std::string workspace = BazelRunWorkspace();
  return workspace.empty() ? path : absl::StrCat(workspace, "/", path);
}

std::string NewNumberedDir(const std::string& prefix) {
  for (int n = 1;; ++n) {
    const std::string candidate = UnderWorkspace(absl::StrCat(prefix, n));
    if (!FileExists(candidate)) return candidate;
  }
}

absl::Status WriteJsonFile(const std::string& path, const nlohmann::json& value, bool overwrite) {
  return WriteTextFile(path, value.dump(2) + "\n", overwrite);
}

std::string CsvText(const std::vector<std::string>& header,
                    const std::vector<std::vector<std::string>>& rows) {
  std::string text = CsvLine(header);
  for (const std::vector<std::string>& row : rows) text += CsvLine(row);
  return text;
}

absl::Status WriteTextFile(const std::string& path, const std::string& text, bool overwrite) {
  if (!overwrite && FileExists(path)) {
    return absl::AlreadyExistsError(absl::StrCat(
        path, " exists; refusing to overwrite a record (choose another --out, or pass "
              "--overwrite)"));
  }
  if (absl::Status s = EnsureParent(path); !s.ok()) return s;
  // Ctrl-C waits for the rename (or the cleanup), so no temporary is left behind.
  const CriticalWrite critical;
  const std::string temp = absl::StrCat(path, ".tmp.", getpid());
  const int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return IoError("cannot create", temp);
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = write(fd, text.data() + written, text.size() - written);
    if (n < 0) {
      const absl::Status error = IoError("cannot write", temp);
      close(fd);
      unlink(temp.c_str());
      return error;
    }
    written += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    const absl::Status error = IoError("cannot flush", temp);
    unlink(temp.c_str());
    return error;
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const absl::Status error = IoError("cannot rename into", path);
    unlink(temp.c_str());
    return error;
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  nlohmann::json value = nlohmann::json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return absl::DataLossError(absl::StrCat(path, " is not valid JSON"));
  }
  return value;
}

absl::Status AppendCsvRow(const std::string& path, const std::vector<std::string>& header,
                          const std::vector<std::string>& row) {
  if (header.size() != row.size()) {
    return absl::InvalidArgumentError(absl::StrCat("CSV row has ", row.size(),
                                                   " fields, header ", header.size()));
  }
  if (absl::Status s = EnsureParent(path); !s.ok()) return s;
  const std::string header_line = CsvLine(header);
  std::string existing_header;
  {
    std::ifstream in(path);
    if (in && std::getline(in, existing_header)) existing_header += "\n";
  }
  std::string text;
  if (existing_header.empty()) {
    text = header_line;
  } else if (existing_header != header_line) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, " has another header (", existing_header.substr(0, existing_header.size() - 1),
        "); write this run's summary to another --csv"));
  }
  text += CsvLine(row);
  // O_APPEND: one write() per line, so concurrent runs appending to one summary interleave
  // whole lines.
  const CriticalWrite critical;
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return IoError("cannot open", path);
  const ssize_t n = write(fd, text.data(), text.size());
  const bool ok = n == static_cast<ssize_t>(text.size());
  if (close(fd) != 0 || !ok) return IoError("cannot append to", path);
  return absl::OkStatus();
}

}  // namespace qlab::experiments
