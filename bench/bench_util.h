// Small helpers shared by the benchmark tools: the digits CSV, the digits
// network spec, latency percentiles and wall-clock time. Benchmarks only:
// the CSV reader trusts its input (header row, numeric cells, label last).
#ifndef BNSERVE_BENCH_BENCH_UTIL_H_
#define BNSERVE_BENCH_BENCH_UTIL_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bnserve/v1/snapshot.pb.h"

namespace bnserve::bench {

struct Table {
  int rows = 0;
  int cols = 0;                 // feature columns (label excluded)
  std::vector<float> features;  // rows x cols, row-major
  std::vector<int32_t> labels;  // rows
};

// Reads a CSV with a header row and the class label in the last column.
// Exits with a message if the file cannot be read.
inline Table ReadLabelledCsv(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::exit(2);
  }
  Table t;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::vector<float> cells;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) cells.push_back(std::stof(cell));
    t.cols = static_cast<int>(cells.size()) - 1;
    t.features.insert(t.features.end(), cells.begin(), cells.end() - 1);
    t.labels.push_back(static_cast<int32_t>(cells.back()));
    ++t.rows;
  }
  return t;
}

// The digits classifier: 64 inputs, hidden Dense->BN->relu per width, 10
// classes.
inline v1::NetworkSpec DigitsSpec(const std::vector<int>& hidden,
                                  int inputs = 64, int classes = 10) {
  v1::NetworkSpec spec;
  spec.set_input_features(inputs);
  spec.set_task(v1::TASK_CLASSIFICATION);
  spec.set_output_dim(classes);
  for (int h : hidden) spec.add_hidden(h);
  spec.set_hidden_activation(v1::ACTIVATION_RELU);
  return spec;
}

inline int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The q-quantile (0..1) of `v` (sorted in place), nearest rank; 0 if empty.
inline double Quantile(std::vector<int64_t>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * static_cast<double>(v.size()));
  if (i >= v.size()) i = v.size() - 1;
  return static_cast<double>(v[i]);
}

}  // namespace bnserve::bench

#endif  // BNSERVE_BENCH_BENCH_UTIL_H_
