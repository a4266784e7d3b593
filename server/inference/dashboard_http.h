// The inference server's dashboard on its HTTP port (beside KServe v2 REST):
// the page at / (server/common/dashboard_http.h) and the JSON endpoints it
// reads, built by dashboard_json.h:
//   GET /api/models    ModelsJson (models, versions, labels, serving version)
//   GET /api/traffic   TrafficJson (requests, errors, latency percentiles)
//   GET /api/drift     DriftJson (per batch-norm layer, most drifted first)
// The endpoints need the bearer token when one is configured (401
// otherwise).
//
// Thread-safe; the manager, metrics and auth must outlive the handler.
#ifndef BNSERVE_SERVER_INFERENCE_DASHBOARD_HTTP_H_
#define BNSERVE_SERVER_INFERENCE_DASHBOARD_HTTP_H_

#include <optional>

#include "server/common/auth.h"
#include "server/common/http_server.h"
#include "server/inference/metrics.h"
#include "server/inference/servable_manager.h"

namespace bnserve::inference {

class DashboardHttpHandler {
 public:
  DashboardHttpHandler(const ServableManager* manager, const Metrics* metrics,
                       const server::TokenAuth* auth)
      : manager_(manager), metrics_(metrics), auth_(auth) {}

  // The answer for a dashboard path (/, its assets, /api/...); nullopt for
  // any other path (KServe's).
  std::optional<server::HttpResponse> Handle(
      const server::HttpRequest& request) const;

 private:
  const ServableManager* const manager_;
  const Metrics* const metrics_;
  const server::TokenAuth* const auth_;
};

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_DASHBOARD_HTTP_H_
