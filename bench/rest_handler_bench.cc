// The KServe REST request path without sockets: KServeHttpHandler::Handle
// for one digits-sized infer body (64 features, an MLP [128, 64] with input
// normalization), its parts (the streaming JSON parse, the core, the JSON
// answer), and a metadata GET. Separates what the REST handler costs from
// what the HTTP transport costs (bench/rest_ab.py measures both).
#include <benchmark/benchmark.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/network.h"
#include "server/inference/kserve_http.h"
#include "store/memory_store.h"

namespace bnserve::inference {
namespace {

struct Env {
  std::unique_ptr<ServableManager> manager;
  std::unique_ptr<KServeCore> core;
  server::TokenAuth auth;
  std::unique_ptr<KServeHttpHandler> handler;
  std::string body;
};

Env& GetEnv() {
  static Env* env = [] {
    auto* e = new Env;
    auto store = std::make_shared<store::MemoryStore>();
    v1::NetworkSpec spec;
    spec.set_input_features(64);
    spec.set_task(v1::TASK_CLASSIFICATION);
    spec.set_output_dim(10);
    spec.add_hidden(128);
    spec.add_hidden(64);
    spec.set_input_norm(true);
    auto net = model::Network::Create(spec, 1);
    v1::Snapshot snapshot = net->ToSnapshot();
    snapshot.set_model("digits");
    if (!store->Publish(snapshot).ok()) std::abort();
    ServableManagerOptions options;
    e->manager = std::make_unique<ServableManager>(store, options);
    if (!e->manager->SyncAllForTesting().ok()) std::abort();
    e->core = std::make_unique<KServeCore>(e->manager.get());
    e->handler =
        std::make_unique<KServeHttpHandler>(e->core.get(), &e->auth, nullptr);
    std::vector<int> x(64);
    for (int i = 0; i < 64; ++i) x[i] = (i * 7) % 17;
    e->body = absl::StrCat(
        "{\"inputs\": [{\"name\": \"input\", \"datatype\": \"FP32\", "
        "\"shape\": [1, 64], \"data\": [",
        absl::StrJoin(x, ", "), "]}]}");
    return e;
  }();
  return *env;
}

void BM_RestInfer(benchmark::State& state) {
  Env& env = GetEnv();
  server::HttpRequest request{"POST", "/v2/models/digits/infer", nullptr,
                              env.body};
  for (auto _ : state) {
    server::HttpResponse r = env.handler->Handle(request);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_RestInfer);

void BM_RestParseBody(benchmark::State& state) {
  Env& env = GetEnv();
  for (auto _ : state) {
    ::inference::ModelInferRequest q;
    benchmark::DoNotOptimize(ParseInferBody(env.body, &q));
  }
}
BENCHMARK(BM_RestParseBody);

void BM_CoreInfer(benchmark::State& state) {
  Env& env = GetEnv();
  ::inference::ModelInferRequest q;
  if (!ParseInferBody(env.body, &q).ok()) std::abort();
  q.set_model_name("digits");
  for (auto _ : state) {
    ::inference::ModelInferResponse r;
    benchmark::DoNotOptimize(env.core->ModelInfer(q, &r));
  }
}
BENCHMARK(BM_CoreInfer);

void BM_RestAnswerJson(benchmark::State& state) {
  Env& env = GetEnv();
  ::inference::ModelInferRequest q;
  if (!ParseInferBody(env.body, &q).ok()) std::abort();
  q.set_model_name("digits");
  ::inference::ModelInferResponse r;
  if (!env.core->ModelInfer(q, &r).ok()) std::abort();
  for (auto _ : state) benchmark::DoNotOptimize(InferResponseJson(r));
}
BENCHMARK(BM_RestAnswerJson);

void BM_RestLive(benchmark::State& state) {
  Env& env = GetEnv();
  server::HttpRequest request{"GET", "/v2/health/live", nullptr, ""};
  for (auto _ : state) benchmark::DoNotOptimize(env.handler->Handle(request));
}
BENCHMARK(BM_RestLive);

}  // namespace
}  // namespace bnserve::inference

BENCHMARK_MAIN();
