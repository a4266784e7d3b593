// Element-wise nonlinearity: relu, tanh, sigmoid or identity. Any input shape.
//
// JSON: {"type": "activation", "fn": "relu"|"tanh"|"sigmoid"|"identity"}
#ifndef BNSERVE_MODEL_ACTIVATION_H_
#define BNSERVE_MODEL_ACTIVATION_H_

#include <memory>
#include <string>

#include "model/layer.h"

namespace bnserve::model {

// Applies `fn` element-wise in place.
void ApplyActivation(v1::Activation fn, float* data, Eigen::Index size);
// "relu", ... or null for an unknown value.
const char* ActivationName(v1::Activation fn);

class ActivationLayer final : public Layer {
 public:
  explicit ActivationLayer(v1::Activation f = v1::ACTIVATION_IDENTITY)
      : fn(f) {}
  v1::Activation fn;

  static absl::StatusOr<std::unique_ptr<Layer>> FromProto(
      const v1::Layer& proto, const std::string& path);
  static absl::StatusOr<std::unique_ptr<Layer>> FromJson(
      const Json& json, const std::string& path);
  static absl::StatusOr<std::unique_ptr<Layer>> FromSpec(
      const v1::LayerSpec& spec, const Shape& in, const LayerInit& init);

  const char* type() const override { return "activation"; }
  std::unique_ptr<Layer> Clone() const override {
    return std::make_unique<ActivationLayer>(*this);
  }
  absl::StatusOr<Shape> OutputShape(const Shape& in) const override;
  std::string Describe() const override;
  bool in_place() const override { return true; }
  void Forward(const Shape& in, const float* x, float* y,
               float* scratch) const override;
  void ForwardTrain(const Shape& in, const Matrix& x, Matrix* y,
                    LayerCache* cache) const override;
  void Backward(const Shape& in, const Matrix& x, const Matrix& y,
                const Matrix& dy, const LayerCache& cache, Matrix* dx,
                LayerGradients* grads) const override;
  void ToProto(v1::Layer* out) const override;
  void ToSpec(v1::LayerSpec* out) const override;
  Json ToJson() const override;
};

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_ACTIVATION_H_
