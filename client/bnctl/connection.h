// How bnctl reaches a server: plaintext or TLS (optionally mutual TLS)
// channels, and the bearer token every call carries when --token-file is
// given (`authorization: Bearer <token>`, as the servers expect).
#ifndef BNSERVE_CLIENT_BNCTL_CONNECTION_H_
#define BNSERVE_CLIENT_BNCTL_CONNECTION_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace bnserve::client {

struct ConnectionOptions {
  std::string address;     // HOST:PORT
  std::string tls_ca;      // PEM roots; TLS when any tls_* is set
  std::string tls_cert;    // client certificate chain (mutual TLS)
  std::string tls_key;     // client private key (mutual TLS)
  std::string token_file;  // bearer token, surrounding whitespace stripped
};

// A channel plus the per-call settings. Immutable once made; thread-safe.
class Connection {
 public:
  // InvalidArgument for an empty address or only one of cert/key;
  // NotFound/InvalidArgument for unreadable or empty files.
  static absl::StatusOr<Connection> Open(const ConnectionOptions& options);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  // Sets the deadline (none when `timeout` is infinite) and the bearer
  // token on a fresh context.
  void Prepare(grpc::ClientContext* context,
               absl::Duration timeout = absl::InfiniteDuration()) const;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::string token_;
};

// Reads a whole file; NotFound if it cannot be opened.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

// "UNAVAILABLE" etc. for a gRPC status code (the canonical names, as absl).
std::string CodeName(grpc::StatusCode code);

// grpc::Status -> absl::Status (same codes).
absl::Status FromGrpc(const grpc::Status& status);

}  // namespace bnserve::client

#endif  // BNSERVE_CLIENT_BNCTL_CONNECTION_H_
