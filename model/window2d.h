// The sliding-window geometry shared by conv2d and the pooling layers:
// kernel, stride and zero padding per spatial axis, with PyTorch's output
// size formula (floor rounding): out = (in + 2 * pad - kernel) / stride + 1.
#ifndef BNSERVE_MODEL_WINDOW2D_H_
#define BNSERVE_MODEL_WINDOW2D_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/json_util.h"
#include "model/shape.h"

namespace bnserve::model {

struct Window2d {
  int kernel_h = 1, kernel_w = 1;
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;

  int OutHeight(int h) const {
    return (h + 2 * pad_h - kernel_h) / stride_h + 1;
  }
  int OutWidth(int w) const {
    return (w + 2 * pad_w - kernel_w) / stride_w + 1;
  }

  // Checks the ranges (kernel and stride >= 1, padding >= 0, all at most
  // kMaxSpatial; pooling also needs padding <= kernel / 2 as PyTorch does)
  // without an input. InvalidArgument names the field.
  absl::Status CheckRanges(bool pooling) const;
  // CheckRanges, then that `in` is an image whose padded size holds the
  // kernel. Returns the output's height and width in `out` (channels kept).
  absl::StatusOr<Shape> Apply(const Shape& in, bool pooling,
                              const char* kind) const;

  // "3x3 s1 p1"
  std::string Describe() const;

  // Reads "kernel_size", "stride" (default: `default_stride`, or the kernel
  // when it is null) and "padding" (default 0); each an [h, w] pair or one
  // integer.
  static absl::StatusOr<Window2d> FromJson(const Json& j,
                                           const std::string& path,
                                           bool stride_defaults_to_kernel);
  void ToJson(Json* j) const;
};

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_WINDOW2D_H_
