// Security of both servers with real sockets on loopback: TLS and mutual TLS
// with certificates generated here by openssl, bearer tokens, message size
// limits, deadlines, and model names that try to escape the store's root.
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "bnserve/v1/inference.grpc.pb.h"
#include "bnserve/v1/trainer.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "health.grpc.pb.h"
#include "server/common/server_setup.h"
#include "server/inference/inference_server.h"
#include "server/trainer/trainer_server.h"
// After Eigen (through the servers' headers): the socket headers httplib
// includes define `_res`, a name Eigen uses.
#include <httplib.h>

namespace bnserve::server {
namespace {

namespace fs = std::filesystem;
using ::grpc::StatusCode;

std::string Read(const fs::path& p) { return *ReadFileToString(p.string()); }

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        absl::StrCat("bnserve-security-", getpid()));
    fs::create_directories(*dir_);
    const std::string d = dir_->string();
    const std::string key =
        "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string script = absl::StrCat(
        "set -e; cd ", d, "; exec >openssl.log 2>&1\n",
        // A CA, a server certificate for localhost / 127.0.0.1, a client
        // certificate from the same CA, and a client from a rogue CA.
        "openssl req -x509 ", key,
        " -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca\n",
        "openssl req ", key,
        " -keyout server.key -out server.csr -subj /CN=localhost\n",
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext\n",
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key "
        "-CAcreateserial "
        "-out server.crt -days 2 -extfile san.ext\n",
        "openssl req ", key,
        " -keyout client.key -out client.csr -subj /CN=client\n",
        "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key "
        "-CAcreateserial "
        "-out client.crt -days 2\n",
        "openssl req -x509 ", key,
        " -keyout rogue-ca.key -out rogue-ca.crt -days 2 -subj /CN=rogue\n",
        "openssl req ", key,
        " -keyout rogue.key -out rogue.csr -subj /CN=rogue-client\n",
        "openssl x509 -req -in rogue.csr -CA rogue-ca.crt -CAkey rogue-ca.key "
        "-CAcreateserial -out rogue.crt -days 2\n",
        "printf 's3cret\\n' > token\n");
    ASSERT_EQ(std::system(script.c_str()), 0) << Read(*dir_ / "openssl.log");
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  static std::string File(const std::string& name) {
    return (*dir_ / name).string();
  }

  std::unique_ptr<TrainerServer> StartTrainer(TrainerServerOptions options) {
    options.listen_address = "127.0.0.1:0";
    if (options.store_uri == "bnserve-store") {
      options.store_uri = (*dir_ / absl::StrCat("store-", counter_++)).string();
    }
    auto server = TrainerServer::Start(options);
    EXPECT_TRUE(server.ok()) << server.status();
    return std::move(*server);
  }

  std::shared_ptr<grpc::Channel> Channel(int port, bool tls,
                                         const std::string& client = "") {
    std::shared_ptr<grpc::ChannelCredentials> creds =
        grpc::InsecureChannelCredentials();
    if (tls) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = Read(File("ca.crt"));
      if (!client.empty()) {
        ssl.pem_cert_chain = Read(File(client + ".crt"));
        ssl.pem_private_key = Read(File(client + ".key"));
      }
      creds = grpc::SslCredentials(ssl);
    }
    return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), creds);
  }

  static grpc::Status ListModels(const std::shared_ptr<grpc::Channel>& ch,
                                 const std::string& token = "") {
    auto stub = v1::Trainer::NewStub(ch);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    v1::ListModelsResponse response;
    return stub->ListModels(&ctx, {}, &response);
  }

  static fs::path* dir_;
  int counter_ = 0;
};

fs::path* SecurityTest::dir_ = nullptr;

TEST_F(SecurityTest, TrainerServesTlsAndRefusesPlaintextClients) {
  auto server =
      StartTrainer({.tls = {File("server.crt"), File("server.key"), ""}});
  EXPECT_TRUE(ListModels(Channel(server->port(), true)).ok());
  EXPECT_EQ(ListModels(Channel(server->port(), false)).error_code(),
            StatusCode::UNAVAILABLE);
}

TEST_F(SecurityTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  auto server = StartTrainer(
      {.tls = {File("server.crt"), File("server.key"), File("ca.crt")}});
  EXPECT_TRUE(ListModels(Channel(server->port(), true, "client")).ok());
  EXPECT_EQ(ListModels(Channel(server->port(), true)).error_code(),
            StatusCode::UNAVAILABLE);
  EXPECT_EQ(ListModels(Channel(server->port(), true, "rogue")).error_code(),
            StatusCode::UNAVAILABLE);
}

