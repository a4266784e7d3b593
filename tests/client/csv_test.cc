#include "client/csv.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/common/status_matchers.h"

namespace bnserve::client {
namespace {

using ::bnserve::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseCsvTest, ParsesHeaderAndRows) {
  absl::StatusOr<CsvTable> t = ParseCsv("a,b,label\n1,2.5,0\n-3,4e1,1\n");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(t->header, ElementsAre("a", "b", "label"));
  EXPECT_EQ(t->rows, 2);
  EXPECT_EQ(t->cols(), 3);
  EXPECT_THAT(t->values, ElementsAre(1, 2.5, 0, -3, 40, 1));
  EXPECT_EQ(t->at(1, 1), 40.0f);
}

TEST(ParseCsvTest, AcceptsCrLfBlankLinesAndSpaces) {
  absl::StatusOr<CsvTable> t = ParseCsv("x , y\r\n\r\n 1 , 2 \r\n\n3,4\r\n\n");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(t->header, ElementsAre("x", "y"));
  EXPECT_THAT(t->values, ElementsAre(1, 2, 3, 4));
}

TEST(ParseCsvTest, WrongFieldCountNamesTheLine) {
  absl::StatusOr<CsvTable> t = ParseCsv("a,b\n1,2\n3\n", "data.csv");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("data.csv:3"));
  EXPECT_THAT(t.status().message(), HasSubstr("expected 2 fields"));
}

TEST(ParseCsvTest, TooManyFieldsNamesTheLine) {
  absl::StatusOr<CsvTable> t = ParseCsv("a,b\n1,2\n\n3,4,5\n", "f.csv");
  EXPECT_THAT(t, StatusIs(absl::StatusCode::kInvalidArgument,
                          "f.csv:4: expected 2 fields as in the "
                          "header, got 3"));
}

TEST(ParseCsvTest, NonNumberNamesLineAndColumn) {
  absl::StatusOr<CsvTable> t = ParseCsv("a,b\n1,2\n3,oops\n", "f.csv");
  EXPECT_THAT(t, StatusIs(absl::StatusCode::kInvalidArgument,
                          "f.csv:3: column 'b' is not a finite "
                          "number: 'oops'"));
}

TEST(ParseCsvTest, RejectsNonFiniteAndEmptyFields) {
  for (const char* text : {"a\nnan\n", "a\ninf\n", "a\n1e99\n", "a,b\n1,\n"}) {
    absl::StatusOr<CsvTable> t = ParseCsv(text);
    EXPECT_THAT(t, StatusIs(absl::StatusCode::kInvalidArgument, ":2: column "))
        << text;
    EXPECT_THAT(t.status().message(), HasSubstr("is not a finite number"))
        << text;
  }
}

TEST(ParseCsvTest, RejectsBadHeaders) {
  const auto invalid = [](const std::string& message) {
    return StatusIs(absl::StatusCode::kInvalidArgument, message);
  };
  EXPECT_THAT(ParseCsv(""), invalid("empty CSV (no header row)"));
  EXPECT_THAT(ParseCsv("\n\n"), invalid("empty CSV (no header row)"));
  EXPECT_THAT(ParseCsv("a,,b\n"), invalid(":1: empty column name"));
  EXPECT_THAT(ParseCsv("a,b,a\n"), invalid(":1: duplicate column name 'a'"));
}

TEST(ParseCsvTest, HeaderOnlyIsAnEmptyTable) {
  absl::StatusOr<CsvTable> t = ParseCsv("a,b\n");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->rows, 0);
}

TEST(ReadCsvFileTest, MissingFileIsNotFound) {
  EXPECT_EQ(ReadCsvFile("/nonexistent/x.csv").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ReadCsvFileTest, ReadsTheDemoData) {
  // The demo data is committed (ctest runs from the repository root).
  absl::StatusOr<CsvTable> t = ReadCsvFile("data/digits/test.csv");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->cols(), 65);
  EXPECT_GT(t->rows, 100);
}

TEST(SplitLabelTest, SplitsAnyColumn) {
  absl::StatusOr<CsvTable> t = ParseCsv("a,label,b\n1,0,2\n3,1,4\n");
  ASSERT_TRUE(t.ok());
  absl::StatusOr<LabeledData> d = SplitLabel(*t, "label");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->feature_names, ElementsAre("a", "b"));
  EXPECT_EQ(d->features, 2);
  EXPECT_EQ(d->rows, 2);
  EXPECT_THAT(d->x, ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(d->labels, ElementsAre(0, 1));
}

TEST(SplitLabelTest, MissingColumnIsNotFound) {
  absl::StatusOr<CsvTable> t = ParseCsv("a,b\n1,2\n");
  ASSERT_TRUE(t.ok());
  absl::StatusOr<LabeledData> d = SplitLabel(*t, "target");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(d.status().message(), HasSubstr("target"));
}

}  // namespace
}  // namespace bnserve::client
