// bnserve snapshot → ONNX (docs/DESIGN.md section 3.4).
//
// Writes an ONNX ModelProto of default-domain opset 13 with one float input
// `input` ([N, F], or [N, C, H, W] for an image model) and one output
// `output` ([N, output_dim]: the raw outputs, logits for classification),
// N a symbolic batch dimension. One node per layer: dense → Gemm (transB =
// 1), batch_norm → BatchNormalization (gamma, beta and the running
// statistics; ONNX momentum = 1 − bnserve momentum), conv2d → Conv,
// max_pool2d → MaxPool, avg_pool2d → AveragePool (count_include_pad = 1),
// flatten → Flatten, activations → Relu / Tanh / Sigmoid / Identity. Batch
// norms are kept as nodes, never folded.
//
// Thread safety: pure function.
#ifndef BNSERVE_CLIENT_ONNX_ONNX_EXPORT_H_
#define BNSERVE_CLIENT_ONNX_ONNX_EXPORT_H_

#include <string>

#include "absl/status/statusor.h"
#include "bnserve/v1/snapshot.pb.h"

namespace bnserve::onnx_io {

inline constexpr int kExportOpset = 13;

// Validates `snapshot` (model::Network::FromSnapshot) and returns the
// serialized ONNX model. InvalidArgument if the snapshot does not validate.
absl::StatusOr<std::string> SnapshotToOnnx(const v1::Snapshot& snapshot);

}  // namespace bnserve::onnx_io

#endif  // BNSERVE_CLIENT_ONNX_ONNX_EXPORT_H_
