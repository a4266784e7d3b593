#include "model/network.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "model/moments.h"
#include "model/status_macros.h"

namespace bnserve::model {
namespace {

absl::Status CheckWidth(const char* what, int64_t width) {
  if (width <= 0 || width > kMaxWidth) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " must be between 1 and ", kMaxWidth, ", got ", width));
  }
  return absl::OkStatus();
}

// [F] or, when `dims` has 3 entries, the image [C, H, W] (C * H * W must be
// `features`).
absl::StatusOr<Shape> InputShape(
    int64_t features, const google::protobuf::RepeatedField<int32_t>& dims) {
  BNSERVE_RETURN_IF_ERROR(CheckWidth("input_features", features));
  if (dims.empty()) return Shape::Flat(static_cast<int>(features));
  if (dims.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input_shape must be [C, H, W], got ", dims.size(), " dimensions"));
  }
  BNSERVE_RETURN_IF_ERROR(CheckRange("input_shape[0]", dims[0], 1, kMaxWidth));
  BNSERVE_RETURN_IF_ERROR(
      CheckRange("input_shape[1]", dims[1], 1, kMaxSpatial));
  BNSERVE_RETURN_IF_ERROR(
      CheckRange("input_shape[2]", dims[2], 1, kMaxSpatial));
  const Shape shape = Shape::Image(dims[0], dims[1], dims[2]);
  if (shape.size() != features) {
    return absl::InvalidArgumentError(
        absl::StrCat("input_shape ", shape.ToString(), " has ", shape.size(),
                     " values but input_features is ", features));
  }
  return shape;
}

absl::Status CheckTask(v1::Task task, int64_t output_dim) {
  if (task != v1::TASK_CLASSIFICATION && task != v1::TASK_REGRESSION) {
    return absl::InvalidArgumentError(
        "task must be classification or regression");
  }
  BNSERVE_RETURN_IF_ERROR(CheckWidth("output_dim", output_dim));
  if (task == v1::TASK_CLASSIFICATION && output_dim < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "classification needs at least 2 classes, got ", output_dim));
  }
  return absl::OkStatus();
}

// Names are optional; when present there is one per feature or class.
absl::Status CheckNames(const v1::Snapshot& s) {
  if (s.feature_names_size() != 0 &&
      s.feature_names_size() != s.input_features()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "feature_names: has ", s.feature_names_size(),
        " names, expected none or input_features = ", s.input_features()));
  }
  if (s.class_names_size() == 0) return absl::OkStatus();
  if (s.task() != v1::TASK_CLASSIFICATION) {
    return absl::InvalidArgumentError(
        "classes: only a classification model has classes");
  }
  if (s.class_names_size() != s.output_dim()) {
    return absl::InvalidArgumentError(
        absl::StrCat("classes: has ", s.class_names_size(),
                     " names, expected none or output_dim = ", s.output_dim()));
  }
  return absl::OkStatus();
}

// Prefixes a layer's error with its path: "layers[2].eps: ..." when the
// message starts with a field name, "layers[2]: ..." otherwise.
absl::Status WithPath(int layer, const absl::Status& s) {
  const absl::string_view m = s.message();
  const size_t field_end = m.find_first_of(":[ ");
  const bool field =
      field_end != absl::string_view::npos && m[field_end] != ' ';
  return absl::Status(
      s.code(), absl::StrCat("layers[", layer, "]", field ? "." : ": ", m));
}

// Expands the hidden-layer shorthand into explicit layers.
absl::StatusOr<std::vector<v1::LayerSpec>> ExpandSpec(
    const v1::NetworkSpec& spec) {
  if (spec.layers_size() > 0 && spec.hidden_size() > 0) {
    return absl::InvalidArgumentError(
        "give either explicit layers or the hidden-layer shorthand, not both");
  }
  if (spec.layers_size() > kMaxLayers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "at most ", kMaxLayers, " layers, got ", spec.layers_size()));
  }
  if (spec.layers_size() > 0) {
    return std::vector<v1::LayerSpec>(spec.layers().begin(),
                                      spec.layers().end());
  }
  if (spec.hidden_size() > kMaxLayers / 3) {
    return absl::InvalidArgumentError("too many hidden layers");
  }
  v1::Activation act = spec.hidden_activation() == v1::ACTIVATION_UNSPECIFIED
                           ? v1::ACTIVATION_RELU
                           : spec.hidden_activation();
  std::vector<v1::LayerSpec> layers;
  v1::LayerSpec bn;
  *bn.mutable_batch_norm() = spec.batch_norm();
  if (spec.input_norm()) layers.push_back(bn);
  for (int units : spec.hidden()) {
    v1::LayerSpec dense;
    dense.mutable_dense()->set_units(units);
    dense.mutable_dense()->set_bias(false);
    layers.push_back(dense);
    layers.push_back(bn);
    v1::LayerSpec activation;
    activation.set_activation(act);
    layers.push_back(activation);
  }
  v1::LayerSpec head;
  head.mutable_dense()->set_units(spec.output_dim());
  head.mutable_dense()->set_bias(true);
  layers.push_back(head);
  return layers;
}

