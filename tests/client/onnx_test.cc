// ONNX import and export (client/onnx/) on graphs built here by hand: the
// mapping of each op onto a layer with hand-computed outputs, the exact
// round trip, the exported graph's structure, and every refusal (other ops,
// branches, cycles, missing initializers, absurd sizes, unsupported
// attributes, malformed bytes) with the node, op type and attribute named.
// The PyTorch-exported graphs are tested end to end in onnx_torch_test.py.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "client/onnx/onnx_export.h"
#include "client/onnx/onnx_import.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/network.h"
#include "onnx.pb.h"

namespace bnserve::onnx_io {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A graph under construction.
struct Graph {
  onnx::ModelProto model;
  onnx::GraphProto* g = model.mutable_graph();

  explicit Graph(int opset = 13, std::vector<int64_t> input = {3}) {
    model.set_ir_version(7);
    model.add_opset_import()->set_version(opset);
    onnx::ValueInfoProto* in = g->add_input();
    in->set_name("x");
    auto* t = in->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    t->mutable_shape()->add_dim()->set_dim_param("N");
    for (int64_t d : input) t->mutable_shape()->add_dim()->set_dim_value(d);
    g->add_output()->set_name("y");
  }
  onnx::NodeProto* Node(const std::string& op, const std::string& name,
                        std::vector<std::string> inputs, std::string output) {
    onnx::NodeProto* n = g->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const std::string& i : inputs) n->add_input(i);
    n->add_output(output);
    return n;
  }
  void Init(const std::string& name, std::vector<int64_t> dims,
            std::vector<float> values) {
    onnx::TensorProto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    for (float v : values) t->add_float_data(v);
  }
  void IntInit(const std::string& name, std::vector<int64_t> values) {
    onnx::TensorProto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(values.size()));
    for (int64_t v : values) t->add_int64_data(v);
  }
  std::string Bytes() const { return model.SerializeAsString(); }
};

