// Numeric CSV files with one header row: the data format of `bnctl train`,
// `bnctl predict --data` and the demo datasets.
//
// Parsing is strict: every row must have as many fields as the header and
// every field must be a finite number; the first bad row is reported with its
// 1-based line number and column name, never skipped. Pure functions,
// thread-safe.
#ifndef BNSERVE_CLIENT_CSV_H_
#define BNSERVE_CLIENT_CSV_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace bnserve::client {

struct CsvTable {
  std::vector<std::string> header;
  int rows = 0;
  std::vector<float> values;  // rows x header.size(), row-major

  int cols() const { return static_cast<int>(header.size()); }
  float at(int row, int col) const {
    return values[static_cast<size_t>(row) * header.size() + col];
  }
};

// Parses CSV text. `source` names the input in error messages (a path).
// InvalidArgument on an empty input, an empty or duplicate header name, a
// row with the wrong number of fields, or a field that is not a finite
// number. Blank lines (also a trailing newline) are ignored; "\r\n" is
// accepted.
absl::StatusOr<CsvTable> ParseCsv(absl::string_view text,
                                  absl::string_view source = "<input>");

// Reads and parses a file; NotFound if it cannot be opened.
absl::StatusOr<CsvTable> ReadCsvFile(const std::string& path);

// A table split into features and one label column.
struct LabeledData {
  std::vector<std::string> feature_names;
  int rows = 0;
  int features = 0;
  std::vector<float> x;       // rows x features, row-major
  std::vector<float> labels;  // rows values
};

// Splits `table` on the column named `label_column` (NotFound if absent).
absl::StatusOr<LabeledData> SplitLabel(const CsvTable& table,
                                       absl::string_view label_column);

}  // namespace bnserve::client

#endif  // BNSERVE_CLIENT_CSV_H_
