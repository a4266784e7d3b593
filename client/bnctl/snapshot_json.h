// The snapshot export/import format of docs/DESIGN.md section 3.3: one JSON
// object that numpy and PyTorch can load, written by `bnctl export` and read
// by `bnctl import`.
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
// plus conv2d, max_pool2d, avg_pool2d and flatten (see each layer's header
// in model/), and an optional "input_shape": [C, H, W].
//
// Numbers are float32 and are written in their shortest round-trip form, so
// export -> import reproduces every parameter bit for bit.
//
// Each layer kind reads and writes its own JSON (model/<kind>.cc); this file
// owns the top-level document (format tag, names, provenance). Reading
// validates everything through the model's one validation path
// (model::Network::FromSnapshot): the format tag, known keys only, types,
// layer kinds, every shape, finite values, non-negative running variances,
// eps > 0, momentum in (0, 1] and non-negative counts. Errors are
// InvalidArgument naming the JSON path, e.g.
// `layers[2].running_var[5]: must be >= 0`.
//
// Pure functions, thread-safe.
#ifndef BNSERVE_CLIENT_BNCTL_SNAPSHOT_JSON_H_
#define BNSERVE_CLIENT_BNCTL_SNAPSHOT_JSON_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bnserve/v1/snapshot.pb.h"
#include "model/json_util.h"

namespace bnserve::client {

// JSON with float32 numbers and keys kept in insertion order.
using SnapshotJson = model::Json;

inline constexpr char kSnapshotFormat[] = "bnserve.snapshot.v1";

// Checks a snapshot message with the model's validation
// (model::Network::FromSnapshot). InvalidArgument naming the layer otherwise.
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
