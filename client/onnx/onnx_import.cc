#include "client/onnx/onnx_import.h"

#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/onnx/onnx_node.h"
#include "model/layer.h"
#include "model/limits.h"
#include "model/network.h"
#include "model/status_macros.h"
#include "onnx.pb.h"

namespace bnserve::onnx_io {
namespace {

v1::Pool2dLayer PoolLayer(const Window& w) {
  v1::Pool2dLayer p;
  p.set_kernel_h(static_cast<int32_t>(w.kernel_h));
  p.set_kernel_w(static_cast<int32_t>(w.kernel_w));
  p.set_stride_h(static_cast<int32_t>(w.stride_h));
  p.set_stride_w(static_cast<int32_t>(w.stride_w));
  p.set_pad_h(static_cast<int32_t>(w.pad_h));
  p.set_pad_w(static_cast<int32_t>(w.pad_w));
  return p;
}

// Walks the graph from its one input to its one output, one node at a time,
// and appends a layer per node.
class Importer {
 public:
  explicit Importer(const onnx::GraphProto& graph) : graph_(graph) {}

  absl::Status Run(v1::Snapshot* snapshot);
  // After Run: the node each snapshot layer came from.
  const std::vector<std::string>& labels() const { return labels_; }

 private:
  using Handler = absl::Status (Importer::*)(const onnx::NodeProto&,
                                             const std::string&);
  absl::Status CollectConstants();
  absl::Status FoldConstantNode(const onnx::NodeProto& node, int index);
  absl::Status FoldShapeNode(const onnx::NodeProto& node, int index,
                             const std::string& label);
  absl::StatusOr<std::vector<int64_t>> ShapeOperand(const onnx::NodeProto& node,
                                                    const std::string& label,
                                                    int i) const;
  // A constant, or a value computed from the input's shape only.
  bool IsConstant(const std::string& value) const {
    return constants_.count(value) > 0 || shape_values_.count(value) > 0;
  }
  absl::Status ReadInput(v1::Snapshot* snapshot);
  absl::Status CheckInputsDefined() const;
  absl::Status WalkChain();
  absl::StatusOr<const onnx::NodeProto*> NextNode(const std::string& value);
  absl::Status MapNode(const onnx::NodeProto& node, const std::string& label);

  // The constant input `i` of `node`; InvalidArgument if it is missing or
  // computed from the network's input.
  absl::StatusOr<const Tensor*> ConstantInput(const onnx::NodeProto& node,
                                              const std::string& label,
                                              int i) const;
  absl::StatusOr<std::vector<float>> BiasInput(const onnx::NodeProto& node,
                                               const std::string& label, int i,
                                               int64_t out) const;
  void AddLayer(v1::Layer layer, const std::string& label) {
    layers_.push_back(std::move(layer));
    labels_.push_back(label);
  }

  absl::Status Gemm(const onnx::NodeProto& node, const std::string& label);
  absl::Status MatMul(const onnx::NodeProto& node, const std::string& label);
  absl::Status Add(const onnx::NodeProto& node, const std::string& label);
  absl::Status Conv(const onnx::NodeProto& node, const std::string& label);
  absl::Status BatchNorm(const onnx::NodeProto& node, const std::string& label);
  absl::Status Activation(const onnx::NodeProto& node,
                          const std::string& label);
  absl::Status MaxPool(const onnx::NodeProto& node, const std::string& label);
  absl::Status AvgPool(const onnx::NodeProto& node, const std::string& label);
  absl::Status Pad(const onnx::NodeProto& node, const std::string& label);
  absl::Status Flatten(const onnx::NodeProto& node, const std::string& label);
  absl::Status Reshape(const onnx::NodeProto& node, const std::string& label);
  absl::Status Identity(const onnx::NodeProto& node, const std::string& label);

  static const std::map<std::string, Handler>& Handlers();

