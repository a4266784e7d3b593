// Turning a labelled CSV into what the trainer receives: class ids checked
// against the file's lines, per-epoch shuffling that depends only on the
// seed, and minibatch sizes that never leave a batch of one row (the trainer
// rejects those: the variance of one example is meaningless). Also the
// summaries `bnctl predict` prints. Pure functions, thread-safe.
#ifndef BNSERVE_CLIENT_BNCTL_DATASET_H_
#define BNSERVE_CLIENT_BNCTL_DATASET_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/csv.h"

namespace bnserve::client {

// A labelled CSV file with the line number of each data row.
struct Dataset {
  std::string source;  // the path, for messages
  std::string label_column;
  LabeledData data;
  std::vector<int> lines;  // data.rows 1-based line numbers
};

// Reads `path` (strict, see client/csv.h) and splits off `label_column`.
absl::StatusOr<Dataset> LoadDataset(const std::string& path,
                                    const std::string& label_column);
// The same from text (tests).
absl::StatusOr<Dataset> ParseDataset(absl::string_view text,
                                     const std::string& source,
                                     const std::string& label_column);

// Line numbers of the data rows of CSV `text`, counting lines as ParseCsv
// does (blank lines skipped, the first non-blank line is the header).
std::vector<int> DataRowLines(absl::string_view text);

// Classification labels: every label must be a non-negative integer below
// `max_classes`; returns them as class ids and sets *num_classes to
// max label + 1 (at least 2). InvalidArgument names the file and line of the
// first bad label.
absl::StatusOr<std::vector<int32_t>> ClassLabels(const Dataset& dataset,
                                                 int max_classes,
                                                 int* num_classes);

// Sizes of the minibatches of one epoch over `rows` rows with nominal size
// `batch_size` (>= 2): full batches, then the remainder; a remainder of one
// row is merged into the previous batch. InvalidArgument if rows < 2 or
// batch_size < 2.
absl::StatusOr<std::vector<int>> BatchSizes(int rows, int batch_size);

// Uniform integer in [0, n) from `rng` (rejection sampling, so the sequence
// depends only on the seed, not on the standard library).
uint64_t UniformBelow(std::mt19937_64& rng, uint64_t n);

// Fisher-Yates shuffle of `order` with UniformBelow.
void Shuffle(std::vector<int>& order, std::mt19937_64& rng);

// Parses "1,2.5,-3" into finite floats; InvalidArgument naming the bad item.
absl::StatusOr<std::vector<float>> ParseFloatList(absl::string_view text);

// Nearest-rank percentile (p in [0, 100]) of `sorted` (ascending, non-empty).
double Percentile(const std::vector<double>& sorted, double p);

}  // namespace bnserve::client

#endif  // BNSERVE_CLIENT_BNCTL_DATASET_H_
