// bnctl predict: one Predict RPC per example, from --features or a CSV file
// (then accuracy or RMSE, the versions that answered and latency
// percentiles).
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <ostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bnserve/v1/inference.grpc.pb.h"
#include "client/bnctl/command_util.h"
#include "client/bnctl/commands.h"
#include "client/bnctl/dataset.h"

namespace bnserve::client {
namespace {

constexpr absl::Duration kPredictTimeout = absl::Seconds(10);

struct Answer {
  v1::PredictResponse response;
  double latency_us = 0.0;
};

class Predictor {
 public:
  Predictor(const Connection& connection, const PredictOptions& o)
      : connection_(connection),
        stub_(v1::Inference::NewStub(connection.channel())) {
    request_.set_model(o.model);
    if (o.version) request_.mutable_select()->set_version(*o.version);
    if (o.label) request_.mutable_select()->set_label(*o.label);
  }

  absl::StatusOr<Answer> Predict(const float* x, int n,
                                 const std::string& where) {
    request_.mutable_features()->Assign(x, x + n);
    grpc::ClientContext context;
    connection_.Prepare(&context, kPredictTimeout);
    Answer answer;
    const auto start = std::chrono::steady_clock::now();
    grpc::Status status = stub_->Predict(&context, request_, &answer.response);
    answer.latency_us = std::chrono::duration<double, std::micro>(
                            std::chrono::steady_clock::now() - start)
                            .count();
    if (!status.ok()) return RpcError(status, where);
    return answer;
  }

