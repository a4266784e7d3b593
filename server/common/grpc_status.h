// The one place where absl::Status becomes grpc::Status. Abseil's canonical
// codes map one-to-one onto gRPC's. Also the transport boundary for
// exceptions: GuardCall runs a handler body so that none escapes into gRPC
// (which would swallow it and answer UNKNOWN or UNIMPLEMENTED without a
// message, or never finish a callback reactor).
#ifndef BNSERVE_SERVER_COMMON_GRPC_STATUS_H_
#define BNSERVE_SERVER_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <exception>
#include <new>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace bnserve::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

// Runs `body` (returning absl::Status). std::bad_alloc becomes
// RESOURCE_EXHAUSTED and any other exception INTERNAL, both with a message
// naming `what` (the call being answered).
template <typename F>
absl::Status GuardCall(absl::string_view what, F&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, ": the server ran out of memory answering it"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_COMMON_GRPC_STATUS_H_
