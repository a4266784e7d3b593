// The transport-neutral KServe core (server/inference/kserve_core.h) called
// directly on protobuf messages, over a ServableManager that follows an
// in-memory store: the checks both transports rely on (input name, shapes,
// platform) and Triton's ModelConfig, ModelStatistics and RepositoryIndex.
#include "server/inference/kserve_core.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/memory_store.h"
#include "tests/server/inference/test_util.h"

namespace bnserve::inference {
namespace {

using ::testing::HasSubstr;
using testing::MakeSnapshot;
using testing::RandomFeatures;
using testing::ReferenceOutputs;
using testing::UniqueName;
namespace kserve = ::inference;

class KServeCoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string name = UniqueName("core");
    publisher_ = store::MemoryStore::Open(name);
    clf_ = UniqueName("clf");
    reg_ = UniqueName("reg");
    clf_v1_ = MakeSnapshot(clf_, 1);
    ASSERT_EQ(*publisher_->Publish(clf_v1_), 1);
    ASSERT_EQ(*publisher_->Publish(MakeSnapshot(clf_, 2)), 2);
    ASSERT_EQ(
        *publisher_->Publish(MakeSnapshot(reg_, 3, v1::TASK_REGRESSION, 5, 2)),
        1);
    ASSERT_TRUE(publisher_->SetLabel(clf_, "stable", 1).ok());
    auto store =
        std::shared_ptr<store::MemoryStore>(store::MemoryStore::Open(name));
    manager_ = std::make_unique<ServableManager>(
        store, ServableManagerOptions{.drift = {0}});
    ASSERT_TRUE(manager_->SyncAllForTesting().ok());
    core_ = std::make_unique<KServeCore>(manager_.get());
  }

  static kserve::ModelInferRequest Infer(const std::string& model,
                                         const std::vector<float>& x,
                                         int64_t rows, int64_t f) {
    kserve::ModelInferRequest req;
    req.set_model_name(model);
    auto* in = req.add_inputs();
    in->set_name("input");
    in->set_datatype("FP32");
    in->add_shape(rows);
    in->add_shape(f);
    in->mutable_contents()->mutable_fp32_contents()->Add(x.begin(), x.end());
    return req;
  }

  std::unique_ptr<store::MemoryStore> publisher_;
  std::unique_ptr<ServableManager> manager_;
  std::unique_ptr<KServeCore> core_;
  std::string clf_, reg_;
  v1::Snapshot clf_v1_;
};

TEST_F(KServeCoreTest, InferAnswersWithTheChosenVersion) {
  const std::vector<float> x = RandomFeatures(4, 7);
  kserve::ModelInferRequest req = Infer(clf_, x, 1, 4);
  req.set_model_version("stable");
  req.set_id("q1");
  kserve::ModelInferResponse resp;
  ASSERT_TRUE(core_->ModelInfer(req, &resp).ok());
  EXPECT_EQ(resp.model_version(), "1");
  EXPECT_EQ(resp.id(), "q1");
  ASSERT_EQ(resp.outputs_size(), 3);
  EXPECT_EQ(resp.outputs(0).name(), "output");
  const std::vector<float> want = ReferenceOutputs(clf_v1_, x);
  ASSERT_EQ(resp.outputs(0).contents().fp32_contents_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(resp.outputs(0).contents().fp32_contents(i), want[i],
                1e-5 * std::max(1.0f, std::abs(want[i])));
  }
}

TEST_F(KServeCoreTest, AnInputNameOtherThanTheModelsIsRefusedNamingBoth) {
  kserve::ModelInferRequest req = Infer(clf_, RandomFeatures(4, 1), 1, 4);
  req.mutable_inputs(0)->set_name("features");
  kserve::ModelInferResponse resp;
  absl::Status status = core_->ModelInfer(req, &resp);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("'features'"));
  EXPECT_THAT(status.message(), HasSubstr("'input'"));
  EXPECT_EQ(resp.outputs_size(), 0);
}

