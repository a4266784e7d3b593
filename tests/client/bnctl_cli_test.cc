// Runs the built bnctl binary (BNCTL_PATH) as a subprocess:
//  * --help for every command, usage errors (exit 2), RPC errors (exit 1,
//    `error: CODE: message` on stderr);
//  * train / predict / registry / health against fake in-process Trainer,
//    Inference and Health services on a loopback port, checking what bnctl
//    sent (CreateJob fields, minibatch sizes, per-epoch shuffling, labels,
//    the bearer token) and the --json it printed;
//  * export / import through a file store.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "bnserve/v1/inference.grpc.pb.h"
#include "bnserve/v1/trainer.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/common/skip.h"

namespace bnserve::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

// --- running bnctl -------------------------------------------------------

struct Result {
  int code = -1;
  std::string out;
  std::string err;
  Json json() const {
    // Exactly one JSON object: one line.
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
    return Json::parse(out);
  }
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

std::string Quote(const std::string& arg) {
  return "'" + absl::StrReplaceAll(arg, {{"'", "'\\''"}}) + "'";
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "bnctl_test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string operator/(const std::string& name) const {
    return path_ + "/" + name;
  }

 private:
  std::string path_;
};

Result RunBnctl(const std::vector<std::string>& args, const TempDir& tmp) {
  std::string command = Quote(BNCTL_PATH);
  for (const std::string& a : args) command += " " + Quote(a);
  const std::string out = tmp / "stdout", err = tmp / "stderr";
  command += " >" + Quote(out) + " 2>" + Quote(err) + " </dev/null";
  const int rc = std::system(command.c_str());
  Result r;
  r.code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = ReadFile(out);
  r.err = ReadFile(err);
  return r;
}

// --- fake servers --------------------------------------------------------

// What one Train stream carried.
struct StreamRecord {
  std::string job_id;
  std::vector<int> batch_rows;
  std::vector<int> row_ids;  // feature 0 of every row, in sending order
  std::vector<int> labels;
  std::vector<float> targets;
  int requests = 0;  // TrainRequests (each may pack several minibatches)
};

class FakeTrainer final : public v1::Trainer::Service {
 public:
  grpc::Status CreateJob(grpc::ServerContext*, const v1::CreateJobRequest* req,
                         v1::Job* job) override {
    absl::MutexLock lock(&mu_);
    jobs_.push_back(*req);
    job->set_job_id(absl::StrCat("job-", jobs_.size()));
    job->set_model(req->model());
    job->set_state(v1::Job::IDLE);
    return grpc::Status::OK;
  }

  grpc::Status Train(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::TrainProgress, v1::TrainRequest>* stream)
      override {
    StreamRecord record;
    v1::TrainRequest req;
    int64_t step = 0, examples = 0, version = 0;
    int64_t every = 0;
    while (stream->Read(&req)) {
      ++record.requests;
      if (req.step() != step + 1) {
        return {grpc::StatusCode::FAILED_PRECONDITION,
                absl::StrCat("request numbered ", req.step(), " after step ",
                             step)};
      }
      // Its minibatches: `batch`, then `batches` (TrainRequest).
      std::vector<const v1::Minibatch*> minibatches;
      if (req.has_batch() || req.batches_size() == 0) {
        minibatches.push_back(&req.batch());
      }
      for (const v1::Minibatch& b : req.batches()) minibatches.push_back(&b);
      for (const v1::Minibatch* b : minibatches) {
        grpc::Status status =
            Step(req, *b, every, stream, record, step, examples, version);
        if (!status.ok()) return status;
      }
    }
    v1::TrainProgress last;
    last.set_step(step);
    last.set_examples_seen(examples);
    last.set_published(true);
    last.set_last_published_version(NextVersion());
    stream->Write(last);
    absl::MutexLock lock(&mu_);
    streams_.push_back(std::move(record));
    return grpc::Status::OK;
  }

