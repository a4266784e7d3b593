#include "server/inference/kserve_json.h"

#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"

namespace bnserve::inference {
namespace {

using ::inference::ModelInferRequest;
using Json = nlohmann::json;

// ---- Paths ----

absl::Status WrongMethod(absl::string_view method, absl::string_view path,
                         absl::string_view want) {
  return absl::InvalidArgumentError(absl::StrCat(
      method, " ", path, " is not an endpoint; use ", want, " ", path));
}

// `/v2/models/...` after "models": {m}[/versions/{v}][/action].
absl::StatusOr<KServeRoute> ParseModelPath(
    absl::string_view method, absl::string_view path,
    absl::Span<const absl::string_view> parts) {
  KServeRoute route;
  const size_t n = parts.size();  // parts[0..1] = "v2", "models"
  if (n == 3 && parts[2] == "stats") {
    route.kind = KServeRoute::kModelStatistics;
  } else {
    route.model = std::string(parts[2]);
    size_t next = 3;
    if (n >= 5 && parts[3] == "versions") {
      route.version = std::string(parts[4]);
      next = 5;
    }
    const absl::string_view action = next < n ? parts[next] : "";
    if (next + 1 < n || (next < n && action.empty())) {
      return absl::NotFoundError(absl::StrCat("no endpoint ", path));
    }
    if (action.empty()) {
      route.kind = KServeRoute::kModelMetadata;
    } else if (action == "ready") {
      route.kind = KServeRoute::kModelReady;
    } else if (action == "infer") {
      route.kind = KServeRoute::kModelInfer;
    } else if (action == "config") {
      route.kind = KServeRoute::kModelConfig;
    } else if (action == "stats") {
      route.kind = KServeRoute::kModelStatistics;
    } else {
      return absl::NotFoundError(absl::StrCat(
          "no endpoint ", path,
          "; a model has metadata, /ready, /infer, /config and /stats"));
    }
  }
  const absl::string_view want =
      route.kind == KServeRoute::kModelInfer ? "POST" : "GET";
  if (method != want) return WrongMethod(method, path, want);
  if (route.kind != KServeRoute::kModelStatistics && route.model.empty()) {
    return absl::NotFoundError(absl::StrCat("no endpoint ", path));
  }
  return route;
}

}  // namespace

absl::StatusOr<KServeRoute> ParseKServeRoute(absl::string_view method,
                                             absl::string_view path) {
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  absl::InlinedVector<absl::string_view, 8> parts = absl::StrSplit(path, '/');
  // A leading '/' gives an empty first part.
  if (parts.size() < 2 || !parts[0].empty() || parts[1] != "v2") {
    return absl::NotFoundError(absl::StrCat(
        "no endpoint ", path, "; KServe v2 endpoints start with /v2"));
  }
  parts.erase(parts.begin());
  KServeRoute route;
  if (parts.size() == 1) {
    route.kind = KServeRoute::kServerMetadata;
  } else if (parts.size() == 3 && parts[1] == "health" &&
             (parts[2] == "live" || parts[2] == "ready")) {
    route.kind = parts[2] == "live" ? KServeRoute::kLive : KServeRoute::kReady;
  } else if (parts.size() == 3 && parts[1] == "repository" &&
             parts[2] == "index") {
    if (method != "POST" && method != "GET") {
      return WrongMethod(method, path, "POST");
    }
    route.kind = KServeRoute::kRepositoryIndex;
    return route;
  } else if (parts.size() >= 3 && parts[1] == "models") {
    return ParseModelPath(method, path, parts);
  } else {
    return absl::NotFoundError(absl::StrCat("no endpoint ", path));
  }
  if (method != "GET") return WrongMethod(method, path, "GET");
  return route;
}

namespace {

// ---- The infer body, one streaming pass ----

// The keys each kind of object may have (anything goes in "parameters").
constexpr absl::string_view kTopKeys[] = {"id", "inputs", "outputs",
                                          "parameters"};
constexpr absl::string_view kInputKeys[] = {"name", "datatype", "shape", "data",
                                            "parameters"};
constexpr absl::string_view kOutputKeys[] = {"name", "parameters"};

// RapidJSON's SAX events (the reader validates the JSON and its UTF-8; the
// handler checks the schema and writes the request).
class InferBodyParser final
    : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, InferBodyParser> {
 public:
  InferBodyParser(ModelInferRequest* out, size_t body_bytes)
      : out_(out), body_bytes_(body_bytes) {}

  const absl::Status& status() const { return status_; }

  bool Null() { return Scalar("null"); }
  bool Bool(bool) { return Scalar("a boolean"); }
  bool Int(int v) { return Number(v, v, true); }
  bool Uint(unsigned v) { return Number(v, v, true); }
  bool Int64(int64_t v) { return Number(static_cast<double>(v), v, true); }
  bool Uint64(uint64_t v) {
    const bool fits =
        v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    return Number(static_cast<double>(v), fits ? static_cast<int64_t>(v) : 0,
                  fits);
  }
  bool Double(double v) { return Number(v, 0, false); }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    return Text(absl::string_view(s, n));
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    return KeyOf(absl::string_view(s, n));
  }
  bool StartObject() { return StartContainer(true); }
  bool EndObject(rapidjson::SizeType) { return End(); }
  bool StartArray() { return StartContainer(false); }
  bool EndArray(rapidjson::SizeType) { return End(); }

