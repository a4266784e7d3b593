// Snapshot decoding and validation: what an inference server does with the
// bytes of a stored version (after the checksum). Any bytes must either be
// refused with a status or give a network that folds and predicts; widths
// beyond model::kMaxWidth must be refused before anything is allocated
// (libFuzzer's -malloc_limit_mb turns a large allocation into a crash).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bnserve/v1/snapshot.pb.h"
#include "model/network.h"
#include "tests/fuzz/fuzz_models.h"

using bnserve::fuzz::Fail;
using bnserve::model::Network;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  bnserve::v1::Snapshot snapshot;
  if (!snapshot.ParseFromArray(data, static_cast<int>(size))) return 0;
  absl::StatusOr<Network> net = Network::FromSnapshot(snapshot);
  if (!net.ok()) {
    if (!absl::IsInvalidArgument(net.status())) {
      Fail("FromSnapshot",
           absl::StrCat("unexpected code: ", net.status().ToString()));
    }
    return 0;
  }
  // A validated network has sane widths.
  if (net->input_features() < 1 ||
      net->input_features() > bnserve::model::kMaxWidth ||
      net->output_dim() < 1 || net->output_dim() > bnserve::model::kMaxWidth) {
    Fail("FromSnapshot", "accepted an out-of-range width");
  }

  const std::vector<float> zeros(net->input_features(), 0.0f);
  absl::StatusOr<std::vector<float>> out = net->Predict(zeros);
  if (!out.ok() || static_cast<int>(out->size()) != net->output_dim()) {
    Fail("Predict", out.ok() ? "wrong output size" : out.status().ToString());
  }
  const Network folded = net->Folded();
  absl::StatusOr<std::vector<float>> folded_out = folded.Predict(zeros);
  if (!folded_out.ok() ||
      static_cast<int>(folded_out->size()) != net->output_dim()) {
    Fail("Folded().Predict", folded_out.ok() ? "wrong output size"
                                             : folded_out.status().ToString());
  }
  // A wrong width or a NaN is refused, not read past.
  if (net->Predict(std::vector<float>(zeros.size() + 1, 0.0f)).ok()) {
    Fail("Predict", "accepted a wrong width");
  }
  std::vector<float> nan = zeros;
  nan.back() = std::nanf("");
  if (net->Predict(nan).ok()) Fail("Predict", "accepted a NaN feature");

  // What was accepted survives the round trip through the wire format.
  bnserve::v1::Snapshot again = net->ToSnapshot();
  std::string bytes;
  if (!again.SerializeToString(&bytes) || !again.ParseFromString(bytes)) {
    Fail("ToSnapshot", "does not serialize");
  }
  absl::StatusOr<Network> reloaded = Network::FromSnapshot(again);
  if (!reloaded.ok()) {
    Fail("ToSnapshot round trip", reloaded.status().ToString());
  }
  return 0;
}
