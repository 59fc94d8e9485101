// safetensors: lossless round trips of every dtype the format defines, the conversions to qlab
// dtypes (exhaustive for F16/BF16), atomic no-clobber writing, and hostile files generated here
// (truncated, header past EOF, huge header length, not JSON, offsets past the end, overlaps,
// holes, dtype × shape ≠ bytes, duplicate names, ...) each rejected with the right code and a
// message naming the tensor, plus seeded random corruption that must never crash.
//
// Every hostile case goes through both entry points (ParseSafetensors on memory and
// ReadSafetensors on a file), which must agree on the status code. No tolerances: conversions
// are exact (or IEEE round-to-nearest-even, checked bit for bit).
#include "models/safetensors.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace qlab {
namespace {

using D = SafetensorsDType;

const D kAllDTypes[] = {D::kBool, D::kU8,  D::kI8,  D::kF8E5M2, D::kF8E4M3,
                        D::kI16,  D::kU16, D::kF16, D::kBF16,   D::kI32,
                        D::kU32,  D::kF32, D::kF64, D::kI64,    D::kU64};

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

std::string WriteRaw(const std::string& name, const std::string& bytes) {
  const std::string path = absl::StrCat(TempDir(), "/", name);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  return path;
}

std::string ReadRaw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// 8-byte length + header text + data, exactly as given (no padding, no validation).
std::string MakeFile(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

template <typename T>
std::string Bytes(std::initializer_list<T> values) {
  std::string out;
  for (T v : values) out.append(reinterpret_cast<const char*>(&v), sizeof(T));
  return out;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Parses `file_bytes` from memory and from a file; both must fail with `code` and a message
// containing every one of `parts`.
void ExpectRejected(const std::string& case_name, const std::string& file_bytes,
                    absl::StatusCode code, std::vector<std::string> parts) {
  SCOPED_TRACE(case_name);
  absl::StatusOr<SafetensorsFile> memory = ParseSafetensors(file_bytes);
  absl::StatusOr<SafetensorsFile> file =
      ReadSafetensors(WriteRaw(case_name + ".safetensors", file_bytes));
  for (const auto* result : {&memory, &file}) {
    ASSERT_FALSE(result->ok());
    EXPECT_EQ(result->status().code(), code) << result->status();
    for (const std::string& part : parts) {
      EXPECT_TRUE(Contains(std::string(result->status().message()), part))
          << "\"" << part << "\" not in: " << result->status();
    }
  }
}

// --- Round trips --------------------------------------------------------------------------

TEST(SafetensorsTest, EveryDTypeRoundTripsLosslessly) {
  std::mt19937 rng(6);
  SafetensorsFile file;
  file.metadata = {{"format", "pt"}, {"note", "caf\xc3\xa9"}};
  int index = 0;
  for (D dtype : kAllDTypes) {
    SafetensorsTensor t;
    t.name = absl::StrCat("t", index++, ".", SafetensorsDTypeName(dtype));
    t.dtype = dtype;
    t.shape = {2, 3};
    t.bytes.resize(6 * SafetensorsDTypeSize(dtype));
    for (char& c : t.bytes) c = static_cast<char>(rng() & (dtype == D::kBool ? 1 : 0xFF));
    file.tensors.push_back(t);
  }
  // A scalar and an empty tensor too (shape [] is one element, [0, 4] none).
  file.tensors.push_back({"scalar", D::kI64, {}, Bytes<int64_t>({42})});
  file.tensors.push_back({"empty", D::kF32, {0, 4}, ""});

  const std::string path = absl::StrCat(TempDir(), "/all_dtypes.safetensors");
  std::remove(path.c_str());
  ASSERT_TRUE(WriteSafetensors(path, file).ok());
  absl::StatusOr<SafetensorsFile> back = ReadSafetensors(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->metadata, file.metadata);
  ASSERT_EQ(back->tensors.size(), file.tensors.size());
  for (const SafetensorsTensor& want : file.tensors) {
    bool found = false;
    for (const SafetensorsTensor& got : back->tensors) {
      if (got.name != want.name) continue;
      found = true;
      EXPECT_EQ(got.dtype, want.dtype) << want.name;
      EXPECT_EQ(got.shape, want.shape) << want.name;
      EXPECT_EQ(got.bytes, want.bytes) << want.name;
    }
    EXPECT_TRUE(found) << want.name;
  }
  // The layout the reference writer uses: header padded to 8, larger dtypes first, so every
  // tensor is aligned to its element size in the file.
  const std::string raw = ReadRaw(path);
  uint64_t header_length;
  std::memcpy(&header_length, raw.data(), 8);
  EXPECT_EQ(header_length % 8, 0u);
  int previous_size = 8;
  for (const SafetensorsTensor& t : back->tensors) {
    EXPECT_LE(SafetensorsDTypeSize(t.dtype), previous_size) << t.name;
    previous_size = SafetensorsDTypeSize(t.dtype);
  }
}

TEST(SafetensorsTest, DTypeNamesParseBack) {
  for (D dtype : kAllDTypes) {
    absl::StatusOr<D> parsed = ParseSafetensorsDType(SafetensorsDTypeName(dtype));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, dtype);
  }
  absl::StatusOr<D> bad = ParseSafetensorsDType("F128");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(std::string(bad.status().message()), "F128"));
}

// --- Conversions to qlab tensors -------------------------------------------------------------

Tensor Convert(D dtype, std::vector<int64_t> shape, std::string bytes) {
  absl::StatusOr<Tensor> t = ToTensor({"x", dtype, std::move(shape), std::move(bytes)});
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : Tensor();
}

TEST(SafetensorsTest, FloatTypesBecomeFloat32Exactly) {
  const float inf = std::numeric_limits<float>::infinity();
  Tensor f16 = Convert(D::kF16, {7}, Bytes<uint16_t>({0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF,
                                                      0x7C00, 0x8000}));
  ASSERT_EQ(f16.dtype(), DType::kFloat32);
  const float want16[] = {1.0f, -2.0f, 65504.0f, std::ldexp(1.0f, -24),
                          std::ldexp(1023.0f, -24), inf, -0.0f};
  for (int i = 0; i < 7; ++i) EXPECT_EQ(f16.data<float>()[i], want16[i]) << i;
  EXPECT_TRUE(std::signbit(f16.data<float>()[6]));
  EXPECT_TRUE(std::isnan(Convert(D::kF16, {1}, Bytes<uint16_t>({0x7E00})).data<float>()[0]));

  Tensor bf16 = Convert(D::kBF16, {3}, Bytes<uint16_t>({0x3F80, 0xC040, 0x7F80}));
  EXPECT_EQ(bf16.data<float>()[0], 1.0f);
  EXPECT_EQ(bf16.data<float>()[1], -3.0f);
  EXPECT_EQ(bf16.data<float>()[2], inf);

  Tensor f64 = Convert(D::kF64, {2}, Bytes<double>({0.1, -1e300}));
  EXPECT_EQ(f64.data<float>()[0], 0.1f);  // round to nearest
  EXPECT_EQ(f64.data<float>()[1], -inf);  // beyond float32's range, as torch's .float()

  // float8 e4m3fn: 0x38 = 1.0, 0x7E = 448 (largest), 0x01 = 2^-9 (smallest subnormal), 0xB8 =
  // -1.0; 0x7F NaN. e5m2: 0x3C = 1.0, 0x7B = 57344 (largest), 0x7C = inf.
  Tensor e4m3 = Convert(D::kF8E4M3, {4}, Bytes<uint8_t>({0x38, 0x7E, 0x01, 0xB8}));
  const float want_e4m3[] = {1.0f, 448.0f, std::ldexp(1.0f, -9), -1.0f};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(e4m3.data<float>()[i], want_e4m3[i]) << i;
  EXPECT_TRUE(std::isnan(Convert(D::kF8E4M3, {1}, Bytes<uint8_t>({0x7F})).data<float>()[0]));
  Tensor e5m2 = Convert(D::kF8E5M2, {3}, Bytes<uint8_t>({0x3C, 0x7B, 0x7C}));
  EXPECT_EQ(e5m2.data<float>()[0], 1.0f);
  EXPECT_EQ(e5m2.data<float>()[1], 57344.0f);
  EXPECT_EQ(e5m2.data<float>()[2], inf);
}

TEST(SafetensorsTest, IntegerTypesBecomeTheNearestQlabDType) {
  Tensor i8 = Convert(D::kI8, {2}, Bytes<int8_t>({-128, 127}));
  EXPECT_EQ(i8.dtype(), DType::kInt8);
  EXPECT_EQ(i8.data<int8_t>()[0], -128);
  Tensor u8 = Convert(D::kU8, {1}, Bytes<uint8_t>({255}));
  EXPECT_EQ(u8.dtype(), DType::kUInt8);
  EXPECT_EQ(u8.data<uint8_t>()[0], 255);
  Tensor b = Convert(D::kBool, {2}, Bytes<uint8_t>({0, 1}));
  EXPECT_EQ(b.dtype(), DType::kUInt8);
  EXPECT_EQ(b.data<uint8_t>()[1], 1);
  Tensor i16 = Convert(D::kI16, {1}, Bytes<int16_t>({-32768}));
  EXPECT_EQ(i16.dtype(), DType::kInt32);
  EXPECT_EQ(i16.data<int32_t>()[0], -32768);
  Tensor u16 = Convert(D::kU16, {1}, Bytes<uint16_t>({65535}));
  EXPECT_EQ(u16.data<int32_t>()[0], 65535);
  Tensor i64 = Convert(D::kI64, {3}, Bytes<int64_t>({0, -2147483648LL, 2147483647LL}));
  EXPECT_EQ(i64.dtype(), DType::kInt32);
  EXPECT_EQ(i64.data<int32_t>()[1], std::numeric_limits<int32_t>::min());
  EXPECT_EQ(i64.data<int32_t>()[2], std::numeric_limits<int32_t>::max());
  EXPECT_EQ(Convert(D::kU64, {1}, Bytes<uint64_t>({7})).data<int32_t>()[0], 7);
  EXPECT_EQ(Convert(D::kU32, {1}, Bytes<uint32_t>({2147483647u})).data<int32_t>()[0],
            2147483647);
  // A scalar stays rank 0.
  EXPECT_EQ(Convert(D::kI64, {}, Bytes<int64_t>({5})).rank(), 0);
}

TEST(SafetensorsTest, UnrepresentableValuesAreRejectedNamingTensorAndValue) {
  struct Case {
    SafetensorsTensor t;
    absl::StatusCode code;
    std::string value;
  };
  const Case cases[] = {
      {{"step", D::kI64, {2}, Bytes<int64_t>({1, 4294967296LL})},
       absl::StatusCode::kInvalidArgument, "4294967296"},
      {{"neg", D::kI64, {1}, Bytes<int64_t>({-2147483649LL})},
       absl::StatusCode::kInvalidArgument, "-2147483649"},
      {{"big", D::kU64, {1}, Bytes<uint64_t>({18446744073709551615ull})},
       absl::StatusCode::kInvalidArgument, "18446744073709551615"},
      {{"u32", D::kU32, {1}, Bytes<uint32_t>({2147483648u})},
       absl::StatusCode::kInvalidArgument, "2147483648"},
      {{"mask", D::kBool, {3}, Bytes<uint8_t>({0, 1, 2})}, absl::StatusCode::kDataLoss,
       "byte 2"},
      {{"short", D::kF32, {2}, Bytes<float>({1.0f})}, absl::StatusCode::kDataLoss, "need 8"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Tensor> t = ToTensor(c.t);
    ASSERT_FALSE(t.ok()) << c.t.name;
    EXPECT_EQ(t.status().code(), c.code) << t.status();
    EXPECT_TRUE(Contains(std::string(t.status().message()), "\"" + c.t.name + "\""))
        << t.status();
    EXPECT_TRUE(Contains(std::string(t.status().message()), c.value)) << t.status();
  }
}

// Every finite or infinite half (and bfloat16) converts to float32 and back to the same bits:
// the float→16-bit rounding is the inverse of the exact widening on all 2 × 65536 patterns.
TEST(SafetensorsTest, HalfAndBFloat16RoundTripExhaustively) {
  for (D dtype : {D::kF16, D::kBF16}) {
    std::string bytes;
    for (uint32_t bits = 0; bits < 65536; ++bits) {
      const uint16_t b = static_cast<uint16_t>(bits);
      bytes.append(reinterpret_cast<const char*>(&b), 2);
    }
    Tensor wide = Convert(dtype, {65536}, bytes);
    absl::StatusOr<SafetensorsTensor> narrow = FromTensor("x", wide, dtype);
    ASSERT_TRUE(narrow.ok());
    int mismatches = 0;
    for (uint32_t bits = 0; bits < 65536; ++bits) {
      if (std::isnan(wide.data<float>()[bits])) continue;  // NaN payloads need not survive
      uint16_t got;
      std::memcpy(&got, &narrow->bytes[bits * 2], 2);
      if (got != bits && ++mismatches < 5) {
        ADD_FAILURE() << SafetensorsDTypeName(dtype) << " pattern " << bits << " came back "
                      << got;
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
}

TEST(SafetensorsTest, FloatToHalfRoundsToNearestEven) {
  const float eps = std::ldexp(1.0f, -10);  // half's spacing at 1.0
  struct Case {
    float in;
    float want;
  };
  const Case cases[] = {
      {1.0f + eps / 2, 1.0f},                   // tie, even (down)
      {1.0f + 3 * eps / 2, 1.0f + 2 * eps},     // tie, even (up)
      {1.0f + eps / 2 + eps / 64, 1.0f + eps},  // above the tie
      {65519.0f, 65504.0f},                     // below the overflow tie
      {65520.0f, std::numeric_limits<float>::infinity()},  // the tie goes to inf
      {std::ldexp(1.0f, -25), 0.0f},                       // subnormal tie to even 0
      {std::ldexp(3.0f, -25), std::ldexp(2.0f, -24)},      // subnormal tie to even 2
      {-1e-10f, -0.0f},
  };
  Tensor in = *Tensor::Create(DType::kFloat32, {8});
  for (int i = 0; i < 8; ++i) in.data<float>()[i] = cases[i].in;
  absl::StatusOr<SafetensorsTensor> half = FromTensor("x", in, D::kF16);
  ASSERT_TRUE(half.ok());
  Tensor back = *ToTensor(*half);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(back.data<float>()[i], cases[i].want) << "input " << cases[i].in;
  }
  // bfloat16: 1 + 2^-8 is the tie between 1 and 1 + 2^-7 → 1.
  in.data<float>()[0] = 1.0f + std::ldexp(1.0f, -8);
  EXPECT_EQ(ToTensor(*FromTensor("x", in, D::kBF16))->data<float>()[0], 1.0f);
  // Only floating types are accepted as the float32 storage type.
  absl::StatusOr<SafetensorsTensor> bad = FromTensor("w", in, D::kI32);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(std::string(bad.status().message()), "\"w\""));
}

TEST(SafetensorsTest, StateDictSaveLoadAndNoClobber) {
  std::map<std::string, Tensor> tensors;
  Tensor w = *Tensor::Create(DType::kFloat32, {2, 3, 1, 1});
  for (int i = 0; i < 6; ++i) w.data<float>()[i] = 0.25f * i - 0.5f;
  Tensor q = *Tensor::Create(DType::kInt8, {4});
  q.data<int8_t>()[3] = -7;
  Tensor u = *Tensor::Create(DType::kUInt8, {1});
  u.data<uint8_t>()[0] = 200;
  Tensor acc = *Tensor::Create(DType::kInt32, {2});
  acc.data<int32_t>()[1] = -123456789;
  tensors = {{"conv.weight", w}, {"conv.weight_q", q}, {"zp", u}, {"acc", acc}};

  const std::string dir = absl::StrCat(TempDir(), "/save_dir");
  ::mkdir(dir.c_str(), 0755);
  const std::string path = dir + "/weights.safetensors";
  std::remove(path.c_str());
  ASSERT_TRUE(SaveSafetensors(path, tensors, {{"arch", "test"}}).ok());

  absl::StatusOr<LoadedSafetensors> loaded = LoadSafetensors(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->metadata.at("arch"), "test");
  ASSERT_EQ(loaded->tensors.size(), 4u);
  for (const auto& [name, t] : tensors) {
    const Tensor& got = loaded->tensors.at(name);
    EXPECT_EQ(got.dtype(), t.dtype()) << name;
    EXPECT_EQ(got.shape(), t.shape()) << name;
    EXPECT_EQ(std::memcmp(got.raw_data(), t.raw_data(), t.nbytes()), 0) << name;
  }

  // A second save without overwrite fails and leaves the file as it was.
  const std::string before = ReadRaw(path);
  absl::Status again = SaveSafetensors(path, {{"other", w}});
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists) << again;
  EXPECT_EQ(ReadRaw(path), before);
  // With overwrite it is replaced.
  SaveOptions options;
  options.write.overwrite = true;
  ASSERT_TRUE(SaveSafetensors(path, {{"other", w}}, {}, options).ok());
  EXPECT_EQ(LoadSafetensors(path)->tensors.count("other"), 1u);
  // No temporary files are left behind.
  DIR* d = ::opendir(dir.c_str());
  ASSERT_NE(d, nullptr);
  int files = 0;
  while (dirent* e = ::readdir(d)) {
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") {
      ++files;
      EXPECT_EQ(std::string(e->d_name), "weights.safetensors");
    }
  }
  ::closedir(d);
  EXPECT_EQ(files, 1);
}

TEST(SafetensorsTest, WriterRejectsBadInput) {
  SafetensorsFile file;
  file.tensors.push_back({"a", D::kF32, {2}, std::string(4, '\0')});
  absl::StatusOr<std::string> s = SerializeSafetensors(file);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(std::string(s.status().message()), "\"a\"")) << s.status();
  file.tensors = {{"a", D::kF32, {1}, std::string(4, '\0')},
                  {"a", D::kF32, {1}, std::string(4, '\0')}};
  EXPECT_FALSE(SerializeSafetensors(file).ok());
  file.tensors = {{"__metadata__", D::kF32, {1}, std::string(4, '\0')}};
  EXPECT_FALSE(SerializeSafetensors(file).ok());
  file.tensors = {{"bad\xff", D::kF32, {1}, std::string(4, '\0')}};
  EXPECT_FALSE(SerializeSafetensors(file).ok());  // not UTF-8: would make a broken header
  EXPECT_EQ(ReadSafetensors(TempDir() + "/does_not_exist.safetensors").status().code(),
            absl::StatusCode::kNotFound);
}

