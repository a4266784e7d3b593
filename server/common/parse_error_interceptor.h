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
// Thread safety: the factory is stateless; each interceptor belongs to one
// RPC, and gRPC never runs one RPC's interception hooks concurrently.
#ifndef BNSERVE_SERVER_COMMON_PARSE_ERROR_INTERCEPTOR_H_
#define BNSERVE_SERVER_COMMON_PARSE_ERROR_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <vector>

namespace bnserve::server {

// The interceptor creators every bnserve server installs with
// ServerBuilder::experimental().SetInterceptorCreators().
std::vector<
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
ServerInterceptors();

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_COMMON_PARSE_ERROR_INTERCEPTOR_H_