void SetInts(onnx::NodeProto* n, const std::string& name,
             std::vector<int64_t> v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

void SetInt(onnx::NodeProto* n, const std::string& name, int64_t v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

absl::StatusOr<v1::Snapshot> Import(const Graph& graph) {
  return SnapshotFromOnnx(graph.Bytes(), OnnxImportOptions());
}

std::vector<float> Forward(const v1::Snapshot& s, std::vector<float> x) {
  absl::StatusOr<model::Network> n = model::Network::FromSnapshot(s);
  EXPECT_TRUE(n.ok()) << n.status();
  std::vector<float> y(s.output_dim());
  model::Workspace ws;
  n->Forward(x.data(), y.data(), &ws);
  return y;
}

// x [N, 3] -> MatMul(W [3, 2]) -> Add(b) -> Relu -> y.
Graph MatMulAddRelu() {
  Graph g;
  g.Init("W", {3, 2}, {1, 2, 3, 4, 5, 6});  // [in, out]
  g.Init("b", {2}, {0.5f, -100});
  g.Node("MatMul", "mm", {"x", "W"}, "h");
  g.Node("Add", "add", {"h", "b"}, "z");
  g.Node("Relu", "relu", {"z"}, "y");
  return g;
}

TEST(OnnxImportTest, MatMulAddBecomesOneDenseLayerWithTheTransposedWeight) {
  absl::StatusOr<v1::Snapshot> s = Import(MatMulAddRelu());
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->layers_size(), 2);
  const v1::DenseLayer& d = s->layers(0).dense();
  EXPECT_EQ(d.in(), 3);
  EXPECT_EQ(d.out(), 2);
  EXPECT_THAT(d.weight(), ElementsAre(1, 3, 5, 2, 4, 6));  // [out, in]
  EXPECT_THAT(d.bias(), ElementsAre(0.5f, -100));
  EXPECT_EQ(s->layers(1).activation().fn(), v1::ACTIVATION_RELU);
  EXPECT_EQ(s->output_dim(), 2);
  EXPECT_THAT(s->class_names(), ElementsAre("0", "1"));
  // x = [1, 1, 1]: z = [1+3+5+0.5, 2+4+6-100] -> relu.
  EXPECT_THAT(Forward(*s, {1, 1, 1}), ElementsAre(9.5f, 0.0f));
}

TEST(OnnxImportTest, ConvBatchNormPoolsAndReshapeOnAnImage) {
  Graph g(13, {1, 4, 4});
  g.Init("cw", {1, 1, 1, 1}, {2});
  g.Init("cb", {1}, {1});
  SetInts(g.Node("Conv", "conv", {"x", "cw", "cb"}, "c"), "kernel_shape",
          {1, 1});
  g.Init("s", {1}, {1}), g.Init("o", {1}, {0}), g.Init("m", {1}, {1});
  g.Init("v", {1}, {4 - 1e-5f});
  g.Node("BatchNormalization", "bn", {"c", "s", "o", "m", "v"}, "n");
  onnx::NodeProto* mp = g.Node("MaxPool", "mp", {"n"}, "p");
  SetInts(mp, "kernel_shape", {2, 2});
  SetInts(mp, "strides", {2, 2});
  g.IntInit("pads", {0, 0, 1, 1, 0, 0, 1, 1});
  g.Node("Pad", "pad", {"p", "pads"}, "pp");
  SetInts(g.Node("AveragePool", "ap", {"pp"}, "a"), "kernel_shape", {2, 2});
  g.IntInit("shape", {0, -1});
  g.Node("Reshape", "flat", {"a", "shape"}, "y");
  OnnxImportOptions options;
  options.task = v1::TASK_REGRESSION;
  absl::StatusOr<v1::Snapshot> s = SnapshotFromOnnx(g.Bytes(), options);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->layers_size(), 5);
  EXPECT_TRUE(s->layers(1).has_batch_norm());
  EXPECT_FLOAT_EQ(s->layers(1).batch_norm().momentum(), 1.0f - 0.9f);
  const v1::Pool2dLayer& ap = s->layers(3).avg_pool2d();
  EXPECT_EQ(ap.pad_h(), 1);
  EXPECT_EQ(ap.stride_h(), 1);  // ONNX's default stride is 1
  EXPECT_TRUE(s->layers(4).has_flatten());
  EXPECT_THAT(s->input_shape(), ElementsAre(1, 4, 4));
  // The 2x2 max pool of 4x4 is 2x2; padded by 1 it is 4x4 and a 2x2
  // average with stride 1 gives 3x3 = 9 outputs.
  EXPECT_EQ(s->output_dim(), 9);
  EXPECT_TRUE(s->class_names().empty());
  // Every x = 1: conv 3, batch norm (3 - 1) / 2 = 1, max 1; corners of the
  // padded average see one 1 of four.
  std::vector<float> y = Forward(*s, std::vector<float>(16, 1.0f));
  EXPECT_NEAR(y[0], 0.25f, 1e-6);
  EXPECT_NEAR(y[4], 1.0f, 1e-6);
}

// PyTorch's x.view(x.size(0), -1) at opset 13: Shape -> Gather(0) ->
// Unsqueeze -> Concat with [-1] -> Reshape.
Graph ViewFlatten(int64_t gather_index) {
  Graph g(13, {2, 1, 2});
  g.Node("Shape", "shape", {"x"}, "s");
  g.IntInit("zero", {gather_index});
  SetInt(g.Node("Gather", "gather", {"s", "zero"}, "n"), "axis", 0);
  g.IntInit("axes", {0});
  g.Node("Unsqueeze", "unsq", {"n", "axes"}, "n1");
  g.IntInit("minus1", {-1});
  SetInt(g.Node("Concat", "concat", {"n1", "minus1"}, "target"), "axis", 0);
  g.Node("Reshape", "view", {"x", "target"}, "v");
  g.Init("w", {2, 4}, {1, 2, 3, 4, 0, 0, 0, 1});
  SetInt(g.Node("Gemm", "fc", {"v", "w"}, "y"), "transB", 1);
  return g;
}

