#include "client/bnctl/connection.h"

#include <chrono>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace bnserve::client {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return buffer.str();
}

absl::StatusOr<Connection> Connection::Open(const ConnectionOptions& options) {
  if (options.address.empty()) {
    return absl::InvalidArgumentError("no server address (HOST:PORT) given");
  }
  Connection conn;
  if (!options.token_file.empty()) {
    absl::StatusOr<std::string> token = ReadWholeFile(options.token_file);
    if (!token.ok()) return token.status();
    conn.token_ = std::string(absl::StripAsciiWhitespace(*token));
    if (conn.token_.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token file ", options.token_file, " is empty"));
    }
  }
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.tls_ca.empty() && options.tls_cert.empty() &&
      options.tls_key.empty()) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    if (options.tls_cert.empty() != options.tls_key.empty()) {
      return absl::InvalidArgumentError(
          "--tls-cert and --tls-key must be given together (mutual TLS)");
    }
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca.empty()) {
      absl::StatusOr<std::string> ca = ReadWholeFile(options.tls_ca);
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
    }
    if (!options.tls_cert.empty()) {
      absl::StatusOr<std::string> cert = ReadWholeFile(options.tls_cert);
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadWholeFile(options.tls_key);
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  // A restarted server is found again within about a second (gRPC's default
  // reconnect backoff grows to two minutes); bnctl train relies on it.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  conn.channel_ = grpc::CreateCustomChannel(options.address, creds, args);
  return conn;
}

void Connection::Prepare(grpc::ClientContext* context,
                         absl::Duration timeout) const {
  if (timeout != absl::InfiniteDuration()) {
    context->set_deadline(std::chrono::system_clock::now() +
                          absl::ToChronoMilliseconds(timeout));
  }
  if (!token_.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", token_));
  }
}

std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

}  // namespace bnserve::client
