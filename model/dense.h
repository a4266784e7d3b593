// Dense (fully connected) layer: y = W x + b, W out x in (PyTorch
// Linear.weight layout), b optional. Needs a flat input.
//
// JSON: {"type": "dense", "in": I, "out": O, "weight": [[I floats] x O],
//        "bias": [O] | null}
// Folding: absorbs a following batch norm (W' = s (.) W row-wise,
// b' = s (.) b + t) and a preceding one (W' = W diag(s), b' = b + W t).
#ifndef BNSERVE_MODEL_DENSE_H_
#define BNSERVE_MODEL_DENSE_H_

#include <memory>
#include <string>

#include "model/layer.h"

namespace bnserve::model {

class Dense final : public Layer {
 public:
  Matrix weight;   // out x in
  RowVector bias;  // out values, or empty when the layer has no bias

  int in() const { return static_cast<int>(weight.cols()); }
  int out() const { return static_cast<int>(weight.rows()); }
  bool has_bias() const { return bias.size() > 0; }

  static absl::StatusOr<std::unique_ptr<Layer>> FromProto(
      const v1::Layer& proto, const std::string& path);
  static absl::StatusOr<std::unique_ptr<Layer>> FromJson(
      const Json& json, const std::string& path);
  static absl::StatusOr<std::unique_ptr<Layer>> FromSpec(
      const v1::LayerSpec& spec, const Shape& in, const LayerInit& init);

  const char* type() const override { return "dense"; }
  std::unique_ptr<Layer> Clone() const override {
    return std::make_unique<Dense>(*this);
  }
  absl::StatusOr<Shape> OutputShape(const Shape& in) const override;
  std::string Describe() const override;
  int64_t num_parameters() const override {
    return weight.size() + bias.size();
  }
  void Forward(const Shape& in, const float* x, float* y,
               float* scratch) const override;
  void ForwardTrain(const Shape& in, const Matrix& x, Matrix* y,
                    LayerCache* cache) const override;
  void Backward(const Shape& in, const Matrix& x, const Matrix& y,
                const Matrix& dy, const LayerCache& cache, Matrix* dx,
                LayerGradients* grads) const override;
  std::vector<ParamRef> Parameters() override;
  std::unique_ptr<Layer> AbsorbFollowing(const Shape& in,
                                         const RowVector& scale,
                                         const RowVector& shift) const override;
  std::unique_ptr<Layer> AbsorbPreceding(const Shape& in,
                                         const RowVector& scale,
                                         const RowVector& shift) const override;
  void ToProto(v1::Layer* out) const override;
  void ToSpec(v1::LayerSpec* out) const override;
  Json ToJson() const override;
};

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_DENSE_H_
