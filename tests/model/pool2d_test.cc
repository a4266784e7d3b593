// MaxPool2d and AvgPool2d: forward against a direct reference with
// PyTorch's semantics (floor rounding, -inf padding for max,
// count_include_pad for average), gradients by finite differences (layer and
// network level), tie-breaking, encodings and hostile windows.
#include "model/pool2d.h"

#include <algorithm>
#include <limits>
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

using test::RandomMatrix;

std::unique_ptr<Pool2d> MakePool(bool max, const Window2d& w) {
  std::unique_ptr<Pool2d> p;
  if (max) {
    p = std::make_unique<MaxPool2d>();
  } else {
    p = std::make_unique<AvgPool2d>();
  }
  p->window = w;
  return p;
}

// PyTorch's definition, computed directly: max over the in-bounds window
// positions (padding is -inf), or the sum of the in-bounds positions
// divided by kh * kw (padding counts as zeros).
std::vector<float> DirectPool(bool max, const Window2d& w, const Shape& in,
                              const float* x) {
  const int oh = (in.height + 2 * w.pad_h - w.kernel_h) / w.stride_h + 1;
  const int ow = (in.width + 2 * w.pad_w - w.kernel_w) / w.stride_w + 1;
  std::vector<float> y;
  for (int c = 0; c < in.channels; ++c) {
    for (int oy = 0; oy < oh; ++oy) {
      for (int ox = 0; ox < ow; ++ox) {
        double sum = 0.0;
        float best = -std::numeric_limits<float>::infinity();
        for (int i = 0; i < w.kernel_h; ++i) {
          for (int j = 0; j < w.kernel_w; ++j) {
            const int iy = oy * w.stride_h - w.pad_h + i;
            const int ix = ox * w.stride_w - w.pad_w + j;
            if (iy < 0 || iy >= in.height || ix < 0 || ix >= in.width) {
              continue;
            }
            const float v = x[(c * in.height + iy) * in.width + ix];
            sum += v;
            best = std::max(best, v);
          }
        }
        y.push_back(max ? best
                        : static_cast<float>(sum / (w.kernel_h * w.kernel_w)));
      }
    }
  }
  return y;
}

struct Case {
  Shape in;
  Window2d window;
};

const std::vector<Case>& Cases() {
  static const auto* c = new std::vector<Case>{
      {Shape::Image(2, 7, 7), {2, 2, 2, 2, 0, 0}},  // floor: 7 -> 3
      {Shape::Image(2, 6, 6), {2, 2, 2, 2, 0, 0}},
      {Shape::Image(2, 5, 4), {2, 2, 1, 1, 0, 0}},  // 2x2 windows overlapping
      {Shape::Image(1, 7, 6), {2, 2, 3, 2, 0, 0}},  // 2x2, unequal strides
      {Shape::Image(3, 5, 5), {3, 3, 2, 2, 1, 1}},
      {Shape::Image(1, 6, 5), {3, 2, 1, 2, 1, 1}},
      {Shape::Image(2, 2, 2), {2, 2, 1, 1, 1, 1}},  // 2 -> 3 with padding
      {Shape::Image(1, 4, 4), {4, 4, 4, 4, 2, 2}},  // pad = kernel / 2
      {Shape::Image(2, 3, 3), {3, 3, 1, 1, 0, 0}},  // global pooling
  };
  return *c;
}

TEST(Pool2dTest, ForwardMatchesPyTorchsDefinitionComputedDirectly) {
  uint64_t seed = 1;
  for (bool max : {true, false}) {
    for (const Case& c : Cases()) {
      SCOPED_TRACE(::testing::Message()
                   << (max ? "max " : "avg ") << c.in.ToString() << " "
                   << c.window.Describe());
      std::unique_ptr<Pool2d> pool = MakePool(max, c.window);
      absl::StatusOr<Shape> out = pool->OutputShape(c.in);
      ASSERT_TRUE(out.ok()) << out.status();
      // All negative on half the rows: max padding must not act as 0.
      Matrix x = RandomMatrix(4, static_cast<int>(c.in.size()), seed++);
      x.topRows(2) = -x.topRows(2).cwiseAbs();
      x.row(1).array() -= 1.0f;
      Matrix y(4, out->size());
      for (int r = 0; r < 4; ++r) {
        pool->Forward(c.in, x.row(r).data(), y.row(r).data(), nullptr);
        const std::vector<float> expected =
            DirectPool(max, c.window, c.in, x.row(r).data());
        ASSERT_EQ(static_cast<int64_t>(expected.size()), out->size());
        for (int64_t i = 0; i < out->size(); ++i) {
          EXPECT_NEAR(y(r, i), expected[i], 1e-6f) << r << ", " << i;
        }
        if (max && r < 2) {
          EXPECT_LT(y.row(r).maxCoeff(), 0.0f);
        }
      }
      Matrix yt;
      LayerCache cache;
      pool->ForwardTrain(c.in, x, &yt, &cache);
      EXPECT_EQ(yt, y) << "training and inference paths differ";
    }
  }
}

