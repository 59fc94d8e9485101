// Datasets and the batch loader: the shared CIFAR-10 test set's counts and labels, a generated
// CIFAR-10 binary, image folders, the ImageNet validation subset, generated .tar.gz archives
// (including hostile member paths), missing/corrupt images as errors naming the file or skipped
// and counted, deterministic order and seeded subsets.
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "models/data/batch_loader.h"
#include "models/data/data_root.h"
#include "models/data/dataset.h"
#include "models/data/random.h"
#include "models/data/tar_gz.h"
#include "models/data/test_util.h"
#include "models/data/transforms.h"

namespace qlab::data {
namespace {

namespace fs = std::filesystem;
using testing::EncodePng;
using testing::SharedDataRoot;
using testing::TempDir;
using testing::WriteFile;

Image Solid(int height, int width, uint8_t r, uint8_t g, uint8_t b) {
  Image image;
  image.height = height;
  image.width = width;
  for (int i = 0; i < height * width; ++i) image.rgb.insert(image.rgb.end(), {r, g, b});
  return image;
}

std::string FreshDir(const std::string& name) {
  const std::string dir = TempDir() + "/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Drains a loader; returns the labels in order, or the first error.
absl::StatusOr<std::vector<int>> DrainLabels(BatchLoader& loader, std::vector<int>* batch_sizes) {
  std::vector<int> labels;
  for (;;) {
    absl::StatusOr<std::optional<Batch>> batch = loader.Next();
    if (!batch.ok()) return batch.status();
    if (!batch->has_value()) return labels;
    const Batch& b = **batch;
    if (batch_sizes != nullptr) batch_sizes->push_back(static_cast<int>(b.images.dim(0)));
    labels.insert(labels.end(), b.labels.begin(), b.labels.end());
  }
}

TEST(SharedCifarTest, CountsLabelsAndOrder) {
  absl::StatusOr<std::unique_ptr<Dataset>> test_set = OpenCifar10Test(SharedDataRoot());
  ASSERT_TRUE(test_set.ok()) << test_set.status();
  const Dataset& ds = **test_set;
  ASSERT_EQ(ds.size(), 10000);
  std::map<int, int> per_class;
  for (int64_t i = 0; i < ds.size(); ++i) ++per_class[ds.label(i)];
  for (int c = 0; c < 10; ++c) EXPECT_EQ(per_class[c], 1000) << Cifar10ClassNames()[c];
  // The original test_batch order starts cat ship ship airplane frog frog automobile frog cat
  // automobile (../shared/data/cifar10-test-png/MANIFEST.txt).
  const std::vector<int> first_ten = {3, 8, 8, 0, 6, 6, 1, 6, 3, 1};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(ds.label(i), first_ten[i]) << i;
  EXPECT_TRUE(absl::EndsWith(ds.name(0), "/test/cat/domestic_cat_s_000907.png")) << ds.name(0);
  absl::StatusOr<Image> image = ds.Load(9999);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->height, 32);
  EXPECT_EQ(image->width, 32);
}

TEST(SharedCifarTest, ImageFolderAgreesWithLabelsCsv) {
  const std::string dir = SharedDataRoot() + "/cifar10-test-png";
  absl::StatusOr<std::unique_ptr<Dataset>> folder = OpenImageFolder(dir + "/test");
  absl::StatusOr<std::unique_ptr<Dataset>> csv = OpenCifar10TestPng(dir);
  ASSERT_TRUE(folder.ok()) << folder.status();
  ASSERT_TRUE(csv.ok()) << csv.status();
  ASSERT_EQ((*folder)->size(), 10000);
  EXPECT_EQ((*folder)->class_names(), Cifar10ClassNames());
  std::map<std::string, int> label_of;
  for (int64_t i = 0; i < (*csv)->size(); ++i) label_of[(*csv)->name(i)] = (*csv)->label(i);
  for (int64_t i = 0; i < (*folder)->size(); ++i) {
    ASSERT_EQ(label_of.at((*folder)->name(i)), (*folder)->label(i)) << (*folder)->name(i);
    if (i > 0) {
      ASSERT_LT((*folder)->name(i - 1), (*folder)->name(i));  // sorted within class
    }
  }
}

TEST(SharedImageNetTest, Val1300LabelsAgreeWithFullValTxt) {
  const std::string root = SharedDataRoot();
  absl::StatusOr<std::unique_ptr<Dataset>> subset = OpenImageNetVal1300(root);
  ASSERT_TRUE(subset.ok()) << subset.status();
  ASSERT_EQ((*subset)->size(), 1300);
  ASSERT_EQ((*subset)->class_names().size(), 1000u);
  EXPECT_EQ((*subset)->class_names()[0], "tench, Tinca tinca");
  EXPECT_EQ((*subset)->label(0), 472);  // ./data/ILSVRC2012_val_00000347.JPEG, 472
  // The same images labelled by the full 50,000-line val.txt, keeping only those present.
  absl::StatusOr<std::unique_ptr<Dataset>> full = OpenImageNetVal(
      root + "/imagenet-val1300/images", root + "/imagenet-meta/val.txt",
      root + "/imagenet-meta/synset_words.txt", /*only_present=*/true);
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_EQ((*full)->size(), 1300);
  std::map<std::string, int> label_of;
  for (int64_t i = 0; i < (*full)->size(); ++i) label_of[(*full)->name(i)] = (*full)->label(i);
  for (int64_t i = 0; i < (*subset)->size(); ++i) {
    EXPECT_EQ(label_of.at((*subset)->name(i)), (*subset)->label(i)) << (*subset)->name(i);
  }
  absl::StatusOr<Image> image = (*subset)->Load(0);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->height, 227);
}

TEST(DataRootTest, MissingRootSaysWhatToDownload) {
  absl::StatusOr<std::string> root = ResolveDataRoot(TempDir() + "/no-such-data");
  ASSERT_FALSE(root.ok());
  EXPECT_EQ(root.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(root.status().message().find("cifar-10-binary.tar.gz"), std::string::npos);
  EXPECT_NE(root.status().message().find("--data_root"), std::string::npos);
  const std::string empty = FreshDir("empty-root");
  absl::StatusOr<std::unique_ptr<Dataset>> test_set = OpenCifar10Test(empty);
  ASSERT_FALSE(test_set.ok());
  EXPECT_NE(test_set.status().message().find("cifar-10-batches-bin"), std::string::npos);
  EXPECT_FALSE(OpenCifar10Train(empty, empty + "/cache").ok());
  EXPECT_FALSE(OpenImageNetVal1300(empty).ok());
}

// Two CIFAR-10 binary files of 3 and 2 records with known pixels.
std::vector<std::string> WriteCifarBinary(const std::string& dir) {
  std::vector<std::string> files;
  int record = 0;
  for (int f = 0; f < 2; ++f) {
    std::string bytes;
    for (int r = 0; r < (f == 0 ? 3 : 2); ++r, ++record) {
      bytes.push_back(static_cast<char>((record * 3) % 10));  // labels 0 3 6 9 2
      for (int c = 0; c < 3; ++c) {
        for (int p = 0; p < 1024; ++p) bytes.push_back(static_cast<char>(record * 40 + c * 7 + p % 5));
      }
    }
    files.push_back(absl::StrCat(dir, "/data_batch_", f + 1, ".bin"));
    WriteFile(files.back(), bytes);
  }
  return files;
}

TEST(Cifar10BinaryTest, ReadsRecordsLabelsAndPlanes) {
  const std::string dir = FreshDir("cifar-bin");
  const std::vector<std::string> files = WriteCifarBinary(dir);
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenCifar10Binary(files);
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_EQ((*ds)->size(), 5);
  const std::vector<int> labels = {0, 3, 6, 9, 2};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ((*ds)->label(i), labels[i]);
    absl::StatusOr<Image> image = (*ds)->Load(i);
    ASSERT_TRUE(image.ok());
    // Pixel (y, x) is plane index p = 32y + x; channel c holds record*40 + 7c + p%5.
    for (int c = 0; c < 3; ++c) {
      EXPECT_EQ(image->at(0, 0, c), i * 40 + c * 7);
      EXPECT_EQ(image->at(1, 3, c), i * 40 + c * 7 + (32 + 3) % 5);
    }
  }
  EXPECT_EQ((*ds)->name(4), files[1] + "[1]");
}

TEST(Cifar10BinaryTest, RejectsBadSizesAndLabelsNamingTheFile) {
  const std::string dir = FreshDir("cifar-bin-bad");
  WriteFile(dir + "/short.bin", std::string(3072, '\1'));
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenCifar10Binary({dir + "/short.bin"});
  ASSERT_FALSE(ds.ok());
  EXPECT_EQ(ds.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(ds.status().message().find("short.bin"), std::string::npos);
  std::string bad_label(3073, '\0');
  bad_label[0] = 10;
  WriteFile(dir + "/label.bin", bad_label);
  ds = OpenCifar10Binary({dir + "/label.bin"});
  ASSERT_FALSE(ds.ok());
  EXPECT_NE(ds.status().message().find("label 10"), std::string::npos);
  ds = OpenCifar10BinaryDir(dir, Split::kTest);
  ASSERT_FALSE(ds.ok());
  EXPECT_NE(ds.status().message().find("test_batch.bin"), std::string::npos);
}

TEST(Cifar10BinaryTest, DataRootPrefersOfficialBinaryForTraining) {
  const std::string root = FreshDir("root-with-bin");
  fs::create_directories(root + "/cifar-10-batches-bin");
  for (int i = 1; i <= 5; ++i) {
    std::string record(3073, static_cast<char>(i));
    WriteFile(absl::StrCat(root, "/cifar-10-batches-bin/data_batch_", i, ".bin"), record);
  }
  absl::StatusOr<std::unique_ptr<Dataset>> train = OpenCifar10Train(root, root + "/cache");
  ASSERT_TRUE(train.ok()) << train.status();
  ASSERT_EQ((*train)->size(), 5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ((*train)->label(i), i + 1);
}

// A small image folder: classes b (2 images) and a (1 image, in a nested folder) plus a corrupt
// PNG and a non-image file.
std::string WriteFolder(bool with_corrupt) {
  const std::string root = FreshDir(with_corrupt ? "folder-corrupt" : "folder");
  fs::create_directories(root + "/b");
  fs::create_directories(root + "/a/nested");
  WriteFile(root + "/b/2.png", EncodePng(Solid(32, 32, 20, 0, 0)));
  WriteFile(root + "/b/1.png", EncodePng(Solid(32, 32, 10, 0, 0)));
  WriteFile(root + "/a/nested/0.PNG", EncodePng(Solid(32, 32, 0, 0, 0)));
  WriteFile(root + "/a/notes.txt", "not an image");
  if (with_corrupt) WriteFile(root + "/b/15.png", "\x89PNG\r\n\x1a\ngarbage");
  return root;
}

TEST(ImageFolderTest, SortedClassesAndFilesLikeTorchvision) {
  const std::string root = WriteFolder(false);
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenImageFolder(root);
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_EQ((*ds)->size(), 3);
  EXPECT_EQ((*ds)->class_names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ((*ds)->name(0), root + "/a/nested/0.PNG");
  EXPECT_EQ((*ds)->name(1), root + "/b/1.png");
  EXPECT_EQ((*ds)->name(2), root + "/b/2.png");
  EXPECT_EQ((*ds)->label(0), 0);
  EXPECT_EQ((*ds)->label(2), 1);
  EXPECT_EQ(OpenImageFolder(root + "/missing").status().code(), absl::StatusCode::kNotFound);
  fs::create_directories(root + "/c");
  absl::StatusOr<std::unique_ptr<Dataset>> with_empty = OpenImageFolder(root);
  ASSERT_FALSE(with_empty.ok());
  EXPECT_NE(with_empty.status().message().find("c"), std::string::npos);
}

TEST(BatchLoaderTest, BatchesAreNchwWithDeterministicOrder) {
  const std::string root = WriteFolder(false);
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenImageFolder(root);
  ASSERT_TRUE(ds.ok());
  const CifarEvalTransform transform;
  LoaderOptions options;
  options.batch_size = 2;
  absl::StatusOr<std::unique_ptr<BatchLoader>> loader =
      BatchLoader::Create(**ds, {2, 0, 1}, transform, options);
  ASSERT_TRUE(loader.ok()) << loader.status();
  absl::StatusOr<std::optional<Batch>> first = (*loader)->Next();
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_EQ((*first)->images.DebugString(), "float32[2,3,32,32] NCHW");
  EXPECT_EQ((*first)->indices, (std::vector<int64_t>{2, 0}));
  EXPECT_EQ((*first)->labels, (std::vector<int>{1, 0}));
  // Sample 2 is solid red 20: channel 0 of image 0 is (20/255 - 0.485) / 0.229 everywhere.
  const float* pixels = (*first)->images.data<float>();
  EXPECT_EQ(pixels[0], (20.0f / 255.0f - 0.485f) / 0.229f);
  EXPECT_EQ(pixels[1023], pixels[0]);
  absl::StatusOr<std::optional<Batch>> second = (*loader)->Next();
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((*second)->images.dim(0), 1);
  absl::StatusOr<std::optional<Batch>> end = (*loader)->Next();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(end->has_value());
  EXPECT_EQ((*loader)->report().loaded, 3);

  EXPECT_FALSE(BatchLoader::Create(**ds, {3}, transform, options).ok());
  options.batch_size = 0;
  EXPECT_FALSE(BatchLoader::Create(**ds, {0}, transform, options).ok());
}

TEST(BatchLoaderTest, CorruptImageIsAnErrorNamingTheFile) {
  const std::string root = WriteFolder(true);
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenImageFolder(root);
  ASSERT_TRUE(ds.ok());
  ASSERT_EQ((*ds)->size(), 4);
  const CifarEvalTransform transform;
  absl::StatusOr<std::unique_ptr<BatchLoader>> loader =
      BatchLoader::Create(**ds, AllIndices(**ds), transform, {.batch_size = 2});
  ASSERT_TRUE(loader.ok());
  absl::StatusOr<std::vector<int>> labels = DrainLabels(**loader, nullptr);
  ASSERT_FALSE(labels.ok());
  EXPECT_NE(labels.status().message().find(root + "/b/15.png"), std::string::npos)
      << labels.status();
  // After the error the loader is finished.
  absl::StatusOr<std::optional<Batch>> after = (*loader)->Next();
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->has_value());
}

TEST(BatchLoaderTest, SkipOptionCountsBadAndMissingImages) {
  const std::string root = WriteFolder(true);
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenImageFolder(root);
  ASSERT_TRUE(ds.ok());
  fs::remove(root + "/b/2.png");  // vanishes after indexing: a missing file
  const CifarEvalTransform transform;
  absl::StatusOr<std::unique_ptr<BatchLoader>> loader = BatchLoader::Create(
      **ds, AllIndices(**ds), transform, {.batch_size = 2, .skip_bad_images = true});
  ASSERT_TRUE(loader.ok());
  std::vector<int> sizes;
  absl::StatusOr<std::vector<int>> labels = DrainLabels(**loader, &sizes);
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_EQ(*labels, (std::vector<int>{0, 1}));  // a/nested/0.PNG and b/1.png
  EXPECT_EQ(sizes, std::vector<int>{2});         // the batch is filled past the bad samples
  const LoadReport report = (*loader)->report();
  EXPECT_EQ(report.loaded, 2);
  ASSERT_EQ(report.skipped.size(), 2u);
  EXPECT_NE(report.skipped[0].find("b/15.png"), std::string::npos) << report.skipped[0];
  EXPECT_NE(report.skipped[1].find("b/2.png"), std::string::npos) << report.skipped[1];
}

TEST(BatchLoaderTest, SeededSubsetOfSharedTestSetIsReproducible) {
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenCifar10Test(SharedDataRoot());
  ASSERT_TRUE(ds.ok());
  const std::vector<int64_t> subset = SeededSubset((*ds)->size(), 40, /*seed=*/17);
  ASSERT_EQ(subset, SeededSubset((*ds)->size(), 40, 17));
  const CifarTrainTransform augment(/*seed=*/3);
  std::vector<std::vector<float>> runs;
  for (int batch_size : {8, 40}) {
    // Different batch size and prefetch depth: the same samples with the same augmentation.
    absl::StatusOr<std::unique_ptr<BatchLoader>> loader = BatchLoader::Create(
        **ds, subset, augment, {.batch_size = batch_size, .prefetch_batches = batch_size / 8});
    ASSERT_TRUE(loader.ok());
    std::vector<float> all;
    std::vector<int64_t> indices;
    for (;;) {
      absl::StatusOr<std::optional<Batch>> batch = (*loader)->Next();
      ASSERT_TRUE(batch.ok()) << batch.status();
      if (!batch->has_value()) break;
      const Tensor& images = (*batch)->images;
      all.insert(all.end(), images.data<float>(), images.data<float>() + images.numel());
      indices.insert(indices.end(), (*batch)->indices.begin(), (*batch)->indices.end());
    }
    EXPECT_EQ(indices, subset);
    runs.push_back(std::move(all));
  }
  EXPECT_EQ(runs[0], runs[1]);
  // Another epoch draws other augmentations.
  absl::StatusOr<std::unique_ptr<BatchLoader>> epoch1 =
      BatchLoader::Create(**ds, subset, augment, {.batch_size = 40, .epoch = 1});
  ASSERT_TRUE(epoch1.ok());
  absl::StatusOr<std::optional<Batch>> batch = (*epoch1)->Next();
  ASSERT_TRUE(batch.ok() && batch->has_value());
  const std::vector<float> other((*batch)->images.data<float>(),
                                 (*batch)->images.data<float>() + (*batch)->images.numel());
  EXPECT_NE(other, runs[0]);
}

// A gzip'd ustar archive of `members` (path -> bytes; a path ending in '/' is a folder).
void WriteTarGz(const std::string& path, const std::vector<std::pair<std::string, std::string>>& members) {
  std::string tar;
  for (const auto& [name, bytes] : members) {
    char header[512] = {};
    std::memcpy(header, name.data(), std::min<size_t>(name.size(), 100));
    std::snprintf(header + 100, 8, "%07o", 0644);
    std::snprintf(header + 124, 12, "%011o", static_cast<unsigned>(bytes.size()));
    header[156] = name.back() == '/' ? '5' : '0';
    std::memcpy(header + 257, "ustar\0" "00", 8);
    std::memset(header + 148, ' ', 8);
    unsigned sum = 0;
    for (unsigned char c : header) sum += c;
    std::snprintf(header + 148, 8, "%06o", sum);
    tar.append(header, 512);
    tar += bytes;
    tar.append((512 - bytes.size() % 512) % 512, '\0');
  }
  tar.append(1024, '\0');
  gzFile out = gzopen(path.c_str(), "wb");
  ASSERT_NE(out, nullptr);
  ASSERT_EQ(gzwrite(out, tar.data(), static_cast<unsigned>(tar.size())), static_cast<int>(tar.size()));
  gzclose(out);
}

TEST(TarGzTest, ExtractOnceAndReadInMemory) {
  const std::string dir = FreshDir("tar");
  const std::string archive = dir + "/set.tar.gz";
  WriteTarGz(archive, {{"train/", ""},
                       {"train/dog/", ""},
                       {"train/dog/b.png", EncodePng(Solid(32, 32, 1, 2, 3))},
                       {"train/cat/a.png", EncodePng(Solid(32, 32, 4, 5, 6))},
                       {"train/dog/a.png", EncodePng(Solid(32, 32, 7, 8, 9))}});
  const std::string cache = dir + "/cache/set";
  ASSERT_TRUE(ExtractTarGz(archive, cache).ok());
  absl::StatusOr<std::unique_ptr<Dataset>> extracted = OpenImageFolder(cache + "/train");
  ASSERT_TRUE(extracted.ok()) << extracted.status();
  absl::StatusOr<std::unique_ptr<Dataset>> in_memory = OpenTarGzImageFolder(archive, "train/");
  ASSERT_TRUE(in_memory.ok()) << in_memory.status();
  ASSERT_EQ((*extracted)->size(), 3);
  ASSERT_EQ((*in_memory)->size(), 3);
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*extracted)->label(i), (*in_memory)->label(i));
    EXPECT_EQ((*extracted)->Load(i)->rgb, (*in_memory)->Load(i)->rgb);
  }
  EXPECT_EQ((*in_memory)->Load(0)->at(0, 0, 0), 4);   // cat/a.png
  EXPECT_EQ((*in_memory)->Load(1)->at(0, 0, 0), 7);   // dog/a.png
  // A second extraction finds the marker and leaves the files alone.
  fs::remove(cache + "/train/cat/a.png");
  ASSERT_TRUE(ExtractTarGz(archive, cache).ok());
  EXPECT_FALSE(fs::exists(cache + "/train/cat/a.png"));
}