 private:
  enum class Ctx {
    kTop,
    kInputs,
    kInput,
    kShape,
    kData,
    kOutputs,
    kOutput,
    kSkip
  };
  struct Frame {
    Ctx ctx;
    absl::string_view key;  // objects: the current key (static storage)
    int index = -1;         // arrays: the index of the current element
  };

  bool Fail(absl::string_view what, absl::string_view key = {}) {
    status_ = absl::InvalidArgumentError(absl::StrCat(Where(key), ": ", what));
    return false;
  }
  // The JSON path of the current value; `key` replaces the innermost
  // object's key (an unknown key is not stored).
  std::string Where(absl::string_view key) const;
  // Counts an element of the enclosing array (for paths in messages).
  void Advance() {
    if (!stack_.empty() && IsArray(stack_.back().ctx)) ++stack_.back().index;
  }
  static bool IsArray(Ctx ctx) {
    return ctx == Ctx::kInputs || ctx == Ctx::kShape || ctx == Ctx::kData ||
           ctx == Ctx::kOutputs;
  }
  bool Push(Ctx ctx) {
    if (static_cast<int>(stack_.size()) >= kMaxJsonDepth) {
      return Fail(
          absl::StrCat("nested deeper than ", kMaxJsonDepth, " levels"));
    }
    stack_.push_back({ctx, {}, -1});
    return true;
  }
  bool End() {
    stack_.pop_back();
    return true;
  }
  bool KeyOf(absl::string_view k);
  bool Text(absl::string_view v);
  bool Scalar(absl::string_view kind);
  bool Number(double v, int64_t i, bool is_integer);
  bool StartContainer(bool object);
  void ReserveData(ModelInferRequest::InferInputTensor* input) const;

