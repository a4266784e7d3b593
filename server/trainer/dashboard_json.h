// The JSON documents behind the trainer's dashboard page, built from the job
// manager's answers without any transport (trainer_http.h only routes and
// checks the token). Non-finite numbers (the loss before the first step)
// are null.
//
//   JobsJson     {"history_points": kJobHistoryPoints, "jobs": [{"job_id",
//                "model", "state" ("IDLE", "TRAINING", "CANCELLED", ...),
//                "steps", "examples_seen", "last_loss", "last_accuracy",
//                "last_published_version", "parent_version", "created"
//                (Unix seconds)}]}
//   JobHistoryJson  {"job": <one entry of JobsJson>, "stride", "capacity",
//                "batch_norm": [{"layer", "features", "units", "momentum",
//                "average" ("ema" | "cumulative")}], "points": [<point>],
//                "latest": <point> | null, "publishes": [{"step",
//                "version", "origin"}]}, where a point is {"step", "loss",
//                "accuracy", "time", "bn": [{"running_mean",
//                "running_var", "batch_mean", "batch_var"}]} with one "bn"
//                entry per batch_norm entry (see job_history.h)
//
// JobGaugesPrometheus is the per-job part of the trainer's Prometheus
// exposition (JobManager::RenderMetrics adds it to the counters and
// histograms of TrainerMetrics) for the same job numbers:
//   bnserve_trainer_job_steps{job,model}                 gauge
//   bnserve_trainer_job_examples_seen{job,model}         gauge
//   bnserve_trainer_job_loss{job,model}                  gauge (last step)
//   bnserve_trainer_job_accuracy{job,model}              gauge (last step)
//   bnserve_trainer_job_published_version{job,model}     gauge (0 = none)
//
// Pure functions of their arguments; thread-safe.
#ifndef BNSERVE_SERVER_TRAINER_DASHBOARD_JSON_H_
#define BNSERVE_SERVER_TRAINER_DASHBOARD_JSON_H_

#include <string>
#include <vector>

#include "bnserve/v1/trainer.pb.h"
#include "server/trainer/job_history.h"

namespace bnserve::server {

std::string JobsJson(const std::vector<v1::Job>& jobs);
std::string JobGaugesPrometheus(const std::vector<v1::Job>& jobs);
std::string JobHistoryJson(const v1::Job& job, const JobHistory::View& history,
                           int capacity = kJobHistoryPoints);

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_TRAINER_DASHBOARD_JSON_H_
