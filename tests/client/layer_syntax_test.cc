#include "client/bnctl/layer_syntax.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace bnserve::client {
namespace {

using ::testing::HasSubstr;

TEST(LayerSyntaxTest, ParsesAConvolutionalNetwork) {
  v1::BatchNormSpec bn;
  bn.set_momentum(0.05f);
  absl::StatusOr<std::vector<v1::LayerSpec>> layers = ParseLayers(
      "conv:16:3:p1,bn,relu,maxpool:2,conv:32:3x5:s2,avgpool:2:s1:p1,flatten,"
      "dense:64,tanh",
      bn);
  ASSERT_TRUE(layers.ok()) << layers.status();
  ASSERT_EQ(layers->size(), 9u);
  const v1::Conv2dSpec& c1 = (*layers)[0].conv2d();
  EXPECT_EQ(c1.out_channels(), 16);
  EXPECT_EQ(c1.kernel_h(), 3);
  EXPECT_EQ(c1.kernel_w(), 3);
  EXPECT_EQ(c1.pad_h(), 1);
  EXPECT_EQ(c1.stride_h(), 0);  // the default, 1
  EXPECT_FALSE(c1.bias()) << "a conv followed by bn has no bias";
  EXPECT_FLOAT_EQ((*layers)[1].batch_norm().momentum(), 0.05f);
  EXPECT_EQ((*layers)[2].activation(), v1::ACTIVATION_RELU);
  EXPECT_EQ((*layers)[3].max_pool2d().kernel_h(), 2);
  EXPECT_EQ((*layers)[3].max_pool2d().stride_h(), 0);  // the default, 2
  const v1::Conv2dSpec& c2 = (*layers)[4].conv2d();
  EXPECT_EQ(c2.kernel_h(), 3);
  EXPECT_EQ(c2.kernel_w(), 5);
  EXPECT_EQ(c2.stride_h(), 2);
  EXPECT_TRUE(c2.bias());
  EXPECT_EQ((*layers)[5].avg_pool2d().stride_h(), 1);
  EXPECT_EQ((*layers)[5].avg_pool2d().pad_w(), 1);
  EXPECT_TRUE((*layers)[6].has_flatten());
  EXPECT_EQ((*layers)[7].dense().units(), 64);
  EXPECT_TRUE((*layers)[7].dense().bias());
  EXPECT_EQ((*layers)[8].activation(), v1::ACTIVATION_TANH);
}

TEST(LayerSyntaxTest, BatchNormFirstIsInputNormalization) {
  absl::StatusOr<std::vector<v1::LayerSpec>> layers =
      ParseLayers("bn,dense:8,bn,relu", {});
  ASSERT_TRUE(layers.ok());
  EXPECT_TRUE((*layers)[0].has_batch_norm());
  EXPECT_FALSE((*layers)[1].dense().bias());
}

TEST(LayerSyntaxTest, BadTokensNameTheTokenAndWhatWasExpected) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : {
           Case{"conv:16", "\"conv:16\": expected conv:OUT:K"},
           Case{"conv:0:3", "channels must be an integer from 1"},
           Case{"conv:16:3:q1", "unknown option \"q1\""},
           Case{"conv:16:3:s0", "stride must be an integer from 1"},
           Case{"maxpool", "missing the kernel size"},
           Case{"maxpool:0", "kernel size must be an integer from 1"},
           Case{"dense", "expected dense:UNITS"},
           Case{"dense:99999999999", "units must be an integer"},
           Case{"bn:3", "takes no arguments"},
           Case{"softmax", "unknown layer"},
           Case{"relu,,bn", "empty entry"},
           Case{"relu,", "empty entry"},
       }) {
    absl::StatusOr<std::vector<v1::LayerSpec>> layers = ParseLayers(c.text, {});
    ASSERT_FALSE(layers.ok()) << c.text;
    EXPECT_EQ(layers.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(layers.status().message(), HasSubstr(c.message)) << c.text;
  }
}

TEST(LayerSyntaxTest, InputShape) {
  absl::StatusOr<std::vector<int>> dims = ParseInputShape("1,8,8");
  ASSERT_TRUE(dims.ok());
  EXPECT_EQ(*dims, (std::vector<int>{1, 8, 8}));
  EXPECT_THAT(ParseInputShape("8,8").status().message(),
              HasSubstr("expected C,H,W"));
  EXPECT_THAT(ParseInputShape("1,0,8").status().message(),
              HasSubstr("\"0\" must be an integer from 1"));
  EXPECT_THAT(ParseInputShape("1,x,8").status().message(),
              HasSubstr("\"x\" must be an integer"));
}

}  // namespace
}  // namespace bnserve::client
