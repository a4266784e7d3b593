#include "server/common/parse_error_interceptor.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace bnserve::server {
namespace {

using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::ServerRpcInfo;

class ParseErrorInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ParseErrorInterceptor(const char* method) : method_(method) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) final {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      unparsable_ = true;
    }
    if (unparsable_ && methods->QueryInterceptionHookPoint(
                           InterceptionHookPoints::PRE_SEND_STATUS)) {
      methods->ModifySendStatus(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          std::string(UnparsableRequestStatus(method_).message())));
    }
    methods->Proceed();
  }

 private:
  const char* const method_;  // owned by gRPC for the life of the RPC
  bool unparsable_ = false;
};

class ParseErrorInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit ParseErrorInterceptorFactory(std::vector<std::string> skip)
      : skip_(std::move(skip)) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      ServerRpcInfo* info) final {
    for (const std::string& method : skip_) {
      if (method == info->method()) return nullptr;  // parses its own
    }
    switch (info->type()) {
      case ServerRpcInfo::Type::UNARY:
      case ServerRpcInfo::Type::SERVER_STREAMING:
        return new ParseErrorInterceptor(info->method());
      default:
        return nullptr;  // see the header: nothing to tell apart
    }
  }

 private:
  const std::vector<std::string> skip_;
};

}  // namespace

std::vector<
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
ServerInterceptors(std::vector<std::string> self_parsing_methods) {
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      creators;
  creators.push_back(std::make_unique<ParseErrorInterceptorFactory>(
      std::move(self_parsing_methods)));
  return creators;
}

absl::Status UnparsableRequestStatus(absl::string_view method) {
  return absl::InvalidArgumentError(
      absl::StrCat("the request to ", method,
                   " is not a valid protocol buffer message of the method's "
                   "request type (malformed, truncated or of another type); "
                   "check that client and server use the same .proto "
                   "definitions"));
}

}  // namespace bnserve::server
