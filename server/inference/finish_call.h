// The common tail of every unary handler: record the request in the metrics
// and finish the call with the status converted by server::ToGrpcStatus.
#ifndef BNSERVE_SERVER_INFERENCE_FINISH_CALL_H_
#define BNSERVE_SERVER_INFERENCE_FINISH_CALL_H_

#include <grpcpp/server_context.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/common/grpc_status.h"
#include "server/inference/metrics.h"

namespace bnserve::inference {

inline grpc::ServerUnaryReactor* FinishCall(
    grpc::CallbackServerContext* context, Metrics* metrics,
    absl::string_view method, absl::Time start, const absl::Status& status) {
  grpc::Status grpc_status = server::ToGrpcStatus(status);
  if (metrics != nullptr) {
    metrics->RecordRequest(method, grpc_status.error_code(),
                           absl::Now() - start);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc_status);
  return reactor;
}

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_FINISH_CALL_H_
