#include "client/bnctl/snapshot_json.h"

#include <cmath>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace bnserve::client {
namespace {

#define BNCTL_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status bnctl_status_ = (expr);         \
    if (!bnctl_status_.ok()) return bnctl_status_; \
  } while (0)

using Json = SnapshotJson;

absl::Status Invalid(absl::string_view path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// ---------------------------------------------------------------------------
// Enum names.

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

const char* ActivationName(v1::Activation fn) {
  switch (fn) {
    case v1::ACTIVATION_RELU:
      return "relu";
    case v1::ACTIVATION_TANH:
      return "tanh";
    case v1::ACTIVATION_SIGMOID:
      return "sigmoid";
    case v1::ACTIVATION_IDENTITY:
      return "identity";
    default:
      return nullptr;
  }
}

v1::AverageMode EffectiveAverage(v1::AverageMode a) {
  return a == v1::AVERAGE_MODE_UNSPECIFIED ? v1::AVERAGE_EMA : a;
}

v1::VarianceEstimator EffectiveVariance(v1::VarianceEstimator v) {
  return v == v1::VARIANCE_ESTIMATOR_UNSPECIFIED ? v1::VARIANCE_UNBIASED : v;
}

const char* AverageName(v1::AverageMode a) {
  switch (EffectiveAverage(a)) {
    case v1::AVERAGE_EMA:
      return "ema";
    case v1::AVERAGE_CUMULATIVE:
      return "cumulative";
    default:
      return nullptr;
  }
}

const char* VarianceName(v1::VarianceEstimator v) {
  switch (EffectiveVariance(v)) {
    case v1::VARIANCE_UNBIASED:
      return "unbiased";
    case v1::VARIANCE_BIASED:
      return "biased";
    default:
      return nullptr;
  }
}

// An unspecified source is reported as what the average mode produces.
const char* StatsSourceName(v1::StatsSource s, v1::AverageMode a) {
  switch (s) {
    case v1::STATS_SOURCE_UNSPECIFIED:
      return EffectiveAverage(a) == v1::AVERAGE_CUMULATIVE ? "cumulative"
                                                           : "ema";
    case v1::STATS_SOURCE_EMA:
      return "ema";
    case v1::STATS_SOURCE_CUMULATIVE:
      return "cumulative";
    case v1::STATS_SOURCE_EXACT:
      return "exact";
    default:
      return nullptr;
  }
}

// ---------------------------------------------------------------------------
// Validation of the message (shared by export and import).

absl::Status CheckWidth(absl::string_view path, int64_t width) {
  if (width < 1 || width > kMaxSnapshotWidth) {
    return Invalid(path, absl::StrCat("must be between 1 and ",
                                      kMaxSnapshotWidth, ", got ", width));
  }
  return absl::OkStatus();
}

template <typename Repeated>
absl::Status CheckValues(absl::string_view path, const Repeated& values,
                         int64_t expected, bool non_negative = false) {
  if (values.size() != expected) {
    return Invalid(path, absl::StrCat("has ", values.size(),
                                      " values, expected ", expected));
  }
  for (int i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return Invalid(absl::StrCat(path, "[", i, "]"), "must be finite");
    }
    if (non_negative && values[i] < 0.0f) {
      return Invalid(absl::StrCat(path, "[", i, "]"), "must be >= 0");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateBatchNorm(const std::string& p,
                               const v1::BatchNormLayer& bn, int width) {
  BNCTL_RETURN_IF_ERROR(CheckWidth(p + ".features", bn.features()));
  if (bn.features() != width) {
    return Invalid(p,
                   absl::StrCat("batch norm over ", bn.features(),
                                " features follows a layer of width ", width));
  }
  BNCTL_RETURN_IF_ERROR(CheckValues(p + ".gamma", bn.gamma(), width));
  BNCTL_RETURN_IF_ERROR(CheckValues(p + ".beta", bn.beta(), width));
  BNCTL_RETURN_IF_ERROR(
      CheckValues(p + ".running_mean", bn.running_mean(), width));
  BNCTL_RETURN_IF_ERROR(CheckValues(p + ".running_var", bn.running_var(), width,
                                    /*non_negative=*/true));
  if (!(bn.eps() > 0.0f) || !std::isfinite(bn.eps())) {
    return Invalid(p + ".eps", "must be a positive number");
  }
  if (!(bn.momentum() > 0.0f && bn.momentum() <= 1.0f)) {
    return Invalid(p + ".momentum",
                   "must be in (0, 1] (weight of the new value)");
  }
  if (bn.num_batches_tracked() < 0) {
    return Invalid(p + ".num_batches_tracked", "must be >= 0");
  }
  if (bn.stats_examples() < 0) {
    return Invalid(p + ".stats_examples", "must be >= 0");
  }
  if (AverageName(bn.average()) == nullptr) {
    return Invalid(p + ".average", "unknown average mode");
  }
  if (VarianceName(bn.variance()) == nullptr) {
    return Invalid(p + ".variance", "unknown variance estimator");
  }
  if (StatsSourceName(bn.stats_source(), bn.average()) == nullptr) {
    return Invalid(p + ".stats_source", "unknown statistics source");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateSnapshot(const v1::Snapshot& s) {
  if (TaskName(s.task()) == nullptr) {
    return Invalid("task", "must be classification or regression");
  }
  BNCTL_RETURN_IF_ERROR(CheckWidth("input_features", s.input_features()));
  BNCTL_RETURN_IF_ERROR(CheckWidth("output_dim", s.output_dim()));
  if (s.task() == v1::TASK_CLASSIFICATION && s.output_dim() < 2) {
    return Invalid("output_dim", "classification needs at least 2 classes");
  }
  if (s.feature_names_size() != 0 &&
      s.feature_names_size() != s.input_features()) {
    return Invalid("feature_names",
                   absl::StrCat("has ", s.feature_names_size(),
                                " names, expected none or input_features = ",
                                s.input_features()));
  }
  if (s.class_names_size() != 0) {
    if (s.task() != v1::TASK_CLASSIFICATION) {
      return Invalid("classes", "only a classification model has classes");
    }
    if (s.class_names_size() != s.output_dim()) {
      return Invalid("classes",
                     absl::StrCat("has ", s.class_names_size(),
                                  " names, expected none or output_dim = ",
                                  s.output_dim()));
    }
  }
  if (s.layers_size() == 0) return Invalid("layers", "no layers");
  int width = s.input_features();
  for (int i = 0; i < s.layers_size(); ++i) {
    const std::string p = absl::StrCat("layers[", i, "]");
    const v1::Layer& layer = s.layers(i);
    switch (layer.kind_case()) {
      case v1::Layer::kDense: {
        const v1::DenseLayer& d = layer.dense();
        BNCTL_RETURN_IF_ERROR(CheckWidth(p + ".in", d.in()));
        BNCTL_RETURN_IF_ERROR(CheckWidth(p + ".out", d.out()));
        if (d.in() != width) {
          return Invalid(
              p, absl::StrCat("dense input width ", d.in(),
                              " does not match the previous width ", width));
        }
        BNCTL_RETURN_IF_ERROR(
            CheckValues(p + ".weight", d.weight(), int64_t{d.in()} * d.out()));
        if (d.bias_size() != 0) {
          BNCTL_RETURN_IF_ERROR(CheckValues(p + ".bias", d.bias(), d.out()));
        }
        width = d.out();
        break;
      }
      case v1::Layer::kBatchNorm:
        BNCTL_RETURN_IF_ERROR(ValidateBatchNorm(p, layer.batch_norm(), width));
        break;
      case v1::Layer::kActivation:
        if (ActivationName(layer.activation().fn()) == nullptr) {
          return Invalid(p + ".fn", "unknown activation");
        }
        break;
      default:
        return Invalid(p, "unknown or missing layer kind");
    }
  }
  if (width != s.output_dim()) {
    return Invalid("layers",
                   absl::StrCat("the network's output width ", width,
                                " does not match output_dim ", s.output_dim()));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Export.

namespace {

template <typename Repeated>
Json FloatArray(const Repeated& values, int begin, int count) {
  Json out = Json::array();
  out.get_ref<Json::array_t&>().reserve(count);
  for (int i = begin; i < begin + count; ++i) out.push_back(values[i]);
  return out;
}

template <typename Repeated>
Json FloatArray(const Repeated& values) {
  return FloatArray(values, 0, values.size());
}

Json LayerToJson(const v1::Layer& layer) {
  Json j = Json::object();
  switch (layer.kind_case()) {
    case v1::Layer::kDense: {
      const v1::DenseLayer& d = layer.dense();
      j["type"] = "dense";
      j["in"] = d.in();
      j["out"] = d.out();
      Json weight = Json::array();
      for (int r = 0; r < d.out(); ++r) {
        weight.push_back(FloatArray(d.weight(), r * d.in(), d.in()));
      }
      j["weight"] = std::move(weight);
      j["bias"] = d.bias_size() == 0 ? Json(nullptr) : FloatArray(d.bias());
      break;
    }
    case v1::Layer::kBatchNorm: {
      const v1::BatchNormLayer& bn = layer.batch_norm();
      j["type"] = "batch_norm";
      j["features"] = bn.features();
      j["gamma"] = FloatArray(bn.gamma());
      j["beta"] = FloatArray(bn.beta());
      j["running_mean"] = FloatArray(bn.running_mean());
      j["running_var"] = FloatArray(bn.running_var());
      j["eps"] = bn.eps();
      j["momentum"] = bn.momentum();
      j["num_batches_tracked"] = bn.num_batches_tracked();
      j["average"] = AverageName(bn.average());
      j["variance"] = VarianceName(bn.variance());
      j["stats_source"] = StatsSourceName(bn.stats_source(), bn.average());
      j["stats_examples"] = bn.stats_examples();
      break;
    }
    default:
      j["type"] = "activation";
      j["fn"] = ActivationName(layer.activation().fn());
      break;
  }
  return j;
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

}  // namespace

absl::StatusOr<SnapshotJson> SnapshotToJson(const v1::Snapshot& s) {
  BNCTL_RETURN_IF_ERROR(ValidateSnapshot(s));
  Json j = Json::object();
  j["format"] = kSnapshotFormat;
  j["model"] = s.model();
  j["version"] = s.version();
  j["task"] = TaskName(s.task());
  j["input_features"] = s.input_features();
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
  for (const v1::Layer& layer : s.layers()) {
    j["layers"].push_back(LayerToJson(layer));
  }
  j["training"] = ProvenanceToJson(s.training());
  return j;
}

absl::StatusOr<std::string> SnapshotToJsonText(const v1::Snapshot& snapshot) {
  absl::StatusOr<Json> j = SnapshotToJson(snapshot);
  if (!j.ok()) return j.status();
  return j->dump() + "\n";
}

// ---------------------------------------------------------------------------
// Import.

namespace {

const char* TypeName(const Json& v) { return v.type_name(); }

// Rejects anything but an object whose keys are all in `allowed`.
absl::Status CheckObject(const Json& v, const std::string& path,
                         std::initializer_list<absl::string_view> allowed) {
  if (!v.is_object()) {
    return Invalid(path.empty() ? "snapshot" : path,
                   absl::StrCat("expected an object, got ", TypeName(v)));
  }
  for (const auto& [key, value] : v.items()) {
    bool known = false;
    for (absl::string_view a : allowed) known = known || key == a;
    if (!known) {
      return Invalid(path.empty() ? key : absl::StrCat(path, ".", key),
                     absl::StrCat("unknown key (expected one of: ",
                                  absl::StrJoin(allowed, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

std::string Join(const std::string& path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

// The member `key` of object `obj`, or nullptr when it is absent.
const Json* Find(const Json& obj, absl::string_view key) {
  auto it = obj.find(std::string(key));
  return it == obj.end() ? nullptr : &*it;
}

absl::StatusOr<const Json*> Require(const Json& obj, const std::string& path,
                                    absl::string_view key) {
  const Json* v = Find(obj, key);
  if (v == nullptr) return Invalid(Join(path, key), "missing");
  return v;
}

absl::StatusOr<int64_t> IntValue(const Json& v, const std::string& path,
                                 int64_t min, int64_t max) {
  if (!v.is_number_integer()) {
    return Invalid(path,
                   absl::StrCat("expected an integer, got ",
                                v.is_number() ? "a fraction" : TypeName(v)));
  }
  int64_t x = 0;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Invalid(path, "integer out of range");
    }
    x = static_cast<int64_t>(u);
  } else {
    x = v.get<int64_t>();
  }
  if (x < min || x > max) {
    return Invalid(
        path, absl::StrCat("must be between ", min, " and ", max, ", got ", x));
  }
  return x;
}

absl::StatusOr<int64_t> IntMember(const Json& obj, const std::string& path,
                                  absl::string_view key, int64_t min,
                                  int64_t max, std::optional<int64_t> dflt) {
  const Json* v = Find(obj, key);
  if (v == nullptr || (dflt.has_value() && v->is_null())) {
    if (dflt.has_value()) return *dflt;
    return Invalid(Join(path, key), "missing");
  }
  return IntValue(*v, Join(path, key), min, max);
}

absl::StatusOr<float> FloatValue(const Json& v, const std::string& path) {
  if (!v.is_number()) {
    return Invalid(path, absl::StrCat("expected a number, got ", TypeName(v)));
  }
  const float x = v.get<float>();
  if (!std::isfinite(x)) return Invalid(path, "must be finite (float32)");
  return x;
}

absl::StatusOr<float> FloatMember(const Json& obj, const std::string& path,
                                  absl::string_view key,
                                  std::optional<float> dflt) {
  const Json* v = Find(obj, key);
  if (v == nullptr || (dflt.has_value() && v->is_null())) {
    if (dflt.has_value()) return *dflt;
    return Invalid(Join(path, key), "missing");
  }
  return FloatValue(*v, Join(path, key));
}

absl::StatusOr<std::string> StringMember(const Json& obj,
                                         const std::string& path,
                                         absl::string_view key,
                                         std::optional<std::string> dflt) {
  const Json* v = Find(obj, key);
  if (v == nullptr || (dflt.has_value() && v->is_null())) {
    if (dflt.has_value()) return *dflt;
    return Invalid(Join(path, key), "missing");
  }
  if (!v->is_string()) {
    return Invalid(Join(path, key),
                   absl::StrCat("expected a string, got ", TypeName(*v)));
  }
  return v->get<std::string>();
}

// Reads exactly `expected` finite floats into `out`.
absl::Status ReadFloats(const Json& v, const std::string& path,
                        int64_t expected,
                        google::protobuf::RepeatedField<float>* out) {
  if (!v.is_array()) {
    return Invalid(path, absl::StrCat("expected an array of ", expected,
                                      " numbers, got ", TypeName(v)));
  }
  if (static_cast<int64_t>(v.size()) != expected) {
    return Invalid(
        path, absl::StrCat("has ", v.size(), " values, expected ", expected));
  }
  out->Reserve(out->size() + static_cast<int>(expected));
  for (size_t i = 0; i < v.size(); ++i) {
    absl::StatusOr<float> x = FloatValue(v[i], absl::StrCat(path, "[", i, "]"));
    if (!x.ok()) return x.status();
    out->Add(*x);
  }
  return absl::OkStatus();
}

absl::Status ReadStrings(const Json& obj, const std::string& key,
                         google::protobuf::RepeatedPtrField<std::string>* out) {
  const Json* v = Find(obj, key);
  if (v == nullptr || v->is_null()) return absl::OkStatus();
  if (!v->is_array()) {
    return Invalid(
        key, absl::StrCat("expected an array of strings, got ", TypeName(*v)));
  }
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) {
      return Invalid(absl::StrCat(key, "[", i, "]"), "expected a string");
    }
    out->Add((*v)[i].get<std::string>());
  }
  return absl::OkStatus();
}

// Maps a JSON string onto an enum value by name.
template <typename Enum>
absl::StatusOr<Enum> EnumMember(
    const Json& obj, const std::string& path, absl::string_view key,
    std::initializer_list<std::pair<absl::string_view, Enum>> names,
    std::optional<Enum> dflt) {
  const Json* v = Find(obj, key);
  if (v == nullptr || (dflt.has_value() && v->is_null())) {
    if (dflt.has_value()) return *dflt;
    return Invalid(Join(path, key), "missing");
  }
  std::vector<std::string> quoted;
  for (const auto& [name, value] : names) {
    if (v->is_string() && v->get<std::string>() == name) return value;
    quoted.push_back(absl::StrCat("\"", name, "\""));
  }
  return Invalid(Join(path, key),
                 absl::StrCat("expected one of ", absl::StrJoin(quoted, ", "),
                              ", got ", v->dump()));
}

absl::Status ReadDense(const Json& j, const std::string& p, v1::DenseLayer* d) {
  BNCTL_RETURN_IF_ERROR(
      CheckObject(j, p, {"type", "in", "out", "weight", "bias"}));
  absl::StatusOr<int64_t> in =
      IntMember(j, p, "in", 1, kMaxSnapshotWidth, std::nullopt);
  if (!in.ok()) return in.status();
  absl::StatusOr<int64_t> out =
      IntMember(j, p, "out", 1, kMaxSnapshotWidth, std::nullopt);
  if (!out.ok()) return out.status();
  d->set_in(static_cast<int32_t>(*in));
  d->set_out(static_cast<int32_t>(*out));
  absl::StatusOr<const Json*> weight = Require(j, p, "weight");
  if (!weight.ok()) return weight.status();
  const std::string wp = p + ".weight";
  if (!(*weight)->is_array() ||
      static_cast<int64_t>((*weight)->size()) != *out) {
    return Invalid(wp, absl::StrCat("expected ", *out, " rows (out) of ", *in,
                                    " numbers (in), PyTorch Linear.weight "
                                    "layout"));
  }
  for (int64_t r = 0; r < *out; ++r) {
    BNCTL_RETURN_IF_ERROR(ReadFloats((**weight)[r],
                                     absl::StrCat(wp, "[", r, "]"), *in,
                                     d->mutable_weight()));
  }
  const Json* bias = Find(j, "bias");
  if (bias != nullptr && !bias->is_null()) {
    BNCTL_RETURN_IF_ERROR(
        ReadFloats(*bias, p + ".bias", *out, d->mutable_bias()));
  }
  return absl::OkStatus();
}

absl::Status ReadBatchNorm(const Json& j, const std::string& p,
                           v1::BatchNormLayer* bn) {
  BNCTL_RETURN_IF_ERROR(
      CheckObject(j, p,
                  {"type", "features", "gamma", "beta", "running_mean",
                   "running_var", "eps", "momentum", "num_batches_tracked",
                   "average", "variance", "stats_source", "stats_examples"}));
  absl::StatusOr<int64_t> n =
      IntMember(j, p, "features", 1, kMaxSnapshotWidth, std::nullopt);
  if (!n.ok()) return n.status();
  bn->set_features(static_cast<int32_t>(*n));
  struct Field {
    const char* key;
    google::protobuf::RepeatedField<float>* out;
  };
  for (const Field& f :
       {Field{"gamma", bn->mutable_gamma()}, Field{"beta", bn->mutable_beta()},
        Field{"running_mean", bn->mutable_running_mean()},
        Field{"running_var", bn->mutable_running_var()}}) {
    absl::StatusOr<const Json*> v = Require(j, p, f.key);
    if (!v.ok()) return v.status();
    BNCTL_RETURN_IF_ERROR(ReadFloats(**v, Join(p, f.key), *n, f.out));
  }
  absl::StatusOr<float> eps = FloatMember(j, p, "eps", 1e-5f);
  if (!eps.ok()) return eps.status();
  bn->set_eps(*eps);
  absl::StatusOr<float> momentum = FloatMember(j, p, "momentum", 0.1f);
  if (!momentum.ok()) return momentum.status();
  bn->set_momentum(*momentum);
  constexpr int64_t kMaxCount = std::numeric_limits<int64_t>::max();
  absl::StatusOr<int64_t> tracked =
      IntMember(j, p, "num_batches_tracked", 0, kMaxCount, 0);
  if (!tracked.ok()) return tracked.status();
  bn->set_num_batches_tracked(*tracked);
  absl::StatusOr<v1::AverageMode> average = EnumMember<v1::AverageMode>(
      j, p, "average",
      {{"ema", v1::AVERAGE_EMA}, {"cumulative", v1::AVERAGE_CUMULATIVE}},
      v1::AVERAGE_EMA);
  if (!average.ok()) return average.status();
  bn->set_average(*average);
  absl::StatusOr<v1::VarianceEstimator> variance =
      EnumMember<v1::VarianceEstimator>(j, p, "variance",
                                        {{"unbiased", v1::VARIANCE_UNBIASED},
                                         {"biased", v1::VARIANCE_BIASED}},
                                        v1::VARIANCE_UNBIASED);
  if (!variance.ok()) return variance.status();
  bn->set_variance(*variance);
  absl::StatusOr<v1::StatsSource> source = EnumMember<v1::StatsSource>(
      j, p, "stats_source",
      {{"ema", v1::STATS_SOURCE_EMA},
       {"cumulative", v1::STATS_SOURCE_CUMULATIVE},
       {"exact", v1::STATS_SOURCE_EXACT}},
      *average == v1::AVERAGE_CUMULATIVE ? v1::STATS_SOURCE_CUMULATIVE
                                         : v1::STATS_SOURCE_EMA);
  if (!source.ok()) return source.status();
  bn->set_stats_source(*source);
  absl::StatusOr<int64_t> examples =
      IntMember(j, p, "stats_examples", 0, kMaxCount, *tracked);
  if (!examples.ok()) return examples.status();
  bn->set_stats_examples(*examples);
  return absl::OkStatus();
}

absl::Status ReadLayer(const Json& j, const std::string& p, v1::Layer* layer) {
  if (!j.is_object()) {
    return Invalid(p, absl::StrCat("expected an object, got ", TypeName(j)));
  }
  absl::StatusOr<std::string> type = StringMember(j, p, "type", std::nullopt);
  if (!type.ok()) return type.status();
  if (*type == "dense") return ReadDense(j, p, layer->mutable_dense());
  if (*type == "batch_norm") {
    return ReadBatchNorm(j, p, layer->mutable_batch_norm());
  }
  if (*type == "activation") {
    BNCTL_RETURN_IF_ERROR(CheckObject(j, p, {"type", "fn"}));
    absl::StatusOr<v1::Activation> fn =
        EnumMember<v1::Activation>(j, p, "fn",
                                   {{"relu", v1::ACTIVATION_RELU},
                                    {"tanh", v1::ACTIVATION_TANH},
                                    {"sigmoid", v1::ACTIVATION_SIGMOID},
                                    {"identity", v1::ACTIVATION_IDENTITY}},
                                   std::nullopt);
    if (!fn.ok()) return fn.status();
    layer->mutable_activation()->set_fn(*fn);
    return absl::OkStatus();
  }
  return Invalid(p + ".type",
                 absl::StrCat("unknown layer type \"", *type,
                              "\" (expected dense, batch_norm or activation)"));
}

absl::Status ReadProvenance(const Json& j, v1::Provenance* t) {
  const std::string p = "training";
  BNCTL_RETURN_IF_ERROR(CheckObject(j, p,
                                    {"job_id", "step", "examples_seen", "loss",
                                     "parent_version", "created", "origin"}));
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  absl::StatusOr<std::string> job = StringMember(j, p, "job_id", "");
  if (!job.ok()) return job.status();
  t->set_job_id(*job);
  absl::StatusOr<int64_t> step = IntMember(j, p, "step", 0, kMax, 0);
  if (!step.ok()) return step.status();
  t->set_step(*step);
  absl::StatusOr<int64_t> seen = IntMember(j, p, "examples_seen", 0, kMax, 0);
  if (!seen.ok()) return seen.status();
  t->set_examples_seen(*seen);
  const Json* loss = Find(j, "loss");
  if (loss == nullptr || loss->is_null()) {
    t->set_loss(std::numeric_limits<double>::quiet_NaN());
  } else {
    absl::StatusOr<float> l = FloatValue(*loss, p + ".loss");
    if (!l.ok()) return l.status();
    t->set_loss(*l);
  }
  absl::StatusOr<int64_t> parent =
      IntMember(j, p, "parent_version", 0, kMax, 0);
  if (!parent.ok()) return parent.status();
  t->set_parent_version(*parent);
  absl::StatusOr<std::string> created = StringMember(j, p, "created", "");
  if (!created.ok()) return created.status();
  if (!created->empty()) {
    absl::Time time;
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, *created, &time, &err)) {
      return Invalid(p + ".created",
                     absl::StrCat("not an RFC 3339 time: ", err));
    }
    const int64_t seconds = absl::ToUnixSeconds(time);
    t->mutable_created()->set_seconds(seconds);
    t->mutable_created()->set_nanos(static_cast<int32_t>(
        absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(seconds))));
  }
  absl::StatusOr<std::string> origin = StringMember(j, p, "origin", "");
  if (!origin.ok()) return origin.status();
  t->set_origin(*origin);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::Snapshot> SnapshotFromJson(const SnapshotJson& j) {
  BNCTL_RETURN_IF_ERROR(CheckObject(
      j, "",
      {"format", "model", "version", "task", "input_features", "output_dim",
       "feature_names", "classes", "layers", "training"}));
  absl::StatusOr<std::string> format =
      StringMember(j, "", "format", std::nullopt);
  if (!format.ok()) return format.status();
  if (*format != kSnapshotFormat) {
    return Invalid("format", absl::StrCat("expected \"", kSnapshotFormat,
                                          "\", got \"", *format, "\""));
  }
  v1::Snapshot s;
  absl::StatusOr<std::string> model = StringMember(j, "", "model", "");
  if (!model.ok()) return model.status();
  s.set_model(*model);
  absl::StatusOr<int64_t> version =
      IntMember(j, "", "version", 0, std::numeric_limits<int64_t>::max(), 0);
  if (!version.ok()) return version.status();
  s.set_version(*version);
  absl::StatusOr<v1::Task> task =
      EnumMember<v1::Task>(j, "", "task",
                           {{"classification", v1::TASK_CLASSIFICATION},
                            {"regression", v1::TASK_REGRESSION}},
                           std::nullopt);
  if (!task.ok()) return task.status();
  s.set_task(*task);
  absl::StatusOr<int64_t> input =
      IntMember(j, "", "input_features", 1, kMaxSnapshotWidth, std::nullopt);
  if (!input.ok()) return input.status();
  s.set_input_features(static_cast<int32_t>(*input));
  BNCTL_RETURN_IF_ERROR(
      ReadStrings(j, "feature_names", s.mutable_feature_names()));
  BNCTL_RETURN_IF_ERROR(ReadStrings(j, "classes", s.mutable_class_names()));

  absl::StatusOr<const Json*> layers = Require(j, "", "layers");
  if (!layers.ok()) return layers.status();
  if (!(*layers)->is_array()) {
    return Invalid("layers",
                   absl::StrCat("expected an array, got ", TypeName(**layers)));
  }
  int width = s.input_features();
  for (size_t i = 0; i < (*layers)->size(); ++i) {
    v1::Layer* layer = s.add_layers();
    BNCTL_RETURN_IF_ERROR(
        ReadLayer((**layers)[i], absl::StrCat("layers[", i, "]"), layer));
    if (layer->has_dense()) width = layer->dense().out();
  }
  // output_dim is implied by the last dense layer; when given it must agree.
  absl::StatusOr<int64_t> output_dim =
      IntMember(j, "", "output_dim", 1, kMaxSnapshotWidth, width);
  if (!output_dim.ok()) return output_dim.status();
  s.set_output_dim(static_cast<int32_t>(*output_dim));

  const Json* training = Find(j, "training");
  if (training != nullptr && !training->is_null()) {
    BNCTL_RETURN_IF_ERROR(ReadProvenance(*training, s.mutable_training()));
  } else {
    s.mutable_training()->set_loss(std::numeric_limits<double>::quiet_NaN());
  }
  BNCTL_RETURN_IF_ERROR(ValidateSnapshot(s));
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
