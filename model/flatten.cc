#include "model/flatten.h"

#include <algorithm>

#include "model/status_macros.h"

namespace bnserve::model {

absl::StatusOr<std::unique_ptr<Layer>> Flatten::FromProto(const v1::Layer&,
                                                          const std::string&) {
  return std::make_unique<Flatten>();
}

absl::StatusOr<std::unique_ptr<Layer>> Flatten::FromJson(const Json& j,
                                                         const std::string& p) {
  BNSERVE_RETURN_IF_ERROR(json::CheckObject(j, p, {"type"}));
  return std::make_unique<Flatten>();
}

absl::StatusOr<std::unique_ptr<Layer>> Flatten::FromSpec(const v1::LayerSpec&,
                                                         const Shape&,
                                                         const LayerInit&) {
  return std::make_unique<Flatten>();
}

absl::StatusOr<Shape> Flatten::OutputShape(const Shape& in) const {
  if (in.size() > kMaxWidth) {
    return absl::InvalidArgumentError(
        absl::StrCat("flattening ", in.ToString(), " gives ", in.size(),
                     " features, more than the limit of ", kMaxWidth));
  }
  return Shape::Flat(static_cast<int>(in.size()));
}

void Flatten::Forward(const Shape& in, const float* x, float* y, float*) const {
  if (y != x) std::copy(x, x + in.size(), y);
}

void Flatten::ForwardTrain(const Shape&, const Matrix& x, Matrix* y,
                           LayerCache*) const {
  *y = x;
}

void Flatten::Backward(const Shape&, const Matrix&, const Matrix&,
                       const Matrix& dy, const LayerCache&, Matrix* dx,
                       LayerGradients*) const {
  if (dx != nullptr) *dx = dy;
}

void Flatten::ToProto(v1::Layer* out) const { out->mutable_flatten(); }

Json Flatten::ToJson() const {
  Json j = Json::object();
  j["type"] = type();
  return j;
}

void Flatten::ToSpec(v1::LayerSpec* out) const { out->mutable_flatten(); }

}  // namespace bnserve::model
