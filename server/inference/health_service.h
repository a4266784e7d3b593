// grpc.health.v1.Health (Check and Watch) with statuses set by the server:
// every known service starts NOT_SERVING and becomes SERVING only when the
// servable manager reports the configured models loaded and verified. The
// empty service name "" stands for the whole server. Unknown service names
// are NOT_FOUND for Check and SERVICE_UNKNOWN for Watch (per the protocol).
// No authentication: probes must work without a token.
//
// Thread-safe. Shutdown() ends every open Watch stream (call it before
// grpc::Server::Shutdown so draining does not wait for them).
#ifndef BNSERVE_SERVER_INFERENCE_HEALTH_SERVICE_H_
#define BNSERVE_SERVER_INFERENCE_HEALTH_SERVICE_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "health.grpc.pb.h"

namespace bnserve::inference {

class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

  // `services`: the names reported (besides ""), all NOT_SERVING at first.
  explicit HealthService(const std::vector<std::string>& services);
  ~HealthService() override;

  // Sets every known service (and "") to SERVING or NOT_SERVING.
  void SetServing(bool serving);
  // Marks everything NOT_SERVING and finishes every Watch stream; later
  // Watch calls finish at once.
  void Shutdown();

  grpc::ServerUnaryReactor* Check(
      grpc::CallbackServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request,
      grpc::health::v1::HealthCheckResponse* response) override;
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request) override;

 private:
  class Watcher;
  ServingStatus StatusOf(const std::string& service) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Deletes the watchers whose streams are done.
  void ReapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, ServingStatus> statuses_ ABSL_GUARDED_BY(mu_);
  std::set<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_HEALTH_SERVICE_H_
