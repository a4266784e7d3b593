#include "client/bnctl/dataset.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace bnserve::client {

std::vector<int> DataRowLines(absl::string_view text) {
  std::vector<int> lines;
  int line_no = 0;
  bool header = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    absl::ConsumeSuffix(&line, "\r");
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    if (!header) {
      header = true;
      continue;
    }
    lines.push_back(line_no);
  }
  return lines;
}

absl::StatusOr<Dataset> ParseDataset(absl::string_view text,
                                     const std::string& source,
                                     const std::string& label_column) {
  absl::StatusOr<CsvTable> table = ParseCsv(text, source);
  if (!table.ok()) return table.status();
  absl::StatusOr<LabeledData> data = SplitLabel(*table, label_column);
  if (!data.ok()) {
    return absl::Status(data.status().code(),
                        absl::StrCat(source, ": ", data.status().message(),
                                     " (choose it with --label-column)"));
  }
  if (data->features < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": no feature columns besides '", label_column, "'"));
  }
  Dataset dataset;
  dataset.source = source;
  dataset.label_column = label_column;
  dataset.data = *std::move(data);
  dataset.lines = DataRowLines(text);
  if (static_cast<int>(dataset.lines.size()) != dataset.data.rows) {
    // Cannot happen with ParseCsv's rules; keep messages sane regardless.
    dataset.lines.resize(dataset.data.rows, 0);
  }
  return dataset;
}

absl::StatusOr<Dataset> LoadDataset(const std::string& path,
                                    const std::string& label_column) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return ParseDataset(buffer.str(), path, label_column);
}

absl::StatusOr<std::vector<int32_t>> ClassLabels(const Dataset& dataset,
                                                 int max_classes,
                                                 int* num_classes) {
  std::vector<int32_t> ids;
  ids.reserve(dataset.data.labels.size());
  int32_t max_id = -1;
  for (size_t r = 0; r < dataset.data.labels.size(); ++r) {
    const float label = dataset.data.labels[r];
    if (!(label >= 0.0f) || label != std::floor(label) ||
        label >= static_cast<float>(max_classes)) {
      return absl::InvalidArgumentError(absl::StrCat(
          dataset.source, ":", dataset.lines[r], ": label '",
          dataset.label_column, "' = ", label,
          " is not a class id (classification labels must be integers in "
          "[0, ",
          max_classes, "); use --task regression for real-valued targets)"));
    }
    ids.push_back(static_cast<int32_t>(label));
    max_id = std::max(max_id, ids.back());
  }
  if (max_id < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(dataset.source,
                     ": classification needs at least 2 classes, but the "
                     "largest label is ",
                     max_id));
  }
  *num_classes = max_id + 1;
  return ids;
}

absl::StatusOr<std::vector<int>> BatchSizes(int rows, int batch_size) {
  if (batch_size < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the batch size must be at least 2 (batch norm needs the variance "
        "of a minibatch), got ",
        batch_size));
  }
  if (rows < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("training needs at least 2 rows, got ", rows));
  }
  std::vector<int> sizes(rows / batch_size, batch_size);
  const int rest = rows % batch_size;
  if (rest == 1) {
    sizes.back() += 1;  // rows >= batch_size here, so there is a batch
  } else if (rest > 1) {
    sizes.push_back(rest);
  }
  return sizes;
}

uint64_t UniformBelow(std::mt19937_64& rng, uint64_t n) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  const uint64_t limit = max - (max % n + 1) % n;  // largest multiple - 1
  uint64_t x = rng();
  while (x > limit) x = rng();
  return x % n;
}

void Shuffle(std::vector<int>& order, std::mt19937_64& rng) {
  for (size_t i = order.size(); i > 1; --i) {
    std::swap(order[i - 1], order[UniformBelow(rng, i)]);
  }
}

absl::StatusOr<std::vector<float>> ParseFloatList(absl::string_view text) {
  std::vector<float> values;
  int index = 0;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    float v = 0.0f;
    item = absl::StripAsciiWhitespace(item);
    if (!absl::SimpleAtof(item, &v) || !std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "feature ", index, " is not a finite number: '", item, "'"));
    }
    values.push_back(v);
    ++index;
  }
  return values;
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0.0;
  const double rank = std::ceil(p / 100.0 * static_cast<double>(sorted.size()));
  const size_t index =
      static_cast<size_t>(std::clamp(rank, 1.0, double(sorted.size()))) - 1;
  return sorted[index];
}

}  // namespace bnserve::client