TEST(Pool2dTest, HandComputedAverageCountsPaddingAsZeros) {
  // 1x3x3 input 1..9, kernel 2, stride 1, padding 1 -> 4x4; each window sum
  // divided by 4 (count_include_pad = true).
  AvgPool2d pool;
  pool.window = {2, 2, 1, 1, 1, 1};
  const Shape in = Shape::Image(1, 3, 3);
  ASSERT_EQ(*pool.OutputShape(in), Shape::Image(1, 4, 4));
  std::vector<float> x(9);
  std::iota(x.begin(), x.end(), 1.0f);
  std::vector<float> y(16);
  pool.Forward(in, x.data(), y.data(), nullptr);
  const std::vector<float> expected = {
      1 / 4.f,  3 / 4.f,  5 / 4.f,  3 / 4.f,   //
      5 / 4.f,  12 / 4.f, 16 / 4.f, 9 / 4.f,   //
      11 / 4.f, 24 / 4.f, 28 / 4.f, 15 / 4.f,  //
      7 / 4.f,  15 / 4.f, 17 / 4.f, 9 / 4.f};
  for (int i = 0; i < 16; ++i) EXPECT_FLOAT_EQ(y[i], expected[i]) << i;
  MaxPool2d max;
  max.window = pool.window;
  max.Forward(in, x.data(), y.data(), nullptr);
  const std::vector<float> expected_max = {1, 2, 3, 3, 4, 5, 6, 6,
                                           7, 8, 9, 9, 7, 8, 9, 9};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(y[i], expected_max[i]) << i;
}

TEST(Pool2dTest, MaxPoolGradientGoesToTheFirstMaximumOnTies) {
  MaxPool2d pool;
  pool.window = {2, 2, 2, 2, 0, 0};
  const Shape in = Shape::Image(1, 2, 4);
  Matrix x(1, 8);
  x << 5, 5, 1, 7,  //
      5, 2, 7, 7;
  Matrix y;
  LayerCache cache;
  pool.ForwardTrain(in, x, &y, &cache);
  ASSERT_EQ(y.cols(), 2);
  EXPECT_EQ(y(0, 0), 5.0f);
  EXPECT_EQ(y(0, 1), 7.0f);
  Matrix dy(1, 2);
  dy << 1.5f, -2.0f;
  Matrix dx;
  LayerGradients grads;
  pool.Backward(in, x, y, dy, cache, &dx, &grads);
  Matrix expected(1, 8);
  expected << 1.5f, 0, 0, -2.0f,  //
      0, 0, 0, 0;
  EXPECT_EQ(dx, expected);
  EXPECT_TRUE(grads.empty());
}

TEST(Pool2dTest, LayerGradientsMatchFiniteDifferences) {
  uint64_t seed = 50;
  int checked = 0;
  for (bool max : {true, false}) {
    for (const Case& c : Cases()) {
      SCOPED_TRACE(::testing::Message()
                   << (max ? "max " : "avg ") << c.window.Describe());
      std::unique_ptr<Pool2d> pool = MakePool(max, c.window);
      // Distinct values 0.1 apart: a step of 0.01 never changes an argmax.
      const int n = static_cast<int>(c.in.size());
      std::vector<float> values(2 * n);
      for (int i = 0; i < 2 * n; ++i) values[i] = 0.1f * (i - n);
      std::shuffle(values.begin(), values.end(), std::mt19937_64(seed++));
      const Matrix x = test::FromVector(values, 2);
      checked += test::CheckLayerGradients(pool.get(), c.in, x, 1e-2f, 1e-4,
                                           1e-3, seed++);
      EXPECT_TRUE(pool->Parameters().empty());
    }
  }
  EXPECT_GT(checked, 300);
}

TEST(Pool2dTest, NetworkGradientsMatchFiniteDifferences) {
  for (bool max : {true, false}) {
    SCOPED_TRACE(max ? "max_pool2d" : "avg_pool2d");
    // conv 3x3 p1 -> pool 3x3 s2 p1 -> tanh -> pool 2x2 s1 p1 -> flatten ->
    // dense.
    const v1::NetworkSpec spec =
        test::ImageSpec(2, 5, 5, 3,
                        {test::ConvSpec(3, 3, 3, 1, 1, 1, 1, true),
                         test::PoolSpec(max, 3, 3, 2, 2, 1, 1),
                         test::ActivationSpec(v1::ACTIVATION_TANH),
                         test::PoolSpec(max, 2, 2, 1, 1, 1, 1),
                         test::FlattenSpec(), test::DenseSpec(3, true)});
    absl::StatusOr<Network> net = Network::Create(spec, 21);
    ASSERT_TRUE(net.ok()) << net.status();
    EXPECT_EQ(net->shape(2), Shape::Image(3, 3, 3));
    EXPECT_EQ(net->shape(4), Shape::Image(3, 4, 4));
    net->mutable_layer_as<Conv2d>(0)->bias = RandomMatrix(1, 3, 4, 0.3f);
    const Batch batch = test::RandomBatch(3, 50, 3, 8);
    // A small step: max pooling is only piecewise smooth, and with this
    // seed two values of one window of the third channel are within a step
    // of 5e-4 of each other (steps of 5e-4 and more cross that kink).
    const int checked =
        test::CheckNetworkGradients(*net, batch, 1e-4f, 3e-3, 2e-2);
    EXPECT_EQ(checked, (3 * 2 * 9 + 3) + (48 * 3 + 3));
  }
}

