#include "ftte/data/dataset.h"

#include <gtest/gtest.h>

namespace ftte::data {
namespace {

// Four 1x1x2 samples; sample i holds pixels {i, i + 0.5} and label i % 3.
ImageDataset Tiny() {
  ImageDataset d;
  d.size = 4;
  d.channels = 1;
  d.height = 1;
  d.width = 2;
  d.num_classes = 3;
  for (int i = 0; i < 4; ++i) {
    d.images.push_back(static_cast<float>(i));
    d.images.push_back(i + 0.5f);
    d.labels.push_back(i % 3);
  }
  return d;
}

TEST(ImageDatasetTest, ImageIndexesBySample) {
  const ImageDataset d = Tiny();
  EXPECT_EQ(d.sample_numel(), 2);
  EXPECT_FLOAT_EQ(d.image(2)[0], 2.0f);
  EXPECT_FLOAT_EQ(d.image(3)[1], 3.5f);
}

TEST(ImageDatasetTest, HeadTakesAPrefixAndClamps) {
  const ImageDataset d = Tiny();
  const ImageDataset h = d.Head(2);
  EXPECT_EQ(h.size, 2);
  EXPECT_EQ(h.width, 2);
  EXPECT_EQ(h.num_classes, 3);
  EXPECT_EQ(h.images, (std::vector<float>{0, 0.5f, 1, 1.5f}));
  EXPECT_EQ(h.labels, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(d.Head(100).images, d.images);
  EXPECT_EQ(d.Head(100).size, 4);
  EXPECT_EQ(d.Head(0).size, 0);
  EXPECT_TRUE(d.Head(0).images.empty());
}

TEST(ImageDatasetTest, SubsetGathersInOrderWithRepeats) {
  const ImageDataset s = Tiny().Subset({3, 1, 1});
  EXPECT_EQ(s.size, 3);
  EXPECT_EQ(s.channels, 1);
  EXPECT_EQ(s.images, (std::vector<float>{3, 3.5f, 1, 1.5f, 1, 1.5f}));
  EXPECT_EQ(s.labels, (std::vector<int32_t>{0, 1, 1}));
  EXPECT_EQ(Tiny().Subset({}).size, 0);
}

// Three 1x1x2 token sequences with labels_per_sample = 2; sample i holds ids {10i, 10i + 1}
// and labels {i, -1}.
ImageDataset TinySequences() {
  ImageDataset d;
  d.size = 3;
  d.channels = 1;
  d.height = 1;
  d.width = 2;
  d.num_classes = 40;
  d.labels_per_sample = 2;
  for (int i = 0; i < 3; ++i) {
    d.images.push_back(10.0f * i);
    d.images.push_back(10.0f * i + 1);
    d.labels.push_back(i);
    d.labels.push_back(-1);
  }
  return d;
}

TEST(ImageDatasetTest, LabelIndexesBySampleWithManyLabels) {
  const ImageDataset d = TinySequences();
  EXPECT_EQ(d.label(2)[0], 2);
  EXPECT_EQ(d.label(2)[1], -1);
  EXPECT_EQ(Tiny().label(3)[0], 0);
}

TEST(ImageDatasetTest, HeadKeepsLabelsPerSample) {
  const ImageDataset h = TinySequences().Head(2);
  EXPECT_EQ(h.size, 2);
  EXPECT_EQ(h.labels_per_sample, 2);
  EXPECT_EQ(h.images, (std::vector<float>{0, 1, 10, 11}));
  EXPECT_EQ(h.labels, (std::vector<int32_t>{0, -1, 1, -1}));
}

TEST(ImageDatasetTest, SubsetGathersAllLabelsOfEachSample) {
  const ImageDataset s = TinySequences().Subset({2, 0, 2});
  EXPECT_EQ(s.size, 3);
  EXPECT_EQ(s.labels_per_sample, 2);
  EXPECT_EQ(s.num_classes, 40);
  EXPECT_EQ(s.images, (std::vector<float>{20, 21, 0, 1, 20, 21}));
  EXPECT_EQ(s.labels, (std::vector<int32_t>{2, -1, 0, -1, 2, -1}));
}

TEST(ImageDatasetDeathTest, SubsetOutOfRangeAborts) {
  const ImageDataset d = Tiny();
  EXPECT_DEATH(d.Subset({4}), "out of range");
  EXPECT_DEATH(d.Subset({-1}), "out of range");
  EXPECT_DEATH(d.label(4), "out of range");
}

}  // namespace
}  // namespace ftte::data
