// ONNX → bnserve snapshot (docs/DESIGN.md section 3.4).
//
// Accepts the chain-shaped graphs that PyTorch 1.13's torch.onnx.export
// writes (opsets 11-17, eval mode) for networks of Linear, Conv2d,
// BatchNorm1d/2d, ReLU/Tanh/Sigmoid, MaxPool2d, AvgPool2d and Flatten:
// Gemm, MatMul (+ Add as its bias), Conv, BatchNormalization, Relu, Tanh,
// Sigmoid, MaxPool, AveragePool (with a constant-zero Pad in front),
// Flatten, Reshape to [N, -1], Identity; initializers, Constant nodes and
// Transpose of a constant. BatchNormalization nodes become batch-norm
// layers with their running statistics. Anything else (another op, a
// branching graph, an unsupported attribute value) is INVALID_ARGUMENT
// naming the node, its op type and the attribute; a malformed file is
// INVALID_ARGUMENT too. Every size is checked against model/limits.h before
// anything is allocated, and the result is validated by
// model::Network::FromSnapshot, the path every snapshot takes.
//
// Thread safety: pure functions.
#ifndef BNSERVE_CLIENT_ONNX_ONNX_IMPORT_H_
#define BNSERVE_CLIENT_ONNX_ONNX_IMPORT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bnserve/v1/snapshot.pb.h"

namespace bnserve::onnx_io {

// The lowest and highest default-domain opset accepted on import.
inline constexpr int kMinImportOpset = 11;
inline constexpr int kMaxImportOpset = 17;

struct OnnxImportOptions {
  v1::Task task = v1::TASK_CLASSIFICATION;
  // Classification only: one name per output; empty names them "0".."K-1".
  std::vector<std::string> class_names;
};

// Parses the bytes of an ONNX ModelProto and returns the validated
// snapshot (model name, version and provenance left empty for the caller).
absl::StatusOr<v1::Snapshot> SnapshotFromOnnx(absl::string_view bytes,
                                              const OnnxImportOptions& options);

}  // namespace bnserve::onnx_io

#endif  // BNSERVE_CLIENT_ONNX_ONNX_IMPORT_H_
