// The calibrator registry (see registry.h): spec parsing, one table of observers with their
// arguments, and observer files.
//
// A spec is parsed once into a name and arguments; each table entry lists the arguments it
// accepts (with their ranges and defaults), so unknown names and bad arguments fail here with a
// message listing what exists, before any observer is built.
#include "calibration/registry.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "calibration/histogram_observers.h"
#include "calibration/minmax.h"
#include "calibration/observer_util.h"
#include "calibration/per_channel_histogram.h"
#include "core/interrupt.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace qlab::calibration {
namespace {

// One argument an observer accepts: a number in [min, max] (integers when `integer`).
struct ArgSpec {
  const char* key;
  double min;
  double max;
  std::optional<double> default_value;  // nullopt: required
  bool integer = false;
  bool min_exclusive = false;
};

using Args = std::map<std::string, double>;
using Factory = std::function<std::unique_ptr<Observer>(const Args&, const ObserverOptions&)>;

struct Entry {
  const char* name;
  bool per_channel;
  // The key a bare value stands for ("percentile:99.99" = "percentile:p=99.99"), or nullptr.
  const char* positional;
  std::vector<ArgSpec> args;
  Factory factory;
};

constexpr double kDefaultAveragingConstant = 0.01;
constexpr double kDefaultBins = 2048;

ArgSpec AveragingConstant() {
  return {"c", 0.0, 1.0, kDefaultAveragingConstant, false, /*min_exclusive=*/true};
}

ArgSpec Bins() {
  return {"bins", 2, static_cast<double>(internal::kMaxBins), kDefaultBins, /*integer=*/true};
}
ArgSpec TorchBinning(bool default_on) {
  return {"torch_binning", 0, 1, default_on ? 1.0 : 0.0, /*integer=*/true};
}

Factory HistogramFactory(RangeMethod method, bool per_channel = false) {
  return [method, per_channel](const Args& a, const ObserverOptions& o) {
    HistogramObserverConfig config;
    config.method = method;
    config.bins = static_cast<int>(a.at("bins"));
    config.percentile = a.count("p") != 0 ? a.at("p") : 0.0;
    config.binning = a.at("torch_binning") != 0.0 ? HistogramBinning::kTorch113
                                                  : HistogramBinning::kExact;
    return per_channel ? MakePerChannelHistogramObserver(config, o)
                       : MakeHistogramObserver(config, o);
  };
}

const std::vector<Entry>& Table() {
  static const std::vector<Entry>* table = new std::vector<Entry>{
      {"minmax", false, nullptr, {},
       [](const Args&, const ObserverOptions& o) {
         return MakeMinMaxObserver({false, std::nullopt}, o);
       }},
      {"moving_average", false, "c", {AveragingConstant()},
       [](const Args& a, const ObserverOptions& o) {
         return MakeMinMaxObserver({false, a.at("c")}, o);
       }},
      {"per_channel_minmax", true, nullptr, {},
       [](const Args&, const ObserverOptions& o) {
         return MakeMinMaxObserver({true, std::nullopt}, o);
       }},
      {"per_channel_moving_average", true, "c", {AveragingConstant()},
       [](const Args& a, const ObserverOptions& o) {
         return MakeMinMaxObserver({true, a.at("c")}, o);
       }},
      {"histogram", false, "bins", {Bins(), TorchBinning(true)},
       HistogramFactory(RangeMethod::kTorchL2)},
      {"percentile", false, "p",
       {{"p", 0.0, 100.0, std::nullopt, false, /*min_exclusive=*/true}, Bins(),
        TorchBinning(false)},
       HistogramFactory(RangeMethod::kPercentile)},
      {"entropy", false, "bins", {Bins(), TorchBinning(false)},
       HistogramFactory(RangeMethod::kEntropy)},
      {"mse", false, "bins", {Bins(), TorchBinning(false)}, HistogramFactory(RangeMethod::kMse)},
      {"per_channel_histogram", true, "bins", {Bins(), TorchBinning(true)},
       HistogramFactory(RangeMethod::kTorchL2, /*per_channel=*/true)},
      {"per_channel_percentile", true, "p",
       {{"p", 0.0, 100.0, std::nullopt, false, /*min_exclusive=*/true}, Bins(),
        TorchBinning(false)},
       HistogramFactory(RangeMethod::kPercentile, /*per_channel=*/true)},
      {"per_channel_entropy", true, "bins", {Bins(), TorchBinning(false)},
       HistogramFactory(RangeMethod::kEntropy, /*per_channel=*/true)},
      {"per_channel_mse", true, "bins", {Bins(), TorchBinning(false)},
       HistogramFactory(RangeMethod::kMse, /*per_channel=*/true)},
  };
  return *table;
}

std::string KnownNames() {
  std::vector<std::string> names = ObserverNames();
  return absl::StrJoin(names, ", ");
}

std::string Accepted(const Entry& e) {
  if (e.args.empty()) return absl::StrCat(e.name, " takes no arguments");
  std::vector<std::string> parts;
  for (const ArgSpec& a : e.args) {
    std::string part = absl::StrCat(a.key, " in ", a.min_exclusive ? "(" : "[",
                                     internal::FormatNumber(a.min), ", ",
                                     internal::FormatNumber(a.max), "]",
                                     a.integer ? " (integer)" : "");
    if (a.default_value.has_value()) {
      absl::StrAppend(&part, ", default ", internal::FormatNumber(*a.default_value));
    } else {
      absl::StrAppend(&part, ", required");
    }
    parts.push_back(part);
  }
  return absl::StrCat(e.name, " accepts ", absl::StrJoin(parts, "; "),
                      e.positional != nullptr
                          ? absl::StrCat(" (a bare value is ", e.positional, ")")
                          : "");
}

struct Parsed {
  const Entry* entry;
  Args args;
};

absl::StatusOr<Parsed> Parse(absl::string_view spec) {
  const size_t colon = spec.find(':');
  const absl::string_view name = spec.substr(0, colon);
  const Entry* entry = nullptr;
  for (const Entry& e : Table()) {
    if (name == e.name) entry = &e;
  }
  if (entry == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown observer \"", name, "\" in spec \"",
                                                   spec, "\"; known observers: ",
                                                   KnownNames()));
  }
  Parsed parsed{entry, {}};
  if (colon != absl::string_view::npos) {
    for (absl::string_view item : absl::StrSplit(spec.substr(colon + 1), ',')) {
      std::string key;
      absl::string_view value = item;
      const size_t eq = item.find('=');
      if (eq != absl::string_view::npos) {
        key = std::string(item.substr(0, eq));
        value = item.substr(eq + 1);
      } else if (entry->positional != nullptr) {
        key = entry->positional;
      }
      const auto arg = std::find_if(entry->args.begin(), entry->args.end(),
                                    [&](const ArgSpec& a) { return key == a.key; });
      if (arg == entry->args.end()) {
        return absl::InvalidArgumentError(absl::StrCat("bad argument \"", item, "\" in spec \"",
                                                       spec, "\": ", Accepted(*entry)));
      }
      double v = 0;
      if (!absl::SimpleAtod(value, &v) || !std::isfinite(v) ||
          (arg->min_exclusive ? v <= arg->min : v < arg->min) || v > arg->max ||
          (arg->integer && v != std::floor(v))) {
        return absl::InvalidArgumentError(absl::StrCat("bad value \"", value, "\" for ", key,
                                                       " in spec \"", spec, "\": ",
                                                       Accepted(*entry)));
      }
      if (!parsed.args.emplace(key, v).second) {
        return absl::InvalidArgumentError(absl::StrCat(key, " given twice in spec \"", spec,
                                                       "\": ", Accepted(*entry)));
      }
    }
  }
  for (const ArgSpec& a : entry->args) {
    if (parsed.args.count(a.key) != 0) continue;
    if (!a.default_value.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("spec \"", spec, "\" lacks the required ",
                                                     a.key, ": ", Accepted(*entry)));
    }
    parsed.args[a.key] = *a.default_value;
  }
  return parsed;
}

