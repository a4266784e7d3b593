#include "server/inference/request_limits.h"

#include "absl/strings/str_cat.h"

namespace bnserve::inference {

using server::SaturatingAdd;
using server::SaturatingMul;

int64_t ResponseBytes(int64_t rows, int64_t outputs, int float_tensors,
                      int int_tensors) {
  // Values are packed; a few hundred bytes cover names, shapes and framing.
  constexpr int64_t kOverhead = 1024;
  const int64_t floats = SaturatingMul(SaturatingMul(rows, outputs), 4);
  return SaturatingAdd(
      SaturatingAdd(SaturatingMul(floats, float_tensors),
                    SaturatingMul(SaturatingMul(rows, 8), int_tensors)),
      kOverhead);
}

absl::Status CheckRequestCost(absl::string_view method,
                              const Servable& servable, int64_t rows,
                              int64_t response_bytes,
                              const RequestLimits& limits) {
  if (response_bytes > limits.max_response_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        method, " of ", rows, " rows x ", servable.output_dim(),
        " outputs of model '", servable.model(), "' version ",
        servable.version(), " would answer ", response_bytes,
        " bytes; the server's largest message is ", limits.max_response_bytes,
        " bytes (--max_message_mb): send fewer rows per call"));
  }
  const int64_t parameters = servable.parameter_count();
  const int64_t work = SaturatingMul(rows, parameters);
  if (work > limits.max_work) {
    return absl::ResourceExhaustedError(absl::StrCat(
        method, " of ", rows, " rows through model '", servable.model(),
        "' version ", servable.version(), " (", parameters, " parameters) is ",
        work, " units of work; the server's limit is ", limits.max_work,
        " per call (--max_request_work): send fewer rows ", "per call"));
  }
  return absl::OkStatus();
}

}  // namespace bnserve::inference