// --- Hostile files ---------------------------------------------------------------------------

std::string ValidFile() {
  SafetensorsFile file;
  file.tensors.push_back({"conv1.weight", D::kF32, {2, 2}, Bytes<float>({1, 2, 3, 4})});
  file.tensors.push_back({"fc.bias", D::kF32, {3}, Bytes<float>({5, 6, 7})});
  return *SerializeSafetensors(file);
}

TEST(SafetensorsTest, TruncatedFilesAreDataLoss) {
  const std::string good = ValidFile();
  ASSERT_TRUE(ParseSafetensors(good).ok());
  // Cut inside the data section: the last tensor (by offset) reaches past the end.
  ExpectRejected("truncated_data", good.substr(0, good.size() - 3), absl::StatusCode::kDataLoss,
                 {"fc.bias", "past the end"});
  // Cut inside the header: the header length points past the end of the file.
  ExpectRejected("truncated_header", good.substr(0, 20), absl::StatusCode::kDataLoss,
                 {"header length", "past the end of the file"});
  ExpectRejected("shorter_than_length", good.substr(0, 5), absl::StatusCode::kDataLoss,
                 {"5 bytes"});
  ExpectRejected("empty", "", absl::StatusCode::kDataLoss, {"0 bytes"});
}

TEST(SafetensorsTest, HeaderLengthIsBoundedBeforeAllocation) {
  std::string huge = ValidFile();
  const uint64_t n = uint64_t{1} << 62;
  std::memcpy(huge.data(), &n, 8);
  ExpectRejected("huge_header", huge, absl::StatusCode::kInvalidArgument,
                 {"4611686018427387904", "exceeds"});
  // Just above the 100 MB limit, in a small file: still the limit, not an allocation.
  const uint64_t over = kMaxSafetensorsHeaderBytes + 1;
  std::memcpy(huge.data(), &over, 8);
  ExpectRejected("over_limit", huge, absl::StatusCode::kInvalidArgument, {"100000001"});
  // Length past EOF but within the limit.
  const uint64_t past = huge.size();
  std::memcpy(huge.data(), &past, 8);
  ExpectRejected("length_past_eof", huge, absl::StatusCode::kDataLoss, {"past the end"});
}

