#include "client/bnctl/dataset.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "tests/common/status_matchers.h"

namespace bnserve::client {
namespace {

using ::bnserve::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(DataRowLinesTest, SkipsHeaderAndBlankLines) {
  EXPECT_THAT(DataRowLines("\na,b\n1,2\n\n3,4\r\n \n5,6"),
              ElementsAre(3, 5, 7));
}

TEST(ParseDatasetTest, KeepsLineNumbersAndSplitsTheLabel) {
  absl::StatusOr<Dataset> d = ParseDataset("f0,y\n1,0\n\n2,1\n", "t.csv", "y");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->data.rows, 2);
  EXPECT_EQ(d->data.features, 1);
  EXPECT_THAT(d->lines, ElementsAre(2, 4));
}

TEST(ParseDatasetTest, MissingLabelColumnSaysHowToChooseIt) {
  absl::StatusOr<Dataset> d = ParseDataset("a,b\n1,2\n", "t.csv", "label");
  // NOT_FOUND: the named column does not exist (the code of the CSV
  // layer's column lookup, passed through with the file name and the hint).
  EXPECT_THAT(d, StatusIs(absl::StatusCode::kNotFound,
                          "t.csv: no column named 'label' in the header "
                          "(choose it with --label-column)"));
}

TEST(ParseDatasetTest, NeedsAFeatureColumn) {
  EXPECT_THAT(ParseDataset("label\n1\n", "t.csv", "label"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "t.csv: no feature columns besides 'label'"));
}

TEST(ClassLabelsTest, CountsClassesAsMaxPlusOne) {
  absl::StatusOr<Dataset> d =
      ParseDataset("x,label\n0,0\n0,3\n0,1\n", "t.csv", "label");
  ASSERT_TRUE(d.ok());
  int k = 0;
  absl::StatusOr<std::vector<int32_t>> ids = ClassLabels(*d, 100, &k);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre(0, 3, 1));
  EXPECT_EQ(k, 4);
}

TEST(ClassLabelsTest, BadLabelNamesFileAndLine) {
  for (const char* bad : {"2.5", "-1", "100"}) {
    std::string text = "x,label\n0,0\n\n0,1\n0,";
    text += bad;
    text += "\n";
    absl::StatusOr<Dataset> d = ParseDataset(text, "train.csv", "label");
    ASSERT_TRUE(d.ok());
    int k = 0;
    absl::StatusOr<std::vector<int32_t>> ids = ClassLabels(*d, 100, &k);
    ASSERT_FALSE(ids.ok()) << bad;
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(ids.status().message(), HasSubstr("train.csv:5")) << bad;
    EXPECT_THAT(ids.status().message(), HasSubstr("--task regression"));
  }
}

TEST(ClassLabelsTest, NeedsTwoClasses) {
  absl::StatusOr<Dataset> d =
      ParseDataset("x,label\n0,0\n1,0\n", "t.csv", "label");
  ASSERT_TRUE(d.ok());
  int k = 0;
  EXPECT_THAT(ClassLabels(*d, 100, &k),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "t.csv: classification needs at least 2 "
                       "classes"));
}

TEST(BatchSizesTest, FullBatchesThenRemainder) {
  EXPECT_THAT(*BatchSizes(10, 4), ElementsAre(4, 4, 2));
  EXPECT_THAT(*BatchSizes(8, 4), ElementsAre(4, 4));
  EXPECT_THAT(*BatchSizes(3, 64), ElementsAre(3));
}

TEST(BatchSizesTest, NeverLeavesABatchOfOne) {
  EXPECT_THAT(*BatchSizes(9, 4), ElementsAre(4, 5));
  EXPECT_THAT(*BatchSizes(5, 2), ElementsAre(2, 3));
  for (int rows = 2; rows < 200; ++rows) {
    for (int b : {2, 3, 7, 64}) {
      std::vector<int> sizes = *BatchSizes(rows, b);
      EXPECT_EQ(std::accumulate(sizes.begin(), sizes.end(), 0), rows);
      EXPECT_GE(*std::min_element(sizes.begin(), sizes.end()), 2);
    }
  }
}

TEST(BatchSizesTest, RejectsTinyInputs) {
  const auto invalid = [](const std::string& message) {
    return StatusIs(absl::StatusCode::kInvalidArgument, message);
  };
  EXPECT_THAT(BatchSizes(1, 4),
              invalid("training needs at least 2 rows, got 1"));
  EXPECT_THAT(BatchSizes(0, 4),
              invalid("training needs at least 2 rows, got 0"));
  EXPECT_THAT(BatchSizes(10, 1), invalid("the batch size must be at least 2"));
}

TEST(ShuffleTest, DeterministicPermutationFromTheSeed) {
  std::vector<int> a(50), b(50);
  std::iota(a.begin(), a.end(), 0);
  std::iota(b.begin(), b.end(), 0);
  std::mt19937_64 ra(7), rb(7);
  Shuffle(a, ra);
  Shuffle(b, rb);
  EXPECT_EQ(a, b);
  std::vector<int> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int> identity(50);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_EQ(sorted, identity);
  EXPECT_NE(a, identity);
  // The next epoch continues the same generator and gives another order.
  std::vector<int> c = a;
  Shuffle(c, ra);
  EXPECT_NE(c, a);
}

TEST(ShuffleTest, UniformBelowStaysInRange) {
  std::mt19937_64 rng(1);
  for (uint64_t n : {1ull, 2ull, 3ull, 1000ull, (1ull << 63) + 5}) {
    for (int i = 0; i < 100; ++i) EXPECT_LT(UniformBelow(rng, n), n);
  }
}

TEST(ParseFloatListTest, ParsesAndRejects) {
  EXPECT_THAT(*ParseFloatList("1, -2.5,3e2"), ElementsAre(1, -2.5, 300));
  absl::StatusOr<std::vector<float>> bad = ParseFloatList("1,x,3");
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument,
                            "feature 1 is not a finite number: 'x'"));
  EXPECT_THAT(ParseFloatList("1,nan"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "feature 1 is not a finite number"));
  EXPECT_THAT(ParseFloatList("1,,2"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "feature 1 is not a finite number"));
}

TEST(PercentileTest, NearestRank) {
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  EXPECT_EQ(Percentile(v, 50), 50);
  EXPECT_EQ(Percentile(v, 90), 90);
  EXPECT_EQ(Percentile(v, 99), 99);
  EXPECT_EQ(Percentile(v, 100), 100);
  EXPECT_EQ(Percentile(v, 0), 1);
  EXPECT_EQ(Percentile({5.0}, 99), 5.0);
}

}  // namespace
}  // namespace bnserve::client