  // One minibatch of a stream: checked, recorded, answered.
  grpc::Status Step(
      const v1::TrainRequest& req, const v1::Minibatch& b, int64_t& every,
      grpc::ServerReaderWriter<v1::TrainProgress, v1::TrainRequest>* stream,
      StreamRecord& record, int64_t& step, int64_t& examples,
      int64_t& version) {
    if (step == 0) {
      if (req.job_id().empty()) {
        return {grpc::StatusCode::INVALID_ARGUMENT, "first request: job_id"};
      }
      record.job_id = req.job_id();
      absl::MutexLock lock(&mu_);
      every = jobs_.back().publish().every_n_steps();
    }
    if (b.rows() < 2) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "minibatch of one row"};
    }
    std::vector<float> features(b.features().begin(), b.features().end());
    if (!b.features_f32().empty()) {
      features.resize(b.features_f32().size() / sizeof(float));
      std::memcpy(features.data(), b.features_f32().data(),
                  features.size() * sizeof(float));
    }
    if (std::ssize(features) != int64_t{b.rows()} * b.cols() ||
        (b.labels_size() != b.rows() && b.targets_size() != b.rows())) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "ragged minibatch"};
    }
    for (int label : b.labels()) {
      if (label == 99) {
        return {grpc::StatusCode::INVALID_ARGUMENT, "label 99 is cursed"};
      }
    }
    record.batch_rows.push_back(b.rows());
    for (int r = 0; r < b.rows(); ++r) {
      record.row_ids.push_back(static_cast<int>(features[r * b.cols()]));
    }
    record.labels.insert(record.labels.end(), b.labels().begin(),
                         b.labels().end());
    record.targets.insert(record.targets.end(), b.targets().begin(),
                          b.targets().end());
    ++step;
    examples += b.rows();
    v1::TrainProgress p;
    p.set_step(step);
    p.set_loss(1.0 / static_cast<double>(step));
    p.set_accuracy(0.75);
    p.set_examples_per_second(1000);
    p.set_examples_seen(examples);
    if (every > 0 && step % every == 0) {
      version = NextVersion();
      p.set_published(true);
    }
    p.set_last_published_version(version);
    stream->Write(p);
    return grpc::Status::OK;
  }

  grpc::Status Recalibrate(grpc::ServerContext*,
                           grpc::ServerReader<v1::RecalibrateRequest>* reader,
                           v1::PublishResponse* response) override {
    v1::RecalibrateRequest req;
    int64_t rows = 0;
    bool first = true;
    while (reader->Read(&req)) {
      if (first && req.job_id().empty()) {
        return {grpc::StatusCode::INVALID_ARGUMENT, "first request: job_id"};
      }
      first = false;
      rows += req.batch().rows();
    }
    response->set_model("m");
    response->set_version(NextVersion());
    response->set_stats_examples(rows);
    absl::MutexLock lock(&mu_);
    recalibrated_rows_ = rows;
    return grpc::Status::OK;
  }

  grpc::Status ListVersions(grpc::ServerContext*,
                            const v1::ListVersionsRequest* req,
                            v1::ListVersionsResponse* resp) override {
    absl::MutexLock lock(&mu_);
    resp->set_model(req->model());
    for (int64_t v = 1; v <= versions_; ++v) {
      v1::VersionInfo* info = resp->add_versions();
      info->set_version(v);
      if (v == 1) info->add_labels("stable");
    }
    return grpc::Status::OK;
  }

  grpc::Status SetLabel(grpc::ServerContext*, const v1::SetLabelRequest* req,
                        v1::SetLabelResponse*) override {
    absl::MutexLock lock(&mu_);
    if (req->version() > versions_) {
      return {grpc::StatusCode::NOT_FOUND, "no such version"};
    }
    labels_[req->label()] = req->version();
    return grpc::Status::OK;
  }

  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*,
                        v1::ListJobsResponse* resp) override {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < jobs_.size(); ++i) {
      v1::Job* job = resp->add_jobs();
      job->set_job_id(absl::StrCat("job-", i + 1));
      job->set_model(jobs_[i].model());
      job->set_state(v1::Job::IDLE);
      job->set_steps(5);
    }
    return grpc::Status::OK;
  }

  grpc::Status CancelJob(grpc::ServerContext*, const v1::CancelJobRequest* req,
                         v1::Job*) override {
    return {grpc::StatusCode::NOT_FOUND,
            absl::StrCat("no job ", req->job_id())};
  }

  // Only job-1 exists; job-2 is training.
  grpc::Status DeleteJob(grpc::ServerContext*, const v1::DeleteJobRequest* req,
                         v1::DeleteJobResponse*) override {
    if (req->job_id() == "job-2") {
      return {grpc::StatusCode::FAILED_PRECONDITION,
              "job job-2 is training; cancel it first"};
    }
    if (req->job_id() != "job-1") {
      return {grpc::StatusCode::NOT_FOUND,
              absl::StrCat("no job ", req->job_id())};
    }
    absl::MutexLock lock(&mu_);
    deleted_jobs_.push_back(req->job_id());
    return grpc::Status::OK;
  }

  std::vector<std::string> deleted_jobs() {
    absl::MutexLock lock(&mu_);
    return deleted_jobs_;
  }
  std::vector<v1::CreateJobRequest> jobs() {
    absl::MutexLock lock(&mu_);
    return jobs_;
  }
  std::vector<StreamRecord> streams() {
    absl::MutexLock lock(&mu_);
    return streams_;
  }
  int64_t recalibrated_rows() {
    absl::MutexLock lock(&mu_);
    return recalibrated_rows_;
  }
  std::map<std::string, int64_t> labels() {
    absl::MutexLock lock(&mu_);
    return labels_;
  }

 private:
  int64_t NextVersion() {
    absl::MutexLock lock(&mu_);
    return ++versions_;
  }

  absl::Mutex mu_;
  std::vector<v1::CreateJobRequest> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<StreamRecord> streams_ ABSL_GUARDED_BY(mu_);
  int64_t versions_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t recalibrated_rows_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int64_t> labels_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> deleted_jobs_ ABSL_GUARDED_BY(mu_);
};

// Model "cls": 3 features, class = feature 0 mod 3, version 7 (or the
// pinned one). Model "reg": outputs feature 0 + 1, version 4.
class FakeInference final : public v1::Inference::Service {
 public:
  explicit FakeInference(std::string token) : token_(std::move(token)) {}

  grpc::Status Predict(grpc::ServerContext* context,
                       const v1::PredictRequest* req,
                       v1::PredictResponse* resp) override {
    if (!token_.empty()) {
      auto it = context->client_metadata().find("authorization");
      if (it == context->client_metadata().end() ||
          std::string(it->second.data(), it->second.size()) !=
              "Bearer " + token_) {
        return {grpc::StatusCode::UNAUTHENTICATED, "bad or missing token"};
      }
    }
    if (req->model() != "cls" && req->model() != "reg") {
      return {grpc::StatusCode::NOT_FOUND, "unknown model " + req->model()};
    }
    if (req->features_size() != 3) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              absl::StrCat("expected 3 features, got ", req->features_size())};
    }
    resp->set_model(req->model());
    const float x0 = req->features(0);
    if (req->model() == "reg") {
      resp->set_version(4);
      resp->add_outputs(x0 + 1.0f);
      return grpc::Status::OK;
    }
    resp->set_version(req->select().has_version() ? req->select().version()
                                                  : 7);
    const int cls = static_cast<int>(x0) % 3;
    for (int k = 0; k < 3; ++k) {
      resp->add_outputs(k == cls ? 2.0f : 0.0f);
      resp->add_probabilities(k == cls ? 0.8f : 0.1f);
    }
    resp->set_class_id(cls);
    resp->set_class_name(absl::StrCat(cls));
    return grpc::Status::OK;
  }

 private:
  const std::string token_;
};

// 21 rows: id, f1, f2, label with label = id % 3 except every fifth row.
std::string ClassificationCsv() {
  std::string csv = "id,f1,f2,label\n";
  for (int i = 0; i < 21; ++i) {
    const int label = i % 5 == 0 ? (i + 1) % 3 : i % 3;
    absl::StrAppend(&csv, i, ",", i * 0.5, ",", -i, ",", label, "\n");
  }
  return csv;
}

