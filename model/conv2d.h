// 2-D convolution (PyTorch Conv2d with dilation 1 and groups 1): K output
// channels from C input channels, a kh x kw kernel, stride and zero padding.
// The weight is K x C x kh x kw (Conv2d.weight), stored as a K x (C*kh*kw)
// row-major matrix; the bias (K values) is optional.
//
// Computed as im2col + GEMM: the input's kernel windows become the columns
// of a (C*kh*kw) x (H'*W') matrix, and the output is W times it. A training
// step builds one such matrix for the whole minibatch, example-innermost
// (columns ordered by position, then example), and runs one GEMM
// (model/gemm.h: AVX2+FMA where the CPU has it).
//
// JSON: {"type": "conv2d", "in_channels": C, "out_channels": K,
//        "kernel_size": [kh, kw], "stride": [sh, sw], "padding": [ph, pw],
//        "weight": K x C x kh x kw nested lists, "bias": [K] | null}
// Folding: absorbs a following batch norm (per output channel) and a
// preceding one when the padding is zero (zero padding of normalized values
// cannot be expressed in the raw input's space otherwise).
#ifndef BNSERVE_MODEL_CONV2D_H_
#define BNSERVE_MODEL_CONV2D_H_

#include <memory>
#include <string>

#include "model/layer.h"
#include "model/window2d.h"

namespace bnserve::model {

class Conv2d final : public Layer {
 public:
  int in_channels = 0;
  Window2d window;
  Matrix weight;   // out_channels x (in_channels * kernel_h * kernel_w)
  RowVector bias;  // out_channels values, or empty

  int out_channels() const { return static_cast<int>(weight.rows()); }
  bool has_bias() const { return bias.size() > 0; }
  int64_t patch() const {
    return int64_t{in_channels} * window.kernel_h * window.kernel_w;
  }

  static absl::StatusOr<std::unique_ptr<Layer>> FromProto(
      const v1::Layer& proto, const std::string& path);
  static absl::StatusOr<std::unique_ptr<Layer>> FromJson(
      const Json& json, const std::string& path);
  static absl::StatusOr<std::unique_ptr<Layer>> FromSpec(
      const v1::LayerSpec& spec, const Shape& in, const LayerInit& init);

  const char* type() const override { return "conv2d"; }
  std::unique_ptr<Layer> Clone() const override {
    return std::make_unique<Conv2d>(*this);
  }
  absl::StatusOr<Shape> OutputShape(const Shape& in) const override;
  std::string Describe() const override;
  int64_t num_parameters() const override {
    return weight.size() + bias.size();
  }
  int64_t ScratchSize(const Shape& in) const override;
  // The im2col columns of the example.
  int64_t CacheValues(const Shape& in) const override;
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

#endif  // BNSERVE_MODEL_CONV2D_H_