  const onnx::GraphProto& graph_;
  // Layer i came from the node labels_[i].
  std::vector<v1::Layer> layers_;
  std::vector<std::string> labels_;
  // The index of a dense layer from a MatMul still waiting for its Add.
  int matmul_layer_ = -1;
  std::map<std::string, Tensor> constants_;
  // Values computed from Shape(x) of a computed x: PyTorch's
  // x.view(x.size(0), -1) is Shape -> Gather(0) -> Unsqueeze -> Concat(-1)
  // -> Reshape. kBatch stands for the batch size N; only element 0 of a
  // Shape output is known (shape_prefix_).
  std::map<std::string, std::vector<int64_t>> shape_values_;
  std::set<std::string> shape_prefix_;
  std::string input_;
  std::string output_;
  // Computed value -> indices of the nodes that read it.
  std::map<std::string, std::vector<int>> consumers_;
  std::vector<bool> is_constant_node_;
  std::vector<bool> visited_;
  // A Pad node waiting for the AveragePool it must precede.
  std::string pending_pad_label_;
  int64_t pending_pad_h_ = 0, pending_pad_w_ = 0;
};

const std::map<std::string, Importer::Handler>& Importer::Handlers() {
  static const auto* handlers = new std::map<std::string, Handler>{
      {"Gemm", &Importer::Gemm},
      {"MatMul", &Importer::MatMul},
      {"Add", &Importer::Add},
      {"Conv", &Importer::Conv},
      {"BatchNormalization", &Importer::BatchNorm},
      {"Relu", &Importer::Activation},
      {"Tanh", &Importer::Activation},
      {"Sigmoid", &Importer::Activation},
      {"MaxPool", &Importer::MaxPool},
      {"AveragePool", &Importer::AvgPool},
      {"Pad", &Importer::Pad},
      {"Flatten", &Importer::Flatten},
      {"Reshape", &Importer::Reshape},
      {"Identity", &Importer::Identity},
  };
  return *handlers;
}

absl::Status Importer::CollectConstants() {
  for (const onnx::TensorProto& t : graph_.initializer()) {
    BNSERVE_ASSIGN_OR_RETURN(
        Tensor tensor,
        DecodeTensor(t, absl::StrCat("initializer \"", t.name(), "\"")));
    constants_[t.name()] = std::move(tensor);
  }
  is_constant_node_.assign(graph_.node_size(), false);
  for (int i = 0; i < graph_.node_size(); ++i) {
    BNSERVE_RETURN_IF_ERROR(FoldConstantNode(graph_.node(i), i));
  }
  return absl::OkStatus();
}

// Constant nodes, and Transpose or Identity of a constant (PyTorch writes
// Transpose(weight) -> MatMul for a Linear without bias), become constants.
absl::Status Importer::FoldConstantNode(const onnx::NodeProto& node,
                                        int index) {
  const std::string label = NodeLabel(node, index);
  const std::string& op = node.op_type();
  if (node.domain() != "" && node.domain() != "ai.onnx") {
    return Invalid(
        label, absl::StrCat("domain \"", node.domain(), "\" is not supported"));
  }
  if (op == "Constant") {
    BNSERVE_ASSIGN_OR_RETURN(Attributes attrs,
                             Attributes::Of(node, label, {"value"}));
    if (node.attribute_size() != 1 || node.output_size() != 1 ||
        node.attribute(0).type() != onnx::AttributeProto::TENSOR) {
      return Invalid(label, "needs one tensor attribute value and one output");
    }
    BNSERVE_ASSIGN_OR_RETURN(
        Tensor t, DecodeTensor(node.attribute(0).t(), label + " value"));
    constants_[node.output(0)] = std::move(t);
    is_constant_node_[index] = true;
    return absl::OkStatus();
  }
  if (op == "Shape" || op == "Gather" || op == "Unsqueeze" || op == "Concat") {
    return FoldShapeNode(node, index, label);
  }
  if ((op != "Transpose" && op != "Identity") || node.input_size() != 1 ||
      node.output_size() != 1) {
    return absl::OkStatus();
  }
  auto it = constants_.find(node.input(0));
  if (it == constants_.end()) return absl::OkStatus();
  Tensor t = it->second;
  if (op == "Transpose") {
    BNSERVE_ASSIGN_OR_RETURN(Attributes attrs,
                             Attributes::Of(node, label, {"perm"}));
    BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> perm,
                             attrs.Ints("perm", {1, 0}));
    if (t.dims.size() != 2 || t.is_int || perm != std::vector<int64_t>{1, 0}) {
      return Invalid(label,
                     "only the transpose of a 2-D float constant is "
                     "supported");
    }
    const int64_t rows = t.dims[0], cols = t.dims[1];
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        t.floats[c * rows + r] = it->second.floats[r * cols + c];
      }
    }
    t.dims = {cols, rows};
  }
  constants_[node.output(0)] = std::move(t);
  is_constant_node_[index] = true;
  return absl::OkStatus();
}

// An int64 operand of a shape computation: a constant or a shape value.
absl::StatusOr<std::vector<int64_t>> Importer::ShapeOperand(
    const onnx::NodeProto& node, const std::string& label, int i) const {
  if (i >= node.input_size()) {
    return Invalid(label, absl::StrCat("input ", i, " is missing"));
  }
  auto s = shape_values_.find(node.input(i));
  if (s != shape_values_.end()) {
    if (shape_prefix_.count(node.input(i)) && node.op_type() != "Gather") {
      return Invalid(label,
                     "only element 0 (the batch size) of a Shape is "
                     "supported");
    }
    return s->second;
  }
  auto c = constants_.find(node.input(i));
  if (c == constants_.end() || !c->second.is_int) {
    return Invalid(label, absl::StrCat("input ", i,
                                       " must be an int64 "
                                       "constant or computed from a Shape"));
  }
  return c->second.ints;
}

