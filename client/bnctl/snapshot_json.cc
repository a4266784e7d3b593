#include "client/bnctl/snapshot_json.h"

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "model/network.h"
#include "model/status_macros.h"

namespace bnserve::client {
namespace {

namespace json = model::json;
using Json = SnapshotJson;

const char* TaskName(v1::Task task) {
  switch (task) {
    case v1::TASK_CLASSIFICATION:
      return "classification";
    case v1::TASK_REGRESSION:
      return "regression";
    default:
      return nullptr;
  }
}

Json ProvenanceToJson(const v1::Provenance& t) {
  Json j = Json::object();
  j["job_id"] = t.job_id();
  j["step"] = t.step();
  j["examples_seen"] = t.examples_seen();
  // JSON has no NaN: "no loss recorded" is null.
  if (std::isfinite(t.loss())) {
    j["loss"] = static_cast<float>(t.loss());
  } else {
    j["loss"] = nullptr;
  }
  j["parent_version"] = t.parent_version();
  if (t.has_created()) {
    const absl::Time created = absl::FromUnixSeconds(t.created().seconds()) +
                               absl::Nanoseconds(t.created().nanos());
    j["created"] =
        absl::FormatTime(absl::RFC3339_full, created, absl::UTCTimeZone());
  } else {
    j["created"] = nullptr;
  }
  j["origin"] = t.origin();
  return j;
}

absl::Status ReadProvenance(const Json& j, v1::Provenance* t) {
  const std::string p = "training";
  BNSERVE_RETURN_IF_ERROR(
      json::CheckObject(j, p,
                        {"job_id", "step", "examples_seen", "loss",
                         "parent_version", "created", "origin"}));
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  absl::StatusOr<std::string> job = json::StringMember(j, p, "job_id", "");
  if (!job.ok()) return job.status();
  t->set_job_id(*job);
  absl::StatusOr<int64_t> step = json::IntMember(j, p, "step", 0, kMax, 0);
  if (!step.ok()) return step.status();
  t->set_step(*step);
  absl::StatusOr<int64_t> seen =
      json::IntMember(j, p, "examples_seen", 0, kMax, 0);
  if (!seen.ok()) return seen.status();
  t->set_examples_seen(*seen);
  const Json* loss = json::Find(j, "loss");
  if (loss == nullptr || loss->is_null()) {
    t->set_loss(std::numeric_limits<double>::quiet_NaN());
  } else {
    absl::StatusOr<float> l = json::FloatValue(*loss, p + ".loss");
    if (!l.ok()) return l.status();
    t->set_loss(*l);
  }
  absl::StatusOr<int64_t> parent =
      json::IntMember(j, p, "parent_version", 0, kMax, 0);
  if (!parent.ok()) return parent.status();
  t->set_parent_version(*parent);
  absl::StatusOr<std::string> created = json::StringMember(j, p, "created", "");
  if (!created.ok()) return created.status();
  if (!created->empty()) {
    absl::Time time;
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, *created, &time, &err)) {
      return json::Invalid(p + ".created",
                           absl::StrCat("not an RFC 3339 time: ", err));
    }
    const int64_t seconds = absl::ToUnixSeconds(time);
    t->mutable_created()->set_seconds(seconds);
    t->mutable_created()->set_nanos(static_cast<int32_t>(
        absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(seconds))));
  }
  absl::StatusOr<std::string> origin = json::StringMember(j, p, "origin", "");
  if (!origin.ok()) return origin.status();
  t->set_origin(*origin);
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateSnapshot(const v1::Snapshot& snapshot) {
  return model::Network::FromSnapshot(snapshot).status();
}

absl::StatusOr<SnapshotJson> SnapshotToJson(const v1::Snapshot& s) {
  BNSERVE_ASSIGN_OR_RETURN(model::Network net, model::Network::FromSnapshot(s));
  Json j = Json::object();
  j["format"] = kSnapshotFormat;
  j["model"] = s.model();
  j["version"] = s.version();
  j["task"] = TaskName(s.task());
  j["input_features"] = s.input_features();
  if (net.input_shape().spatial) {
    const model::Shape& in = net.input_shape();
    j["input_shape"] = Json::array({in.channels, in.height, in.width});
  }
  j["output_dim"] = s.output_dim();
  j["feature_names"] = Json::array();
  for (const std::string& name : s.feature_names()) {
    j["feature_names"].push_back(name);
  }
  j["classes"] = Json::array();
  for (const std::string& name : s.class_names()) {
    j["classes"].push_back(name);
  }
  j["layers"] = Json::array();
  for (const auto& layer : net.layers()) j["layers"].push_back(layer->ToJson());
  j["training"] = ProvenanceToJson(s.training());
  return j;
}

absl::StatusOr<std::string> SnapshotToJsonText(const v1::Snapshot& snapshot) {
  BNSERVE_ASSIGN_OR_RETURN(Json j, SnapshotToJson(snapshot));
  return j.dump() + "\n";
}

namespace {

absl::Status ReadStrings(const Json& obj, const std::string& key,
                         google::protobuf::RepeatedPtrField<std::string>* out) {
  const Json* v = json::Find(obj, key);
  if (v == nullptr || v->is_null()) return absl::OkStatus();
  if (!v->is_array()) {
    return json::Invalid(key, absl::StrCat("expected an array of strings, got ",
                                           v->type_name()));
  }
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) {
      return json::Invalid(absl::StrCat(key, "[", i, "]"), "expected a string");
    }
    out->Add((*v)[i].get<std::string>());
  }
  return absl::OkStatus();
}

