// client::ParseLayers / ParseInputShape (`bnctl train --layers`,
// `--input-shape`): any text is either refused with InvalidArgument or gives
// layer specs that Network::Create accepts or refuses with InvalidArgument
// (never a crash, and never a large allocation: sizes are bounded by
// model/limits.h before anything is built, and the network's parameters by
// kFuzzParameters, which keeps the weights within scripts/fuzz.sh's
// -malloc_limit_mb; a legal spec can ask for 1 GiB).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/bnctl/layer_syntax.h"
#include "model/network.h"
#include "tests/fuzz/fuzz_models.h"

using bnserve::fuzz::Fail;

namespace {
constexpr int64_t kFuzzParameters = int64_t{1} << 20;  // 4 MiB of float32
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  // The first line is the input shape, the rest the layer list.
  const size_t nl = text.find('\n');
  const absl::string_view shape_text = text.substr(0, nl);
  const absl::string_view layers_text =
      nl == absl::string_view::npos ? "" : text.substr(nl + 1);
  absl::StatusOr<std::vector<int>> dims =
      bnserve::client::ParseInputShape(shape_text);
  if (!dims.ok() && !absl::IsInvalidArgument(dims.status())) {
    Fail("ParseInputShape", dims.status().ToString());
  }
  absl::StatusOr<std::vector<bnserve::v1::LayerSpec>> layers =
      bnserve::client::ParseLayers(layers_text, {});
  if (!layers.ok()) {
    if (!absl::IsInvalidArgument(layers.status())) {
      Fail("ParseLayers", layers.status().ToString());
    }
    return 0;
  }
  bnserve::v1::NetworkSpec spec;
  spec.set_task(bnserve::v1::TASK_CLASSIFICATION);
  spec.set_output_dim(3);
  int64_t features = 64;
  if (dims.ok()) {
    features = int64_t{(*dims)[0]} * (*dims)[1] * (*dims)[2];
    for (int d : *dims) spec.add_input_shape(d);
  }
  if (features > bnserve::model::kMaxWidth) return 0;
  spec.set_input_features(static_cast<int32_t>(features));
  for (const auto& l : *layers) *spec.add_layers() = l;
  bnserve::v1::LayerSpec* head = spec.add_layers();
  head->mutable_dense()->set_units(3);
  absl::StatusOr<bnserve::model::Network> net =
      bnserve::model::Network::Create(spec, 1, kFuzzParameters);
  if (!net.ok() && !absl::IsInvalidArgument(net.status())) {
    Fail("Network::Create", net.status().ToString());
  }
  if (net.ok() && net->output_dim() != 3) Fail("Network::Create", "output");
  return 0;
}
