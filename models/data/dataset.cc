// The dataset kinds of models/data/dataset.h. Indexes are built and validated when a dataset is
// opened; Load only reads and decodes, so it is const and thread-safe.
#include "models/data/dataset.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"

namespace qlab::data {
namespace {

namespace fs = std::filesystem;

// Images listed by path, decoded from disk on Load: image folders, the CIFAR PNG test set and
// ImageNet validation lists.
class FileListDataset : public Dataset {
 public:
  FileListDataset(std::vector<std::string> paths, std::vector<int> labels,
                  std::vector<std::string> class_names)
      : paths_(std::move(paths)), labels_(std::move(labels)), class_names_(std::move(class_names)) {}
  int64_t size() const override { return static_cast<int64_t>(paths_.size()); }
  int label(int64_t i) const override { return labels_[i]; }
  std::string name(int64_t i) const override { return paths_[i]; }
  absl::StatusOr<Image> Load(int64_t i) const override {
    QLAB_ASSIGN_OR_RETURN(std::string bytes, ReadFileBytes(paths_[i]));
    return DecodeImage(bytes, paths_[i]);
  }
  const std::vector<std::string>& class_names() const override { return class_names_; }

 private:
  std::vector<std::string> paths_;
  std::vector<int> labels_;
  std::vector<std::string> class_names_;
};

class InMemoryDataset : public Dataset {
 public:
  InMemoryDataset(std::vector<EncodedImage> images, std::vector<std::string> class_names)
      : images_(std::move(images)), class_names_(std::move(class_names)) {}
  int64_t size() const override { return static_cast<int64_t>(images_.size()); }
  int label(int64_t i) const override { return images_[i].label; }
  std::string name(int64_t i) const override { return images_[i].name; }
  absl::StatusOr<Image> Load(int64_t i) const override {
    return DecodeImage(images_[i].bytes, images_[i].name);
  }
  const std::vector<std::string>& class_names() const override { return class_names_; }

 private:
  std::vector<EncodedImage> images_;
  std::vector<std::string> class_names_;
};

constexpr int kCifarSide = 32;
constexpr int64_t kCifarRecordBytes = 1 + 3 * kCifarSide * kCifarSide;

// CIFAR-10 binary records, all in memory (a training batch is 30 MB).
class Cifar10BinaryDataset : public Dataset {
 public:
  struct Record {
    int file;
    int64_t offset;  // of the label byte in files_[file]
  };
  Cifar10BinaryDataset(std::vector<std::string> names, std::vector<std::string> contents,
                       std::vector<Record> records)
      : names_(std::move(names)), contents_(std::move(contents)), records_(std::move(records)) {}
  int64_t size() const override { return static_cast<int64_t>(records_.size()); }
  int label(int64_t i) const override {
    const Record& r = records_[i];
    return static_cast<uint8_t>(contents_[r.file][r.offset]);
  }
  std::string name(int64_t i) const override {
    const Record& r = records_[i];
    return absl::StrCat(names_[r.file], "[", r.offset / kCifarRecordBytes, "]");
  }
  absl::StatusOr<Image> Load(int64_t i) const override {
    const Record& r = records_[i];
    const auto* planes = reinterpret_cast<const uint8_t*>(contents_[r.file].data() + r.offset + 1);
    QLAB_ASSIGN_OR_RETURN(Image image, MakeImage(kCifarSide, kCifarSide));
    constexpr int kPlane = kCifarSide * kCifarSide;
    for (int p = 0; p < kPlane; ++p) {
      for (int c = 0; c < 3; ++c) image.rgb[3 * p + c] = planes[c * kPlane + p];
    }
    return image;
  }
  const std::vector<std::string>& class_names() const override { return Cifar10ClassNames(); }

