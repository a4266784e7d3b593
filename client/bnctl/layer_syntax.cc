#include "client/bnctl/layer_syntax.h"

#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "model/limits.h"
#include "model/status_macros.h"

namespace bnserve::client {
namespace {

absl::Status Bad(absl::string_view token, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("--layers: \"", token, "\": ", what));
}

absl::StatusOr<int> Number(absl::string_view token, absl::string_view text,
                           int min, int max, absl::string_view what) {
  int v = 0;
  if (!absl::SimpleAtoi(text, &v) || v < min || v > max) {
    return Bad(token, absl::StrCat(what, " must be an integer from ", min,
                                   " to ", max, ", got \"", text, "\""));
  }
  return v;
}

// "3" or "3x5".
absl::StatusOr<std::pair<int, int>> Size(absl::string_view token,
                                         absl::string_view text) {
  std::vector<absl::string_view> hw = absl::StrSplit(text, 'x');
  if (hw.size() > 2) return Bad(token, "kernel size is K or KHxKW");
  BNSERVE_ASSIGN_OR_RETURN(
      int h, Number(token, hw[0], 1, model::kMaxSpatial, "kernel size"));
  int w = h;
  if (hw.size() == 2) {
    BNSERVE_ASSIGN_OR_RETURN(
        w, Number(token, hw[1], 1, model::kMaxSpatial, "kernel size"));
  }
  return std::make_pair(h, w);
}

struct Window {
  std::pair<int, int> kernel;
  int stride = 0;  // 0: the kind's default
  int pad = 0;
};

// The K[:sS][:pP] tail of conv and pooling tokens.
absl::StatusOr<Window> ParseWindow(absl::string_view token,
                                   const std::vector<absl::string_view>& parts,
                                   size_t first) {
  if (parts.size() <= first) return Bad(token, "missing the kernel size");
  Window w;
  BNSERVE_ASSIGN_OR_RETURN(w.kernel, Size(token, parts[first]));
  for (size_t i = first + 1; i < parts.size(); ++i) {
    absl::string_view p = parts[i];
    if (p.size() > 1 && p[0] == 's') {
      BNSERVE_ASSIGN_OR_RETURN(w.stride, Number(token, p.substr(1), 1,
                                                model::kMaxSpatial, "stride"));
    } else if (p.size() > 1 && p[0] == 'p') {
      BNSERVE_ASSIGN_OR_RETURN(
          w.pad, Number(token, p.substr(1), 0, model::kMaxSpatial, "padding"));
    } else {
      return Bad(token, absl::StrCat("unknown option \"", p,
                                     "\" (expected sSTRIDE or pPADDING)"));
    }
  }
  return w;
}

template <typename Spec>
void SetWindow(const Window& w, Spec* s) {
  s->set_kernel_h(w.kernel.first);
  s->set_kernel_w(w.kernel.second);
  s->set_stride_h(w.stride);
  s->set_stride_w(w.stride);
  s->set_pad_h(w.pad);
  s->set_pad_w(w.pad);
}

absl::StatusOr<v1::LayerSpec> ParseToken(absl::string_view token,
                                         const v1::BatchNormSpec& bn) {
  std::vector<absl::string_view> parts = absl::StrSplit(token, ':');
  const absl::string_view kind = parts[0];
  v1::LayerSpec spec;
  if (kind == "conv") {
    if (parts.size() < 3) return Bad(token, "expected conv:OUT:K[:sS][:pP]");
    BNSERVE_ASSIGN_OR_RETURN(
        int out, Number(token, parts[1], 1, model::kMaxWidth, "channels"));
    BNSERVE_ASSIGN_OR_RETURN(Window w, ParseWindow(token, parts, 2));
    spec.mutable_conv2d()->set_out_channels(out);
    SetWindow(w, spec.mutable_conv2d());
  } else if (kind == "maxpool" || kind == "avgpool") {
    BNSERVE_ASSIGN_OR_RETURN(Window w, ParseWindow(token, parts, 1));
    SetWindow(w, kind == "maxpool" ? spec.mutable_max_pool2d()
                                   : spec.mutable_avg_pool2d());
  } else if (kind == "dense") {
    if (parts.size() != 2) return Bad(token, "expected dense:UNITS");
    BNSERVE_ASSIGN_OR_RETURN(
        int units, Number(token, parts[1], 1, model::kMaxWidth, "units"));
    spec.mutable_dense()->set_units(units);
  } else if (parts.size() != 1) {
    return Bad(token, "this layer takes no arguments");
  } else if (kind == "bn") {
    *spec.mutable_batch_norm() = bn;
  } else if (kind == "flatten") {
    spec.mutable_flatten();
  } else if (kind == "relu") {
    spec.set_activation(v1::ACTIVATION_RELU);
  } else if (kind == "tanh") {
    spec.set_activation(v1::ACTIVATION_TANH);
  } else if (kind == "sigmoid") {
    spec.set_activation(v1::ACTIVATION_SIGMOID);
  } else if (kind == "identity") {
    spec.set_activation(v1::ACTIVATION_IDENTITY);
  } else {
    return Bad(token,
               "unknown layer (expected conv, dense, bn, relu, tanh, sigmoid, "
               "identity, maxpool, avgpool or flatten)");
  }
  return spec;
}

}  // namespace

absl::StatusOr<std::vector<v1::LayerSpec>> ParseLayers(
    absl::string_view text, const v1::BatchNormSpec& bn) {
  std::vector<v1::LayerSpec> layers;
  std::vector<absl::string_view> tokens = absl::StrSplit(text, ',');
  if (tokens.size() > static_cast<size_t>(model::kMaxLayers)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--layers: more than ", model::kMaxLayers, " layers"));
  }
  for (absl::string_view token : tokens) {
    if (token.empty()) {
      return absl::InvalidArgumentError(
          "--layers: empty entry (two commas in a row, or a trailing comma)");
    }
    BNSERVE_ASSIGN_OR_RETURN(v1::LayerSpec spec, ParseToken(token, bn));
    layers.push_back(std::move(spec));
  }
  // A layer with weights directly followed by batch norm has no bias.
  for (size_t i = 0; i < layers.size(); ++i) {
    const bool bn_next =
        i + 1 < layers.size() && layers[i + 1].has_batch_norm();
    if (layers[i].has_dense()) layers[i].mutable_dense()->set_bias(!bn_next);
    if (layers[i].has_conv2d()) layers[i].mutable_conv2d()->set_bias(!bn_next);
  }
  return layers;
}

absl::StatusOr<std::vector<int>> ParseInputShape(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, ',');
  if (parts.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--input-shape: expected C,H,W (three integers), got \"", text, "\""));
  }
  std::vector<int> dims;
  const int max[] = {model::kMaxWidth, model::kMaxSpatial, model::kMaxSpatial};
  for (size_t i = 0; i < 3; ++i) {
    int v = 0;
    if (!absl::SimpleAtoi(parts[i], &v) || v < 1 || v > max[i]) {
      return absl::InvalidArgumentError(
          absl::StrCat("--input-shape: \"", parts[i],
                       "\" must be an integer from 1 to ", max[i]));
    }
    dims.push_back(v);
  }
  return dims;
}

}  // namespace bnserve::client
