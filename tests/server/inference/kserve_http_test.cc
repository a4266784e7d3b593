// KServe v2 REST of bnserve-inference over a real loopback HTTP socket: an
// InferenceServer over an in-memory store, called with cpp-httplib's client
// and compared with the same server's gRPC KServe answers (in-process
// channel). Health, metadata, readiness, infer, the Triton extensions, the
// token, errors and hostile bodies, and a slow client.
//
// Eigen (through inference_server.h) comes before the socket headers, which
// define `_res`, a name Eigen uses.
#include "server/inference/inference_server.h"
// (keep the order)
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/inference/kserve_json.h"
#include "store/memory_store.h"
#include "tests/server/inference/test_util.h"

namespace bnserve::inference {
namespace {

using ::testing::HasSubstr;
using testing::MakeSnapshot;
using testing::RandomFeatures;
using testing::UniqueName;
using Json = nlohmann::json;
namespace kserve = ::inference;

class KServeHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string name = UniqueName("rest");
    publisher_ = store::MemoryStore::Open(name);
    clf_ = UniqueName("clf");
    ASSERT_EQ(*publisher_->Publish(MakeSnapshot(clf_, 1)), 1);
    ASSERT_EQ(*publisher_->Publish(MakeSnapshot(clf_, 2)), 2);
    ASSERT_TRUE(publisher_->SetLabel(clf_, "stable", 1).ok());
    store_ =
        std::shared_ptr<store::MemoryStore>(store::MemoryStore::Open(name));
    options_.listen_address = "127.0.0.1:0";
    options_.http_host = "127.0.0.1";
    options_.http_port = InferenceServerOptions::kEphemeralPort;
    options_.metrics_host = "127.0.0.1";
    options_.metrics_port = InferenceServerOptions::kEphemeralPort;
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(1));
  }

  void Start() {
    auto server = InferenceServer::Start(options_, store_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_TRUE(server_->manager().WaitUntilReady(absl::Seconds(10)));
    client_ =
        std::make_unique<httplib::Client>("127.0.0.1", server_->http_port());
    client_->set_read_timeout(20, 0);  // a hang guard
  }

  // Status and parsed JSON body (null if the body is not JSON).
  std::pair<int, Json> Get(const std::string& path,
                           const httplib::Headers& headers = {}) {
    auto res = client_->Get(path.c_str(), headers);
    if (!res) return {-1, nullptr};
    return {res->status, Json::parse(res->body, nullptr, false)};
  }
  std::pair<int, Json> Post(const std::string& path, const std::string& body,
                            const httplib::Headers& headers = {}) {
    auto res = client_->Post(path.c_str(), headers, body, "application/json");
    if (!res) return {-1, nullptr};
    return {res->status, Json::parse(res->body, nullptr, false)};
  }

  static std::string InferBody(const std::vector<float>& x, int64_t rows,
                               int64_t f, const std::string& name = "input") {
    Json body = {{"id", "r1"},
                 {"inputs",
                  {{{"name", name},
                    {"datatype", "FP32"},
                    {"shape", {rows, f}},
                    {"data", x}}}}};
    return body.dump();
  }

  std::unique_ptr<store::MemoryStore> publisher_;
  std::shared_ptr<store::MemoryStore> store_;
  InferenceServerOptions options_;
  std::unique_ptr<InferenceServer> server_;
  std::unique_ptr<httplib::Client> client_;
  std::string clf_;
};

TEST_F(KServeHttpTest, HealthMetadataAndReadinessPerVersion) {
  Start();
  EXPECT_EQ(Get("/v2/health/live").first, 200);
  auto [code, ready] = Get("/v2/health/ready");
  EXPECT_EQ(code, 200);
  EXPECT_EQ(ready["ready"], true);
  auto [mc, server_md] = Get("/v2");
  EXPECT_EQ(mc, 200);
  EXPECT_EQ(server_md["name"], "bnserve");

  auto [c1, md] = Get("/v2/models/" + clf_);
  ASSERT_EQ(c1, 200);
  EXPECT_EQ(md["platform"], "bnserve_snapshot");
  EXPECT_EQ(md["versions"], Json({"1", "2"}));
  EXPECT_EQ(md["inputs"][0]["name"], "input");
  EXPECT_EQ(md["inputs"][0]["shape"], Json({-1, 4}));
  EXPECT_EQ(md["outputs"].size(), 3u);

  EXPECT_EQ(Get("/v2/models/" + clf_ + "/versions/1").first, 200);
  EXPECT_EQ(Get("/v2/models/" + clf_ + "/versions/stable").first, 200);
  EXPECT_EQ(Get("/v2/models/" + clf_ + "/ready").first, 200);
  EXPECT_EQ(Get("/v2/models/" + clf_ + "/versions/2/ready").first, 200);
  auto [c3, not_ready] = Get("/v2/models/" + clf_ + "/versions/7/ready");
  EXPECT_EQ(c3, 503);
  EXPECT_EQ(not_ready["ready"], false);
  EXPECT_EQ(Get("/v2/models/nope/ready").first, 503);
}

