// bnctl models | versions | label set/delete | delete-version | jobs |
// cancel | publish | recalibrate (trainer) and health (any server).
#include <algorithm>
#include <memory>
#include <ostream>
#include <utility>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bnserve/v1/trainer.grpc.pb.h"
#include "client/bnctl/command_util.h"
#include "client/bnctl/commands.h"
#include "client/bnctl/dataset.h"
#include "client/csv.h"
#include "health.grpc.pb.h"

namespace bnserve::client {
namespace {

// A trainer stub plus the connection its calls are prepared with.
struct Trainer {
  Connection connection;
  std::unique_ptr<v1::Trainer::Stub> stub;
};

absl::StatusOr<Trainer> OpenTrainer(const CommonOptions& common) {
  absl::StatusOr<Connection> connection = Connection::Open(common.connection);
  if (!connection.ok()) return connection.status();
  Trainer t{*std::move(connection), nullptr};
  t.stub = v1::Trainer::NewStub(t.connection.channel());
  return t;
}

// Calls a unary Trainer method with the standard deadline and token.
template <typename Request, typename Response, typename Method>
absl::Status Call(Trainer& t, Method method, const Request& request,
                  Response* response, const std::string& doing) {
  grpc::ClientContext context;
  t.connection.Prepare(&context, kUnaryTimeout);
  grpc::Status status = ((*t.stub).*method)(&context, request, response);
  if (!status.ok()) return RpcError(status, doing);
  return absl::OkStatus();
}

std::string StateName(v1::Job::State state) {
  return absl::AsciiStrToLower(v1::Job::State_Name(state));
}

nlohmann::json JobJson(const v1::Job& job) {
  return {{"job_id", job.job_id()},
          {"model", job.model()},
          {"state", StateName(job.state())},
          {"steps", job.steps()},
          {"examples_seen", job.examples_seen()},
          {"last_loss", job.last_loss()},
          {"last_accuracy", job.last_accuracy()},
          {"last_published_version", job.last_published_version()},
          {"parent_version", job.parent_version()}};
}

void PrintJobLine(Io& io, const v1::Job& job) {
  io.out << absl::StrFormat("%-24s %-20s %-9s %8d %10d %10.4f %9d\n",
                            job.job_id(), job.model(), StateName(job.state()),
                            job.steps(), job.examples_seen(), job.last_loss(),
                            job.last_published_version());
}

void PrintJobHeader(Io& io) {
  io.out << absl::StrFormat("%-24s %-20s %-9s %8s %10s %10s %9s\n", "JOB",
                            "MODEL", "STATE", "STEPS", "EXAMPLES", "LOSS",
                            "PUBLISHED");
}

}  // namespace

absl::StatusOr<int> RunModels(const RegistryOptions& o, Io& io) {
  absl::StatusOr<Trainer> t = OpenTrainer(o.common);
  if (!t.ok()) return t.status();
  v1::ListModelsResponse response;
  absl::Status s = Call(*t, &v1::Trainer::Stub::ListModels,
                        v1::ListModelsRequest(), &response, "listing models");
  if (!s.ok()) return s;
  std::vector<std::string> models(response.models().begin(),
                                  response.models().end());
  if (o.common.json) {
    PrintJson(io, {{"models", models}});
  } else {
    for (const std::string& m : models) io.out << m << "\n";
  }
  return 0;
}

absl::StatusOr<int> RunVersions(const RegistryOptions& o, Io& io) {
  absl::StatusOr<Trainer> t = OpenTrainer(o.common);
  if (!t.ok()) return t.status();
  v1::ListVersionsRequest request;
  request.set_model(o.model);
  v1::ListVersionsResponse response;
  absl::Status s = Call(*t, &v1::Trainer::Stub::ListVersions, request,
                        &response, "listing versions");
  if (!s.ok()) return s;
  if (o.common.json) {
    nlohmann::json versions = nlohmann::json::array();
    for (const v1::VersionInfo& v : response.versions()) {
      versions.push_back(
          {{"version", v.version()},
           {"labels",
            std::vector<std::string>(v.labels().begin(), v.labels().end())}});
    }
    PrintJson(io, {{"model", o.model}, {"versions", versions}});
  } else {
    for (const v1::VersionInfo& v : response.versions()) {
      io.out << v.version();
      if (v.labels_size() > 0) io.out << "  " << absl::StrJoin(v.labels(), ",");
      io.out << "\n";
    }
  }
  return 0;
}

absl::StatusOr<int> RunLabelSet(const RegistryOptions& o, Io& io) {
  absl::StatusOr<Trainer> t = OpenTrainer(o.common);
  if (!t.ok()) return t.status();
  v1::SetLabelRequest request;
  request.set_model(o.model);
  request.set_label(o.label);
  request.set_version(o.version);
  v1::SetLabelResponse response;
  absl::Status s = Call(*t, &v1::Trainer::Stub::SetLabel, request, &response,
                        "setting the label");
  if (!s.ok()) return s;
  if (o.common.json) {
    PrintJson(io,
              {{"model", o.model}, {"label", o.label}, {"version", o.version}});
  } else {
    io.out << "model " << o.model << ": label " << o.label << " -> version "
           << o.version << "\n";
  }
  return 0;
}

absl::StatusOr<int> RunLabelDelete(const RegistryOptions& o, Io& io) {
  absl::StatusOr<Trainer> t = OpenTrainer(o.common);
  if (!t.ok()) return t.status();
  v1::DeleteLabelRequest request;
  request.set_model(o.model);
  request.set_label(o.label);
  v1::DeleteLabelResponse response;
  absl::Status s = Call(*t, &v1::Trainer::Stub::DeleteLabel, request, &response,
                        "deleting the label");
  if (!s.ok()) return s;
  if (o.common.json) {
    PrintJson(io, {{"model", o.model}, {"label", o.label}, {"deleted", true}});
  } else {
    io.out << "model " << o.model << ": label " << o.label << " deleted\n";
  }
  return 0;
}

absl::StatusOr<int> RunDeleteVersion(const RegistryOptions& o, Io& io) {
  absl::StatusOr<Trainer> t = OpenTrainer(o.common);
  if (!t.ok()) return t.status();
  v1::DeleteVersionRequest request;
  request.set_model(o.model);
  request.set_version(o.version);
  v1::DeleteVersionResponse response;
  absl::Status s = Call(*t, &v1::Trainer::Stub::DeleteVersion, request,
                        &response, "deleting the version");
  if (!s.ok()) return s;
  if (o.common.json) {
    PrintJson(io,
              {{"model", o.model}, {"version", o.version}, {"deleted", true}});
  } else {
    io.out << "model " << o.model << ": version " << o.version << " deleted\n";
  }
  return 0;
}

absl::StatusOr<int> RunJobs(const RegistryOptions& o, Io& io) {
  absl::StatusOr<Trainer> t = OpenTrainer(o.common);
  if (!t.ok()) return t.status();
  std::vector<v1::Job> jobs;
  if (!o.job.empty()) {
    v1::GetJobRequest request;
    request.set_job_id(o.job);
    v1::Job job;
    absl::Status s =
        Call(*t, &v1::Trainer::Stub::GetJob, request, &job, "reading the job");
    if (!s.ok()) return s;
    jobs.push_back(job);
  } else {
    v1::ListJobsRequest request;
    request.set_model(o.model);
    v1::ListJobsResponse response;
    absl::Status s = Call(*t, &v1::Trainer::Stub::ListJobs, request, &response,
                          "listing jobs");
    if (!s.ok()) return s;
    jobs.assign(response.jobs().begin(), response.jobs().end());
  }
  if (o.common.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const v1::Job& job : jobs) list.push_back(JobJson(job));
    PrintJson(io, {{"jobs", list}});
  } else {
    PrintJobHeader(io);
    for (const v1::Job& job : jobs) PrintJobLine(io, job);
  }
  return 0;
}

