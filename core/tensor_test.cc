#include "core/tensor.h"

#include <cstdint>
#include <memory>
#include <vector>

#include "gtest/gtest.h"

namespace qlab {
namespace {

TEST(TensorTest, CreateIsZeroFilledAlignedAndDescribed) {
  absl::StatusOr<Tensor> t = Tensor::Create(DType::kFloat32, {2, 3, 5, 7}, Layout::kNCHW);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->numel(), 210);
  EXPECT_EQ(t->nbytes(), 840u);
  EXPECT_EQ(t->rank(), 4);
  EXPECT_EQ(t->dim(1), 3);
  EXPECT_EQ(t->dim(-1), 7);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t->raw_data()) % kTensorAlignment, 0u);
  for (int64_t i = 0; i < t->numel(); ++i) ASSERT_EQ(t->data<float>()[i], 0.0f);
  EXPECT_EQ(t->DebugString(), "float32[2,3,5,7] NCHW");
}

TEST(TensorTest, CopiesAndViewsShareStorageCloneDoesNot) {
  Tensor t = *Tensor::Create(DType::kInt8, {4, 3});
  for (int i = 0; i < 12; ++i) t.data<int8_t>()[i] = static_cast<int8_t>(i);
  Tensor copy = t;  // shallow
  EXPECT_TRUE(copy.SharesStorageWith(t));
  copy.data<int8_t>()[0] = 100;
  EXPECT_EQ(t.data<int8_t>()[0], 100);

  const Tensor rows = *t.Slice(1, 3);
  EXPECT_TRUE(rows.SharesStorageWith(t));
  EXPECT_EQ(ShapeString(rows.shape()), "[2,3]");
  EXPECT_EQ(rows.data<int8_t>()[0], 3);  // row 1 starts at element 3

  const Tensor flat = *t.Reshape({12});
  EXPECT_TRUE(flat.SharesStorageWith(t));
  EXPECT_EQ(flat.data<int8_t>()[11], 11);

  Tensor clone = t.Clone();
  EXPECT_FALSE(clone.SharesStorageWith(t));
  clone.data<int8_t>()[1] = -5;
  EXPECT_EQ(t.data<int8_t>()[1], 1);
  EXPECT_EQ(clone.data<int8_t>()[0], 100);
}

TEST(TensorTest, BadShapesAreErrorsNamingTheShape) {
  absl::StatusOr<Tensor> negative = Tensor::Create(DType::kFloat32, {2, -3});
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(negative.status().message().find("[2,-3]"), absl::string_view::npos);

  absl::StatusOr<Tensor> wrong_rank = Tensor::Create(DType::kFloat32, {2, 3}, Layout::kNHWC);
  EXPECT_EQ(wrong_rank.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_rank.status().message().find("NHWC"), absl::string_view::npos);

  // A shape from a hostile file: 2^62 elements must be refused before any allocation, and the
  // product must not overflow into something small.
  absl::StatusOr<Tensor> huge =
      Tensor::Create(DType::kInt32, {int64_t{1} << 31, int64_t{1} << 31, 4});
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted);

  Tensor t = *Tensor::Create(DType::kUInt8, {4, 3});
  EXPECT_EQ(t.Slice(2, 5).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(t.Slice(3, 2).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(t.Reshape({5, 3}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TensorTest, EmptyTensors) {
  const Tensor empty;
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_EQ(empty.raw_data(), nullptr);
  const Tensor zero_rows = *Tensor::Create(DType::kFloat32, {0, 16});
  EXPECT_EQ(zero_rows.numel(), 0);
  EXPECT_EQ(zero_rows.Slice(0, 0)->numel(), 0);
  const Tensor scalar = *Tensor::Create(DType::kInt32, {});
  EXPECT_EQ(scalar.numel(), 1);  // rank 0 holds one element
}

TEST(TensorTest, WrapExternalViewsTheMemoryAndHoldsItsOwner) {
  auto owner = std::make_shared<std::vector<float>>(13, 0.0f);
  std::weak_ptr<std::vector<float>> watch = owner;
  // Element 1: 4-byte aligned but not 64-byte aligned, as a numpy view can be.
  float* data = owner->data() + 1;
  absl::StatusOr<Tensor> t =
      Tensor::WrapExternal(DType::kFloat32, {3, 4}, Layout::kRowMajor, data, owner);
  ASSERT_TRUE(t.ok()) << t.status();
  owner.reset();  // the tensor alone keeps the vector alive now
  EXPECT_FALSE(watch.expired());
  EXPECT_EQ(t->raw_data(), data);  // no copy
  data[5] = 2.5f;
  EXPECT_EQ(t->data<float>()[5], 2.5f);
  {
    const Tensor row = *t->Slice(1, 2);  // views share the owner too
    EXPECT_TRUE(row.SharesStorageWith(*t));
    EXPECT_EQ(row.data<float>()[1], 2.5f);
    *t = Tensor();
    EXPECT_FALSE(watch.expired());
  }
  EXPECT_TRUE(watch.expired());  // released with the last view

  int32_t words[4] = {};
  const auto* bytes = reinterpret_cast<uint8_t*>(words);
  EXPECT_EQ(Tensor::WrapExternal(DType::kInt32, {2}, Layout::kRowMajor,
                                 const_cast<uint8_t*>(bytes) + 2, nullptr)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);  // misaligned int32
  EXPECT_EQ(
      Tensor::WrapExternal(DType::kInt8, {2}, Layout::kRowMajor, nullptr, nullptr).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tensor::WrapExternal(DType::kInt8, {2, -1}, Layout::kRowMajor, words, nullptr)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  const Tensor empty =
      *Tensor::WrapExternal(DType::kInt8, {0, 3}, Layout::kRowMajor, nullptr, nullptr);
  EXPECT_EQ(empty.numel(), 0);
}

TEST(TensorDeathTest, WrongElementTypeIsABug) {
  Tensor t = *Tensor::Create(DType::kInt8, {3});
  EXPECT_DEATH(t.data<float>(), "dtype");
}

}  // namespace
}  // namespace qlab
