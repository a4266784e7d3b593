#include "client/bnctl/command_util.h"

#include <bit>
#include <cstring>
#include <numeric>
#include <ostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"

namespace bnserve::client {

int UsageError(Io& io, const std::string& message) {
  io.err << "error: " << message << "\nRun with --help for more "
         << "information." << std::endl;
  return 2;
}

void AddConnectionOptions(CLI::App* cmd, CommonOptions* common,
                          const char* flag, const char* default_address,
                          const char* what) {
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

void PrintJson(Io& io, const nlohmann::json& json) {
  io.out << json.dump() << "\n";
  io.out.flush();
}

void FillFeatures(const LabeledData& data, const std::vector<int>& order,
                  int begin, int count, v1::Minibatch* batch) {
  static_assert(std::endian::native == std::endian::little,
                "features_f32 is little-endian: a big-endian host needs a "
                "byte swap");
  batch->set_rows(count);
  batch->set_cols(data.features);
  const size_t row_bytes = static_cast<size_t>(data.features) * sizeof(float);
  std::string* raw = batch->mutable_features_f32();
  raw->resize(static_cast<size_t>(count) * row_bytes);
  char* out = raw->data();
  for (int i = begin; i < begin + count; ++i, out += row_bytes) {
    const float* row = data.x.data() + static_cast<size_t>(order[i]) *
                                           static_cast<size_t>(data.features);
    std::memcpy(out, row, row_bytes);
  }
}

absl::StatusOr<v1::PublishResponse> StreamRecalibration(
    const Connection& connection, v1::Trainer::Stub& stub,
    const std::string& job_id, const Dataset& dataset, int batch_size) {
  absl::StatusOr<std::vector<int>> sizes =
      BatchSizes(dataset.data.rows, batch_size);
  if (!sizes.ok()) return sizes.status();
  std::vector<int> order(dataset.data.rows);
  std::iota(order.begin(), order.end(), 0);
  grpc::ClientContext context;
  connection.Prepare(&context);
  v1::PublishResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::RecalibrateRequest>> writer =
      stub.Recalibrate(&context, &response);
  int begin = 0;
  for (int size : *sizes) {
    v1::RecalibrateRequest request;
    if (begin == 0) request.set_job_id(job_id);
    FillFeatures(dataset.data, order, begin, size, request.mutable_batch());
    if (!writer->Write(request)) break;  // Finish() reports why
    begin += size;
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (!status.ok()) return RpcError(status, "recalibration");
  return response;
}

absl::Status RpcError(const grpc::Status& status, const std::string& doing) {
  std::string message = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    absl::StrAppend(&message, " (is the server running at that address?)");
  }
  return absl::Status(
      static_cast<absl::StatusCode>(status.error_code()),
      doing.empty() ? message : absl::StrCat(doing, ": ", message));
}

}  // namespace bnserve::client