int LabelOf(int id) { return id % 5 == 0 ? (id + 1) % 3 : id % 3; }

std::string RegressionCsv() {
  std::string csv = "id,f1,f2,label\n";
  for (int i = 0; i < 10; ++i) {
    absl::StrAppend(&csv, i, ",1,2,", i, "\n");
  }
  return csv;
}

class BnctlServerTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(""); }

  void Start(const std::string& token) {
    if (server_) server_->Shutdown();
    inference_ = std::make_unique<FakeInference>(token);
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&trainer_);
    builder.RegisterService(inference_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    address_ = absl::StrCat("127.0.0.1:", port);
    server_->GetHealthCheckService()->SetServingStatus(true);
    WriteFile(tmp_ / "train.csv", ClassificationCsv());
    WriteFile(tmp_ / "reg.csv", RegressionCsv());
  }

  void TearDown() override { server_->Shutdown(); }

  Result Train(std::vector<std::string> extra) {
    std::vector<std::string> args = {
        "train",  "--trainer",        address_,       "--model", "m",
        "--data", tmp_ / "train.csv", "--batch-size", "4"};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunBnctl(args, tmp_);
  }

  TempDir tmp_;
  FakeTrainer trainer_;
  std::unique_ptr<FakeInference> inference_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

// --- train ---------------------------------------------------------------