 private:
  std::vector<std::string> names_;
  std::vector<std::string> contents_;
  std::vector<Record> records_;
};

bool IsImageExtension(const fs::path& path) {
  const std::string ext = absl::AsciiStrToLower(path.extension().string());
  static const char* const kExtensions[] = {".png", ".jpg",  ".jpeg", ".ppm", ".bmp",
                                            ".pgm", ".tif", ".tiff", ".webp"};
  return std::any_of(std::begin(kExtensions), std::end(kExtensions),
                     [&](const char* e) { return ext == e; });
}

// Image files below `dir` in torchvision's order: sorted(os.walk(dir)) visits directories in
// sorted path order, and each directory's files are sorted.
absl::Status CollectImages(const fs::path& dir, std::vector<std::string>* out) {
  std::vector<fs::path> directories = {dir};
  std::error_code error;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink,
                                           error), end;
       !error && it != end; it.increment(error)) {
    if (it->is_directory(error)) directories.push_back(it->path());
  }
  if (error) {
    return absl::DataLossError(absl::StrCat("cannot list ", dir.string(), ": ", error.message()));
  }
  std::sort(directories.begin(), directories.end(),
            [](const fs::path& a, const fs::path& b) { return a.string() < b.string(); });
  for (const fs::path& d : directories) {
    std::vector<std::string> files;
    for (fs::directory_iterator it(d, error), end; !error && it != end; it.increment(error)) {
      if (!it->is_directory(error) && IsImageExtension(it->path())) {
        files.push_back(it->path().string());
      }
    }
    if (error) {
      return absl::DataLossError(absl::StrCat("cannot list ", d.string(), ": ", error.message()));
    }
    std::sort(files.begin(), files.end());
    out->insert(out->end(), files.begin(), files.end());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ReadLines(const std::string& path) {
  QLAB_ASSIGN_OR_RETURN(std::string text, ReadFileBytes(path));
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripTrailingAsciiWhitespace(line);  // also a '\r' of CRLF files
    lines.emplace_back(line);
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

// A path from a list file must stay inside its folder.
bool IsSafeRelativePath(absl::string_view path) {
  if (path.empty() || path[0] == '/') return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") return false;
  }
  return true;
}

}  // namespace

const std::vector<std::string>& Cifar10ClassNames() {
  static const auto* const kNames = new std::vector<std::string>{
      "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
  return *kNames;
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenImageFolder(const std::string& root) {
  std::error_code error;
  if (!fs::is_directory(root, error)) {
    return absl::NotFoundError(absl::StrCat("image folder ", root, " does not exist"));
  }
  std::vector<std::string> classes;
  for (fs::directory_iterator it(root, error), end; !error && it != end; it.increment(error)) {
    if (it->is_directory(error)) classes.push_back(it->path().filename().string());
  }
  if (error) return absl::DataLossError(absl::StrCat("cannot list ", root, ": ", error.message()));
  if (classes.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("image folder ", root, " has no class sub-folders (<root>/<class>/*.png)"));
  }
  std::sort(classes.begin(), classes.end());
  std::vector<std::string> paths, empty_classes;
  std::vector<int> labels;
  for (size_t c = 0; c < classes.size(); ++c) {
    const size_t before = paths.size();
    QLAB_RETURN_IF_ERROR(CollectImages(fs::path(root) / classes[c], &paths));
    if (paths.size() == before) empty_classes.push_back(classes[c]);
    labels.resize(paths.size(), static_cast<int>(c));
  }
  if (!empty_classes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("image folder ", root,
                                                   ": no image in class folder(s) ",
                                                   absl::StrJoin(empty_classes, ", ")));
  }
  return std::unique_ptr<Dataset>(
      new FileListDataset(std::move(paths), std::move(labels), std::move(classes)));
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenCifar10TestPng(const std::string& dir) {
  const std::string csv = dir + "/labels.csv";
  QLAB_ASSIGN_OR_RETURN(std::vector<std::string> lines, ReadLines(csv));
  if (lines.empty() || lines[0] != "index,label,class,file") {
    return absl::InvalidArgumentError(
        absl::StrCat(csv, ": expected header 'index,label,class,file'"));
  }
  const std::vector<std::string>& names = Cifar10ClassNames();
  std::vector<std::string> paths;
  std::vector<int> labels;
  for (size_t row = 1; row < lines.size(); ++row) {
    const std::vector<std::string> fields = absl::StrSplit(lines[row], ',');
    int64_t index = -1;
    int label = -1;
    if (fields.size() != 4 || !absl::SimpleAtoi(fields[0], &index) ||
        !absl::SimpleAtoi(fields[1], &label)) {
      return absl::InvalidArgumentError(
          absl::StrCat(csv, " line ", row + 1, ": expected index,label,class,file: '", lines[row],
                       "'"));
    }
    if (index != static_cast<int64_t>(row - 1)) {
      return absl::InvalidArgumentError(absl::StrCat(csv, " line ", row + 1, ": index ", index,
                                                     ", expected ", row - 1));
    }
    if (label < 0 || label >= static_cast<int>(names.size()) || fields[2] != names[label]) {
      return absl::InvalidArgumentError(absl::StrCat(csv, " line ", row + 1, ": label ",
                                                     fields[1], " does not name class '",
                                                     fields[2], "'"));
    }
    if (!IsSafeRelativePath(fields[3])) {
      return absl::InvalidArgumentError(
          absl::StrCat(csv, " line ", row + 1, ": file '", fields[3], "' leaves the folder"));
    }
    paths.push_back(absl::StrCat(dir, "/test/", fields[3]));
    labels.push_back(label);
  }
  return std::unique_ptr<Dataset>(new FileListDataset(std::move(paths), std::move(labels), names));
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenCifar10Binary(
    const std::vector<std::string>& files) {
  if (files.empty()) return absl::InvalidArgumentError("no CIFAR-10 binary file given");
  std::vector<std::string> contents;
  std::vector<Cifar10BinaryDataset::Record> records;
  for (size_t f = 0; f < files.size(); ++f) {
    QLAB_ASSIGN_OR_RETURN(std::string bytes, ReadFileBytes(files[f]));
    const int64_t size = static_cast<int64_t>(bytes.size());
    if (size == 0 || size % kCifarRecordBytes != 0) {
      return absl::DataLossError(absl::StrCat(files[f], ": ", size,
                                              " bytes is not a whole number of ",
                                              kCifarRecordBytes, "-byte CIFAR-10 records"));
    }
    for (int64_t offset = 0; offset < size; offset += kCifarRecordBytes) {
      const int label = static_cast<uint8_t>(bytes[offset]);
      if (label >= 10) {
        return absl::DataLossError(absl::StrCat(files[f], " record ", offset / kCifarRecordBytes,
                                                ": label ", label, " is not in 0..9"));
      }
      records.push_back({static_cast<int>(f), offset});
    }
    contents.push_back(std::move(bytes));
  }
  return std::unique_ptr<Dataset>(
      new Cifar10BinaryDataset(files, std::move(contents), std::move(records)));
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenCifar10BinaryDir(const std::string& dir,
                                                              Split split) {
  std::vector<std::string> files;
  if (split == Split::kTrain) {
    for (int i = 1; i <= 5; ++i) files.push_back(absl::StrCat(dir, "/data_batch_", i, ".bin"));
  } else {
    files.push_back(dir + "/test_batch.bin");
  }
  return OpenCifar10Binary(files);
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenImageNetVal(const std::string& image_dir,
                                                         const std::string& label_file,
                                                         const std::string& synset_words,
                                                         bool only_present) {
  QLAB_ASSIGN_OR_RETURN(std::vector<std::string> synsets, ReadLines(synset_words));
  if (synsets.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(synset_words, " lists no class"));
  }
  std::vector<std::string> class_names;
  for (const std::string& line : synsets) {
    // "n01440764 tench, Tinca tinca": the description is the class name.
    const size_t space = line.find(' ');
    class_names.push_back(space == std::string::npos ? line : line.substr(space + 1));
  }
  QLAB_ASSIGN_OR_RETURN(std::vector<std::string> lines, ReadLines(label_file));
  std::vector<std::string> paths;
  std::vector<int> labels;
  std::error_code error;
  for (size_t row = 0; row < lines.size(); ++row) {
    // Both "ILSVRC2012_val_00000001.JPEG 65" and "./data/ILSVRC2012_val_00000347.JPEG, 472".
    std::vector<absl::string_view> fields =
        absl::StrSplit(lines[row], absl::ByAnyChar(", \t"), absl::SkipEmpty());
    int label = -1;
    if (fields.size() != 2 || !absl::SimpleAtoi(fields[1], &label)) {
      return absl::InvalidArgumentError(absl::StrCat(label_file, " line ", row + 1,
                                                     ": expected '<file> <label>', got '",
                                                     lines[row], "'"));
    }
    if (label < 0 || label >= static_cast<int>(class_names.size())) {
      return absl::InvalidArgumentError(absl::StrCat(label_file, " line ", row + 1, ": label ",
                                                     label, " outside 0..",
                                                     class_names.size() - 1));
    }
    const std::string base = fs::path(std::string(fields[0])).filename().string();
    if (base.empty() || base == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(label_file, " line ", row + 1, ": no file name in '", lines[row], "'"));
    }
    std::string path = absl::StrCat(image_dir, "/", base);
    if (only_present && !fs::exists(path, error)) continue;
    paths.push_back(std::move(path));
    labels.push_back(label);
  }
  if (paths.empty()) {
    return absl::NotFoundError(absl::StrCat("no image of ", label_file, " found in ", image_dir));
  }
  return std::unique_ptr<Dataset>(
      new FileListDataset(std::move(paths), std::move(labels), std::move(class_names)));
}

absl::StatusOr<std::unique_ptr<Dataset>> MakeInMemoryDataset(
    std::vector<EncodedImage> images, std::vector<std::string> class_names) {
  for (const EncodedImage& image : images) {
    if (image.label < 0 || image.label >= static_cast<int>(class_names.size())) {
      return absl::InvalidArgumentError(absl::StrCat(image.name, ": label ", image.label,
                                                     " outside 0..", class_names.size() - 1));
    }
  }
  return std::unique_ptr<Dataset>(new InMemoryDataset(std::move(images), std::move(class_names)));
}

}  // namespace qlab::data
