// gRPC handlers of bnserve.v1.Trainer: each checks the bearer token, calls
// the JobManager or the store, and converts the status with ToGrpcStatus.
// The unary and client-streaming methods use the synchronous API (they are
// rare and fsync-bound). Train, the per-minibatch hot path, uses the
// callback API: a reactor steps each minibatch on the gRPC thread that
// delivered it, instead of a blocked handler thread woken once per message.
// A long step (a large minibatch) occupies that gRPC thread meanwhile.
//
// Thread-safe: gRPC calls the handlers concurrently.
#ifndef BNSERVE_SERVER_TRAINER_TRAINER_SERVICE_H_
#define BNSERVE_SERVER_TRAINER_TRAINER_SERVICE_H_

#include "bnserve/v1/trainer.grpc.pb.h"
#include "server/common/auth.h"
#include "server/trainer/job_manager.h"

namespace bnserve::server {

class TrainerService final
    : public v1::Trainer::WithCallbackMethod_Train<v1::Trainer::Service> {
 public:
  // `jobs` must outlive the service.
  TrainerService(JobManager* jobs, TokenAuth auth)
      : jobs_(jobs), auth_(std::move(auth)) {}

  grpc::Status CreateJob(grpc::ServerContext* context,
                         const v1::CreateJobRequest* request,
                         v1::Job* response) override;
  grpc::Status GetJob(grpc::ServerContext* context,
                      const v1::GetJobRequest* request,
                      v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context,
                        const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext* context,
                         const v1::CancelJobRequest* request,
                         v1::Job* response) override;
  grpc::Status DeleteJob(grpc::ServerContext* context,
                         const v1::DeleteJobRequest* request,
                         v1::DeleteJobResponse* response) override;
  grpc::ServerBidiReactor<v1::TrainRequest, v1::TrainProgress>* Train(
      grpc::CallbackServerContext* context) override;
  grpc::Status Publish(grpc::ServerContext* context,
                       const v1::PublishRequest* request,
                       v1::PublishResponse* response) override;
  grpc::Status Recalibrate(grpc::ServerContext* context,
                           grpc::ServerReader<v1::RecalibrateRequest>* reader,
                           v1::PublishResponse* response) override;
  grpc::Status ListModels(grpc::ServerContext* context,
                          const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override;
  grpc::Status ListVersions(grpc::ServerContext* context,
                            const v1::ListVersionsRequest* request,
                            v1::ListVersionsResponse* response) override;
  grpc::Status SetLabel(grpc::ServerContext* context,
                        const v1::SetLabelRequest* request,
                        v1::SetLabelResponse* response) override;
  grpc::Status DeleteLabel(grpc::ServerContext* context,
                           const v1::DeleteLabelRequest* request,
                           v1::DeleteLabelResponse* response) override;
  grpc::Status DeleteVersion(grpc::ServerContext* context,
                             const v1::DeleteVersionRequest* request,
                             v1::DeleteVersionResponse* response) override;

 private:
  JobManager* const jobs_;
  const TokenAuth auth_;
};

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_TRAINER_TRAINER_SERVICE_H_
