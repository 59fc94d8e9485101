// ptq: post-training quantization of a model, recorded.
//
//   bazel run //experiments:ptq                         # ResNet20 and ResNet56, shared data
//   bazel run //experiments:ptq -- --model=resnet20 --quantizer=x86 --calibrator=entropy
//   bazel run //experiments:ptq -- --model=resnet56 --eval_images=2000 --out=runs/r56
//   bazel run //experiments:ptq -- --model=resnet20 --quantizer=x86 --export_onnx
//
// For each model: calibrate on a seeded subset of the CIFAR-10 training images, convert, lower to
// the int8 kernels, evaluate FP32, fake-quant and int8 on the test images, write <out>/<model>.json
// (refusing to overwrite) and append a summary line to <out>/summary.csv. With --export_onnx, also
// the converted model as ONNX (by default <out>/<model>.onnx; see the flag). Same flags and seeds
// give the same records apart from their "timing" sections.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/interrupt.h"
#include "core/status_macros.h"
#include "experiments/provenance.h"
#include "experiments/ptq.h"
#include "experiments/record_io.h"
#include "models/data/data_root.h"

ABSL_FLAG(std::vector<std::string>, model, std::vector<std::string>({"resnet20", "resnet56"}),
          "models, comma-separated: resnet20, resnet32, resnet44, resnet56, resnet18_cifar, "
          "resnet50_cifar, resnet18, resnet50");
ABSL_FLAG(std::string, weights, "",
          "weight file (safetensors or .pth) for a single --model; default: the shared "
          "checkpoint of resnet20/32/44/56");
ABSL_FLAG(std::string, quantizer, "xnnpack", "xnnpack, x86 or tensorrt");
ABSL_FLAG(std::string, calibrator, "",
          "activation calibrator (registry spec: minmax, moving_average:c=0.01, histogram, "
          "percentile:99.99, entropy, mse); default: the quantizer's");
ABSL_FLAG(std::string, weight_granularity, "per_channel", "per_channel or per_tensor");
ABSL_FLAG(std::string, weight_calibrator, "",
          "weight calibrator (registry spec): per_channel_minmax, per_channel_mse, "
          "per_channel_percentile:99.99, ... for per-channel weights; minmax, mse, ... with "
          "--weight_granularity=per_tensor; default: the quantizer's");
ABSL_FLAG(std::string, activation_scheme, "",
          "affine or symmetric (per-tensor activations on the backend's dtype and range); "
          "default: the quantizer's");
ABSL_FLAG(int, weight_bits, 8, "weight bit width (2..8)");
ABSL_FLAG(int, activation_bits, 8, "activation bit width (2..8)");
ABSL_FLAG(std::string, layer_config, "",
          "JSON file of per-layer overrides: {\"<layer or prefix>\": \"float\" | \"default\" | "
          "\"<calibrator spec>\"}; \"*\" sets every other layer");
ABSL_FLAG(int64_t, sqnr_images, 32,
          "evaluation images for the per-layer SQNR float vs fake-quant (0: skip)");
ABSL_FLAG(int64_t, calib_images, 512, "calibration images (seeded subset of the training set)");
ABSL_FLAG(uint64_t, calib_seed, 0, "seed of the calibration subset");
ABSL_FLAG(int64_t, eval_images, 0, "evaluate on the first N test images (0: all)");
ABSL_FLAG(int, batch_size, 100, "images per batch");
ABSL_FLAG(int, timing_runs, 20, "timed runs per engine and batch size (0: no timing)");
ABSL_FLAG(std::string, engine, "fast",
          "fast (FP32 engine on kernels/fp32) or reference (the plain-loop interpreter)");
ABSL_FLAG(int, threads, 2, "threads of the fast engine");
ABSL_FLAG(std::string, out, "",
          "output folder (relative paths are under the workspace when run with bazel run); "
          "default: a new results/ptq/run-<N>");
