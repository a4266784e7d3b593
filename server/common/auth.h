// Optional bearer-token authentication: clients send
// `authorization: Bearer <token>` (gRPC metadata or an HTTP header).
// Immutable after construction,
// so safe to share between threads.
#ifndef BNSERVE_SERVER_COMMON_AUTH_H_
#define BNSERVE_SERVER_COMMON_AUTH_H_

#include <grpcpp/server_context.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bnserve::server {

class TokenAuth {
 public:
  // An empty token disables authentication.
  explicit TokenAuth(std::string token = "") : token_(std::move(token)) {}

  // Reads the token from a file (surrounding whitespace stripped). An empty
  // path gives a disabled TokenAuth; an unreadable or empty file is an error.
  static absl::StatusOr<TokenAuth> FromFile(const std::string& path);

  bool enabled() const { return !token_.empty(); }

  // OK when disabled or when the call carries the right bearer token;
  // UNAUTHENTICATED otherwise (the comparison takes constant time).
  absl::Status Check(const grpc::ServerContextBase& context) const;
  // The same check on the value of an `authorization` header (gRPC metadata
  // or HTTP), nullptr when the request has none. Every transport calls it.
  absl::Status CheckAuthorization(const std::string* authorization) const;

 private:
  std::string token_;
};

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_COMMON_AUTH_H_
