// The one place where absl::Status becomes grpc::Status. Abseil's canonical
// codes map one-to-one onto gRPC's.
#ifndef BNSERVE_SERVER_COMMON_GRPC_STATUS_H_
#define BNSERVE_SERVER_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace bnserve::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_COMMON_GRPC_STATUS_H_
