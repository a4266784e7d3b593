// The trainer's dashboard on its HTTP port: TrainerHttpHandler over a real
// JobManager (in-memory store): the page and assets, /api/jobs and
// /api/jobs/{job}/history (numbers compared with the job manager's own
// answers), the bearer token, errors; and a TrainerServer with its HTTP
// port bound.
#include "server/trainer/trainer_http.h"

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/trainer/trainer_server.h"
#include "store/store.h"

namespace bnserve::server {
namespace {

using Json = nlohmann::json;

v1::CreateJobRequest SmallJob() {
  v1::CreateJobRequest r;
  r.set_model("dash");
  r.mutable_spec()->set_input_features(4);
  r.mutable_spec()->set_task(v1::TASK_CLASSIFICATION);
  r.mutable_spec()->set_output_dim(3);
  r.mutable_spec()->add_hidden(6);
  r.mutable_spec()->set_input_norm(true);
  r.mutable_optimizer()->set_learning_rate(0.05f);
  r.mutable_publish()->set_every_n_steps(3);
  r.set_seed(7);
  return r;
}

v1::Minibatch RandomBatch(int rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist;
  v1::Minibatch mb;
  mb.set_rows(rows);
  mb.set_cols(4);
  for (int i = 0; i < rows * 4; ++i) mb.add_features(dist(rng));
  for (int i = 0; i < rows; ++i) mb.add_labels(static_cast<int>(rng() % 3));
  return mb;
}

class TrainerHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    store_ = *store::OpenStore(absl::StrCat("mem://trainer-http-", counter++));
    jobs_ = std::make_unique<JobManager>(store_.get());
  }
  HttpResponse Get(const std::string& path, const TokenAuth& auth,
                   const std::string* authorization = nullptr) {
    TrainerHttpHandler handler(jobs_.get(), &auth);
    return handler.Handle({"GET", path, authorization, ""});
  }
  // A job trained `steps` steps (publishing every 3).
  v1::Job Train(int steps) {
    v1::Job job = *jobs_->CreateJob(SmallJob());
    auto session = *jobs_->OpenTrainingSession(job.job_id());
    for (int s = 0; s < steps; ++s) {
      EXPECT_TRUE(session->Step(RandomBatch(8, s)).ok());
    }
    return *jobs_->GetJob(job.job_id());
  }

  std::unique_ptr<store::SnapshotStore> store_;
  std::unique_ptr<JobManager> jobs_;
  TokenAuth no_auth_;
};

TEST_F(TrainerHttpTest, ServesThePageAndItsAssetsWithoutAToken) {
  TokenAuth auth("s3cret");
  HttpResponse page = Get("/", auth);
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("data-page=\"trainer\""), std::string::npos);
  EXPECT_EQ(page.body.find("s3cret"), std::string::npos);
  bool csp = false;
  for (const auto& [name, value] : page.headers) {
    if (name == "Content-Security-Policy") {
      csp = value.find("script-src 'self'") != std::string::npos;
    }
  }
  EXPECT_TRUE(csp);
  HttpResponse js = Get("/dashboard.js", auth);
  EXPECT_EQ(js.status, 200);
  EXPECT_EQ(js.content_type, "text/javascript; charset=utf-8");
  EXPECT_NE(js.body.find("function lineChart"), std::string::npos);
  EXPECT_EQ(Get("/dashboard.css", auth).status, 200);
  EXPECT_EQ(Get("/favicon.svg", auth).content_type, "image/svg+xml");
  TrainerHttpHandler handler(jobs_.get(), &auth);
  EXPECT_EQ(handler.Handle({"POST", "/", nullptr, ""}).status, 400);
}

TEST_F(TrainerHttpTest, JobsAndHistoryMatchTheJobManager) {
  const v1::Job job = Train(7);
  HttpResponse list = Get("/api/jobs", no_auth_);
  ASSERT_EQ(list.status, 200) << list.body;
  const Json jobs = Json::parse(list.body);
  EXPECT_EQ(jobs["history_points"], kJobHistoryPoints);
  ASSERT_EQ(jobs["jobs"].size(), 1u);
  const Json& j = jobs["jobs"][0];
  EXPECT_EQ(j["job_id"], job.job_id());
  EXPECT_EQ(j["model"], "dash");
  EXPECT_EQ(j["state"], "IDLE");  // the stream closed
  EXPECT_EQ(j["steps"], 7);
  EXPECT_EQ(j["examples_seen"], 56);
  EXPECT_DOUBLE_EQ(j["last_loss"].get<double>(), job.last_loss());
  EXPECT_EQ(j["last_published_version"], 2);  // steps 3 and 6

  HttpResponse r = Get("/api/jobs/" + job.job_id() + "/history", no_auth_);
  ASSERT_EQ(r.status, 200) << r.body;
  const Json h = Json::parse(r.body);
  EXPECT_EQ(h["job"]["steps"], 7);
  EXPECT_EQ(h["stride"], 1);
  EXPECT_EQ(h["capacity"], kJobHistoryPoints);
  // Input normalization (layer 0) and the hidden batch norm (dense 1, bn 2).
  ASSERT_EQ(h["batch_norm"].size(), 2u);
  EXPECT_EQ(h["batch_norm"][0]["layer"], 0);
  EXPECT_EQ(h["batch_norm"][0]["features"], 4);
  EXPECT_EQ(h["batch_norm"][0]["units"], kDashboardUnits);
  EXPECT_EQ(h["batch_norm"][1]["layer"], 2);
  EXPECT_EQ(h["batch_norm"][1]["average"], "ema");
  ASSERT_EQ(h["points"].size(), 7u);
  const Json& last = h["points"][6];
  EXPECT_EQ(last["step"], 7);
  EXPECT_DOUBLE_EQ(last["loss"].get<double>(), job.last_loss());
  EXPECT_DOUBLE_EQ(last["accuracy"].get<double>(), job.last_accuracy());
  ASSERT_EQ(last["bn"].size(), 2u);
  EXPECT_EQ(last["bn"][1]["running_mean"].size(), 4u);
  EXPECT_EQ(last["bn"][1]["batch_var"].size(), 4u);
  EXPECT_EQ(h["latest"]["step"], 7);
  ASSERT_EQ(h["publishes"].size(), 2u);
  EXPECT_EQ(h["publishes"][0]["step"], 3);
  EXPECT_EQ(h["publishes"][0]["version"], 1);
  EXPECT_EQ(h["publishes"][1]["step"], 6);
  EXPECT_EQ(h["publishes"][1]["version"], 2);
}

