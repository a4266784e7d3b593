#include "server/inference/kserve_core.h"

#include <bit>
#include <cstring>

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "model/status_macros.h"
#include "server/inference/inference_service.h"

namespace bnserve::inference {
namespace {

// [N, F], or [N, C, H, W] for a model whose input is an image [C, H, W]
// (the same values in C, H, W row-major order).
bool ShapeMatches(const ::inference::ModelInferRequest::InferInputTensor& input,
                  const model::Shape& shape) {
  if (input.shape_size() == 2) return input.shape(1) == shape.size();
  return shape.spatial && input.shape_size() == 4 &&
         input.shape(1) == shape.channels && input.shape(2) == shape.height &&
         input.shape(3) == shape.width;
}

using ::inference::InferTensorContents;
using ::inference::ModelInferRequest;
using ::inference::ModelInferResponse;

static_assert(std::endian::native == std::endian::little,
              "raw tensor contents are little-endian; add byte swapping");

constexpr char kOutputName[] = "output";
constexpr char kProbabilitiesName[] = "probabilities";
constexpr char kClassIdName[] = "class_id";

// Names of the typed content fields that are set, other than fp32.
std::vector<std::string> OtherContents(const InferTensorContents& c) {
  std::vector<std::string> set;
  if (c.bool_contents_size() > 0) set.push_back("bool_contents");
  if (c.int_contents_size() > 0) set.push_back("int_contents");
  if (c.int64_contents_size() > 0) set.push_back("int64_contents");
  if (c.uint_contents_size() > 0) set.push_back("uint_contents");
  if (c.uint64_contents_size() > 0) set.push_back("uint64_contents");
  if (c.fp64_contents_size() > 0) set.push_back("fp64_contents");
  if (c.bytes_contents_size() > 0) set.push_back("bytes_contents");
  return set;
}

// Adds an output tensor; its values go to raw_output_contents or contents.
ModelInferResponse::InferOutputTensor* AddOutput(
    ModelInferResponse* response, const char* name, const char* datatype,
    std::initializer_list<int64_t> shape) {
  auto* out = response->add_outputs();
  out->set_name(name);
  out->set_datatype(datatype);
  for (int64_t d : shape) out->add_shape(d);
  return out;
}

// Which outputs a ModelInfer request asked for (all of them if none).
struct WantedOutputs {
  bool output = false;
  bool probabilities = false;
  bool class_id = false;
};

absl::StatusOr<WantedOutputs> SelectOutputs(const ModelInferRequest& request,
                                            bool classification) {
  WantedOutputs want;
  want.output = request.outputs_size() == 0;
  want.probabilities = want.output && classification;
  want.class_id = want.probabilities;
  for (const auto& requested : request.outputs()) {
    if (requested.name() == kOutputName) {
      want.output = true;
    } else if (requested.name() == kProbabilitiesName && classification) {
      want.probabilities = true;
    } else if (requested.name() == kClassIdName && classification) {
      want.class_id = true;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown output '", requested.name(),
                       "'; this model has '", kOutputName, "'",
                       classification ? absl::StrCat(", '", kProbabilitiesName,
                                                     "', '", kClassIdName, "'")
                                      : ""));
    }
  }
  return want;
}

// The number of rows of the request's one input tensor, checked against the
// model's width from the declared shape alone (nothing is allocated yet).
absl::StatusOr<int64_t> InputRows(const ModelInferRequest& request,
                                  const Servable& servable) {
  const int64_t f = servable.input_features();
  if (request.inputs_size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected exactly one input tensor, got ", request.inputs_size()));
  }
  const ModelInferRequest::InferInputTensor& input = request.inputs(0);
  if (input.name() != kKServeInputName) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown input '", input.name(), "'; model '", servable.model(),
        "' has one input, named '", kKServeInputName, "'"));
  }
  if (input.datatype() != "FP32") {
    return absl::InvalidArgumentError(
        absl::StrCat("input '", input.name(), "' has datatype '",
                     input.datatype(), "'; this model takes FP32"));
  }
  // Shape first: nothing is allocated for a shape the model cannot take.
  if (!ShapeMatches(input, servable.input_shape())) {
    const model::Shape& in = servable.input_shape();
    return absl::InvalidArgumentError(absl::StrCat(
        "input '", input.name(), "' has shape [",
        absl::StrJoin(input.shape(), ","), "]; model '", servable.model(),
        "' version ", servable.version(), " takes [N,", f, "]",
        in.spatial ? absl::StrCat(" or [N,", in.channels, ",", in.height, ",",
                                  in.width, "]")
                   : ""));
  }
  const int64_t rows = input.shape(0);
  if (rows < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("input '", input.name(), "' has ", rows, " rows"));
  }
  if (rows > kMaxBatchRows) {
    return absl::ResourceExhaustedError(
        absl::StrCat("input '", input.name(), "' has ", rows, " rows; at most ",
                     kMaxBatchRows, " per request"));
  }
  return rows;
}

