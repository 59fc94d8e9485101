// Tests of Sgd (train/optim/sgd.h): option validation and registration errors, bit-identical
// results for any thread count, checkpointing of momentum buffers, and agreement with
// torch.optim.SGD (PyTorch 1.13) over 20 steps of random gradients.
//
// The PyTorch comparison: each case draws parameters, 20 steps of gradients and a per-step
// learning rate from a seeded generator, writes them to TEST_TMPDIR as safetensors, and
// torch_sgd.py runs torch.optim.SGD on them with both of PyTorch's implementations
// (foreach=False and foreach=True), two parameter groups (with and without weight decay).
//
// Tolerance: |qlab − torch| <= kUlpsPerStep × kSteps × FLT_EPSILON × scale per element, where
// scale = max(|p|, |buf|, 1) over the final parameter and buffer of that element (both sides).
// qlab rounds every product before its sum (-ffp-contract=off); PyTorch's vectorized
// add-with-alpha (vec::fmadd) fuses `a + alpha × b`, so each of the <= 4 multiply-adds of an
// update can round differently by about one ulp of its result. Per step that is at most ~4 ulps
// of the largest quantity involved; the buffer carries its difference forward multiplied by
// momentum < 1 and the parameter adds lr × (buffer difference), lr <= 0.1, so over kSteps steps
// the differences add up to at most ~kSteps × 4 ulps of the largest magnitude, hence
// kUlpsPerStep = 4. Real mistakes are far larger: weight decay applied or skipped on one
// parameter moves it by ~lr × wd × |p| = 1e-3 per step (wd = 0.01 in the cases that test it),
// dampening on the first step by 0.25 × lr × |g|, a wrong momentum or nesterov term by O(lr).
// Observed on this machine (printed per case): at most 6.6 × FLT_EPSILON × scale (dampening;
// 2-3.5 in the other cases), the same against both PyTorch implementations, i.e. the bound has
// ~12× headroom; deliberately breaking the update (weight decay on every parameter, dampening
// on the first step) fails the affected cases.
#include "train/optim/sgd.h"

#include <pthreadpool.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "models/safetensors.h"

