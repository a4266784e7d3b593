// Request validation of the inference server, end to end in one process:
// an InferenceServer over an in-memory store serving a classifier ("clf",
// versions 1 and 2, label "stable" -> 1) and a regressor ("reg"), called
// through its in-process channel, so every request goes through gRPC
// decoding and the real handlers (bnserve.v1.Inference and KServe v2).
//
// Input: byte 0 picks the call and byte 1 how the model name is set; the
// rest is the serialized request.
//   byte 0 % 8: 0 Predict, 1 PredictBatch, 2 GetModelMetadata,
//               3/6/7 KServe ModelInfer, 4 KServe ModelMetadata,
//               5 KServe ModelReady
//   byte 1: bit 0 set = keep the fuzzed model name; otherwise bit 1 picks
//           "reg" or "clf", so most inputs reach the shape checks.
// Every call must end with OK or a status a client can act on
// (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED); an OK answer must be
// consistent with its model, have finite outputs and respect the server's
// request bounds, which are set small (1 MiB messages, kMaxWork) so that
// 64 KiB inputs reach them: a batch call of more than kMaxWork / parameters
// rows must be refused. Declared shapes (PredictBatch rows, KServe
// tensor shapes) must be refused before anything of that size is allocated:
// scripts/fuzz.sh runs with -malloc_limit_mb, which makes such an
// allocation a crash.
#include <grpcpp/grpcpp.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "bnserve/v1/inference.grpc.pb.h"
#include "inference/grpc_service.grpc.pb.h"
#include "server/inference/inference_server.h"
#include "store/memory_store.h"
#include "tests/fuzz/fuzz_models.h"

using bnserve::fuzz::Fail;
namespace v1 = bnserve::v1;
namespace kserve = ::inference;

namespace {

// The work bound of the server under test (rows x parameter count).
constexpr int64_t kMaxWork = int64_t{1} << 16;

struct Env {
  std::unique_ptr<bnserve::inference::InferenceServer> server;
  std::unique_ptr<v1::Inference::Stub> inference;
  std::unique_ptr<kserve::GRPCInferenceService::Stub> kserve;
};

Env* Setup() {
  auto store = std::make_shared<bnserve::store::MemoryStore>();
  for (auto [task, copies] : {std::pair{v1::TASK_CLASSIFICATION, 2},
                              std::pair{v1::TASK_REGRESSION, 1}}) {
    for (int i = 0; i < copies; ++i) {
      absl::StatusOr<int64_t> v =
          store->Publish(bnserve::fuzz::TinySnapshot(task));
      if (!v.ok()) Fail("Publish", v.status().ToString());
    }
  }
  if (absl::Status s = store->SetLabel("clf", "stable", 1); !s.ok()) {
    Fail("SetLabel", s.ToString());
  }
  bnserve::inference::InferenceServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.metrics_port = 0;
  options.manager.drift.sample_every = 1;  // exercise the drift sampler too
  options.max_message_mb = 1;
  options.max_request_work = kMaxWork;
  absl::StatusOr<std::unique_ptr<bnserve::inference::InferenceServer>> server =
      bnserve::inference::InferenceServer::Start(options, store);
  if (!server.ok()) Fail("InferenceServer::Start", server.status().ToString());
  if (!(*server)->manager().WaitUntilReady(absl::Seconds(30))) {
    Fail("InferenceServer", "models not loaded after 30 s");
  }
  auto* env = new Env;
  env->server = *std::move(server);
  std::shared_ptr<grpc::Channel> channel = env->server->InProcessChannel();
  env->inference = v1::Inference::NewStub(channel);
  env->kserve = kserve::GRPCInferenceService::NewStub(channel);
  return env;
}

// Rows one batch call may compute for `model` within kMaxWork.
int64_t MaxRows(Env* env, const std::string& model) {
  auto servable = env->server->manager().Get(model, {});
  if (!servable.ok()) Fail("MaxRows", servable.status().ToString());
  return kMaxWork / (*servable)->folded().parameter_count();
}

void CheckFiniteOutputs(const char* method,
                        const google::protobuf::RepeatedField<float>& v) {
  for (float x : v) {
    if (!std::isfinite(x)) Fail(method, "OK answer with a non-finite output");
  }
}

void CheckStatus(const char* method, const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return;
    default:
      Fail(method, absl::StrCat("status ", status.error_code(), ": ",
                                status.error_message()));
  }
}

