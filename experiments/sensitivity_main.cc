// sensitivity: per-layer sensitivity of a model's PTQ, with a suggestion of which layers to keep
// in higher precision (experiments/sensitivity.h).
//
//   bazel run //experiments:sensitivity -- --model=resnet20
//   bazel run //experiments:sensitivity -- --model=resnet56 --quantizer=x86 --calibrator=minmax
//
// 2 x (quantized layers) + 2 PTQ runs on --eval_images test images (2,000 by default: ResNet20
// takes about 10 minutes on 2 cores). Writes <out>/sensitivity.json and <out>/sensitivity.html in
// a new results/sensitivity/<model>-<quantizer>-<N>/ unless --out is given; never overwrites.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "experiments/provenance.h"
#include "experiments/ptq.h"
#include "experiments/record_io.h"
#include "experiments/report.h"
#include "experiments/sensitivity.h"
#include "models/data/data_root.h"

ABSL_FLAG(std::string, model, "resnet20", "model (resnet20 ... resnet56, resnet18_cifar, ...)");
ABSL_FLAG(std::string, weights, "", "weight file; default: the shared checkpoint");
ABSL_FLAG(std::string, quantizer, "xnnpack", "xnnpack, x86 or tensorrt");
ABSL_FLAG(std::string, calibrator, "", "activation calibrator; default: the quantizer's");
ABSL_FLAG(std::string, weight_granularity, "per_channel", "per_channel or per_tensor");
ABSL_FLAG(std::string, activation_scheme, "", "affine or symmetric; default: the quantizer's");
ABSL_FLAG(int64_t, calib_images, 256, "calibration images (seeded subset of the training set)");
ABSL_FLAG(uint64_t, calib_seed, 0, "seed of the calibration subset");
ABSL_FLAG(int64_t, eval_images, 2000, "first N test images (0: all)");
ABSL_FLAG(std::vector<std::string>, layers, {},
          "only these layers (comma-separated node names); default: every quantized layer");
ABSL_FLAG(double, min_gain_points, 0.0,
          "suggest a layer only if keeping it float recovers at least this many points; "
          "0: two test images' worth, at least 0.1");
ABSL_FLAG(int, max_suggestions, 3, "at most this many layers suggested for float");
ABSL_FLAG(bool, verify, true, "measure the suggestion with one more run");
ABSL_FLAG(int, threads, 2, "threads of the fast engine");
ABSL_FLAG(std::string, from_record, "",
          "render <out>/sensitivity.html from an existing sensitivity.json instead of running "
          "(after report changes)");
ABSL_FLAG(std::string, out, "",
          "output folder; default: a new results/sensitivity/<model>-<quantizer>-<N>");

namespace qlab::experiments {
namespace {

absl::Status Main(int argc, char** argv) {
  PtqConfig base;
  base.model = absl::GetFlag(FLAGS_model);
  base.weights = absl::GetFlag(FLAGS_weights);
  base.data_root = absl::GetFlag(FLAGS_data_root);
  base.quantizer = absl::GetFlag(FLAGS_quantizer);
  base.calibrator = absl::GetFlag(FLAGS_calibrator);
  base.weight_granularity = absl::GetFlag(FLAGS_weight_granularity);
  base.activation_scheme = absl::GetFlag(FLAGS_activation_scheme);
  base.calib_images = absl::GetFlag(FLAGS_calib_images);
  base.calib_seed = absl::GetFlag(FLAGS_calib_seed);
  base.eval_images = absl::GetFlag(FLAGS_eval_images);
  base.threads = absl::GetFlag(FLAGS_threads);
  base.timing_runs = 10;

  SensitivityRunOptions options;
  options.layers = absl::GetFlag(FLAGS_layers);
  options.verify = absl::GetFlag(FLAGS_verify);
  options.analysis.max_suggestions = absl::GetFlag(FLAGS_max_suggestions);
  const double images = base.eval_images > 0 ? static_cast<double>(base.eval_images) : 10000.0;
  options.analysis.min_gain_points = absl::GetFlag(FLAGS_min_gain_points) > 0
                                         ? absl::GetFlag(FLAGS_min_gain_points)
                                         : std::max(0.1, 200.0 / images);
  options.command = "bazel run //experiments:sensitivity --";
  for (int i = 1; i < argc; ++i) absl::StrAppend(&options.command, " ", argv[i]);

  std::string out = UnderWorkspace(absl::GetFlag(FLAGS_out));
  if (out.empty()) {
    out = NewNumberedDir(
        absl::StrCat("results/sensitivity/", base.model, "-", base.quantizer, "-"));
  }
  if (const std::string from = absl::GetFlag(FLAGS_from_record); !from.empty()) {
    if (absl::GetFlag(FLAGS_out).empty()) {
      return absl::InvalidArgumentError("--from_record needs --out (a folder for the page)");
    }
    QLAB_ASSIGN_OR_RETURN(const nlohmann::json record, ReadJsonFile(UnderWorkspace(from)));
    const std::string page = absl::StrCat(out, "/sensitivity.html");
    QLAB_RETURN_IF_ERROR(WriteTextFile(page, RenderSensitivityReport(record), false));
    std::printf("%s\n", page.c_str());
    return absl::OkStatus();
  }
  const std::string json_path = absl::StrCat(out, "/sensitivity.json");
  const std::string html_path = absl::StrCat(out, "/sensitivity.html");
  for (const std::string& p : {json_path, html_path}) {
    if (FileExists(p)) return absl::AlreadyExistsError(absl::StrCat(p, " exists: choose another --out"));
  }
  QLAB_ASSIGN_OR_RETURN(const nlohmann::json record, RunSensitivity(base, options));
  QLAB_RETURN_IF_ERROR(WriteJsonFile(json_path, record, /*overwrite=*/false));
  QLAB_RETURN_IF_ERROR(WriteTextFile(html_path, RenderSensitivityReport(record), false));
  std::printf("FP32 %.2f %%, all quantized %.2f %%; most sensitive: %s; keep float: %s -> %s\n",
              100 * record["fp32_top1"].get<double>(),
              100 * record["all_quantized_top1"].get<double>(),
              record["ranking"].empty() ? "-" : record["ranking"][0].get<std::string>().c_str(),
              record["suggestion"]["keep_float"].dump().c_str(), html_path.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace qlab::experiments

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (const absl::Status s = qlab::experiments::Main(argc, argv); !s.ok()) {
    std::fprintf(stderr, "sensitivity: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
