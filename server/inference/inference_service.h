// bnserve.v1.Inference: Predict (one example), PredictBatch (independent
// rows) and GetModelMetadata. Handlers are thin: authenticate, validate,
// ask the ServableManager for a Servable, compute, record metrics; errors are
// absl::Status converted once by server::ToGrpcStatus (codes: see
// proto/bnserve/v1/inference.proto).
//
// Thread-safe; the manager, auth and metrics must outlive the service.
#ifndef BNSERVE_SERVER_INFERENCE_INFERENCE_SERVICE_H_
#define BNSERVE_SERVER_INFERENCE_INFERENCE_SERVICE_H_

#include <grpcpp/support/byte_buffer.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bnserve/v1/inference.grpc.pb.h"
#include "server/common/auth.h"
#include "server/inference/message_pool.h"
#include "server/inference/metrics.h"
#include "server/inference/request_limits.h"
#include "server/inference/servable_manager.h"

namespace bnserve::inference {

// Largest number of rows accepted by one batch call (PredictBatch and KServe
// ModelInfer); more is RESOURCE_EXHAUSTED. Defined in server/common/limits.h.
using server::kMaxBatchRows;

// One Predict call's messages: the request Predict parses itself and the
// response gRPC serializes (grpc::SerializationTraits<PredictExchange>
// below: `response` only). Recycled per thread with the raw request bytes
// (RecyclingAllocator).
struct PredictExchange {
  v1::PredictRequest request;
  v1::PredictResponse response;
};

template <>
struct Recycling<PredictExchange> {
  static size_t Bytes(const PredictExchange& m) {
    return m.request.ByteSizeLong() + m.response.ByteSizeLong();
  }
  static void Clear(PredictExchange* m) {
    m->request.Clear();
    m->response.Clear();
  }
};

// Predict takes its request raw (a ByteBuffer) and parses it itself, so that
// it needs no interceptor (see server/common/parse_error_interceptor.h);
// its response is serialized by gRPC straight into the call's send buffer,
// as a typed method's is. The other methods are typed. (Built on the typed
// callback bases of the other two methods only; the constructor registers
// Predict's handler.)
using InferenceServiceBase = v1::Inference::WithCallbackMethod_PredictBatch<
    v1::Inference::WithCallbackMethod_GetModelMetadata<v1::Inference::Service>>;

class InferenceService final : public InferenceServiceBase {
 public:
  // The full name of Predict, which server::ServerInterceptors must leave
  // out.
  static std::string PredictMethod();

  InferenceService(const ServableManager* manager,
                   const server::TokenAuth* auth, Metrics* metrics,
                   RequestLimits limits = {});

  // Parses a PredictRequest into exchange->request (INVALID_ARGUMENT if the
  // bytes are not one) and answers it like DoPredict in
  // exchange->response. (Not named Predict: that would hide the generated
  // synchronous Predict, which clang's -Woverloaded-virtual refuses.)
  grpc::ServerUnaryReactor* PredictRaw(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       PredictExchange* exchange);
  grpc::ServerUnaryReactor* PredictBatch(
      grpc::CallbackServerContext* context,
      const v1::PredictBatchRequest* request,
      v1::PredictBatchResponse* response) override;
  grpc::ServerUnaryReactor* GetModelMetadata(
      grpc::CallbackServerContext* context,
      const v1::ModelMetadataRequest* request,
      v1::ModelMetadata* response) override;

 private:
  absl::StatusOr<std::shared_ptr<const Servable>> Select(
      const grpc::CallbackServerContext& context, const std::string& model,
      const v1::VersionSelector& select) const;
  absl::Status ServePredict(const grpc::CallbackServerContext& context,
                            const grpc::ByteBuffer& request,
                            PredictExchange* exchange) const;
  absl::Status DoPredict(const grpc::CallbackServerContext& context,
                         const v1::PredictRequest& request,
                         v1::PredictResponse* response) const;
  absl::Status DoPredictBatch(const grpc::CallbackServerContext& context,
                              const v1::PredictBatchRequest& request,
                              v1::PredictBatchResponse* response) const;
  absl::Status DoGetModelMetadata(const grpc::CallbackServerContext& context,
                                  const v1::ModelMetadataRequest& request,
                                  v1::ModelMetadata* response) const;

  const ServableManager* const manager_;
  const server::TokenAuth* const auth_;
  Metrics* const metrics_;
  const RequestLimits limits_;
  // Predict's messages are recycled (see message_pool.h): gRPC takes them
  // for a call and gives them back when it is done.
  RecyclingAllocator<grpc::ByteBuffer, PredictExchange> predict_messages_;
};

// Softmax of `n` values in place (numerically stable); returns the argmax.
int SoftmaxInPlace(float* values, int n);

// InvalidArgument naming the first non-finite value of `x` (row-major, `cols`
// per row), or OK.
absl::Status CheckFinite(const float* x, int64_t n, int64_t cols);

// InvalidArgument if an output in `out` (row-major, `cols` per row) is NaN
// or infinite: finite inputs too large for the model overflowed it. Names
// the row (for batches) and says so.
absl::Status CheckOutputsFinite(const float* out, int64_t n, int64_t cols);

}  // namespace bnserve::inference

// Serializes a PredictExchange's response as one slice of exactly its size.
// Its size must have been computed (ByteSizeLong(), which
// InferenceService::ServePredict does and checks) after its last change.
namespace grpc {

template <>
class SerializationTraits<bnserve::inference::PredictExchange> {
 public:
  static Status Serialize(const bnserve::inference::PredictExchange& exchange,
                          ByteBuffer* bytes, bool* own_buffer);
};

}  // namespace grpc

#endif  // BNSERVE_SERVER_INFERENCE_INFERENCE_SERVICE_H_
