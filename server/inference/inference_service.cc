#include "server/inference/inference_service.h"

#include <grpcpp/support/proto_buffer_reader.h>
#include <grpcpp/support/slice.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "model/status_macros.h"
#include "server/common/grpc_status.h"
#include "server/common/parse_error_interceptor.h"
#include "server/inference/finish_call.h"

namespace bnserve::inference {

using server::GuardCall;

int SoftmaxInPlace(float* values, int n) {
  if (n <= 0) return 0;
  const int best =
      static_cast<int>(std::max_element(values, values + n) - values);
  const float mx = values[best];
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    values[i] = std::exp(values[i] - mx);
    sum += values[i];
  }
  for (int i = 0; i < n; ++i) values[i] /= sum;
  return best;
}

absl::Status CheckFinite(const float* x, int64_t n, int64_t cols) {
  const int64_t bad = FirstNonFinite(x, n);
  if (bad < 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("feature ", bad % cols,
                   cols < n ? absl::StrCat(" of row ", bad / cols) : "", " is ",
                   std::isnan(x[bad]) ? "NaN" : "infinite",
                   "; every feature must be a finite number"));
}

absl::Status CheckOutputsFinite(const float* out, int64_t n, int64_t cols) {
  const int64_t bad = FirstNonFinite(out, n);
  if (bad < 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "the input", cols < n ? absl::StrCat(" of row ", bad / cols) : "",
      " overflowed the model: output ", bad % cols, " is ",
      std::isnan(out[bad]) ? "NaN" : "infinite",
      "; the features are finite but far outside the range the model can "
      "compute with"));
}

InferenceService::InferenceService(const ServableManager* manager,
                                   const server::TokenAuth* auth,
                                   Metrics* metrics, RequestLimits limits)
    : manager_(manager), auth_(auth), metrics_(metrics), limits_(limits) {
  auto* handler = new grpc::internal::CallbackUnaryHandler<grpc::ByteBuffer,
                                                           PredictExchange>(
      [this](grpc::CallbackServerContext* context,
             const grpc::ByteBuffer* request, PredictExchange* exchange) {
        return PredictRaw(context, request, exchange);
      });
  handler->SetMessageAllocator(&predict_messages_);
  MarkMethodCallback(0, handler);  // Predict, method 0 of the service
}

absl::StatusOr<std::shared_ptr<const Servable>> InferenceService::Select(
    const grpc::CallbackServerContext& context, const std::string& model,
    const v1::VersionSelector& select) const {
  BNSERVE_RETURN_IF_ERROR(auth_->Check(context));
  if (model.empty()) return absl::InvalidArgumentError("model is required");
  VersionRequest request;
  switch (select.selector_case()) {
    case v1::VersionSelector::kVersion:
      if (select.version() <= 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "version must be a positive number, got ", select.version()));
      }
      request.version = select.version();
      break;
    case v1::VersionSelector::kLabel:
      if (!select.label().empty()) {
        BNSERVE_RETURN_IF_ERROR(store::ValidateLabel(select.label()));
        request.label = select.label();
      }
      break;
    default:
      break;
  }
  return manager_->Get(model, request);
}