// Whether the first nonlinearity after layer i (before the next layer with
// weights) is relu.
bool ReluNext(const std::vector<v1::LayerSpec>& specs, size_t i) {
  for (size_t j = i + 1; j < specs.size(); ++j) {
    if (specs[j].has_dense() || specs[j].has_conv2d()) return false;
    if (specs[j].kind_case() == v1::LayerSpec::kActivation) {
      return specs[j].activation() == v1::ACTIVATION_RELU;
    }
  }
  return false;
}

}  // namespace

Network::Network(const Network& other)
    : task_(other.task_),
      input_features_(other.input_features_),
      output_dim_(other.output_dim_),
      shapes_(other.shapes_),
      scratch_size_(other.scratch_size_) {
  layers_.reserve(other.layers_.size());
  for (const auto& l : other.layers_) layers_.push_back(l->Clone());
}

Network& Network::operator=(const Network& other) {
  if (this != &other) *this = Network(other);
  return *this;
}

absl::StatusOr<Network> Network::Create(const v1::NetworkSpec& spec,
                                        uint64_t seed, int64_t max_parameters) {
  Network net;
  BNSERVE_RETURN_IF_ERROR(CheckTask(spec.task(), spec.output_dim()));
  net.task_ = spec.task();
  net.output_dim_ = spec.output_dim();
  BNSERVE_ASSIGN_OR_RETURN(
      Shape shape, InputShape(spec.input_features(), spec.input_shape()));
  net.input_features_ = spec.input_features();
  net.shapes_.push_back(shape);
  BNSERVE_ASSIGN_OR_RETURN(std::vector<v1::LayerSpec> specs, ExpandSpec(spec));
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < specs.size(); ++i) {
    const int li = static_cast<int>(i);
    const LayerKind* kind = FindLayerKind(specs[i].kind_case());
    if (kind == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("layers[", i, "] has no kind"));
    }
    const LayerInit init{&rng, ReluNext(specs, i), max_parameters};
    absl::StatusOr<std::unique_ptr<Layer>> layer =
        kind->from_spec(specs[i], shape, init);
    if (!layer.ok()) return WithPath(li, layer.status());
    for (const ParamRef& p : (*layer)->Parameters()) max_parameters -= p.size;
    absl::StatusOr<Shape> out = (*layer)->OutputShape(shape);
    if (!out.ok()) return WithPath(li, out.status());
    shape = *out;
    net.layers_.push_back(*std::move(layer));
  }
  if (specs.empty() || net.layers_.back()->As<Dense>() == nullptr ||
      shape.spatial || shape.channels != net.output_dim_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the last layer must be dense with output_dim = ", net.output_dim_,
        " units"));
  }
  BNSERVE_RETURN_IF_ERROR(net.Validate());
  return net;
}

absl::Status Network::Validate() {
  BNSERVE_RETURN_IF_ERROR(CheckTask(task_, output_dim_));
  if (layers_.empty()) {
    return absl::InvalidArgumentError("layers: no layers");
  }
  if (shapes_.empty()) {
    return absl::InternalError("input shape not set before validation");
  }
  shapes_.resize(1);
  scratch_size_ = 0;
  Shape shape = shapes_[0];
  for (int i = 0; i < num_layers(); ++i) {
    absl::StatusOr<Shape> out = layers_[i]->OutputShape(shape);
    if (!out.ok()) return WithPath(i, out.status());
    if (out->size() < 1 || out->size() > kMaxActivationValues) {
      return WithPath(i, absl::InvalidArgumentError(
                             absl::StrCat("output ", out->ToString(),
                                          " is empty or has "
                                          "more than ",
                                          kMaxActivationValues, " values")));
    }
    scratch_size_ = std::max(scratch_size_, layers_[i]->ScratchSize(shape));
    shape = *out;
    shapes_.push_back(shape);
  }
  if (shape.spatial || shape.channels != output_dim_) {
    return absl::InvalidArgumentError(
        absl::StrCat("the network's output ", shape.ToString(),
                     " does not match output_dim ", output_dim_,
                     shape.spatial ? ": end with flatten and dense" : ""));
  }
  return absl::OkStatus();
}

