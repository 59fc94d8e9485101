// Datasets: labelled images in a fixed, deterministic order, loaded one at a time.
//
// Every dataset qlab evaluates or calibrates on is one of these: an image folder
// (<root>/<class>/*.png|jpg, classes sorted, as torchvision's ImageFolder), the shared lossless
// CIFAR-10 test set in its original test-batch order (labels.csv), the official CIFAR-10 binary
// batches (data_batch_N.bin / test_batch.bin), ILSVRC2012 validation images labelled by a list
// (dataset.txt or val.txt), or images held in memory (e.g. read straight from a .tar.gz). Opening
// validates the index (labels in range, files listed); images are decoded only on Load, so a
// missing or corrupt file surfaces there, as an error naming it.
//
//   QLAB_ASSIGN_OR_RETURN(auto test_set, OpenCifar10TestPng(data_root + "/cifar10-test-png"));
//   test_set->size();        // 10000
//   test_set->label(0);      // 3 (cat)
//   QLAB_ASSIGN_OR_RETURN(Image first, test_set->Load(0));
#ifndef QLAB_MODELS_DATA_DATASET_H_
#define QLAB_MODELS_DATA_DATASET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/data/image.h"

namespace qlab::data {

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Class index of sample i, in [0, class_names().size()).
  virtual int label(int64_t i) const = 0;
  // Where sample i comes from (a path, or "test_batch.bin[17]"), for errors and reports.
  virtual std::string name(int64_t i) const = 0;
  // Decodes sample i. Safe to call from several threads at once. Errors name the sample.
  virtual absl::StatusOr<Image> Load(int64_t i) const = 0;
  virtual const std::vector<std::string>& class_names() const = 0;
};

// CIFAR-10 class names in label order: airplane, automobile, ..., truck.
const std::vector<std::string>& Cifar10ClassNames();

// torchvision ImageFolder: one class per sub-folder of `root` (sorted by name), images found
// recursively below it (extensions .png .jpg .jpeg .ppm .bmp .pgm .tif .tiff .webp, any case),
// each folder's files sorted, folders visited in sorted order. NotFound when `root` is missing,
// InvalidArgument when it has no class folder or a class has no image (listing them).
absl::StatusOr<std::unique_ptr<Dataset>> OpenImageFolder(const std::string& root);

// The shared lossless CIFAR-10 test set (../shared/data/cifar10-test-png): `dir`/labels.csv gives
// index,label,class,file in the original test_batch order; images are `dir`/test/<file>. Every
// row is validated (consecutive index, label 0..9 matching the class name, no '..' in paths).
absl::StatusOr<std::unique_ptr<Dataset>> OpenCifar10TestPng(const std::string& dir);

// The official CIFAR-10 binary distribution: each file is a sequence of 3073-byte records, one
// label byte (0..9) then 32x32 red, green and blue planes. All files are read into memory and
// validated up front (DataLoss naming the file for a size that is not a whole number of records
// or a label > 9). Sample names are "<file>[<record>]".
absl::StatusOr<std::unique_ptr<Dataset>> OpenCifar10Binary(const std::vector<std::string>& files);
// `dir` is cifar-10-batches-bin: train = data_batch_1..5.bin, test = test_batch.bin.
enum class Split { kTrain, kTest };
absl::StatusOr<std::unique_ptr<Dataset>> OpenCifar10BinaryDir(const std::string& dir, Split split);

// ILSVRC2012 validation images. `label_file` is either Caffe's val.txt ("<file> <label>" per
// line) or the shared subset's dataset.txt ("./data/<file>, <label>"); only the file's base name
// is used and images are read from `image_dir`. `synset_words` (line N = "wnid description" of
// class N, 1000 lines) names the classes; labels must be below its line count. Samples are in
// label-file order; with `only_present`, entries whose image is not in `image_dir` are left out
// (for a partial copy of the 50,000 images checked against the full val.txt).
absl::StatusOr<std::unique_ptr<Dataset>> OpenImageNetVal(const std::string& image_dir,
                                                         const std::string& label_file,
                                                         const std::string& synset_words,
                                                         bool only_present = false);

// Encoded images held in memory (e.g. read from an archive), decoded on Load.
struct EncodedImage {
  std::string name;
  int label = 0;
  std::string bytes;
};
absl::StatusOr<std::unique_ptr<Dataset>> MakeInMemoryDataset(std::vector<EncodedImage> images,
                                                             std::vector<std::string> class_names);

}  // namespace qlab::data

#endif  // QLAB_MODELS_DATA_DATASET_H_
