// The inference dashboard: the JSON documents (dashboard_json.h) over a real
// ServableManager and Metrics, histogram quantiles against hand-computed
// values, and the HTTP handler's routing and token (dashboard_http.h).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "server/inference/dashboard_http.h"
#include "server/inference/dashboard_json.h"
#include "store/memory_store.h"
#include "tests/server/inference/test_util.h"

namespace bnserve::inference {
namespace {

using Json = nlohmann::json;
using testing::MakeSnapshot;
using testing::RandomFeatures;
using testing::UniqueName;

TEST(HistogramQuantileTest, InterpolatesLikePromQL) {
  const std::vector<double> bounds = {1, 2, 4};
  // 2 requests <= 1, 2 in (1, 2]: the median is the first bucket's top, the
  // 75th percentile half way through the second bucket.
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.5, bounds, {2, 2, 0, 0}), 1.0);
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.75, bounds, {2, 2, 0, 0}), 1.5);
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.25, bounds, {2, 2, 0, 0}), 0.5);
  // Empty buckets in between: (2, 4] holds the 3rd of 3.
  EXPECT_NEAR(HistogramQuantile(0.9, bounds, {1, 1, 1, 0}), 2 + 2 * 0.7, 1e-12);
  // In +Inf: the largest finite bound.
  EXPECT_DOUBLE_EQ(HistogramQuantile(0.99, bounds, {0, 0, 1, 5}), 4.0);
  EXPECT_TRUE(std::isnan(HistogramQuantile(0.5, bounds, {0, 0, 0, 0})));
  EXPECT_TRUE(std::isnan(HistogramQuantile(0.5, bounds, {1, 1})));
}

TEST(TrafficJsonTest, CountsAndPercentilesPerMethod) {
  Metrics m;
  m.RecordRequest("Predict", grpc::StatusCode::OK, absl::Microseconds(30));
  m.RecordRequest("Predict", grpc::StatusCode::OK, absl::Microseconds(300));
  m.RecordRequest("Predict", grpc::StatusCode::INVALID_ARGUMENT,
                  absl::Seconds(2));
  m.RecordRequest("ModelInfer", grpc::StatusCode::OK, absl::Microseconds(70));
  const Json t =
      Json::parse(TrafficJson(m, absl::UnixEpoch() + absl::Seconds(1000)));
  EXPECT_DOUBLE_EQ(t["unix_seconds"].get<double>(), 1000.0);
  EXPECT_EQ(t["requests"], 4);
  EXPECT_EQ(t["errors"], 1);
  ASSERT_EQ(t["methods"].size(), 2u);
  EXPECT_EQ(t["methods"][0]["method"], "ModelInfer");
  const Json& p = t["methods"][1];
  EXPECT_EQ(p["method"], "Predict");
  EXPECT_EQ(p["requests"], 3);
  EXPECT_EQ(p["errors"], 1);
  // Buckets (seconds): 1 in <= 5e-5, 1 in (2.5e-4, 5e-4], 1 in +Inf.
  // Median: rank 1.5 -> half way through (2.5e-4, 5e-4] = 0.375 ms.
  EXPECT_NEAR(p["p50_ms"].get<double>(), 0.375, 1e-9);
  // p90: rank 2.7 -> +Inf bucket -> the largest bound, 1 s.
  EXPECT_NEAR(p["p90_ms"].get<double>(), 1000.0, 1e-9);
  EXPECT_NEAR(p["mean_ms"].get<double>(), 2000.33 / 3, 1e-6);
  // No requests: no percentiles (null), not zeros.
  const Json empty = Json::parse(TrafficJson(Metrics(), absl::Now()));
  EXPECT_EQ(empty["requests"], 0);
  EXPECT_TRUE(empty["methods"].empty());
}

class DashboardJsonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string name = UniqueName("dash");
    publisher_ = store::MemoryStore::Open(name);
    store_ =
        std::shared_ptr<store::MemoryStore>(store::MemoryStore::Open(name));
  }
  std::unique_ptr<ServableManager> Start() {
    ServableManagerOptions options;
    options.drift.sample_every = 1;
    auto m = std::make_unique<ServableManager>(store_, options, &metrics_);
    EXPECT_TRUE(m->Start().ok());
    EXPECT_TRUE(m->WaitUntilReady(absl::Seconds(5)));
    EXPECT_TRUE(m->SyncAllForTesting().ok());
    return m;
  }
  // Serves `n` examples of `scale` * random features from `model` v`version`.
  void Serve(const ServableManager& m, const std::string& model,
             int64_t version, float scale, int n) {
    auto s = m.Get(model, VersionRequest{version, ""});
    ASSERT_TRUE(s.ok()) << s.status();
    std::vector<float> out((*s)->output_dim());
    for (int i = 0; i < n; ++i) {
      std::vector<float> x = RandomFeatures((*s)->input_features(), 50 + i);
      for (float& v : x) v *= scale;
      (*s)->Run(x.data(), out.data());
    }
  }

  std::unique_ptr<store::MemoryStore> publisher_;
  std::shared_ptr<store::MemoryStore> store_;
  Metrics metrics_;
};