TEST_F(BnctlServerTest, TrainCreatesTheJobFromTheFlags) {
  Result r =
      Train({"--json", "--hidden", "8,4", "--activation", "tanh", "--optimizer",
             "adam", "--lr", "0.005", "--weight-decay", "0.0001",
             "--bn-momentum", "0.05", "--seed", "42", "--epochs", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<v1::CreateJobRequest> jobs = trainer_.jobs();
  ASSERT_EQ(jobs.size(), 1u);
  const v1::CreateJobRequest& job = jobs[0];
  EXPECT_EQ(job.model(), "m");
  EXPECT_EQ(job.spec().input_features(), 3);
  EXPECT_EQ(job.spec().task(), v1::TASK_CLASSIFICATION);
  EXPECT_EQ(job.spec().output_dim(), 3);
  EXPECT_THAT(job.spec().hidden(), ElementsAre(8, 4));
  EXPECT_EQ(job.spec().hidden_activation(), v1::ACTIVATION_TANH);
  EXPECT_FLOAT_EQ(job.spec().batch_norm().momentum(), 0.05f);
  EXPECT_EQ(job.optimizer().kind(), v1::OptimizerSpec::ADAM);
  EXPECT_FLOAT_EQ(job.optimizer().learning_rate(), 0.005f);
  EXPECT_FALSE(job.optimizer().has_momentum());
  EXPECT_FLOAT_EQ(job.optimizer().weight_decay(), 0.0001f);
  EXPECT_EQ(job.seed(), 42u);
  EXPECT_TRUE(job.publish().on_stream_close());
  EXPECT_EQ(job.publish().every_n_steps(), 0);
  EXPECT_EQ(job.start_case(), v1::CreateJobRequest::START_NOT_SET);
  EXPECT_THAT(job.feature_names(), ElementsAre("id", "f1", "f2"));
  EXPECT_THAT(job.class_names(), ElementsAre("0", "1", "2"));

  Json j = r.json();
  EXPECT_EQ(j["model"], "m");
  EXPECT_EQ(j["job_id"], "job-1");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["steps"], 10);
  EXPECT_EQ(j["examples"], 42);
  EXPECT_DOUBLE_EQ(j["train_accuracy"].get<double>(), 0.75);
  // Row-weighted mean loss of the last epoch (steps 6..10, 4,4,4,4,5 rows).
  const double loss = (4.0 / 6 + 4.0 / 7 + 4.0 / 8 + 4.0 / 9 + 5.0 / 10) / 21;
  EXPECT_NEAR(j["final_loss"].get<double>(), loss, 1e-12);
  EXPECT_FALSE(j.contains("recalibrated_version"));
}

TEST_F(BnctlServerTest, TrainStreamsEveryRowOncePerEpochOnOneStream) {
  Result r = Train({"--epochs", "3", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<StreamRecord> streams = trainer_.streams();
  ASSERT_EQ(streams.size(), 1u);
  const StreamRecord& s = streams[0];
  EXPECT_EQ(s.job_id, "job-1");
  // 21 rows in batches of 4: the last row is merged, never sent alone.
  EXPECT_THAT(s.batch_rows,
              ElementsAre(4, 4, 4, 4, 5, 4, 4, 4, 4, 5, 4, 4, 4, 4, 5));
  // 15 small minibatches travel in one request (TrainRequest.batches).
  EXPECT_EQ(s.requests, 1);
  ASSERT_EQ(s.row_ids.size(), 63u);
  std::vector<std::vector<int>> epochs;
  for (int e = 0; e < 3; ++e) {
    std::vector<int> ids(s.row_ids.begin() + 21 * e,
                         s.row_ids.begin() + 21 * (e + 1));
    std::vector<int> sorted = ids;
    std::sort(sorted.begin(), sorted.end());
    for (int i = 0; i < 21; ++i) ASSERT_EQ(sorted[i], i) << "epoch " << e;
    epochs.push_back(ids);
  }
  // Shuffled, and differently every epoch.
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  std::vector<int> file_order(21);
  std::iota(file_order.begin(), file_order.end(), 0);
  EXPECT_NE(epochs[0], file_order);
  // Labels travel with their rows.
  ASSERT_EQ(s.labels.size(), s.row_ids.size());
  for (size_t i = 0; i < s.labels.size(); ++i) {
    EXPECT_EQ(s.labels[i], LabelOf(s.row_ids[i]));
  }
  EXPECT_TRUE(s.targets.empty());
}

TEST_F(BnctlServerTest, TrainShufflingDependsOnlyOnTheSeed) {
  ASSERT_EQ(Train({"--seed", "5", "--epochs", "2"}).code, 0);
  ASSERT_EQ(Train({"--seed", "5", "--epochs", "2"}).code, 0);
  ASSERT_EQ(Train({"--seed", "6", "--epochs", "2"}).code, 0);
  std::vector<StreamRecord> s = trainer_.streams();
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].row_ids, s[1].row_ids);
  EXPECT_NE(s[0].row_ids, s[2].row_ids);
}

TEST_F(BnctlServerTest, TrainNoShuffleKeepsFileOrder) {
  ASSERT_EQ(Train({"--no-shuffle", "--epochs", "2"}).code, 0);
  std::vector<StreamRecord> s = trainer_.streams();
  ASSERT_EQ(s.size(), 1u);
  for (int i = 0; i < 42; ++i) EXPECT_EQ(s[0].row_ids[i], i % 21);
}

TEST_F(BnctlServerTest, TrainTextOutputAndPlainProgressLines) {
  Result r = Train({"--epochs", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("published model m version 1"));
  // stderr is not a terminal here: one plain line per epoch, no bar.
  EXPECT_THAT(r.err, HasSubstr("epoch 1/2"));
  EXPECT_THAT(r.err, HasSubstr("epoch 2/2"));
  EXPECT_THAT(r.err, HasSubstr("accuracy 0.7500"));
  EXPECT_THAT(r.err, Not(HasSubstr("\r")));
}

TEST_F(BnctlServerTest, TrainRecalibrateStreamsTheTrainingSet) {
  Result r = Train({"--recalibrate", "--json", "--epochs", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  Json j = r.json();
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["recalibrated_version"], 2);
  EXPECT_EQ(j["recalibrated_examples"], 21);
  EXPECT_EQ(trainer_.recalibrated_rows(), 21);
}

TEST_F(BnctlServerTest, RecalibrateAStoredVersionWithUnlabeledData) {
  WriteFile(tmp_ / "unlabeled.csv", "a,b\n1,2\n3,4\n5,6\n");
  Result r = RunBnctl(
      {"recalibrate", "--trainer", address_, "--model", "m", "--version", "3",
       "--data", tmp_ / "unlabeled.csv", "--set-label", "adapted", "--json"},
      tmp_);
  ASSERT_EQ(r.code, 0) << r.err;
  Json j = r.json();
  // A job continuing from version 3, recalibrated over every column (no
  // label column), then forgotten; the label points at the result.
  ASSERT_EQ(trainer_.jobs().size(), 1u);
  EXPECT_EQ(trainer_.jobs()[0].model(), "m");
  EXPECT_EQ(trainer_.jobs()[0].from_version(), 3);
  EXPECT_EQ(trainer_.recalibrated_rows(), 3);
  EXPECT_EQ(trainer_.deleted_jobs(), std::vector<std::string>{"job-1"});
  EXPECT_EQ(trainer_.labels().at("adapted"), j["version"].get<int64_t>());

  r = RunBnctl({"recalibrate", "--trainer", address_, "--model", "m", "--data",
                tmp_ / "unlabeled.csv"},
               tmp_);
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("one of --version N or --label L"));
}

TEST_F(BnctlServerTest, TrainPublishEveryAndContinueFromVersion) {
  Result r = Train({"--publish-every", "5", "--from-version", "3", "--momentum",
                    "0.5", "--json", "--epochs", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  const v1::CreateJobRequest job = trainer_.jobs().at(0);
  EXPECT_EQ(job.publish().every_n_steps(), 5);
  EXPECT_EQ(job.from_version(), 3);
  EXPECT_TRUE(job.optimizer().has_momentum());
  EXPECT_FLOAT_EQ(job.optimizer().momentum(), 0.5f);
  // The stored model decides the classes when continuing.
  EXPECT_EQ(job.spec().output_dim(), 0);
  EXPECT_EQ(job.class_names_size(), 0);
  // Published at steps 5 and 10, then when the stream closed.
  EXPECT_EQ(r.json()["version"], 3);

  ASSERT_EQ(Train({"--from-label", "stable"}).code, 0);
  EXPECT_EQ(trainer_.jobs().at(1).from_label(), "stable");
}

TEST_F(BnctlServerTest, TrainRegressionSendsTargets) {
  Result r = RunBnctl({"train", "--trainer", address_, "--model", "r", "--data",
                       tmp_ / "reg.csv", "--task", "regression", "--no-shuffle",
                       "--epochs", "1", "--json"},
                      tmp_);
  ASSERT_EQ(r.code, 0) << r.err;
  const v1::CreateJobRequest job = trainer_.jobs().at(0);
  EXPECT_EQ(job.spec().task(), v1::TASK_REGRESSION);
  EXPECT_EQ(job.spec().output_dim(), 1);
  EXPECT_EQ(job.class_names_size(), 0);
  const StreamRecord s = trainer_.streams().at(0);
  EXPECT_THAT(s.targets, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9));
  EXPECT_TRUE(s.labels.empty());
  EXPECT_FALSE(r.json().contains("train_accuracy"));
}

TEST_F(BnctlServerTest, TrainRejectsNonIntegerClassLabelsWithTheLine) {
  WriteFile(tmp_ / "bad.csv", "a,b,label\n1,2,0\n3,4,1.5\n5,6,1\n");
  Result r = RunBnctl({"train", "--trainer", address_, "--model", "m", "--data",
                       tmp_ / "bad.csv"},
                      tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: INVALID_ARGUMENT: "));
  EXPECT_THAT(r.err, HasSubstr("bad.csv:3: label 'label' = 1.5"));
  EXPECT_TRUE(trainer_.jobs().empty());
}

TEST_F(BnctlServerTest, TrainReportsBadCsvRowsWithTheLine) {
  WriteFile(tmp_ / "bad.csv", "a,b,label\n1,2,0\n3,x,1\n");
  Result r = RunBnctl({"train", "--trainer", address_, "--model", "m", "--data",
                       tmp_ / "bad.csv"},
                      tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("bad.csv:3: column 'b'"));
}

TEST_F(BnctlServerTest, TrainStreamErrorsEndTheCommand) {
  std::string csv = "a,label\n";
  for (int i = 0; i < 200; ++i) absl::StrAppend(&csv, i, ",", i % 2, "\n");
  absl::StrAppend(&csv, "7,99\n");
  WriteFile(tmp_ / "cursed.csv", csv);
  Result r = RunBnctl({"train", "--trainer", address_, "--model", "m", "--data",
                       tmp_ / "cursed.csv", "--epochs", "50", "--json"},
                      tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: INVALID_ARGUMENT: training stream of "
                               "job job-1: label 99 is cursed"));
  EXPECT_EQ(r.out, "");
}

TEST_F(BnctlServerTest, TrainDrawsAProgressBarOnATerminal) {
  if (std::system("command -v script >/dev/null 2>&1") != 0) {
    BNSERVE_SKIP_OR_FAIL_IN_CI("script(1) not installed (Debian: bsdutils)");
  }
  // script(1) runs bnctl on a pseudo-terminal: stderr is a tty.
  std::string command;
  for (const std::string& a :
       {std::string(BNCTL_PATH), std::string("train"), std::string("--trainer"),
        address_, std::string("--model"), std::string("m"),
        std::string("--data"), tmp_ / "train.csv", std::string("--epochs"),
        std::string("2")}) {
    command += Quote(a) + " ";
  }
  const std::string out = tmp_ / "tty";
  const std::string shell = "script -qec " + Quote(command) + " /dev/null >" +
                            Quote(out) + " 2>&1 </dev/null";
  ASSERT_EQ(std::system(shell.c_str()), 0) << ReadFile(out);
  const std::string tty = ReadFile(out);
  EXPECT_THAT(tty, HasSubstr("\r["));
  EXPECT_THAT(tty, HasSubstr("100% epoch 2/2 step 2/2 loss"));
  EXPECT_THAT(tty, HasSubstr("acc 0.7500"));
  EXPECT_THAT(tty, HasSubstr("published model m version 1"));
  EXPECT_THAT(tty, Not(HasSubstr("epoch 1/2  step")));  // no plain lines
}

// --- predict -------------------------------------------------------------

TEST_F(BnctlServerTest, PredictFileReportsAccuracyVersionsAndLatency) {
  Result r = RunBnctl({"predict", "--server", address_, "--model", "cls",
                       "--data", tmp_ / "train.csv", "--json"},
                      tmp_);
  ASSERT_EQ(r.code, 0) << r.err;
  Json j = r.json();
  EXPECT_EQ(j["model"], "cls");
  EXPECT_EQ(j["examples"], 21);
  EXPECT_DOUBLE_EQ(j["accuracy"].get<double>(), 16.0 / 21.0);
  EXPECT_EQ(j["versions"], Json({{"7", 21}}));
  const Json& lat = j["latency_us"];
  EXPECT_GT(lat["p50"].get<double>(), 0);
  EXPECT_LE(lat["p50"].get<double>(), lat["p90"].get<double>());
  EXPECT_LE(lat["p90"].get<double>(), lat["p99"].get<double>());
  EXPECT_FALSE(j.contains("rmse"));

  Result text = RunBnctl({"predict", "--server", address_, "--model", "cls",
                          "--data", tmp_ / "train.csv", "--version", "5"},
                         tmp_);
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("accuracy 0.7619 (16/21)"));
  EXPECT_THAT(text.out, HasSubstr("versions: 5 (21 examples)"));
  EXPECT_THAT(text.out, HasSubstr("p99"));
}

TEST_F(BnctlServerTest, PredictRegressionReportsRmse) {
  Result r = RunBnctl({"predict", "--server", address_, "--model", "reg",
                       "--data", tmp_ / "reg.csv", "--json"},
                      tmp_);
  ASSERT_EQ(r.code, 0) << r.err;
  Json j = r.json();
  EXPECT_DOUBLE_EQ(j["rmse"].get<double>(), 1.0);
  EXPECT_EQ(j["versions"], Json({{"4", 10}}));
  EXPECT_FALSE(j.contains("accuracy"));
}

TEST_F(BnctlServerTest, PredictOneExample) {
  Result r = RunBnctl({"predict", "--server", address_, "--model", "cls",
                       "--features", "4,1,2", "--json"},
                      tmp_);
  ASSERT_EQ(r.code, 0) << r.err;
  Json j = r.json();
  EXPECT_EQ(j["class_id"], 1);
  EXPECT_EQ(j["version"], 7);
  EXPECT_EQ(j["probabilities"].size(), 3u);
  Result text = RunBnctl(
      {"predict", "--server", address_, "--model", "cls", "--features=-3,1,2"},
      tmp_);
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("version 7: class 0"));
}

TEST_F(BnctlServerTest, PredictErrorsCarryTheGrpcCode) {
  Result r = RunBnctl({"predict", "--server", address_, "--model", "nope",
                       "--features", "1,2,3", "--json"},
                      tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: NOT_FOUND: unknown model nope"));
  EXPECT_EQ(r.out, "");
  WriteFile(tmp_ / "wide.csv", "a,b,c,d,label\n1,2,3,4,0\n");
  r = RunBnctl({"predict", "--server", address_, "--model", "cls", "--data",
                tmp_ / "wide.csv"},
               tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: INVALID_ARGUMENT: "));
  EXPECT_THAT(r.err, HasSubstr("wide.csv:2: expected 3 features"));
  r = RunBnctl({"predict", "--server", address_, "--model", "cls", "--features",
                "1,x,3"},
               tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: INVALID_ARGUMENT: feature 1"));
}

TEST_F(BnctlServerTest, TokenFileSendsTheBearerToken) {
  Start("s3cret");
  Result r = RunBnctl({"predict", "--server", address_, "--model", "cls",
                       "--features", "1,2,3"},
                      tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: UNAUTHENTICATED"));
  WriteFile(tmp_ / "token", "  s3cret\n");
  r = RunBnctl({"predict", "--server", address_, "--model", "cls", "--features",
                "1,2,3", "--token-file", tmp_ / "token"},
               tmp_);
  EXPECT_EQ(r.code, 0) << r.err;
  WriteFile(tmp_ / "empty", "\n");
  r = RunBnctl({"predict", "--server", address_, "--model", "cls", "--features",
                "1,2,3", "--token-file", tmp_ / "empty"},
               tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("is empty"));
}

// --- registry and health -------------------------------------------------

TEST_F(BnctlServerTest, RegistryCommands) {
  ASSERT_EQ(Train({"--epochs", "1"}).code, 0);
  ASSERT_EQ(Train({"--epochs", "1"}).code, 0);
  Result r = RunBnctl(
      {"versions", "--trainer", address_, "--model", "m", "--json"}, tmp_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.json(), Json::parse(R"({"model":"m","versions":[
              {"version":1,"labels":["stable"]},{"version":2,"labels":[]}]})"));
  r = RunBnctl({"versions", "--trainer", address_, "--model", "m"}, tmp_);
  EXPECT_EQ(r.out, "1  stable\n2\n");

  r = RunBnctl({"label", "set", "--trainer", address_, "--model", "m",
                "--label", "canary", "--version", "2", "--json"},
               tmp_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.json()["label"], "canary");
  EXPECT_EQ(trainer_.labels().at("canary"), 2);
  r = RunBnctl({"label", "set", "--trainer", address_, "--model", "m",
                "--label", "canary", "--version", "9"},
               tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: NOT_FOUND: setting the label"));

  r = RunBnctl({"jobs", "--trainer", address_, "--json"}, tmp_);
  ASSERT_EQ(r.code, 0) << r.err;
  Json jobs = r.json()["jobs"];
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[1]["job_id"], "job-2");
  EXPECT_EQ(jobs[1]["state"], "idle");

  r = RunBnctl({"cancel", "--trainer", address_, "--job", "job-9"}, tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: NOT_FOUND: cancelling the job: no job "
                               "job-9"));
}

TEST_F(BnctlServerTest, DeleteJobCallsDeleteJobAndReportsRefusals) {
  Result r = RunBnctl(
      {"delete-job", "--trainer", address_, "--job", "job-1", "--json"}, tmp_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.json(), Json::parse(R"({"job_id":"job-1","deleted":true})"));
  EXPECT_EQ(trainer_.deleted_jobs(), std::vector<std::string>{"job-1"});
  r = RunBnctl({"delete-job", "--trainer", address_, "--job", "job-1"}, tmp_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "deleted job job-1\n");

  r = RunBnctl({"delete-job", "--trainer", address_, "--job", "job-2"}, tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: FAILED_PRECONDITION: deleting the job: "
                               "job job-2 is training; cancel it first"));
  r = RunBnctl({"delete-job", "--trainer", address_, "--job", "job-9"}, tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err,
              HasSubstr("error: NOT_FOUND: deleting the job: no job job-9"));
  EXPECT_EQ(trainer_.deleted_jobs().size(), 2u);
}

TEST_F(BnctlServerTest, HealthExitStatusFollowsServingStatus) {
  Result r = RunBnctl({"health", "--server", address_}, tmp_);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  server_->GetHealthCheckService()->SetServingStatus(false);
  r = RunBnctl({"health", "--server", address_, "--json"}, tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.json()["status"], "NOT_SERVING");
}

// --- TLS and mutual TLS ---------------------------------------------------

// Makes a CA and a server certificate for 127.0.0.1 (plus a client
// certificate) with the openssl command-line tool.
bool MakeCertificates(const TempDir& tmp) {
  const std::string d = tmp / "";
  const std::string script = absl::StrCat(
      "set -e; cd ", Quote(d), "; ",
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem "
      "-days 2 -subj /CN=bnctl-test-ca; ",
      "for n in server client; do ",
      "openssl req -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr "
      "-subj /CN=$n; done; ",
      "echo subjectAltName=IP:127.0.0.1,DNS:localhost > server.ext; ",
      "echo extendedKeyUsage=clientAuth > client.ext; ",
      "for n in server client; do ",
      "openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key "
      "-CAcreateserial -out $n.pem -days 2 -extfile $n.ext; done");
  const std::string command =
      "sh -c " + Quote(script) + " >/dev/null 2>" + Quote(d + "openssl.log");
  return std::system(command.c_str()) == 0;
}

class BnctlTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v openssl >/dev/null 2>&1") != 0) {
      BNSERVE_SKIP_OR_FAIL_IN_CI("openssl not installed");
    }
    ASSERT_TRUE(MakeCertificates(tmp_)) << ReadFile(tmp_ / "openssl.log");
  }

  // Starts a server with the fake inference service (a server needs one
  // registered service) and health; `mutual` requires and
  // verifies client certificates.
  void Start(bool mutual) {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::SslServerCredentialsOptions ssl(
        mutual ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
               : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    if (mutual) ssl.pem_root_certs = ReadFile(tmp_ / "ca.pem");
    ssl.pem_key_cert_pairs.push_back(
        {ReadFile(tmp_ / "server.key"), ReadFile(tmp_ / "server.pem")});
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl),
                             &port);
    builder.RegisterService(&inference_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    server_->GetHealthCheckService()->SetServingStatus(true);
    address_ = absl::StrCat("127.0.0.1:", port);
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  TempDir tmp_;
  FakeInference inference_{""};
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

TEST_F(BnctlTlsTest, TlsWithTheServersCa) {
  Start(/*mutual=*/false);
  Result r = RunBnctl(
      {"health", "--server", address_, "--tls-ca", tmp_ / "ca.pem"}, tmp_);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  // Plaintext against a TLS port fails with the gRPC code.
  r = RunBnctl({"health", "--server", address_}, tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: UNAVAILABLE"));
  // A CA that did not sign the server's certificate is refused.
  r = RunBnctl(
      {"health", "--server", address_, "--tls-ca", tmp_ / "client.pem"}, tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: UNAVAILABLE"));
}

TEST_F(BnctlTlsTest, MutualTlsNeedsTheClientCertificate) {
  Start(/*mutual=*/true);
  Result r = RunBnctl(
      {"health", "--server", address_, "--tls-ca", tmp_ / "ca.pem"}, tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: UNAVAILABLE"));
  r = RunBnctl({"health", "--server", address_, "--tls-ca", tmp_ / "ca.pem",
                "--tls-cert", tmp_ / "client.pem", "--tls-key",
                tmp_ / "client.key", "--json"},
               tmp_);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.json()["status"], "SERVING");
  // A certificate without its key is a usage mistake caught before dialing.
  r = RunBnctl({"health", "--server", address_, "--tls-ca", tmp_ / "ca.pem",
                "--tls-cert", tmp_ / "client.pem"},
               tmp_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("--tls-cert and --tls-key"));
}

// --- no server -----------------------------------------------------------

TEST(BnctlCliTest, UnreachableServerIsUnavailable) {
  TempDir tmp;
  WriteFile(tmp / "t.csv", "a,label\n1,0\n2,1\n");
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"health", "--server", "127.0.0.1:1"},
           {"versions", "--trainer", "127.0.0.1:1", "--model", "m"},
           {"train", "--trainer", "127.0.0.1:1", "--model", "m", "--data",
            tmp / "t.csv"},
           {"predict", "--server", "127.0.0.1:1", "--model", "m", "--features",
            "1"}}) {
    Result r = RunBnctl(args, tmp);
    EXPECT_EQ(r.code, 1) << args[0];
    EXPECT_THAT(r.err, HasSubstr("error: UNAVAILABLE: ")) << args[0];
  }
}