absl::Status InferenceService::DoPredict(
    const grpc::CallbackServerContext& context,
    const v1::PredictRequest& request, v1::PredictResponse* response) const {
  BNSERVE_ASSIGN_OR_RETURN(std::shared_ptr<const Servable> servable,
                           Select(context, request.model(), request.select()));
  if (request.features_size() != servable->input_features()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", servable->model(), "' version ", servable->version(),
        " expects ", servable->input_features(), " features, got ",
        request.features_size()));
  }
  BNSERVE_RETURN_IF_ERROR(CheckFinite(request.features().data(),
                                      request.features_size(),
                                      request.features_size()));
  const int d = servable->output_dim();
  BNSERVE_RETURN_IF_ERROR(
      CheckRequestCost("Predict", *servable, 1,
                       ResponseBytes(1, d, servable->classification() ? 2 : 1,
                                     servable->classification() ? 1 : 0),
                       limits_));
  response->set_model(servable->model());
  response->set_version(servable->version());
  response->mutable_outputs()->Resize(d, 0.0f);
  servable->Run(request.features().data(),
                response->mutable_outputs()->mutable_data());
  BNSERVE_RETURN_IF_ERROR(CheckOutputsFinite(response->outputs().data(), d, d));
  if (servable->classification()) {
    *response->mutable_probabilities() = response->outputs();
    const int id =
        SoftmaxInPlace(response->mutable_probabilities()->mutable_data(), d);
    response->set_class_id(id);
    if (id < servable->info().class_names_size()) {
      response->set_class_name(servable->info().class_names(id));
    }
  }
  return absl::OkStatus();
}

absl::Status InferenceService::DoPredictBatch(
    const grpc::CallbackServerContext& context,
    const v1::PredictBatchRequest& request,
    v1::PredictBatchResponse* response) const {
  BNSERVE_ASSIGN_OR_RETURN(std::shared_ptr<const Servable> servable,
                           Select(context, request.model(), request.select()));
  const int64_t rows = request.rows();
  const int64_t f = servable->input_features();
  if (rows < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("rows must be at least 1, got ", rows));
  }
  if (rows > kMaxBatchRows) {
    return absl::ResourceExhaustedError(
        absl::StrCat("at most ", kMaxBatchRows, " rows per call, got ", rows));
  }
  if (request.features_size() != rows * f) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", servable->model(), "' version ", servable->version(),
        " expects rows * ", f, " = ", rows * f, " feature values, got ",
        request.features_size()));
  }
  const int64_t d = servable->output_dim();
  const bool clf = servable->classification();
  // The answer must fit in one message (so rows * d fits an int) and the
  // work must be bounded: both are checked before anything is allocated.
  BNSERVE_RETURN_IF_ERROR(CheckRequestCost(
      "PredictBatch", *servable, rows,
      ResponseBytes(rows, d, clf ? 2 : 1, clf ? 1 : 0), limits_));
  BNSERVE_RETURN_IF_ERROR(
      CheckFinite(request.features().data(), request.features_size(), f));
  response->set_model(servable->model());
  response->set_version(servable->version());
  response->set_rows(static_cast<int32_t>(rows));
  response->set_output_dim(static_cast<int32_t>(d));
  response->mutable_outputs()->Resize(static_cast<int>(rows * d), 0.0f);
  float* out = response->mutable_outputs()->mutable_data();
  for (int64_t r = 0; r < rows; ++r) {
    servable->Run(request.features().data() + r * f, out + r * d);
  }
  BNSERVE_RETURN_IF_ERROR(CheckOutputsFinite(out, rows * d, d));
  if (clf) {
    *response->mutable_probabilities() = response->outputs();
    float* p = response->mutable_probabilities()->mutable_data();
    response->mutable_class_ids()->Reserve(static_cast<int>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      response->add_class_ids(SoftmaxInPlace(p + r * d, static_cast<int>(d)));
    }
  }
  return absl::OkStatus();
}

absl::Status InferenceService::DoGetModelMetadata(
    const grpc::CallbackServerContext& context,
    const v1::ModelMetadataRequest& request,
    v1::ModelMetadata* response) const {
  BNSERVE_ASSIGN_OR_RETURN(std::shared_ptr<const Servable> servable,
                           Select(context, request.model(), request.select()));
  const v1::Snapshot& info = servable->info();
  response->set_model(servable->model());
  response->set_version(servable->version());
  response->set_task(servable->task());
  response->set_input_features(servable->input_features());
  response->set_output_dim(servable->output_dim());
  *response->mutable_feature_names() = info.feature_names();
  *response->mutable_class_names() = info.class_names();
  for (const v1::BatchNormStatistics& bn : servable->batch_norm()) {
    *response->add_batch_norm() = bn;
  }
  *response->mutable_training() = info.training();
  for (int64_t v : manager_->LoadedVersions(servable->model())) {
    response->add_loaded_versions(v);
  }
  return absl::OkStatus();
}

