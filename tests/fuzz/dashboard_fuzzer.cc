// Both dashboards' HTTP request paths without sockets: the trainer's
// TrainerHttpHandler (over a JobManager holding one job trained a few steps,
// with history and a publish) and the inference server's DashboardHttpHandler
// (over a ServableManager serving "clf" with drift samples and Metrics with
// requests), both with the token "fuzz" configured: path routing (assets,
// /api/auth, /api/jobs/{job}/history, /api/models, /api/traffic,
// /api/drift, /metrics), the token check and the JSON builders.
//
// Input: METHOD\nPATH\nAUTHORIZATION (an empty AUTHORIZATION line means no
// header; "-" sends "Bearer fuzz"); the first byte of METHOD's line chooses
// the server when it is 'T' (trainer) or 'I' (inference) and is dropped.
// Every answer has a status the contract allows (200, 400, 401, 404); a
// JSON answer parses and an error is {"error": non-empty}; the inference
// handler declines (nullopt) exactly the paths outside / , its assets and
// /api/.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "server/common/dashboard_http.h"
#include "server/inference/dashboard_http.h"
#include "server/trainer/trainer_http.h"
#include "store/memory_store.h"
#include "tests/fuzz/fuzz_models.h"

using bnserve::fuzz::Fail;
namespace bi = bnserve::inference;
namespace bs = bnserve::server;
namespace v1 = bnserve::v1;

namespace {

struct Env {
  std::shared_ptr<bnserve::store::MemoryStore> store;
  std::unique_ptr<bs::JobManager> jobs;
  std::unique_ptr<bi::ServableManager> manager;
  bi::Metrics metrics;
  bs::TokenAuth auth{"fuzz"};
  std::unique_ptr<bs::TrainerHttpHandler> trainer;
  std::unique_ptr<bi::DashboardHttpHandler> inference;
};

void TrainOneJob(bs::JobManager& jobs) {
  v1::CreateJobRequest r;
  r.set_model("job");
  r.mutable_spec()->set_input_features(bnserve::fuzz::kFeatures);
  r.mutable_spec()->set_task(v1::TASK_CLASSIFICATION);
  r.mutable_spec()->set_output_dim(bnserve::fuzz::kClasses);
  r.mutable_spec()->add_hidden(5);
  r.mutable_spec()->set_input_norm(true);
  r.mutable_publish()->set_every_n_steps(2);
  auto job = jobs.CreateJob(r);
  if (!job.ok()) Fail("CreateJob", job.status().ToString());
  auto session = jobs.OpenTrainingSession(job->job_id());
  if (!session.ok()) Fail("OpenTrainingSession", session.status().ToString());
  for (int step = 0; step < 3; ++step) {
    v1::Minibatch mb;
    mb.set_rows(4);
    mb.set_cols(bnserve::fuzz::kFeatures);
    for (int i = 0; i < 4 * bnserve::fuzz::kFeatures; ++i) {
      mb.add_features(static_cast<float>((i * 7 + step) % 11) - 5.0f);
    }
    for (int i = 0; i < 4; ++i) mb.add_labels(i % bnserve::fuzz::kClasses);
    if (auto p = (*session)->Step(mb); !p.ok()) {
      Fail("Step", p.status().ToString());
    }
  }
  if (auto p = (*session)->Finish(); !p.ok()) {
    Fail("Finish", p.status().ToString());
  }
}

Env* Setup() {
  auto* env = new Env;
  env->store = std::make_shared<bnserve::store::MemoryStore>();
  env->jobs = std::make_unique<bs::JobManager>(env->store.get());
  TrainOneJob(*env->jobs);
  if (auto v = env->store->Publish(
          bnserve::fuzz::TinySnapshot(v1::TASK_CLASSIFICATION));
      !v.ok()) {
    Fail("Publish", v.status().ToString());
  }
  bi::ServableManagerOptions options;
  options.drift.sample_every = 1;
  env->manager = std::make_unique<bi::ServableManager>(env->store, options);
  if (auto s = env->manager->SyncAllForTesting(); !s.ok()) {
    Fail("SyncAllForTesting", s.ToString());
  }
  auto clf = env->manager->Get("clf");
  if (!clf.ok()) Fail("Get", clf.status().ToString());
  float x[bnserve::fuzz::kFeatures] = {1, -2, 3, 0.5f};
  float out[bnserve::fuzz::kClasses];
  (*clf)->Run(x, out);
  env->metrics.RecordRequest("Predict", grpc::StatusCode::OK,
                             absl::Microseconds(80));
  env->trainer =
      std::make_unique<bs::TrainerHttpHandler>(env->jobs.get(), &env->auth);
  env->inference = std::make_unique<bi::DashboardHttpHandler>(
      env->manager.get(), &env->metrics, &env->auth);
  return env;
}

absl::string_view Line(absl::string_view* rest) {
  const size_t end = rest->find('\n');
  absl::string_view line = rest->substr(0, end);
  rest->remove_prefix(end == absl::string_view::npos ? rest->size() : end + 1);
  return line;
}

void CheckAnswer(const bs::HttpResponse& r) {
  const int s = r.status;
  if (s != 200 && s != 400 && s != 401 && s != 404) {
    Fail("status", absl::StrCat(s, " ", r.body));
  }
  if (r.content_type != "application/json") {
    if (s != 200) Fail("error that is not JSON", r.body);
    return;  // an asset or the Prometheus text
  }
  nlohmann::json body = nlohmann::json::parse(r.body, nullptr, false);
  if (body.is_discarded()) Fail("body is not JSON", r.body);
  if (s != 200 && (!body.is_object() || !body.contains("error") ||
                   !body["error"].is_string() ||
                   body["error"].get<std::string>().empty())) {
    Fail("error body", r.body);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Env* env = Setup();
  absl::string_view rest(reinterpret_cast<const char*>(data), size);
  absl::string_view method_line = Line(&rest);
  const bool trainer = absl::ConsumePrefix(&method_line, "T");
  if (!trainer) absl::ConsumePrefix(&method_line, "I");
  const std::string method(method_line);
  const std::string path(Line(&rest));
  const absl::string_view auth_line = Line(&rest);
  const std::string authorization =
      auth_line == "-" ? std::string("Bearer fuzz") : std::string(auth_line);
  bs::HttpRequest request;
  request.method = method;
  request.path = path;
  request.authorization = auth_line.empty() ? nullptr : &authorization;
  if (trainer) {
    CheckAnswer(env->trainer->Handle(request));
    return 0;
  }
  auto answer = env->inference->Handle(request);
  const bool ours = path == "/" || bs::FindDashboardAsset(path) != nullptr ||
                    absl::StartsWith(path, "/api/");
  if (answer.has_value() != ours) Fail("routing", path);
  if (answer.has_value()) CheckAnswer(*answer);
  return 0;
}