// --input-shape and --layers are checked before any connection: a shape
// that disagrees with the CSV names both numbers, a bad layer token names
// the token, and --layers with --hidden is a usage error.
TEST(BnctlCliTest, ArchitectureErrorsAreCaughtBeforeConnecting) {
  TempDir tmp;
  WriteFile(tmp / "t.csv", "a,b,c,label\n1,2,3,0\n2,3,4,1\n");
  const std::vector<std::string> base = {
      "train", "--trainer", "127.0.0.1:1", "--model",
      "m",     "--data",    tmp / "t.csv"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return RunBnctl(args, tmp);
  };
  Result shape = with({"--input-shape", "1,2,2", "--layers", "flatten"});
  EXPECT_EQ(shape.code, 1);
  EXPECT_THAT(shape.err, HasSubstr("--input-shape 1,2,2 has 4 values but"));
  EXPECT_THAT(shape.err, HasSubstr("has 3 feature columns"));
  Result token = with({"--layers", "conv:8"});
  EXPECT_EQ(token.code, 1);
  EXPECT_THAT(token.err,
              HasSubstr("--layers: \"conv:8\": expected conv:OUT:K"));
  Result both = with({"--layers", "relu", "--hidden", "4"});
  EXPECT_EQ(both.code, 2) << both.err;
}

