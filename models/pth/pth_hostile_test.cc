// Hostile and malformed inputs for the .pth loader, all generated here: pickles naming os.system,
// builtins.eval or posix.system, opcodes outside the restricted set, truncation, missing archive
// entries, huge declared storage sizes, views reaching outside their storage, the legacy .th
// format, and random corruption of a valid pickle. Each must be a clear error, never a crash or a
// call.
#include <zip.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "models/pth/pth_loader.h"
#include "models/pth/restricted_unpickler.h"

namespace qlab::pth {
namespace {

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

// Emits pickle opcodes by name (protocol 2, as torch.save writes them).
class Pickle {
 public:
  Pickle() { bytes_ += "\x80\x02"; }
  Pickle& Op(char op) { bytes_ += op; return *this; }
  Pickle& Mark() { return Op('('); }
  Pickle& Global(const std::string& module, const std::string& name) {
    bytes_ += "c" + module + "\n" + name + "\n";
    return *this;
  }
  Pickle& Str(const std::string& s) {
    bytes_ += 'X';
    for (int i = 0; i < 4; ++i) bytes_ += static_cast<char>((s.size() >> (8 * i)) & 0xff);
    bytes_ += s;
    return *this;
  }
  Pickle& Int(int64_t v) {  // LONG1 with 8 bytes: any value
    bytes_ += "\x8a\x08";
    for (int i = 0; i < 8; ++i) bytes_ += static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
    return *this;
  }
  Pickle& IntTuple(const std::vector<int64_t>& values) {
    Mark();
    for (int64_t v : values) Int(v);
    return Op('t');
  }
  Pickle& Raw(const std::string& raw) { bytes_ += raw; return *this; }
  std::string Stop() { return bytes_ + "."; }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// An OrderedDict {name: tensor} whose one tensor uses storage `key` of `numel` elements.
std::string StateDictPickle(const std::string& name, int64_t numel, std::vector<int64_t> sizes,
                            std::vector<int64_t> strides, int64_t offset = 0,
                            const std::string& storage_type = "FloatStorage") {
  Pickle p;
  p.Global("collections", "OrderedDict").Op(')').Op('R').Mark().Str(name);
  p.Global("torch._utils", "_rebuild_tensor_v2").Mark();
  p.Mark().Str("storage").Global("torch", storage_type).Str("0").Str("cpu").Int(numel).Op('t');
  p.Op('Q').Int(offset).IntTuple(sizes).IntTuple(strides).Op('\x89');
  p.Global("collections", "OrderedDict").Op(')').Op('R').Op('t').Op('R').Op('u');
  return p.Stop();
}

// A torch.save-like zip: model/data.pkl = `pickle`, plus `entries` below model/.
std::string WriteZip(const std::string& file, const std::string& pickle,
                     const std::vector<std::pair<std::string, std::string>>& entries) {
  const std::string path = TempDir() + "/" + file;
  std::filesystem::remove(path);
  int error = 0;
  zip_t* zip = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  EXPECT_NE(zip, nullptr);
  // libzip reads the buffers at zip_close: keep them alive until then.
  std::vector<std::pair<std::string, std::string>> all = entries;
  all.insert(all.begin(), {"data.pkl", pickle});
  all.push_back({"version", "3\n"});
  for (const auto& [name, bytes] : all) {
    zip_source_t* source = zip_source_buffer(zip, bytes.data(), bytes.size(), 0);
    EXPECT_GE(zip_file_add(zip, ("model/" + name).c_str(), source, ZIP_FL_OVERWRITE), 0);
  }
  EXPECT_EQ(zip_close(zip), 0);
  return path;
}

std::string Floats(std::vector<float> values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

void ExpectError(const absl::StatusOr<TensorDict>& result, absl::StatusCode code,
                 const std::string& fragment) {
  ASSERT_FALSE(result.ok()) << "expected an error containing '" << fragment << "'";
  EXPECT_EQ(result.status().code(), code) << result.status();
  EXPECT_NE(result.status().message().find(fragment), std::string::npos) << result.status();
}

TEST(PthHostileTest, ValidHandMadeFileLoads) {
  const std::string path = WriteZip("ok.pth", StateDictPickle("module.w", 6, {2, 2}, {1, 3}, 1),
                                    {{"data/0", Floats({0, 1, 2, 3, 4, 5})}});
  absl::StatusOr<TensorDict> loaded = LoadPth(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Tensor& w = loaded->at("w");  // "module." stripped; transposed view from offset 1
  EXPECT_EQ(w.DebugString(), "float32[2,2]");
  const float* v = w.data<float>();
  EXPECT_EQ(v[0], 1);
  EXPECT_EQ(v[1], 4);
  EXPECT_EQ(v[2], 2);
  EXPECT_EQ(v[3], 5);
  PthOptions keep;
  keep.strip_module_prefix = false;
  EXPECT_EQ(LoadPth(path, keep)->count("module.w"), 1u);
}

TEST(PthHostileTest, DisallowedGlobalsAreRefusedByName) {
  const std::vector<std::pair<std::string, std::string>> evil = {
      {"os", "system"}, {"builtins", "eval"}, {"posix", "system"}, {"subprocess", "Popen"},
      {"torch", "load"}, {"collections", "namedtuple"}};
  for (const auto& [module, name] : evil) {
    Pickle p;
    p.Global(module, name).Str("touch /tmp/qlab_pwned").Op('\x85').Op('R');
    const std::string path = WriteZip("evil.pth", p.Stop(), {});
    ExpectError(LoadPth(path), absl::StatusCode::kInvalidArgument,
                absl::StrCat("global '", module, ".", name, "'"));
  }
  EXPECT_FALSE(std::filesystem::exists("/tmp/qlab_pwned"));
  // STACK_GLOBAL (protocol 4) goes through the same allow-list.
  Pickle p;
  p.Str("os").Str("system").Raw("\x93").Str("id").Op('\x85').Op('R');
  ExpectError(LoadPth(WriteZip("evil4.pth", p.Stop(), {})), absl::StatusCode::kInvalidArgument,
              "'os.system'");
  // An allowed storage type may name a storage but not be called.
  Pickle call;
  call.Global("torch", "FloatStorage").Op(')').Op('R');
  ExpectError(LoadPth(WriteZip("call.pth", call.Stop(), {})), absl::StatusCode::kInvalidArgument,
              "not a tensor constructor");
}

TEST(PthHostileTest, UnknownOpcodeNamesOpcodeAndOffset) {
  Pickle p;
  p.Op('}').Str("a").Raw("i__builtin__\nlist\n");  // INST at offset 2 + 1 + 5 + 1 = 9
  const absl::StatusOr<TensorDict> result = LoadPth(WriteZip("inst.pth", p.Stop(), {}));
  ExpectError(result, absl::StatusCode::kInvalidArgument, "opcode 0x69 (INST) at offset 9");
  Pickle q;
  q.Raw("\xff");
  ExpectError(LoadPth(WriteZip("ff.pth", q.Stop(), {})), absl::StatusCode::kInvalidArgument,
              "opcode 0xff (unknown) at offset 2");
}

TEST(PthHostileTest, TruncatedPickleIsDataLoss) {
  const std::string full = StateDictPickle("w", 4, {4}, {1});
  for (size_t cut : {size_t{1}, size_t{3}, size_t{20}, full.size() / 2, full.size() - 1}) {
    const std::string path = WriteZip("cut.pth", full.substr(0, cut), {{"data/0", Floats({1, 2, 3, 4})}});
    absl::StatusOr<TensorDict> result = LoadPth(path);
    ASSERT_FALSE(result.ok()) << "cut at " << cut;
    EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
  }
  // A string whose declared length runs past the end.
  Pickle p;
  p.Raw("X\xff\xff\xff\x7f" "abc");
  ExpectError(LoadPth(WriteZip("longstr.pth", p.Stop(), {})), absl::StatusCode::kDataLoss,
              "truncated");
}

TEST(PthHostileTest, MissingEntriesAreDataLossNamingThem) {
  const std::string path = WriteZip("nodata.pth", StateDictPickle("w", 4, {4}, {1}), {});
  ExpectError(LoadPth(path), absl::StatusCode::kDataLoss, "model/data/0 is missing");
  // Storage entry shorter than the declared storage.
  const std::string short_path =
      WriteZip("short.pth", StateDictPickle("w", 4, {4}, {1}), {{"data/0", Floats({1, 2})}});
  ExpectError(LoadPth(short_path), absl::StatusCode::kDataLoss, "has 8 bytes, expected 16");
  // No data.pkl at all: a zip that is not a torch.save file.
  std::string zip_path = TempDir() + "/plain.zip";
  int error = 0;
  zip_t* zip = zip_open(zip_path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  const std::string text = "hello";
  zip_file_add(zip, "readme.txt", zip_source_buffer(zip, text.data(), text.size(), 0), 0);
  zip_close(zip);
  ExpectError(LoadPth(zip_path), absl::StatusCode::kInvalidArgument, "data.pkl");
  ExpectError(LoadPth(TempDir() + "/absent.pth"), absl::StatusCode::kNotFound, "absent.pth");
}

TEST(PthHostileTest, HugeDeclaredSizesAreRefusedBeforeAllocation) {
  // A storage of 2^60 floats: refused from the declaration, no entry read.
  ExpectError(LoadPth(WriteZip("huge.pth", StateDictPickle("w", int64_t{1} << 60, {4}, {1}), {})),
              absl::StatusCode::kResourceExhausted, "storage '0' declares 1152921504606846976");
  // A tensor shape of 2^62 elements.
  ExpectError(LoadPth(WriteZip("hugeshape.pth",
                               StateDictPickle("w", 4, {int64_t{1} << 31, int64_t{1} << 31}, {0, 0}),
                               {{"data/0", Floats({1, 2, 3, 4})}})),
              absl::StatusCode::kResourceExhausted, "tensor w");
  // A view reaching past its storage, and strides designed to wrap 64-bit arithmetic.
  ExpectError(LoadPth(WriteZip("past.pth", StateDictPickle("w", 4, {3}, {2}),
                               {{"data/0", Floats({1, 2, 3, 4})}})),
              absl::StatusCode::kDataLoss, "reaches element 4 of storage '0', which has 4");
  ExpectError(LoadPth(WriteZip("wrap.pth",
                               StateDictPickle("w", 4, {3}, {int64_t{1} << 62}),
                               {{"data/0", Floats({1, 2, 3, 4})}})),
              absl::StatusCode::kDataLoss, "of storage '0'");
  ExpectError(LoadPth(WriteZip("neg.pth", StateDictPickle("w", 4, {2}, {-1}, 3),
                               {{"data/0", Floats({1, 2, 3, 4})}})),
              absl::StatusCode::kInvalidArgument, "negative stride");
  ExpectError(LoadPth(WriteZip("bigint.pth", Pickle().Raw("\x8a\x09" "123456789").Stop(), {})),
              absl::StatusCode::kOutOfRange, "does not fit in 64 bits");
}

TEST(PthHostileTest, NotAStateDict) {
  Pickle list;
  list.Op(']').Int(1).Op('a');
  ExpectError(LoadPth(WriteZip("list.pth", list.Stop(), {})), absl::StatusCode::kInvalidArgument,
              "the saved object is a list");
  Pickle dict;
  dict.Op('}').Str("epoch").Int(3).Op('s');
  ExpectError(LoadPth(WriteZip("dict.pth", dict.Stop(), {})), absl::StatusCode::kInvalidArgument,
              "keys [epoch]");
  // Self-referencing containers are inert values, not infinite loops.
  Pickle cycle;
  cycle.Op(']').Raw(std::string("q\0h\0", 4)).Op('a');  // BINPUT 0, BINGET 0, APPEND
  ExpectError(LoadPth(WriteZip("cycle.pth", cycle.Stop(), {})),
              absl::StatusCode::kInvalidArgument, "list");
}

TEST(PthHostileTest, LegacyAndForeignFormatsAreNamed) {
  // The shared akamaster checkpoints are legacy (pre-1.6) torch.save files.
  const std::filesystem::path workspace =
      std::filesystem::canonical("models/data/BUILD").parent_path().parent_path().parent_path();
  const std::string th =
      (workspace / ".." / "shared" / "data" / "cifar10-resnet-akamaster" / "resnet20-12fca82f.th")
          .string();
  ExpectError(LoadPth(th), absl::StatusCode::kUnimplemented, "legacy (pre-1.6, non-zip)");
  const std::string text = TempDir() + "/text.pth";
  std::ofstream(text) << "not a checkpoint";
  ExpectError(LoadPth(text), absl::StatusCode::kInvalidArgument, "not a PyTorch zip file");
}

TEST(PthHostileTest, RandomCorruptionNeverCrashes) {
  const std::string valid = StateDictPickle("w", 4, {2, 2}, {2, 1});
  ASSERT_TRUE(RestrictedUnpickle(valid, "valid").ok());
  std::mt19937 rng(99);
  int errors = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string bytes = valid;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<char>(rng() & 0xff);
    if (trial % 3 == 0) bytes.resize(rng() % bytes.size());
    absl::StatusOr<Unpickled> result = RestrictedUnpickle(bytes, "fuzz");
    errors += !result.ok();
  }
  EXPECT_GT(errors, 1000);  // most corruptions are caught; none crashed
  // The loader on a corrupted pickle with its storage present: errors or a valid tensor only.
  for (int trial = 0; trial < 200; ++trial) {
    std::string bytes = valid;
    bytes[rng() % bytes.size()] = static_cast<char>(rng() & 0xff);
    absl::StatusOr<TensorDict> result =
        LoadPth(WriteZip("fuzz.pth", bytes, {{"data/0", Floats({1, 2, 3, 4})}}));
    if (result.ok()) {
      for (const auto& [name, tensor] : *result) EXPECT_LE(tensor.numel(), 4) << name;
    }
  }
}

}  // namespace
}  // namespace qlab::pth