// Shape, Gather, Unsqueeze and Concat computing a target shape from the
// batch size (see shape_values_). Other uses are left to the chain walk,
// which refuses them by op type.
absl::Status Importer::FoldShapeNode(const onnx::NodeProto& node, int index,
                                     const std::string& label) {
  const std::string& op = node.op_type();
  if (node.output_size() != 1 || node.input_size() < 1) return absl::OkStatus();
  const std::string& in = node.input(0);
  std::vector<int64_t> out;
  if (op == "Shape") {
    if (constants_.count(in) || shape_values_.count(in))
      return absl::OkStatus();
    BNSERVE_ASSIGN_OR_RETURN(Attributes attrs, Attributes::Of(node, label, {}));
    shape_prefix_.insert(node.output(0));
    out = {kBatch};
  } else if (shape_values_.count(in) == 0 &&
             (constants_.count(in) == 0 || !constants_.at(in).is_int)) {
    return absl::OkStatus();  // not a shape computation
  } else if (op == "Gather") {
    BNSERVE_ASSIGN_OR_RETURN(Attributes attrs,
                             Attributes::Of(node, label, {"axis"}));
    BNSERVE_ASSIGN_OR_RETURN(int64_t axis, attrs.Int("axis", 0));
    BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> data,
                             ShapeOperand(node, label, 0));
    BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> idx,
                             ShapeOperand(node, label, 1));
    if (axis != 0 || idx.size() != 1 || idx[0] < 0 ||
        idx[0] >= static_cast<int64_t>(data.size())) {
      return Invalid(label,
                     "only Gather of element 0 of a Shape is "
                     "supported");
    }
    out = {data[idx[0]]};
  } else if (op == "Unsqueeze") {
    BNSERVE_ASSIGN_OR_RETURN(Attributes attrs,
                             Attributes::Of(node, label, {"axes"}));
    BNSERVE_ASSIGN_OR_RETURN(out, ShapeOperand(node, label, 0));
    if (out.size() != 1) return Invalid(label, "only a scalar is supported");
  } else {  // Concat
    BNSERVE_ASSIGN_OR_RETURN(Attributes attrs,
                             Attributes::Of(node, label, {"axis"}));
    BNSERVE_ASSIGN_OR_RETURN(int64_t axis, attrs.Int("axis", 0));
    if (axis != 0)
      return attrs.Unsupported("axis", absl::StrCat(axis), "only 0");
    for (int i = 0; i < node.input_size() && out.size() < 16; ++i) {
      BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> part,
                               ShapeOperand(node, label, i));
      out.insert(out.end(), part.begin(), part.end());
    }
  }
  shape_values_[node.output(0)] = std::move(out);
  is_constant_node_[index] = true;
  return absl::OkStatus();
}

absl::Status Importer::ReadInput(v1::Snapshot* snapshot) {
  std::vector<const onnx::ValueInfoProto*> inputs;
  for (const onnx::ValueInfoProto& in : graph_.input()) {
    if (constants_.count(in.name()) == 0) inputs.push_back(&in);
  }
  if (inputs.size() != 1 || graph_.output_size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the graph must have exactly one input and one output, it has ",
        inputs.size(), " inputs (besides initializers) and ",
        graph_.output_size(), " outputs"));
  }
  input_ = inputs[0]->name();
  output_ = graph_.output(0).name();
  const std::string where = absl::StrCat("graph input \"", input_, "\"");
  const onnx::TypeProto& type = inputs[0]->type();
  if (!type.has_tensor_type() ||
      type.tensor_type().elem_type() != onnx::TensorProto::FLOAT ||
      !type.tensor_type().has_shape()) {
    return Invalid(where, "must be a float tensor with a known shape");
  }
  const onnx::TensorShapeProto& shape = type.tensor_type().shape();
  if (shape.dim_size() != 2 && shape.dim_size() != 4) {
    return Invalid(where, absl::StrCat("has rank ", shape.dim_size(),
                                       "; [N, F] or [N, C, H, W] needed"));
  }
  int64_t features = 1;
  for (int i = 1; i < shape.dim_size(); ++i) {
    const int64_t d = shape.dim(i).dim_value();
    if (!shape.dim(i).has_dim_value() || d < 1 || d > model::kMaxWidth) {
      return Invalid(where, absl::StrCat("dimension ", i,
                                         " must be a number "
                                         "in [1, ",
                                         model::kMaxWidth, "]"));
    }
    features *= d;
    if (shape.dim_size() == 4) {
      snapshot->add_input_shape(static_cast<int32_t>(d));
    }
  }
  if (features > std::numeric_limits<int32_t>::max()) {
    return Invalid(where, "has too many features");
  }
  snapshot->set_input_features(static_cast<int32_t>(features));
  return absl::OkStatus();
}

absl::StatusOr<const onnx::NodeProto*> Importer::NextNode(
    const std::string& value) {
  auto it = consumers_.find(value);
  if (it == consumers_.end() || it->second.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("value \"", value,
                     "\" is read by no node and is not "
                     "the graph output \"",
                     output_, "\""));
  }
  if (it->second.size() > 1) {
    std::vector<std::string> names;
    for (int i : it->second) names.push_back(NodeLabel(graph_.node(i), i));
    return absl::InvalidArgumentError(
        absl::StrCat("the graph branches: value \"", value, "\" is read by ",
                     absl::StrJoin(names, " and "),
                     "; only a chain of layers is "
                     "supported"));
  }
  const int index = it->second[0];
  if (visited_[index]) {
    return Invalid(NodeLabel(graph_.node(index), index),
                   "the graph has a cycle");
  }
  visited_[index] = true;
  return &graph_.node(index);
}