TEST_F(KServeHttpTest, InferAnswersWhatGrpcAnswers) {
  Start();
  const std::vector<float> x = RandomFeatures(8, 3);
  auto [code, rest] = Post("/v2/models/" + clf_ + "/infer", InferBody(x, 2, 4));
  ASSERT_EQ(code, 200) << rest.dump();
  EXPECT_EQ(rest["model_name"], clf_);
  EXPECT_EQ(rest["model_version"], "2");
  EXPECT_EQ(rest["id"], "r1");

  auto stub =
      kserve::GRPCInferenceService::NewStub(server_->InProcessChannel());
  kserve::ModelInferRequest req;
  req.set_model_name(clf_);
  auto* in = req.add_inputs();
  in->set_name("input");
  in->set_datatype("FP32");
  in->add_shape(2);
  in->add_shape(4);
  in->mutable_contents()->mutable_fp32_contents()->Add(x.begin(), x.end());
  kserve::ModelInferResponse grpc_answer;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->ModelInfer(&ctx, req, &grpc_answer).ok());

  ASSERT_EQ(rest["outputs"].size(),
            static_cast<size_t>(grpc_answer.outputs_size()));
  for (int i = 0; i < grpc_answer.outputs_size(); ++i) {
    const auto& g = grpc_answer.outputs(i);
    const Json& r = rest["outputs"][i];
    EXPECT_EQ(r["name"], g.name());
    EXPECT_EQ(r["datatype"], g.datatype());
    EXPECT_EQ(r["shape"],
              Json(std::vector<int64_t>(g.shape().begin(), g.shape().end())));
    if (g.datatype() == "INT64") {
      EXPECT_EQ(r["data"], Json(std::vector<int64_t>(
                               g.contents().int64_contents().begin(),
                               g.contents().int64_contents().end())));
    } else {
      // Shortest round-trip floats: the same float32 values, bit for bit.
      ASSERT_EQ(r["data"].size(),
                static_cast<size_t>(g.contents().fp32_contents_size()));
      for (int k = 0; k < g.contents().fp32_contents_size(); ++k) {
        EXPECT_EQ(static_cast<float>(r["data"][k].get<double>()),
                  g.contents().fp32_contents(k));
      }
    }
  }

  // Nested data, a label, and one requested output.
  Json nested = {
      {"inputs",
       {{{"name", "input"},
         {"datatype", "FP32"},
         {"shape", {2, 4}},
         {"data", {{x[0], x[1], x[2], x[3]}, {x[4], x[5], x[6], x[7]}}}}}},
      {"outputs", {{{"name", "class_id"}}}}};
  auto [c2, by_label] =
      Post("/v2/models/" + clf_ + "/versions/stable/infer", nested.dump());
  ASSERT_EQ(c2, 200) << by_label.dump();
  EXPECT_EQ(by_label["model_version"], "1");
  ASSERT_EQ(by_label["outputs"].size(), 1u);
  EXPECT_EQ(by_label["outputs"][0]["name"], "class_id");
  EXPECT_EQ(by_label["outputs"][0]["shape"], Json({2}));
}

