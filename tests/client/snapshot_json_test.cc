#include "client/bnctl/snapshot_json.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>

#include "absl/strings/str_replace.h"
#include "client/bnctl/store_commands.h"
#include "store/store.h"
#include "tests/common/status_matchers.h"

namespace bnserve::client {
namespace {

using ::bnserve::testing::StatusIs;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

void Fill(google::protobuf::RepeatedField<float>* field, int n,
          std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int i = 0; i < n; ++i) field->Add(dist(rng));
}

// 3 features -> Dense(4, no bias) -> BN -> relu -> Dense(2, bias).
v1::Snapshot MakeSnapshot() {
  std::mt19937 rng(3);
  v1::Snapshot s;
  s.set_model("digits");
  s.set_version(7);
  s.set_task(v1::TASK_CLASSIFICATION);
  s.set_input_features(3);
  s.set_output_dim(2);
  for (const char* f : {"f0", "f1", "f2"}) s.add_feature_names(f);
  s.add_class_names("cat");
  s.add_class_names("dog");
  v1::DenseLayer* d0 = s.add_layers()->mutable_dense();
  d0->set_in(3);
  d0->set_out(4);
  Fill(d0->mutable_weight(), 12, rng, -1, 1);
  d0->set_weight(0, 0.1f);  // not exactly representable: must survive
  d0->set_weight(1, 1e-30f);
  d0->set_weight(2, -3.4028235e38f);
  v1::BatchNormLayer* bn = s.add_layers()->mutable_batch_norm();
  bn->set_features(4);
  Fill(bn->mutable_gamma(), 4, rng, 0.5, 2);
  Fill(bn->mutable_beta(), 4, rng, -1, 1);
  Fill(bn->mutable_running_mean(), 4, rng, -5, 5);
  Fill(bn->mutable_running_var(), 4, rng, 0.01, 9);
  bn->set_momentum(0.1f);
  bn->set_eps(1e-5f);
  bn->set_num_batches_tracked(600);
  bn->set_average(v1::AVERAGE_EMA);
  bn->set_variance(v1::VARIANCE_UNBIASED);
  bn->set_stats_source(v1::STATS_SOURCE_EXACT);
  bn->set_stats_examples(3823);
  s.add_layers()->mutable_activation()->set_fn(v1::ACTIVATION_RELU);
  v1::DenseLayer* d1 = s.add_layers()->mutable_dense();
  d1->set_in(4);
  d1->set_out(2);
  Fill(d1->mutable_weight(), 8, rng, -1, 1);
  Fill(d1->mutable_bias(), 2, rng, -1, 1);
  v1::Provenance* t = s.mutable_training();
  t->set_job_id("job-1");
  t->set_step(600);
  t->set_examples_seen(38230);
  t->set_loss(0.125);
  t->set_parent_version(2);
  t->mutable_created()->set_seconds(1764255600);
  t->mutable_created()->set_nanos(123456789);
  t->set_origin("recalibrate");
  return s;
}

SnapshotJson MakeJson() {
  absl::StatusOr<SnapshotJson> j = SnapshotToJson(MakeSnapshot());
  EXPECT_TRUE(j.ok()) << j.status();
  return *j;
}

TEST(SnapshotJsonTest, RoundTripIsBitExact) {
  const v1::Snapshot s = MakeSnapshot();
  absl::StatusOr<std::string> text = SnapshotToJsonText(s);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->back(), '\n');
  absl::StatusOr<v1::Snapshot> back = SnapshotFromJsonText(*text);
  ASSERT_TRUE(back.ok()) << back.status();
  std::string diff;
  MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differencer.Compare(s, *back)) << diff;
}

