// The trainer's HTTP port (--http_port, default 8001): its dashboard page
// at / (server/common/dashboard_http.h) and the JSON endpoints the page
// reads, built by dashboard_json.h:
//   GET /api/jobs                 JobsJson
//   GET /api/jobs/{job}/history   JobHistoryJson
//   GET /api/auth                 whether a token is needed (no token)
// and the trainer's Prometheus exposition (JobManager::RenderMetrics,
// also on --metrics_port when set):
//   GET /metrics
// The endpoints need the bearer token when one is configured (401
// otherwise); errors are {"error": ...} with HttpStatusOf (404 for an
// unknown job or path).
//
// Thread-safe; the manager and auth must outlive the handler.
#ifndef BNSERVE_SERVER_TRAINER_TRAINER_HTTP_H_
#define BNSERVE_SERVER_TRAINER_TRAINER_HTTP_H_

#include "server/common/auth.h"
#include "server/common/http_server.h"
#include "server/trainer/job_manager.h"

namespace bnserve::server {

class TrainerHttpHandler {
 public:
  TrainerHttpHandler(JobManager* jobs, const TokenAuth* auth)
      : jobs_(jobs), auth_(auth) {}

  // Answers one request; never throws for bad input.
  HttpResponse Handle(const HttpRequest& request) const;

 private:
  JobManager* const jobs_;
  const TokenAuth* const auth_;
};

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_TRAINER_TRAINER_HTTP_H_