TEST(SafetensorsTest, MalformedHeadersAreInvalidArgument) {
  const std::string f4 = Bytes<float>({1, 2, 3, 4});
  struct Case {
    std::string name, header, data;
    absl::StatusCode code;
    std::vector<std::string> parts;
  };
  const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  const absl::StatusCode kDataLoss = absl::StatusCode::kDataLoss;
  const std::vector<Case> cases = {
      {"not_json", "{this is not json}", "", kInvalid, {"not well-formed JSON"}},
      {"not_object", "[1, 2]", "", kInvalid, {"'{'"}},
      {"trailing_garbage", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} x)", f4,
       kInvalid, {"JSON"}},
      {"bad_utf8", "{\"a\xff\":{}}", "", kInvalid, {"JSON"}},
      {"unknown_dtype", R"({"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", f4,
       kInvalid, {"\"w\"", "F128"}},
      {"negative_dim", R"({"w":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,16]}})", f4,
       kInvalid, {"\"w\"", "-1"}},
      {"fractional_dim", R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,16]}})", f4,
       kInvalid, {"\"w\"", "2.5"}},
      {"shape_overflow",
       R"({"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,16]}})", f4,
       kInvalid, {"\"w\"", "overflows"}},
      {"rank_too_high",
       R"({"w":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}})", "x",
       kInvalid, {"\"w\"", "rank 9"}},
      {"missing_field", R"({"w":{"dtype":"F32","shape":[4]}})", f4, kInvalid,
       {"\"w\"", "data_offsets"}},
      {"unknown_field",
       R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16],"device":"cuda"}})", f4,
       kInvalid, {"\"w\"", "device"}},
      {"offsets_not_pair", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0]}})", f4,
       kInvalid, {"\"w\"", "[0]"}},
      {"end_before_begin", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", f4,
       kInvalid, {"\"w\"", "[8,4]"}},
      {"entry_not_object", R"({"w":[1,2,3]})", f4, kInvalid, {"\"w\""}},
      {"duplicate_name",
       R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
       f4, kInvalid, {"\"w\"", "more than once"}},
      {"duplicate_field", R"({"w":{"dtype":"F32","dtype":"I32","shape":[4],"data_offsets":[0,16]}})",
       f4, kInvalid, {"\"dtype\"", "more than once"}},
      {"metadata_not_strings",
       R"({"__metadata__":{"epoch":3},"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
       f4, kInvalid, {"epoch"}},
      // dtype × shape disagrees with the byte range.
      {"size_mismatch", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", f4,
       kDataLoss, {"\"w\"", "12 bytes", "[0,16]"}},
      {"offsets_past_end", R"({"w":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", f4,
       kDataLoss, {"\"w\"", "[0,32]", "past the end"}},
      {"overlap",
       R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
       f4, kDataLoss, {"\"b\"", "overlap", "\"a\""}},
      {"hole",
       R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})",
       f4, kInvalid, {"\"b\"", "[4,12)"}},
      {"trailing_bytes", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f4,
       kInvalid, {"16 bytes", "cover only 8"}},
  };
  for (const Case& c : cases) ExpectRejected(c.name, MakeFile(c.header, c.data), c.code, c.parts);
  // Sanity: the same construction with a consistent header is accepted, including padding.
  absl::StatusOr<SafetensorsFile> ok = ParseSafetensors(
      MakeFile(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}   )", f4));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->tensors[0].bytes, f4);
}

// Seeded random corruption (bit flips, byte overwrites, cuts) of a valid file: every outcome is
// a clean Status, never a crash or an exception (nlohmann::json runs without exceptions here).
TEST(SafetensorsTest, RandomCorruptionNeverCrashes) {
  const std::string good = ValidFile();
  std::mt19937 rng(2024);
  int rejected = 0;
  constexpr int kTrials = 3000;
  for (int trial = 0; trial < kTrials; ++trial) {
    std::string bad = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % bad.size();
      switch (rng() % 3) {
        case 0:
          bad[pos] = static_cast<char>(bad[pos] ^ (1 << (rng() % 8)));
          break;
        case 1:
          bad[pos] = static_cast<char>(rng());
          break;
        default:
          bad.resize(pos);
          break;
      }
      if (bad.empty()) break;
    }
    absl::StatusOr<SafetensorsFile> parsed = ParseSafetensors(bad);
    if (!parsed.ok()) {
      ++rejected;
      continue;
    }
    for (const SafetensorsTensor& t : parsed->tensors) (void)ToTensor(t);
  }
  // Most edits hit the header or cut the file; a flip inside tensor data is legitimately fine.
  EXPECT_GT(rejected, kTrials / 2);
}

}  // namespace
}  // namespace qlab
