// bnctl: the command-line client of bnserve. main() only builds the CLI11
// app from the per-command Add*Command functions (commands.h,
// store_commands.h), parses, and runs the one subcommand given.
//
// Exit codes: 0 success; 1 an error (printed to stderr as
// `error: <gRPC CODE>: <message>`), or `health` not SERVING; 2 a usage error.
#include <unistd.h>

#include <iostream>
#include <string>
#include <utility>
#include <vector>

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

  std::vector<Subcommand> commands;
  commands.push_back(AddTrainCommand(app));
  commands.push_back(AddPredictCommand(app));
  commands.push_back(AddModelsCommand(app));
  commands.push_back(AddVersionsCommand(app));
  CLI::App* label =
      app.add_subcommand("label", "Set or delete a version label");
  label->require_subcommand(1);
  commands.push_back(AddLabelSetCommand(*label));
  commands.push_back(AddLabelDeleteCommand(*label));
  commands.push_back(AddDeleteVersionCommand(app));
  commands.push_back(AddJobsCommand(app));
  commands.push_back(AddCancelCommand(app));
  commands.push_back(AddDeleteJobCommand(app));
  commands.push_back(AddPublishCommand(app));
  commands.push_back(AddRecalibrateCommand(app));
  commands.push_back(AddHealthCommand(app));
  commands.push_back(AddExportCommand(app));
  commands.push_back(AddImportCommand(app));

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

  Io io{std::cout, std::cerr, isatty(STDERR_FILENO) == 1};
  for (const Subcommand& c : commands) {
    if (*c.cli) return Report(c.run(io));
  }
  return UsageError(io, "unknown command");
}

}  // namespace
}  // namespace bnserve::client

int main(int argc, char** argv) { return bnserve::client::Main(argc, argv); }