// Every computed value a node reads is the graph input or some node's
// output (a missing initializer is named here).
absl::Status Importer::CheckInputsDefined() const {
  std::set<std::string> produced = {input_};
  for (const onnx::NodeProto& node : graph_.node()) {
    produced.insert(node.output().begin(), node.output().end());
  }
  for (const auto& [value, readers] : consumers_) {
    if (produced.count(value) == 0) {
      const int i = readers[0];
      return Invalid(NodeLabel(graph_.node(i), i),
                     absl::StrCat("input \"", value,
                                  "\" is neither an "
                                  "initializer, a constant, the graph input "
                                  "nor the output of a node"));
    }
  }
  return absl::OkStatus();
}

absl::Status Importer::WalkChain() {
  visited_.assign(graph_.node_size(), false);
  for (int i = 0; i < graph_.node_size(); ++i) {
    if (is_constant_node_[i]) continue;
    for (const std::string& in : graph_.node(i).input()) {
      if (!in.empty() && !IsConstant(in)) consumers_[in].push_back(i);
    }
  }
  BNSERVE_RETURN_IF_ERROR(CheckInputsDefined());
  std::string value = input_;
  while (value != output_) {
    BNSERVE_ASSIGN_OR_RETURN(const onnx::NodeProto* node, NextNode(value));
    const int index = static_cast<int>(node - &graph_.node(0));
    const std::string label = NodeLabel(*node, index);
    if (node->output_size() < 1 || node->output(0).empty()) {
      return Invalid(label, "has no output");
    }
    int computed = 0;
    for (const std::string& in : node->input()) {
      if (!in.empty() && !IsConstant(in)) ++computed;
    }
    if (computed != 1) {
      return Invalid(label, absl::StrCat("reads ", computed,
                                         " computed values; only a chain of "
                                         "layers is supported"));
    }
    for (int o = 1; o < node->output_size(); ++o) {
      if (!node->output(o).empty() &&
          (consumers_.count(node->output(o)) || node->output(o) == output_)) {
        return Invalid(label,
                       absl::StrCat("output ", o, " (\"", node->output(o),
                                    "\") is used; only the first "
                                    "output is supported"));
      }
    }
    BNSERVE_RETURN_IF_ERROR(MapNode(*node, label));
    value = node->output(0);
  }
  if (consumers_.count(output_)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the graph output \"", output_,
                     "\" is also read by a "
                     "node; only a chain of layers is supported"));
  }
  if (!pending_pad_label_.empty()) {
    return Invalid(pending_pad_label_,
                   "is only supported before an "
                   "AveragePool");
  }
  for (int i = 0; i < graph_.node_size(); ++i) {
    if (!is_constant_node_[i] && !visited_[i]) {
      return Invalid(NodeLabel(graph_.node(i), i),
                     "is not on the chain from the graph input to its output");
    }
  }
  return absl::OkStatus();
}

absl::Status Importer::MapNode(const onnx::NodeProto& node,
                               const std::string& label) {
  auto it = Handlers().find(node.op_type());
  if (it == Handlers().end()) {
    return Invalid(label,
                   "op type is not supported (supported: Gemm, "
                   "MatMul, Add, Conv, BatchNormalization, Relu, "
                   "Tanh, Sigmoid, MaxPool, AveragePool, Pad, Flatten, "
                   "Reshape, Identity)");
  }
  if (!pending_pad_label_.empty() && node.op_type() != "AveragePool") {
    return Invalid(pending_pad_label_,
                   "is only supported before an "
                   "AveragePool");
  }
  return (this->*(it->second))(node, label);
}

absl::StatusOr<const Tensor*> Importer::ConstantInput(
    const onnx::NodeProto& node, const std::string& label, int i) const {
  if (i >= node.input_size() || node.input(i).empty()) {
    return Invalid(label, absl::StrCat("input ", i, " is missing"));
  }
  auto it = constants_.find(node.input(i));
  if (it == constants_.end()) {
    return Invalid(label, absl::StrCat("input ", i, " (\"", node.input(i),
                                       "\") must be an initializer or a "
                                       "constant"));
  }
  return &it->second;
}

// An optional bias: `out` values, or one value broadcast.
absl::StatusOr<std::vector<float>> Importer::BiasInput(
    const onnx::NodeProto& node, const std::string& label, int i,
    int64_t out) const {
  if (i >= node.input_size() || node.input(i).empty()) {
    return std::vector<float>();
  }
  BNSERVE_ASSIGN_OR_RETURN(const Tensor* b, ConstantInput(node, label, i));
  if (b->is_int || (b->size() != out && b->size() != 1)) {
    return Invalid(
        label, absl::StrCat("bias input ", i, " must hold ", out, " floats"));
  }
  if (b->size() == 1) return std::vector<float>(out, b->floats[0]);
  return b->floats;
}

