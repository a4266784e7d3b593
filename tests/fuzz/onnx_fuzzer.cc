// onnx_io::SnapshotFromOnnx (`bnctl import --from FILE.onnx`): any bytes
// (malformed protobuf, absurd dimensions, cycles, missing initializers,
// unknown ops) are either refused with InvalidArgument or give a snapshot
// that the model validates, that exports to ONNX (SnapshotToOnnx) and that
// imports again to the same network.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "client/onnx/onnx_export.h"
#include "client/onnx/onnx_import.h"
#include "model/network.h"
#include "tests/fuzz/fuzz_models.h"

using bnserve::fuzz::Fail;
namespace onnx_io = bnserve::onnx_io;

namespace {

std::string Canonical(const bnserve::v1::Snapshot& s) {
  absl::StatusOr<bnserve::model::Network> n =
      bnserve::model::Network::FromSnapshot(s);
  if (!n.ok()) Fail("FromSnapshot", n.status().ToString());
  return n->ToSnapshot().SerializeAsString();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<bnserve::v1::Snapshot> s =
      onnx_io::SnapshotFromOnnx(bytes, onnx_io::OnnxImportOptions());
  if (!s.ok()) {
    if (!absl::IsInvalidArgument(s.status())) {
      Fail("SnapshotFromOnnx", s.status().ToString());
    }
    return 0;
  }
  absl::StatusOr<std::string> again = onnx_io::SnapshotToOnnx(*s);
  if (!again.ok()) Fail("SnapshotToOnnx", again.status().ToString());
  absl::StatusOr<bnserve::v1::Snapshot> back =
      onnx_io::SnapshotFromOnnx(*again, onnx_io::OnnxImportOptions());
  if (!back.ok()) Fail("re-import", back.status().ToString());
  if (Canonical(*back) != Canonical(*s)) {
    Fail("round trip", "ONNX export -> import changed the network");
  }
  return 0;
}
