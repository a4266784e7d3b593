#include "server/common/http_server.h"

#include <httplib.h>

#include <chrono>
#include <exception>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "model/status_macros.h"
#include "server/common/http_status.h"

namespace bnserve::server {
namespace {

// Checks that the TLS files can be read, for a precise message (httplib
// only says the server is not valid).
absl::Status CheckTlsFiles(const TlsOptions& tls) {
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both a certificate and a key (--tls_cert, --tls_key)");
  }
  for (const std::string* file :
       {&tls.cert_file, &tls.key_file, &tls.client_ca_file}) {
    if (file->empty()) continue;
    absl::StatusOr<std::string> read = ReadFileToString(*file);
    if (!read.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read TLS file ", *file));
    }
  }
  if (tls.cert_file.empty() && !tls.client_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_client_ca needs --tls_cert and --tls_key");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<httplib::Server>> MakeServer(
    const TlsOptions& tls) {
  BNSERVE_RETURN_IF_ERROR(CheckTlsFiles(tls));
  if (tls.cert_file.empty()) return std::make_unique<httplib::Server>();
  auto ssl = std::make_unique<httplib::SSLServer>(
      tls.cert_file.c_str(), tls.key_file.c_str(),
      tls.client_ca_file.empty() ? nullptr : tls.client_ca_file.c_str());
  if (!ssl->is_valid()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot use the TLS certificate ", tls.cert_file,
                     " with the key ", tls.key_file,
                     tls.client_ca_file.empty()
                         ? ""
                         : absl::StrCat(" and client CA ", tls.client_ca_file),
                     " for HTTP"));
  }
  return ssl;
}

// Runs the handler; an exception becomes 500 (413 for std::bad_alloc).
HttpResponse Dispatch(const HttpHandler& handler, const HttpRequest& request) {
  try {
    return handler(request);
  } catch (const std::bad_alloc&) {
    const absl::Status st = absl::ResourceExhaustedError(
        "the server ran out of memory answering this request");
    return {HttpStatusOf(st), "application/json", HttpErrorBody(st)};
  } catch (const std::exception& e) {
    const absl::Status st = absl::InternalError(e.what());
    return {HttpStatusOf(st), "application/json", HttpErrorBody(st)};
  }
}

// The JSON error body of a request httplib refused itself (413, 400, 404).
void DescribeTransportError(const httplib::Request&, httplib::Response& res) {
  if (!res.body.empty()) return;
  std::string message =
      res.status == 413 ? "the request body is larger than this server accepts "
                          "(--max_message_mb)"
                        : absl::StrCat("HTTP ", res.status);
  res.set_content(HttpErrorBody(absl::UnknownError(message)),
                  "application/json");
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    const HttpServerOptions& options, HttpHandler handler) {
  std::unique_ptr<HttpServer> s(new HttpServer());
  s->handler_ = std::move(handler);
  BNSERVE_ASSIGN_OR_RETURN(s->http_, MakeServer(options.tls));
  httplib::Server& http = *s->http_;
  const int threads = options.threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  const auto io = absl::ToChronoMicroseconds(options.io_timeout);
  http.set_read_timeout(io);
  http.set_write_timeout(io);
  http.set_keep_alive_timeout(absl::ToInt64Seconds(options.keep_alive_timeout));
  http.set_payload_max_length(static_cast<size_t>(options.max_body_bytes));
  // Headers and body go out in separate writes: without TCP_NODELAY, Nagle
  // holds the body until the client's delayed ACK (~40 ms per request).
  http.set_tcp_nodelay(true);
  http.set_error_handler(DescribeTransportError);
  HttpServer* self = s.get();
  auto route = [self](const httplib::Request& req, httplib::Response& res) {
    const std::string* authorization = nullptr;
    std::string header;
    if (req.has_header("Authorization")) {
      header = req.get_header_value("Authorization");
      authorization = &header;
    }
    HttpResponse out = Dispatch(
        self->handler_, {req.method, req.path, authorization, req.body});
    res.status = out.status;
    for (const auto& [name, value] : out.headers) res.set_header(name, value);
    // Moved, not copied (httplib's set_content copies the body).
    res.body = std::move(out.body);
    res.set_header("Content-Type", std::string(out.content_type));
  };
  http.Get(".*", route);
  http.Post(".*", route);
  http.Put(".*", route);
  http.Delete(".*", route);
  http.Patch(".*", route);
  http.Options(".*", route);

  if (options.port == 0) {
    s->port_ = http.bind_to_any_port(options.host.c_str());
    if (s->port_ <= 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot bind an HTTP port on ", options.host));
    }
  } else {
    if (!http.bind_to_port(options.host.c_str(), options.port)) {
      return absl::UnavailableError(absl::StrCat(
          "cannot bind HTTP on ", options.host, ":", options.port));
    }
    s->port_ = options.port;
  }
  s->thread_ = std::thread([self] { self->http_->listen_after_bind(); });
  // Stop() only works once the accept loop runs: wait for it.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!http.is_running() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  return s;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (http_ != nullptr) http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace bnserve::server
