#include "client/onnx/onnx_node.h"

#include <cstring>

#include "absl/strings/str_join.h"
#include "model/limits.h"
#include "model/status_macros.h"

namespace bnserve::onnx_io {
namespace {

// Product of `dims`, each checked before multiplying: nothing larger than
// one layer's parameter limit is ever allocated.
absl::StatusOr<int64_t> CheckedSize(const std::vector<int64_t>& dims,
                                    const std::string& where) {
  int64_t size = 1;
  for (int64_t d : dims) {
    if (d < 0 || d > model::kMaxLayerParameters ||
        size * d > model::kMaxLayerParameters) {
      return Invalid(
          where, absl::StrCat("tensor dimensions [", absl::StrJoin(dims, ", "),
                              "] exceed the limit of ",
                              model::kMaxLayerParameters, " values"));
    }
    size *= d;
  }
  return size;
}

template <typename T, typename Field>
absl::Status CopyValues(const onnx::TensorProto& t, const Field& field,
                        int64_t size, const std::string& where,
                        std::vector<T>* out) {
  if (!t.raw_data().empty()) {
    if (static_cast<int64_t>(t.raw_data().size()) !=
        size * static_cast<int64_t>(sizeof(T))) {
      return Invalid(where, absl::StrCat("raw_data has ", t.raw_data().size(),
                                         " bytes, the dimensions need ",
                                         size * sizeof(T)));
    }
    out->resize(size);
    std::memcpy(out->data(), t.raw_data().data(), t.raw_data().size());
    return absl::OkStatus();
  }
  if (field.size() != size) {
    return Invalid(where, absl::StrCat("holds ", field.size(),
                                       " values, the dimensions need ", size));
  }
  out->assign(field.begin(), field.end());
  return absl::OkStatus();
}

}  // namespace

absl::Status Invalid(const std::string& where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

absl::StatusOr<Tensor> DecodeTensor(const onnx::TensorProto& t,
                                    const std::string& where) {
  if (t.data_location() == onnx::TensorProto::EXTERNAL) {
    return Invalid(where, "external tensor data is not supported");
  }
  Tensor out;
  out.dims.assign(t.dims().begin(), t.dims().end());
  BNSERVE_ASSIGN_OR_RETURN(int64_t size, CheckedSize(out.dims, where));
  if (t.data_type() == onnx::TensorProto::FLOAT) {
    BNSERVE_RETURN_IF_ERROR(
        CopyValues(t, t.float_data(), size, where, &out.floats));
  } else if (t.data_type() == onnx::TensorProto::INT64) {
    out.is_int = true;
    BNSERVE_RETURN_IF_ERROR(
        CopyValues(t, t.int64_data(), size, where, &out.ints));
  } else {
    return Invalid(where, absl::StrCat("tensor data type ", t.data_type(),
                                       " is not supported (FLOAT or INT64)"));
  }
  return out;
}

std::string NodeLabel(const onnx::NodeProto& node, int index) {
  std::string name =
      node.name().empty() ? absl::StrCat("#", index) : node.name();
  return absl::StrCat("node \"", name, "\" (", node.op_type(), ")");
}

std::string IntsText(const std::vector<int64_t>& v) {
  return absl::StrCat(
      "[",
      absl::StrJoin(v, ", ",
                    [](std::string* out, int64_t x) {
                      absl::StrAppend(out, x == kBatch ? "N" : absl::StrCat(x));
                    }),
      "]");
}

absl::StatusOr<Window> ReadWindow(const Attributes& attrs,
                                  std::vector<int64_t> kernel) {
  Window w;
  BNSERVE_ASSIGN_OR_RETURN(std::string auto_pad,
                           attrs.String("auto_pad", "NOTSET"));
  if (auto_pad != "NOTSET") {
    return attrs.Unsupported("auto_pad", auto_pad, "only NOTSET");
  }
  BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> dil,
                           attrs.Ints("dilations", {1, 1}));
  if (dil != std::vector<int64_t>{1, 1}) {
    return attrs.Unsupported("dilations", IntsText(dil), "only [1, 1]");
  }
  BNSERVE_ASSIGN_OR_RETURN(kernel, attrs.Ints("kernel_shape", kernel));
  BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> strides,
                           attrs.Ints("strides", {1, 1}));
  BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> pads,
                           attrs.Ints("pads", {0, 0, 0, 0}));
  if (kernel.size() != 2) {
    return attrs.Unsupported("kernel_shape", IntsText(kernel), "2-D only");
  }
  if (strides.size() != 2) {
    return attrs.Unsupported("strides", IntsText(strides), "2-D only");
  }
  if (pads.size() != 4 || pads[0] != pads[2] || pads[1] != pads[3]) {
    return attrs.Unsupported("pads", IntsText(pads),
                             "only [h, w, h, w]: the same at both ends");
  }
  for (int64_t v :
       {kernel[0], kernel[1], strides[0], strides[1], pads[0], pads[1]}) {
    if (v < 0 || v > model::kMaxSpatial) {
      return attrs.Unsupported(
          "kernel_shape/strides/pads", std::to_string(v),
          absl::StrCat("outside [0, ", model::kMaxSpatial, "]"));
    }
  }
  w.kernel_h = kernel[0];
  w.kernel_w = kernel[1];
  w.stride_h = strides[0];
  w.stride_w = strides[1];
  w.pad_h = pads[0];
  w.pad_w = pads[1];
  return w;
}

}  // namespace bnserve::onnx_io