absl::Status Importer::Gemm(const onnx::NodeProto& node,
                            const std::string& label) {
  BNSERVE_ASSIGN_OR_RETURN(
      Attributes attrs,
      Attributes::Of(node, label, {"alpha", "beta", "transA", "transB"}));
  BNSERVE_ASSIGN_OR_RETURN(float alpha, attrs.Float("alpha", 1.0f));
  BNSERVE_ASSIGN_OR_RETURN(float beta, attrs.Float("beta", 1.0f));
  BNSERVE_ASSIGN_OR_RETURN(int64_t trans_a, attrs.Int("transA", 0));
  BNSERVE_ASSIGN_OR_RETURN(int64_t trans_b, attrs.Int("transB", 0));
  if (alpha != 1.0f)
    return attrs.Unsupported("alpha", absl::StrCat(alpha), "only 1");
  if (beta != 1.0f)
    return attrs.Unsupported("beta", absl::StrCat(beta), "only 1");
  if (trans_a != 0)
    return attrs.Unsupported("transA", absl::StrCat(trans_a), "only 0");
  BNSERVE_ASSIGN_OR_RETURN(const Tensor* b, ConstantInput(node, label, 1));
  if (b->is_int || b->dims.size() != 2) {
    return Invalid(label, "input 1 (the weight) must be a 2-D float tensor");
  }
  Tensor w = *b;
  if (trans_b == 0) {  // B is [in, out]: PyTorch's layout is its transpose
    for (int64_t r = 0; r < b->dims[0]; ++r) {
      for (int64_t c = 0; c < b->dims[1]; ++c) {
        w.floats[c * b->dims[0] + r] = b->floats[r * b->dims[1] + c];
      }
    }
    w.dims = {b->dims[1], b->dims[0]};
  } else if (trans_b != 1) {
    return attrs.Unsupported("transB", absl::StrCat(trans_b), "0 or 1");
  }
  if (w.dims[0] > model::kMaxWidth || w.dims[1] > model::kMaxWidth) {
    return Invalid(label,
                   absl::StrCat("weight dimensions exceed ", model::kMaxWidth));
  }
  BNSERVE_ASSIGN_OR_RETURN(std::vector<float> bias,
                           BiasInput(node, label, 2, w.dims[0]));
  v1::Layer layer;
  v1::DenseLayer* d = layer.mutable_dense();
  d->set_out(static_cast<int32_t>(w.dims[0]));
  d->set_in(static_cast<int32_t>(w.dims[1]));
  d->mutable_weight()->Assign(w.floats.begin(), w.floats.end());
  d->mutable_bias()->Assign(bias.begin(), bias.end());
  AddLayer(std::move(layer), label);
  return absl::OkStatus();
}

// MatMul(x, W) with W [in, out] constant: a dense layer without bias (an
// Add right after it supplies the bias).
absl::Status Importer::MatMul(const onnx::NodeProto& node,
                              const std::string& label) {
  BNSERVE_ASSIGN_OR_RETURN(Attributes attrs, Attributes::Of(node, label, {}));
  if (node.input_size() != 2 || constants_.count(node.input(0))) {
    return Invalid(label,
                   "must multiply the computed value (input 0) by a "
                   "constant weight (input 1)");
  }
  BNSERVE_RETURN_IF_ERROR(Gemm(node, label));
  matmul_layer_ = static_cast<int>(layers_.size()) - 1;
  return absl::OkStatus();
}

absl::Status Importer::Add(const onnx::NodeProto& node,
                           const std::string& label) {
  BNSERVE_ASSIGN_OR_RETURN(Attributes attrs, Attributes::Of(node, label, {}));
  const int constant =
      node.input_size() == 2 && constants_.count(node.input(1)) ? 1 : 0;
  if (node.input_size() != 2 ||
      matmul_layer_ != static_cast<int>(layers_.size()) - 1) {
    return Invalid(label,
                   "only the bias of the MatMul right before it is "
                   "supported");
  }
  v1::DenseLayer* d = layers_.back().mutable_dense();
  BNSERVE_ASSIGN_OR_RETURN(std::vector<float> bias,
                           BiasInput(node, label, constant, d->out()));
  d->mutable_bias()->Assign(bias.begin(), bias.end());
  matmul_layer_ = -1;
  return absl::OkStatus();
}