// The rows x f input values, from fp32_contents or (copied into `raw_values`
// for alignment) from raw_input_contents[0]; checked finite.
absl::StatusOr<const float*> InputValues(const ModelInferRequest& request,
                                         int64_t rows, int64_t f,
                                         std::vector<float>* raw_values) {
  const ModelInferRequest::InferInputTensor& input = request.inputs(0);
  const int64_t n = rows * f;
  if (std::vector<std::string> other = OtherContents(input.contents());
      !other.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("input '", input.name(), "' is FP32 but sets ",
                     absl::StrJoin(other, ", "), "; use fp32_contents"));
  }
  const bool typed = input.contents().fp32_contents_size() > 0;
  const bool raw = request.raw_input_contents_size() > 0;
  if (typed && raw) {
    return absl::InvalidArgumentError(
        "input values are in both contents.fp32_contents and "
        "raw_input_contents; send them in one of the two");
  }
  const float* x = nullptr;
  if (raw) {
    if (request.raw_input_contents_size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected one raw_input_contents entry, got ",
                       request.raw_input_contents_size()));
    }
    const std::string& bytes = request.raw_input_contents(0);
    if (static_cast<int64_t>(bytes.size()) != n * 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          "raw_input_contents has ", bytes.size(), " bytes; shape [", rows, ",",
          f, "] of FP32 needs ", n * 4));
    }
    raw_values->resize(n);
    std::memcpy(raw_values->data(), bytes.data(), bytes.size());
    x = raw_values->data();
  } else {
    if (input.contents().fp32_contents_size() != n) {
      return absl::InvalidArgumentError(absl::StrCat(
          "fp32_contents has ", input.contents().fp32_contents_size(),
          " values; shape [", rows, ",", f, "] needs ", n));
    }
    x = input.contents().fp32_contents().data();
  }
  BNSERVE_RETURN_IF_ERROR(CheckFinite(x, n, f));
  return x;
}

// Appends the wanted tensors (rows x d outputs, their softmax, argmax) to
// `response`, raw or typed like the input.
void WriteOutputs(const WantedOutputs& want, bool raw, int64_t rows, int64_t d,
                  absl::Span<const float> outputs,
                  absl::Span<const float> probabilities,
                  absl::Span<const int64_t> class_ids,
                  ModelInferResponse* response) {
  auto put_floats = [&](const char* name, absl::Span<const float> v) {
    auto* out = AddOutput(response, name, "FP32", {rows, d});
    if (raw) {
      response->add_raw_output_contents()->assign(
          reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
    } else {
      out->mutable_contents()->mutable_fp32_contents()->Add(v.begin(), v.end());
    }
  };
  if (want.output) put_floats(kOutputName, outputs);
  if (want.probabilities) put_floats(kProbabilitiesName, probabilities);
  if (want.class_id) {
    auto* out = AddOutput(response, kClassIdName, "INT64", {rows});
    if (raw) {
      response->add_raw_output_contents()->assign(
          reinterpret_cast<const char*>(class_ids.data()),
          class_ids.size() * sizeof(int64_t));
    } else {
      out->mutable_contents()->mutable_int64_contents()->Add(class_ids.begin(),
                                                             class_ids.end());
    }
  }
}

}  // namespace

absl::StatusOr<VersionRequest> ParseKServeVersion(const std::string& version) {
  VersionRequest request;
  if (version.empty()) return request;
  if (absl::ascii_isdigit(static_cast<unsigned char>(version[0]))) {
    if (!absl::SimpleAtoi(version, &request.version) || request.version <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("model version '", version,
                       "' is neither a positive version number nor a label"));
    }
    return request;
  }
  BNSERVE_RETURN_IF_ERROR(store::ValidateLabel(version));
  request.label = version;
  return request;
}

absl::StatusOr<std::shared_ptr<const Servable>> KServeCore::Select(
    const std::string& model, const std::string& version) const {
  if (model.empty()) {
    return absl::InvalidArgumentError("model name is required");
  }
  BNSERVE_ASSIGN_OR_RETURN(VersionRequest request, ParseKServeVersion(version));
  return manager_->Get(model, request);
}

void KServeCore::ServerMetadata(
    ::inference::ServerMetadataResponse* response) const {
  response->set_name("bnserve");
  response->set_version(BNSERVE_VERSION);
  for (const char* extension :
       {"model_configuration", "statistics", "model_repository"}) {
    response->add_extensions(extension);
  }
}

