// The JSON type of the snapshot export format and the strict readers every
// layer's JSON decoding uses. Errors are InvalidArgument naming the JSON path
// of the offending value, e.g. `layers[2].running_var[5]: must be finite`.
//
// Pure functions; thread-safe.
#ifndef BNSERVE_MODEL_JSON_UTIL_H_
#define BNSERVE_MODEL_JSON_UTIL_H_

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace bnserve::model {

// JSON with float32 numbers and keys kept in insertion order, so that
// export -> import reproduces every parameter bit for bit.
using Json =
    nlohmann::basic_json<nlohmann::ordered_map, std::vector, std::string, bool,
                         std::int64_t, std::uint64_t, float>;

namespace json {

// InvalidArgument "<path>: <what>".
absl::Status Invalid(absl::string_view path, absl::string_view what);
// "path.key", or "key" for the top level.
std::string Join(const std::string& path, absl::string_view key);

// Rejects anything but an object whose keys are all in `allowed`.
absl::Status CheckObject(const Json& v, const std::string& path,
                         std::initializer_list<absl::string_view> allowed);
// The member `key` of object `obj`, or nullptr when it is absent.
const Json* Find(const Json& obj, absl::string_view key);
absl::StatusOr<const Json*> Require(const Json& obj, const std::string& path,
                                    absl::string_view key);

// An integer in [min, max]; `dflt` (when set) replaces an absent or null
// member.
absl::StatusOr<int64_t> IntValue(const Json& v, const std::string& path,
                                 int64_t min, int64_t max);
absl::StatusOr<int64_t> IntMember(const Json& obj, const std::string& path,
                                  absl::string_view key, int64_t min,
                                  int64_t max, std::optional<int64_t> dflt);
// A pair [a, b] of integers in [min, max], or one integer meaning [a, a].
absl::StatusOr<std::pair<int, int>> IntPairMember(
    const Json& obj, const std::string& path, absl::string_view key, int min,
    int max, std::optional<std::pair<int, int>> dflt);
// A finite float32.
absl::StatusOr<float> FloatValue(const Json& v, const std::string& path);
absl::StatusOr<float> FloatMember(const Json& obj, const std::string& path,
                                  absl::string_view key,
                                  std::optional<float> dflt);
absl::StatusOr<std::string> StringMember(const Json& obj,
                                         const std::string& path,
                                         absl::string_view key,
                                         std::optional<std::string> dflt);
// Appends exactly `expected` finite floats of the array `v` to `out`.
absl::Status ReadFloats(const Json& v, const std::string& path,
                        int64_t expected, std::vector<float>* out);
// Appends the floats of a nested array of exactly `dims` (outermost first),
// row-major, to `out`. `what` explains the layout in errors.
absl::Status ReadNestedFloats(const Json& v, const std::string& path,
                              const std::vector<int64_t>& dims,
                              absl::string_view what, std::vector<float>* out);

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

// Writers.
Json FloatArray(const float* values, int64_t count);
// A nested array of `dims` (outermost first) from row-major `values`.
Json NestedFloatArray(const float* values, const std::vector<int64_t>& dims);
Json IntPair(int a, int b);

}  // namespace json
}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_JSON_UTIL_H_
