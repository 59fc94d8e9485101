// train/gemm_layers against PyTorch 1.13's autograd: for several conv shapes (the 7x7/2 stem,
// 3x3 stride 1 and 2, 1x1 stride 1 and the 1x1/2 projection, dilation, a real ResNet20 layer)
// and linear layers, the test draws seeded inputs, writes them as raw little-endian float32
// files into TEST_TMPDIR, runs torch_gemm_layers.py once (/usr/bin/python3: Debian's
// python3-torch; if it cannot import torch the test fails) and compares y, dx, dw and dbias.
//
// Tolerance: both sides compute in float32, in different summation orders (oneDNN's blocking vs
// qlab's tiles), so each is within Fp32SumTolerance(terms, magnitude) of the exact value
// (kernels/fp32/fp32_ref.h: the rigorous bound for any order) and they are within twice that of
// each other; the magnitude (sum of |terms|) comes from the double reference. PyTorch is also
// checked against the double reference with the single bound, which confirms that both sides
// read the tensors in the same layouts. A transposed weight, a wrong stride or padding, or a
// gradient of the wrong tensor differs by O(1) of the magnitude and fails by orders of magnitude.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/fp32/fp32_ref.h"
#include "kernels/threadpool/pthreadpool_ptr.h"
#include "train/gemm_layers/gemm_layers.h"
#include "train/gemm_layers/gemm_layers_ref.h"

namespace qlab::train {
namespace {

constexpr uint32_t kSeed = 20261209;

std::string OutDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}


std::vector<float> RandomFloats(size_t size, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(size);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<double> ToDouble(const std::vector<float>& v) { return {v.begin(), v.end()}; }

void WriteFloats(const std::string& path, const std::vector<float>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()),
          static_cast<std::streamsize>(v.size() * sizeof(float)));
  ASSERT_TRUE(f.good()) << path;
}

// Reads exactly `size` floats (little-endian host, as written by numpy's "<f4").
std::vector<float> ReadFloats(const std::string& path, size_t size) {
  std::ifstream f(path, std::ios::binary);
  std::vector<float> v(size);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(size * sizeof(float)));
  EXPECT_TRUE(f.good() && f.peek() == EOF) << path << ": not " << size << " floats";
  return v;
}

// One layer's tensors: inputs drawn here, qlab's results, the reference and its magnitudes.
struct LayerCase {
  std::string name;
  std::string line;  // the cases.txt line
  std::vector<float> x, w, b, dy;
  std::vector<float> qlab[4];  // y, dx, dw, db
  std::vector<double> reference[4], magnitude[4];
  size_t terms[4];  // products summed into each output
};

const char* const kOutputs[4] = {"y", "dx", "dw", "db"};