ABSL_FLAG(bool, overwrite, false, "replace existing records in --out");
ABSL_FLAG(std::string, export_onnx, "",
          "also write each converted model as ONNX (QuantizeLinear/DequantizeLinear, opset 13): "
          "true (or a bare --export_onnx) writes <out>/<model>.onnx beside the record; a path "
          "ending in .onnx writes that file (<stem>_<model>.onnx when several models run); any "
          "other value is a folder receiving <model>.onnx. Relative paths are under the "
          "workspace. An existing file is never replaced (not even with --overwrite); the record's "
          "\"exports\" section names each file with its sha256");
ABSL_FLAG(bool, export_onnx_fp32, false,
          "with --export_onnx, also write the FP32 model (batch norm folded) beside each "
          "converted one, as <name>_fp32.onnx");
ABSL_FLAG(std::string, cache_dir, "",
          "where the training archive is extracted once; default: <workspace>/.cache");

namespace qlab::experiments {
namespace {

// The flag's folder, or a new results/ptq/run-<N>.
std::string ResolveOut(const std::string& flag) {
  return flag.empty() ? NewNumberedDir("results/ptq/run-") : UnderWorkspace(flag);
}

absl::Status Main() {
  const std::vector<std::string> models = absl::GetFlag(FLAGS_model);
  if (models.size() > 1 && !absl::GetFlag(FLAGS_weights).empty()) {
    return absl::InvalidArgumentError("--weights applies to a single --model");
  }
  std::map<std::string, std::string> layer_overrides;
  if (const std::string file = absl::GetFlag(FLAGS_layer_config); !file.empty()) {
    QLAB_ASSIGN_OR_RETURN(const nlohmann::json value, ReadJsonFile(UnderWorkspace(file)));
    QLAB_ASSIGN_OR_RETURN(layer_overrides,
                          LayerOverridesFromJson(value, absl::StrCat("--layer_config=", file)));
  }
  const std::string out = ResolveOut(absl::GetFlag(FLAGS_out));
  std::string export_flag = absl::GetFlag(FLAGS_export_onnx);
  if (export_flag != "true" && export_flag != "1" && export_flag != "false" && export_flag != "0" &&
      !export_flag.empty()) {
    export_flag = UnderWorkspace(export_flag);
  }
  if (export_flag.empty() && absl::GetFlag(FLAGS_export_onnx_fp32)) {
    return absl::InvalidArgumentError("--export_onnx_fp32 needs --export_onnx");
  }
  for (const std::string& model : models) {
    PtqConfig config;
    config.model = model;
    config.weights = absl::GetFlag(FLAGS_weights);
    config.data_root = absl::GetFlag(FLAGS_data_root);
    config.cache_dir = absl::GetFlag(FLAGS_cache_dir);
    config.quantizer = absl::GetFlag(FLAGS_quantizer);
    config.calibrator = absl::GetFlag(FLAGS_calibrator);
    config.weight_granularity = absl::GetFlag(FLAGS_weight_granularity);
    config.weight_calibrator = absl::GetFlag(FLAGS_weight_calibrator);
    config.activation_scheme = absl::GetFlag(FLAGS_activation_scheme);
    config.weight_bits = absl::GetFlag(FLAGS_weight_bits);
    config.activation_bits = absl::GetFlag(FLAGS_activation_bits);
    config.layer_overrides = layer_overrides;
    config.sqnr_images = absl::GetFlag(FLAGS_sqnr_images);
    config.calib_images = absl::GetFlag(FLAGS_calib_images);
    config.calib_seed = absl::GetFlag(FLAGS_calib_seed);
    config.eval_images = absl::GetFlag(FLAGS_eval_images);
    config.batch_size = absl::GetFlag(FLAGS_batch_size);
    config.timing_runs = absl::GetFlag(FLAGS_timing_runs);
    config.engine = absl::GetFlag(FLAGS_engine);
    config.threads = absl::GetFlag(FLAGS_threads);
    const std::string record_path = absl::StrCat(out, "/", model, ".json");
    config.export_onnx = OnnxExportPath(export_flag, out, model, models.size() > 1);
    if (!config.export_onnx.empty() && absl::GetFlag(FLAGS_export_onnx_fp32)) {
      config.export_onnx_fp32 = OnnxFp32Path(config.export_onnx);
    }
    if (!absl::GetFlag(FLAGS_overwrite) && FileExists(record_path)) {
      return absl::AlreadyExistsError(
          absl::StrCat(record_path, " exists: choose another --out or pass --overwrite"));
    }
    for (const std::string& path : {config.export_onnx, config.export_onnx_fp32}) {
      if (path.empty()) continue;
      // Checked here too (RunPtq would refuse after calibrating) to fail before any work.
      if (FileExists(path)) {
        return absl::AlreadyExistsError(
            absl::StrCat(path,
                         " exists: ONNX exports are never replaced; choose another "
                         "--export_onnx or --out"));
      }
      std::error_code error;
      std::filesystem::create_directories(std::filesystem::path(path).parent_path(), error);
    }
    QLAB_ASSIGN_OR_RETURN(const nlohmann::json record, RunPtq(config));
    QLAB_RETURN_IF_ERROR(WriteJsonFile(record_path, record, absl::GetFlag(FLAGS_overwrite)));
    const nlohmann::json& r = record["results"];
    const double fp32 = r["fp32"]["top1"].get<double>();
    const double fq = r["fake_quant"]["top1"].get<double>();
    // int8 numbers when the graph was lowered (-1 otherwise: a layer left in float).
    const double int8 = r["int8"].value("top1", -1.0);
    const double int8_agreement = r["int8"].value("prediction_agreement_int8_fake_quant", -1.0);
    std::printf(
        "%s  %s/%s  fp32 %.2f %%  fake-quant %.2f %% (%+.2f)  int8 %.2f %% (%+.2f, %.2f %% same "
        "predictions as fake-quant)  -> %s\n",
        model.c_str(), config.quantizer.c_str(),
        record["config"]["calibrator"].get<std::string>().c_str(), 100 * fp32, 100 * fq,
        100 * (fq - fp32), 100 * int8, 100 * (int8 - fp32), 100 * int8_agreement,
        record_path.c_str());
    QLAB_RETURN_IF_ERROR(AppendCsvRow(
        absl::StrCat(out, "/summary.csv"),
        {"model", "quantizer", "calibrator", "weight_granularity", "calib_images", "calib_seed",
         "eval_images", "fp32_top1", "fake_quant_top1", "int8_top1", "agreement_fp32_fake_quant",
         "agreement_int8_fake_quant", "git_commit"},
        {model, config.quantizer, record["config"]["calibrator"].get<std::string>(),
         config.weight_granularity, std::to_string(config.calib_images),
         std::to_string(config.calib_seed),
         std::to_string(record["inputs"]["eval_images"].get<int64_t>()),
         absl::StrFormat("%.4f", fp32), absl::StrFormat("%.4f", fq), absl::StrFormat("%.4f", int8),
         absl::StrFormat("%.4f", r["prediction_agreement_fp32_fake_quant"].get<double>()),
         absl::StrFormat("%.4f", int8_agreement),
         record["provenance"]["git_commit"].get<std::string>()}));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace qlab::experiments

int main(int argc, char** argv) {
  // A bare --export_onnx (no value) means true, as for a boolean flag; Abseil requires a value
  // for a string flag.
  std::vector<char*> args(argv, argv + argc);
  static char export_true[] = "--export_onnx=true";
  for (char*& arg : args) {
    if (std::strcmp(arg, "--export_onnx") == 0 || std::strcmp(arg, "-export_onnx") == 0) {
      arg = export_true;
    }
  }
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  // Ctrl-C ends the run at once, but never halfway through writing a record or an ONNX file.
  qlab::InstallInterruptHandler();
  if (const absl::Status s = qlab::experiments::Main(); !s.ok()) {
    std::fprintf(stderr, "ptq: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
