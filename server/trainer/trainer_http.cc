#include "server/trainer/trainer_http.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "model/status_macros.h"
#include "server/common/dashboard_http.h"
#include "server/common/prometheus.h"
#include "server/trainer/dashboard_json.h"

namespace bnserve::server {

HttpResponse TrainerHttpHandler::Handle(const HttpRequest& request) const {
  if (auto asset = ServeDashboardAsset(request, "/trainer.html")) {
    return *std::move(asset);
  }
  if (request.path == "/api/auth") {
    return ServeDashboardAuth(request, *auth_);
  }
  if (request.path == "/api/jobs") {
    return ServeDashboardJson(request, *auth_, [this]() {
      return absl::StatusOr<std::string>(JobsJson(jobs_->ListJobs("")));
    });
  }
  if (request.path == "/metrics") {
    HttpResponse out = ServeDashboardJson(request, *auth_, [this]() {
      return absl::StatusOr<std::string>(jobs_->RenderMetrics());
    });
    if (out.status == 200) out.content_type = kPrometheusContentType;
    return out;
  }
  absl::string_view rest = request.path;
  if (absl::ConsumePrefix(&rest, "/api/jobs/") &&
      absl::ConsumeSuffix(&rest, "/history") && !rest.empty() &&
      !absl::StrContains(rest, '/')) {
    const std::string job_id(rest);
    return ServeDashboardJson(
        request, *auth_, [this, &job_id]() -> absl::StatusOr<std::string> {
          BNSERVE_ASSIGN_OR_RETURN(v1::Job job, jobs_->GetJob(job_id));
          BNSERVE_ASSIGN_OR_RETURN(JobHistory::View history,
                                   jobs_->History(job_id));
          return JobHistoryJson(job, history);
        });
  }
  return ServeDashboardJson(request, *auth_, [&]() {
    return absl::StatusOr<std::string>(absl::NotFoundError(absl::StrCat(
        "no endpoint ", request.path,
        " on the trainer's HTTP port: the dashboard is at /, its data at "
        "/api/jobs and /api/jobs/{job}/history")));
  });
}

}  // namespace bnserve::server
