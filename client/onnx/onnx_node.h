// Reading ONNX nodes for the importer (onnx_import.cc): constant tensors
// and node attributes, checked against model/limits.h before anything is
// allocated. Every error is InvalidArgument naming the node (or
// initializer), the op type and the attribute. Internal to client/onnx/.
//
// Thread safety: pure functions; an Attributes object is used by one thread.
#ifndef BNSERVE_CLIENT_ONNX_ONNX_NODE_H_
#define BNSERVE_CLIENT_ONNX_ONNX_NODE_H_

#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "onnx.pb.h"

namespace bnserve::onnx_io {

// A constant (initializer, Constant node, or Transpose/Identity of one):
// float or int64 values with their dimensions.
struct Tensor {
  std::vector<int64_t> dims;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  bool is_int = false;
  int64_t size() const {
    return is_int ? static_cast<int64_t>(ints.size())
                  : static_cast<int64_t>(floats.size());
  }
};

// InvalidArgument "<where>: <what>".
absl::Status Invalid(const std::string& where, absl::string_view what);

// Decodes a FLOAT or INT64 tensor (raw_data or the typed field); its size
// is checked against kMaxLayerParameters and the stored data before
// copying. `where` names it in errors.
absl::StatusOr<Tensor> DecodeTensor(const onnx::TensorProto& t,
                                    const std::string& where);

// `node "<name>" (<OpType>)`, or `node "#<index>" (...)` without a name.
std::string NodeLabel(const onnx::NodeProto& node, int index);

// The attributes of one node, checked against the set the op handler
// knows: any other attribute is refused by name.
class Attributes {
 public:
  static absl::StatusOr<Attributes> Of(const onnx::NodeProto& node,
                                       const std::string& label,
                                       std::set<std::string> known) {
    Attributes a(label);
    for (const onnx::AttributeProto& attr : node.attribute()) {
      if (known.count(attr.name()) == 0) {
        return Invalid(label, absl::StrCat("attribute ", attr.name(),
                                           " is not supported"));
      }
      a.attrs_[attr.name()] = &attr;
    }
    return a;
  }

  absl::StatusOr<int64_t> Int(const std::string& name, int64_t def) const {
    const onnx::AttributeProto* a = Find(name);
    if (a == nullptr) return def;
    if (a->type() != onnx::AttributeProto::INT) return WrongType(name, "INT");
    return a->i();
  }
  absl::StatusOr<float> Float(const std::string& name, float def) const {
    const onnx::AttributeProto* a = Find(name);
    if (a == nullptr) return def;
    if (a->type() != onnx::AttributeProto::FLOAT) {
      return WrongType(name, "FLOAT");
    }
    return a->f();
  }
  absl::StatusOr<std::vector<int64_t>> Ints(const std::string& name,
                                            std::vector<int64_t> def) const {
    const onnx::AttributeProto* a = Find(name);
    if (a == nullptr) return def;
    if (a->type() != onnx::AttributeProto::INTS) return WrongType(name, "INTS");
    return std::vector<int64_t>(a->ints().begin(), a->ints().end());
  }
  absl::StatusOr<std::string> String(const std::string& name,
                                     std::string def) const {
    const onnx::AttributeProto* a = Find(name);
    if (a == nullptr) return def;
    if (a->type() != onnx::AttributeProto::STRING) {
      return WrongType(name, "STRING");
    }
    return a->s();
  }
  // "<label>: attribute <name> = <value> is not supported (<why>)".
  absl::Status Unsupported(const std::string& name, const std::string& value,
                           const std::string& why) const {
    return Invalid(label_, absl::StrCat("attribute ", name, " = ", value,
                                        " is not supported (", why, ")"));
  }

 private:
  explicit Attributes(std::string label) : label_(std::move(label)) {}
  const onnx::AttributeProto* Find(const std::string& name) const {
    auto it = attrs_.find(name);
    return it == attrs_.end() ? nullptr : it->second;
  }
  absl::Status WrongType(const std::string& name, const char* type) const {
    return Invalid(label_, absl::StrCat("attribute ", name, " must be ", type));
  }

  std::string label_;
  std::map<std::string, const onnx::AttributeProto*> attrs_;
};

// The batch size N in a shape computed from Shape(x).
constexpr int64_t kBatch = std::numeric_limits<int64_t>::min();

// "[1, 2, N]" (kBatch prints as N).
std::string IntsText(const std::vector<int64_t>& v);

// Kernel, stride and symmetric padding of a 2-D Conv or pooling node.
struct Window {
  int64_t kernel_h = 0, kernel_w = 0, stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
};

// The window of a Conv or pooling node: auto_pad must be NOTSET,
// dilations [1, 1], pads the same at both ends, every value within
// [0, kMaxSpatial]; `kernel` is the default kernel_shape.
absl::StatusOr<Window> ReadWindow(const Attributes& attrs,
                                  std::vector<int64_t> kernel);

}  // namespace bnserve::onnx_io

#endif  // BNSERVE_CLIENT_ONNX_ONNX_NODE_H_