TEST(TarGzTest, HostileAndTruncatedArchivesAreErrors) {
  const std::string dir = FreshDir("tar-bad");
  WriteTarGz(dir + "/escape.tar.gz", {{"train/../../evil.png", "x"}});
  absl::Status escape = ExtractTarGz(dir + "/escape.tar.gz", dir + "/out");
  ASSERT_FALSE(escape.ok());
  EXPECT_NE(escape.message().find("leaves the extraction folder"), std::string::npos) << escape;
  EXPECT_FALSE(fs::exists(dir + "/evil.png"));
  WriteTarGz(dir + "/absolute.tar.gz", {{"/tmp/evil.png", "x"}});
  EXPECT_FALSE(ExtractTarGz(dir + "/absolute.tar.gz", dir + "/out").ok());

  // Truncated: the header promises 600 bytes, the stream ends after 100.
  WriteTarGz(dir + "/full.tar.gz", {{"train/a/x.png", std::string(600, 'p')}});
  gzFile in = gzopen((dir + "/full.tar.gz").c_str(), "rb");
  std::string head(612, '\0');
  ASSERT_EQ(gzread(in, head.data(), 612), 612);
  gzclose(in);
  gzFile out = gzopen((dir + "/cut.tar.gz").c_str(), "wb");
  gzwrite(out, head.data(), 612);
  gzclose(out);
  absl::Status cut = ExtractTarGz(dir + "/cut.tar.gz", dir + "/out");
  ASSERT_FALSE(cut.ok());
  EXPECT_EQ(cut.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(cut.message().find("truncated"), std::string::npos) << cut;
  EXPECT_EQ(ExtractTarGz(dir + "/none.tar.gz", dir + "/out").code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace qlab::data