TEST(Pool2dTest, StrideDefaultsToTheKernelAndRoundTripsAreExact) {
  // Spec: stride 0 means the kernel size; kernel_w 0 means kernel_h.
  for (bool max : {true, false}) {
    v1::LayerSpec spec = test::PoolSpec(max, 3, 0, 0, 0, 1, 1);
    const LayerKind* kind = FindLayerKind(spec.kind_case());
    ASSERT_NE(kind, nullptr);
    std::mt19937_64 rng(1);
    absl::StatusOr<std::unique_ptr<Layer>> l =
        kind->from_spec(spec, Shape::Image(2, 7, 7), {&rng, false});
    ASSERT_TRUE(l.ok()) << l.status();
    const Pool2d* pool = dynamic_cast<const Pool2d*>(l->get());
    ASSERT_NE(pool, nullptr);
    EXPECT_EQ(pool->window.kernel_w, 3);
    EXPECT_EQ(pool->window.stride_h, 3);
    EXPECT_EQ(pool->window.stride_w, 3);
    EXPECT_EQ(*pool->OutputShape(Shape::Image(2, 7, 7)), Shape::Image(2, 3, 3));
    EXPECT_EQ(pool->Describe(),
              std::string(max ? "max_pool2d" : "avg_pool2d") + " 3x3 s3 p1");

    v1::Layer proto;
    pool->ToProto(&proto);
    absl::StatusOr<std::unique_ptr<Layer>> back = LayerFromProto(proto, "l");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ((*back)->type(), pool->type());
    EXPECT_EQ((*back)->Describe(), pool->Describe());
    absl::StatusOr<std::unique_ptr<Layer>> from_json =
        LayerFromJson(pool->ToJson(), "l");
    ASSERT_TRUE(from_json.ok()) << from_json.status();
    v1::Layer again;
    (*from_json)->ToProto(&again);
    EXPECT_EQ(again.SerializeAsString(), proto.SerializeAsString());

    // JSON without a stride: the stride is the kernel (PyTorch's default).
    Json j = Json::object();
    j["type"] = max ? "max_pool2d" : "avg_pool2d";
    j["kernel_size"] = 2;
    absl::StatusOr<std::unique_ptr<Layer>> short_json = LayerFromJson(j, "l");
    ASSERT_TRUE(short_json.ok()) << short_json.status();
    EXPECT_EQ((*short_json)->Describe(),
              std::string(max ? "max_pool2d" : "avg_pool2d") + " 2x2 s2 p0");
  }
}

TEST(Pool2dTest, HostileWindowsAreRefusedWithTheFieldNamed) {
  for (bool max : {true, false}) {
    SCOPED_TRACE(max ? "max_pool2d" : "avg_pool2d");
    v1::Layer good;
    MakePool(max, {2, 2, 2, 2, 1, 1})->ToProto(&good);
    auto mutable_pool = [max](v1::Layer* l) {
      return max ? l->mutable_max_pool2d() : l->mutable_avg_pool2d();
    };
    auto expect_invalid = [](const v1::Layer& p, const std::string& needle) {
      absl::StatusOr<std::unique_ptr<Layer>> l = LayerFromProto(p, "layers[1]");
      ASSERT_FALSE(l.ok()) << needle;
      EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(l.status().message().find(needle), std::string::npos)
          << l.status();
      EXPECT_NE(l.status().message().find("layers[1]"), std::string::npos)
          << l.status();
    };
    ASSERT_TRUE(LayerFromProto(good, "l").ok());
    v1::Layer p = good;
    mutable_pool(&p)->set_kernel_h(0);
    expect_invalid(p, "kernel_size[0]");
    p = good;
    mutable_pool(&p)->set_kernel_w(0);
    expect_invalid(p, "kernel_size[1]");
    p = good;
    mutable_pool(&p)->set_stride_h(0);
    expect_invalid(p, "stride[0]");
    p = good;
    mutable_pool(&p)->set_pad_w(2);  // > kernel / 2
    expect_invalid(p, "at most half the kernel");
    p = good;
    mutable_pool(&p)->set_kernel_h(1 << 30);
    expect_invalid(p, "kernel_size[0]");
    p = good;
    mutable_pool(&p)->set_pad_h(-1);
    expect_invalid(p, "padding[0]");

    std::unique_ptr<Pool2d> pool = MakePool(max, {5, 5, 1, 1, 1, 1});
    absl::StatusOr<Shape> s = pool->OutputShape(Shape::Image(1, 2, 6));
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.status().message().find("larger than the padded input"),
              std::string::npos)
        << s.status();
    s = pool->OutputShape(Shape::Flat(36));
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.status().message().find("image"), std::string::npos)
        << s.status();
  }
}

}  // namespace
}  // namespace bnserve::model
