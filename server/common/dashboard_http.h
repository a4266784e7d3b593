// What both servers' dashboards share on their HTTP port: the page assets
// compiled into the binary (server/common/dashboard/, embedded by
// embed.cmake) and the common checks of the JSON endpoints behind them.
//
// Access: the page itself (GET /) and its script and style sheet answer
// without the token. They are the same static files for everyone, hold no
// data and no secret, and the page must load to ask for the token: when an
// endpoint answers 401 the page shows a token field and keeps what the user
// types in the tab's sessionStorage (never in a cookie, never in a URL),
// sending it as `Authorization: Bearer <token>` on each fetch. Every JSON
// endpoint (/api/...) but /api/auth needs the token when one is configured,
// exactly like the gRPC API. Responses carry a Content-Security-Policy that
// allows only the server's own script and style (no inline script, nothing from
// elsewhere), and the JSON answers are not cached.
//
// Thread-safe (pure functions over constant data).
#ifndef BNSERVE_SERVER_COMMON_DASHBOARD_HTTP_H_
#define BNSERVE_SERVER_COMMON_DASHBOARD_HTTP_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/common/auth.h"
#include "server/common/http_server.h"

namespace bnserve::server {

struct DashboardAsset {
  const char* path;  // "/dashboard.js"
  const char* content_type;
  const char* body;
};
// Generated (dashboard_assets.cc).
extern const DashboardAsset kDashboardAssets[];
extern const int kDashboardAssetCount;

// The asset at `path` ("/dashboard.js"), or nullptr.
const DashboardAsset* FindDashboardAsset(absl::string_view path);

// GET / answers the asset `page` ("/trainer.html"); GET of another asset's
// path answers it; any other path gives nullopt (not a dashboard asset).
// A method other than GET or HEAD on an asset path is 400.
std::optional<HttpResponse> ServeDashboardAsset(const HttpRequest& request,
                                                absl::string_view page);

// GET /api/auth, which answers without the token: {"token_required":
// bool, "token_accepted": bool (the request's Authorization header passes)}.
// The page asks it first and shows its token field instead of calling the
// other endpoints into 401s. It reveals only whether a token is configured,
// which a 401 reveals anyway.
HttpResponse ServeDashboardAuth(const HttpRequest& request,
                                const TokenAuth& auth);

// Answers a JSON endpoint: 400 unless GET, 401 without the configured
// token, else `build()`'s document (200) or its error
// ({"error": ...} with HttpStatusOf).
HttpResponse ServeDashboardJson(
    const HttpRequest& request, const TokenAuth& auth,
    const std::function<absl::StatusOr<std::string>()>& build);

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_COMMON_DASHBOARD_HTTP_H_
