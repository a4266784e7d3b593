// The one place where absl::Status becomes an HTTP status code (the HTTP
// counterpart of grpc_status.h), and the JSON error body every HTTP endpoint
// answers with: {"error": "<message>"}.
#ifndef BNSERVE_SERVER_COMMON_HTTP_STATUS_H_
#define BNSERVE_SERVER_COMMON_HTTP_STATUS_H_

#include <string>

#include "absl/status/status.h"

namespace bnserve::server {

// OK 200; INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE 400;
// UNAUTHENTICATED 401; PERMISSION_DENIED 403; NOT_FOUND 404;
// ALREADY_EXISTS, ABORTED 409; RESOURCE_EXHAUSTED 413 (the request is too
// large or too costly to answer); CANCELLED 499; UNIMPLEMENTED 501;
// UNAVAILABLE 503; DEADLINE_EXCEEDED 504; anything else 500.
int HttpStatusOf(const absl::Status& status);

// {"error": "<status message>"} (valid JSON whatever the message holds).
std::string HttpErrorBody(const absl::Status& status);

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_COMMON_HTTP_STATUS_H_