absl::StatusOr<Network> Network::FromSnapshot(const v1::Snapshot& snapshot) {
  Network net;
  net.task_ = snapshot.task();
  net.input_features_ = snapshot.input_features();
  net.output_dim_ = snapshot.output_dim();
  BNSERVE_RETURN_IF_ERROR(CheckTask(net.task_, net.output_dim_));
  BNSERVE_ASSIGN_OR_RETURN(Shape shape, InputShape(snapshot.input_features(),
                                                   snapshot.input_shape()));
  net.shapes_.push_back(shape);
  if (snapshot.layers_size() > kMaxLayers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "at most ", kMaxLayers, " layers, got ", snapshot.layers_size()));
  }
  for (int i = 0; i < snapshot.layers_size(); ++i) {
    BNSERVE_ASSIGN_OR_RETURN(
        std::unique_ptr<Layer> layer,
        LayerFromProto(snapshot.layers(i), absl::StrCat("layers[", i, "]")));
    net.layers_.push_back(std::move(layer));
  }
  BNSERVE_RETURN_IF_ERROR(net.Validate());
  BNSERVE_RETURN_IF_ERROR(CheckNames(snapshot));
  return net;
}

v1::Snapshot Network::ToSnapshot() const {
  v1::Snapshot s;
  s.set_task(task_);
  s.set_input_features(input_features_);
  s.set_output_dim(output_dim_);
  if (input_shape().spatial) {
    s.add_input_shape(input_shape().channels);
    s.add_input_shape(input_shape().height);
    s.add_input_shape(input_shape().width);
  }
  for (const auto& layer : layers_) layer->ToProto(s.add_layers());
  return s;
}

int64_t Network::max_width() const {
  int64_t w = 0;
  for (const Shape& s : shapes_) w = std::max(w, s.size());
  return w;
}

int64_t Network::num_parameters() const {
  int64_t n = 0;
  for (const auto& l : layers_) n += l->num_parameters();
  return n;
}

int64_t Network::stored_values() const {
  int64_t n = 0;
  for (const auto& l : layers_) {
    n += l->num_parameters();
    if (const auto* bn = l->As<BatchNorm>()) n += 2 * bn->features();
  }
  return n;
}

int64_t Network::training_values_per_row() const {
  // At most kMaxLayers x (3 x kMaxActivationValues): no overflow.
  int64_t values = 2 * int64_t{input_features_} + 1 + 2 * max_width();
  for (int i = 0; i < num_layers(); ++i) {
    values += shapes_[i + 1].size() + layers_[i]->CacheValues(shapes_[i]);
  }
  return values;
}

int64_t Network::parameter_count() const {
  int64_t n = 0;
  for (int i = 0; i < num_layers(); ++i) {
    const Layer& l = *layers_[i];
    const int64_t stats =
        l.As<BatchNorm>() != nullptr ? 2 * l.As<BatchNorm>()->features() : 0;
    n += std::max({l.num_parameters() + stats, shapes_[i].size(),
                   shapes_[i + 1].size(),
                   l.ScratchSize(shapes_[i]) * shapes_[i + 1].channels});
  }
  return n;
}

std::vector<std::string> Network::Describe() const {
  std::vector<std::string> out;
  for (int i = 0; i < num_layers(); ++i) {
    out.push_back(absl::StrCat(layers_[i]->Describe(), " -> ",
                               shapes_[i + 1].ToString()));
  }
  return out;
}

int Network::num_batch_norm_layers() const {
  return static_cast<int>(std::count_if(layers_.begin(), layers_.end(),
                                        [](const std::unique_ptr<Layer>& l) {
                                          return l->As<BatchNorm>() != nullptr;
                                        }));
}

const float* Network::ForwardPrefix(const float* x, int end, Workspace* ws,
                                    ForwardObserver* observer) const {
  const size_t need = static_cast<size_t>(max_width());
  if (ws->a.size() < need) ws->a.resize(need);
  if (ws->b.size() < need) ws->b.resize(need);
  if (ws->scratch.size() < static_cast<size_t>(scratch_size_)) {
    ws->scratch.resize(static_cast<size_t>(scratch_size_));
  }
  float* cur = ws->a.data();
  float* next = ws->b.data();
  std::copy(x, x + input_features_, cur);
  for (int i = 0; i < end; ++i) {
    if (observer != nullptr) observer->OnLayerInput(i, shapes_[i], cur);
    const Layer& layer = *layers_[i];
    if (layer.in_place()) {
      layer.Forward(shapes_[i], cur, cur, ws->scratch.data());
    } else {
      layer.Forward(shapes_[i], cur, next, ws->scratch.data());
      std::swap(cur, next);
    }
  }
  return cur;
}

