// A no-op HTTP endpoint on the same HTTP server as bnserve-inference's
// KServe REST port (server::HttpServer: cpp-httplib, the same worker pool,
// timeouts, body limit and TCP_NODELAY): every request, whatever its method,
// path and body, gets 200 and a small constant JSON body. bench/rest_ab.py
// posts the same infer body to it and to the real endpoint, so the ratio of
// the two is what the REST handler, the KServe core and the model cost.
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "server/common/http_server.h"
#include "server/common/server_setup.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "address to listen on");
ABSL_FLAG(int32_t, port, 0, "HTTP port (0 = pick a free one and print it)");

int main(int argc, char** argv) {
  bnserve::server::PrepareServerProcess();
  absl::ParseCommandLine(argc, argv);
  bnserve::server::HttpServerOptions options;
  options.host = absl::GetFlag(FLAGS_host);
  options.port = absl::GetFlag(FLAGS_port);
  auto server = bnserve::server::HttpServer::Start(
      options, [](const bnserve::server::HttpRequest&) {
        return bnserve::server::HttpResponse{200, "application/json",
                                             "{\"ok\":true}"};
      });
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
    return 1;
  }
  std::printf("listening on :%d\n", (*server)->port());
  std::fflush(stdout);
  bnserve::server::WaitForTerminationSignal();
  (*server)->Stop();
  return 0;
}