int64_t Product(const google::protobuf::RepeatedField<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void CheckInferResponse(const kserve::ModelInferRequest& request,
                        const kserve::ModelInferResponse& response) {
  const bool raw = request.raw_input_contents_size() > 0;
  if (raw && response.raw_output_contents_size() != response.outputs_size()) {
    Fail("ModelInfer", "raw input but not one raw output per tensor");
  }
  for (int i = 0; i < response.outputs_size(); ++i) {
    const auto& out = response.outputs(i);
    const int64_t n = Product(out.shape());
    if (out.shape_size() < 1 || out.shape(0) != request.inputs(0).shape(0)) {
      Fail("ModelInfer", "output rows differ from input rows");
    }
    const int64_t width = out.datatype() == "INT64" ? 8 : 4;
    const int64_t got =
        raw ? static_cast<int64_t>(response.raw_output_contents(i).size()) /
                  width
            : out.contents().fp32_contents_size() +
                  out.contents().int64_contents_size();
    if (got != n) {
      Fail("ModelInfer", absl::StrCat("output '", out.name(), "' has ", got,
                                      " values for shape product ", n));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Env* env = Setup();
  if (size < 2) return 0;
  const int method = data[0] % 8;
  const bool keep_name = data[1] & 1;
  const std::string model = data[1] & 2 ? "reg" : "clf";
  const char* bytes = reinterpret_cast<const char*>(data) + 2;
  const int n = static_cast<int>(size - 2);

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  switch (method) {
    case 0: {
      v1::PredictRequest request;
      v1::PredictResponse response;
      if (!request.ParseFromArray(bytes, n)) return 0;
      if (!keep_name) request.set_model(model);
      const grpc::Status s =
          env->inference->Predict(&context, request, &response);
      CheckStatus("Predict", s);
      if (s.ok() && response.outputs_size() !=
                        (response.model() == "clf" ? bnserve::fuzz::kClasses
                                                   : bnserve::fuzz::kOutputs)) {
        Fail("Predict", "wrong number of outputs");
      }
      if (s.ok()) CheckFiniteOutputs("Predict", response.outputs());
      break;
    }
    case 1: {
      v1::PredictBatchRequest request;
      v1::PredictBatchResponse response;
      if (!request.ParseFromArray(bytes, n)) return 0;
      if (!keep_name) request.set_model(model);
      const grpc::Status s =
          env->inference->PredictBatch(&context, request, &response);
      CheckStatus("PredictBatch", s);
      if (s.ok() && (response.rows() != request.rows() ||
                     response.outputs_size() !=
                         int64_t{response.rows()} * response.output_dim())) {
        Fail("PredictBatch", "inconsistent response shape");
      }
      if (s.ok() && response.rows() > MaxRows(env, response.model())) {
        Fail("PredictBatch", "answered past the work bound");
      }
      if (s.ok()) CheckFiniteOutputs("PredictBatch", response.outputs());
      break;
    }
    case 2: {
      v1::ModelMetadataRequest request;
      v1::ModelMetadata response;
      if (!request.ParseFromArray(bytes, n)) return 0;
      if (!keep_name) request.set_model(model);
      CheckStatus("GetModelMetadata", env->inference->GetModelMetadata(
                                          &context, request, &response));
      break;
    }
    case 4: {
      kserve::ModelMetadataRequest request;
      kserve::ModelMetadataResponse response;
      if (!request.ParseFromArray(bytes, n)) return 0;
      if (!keep_name) request.set_name(model);
      CheckStatus("ModelMetadata",
                  env->kserve->ModelMetadata(&context, request, &response));
      break;
    }
    case 5: {
      kserve::ModelReadyRequest request;
      kserve::ModelReadyResponse response;
      if (!request.ParseFromArray(bytes, n)) return 0;
      if (!keep_name) request.set_name(model);
      CheckStatus("ModelReady",
                  env->kserve->ModelReady(&context, request, &response));
      break;
    }
    default: {
      kserve::ModelInferRequest request;
      kserve::ModelInferResponse response;
      if (!request.ParseFromArray(bytes, n)) return 0;
      if (!keep_name) request.set_model_name(model);
      const grpc::Status s =
          env->kserve->ModelInfer(&context, request, &response);
      CheckStatus("ModelInfer", s);
      if (s.ok()) {
        CheckInferResponse(request, response);
        if (request.inputs(0).shape(0) > MaxRows(env, response.model_name())) {
          Fail("ModelInfer", "answered past the work bound");
        }
      }
      break;
    }
  }
  return 0;
}
