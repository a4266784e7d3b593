#include "client/csv.h"

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace bnserve::client {

absl::StatusOr<CsvTable> ParseCsv(absl::string_view text,
                                  absl::string_view source) {
  CsvTable table;
  int line_no = 0;
  bool have_header = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    absl::ConsumeSuffix(&line, "\r");
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ',');
    if (!have_header) {
      std::set<absl::string_view> seen;
      for (absl::string_view f : fields) {
        f = absl::StripAsciiWhitespace(f);
        if (f.empty()) {
          return absl::InvalidArgumentError(absl::StrCat(
              source, ":", line_no, ": empty column name in the header row"));
        }
        if (!seen.insert(f).second) {
          return absl::InvalidArgumentError(absl::StrCat(
              source, ":", line_no, ": duplicate column name '", f, "'"));
        }
        table.header.emplace_back(f);
      }
      have_header = true;
      continue;
    }
    if (fields.size() != table.header.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ":", line_no, ": expected ", table.header.size(),
                       " fields as in the header, got ", fields.size()));
    }
    for (size_t c = 0; c < fields.size(); ++c) {
      float v = 0.0f;
      absl::string_view f = absl::StripAsciiWhitespace(fields[c]);
      if (!absl::SimpleAtof(f, &v) || !std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ":", line_no, ": column '", table.header[c],
                         "' is not a finite number: '", f.substr(0, 40), "'"));
      }
      table.values.push_back(v);
    }
    ++table.rows;
  }
  if (!have_header) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": empty CSV (no header row)"));
  }
  return table;
}

absl::StatusOr<CsvTable> ReadCsvFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return ParseCsv(buffer.str(), path);
}

absl::StatusOr<LabeledData> SplitLabel(const CsvTable& table,
                                       absl::string_view label_column) {
  int label_col = -1;
  for (int c = 0; c < table.cols(); ++c) {
    if (table.header[c] == label_column) label_col = c;
  }
  if (label_col < 0) {
    return absl::NotFoundError(
        absl::StrCat("no column named '", label_column, "' in the header"));
  }
  LabeledData data;
  data.rows = table.rows;
  data.features = table.cols() - 1;
  for (int c = 0; c < table.cols(); ++c) {
    if (c != label_col) data.feature_names.push_back(table.header[c]);
  }
  data.x.reserve(static_cast<size_t>(data.rows) * data.features);
  data.labels.reserve(data.rows);
  for (int r = 0; r < table.rows; ++r) {
    for (int c = 0; c < table.cols(); ++c) {
      if (c == label_col) {
        data.labels.push_back(table.at(r, c));
      } else {
        data.x.push_back(table.at(r, c));
      }
    }
  }
  return data;
}

}  // namespace bnserve::client