absl::StatusOr<int> RunCancel(const RegistryOptions& o, Io& io) {
  absl::StatusOr<Trainer> t = OpenTrainer(o.common);
  if (!t.ok()) return t.status();
  v1::CancelJobRequest request;
  request.set_job_id(o.job);
  v1::Job job;
  absl::Status s = Call(*t, &v1::Trainer::Stub::CancelJob, request, &job,
                        "cancelling the job");
  if (!s.ok()) return s;
  if (o.common.json) {
    PrintJson(io, JobJson(job));
  } else {
    io.out << "job " << job.job_id() << ": " << StateName(job.state()) << "\n";
  }
  return 0;
}

absl::StatusOr<int> RunPublish(const RegistryOptions& o, Io& io) {
  absl::StatusOr<Trainer> t = OpenTrainer(o.common);
  if (!t.ok()) return t.status();
  v1::PublishRequest request;
  request.set_job_id(o.job);
  v1::PublishResponse response;
  absl::Status s =
      Call(*t, &v1::Trainer::Stub::Publish, request, &response, "publishing");
  if (!s.ok()) return s;
  if (o.common.json) {
    PrintJson(io,
              {{"model", response.model()}, {"version", response.version()}});
  } else {
    io.out << "published model " << response.model() << " version "
           << response.version() << "\n";
  }
  return 0;
}

