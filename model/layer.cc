#include "model/layer.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace bnserve::model {

const LayerKind* FindLayerKind(v1::Layer::KindCase kind) {
  for (const LayerKind& k : LayerKinds()) {
    if (k.proto_case == kind) return &k;
  }
  return nullptr;
}

const LayerKind* FindLayerKind(v1::LayerSpec::KindCase kind) {
  if (kind == v1::LayerSpec::KIND_NOT_SET) return nullptr;
  for (const LayerKind& k : LayerKinds()) {
    if (k.spec_case == kind) return &k;
  }
  return nullptr;
}

const LayerKind* FindLayerKind(absl::string_view type) {
  for (const LayerKind& k : LayerKinds()) {
    if (type == k.type) return &k;
  }
  return nullptr;
}

namespace {

std::string KnownTypes() {
  std::string out;
  for (const LayerKind& k : LayerKinds()) {
    absl::StrAppend(&out, out.empty() ? "" : ", ", k.type);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Layer>> LayerFromProto(const v1::Layer& proto,
                                                      const std::string& path) {
  const LayerKind* kind = FindLayerKind(proto.kind_case());
  if (kind == nullptr) {
    return json::Invalid(path, "unknown or missing layer kind");
  }
  return kind->from_proto(proto, path);
}

absl::StatusOr<std::unique_ptr<Layer>> LayerFromJson(const Json& j,
                                                     const std::string& path) {
  if (!j.is_object()) {
    return json::Invalid(
        path, absl::StrCat("expected an object, got ", j.type_name()));
  }
  absl::StatusOr<std::string> type =
      json::StringMember(j, path, "type", std::nullopt);
  if (!type.ok()) return type.status();
  const LayerKind* kind = FindLayerKind(*type);
  if (kind == nullptr) {
    return json::Invalid(
        path + ".type",
        absl::StrCat("unknown layer type \"", *type,
                     "\" (expected one of: ", KnownTypes(), ")"));
  }
  return kind->from_json(j, path);
}

absl::Status CheckFinite(const char* what, const float* data, int64_t size) {
  for (int64_t i = 0; i < size; ++i) {
    if (!std::isfinite(data[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, "[", i, "]: must be finite"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckRange(const std::string& what, int64_t v, int64_t min,
                        int64_t max) {
  if (v < min || v > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": must be between ", min, " and ", max, ", got ", v));
  }
  return absl::OkStatus();
}

absl::Status CheckParameterBudget(const std::string& what, int64_t parameters,
                                  const LayerInit& init) {
  if (parameters > init.max_parameters) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " would have ", parameters, " parameters, more than the ",
        init.max_parameters,
        " left of the network's budget: make the network smaller"));
  }
  return absl::OkStatus();
}

absl::Status CopyFloats(const google::protobuf::RepeatedField<float>& field,
                        int64_t expected, const std::string& what, float* out) {
  if (field.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": has ", field.size(), " values, expected ", expected));
  }
  std::copy(field.begin(), field.end(), out);
  return absl::OkStatus();
}

void FoldFollowingAffine(const Matrix& w, const RowVector& b,
                         const RowVector& scale, const RowVector& shift,
                         Matrix* w_out, RowVector* b_out) {
  const Eigen::RowVectorXd s = scale.cast<double>();
  Eigen::RowVectorXd bias = Eigen::RowVectorXd::Zero(w.rows());
  if (b.size() > 0) bias = b.cast<double>();
  *w_out = (s.transpose().asDiagonal() * w.cast<double>()).cast<float>();
  *b_out = (s.array() * bias.array() + shift.cast<double>().array())
               .matrix()
               .cast<float>();
}

void FoldPrecedingAffine(const Matrix& w, const RowVector& b,
                         const Eigen::VectorXd& scale,
                         const Eigen::VectorXd& shift, Matrix* w_out,
                         RowVector* b_out) {
  const Eigen::MatrixXd wd = w.cast<double>();
  Eigen::VectorXd bias = Eigen::VectorXd::Zero(w.rows());
  if (b.size() > 0) bias = b.cast<double>().transpose();
  *w_out = (wd * scale.asDiagonal()).cast<float>();
  *b_out = (bias + wd * shift).transpose().cast<float>();
}

void InitWeights(const LayerInit& init, int64_t fan_in, int64_t fan_out,
                 float* data, int64_t size) {
  if (init.relu_next) {
    std::normal_distribution<float> dist(
        0.0f, std::sqrt(2.0f / static_cast<float>(fan_in)));
    for (int64_t k = 0; k < size; ++k) data[k] = dist(*init.rng);
  } else {
    const float limit = std::sqrt(6.0f / static_cast<float>(fan_in + fan_out));
    std::uniform_real_distribution<float> dist(-limit, limit);
    for (int64_t k = 0; k < size; ++k) data[k] = dist(*init.rng);
  }
}

}  // namespace bnserve::model