// Upper bound on an observer file: the largest state is a few arrays of kMaxBins elements.
constexpr int64_t kMaxFileBytes = int64_t{1} << 30;
constexpr const char* kFormat = "qlab.observer";
constexpr int64_t kVersion = 1;

}  // namespace

absl::StatusOr<std::unique_ptr<Observer>> CreateObserver(absl::string_view spec,
                                                         const ObserverOptions& options) {
  QLAB_ASSIGN_OR_RETURN(const Parsed parsed, Parse(spec));
  return parsed.entry->factory(parsed.args, options);
}

absl::Status ValidateObserverSpec(absl::string_view spec, bool* per_channel) {
  QLAB_ASSIGN_OR_RETURN(const Parsed parsed, Parse(spec));
  if (per_channel != nullptr) *per_channel = parsed.entry->per_channel;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Observer>> CreateObserverFromHistogram(absl::string_view spec,
                                                                      const Observer& source) {
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<Observer> observer,
                        CreateObserver(spec, source.options()));
  if (observer->per_channel() != source.per_channel()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot reuse the statistics of ", source.spec(), " for ", observer->spec(),
                     ": one is per channel, the other per tensor"));
  }
  QLAB_RETURN_IF_ERROR(source.per_channel() ? AdoptPerChannelHistograms(source, *observer)
                                            : AdoptHistogram(source, *observer));
  return observer;
}