TEST_F(KServeHttpTest, ErrorsAreJsonWithTheMappedStatus) {
  options_.max_message_mb = 1;
  Start();
  const std::string infer = "/v2/models/" + clf_ + "/infer";
  const std::vector<float> x = RandomFeatures(4, 1);
  auto expect = [&](std::pair<int, Json> got, int status,
                    const std::string& needle) {
    EXPECT_EQ(got.first, status) << got.second.dump();
    ASSERT_TRUE(got.second.is_object()) << needle;
    EXPECT_THAT(got.second.value("error", ""), HasSubstr(needle));
  };
  expect(Post("/v2/models/nope/infer", InferBody(x, 1, 4)), 404, "nope");
  expect(Post("/v2/models/" + clf_ + "/versions/9/infer", InferBody(x, 1, 4)),
         404, "9");
  expect(
      Post("/v2/models/" + clf_ + "/versions/canary/infer", InferBody(x, 1, 4)),
      404, "canary");
  expect(Post("/v2/models/" + clf_ + "/versions/1x/infer", InferBody(x, 1, 4)),
         400, "1x");
  expect(Post(infer, InferBody(x, 1, 4, "pixels")), 400, "'pixels'");
  expect(Post(infer, InferBody(x, 1, 4, "pixels")), 400, "'input'");
  expect(Post(infer, InferBody(x, 1, 3)), 400, "shape");
  expect(Post(infer,
              "{\"inputs\": [{\"name\": \"input\", \"shape\": [1, 4], "
              "\"datatype\": \"FP32\", \"data\": [1, 2, \"x\", 4]}]}"),
         400, "inputs[0].data[2]");
  expect(Post(infer,
              "{\"inputs\": [{\"name\": \"input\", \"shape\": [1, 4], "
              "\"datatype\": \"FP32\", \"data\": [1, 2, 1e39, 4]}]}"),
         400, "FP32 range");
  expect(Post(infer,
              "{\"inputs\": [{\"name\": \"input\", \"shape\": "
              "[4611686018427387904, 4], \"datatype\": \"FP32\", "
              "\"data\": [1, 2, 3, 4]}]}"),
         413, "rows");
  expect(Post(infer, "{\"parameters\": {\"a\": " + std::string(10000, '[')),
         400, "nested deeper");
  expect(Post(infer, "{\"inputs\": [{\"data\": " + std::string(100, '[')), 400,
         "nested deeper");
  expect(Post(infer, "{\"inputs\": [1, 2"), 400, "inputs[0]");
  expect(Post(infer, "not json"), 400, "not valid JSON");
  // A NUL byte would end the input for the reader: refused, not ignored.
  expect(Post(infer, InferBody(x, 1, 4) + std::string(1, '\0') + "]"), 400,
         "NUL byte");
  expect(Post(infer, "{\"inputs\": [{\"data\": [1e400]}]}"), 400,
         "not valid JSON");
  expect(Post(infer, "{\"input\": []}"), 400, "unknown key");
  expect(Post(infer, "[]"), 400, "JSON object");
  // A body larger than the largest message (1 MiB here) is 413 before it is
  // parsed.
  expect(Post(infer, "{\"id\": \"" + std::string(2 << 20, 'a') + "\"}"), 413,
         "larger than");
  expect(Get("/v2/models/" + clf_ + "/frobnicate"), 404, "frobnicate");
  expect(Get("/v1/models"), 404, "/v2");
  expect(Get(infer), 400, "POST");
  // The server still answers.
  EXPECT_EQ(Post(infer, InferBody(x, 1, 4)).first, 200);
}

// Every number becomes the double nearest to its text (strtod), then FP32:
// the same values whatever the JSON reader, down to the last bit. (An
// integer is an integer first: "-0" is +0, as it was with nlohmann.)
TEST(KServeJsonTest, InferValuesAreStrtodRoundedToFloat) {
  const std::vector<std::string> numbers = {
      "0",
      "-0.0",
      "16",
      "0.1",
      "-2.5e-3",
      "0.30000001192092896",
      "3.4028234663852886e38",
      "1.401298464324817e-45",
      "1e-50",
      "123456789012345678901234567890",
      "9007199254740993",
      "0.1000000000000000055511151231257827021181583404541015625",
      "2.0000001192092896e0",
      "4.9406564584124654e-324",
      "1E5",
      "-7e+2"};
  const std::string body =
      absl::StrCat("{\"inputs\": [{\"name\": \"input\", \"datatype\": ",
                   "\"FP32\", \"shape\": [1, ", numbers.size(),
                   "], \"data\": [", absl::StrJoin(numbers, ", "), "]}]}");
  kserve::ModelInferRequest request;
  ASSERT_TRUE(ParseInferBody(body, &request).ok());
  const auto& got = request.inputs(0).contents().fp32_contents();
  ASSERT_EQ(got.size(), static_cast<int>(numbers.size()));
  for (size_t i = 0; i < numbers.size(); ++i) {
    const float want =
        static_cast<float>(std::strtod(numbers[i].c_str(), nullptr));
    EXPECT_EQ(std::memcmp(&got[static_cast<int>(i)], &want, sizeof(float)), 0)
        << numbers[i] << ": got " << got[static_cast<int>(i)] << ", want "
        << want;
  }
  EXPECT_EQ(request.inputs(0).shape(1), static_cast<int64_t>(numbers.size()));
}

