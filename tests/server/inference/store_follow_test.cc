// The servable manager follows the real store backends through their change
// notifications (inotify for the file store, pub-sub for Redis): a new
// version is served within 100 ms of Publish returning.
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
// a manager reading `server_store` serves each one.
absl::Duration WorstPublishToServed(
    store::SnapshotStore& publisher,
    std::shared_ptr<store::SnapshotStore> server_store) {
  const std::string model = testing::UniqueName("follow");
  EXPECT_TRUE(publisher.Publish(MakeSnapshot(model, 1)).ok());
  ServableManagerOptions options;
  options.retry_interval = absl::Milliseconds(50);
  ServableManager manager(std::move(server_store), options);
  EXPECT_TRUE(manager.Start().ok());
  EXPECT_TRUE(manager.WaitUntilReady(absl::Seconds(10)));
  absl::Duration worst;
  for (int i = 0; i < 10; ++i) {
    auto v = publisher.Publish(MakeSnapshot(model, 10 + i));
    const absl::Time published = absl::Now();
    EXPECT_TRUE(v.ok()) << v.status();
    if (!v.ok()) break;
    const absl::Time deadline = published + absl::Seconds(5);
    while (absl::Now() < deadline) {
      auto s = manager.Get(model);
      if (s.ok() && (*s)->version() == *v) break;
      absl::SleepFor(absl::Microseconds(200));
    }
    worst = std::max(worst, absl::Now() - published);
    absl::SleepFor(absl::Milliseconds(20));
  }
  manager.Stop();
  return worst;
}

TEST(StoreFollowTest, FileStoreNewVersionServedWithin100ms) {
  store::testing::TempDir dir;
  auto publisher = store::OpenStore(dir.path());
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  auto server_store = store::OpenStore("file://" + dir.path());
  ASSERT_TRUE(server_store.ok()) << server_store.status();
  const absl::Duration worst =
      WorstPublishToServed(**publisher, std::move(server_store).value());
  std::printf("file store: worst publish -> served %s\n",
              absl::FormatDuration(worst).c_str());
  EXPECT_LT(worst, absl::Milliseconds(100));
}

TEST(StoreFollowTest, RedisStoreNewVersionServedWithin100ms) {
  auto redis = store::testing::RedisServer::Start();
  if (!redis.ok()) GTEST_SKIP() << "no redis-server: " << redis.status();
  auto publisher = store::OpenStore((*redis)->uri());
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  auto server_store = store::OpenStore((*redis)->uri());
  ASSERT_TRUE(server_store.ok()) << server_store.status();
  const absl::Duration worst =
      WorstPublishToServed(**publisher, std::move(server_store).value());
  std::printf("redis store: worst publish -> served %s\n",
              absl::FormatDuration(worst).c_str());
  EXPECT_LT(worst, absl::Milliseconds(100));
}

}  // namespace
}  // namespace bnserve::inference
