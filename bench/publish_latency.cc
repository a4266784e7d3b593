// bench-publish-latency: publish -> served latency. Publishes --iterations
// fresh digits snapshots to --store and, after each Publish returns, polls
// every inference replica in --targets with Predict until each answers with
// the new version. The figure of one iteration is the time from Publish
// returning to the LAST replica answering with the new version (a Predict
// round trip, ~0.1-0.3 ms, bounds the resolution). Also records how long
// each Publish call itself takes (with --redis_min_replicas, the WAIT for
// the replicas included). Prints one JSON line with p50/p99/max in ms. The
// replicas must already serve --model.
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "bnserve/v1/inference.grpc.pb.h"
#include "model/network.h"
#include "store/store.h"

ABSL_FLAG(std::string, store, "", "store URI the replicas watch");
ABSL_FLAG(std::string, targets, "", "comma-separated replica host:port");
ABSL_FLAG(std::string, model, "digits", "model name");
ABSL_FLAG(int32_t, iterations, 100, "publications measured");
ABSL_FLAG(int32_t, pause_ms, 20, "pause between publications");
ABSL_FLAG(double, timeout_s, 5, "give up on one publication after this");
ABSL_FLAG(int32_t, redis_min_replicas, 0,
          "Redis: replicas every Publish waits for (WAIT)");

namespace bnserve::bench {
namespace {

// Nanoseconds from `t0` until every stub answers Predict with `version` or
// newer; -1 after --timeout_s.
int64_t WaitUntilServed(
    const std::vector<std::unique_ptr<v1::Inference::Stub>>& stubs,
    const v1::PredictRequest& request, int64_t version, int64_t t0) {
  const int64_t timeout_ns =
      static_cast<int64_t>(absl::GetFlag(FLAGS_timeout_s) * 1e9);
  std::vector<bool> done(stubs.size(), false);
  size_t remaining = stubs.size();
  int64_t now = t0;
  while (remaining > 0 && now - t0 < timeout_ns) {
    for (size_t i = 0; i < stubs.size(); ++i) {
      if (done[i]) continue;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(1));
      v1::PredictResponse response;
      grpc::Status st = stubs[i]->Predict(&context, request, &response);
      if (st.ok() && response.version() >= version) {
        done[i] = true;
        --remaining;
      }
    }
    now = NowNanos();
  }
  return remaining == 0 ? now - t0 : -1;
}

std::vector<std::unique_ptr<v1::Inference::Stub>> TargetStubs() {
  std::vector<std::unique_ptr<v1::Inference::Stub>> stubs;
  for (absl::string_view t :
       absl::StrSplit(absl::GetFlag(FLAGS_targets), ',', absl::SkipEmpty())) {
    stubs.push_back(v1::Inference::NewStub(grpc::CreateChannel(
        std::string(t), grpc::InsecureChannelCredentials())));
  }
  return stubs;
}

int Run() {
  store::StoreOptions options;
  options.redis_min_replicas = absl::GetFlag(FLAGS_redis_min_replicas);
  auto store = store::OpenStore(absl::GetFlag(FLAGS_store), options);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 2;
  }
  const std::vector<std::unique_ptr<v1::Inference::Stub>> stubs = TargetStubs();
  const std::string model = absl::GetFlag(FLAGS_model);
  v1::PredictRequest request;
  request.set_model(model);
  for (int i = 0; i < 64; ++i) request.add_features(0.0f);

  std::vector<int64_t> latencies, publish_ns;
  int timeouts = 0;
  for (int it = 0; it < absl::GetFlag(FLAGS_iterations); ++it) {
    auto net = model::Network::Create(DigitsSpec({128, 64}), 1000 + it);
    v1::Snapshot snapshot = net->ToSnapshot();
    snapshot.set_model(model);
    const int64_t before = NowNanos();
    auto version = (*store)->Publish(snapshot);
    const int64_t t0 = NowNanos();
    publish_ns.push_back(t0 - before);
    if (!version.ok()) {
      std::fprintf(stderr, "Publish: %s\n",
                   version.status().ToString().c_str());
      return 1;
    }
    const int64_t served = WaitUntilServed(stubs, request, *version, t0);
    if (served < 0) {
      ++timeouts;
    } else {
      latencies.push_back(served);
    }
    std::this_thread::sleep_for(
        std::chrono::milliseconds(absl::GetFlag(FLAGS_pause_ms)));
    if (it % 20 == 19) (void)(*store)->ApplyRetention(model, 4);
  }
  const size_t n = latencies.size();
  std::printf(
      "{\"mode\": \"publish_latency\", \"store\": \"%s\", \"replicas\": %zu, "
      "\"n\": %zu, \"timeouts\": %d, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
      "\"max_ms\": %.3f, \"publish_p50_ms\": %.3f, \"publish_p99_ms\": %.3f}\n",
      (*store)->uri().c_str(), stubs.size(), n, timeouts,
      Quantile(latencies, 0.5) / 1e6, Quantile(latencies, 0.99) / 1e6,
      Quantile(latencies, 1.0) / 1e6, Quantile(publish_ns, 0.5) / 1e6,
      Quantile(publish_ns, 0.99) / 1e6);
  return timeouts == 0 ? 0 : 1;
}

}  // namespace
}  // namespace bnserve::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return bnserve::bench::Run();
}