TEST_F(DashboardJsonTest, ModelsListVersionsLabelsAndTheServingVersion) {
  ASSERT_TRUE(publisher_->Publish(MakeSnapshot("alpha", 1)).ok());
  ASSERT_TRUE(publisher_->Publish(MakeSnapshot("alpha", 2)).ok());
  ASSERT_TRUE(publisher_->Publish(MakeSnapshot("beta", 3)).ok());
  ASSERT_TRUE(publisher_->SetLabel("alpha", "stable", 1).ok());
  ASSERT_TRUE(publisher_->SetLabel("alpha", "prod", 1).ok());
  auto m = Start();
  const Json j = Json::parse(ModelsJson(*m));
  EXPECT_EQ(j["ready"], true);
  ASSERT_EQ(j["models"].size(), 2u);
  const Json& alpha = j["models"][0];
  EXPECT_EQ(alpha["model"], "alpha");
  EXPECT_EQ(alpha["serving_version"], 2);
  EXPECT_EQ(alpha["labels"], (Json{{"prod", 1}, {"stable", 1}}));
  ASSERT_EQ(alpha["versions"].size(), 2u);
  EXPECT_EQ(alpha["versions"][0]["version"], 1);
  EXPECT_EQ(alpha["versions"][0]["labels"], (Json{"prod", "stable"}));
  EXPECT_EQ(alpha["versions"][1]["labels"], Json::array());
  EXPECT_EQ(alpha["versions"][1]["batch_norm_layers"], 2);
  EXPECT_EQ(j["models"][1]["model"], "beta");
  EXPECT_EQ(j["models"][1]["serving_version"], 1);
}

TEST_F(DashboardJsonTest, DriftListsTheMostDriftedLayersFirst) {
  const v1::Snapshot calm = MakeSnapshot("calm", 4);
  ASSERT_TRUE(publisher_->Publish(calm).ok());
  ASSERT_TRUE(publisher_->Publish(MakeSnapshot("wild", 5)).ok());
  auto m = Start();
  EXPECT_EQ(Json::parse(DriftJson(*m))["layers"].size(), 0u);  // no samples
  Serve(*m, "calm", 1, 1.0f, 20);
  Serve(*m, "wild", 1, 1000.0f, 20);
  const Json d = Json::parse(DriftJson(*m, /*units=*/3));
  ASSERT_EQ(d["layers"].size(), 4u);  // 2 batch norms per model
  EXPECT_EQ(d["layers"][0]["model"], "wild");
  for (size_t i = 1; i < d["layers"].size(); ++i) {
    EXPECT_GE(d["layers"][i - 1]["mean_shift_max"].get<double>(),
              d["layers"][i]["mean_shift_max"].get<double>());
  }
  // The running statistics shown are the snapshot's (first 3 units).
  for (const Json& l : d["layers"]) {
    if (l["model"] != "calm") continue;
    EXPECT_EQ(l["samples"], 20);
    const int layer = l["layer"];
    const v1::BatchNormLayer& bn = calm.layers(layer).batch_norm();
    ASSERT_EQ(l["running_mean"].size(), 3u);
    ASSERT_EQ(l["live_var"].size(), 3u);
    for (int u = 0; u < 3; ++u) {
      EXPECT_NEAR(l["running_mean"][u].get<double>(), bn.running_mean(u), 1e-6);
      EXPECT_NEAR(l["running_var"][u].get<double>(), bn.running_var(u), 1e-6);
    }
    EXPECT_EQ(l["features"], bn.features());
  }
}

TEST_F(DashboardJsonTest, HttpHandlerRoutesTheDashboardAndChecksTheToken) {
  ASSERT_TRUE(publisher_->Publish(MakeSnapshot("alpha", 1)).ok());
  auto m = Start();
  const server::TokenAuth auth("tok3n");
  DashboardHttpHandler handler(m.get(), &metrics_, &auth);
  auto get = [&](const std::string& path, const std::string* authorization) {
    return handler.Handle({"GET", path, authorization, ""});
  };
  auto page = get("/", nullptr);
  ASSERT_TRUE(page.has_value());
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("data-page=\"inference\""), std::string::npos);
  EXPECT_EQ(page->body.find("tok3n"), std::string::npos);
  EXPECT_FALSE(get("/v2/models/alpha", nullptr).has_value());  // KServe's
  const std::string token = "Bearer tok3n";
  for (const std::string path : {"/api/models", "/api/traffic", "/api/drift"}) {
    auto denied = get(path, nullptr);
    ASSERT_TRUE(denied.has_value());
    EXPECT_EQ(denied->status, 401) << path;
    auto ok = get(path, &token);
    EXPECT_EQ(ok->status, 200) << path;
    EXPECT_NO_THROW(Json::parse(ok->body)) << path;
  }
  EXPECT_EQ(get("/api/nothing", &token)->status, 404);
  EXPECT_EQ(handler.Handle({"POST", "/api/models", &token, ""})->status, 400);
}

}  // namespace
}  // namespace bnserve::inference