TEST_F(TrainerHttpTest, MetricsExposeTheJobsForPrometheus) {
  const v1::Job job = Train(7);
  HttpResponse r = Get("/metrics", no_auth_);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  const std::string labels =
      absl::StrCat("{job=\"", job.job_id(), "\",model=\"dash\"} ");
  EXPECT_NE(r.body.find("bnserve_trainer_jobs{state=\"idle\"} 1\n"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("bnserve_trainer_jobs{state=\"training\"} 0\n"),
            std::string::npos);
  EXPECT_EQ(r.body.find("STATE_UNSPECIFIED"), std::string::npos);
  EXPECT_NE(r.body.find("bnserve_trainer_job_steps" + labels + "7\n"),
            std::string::npos);
  EXPECT_NE(r.body.find("bnserve_trainer_job_examples_seen" + labels + "56\n"),
            std::string::npos);
  EXPECT_NE(
      r.body.find("bnserve_trainer_job_published_version" + labels + "2\n"),
      std::string::npos);
  EXPECT_NE(r.body.find("# TYPE bnserve_trainer_job_loss gauge\n"),
            std::string::npos);
  TokenAuth auth("s3cret");
  EXPECT_EQ(Get("/metrics", auth).status, 401);
}

TEST_F(TrainerHttpTest, AuthProbeAnswersWithoutTheToken) {
  TokenAuth auth("s3cret");
  HttpResponse r = Get("/api/auth", auth);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{\"token_required\":true,\"token_accepted\":false}");
  const std::string right = "Bearer s3cret";
  EXPECT_EQ(Get("/api/auth", auth, &right).body,
            "{\"token_required\":true,\"token_accepted\":true}");
  EXPECT_EQ(Get("/api/auth", no_auth_).body,
            "{\"token_required\":false,\"token_accepted\":true}");
}

TEST_F(TrainerHttpTest, EndpointsNeedTheTokenWhenOneIsConfigured) {
  const v1::Job job = Train(2);
  TokenAuth auth("s3cret");
  HttpResponse denied = Get("/api/jobs", auth);
  EXPECT_EQ(denied.status, 401);
  EXPECT_NE(denied.body.find("\"error\""), std::string::npos);
  const std::string wrong = "Bearer nope", right = "Bearer s3cret";
  EXPECT_EQ(Get("/api/jobs", auth, &wrong).status, 401);
  EXPECT_EQ(Get("/api/jobs/" + job.job_id() + "/history", auth).status, 401);
  EXPECT_EQ(Get("/api/jobs", auth, &right).status, 200);
  EXPECT_EQ(Get("/api/jobs/" + job.job_id() + "/history", auth, &right).status,
            200);
}

TEST_F(TrainerHttpTest, UnknownJobsAndPathsAre404) {
  HttpResponse r = Get("/api/jobs/job-99/history", no_auth_);
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.body.find("no job 'job-99'"), std::string::npos) << r.body;
  EXPECT_EQ(Get("/api/jobs//history", no_auth_).status, 404);
  EXPECT_EQ(Get("/api/jobs/a/b/history", no_auth_).status, 404);
  HttpResponse other = Get("/v2/models", no_auth_);
  EXPECT_EQ(other.status, 404);
  EXPECT_NE(other.body.find("/api/jobs"), std::string::npos);
  TrainerHttpHandler handler(jobs_.get(), &no_auth_);
  EXPECT_EQ(handler.Handle({"DELETE", "/api/jobs", nullptr, ""}).status, 400);
}

TEST(TrainerServerHttpTest, ServesTheDashboardOnItsHttpPort) {
  TrainerServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.store_uri = "mem://trainer-http-server";
  options.http_host = "127.0.0.1";
  options.http_port = TrainerServerOptions::kEphemeralPort;
  auto server = TrainerServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->http_port(), 0);
  httplib::Client client("127.0.0.1", (*server)->http_port());
  auto page = client.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_TRUE(page->has_header("Content-Security-Policy"));
  auto jobs = client.Get("/api/jobs");
  ASSERT_TRUE(jobs);
  EXPECT_EQ(jobs->status, 200);
  EXPECT_EQ(Json::parse(jobs->body)["jobs"].size(), 0u);
  (*server)->Shutdown(absl::Seconds(1));

  options.http_port = 0;  // off
  auto off = TrainerServer::Start(options);
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ((*off)->http_port(), 0);
}

}  // namespace
}  // namespace bnserve::server