absl::Status Importer::Conv(const onnx::NodeProto& node,
                            const std::string& label) {
  BNSERVE_ASSIGN_OR_RETURN(Attributes attrs,
                           Attributes::Of(node, label,
                                          {"kernel_shape", "strides", "pads",
                                           "dilations", "group", "auto_pad"}));
  BNSERVE_ASSIGN_OR_RETURN(int64_t group, attrs.Int("group", 1));
  if (group != 1)
    return attrs.Unsupported("group", absl::StrCat(group), "only 1");
  BNSERVE_ASSIGN_OR_RETURN(const Tensor* w, ConstantInput(node, label, 1));
  if (w->is_int || w->dims.size() != 4) {
    return Invalid(label, "input 1 (the weight) must be a 4-D float tensor");
  }
  for (int64_t d : w->dims) {
    if (d > model::kMaxWidth) {
      return Invalid(
          label, absl::StrCat("weight dimensions exceed ", model::kMaxWidth));
    }
  }
  BNSERVE_ASSIGN_OR_RETURN(Window win,
                           ReadWindow(attrs, {w->dims[2], w->dims[3]}));
  if (win.kernel_h != w->dims[2] || win.kernel_w != w->dims[3]) {
    return attrs.Unsupported(
        "kernel_shape", IntsText({win.kernel_h, win.kernel_w}),
        absl::StrCat("the weight's kernel is ", w->dims[2], "x", w->dims[3]));
  }
  BNSERVE_ASSIGN_OR_RETURN(std::vector<float> bias,
                           BiasInput(node, label, 2, w->dims[0]));
  v1::Layer layer;
  v1::Conv2dLayer* c = layer.mutable_conv2d();
  c->set_out_channels(static_cast<int32_t>(w->dims[0]));
  c->set_in_channels(static_cast<int32_t>(w->dims[1]));
  c->set_kernel_h(static_cast<int32_t>(win.kernel_h));
  c->set_kernel_w(static_cast<int32_t>(win.kernel_w));
  c->set_stride_h(static_cast<int32_t>(win.stride_h));
  c->set_stride_w(static_cast<int32_t>(win.stride_w));
  c->set_pad_h(static_cast<int32_t>(win.pad_h));
  c->set_pad_w(static_cast<int32_t>(win.pad_w));
  c->mutable_weight()->Assign(w->floats.begin(), w->floats.end());
  c->mutable_bias()->Assign(bias.begin(), bias.end());
  AddLayer(std::move(layer), label);
  return absl::OkStatus();
}

absl::Status Importer::BatchNorm(const onnx::NodeProto& node,
                                 const std::string& label) {
  BNSERVE_ASSIGN_OR_RETURN(
      Attributes attrs,
      Attributes::Of(node, label, {"epsilon", "momentum", "training_mode"}));
  BNSERVE_ASSIGN_OR_RETURN(float eps, attrs.Float("epsilon", 1e-5f));
  BNSERVE_ASSIGN_OR_RETURN(float momentum, attrs.Float("momentum", 0.9f));
  BNSERVE_ASSIGN_OR_RETURN(int64_t training, attrs.Int("training_mode", 0));
  if (training != 0) {
    return attrs.Unsupported("training_mode", absl::StrCat(training),
                             "only 0: export the model in eval mode");
  }
  const Tensor* t[4];
  for (int i = 0; i < 4; ++i) {
    BNSERVE_ASSIGN_OR_RETURN(t[i], ConstantInput(node, label, i + 1));
    if (t[i]->is_int || t[i]->size() != t[0]->size() ||
        t[i]->size() > model::kMaxWidth) {
      return Invalid(label,
                     "scale, B, mean and var must be float vectors of "
                     "one length, at most the width limit");
    }
  }
  v1::Layer layer;
  v1::BatchNormLayer* bn = layer.mutable_batch_norm();
  bn->set_features(static_cast<int32_t>(t[0]->size()));
  bn->mutable_gamma()->Assign(t[0]->floats.begin(), t[0]->floats.end());
  bn->mutable_beta()->Assign(t[1]->floats.begin(), t[1]->floats.end());
  bn->mutable_running_mean()->Assign(t[2]->floats.begin(), t[2]->floats.end());
  bn->mutable_running_var()->Assign(t[3]->floats.begin(), t[3]->floats.end());
  // ONNX's momentum weights the old value; bnserve's weights the new one.
  bn->set_momentum(1.0f - momentum);
  bn->set_eps(eps);
  bn->set_average(v1::AVERAGE_EMA);
  bn->set_variance(v1::VARIANCE_UNBIASED);
  bn->set_stats_source(v1::STATS_SOURCE_EMA);
  AddLayer(std::move(layer), label);
  return absl::OkStatus();
}

absl::Status Importer::Activation(const onnx::NodeProto& node,
                                  const std::string& label) {
  BNSERVE_ASSIGN_OR_RETURN(Attributes attrs, Attributes::Of(node, label, {}));
  v1::Layer layer;
  const std::string& op = node.op_type();
  layer.mutable_activation()->set_fn(op == "Relu"   ? v1::ACTIVATION_RELU
                                     : op == "Tanh" ? v1::ACTIVATION_TANH
                                                    : v1::ACTIVATION_SIGMOID);
  AddLayer(std::move(layer), label);
  return absl::OkStatus();
}