absl::Status ReadInputShape(const Json& j, v1::Snapshot* s) {
  const Json* shape = json::Find(j, "input_shape");
  if (shape == nullptr || shape->is_null()) return absl::OkStatus();
  if (!shape->is_array() || shape->size() != 3) {
    return json::Invalid(
        "input_shape", absl::StrCat("expected [C, H, W], got ", shape->dump()));
  }
  for (size_t i = 0; i < 3; ++i) {
    BNSERVE_ASSIGN_OR_RETURN(
        int64_t v,
        json::IntValue((*shape)[i], absl::StrCat("input_shape[", i, "]"), 1,
                       model::kMaxWidth));
    s->add_input_shape(static_cast<int32_t>(v));
  }
  return absl::OkStatus();
}

absl::Status ReadLayers(const Json& j, v1::Snapshot* s) {
  BNSERVE_ASSIGN_OR_RETURN(const Json* layers, json::Require(j, "", "layers"));
  if (!layers->is_array()) {
    return json::Invalid(
        "layers", absl::StrCat("expected an array, got ", layers->type_name()));
  }
  if (layers->size() > static_cast<size_t>(model::kMaxLayers)) {
    return json::Invalid(
        "layers", absl::StrCat("more than ", model::kMaxLayers, " layers"));
  }
  for (size_t i = 0; i < layers->size(); ++i) {
    BNSERVE_ASSIGN_OR_RETURN(
        std::unique_ptr<model::Layer> layer,
        model::LayerFromJson((*layers)[i], absl::StrCat("layers[", i, "]")));
    layer->ToProto(s->add_layers());
  }
  return absl::OkStatus();
}

// The width of the last dense layer: output_dim when the JSON omits it.
int64_t LastDenseWidth(const v1::Snapshot& s, int64_t fallback) {
  for (int i = s.layers_size(); i-- > 0;) {
    if (s.layers(i).has_dense()) return s.layers(i).dense().out();
  }
  return fallback;
}

}  // namespace

absl::StatusOr<v1::Snapshot> SnapshotFromJson(const SnapshotJson& j) {
  BNSERVE_RETURN_IF_ERROR(json::CheckObject(
      j, "",
      {"format", "model", "version", "task", "input_features", "input_shape",
       "output_dim", "feature_names", "classes", "layers", "training"}));
  BNSERVE_ASSIGN_OR_RETURN(std::string format,
                           json::StringMember(j, "", "format", std::nullopt));
  if (format != kSnapshotFormat) {
    return json::Invalid("format", absl::StrCat("expected \"", kSnapshotFormat,
                                                "\", got \"", format, "\""));
  }
  v1::Snapshot s;
  BNSERVE_ASSIGN_OR_RETURN(*s.mutable_model(),
                           json::StringMember(j, "", "model", ""));
  BNSERVE_ASSIGN_OR_RETURN(
      int64_t version, json::IntMember(j, "", "version", 0,
                                       std::numeric_limits<int64_t>::max(), 0));
  s.set_version(version);
  BNSERVE_ASSIGN_OR_RETURN(
      v1::Task task,
      json::EnumMember<v1::Task>(j, "", "task",
                                 {{"classification", v1::TASK_CLASSIFICATION},
                                  {"regression", v1::TASK_REGRESSION}},
                                 std::nullopt));
  s.set_task(task);
  BNSERVE_ASSIGN_OR_RETURN(int64_t input,
                           json::IntMember(j, "", "input_features", 1,
                                           model::kMaxWidth, std::nullopt));
  s.set_input_features(static_cast<int32_t>(input));
  BNSERVE_RETURN_IF_ERROR(ReadInputShape(j, &s));
  BNSERVE_RETURN_IF_ERROR(
      ReadStrings(j, "feature_names", s.mutable_feature_names()));
  BNSERVE_RETURN_IF_ERROR(ReadStrings(j, "classes", s.mutable_class_names()));
  BNSERVE_RETURN_IF_ERROR(ReadLayers(j, &s));
  // output_dim is implied by the last dense layer; when given it must agree.
  BNSERVE_ASSIGN_OR_RETURN(
      int64_t output_dim,
      json::IntMember(j, "", "output_dim", 1, model::kMaxWidth,
                      LastDenseWidth(s, input)));
  s.set_output_dim(static_cast<int32_t>(output_dim));
  const Json* training = json::Find(j, "training");
  if (training != nullptr && !training->is_null()) {
    BNSERVE_RETURN_IF_ERROR(ReadProvenance(*training, s.mutable_training()));
  } else {
    s.mutable_training()->set_loss(std::numeric_limits<double>::quiet_NaN());
  }
  BNSERVE_RETURN_IF_ERROR(ValidateSnapshot(s));
  return s;
}

absl::StatusOr<v1::Snapshot> SnapshotFromJsonText(absl::string_view text) {
  Json j;
  try {
    j = Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("not valid JSON: ", e.what()));
  }
  return SnapshotFromJson(j);
}

}  // namespace bnserve::client