  ModelInferRequest* const out_;
  const size_t body_bytes_;
  absl::InlinedVector<Frame, kMaxJsonDepth> stack_;
  absl::Status status_;
};

std::string InferBodyParser::Where(absl::string_view key) const {
  std::string path;
  for (size_t i = 0; i < stack_.size(); ++i) {
    const Frame& f = stack_[i];
    const absl::string_view k =
        i + 1 == stack_.size() && !key.empty() ? key : f.key;
    if (IsArray(f.ctx)) {
      absl::StrAppend(&path, "[", std::max(f.index, 0), "]");
    } else if (f.ctx != Ctx::kSkip && !k.empty()) {
      absl::StrAppend(&path, path.empty() ? "" : ".", k);
    }
  }
  return path.empty() ? "the body" : path;
}

bool InferBodyParser::KeyOf(absl::string_view k) {
  Frame& top = stack_.back();
  absl::Span<const absl::string_view> allowed;
  switch (top.ctx) {
    case Ctx::kTop:
      allowed = kTopKeys;
      break;
    case Ctx::kInput:
      allowed = kInputKeys;
      break;
    case Ctx::kOutput:
      allowed = kOutputKeys;
      break;
    default:
      return true;  // kSkip: anything goes
  }
  for (absl::string_view name : allowed) {
    if (name == k) {
      top.key = name;
      return true;
    }
  }
  return Fail(absl::StrCat("unknown key; expected one of ",
                           absl::StrJoin(allowed, ", ")),
              k);
}

bool InferBodyParser::Text(absl::string_view v) {
  if (stack_.empty()) return Fail("must be a JSON object");
  Frame& top = stack_.back();
  if (top.ctx == Ctx::kSkip) return true;
  if (top.ctx == Ctx::kTop && top.key == "id") {
    out_->set_id(v.data(), v.size());
    return true;
  }
  if (top.ctx == Ctx::kInput && top.key == "name") {
    out_->mutable_inputs()->rbegin()->set_name(v.data(), v.size());
    return true;
  }
  if (top.ctx == Ctx::kInput && top.key == "datatype") {
    out_->mutable_inputs()->rbegin()->set_datatype(v.data(), v.size());
    return true;
  }
  if (top.ctx == Ctx::kOutput && top.key == "name") {
    out_->mutable_outputs()->rbegin()->set_name(v.data(), v.size());
    return true;
  }
  return Scalar("a string");
}

bool InferBodyParser::Scalar(absl::string_view kind) {
  if (stack_.empty()) return Fail("must be a JSON object");
  if (stack_.back().ctx == Ctx::kSkip) return true;
  Advance();
  const Ctx ctx = stack_.back().ctx;
  if (ctx == Ctx::kData) {
    return Fail(absl::StrCat("is ", kind, ", not a number"));
  }
  if (ctx == Ctx::kShape) {
    return Fail(absl::StrCat("is ", kind, ", not an integer"));
  }
  return Fail(absl::StrCat("has the wrong type (", kind, ")"));
}

bool InferBodyParser::Number(double v, int64_t i, bool is_integer) {
  if (stack_.empty()) return Fail("must be a JSON object");
  Frame& top = stack_.back();
  if (top.ctx == Ctx::kSkip) return true;
  if (top.ctx == Ctx::kData) {
    ++top.index;
    if (!(std::abs(v) <= std::numeric_limits<float>::max())) {
      return Fail(absl::StrCat(v, " is outside the FP32 range"));
    }
    out_->mutable_inputs()->rbegin()->mutable_contents()->add_fp32_contents(
        static_cast<float>(v));
    return true;
  }
  if (top.ctx == Ctx::kShape) {
    ++top.index;
    if (!is_integer) return Fail("is not an integer in the int64 range");
    auto* input = &*out_->mutable_inputs()->rbegin();
    if (input->shape_size() >= kMaxShapeDims) {
      return Fail(
          absl::StrCat("a shape has at most ", kMaxShapeDims, " dimensions"));
    }
    input->add_shape(i);
    return true;
  }
  return Scalar("a number");
}

bool InferBodyParser::StartContainer(bool object) {
  if (stack_.empty()) {
    if (!object) return Fail("must be a JSON object, not an array");
    return Push(Ctx::kTop);
  }
  Frame& top = stack_.back();
  const Ctx ctx = top.ctx;
  const absl::string_view key = top.key;
  if (ctx == Ctx::kSkip) return Push(Ctx::kSkip);
  if (key == "parameters" &&
      (ctx == Ctx::kTop || ctx == Ctx::kInput || ctx == Ctx::kOutput)) {
    if (!object) return Fail("must be an object");
    return Push(Ctx::kSkip);
  }
  Advance();
  if (ctx == Ctx::kData && !object) return Push(Ctx::kData);
  if (ctx == Ctx::kInputs && object) {
    out_->add_inputs();
    return Push(Ctx::kInput);
  }
  if (ctx == Ctx::kOutputs && object) {
    out_->add_outputs();
    return Push(Ctx::kOutput);
  }
  if (!object) {
    if (ctx == Ctx::kTop && key == "inputs") return Push(Ctx::kInputs);
    if (ctx == Ctx::kTop && key == "outputs") return Push(Ctx::kOutputs);
    if (ctx == Ctx::kInput && key == "shape") return Push(Ctx::kShape);
    if (ctx == Ctx::kInput && key == "data") {
      ReserveData(&*out_->mutable_inputs()->rbegin());
      return Push(Ctx::kData);
    }
  }
  if (ctx == Ctx::kData) return Fail("is an object, not a number");
  return Fail(object ? "has the wrong type (an object)"
                     : "has the wrong type (an array)");
}

void InferBodyParser::ReserveData(
    ModelInferRequest::InferInputTensor* input) const {
  // The declared shape's size when it came first, but never more values
  // than the body can hold (each takes at least two bytes: "0,").
  if (input->shape_size() == 0) return;
  const int64_t most = static_cast<int64_t>(body_bytes_ / 2 + 1);
  int64_t n = 1;
  for (int64_t d : input->shape()) {
    if (d < 1 || d > most) return;
    n *= d;
    if (n > most) return;
  }
  input->mutable_contents()->mutable_fp32_contents()->Reserve(
      static_cast<int>(n));
}

// ---- Writing ----

std::string Quote(const std::string& s) {
  // Model names, versions and tensor names never need escaping: skip the
  // JSON library for them (an infer answer quotes a few strings).
  bool plain = true;
  for (unsigned char c : s)
    plain &= c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
  if (plain) return absl::StrCat("\"", s, "\"");
  return Json(s).dump(-1, ' ', false, Json::error_handler_t::replace);
}

void AppendFloat(std::string* out, float v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, ec == std::errc() ? end - buf : 0);
}

