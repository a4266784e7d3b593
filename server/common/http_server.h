// A small HTTP/1.1 server (cpp-httplib underneath) shared by the servers'
// HTTP endpoints: KServe v2 REST, the dashboards and /metrics. It owns what
// every endpoint needs the same way: TLS (the gRPC port's certificate, key and
// optional client CA, so mutual TLS too), the largest request body, timeouts
// for slow or idle clients and a bounded pool of worker threads. Routing and
// authentication are the handler's: it sees every request (any method and
// path) as an HttpRequest and returns an HttpResponse.
//
// Slow clients: each read and write of a connection must make progress
// within `io_timeout` (a client that stops sending mid-request is dropped);
// an idle keep-alive connection is closed after `keep_alive_timeout`.
// Request lines and header lines are limited to 8 KiB by cpp-httplib; a body
// larger than `max_body_bytes` is refused with 413 before it is read.
//
// Thread-safe: the handler is called concurrently from the worker threads.
#ifndef BNSERVE_SERVER_COMMON_HTTP_SERVER_H_
#define BNSERVE_SERVER_COMMON_HTTP_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/common/limits.h"
#include "server/common/server_setup.h"

namespace httplib {
class Server;
}

namespace bnserve::server {

struct HttpRequest {
  absl::string_view method;  // "GET", "POST", ...
  absl::string_view path;    // without the query string
  // The `authorization` header, or nullptr when absent.
  const std::string* authorization = nullptr;
  absl::string_view body;
};

struct HttpResponse {
  int status = 200;
  // A string with static storage (a literal): nothing to allocate per answer.
  absl::string_view content_type = "application/json";
  std::string body;
  // Further response headers (name, value).
  std::vector<std::pair<std::string, std::string>> headers;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  int port = 0;    // 0 = an ephemeral port
  TlsOptions tls;  // no certificate = plain HTTP
  int64_t max_body_bytes = int64_t{kDefaultMessageMb} << 20;
  absl::Duration io_timeout = absl::Seconds(kHttpIoTimeoutSeconds);
  absl::Duration keep_alive_timeout = absl::Seconds(kHttpIoTimeoutSeconds);
  int threads = kHttpThreads;
};

class HttpServer {
 public:
  // Binds and starts serving on its own threads. InvalidArgument for an
  // unreadable or unusable certificate or key, Unavailable if the port
  // cannot be bound. A handler that throws answers 500 (std::bad_alloc:
  // 413), never crashing the server.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(
      const HttpServerOptions& options, HttpHandler handler);
  ~HttpServer();  // Stop()

  int port() const { return port_; }
  // Stops accepting and waits for the accept loop (idempotent).
  void Stop();

 private:
  HttpServer() = default;

  HttpHandler handler_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_COMMON_HTTP_SERVER_H_
