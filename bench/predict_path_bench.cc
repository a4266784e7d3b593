// bench-predict-path: the pieces of one Predict on the server, besides gRPC
// itself, each in isolation (Google Benchmark, CPU time): the servable's
// forward pass with and without drift sampling, the servable lookup, the
// metrics update, building + serializing the response, parsing the request.
// Their sum is what Predict adds to the no-op server's cost per call.
#include <benchmark/benchmark.h>

#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "model/network.h"
#include "server/inference/inference_service.h"
#include "server/inference/metrics.h"
#include "server/inference/servable.h"
#include "server/inference/servable_manager.h"
#include "store/store.h"
namespace bnserve::bench {
namespace {

static v1::Snapshot Snap() {
  auto net = ::bnserve::model::Network::Create(DigitsSpec({128, 64}), 1);
  v1::Snapshot s = net->ToSnapshot();
  s.set_model("digits");
  return s;
}
static void BM_ServableRun(benchmark::State& st) {
  auto s = *::bnserve::inference::Servable::Create(Snap());
  std::vector<float> x(64, 1.0f), out(10);
  for (auto _ : st) {
    s->Run(x.data(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_ServableRun);
static void BM_ServableRunNoDrift(benchmark::State& st) {
  ::bnserve::inference::DriftOptions d;
  d.sample_every = 0;
  auto s = *::bnserve::inference::Servable::Create(Snap(), d);
  std::vector<float> x(64, 1.0f), out(10);
  for (auto _ : st) {
    s->Run(x.data(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_ServableRunNoDrift);
static void BM_ManagerGet(benchmark::State& st) {
  std::shared_ptr<::bnserve::store::SnapshotStore> store =
      *::bnserve::store::OpenStore("mem://hp");
  (void)store->Publish(Snap());
  ::bnserve::inference::ServableManagerOptions o;
  o.models = {"digits"};
  ::bnserve::inference::ServableManager m(store, o);
  (void)m.Start();
  m.WaitUntilReady(absl::Seconds(5));
  for (auto _ : st) {
    auto s = m.Get("digits");
    benchmark::DoNotOptimize(s);
  }
  m.Stop();
}
BENCHMARK(BM_ManagerGet)->Threads(1)->Threads(2);
static void BM_Metrics(benchmark::State& st) {
  static ::bnserve::inference::Metrics metrics;
  for (auto _ : st) {
    absl::Time t = absl::Now();
    metrics.RecordRequest("Predict", grpc::StatusCode::OK, absl::Now() - t);
  }
}
BENCHMARK(BM_Metrics)->Threads(1)->Threads(2);
static void BM_Response(benchmark::State& st) {
  std::string out;
  for (auto _ : st) {
    v1::PredictResponse r;
    r.set_model("digits");
    r.set_version(3);
    r.mutable_outputs()->Resize(10, 0.5f);
    *r.mutable_probabilities() = r.outputs();
    ::bnserve::inference::SoftmaxInPlace(
        r.mutable_probabilities()->mutable_data(), 10);
    r.set_class_id(3);
    r.set_class_name("3");
    out.clear();
    r.SerializeToString(&out);
    benchmark::DoNotOptimize(out);
  }
}
BENCHMARK(BM_Response);
static void BM_ParseRequest(benchmark::State& st) {
  v1::PredictRequest q;
  q.set_model("digits");
  for (int i = 0; i < 64; ++i) q.add_features(i);
  std::string b = q.SerializeAsString();
  for (auto _ : st) {
    v1::PredictRequest r;
    r.ParseFromString(b);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_ParseRequest);
}  // namespace
}  // namespace bnserve::bench

BENCHMARK_MAIN();