template <typename T, typename Append>
void AppendArray(std::string* out, const T& values, Append append) {
  out->push_back('[');
  bool first = true;
  for (const auto& v : values) {
    if (!first) out->push_back(',');
    first = false;
    append(out, v);
  }
  out->push_back(']');
}

void AppendInt(std::string* out, int64_t v) { absl::StrAppend(out, v); }

std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Json Tensors(const google::protobuf::RepeatedPtrField<
             ::inference::ModelMetadataResponse::TensorMetadata>& tensors) {
  Json out = Json::array();
  for (const auto& t : tensors) {
    out.push_back(
        {{"name", t.name()},
         {"datatype", t.datatype()},
         {"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())}});
  }
  return out;
}

Json Duration(const ::inference::StatisticDuration& d) {
  return {{"count", d.count()}, {"ns", d.ns()}};
}

}  // namespace

absl::Status ParseInferBody(absl::string_view body,
                            ModelInferRequest* request) {
  // The reader takes a NUL byte for the end of the input; JSON has none
  // outside escapes, so one is an error here rather than a silent stop.
  if (const void* nul = std::memchr(body.data(), '\0', body.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the body is not valid JSON at byte ",
        static_cast<const char*>(nul) - body.data(), ": a NUL byte"));
  }
  InferBodyParser parser(request, body.size());
  // The reader's scratch (strings, numbers, nesting) starts on the stack.
  char scratch[1024];
  rapidjson::MemoryPoolAllocator<> pool(scratch, sizeof(scratch));
  rapidjson::GenericReader<rapidjson::UTF8<>, rapidjson::UTF8<>,
                           rapidjson::MemoryPoolAllocator<>>
      reader(&pool);
  rapidjson::MemoryStream stream(body.data(), body.size());
  // Full precision: each number is the double nearest to its decimal text
  // (as strtod gives), then rounded to FP32.
  constexpr unsigned kFlags = rapidjson::kParseFullPrecisionFlag |
                              rapidjson::kParseValidateEncodingFlag |
                              rapidjson::kParseIterativeFlag;
  const rapidjson::ParseResult ok = reader.Parse<kFlags>(stream, parser);
  if (!parser.status().ok()) return parser.status();
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("the body is not valid JSON at byte ", ok.Offset(), ": ",
                     rapidjson::GetParseError_En(ok.Code())));
  }
  if (request->inputs_size() == 0) {
    return absl::InvalidArgumentError(
        "the body has no inputs; send {\"inputs\": [{\"name\": \"input\", "
        "\"shape\": [N, F], \"datatype\": \"FP32\", \"data\": [...]}]}");
  }
  return absl::OkStatus();
}

absl::Status ParseIndexBody(absl::string_view body,
                            ::inference::RepositoryIndexRequest* request) {
  if (body.find_first_not_of(" \t\r\n") == absl::string_view::npos) {
    return absl::OkStatus();
  }
  if (body.size() > 4096) {
    return absl::InvalidArgumentError(
        "a RepositoryIndex body is at most 4096 bytes");
  }
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        "the body must be empty or a JSON object {\"ready\": bool}");
  }
  for (const auto& [key, value] : j.items()) {
    if (key == "ready" && value.is_boolean()) {
      request->set_ready(value.get<bool>());
    } else if (key == "repository_name" && value.is_string()) {
      request->set_repository_name(value.get<std::string>());
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown or mistyped key '", key,
          "'; expected \"ready\": bool, \"repository_name\": string"));
    }
  }
  return absl::OkStatus();
}

