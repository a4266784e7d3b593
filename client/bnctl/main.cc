// bnctl: the command-line client of bnserve. main() only turns the command
// line into an options struct and calls one Run* function (commands.h,
// store_commands.h).
//
// Exit codes: 0 success; 1 an error (printed to stderr as
// `error: <gRPC CODE>: <message>`), or `health` not SERVING; 2 a usage error.
#include <unistd.h>

#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "client/bnctl/commands.h"
#include "client/bnctl/store_commands.h"

namespace bnserve::client {
namespace {

constexpr int kUsageError = 2;

constexpr char kDescription[] =
    "bnctl: train batch-normalized networks on a bnserve trainer, predict "
    "one example at a time on a bnserve inference server, manage versions, "
    "and export/import snapshots as JSON.";

constexpr char kFooter[] = R"(
Examples:
  bnctl train --trainer localhost:50051 --model digits --data data/digits/train.csv --recalibrate
  bnctl predict --server localhost:50052 --model digits --data data/digits/test.csv
  bnctl predict --server localhost:50052 --model digits --features=0,1,5,...
  bnctl versions --trainer localhost:50051 --model digits
  bnctl label set --trainer localhost:50051 --model digits --label stable --version 3
  bnctl export --store /var/lib/bnserve --model digits > digits.json
  bnctl import --store /var/lib/bnserve --model mlp --from mlp.json
Every command takes --json (one JSON object on stdout) and --help.)";

// Options every server command shares.
void AddConnection(CLI::App* cmd, CommonOptions* common, const char* flag,
                   const char* default_address, const char* what) {
  common->connection.address = default_address;
  cmd->add_option(flag, common->connection.address,
                  std::string("HOST:PORT of the ") + what);
  cmd->add_option("--tls-ca", common->connection.tls_ca,
                  "PEM CA certificates to verify the server with (enables "
                  "TLS)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--tls-cert", common->connection.tls_cert,
                  "PEM client certificate chain for mutual TLS (with "
                  "--tls-key)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--tls-key", common->connection.tls_key,
                  "PEM client private key for mutual TLS (with --tls-cert)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--token-file", common->connection.token_file,
                  "file holding a bearer token, sent as `authorization: "
                  "Bearer <token>`")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--json", common->json,
                "print exactly one JSON object on stdout");
}

int Report(const absl::StatusOr<int>& result) {
  if (result.ok()) return *result;
  std::cerr << "error: " << absl::StatusCodeToString(result.status().code())
            << ": " << result.status().message() << std::endl;
  return 1;
}

