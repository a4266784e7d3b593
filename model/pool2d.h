// 2-D pooling over each channel of an image (PyTorch MaxPool2d / AvgPool2d
// with dilation 1 and floor rounding). The stride defaults to the kernel
// size; padding is at most half the kernel. Max pooling ignores padded
// positions (PyTorch pads with -inf); average pooling counts them as zeros
// and always divides by kh * kw (count_include_pad = true).
//
// JSON: {"type": "max_pool2d" | "avg_pool2d", "kernel_size": [kh, kw],
//        "stride": [sh, sw], "padding": [ph, pw]}
#ifndef BNSERVE_MODEL_POOL2D_H_
#define BNSERVE_MODEL_POOL2D_H_

#include <memory>
#include <string>

#include "model/layer.h"
#include "model/window2d.h"

namespace bnserve::model {

// What the two pooling kinds share: geometry, validation, encodings.
class Pool2d : public Layer {
 public:
  Window2d window;

  absl::StatusOr<Shape> OutputShape(const Shape& in) const override;
  std::string Describe() const override;
  void ToProto(v1::Layer* out) const override;
  void ToSpec(v1::LayerSpec* out) const override;
  Json ToJson() const override;

 protected:
  virtual v1::Pool2dLayer* MutableProto(v1::Layer* out) const = 0;
  virtual v1::Pool2dSpec* MutableSpec(v1::LayerSpec* out) const = 0;
  static absl::StatusOr<Window2d> WindowFromProto(const v1::Pool2dLayer& p,
                                                  const std::string& path);
  static absl::StatusOr<Window2d> WindowFromJson(const Json& j,
                                                 const std::string& path);
  static absl::StatusOr<Window2d> WindowFromSpec(const v1::Pool2dSpec& s,
                                                 const Shape& in);
};

class MaxPool2d final : public Pool2d {
 public:
  static absl::StatusOr<std::unique_ptr<Layer>> FromProto(
      const v1::Layer& proto, const std::string& path);
  static absl::StatusOr<std::unique_ptr<Layer>> FromJson(
      const Json& json, const std::string& path);
  static absl::StatusOr<std::unique_ptr<Layer>> FromSpec(
      const v1::LayerSpec& spec, const Shape& in, const LayerInit& init);

  const char* type() const override { return "max_pool2d"; }
  int64_t CacheValues(const Shape& in) const override {
    return OutputShape(in).value_or(Shape{}).size();
  }
  std::unique_ptr<Layer> Clone() const override {
    return std::make_unique<MaxPool2d>(*this);
  }
  void Forward(const Shape& in, const float* x, float* y,
               float* scratch) const override;
  void ForwardTrain(const Shape& in, const Matrix& x, Matrix* y,
                    LayerCache* cache) const override;
  void Backward(const Shape& in, const Matrix& x, const Matrix& y,
                const Matrix& dy, const LayerCache& cache, Matrix* dx,
                LayerGradients* grads) const override;

 protected:
  v1::Pool2dLayer* MutableProto(v1::Layer* out) const override {
    return out->mutable_max_pool2d();
  }
  v1::Pool2dSpec* MutableSpec(v1::LayerSpec* out) const override {
    return out->mutable_max_pool2d();
  }
};

class AvgPool2d final : public Pool2d {
 public:
  static absl::StatusOr<std::unique_ptr<Layer>> FromProto(
      const v1::Layer& proto, const std::string& path);
  static absl::StatusOr<std::unique_ptr<Layer>> FromJson(
      const Json& json, const std::string& path);
  static absl::StatusOr<std::unique_ptr<Layer>> FromSpec(
      const v1::LayerSpec& spec, const Shape& in, const LayerInit& init);

  const char* type() const override { return "avg_pool2d"; }
  std::unique_ptr<Layer> Clone() const override {
    return std::make_unique<AvgPool2d>(*this);
  }
  void Forward(const Shape& in, const float* x, float* y,
               float* scratch) const override;
  void ForwardTrain(const Shape& in, const Matrix& x, Matrix* y,
                    LayerCache* cache) const override;
  void Backward(const Shape& in, const Matrix& x, const Matrix& y,
                const Matrix& dy, const LayerCache& cache, Matrix* dx,
                LayerGradients* grads) const override;

 protected:
  v1::Pool2dLayer* MutableProto(v1::Layer* out) const override {
    return out->mutable_avg_pool2d();
  }
  v1::Pool2dSpec* MutableSpec(v1::LayerSpec* out) const override {
    return out->mutable_avg_pool2d();
  }
};

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_POOL2D_H_
