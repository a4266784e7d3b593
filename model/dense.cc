#include "model/dense.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model/dense_kernel.h"
#include "model/gemm.h"
#include "model/status_macros.h"

namespace bnserve::model {
namespace {

absl::Status CheckDims(const std::string& path, int64_t in, int64_t out) {
  BNSERVE_RETURN_IF_ERROR(CheckRange(path + ".in", in, 1, kMaxWidth));
  BNSERVE_RETURN_IF_ERROR(CheckRange(path + ".out", out, 1, kMaxWidth));
  if (in * out > kMaxLayerParameters) {
    return json::Invalid(path, absl::StrCat("in x out = ", in * out,
                                            " weights exceeds the limit of ",
                                            kMaxLayerParameters));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Layer>> Dense::FromProto(
    const v1::Layer& proto, const std::string& path) {
  const v1::DenseLayer& pd = proto.dense();
  BNSERVE_RETURN_IF_ERROR(CheckDims(path, pd.in(), pd.out()));
  // Counts before sizes: a few bytes declaring large dims allocate nothing.
  if (pd.weight_size() != int64_t{pd.in()} * pd.out()) {
    return json::Invalid(
        path + ".weight",
        absl::StrCat("has ", pd.weight_size(), " values, expected ",
                     int64_t{pd.in()} * pd.out()));
  }
  if (pd.bias_size() != 0 && pd.bias_size() != pd.out()) {
    return json::Invalid(
        path + ".bias",
        absl::StrCat("has ", pd.bias_size(), " values, expected ", pd.out()));
  }
  auto d = std::make_unique<Dense>();
  d->weight.resize(pd.out(), pd.in());
  BNSERVE_RETURN_IF_ERROR(CopyFloats(pd.weight(), int64_t{pd.in()} * pd.out(),
                                     path + ".weight", d->weight.data()));
  if (pd.bias_size() != 0) {
    d->bias.resize(pd.out());
    BNSERVE_RETURN_IF_ERROR(
        CopyFloats(pd.bias(), pd.out(), path + ".bias", d->bias.data()));
  }
  return d;
}

absl::StatusOr<std::unique_ptr<Layer>> Dense::FromJson(const Json& j,
                                                       const std::string& p) {
  BNSERVE_RETURN_IF_ERROR(
      json::CheckObject(j, p, {"type", "in", "out", "weight", "bias"}));
  BNSERVE_ASSIGN_OR_RETURN(int64_t in,
                           json::IntMember(j, p, "in", 1, kMaxWidth, {}));
  BNSERVE_ASSIGN_OR_RETURN(int64_t out,
                           json::IntMember(j, p, "out", 1, kMaxWidth, {}));
  BNSERVE_RETURN_IF_ERROR(CheckDims(p, in, out));
  BNSERVE_ASSIGN_OR_RETURN(const Json* w, json::Require(j, p, "weight"));
  std::vector<float> values;
  BNSERVE_RETURN_IF_ERROR(json::ReadNestedFloats(
      *w, p + ".weight", {out, in},
      absl::StrCat(out, " rows (out) of ", in,
                   " numbers (in), PyTorch Linear.weight layout"),
      &values));
  auto d = std::make_unique<Dense>();
  d->weight = Eigen::Map<const Matrix>(values.data(), out, in);
  const Json* bias = json::Find(j, "bias");
  if (bias != nullptr && !bias->is_null()) {
    std::vector<float> b;
    BNSERVE_RETURN_IF_ERROR(json::ReadFloats(*bias, p + ".bias", out, &b));
    d->bias = Eigen::Map<const RowVector>(b.data(), out);
  }
  return d;
}

absl::StatusOr<std::unique_ptr<Layer>> Dense::FromSpec(
    const v1::LayerSpec& spec, const Shape& in, const LayerInit& init) {
  const int units = spec.dense().units();
  BNSERVE_RETURN_IF_ERROR(CheckRange("units", units, 1, kMaxWidth));
  if (in.spatial) {
    return absl::InvalidArgumentError(
        absl::StrCat("dense needs a flat input, got the image ", in.ToString(),
                     ": add a flatten layer before it"));
  }
  BNSERVE_RETURN_IF_ERROR(CheckDims("dense", in.channels, units));
  BNSERVE_RETURN_IF_ERROR(CheckParameterBudget(
      "dense", int64_t{in.channels} * units + (spec.dense().bias() ? units : 0),
      init));
  auto d = std::make_unique<Dense>();
  d->weight.resize(units, in.channels);
  InitWeights(init, in.channels, units, d->weight.data(), d->weight.size());
  if (spec.dense().bias()) d->bias = RowVector::Zero(units);
  return d;
}

absl::StatusOr<Shape> Dense::OutputShape(const Shape& in) const {
  if (in.spatial) {
    return absl::InvalidArgumentError(
        absl::StrCat("dense needs a flat input, got the image ", in.ToString(),
                     ": add a flatten layer before it"));
  }
  if (this->in() != in.channels) {
    return absl::InvalidArgumentError(
        absl::StrCat("dense input width ", this->in(),
                     " does not match the previous width ", in.channels));
  }
  if (has_bias() && bias.size() != out()) {
    return absl::InvalidArgumentError("bias: must have out values");
  }
  BNSERVE_RETURN_IF_ERROR(CheckFinite("weight", weight.data(), weight.size()));
  BNSERVE_RETURN_IF_ERROR(CheckFinite("bias", bias.data(), bias.size()));
  return Shape::Flat(out());
}

std::string Dense::Describe() const {
  return absl::StrCat("dense ", in(), "->", out(),
                      has_bias() ? "" : " (no bias)");
}

void Dense::Forward(const Shape&, const float* x, float* y, float*) const {
  DenseForward(weight.data(), has_bias() ? bias.data() : nullptr, x, y, out(),
               in());
}

void Dense::ForwardTrain(const Shape&, const Matrix& x, Matrix* y,
                         LayerCache*) const {
  y->resize(x.rows(), out());
  Gemm({x.data(), x.rows(), x.cols()},
       {weight.data(), weight.rows(), weight.cols(), true}, y->data());
  if (has_bias()) y->rowwise() += bias;
}

void Dense::Backward(const Shape&, const Matrix& x, const Matrix&,
                     const Matrix& dy, const LayerCache&, Matrix* dx,
                     LayerGradients* grads) const {
  grads->resize(has_bias() ? 2 : 1);
  (*grads)[0].resize(weight.size());
  Gemm({dy.data(), dy.rows(), dy.cols(), true}, {x.data(), x.rows(), x.cols()},
       (*grads)[0].data());
  if (has_bias()) (*grads)[1] = dy.colwise().sum().transpose();
  if (dx == nullptr) return;
  dx->resize(dy.rows(), in());
  Gemm({dy.data(), dy.rows(), dy.cols()},
       {weight.data(), weight.rows(), weight.cols()}, dx->data());
}

std::vector<ParamRef> Dense::Parameters() {
  std::vector<ParamRef> params = {{weight.data(), weight.size()}};
  if (has_bias()) params.push_back({bias.data(), bias.size()});
  return params;
}

std::unique_ptr<Layer> Dense::AbsorbFollowing(const Shape&,
                                              const RowVector& scale,
                                              const RowVector& shift) const {
  auto f = std::make_unique<Dense>();
  FoldFollowingAffine(weight, bias, scale, shift, &f->weight, &f->bias);
  return f;
}

std::unique_ptr<Layer> Dense::AbsorbPreceding(const Shape&,
                                              const RowVector& scale,
                                              const RowVector& shift) const {
  auto f = std::make_unique<Dense>();
  FoldPrecedingAffine(weight, bias, scale.cast<double>().transpose(),
                      shift.cast<double>().transpose(), &f->weight, &f->bias);
  return f;
}

void Dense::ToProto(v1::Layer* out_layer) const {
  v1::DenseLayer* pd = out_layer->mutable_dense();
  pd->set_in(in());
  pd->set_out(out());
  pd->mutable_weight()->Assign(weight.data(), weight.data() + weight.size());
  pd->mutable_bias()->Assign(bias.data(), bias.data() + bias.size());
}

Json Dense::ToJson() const {
  Json j = Json::object();
  j["type"] = type();
  j["in"] = in();
  j["out"] = out();
  j["weight"] = json::NestedFloatArray(weight.data(), {out(), in()});
  j["bias"] =
      has_bias() ? json::FloatArray(bias.data(), bias.size()) : Json(nullptr);
  return j;
}

void Dense::ToSpec(v1::LayerSpec* out_spec) const {
  out_spec->mutable_dense()->set_units(out());
  out_spec->mutable_dense()->set_bias(has_bias());
}

}  // namespace bnserve::model
