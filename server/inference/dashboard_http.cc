#include "server/inference/dashboard_http.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/dashboard_http.h"
#include "server/inference/dashboard_json.h"

namespace bnserve::inference {

std::optional<server::HttpResponse> DashboardHttpHandler::Handle(
    const server::HttpRequest& request) const {
  if (auto asset = server::ServeDashboardAsset(request, "/inference.html")) {
    return asset;
  }
  if (!absl::StartsWith(request.path, "/api/")) return std::nullopt;
  if (request.path == "/api/auth") {
    return server::ServeDashboardAuth(request, *auth_);
  }
  using Body = absl::StatusOr<std::string>;
  if (request.path == "/api/models") {
    return server::ServeDashboardJson(
        request, *auth_, [this] { return Body(ModelsJson(*manager_)); });
  }
  if (request.path == "/api/traffic") {
    return server::ServeDashboardJson(request, *auth_, [this] {
      return Body(TrafficJson(*metrics_, absl::Now()));
    });
  }
  if (request.path == "/api/drift") {
    return server::ServeDashboardJson(
        request, *auth_, [this] { return Body(DriftJson(*manager_)); });
  }
  return server::ServeDashboardJson(request, *auth_, [&] {
    return Body(absl::NotFoundError(
        absl::StrCat("no endpoint ", request.path,
                     ": the dashboard's data are /api/models, /api/traffic "
                     "and /api/drift")));
  });
}

}  // namespace bnserve::inference