TEST(OnnxImportTest, ViewOfTheBatchSizeIsAFlatten) {
  absl::StatusOr<v1::Snapshot> s = Import(ViewFlatten(0));
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->layers_size(), 2);
  EXPECT_TRUE(s->layers(0).has_flatten());
  EXPECT_THAT(Forward(*s, {1, 1, 1, 1}), ElementsAre(10.0f, 1.0f));

  absl::StatusOr<v1::Snapshot> other = Import(ViewFlatten(1));
  ASSERT_FALSE(other.ok());
  EXPECT_THAT(std::string(other.status().message()),
              HasSubstr("node \"gather\" (Gather): only Gather of element 0"));
}

TEST(OnnxRoundTripTest, ExportThenImportGivesTheSameSnapshot) {
  Graph g(11, {1, 4, 4});
  g.Init("cw", {2, 1, 3, 3}, std::vector<float>(18, 0.25f));
  onnx::NodeProto* conv = g.Node("Conv", "conv", {"x", "cw"}, "c");
  SetInts(conv, "pads", {1, 1, 1, 1});
  g.Init("s", {2}, {1, 2}), g.Init("o", {2}, {0, 1}), g.Init("m", {2}, {1, 2});
  g.Init("v", {2}, {3, 4});
  g.Node("BatchNormalization", "bn", {"c", "s", "o", "m", "v"}, "n");
  g.Node("Tanh", "t", {"n"}, "tn");
  SetInts(g.Node("MaxPool", "mp", {"tn"}, "p"), "kernel_shape", {2, 2});
  g.Node("Flatten", "f", {"p"}, "fl");
  g.Init("w", {2, 18}, std::vector<float>(36, 0.5f));
  SetInt(g.Node("Gemm", "fc", {"fl", "w"}, "z"), "transB", 1);
  g.Node("Sigmoid", "sg", {"z"}, "y");
  absl::StatusOr<v1::Snapshot> first = Import(g);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::string> onnx = SnapshotToOnnx(*first);
  ASSERT_TRUE(onnx.ok()) << onnx.status();
  absl::StatusOr<v1::Snapshot> second =
      SnapshotFromOnnx(*onnx, OnnxImportOptions());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->SerializeAsString(), first->SerializeAsString());

  onnx::ModelProto m;
  ASSERT_TRUE(m.ParseFromString(*onnx));
  EXPECT_EQ(m.opset_import(0).version(), 13);
  std::vector<std::string> ops;
  for (const onnx::NodeProto& n : m.graph().node()) ops.push_back(n.op_type());
  EXPECT_THAT(ops, ElementsAre("Conv", "BatchNormalization", "Tanh", "MaxPool",
                               "Flatten", "Gemm", "Sigmoid"));
  EXPECT_EQ(m.graph().input(0).name(), "input");
  EXPECT_EQ(m.graph().output(0).name(), "output");
  EXPECT_EQ(m.graph().node(6).output(0), "output");
  const auto& dims = m.graph().input(0).type().tensor_type().shape().dim();
  ASSERT_EQ(dims.size(), 4);
  EXPECT_EQ(dims[0].dim_param(), "N");
  EXPECT_EQ(dims[3].dim_value(), 4);
}

struct Refusal {
  const char* name;
  std::function<void(Graph&)> edit;
  std::vector<std::string> needles;
};

