// RedisStore on a master with 2 replicas under 3 Sentinels (real
// redis-server and redis-sentinel processes on free loopback ports, started
// and stopped by the test; it fails, never skips, if they cannot start).
// The master is killed with SIGKILL repeatedly while a publisher runs: every
// acknowledged version must survive, the client must follow the new master,
// and the watcher must be pushed versions published after each failover.
#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/redis_store.h"
#include "store/store.h"
#include "tests/store/test_util.h"

namespace bnserve::store {
namespace {

using ::bnserve::store::testing::EventCollector;
using ::bnserve::store::testing::MakeSnapshot;
using ::bnserve::store::testing::RedisSentinelSet;

class RedisSentinelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto set = RedisSentinelSet::Start(/*replicas=*/2, /*sentinels=*/3);
    ASSERT_TRUE(set.ok()) << "cannot start the Sentinel set: " << set.status();
    set_ = *std::move(set);
  }

  std::unique_ptr<SnapshotStore> Open(StoreOptions options = {}) {
    auto store = OpenStore(set_->uri(), options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  std::unique_ptr<RedisSentinelSet> set_;
};

// Every replica by default; BNSERVE_TEST_MIN_REPLICAS=1 shows what waiting
// for fewer risks.
int MinReplicasFromEnv() {
  const char* env = getenv("BNSERVE_TEST_MIN_REPLICAS");
  return env == nullptr ? 2 : atoi(env);
}

// The publisher's record: version -> the tag it published under it.
struct Acked {
  absl::Mutex mu;
  std::map<int64_t, int64_t> tags ABSL_GUARDED_BY(mu);
  absl::Time last_ok ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  int failures ABSL_GUARDED_BY(mu) = 0;
};

TEST_F(RedisSentinelTest, KillingTheMasterLosesNoAcknowledgedVersion) {
  constexpr int kKills = 5;
  const int kMinReplicas = MinReplicasFromEnv();
  StoreOptions options;
  options.redis_min_replicas = kMinReplicas;
  auto store = Open(options);
  StoreOptions push_only;
  push_only.poll_interval = absl::Hours(1);  // only pub/sub can deliver
  EventCollector events;
  auto watch = Open(push_only)->Watch(events.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();

  Acked acked;
  std::atomic<bool> stop{false};
  std::thread publisher;
  auto join = absl::MakeCleanup([&] {
    stop = true;
    if (publisher.joinable()) publisher.join();
  });
  publisher = std::thread([&] {
    for (int64_t tag = 1; !stop; ++tag) {  // a trainer publishing every ~100 ms
      auto v = store->Publish(MakeSnapshot("m", 64, tag));
      {
        absl::MutexLock lock(&acked.mu);
        if (v.ok()) {
          acked.tags[*v] = tag;
          acked.last_ok = absl::Now();
        } else {
          ++acked.failures;
          EXPECT_TRUE(absl::IsUnavailable(v.status())) << v.status();
        }
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
  });
  auto acked_count = [&] {
    absl::MutexLock lock(&acked.mu);
    return acked.tags.size();
  };
  auto wait_for_acks = [&](size_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (acked_count() < n && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    return acked_count() >= n;
  };

  std::vector<absl::Duration> resumed_after, failover_done;
  for (int kill = 0; kill < kKills; ++kill) {
    ASSERT_TRUE(wait_for_acks(acked_count() + 3)) << "publishing stalled";
    const absl::Time killed_at = absl::Now();
    auto master = set_->KillMasterAndWaitForFailover(absl::Seconds(60));
    ASSERT_TRUE(master.ok()) << master.status();
    failover_done.push_back(absl::Now() - killed_at);
    // Publishing resumes on the new master (hang guard: 30 s).
    absl::Time first_ok;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (true) {
      {
        absl::MutexLock lock(&acked.mu);
        first_ok = acked.last_ok;
      }
      if (first_ok > killed_at || absl::Now() > deadline) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    ASSERT_GT(first_ok, killed_at)
        << "no publish succeeded after kill " << kill;
    resumed_after.push_back(first_ok - killed_at);
    // The watcher re-subscribed on the new master: a version published
    // after this point is pushed to it (polling is off).
    ASSERT_TRUE(wait_for_acks(acked_count() + 2));
    int64_t newest;
    {
      absl::MutexLock lock(&acked.mu);
      newest = acked.tags.rbegin()->first;
    }
    EXPECT_TRUE(events.WaitForPublished("m", newest))
        << "version " << newest << " was not pushed after kill " << kill;
  }
  std::move(join).Invoke();

  absl::MutexLock lock(&acked.mu);
  auto listed = store->ListVersions("m");
  ASSERT_TRUE(listed.ok()) << listed.status();
  for (const auto& [version, tag] : acked.tags) {
    EXPECT_TRUE(std::binary_search(listed->begin(), listed->end(), version))
        << "acknowledged version " << version << " was lost";
    auto snapshot = store->Read("m", version);
    ASSERT_TRUE(snapshot.ok()) << version << ": " << snapshot.status();
    EXPECT_EQ(snapshot->training().step(), tag)
        << "version " << version << " holds another snapshot";
  }
  std::cout << kKills << " master kills: " << acked.tags.size()
            << " versions acknowledged, all listed and verified; "
            << acked.failures << " publishes refused (UNAVAILABLE); "
            << "publishing resumed after";
  for (size_t i = 0; i < resumed_after.size(); ++i) {
    std::cout << " " << absl::FormatDuration(resumed_after[i])
              << " (new master up and old one re-attached as a replica after "
              << absl::FormatDuration(failover_done[i]) << ")";
  }
  std::cout << "\n";
  if (HasFailure()) std::cout << set_->SentinelEvents();
}

TEST_F(RedisSentinelTest, TooFewReplicasIsUnavailableNotAcknowledged) {
  StoreOptions options;
  options.redis_min_replicas = 3;  // there are 2
  options.redis_wait_timeout = absl::Milliseconds(200);
  auto store = Open(options);
  auto v = store->Publish(MakeSnapshot("m"));
  EXPECT_TRUE(absl::IsUnavailable(v.status())) << v.status();
  EXPECT_THAT(std::string(v.status().message()),
              ::testing::HasSubstr("reached 2 of the 3 replicas"));
  options.redis_min_replicas = 2;
  auto enough = Open(options)->Publish(MakeSnapshot("m"));
  ASSERT_TRUE(enough.ok()) << enough.status();
}

TEST_F(RedisSentinelTest, UnknownMasterNameIsUnavailableAndNamesIt) {
  std::string uri = set_->uri();
  uri.replace(uri.find("/mymaster"), 9, "/nosuchmaster");
  auto store = OpenStore(uri);
  ASSERT_TRUE(store.ok()) << store.status();
  absl::Status status = (*store)->Latest("m").status();
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  EXPECT_THAT(std::string(status.message()),
              ::testing::HasSubstr("knows no master 'nosuchmaster'"));
}

TEST_F(RedisSentinelTest, ADeadSentinelIsSkipped) {
  // The first Sentinel of the list is a closed port.
  std::string uri = set_->uri();
  const size_t hosts = uri.find("://") + 3;
  uri.insert(hosts, "127.0.0.1:1,");
  auto store = OpenStore(uri, StoreOptions{});
  ASSERT_TRUE(store.ok()) << store.status();
  auto v = (*store)->Publish(MakeSnapshot("m"));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, 1);
}

}  // namespace
}  // namespace bnserve::store
