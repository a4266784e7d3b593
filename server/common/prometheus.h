// Helpers of the Prometheus text exposition format (0.0.4) shared by the
// servers' /metrics endpoints. Pure functions; thread-safe.
#ifndef BNSERVE_SERVER_COMMON_PROMETHEUS_H_
#define BNSERVE_SERVER_COMMON_PROMETHEUS_H_

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace bnserve::server {

// The Content-Type of a /metrics answer.
inline constexpr char kPrometheusContentType[] =
    "text/plain; version=0.0.4; charset=utf-8";

// A label value escaped: backslash, double quote and newline.
inline std::string PrometheusEscape(absl::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// A sample value: 9 significant digits; NaN and infinities as Prometheus
// spells them.
inline std::string PrometheusNumber(double v) {
  if (v != v) return "NaN";
  if (v == 1.0 / 0.0) return "+Inf";
  if (v == -1.0 / 0.0) return "-Inf";
  return absl::StrFormat("%.9g", v);
}

// "# HELP <name> <help>\n# TYPE <name> <type>\n".
inline std::string PrometheusHeader(absl::string_view name,
                                    absl::string_view type,
                                    absl::string_view help) {
  return absl::StrCat("# HELP ", name, " ", help, "\n# TYPE ", name, " ", type,
                      "\n");
}

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_COMMON_PROMETHEUS_H_