absl::Status Importer::MaxPool(const onnx::NodeProto& node,
                               const std::string& label) {
  BNSERVE_ASSIGN_OR_RETURN(
      Attributes attrs,
      Attributes::Of(node, label,
                     {"kernel_shape", "strides", "pads", "dilations",
                      "auto_pad", "ceil_mode", "storage_order"}));
  BNSERVE_ASSIGN_OR_RETURN(int64_t ceil_mode, attrs.Int("ceil_mode", 0));
  if (ceil_mode != 0) {
    return attrs.Unsupported("ceil_mode", absl::StrCat(ceil_mode),
                             "only 0: floor rounding");
  }
  BNSERVE_ASSIGN_OR_RETURN(int64_t order, attrs.Int("storage_order", 0));
  if (order != 0)
    return attrs.Unsupported("storage_order", absl::StrCat(order), "only 0");
  BNSERVE_ASSIGN_OR_RETURN(Window win, ReadWindow(attrs, {}));
  v1::Layer layer;
  *layer.mutable_max_pool2d() = PoolLayer(win);
  AddLayer(std::move(layer), label);
  return absl::OkStatus();
}

absl::Status Importer::AvgPool(const onnx::NodeProto& node,
                               const std::string& label) {
  BNSERVE_ASSIGN_OR_RETURN(
      Attributes attrs,
      Attributes::Of(node, label,
                     {"kernel_shape", "strides", "pads", "auto_pad",
                      "ceil_mode", "count_include_pad"}));
  BNSERVE_ASSIGN_OR_RETURN(int64_t ceil_mode, attrs.Int("ceil_mode", 0));
  if (ceil_mode != 0) {
    return attrs.Unsupported("ceil_mode", absl::StrCat(ceil_mode),
                             "only 0: floor rounding");
  }
  BNSERVE_ASSIGN_OR_RETURN(int64_t include, attrs.Int("count_include_pad", 0));
  BNSERVE_ASSIGN_OR_RETURN(Window win, ReadWindow(attrs, {}));
  if ((win.pad_h != 0 || win.pad_w != 0) && include == 0) {
    return attrs.Unsupported("count_include_pad", "0",
                             "padded positions count as zeros in bnserve");
  }
  if (!pending_pad_label_.empty()) {
    if (win.pad_h != 0 || win.pad_w != 0) {
      return Invalid(label,
                     "pads together with a Pad node in front are not "
                     "supported");
    }
    win.pad_h = pending_pad_h_;
    win.pad_w = pending_pad_w_;
    pending_pad_label_.clear();
  }
  v1::Layer layer;
  *layer.mutable_avg_pool2d() = PoolLayer(win);
  AddLayer(std::move(layer), label);
  return absl::OkStatus();
}

// A constant-zero Pad of H and W, the same at both ends: PyTorch writes one
// in front of every AveragePool; it becomes that pooling layer's padding.
absl::Status Importer::Pad(const onnx::NodeProto& node,
                           const std::string& label) {
  BNSERVE_ASSIGN_OR_RETURN(Attributes attrs,
                           Attributes::Of(node, label, {"mode"}));
  BNSERVE_ASSIGN_OR_RETURN(std::string mode, attrs.String("mode", "constant"));
  if (mode != "constant")
    return attrs.Unsupported("mode", mode, "only constant");
  BNSERVE_ASSIGN_OR_RETURN(const Tensor* pads, ConstantInput(node, label, 1));
  if (node.input_size() > 2 && !node.input(2).empty()) {
    BNSERVE_ASSIGN_OR_RETURN(const Tensor* value,
                             ConstantInput(node, label, 2));
    if (value->size() != 1 ||
        (value->is_int ? value->ints[0] != 0 : value->floats[0] != 0.0f)) {
      return Invalid(label, "only a constant value of 0 is supported");
    }
  }
  const std::vector<int64_t>& p = pads->ints;
  if (!pads->is_int || p.size() != 8 || p[0] != 0 || p[1] != 0 || p[4] != 0 ||
      p[5] != 0 || p[2] != p[6] || p[3] != p[7] || p[2] < 0 || p[3] < 0 ||
      p[2] > model::kMaxSpatial || p[3] > model::kMaxSpatial) {
    return Invalid(label, absl::StrCat("pads ", IntsText(pads->ints),
                                       " are not supported (only "
                                       "[0, 0, h, w, 0, 0, h, w])"));
  }
  pending_pad_label_ = label;
  pending_pad_h_ = p[2];
  pending_pad_w_ = p[3];
  return absl::OkStatus();
}

absl::Status Importer::Flatten(const onnx::NodeProto& node,
                               const std::string& label) {
  BNSERVE_ASSIGN_OR_RETURN(Attributes attrs,
                           Attributes::Of(node, label, {"axis"}));
  BNSERVE_ASSIGN_OR_RETURN(int64_t axis, attrs.Int("axis", 1));
  if (axis != 1) return attrs.Unsupported("axis", absl::StrCat(axis), "only 1");
  v1::Layer layer;
  layer.mutable_flatten();
  AddLayer(std::move(layer), label);
  return absl::OkStatus();
}

