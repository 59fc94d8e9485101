// Writing experiment results without ever losing what a user had.
//
// Records are JSON files written atomically (a temporary file in the same directory, flushed,
// then renamed into place), so an interrupted run leaves either the old file or the new one,
// never a torn one; an existing record is not replaced unless the caller asks. The CSV summary
// is appended one whole line per run, and its header must match the file's, so that rows of
// two different schemas never mix in one file.
#ifndef QLAB_EXPERIMENTS_RECORD_IO_H_
#define QLAB_EXPERIMENTS_RECORD_IO_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace qlab::experiments {

// Pretty-printed (2-space indent, keys sorted: nlohmann::json's object order), newline-terminated.
// AlreadyExists naming the path if it exists and !overwrite; Internal naming the path and errno
// text on I/O failure. Creates missing parent directories.
absl::Status WriteJsonFile(const std::string& path, const nlohmann::json& value, bool overwrite);

// The same atomic, never-silently-overwriting write for any text (reports, whole CSV files).
absl::Status WriteTextFile(const std::string& path, const std::string& text, bool overwrite);

// A whole CSV document: `header` then `rows`, quoted as AppendCsvRow quotes.
std::string CsvText(const std::vector<std::string>& header,
                    const std::vector<std::vector<std::string>>& rows);

bool FileExists(const std::string& path);

// `path` as the user means it: absolute paths as they are, relative ones under the workspace when
// run through `bazel run` (whose working directory is the runfiles tree), else as they are.
std::string UnderWorkspace(const std::string& path);

// The first of UnderWorkspace(<prefix>1), <prefix>2, ... that does not exist yet: where a run
// writes by default, so that running a command again never touches an earlier run's files.
std::string NewNumberedDir(const std::string& prefix);

// InvalidArgument / DataLoss naming the path for a missing or malformed file.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path);

// Appends `row` to the CSV at `path`, writing `header` first if the file is new or empty.
// FailedPrecondition naming the path if the file's header differs. Fields with commas, quotes
// or newlines are quoted.
absl::Status AppendCsvRow(const std::string& path, const std::vector<std::string>& header,
                          const std::vector<std::string>& row);

}  // namespace qlab::experiments

#endif  // QLAB_EXPERIMENTS_RECORD_IO_H_
