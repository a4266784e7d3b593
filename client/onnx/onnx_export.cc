#include "client/onnx/onnx_export.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model/network.h"
#include "model/status_macros.h"
#include "onnx.pb.h"

namespace bnserve::onnx_io {
namespace {

// ONNX IR version 7 is the first that carries opset 13.
constexpr int64_t kIrVersion = 7;

// Builds the graph one layer at a time: layer i reads value `current_` and
// writes the next one (the last writes `output`).
class GraphWriter {
 public:
  explicit GraphWriter(onnx::GraphProto* graph) : graph_(graph) {}

  void Dense(const v1::DenseLayer& d);
  void BatchNorm(const v1::BatchNormLayer& bn);
  void Activation(v1::Activation fn);
  void Conv(const v1::Conv2dLayer& c);
  void Pool(const char* op, const v1::Pool2dLayer& p);
  void Flatten();

  // Renames the last node's output to `output`.
  void Finish(const std::string& output) {
    graph_->mutable_node(graph_->node_size() - 1)->set_output(0, output);
  }

 private:
  onnx::NodeProto* AddNode(const char* op, const std::string& kind) {
    onnx::NodeProto* node = graph_->add_node();
    const std::string name = absl::StrCat(kind, "_", index_);
    node->set_name(name);
    node->set_op_type(op);
    node->add_input(current_);
    current_ = absl::StrCat(name, "_out");
    node->add_output(current_);
    ++index_;
    return node;
  }
  // Adds a float initializer named `<node>.<what>` and makes it the node's
  // next input.
  void AddInitializer(onnx::NodeProto* node, const char* what,
                      const std::vector<int64_t>& dims,
                      const google::protobuf::RepeatedField<float>& values) {
    onnx::TensorProto* t = graph_->add_initializer();
    t->set_name(absl::StrCat(node->name(), ".", what));
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    t->mutable_raw_data()->resize(values.size() * sizeof(float));
    std::memcpy(t->mutable_raw_data()->data(), values.data(),
                values.size() * sizeof(float));
    node->add_input(t->name());
  }
  static void SetInts(onnx::NodeProto* node, const char* name,
                      const std::vector<int64_t>& values) {
    onnx::AttributeProto* a = node->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t v : values) a->add_ints(v);
  }
  static void SetInt(onnx::NodeProto* node, const char* name, int64_t v) {
    onnx::AttributeProto* a = node->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void SetFloat(onnx::NodeProto* node, const char* name, float v) {
    onnx::AttributeProto* a = node->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }

  onnx::GraphProto* graph_;
  std::string current_ = "input";
  int index_ = 0;
};

void GraphWriter::Dense(const v1::DenseLayer& d) {
  onnx::NodeProto* node = AddNode("Gemm", "dense");
  AddInitializer(node, "weight", {d.out(), d.in()}, d.weight());
  if (d.bias_size() > 0) AddInitializer(node, "bias", {d.out()}, d.bias());
  SetInt(node, "transB", 1);
}

void GraphWriter::BatchNorm(const v1::BatchNormLayer& bn) {
  onnx::NodeProto* node = AddNode("BatchNormalization", "batch_norm");
  AddInitializer(node, "gamma", {bn.features()}, bn.gamma());
  AddInitializer(node, "beta", {bn.features()}, bn.beta());
  AddInitializer(node, "running_mean", {bn.features()}, bn.running_mean());
  AddInitializer(node, "running_var", {bn.features()}, bn.running_var());
  SetFloat(node, "epsilon", bn.eps());
  // ONNX's momentum weights the old value (bnserve's the new one).
  SetFloat(node, "momentum", 1.0f - bn.momentum());
}

void GraphWriter::Activation(v1::Activation fn) {
  switch (fn) {
    case v1::ACTIVATION_RELU:
      AddNode("Relu", "relu");
      return;
    case v1::ACTIVATION_TANH:
      AddNode("Tanh", "tanh");
      return;
    case v1::ACTIVATION_SIGMOID:
      AddNode("Sigmoid", "sigmoid");
      return;
    default:
      AddNode("Identity", "identity");
      return;
  }
}

void GraphWriter::Conv(const v1::Conv2dLayer& c) {
  onnx::NodeProto* node = AddNode("Conv", "conv2d");
  AddInitializer(
      node, "weight",
      {c.out_channels(), c.in_channels(), c.kernel_h(), c.kernel_w()},
      c.weight());
  if (c.bias_size() > 0) {
    AddInitializer(node, "bias", {c.out_channels()}, c.bias());
  }
  SetInts(node, "kernel_shape", {c.kernel_h(), c.kernel_w()});
  SetInts(node, "strides", {c.stride_h(), c.stride_w()});
  SetInts(node, "pads", {c.pad_h(), c.pad_w(), c.pad_h(), c.pad_w()});
}

void GraphWriter::Pool(const char* op, const v1::Pool2dLayer& p) {
  const bool max = std::strcmp(op, "MaxPool") == 0;
  onnx::NodeProto* node = AddNode(op, max ? "max_pool2d" : "avg_pool2d");
  // The snapshot after FromSnapshot has every field explicit; kernel_w 0
  // means kernel_h (snapshot.proto).
  const int kw = p.kernel_w() == 0 ? p.kernel_h() : p.kernel_w();
  SetInts(node, "kernel_shape", {p.kernel_h(), kw});
  SetInts(node, "strides",
          {p.stride_h() == 0 ? p.kernel_h() : p.stride_h(),
           p.stride_w() == 0 ? kw : p.stride_w()});
  SetInts(node, "pads", {p.pad_h(), p.pad_w(), p.pad_h(), p.pad_w()});
  if (!max) SetInt(node, "count_include_pad", 1);
}

void GraphWriter::Flatten() {
  onnx::NodeProto* node = AddNode("Flatten", "flatten");
  SetInt(node, "axis", 1);
}

void SetTensorType(onnx::ValueInfoProto* value, const std::string& name,
                   const std::vector<int64_t>& dims) {
  value->set_name(name);
  onnx::TypeProto::Tensor* t = value->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  t->mutable_shape()->add_dim()->set_dim_param("N");
  for (int64_t d : dims) t->mutable_shape()->add_dim()->set_dim_value(d);
}

}  // namespace

absl::StatusOr<std::string> SnapshotToOnnx(const v1::Snapshot& snapshot) {
  BNSERVE_ASSIGN_OR_RETURN(model::Network network,
                           model::Network::FromSnapshot(snapshot));
  // The network's own encoding: every field explicit and validated.
  const v1::Snapshot s = network.ToSnapshot();
  onnx::ModelProto m;
  m.set_ir_version(kIrVersion);
  m.set_producer_name("bnserve");
  onnx::OperatorSetIdProto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(kExportOpset);
  onnx::GraphProto* graph = m.mutable_graph();
  graph->set_name(snapshot.model().empty() ? "bnserve" : snapshot.model());
  GraphWriter writer(graph);
  for (const v1::Layer& layer : s.layers()) {
    switch (layer.kind_case()) {
      case v1::Layer::kDense:
        writer.Dense(layer.dense());
        break;
      case v1::Layer::kBatchNorm:
        writer.BatchNorm(layer.batch_norm());
        break;
      case v1::Layer::kActivation:
        writer.Activation(layer.activation().fn());
        break;
      case v1::Layer::kConv2D:
        writer.Conv(layer.conv2d());
        break;
      case v1::Layer::kMaxPool2D:
        writer.Pool("MaxPool", layer.max_pool2d());
        break;
      case v1::Layer::kAvgPool2D:
        writer.Pool("AveragePool", layer.avg_pool2d());
        break;
      case v1::Layer::kFlatten:
        writer.Flatten();
        break;
      default:
        return absl::UnimplementedError(absl::StrCat(
            "layer kind ", layer.kind_case(), " has no ONNX mapping"));
    }
  }
  if (graph->node_size() == 0) {
    return absl::InvalidArgumentError("the snapshot has no layers");
  }
  writer.Finish("output");
  std::vector<int64_t> in(s.input_shape().begin(), s.input_shape().end());
  if (in.empty()) in = {s.input_features()};
  SetTensorType(graph->add_input(), "input", in);
  SetTensorType(graph->add_output(), "output", {s.output_dim()});
  return m.SerializeAsString();
}

}  // namespace bnserve::onnx_io
