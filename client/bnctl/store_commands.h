// bnctl export / import: snapshots as the JSON of docs/DESIGN.md section 3.3.
//
// Layering exception: unlike every other bnctl command these do not talk to
// a server; they read and publish snapshots directly in a store (`--store
// URI`, the same URIs the servers take) and so link the store library
// (store/store.h). Nothing else in the client may depend on store/.
#ifndef BNSERVE_CLIENT_BNCTL_STORE_COMMANDS_H_
#define BNSERVE_CLIENT_BNCTL_STORE_COMMANDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bnserve/v1/snapshot.pb.h"
#include "client/bnctl/commands.h"
#include "store/store.h"

namespace bnserve::client {

// Reads the snapshot to export: `version` if set, else the version `label`
// points at if set, else the newest version that verifies.
absl::StatusOr<v1::Snapshot> ReadSnapshotForExport(
    store::SnapshotStore& store, const std::string& model,
    std::optional<int64_t> version, std::optional<std::string> label);

// Parses and validates `json_text` (snapshot_json.h), names it `model`,
// records the provenance as an import (origin "import", no job, no parent,
// created now; the source's step/examples/loss are kept) and publishes it.
// Returns the new version. InvalidArgument for a bad model name or JSON.
absl::StatusOr<int64_t> ImportSnapshotJson(store::SnapshotStore& store,
                                           const std::string& model,
                                           const std::string& json_text);

// The same for a snapshot that is already decoded and validated (ONNX
// import): names it `model`, records the import provenance and publishes.
absl::StatusOr<int64_t> PublishImported(store::SnapshotStore& store,
                                        const std::string& model,
                                        v1::Snapshot snapshot);

struct ExportOptions {
  bool json = false;
  std::string store;
  std::string model;
  std::optional<int64_t> version;
  std::optional<std::string> label;
  std::string output;           // file; empty = stdout
  std::string format = "json";  // or "onnx" (client/onnx/onnx_export.h)
};
absl::StatusOr<int> RunExport(const ExportOptions& options, Io& io);

struct ImportOptions {
  bool json = false;
  std::string store;
  std::string model;
  std::string from;  // JSON or ONNX file ("-" = stdin)
  // "json", "onnx", or empty: ONNX when `from` ends in ".onnx", else JSON.
  std::string format;
  // ONNX only (a JSON snapshot names its own task and classes).
  std::string task = "classification";  // or "regression"
  std::vector<std::string> classes;     // empty: "0".."K-1"
};
absl::StatusOr<int> RunImport(const ImportOptions& options, Io& io);

// The command-line registration of export and import (commands.h).
Subcommand AddExportCommand(CLI::App& app);
Subcommand AddImportCommand(CLI::App& app);

}  // namespace bnserve::client

#endif  // BNSERVE_CLIENT_BNCTL_STORE_COMMANDS_H_