int Main(int argc, char** argv) {
  CLI::App app(kDescription, "bnctl");
  app.option_defaults()->always_capture_default();
  app.require_subcommand(1);
  app.footer(kFooter);

  // --- train -------------------------------------------------------------
  TrainOptions train;
  CLI::App* train_cmd = app.add_subcommand(
      "train",
      "Train a network on a CSV file over one Train stream, publish it and "
      "print the version");
  AddConnection(train_cmd, &train.common, "--trainer", "localhost:50051",
                "trainer");
  train_cmd->add_option("--model", train.model, "model name")->required();
  train_cmd
      ->add_option("--data", train.data,
                   "training CSV with a header row and a label column")
      ->required();
  train_cmd->add_option("--label-column", train.label_column,
                        "name of the label (target) column");
  train_cmd->add_option("--task", train.task, "output head")
      ->check(CLI::IsMember({"classification", "regression"}));
  train_cmd
      ->add_option("--hidden", train.hidden,
                   "hidden widths, each Dense -> BatchNorm -> activation")
      ->delimiter(',')
      ->check(CLI::Range(1, 1 << 16));
  CLI::Option* layers_opt = train_cmd->add_option(
      "--layers", train.layers,
      "explicit hidden layers instead of --hidden, e.g. "
      "conv:16:3:p1,bn,relu,maxpool:2,flatten,dense:64,bn,relu (tokens: "
      "conv:OUT:K[:sS][:pP], dense:N, bn, relu|tanh|sigmoid|identity, "
      "maxpool:K[:sS][:pP], avgpool:K[:sS][:pP], flatten; the output layer "
      "is added)");
  layers_opt->excludes("--hidden");
  train_cmd->add_option("--input-shape", train.input_shape,
                        "C,H,W: the feature columns are an image in C, H, W "
                        "order (needed by conv and pooling layers)");
  train_cmd->add_flag("--no-input-norm", train.no_input_norm,
                      "with --hidden: no batch norm over the raw input "
                      "features (by default one normalizes them)");
  train_cmd->add_option("--activation", train.activation, "hidden activation")
      ->check(CLI::IsMember({"relu", "tanh", "sigmoid", "identity"}));
  train_cmd->add_option("--epochs", train.epochs, "passes over the data")
      ->check(CLI::Range(1, 1000000));
  train_cmd
      ->add_option("--batch-size", train.batch_size,
                   "rows per minibatch (>= 2; a last batch of one row is "
                   "merged into the previous one)")
      ->check(CLI::Range(2, 1 << 20));
  train_cmd->add_option("--optimizer", train.optimizer, "optimizer")
      ->check(CLI::IsMember({"sgd", "adam"}));
  train_cmd
      ->add_option("--lr", train.lr,
                   "learning rate (0: the trainer's default, 0.01 for SGD, "
                   "0.001 for Adam)")
      ->check(CLI::Range(0.0f, 1e6f));
  float momentum = 0.9f;
  CLI::Option* momentum_opt =
      train_cmd
          ->add_option("--momentum", momentum,
                       "SGD momentum in [0, 1) (PyTorch's definition)")
          ->check(CLI::Range(0.0f, 0.999999f));
  train_cmd
      ->add_option("--weight-decay", train.weight_decay,
                   "L2 penalty added to the gradient")
      ->check(CLI::Range(0.0f, 1e6f));
  train_cmd
      ->add_option("--bn-momentum", train.bn_momentum,
                   "batch-norm running-statistics momentum: weight of the NEW "
                   "minibatch value (PyTorch convention; Keras' 0.99 is 0.01)")
      ->check(CLI::Range(1e-6f, 1.0f));
  train_cmd->add_option("--seed", train.seed,
                        "seed of the weight initialisation and the shuffling");
  train_cmd->add_flag("--no-shuffle", train.no_shuffle,
                      "keep the file order instead of shuffling every epoch");
  int64_t from_version = 0;
  std::string from_label;
  CLI::Option* from_version_opt = train_cmd->add_option(
      "--from-version", from_version, "continue from this published version");
  CLI::Option* from_label_opt =
      train_cmd->add_option("--from-label", from_label,
                            "continue from the version this label points at");
  from_version_opt->excludes(from_label_opt);
  train_cmd
      ->add_option("--publish-every", train.publish_every,
                   "also publish every N training steps (0: only at the end)")
      ->check(CLI::NonNegativeNumber);
  train_cmd->add_flag(
      "--recalibrate", train.recalibrate,
      "then publish the next version with exact population batch-norm "
      "statistics over the training set");

  // --- predict -----------------------------------------------------------
  PredictOptions predict;
  CLI::App* predict_cmd = app.add_subcommand(
      "predict",
      "One Predict RPC per example: print the prediction (--features) or "
      "accuracy/RMSE, versions and latency percentiles (--data)");
  AddConnection(predict_cmd, &predict.common, "--server", "localhost:50052",
                "inference server");
  predict_cmd->add_option("--model", predict.model, "model name")->required();
  CLI::Option* features_opt = predict_cmd->add_option(
      "--features", predict.features,
      "one example, comma-separated (write --features=-1,2 when the first "
      "value is negative)");
  CLI::Option* data_opt = predict_cmd->add_option(
      "--data", predict.data, "CSV with a header row and a label column");
  features_opt->excludes(data_opt);
  predict_cmd->add_option("--label-column", predict.label_column,
                          "name of the label column in --data");
  int64_t predict_version = 0;
  std::string predict_label;
  CLI::Option* version_opt = predict_cmd->add_option(
      "--version", predict_version, "pin this version (default: newest)");
  CLI::Option* label_opt = predict_cmd->add_option(
      "--label", predict_label, "use the version this label points at");
  version_opt->excludes(label_opt);

  // --- registry ----------------------------------------------------------
  RegistryOptions reg;
  CLI::App* models_cmd =
      app.add_subcommand("models", "List the models in the trainer's store");
  AddConnection(models_cmd, &reg.common, "--trainer", "localhost:50051",
                "trainer");

  CLI::App* versions_cmd = app.add_subcommand(
      "versions", "List a model's versions and the labels on them");
  AddConnection(versions_cmd, &reg.common, "--trainer", "localhost:50051",
                "trainer");
  versions_cmd->add_option("--model", reg.model, "model name")->required();

  CLI::App* label_cmd =
      app.add_subcommand("label", "Set or delete a version label");
  label_cmd->require_subcommand(1);
  CLI::App* label_set = label_cmd->add_subcommand(
      "set", "Point a label (e.g. stable, canary) at a version");
  AddConnection(label_set, &reg.common, "--trainer", "localhost:50051",
                "trainer");
  label_set->add_option("--model", reg.model, "model name")->required();
  label_set->add_option("--label", reg.label, "label name")->required();
  label_set->add_option("--version", reg.version, "version")
      ->required()
      ->check(CLI::PositiveNumber);
  CLI::App* label_delete =
      label_cmd->add_subcommand("delete", "Delete a label");
  AddConnection(label_delete, &reg.common, "--trainer", "localhost:50051",
                "trainer");
  label_delete->add_option("--model", reg.model, "model name")->required();
  label_delete->add_option("--label", reg.label, "label name")->required();

  CLI::App* delete_cmd = app.add_subcommand(
      "delete-version",
      "Delete a version (refused while a label points at it)");
  AddConnection(delete_cmd, &reg.common, "--trainer", "localhost:50051",
                "trainer");
  delete_cmd->add_option("--model", reg.model, "model name")->required();
  delete_cmd->add_option("--version", reg.version, "version")
      ->required()
      ->check(CLI::PositiveNumber);

  CLI::App* jobs_cmd = app.add_subcommand("jobs", "List training jobs");
  AddConnection(jobs_cmd, &reg.common, "--trainer", "localhost:50051",
                "trainer");
  jobs_cmd->add_option("--model", reg.model, "only jobs of this model");
  jobs_cmd->add_option("--job", reg.job, "only this job");

  CLI::App* cancel_cmd = app.add_subcommand("cancel", "Cancel a training job");
  AddConnection(cancel_cmd, &reg.common, "--trainer", "localhost:50051",
                "trainer");
  cancel_cmd->add_option("--job", reg.job, "job id")->required();

  CLI::App* publish_cmd = app.add_subcommand(
      "publish", "Publish a job's current network as a new version now");
  AddConnection(publish_cmd, &reg.common, "--trainer", "localhost:50051",
                "trainer");
  publish_cmd->add_option("--job", reg.job, "job id")->required();

  CLI::App* recal_cmd = app.add_subcommand(
      "recalibrate",
      "Publish a job's network with exact population batch-norm statistics "
      "over a CSV file's examples");
  AddConnection(recal_cmd, &reg.common, "--trainer", "localhost:50051",
                "trainer");
  recal_cmd->add_option("--job", reg.job, "job id")->required();
  recal_cmd
      ->add_option("--data", reg.data,
                   "CSV (e.g. the training set) with a header row and a "
                   "label column")
      ->required();
  recal_cmd->add_option("--label-column", reg.label_column,
                        "name of the label column (not sent)");
  recal_cmd->add_option("--batch-size", reg.batch_size, "rows per message")
      ->check(CLI::Range(2, 1 << 20));

  // --- health ------------------------------------------------------------
  HealthOptions health;
  CLI::App* health_cmd = app.add_subcommand(
      "health",
      "grpc.health.v1 Check; exit status 0 only when the server is SERVING");
  AddConnection(health_cmd, &health.common, "--server", "localhost:50052",
                "server");
  health_cmd->add_option("--service", health.service,
                         "service name (empty: the server as a whole)");

  // --- export / import ---------------------------------------------------
  ExportOptions exp;
  CLI::App* export_cmd = app.add_subcommand(
      "export",
      "Write a snapshot from a store as JSON (spec, parameters, running "
      "statistics and their provenance) that numpy/PyTorch can load");
  export_cmd
      ->add_option("--store", exp.store,
                   "store URI: a directory, file:///abs/path, "
                   "redis://host:port[/db]")
      ->required();
  export_cmd->add_option("--model", exp.model, "model name")->required();
  int64_t export_version = 0;
  std::string export_label;
  CLI::Option* exp_version_opt = export_cmd->add_option(
      "--version", export_version,
      "version to export (default: the newest that verifies)");
  CLI::Option* exp_label_opt = export_cmd->add_option(
      "--label", export_label, "export the version this label points at");
  exp_version_opt->excludes(exp_label_opt);
  export_cmd->add_option("--output,-o", exp.output,
                         "write to this file instead of stdout");
  export_cmd->add_flag("--json", exp.json,
                       "with --output: print {model, version, path} (without "
                       "--output the snapshot JSON is the one object)");

  ImportOptions imp;
  CLI::App* import_cmd = app.add_subcommand(
      "import",
      "Validate a snapshot JSON (the export format) and publish it to a "
      "store as the model's next version");
  import_cmd->add_option("--store", imp.store, "store URI")->required();
  import_cmd->add_option("--model", imp.model, "model name to publish as")
      ->required();
  import_cmd->add_option("--from", imp.from, "JSON file (- for stdin)")
      ->required();
  import_cmd->add_flag("--json", imp.json, "print {model, version}");

  if (argc <= 1) {
    std::cerr << app.help();
    return kUsageError;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kUsageError;
  }

  auto usage = [](const std::string& message) {
    std::cerr << "error: " << message << "\nRun with --help for more "
              << "information." << std::endl;
    return kUsageError;
  };
  Io io{std::cout, std::cerr, isatty(STDERR_FILENO) == 1};
  if (*train_cmd) {
    if (momentum_opt->count() > 0) train.momentum = momentum;
    if (from_version_opt->count() > 0) {
      if (from_version < 1) return usage("--from-version must be >= 1");
      train.from_version = from_version;
    }
    if (from_label_opt->count() > 0) train.from_label = from_label;
    return Report(RunTrain(train, io));
  }
  if (*predict_cmd) {
    if (features_opt->count() == 0 && data_opt->count() == 0) {
      return usage("predict needs --features or --data");
    }
    if (version_opt->count() > 0) {
      if (predict_version < 1) return usage("--version must be >= 1");
      predict.version = predict_version;
    }
    if (label_opt->count() > 0) predict.label = predict_label;
    return Report(RunPredict(predict, io));
  }
  if (*models_cmd) return Report(RunModels(reg, io));
  if (*versions_cmd) return Report(RunVersions(reg, io));
  if (*label_set) return Report(RunLabelSet(reg, io));
  if (*label_delete) return Report(RunLabelDelete(reg, io));
  if (*delete_cmd) return Report(RunDeleteVersion(reg, io));
  if (*jobs_cmd) return Report(RunJobs(reg, io));
  if (*cancel_cmd) return Report(RunCancel(reg, io));
  if (*publish_cmd) return Report(RunPublish(reg, io));
  if (*recal_cmd) return Report(RunRecalibrate(reg, io));
  if (*health_cmd) return Report(RunHealth(health, io));
  if (*export_cmd) {
    if (exp_version_opt->count() > 0) {
      if (export_version < 1) return usage("--version must be >= 1");
      exp.version = export_version;
    }
    if (exp_label_opt->count() > 0) exp.label = export_label;
    return Report(RunExport(exp, io));
  }
  if (*import_cmd) return Report(RunImport(imp, io));
  return usage("unknown command");
}

}  // namespace
}  // namespace bnserve::client

int main(int argc, char** argv) { return bnserve::client::Main(argc, argv); }