// Reshape to [N, -1] (N given as 0 or a number): a flatten layer.
absl::Status Importer::Reshape(const onnx::NodeProto& node,
                               const std::string& label) {
  BNSERVE_ASSIGN_OR_RETURN(Attributes attrs,
                           Attributes::Of(node, label, {"allowzero"}));
  BNSERVE_ASSIGN_OR_RETURN(int64_t allowzero, attrs.Int("allowzero", 0));
  if (allowzero != 0)
    return attrs.Unsupported("allowzero", absl::StrCat(allowzero), "only 0");
  BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> shape,
                           ShapeOperand(node, label, 1));
  if (shape.size() != 2 || (shape[0] < 0 && shape[0] != kBatch) ||
      shape[1] != -1) {
    return Invalid(label, absl::StrCat("shape ", IntsText(shape),
                                       " is not supported (only [N, -1])"));
  }
  v1::Layer layer;
  layer.mutable_flatten();
  AddLayer(std::move(layer), label);
  return absl::OkStatus();
}

absl::Status Importer::Identity(const onnx::NodeProto& node,
                                const std::string& label) {
  BNSERVE_ASSIGN_OR_RETURN(Attributes attrs, Attributes::Of(node, label, {}));
  return absl::OkStatus();
}

absl::StatusOr<model::Shape> OutputShape(
    const v1::Snapshot& s, const std::vector<std::string>& labels) {
  model::Shape shape =
      s.input_shape_size() == 3
          ? model::Shape::Image(s.input_shape(0), s.input_shape(1),
                                s.input_shape(2))
          : model::Shape::Flat(s.input_features());
  for (int i = 0; i < s.layers_size(); ++i) {
    BNSERVE_ASSIGN_OR_RETURN(std::unique_ptr<model::Layer> layer,
                             model::LayerFromProto(s.layers(i), labels[i]));
    absl::StatusOr<model::Shape> out = layer->OutputShape(shape);
    if (!out.ok()) return Invalid(labels[i], out.status().message());
    shape = *out;
  }
  if (shape.spatial) {
    return absl::InvalidArgumentError(
        "the network ends in an image; it must end in a flat [N, K] output");
  }
  return shape;
}

absl::Status Importer::Run(v1::Snapshot* snapshot) {
  BNSERVE_RETURN_IF_ERROR(CollectConstants());
  BNSERVE_RETURN_IF_ERROR(ReadInput(snapshot));
  BNSERVE_RETURN_IF_ERROR(WalkChain());
  if (layers_.empty()) {
    return absl::InvalidArgumentError("the graph has no layers");
  }
  if (static_cast<int64_t>(layers_.size()) > model::kMaxLayers) {
    return absl::InvalidArgumentError(
        absl::StrCat("the graph has ", layers_.size(), " layers; the limit is ",
                     model::kMaxLayers));
  }
  for (v1::Layer& layer : layers_) *snapshot->add_layers() = std::move(layer);
  return absl::OkStatus();
}

absl::Status CheckOpset(const onnx::ModelProto& m) {
  int64_t opset = -1;
  for (const onnx::OperatorSetIdProto& o : m.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") opset = o.version();
  }
  if (opset < kMinImportOpset || opset > kMaxImportOpset) {
    return absl::InvalidArgumentError(
        absl::StrCat("ONNX opset ", opset, " is not supported (",
                     kMinImportOpset, " to ", kMaxImportOpset, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::Snapshot> SnapshotFromOnnx(
    absl::string_view bytes, const OnnxImportOptions& options) {
  onnx::ModelProto m;
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      !m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError(
        "not an ONNX model: the file does not parse as an ONNX ModelProto");
  }
  if (!m.has_graph()) {
    return absl::InvalidArgumentError("not an ONNX model: it has no graph");
  }
  BNSERVE_RETURN_IF_ERROR(CheckOpset(m));
  v1::Snapshot snapshot;
  Importer importer(m.graph());
  BNSERVE_RETURN_IF_ERROR(importer.Run(&snapshot));
  snapshot.set_task(options.task);
  BNSERVE_ASSIGN_OR_RETURN(model::Shape out,
                           OutputShape(snapshot, importer.labels()));
  snapshot.set_output_dim(static_cast<int32_t>(out.size()));
  if (options.task == v1::TASK_CLASSIFICATION) {
    if (!options.class_names.empty()) {
      if (static_cast<int64_t>(options.class_names.size()) != out.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat(options.class_names.size(), " class names given for ",
                         out.size(), " outputs"));
      }
      for (const std::string& c : options.class_names) {
        snapshot.add_class_names(c);
      }
    } else {
      for (int64_t k = 0; k < out.size(); ++k) {
        snapshot.add_class_names(std::to_string(k));
      }
    }
  }
  BNSERVE_RETURN_IF_ERROR(model::Network::FromSnapshot(snapshot).status());
  return snapshot;
}

}  // namespace bnserve::onnx_io
