// The bnctl commands, one function each, called by main.cc after parsing
// the command line. Each returns the process exit code on success (0, or 1
// for `health` when the server is not SERVING) and an absl::Status carrying
// the gRPC code on failure; main prints that as `error: CODE: message`.
//
// With `json` set a command writes exactly one JSON object (one line) to
// `out`; otherwise human-readable text. Progress goes to `err`.
//
// Layering: everything here talks to the servers through the generated
// bnserve.v1 / grpc.health.v1 stubs only. The one exception is export and
// import (store_commands.h), which read and publish snapshots directly in a
// store and therefore link the store library; they are kept separate.
#ifndef BNSERVE_CLIENT_BNCTL_COMMANDS_H_
#define BNSERVE_CLIENT_BNCTL_COMMANDS_H_

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/bnctl/connection.h"

namespace CLI {
class App;
}  // namespace CLI

namespace bnserve::client {

// Where a command writes.
struct Io {
  std::ostream& out;
  std::ostream& err;
  // Whether `err` is a terminal: progress bar instead of plain lines.
  bool err_is_tty = false;
};

struct CommonOptions {
  ConnectionOptions connection;
  bool json = false;
};

struct TrainOptions {
  CommonOptions common;
  std::string model;
  std::string data;
  std::string label_column = "label";
  std::string task = "classification";  // or "regression"
  std::vector<int> hidden = {128, 64};
  // Explicit layers (client/bnctl/layer_syntax.h) instead of --hidden.
  std::string layers;
  // "C,H,W": the CSV's feature columns hold an image in C, H, W order.
  std::string input_shape;
  // --hidden shorthand only: no batch norm over the raw inputs.
  bool no_input_norm = false;
  std::string activation = "relu";  // relu | tanh | sigmoid | identity
  int epochs = 10;
  int batch_size = 64;
  std::string optimizer = "sgd";  // sgd | adam
  float lr = 0.0f;                // 0: the trainer's default
  std::optional<float> momentum;  // unset: the trainer's default (0.9)
  float weight_decay = 0.0f;
  float bn_momentum = 0.1f;
  uint64_t seed = 1;
  bool no_shuffle = false;
  std::optional<int64_t> from_version;
  std::optional<std::string> from_label;
  int64_t publish_every = 0;
  bool recalibrate = false;
  // Steps between two checkpoints of the job (0: the trainer's default).
  int64_t checkpoint_every = 0;
  // How long to keep reconnecting to a trainer that went away (UNAVAILABLE)
  // before giving up; 0: do not resume.
  double resume_timeout_seconds = 120.0;
};
absl::StatusOr<int> RunTrain(const TrainOptions& options, Io& io);

struct PredictOptions {
  CommonOptions common;
  std::string model;
  std::string features;  // "1,2,3" (one example) ...
  std::string data;      // ... or a CSV file with a label column
  std::string label_column = "label";
  std::optional<int64_t> version;
  std::optional<std::string> label;
};
absl::StatusOr<int> RunPredict(const PredictOptions& options, Io& io);

// Registry and job commands (trainer).
struct RegistryOptions {
  CommonOptions common;
  std::string model;
  std::string label;
  int64_t version = 0;
  std::string job;
  // recalibrate
  std::string data;
  std::string label_column = "label";
  int batch_size = 256;
  // recalibrate of a stored version (--model with --version or --label):
  // the label to point at the result, if any.
  std::string set_label;
};
absl::StatusOr<int> RunModels(const RegistryOptions& options, Io& io);
absl::StatusOr<int> RunVersions(const RegistryOptions& options, Io& io);
absl::StatusOr<int> RunLabelSet(const RegistryOptions& options, Io& io);
absl::StatusOr<int> RunLabelDelete(const RegistryOptions& options, Io& io);
absl::StatusOr<int> RunDeleteVersion(const RegistryOptions& options, Io& io);
absl::StatusOr<int> RunJobs(const RegistryOptions& options, Io& io);
absl::StatusOr<int> RunCancel(const RegistryOptions& options, Io& io);
absl::StatusOr<int> RunDeleteJob(const RegistryOptions& options, Io& io);
absl::StatusOr<int> RunPublish(const RegistryOptions& options, Io& io);
absl::StatusOr<int> RunRecalibrate(const RegistryOptions& options, Io& io);

// grpc.health.v1.Health/Check; exit code 0 only when SERVING.
struct HealthOptions {
  CommonOptions common;
  std::string service;  // "" = the server as a whole
};
absl::StatusOr<int> RunHealth(const HealthOptions& options, Io& io);

// --- The command line ----------------------------------------------------
// Each Add*Command registers one subcommand (its options and help) on a
// CLI11 app and returns how to run it; main.cc only builds the app, calls
// these, parses and runs the one subcommand given. The options live in the
// returned `run` closure.

// A registered subcommand. After parsing, `run` checks what CLI11 cannot
// (e.g. a version given must be >= 1; see UsageError), runs the command and
// returns its exit code; main prints a failed status as
// `error: CODE: message` and exits 1.
struct Subcommand {
  CLI::App* cli = nullptr;
  std::function<absl::StatusOr<int>(Io&)> run;
};

// A usage error found after parsing: writes `error: <message>` and a --help
// hint to io.err and returns the usage exit code, 2.
int UsageError(Io& io, const std::string& message);

// The options every server command shares: `flag` (e.g. --trainer) with its
// default address, TLS, the token file and --json.
void AddConnectionOptions(CLI::App* cmd, CommonOptions* common,
                          const char* flag, const char* default_address,
                          const char* what);

// train_command.cc
Subcommand AddTrainCommand(CLI::App& app);
// predict_command.cc
Subcommand AddPredictCommand(CLI::App& app);
// registry_commands.cc; the label ones are added to the `label` group.
Subcommand AddModelsCommand(CLI::App& app);
Subcommand AddVersionsCommand(CLI::App& app);
Subcommand AddLabelSetCommand(CLI::App& label);
Subcommand AddLabelDeleteCommand(CLI::App& label);
Subcommand AddDeleteVersionCommand(CLI::App& app);
Subcommand AddJobsCommand(CLI::App& app);
Subcommand AddCancelCommand(CLI::App& app);
Subcommand AddDeleteJobCommand(CLI::App& app);
Subcommand AddPublishCommand(CLI::App& app);
Subcommand AddRecalibrateCommand(CLI::App& app);
Subcommand AddHealthCommand(CLI::App& app);

}  // namespace bnserve::client

#endif  // BNSERVE_CLIENT_BNCTL_COMMANDS_H_
