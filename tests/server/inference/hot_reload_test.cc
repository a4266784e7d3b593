// Hot reload under load: client threads call Predict continuously while new
// versions (and one invalid one) are published. No request may fail, every
// answer must come from a version that was published and must equal that
// version's model-library output, and each client must only ever move
// forward to newer versions. Each valid version is published only after the
// previous one went live and every client got an answer from it: the test
// waits for events (deadlines are hang guards), so a loaded machine makes it
// slower, never red. How fast a version goes live is measured by the
// benchmarks, not asserted here.
#include <grpcpp/create_channel.h>

#include <atomic>
#include <functional>
#include <map>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/inference/inference_server.h"
#include "store/memory_store.h"
#include "tests/server/inference/test_util.h"

namespace bnserve::inference {
namespace {

using testing::MakeSnapshot;
using testing::RandomFeatures;
using testing::ReferenceOutputs;
using testing::UniqueName;

TEST(HotReloadTest, NoRequestFailsWhileVersionsArePublished) {
  const std::string store_name = UniqueName("hot");
  const std::string model = UniqueName("hot");
  auto publisher = store::MemoryStore::Open(store_name);
  std::shared_ptr<store::SnapshotStore> server_store =
      store::MemoryStore::Open(store_name);
  const std::vector<float> x = RandomFeatures(4, 42);

  // Expected outputs per published version, filled before Publish returns
  // the version to anyone else.
  absl::Mutex mu;
  std::map<int64_t, std::vector<float>> expected;  // guarded by mu
  auto publish = [&](uint64_t seed) {
    v1::Snapshot s = MakeSnapshot(model, seed);
    absl::MutexLock lock(&mu);
    const int64_t v = *publisher->Publish(s);
    expected[v] = ReferenceOutputs(s, x);
    return v;
  };
  publish(1);

  InferenceServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.metrics_port = 0;
  options.manager.versions_to_keep = 2;
  auto server = InferenceServer::Start(options, server_store);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->manager().WaitUntilReady(absl::Seconds(10)));
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                          grpc::InsecureChannelCredentials());

  constexpr int kClients = 4;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> ok{0}, failed{0}, wrong{0}, backwards{0};
  // Per client: the version of its latest answer.
  std::vector<std::atomic<int64_t>> latest(kClients);
  std::vector<std::thread> clients;
  std::vector<std::set<int64_t>> seen(kClients);
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&, t] {
      auto stub = v1::Inference::NewStub(channel);
      v1::PredictRequest req;
      req.set_model(model);
      req.mutable_features()->Add(x.begin(), x.end());
      int64_t last = 0;
      while (!stop.load()) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
        v1::PredictResponse resp;
        grpc::Status st = stub->Predict(&ctx, req, &resp);
        if (!st.ok()) {
          ++failed;
          ADD_FAILURE() << st.error_code() << " " << st.error_message();
          continue;
        }
        ++ok;
        seen[t].insert(resp.version());
        if (resp.version() < last) ++backwards;
        last = resp.version();
        latest[t] = last;
        std::vector<float> want;
        {
          absl::MutexLock lock(&mu);
          auto it = expected.find(resp.version());
          if (it != expected.end()) want = it->second;
        }
        bool same = want.size() == static_cast<size_t>(resp.outputs_size());
        for (size_t j = 0; same && j < want.size(); ++j) {
          same = std::abs(want[j] - resp.outputs(j)) <=
                 1e-5f * std::max(1.0f, std::abs(want[j]));
        }
        if (!same) ++wrong;
      }
    });
  }

  auto newest = [&] {
    auto s = (*server)->manager().Get(model);
    return s.ok() ? (*s)->version() : 0;
  };
  // Waits until `done` holds; the deadline only guards against a hang.
  auto wait_for = [](const std::function<bool()>& done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!done() && absl::Now() < deadline) {
      absl::SleepFor(absl::Microseconds(200));
    }
    return done();
  };
  // Waits until version `v` is served and every client has received it.
  auto wait_served_to_all = [&](int64_t v) {
    EXPECT_TRUE(wait_for([&] { return newest() >= v; }))
        << "version " << v << " did not go live";
    for (int t = 0; t < kClients; ++t) {
      EXPECT_TRUE(wait_for([&] { return latest[t].load() >= v || failed; }))
          << "client " << t << " never answered from version " << v;
    }
  };

  wait_served_to_all(1);
  std::vector<int64_t> valid = {1};
  for (int i = 0; i < 30; ++i) {
    absl::SleepFor(absl::Milliseconds(15));
    if (i == 10) {
      // An invalid version in the middle is refused; serving goes on.
      v1::Snapshot bad = MakeSnapshot(model, 999);
      bad.mutable_layers(0)->mutable_dense()->set_weight(0, NAN);
      absl::MutexLock lock(&mu);
      ASSERT_TRUE(publisher->Publish(bad).ok());
      continue;
    }
    const int64_t v = publish(100 + i);
    valid.push_back(v);
    wait_served_to_all(v);
  }
  const int64_t last_version = valid.back();
  EXPECT_EQ(newest(), last_version);
  stop = true;
  for (auto& c : clients) c.join();

  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0) << "answers that differ from their version";
  EXPECT_EQ(backwards.load(), 0);
  // Every client was answered by every valid version (it moves forward only,
  // and each version was live until the client had been answered by it), so
  // each one reloaded 29 times under its own requests, and never saw the
  // invalid version 12.
  const std::set<int64_t> want(valid.begin(), valid.end());
  ASSERT_EQ(want.size(), 30u);
  for (int t = 0; t < kClients; ++t) {
    EXPECT_EQ(seen[t], want) << "client " << t;
  }
  std::set<int64_t> all;
  for (const auto& s : seen) all.insert(s.begin(), s.end());
  EXPECT_EQ(all.count(12), 0u) << "the invalid version was served";
  std::printf("%lld requests, %zu distinct versions answered\n",
              static_cast<long long>(ok.load()), all.size());
  (*server)->Shutdown(absl::Seconds(2));
}

}  // namespace
}  // namespace bnserve::inference
