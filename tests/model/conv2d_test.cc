// Conv2d: forward against a direct (naive) convolution for several
// geometries, gradients by finite differences (layer and network level),
// folding of a following and a preceding per-channel affine map, encodings
// and hostile sizes.
#include "model/conv2d.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/network.h"
#include "tests/model/test_util.h"

namespace bnserve::model {
namespace {

using test::RandomMatrix;

struct Geometry {
  int c, h, w;  // input
  int k;        // output channels
  Window2d window;
  bool bias;
};

// kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w
const std::vector<Geometry>& Geometries() {
  static const auto* g = new std::vector<Geometry>{
      {1, 6, 6, 2, {3, 3, 1, 1, 1, 1}, false},
      {2, 7, 7, 3, {3, 3, 2, 2, 1, 1}, true},
      {2, 6, 5, 3, {3, 2, 2, 1, 1, 0}, true},
      {3, 5, 4, 2, {2, 2, 2, 2, 0, 0}, false},
      {2, 4, 4, 2, {4, 4, 1, 1, 0, 0}, true},   // kernel = input: 1x1 output
      {1, 2, 3, 2, {4, 5, 3, 1, 1, 2}, true},   // kernel > input, padded
      {2, 5, 5, 4, {1, 1, 1, 1, 0, 0}, false},  // 1x1 convolution
  };
  return *g;
}

Conv2d MakeConv(const Geometry& g, uint64_t seed) {
  Conv2d conv;
  conv.in_channels = g.c;
  conv.window = g.window;
  conv.weight = RandomMatrix(g.k, g.c * g.window.kernel_h * g.window.kernel_w,
                             seed, 0.5f);
  if (g.bias) conv.bias = RandomMatrix(1, g.k, seed + 1);
  return conv;
}

// y[k, oy, ox] = b[k] + sum_{c,i,j} W[k, c, i, j] x[c, oy*s - p + i, ...],
// zero outside the input; in double.
std::vector<double> DirectConv(const Conv2d& conv, const Shape& in,
                               const float* x) {
  const Window2d& w = conv.window;
  const int oh = (in.height + 2 * w.pad_h - w.kernel_h) / w.stride_h + 1;
  const int ow = (in.width + 2 * w.pad_w - w.kernel_w) / w.stride_w + 1;
  std::vector<double> y;
  for (int k = 0; k < conv.out_channels(); ++k) {
    for (int oy = 0; oy < oh; ++oy) {
      for (int ox = 0; ox < ow; ++ox) {
        double s = conv.has_bias() ? conv.bias(k) : 0.0;
        for (int c = 0; c < in.channels; ++c) {
          for (int i = 0; i < w.kernel_h; ++i) {
            for (int j = 0; j < w.kernel_w; ++j) {
              const int iy = oy * w.stride_h - w.pad_h + i;
              const int ix = ox * w.stride_w - w.pad_w + j;
              if (iy < 0 || iy >= in.height || ix < 0 || ix >= in.width) {
                continue;
              }
              s += double{conv.weight(k,
                                      (c * w.kernel_h + i) * w.kernel_w + j)} *
                   x[(c * in.height + iy) * in.width + ix];
            }
          }
        }
        y.push_back(s);
      }
    }
  }
  return y;
}

TEST(Conv2dTest, ForwardMatchesADirectConvolution) {
  uint64_t seed = 1;
  for (const Geometry& g : Geometries()) {
    SCOPED_TRACE(::testing::Message() << "input " << g.c << "x" << g.h << "x"
                                      << g.w << ", " << g.window.Describe());
    const Conv2d conv = MakeConv(g, seed++);
    const Shape in = Shape::Image(g.c, g.h, g.w);
    absl::StatusOr<Shape> out = conv.OutputShape(in);
    ASSERT_TRUE(out.ok()) << out.status();
    const Matrix x = RandomMatrix(3, static_cast<int>(in.size()), seed++);
    // Single-example inference path.
    std::vector<float> scratch(conv.ScratchSize(in));
    Matrix y(3, out->size());
    for (int r = 0; r < 3; ++r) {
      conv.Forward(in, x.row(r).data(), y.row(r).data(), scratch.data());
      const std::vector<double> expected =
          DirectConv(conv, in, x.row(r).data());
      ASSERT_EQ(static_cast<int64_t>(expected.size()), out->size());
      for (int64_t i = 0; i < out->size(); ++i) {
        EXPECT_NEAR(y(r, i), expected[i], 1e-5 * (1 + std::abs(expected[i])))
            << "row " << r << " output " << i;
      }
    }
    // The minibatch training path computes the same values.
    Matrix yt;
    LayerCache cache;
    conv.ForwardTrain(in, x, &yt, &cache);
    ASSERT_EQ(yt.rows(), 3);
    ASSERT_EQ(yt.cols(), out->size());
    EXPECT_TRUE(yt.isApprox(y, 1e-5f)) << yt << "\n\n" << y;
  }
}

TEST(Conv2dTest, OutputShapeUsesFloorRoundingAndDescribeNamesTheGeometry) {
  Conv2d conv = MakeConv({2, 7, 7, 3, {3, 3, 2, 2, 1, 1}, true}, 1);
  EXPECT_EQ(*conv.OutputShape(Shape::Image(2, 7, 7)), Shape::Image(3, 4, 4));
  EXPECT_EQ(*conv.OutputShape(Shape::Image(2, 8, 6)), Shape::Image(3, 4, 3));
  EXPECT_EQ(conv.Describe(), "conv2d 2->3 3x3 s2 p1");
  conv = MakeConv({2, 6, 5, 3, {3, 2, 2, 1, 1, 0}, false}, 1);
  EXPECT_EQ(*conv.OutputShape(Shape::Image(2, 6, 5)), Shape::Image(3, 3, 4));
  EXPECT_EQ(conv.Describe(), "conv2d 2->3 3x2 s2x1 p1x0 (no bias)");
  EXPECT_EQ(conv.num_parameters(), 3 * 2 * 3 * 2);
}

TEST(Conv2dTest, LayerGradientsMatchFiniteDifferences) {
  uint64_t seed = 100;
  int checked = 0;
  for (const Geometry& g : Geometries()) {
    SCOPED_TRACE(g.window.Describe());
    Conv2d conv = MakeConv(g, seed++);
    const Shape in = Shape::Image(g.c, g.h, g.w);
    const Matrix x = RandomMatrix(2, static_cast<int>(in.size()), seed++);
    // Linear in both the input and the weights: differences are exact up
    // to rounding for any step.
    checked += test::CheckLayerGradients(&conv, in, x, 0.25f, 2e-4, 1e-4);
  }
  EXPECT_GT(checked, 500);
}

TEST(Conv2dTest, NetworkGradientsMatchFiniteDifferences) {
  // conv 3x2 s2x1 p1x0 (bias) -> tanh -> conv 2x2 s1 p1 (no bias) -> tanh ->
  // flatten -> dense.
  const v1::NetworkSpec spec =
      test::ImageSpec(2, 6, 5, 3,
                      {test::ConvSpec(3, 3, 2, 2, 1, 1, 0, true),
                       test::ActivationSpec(v1::ACTIVATION_TANH),
                       test::ConvSpec(2, 2, 2, 1, 1, 1, 1, false),
                       test::ActivationSpec(v1::ACTIVATION_TANH),
                       test::FlattenSpec(), test::DenseSpec(3, true)});
  absl::StatusOr<Network> net = Network::Create(spec, 5);
  ASSERT_TRUE(net.ok()) << net.status();
  // Non-zero conv bias so its gradient is exercised off the origin.
  net->mutable_layer_as<Conv2d>(0)->bias = RandomMatrix(1, 3, 9, 0.3f);
  EXPECT_EQ(net->shape(2), Shape::Image(3, 3, 4));
  EXPECT_EQ(net->shape(4), Shape::Image(2, 4, 5));
  const Batch batch = test::RandomBatch(4, 60, 3, 11);
  const int checked =
      test::CheckNetworkGradients(*net, batch, 1e-2f, 2e-3, 2e-2);
  EXPECT_EQ(checked, (3 * 2 * 3 * 2 + 3) + (2 * 3 * 2 * 2) + (40 * 3 + 3));
}

// AbsorbFollowing(scale, shift) == per-output-channel affine after the conv;
// AbsorbPreceding(scale, shift) == per-input-channel affine before it
// (without padding only).
TEST(Conv2dTest, AbsorbsAFollowingAndAnUnpaddedPrecedingChannelAffineMap) {
  uint64_t seed = 300;
  for (const Geometry& g : Geometries()) {
    SCOPED_TRACE(g.window.Describe());
    const Conv2d conv = MakeConv(g, seed++);
    const Shape in = Shape::Image(g.c, g.h, g.w);
    const Shape out = *conv.OutputShape(in);
    const RowVector out_scale = RandomMatrix(1, g.k, seed++);
    const RowVector out_shift = RandomMatrix(1, g.k, seed++);
    const RowVector in_scale = RandomMatrix(1, g.c, seed++);
    const RowVector in_shift = RandomMatrix(1, g.c, seed++);
    const Matrix x = RandomMatrix(1, static_cast<int>(in.size()), seed++);
    std::vector<float> scratch(conv.ScratchSize(in));
    std::vector<float> y(out.size()), yf(out.size());

    std::unique_ptr<Layer> following =
        conv.AbsorbFollowing(in, out_scale, out_shift);
    ASSERT_NE(following, nullptr);
    ASSERT_TRUE(following->OutputShape(in).ok());
    conv.Forward(in, x.data(), y.data(), scratch.data());
    following->Forward(in, x.data(), yf.data(), scratch.data());
    for (int64_t i = 0; i < out.size(); ++i) {
      const int k = static_cast<int>(i / out.plane());
      const float expected = out_scale(k) * y[i] + out_shift(k);
      EXPECT_NEAR(yf[i], expected, 1e-5f * std::max(1.0f, std::abs(expected)));
    }

    std::unique_ptr<Layer> preceding =
        conv.AbsorbPreceding(in, in_scale, in_shift);
    if (g.window.pad_h != 0 || g.window.pad_w != 0) {
      EXPECT_EQ(preceding, nullptr) << "zero padding of normalized values "
                                       "cannot be folded";
      continue;
    }
    ASSERT_NE(preceding, nullptr);
    Matrix xn = x;
    for (int64_t i = 0; i < in.size(); ++i) {
      const int c = static_cast<int>(i / in.plane());
      xn(0, i) = in_scale(c) * x(0, i) + in_shift(c);
    }
    conv.Forward(in, xn.data(), y.data(), scratch.data());
    preceding->Forward(in, x.data(), yf.data(), scratch.data());
    for (int64_t i = 0; i < out.size(); ++i) {
      EXPECT_NEAR(yf[i], y[i], 1e-5f * std::max(1.0f, std::abs(y[i])));
    }
    EXPECT_TRUE(preceding->As<Conv2d>()->has_bias());
  }
}

TEST(Conv2dTest, ProtoJsonAndSpecRoundTripsAreExact) {
  for (const Geometry& g : Geometries()) {
    SCOPED_TRACE(g.window.Describe());
    const Conv2d conv = MakeConv(g, 17);
    v1::Layer proto;
    conv.ToProto(&proto);
    absl::StatusOr<std::unique_ptr<Layer>> back =
        LayerFromProto(proto, "layers[0]");
    ASSERT_TRUE(back.ok()) << back.status();
    const Conv2d* c = (*back)->As<Conv2d>();
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->weight, conv.weight);
    EXPECT_EQ(c->bias, conv.bias);
    EXPECT_EQ(c->in_channels, conv.in_channels);
    EXPECT_EQ(c->Describe(), conv.Describe());

    absl::StatusOr<std::unique_ptr<Layer>> from_json =
        LayerFromJson(conv.ToJson(), "layers[0]");
    ASSERT_TRUE(from_json.ok()) << from_json.status();
    v1::Layer again;
    (*from_json)->ToProto(&again);
    EXPECT_EQ(again.SerializeAsString(), proto.SerializeAsString());

    v1::LayerSpec spec;
    conv.ToSpec(&spec);
    const LayerKind* kind = FindLayerKind(spec.kind_case());
    ASSERT_NE(kind, nullptr);
    std::mt19937_64 rng(1);
    absl::StatusOr<std::unique_ptr<Layer>> fresh =
        kind->from_spec(spec, Shape::Image(g.c, g.h, g.w), {&rng, true});
    ASSERT_TRUE(fresh.ok()) << fresh.status();
    EXPECT_EQ((*fresh)->Describe(), conv.Describe());
  }
}

TEST(Conv2dTest, HostileProtosAreRefusedWithTheFieldNamed) {
  const Conv2d conv = MakeConv({2, 7, 7, 3, {3, 3, 2, 2, 1, 1}, true}, 1);
  v1::Layer good;
  conv.ToProto(&good);
  auto expect_invalid = [](const v1::Layer& p, const std::string& needle) {
    absl::StatusOr<std::unique_ptr<Layer>> l = LayerFromProto(p, "layers[3]");
    ASSERT_FALSE(l.ok()) << needle;
    EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(l.status().message().find(needle), std::string::npos)
        << l.status();
    EXPECT_NE(l.status().message().find("layers[3]"), std::string::npos)
        << l.status();
  };
  v1::Layer p = good;
  p.mutable_conv2d()->set_stride_h(0);
  expect_invalid(p, "stride[0]");
  p = good;
  p.mutable_conv2d()->set_stride_w(-1);
  expect_invalid(p, "stride[1]");
  p = good;
  p.mutable_conv2d()->set_kernel_w(0);
  expect_invalid(p, "kernel_size[1]");
  p = good;
  p.mutable_conv2d()->set_pad_h(-1);
  expect_invalid(p, "padding[0]");
  p = good;
  p.mutable_conv2d()->set_in_channels(1 << 30);
  expect_invalid(p, "in_channels");
  p = good;
  p.mutable_conv2d()->set_out_channels(1 << 30);
  expect_invalid(p, "out_channels");
  p = good;
  p.mutable_conv2d()->set_kernel_h(1 << 30);
  expect_invalid(p, "kernel_size[0]");
  // Every size within its limit, but 65536 * 65536 * 9 weights in all.
  p = good;
  p.mutable_conv2d()->set_in_channels(kMaxWidth);
  p.mutable_conv2d()->set_out_channels(kMaxWidth);
  expect_invalid(p, "weights");
  p = good;
  p.mutable_conv2d()->mutable_weight()->RemoveLast();
  expect_invalid(p, "weight");
  p = good;
  p.mutable_conv2d()->mutable_bias()->Add(1.0f);
  expect_invalid(p, "bias");
}

TEST(Conv2dTest, ValidationRefusesNonFiniteWeightsAndMismatchedInputs) {
  Conv2d conv = MakeConv({2, 7, 7, 3, {3, 3, 2, 2, 1, 1}, true}, 1);
  EXPECT_FALSE(conv.OutputShape(Shape::Image(3, 7, 7)).ok());  // channels
  EXPECT_FALSE(conv.OutputShape(Shape::Flat(98)).ok());        // not an image
  EXPECT_TRUE(conv.OutputShape(Shape::Image(2, 1, 1)).ok());   // padded: fits
  conv.window.pad_h = 0;
  absl::StatusOr<Shape> small = conv.OutputShape(Shape::Image(2, 2, 7));
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("larger than the padded input"),
            std::string::npos)
      << small.status();
  conv.window.pad_h = 1;
  conv.weight(1, 4) = std::nanf("");
  absl::StatusOr<Shape> s = conv.OutputShape(Shape::Image(2, 7, 7));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("weight[22]"), std::string::npos)
      << s.status();
}

}  // namespace
}  // namespace bnserve::model