TEST(SnapshotJsonTest, WritesTheDesignFormat) {
  const v1::Snapshot s = MakeSnapshot();
  const SnapshotJson j = MakeJson();
  EXPECT_EQ(j["format"], "bnserve.snapshot.v1");
  EXPECT_EQ(j["model"], "digits");
  EXPECT_EQ(j["version"], 7);
  EXPECT_EQ(j["task"], "classification");
  EXPECT_EQ(j["input_features"], 3);
  EXPECT_EQ(j["classes"][1], "dog");
  EXPECT_EQ(j["feature_names"][2], "f2");
  ASSERT_EQ(j["layers"].size(), 4u);
  // PyTorch Linear.weight layout: out rows of in values.
  const SnapshotJson& dense = j["layers"][0];
  EXPECT_EQ(dense["type"], "dense");
  EXPECT_EQ(dense["in"], 3);
  EXPECT_EQ(dense["out"], 4);
  ASSERT_EQ(dense["weight"].size(), 4u);
  ASSERT_EQ(dense["weight"][0].size(), 3u);
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 3; ++c) {
      EXPECT_EQ(dense["weight"][r][c].get<float>(),
                s.layers(0).dense().weight(r * 3 + c));
    }
  }
  EXPECT_TRUE(dense["bias"].is_null());
  const SnapshotJson& bn = j["layers"][1];
  EXPECT_EQ(bn["type"], "batch_norm");
  EXPECT_EQ(bn["features"], 4);
  EXPECT_EQ(bn["running_var"].size(), 4u);
  EXPECT_EQ(bn["average"], "ema");
  EXPECT_EQ(bn["variance"], "unbiased");
  EXPECT_EQ(bn["stats_source"], "exact");
  EXPECT_EQ(bn["stats_examples"], 3823);
  EXPECT_EQ(bn["num_batches_tracked"], 600);
  EXPECT_EQ(j["layers"][2]["fn"], "relu");
  EXPECT_EQ(j["layers"][3]["bias"].size(), 2u);
  EXPECT_EQ(j["training"]["created"], "2025-11-27T15:00:00.123456789+00:00");
  EXPECT_EQ(j["training"]["origin"], "recalibrate");
  // Shortest float form: 0.1f is written as 0.1, not 0.10000000149011612.
  EXPECT_THAT(j.dump(), HasSubstr("[[0.1,1e-30,-3.4028235e+38]"));
}

TEST(SnapshotJsonTest, NanLossIsNullAndBack) {
  v1::Snapshot s = MakeSnapshot();
  s.mutable_training()->set_loss(std::numeric_limits<double>::quiet_NaN());
  absl::StatusOr<SnapshotJson> j = SnapshotToJson(s);
  ASSERT_TRUE(j.ok());
  EXPECT_TRUE((*j)["training"]["loss"].is_null());
  absl::StatusOr<v1::Snapshot> back = SnapshotFromJson(*j);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(std::isnan(back->training().loss()));
}

TEST(SnapshotJsonTest, OptionalFieldsTakeDefaults) {
  // The minimal hand-written form (what another framework would produce).
  absl::StatusOr<v1::Snapshot> s = SnapshotFromJsonText(R"({
    "format": "bnserve.snapshot.v1", "task": "regression",
    "input_features": 2,
    "layers": [
      {"type": "dense", "in": 2, "out": 3, "weight": [[1,2],[3,4],[5,6]]},
      {"type": "batch_norm", "features": 3, "gamma": [1,1,1],
       "beta": [0,0,0], "running_mean": [0,0,0], "running_var": [1,1,1]},
      {"type": "activation", "fn": "tanh"},
      {"type": "dense", "in": 3, "out": 1, "weight": [[1,1,1]], "bias": [0.5]}
    ]})");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->output_dim(), 1);
  EXPECT_EQ(s->layers(0).dense().bias_size(), 0);
  const v1::BatchNormLayer& bn = s->layers(1).batch_norm();
  EXPECT_FLOAT_EQ(bn.eps(), 1e-5f);
  EXPECT_FLOAT_EQ(bn.momentum(), 0.1f);
  EXPECT_EQ(bn.average(), v1::AVERAGE_EMA);
  EXPECT_EQ(bn.variance(), v1::VARIANCE_UNBIASED);
  EXPECT_EQ(bn.stats_source(), v1::STATS_SOURCE_EMA);
  EXPECT_TRUE(std::isnan(s->training().loss()));
}

struct BadCase {
  const char* name;
  std::function<void(SnapshotJson&)> mutate;
  const char* expected;
};

class SnapshotJsonValidationTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(SnapshotJsonValidationTest, RejectsWithAPath) {
  SnapshotJson j = MakeJson();
  GetParam().mutate(j);
  absl::StatusOr<v1::Snapshot> s = SnapshotFromJson(j);
  ASSERT_FALSE(s.ok()) << GetParam().name;
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr(GetParam().expected));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SnapshotJsonValidationTest,
    ::testing::Values(
        BadCase{"format", [](SnapshotJson& j) { j["format"] = "other.v9"; },
                "format: expected \"bnserve.snapshot.v1\""},
        BadCase{"no_format", [](SnapshotJson& j) { j.erase("format"); },
                "format: missing"},
        BadCase{"unknown_key", [](SnapshotJson& j) { j["wieghts"] = 1; },
                "wieghts: unknown key"},
        BadCase{"task", [](SnapshotJson& j) { j["task"] = "ranking"; },
                "task: expected one of"},
        BadCase{"input_features_zero",
                [](SnapshotJson& j) { j["input_features"] = 0; },
                "input_features: must be between 1"},
        BadCase{"input_features_fraction",
                [](SnapshotJson& j) { j["input_features"] = 3.5f; },
                "input_features: expected an integer"},
        BadCase{"input_mismatch",
                [](SnapshotJson& j) {
                  j["input_features"] = 5;
                  j["feature_names"] = SnapshotJson::array();
                },
                "layers[0]: dense input width 3 does not match"},
        BadCase{"no_layers",
                [](SnapshotJson& j) { j["layers"] = SnapshotJson::array(); },
                "layers: no layers"},
        BadCase{"layer_type",
                [](SnapshotJson& j) { j["layers"][2]["type"] = "conv"; },
                "layers[2].type: unknown layer type \"conv\""},
        BadCase{"layer_not_object", [](SnapshotJson& j) { j["layers"][1] = 3; },
                "layers[1]: expected an object"},
        BadCase{"layer_unknown_key",
                [](SnapshotJson& j) { j["layers"][0]["bais"] = nullptr; },
                "layers[0].bais: unknown key"},
        BadCase{"weight_rows",
                [](SnapshotJson& j) { j["layers"][0]["weight"].erase(0); },
                "layers[0].weight: expected 4 rows"},
        BadCase{"weight_row_length",
                [](SnapshotJson& j) {
                  j["layers"][0]["weight"][1].push_back(1.0f);
                },
                "layers[0].weight[1]: has 4 values, expected 3"},
        BadCase{"weight_string",
                [](SnapshotJson& j) { j["layers"][0]["weight"][2][1] = "x"; },
                "layers[0].weight[2][1]: expected a number"},
        BadCase{"bias_length",
                [](SnapshotJson& j) { j["layers"][3]["bias"].push_back(0.0f); },
                "layers[3].bias: has 3 values, expected 2"},
        BadCase{"dense_in_mismatch",
                [](SnapshotJson& j) {
                  j["layers"][3]["in"] = 3;
                  for (auto& row : j["layers"][3]["weight"]) row.erase(0);
                },
                "layers[3]: dense input width 3 does not match the previous "
                "width 4"},
        BadCase{"bn_features",
                [](SnapshotJson& j) {
                  SnapshotJson& bn = j["layers"][1];
                  bn["features"] = 3;
                  for (const char* k :
                       {"gamma", "beta", "running_mean", "running_var"}) {
                    bn[k].erase(0);
                  }
                },
                "layers[1]: batch norm over 3 features follows a layer of "
                "width 4"},
        BadCase{"bn_missing_mean",
                [](SnapshotJson& j) { j["layers"][1].erase("running_mean"); },
                "layers[1].running_mean: missing"},
        BadCase{"bn_short_gamma",
                [](SnapshotJson& j) { j["layers"][1]["gamma"].erase(0); },
                "layers[1].gamma: has 3 values, expected 4"},
        BadCase{
            "bn_negative_var",
            [](SnapshotJson& j) { j["layers"][1]["running_var"][2] = -1.0f; },
            "layers[1].running_var[2]: must be >= 0"},
        BadCase{"bn_eps", [](SnapshotJson& j) { j["layers"][1]["eps"] = 0.0f; },
                "layers[1].eps: must be a positive number"},
        BadCase{"bn_momentum",
                [](SnapshotJson& j) { j["layers"][1]["momentum"] = 1.5f; },
                "layers[1].momentum: must be in (0, 1]"},
        BadCase{
            "bn_tracked",
            [](SnapshotJson& j) { j["layers"][1]["num_batches_tracked"] = -1; },
            "layers[1].num_batches_tracked: must be between 0"},
        BadCase{"bn_average",
                [](SnapshotJson& j) { j["layers"][1]["average"] = "median"; },
                "layers[1].average: expected one of \"ema\", \"cumulative\""},
        BadCase{"bn_source",
                [](SnapshotJson& j) { j["layers"][1]["stats_source"] = 1; },
                "layers[1].stats_source: expected one of"},
        BadCase{"activation",
                [](SnapshotJson& j) { j["layers"][2]["fn"] = "gelu"; },
                "layers[2].fn: expected one of \"relu\""},
        BadCase{"classes",
                [](SnapshotJson& j) { j["classes"].push_back("bird"); },
                "classes: has 3 names, expected none or output_dim = 2"},
        BadCase{"class_type", [](SnapshotJson& j) { j["classes"][0] = 0; },
                "classes[0]: expected a string"},
        BadCase{"feature_names",
                [](SnapshotJson& j) { j["feature_names"].erase(0); },
                "feature_names: has 2 names"},
        BadCase{"output_dim",
                [](SnapshotJson& j) {
                  j["output_dim"] = 3;
                  j["classes"] = SnapshotJson::array();
                },
                "does not match output_dim 3"},
        BadCase{"one_class",
                [](SnapshotJson& j) {
                  j["output_dim"] = 1;
                  j["classes"] = SnapshotJson::array();
                  SnapshotJson& last = j["layers"][3];
                  last["out"] = 1;
                  last["weight"].erase(1);
                  last["bias"].erase(1);
                },
                "classification needs at least 2 classes"},
        BadCase{"created",
                [](SnapshotJson& j) { j["training"]["created"] = "yesterday"; },
                "training.created: not an RFC 3339 time"},
        BadCase{"training_key",
                [](SnapshotJson& j) { j["training"]["epochs"] = 3; },
                "training.epochs: unknown key"},
        BadCase{"training_step",
                [](SnapshotJson& j) { j["training"]["step"] = "many"; },
                "training.step: expected an integer"}),
    [](const ::testing::TestParamInfo<BadCase>& info) {
      return info.param.name;
    });