TEST_F(SecurityTest, TrainerBearerTokenOverTls) {
  auto server =
      StartTrainer({.tls = {File("server.crt"), File("server.key"), ""},
                    .token_file = File("token")});
  auto ch = Channel(server->port(), true);
  EXPECT_EQ(ListModels(ch).error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListModels(ch, "s3cre").error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(ListModels(ch, "s3cret").ok());
}

TEST_F(SecurityTest, BadSecurityConfigurationIsRefusedAtStart) {
  TrainerServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.store_uri = File("store-bad");
  options.tls = {File("server.crt"), "", ""};
  EXPECT_EQ(TrainerServer::Start(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.tls = {};
  options.token_file = File("no-such-token");
  EXPECT_EQ(TrainerServer::Start(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SecurityTest, InferenceServesMutualTlsAndToken) {
  inference::InferenceServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.metrics_port = 0;
  options.store_uri = File("store-inference");
  options.tls = {File("server.crt"), File("server.key"), File("ca.crt")};
  options.token_file = File("token");
  auto server = inference::InferenceServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto call = [&](const std::shared_ptr<grpc::Channel>& ch,
                  const std::string& token) {
    auto stub = v1::Inference::NewStub(ch);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    v1::PredictRequest request;
    request.set_model("absent");
    request.add_features(1.0f);
    v1::PredictResponse response;
    return stub->Predict(&ctx, request, &response);
  };
  const int port = (*server)->port();
  EXPECT_EQ(call(Channel(port, false), "s3cret").error_code(),
            StatusCode::UNAVAILABLE);
  EXPECT_EQ(call(Channel(port, true), "s3cret").error_code(),
            StatusCode::UNAVAILABLE);  // no client certificate
  EXPECT_EQ(call(Channel(port, true, "rogue"), "s3cret").error_code(),
            StatusCode::UNAVAILABLE);
  EXPECT_EQ(call(Channel(port, true, "client"), "").error_code(),
            StatusCode::UNAUTHENTICATED);
  // Authenticated: the handshake completed and the call reached the
  // service, which knows no such model. Exactly NOT_FOUND with the service's
  // own message: UNAVAILABLE is what a refused handshake gives.
  const grpc::Status status = call(Channel(port, true, "client"), "s3cret");
  EXPECT_EQ(status.error_code(), StatusCode::NOT_FOUND)
      << status.error_code() << ": " << status.error_message();
  EXPECT_THAT(status.error_message(),
              ::testing::HasSubstr("model 'absent' is not served here"));
  (*server)->Shutdown(absl::Seconds(1));
}

// The HTTP ports (KServe REST and /metrics) take the gRPC port's TLS
// settings: with a client CA, a client without a certificate from it gets
// no answer; with one, the token decides, and health needs none.
TEST_F(SecurityTest, InferenceHttpPortsServeMutualTlsAndToken) {
  inference::InferenceServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.http_host = options.metrics_host = "127.0.0.1";
  options.http_port = inference::InferenceServerOptions::kEphemeralPort;
  options.metrics_port = inference::InferenceServerOptions::kEphemeralPort;
  options.store_uri = File("store-inference-http");
  options.tls = {File("server.crt"), File("server.key"), File("ca.crt")};
  options.token_file = File("token");
  auto server = inference::InferenceServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto get = [&](int port, const std::string& path, const std::string& cert,
                 const std::string& token) {
    std::unique_ptr<httplib::SSLClient> client =
        cert.empty()
            ? std::make_unique<httplib::SSLClient>("127.0.0.1", port)
            : std::make_unique<httplib::SSLClient>(
                  "127.0.0.1", port, File(cert + ".crt"), File(cert + ".key"));
    client->set_ca_cert_path(File("ca.crt").c_str());
    client->enable_server_certificate_verification(true);
    client->set_read_timeout(10, 0);
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    auto res = client->Get(path.c_str(), headers);
    return res ? res->status : -1;
  };
  const int http = (*server)->http_port();
  const int metrics = (*server)->metrics_port();
  EXPECT_EQ(get(http, "/v2/health/live", "", ""), -1);  // no client cert
  EXPECT_EQ(get(http, "/v2/health/live", "rogue", ""), -1);
  EXPECT_EQ(get(http, "/v2/health/live", "client", ""), 200);
  EXPECT_EQ(get(http, "/v2", "client", ""), 401);
  EXPECT_EQ(get(http, "/v2", "client", "s3cret"), 200);
  EXPECT_EQ(get(metrics, "/metrics", "", "s3cret"), -1);
  EXPECT_EQ(get(metrics, "/metrics", "client", ""), 401);
  EXPECT_EQ(get(metrics, "/metrics", "client", "s3cret"), 200);
  // Plain HTTP gets no answer from a TLS port.
  httplib::Client plain("127.0.0.1", http);
  plain.set_read_timeout(10, 0);
  auto res = plain.Get("/v2/health/live");
  EXPECT_TRUE(!res || res->status != 200);
  (*server)->Shutdown(absl::Seconds(1));
}

TEST_F(SecurityTest, OversizedMessagesAreRefusedWithResourceExhausted) {
  auto server = StartTrainer({.max_message_mb = 1});
  auto stub = v1::Trainer::NewStub(Channel(server->port(), false));
  v1::CreateJobRequest create;
  create.set_model("big");
  create.mutable_spec()->set_input_features(1024);
  create.mutable_spec()->set_task(v1::TASK_CLASSIFICATION);
  create.mutable_spec()->set_output_dim(2);
  create.mutable_spec()->add_hidden(4);
  v1::Job job;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->CreateJob(&ctx, create, &job).ok());
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->Train(&ctx);
  v1::TrainRequest request;
  request.set_job_id(job.job_id());
  request.mutable_batch()->set_rows(512);
  request.mutable_batch()->set_cols(1024);
  request.mutable_batch()->mutable_features()->Resize(512 * 1024, 0.5f);
  request.mutable_batch()->mutable_labels()->Resize(512, 0);
  stream->Write(request);  // 2 MiB > 1 MiB
  stream->WritesDone();
  v1::TrainProgress progress;
  while (stream->Read(&progress)) {
  }
  EXPECT_EQ(stream->Finish().error_code(), StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(SecurityTest, DeadlinesAreHonoured) {
  auto server = StartTrainer({});
  auto stub = v1::Trainer::NewStub(Channel(server->port(), false));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(200));
  // A stream that never sends anything: the server waits in Read until the
  // deadline ends the call.
  auto stream = stub->Train(&ctx);
  v1::TrainProgress progress;
  EXPECT_FALSE(stream->Read(&progress));
  EXPECT_EQ(stream->Finish().error_code(), StatusCode::DEADLINE_EXCEEDED);
}

TEST_F(SecurityTest, ModelNamesCannotEscapeTheStoreRoot) {
  const fs::path root = *dir_ / "escape" / "store";
  fs::create_directories(root);
  auto server = StartTrainer({.store_uri = root.string()});
  auto stub = v1::Trainer::NewStub(Channel(server->port(), false));
  for (const std::string& name : std::vector<std::string>{
           "../x", "..", "a/b", "/etc", "x/../../y", ".hidden", "", "a b",
           std::string(65, 'a'), std::string("nul\0byte", 8)}) {
    v1::CreateJobRequest create;
    create.set_model(name);
    create.mutable_spec()->set_input_features(2);
    create.mutable_spec()->set_task(v1::TASK_CLASSIFICATION);
    create.mutable_spec()->set_output_dim(2);
    create.mutable_spec()->add_hidden(2);
    v1::Job job;
    grpc::ClientContext ctx;
    EXPECT_EQ(stub->CreateJob(&ctx, create, &job).error_code(),
              StatusCode::INVALID_ARGUMENT)
        << name;
    v1::SetLabelRequest label;
    label.set_model(name);
    label.set_label("stable");
    label.set_version(1);
    v1::SetLabelResponse unused;
    grpc::ClientContext ctx2;
    EXPECT_EQ(stub->SetLabel(&ctx2, label, &unused).error_code(),
              StatusCode::INVALID_ARGUMENT)
        << name;
  }
  // Nothing was created next to the store.
  std::vector<std::string> siblings;
  for (const auto& e : fs::directory_iterator(root.parent_path())) {
    siblings.push_back(e.path().filename().string());
  }
  EXPECT_EQ(siblings, std::vector<std::string>{"store"});
}

}  // namespace
}  // namespace bnserve::server
