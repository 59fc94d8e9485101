// Fuzz target for ONNX import (interchange/onnx_import.h): ImportOnnx on the bytes as a serialized
// onnx::ModelProto. The importer promises errors, never crashes or huge allocations, for any
// bytes (truncated protobuf, tensors whose data does not match their dims, cycles, dangling
// inputs, ...); a model that imports must also print (every node's shape and attributes valid).
// Protobuf itself is Debian's uninstrumented libprotobuf: coverage guidance sees the importer.
#include "absl/strings/string_view.h"
#include "interchange/onnx_import.h"
#include "tests/fuzz/fuzz_targets.h"

namespace qlab::fuzz {

int FuzzOnnxImport(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Graph> graph = ImportOnnx(bytes, ImportOptions{});
  if (graph.ok()) (void)graph->Dump();
  return 0;
}

}  // namespace qlab::fuzz

QLAB_FUZZ_ENTRY_POINT(qlab::fuzz::FuzzOnnxImport)
