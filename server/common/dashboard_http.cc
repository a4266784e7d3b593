#include "server/common/dashboard_http.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/http_status.h"

namespace bnserve::server {
namespace {

constexpr char kContentSecurityPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'";

HttpResponse Error(const absl::Status& status) {
  HttpResponse out{HttpStatusOf(status), "application/json",
                   HttpErrorBody(status)};
  out.headers.emplace_back("Cache-Control", "no-store");
  return out;
}

}  // namespace

const DashboardAsset* FindDashboardAsset(absl::string_view path) {
  for (int i = 0; i < kDashboardAssetCount; ++i) {
    if (path == kDashboardAssets[i].path) return &kDashboardAssets[i];
  }
  return nullptr;
}

std::optional<HttpResponse> ServeDashboardAsset(const HttpRequest& request,
                                                absl::string_view page) {
  const DashboardAsset* asset =
      FindDashboardAsset(request.path == "/" ? page : request.path);
  if (asset == nullptr) return std::nullopt;
  if (request.method != "GET" && request.method != "HEAD") {
    return Error(absl::InvalidArgumentError(
        absl::StrCat("use GET ", request.path, " (the dashboard)")));
  }
  HttpResponse out{200, asset->content_type, asset->body};
  out.headers.emplace_back("Content-Security-Policy", kContentSecurityPolicy);
  out.headers.emplace_back("X-Content-Type-Options", "nosniff");
  out.headers.emplace_back("Cache-Control", "no-cache");
  return out;
}

HttpResponse ServeDashboardAuth(const HttpRequest& request,
                                const TokenAuth& auth) {
  if (request.method != "GET") {
    return Error(absl::InvalidArgumentError("use GET /api/auth"));
  }
  const bool accepted = auth.CheckAuthorization(request.authorization).ok();
  HttpResponse out{
      200, "application/json",
      absl::StrCat("{\"token_required\":", auth.enabled() ? "true" : "false",
                   ",\"token_accepted\":", accepted ? "true" : "false", "}")};
  out.headers.emplace_back("Cache-Control", "no-store");
  return out;
}

HttpResponse ServeDashboardJson(
    const HttpRequest& request, const TokenAuth& auth,
    const std::function<absl::StatusOr<std::string>()>& build) {
  if (request.method != "GET") {
    return Error(
        absl::InvalidArgumentError(absl::StrCat("use GET ", request.path)));
  }
  if (absl::Status st = auth.CheckAuthorization(request.authorization);
      !st.ok()) {
    return Error(st);
  }
  absl::StatusOr<std::string> body = build();
  if (!body.ok()) return Error(body.status());
  HttpResponse out{200, "application/json", *std::move(body)};
  out.headers.emplace_back("Cache-Control", "no-store");
  out.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return out;
}

}  // namespace bnserve::server