TEST(SnapshotJsonTest, RejectsTextThatIsNotJson) {
  for (const char* text :
       {"", "{", "[1,2]", "{\"format\": NaN}", "null", "{\"a\":1}garbage"}) {
    absl::StatusOr<v1::Snapshot> s = SnapshotFromJsonText(text);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
  EXPECT_THAT(SnapshotFromJsonText("{").status().message(),
              HasSubstr("not valid JSON"));
}

TEST(SnapshotJsonTest, RejectsNumbersBeyondFloat32) {
  absl::StatusOr<std::string> text = SnapshotToJsonText(MakeSnapshot());
  ASSERT_TRUE(text.ok());
  const std::string bad = absl::StrReplaceAll(*text, {{"[[0.1,", "[[1e39,"}});
  ASSERT_NE(bad, *text);
  absl::StatusOr<v1::Snapshot> s = SnapshotFromJsonText(bad);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("overflow"));
}

TEST(SnapshotJsonTest, ExportRejectsAnInconsistentSnapshot) {
  v1::Snapshot s = MakeSnapshot();
  s.mutable_layers(0)->mutable_dense()->mutable_weight()->RemoveLast();
  EXPECT_THAT(SnapshotToJson(s), StatusIs(absl::StatusCode::kInvalidArgument,
                                          "layers[0].weight: has 11"));
  s = MakeSnapshot();
  s.mutable_layers(1)->mutable_batch_norm()->set_running_mean(
      0, std::numeric_limits<float>::infinity());
  EXPECT_THAT(SnapshotToJson(s),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "layers[1].running_mean[0]: must be finite"));
  s = MakeSnapshot();
  s.mutable_layers(2)->mutable_activation()->set_fn(v1::ACTIVATION_UNSPECIFIED);
  EXPECT_THAT(SnapshotToJson(s),
              StatusIs(absl::StatusCode::kInvalidArgument, "layers[2]"));
  s = MakeSnapshot();
  s.add_layers();  // no kind
  EXPECT_THAT(SnapshotToJson(s),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "layers[4]: unknown or missing layer kind"));
}

