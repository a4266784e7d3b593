#include "model/json_util.h"

#include <cmath>
#include <limits>

namespace bnserve::model::json {

absl::Status Invalid(absl::string_view path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

std::string Join(const std::string& path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

absl::Status CheckObject(const Json& v, const std::string& path,
                         std::initializer_list<absl::string_view> allowed) {
  if (!v.is_object()) {
    return Invalid(path.empty() ? "snapshot" : path,
                   absl::StrCat("expected an object, got ", v.type_name()));
  }
  for (const auto& [key, value] : v.items()) {
    bool known = false;
    for (absl::string_view a : allowed) known = known || key == a;
    if (!known) {
      return Invalid(Join(path, key),
                     absl::StrCat("unknown key (expected one of: ",
                                  absl::StrJoin(allowed, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

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
                                v.is_number() ? "a fraction" : v.type_name()));
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

absl::StatusOr<std::pair<int, int>> IntPairMember(
    const Json& obj, const std::string& path, absl::string_view key, int min,
    int max, std::optional<std::pair<int, int>> dflt) {
  const Json* v = Find(obj, key);
  const std::string p = Join(path, key);
  if (v == nullptr || (dflt.has_value() && v->is_null())) {
    if (dflt.has_value()) return *dflt;
    return Invalid(p, "missing");
  }
  if (v->is_number_integer()) {
    absl::StatusOr<int64_t> a = IntValue(*v, p, min, max);
    if (!a.ok()) return a.status();
    return std::make_pair(static_cast<int>(*a), static_cast<int>(*a));
  }
  if (!v->is_array() || v->size() != 2) {
    return Invalid(p,
                   absl::StrCat("expected [height, width], got ", v->dump()));
  }
  absl::StatusOr<int64_t> a = IntValue((*v)[0], p + "[0]", min, max);
  if (!a.ok()) return a.status();
  absl::StatusOr<int64_t> b = IntValue((*v)[1], p + "[1]", min, max);
  if (!b.ok()) return b.status();
  return std::make_pair(static_cast<int>(*a), static_cast<int>(*b));
}

absl::StatusOr<float> FloatValue(const Json& v, const std::string& path) {
  if (!v.is_number()) {
    return Invalid(path,
                   absl::StrCat("expected a number, got ", v.type_name()));
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
                   absl::StrCat("expected a string, got ", v->type_name()));
  }
  return v->get<std::string>();
}

absl::Status ReadFloats(const Json& v, const std::string& path,
                        int64_t expected, std::vector<float>* out) {
  if (!v.is_array()) {
    return Invalid(path, absl::StrCat("expected an array of ", expected,
                                      " numbers, got ", v.type_name()));
  }
  if (static_cast<int64_t>(v.size()) != expected) {
    return Invalid(
        path, absl::StrCat("has ", v.size(), " values, expected ", expected));
  }
  out->reserve(out->size() + static_cast<size_t>(expected));
  for (size_t i = 0; i < v.size(); ++i) {
    absl::StatusOr<float> x = FloatValue(v[i], absl::StrCat(path, "[", i, "]"));
    if (!x.ok()) return x.status();
    out->push_back(*x);
  }
  return absl::OkStatus();
}

namespace {

absl::Status ReadNested(const Json& v, const std::string& path,
                        const std::vector<int64_t>& dims, size_t level,
                        absl::string_view what, std::vector<float>* out) {
  if (level + 1 == dims.size()) return ReadFloats(v, path, dims[level], out);
  if (!v.is_array() || static_cast<int64_t>(v.size()) != dims[level]) {
    return Invalid(path, absl::StrCat("expected ", what));
  }
  for (int64_t i = 0; i < dims[level]; ++i) {
    absl::Status s =
        ReadNested(v[static_cast<size_t>(i)], absl::StrCat(path, "[", i, "]"),
                   dims, level + 1, what, out);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

Json Nested(const float* values, const std::vector<int64_t>& dims, size_t level,
            int64_t* offset) {
  if (level + 1 == dims.size()) {
    Json row = FloatArray(values + *offset, dims[level]);
    *offset += dims[level];
    return row;
  }
  Json out = Json::array();
  for (int64_t i = 0; i < dims[level]; ++i) {
    out.push_back(Nested(values, dims, level + 1, offset));
  }
  return out;
}

}  // namespace

absl::Status ReadNestedFloats(const Json& v, const std::string& path,
                              const std::vector<int64_t>& dims,
                              absl::string_view what, std::vector<float>* out) {
  return ReadNested(v, path, dims, 0, what, out);
}

Json FloatArray(const float* values, int64_t count) {
  Json out = Json::array();
  out.get_ref<Json::array_t&>().reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) out.push_back(values[i]);
  return out;
}

Json NestedFloatArray(const float* values, const std::vector<int64_t>& dims) {
  int64_t offset = 0;
  return Nested(values, dims, 0, &offset);
}

Json IntPair(int a, int b) { return Json::array({a, b}); }

}  // namespace bnserve::model::json