std::string InferenceService::PredictMethod() {
  return absl::StrCat("/", v1::Inference::service_full_name(), "/Predict");
}

namespace {

// Parses `bytes` into `message` (cleared); false if they are not one. A
// small request is one slice, parsed in place; otherwise as gRPC would.
// An empty message may arrive as no buffer at all: it parses as empty.
bool ParseRequest(const grpc::ByteBuffer& bytes,
                  google::protobuf::MessageLite* message) {
  if (!bytes.Valid()) return true;
  grpc::Slice slice;
  if (bytes.TrySingleSlice(&slice).ok()) {
    return slice.size() <= static_cast<size_t>(INT_MAX) &&
           message->ParseFromArray(slice.begin(),
                                   static_cast<int>(slice.size()));
  }
  grpc::ByteBuffer copy(bytes);  // shares the slices; parsing drains it
  grpc::ProtoBufferReader reader(&copy);
  return reader.status().ok() && message->ParseFromZeroCopyStream(&reader);
}

}  // namespace

absl::Status InferenceService::ServePredict(
    const grpc::CallbackServerContext& context, const grpc::ByteBuffer& request,
    PredictExchange* exchange) const {
  if (!ParseRequest(request, &exchange->request)) {
    return server::UnparsableRequestStatus(PredictMethod());
  }
  BNSERVE_RETURN_IF_ERROR(
      DoPredict(context, exchange->request, &exchange->response));
  // Sizes the answer for its serializer (see the header) and checks that it
  // fits in one message.
  if (exchange->response.ByteSizeLong() > static_cast<size_t>(INT_MAX)) {
    return absl::InternalError(
        "Predict: cannot serialize the answer: Failed to serialize message");
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* InferenceService::PredictRaw(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    PredictExchange* exchange) {
  const absl::Time start = absl::Now();
  const absl::Status status = GuardCall(
      "Predict", [&] { return ServePredict(*context, *request, exchange); });
  return FinishCall(context, metrics_, "Predict", start, status);
}

grpc::ServerUnaryReactor* InferenceService::PredictBatch(
    grpc::CallbackServerContext* context,
    const v1::PredictBatchRequest* request,
    v1::PredictBatchResponse* response) {
  const absl::Time start = absl::Now();
  return FinishCall(context, metrics_, "PredictBatch", start,
                    GuardCall("PredictBatch", [&] {
                      return DoPredictBatch(*context, *request, response);
                    }));
}

grpc::ServerUnaryReactor* InferenceService::GetModelMetadata(
    grpc::CallbackServerContext* context,
    const v1::ModelMetadataRequest* request, v1::ModelMetadata* response) {
  const absl::Time start = absl::Now();
  return FinishCall(context, metrics_, "GetModelMetadata", start,
                    GuardCall("GetModelMetadata", [&] {
                      return DoGetModelMetadata(*context, *request, response);
                    }));
}

}  // namespace bnserve::inference

namespace grpc {

Status SerializationTraits<bnserve::inference::PredictExchange>::Serialize(
    const bnserve::inference::PredictExchange& exchange, ByteBuffer* bytes,
    bool* own_buffer) {
  const google::protobuf::MessageLite& message = exchange.response;
  Slice slice(static_cast<size_t>(message.GetCachedSize()));
  message.SerializeWithCachedSizesToArray(const_cast<uint8_t*>(slice.begin()));
  ByteBuffer serialized(&slice, 1);
  bytes->Swap(&serialized);
  *own_buffer = true;
  return Status::OK;
}

}  // namespace grpc
