// The KServe v2 REST request path without sockets: KServeHttpHandler::Handle
// (route parsing, the bearer-token check, the streaming JSON infer parser,
// the core and the JSON encoders) over a ServableManager serving "clf"
// (versions 1 and 2, label "stable" -> 1) and "reg" from an in-memory store,
// with the token "fuzz" configured.
//
// Input: three lines, then the body:
//   METHOD\nPATH\nAUTHORIZATION\nBODY...
// (an empty AUTHORIZATION line means no header; "-" sends "Bearer fuzz").
// Every answer must have a status the contract allows (200, 400, 401, 404,
// 413, 503) and a body that is valid JSON; an error body is {"error": "..."}
// with a non-empty message; a 200 infer answer has finite outputs. Declared
// shapes must be refused before anything of their size is allocated:
// scripts/fuzz.sh runs with -malloc_limit_mb.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/inference/kserve_http.h"
#include "store/memory_store.h"
#include "tests/fuzz/fuzz_models.h"

using bnserve::fuzz::Fail;
namespace bi = bnserve::inference;
namespace v1 = bnserve::v1;

namespace {

struct Env {
  std::unique_ptr<bi::ServableManager> manager;
  std::unique_ptr<bi::KServeCore> core;
  bnserve::server::TokenAuth auth{"fuzz"};
  std::unique_ptr<bi::KServeHttpHandler> handler;
};

Env* Setup() {
  auto store = std::make_shared<bnserve::store::MemoryStore>();
  for (auto [task, copies] : {std::pair{v1::TASK_CLASSIFICATION, 2},
                              std::pair{v1::TASK_REGRESSION, 1}}) {
    for (int i = 0; i < copies; ++i) {
      auto v = store->Publish(bnserve::fuzz::TinySnapshot(task));
      if (!v.ok()) Fail("Publish", v.status().ToString());
    }
  }
  if (auto s = store->SetLabel("clf", "stable", 1); !s.ok()) {
    Fail("SetLabel", s.ToString());
  }
  auto* env = new Env;
  bi::ServableManagerOptions options;
  options.drift.sample_every = 0;
  env->manager = std::make_unique<bi::ServableManager>(store, options);
  if (auto s = env->manager->SyncAllForTesting(); !s.ok()) {
    Fail("SyncAllForTesting", s.ToString());
  }
  // Small bounds so that fuzzed inputs reach them.
  env->core = std::make_unique<bi::KServeCore>(
      env->manager.get(), bi::RequestLimits{.max_response_bytes = 1 << 20,
                                            .max_work = int64_t{1} << 16});
  env->handler = std::make_unique<bi::KServeHttpHandler>(env->core.get(),
                                                         &env->auth, nullptr);
  return env;
}

// Splits off the next line of `rest`.
absl::string_view Line(absl::string_view* rest) {
  const size_t end = rest->find('\n');
  absl::string_view line = rest->substr(0, end);
  rest->remove_prefix(end == absl::string_view::npos ? rest->size() : end + 1);
  return line;
}

void CheckAnswer(absl::string_view path,
                 const bnserve::server::HttpResponse& r) {
  const int s = r.status;
  if (s != 200 && s != 400 && s != 401 && s != 404 && s != 413 && s != 503) {
    Fail("status", absl::StrCat(s, " ", r.body));
  }
  nlohmann::json body = nlohmann::json::parse(r.body, nullptr, false);
  if (body.is_discarded()) Fail("body is not JSON", r.body);
  const bool readiness = absl::EndsWith(path, "ready");
  if (s != 200 && !(s == 503 && readiness)) {
    if (!body.is_object() || !body.contains("error") ||
        !body["error"].is_string() ||
        body["error"].get<std::string>().empty()) {
      Fail("error body", r.body);
    }
  }
  // An infer answer (it names the model): every output value is finite.
  if (s == 200 && body.is_object() && body.contains("model_name")) {
    for (const auto& out : body.at("outputs")) {
      for (const auto& v : out.at("data")) {
        if (!v.is_number() || !std::isfinite(v.get<double>())) {
          Fail("non-finite output", r.body);
        }
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Env* env = Setup();
  absl::string_view rest(reinterpret_cast<const char*>(data), size);
  const std::string method(Line(&rest));
  const std::string path(Line(&rest));
  const absl::string_view auth_line = Line(&rest);
  const std::string authorization =
      auth_line == "-" ? std::string("Bearer fuzz") : std::string(auth_line);
  bnserve::server::HttpRequest request;
  request.method = method;
  request.path = path;
  request.authorization = auth_line.empty() ? nullptr : &authorization;
  request.body = rest;
  CheckAnswer(path, env->handler->Handle(request));
  return 0;
}