std::vector<std::string> ObserverNames() {
  std::vector<std::string> names;
  for (const Entry& e : Table()) names.push_back(e.name);
  std::sort(names.begin(), names.end());
  return names;
}

namespace {

// The file's first line. JSON escapes newlines inside strings, so dump() is one line.
std::string Header(const Observer& observer, const ObserverState& state) {
  nlohmann::json observer_json =
      nlohmann::json::parse(state.json, /*cb=*/nullptr, /*allow_exceptions=*/false);
  QLAB_CHECK_MSG(observer_json.is_object(), "an observer saved state that is not a JSON object");
  const ObserverOptions& options = observer.options();
  // The options are not part of the spec but change behaviour: the file keeps them.
  const nlohmann::json header = {
      {"format", kFormat},
      {"version", kVersion},
      {"spec", observer.spec()},
      {"options",
       {{"channel_axis", options.channel_axis}, {"skip_non_finite", options.skip_non_finite}}},
      {"state", observer_json},
      {"binary_bytes", state.binary.size()},
  };
  return header.dump();
}

absl::Status WriteAll(std::FILE* f, const std::string& bytes) {
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) {
    return absl::InternalError(std::strerror(errno));
  }
  return absl::OkStatus();
}

absl::Status FileError(const std::string& path, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat("observer file ", path, ": ", s.message()));
}

}  // namespace

