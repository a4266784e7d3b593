#include "model/window2d.h"

#include "absl/strings/str_cat.h"
#include "model/layer.h"
#include "model/limits.h"
#include "model/status_macros.h"

namespace bnserve::model {

absl::Status Window2d::CheckRanges(bool pooling) const {
  BNSERVE_RETURN_IF_ERROR(
      CheckRange("kernel_size[0]", kernel_h, 1, kMaxSpatial));
  BNSERVE_RETURN_IF_ERROR(
      CheckRange("kernel_size[1]", kernel_w, 1, kMaxSpatial));
  BNSERVE_RETURN_IF_ERROR(CheckRange("stride[0]", stride_h, 1, kMaxSpatial));
  BNSERVE_RETURN_IF_ERROR(CheckRange("stride[1]", stride_w, 1, kMaxSpatial));
  BNSERVE_RETURN_IF_ERROR(CheckRange("padding[0]", pad_h, 0, kMaxSpatial));
  BNSERVE_RETURN_IF_ERROR(CheckRange("padding[1]", pad_w, 0, kMaxSpatial));
  if (pooling && (2 * pad_h > kernel_h || 2 * pad_w > kernel_w)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "padding: must be at most half the kernel size, got "
        "padding [",
        pad_h, ", ", pad_w, "] for kernel [", kernel_h, ", ", kernel_w, "]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Shape> Window2d::Apply(const Shape& in, bool pooling,
                                      const char* kind) const {
  BNSERVE_RETURN_IF_ERROR(CheckRanges(pooling));
  if (!in.spatial) {
    return absl::InvalidArgumentError(
        absl::StrCat(kind, " needs an image input [C, H, W], got the flat ",
                     in.ToString(), ": give the network an input_shape"));
  }
  if (in.height + 2 * pad_h < kernel_h || in.width + 2 * pad_w < kernel_w) {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel [", kernel_h, ", ", kernel_w,
                     "] is larger than the padded "
                     "input [",
                     in.height + 2 * pad_h, ", ", in.width + 2 * pad_w,
                     "] (input ", in.ToString(), ")"));
  }
  return Shape::Image(in.channels, OutHeight(in.height), OutWidth(in.width));
}

std::string Window2d::Describe() const {
  const auto pair = [](int a, int b) {
    return a == b ? absl::StrCat(a) : absl::StrCat(a, "x", b);
  };
  return absl::StrCat(kernel_h, "x", kernel_w, " s", pair(stride_h, stride_w),
                      " p", pair(pad_h, pad_w));
}

absl::StatusOr<Window2d> Window2d::FromJson(const Json& j, const std::string& p,
                                            bool stride_defaults_to_kernel) {
  Window2d w;
  BNSERVE_ASSIGN_OR_RETURN(
      auto kernel,
      json::IntPairMember(j, p, "kernel_size", 1, kMaxSpatial, std::nullopt));
  std::pair<int, int> default_stride =
      stride_defaults_to_kernel ? kernel : std::make_pair(1, 1);
  BNSERVE_ASSIGN_OR_RETURN(
      auto stride,
      json::IntPairMember(j, p, "stride", 1, kMaxSpatial, default_stride));
  BNSERVE_ASSIGN_OR_RETURN(auto padding,
                           json::IntPairMember(j, p, "padding", 0, kMaxSpatial,
                                               std::make_pair(0, 0)));
  w.kernel_h = kernel.first;
  w.kernel_w = kernel.second;
  w.stride_h = stride.first;
  w.stride_w = stride.second;
  w.pad_h = padding.first;
  w.pad_w = padding.second;
  return w;
}

void Window2d::ToJson(Json* j) const {
  (*j)["kernel_size"] = json::IntPair(kernel_h, kernel_w);
  (*j)["stride"] = json::IntPair(stride_h, stride_w);
  (*j)["padding"] = json::IntPair(pad_h, pad_w);
}

}  // namespace bnserve::model