namespace qlab::train {
namespace {

constexpr int kSteps = 20;
constexpr double kUlpsPerStep = 4.0;

std::string OutDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

// --- validation and registration ---------------------------------------------------------

TEST(SgdOptionsTest, AcceptsDefaultsAndNesterov) {
  EXPECT_TRUE(ValidateSgdOptions(SgdOptions()).ok());
  SgdOptions nesterov;
  nesterov.nesterov = true;
  EXPECT_TRUE(Sgd::Create(nesterov).ok());
  SgdOptions plain;
  plain.momentum = 0.0f;
  plain.weight_decay = 0.0f;
  EXPECT_TRUE(Sgd::Create(plain).ok());
}

TEST(SgdOptionsTest, RejectsWhatPyTorchRejectsAndNamesTheValue) {
  struct Bad {
    const char* what;
    SgdOptions options;
  };
  std::vector<Bad> bad;
  auto add = [&](const char* what, auto mutate) {
    SgdOptions o;
    mutate(o);
    bad.push_back({what, o});
  };
  add("lr", [](SgdOptions& o) { o.lr = -0.5f; });
  add("lr", [](SgdOptions& o) { o.lr = NAN; });
  add("momentum", [](SgdOptions& o) { o.momentum = -0.5f; });
  add("momentum", [](SgdOptions& o) { o.momentum = 1.0f; });
  add("dampening", [](SgdOptions& o) { o.dampening = 1.5f; });
  add("weight_decay", [](SgdOptions& o) { o.weight_decay = -1e-4f; });
  add("weight_decay", [](SgdOptions& o) { o.weight_decay = INFINITY; });
  add("nesterov", [](SgdOptions& o) {
    o.nesterov = true;
    o.momentum = 0.0f;
  });
  add("nesterov", [](SgdOptions& o) {
    o.nesterov = true;
    o.dampening = 0.1f;
  });
  for (const Bad& b : bad) {
    const absl::StatusOr<Sgd> sgd = Sgd::Create(b.options);
    ASSERT_FALSE(sgd.ok()) << b.what;
    EXPECT_EQ(sgd.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(sgd.status().message().find(b.what), absl::string_view::npos) << sgd.status();
  }
}

TEST(SgdTest, AddParameterErrors) {
  Sgd sgd{SgdOptions()};
  std::vector<float> w(8), g(8);
  ASSERT_TRUE(sgd.AddParameter("fc.weight", w.data(), g.data(), 8, true).ok());
  const absl::Status duplicate = sgd.AddParameter("fc.weight", w.data(), g.data(), 8, true);
  EXPECT_EQ(duplicate.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(duplicate.message().find("fc.weight"), absl::string_view::npos);
  EXPECT_EQ(sgd.AddParameter("", w.data(), g.data(), 8, true).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sgd.AddParameter("null", nullptr, g.data(), 8, true).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sgd.AddParameter("overlap", w.data(), w.data() + 2, 4, true).code(),
            absl::StatusCode::kInvalidArgument);
  sgd.Step(nullptr);
  const absl::Status late = sgd.AddParameter("fc.bias", w.data(), g.data(), 8, false);
  EXPECT_EQ(late.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(sgd.num_parameters(), 1u);
}

// --- semantics that need no reference ----------------------------------------------------

// Without momentum and weight decay one step is p − lr·g, computed here directly.
TEST(SgdTest, PlainStepIsParameterMinusLrTimesGradient) {
  SgdOptions o;
  o.momentum = 0.0f;
  o.weight_decay = 0.0f;
  o.lr = 0.3f;
  Sgd sgd(o);
  std::vector<float> w = {1.0f, -2.0f, 0.5f}, g = {0.25f, 1.0f, -4.0f};
  const std::vector<float> before = w;
  ASSERT_TRUE(sgd.AddParameter("w", w.data(), g.data(), w.size(), true).ok());
  sgd.Step(nullptr);
  for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(w[i], before[i] - 0.3f * g[i]) << i;
  EXPECT_TRUE(sgd.MomentumBuffers().empty());  // momentum 0: no buffers, as in PyTorch
}

// The buffer starts as the first gradient (not zero, no dampening), as PyTorch documents.
TEST(SgdTest, FirstStepBufferIsTheGradient) {
  SgdOptions o;
  o.weight_decay = 0.0f;
  o.dampening = 0.5f;
  Sgd sgd(o);
  std::vector<float> w = {1.0f, 2.0f}, g = {0.75f, -3.0f};
  ASSERT_TRUE(sgd.AddParameter("w", w.data(), g.data(), w.size(), true).ok());
  EXPECT_TRUE(sgd.MomentumBuffers().empty());
  sgd.Step(nullptr);
  const auto buffers = sgd.MomentumBuffers();
  ASSERT_EQ(buffers.count("w"), 1u);
  EXPECT_EQ(buffers.at("w"), g);
}

// Parameters of `sizes` elements (one larger than several of Step's 16384-element chunks) with
// seeded random values; steps with fresh random gradients and a changing lr.
struct Model {
  std::vector<std::vector<float>> values, grads;
};

Model MakeModel(const std::vector<size_t>& sizes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Model m;
  for (size_t size : sizes) {
    m.values.emplace_back(size);
    m.grads.emplace_back(size);
    for (float& v : m.values.back()) v = normal(rng);
  }
  return m;
}

void Register(Sgd& sgd, Model& m) {
  for (size_t i = 0; i < m.values.size(); ++i) {
    ASSERT_TRUE(sgd.AddParameter(absl::StrCat("p", i), m.values[i].data(), m.grads[i].data(),
                                 m.values[i].size(), /*apply_weight_decay=*/i % 2 == 0)
                    .ok());
  }
}

void RunSteps(Sgd& sgd, Model& m, int first_step, int steps, pthreadpool_t pool) {
  for (int step = first_step; step < first_step + steps; ++step) {
    std::mt19937 rng(1000 + step);  // the gradients depend on the step only
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (auto& g : m.grads) {
      for (float& v : g) v = normal(rng);
    }
    sgd.set_lr(0.1f / static_cast<float>(1 + step));
    sgd.Step(pool);
  }
}

const std::vector<size_t> kThreadTestSizes = {70001, 3, 16384, 16385, 1, 0, 4099};

TEST(SgdTest, BitIdenticalForAnyThreadCount) {
  SgdOptions o;
  o.nesterov = true;
  std::vector<Model> results;
  for (size_t threads : {0, 1, 2, 3}) {  // 0: no pool at all
    pthreadpool_t pool = threads == 0 ? nullptr : pthreadpool_create(threads);
    Model m = MakeModel(kThreadTestSizes, 7);
    Sgd sgd(o);
    Register(sgd, m);
    RunSteps(sgd, m, 0, 5, pool);
    if (pool != nullptr) pthreadpool_destroy(pool);
    results.push_back(std::move(m));
  }
  for (size_t r = 1; r < results.size(); ++r) {
    for (size_t p = 0; p < kThreadTestSizes.size(); ++p) {
      const std::vector<float>& a = results[0].values[p];
      const std::vector<float>& b = results[r].values[p];
      ASSERT_EQ(a.size(), b.size());
      // kThreadTestSizes includes an empty parameter, whose data() may be null: memcmp on null
      // is undefined even for 0 bytes (UBSan).
      if (a.empty()) continue;
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
          << "parameter " << p << ", run " << r;
    }
  }
  // The steps did change the parameters (the comparison above is not of untouched arrays).
  EXPECT_NE(results[0].values[0], MakeModel(kThreadTestSizes, 7).values[0]);
}

// Stopping after 5 steps, saving values and buffers, and continuing in a new optimizer from the
// saved state gives exactly the run that never stopped.
TEST(SgdTest, RestoredBuffersContinueTheRunBitForBit) {
  const std::vector<size_t> sizes = {100, 17, 5};
  SgdOptions o;
  o.dampening = 0.1f;
  Model straight = MakeModel(sizes, 3);
  Sgd sgd_straight(o);
  Register(sgd_straight, straight);
  RunSteps(sgd_straight, straight, 0, 10, nullptr);

  Model first_half = MakeModel(sizes, 3);
  Sgd sgd_first(o);
  Register(sgd_first, first_half);
  RunSteps(sgd_first, first_half, 0, 5, nullptr);
  const auto buffers = sgd_first.MomentumBuffers();
  ASSERT_EQ(buffers.size(), sizes.size());

  Model resumed = first_half;  // the parameter values a checkpoint would hold
  Sgd sgd_resumed(o);
  Register(sgd_resumed, resumed);
  ASSERT_TRUE(sgd_resumed.RestoreMomentumBuffers(buffers).ok());
  RunSteps(sgd_resumed, resumed, 5, 5, nullptr);
  for (size_t p = 0; p < sizes.size(); ++p) EXPECT_EQ(resumed.values[p], straight.values[p]) << p;
  EXPECT_EQ(sgd_resumed.MomentumBuffers(), sgd_straight.MomentumBuffers());
}

TEST(SgdTest, RestoreValidatesNamesAndSizes) {
  Model m = MakeModel({4, 2}, 1);
  Sgd sgd{SgdOptions()};
  Register(sgd, m);
  const std::map<std::string, std::vector<float>> good = {{"p0", std::vector<float>(4, 1.0f)},
                                                          {"p1", std::vector<float>(2, 2.0f)}};
  struct Bad {
    std::map<std::string, std::vector<float>> buffers;
    const char* named;
  };
  std::vector<Bad> bad = {{good, "p9"}, {good, "p1"}, {good, "p1"}};
  bad[0].buffers["p9"] = {1.0f};              // unknown parameter
  bad[1].buffers["p1"] = {1.0f, 2.0f, 3.0f};  // wrong size
  bad[2].buffers.erase("p1");                 // missing parameter
  for (const Bad& b : bad) {
    const absl::Status s = sgd.RestoreMomentumBuffers(b.buffers);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find(b.named), absl::string_view::npos) << s;
    EXPECT_TRUE(sgd.MomentumBuffers().empty()) << "a failed restore left buffers behind";
  }
  ASSERT_TRUE(sgd.RestoreMomentumBuffers(good).ok());
  EXPECT_EQ(sgd.MomentumBuffers(), good);

  SgdOptions no_momentum;
  no_momentum.momentum = 0.0f;
  Sgd plain(no_momentum);
  Model m2 = MakeModel({4, 2}, 1);
  Register(plain, m2);
  EXPECT_EQ(plain.RestoreMomentumBuffers(good).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(plain.RestoreMomentumBuffers({}).ok());
}

// --- against torch.optim.SGD -------------------------------------------------------------

struct ParamSpec {
  const char* name;
  size_t size;
  bool weight_decay;
  float grad_scale;
};
// Odd sizes, so PyTorch's vector loops run their scalar tails too.
const ParamSpec kParams[] = {
    {"conv1.weight", 1037, true, 1.0f}, {"bn1.weight", 13, false, 0.3f},
    {"bn1.bias", 13, false, 0.3f},      {"fc.weight", 330, true, 2.0f},
    {"fc.bias", 10, false, 0.5f},
};

struct TorchCase {
  const char* name;
  float momentum;
  float dampening;
  float weight_decay;
  bool nesterov;
};
const TorchCase kCases[] = {
    {"momentum", 0.9f, 0.0f, 0.01f, false},      {"nesterov", 0.9f, 0.0f, 5e-4f, true},
    {"nesterov_decay", 0.9f, 0.0f, 0.01f, true}, {"dampening", 0.9f, 0.25f, 0.01f, false},
    {"plain", 0.0f, 0.0f, 0.01f, false},         {"no_decay", 0.5f, 0.0f, 0.0f, false},
};

struct CaseData {
  std::map<std::string, std::vector<float>> initial;
  std::map<std::string, std::vector<std::vector<float>>> grads;  // [step][element]
  std::vector<float> lrs;
};

CaseData MakeCaseData(size_t case_index) {
  std::mt19937 rng(static_cast<uint32_t>(42 + case_index));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  CaseData d;
  for (const ParamSpec& p : kParams) {
    std::vector<float>& v = d.initial[p.name];
    for (size_t i = 0; i < p.size; ++i) v.push_back(normal(rng));
    auto& g = d.grads[p.name];
    g.assign(kSteps, std::vector<float>(p.size));
    for (auto& step : g) {
      for (float& x : step) x = p.grad_scale * normal(rng);
    }
  }
  // A warm-up then a decay, so that set_lr between steps is exercised.
  for (int s = 0; s < kSteps; ++s) {
    d.lrs.push_back(s < 3 ? 0.02f * static_cast<float>(s + 1)
                          : 0.1f * std::cos(0.07f * static_cast<float>(s - 3)));
  }
  return d;
}

Tensor FloatTensor(const std::vector<float>& values, Shape shape) {
  Tensor t = *Tensor::Create(DType::kFloat32, shape);
  std::memcpy(t.data<float>(), values.data(), values.size() * sizeof(float));
  return t;
}

std::string Hex(float v) { return absl::StrFormat("%a", static_cast<double>(v)); }

absl::Status WriteCaseInput(size_t case_index) {
  const TorchCase& c = kCases[case_index];
  const CaseData d = MakeCaseData(case_index);
  std::map<std::string, Tensor> tensors;
  std::vector<std::string> names, decay_names;
  for (const ParamSpec& p : kParams) {
    names.push_back(p.name);
    if (p.weight_decay) decay_names.push_back(p.name);
    tensors[absl::StrCat("param.", p.name)] =
        FloatTensor(d.initial.at(p.name), {static_cast<int64_t>(p.size)});
    std::vector<float> flat;
    for (const auto& step : d.grads.at(p.name)) flat.insert(flat.end(), step.begin(), step.end());
    tensors[absl::StrCat("grad.", p.name)] =
        FloatTensor(flat, {kSteps, static_cast<int64_t>(p.size)});
  }
  tensors["lr"] = FloatTensor(d.lrs, {kSteps});
  const std::map<std::string, std::string> metadata = {
      {"names", absl::StrJoin(names, ",")},  {"decay_names", absl::StrJoin(decay_names, ",")},
      {"momentum", Hex(c.momentum)},         {"dampening", Hex(c.dampening)},
      {"weight_decay", Hex(c.weight_decay)}, {"nesterov", c.nesterov ? "true" : "false"},
  };
  const std::string path = absl::StrCat(OutDir(), "/", c.name, ".in.safetensors");
  SaveOptions overwrite;  // a rerun in the same TEST_TMPDIR replaces its own inputs
  overwrite.write.overwrite = true;
  return SaveSafetensors(path, tensors, metadata, overwrite);
}

class SgdTorchConformanceTest : public ::testing::TestWithParam<size_t> {
 protected:
  // One Python process for all cases: importing torch takes about a second.
  static void SetUpTestSuite() {
    std::vector<std::string> names;
    for (size_t i = 0; i < std::size(kCases); ++i) {
      const absl::Status written = WriteCaseInput(i);
      if (!written.ok()) {
        std::cerr << written << "\n";
        return;
      }
      names.push_back(kCases[i].name);
    }
    const std::string command = absl::StrCat("/usr/bin/python3 train/optim/torch_sgd.py ", OutDir(),
                                             " ", absl::StrJoin(names, " "));
    python_ok_ = std::system(command.c_str()) == 0;
  }
  static bool python_ok_;
};
bool SgdTorchConformanceTest::python_ok_ = false;

TEST_P(SgdTorchConformanceTest, MatchesTorchOptimSgd) {
  ASSERT_TRUE(python_ok_) << "torch_sgd.py failed: is python3-torch installed (tools/setup.sh)?";
  const TorchCase& c = kCases[GetParam()];
  CaseData d = MakeCaseData(GetParam());
  SgdOptions o;
  o.momentum = c.momentum;
  o.dampening = c.dampening;
  o.weight_decay = c.weight_decay;
  o.nesterov = c.nesterov;
  absl::StatusOr<Sgd> sgd = Sgd::Create(o);
  ASSERT_TRUE(sgd.ok()) << sgd.status();
  std::map<std::string, std::vector<float>> values = d.initial, grads;
  for (const ParamSpec& p : kParams) {
    grads[p.name].resize(p.size);
    ASSERT_TRUE(sgd->AddParameter(p.name, values[p.name].data(), grads[p.name].data(), p.size,
                                  p.weight_decay)
                    .ok());
  }
  pthreadpool_t pool = pthreadpool_create(2);
  for (int s = 0; s < kSteps; ++s) {
    for (const ParamSpec& p : kParams) grads[p.name] = d.grads.at(p.name)[s];
    sgd->set_lr(d.lrs[s]);
    sgd->Step(pool);
  }
  pthreadpool_destroy(pool);
  const auto buffers = sgd->MomentumBuffers();
  EXPECT_EQ(buffers.empty(), c.momentum == 0.0f);

  absl::StatusOr<LoadedSafetensors> torch =
      LoadSafetensors(absl::StrCat(OutDir(), "/", c.name, ".torch.safetensors"));
  ASSERT_TRUE(torch.ok()) << torch.status();
  for (const char* impl : {"single", "foreach"}) {
    double max_ulps = 0.0, max_abs = 0.0, max_moved = 0.0;
    for (const ParamSpec& p : kParams) {
      const Tensor& ref = torch->tensors.at(absl::StrCat(impl, ".param.", p.name));
      ASSERT_EQ(ref.numel(), static_cast<int64_t>(p.size));
      const std::string momentum_key = absl::StrCat(impl, ".momentum.", p.name);
      ASSERT_EQ(torch->tensors.count(momentum_key) == 1, c.momentum != 0.0f) << momentum_key;
      const float* ref_buf =
          c.momentum != 0.0f ? torch->tensors.at(momentum_key).data<float>() : nullptr;
      for (size_t i = 0; i < p.size; ++i) {
        const float mine = values[p.name][i];
        const float theirs = ref.data<float>()[i];
        double scale = std::max({1.0, std::fabs(double{mine}), std::fabs(double{theirs})});
        if (ref_buf != nullptr) {
          const float my_buf = buffers.at(p.name)[i];
          scale = std::max({scale, std::fabs(double{my_buf}), std::fabs(double{ref_buf[i]})});
          // The buffers obey the same bound (they take part in every later update).
          EXPECT_LE(std::fabs(double{my_buf} - ref_buf[i]),
                    kUlpsPerStep * kSteps * FLT_EPSILON * scale)
              << impl << " momentum " << p.name << "[" << i << "]";
        }
        const double diff = std::fabs(double{mine} - theirs);
        max_abs = std::max(max_abs, diff);
        max_ulps = std::max(max_ulps, diff / (FLT_EPSILON * scale));
        max_moved = std::max(max_moved, std::fabs(double{mine} - d.initial.at(p.name)[i]));
        ASSERT_LE(diff, kUlpsPerStep * kSteps * FLT_EPSILON * scale)
            << impl << " " << p.name << "[" << i << "]: qlab " << mine << ", torch " << theirs;
      }
    }
    std::cout << c.name << " vs torch " << impl << ": max |diff| " << max_abs << " = " << max_ulps
              << " × FLT_EPSILON × scale (bound " << kUlpsPerStep * kSteps
              << "); parameters moved up to " << max_moved << "\n";
    // The comparison is meaningful: the parameters moved far more than the tolerance.
    EXPECT_GT(max_moved, 0.1);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, SgdTorchConformanceTest,
                         ::testing::Range<size_t>(0, std::size(kCases)),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return std::string(kCases[info.param].name);
                         });

}  // namespace
}  // namespace qlab::train