struct HelpCase {
  std::vector<std::string> command;
  std::vector<std::string> flags;
};

TEST(BnctlCliTest, EveryCommandHasHelp) {
  const std::vector<std::string> tls = {"--tls-ca", "--tls-cert", "--tls-key",
                                        "--token-file", "--json"};
  const std::vector<HelpCase> cases = {
      {{"train"}, {"--trainer",       "--model",        "--data",
                   "--label-column",  "--task",         "--hidden",
                   "--activation",    "--epochs",       "--batch-size",
                   "--optimizer",     "--lr",           "--momentum",
                   "--weight-decay",  "--bn-momentum",  "--seed",
                   "--no-shuffle",    "--from-version", "--from-label",
                   "--publish-every", "--recalibrate"}},
      {{"predict"},
       {"--server", "--model", "--features", "--data", "--version", "--label",
        "--label-column"}},
      {{"models"}, {"--trainer"}},
      {{"versions"}, {"--trainer", "--model"}},
      {{"label", "set"}, {"--trainer", "--model", "--label", "--version"}},
      {{"label", "delete"}, {"--trainer", "--model", "--label"}},
      {{"delete-version"}, {"--trainer", "--model", "--version"}},
      {{"jobs"}, {"--trainer", "--model", "--job"}},
      {{"cancel"}, {"--trainer", "--job"}},
      {{"delete-job"}, {"--trainer", "--job"}},
      {{"publish"}, {"--trainer", "--job"}},
      {{"recalibrate"}, {"--trainer", "--job", "--data", "--batch-size"}},
      {{"health"}, {"--server", "--service"}},
  };
  TempDir tmp;
  for (const HelpCase& c : cases) {
    std::vector<std::string> args = c.command;
    args.push_back("--help");
    Result r = RunBnctl(args, tmp);
    const std::string name = absl::StrJoin(c.command, " ");
    EXPECT_EQ(r.code, 0) << name;
    EXPECT_THAT(r.out, HasSubstr("Usage: bnctl " + name)) << r.out;
    for (const std::string& flag : c.flags) {
      EXPECT_THAT(r.out, HasSubstr(flag)) << name;
    }
    for (const std::string& flag : tls) {
      EXPECT_THAT(r.out, HasSubstr(flag)) << name;
    }
  }
  for (const HelpCase& c :
       std::vector<HelpCase>{{{"export"},
                              {"--store", "--model", "--version", "--label",
                               "--output", "--format", "--json"}},
                             {{"import"},
                              {"--store", "--model", "--from", "--format",
                               "--task", "--classes", "--json"}},
                             {{"label"}, {"set", "delete"}},
                             {{},
                              {"train", "predict", "versions", "label", "jobs",
                               "cancel", "delete-job", "health", "export",
                               "import", "publish", "recalibrate"}}}) {
    std::vector<std::string> args = c.command;
    args.push_back("--help");
    Result r = RunBnctl(args, tmp);
    EXPECT_EQ(r.code, 0);
    for (const std::string& flag : c.flags) EXPECT_THAT(r.out, HasSubstr(flag));
  }
}