TEST_F(KServeHttpTest, TritonExtensionsOverRest) {
  Start();
  auto [c1, config] = Get("/v2/models/" + clf_ + "/config");
  ASSERT_EQ(c1, 200) << config.dump();
  EXPECT_EQ(config["name"], clf_);
  EXPECT_EQ(config["platform"], "bnserve_snapshot");
  EXPECT_EQ(config["max_batch_size"], 65536);
  EXPECT_EQ(config["input"][0]["data_type"], "TYPE_FP32");
  EXPECT_EQ(config["input"][0]["dims"], Json({4}));

  const std::string infer = "/v2/models/" + clf_ + "/infer";
  ASSERT_EQ(Post(infer, InferBody(RandomFeatures(12, 5), 3, 4)).first, 200);
  ASSERT_EQ(Post(infer, InferBody(RandomFeatures(4, 5), 1, 5)).first, 400);
  auto [c2, stats] = Get("/v2/models/" + clf_ + "/versions/2/stats");
  ASSERT_EQ(c2, 200) << stats.dump();
  ASSERT_EQ(stats["model_stats"].size(), 1u);
  const Json& s = stats["model_stats"][0];
  EXPECT_EQ(s["version"], "2");
  EXPECT_EQ(s["inference_count"], 3);
  EXPECT_EQ(s["inference_stats"]["success"]["count"], 1);
  EXPECT_EQ(s["inference_stats"]["fail"]["count"], 1);
  auto [c3, all] = Get("/v2/models/stats");
  ASSERT_EQ(c3, 200);
  EXPECT_EQ(all["model_stats"].size(), 2u);

  auto [c4, index] = Post("/v2/repository/index", "");
  ASSERT_EQ(c4, 200) << index.dump();
  ASSERT_EQ(index.size(), 2u);
  EXPECT_EQ(index[0]["name"], clf_);
  EXPECT_EQ(index[0]["version"], "1");
  EXPECT_EQ(index[0]["state"], "READY");
  EXPECT_EQ(Post("/v2/repository/index", "{\"ready\": true}").first, 200);
  EXPECT_EQ(Post("/v2/repository/index", "{\"ready\": 3}").first, 400);
}

TEST_F(KServeHttpTest, TheTokenIsRequiredExceptForHealth) {
  const std::string token_file =
      ::testing::TempDir() + UniqueName("token") + ".txt";
  std::ofstream(token_file) << "t0ken\n";
  options_.token_file = token_file;
  Start();
  const httplib::Headers good = {{"Authorization", "Bearer t0ken"}};
  const httplib::Headers bad = {{"Authorization", "Bearer nope"}};
  EXPECT_EQ(Get("/v2/health/live").first, 200);
  EXPECT_EQ(Get("/v2/health/ready").first, 200);
  auto [c1, err] = Get("/v2");
  EXPECT_EQ(c1, 401);
  EXPECT_THAT(err.value("error", ""), HasSubstr("Bearer"));
  EXPECT_EQ(Get("/v2", bad).first, 401);
  EXPECT_EQ(Get("/v2", good).first, 200);
  const std::string body = InferBody(RandomFeatures(4, 1), 1, 4);
  EXPECT_EQ(Post("/v2/models/" + clf_ + "/infer", body).first, 401);
  EXPECT_EQ(Post("/v2/models/" + clf_ + "/infer", body, good).first, 200);
  EXPECT_EQ(Post("/v2/repository/index", "").first, 401);

  // /metrics needs the token too (Prometheus: authorization.credentials_file).
  httplib::Client metrics("127.0.0.1", server_->metrics_port());
  auto res = metrics.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  res = metrics.Get("/metrics", good);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->body, HasSubstr("method=\"rest.ModelInfer\""));
  std::remove(token_file.c_str());
}

// A client that sends half a request and stalls is disconnected after the
// I/O timeout, and the server keeps answering others meanwhile.
TEST_F(KServeHttpTest, ASlowClientIsDisconnected) {
  options_.http_io_timeout = absl::Seconds(1);
  Start();
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server_->http_port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval guard{30, 0};  // a hang guard, not a timing assertion
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &guard, sizeof(guard));
  const std::string partial =
      "POST /v2/models/" + clf_ +
      "/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inputs\"";
  ASSERT_EQ(send(fd, partial.data(), partial.size(), 0),
            static_cast<ssize_t>(partial.size()));
  EXPECT_EQ(Get("/v2/health/live").first, 200);
  char buf[512];
  ssize_t n;
  std::string got;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) got.append(buf, n);
  EXPECT_EQ(n, 0) << "the server did not close the connection";
  close(fd);
}

}  // namespace
}  // namespace bnserve::inference