absl::Status KServeCore::ModelReady(
    const ::inference::ModelReadyRequest& request,
    ::inference::ModelReadyResponse* response) const {
  auto servable = Select(request.name(), request.version());
  if (servable.ok()) {
    response->set_ready(true);
    return absl::OkStatus();
  }
  // Not loaded (yet) is an answer, not an error; a malformed request is.
  if (absl::IsInvalidArgument(servable.status())) return servable.status();
  response->set_ready(false);
  return absl::OkStatus();
}

namespace {

// The input's shape without the batch dimension: [F] or [C, H, W].
std::vector<int64_t> InputDims(const Servable& servable) {
  const model::Shape& shape = servable.input_shape();
  if (shape.spatial) return {shape.channels, shape.height, shape.width};
  return {servable.input_features()};
}

// One tensor the model produces, without the batch dimension.
struct OutputTensor {
  const char* name;
  const char* datatype;
  ::inference::DataType type;
  std::vector<int64_t> dims;
};

std::vector<OutputTensor> OutputTensors(const Servable& servable) {
  const int64_t d = servable.output_dim();
  std::vector<OutputTensor> out = {
      {kOutputName, "FP32", ::inference::TYPE_FP32, {d}}};
  if (servable.classification()) {
    out.push_back({kProbabilitiesName, "FP32", ::inference::TYPE_FP32, {d}});
    out.push_back({kClassIdName, "INT64", ::inference::TYPE_INT64, {}});
  }
  return out;
}

}  // namespace

absl::Status KServeCore::ModelMetadata(
    const ::inference::ModelMetadataRequest& request,
    ::inference::ModelMetadataResponse* response) const {
  BNSERVE_ASSIGN_OR_RETURN(std::shared_ptr<const Servable> servable,
                           Select(request.name(), request.version()));
  response->set_name(servable->model());
  for (int64_t v : manager_->LoadedVersions(servable->model())) {
    response->add_versions(absl::StrCat(v));
  }
  response->set_platform(kKServePlatform);
  auto* in = response->add_inputs();
  in->set_name(kKServeInputName);
  in->set_datatype("FP32");
  in->add_shape(-1);
  for (int64_t d : InputDims(*servable)) in->add_shape(d);
  for (const OutputTensor& t : OutputTensors(*servable)) {
    auto* out = response->add_outputs();
    out->set_name(t.name);
    out->set_datatype(t.datatype);
    out->add_shape(-1);
    for (int64_t d : t.dims) out->add_shape(d);
  }
  return absl::OkStatus();
}

absl::Status KServeCore::ModelConfig(
    const ::inference::ModelConfigRequest& request,
    ::inference::ModelConfigResponse* response) const {
  BNSERVE_ASSIGN_OR_RETURN(std::shared_ptr<const Servable> servable,
                           Select(request.name(), request.version()));
  ::inference::ModelConfig* config = response->mutable_config();
  config->set_name(servable->model());
  config->set_platform(kKServePlatform);
  config->set_backend("bnserve");
  config->set_max_batch_size(static_cast<int32_t>(kMaxBatchRows));
  ::inference::ModelInput* in = config->add_input();
  in->set_name(kKServeInputName);
  in->set_data_type(::inference::TYPE_FP32);
  for (int64_t d : InputDims(*servable)) in->add_dims(d);
  for (const OutputTensor& t : OutputTensors(*servable)) {
    ::inference::ModelOutput* out = config->add_output();
    out->set_name(t.name);
    out->set_data_type(t.type);
    // Triton writes a per-row scalar as [1] when batching is on.
    if (t.dims.empty()) out->add_dims(1);
    for (int64_t d : t.dims) out->add_dims(d);
  }
  return absl::OkStatus();
}

namespace {

void FillStatistics(const Servable& servable, ::inference::ModelStatistics* m) {
  const InferStatsSnapshot s = servable.stats().Snapshot();
  m->set_name(servable.model());
  m->set_version(absl::StrCat(servable.version()));
  m->set_last_inference(static_cast<uint64_t>(s.last_inference_ms));
  m->set_inference_count(s.inference_count);
  m->set_execution_count(s.success_count);
  auto* stats = m->mutable_inference_stats();
  stats->mutable_success()->set_count(s.success_count);
  stats->mutable_success()->set_ns(s.success_ns);
  stats->mutable_fail()->set_count(s.fail_count);
  stats->mutable_fail()->set_ns(s.fail_ns);
  stats->mutable_compute_infer()->set_count(s.success_count);
  stats->mutable_compute_infer()->set_ns(s.compute_ns);
}

}  // namespace