TEST(BnctlCliTest, UsageErrorsExitWithTwo) {
  TempDir tmp;
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"bogus"},
      {"train", "--data", "x.csv"},  // no --model
      {"train", "--model", "m", "--data", "x", "--task", "ranking"},
      {"train", "--model", "m", "--data", "x", "--batch-size", "1"},
      {"train", "--model", "m", "--data", "x", "--optimizer", "rmsprop"},
      {"train", "--model", "m", "--data", "x", "--from-version", "1",
       "--from-label", "a"},
      {"train", "--model", "m", "--data", "x", "--hidden", "64,zero"},
      {"train", "--model", "m", "--data", "x", "--no-such-flag"},
      {"predict", "--model", "m"},  // nothing to predict
      {"predict", "--model", "m", "--features", "1", "--data", "x.csv"},
      {"predict", "--model", "m", "--features", "1", "--version", "1",
       "--label", "a"},
      {"label"},
      {"label", "set", "--model", "m", "--label", "a"},  // no --version
      {"cancel"},
      {"delete-job"},                                    // no --job
      {"export", "--model", "m"},                        // no --store
      {"import", "--store", "mem://x", "--model", "m"},  // no --from
      {"import", "--store", "mem://x", "--model", "m", "--from", "m.json",
       "--task", "regression"},  // --task is for ONNX
      {"import", "--store", "mem://x", "--model", "m", "--from", "m.onnx",
       "--task", "regression", "--classes", "a,b"},
      {"import", "--store", "mem://x", "--model", "m", "--from", "m.onnx",
       "--format", "protobuf"},
      {"export", "--store", "mem://x", "--model", "m", "--format", "pb"},
  };
  for (const std::vector<std::string>& args : cases) {
    Result r = RunBnctl(args, tmp);
    EXPECT_EQ(r.code, 2) << absl::StrJoin(args, " ") << "\n" << r.err;
    EXPECT_FALSE(r.err.empty());
    EXPECT_EQ(r.out, "");
  }
}

