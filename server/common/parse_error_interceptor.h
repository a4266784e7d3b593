// Gives a request that does not parse a status a user can act on.
//
// gRPC answers a unary (or server-streaming) request whose bytes are not a
// valid message of the method's request type with a bare code and no text:
// UNIMPLEMENTED from a callback handler, INTERNAL from a synchronous one. The
// interceptor this factory creates notices the failed parse (the received
// message is null after POST_RECV_MESSAGE) and rewrites the status that is
// about to be sent into INVALID_ARGUMENT naming the method.
//
// Client- and bidi-streaming methods are not intercepted: gRPC reports a
// message that fails to parse there exactly like the end of the stream, so
// an interceptor cannot tell them apart (the handler sees the stream end).
//
// A method that parses its own request (a raw ByteBuffer handler) is left
// out with `self_parsing_methods`: it answers an unparsable request itself
// with UnparsableRequestStatus, and its calls carry no interceptor at all.
// That matters on a hot path: with any interceptor on an RPC, gRPC sends
// every batch of the call back through the completion queue once more
// after the interception hooks ran (about 6,700 more instructions per
// unary call, see docs/bench-notes-tail.md).
//
// Thread safety: the factory is immutable; each interceptor belongs to one
// RPC, and gRPC never runs one RPC's interception hooks concurrently.
#ifndef BNSERVE_SERVER_COMMON_PARSE_ERROR_INTERCEPTOR_H_
#define BNSERVE_SERVER_COMMON_PARSE_ERROR_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace bnserve::server {

// The interceptor creators every bnserve server installs with
// ServerBuilder::experimental().SetInterceptorCreators().
// `self_parsing_methods` are full method names ("/pkg.Service/Method")
// that get no interceptor.
std::vector<
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
ServerInterceptors(std::vector<std::string> self_parsing_methods = {});

// INVALID_ARGUMENT naming `method` (a full method name): its request bytes
// are not a valid message of its request type.
absl::Status UnparsableRequestStatus(absl::string_view method);

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_COMMON_PARSE_ERROR_INTERCEPTOR_H_