absl::Status SaveObserver(const Observer& observer, const std::string& path) {
  const ObserverState state = observer.SaveState();
  const std::string header = Header(observer, state);
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  const CriticalWrite critical;  // Ctrl-C waits for the rename: no temporary is left behind
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot create ", tmp, " to save an observer: ", std::strerror(errno)));
  }
  absl::Status s = WriteAll(f, header);
  if (s.ok()) s = WriteAll(f, "\n");
  if (s.ok()) s = WriteAll(f, state.binary);
  if (s.ok() && (std::fflush(f) != 0 || ::fsync(::fileno(f)) != 0)) {
    s = absl::InternalError(std::strerror(errno));
  }
  if (std::fclose(f) != 0 && s.ok()) s = absl::InternalError(std::strerror(errno));
  if (s.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    s = absl::InternalError(absl::StrCat("rename to ", path, ": ", std::strerror(errno)));
  }
  if (!s.ok()) {
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("saving observer ", observer.spec(), " to ", path,
                                            " failed: ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Observer>> LoadObserver(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot open observer file ", path, ": ", std::strerror(errno)));
  }
  std::string bytes;
  char buf[1 << 16];
  size_t got = 0;
  while ((got = std::fread(buf, 1, sizeof(buf), f)) > 0) {
    bytes.append(buf, got);
    if (static_cast<int64_t>(bytes.size()) > kMaxFileBytes) break;
  }
  std::fclose(f);
  if (static_cast<int64_t>(bytes.size()) > kMaxFileBytes) {
    return absl::DataLossError(absl::StrCat("observer file ", path, " is larger than ",
                                            kMaxFileBytes, " bytes: not an observer file"));
  }
  const size_t newline = bytes.find('\n');
  if (newline == std::string::npos) {
    return absl::DataLossError(
        absl::StrCat("observer file ", path, ": no newline after the JSON header"));
  }
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(0, newline), nullptr, false);
  if (!header.is_object()) {
    return absl::DataLossError(
        absl::StrCat("observer file ", path, ": the first line is not a JSON object"));
  }
  auto fail = [&](const absl::Status& s) { return FileError(path, s); };
  absl::StatusOr<std::string> format = internal::GetString(header, "format");
  if (!format.ok()) return fail(format.status());
  if (*format != kFormat) {
    return absl::DataLossError(absl::StrCat("observer file ", path, ": format \"", *format,
                                            "\" is not \"", kFormat, "\""));
  }
  absl::StatusOr<int64_t> version = internal::GetInt(header, "version");
  if (!version.ok()) return fail(version.status());
  if (*version != kVersion) {
    return absl::DataLossError(absl::StrCat("observer file ", path, ": version ", *version,
                                            " is not the supported ", kVersion));
  }
  absl::StatusOr<std::string> spec = internal::GetString(header, "spec");
  if (!spec.ok()) return fail(spec.status());
  absl::StatusOr<int64_t> binary_bytes = internal::GetInt(header, "binary_bytes");
  if (!binary_bytes.ok()) return fail(binary_bytes.status());
  const size_t payload_size = bytes.size() - newline - 1;
  if (*binary_bytes < 0 || static_cast<size_t>(*binary_bytes) != payload_size) {
    return absl::DataLossError(absl::StrCat("observer file ", path, ": binary_bytes = ",
                                            *binary_bytes, " but the file holds ",
                                            payload_size, " bytes after the header"));
  }
  const auto options_it = header.find("options");
  if (options_it == header.end() || !options_it->is_object()) {
    return absl::DataLossError(
        absl::StrCat("observer file ", path, ": field \"options\" is missing or not an object"));
  }
  absl::StatusOr<int64_t> axis = internal::GetInt(*options_it, "channel_axis");
  if (!axis.ok()) return fail(axis.status());
  absl::StatusOr<bool> skip = internal::GetBool(*options_it, "skip_non_finite");
  if (!skip.ok()) return fail(skip.status());
  if (*axis < -kMaxRank || *axis >= kMaxRank) {
    return absl::DataLossError(absl::StrCat("observer file ", path, ": options.channel_axis = ",
                                            *axis, " is out of range"));
  }
  const auto state_it = header.find("state");
  if (state_it == header.end() || !state_it->is_object()) {
    return absl::DataLossError(
        absl::StrCat("observer file ", path, ": field \"state\" is missing or not an object"));
  }
  ObserverOptions options;
  options.channel_axis = static_cast<int>(*axis);
  options.skip_non_finite = *skip;
  absl::StatusOr<std::unique_ptr<Observer>> observer = CreateObserver(*spec, options);
  if (!observer.ok()) {
    return absl::DataLossError(absl::StrCat("observer file ", path, ": field \"spec\": ",
                                            observer.status().message()));
  }
  const absl::Status restored =
      (*observer)->RestoreState({state_it->dump(), bytes.substr(newline + 1)});
  if (!restored.ok()) return fail(restored);
  return observer;
}

}  // namespace qlab::calibration