namespace {

// The examples to recalibrate over: the CSV's columns without the label
// column when it has one, else every column (unlabeled data).
absl::StatusOr<Dataset> RecalibrationData(const RegistryOptions& o) {
  absl::StatusOr<CsvTable> table = ReadCsvFile(o.data);
  if (!table.ok()) return table.status();
  const bool labelled = std::find(table->header.begin(), table->header.end(),
                                  o.label_column) != table->header.end();
  if (labelled) return LoadDataset(o.data, o.label_column);
  Dataset dataset;
  dataset.source = o.data;
  dataset.data.feature_names = table->header;
  dataset.data.rows = table->rows;
  dataset.data.features = table->cols();
  dataset.data.x = std::move(table->values);
  dataset.lines.assign(table->rows, 0);
  return dataset;
}

// A job continuing from the stored version (--version or --label) that
// exists only for this recalibration; its id.
absl::StatusOr<std::string> SourceJob(Trainer& t, const RegistryOptions& o) {
  v1::CreateJobRequest request;
  request.set_model(o.model);
  if (o.version > 0) {
    request.set_from_version(o.version);
  } else {
    request.set_from_label(o.label);
  }
  request.mutable_publish()->set_on_stream_close(false);
  v1::Job job;
  absl::Status s = Call(t, &v1::Trainer::Stub::CreateJob, request, &job,
                        "loading the version to recalibrate");
  if (!s.ok()) return s;
  return job.job_id();
}

}  // namespace

absl::StatusOr<int> RunRecalibrate(const RegistryOptions& o, Io& io) {
  if (o.job.empty() == o.model.empty() ||
      (!o.model.empty() && (o.version > 0) == !o.label.empty())) {
    return UsageError(io,
                      "recalibrate takes --job J (a live job), or --model M "
                      "with one of --version N or --label L (a stored "
                      "version)");
  }
  if (!o.set_label.empty() && o.model.empty()) {
    return UsageError(io, "--set-label needs --model");
  }
  absl::StatusOr<Dataset> dataset = RecalibrationData(o);
  if (!dataset.ok()) return dataset.status();
  absl::StatusOr<Trainer> t = OpenTrainer(o.common);
  if (!t.ok()) return t.status();
  std::string job = o.job;
  if (job.empty()) {
    absl::StatusOr<std::string> source = SourceJob(*t, o);
    if (!source.ok()) return source.status();
    job = *source;
  }
  absl::StatusOr<v1::PublishResponse> response =
      StreamRecalibration(t->connection, *t->stub, job, *dataset, o.batch_size);
  if (job != o.job) {  // forget the job made for this (best effort)
    v1::DeleteJobRequest request;
    request.set_job_id(job);
    v1::DeleteJobResponse deleted;
    (void)Call(*t, &v1::Trainer::Stub::DeleteJob, request, &deleted, "");
  }
  if (!response.ok()) return response.status();
  if (!o.set_label.empty()) {
    v1::SetLabelRequest request;
    request.set_model(response->model());
    request.set_label(o.set_label);
    request.set_version(response->version());
    v1::SetLabelResponse labelled;
    absl::Status s = Call(*t, &v1::Trainer::Stub::SetLabel, request, &labelled,
                          "setting the label");
    if (!s.ok()) return s;
  }
  if (o.common.json) {
    PrintJson(io, {{"model", response->model()},
                   {"version", response->version()},
                   {"stats_examples", response->stats_examples()}});
  } else {
    io.out << "published model " << response->model() << " version "
           << response->version() << " with exact batch-norm statistics over "
           << response->stats_examples() << " examples\n";
  }
  return 0;
}

