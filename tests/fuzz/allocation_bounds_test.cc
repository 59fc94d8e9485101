// Untrusted sizes never become allocations (issue 11): for every parser of a file qlab may be
// given, a header claiming 2^60 bytes / elements / channels / runs is a specific error Status, and
// so is a size just inside the parser's limit with too few bytes behind it, in both cases without
// the allocation being attempted first.
//
// "Without the allocation" is measured: this test binary replaces the global operator new with
// one that records the largest single request (everything the parsers allocate goes through
// std::string, std::vector and nlohmann::json, hence operator new), and each case bounds that
// largest request by 4 MB, far below every claimed size. Allocations made with malloc
// inside C libraries (libzip, zlib, OpenCV; protobuf's arenas) are not seen by this counter; for
// OpenCV's decoder the case below bounds the process's peak resident memory instead. Under
// `--config=asan` an attempted allocation of 2^60 bytes would also abort the test
// (allocator_may_return_null=0).
#include <sys/resource.h>
#include <zlib.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "calibration/registry.h"
#include "experiments/sweep.h"
#include "gtest/gtest.h"
#include "interchange/onnx_import.h"
#include "models/data/dataset.h"
#include "models/data/image.h"
#include "models/data/tar_gz.h"
#include "models/pth/pth_loader.h"
#include "models/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_targets.h"

// --- The largest single operator new request -----------------------------------------------