void Network::Forward(const float* x, float* out, Workspace* ws,
                      ForwardObserver* observer) const {
  const float* y = ForwardPrefix(x, num_layers(), ws, observer);
  std::copy(y, y + output_dim_, out);
}

absl::StatusOr<std::vector<float>> Network::Predict(
    std::span<const float> x) const {
  if (x.size() != static_cast<size_t>(input_features_)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected ", input_features_, " features, got ", x.size()));
  }
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("feature ", i, " is not finite (NaN or Inf)"));
    }
  }
  std::vector<float> out(output_dim_);
  Workspace ws;
  Forward(x.data(), out.data(), &ws);
  return out;
}

Matrix Network::PredictBatch(const Matrix& x) const {
  Matrix out(x.rows(), output_dim_);
  Workspace ws;
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    Forward(x.row(r).data(), out.row(r).data(), &ws);
  }
  return out;
}

Network Network::Folded() const {
  Network folded;
  folded.task_ = task_;
  folded.input_features_ = input_features_;
  folded.output_dim_ = output_dim_;
  folded.shapes_.push_back(input_shape());
  for (int i = 0; i < num_layers(); ++i) {
    const BatchNorm* bn = layers_[i]->As<BatchNorm>();
    if (bn == nullptr) {
      folded.layers_.push_back(layers_[i]->Clone());
      continue;
    }
    RowVector scale, shift;
    InferenceScaleShift(*bn, &scale, &shift);
    std::unique_ptr<Layer> merged;
    // Into the layer before it (whose input shape is shapes_[i - 1]) ...
    if (i > 0 && !folded.layers_.empty() &&
        layers_[i - 1]->As<BatchNorm>() == nullptr) {
      merged =
          folded.layers_.back()->AbsorbFollowing(shapes_[i - 1], scale, shift);
      if (merged != nullptr) {
        folded.layers_.back() = std::move(merged);
        continue;
      }
    }
    // ... or else into the layer after it (input normalization).
    if (i + 1 < num_layers()) {
      merged = layers_[i + 1]->AbsorbPreceding(shapes_[i + 1], scale, shift);
      if (merged != nullptr) {
        folded.layers_.push_back(std::move(merged));
        ++i;
        continue;
      }
    }
    folded.layers_.push_back(bn->Clone());
  }
  // Folding keeps every shape; a failure here is a bug in a layer kind.
  absl::Status s = folded.Validate();
  if (!s.ok()) return *this;
  return folded;
}

absl::Status Network::Recalibrate(const Matrix& x) {
  if (x.cols() != input_features_) {
    return absl::InvalidArgumentError(
        absl::StrCat("recalibration data has ", x.cols(),
                     " features, the network expects ", input_features_));
  }
  if (x.rows() < 2) {
    return absl::InvalidArgumentError(
        "recalibration needs at least 2 examples");
  }
  if (!x.allFinite()) {
    return absl::InvalidArgumentError("recalibration data contains NaN or Inf");
  }
  constexpr int64_t kChunkValues = 1 << 16;
  Workspace ws;
  for (int b = 0; b < num_layers(); ++b) {
    BatchNorm* bn = layers_[b]->As<BatchNorm>();
    if (bn == nullptr) continue;
    const int channels = bn->features();
    const int64_t plane = shapes_[b].plane();
    // Rows of `chunk` are the values at one position: plane rows per example.
    const int64_t rows = std::max<int64_t>(plane, kChunkValues / channels);
    Matrix chunk(rows - rows % plane, channels);
    Moments moments(channels);
    int64_t filled = 0;
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
      const float* z = ForwardPrefix(x.row(r).data(), b, &ws, nullptr);
      for (int c = 0; c < channels; ++c) {
        for (int64_t k = 0; k < plane; ++k) {
          chunk(filled + k, c) = z[c * plane + k];
        }
      }
      filled += plane;
      if (filled == chunk.rows()) {
        moments.Add(chunk);
        filled = 0;
      }
    }
    if (filled > 0) moments.Add(chunk.topRows(filled));
    bn->SetExactStatistics(moments, x.rows());
  }
  return absl::OkStatus();
}

std::vector<float> Softmax(std::span<const float> logits) {
  std::vector<float> p(logits.begin(), logits.end());
  if (p.empty()) return p;
  const float mx = *std::max_element(p.begin(), p.end());
  float sum = 0.0f;
  for (float& v : p) {
    v = std::exp(v - mx);
    sum += v;
  }
  for (float& v : p) v /= sum;
  return p;
}

int ArgMax(std::span<const float> values) {
  return static_cast<int>(std::max_element(values.begin(), values.end()) -
                          values.begin());
}

}  // namespace bnserve::model