TEST(OnnxImportTest, RefusalsNameTheNodeTheOpAndTheAttribute) {
  auto node = [](Graph& g, int i) { return g.g->mutable_node(i); };
  const std::vector<Refusal> cases = {
      {"other op",
       [&](Graph& g) { node(g, 2)->set_op_type("Softmax"); },
       {"node \"relu\" (Softmax): op type is not supported"}},
      {"attribute on Relu",
       [&](Graph& g) { SetInt(node(g, 2), "alpha", 1); },
       {"node \"relu\" (Relu): attribute alpha is not supported"}},
      {"missing initializer",
       [&](Graph& g) { node(g, 0)->set_input(1, "nope"); },
       {"node \"mm\" (MatMul): input \"nope\" is neither"}},
      {"branch",
       [&](Graph& g) { node(g, 2)->set_input(0, "h"); },
       {"the graph branches: value \"h\" is read by node \"add\" (Add) and "
        "node \"relu\" (Relu)"}},
      {"two computed inputs",
       [&](Graph& g) { node(g, 1)->set_input(1, "x"); },
       {"the graph branches: value \"x\""}},
      {"cycle",
       [&](Graph& g) {
         node(g, 2)->set_output(0, "x");
         g.g->mutable_output(0)->set_name("unreached");
       },
       {"node \"mm\" (MatMul): the graph has a cycle"}},
      {"dangling node",
       [&](Graph& g) { g.Node("Relu", "extra", {"unknown"}, "w"); },
       {"node \"extra\" (Relu): input \"unknown\" is neither"}},
      {"absurd dimensions",
       [&](Graph& g) {
         g.g->mutable_initializer(0)->set_dims(0, int64_t{1} << 40);
       },
       {"initializer \"W\": tensor dimensions [1099511627776, 2] exceed"}},
      {"data size mismatch",
       [&](Graph& g) { g.g->mutable_initializer(0)->set_dims(0, 4); },
       {"initializer \"W\": holds 6 values, the dimensions need 8"}},
      {"raw data size mismatch",
       [&](Graph& g) {
         g.g->mutable_initializer(0)->clear_float_data();
         g.g->mutable_initializer(0)->set_raw_data("abc");
       },
       {"raw_data has 3 bytes"}},
      {"opset 18",
       [&](Graph& g) { g.model.mutable_opset_import(0)->set_version(18); },
       {"ONNX opset 18 is not supported (11 to 17)"}},
      {"second input",
       [&](Graph& g) { g.g->add_input()->set_name("x2"); },
       {"exactly one input and one output"}},
      {"unknown input width",
       [&](Graph& g) {
         g.g->mutable_input(0)
             ->mutable_type()
             ->mutable_tensor_type()
             ->mutable_shape()
             ->mutable_dim(1)
             ->set_dim_param("F");
       },
       {"graph input \"x\": dimension 1 must be a number"}},
      {"other domain",
       [&](Graph& g) { node(g, 2)->set_domain("com.microsoft"); },
       {"node \"relu\" (Relu): domain \"com.microsoft\""}},
      {"width mismatch (validated by the layer)",
       [&](Graph& g) {
         g.g->mutable_input(0)
             ->mutable_type()
             ->mutable_tensor_type()
             ->mutable_shape()
             ->mutable_dim(1)
             ->set_dim_value(4);
       },
       {"node \"mm\" (MatMul)"}},
  };
  for (const Refusal& c : cases) {
    Graph g = MatMulAddRelu();
    c.edit(g);
    absl::StatusOr<v1::Snapshot> s = Import(g);
    ASSERT_FALSE(s.ok()) << c.name;
    EXPECT_TRUE(absl::IsInvalidArgument(s.status())) << c.name;
    for (const std::string& needle : c.needles) {
      EXPECT_THAT(std::string(s.status().message()), HasSubstr(needle))
          << c.name;
    }
  }
}