absl::Status KServeCore::ModelStatistics(
    const ::inference::ModelStatisticsRequest& request,
    ::inference::ModelStatisticsResponse* response) const {
  if (request.name().empty()) {
    if (!request.version().empty()) {
      return absl::InvalidArgumentError(
          "a model version was given without a model name");
    }
    for (const auto& servable : manager_->AllLoaded()) {
      FillStatistics(*servable, response->add_model_stats());
    }
    return absl::OkStatus();
  }
  if (!request.version().empty()) {
    BNSERVE_ASSIGN_OR_RETURN(std::shared_ptr<const Servable> servable,
                             Select(request.name(), request.version()));
    FillStatistics(*servable, response->add_model_stats());
    return absl::OkStatus();
  }
  // Every loaded version; NOT_FOUND / UNAVAILABLE as for the newest one.
  BNSERVE_RETURN_IF_ERROR(Select(request.name(), "").status());
  for (int64_t v : manager_->LoadedVersions(request.name())) {
    auto servable = manager_->Get(request.name(), {.version = v});
    if (servable.ok()) FillStatistics(**servable, response->add_model_stats());
  }
  return absl::OkStatus();
}

absl::Status KServeCore::RepositoryIndex(
    const ::inference::RepositoryIndexRequest& request,
    ::inference::RepositoryIndexResponse* response) const {
  if (!request.repository_name().empty()) {
    return absl::NotFoundError(
        absl::StrCat("unknown repository '", request.repository_name(),
                     "'; this server has one, named '' (the store it serves)"));
  }
  for (const ModelIndexEntry& e : manager_->Index()) {
    const bool ready = e.state == ModelIndexEntry::kReady;
    if (request.ready() && !ready) continue;
    auto* m = response->add_models();
    m->set_name(e.model);
    if (e.version > 0) m->set_version(absl::StrCat(e.version));
    m->set_state(ready ? "READY" : "UNAVAILABLE");
    m->set_reason(e.reason);
  }
  return absl::OkStatus();
}

absl::Status KServeCore::ModelInfer(const ModelInferRequest& request,
                                    ModelInferResponse* response) const {
  const absl::Time start = absl::Now();
  BNSERVE_ASSIGN_OR_RETURN(
      std::shared_ptr<const Servable> servable,
      Select(request.model_name(), request.model_version()));
  int64_t rows = 0;
  absl::Duration compute;
  absl::Status status = Infer(*servable, request, response, &rows, &compute);
  const absl::Time end = absl::Now();
  if (status.ok()) {
    servable->stats().RecordSuccess(rows, end - start, compute, end);
  } else {
    servable->stats().RecordFailure(end - start, end);
  }
  return status;
}

absl::Status KServeCore::Infer(const Servable& servable,
                               const ModelInferRequest& request,
                               ModelInferResponse* response, int64_t* rows_out,
                               absl::Duration* compute) const {
  const int64_t f = servable.input_features();
  const int64_t d = servable.output_dim();
  // Shape, outputs and cost first: nothing is allocated or computed for a
  // request the model cannot take or whose answer would be too large.
  BNSERVE_ASSIGN_OR_RETURN(const int64_t rows, InputRows(request, servable));
  BNSERVE_ASSIGN_OR_RETURN(const WantedOutputs want,
                           SelectOutputs(request, servable.classification()));
  // What is computed, not only what is returned: the outputs always, their
  // softmax for probabilities or class ids.
  const bool softmax = want.probabilities || want.class_id;
  BNSERVE_RETURN_IF_ERROR(CheckRequestCost(
      "ModelInfer", servable, rows,
      ResponseBytes(rows, d, 1 + int{softmax}, int{want.class_id}), limits_));
  std::vector<float> raw_values;
  BNSERVE_ASSIGN_OR_RETURN(const float* x,
                           InputValues(request, rows, f, &raw_values));

  const absl::Time compute_start = absl::Now();
  // On the stack for a few rows (one example of a model with up to 64
  // outputs): nothing is allocated.
  absl::InlinedVector<float, 64> outputs(rows * d);
  for (int64_t r = 0; r < rows; ++r) servable.Run(x + r * f, &outputs[r * d]);
  *compute = absl::Now() - compute_start;
  BNSERVE_RETURN_IF_ERROR(CheckOutputsFinite(
      outputs.data(), static_cast<int64_t>(outputs.size()), d));
  absl::InlinedVector<float, 64> probabilities;
  absl::InlinedVector<int64_t, 8> class_ids;
  if (softmax) {
    probabilities = outputs;
    class_ids.resize(rows);
    for (int64_t r = 0; r < rows; ++r) {
      class_ids[r] = SoftmaxInPlace(&probabilities[r * d], static_cast<int>(d));
    }
  }
  response->set_model_name(servable.model());
  response->set_model_version(absl::StrCat(servable.version()));
  response->set_id(request.id());
  WriteOutputs(want, !raw_values.empty(), rows, d, outputs, probabilities,
               class_ids, response);
  *rows_out = rows;
  return absl::OkStatus();
}

}  // namespace bnserve::inference