absl::StatusOr<int> RunHealth(const HealthOptions& o, Io& io) {
  absl::StatusOr<Connection> connection = Connection::Open(o.common.connection);
  if (!connection.ok()) return connection.status();
  std::unique_ptr<grpc::health::v1::Health::Stub> stub =
      grpc::health::v1::Health::NewStub(connection->channel());
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(o.service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::ClientContext context;
  connection->Prepare(&context, absl::Seconds(10));
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return RpcError(status, "health check");
  const std::string name =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
          response.status());
  if (o.common.json) {
    PrintJson(io, {{"server", o.common.connection.address},
                   {"service", o.service},
                   {"status", name}});
  } else {
    io.out << name << "\n";
  }
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING
             ? 0
             : 1;
}

absl::StatusOr<int> RunDeleteJob(const RegistryOptions& o, Io& io) {
  absl::StatusOr<Trainer> t = OpenTrainer(o.common);
  if (!t.ok()) return t.status();
  v1::DeleteJobRequest request;
  request.set_job_id(o.job);
  v1::DeleteJobResponse response;
  absl::Status s = Call(*t, &v1::Trainer::Stub::DeleteJob, request, &response,
                        "deleting the job");
  if (!s.ok()) return s;
  if (o.common.json) {
    PrintJson(io, {{"job_id", o.job}, {"deleted", true}});
  } else {
    io.out << "deleted job " << o.job << "\n";
  }
  return 0;
}

namespace {

// A registry subcommand of `parent` talking to the trainer; `run` gets its
// options once parsed.
std::pair<CLI::App*, std::shared_ptr<RegistryOptions>> AddTrainerCommand(
    CLI::App& parent, const char* name, const char* description) {
  auto options = std::make_shared<RegistryOptions>();
  CLI::App* cmd = parent.add_subcommand(name, description);
  AddConnectionOptions(cmd, &options->common, "--trainer", "localhost:50051",
                       "trainer");
  return {cmd, options};
}

Subcommand Bind(CLI::App* cmd, std::shared_ptr<RegistryOptions> options,
                absl::StatusOr<int> (*run)(const RegistryOptions&, Io&)) {
  return {cmd, [options, run](Io& io) { return run(*options, io); }};
}

void AddModelOption(CLI::App* cmd, RegistryOptions& o) {
  cmd->add_option("--model", o.model, "model name")->required();
}

void AddJobOption(CLI::App* cmd, RegistryOptions& o) {
  cmd->add_option("--job", o.job, "job id")->required();
}

}  // namespace

Subcommand AddModelsCommand(CLI::App& app) {
  auto [cmd, o] = AddTrainerCommand(app, "models",
                                    "List the models in the trainer's store");
  return Bind(cmd, o, RunModels);
}

Subcommand AddVersionsCommand(CLI::App& app) {
  auto [cmd, o] = AddTrainerCommand(
      app, "versions", "List a model's versions and the labels on them");
  AddModelOption(cmd, *o);
  return Bind(cmd, o, RunVersions);
}

