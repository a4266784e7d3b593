#include "client/bnctl/store_commands.h"

#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <memory>
#include <sstream>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/bnctl/command_util.h"
#include "client/bnctl/connection.h"
#include "client/bnctl/snapshot_json.h"
#include "client/onnx/onnx_export.h"
#include "client/onnx/onnx_import.h"

namespace bnserve::client {

absl::StatusOr<v1::Snapshot> ReadSnapshotForExport(
    store::SnapshotStore& store, const std::string& model,
    std::optional<int64_t> version, std::optional<std::string> label) {
  if (absl::Status s = store::ValidateModelName(model); !s.ok()) return s;
  if (version) return store.Read(model, *version);
  if (label) {
    absl::StatusOr<int64_t> v = store.ResolveLabel(model, *label);
    if (!v.ok()) return v.status();
    return store.Read(model, *v);
  }
  return store::ReadLatestValid(store, model);
}

absl::StatusOr<int64_t> ImportSnapshotJson(store::SnapshotStore& store,
                                           const std::string& model,
                                           const std::string& json_text) {
  if (absl::Status s = store::ValidateModelName(model); !s.ok()) return s;
  absl::StatusOr<v1::Snapshot> snapshot = SnapshotFromJsonText(json_text);
  if (!snapshot.ok()) return snapshot.status();
  return PublishImported(store, model, *std::move(snapshot));
}

absl::StatusOr<int64_t> PublishImported(store::SnapshotStore& store,
                                        const std::string& model,
                                        v1::Snapshot snapshot) {
  if (absl::Status s = store::ValidateModelName(model); !s.ok()) return s;
  snapshot.set_model(std::string(model));
  snapshot.set_version(0);
  v1::Provenance* t = snapshot.mutable_training();
  t->clear_job_id();
  t->set_parent_version(0);
  t->set_origin("import");
  const absl::Time now = absl::Now();
  const int64_t seconds = absl::ToUnixSeconds(now);
  t->mutable_created()->set_seconds(seconds);
  t->mutable_created()->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(now - absl::FromUnixSeconds(seconds))));
  return store.Publish(snapshot);
}

absl::StatusOr<int> RunExport(const ExportOptions& o, Io& io) {
  absl::StatusOr<std::unique_ptr<store::SnapshotStore>> store =
      store::OpenStore(o.store);
  if (!store.ok()) return store.status();
  absl::StatusOr<v1::Snapshot> snapshot =
      ReadSnapshotForExport(**store, o.model, o.version, o.label);
  if (!snapshot.ok()) return snapshot.status();
  absl::StatusOr<std::string> text = o.format == "onnx"
                                         ? onnx_io::SnapshotToOnnx(*snapshot)
                                         : SnapshotToJsonText(*snapshot);
  if (!text.ok()) {
    return absl::Status(
        text.status().code(),
        absl::StrCat("model ", o.model, " version ", snapshot->version(), ": ",
                     text.status().message()));
  }
  if (o.output.empty() || o.output == "-") {
    io.out << *text;  // the snapshot itself is the one object
    io.out.flush();
    return 0;
  }
  {
    std::ofstream file(o.output, std::ios::binary | std::ios::trunc);
    file << *text;
    file.close();
    if (!file) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot write ", o.output));
    }
  }
  if (o.json) {
    PrintJson(io, {{"model", o.model},
                   {"version", snapshot->version()},
                   {"path", o.output}});
  } else {
    io.out << "exported model " << o.model << " version " << snapshot->version()
           << " to " << o.output << "\n";
  }
  return 0;
}

namespace {

bool IsOnnx(const ImportOptions& o) {
  if (!o.format.empty()) return o.format == "onnx";
  return absl::EndsWithIgnoreCase(o.from, ".onnx");
}

absl::StatusOr<int64_t> ImportOnnx(store::SnapshotStore& store,
                                   const ImportOptions& o,
                                   const std::string& bytes) {
  onnx_io::OnnxImportOptions options;
  options.task =
      o.task == "regression" ? v1::TASK_REGRESSION : v1::TASK_CLASSIFICATION;
  options.class_names = o.classes;
  absl::StatusOr<v1::Snapshot> snapshot =
      onnx_io::SnapshotFromOnnx(bytes, options);
  if (!snapshot.ok()) return snapshot.status();
  return PublishImported(store, o.model, *std::move(snapshot));
}

}  // namespace

