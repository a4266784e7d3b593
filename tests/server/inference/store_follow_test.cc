// The servable manager follows the real store backends through their change
// notifications (inotify for the file store, pub-sub for Redis). The server's
// store polls only once an hour, so only a notification can get a new
// version served before the deadline, which is a hang guard. The worst
// publish -> served delay is printed, not asserted (it is measured by the
// benchmarks; on a loaded machine any bound would be flaky).
#include <algorithm>
#include <cstdio>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/inference/servable_manager.h"
#include "tests/server/inference/test_util.h"
#include "tests/store/test_util.h"

namespace bnserve::inference {
namespace {

using testing::MakeSnapshot;

// Publishes 10 versions through `publisher` and returns the worst delay until
// a manager reading `server_store` serves each one; fails the test if one is
// not served within 30 s.
absl::Duration WorstPublishToServed(
    store::SnapshotStore& publisher,
    std::shared_ptr<store::SnapshotStore> server_store) {
  const std::string model = testing::UniqueName("follow");
  EXPECT_TRUE(publisher.Publish(MakeSnapshot(model, 1)).ok());
  ServableManagerOptions options;
  options.retry_interval = absl::Milliseconds(50);
  ServableManager manager(std::move(server_store), options);
  EXPECT_TRUE(manager.Start().ok());
  EXPECT_TRUE(manager.WaitUntilReady(absl::Seconds(30)));
  absl::Duration worst;
  for (int i = 0; i < 10; ++i) {
    auto v = publisher.Publish(MakeSnapshot(model, 10 + i));
    const absl::Time published = absl::Now();
    EXPECT_TRUE(v.ok()) << v.status();
    if (!v.ok()) break;
    const absl::Time deadline = published + absl::Seconds(30);
    bool served = false;
    while (!served && absl::Now() < deadline) {
      auto s = manager.Get(model);
      served = s.ok() && (*s)->version() == *v;
      if (!served) absl::SleepFor(absl::Microseconds(200));
    }
    EXPECT_TRUE(served) << "version " << *v << " not served after 30 s";
    worst = std::max(worst, absl::Now() - published);
    absl::SleepFor(absl::Milliseconds(20));
  }
  manager.Stop();
  return worst;
}

// Only notifications get a version served within the test's deadlines.
constexpr store::StoreOptions kPushOnly{.poll_interval = absl::Hours(1)};

TEST(StoreFollowTest, FileStoreNewVersionIsServedThroughInotify) {
  store::testing::TempDir dir;
  auto publisher = store::OpenStore(dir.path());
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  auto server_store = store::OpenStore("file://" + dir.path(), kPushOnly);
  ASSERT_TRUE(server_store.ok()) << server_store.status();
  const absl::Duration worst =
      WorstPublishToServed(**publisher, std::move(server_store).value());
  std::printf("file store: worst publish -> served %s\n",
              absl::FormatDuration(worst).c_str());
}

TEST(StoreFollowTest, RedisStoreNewVersionIsServedThroughPubSub) {
  auto redis = store::testing::RedisServer::Start();
  // redis-server is a test dependency (scripts/install-deps.sh), as in the
  // store tests: not starting is a failure, never a skip.
  ASSERT_TRUE(redis.ok()) << "cannot start redis-server: " << redis.status();
  auto publisher = store::OpenStore((*redis)->uri());
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  auto server_store = store::OpenStore((*redis)->uri(), kPushOnly);
  ASSERT_TRUE(server_store.ok()) << server_store.status();
  const absl::Duration worst =
      WorstPublishToServed(**publisher, std::move(server_store).value());
  std::printf("redis store: worst publish -> served %s\n",
              absl::FormatDuration(worst).c_str());
}

}  // namespace
}  // namespace bnserve::inference