TEST_F(KServeCoreTest, PlatformFollowsTheFrameworkFormatConvention) {
  kserve::ModelMetadataRequest req;
  req.set_name(reg_);
  kserve::ModelMetadataResponse resp;
  ASSERT_TRUE(core_->ModelMetadata(req, &resp).ok());
  EXPECT_EQ(resp.platform(), "bnserve_snapshot");
  ASSERT_EQ(resp.inputs_size(), 1);
  EXPECT_EQ(resp.inputs(0).name(), "input");
  EXPECT_THAT(resp.inputs(0).shape(), ::testing::ElementsAre(-1, 5));
  ASSERT_EQ(resp.outputs_size(), 1);  // regression: no probabilities
}

TEST_F(KServeCoreTest, ModelConfigIsMinimalAndTruthful) {
  kserve::ModelConfigRequest req;
  req.set_name(clf_);
  kserve::ModelConfigResponse resp;
  ASSERT_TRUE(core_->ModelConfig(req, &resp).ok());
  const kserve::ModelConfig& c = resp.config();
  EXPECT_EQ(c.name(), clf_);
  EXPECT_EQ(c.platform(), "bnserve_snapshot");
  EXPECT_EQ(c.max_batch_size(), 65536);
  ASSERT_EQ(c.input_size(), 1);
  EXPECT_EQ(c.input(0).name(), "input");
  EXPECT_EQ(c.input(0).data_type(), kserve::TYPE_FP32);
  EXPECT_THAT(c.input(0).dims(), ::testing::ElementsAre(4));
  ASSERT_EQ(c.output_size(), 3);
  EXPECT_EQ(c.output(1).name(), "probabilities");
  EXPECT_THAT(c.output(1).dims(), ::testing::ElementsAre(3));
  EXPECT_EQ(c.output(2).name(), "class_id");
  EXPECT_EQ(c.output(2).data_type(), kserve::TYPE_INT64);

  req.set_name("nope");
  EXPECT_TRUE(absl::IsNotFound(core_->ModelConfig(req, &resp)));
}

TEST_F(KServeCoreTest, StatisticsCountSuccessesFailuresAndRowsPerVersion) {
  kserve::ModelInferResponse ignored;
  // Two successes on v2 (1 row and 3 rows), one failure (bad shape) on v2,
  // one success on v1.
  ASSERT_TRUE(
      core_->ModelInfer(Infer(clf_, RandomFeatures(4, 1), 1, 4), &ignored)
          .ok());
  ASSERT_TRUE(
      core_->ModelInfer(Infer(clf_, RandomFeatures(12, 2), 3, 4), &ignored)
          .ok());
  EXPECT_FALSE(
      core_->ModelInfer(Infer(clf_, RandomFeatures(5, 3), 1, 5), &ignored)
          .ok());
  kserve::ModelInferRequest v1_req = Infer(clf_, RandomFeatures(4, 4), 1, 4);
  v1_req.set_model_version("1");
  ASSERT_TRUE(core_->ModelInfer(v1_req, &ignored).ok());

  kserve::ModelStatisticsRequest req;
  req.set_name(clf_);
  kserve::ModelStatisticsResponse resp;
  ASSERT_TRUE(core_->ModelStatistics(req, &resp).ok());
  ASSERT_EQ(resp.model_stats_size(), 2);  // versions 1 and 2, ascending
  const kserve::ModelStatistics& v1 = resp.model_stats(0);
  const kserve::ModelStatistics& v2 = resp.model_stats(1);
  EXPECT_EQ(v1.version(), "1");
  EXPECT_EQ(v1.inference_stats().success().count(), 1u);
  EXPECT_EQ(v1.inference_stats().fail().count(), 0u);
  EXPECT_EQ(v2.version(), "2");
  EXPECT_EQ(v2.inference_stats().success().count(), 2u);
  EXPECT_EQ(v2.inference_stats().fail().count(), 1u);
  EXPECT_EQ(v2.inference_count(), 4u);  // rows
  EXPECT_EQ(v2.execution_count(), 2u);
  EXPECT_GT(v2.inference_stats().success().ns(), 0u);
  EXPECT_GE(v2.inference_stats().success().ns(),
            v2.inference_stats().compute_infer().ns());
  EXPECT_GT(v2.last_inference(), 0u);

  // One version, every model, and the errors.
  req.set_version("1");
  resp.Clear();
  ASSERT_TRUE(core_->ModelStatistics(req, &resp).ok());
  ASSERT_EQ(resp.model_stats_size(), 1);
  EXPECT_EQ(resp.model_stats(0).version(), "1");
  resp.Clear();
  ASSERT_TRUE(core_->ModelStatistics({}, &resp).ok());
  EXPECT_EQ(resp.model_stats_size(), 3);  // clf 1, 2 and reg 1
  EXPECT_EQ(resp.model_stats(2).inference_stats().success().count(), 0u);
  req.set_name("nope");
  EXPECT_TRUE(absl::IsNotFound(core_->ModelStatistics(req, &resp)));
}