Subcommand AddLabelSetCommand(CLI::App& label) {
  auto [cmd, o] = AddTrainerCommand(
      label, "set", "Point a label (e.g. stable, canary) at a version");
  AddModelOption(cmd, *o);
  cmd->add_option("--label", o->label, "label name")->required();
  cmd->add_option("--version", o->version, "version")
      ->required()
      ->check(CLI::PositiveNumber);
  return Bind(cmd, o, RunLabelSet);
}

Subcommand AddLabelDeleteCommand(CLI::App& label) {
  auto [cmd, o] = AddTrainerCommand(label, "delete", "Delete a label");
  AddModelOption(cmd, *o);
  cmd->add_option("--label", o->label, "label name")->required();
  return Bind(cmd, o, RunLabelDelete);
}

Subcommand AddDeleteVersionCommand(CLI::App& app) {
  auto [cmd, o] = AddTrainerCommand(
      app, "delete-version",
      "Delete a version (refused while a label points at it)");
  AddModelOption(cmd, *o);
  cmd->add_option("--version", o->version, "version")
      ->required()
      ->check(CLI::PositiveNumber);
  return Bind(cmd, o, RunDeleteVersion);
}

Subcommand AddJobsCommand(CLI::App& app) {
  auto [cmd, o] = AddTrainerCommand(app, "jobs", "List training jobs");
  cmd->add_option("--model", o->model, "only jobs of this model");
  cmd->add_option("--job", o->job, "only this job");
  return Bind(cmd, o, RunJobs);
}

Subcommand AddCancelCommand(CLI::App& app) {
  auto [cmd, o] = AddTrainerCommand(app, "cancel", "Cancel a training job");
  AddJobOption(cmd, *o);
  return Bind(cmd, o, RunCancel);
}

Subcommand AddDeleteJobCommand(CLI::App& app) {
  auto [cmd, o] = AddTrainerCommand(
      app, "delete-job",
      "Forget a training job now (refused while it trains: cancel it first); "
      "its published versions stay");
  AddJobOption(cmd, *o);
  return Bind(cmd, o, RunDeleteJob);
}

Subcommand AddPublishCommand(CLI::App& app) {
  auto [cmd, o] = AddTrainerCommand(
      app, "publish", "Publish a job's current network as a new version now");
  AddJobOption(cmd, *o);
  return Bind(cmd, o, RunPublish);
}

Subcommand AddRecalibrateCommand(CLI::App& app) {
  auto [cmd, o] = AddTrainerCommand(
      app, "recalibrate",
      "Publish a live job's network, or a stored version, with exact "
      "population batch-norm statistics over a CSV file's examples (with "
      "unlabeled data from a new environment: AdaBN-style adaptation)");
  cmd->add_option("--job", o->job, "a live job");
  cmd->add_option("--model", o->model, "model of the stored version");
  cmd->add_option("--version", o->version, "stored version to recalibrate")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--label", o->label,
                  "recalibrate the version this label points at");
  cmd->add_option("--set-label", o->set_label,
                  "then point this label at the published version");
  cmd->add_option("--data", o->data,
                  "CSV with a header row: the training set, or unlabeled "
                  "examples (without the label column every column is a "
                  "feature)")
      ->required();
  cmd->add_option("--label-column", o->label_column,
                  "name of the label column (not sent)");
  cmd->add_option("--batch-size", o->batch_size, "rows per message")
      ->check(CLI::Range(2, 1 << 20));
  return Bind(cmd, o, RunRecalibrate);
}

Subcommand AddHealthCommand(CLI::App& app) {
  auto health = std::make_shared<HealthOptions>();
  CLI::App* cmd = app.add_subcommand(
      "health",
      "grpc.health.v1 Check; exit status 0 only when the server is SERVING");
  AddConnectionOptions(cmd, &health->common, "--server", "localhost:50052",
                       "server");
  cmd->add_option("--service", health->service,
                  "service name (empty: the server as a whole)");
  return {cmd, [health](Io& io) { return RunHealth(*health, io); }};
}

}  // namespace bnserve::client
