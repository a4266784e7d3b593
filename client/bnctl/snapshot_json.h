// The snapshot export/import format of DESIGN.md section 5: one JSON object
// that numpy and PyTorch can load, written by `bnctl export` and read by
// `bnctl import`.
//
//   {"format": "bnserve.snapshot.v1", "model", "version", "task",
//    "input_features", "output_dim", "feature_names", "classes",
//    "layers": [...], "training": {...}}
//
// with each layer, in forward order, one of
//   {"type": "dense", "in", "out", "weight": [[in floats] x out], "bias"}
//       (PyTorch Linear.weight layout; "bias" is [out] or null)
//   {"type": "batch_norm", "features", "gamma", "beta", "running_mean",
//    "running_var", "eps", "momentum", "num_batches_tracked",
//    "average": "ema"|"cumulative", "variance": "unbiased"|"biased",
//    "stats_source": "ema"|"cumulative"|"exact", "stats_examples"}
//   {"type": "activation", "fn": "relu"|"tanh"|"sigmoid"|"identity"}
//
// Numbers are float32 and are written in their shortest round-trip form, so
// export -> import reproduces every parameter bit for bit.
//
// Reading validates everything: the format tag, known keys only, types,
// layer kinds, every shape (dense `in` must match the previous width, batch
// norm `features` the width it normalizes, the last width `output_dim`),
// finite values, non-negative running variances, eps > 0, momentum in (0, 1]
// and non-negative counts. Errors are InvalidArgument naming the JSON path,
// e.g. `layers[2].running_var[5]: must be >= 0`.
//
// Depends on the generated snapshot messages only. Pure functions,
// thread-safe.
#ifndef BNSERVE_CLIENT_BNCTL_SNAPSHOT_JSON_H_
#define BNSERVE_CLIENT_BNCTL_SNAPSHOT_JSON_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bnserve/v1/snapshot.pb.h"
#include "nlohmann/json.hpp"

namespace bnserve::client {

// JSON with float32 numbers and keys kept in insertion order.
using SnapshotJson =
    nlohmann::basic_json<nlohmann::ordered_map, std::vector, std::string, bool,
                         std::int64_t, std::uint64_t, float>;

inline constexpr char kSnapshotFormat[] = "bnserve.snapshot.v1";

// Largest layer width accepted (the model library's limit).
inline constexpr int kMaxSnapshotWidth = 1 << 16;

// Checks a snapshot message with the same rules the JSON reader applies
// (task, widths, layer kinds, shapes, finite values, ranges).
// InvalidArgument naming the layer otherwise.
absl::Status ValidateSnapshot(const v1::Snapshot& snapshot);

// Converts a snapshot to the export format. InvalidArgument when the
// snapshot does not pass ValidateSnapshot.
absl::StatusOr<SnapshotJson> SnapshotToJson(const v1::Snapshot& snapshot);

// Parses and validates the export format. The result has every field of the
// snapshot set from the JSON ("version" and "training" included; the caller
// decides what to keep when publishing).
absl::StatusOr<v1::Snapshot> SnapshotFromJson(const SnapshotJson& json);

// Text forms: compact JSON plus a trailing newline; parse errors are
// InvalidArgument with the parser's position.
absl::StatusOr<std::string> SnapshotToJsonText(const v1::Snapshot& snapshot);
absl::StatusOr<v1::Snapshot> SnapshotFromJsonText(absl::string_view text);

}  // namespace bnserve::client

#endif  // BNSERVE_CLIENT_BNCTL_SNAPSHOT_JSON_H_
