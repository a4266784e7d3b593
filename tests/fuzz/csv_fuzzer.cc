// client::ParseCsv (and SplitLabel on what it accepts): any text is either
// refused with InvalidArgument or gives a consistent, all-finite table.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/csv.h"
#include "tests/fuzz/fuzz_models.h"

using bnserve::fuzz::Fail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<bnserve::client::CsvTable> table =
      bnserve::client::ParseCsv(text, "fuzz.csv");
  if (!table.ok()) {
    if (!absl::IsInvalidArgument(table.status())) {
      Fail("ParseCsv", table.status().ToString());
    }
    return 0;
  }
  const int cols = table->cols();
  if (cols < 1 || table->rows < 0 ||
      table->values.size() != static_cast<size_t>(table->rows) * cols) {
    Fail("ParseCsv",
         absl::StrCat("inconsistent table: ", table->rows, " x ", cols,
                      " with ", table->values.size(), " values"));
  }
  std::set<std::string> names;
  for (const std::string& name : table->header) {
    if (name.empty() || !names.insert(name).second) {
      Fail("ParseCsv", absl::StrCat("empty or duplicate header '", name, "'"));
    }
  }
  for (float v : table->values) {
    if (!std::isfinite(v)) Fail("ParseCsv", "accepted a non-finite value");
  }
  // Split on the last column (the label column of the demo data).
  absl::StatusOr<bnserve::client::LabeledData> split =
      bnserve::client::SplitLabel(*table, table->header.back());
  if (!split.ok()) Fail("SplitLabel", split.status().ToString());
  if (split->rows != table->rows || split->features != cols - 1 ||
      split->x.size() != static_cast<size_t>(split->rows) * split->features ||
      split->labels.size() != static_cast<size_t>(split->rows) ||
      split->feature_names.size() != static_cast<size_t>(cols - 1)) {
    Fail("SplitLabel", "inconsistent split");
  }
  const std::string missing = "\x01no such column";
  if (!names.contains(missing) && SplitLabel(*table, missing).ok()) {
    Fail("SplitLabel", "found a column that does not exist");
  }
  return 0;
}
