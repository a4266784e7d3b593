// Requests whose bytes do not parse as the method's request message, sent
// to real in-process trainer and inference servers: each gets
// INVALID_ARGUMENT with a message naming the method (gRPC alone answers
// UNIMPLEMENTED or INTERNAL with no text).
#include "server/common/parse_error_interceptor.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/inference/inference_server.h"
#include "server/trainer/trainer_server.h"

namespace bnserve {
namespace {

namespace fs = std::filesystem;

class ParseErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / absl::StrCat("parse_error_test_", getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Sends `bytes` as the request of the unary method `method`.
  static grpc::Status CallRaw(int port, const std::string& method,
                              const std::string& bytes) {
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                       grpc::InsecureChannelCredentials());
    grpc::GenericStub stub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1), response;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    grpc::Status result;
    stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                   [&](grpc::Status s) {
                     std::lock_guard<std::mutex> lock(mu);
                     result = std::move(s);
                     done = true;
                     cv.notify_one();
                   });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
    return result;
  }

  // Not a protocol buffer: field 0 is never valid, and the varint never ends.
  static constexpr char kGarbage[] = "\x00\xff\xff\xff\xff\xff";
  static std::string Garbage() { return std::string(kGarbage, 6); }

  static void ExpectNamesMethod(const grpc::Status& status,
                                const std::string& method) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << status.error_message();
    EXPECT_NE(status.error_message().find(method), std::string::npos)
        << status.error_message();
    EXPECT_NE(status.error_message().find("not a valid protocol buffer"),
              std::string::npos)
        << status.error_message();
  }

  fs::path dir_;
};

TEST_F(ParseErrorTest, TrainerUnaryMethodsExplainTheFailedParse) {
  server::TrainerServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.store_uri = (dir_ / "store").string();
  auto server = server::TrainerServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  for (const char* method :
       {"/bnserve.v1.Trainer/CreateJob", "/bnserve.v1.Trainer/ListModels"}) {
    ExpectNamesMethod(CallRaw((*server)->port(), method, Garbage()), method);
  }
  // A well-formed (empty) message still reaches the handler.
  EXPECT_TRUE(
      CallRaw((*server)->port(), "/bnserve.v1.Trainer/ListModels", "").ok());
}

TEST_F(ParseErrorTest, InferenceUnaryMethodsExplainTheFailedParse) {
  inference::InferenceServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.metrics_port = 0;
  options.store_uri = (dir_ / "store").string();
  auto server = inference::InferenceServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  for (const char* method : {"/bnserve.v1.Inference/Predict",
                             "/inference.GRPCInferenceService/ModelInfer"}) {
    ExpectNamesMethod(CallRaw((*server)->port(), method, Garbage()), method);
  }
  // A parsable request for a missing model is the handler's NOT_FOUND.
  EXPECT_EQ(
      CallRaw((*server)->port(), "/bnserve.v1.Inference/Predict", "\x0a\x01m")
          .error_code(),
      grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace bnserve