TEST_F(KServeCoreTest, RepositoryIndexListsVersionsAndRefusedOnes) {
  // A corrupt version 3 of clf: refused for good, listed UNAVAILABLE.
  ASSERT_EQ(*publisher_->Publish(MakeSnapshot(clf_, 9)), 3);
  ASSERT_TRUE(publisher_->CorruptForTesting(clf_, 3).ok());
  ASSERT_TRUE(manager_->SyncAllForTesting().ok());

  kserve::RepositoryIndexResponse resp;
  ASSERT_TRUE(core_->RepositoryIndex({}, &resp).ok());
  std::vector<std::string> lines;
  for (const auto& m : resp.models()) {
    lines.push_back(m.name() + "/" + m.version() + "/" + m.state());
  }
  EXPECT_THAT(lines, ::testing::UnorderedElementsAre(
                         clf_ + "/1/READY", clf_ + "/2/READY",
                         clf_ + "/3/UNAVAILABLE", reg_ + "/1/READY"));
  for (const auto& m : resp.models()) {
    if (m.state() == "UNAVAILABLE") {
      EXPECT_FALSE(m.reason().empty());
    }
  }

  kserve::RepositoryIndexRequest ready_only;
  ready_only.set_ready(true);
  resp.Clear();
  ASSERT_TRUE(core_->RepositoryIndex(ready_only, &resp).ok());
  EXPECT_EQ(resp.models_size(), 3);

  kserve::RepositoryIndexRequest other;
  other.set_repository_name("elsewhere");
  EXPECT_TRUE(absl::IsNotFound(core_->RepositoryIndex(other, &resp)));
}

TEST_F(KServeCoreTest, ReadinessEndsWhenTheServerStopsServing) {
  ASSERT_TRUE(manager_->Start().ok());
  ASSERT_TRUE(manager_->WaitUntilReady(absl::Seconds(10)));
  EXPECT_TRUE(core_->Ready());
  core_->StopServing();  // draining: probes must fail, requests still work
  EXPECT_FALSE(core_->Ready());
  kserve::ModelInferResponse resp;
  EXPECT_TRUE(
      core_->ModelInfer(Infer(clf_, RandomFeatures(4, 2), 1, 4), &resp).ok());
}

TEST_F(KServeCoreTest, ServerMetadataNamesTheExtensions) {
  kserve::ServerMetadataResponse resp;
  core_->ServerMetadata(&resp);
  EXPECT_EQ(resp.name(), "bnserve");
  EXPECT_THAT(resp.extensions(),
              ::testing::IsSupersetOf(
                  {"model_configuration", "statistics", "model_repository"}));
}

}  // namespace
}  // namespace bnserve::inference
