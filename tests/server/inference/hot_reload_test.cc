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
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
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

// The publisher's side: every version published, with the outputs the
// model library computes for `x`, recorded before Publish returns the
// version to anyone else. Thread-safe.
class Published {
 public:
  Published(const std::string& store_name, std::string model,
            std::vector<float> x)
      : publisher_(store::MemoryStore::Open(store_name)),
        model_(std::move(model)),
        x_(std::move(x)) {}

  int64_t Publish(uint64_t seed) {
    v1::Snapshot s = MakeSnapshot(model_, seed);
    absl::MutexLock lock(&mu_);
    const int64_t v = *publisher_->Publish(s);
    expected_[v] = ReferenceOutputs(s, x_);
    return v;
  }
  // A version the server must refuse (a NaN weight): it gets a number but
  // no expected outputs.
  bool PublishInvalid() {
    v1::Snapshot bad = MakeSnapshot(model_, 999);
    bad.mutable_layers(0)->mutable_dense()->set_weight(0, NAN);
    absl::MutexLock lock(&mu_);
    return publisher_->Publish(bad).ok();
  }
  // Empty for a version never published valid.
  std::vector<float> Expected(int64_t version) {
    absl::MutexLock lock(&mu_);
    auto it = expected_.find(version);
    return it == expected_.end() ? std::vector<float>() : it->second;
  }

 private:
  std::shared_ptr<store::SnapshotStore> publisher_;
  const std::string model_;
  const std::vector<float> x_;
  absl::Mutex mu_;
  std::map<int64_t, std::vector<float>> expected_ ABSL_GUARDED_BY(mu_);
};

// kClients threads calling Predict(x) back to back until Stop, each
// checking its answers against Published and that it only moves forward.
class Clients {
 public:
  static constexpr int kClients = 4;

  Clients(std::shared_ptr<grpc::Channel> channel, const std::string& model,
          const std::vector<float>& x, Published* published)
      : latest_(kClients), seen_(kClients) {
    for (int t = 0; t < kClients; ++t) {
      threads_.emplace_back(
          [=, this] { Run(t, channel, model, x, published); });
    }
  }
  ~Clients() { Stop(); }
  void Stop() {
    stop_ = true;
    for (auto& c : threads_) {
      if (c.joinable()) c.join();
    }
  }

  // The version of client t's latest answer (0 before the first).
  int64_t latest(int t) const { return latest_[t].load(); }
  // Valid once stopped: the versions that answered client t.
  const std::set<int64_t>& seen(int t) const { return seen_[t]; }
  std::atomic<int64_t> ok{0}, failed{0}, wrong{0}, backwards{0};

 private:
  void Run(int t, const std::shared_ptr<grpc::Channel>& channel,
           const std::string& model, const std::vector<float>& x,
           Published* published) {
    auto stub = v1::Inference::NewStub(channel);
    v1::PredictRequest req;
    req.set_model(model);
    req.mutable_features()->Add(x.begin(), x.end());
    int64_t last = 0;
    while (!stop_.load()) {
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
      seen_[t].insert(resp.version());
      if (resp.version() < last) ++backwards;
      last = resp.version();
      latest_[t] = last;
      if (!SameOutputs(published->Expected(resp.version()), resp)) ++wrong;
    }
  }
  static bool SameOutputs(const std::vector<float>& want,
                          const v1::PredictResponse& resp) {
    bool same = want.size() == static_cast<size_t>(resp.outputs_size());
    for (size_t j = 0; same && j < want.size(); ++j) {
      same = std::abs(want[j] - resp.outputs(j)) <=
             1e-5f * std::max(1.0f, std::abs(want[j]));
    }
    return same;
  }

  std::atomic<bool> stop_{false};
  std::vector<std::atomic<int64_t>> latest_;
  std::vector<std::set<int64_t>> seen_;  // seen_[t]: client t's thread only
  std::vector<std::thread> threads_;
};

// Waits until `done` holds; the deadline only guards against a hang.
bool WaitFor(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!done() && absl::Now() < deadline) {
    absl::SleepFor(absl::Microseconds(200));
  }
  return done();
}

// Waits until the server serves version `v` of `model` and every client
// has received an answer from it.
void WaitServedToAll(InferenceServer& server, const std::string& model,
                     const Clients& clients, int64_t v) {
  auto newest = [&] {
    auto s = server.manager().Get(model);
    return s.ok() ? (*s)->version() : 0;
  };
  EXPECT_TRUE(WaitFor([&] { return newest() >= v; }))
      << "version " << v << " did not go live";
  for (int t = 0; t < Clients::kClients; ++t) {
    EXPECT_TRUE(WaitFor([&] {
      return clients.latest(t) >= v || clients.failed.load() > 0;
    })) << "client "
        << t << " never answered from version " << v;
  }
}

TEST(HotReloadTest, NoRequestFailsWhileVersionsArePublished) {
  const std::string store_name = UniqueName("hot");
  const std::string model = UniqueName("hot");
  const std::vector<float> x = RandomFeatures(4, 42);
  Published published(store_name, model, x);
  published.Publish(1);

  InferenceServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.metrics_port = 0;
  options.manager.versions_to_keep = 2;
  auto server =
      InferenceServer::Start(options, store::MemoryStore::Open(store_name));
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->manager().WaitUntilReady(absl::Seconds(10)));
  Clients clients(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                          grpc::InsecureChannelCredentials()),
      model, x, &published);

  WaitServedToAll(**server, model, clients, 1);
  std::vector<int64_t> valid = {1};
  for (int i = 0; i < 30; ++i) {
    absl::SleepFor(absl::Milliseconds(15));
    if (i == 10) {
      // An invalid version in the middle is refused; serving goes on.
      ASSERT_TRUE(published.PublishInvalid());
      continue;
    }
    valid.push_back(published.Publish(100 + i));
    WaitServedToAll(**server, model, clients, valid.back());
  }
  auto newest = (*server)->manager().Get(model);
  ASSERT_TRUE(newest.ok()) << newest.status();
  EXPECT_EQ((*newest)->version(), valid.back());
  clients.Stop();

  EXPECT_EQ(clients.failed.load(), 0);
  EXPECT_EQ(clients.wrong.load(), 0)
      << "answers that differ from their version";
  EXPECT_EQ(clients.backwards.load(), 0);
  // Every client was answered by every valid version (it moves forward only,
  // and each version was live until the client had been answered by it), so
  // each one reloaded 29 times under its own requests, and never saw the
  // invalid version 12.
  const std::set<int64_t> want(valid.begin(), valid.end());
  ASSERT_EQ(want.size(), 30u);
  std::set<int64_t> all;
  for (int t = 0; t < Clients::kClients; ++t) {
    EXPECT_EQ(clients.seen(t), want) << "client " << t;
    all.insert(clients.seen(t).begin(), clients.seen(t).end());
  }
  EXPECT_EQ(all.count(12), 0u) << "the invalid version was served";
  std::printf("%lld requests, %zu distinct versions answered\n",
              static_cast<long long>(clients.ok.load()), all.size());
  (*server)->Shutdown(absl::Seconds(2));
}

}  // namespace
}  // namespace bnserve::inference