LayerCase MakeConv(const std::string& name, size_t batch, size_t in_h, size_t in_w, size_t in_c,
                   size_t out_c, size_t kernel, size_t stride, size_t pad, size_t dilation,
                   std::mt19937& rng, pthreadpool_t pool) {
  ConvLayerShape s;
  kernels::Fp32ConvGeometry& g = s.geometry;
  g.batch = batch;
  g.in_h = in_h;
  g.in_w = in_w;
  g.in_channels = in_c;
  g.kernel_h = g.kernel_w = kernel;
  g.stride_h = g.stride_w = stride;
  g.pad_h = g.pad_w = pad;
  g.dilation_h = g.dilation_w = dilation;
  g.out_h = (in_h + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
  g.out_w = (in_w + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
  s.out_channels = out_c;
  LayerCase c;
  c.name = name;
  std::ostringstream line;
  line << "conv " << name << " " << batch << " " << in_h << " " << in_w << " " << in_c << " "
       << out_c << " " << kernel << " " << kernel << " " << stride << " " << stride << " " << pad
       << " " << pad << " " << dilation << " " << dilation;
  c.line = line.str();
  c.x = RandomFloats(ConvInputSizeRef(s), rng);
  c.w = RandomFloats(ConvWeightSizeRef(s), rng);
  c.b = RandomFloats(out_c, rng);
  c.dy = RandomFloats(ConvOutputSizeRef(s), rng);
  const size_t sizes[4] = {c.dy.size(), c.x.size(), c.w.size(), c.b.size()};
  for (int i = 0; i < 4; ++i) {
    c.qlab[i].resize(sizes[i]);
    c.reference[i].resize(sizes[i]);
    c.magnitude[i].resize(sizes[i]);
  }
  GemmLayerScratch scratch;
  ConvForward(s, c.x.data(), c.w.data(), c.b.data(), c.qlab[0].data(), scratch, pool);
  ConvBackward(s, c.x.data(), c.w.data(), c.dy.data(), c.qlab[1].data(), c.qlab[2].data(),
               c.qlab[3].data(), scratch, pool);
  const std::vector<double> x = ToDouble(c.x), w = ToDouble(c.w), b = ToDouble(c.b),
                            dy = ToDouble(c.dy);
  ConvForwardRef(s, x.data(), w.data(), b.data(), c.reference[0].data(), c.magnitude[0].data());
  ConvBackwardRef(s, x.data(), w.data(), dy.data(), c.reference[1].data(), c.magnitude[1].data(),
                  c.reference[2].data(), c.magnitude[2].data(), c.reference[3].data(),
                  c.magnitude[3].data());
  const size_t taps = kernel * kernel, pixels = batch * g.out_h * g.out_w;
  c.terms[0] = taps * in_c + 1;
  c.terms[1] = taps * out_c;
  c.terms[2] = pixels;
  c.terms[3] = pixels;
  return c;
}

LayerCase MakeLinear(const std::string& name, size_t batch, size_t in, size_t out,
                     std::mt19937& rng, pthreadpool_t pool) {
  LayerCase c;
  c.name = name;
  c.line = "linear " + name + " " + std::to_string(batch) + " " + std::to_string(in) + " " +
           std::to_string(out);
  c.x = RandomFloats(batch * in, rng);
  c.w = RandomFloats(out * in, rng);
  c.b = RandomFloats(out, rng);
  c.dy = RandomFloats(batch * out, rng);
  const size_t sizes[4] = {c.dy.size(), c.x.size(), c.w.size(), c.b.size()};
  for (int i = 0; i < 4; ++i) {
    c.qlab[i].resize(sizes[i]);
    c.reference[i].resize(sizes[i]);
    c.magnitude[i].resize(sizes[i]);
  }
  GemmLayerScratch scratch;
  LinearForward(batch, in, out, c.x.data(), c.w.data(), c.b.data(), c.qlab[0].data(), scratch,
                pool);
  LinearBackward(batch, in, out, c.x.data(), c.w.data(), c.dy.data(), c.qlab[1].data(),
                 c.qlab[2].data(), c.qlab[3].data(), scratch, pool);
  const std::vector<double> x = ToDouble(c.x), w = ToDouble(c.w), b = ToDouble(c.b),
                            dy = ToDouble(c.dy);
  LinearForwardRef(batch, in, out, x.data(), w.data(), b.data(), c.reference[0].data(),
                   c.magnitude[0].data());
  LinearBackwardRef(batch, in, out, x.data(), w.data(), dy.data(), c.reference[1].data(),
                    c.magnitude[1].data(), c.reference[2].data(), c.magnitude[2].data(),
                    c.reference[3].data(), c.magnitude[3].data());
  c.terms[0] = in + 1;
  c.terms[1] = out;
  c.terms[2] = batch;
  c.terms[3] = batch;
  return c;
}

TEST(GemmLayersTorchTest, GradientsMatchPyTorchAutograd) {
  kernels::PthreadpoolPtr pool(pthreadpool_create(2));
  std::mt19937 rng(kSeed);
  std::vector<LayerCase> cases;
  cases.push_back(MakeConv("stem_7x7s2p3", 2, 40, 36, 3, 16, 7, 2, 3, 1, rng, pool.get()));
  cases.push_back(MakeConv("conv_3x3s1p1_c17", 3, 12, 11, 17, 20, 3, 1, 1, 1, rng, pool.get()));
  cases.push_back(MakeConv("conv_3x3s2p1", 2, 15, 16, 16, 32, 3, 2, 1, 1, rng, pool.get()));
  cases.push_back(MakeConv("proj_1x1s2", 3, 14, 14, 32, 64, 1, 2, 0, 1, rng, pool.get()));
  cases.push_back(MakeConv("conv_1x1s1", 2, 7, 9, 24, 40, 1, 1, 0, 1, rng, pool.get()));
  cases.push_back(MakeConv("conv_3x3s1p2d2", 1, 9, 9, 5, 6, 3, 1, 2, 2, rng, pool.get()));
  cases.push_back(MakeConv("r20_3x3_16-16_32", 4, 32, 32, 16, 16, 3, 1, 1, 1, rng, pool.get()));
  cases.push_back(MakeLinear("fc_64-10", 32, 64, 10, rng, pool.get()));
  cases.push_back(MakeLinear("fc_512-1000", 4, 512, 1000, rng, pool.get()));
  cases.push_back(MakeLinear("fc_33-18", 5, 33, 18, rng, pool.get()));

  const std::string dir = OutDir();
  std::ofstream list(dir + "/cases.txt");
  for (const LayerCase& c : cases) {
    list << c.line << "\n";
    WriteFloats(dir + "/" + c.name + ".x.bin", c.x);
    WriteFloats(dir + "/" + c.name + ".w.bin", c.w);
    WriteFloats(dir + "/" + c.name + ".b.bin", c.b);
    WriteFloats(dir + "/" + c.name + ".dy.bin", c.dy);
  }
  list.close();
  const std::string command = "/usr/bin/python3 train/gemm_layers/torch_gemm_layers.py " + dir;
  ASSERT_EQ(std::system(command.c_str()), 0)
      << command << " failed: is python3-torch installed (tools/setup.sh)?";

  for (const LayerCase& c : cases) {
    for (int i = 0; i < 4; ++i) {
      SCOPED_TRACE(c.name + " " + kOutputs[i]);
      const std::vector<float> torch =
          ReadFloats(dir + "/" + c.name + ".torch_" + kOutputs[i] + ".bin", c.qlab[i].size());
      double worst_vs_torch = 0.0;
      for (size_t j = 0; j < torch.size(); ++j) {
        const double bound = kernels::Fp32SumTolerance(c.terms[i], c.magnitude[i][j]);
        const double torch_error = std::fabs(torch[j] - c.reference[i][j]);
        const double difference = std::fabs(static_cast<double>(c.qlab[i][j]) - torch[j]);
        ASSERT_LE(torch_error, bound) << "PyTorch vs reference at " << j;
        ASSERT_LE(difference, 2 * bound)
            << "qlab " << c.qlab[i][j] << " vs PyTorch " << torch[j] << " at " << j;
        if (c.magnitude[i][j] > 0)
          worst_vs_torch = std::max(worst_vs_torch, difference / c.magnitude[i][j]);
      }
      std::cout << c.name << " " << kOutputs[i]
                << ": max |qlab - torch| / magnitude = " << worst_vs_torch << "\n";
    }
  }
}

}  // namespace
}  // namespace qlab::train