// --- export / import through a store (mem://) ---------------------------

std::unique_ptr<store::SnapshotStore> OpenMemStore(const std::string& name) {
  absl::StatusOr<std::unique_ptr<store::SnapshotStore>> s =
      store::OpenStore("mem://" + name);
  EXPECT_TRUE(s.ok()) << s.status();
  return *std::move(s);
}

TEST(StoreTransferTest, ExportReadsLatestVersionOrLabel) {
  auto store = OpenMemStore("export-test");
  v1::Snapshot s = MakeSnapshot();
  ASSERT_EQ(*store->Publish(s), 1);
  s.mutable_training()->set_step(700);
  ASSERT_EQ(*store->Publish(s), 2);
  ASSERT_TRUE(store->SetLabel("digits", "stable", 1).ok());

  absl::StatusOr<v1::Snapshot> latest =
      ReadSnapshotForExport(*store, "digits", std::nullopt, std::nullopt);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->version(), 2);
  EXPECT_EQ(latest->training().step(), 700);
  absl::StatusOr<v1::Snapshot> v1s =
      ReadSnapshotForExport(*store, "digits", 1, std::nullopt);
  ASSERT_TRUE(v1s.ok());
  EXPECT_EQ(v1s->version(), 1);
  absl::StatusOr<v1::Snapshot> stable = ReadSnapshotForExport(
      *store, "digits", std::nullopt, std::string("stable"));
  ASSERT_TRUE(stable.ok());
  EXPECT_EQ(stable->version(), 1);

  EXPECT_EQ(
      ReadSnapshotForExport(*store, "digits", 9, std::nullopt).status().code(),
      absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadSnapshotForExport(*store, "nope", std::nullopt, std::nullopt)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadSnapshotForExport(*store, "../etc", std::nullopt, std::nullopt)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(StoreTransferTest, ImportPublishesTheExportedSnapshot) {
  auto store = OpenMemStore("import-test");
  const v1::Snapshot original = MakeSnapshot();
  absl::StatusOr<std::string> text = SnapshotToJsonText(original);
  ASSERT_TRUE(text.ok());

  absl::StatusOr<int64_t> v = ImportSnapshotJson(*store, "copy", *text);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, 1);
  absl::StatusOr<v1::Snapshot> read = store->Read("copy", 1);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->model(), "copy");
  EXPECT_EQ(read->version(), 1);
  EXPECT_EQ(read->training().origin(), "import");
  EXPECT_EQ(read->training().job_id(), "");
  EXPECT_EQ(read->training().parent_version(), 0);
  EXPECT_EQ(read->training().step(), 600);
  EXPECT_GT(read->training().created().seconds(),
            original.training().created().seconds());
  // Parameters and statistics are untouched.
  ASSERT_EQ(read->layers_size(), original.layers_size());
  for (int i = 0; i < original.layers_size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(read->layers(i), original.layers(i)))
        << "layer " << i;
  }
  // And exporting it again gives the same layers.
  absl::StatusOr<v1::Snapshot> again =
      ReadSnapshotForExport(*store, "copy", std::nullopt, std::nullopt);
  ASSERT_TRUE(again.ok());
  absl::StatusOr<SnapshotJson> j1 = SnapshotToJson(original);
  absl::StatusOr<SnapshotJson> j2 = SnapshotToJson(*again);
  EXPECT_EQ((*j1)["layers"], (*j2)["layers"]);
}

TEST(StoreTransferTest, InvalidImportPublishesNothing) {
  auto store = OpenMemStore("bad-import-test");
  SnapshotJson j = MakeJson();
  j["layers"][1]["running_var"][0] = -2.0f;
  absl::StatusOr<int64_t> v = ImportSnapshotJson(*store, "m", j.dump());
  EXPECT_THAT(v, StatusIs(absl::StatusCode::kInvalidArgument,
                          "layers[1].running_var[0]"));
  EXPECT_EQ(store->Latest("m").status().code(), absl::StatusCode::kNotFound);

  absl::StatusOr<std::string> text = SnapshotToJsonText(MakeSnapshot());
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(ImportSnapshotJson(*store, "bad/name", *text).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImportSnapshotJson(*store, "m", "{not json").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Latest("m").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace bnserve::client