TEST(OnnxImportTest, UnsupportedWindowAttributesAreNamed) {
  struct Case {
    const char* op;
    std::function<void(onnx::NodeProto*)> edit;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {"Conv",
       [](auto* n) {
         SetInts(n, "dilations", {2, 2});
       },
       "node \"w\" (Conv): attribute dilations = [2, 2] is not supported"},
      {"Conv", [](auto* n) { SetInt(n, "group", 2); },
       "node \"w\" (Conv): attribute group = 2"},
      {"Conv",
       [](auto* n) {
         onnx::AttributeProto* a = n->add_attribute();
         a->set_name("auto_pad");
         a->set_type(onnx::AttributeProto::STRING);
         a->set_s("SAME_UPPER");
       },
       "node \"w\" (Conv): attribute auto_pad = SAME_UPPER"},
      {"Conv",
       [](auto* n) {
         SetInts(n, "pads", {1, 0, 0, 0});
       },
       "node \"w\" (Conv): attribute pads = [1, 0, 0, 0]"},
      {"MaxPool", [](auto* n) { SetInt(n, "ceil_mode", 1); },
       "node \"w\" (MaxPool): attribute ceil_mode = 1"},
      {"MaxPool",
       [](auto* n) {
         SetInts(n, "dilations", {1, 2});
       },
       "node \"w\" (MaxPool): attribute dilations = [1, 2]"},
      {"AveragePool",
       [](auto* n) {
         SetInts(n, "pads", {1, 1, 1, 1});
         SetInt(n, "count_include_pad", 0);
       },
       "node \"w\" (AveragePool): attribute count_include_pad = 0"},
      {"AveragePool",
       [](auto* n) {
         SetInts(n, "dilations", {1, 1});
       },
       "node \"w\" (AveragePool): attribute dilations is not supported"},
  };
  for (const Case& c : cases) {
    Graph g(13, {1, 4, 4});
    onnx::NodeProto* n = g.Node(c.op, "w", {"x"}, "p");
    if (std::string(c.op) == "Conv") {
      g.Init("k", {1, 1, 2, 2}, {1, 1, 1, 1});
      n->add_input("k");
    }
    SetInts(n, "kernel_shape", {2, 2});
    c.edit(n);
    g.Node("Flatten", "f", {"p"}, "y");
    absl::StatusOr<v1::Snapshot> s = Import(g);
    ASSERT_FALSE(s.ok()) << c.needle;
    EXPECT_THAT(std::string(s.status().message()), HasSubstr(c.needle));
  }
}

TEST(OnnxImportTest, OtherRefusedPatterns) {
  {  // A Pad that does not precede an AveragePool.
    Graph g(13, {1, 2, 2});
    g.IntInit("pads", {0, 0, 1, 1, 0, 0, 1, 1});
    g.Node("Pad", "pad", {"x", "pads"}, "p");
    g.Node("Flatten", "f", {"p"}, "y");
    EXPECT_THAT(std::string(Import(g).status().message()),
                HasSubstr("node \"pad\" (Pad): is only supported before an "
                          "AveragePool"));
  }
  {  // Reshape to anything but [N, -1].
    Graph g(13, {1, 2, 2});
    g.IntInit("shape", {-1, 4});
    g.Node("Reshape", "r", {"x", "shape"}, "y");
    EXPECT_THAT(std::string(Import(g).status().message()),
                HasSubstr("node \"r\" (Reshape): shape [-1, 4] is not "
                          "supported"));
  }
  {  // BatchNormalization in training mode.
    Graph g;
    for (const char* n : {"s", "o", "m", "v"}) g.Init(n, {3}, {1, 1, 1});
    SetInt(g.Node("BatchNormalization", "bn", {"x", "s", "o", "m", "v"}, "y"),
           "training_mode", 1);
    EXPECT_THAT(std::string(Import(g).status().message()),
                HasSubstr("node \"bn\" (BatchNormalization): attribute "
                          "training_mode = 1"));
  }
  {  // No layers at all.
    Graph g;
    g.g->mutable_output(0)->set_name("x");
    EXPECT_THAT(std::string(Import(g).status().message()),
                HasSubstr("the graph has no layers"));
  }
}

TEST(OnnxImportTest, MalformedBytesAreInvalidArgument) {
  for (const std::string& bytes :
       {std::string("\xff\xff\xff\xff garbage", 12), std::string("\x0a\x05", 2),
        std::string(), MatMulAddRelu().Bytes().substr(0, 40)}) {
    absl::StatusOr<v1::Snapshot> s =
        SnapshotFromOnnx(bytes, OnnxImportOptions());
    ASSERT_FALSE(s.ok());
    EXPECT_TRUE(absl::IsInvalidArgument(s.status())) << s.status();
  }
}

TEST(OnnxExportTest, InvalidSnapshotsAreRefused) {
  v1::Snapshot s;
  s.set_task(v1::TASK_CLASSIFICATION);
  s.set_input_features(3);
  s.set_output_dim(2);
  EXPECT_FALSE(SnapshotToOnnx(s).ok());
}

}  // namespace
}  // namespace bnserve::onnx_io
