// What one inference call may cost, checked before anything is computed or
// allocated for it: the size of its answer (it must fit in one gRPC message)
// and its work (rows x the model's parameter count, which Servable computes
// once at load). Both refusals are RESOURCE_EXHAUSTED with a message naming
// the numbers and the flag.
#ifndef BNSERVE_SERVER_INFERENCE_REQUEST_LIMITS_H_
#define BNSERVE_SERVER_INFERENCE_REQUEST_LIMITS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/common/limits.h"
#include "server/inference/servable.h"

namespace bnserve::inference {

struct RequestLimits {
  // Largest answer, bytes (the server's largest gRPC message).
  int64_t max_response_bytes = int64_t{server::kDefaultMessageMb} << 20;
  // Largest rows x parameter count of one call.
  int64_t max_work = server::kDefaultMaxRequestWork;
};

// Bytes of the answer to `rows` rows of `outputs` values each when
// `float_tensors` tensors of rows x outputs FP32 values (outputs,
// probabilities) and `int_tensors` tensors of one integer (at most 8 bytes)
// per row (class ids) are returned. Saturates instead of overflowing.
int64_t ResponseBytes(int64_t rows, int64_t outputs, int float_tensors,
                      int int_tensors);

// OK, or RESOURCE_EXHAUSTED if answering `rows` rows of `servable` takes
// more than `response_bytes` (see ResponseBytes) or more work than `limits`
// allow. `method` names the call in the message.
absl::Status CheckRequestCost(absl::string_view method,
                              const Servable& servable, int64_t rows,
                              int64_t response_bytes,
                              const RequestLimits& limits);

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_REQUEST_LIMITS_H_