absl::StatusOr<int> RunImport(const ImportOptions& o, Io& io) {
  std::string text;
  if (o.from == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin),
                std::istreambuf_iterator<char>());
  } else {
    absl::StatusOr<std::string> file = ReadWholeFile(o.from);
    if (!file.ok()) return file.status();
    text = *std::move(file);
  }
  absl::StatusOr<std::unique_ptr<store::SnapshotStore>> store =
      store::OpenStore(o.store);
  if (!store.ok()) return store.status();
  absl::StatusOr<int64_t> version =
      IsOnnx(o) ? ImportOnnx(**store, o, text)
                : ImportSnapshotJson(**store, o.model, text);
  if (absl::IsInvalidArgument(version.status())) {
    return absl::Status(version.status().code(),
                        absl::StrCat(o.from == "-" ? "<stdin>" : o.from, ": ",
                                     version.status().message()));
  }
  if (!version.ok()) return version.status();
  if (o.json) {
    PrintJson(io, {{"model", o.model}, {"version", *version}});
  } else {
    io.out << "imported model " << o.model << " version " << *version << "\n";
  }
  return 0;
}

Subcommand AddExportCommand(CLI::App& app) {
  auto exp = std::make_shared<ExportOptions>();
  CLI::App* cmd = app.add_subcommand(
      "export",
      "Write a snapshot from a store as JSON (spec, parameters, running "
      "statistics and their provenance) that numpy/PyTorch can load");
  cmd->add_option("--store", exp->store,
                  "store URI: a directory, file:///abs/path, "
                  "redis://host:port[/db]")
      ->required();
  cmd->add_option("--model", exp->model, "model name")->required();
  auto version = std::make_shared<int64_t>(0);
  auto label = std::make_shared<std::string>();
  CLI::Option* version_opt =
      cmd->add_option("--version", *version,
                      "version to export (default: the newest that verifies)");
  CLI::Option* label_opt = cmd->add_option(
      "--label", *label, "export the version this label points at");
  version_opt->excludes(label_opt);
  cmd->add_option("--output,-o", exp->output,
                  "write to this file instead of stdout");
  cmd->add_option("--format", exp->format,
                  "json (the snapshot JSON) or onnx (an opset 13 ONNX model: "
                  "input `input`, raw outputs `output`, batch norms kept)")
      ->check(CLI::IsMember({"json", "onnx"}));
  cmd->add_flag("--json", exp->json,
                "with --output: print {model, version, path} (without "
                "--output the snapshot JSON is the one object)");
  return {cmd, [=](Io& io) -> absl::StatusOr<int> {
            if (version_opt->count() > 0) {
              if (*version < 1) return UsageError(io, "--version must be >= 1");
              exp->version = *version;
            }
            if (label_opt->count() > 0) exp->label = *label;
            return RunExport(*exp, io);
          }};
}

Subcommand AddImportCommand(CLI::App& app) {
  auto imp = std::make_shared<ImportOptions>();
  CLI::App* cmd = app.add_subcommand(
      "import",
      "Validate a snapshot JSON (the export format) or an ONNX model "
      "(e.g. from torch.onnx.export) and publish it to a store as the "
      "model's next version");
  cmd->add_option("--store", imp->store, "store URI")->required();
  cmd->add_option("--model", imp->model, "model name to publish as")
      ->required();
  cmd->add_option("--from", imp->from,
                  "JSON or ONNX (.onnx) file (- for stdin)")
      ->required();
  cmd->add_option("--format", imp->format,
                  "json or onnx (default: onnx for a .onnx file, else json)")
      ->check(CLI::IsMember({"json", "onnx"}));
  CLI::Option* task_opt =
      cmd->add_option("--task", imp->task,
                      "ONNX only: the head of the imported network")
          ->check(CLI::IsMember({"classification", "regression"}));
  CLI::Option* classes_opt =
      cmd->add_option("--classes", imp->classes,
                      "ONNX classification only: class names, comma-separated "
                      "(default 0..K-1)")
          ->delimiter(',');
  cmd->add_flag("--json", imp->json, "print {model, version}");
  return {cmd, [=](Io& io) -> absl::StatusOr<int> {
            if (!IsOnnx(*imp) && (task_opt->count() || classes_opt->count())) {
              return UsageError(io,
                                "--task and --classes apply to ONNX "
                                "imports only");
            }
            if (imp->task == "regression" && classes_opt->count()) {
              return UsageError(io, "--classes needs --task classification");
            }
            return RunImport(*imp, io);
          }};
}

}  // namespace bnserve::client