// --- export / import through a file store --------------------------------

constexpr char kSmallSnapshot[] = R"({
  "format": "bnserve.snapshot.v1", "model": "elsewhere", "version": 12,
  "task": "classification", "input_features": 2,
  "feature_names": ["x", "y"], "classes": ["no", "yes"],
  "layers": [
    {"type": "dense", "in": 2, "out": 3, "weight": [[1,2],[3,4],[5,6]],
     "bias": null},
    {"type": "batch_norm", "features": 3, "gamma": [1,1,1],
     "beta": [0,0.5,0], "running_mean": [0.1,0.2,0.3],
     "running_var": [1,2,3], "eps": 1e-5, "momentum": 0.1,
     "num_batches_tracked": 10, "average": "ema", "variance": "unbiased",
     "stats_source": "ema", "stats_examples": 10},
    {"type": "activation", "fn": "relu"},
    {"type": "dense", "in": 3, "out": 2, "weight": [[1,0,1],[0,1,0]],
     "bias": [0.25, -0.25]}
  ],
  "training": {"job_id": "", "step": 10, "examples_seen": 640, "loss": 0.5,
               "parent_version": 0, "created": null, "origin": "torch"}})";

TEST(BnctlCliTest, ImportThenExportThroughAFileStore) {
  TempDir tmp;
  const std::string store = "file://" + (tmp / "store");
  WriteFile(tmp / "in.json", kSmallSnapshot);
  Result r = RunBnctl({"import", "--store", store, "--model", "mlp", "--from",
                       tmp / "in.json", "--json"},
                      tmp);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.json(), Json::parse(R"({"model":"mlp","version":1})"));
  r = RunBnctl(
      {"import", "--store", store, "--model", "mlp", "--from", tmp / "in.json"},
      tmp);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "imported model mlp version 2\n");

  r = RunBnctl({"export", "--store", store, "--model", "mlp", "--version", "1"},
               tmp);
  ASSERT_EQ(r.code, 0) << r.err;
  Json out = r.json();
  Json in = Json::parse(kSmallSnapshot);
  EXPECT_EQ(out["format"], "bnserve.snapshot.v1");
  EXPECT_EQ(out["model"], "mlp");
  EXPECT_EQ(out["version"], 1);
  EXPECT_EQ(out["layers"], in["layers"]);
  EXPECT_EQ(out["classes"], in["classes"]);
  EXPECT_EQ(out["training"]["origin"], "import");
  EXPECT_EQ(out["training"]["step"], 10);

  r = RunBnctl({"export", "--store", store, "--model", "mlp", "--output",
                tmp / "out.json", "--json"},
               tmp);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.json()["version"], 2);
  EXPECT_EQ(Json::parse(ReadFile(tmp / "out.json"))["layers"], in["layers"]);
}

TEST(BnctlCliTest, ImportRejectsInvalidSnapshots) {
  TempDir tmp;
  const std::string store = tmp / "store";
  WriteFile(tmp / "bad.json",
            absl::StrReplaceAll(
                kSmallSnapshot,
                {{"\"running_var\": [1,2,3]", "\"running_var\": [1,-2,3]"}}));
  Result r = RunBnctl({"import", "--store", store, "--model", "mlp", "--from",
                       tmp / "bad.json"},
                      tmp);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: INVALID_ARGUMENT: "));
  EXPECT_THAT(r.err, HasSubstr("layers[1].running_var[1]: must be >= 0"));
  WriteFile(tmp / "in.json", kSmallSnapshot);
  r = RunBnctl({"import", "--store", store, "--model", "../up", "--from",
                tmp / "in.json"},
               tmp);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: INVALID_ARGUMENT"));
  r = RunBnctl({"export", "--store", store, "--model", "mlp"}, tmp);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: NOT_FOUND"));
  r = RunBnctl({"import", "--store", store, "--model", "mlp", "--from",
                tmp / "missing.json"},
               tmp);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: NOT_FOUND: cannot open"));
}

}  // namespace
}  // namespace bnserve::client