std::string InferResponseJson(const ::inference::ModelInferResponse& r) {
  // Sized once: a tensor's entry is ~60 bytes, a value at most 16 (FP32)
  // or 21 (INT64) bytes.
  size_t size =
      64 + r.model_name().size() + r.model_version().size() + r.id().size();
  for (const auto& t : r.outputs()) {
    size += 64 + t.name().size() + 21 * t.shape_size() +
            16 * t.contents().fp32_contents_size() +
            21 * t.contents().int64_contents_size();
  }
  std::string out;
  out.reserve(size);
  absl::StrAppend(&out, "{\"model_name\":", Quote(r.model_name()),
                  ",\"model_version\":", Quote(r.model_version()));
  if (!r.id().empty()) absl::StrAppend(&out, ",\"id\":", Quote(r.id()));
  out += ",\"outputs\":[";
  for (int i = 0; i < r.outputs_size(); ++i) {
    const auto& t = r.outputs(i);
    if (i > 0) out += ",";
    absl::StrAppend(&out, "{\"name\":", Quote(t.name()),
                    ",\"datatype\":", Quote(t.datatype()), ",\"shape\":");
    AppendArray(&out, t.shape(), AppendInt);
    out += ",\"data\":";
    if (t.datatype() == "INT64") {
      AppendArray(&out, t.contents().int64_contents(), AppendInt);
    } else {
      AppendArray(&out, t.contents().fp32_contents(), AppendFloat);
    }
    out += "}";
  }
  out += "]}";
  return out;
}

std::string ServerMetadataJson(const ::inference::ServerMetadataResponse& r) {
  return Dump({{"name", r.name()},
               {"version", r.version()},
               {"extensions", std::vector<std::string>(r.extensions().begin(),
                                                       r.extensions().end())}});
}

std::string ModelMetadataJson(const ::inference::ModelMetadataResponse& r) {
  return Dump({{"name", r.name()},
               {"versions", std::vector<std::string>(r.versions().begin(),
                                                     r.versions().end())},
               {"platform", r.platform()},
               {"inputs", Tensors(r.inputs())},
               {"outputs", Tensors(r.outputs())}});
}

std::string ModelConfigJson(const ::inference::ModelConfigResponse& r) {
  const ::inference::ModelConfig& c = r.config();
  auto tensor = [](const auto& t) {
    return Json{
        {"name", t.name()},
        {"data_type", ::inference::DataType_Name(t.data_type())},
        {"dims", std::vector<int64_t>(t.dims().begin(), t.dims().end())}};
  };
  Json inputs = Json::array(), outputs = Json::array();
  for (const auto& t : c.input()) inputs.push_back(tensor(t));
  for (const auto& t : c.output()) outputs.push_back(tensor(t));
  return Dump({{"name", c.name()},
               {"platform", c.platform()},
               {"backend", c.backend()},
               {"max_batch_size", c.max_batch_size()},
               {"input", inputs},
               {"output", outputs}});
}

std::string ModelStatisticsJson(const ::inference::ModelStatisticsResponse& r) {
  Json stats = Json::array();
  for (const auto& m : r.model_stats()) {
    const auto& s = m.inference_stats();
    stats.push_back({{"name", m.name()},
                     {"version", m.version()},
                     {"last_inference", m.last_inference()},
                     {"inference_count", m.inference_count()},
                     {"execution_count", m.execution_count()},
                     {"inference_stats",
                      {{"success", Duration(s.success())},
                       {"fail", Duration(s.fail())},
                       {"queue", Duration(s.queue())},
                       {"compute_input", Duration(s.compute_input())},
                       {"compute_infer", Duration(s.compute_infer())},
                       {"compute_output", Duration(s.compute_output())}}}});
  }
  return Dump({{"model_stats", stats}});
}

std::string RepositoryIndexJson(const ::inference::RepositoryIndexResponse& r) {
  Json models = Json::array();
  for (const auto& m : r.models()) {
    Json entry = {{"name", m.name()}, {"state", m.state()}};
    if (!m.version().empty()) entry["version"] = m.version();
    if (!m.reason().empty()) entry["reason"] = m.reason();
    models.push_back(entry);
  }
  return Dump(models);
}

}  // namespace bnserve::inference
