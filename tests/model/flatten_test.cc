// Flatten: channel-major order (PyTorch nn.Flatten), pass-through of flat
// inputs, gradients (layer and network level), limits and encodings.
#include "model/flatten.h"

#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/network.h"
#include "tests/model/test_util.h"

namespace bnserve::model {
namespace {

TEST(FlattenTest, KeepsTheChannelMajorOrderAndPassesFlatInputsThrough) {
  Flatten flatten;
  EXPECT_EQ(*flatten.OutputShape(Shape::Image(3, 2, 4)), Shape::Flat(24));
  EXPECT_EQ(*flatten.OutputShape(Shape::Flat(7)), Shape::Flat(7));
  EXPECT_TRUE(flatten.in_place());
  EXPECT_EQ(flatten.num_parameters(), 0);
  const Shape in = Shape::Image(3, 2, 4);
  std::vector<float> x(24), y(24, -1.0f);
  std::iota(x.begin(), x.end(), 0.0f);
  flatten.Forward(in, x.data(), y.data(), nullptr);
  EXPECT_EQ(y, x);
  std::vector<float> z = x;
  flatten.Forward(in, z.data(), z.data(), nullptr);  // in place
  EXPECT_EQ(z, x);
  const Matrix batch = test::RandomMatrix(3, 24, 1);
  Matrix out;
  LayerCache cache;
  flatten.ForwardTrain(in, batch, &out, &cache);
  EXPECT_EQ(out, batch);
}

TEST(FlattenTest, LayerGradientsMatchFiniteDifferences) {
  Flatten flatten;
  const Matrix x = test::RandomMatrix(2, 12, 3);
  EXPECT_EQ(test::CheckLayerGradients(&flatten, Shape::Image(3, 2, 2), x, 0.1f,
                                      1e-4, 1e-4),
            24);
  EXPECT_EQ(
      test::CheckLayerGradients(&flatten, Shape::Flat(12), x, 0.1f, 1e-4, 1e-4),
      24);
}

TEST(FlattenTest, NetworkGradientsMatchFiniteDifferences) {
  // conv -> flatten -> dense: the dense weights see the conv output in
  // C, H, W order, and the gradient flows back unchanged.
  const v1::NetworkSpec spec = test::ImageSpec(
      1, 4, 3, 2,
      {test::ConvSpec(2, 2, 2, 1, 1, 0, 0, true), test::FlattenSpec(),
       test::ActivationSpec(v1::ACTIVATION_SIGMOID), test::FlattenSpec(),
       test::DenseSpec(2, true)});
  absl::StatusOr<Network> net = Network::Create(spec, 4);
  ASSERT_TRUE(net.ok()) << net.status();
  EXPECT_EQ(net->shape(2), Shape::Flat(12));
  const Batch batch = test::RandomBatch(3, 12, 2, 5);
  EXPECT_EQ(test::CheckNetworkGradients(*net, batch, 1e-2f, 2e-3, 2e-2),
            (2 * 4 + 2) + (12 * 2 + 2));
}

TEST(FlattenTest, RefusesMoreFeaturesThanTheWidthLimit) {
  Flatten flatten;
  absl::StatusOr<Shape> s = flatten.OutputShape(Shape::Image(64, 64, 32));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("131072"), std::string::npos)
      << s.status();
  EXPECT_TRUE(flatten.OutputShape(Shape::Image(64, 32, 32)).ok());
}

TEST(FlattenTest, EncodingsRoundTrip) {
  Flatten flatten;
  v1::Layer proto;
  flatten.ToProto(&proto);
  EXPECT_TRUE(proto.has_flatten());
  absl::StatusOr<std::unique_ptr<Layer>> back = LayerFromProto(proto, "l");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_STREQ((*back)->type(), "flatten");
  EXPECT_EQ(flatten.ToJson().dump(), R"({"type":"flatten"})");
  ASSERT_TRUE(LayerFromJson(flatten.ToJson(), "l").ok());
  Json extra = flatten.ToJson();
  extra["units"] = 3;
  absl::StatusOr<std::unique_ptr<Layer>> bad =
      LayerFromJson(extra, "layers[4]");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("layers[4]"), std::string::npos)
      << bad.status();
  v1::LayerSpec spec;
  flatten.ToSpec(&spec);
  EXPECT_TRUE(spec.has_flatten());
}

}  // namespace
}  // namespace bnserve::model