namespace {
std::atomic<size_t> largest_request{0};

void* CountedAllocate(size_t size) {
  size_t seen = largest_request.load(std::memory_order_relaxed);
  while (size > seen && !largest_request.compare_exchange_weak(seen, size)) {
  }
  // malloc(0) may return null; operator new must not.
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(size_t size) { return CountedAllocate(size); }
void* operator new[](size_t size) { return CountedAllocate(size); }
void* operator new(size_t size, const std::nothrow_t&) noexcept {
  try {
    return CountedAllocate(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](size_t size, const std::nothrow_t& tag) noexcept {
  return operator new(size, tag);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

namespace qlab::fuzz {
namespace {

constexpr int64_t k2Pow60 = int64_t{1} << 60;

// Runs `parse` and returns the largest single operator new request it made.
template <typename Parse>
size_t LargestRequestDuring(Parse parse) {
  largest_request.store(0);
  parse();
  return largest_request.load();
}

// Every case's inputs are at most a few KB; parsers legitimately allocate fixed-size buffers
// (stream buffers, zlib windows, the tar reader's 1 MB read chunk), so 4 MB is above what
// parsing the real bytes needs and far below the claimed sizes (>= 64 MB in every case).
constexpr size_t kSmallAllocation = size_t{4} << 20;

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

std::string WriteTemp(const std::string& name, const std::string& bytes) {
  const std::string path = TempPath(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  EXPECT_TRUE(out.good()) << path;
  return path;
}

void ExpectStatus(const absl::Status& status, absl::StatusCode code, const std::string& fragment) {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_NE(status.message().find(fragment), std::string::npos)
      << "expected '" << fragment << "' in: " << status;
}

// --- safetensors --------------------------------------------------------------------------

// A safetensors file: 8-byte little-endian header length, the JSON header, `data`.
std::string Safetensors(const std::string& header, const std::string& data,
                        uint64_t claimed_length = 0) {
  const uint64_t length = claimed_length != 0 ? claimed_length : header.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &length, 8);
  return out + header + data;
}

TEST(AllocationBoundsTest, SafetensorsHeaderLengthOf2Pow60) {
  const std::string file = Safetensors("{}", "", uint64_t{1} << 60);
  absl::Status status;
  EXPECT_LT(LargestRequestDuring([&] { status = ParseSafetensors(file).status(); }),
            kSmallAllocation);
  ExpectStatus(status, absl::StatusCode::kInvalidArgument,
               "header length 1152921504606846976 exceeds");
  // Through the file reader, which must check before reading the header into memory.
  const std::string path = WriteTemp("huge_header.safetensors", file);
  EXPECT_LT(LargestRequestDuring([&] { status = ReadSafetensors(path).status(); }),
            kSmallAllocation);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

TEST(AllocationBoundsTest, SafetensorsHeaderLengthInsideTheLimitButPastTheFile) {
  // 99 MB claimed (below kMaxSafetensorsHeaderBytes), 2 bytes present.
  const std::string path =
      WriteTemp("long_header.safetensors", Safetensors("{}", "", 99u * 1000 * 1000));
  absl::Status status;
  EXPECT_LT(LargestRequestDuring([&] { status = ReadSafetensors(path).status(); }),
            kSmallAllocation);
  ExpectStatus(status, absl::StatusCode::kDataLoss, "reaches past the end of the file");
}

TEST(AllocationBoundsTest, SafetensorsTensorOf2Pow60Bytes) {
  // Shape and offsets agree on 2^60 bytes; the file holds 4.
  const std::string header = absl::StrCat(R"({"w":{"dtype":"U8","shape":[)", k2Pow60,
                                          R"(],"data_offsets":[0,)", k2Pow60, "]}}");
  absl::StatusOr<SafetensorsFile> parsed;
  EXPECT_LT(LargestRequestDuring([&] { parsed = ParseSafetensors(Safetensors(header, "abcd")); }),
            kSmallAllocation);
  ASSERT_FALSE(parsed.ok());
  ExpectStatus(parsed.status(), absl::StatusCode::kDataLoss,
               "data_offsets [0,1152921504606846976] reach past the end of the data section");
  // Shape of 2^60 floats (2^62 bytes, no overflow) with offsets spanning 4 bytes.
  const std::string f32 =
      absl::StrCat(R"({"w":{"dtype":"F32","shape":[)", k2Pow60, R"(],"data_offsets":[0,4]}})");
  parsed = ParseSafetensors(Safetensors(f32, "abcd"));
  ASSERT_FALSE(parsed.ok());
  ExpectStatus(parsed.status(), absl::StatusCode::kDataLoss, "is 4611686018427387904 bytes");
  // A shape whose byte count wraps 64 bits.
  const std::string wrap = absl::StrCat(R"({"w":{"dtype":"F64","shape":[)", k2Pow60, ",", 16,
                                        R"(],"data_offsets":[0,0]}})");
  parsed = ParseSafetensors(Safetensors(wrap, ""));
  ASSERT_FALSE(parsed.ok());
  ExpectStatus(parsed.status(), absl::StatusCode::kInvalidArgument, "overflows 64 bits");
}

// --- .pth ---------------------------------------------------------------------------------

// Pickle opcodes by name (protocol 2, as torch.save writes them).
class Pickle {
 public:
  Pickle() { bytes_ += "\x80\x02"; }
  Pickle& Op(char op) { return Raw(std::string(1, op)); }
  Pickle& Global(const std::string& module, const std::string& name) {
    return Raw("c" + module + "\n" + name + "\n");
  }
  Pickle& Str(const std::string& s) {
    bytes_ += 'X';
    for (int i = 0; i < 4; ++i) bytes_ += static_cast<char>((s.size() >> (8 * i)) & 0xff);
    return Raw(s);
  }
  Pickle& Int(int64_t v) {  // LONG1 with 8 bytes: any int64
    bytes_ += "\x8a\x08";
    for (int i = 0; i < 8; ++i) {
      bytes_ += static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
    }
    return *this;
  }
  Pickle& Raw(const std::string& raw) {
    bytes_ += raw;
    return *this;
  }
  std::string Stop() const { return bytes_ + "."; }

 private:
  std::string bytes_;
};

// OrderedDict {"w": tensor of `size` elements, stride 1, on FloatStorage "0" of `numel`}.
std::string OneTensorStateDict(int64_t numel, int64_t size) {
  Pickle p;
  p.Global("collections", "OrderedDict").Op(')').Op('R').Op('(').Str("w");
  p.Global("torch._utils", "_rebuild_tensor_v2").Op('(');
  p.Op('(').Str("storage").Global("torch", "FloatStorage").Str("0").Str("cpu").Int(numel);
  p.Op('t').Op('Q').Int(0).Op('(').Int(size).Op('t').Op('(').Int(1).Op('t').Op('\x89');
  p.Global("collections", "OrderedDict").Op(')').Op('R').Op('t').Op('R').Op('u');
  return p.Stop();
}

absl::Status LoadPthWithPickle(const std::string& name, const std::string& pickle) {
  // TorchZipWithPickle's archive holds storage "0" as 64 float32 values (256 bytes).
  const std::string path = WriteTemp(name, TorchZipWithPickle(pickle));
  return pth::LoadPth(path).status();
}

TEST(AllocationBoundsTest, PthHandMadeStateDictLoads) {
  // The builder above is right: the same pickle with honest sizes loads.
  EXPECT_TRUE(LoadPthWithPickle("ok.pth", OneTensorStateDict(64, 64)).ok());
}

TEST(AllocationBoundsTest, PthStorageOf2Pow60Elements) {
  absl::Status status;
  EXPECT_LT(LargestRequestDuring(
                [&] { status = LoadPthWithPickle("huge.pth", OneTensorStateDict(k2Pow60, 4)); }),
            kSmallAllocation);
  ExpectStatus(status, absl::StatusCode::kResourceExhausted,
               "storage '0' declares 1152921504606846976 elements");
}

TEST(AllocationBoundsTest, PthStorageInsideTheLimitButNotInTheArchive) {
  // 2^26 floats (256 MB, allowed) declared; the archive's entry holds 256 bytes.
  absl::Status status;
  EXPECT_LT(LargestRequestDuring([&] {
              status = LoadPthWithPickle("big.pth", OneTensorStateDict(int64_t{1} << 26, 4));
            }),
            kSmallAllocation);
  ExpectStatus(status, absl::StatusCode::kDataLoss, "has 256 bytes, expected 268435456");
}

TEST(AllocationBoundsTest, PthTensorOf2Pow60Elements) {
  absl::Status status;
  EXPECT_LT(LargestRequestDuring(
                [&] { status = LoadPthWithPickle("view.pth", OneTensorStateDict(64, k2Pow60)); }),
            kSmallAllocation);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_NE(status.message().find("tensor w"), std::string::npos) << status;
}

// --- Observer files -----------------------------------------------------------------------

// An observer file as SaveObserver writes it: a JSON header line, then `payload`.
std::string ObserverFile(const std::string& spec, const nlohmann::json& state,
                         const std::string& payload, int64_t binary_bytes = -1) {
  const nlohmann::json header = {
      {"format", "qlab.observer"},
      {"version", 1},
      {"spec", spec},
      {"options", {{"channel_axis", 1}, {"skip_non_finite", false}}},
      {"state", state},
      {"binary_bytes", binary_bytes >= 0 ? binary_bytes : static_cast<int64_t>(payload.size())}};
  return header.dump() + "\n" + payload;
}

absl::Status LoadObserverFile(const std::string& name, const std::string& bytes) {
  return calibration::LoadObserver(WriteTemp(name, bytes)).status();
}

nlohmann::json MinMaxState(const std::string& spec, int64_t channels) {
  return {{"spec", spec},
          {"num_channels", channels},
          {"axis", 1},
          {"num_batches", 1},
          {"non_finite_skipped", 0}};
}

TEST(AllocationBoundsTest, ObserverChannelCountOf2Pow60) {
  absl::Status status;
  const std::string file =
      ObserverFile("per_channel_minmax", MinMaxState("per_channel_minmax", k2Pow60), "");
  EXPECT_LT(LargestRequestDuring([&] { status = LoadObserverFile("channels.obs", file); }),
            kSmallAllocation);
  ExpectStatus(status, absl::StatusCode::kDataLoss, "num_channels = 1152921504606846976");
}

TEST(AllocationBoundsTest, ObserverChannelCountInsideTheLimitWithAShortPayload) {
  // 2^24 channels (the limit) claimed: six arrays of 2^24 values would be 448 MB; 8 bytes follow.
  absl::Status status;
  const std::string file = ObserverFile(
      "per_channel_minmax", MinMaxState("per_channel_minmax", int64_t{1} << 24), "12345678");
  EXPECT_LT(LargestRequestDuring([&] { status = LoadObserverFile("short.obs", file); }),
            kSmallAllocation);
  ExpectStatus(status, absl::StatusCode::kDataLoss, "binary payload too short");
}

TEST(AllocationBoundsTest, ObserverHistogramBinsOf2Pow60) {
  absl::Status status;
  // In the saved state: must equal the spec's bin count.
  const nlohmann::json state = {{"spec", "histogram:bins=64"},
                                {"bins", k2Pow60},
                                {"num_batches", 1},
                                {"non_finite_skipped", 0}};
  EXPECT_LT(LargestRequestDuring([&] {
              status = LoadObserverFile("bins.obs", ObserverFile("histogram:bins=64", state, ""));
            }),
            kSmallAllocation);
  ExpectStatus(status, absl::StatusCode::kDataLoss, "bins = 1152921504606846976, expected 64");
  // In the spec: outside the registry's range for "bins".
  const std::string spec = absl::StrCat("histogram:bins=", k2Pow60);
  EXPECT_LT(LargestRequestDuring([&] {
              status = LoadObserverFile("spec.obs", ObserverFile(spec, {{"spec", spec}}, ""));
            }),
            kSmallAllocation);
  ExpectStatus(status, absl::StatusCode::kDataLoss, "field \"spec\"");
}

TEST(AllocationBoundsTest, ObserverBinaryBytesOf2Pow60) {
  absl::Status status;
  const std::string file =
      ObserverFile("minmax", MinMaxState("minmax", 1), "12345678", /*binary_bytes=*/k2Pow60);
  EXPECT_LT(LargestRequestDuring([&] { status = LoadObserverFile("binary.obs", file); }),
            kSmallAllocation);
  ExpectStatus(status, absl::StatusCode::kDataLoss,
               "binary_bytes = 1152921504606846976 but the file holds 8 bytes");
}

// --- CIFAR-10 binary ----------------------------------------------------------------------

TEST(AllocationBoundsTest, CifarBinaryHasNoSizeFieldAndRejectsPartialRecords) {
  // The format has no header: memory is bounded by the file itself. A partial record is
  // DataLoss naming the file, and reading never allocates much beyond the file's size.
  std::string bytes(3073 + 100, '\x01');
  const std::string path = WriteTemp("partial.bin", bytes);
  absl::Status status;
  EXPECT_LT(LargestRequestDuring([&] { status = data::OpenCifar10Binary({path}).status(); }),
            kSmallAllocation);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_NE(status.message().find("partial.bin"), std::string::npos) << status;
}

// --- tar.gz -------------------------------------------------------------------------------

// One 512-byte ustar header for a regular file `name`, with `size_field` copied into the 12-byte
// size field and a valid checksum.
std::string TarHeader(const std::string& name, const std::string& size_field) {
  std::string h(512, '\0');
  std::memcpy(&h[0], name.data(), name.size());
  std::memcpy(&h[100], "0000644", 7);
  std::memcpy(&h[124], size_field.data(), std::min<size_t>(size_field.size(), 12));
  std::memcpy(&h[136], "00000000000", 11);
  h[156] = '0';
  std::memcpy(&h[257],
              "ustar\0"
              "00",
              8);
  unsigned sum = 0;
  for (int i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : static_cast<uint8_t>(h[i]);
  char octal[8];
  std::snprintf(octal, sizeof(octal), "%06o", sum);
  std::memcpy(&h[148], octal, 6);
  h[154] = '\0';
  h[155] = ' ';
  return h;
}

std::string Gzip(const std::string& bytes) {
  const std::string path = TempPath("gzip.tmp");
  gzFile f = gzopen(path.c_str(), "wb");
  EXPECT_NE(f, nullptr);
  EXPECT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  EXPECT_EQ(gzclose(f), Z_OK);
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

absl::Status VisitTarGz(const std::string& name, const std::string& tar) {
  return data::ForEachTarGzFile(WriteTemp(name, Gzip(tar)),
                                [](const std::string&, std::string) { return absl::OkStatus(); });
}

TEST(AllocationBoundsTest, TarHandMadeArchiveReads) {
  // The header builder is right: a 5-byte member is visited with its bytes.
  std::string tar = TarHeader("a.png", "00000000005") + "hello" + std::string(507, '\0');
  tar += std::string(1024, '\0');
  std::vector<std::string> seen;
  const absl::Status status = data::ForEachTarGzFile(
      WriteTemp("ok.tar.gz", Gzip(tar)), [&](const std::string& path, std::string bytes) {
        seen.push_back(path + "=" + bytes);
        return absl::OkStatus();
      });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(seen, std::vector<std::string>{"a.png=hello"});
}

TEST(AllocationBoundsTest, TarMemberOf2Pow60Bytes) {
  // GNU base-256 size field: high bit set, then the big-endian value 2^60.
  std::string field(12, '\0');
  field[0] = '\x80';
  field[4] = '\x10';  // byte 4 of 12 holds bits 56..63 of the value: 0x10 << 56 = 2^60
  absl::Status status;
  EXPECT_LT(LargestRequestDuring(
                [&] { status = VisitTarGz("huge.tar.gz", TarHeader("a.png", field) + "tail"); }),
            kSmallAllocation);
  ExpectStatus(status, absl::StatusCode::kResourceExhausted, "exceeds the limit of 1073741824");
  // Found by this test: the base-256 reader stopped shifting at the limit and returned the
  // truncated value (2^28 here), which a large enough archive would then have been read as.
  field[4] = 0;
  field[7] = '\x01';  // 2^32
  status = VisitTarGz("4g.tar.gz", TarHeader("a.png", field) + "tail");
  ExpectStatus(status, absl::StatusCode::kResourceExhausted, "exceeds the limit of 1073741824");
  // An octal 8 GiB (a valid ustar size) is the same error, not a malformed field.
  status = VisitTarGz("8g.tar.gz", TarHeader("a.png", "77777777777") + "tail");
  ExpectStatus(status, absl::StatusCode::kResourceExhausted, "exceeds the limit of 1073741824");
}

TEST(AllocationBoundsTest, TarMemberInsideTheLimitButTruncated) {
  // 2^30 - 1 bytes claimed in octal (just inside kMaxTarMemberBytes), 4 present.
  absl::Status status;
  EXPECT_LT(LargestRequestDuring([&] {
              status = VisitTarGz("big.tar.gz", TarHeader("a.png", "07777777777") + "tail");
            }),
            kSmallAllocation);
  ExpectStatus(status, absl::StatusCode::kDataLoss, "archive truncated");
}

// --- Sweep config files -------------------------------------------------------------------

absl::Status SweepStatus(const std::string& json_text) {
  return experiments::SweepConfigFromJson(nlohmann::json::parse(json_text), "test.json",
                                          "test.json")
      .status();
}

TEST(AllocationBoundsTest, SweepRepeatsOf2Pow60) {
  absl::Status status;
  EXPECT_LT(LargestRequestDuring([&] {
              status = SweepStatus(
                  absl::StrCat(R"({"models": ["resnet20"], "calib_repeats": )", k2Pow60, "}"));
            }),
            kSmallAllocation);
  ExpectStatus(status, absl::StatusCode::kInvalidArgument, "\"calib_repeats\" must be an integer");
  // 2^32 + 1 used to be cast to int: one repeat, silently.
  ExpectStatus(SweepStatus(R"({"models": ["resnet20"], "calib_repeats": 4294967297})"),
               absl::StatusCode::kInvalidArgument, "\"calib_repeats\" must be an integer");
  ExpectStatus(SweepStatus(R"({"models": ["resnet20"], "batch_size": 18446744073709551615})"),
               absl::StatusCode::kInvalidArgument, "\"batch_size\" must be an integer");
}

TEST(AllocationBoundsTest, SweepGridLargerThanTheLimit) {
  // Each axis is small; the product is not: 10 x 10 x 101 repeats = 10,100 runs.
  std::string models, quantizers;
  for (int i = 0; i < 10; ++i) {
    absl::StrAppend(&models, i > 0 ? "," : "", "\"m", i, "\"");
    absl::StrAppend(&quantizers, i > 0 ? "," : "", "\"q", i, "\"");
  }
  const std::string config = absl::StrCat(R"({"models": [)", models, R"(], "quantizers": [)",
                                          quantizers, R"(], "calib_repeats": )");
  absl::Status status;
  EXPECT_LT(LargestRequestDuring([&] { status = SweepStatus(config + "101}"); }), kSmallAllocation);
  ExpectStatus(status, absl::StatusCode::kInvalidArgument,
               absl::StrCat("more than ", experiments::kMaxSweepRuns, " runs"));
  EXPECT_TRUE(SweepStatus(config + "100}").ok());  // exactly the limit
}

TEST(AllocationBoundsTest, SweepRunsSharingARecordNameAreRefused) {
  ExpectStatus(SweepStatus(R"({"models": ["resnet20"],
                               "calibrators": ["percentile:99.99", "percentile_99.99"]})"),
               absl::StatusCode::kInvalidArgument,
               "would share the record name resnet20-xnnpack-per_channel-backend-percentile_99.99");
}

TEST(AllocationBoundsTest, PtqConfigIntegersMustFitTheirField) {
  const auto status = [](const char* text) {
    return experiments::PtqConfigFromJson(nlohmann::json::parse(text)).status();
  };
  // Used to be read as 8 (int narrowing) and as 2^64 - 1 (uint64 from a negative number).
  ExpectStatus(status(R"({"weight_bits": 4294967304})"), absl::StatusCode::kInvalidArgument,
               "\"weight_bits\": expected an integer in [-2147483648, 2147483647]");
  ExpectStatus(status(R"({"calib_seed": -1})"), absl::StatusCode::kInvalidArgument,
               "\"calib_seed\": expected an integer in [0, 18446744073709551615]");
  ExpectStatus(status(R"({"eval_images": 9223372036854775808})"),
               absl::StatusCode::kInvalidArgument, "\"eval_images\"");
  // The extremes of each field's range are accepted as they are.
  const auto config = experiments::PtqConfigFromJson(nlohmann::json::parse(
      R"({"calib_seed": 18446744073709551615, "eval_images": -9223372036854775808,
          "batch_size": -2147483648})"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->calib_seed, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(config->eval_images, std::numeric_limits<int64_t>::min());
  EXPECT_EQ(config->batch_size, std::numeric_limits<int>::min());
}

// --- ONNX ---------------------------------------------------------------------------------

// Protobuf wire format by hand (tag = field << 3 | wire type), so the test needs no generated code.
std::string Varint(uint64_t v) {
  std::string out;
  do {
    out += static_cast<char>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
    v >>= 7;
  } while (v != 0);
  return out;
}
std::string VarintField(int field, uint64_t v) { return Varint(field << 3) + Varint(v); }
std::string BytesField(int field, const std::string& bytes) {
  return Varint((field << 3) | 2) + Varint(bytes.size()) + bytes;
}

// ModelProto {ir_version 8, opset_import {version 13}, graph {initializer {dims, FLOAT, "w",
// raw_data}}}: one initializer is enough, the importer decodes every initializer up front.
std::string OnnxModelWithInitializer(const std::vector<int64_t>& dims, const std::string& raw) {
  std::string tensor;
  for (int64_t d : dims) tensor += VarintField(1, static_cast<uint64_t>(d));  // dims
  tensor += VarintField(2, 1);                                                // data_type FLOAT
  tensor += BytesField(8, "w");                                               // name
  tensor += BytesField(9, raw);                                               // raw_data
  const std::string graph = BytesField(5, tensor) + BytesField(2, "g");       // initializer, name
  return VarintField(1, 8) + BytesField(8, VarintField(2, 13)) + BytesField(7, graph);
}

TEST(AllocationBoundsTest, OnnxInitializerOf2Pow60Elements) {
  absl::Status status;
  EXPECT_LT(LargestRequestDuring([&] {
              status = ImportOnnx(OnnxModelWithInitializer({k2Pow60}, "abcd"), {}).status();
            }),
            kSmallAllocation);
  ExpectStatus(status, absl::StatusCode::kInvalidArgument,
               "initializer \"w\" has dims [1152921504606846976]");
}

TEST(AllocationBoundsTest, OnnxInitializerInsideTheLimitWithFourBytesOfData) {
  // 2^26 floats (256 MB, within max_tensor_elements) declared; raw_data holds 4 bytes.
  absl::Status status;
  EXPECT_LT(LargestRequestDuring([&] {
              status =
                  ImportOnnx(OnnxModelWithInitializer({int64_t{1} << 26}, "abcd"), {}).status();
            }),
            kSmallAllocation);
  ExpectStatus(status, absl::StatusCode::kInvalidArgument, "4 bytes of raw_data");
}

// --- Images (OpenCV) ----------------------------------------------------------------------

int64_t PeakResidentKb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

// A baseline JPEG: SOI, quantization table, a 1-component SOF0 of `height` x `width`, a DC/AC
// Huffman table, the scan header and one MCU's worth of entropy-coded bytes, then EOI. libjpeg
// pads missing data with gray (a warning, not an error), so the decoder produces an image of the
// declared size.
std::string TinyJpeg(uint16_t height, uint16_t width) {
  std::string j = "\xff\xd8";
  j += std::string("\xff\xdb\x00\x43\x00", 5) + std::string(64, '\x01');
  j += std::string("\xff\xc0\x00\x0b\x08", 5);
  j += static_cast<char>(height >> 8);
  j += static_cast<char>(height & 0xff);
  j += static_cast<char>(width >> 8);
  j += static_cast<char>(width & 0xff);
  j += std::string("\x01\x01\x11\x00", 4);
  // DC table 0 with one 1-bit code (category 0), AC table 0 with one 1-bit code (EOB).
  j += std::string("\xff\xc4\x00\x14\x00", 5) + std::string("\x01", 1) + std::string(15, '\0') +
       std::string("\x00", 1);
  j += std::string("\xff\xc4\x00\x14\x10", 5) + std::string("\x01", 1) + std::string(15, '\0') +
       std::string("\x00", 1);
  j += std::string("\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00", 10);
  j += std::string("\x00", 1);
  j += "\xff\xd9";
  return j;
}

TEST(AllocationBoundsTest, TinyJpegDecodesAtItsDeclaredSize) {
  // The builder is right: a 16 x 8 image decodes to 16 x 8.
  absl::StatusOr<data::Image> image = data::DecodeImage(TinyJpeg(16, 8), "small.jpg");
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->height, 16);
  EXPECT_EQ(image->width, 8);
}

TEST(AllocationBoundsTest, ImageHeaderClaimingAGigapixel) {
  // 32768 x 32768 (2^30 pixels) in a ~200-byte JPEG: refused before OpenCV allocates the
  // 3 GB pixel buffer; the peak resident memory of the process grows by far less than that.
  const int64_t before_kb = PeakResidentKb();
  absl::StatusOr<data::Image> image = data::DecodeImage(TinyJpeg(32768, 32768), "bomb.jpg");
  ASSERT_FALSE(image.ok());
  ExpectStatus(image.status(), absl::StatusCode::kInvalidArgument, "bomb.jpg");
  // 256 MB: well above a decoder's working set, well below the 3 GB buffer.
  EXPECT_LT(PeakResidentKb() - before_kb, 256 * 1024);
}

}  // namespace
}  // namespace qlab::fuzz
