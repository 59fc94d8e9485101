// The bodies of qlab's libFuzzer targets, one function per untrusted-file parser, callable both
// from libFuzzer and from the ordinary corpus replay test.
//
// Each target lives in its own <parser>_fuzzer.cc. Compiled with QLAB_LIBFUZZER_MAIN (the
// *_fuzzer cc_binary targets, built with `--config=fuzz`), that file also defines
// LLVMFuzzerTestOneInput forwarding to its function; compiled without it (the `fuzz_targets`
// library), the functions can all be linked into one gcc-built cc_test, fuzz_corpus_replay_test,
// which replays the checked-in seed corpora and mutations of them in every `bazel test //...`.
// A target returns 0 and must never crash, leak, hang or trip a sanitizer whatever the bytes; where
// a parser promises a property (a parsed file serializes and re-parses), the target aborts when it
// does not hold, so libFuzzer reports it like a crash.
#ifndef QLAB_TESTS_FUZZ_FUZZ_TARGETS_H_
#define QLAB_TESTS_FUZZ_FUZZ_TARGETS_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace qlab::fuzz {

// models/safetensors.h: ParseSafetensors, ToTensor on every tensor, serialize + re-parse.
int FuzzSafetensors(const uint8_t* data, size_t size);
// models/pth/restricted_unpickler.h: RestrictedUnpickle on the raw bytes.
int FuzzRestrictedUnpickler(const uint8_t* data, size_t size);
// models/pth/pth_loader.h, zip layer: the bytes are the whole .pth file.
int FuzzPthZip(const uint8_t* data, size_t size);
// models/pth/pth_loader.h, tensor building: the bytes are data.pkl inside an otherwise valid
// torch.save zip with one 64-float storage "0", so pickles reach the stride/offset/dtype code.
int FuzzPthStateDict(const uint8_t* data, size_t size);
// The zip FuzzPthStateDict loads: entries fuzz/data.pkl = `pickle`, fuzz/data/0 (64 float32
// values -31.5, -30.5, ..., 31.5), fuzz/version; for regression tests that check the Status too.
std::string TorchZipWithPickle(const std::string& pickle);
// calibration/registry.h: LoadObserver, then qparams from the loaded state.
int FuzzObserverFile(const uint8_t* data, size_t size);
// models/data/dataset.h: OpenCifar10Binary, then every record decoded.
int FuzzCifar10Binary(const uint8_t* data, size_t size);
// experiments/sweep.h, ptq.h: the bytes as a JSON config file, given to SweepConfigFromJson,
// PtqConfigFromJson and LayerOverridesFromJson.
int FuzzSweepConfig(const uint8_t* data, size_t size);
// models/data/dataset.h: the one image of a one-class OpenImageFolder, decoded by Load.
int FuzzImageFolder(const uint8_t* data, size_t size);
// models/data/tar_gz.h: ForEachTarGzFile and OpenTarGzImageFolder on the archive bytes.
int FuzzTarGz(const uint8_t* data, size_t size);
// interchange/onnx_import.h: ImportOnnx on the bytes as a serialized ModelProto.
int FuzzOnnxImport(const uint8_t* data, size_t size);

// Writes `size` bytes to a file private to this process and target (under $TEST_TMPDIR when set,
// else /tmp) and returns its path: the path-taking loaders are fuzzed through a real file.
std::string WriteFuzzFile(const char* target, const uint8_t* data, size_t size);

}  // namespace qlab::fuzz

// Defines LLVMFuzzerTestOneInput forwarding to `function` in the one file that names it, only
// when building a libFuzzer binary.
#ifdef QLAB_LIBFUZZER_MAIN
#define QLAB_FUZZ_ENTRY_POINT(function)                                     \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { \
    return function(data, size);                                            \
  }
#else
#define QLAB_FUZZ_ENTRY_POINT(function)
#endif

#endif  // QLAB_TESTS_FUZZ_FUZZ_TARGETS_H_
