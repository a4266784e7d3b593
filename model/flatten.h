// Flatten: an image [C, H, W] becomes the flat vector of its C*H*W values,
// channel-major (PyTorch nn.Flatten). The values do not move; a flat input
// passes through unchanged.
//
// JSON: {"type": "flatten"}
//
// The smallest layer kind: read this one first to add a new kind.
#ifndef BNSERVE_MODEL_FLATTEN_H_
#define BNSERVE_MODEL_FLATTEN_H_

#include <memory>
#include <string>

#include "model/layer.h"

namespace bnserve::model {

class Flatten final : public Layer {
 public:
  static absl::StatusOr<std::unique_ptr<Layer>> FromProto(
      const v1::Layer& proto, const std::string& path);
  static absl::StatusOr<std::unique_ptr<Layer>> FromJson(
      const Json& json, const std::string& path);
  static absl::StatusOr<std::unique_ptr<Layer>> FromSpec(
      const v1::LayerSpec& spec, const Shape& in, const LayerInit& init);

  const char* type() const override { return "flatten"; }
  std::unique_ptr<Layer> Clone() const override {
    return std::make_unique<Flatten>(*this);
  }
  absl::StatusOr<Shape> OutputShape(const Shape& in) const override;
  std::string Describe() const override { return "flatten"; }
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

#endif  // BNSERVE_MODEL_FLATTEN_H_