 private:
  const Connection& connection_;
  std::unique_ptr<v1::Inference::Stub> stub_;
  v1::PredictRequest request_;
};

nlohmann::json LatencyJson(std::vector<double> latencies) {
  std::sort(latencies.begin(), latencies.end());
  return {{"p50", Percentile(latencies, 50)},
          {"p90", Percentile(latencies, 90)},
          {"p99", Percentile(latencies, 99)}};
}

absl::StatusOr<int> PredictOne(const PredictOptions& o, Predictor& predictor,
                               Io& io) {
  absl::StatusOr<std::vector<float>> x = ParseFloatList(o.features);
  if (!x.ok()) return x.status();
  absl::StatusOr<Answer> a =
      predictor.Predict(x->data(), static_cast<int>(x->size()), "");
  if (!a.ok()) return a.status();
  const v1::PredictResponse& r = a->response;
  const bool classification = r.probabilities_size() > 0;
  if (o.common.json) {
    nlohmann::json j = {{"model", r.model()},
                        {"version", r.version()},
                        {"outputs", r.outputs()}};
    if (classification) {
      j["probabilities"] = r.probabilities();
      j["class_id"] = r.class_id();
      j["class_name"] = r.class_name();
    }
    j["latency_us"] = a->latency_us;
    PrintJson(io, j);
    return 0;
  }
  io.out << "model " << r.model() << " version " << r.version() << ": ";
  if (classification) {
    io.out << "class " << r.class_id();
    if (!r.class_name().empty() &&
        r.class_name() != absl::StrCat(r.class_id())) {
      io.out << " (" << r.class_name() << ")";
    }
    const float p = r.class_id() >= 0 && r.class_id() < r.probabilities_size()
                        ? r.probabilities(r.class_id())
                        : 0.0f;
    io.out << absl::StrFormat(", probability %.4f", p);
  } else {
    io.out << absl::StrJoin(r.outputs(), ", ");
  }
  io.out << absl::StrFormat("  [%.0f us]\n", a->latency_us);
  return 0;
}

absl::StatusOr<int> PredictFile(const PredictOptions& o, Predictor& predictor,
                                Io& io) {
  absl::StatusOr<Dataset> dataset = LoadDataset(o.data, o.label_column);
  if (!dataset.ok()) return dataset.status();
  const LabeledData& data = dataset->data;
  if (data.rows == 0) {
    return absl::InvalidArgumentError(absl::StrCat(o.data, ": no examples"));
  }
  std::vector<double> latencies;
  latencies.reserve(data.rows);
  std::map<int64_t, int64_t> versions;
  int64_t correct = 0;
  double squared_error = 0.0;
  bool classification = false;
  for (int r = 0; r < data.rows; ++r) {
    absl::StatusOr<Answer> a = predictor.Predict(
        data.x.data() + static_cast<size_t>(r) * data.features, data.features,
        absl::StrCat(o.data, ":", dataset->lines[r]));
    if (!a.ok()) return a.status();
    const v1::PredictResponse& resp = a->response;
    latencies.push_back(a->latency_us);
    ++versions[resp.version()];
    classification = resp.probabilities_size() > 0;
    const double label = data.labels[r];
    if (classification) {
      if (static_cast<double>(resp.class_id()) == label) ++correct;
    } else {
      if (resp.outputs_size() < 1) {
        return absl::InternalError("the server answered without outputs");
      }
      const double e = resp.outputs(0) - label;
      squared_error += e * e;
    }
  }
  const double accuracy = static_cast<double>(correct) / data.rows;
  const double rmse = std::sqrt(squared_error / data.rows);
  nlohmann::json latency = LatencyJson(latencies);
  if (o.common.json) {
    nlohmann::json j = {{"model", o.model}, {"examples", data.rows}};
    if (classification) {
      j["accuracy"] = accuracy;
      j["correct"] = correct;
    } else {
      j["rmse"] = rmse;
    }
    nlohmann::json v = nlohmann::json::object();
    for (const auto& [version, count] : versions) {
      v[absl::StrCat(version)] = count;
    }
    j["versions"] = v;
    j["latency_us"] = latency;
    PrintJson(io, j);
    return 0;
  }
  io.out << "model " << o.model << ": " << data.rows << " examples, ";
  if (classification) {
    io.out << absl::StrFormat("accuracy %.4f (%d/%d)\n", accuracy, correct,
                              data.rows);
  } else {
    io.out << absl::StrFormat("RMSE %.4f\n", rmse);
  }
  std::vector<std::string> answered;
  for (const auto& [version, count] : versions) {
    answered.push_back(absl::StrCat(version, " (", count, " examples)"));
  }
  io.out << "versions: " << absl::StrJoin(answered, ", ") << "\n";
  io.out << absl::StrFormat(
      "latency: p50 %.0f us, p90 %.0f us, p99 %.0f us (one request at a "
      "time)\n",
      latency["p50"].get<double>(), latency["p90"].get<double>(),
      latency["p99"].get<double>());
  return 0;
}

}  // namespace

absl::StatusOr<int> RunPredict(const PredictOptions& o, Io& io) {
  absl::StatusOr<Connection> connection = Connection::Open(o.common.connection);
  if (!connection.ok()) return connection.status();
  Predictor predictor(*connection, o);
  if (!o.features.empty()) return PredictOne(o, predictor, io);
  return PredictFile(o, predictor, io);
}

Subcommand AddPredictCommand(CLI::App& app) {
  auto predict = std::make_shared<PredictOptions>();
  CLI::App* cmd = app.add_subcommand(
      "predict",
      "One Predict RPC per example: print the prediction (--features) or "
      "accuracy/RMSE, versions and latency percentiles (--data)");
  AddConnectionOptions(cmd, &predict->common, "--server", "localhost:50052",
                       "inference server");
  cmd->add_option("--model", predict->model, "model name")->required();
  CLI::Option* features_opt = cmd->add_option(
      "--features", predict->features,
      "one example, comma-separated (write --features=-1,2 when the first "
      "value is negative)");
  CLI::Option* data_opt = cmd->add_option(
      "--data", predict->data, "CSV with a header row and a label column");
  features_opt->excludes(data_opt);
  cmd->add_option("--label-column", predict->label_column,
                  "name of the label column in --data");
  auto version = std::make_shared<int64_t>(0);
  auto label = std::make_shared<std::string>();
  CLI::Option* version_opt = cmd->add_option(
      "--version", *version, "pin this version (default: newest)");
  CLI::Option* label_opt = cmd->add_option(
      "--label", *label, "use the version this label points at");
  version_opt->excludes(label_opt);
  return {cmd, [=](Io& io) -> absl::StatusOr<int> {
            if (features_opt->count() == 0 && data_opt->count() == 0) {
              return UsageError(io, "predict needs --features or --data");
            }
            if (version_opt->count() > 0) {
              if (*version < 1) return UsageError(io, "--version must be >= 1");
              predict->version = *version;
            }
            if (label_opt->count() > 0) predict->label = *label;
            return RunPredict(*predict, io);
          }};
}

}  // namespace bnserve::client
