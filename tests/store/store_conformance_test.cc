// One suite, every guarantee of store/store.h, run against the file, mem and
// redis backends: one redis-server, a master with 2 replicas under 3
// Sentinels (redis-sentinel://, every write waiting for 1 replica), and a
// 3-master Redis Cluster (redis-cluster://). The Redis runs start their own
// processes (the Sentinel set and the Cluster once for the suite, flushed
// before each test); if they cannot, the test fails (it is never skipped).
#include <hiredis/hiredis.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "store/file_store.h"
#include "store/job_registry.h"
#include "store/memory_store.h"
#include "store/redis_store.h"
#include "store/store.h"
#include "tests/store/test_util.h"

namespace bnserve::store {
namespace {

using ::bnserve::store::testing::EventCollector;
using ::bnserve::store::testing::MakeSnapshot;
using ::bnserve::store::testing::RedisClusterSet;
using ::bnserve::store::testing::RedisSentinelSet;
using ::bnserve::store::testing::RedisServer;
using ::bnserve::store::testing::TempDir;
using ::bnserve::store::testing::UniqueName;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

enum class Corruption { kBitFlip, kTruncate };

class StoreConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void TearDownTestSuite() {
    sentinel_set_.reset();
    cluster_set_.reset();
  }

  void SetUp() override {
    const std::string& backend = GetParam();
    if (backend == "file") {
      dir_ = std::make_unique<TempDir>();
      // The store's root is a subdirectory, so that the test owns the
      // directory around it (see InvalidModelNamesAreRejectedEverywhere).
      uri_ = absl::StrCat("file://", dir_->path(), "/root");
    } else if (backend == "mem") {
      uri_ = absl::StrCat("mem://", UniqueName("conformance"));
    } else if (backend == "redis-sentinel") {
      if (sentinel_set_ == nullptr) {
        auto set = RedisSentinelSet::Start(/*replicas=*/2, /*sentinels=*/3);
        ASSERT_TRUE(set.ok()) << "cannot start Sentinel set: " << set.status();
        sentinel_set_ = *std::move(set);
      }
      ASSERT_TRUE(sentinel_set_->FlushAll().ok());
      uri_ = sentinel_set_->uri();
      options_.redis_min_replicas = 1;
    } else if (backend == "redis-cluster") {
      if (cluster_set_ == nullptr) {
        auto set = RedisClusterSet::Start(/*masters=*/3);
        ASSERT_TRUE(set.ok()) << "cannot start Redis Cluster: " << set.status();
        cluster_set_ = *std::move(set);
      }
      ASSERT_TRUE(cluster_set_->FlushAll().ok());
      uri_ = cluster_set_->uri();
    } else {
      auto server = RedisServer::Start();
      ASSERT_TRUE(server.ok())
          << "cannot start redis-server: " << server.status();
      redis_ = *std::move(server);
      uri_ = redis_->uri();
    }
    store_ = Open();
    ASSERT_NE(store_, nullptr);
  }

  std::unique_ptr<SnapshotStore> Open() { return Open(options_); }
  std::unique_ptr<SnapshotStore> Open(StoreOptions options) {
    options.redis_min_replicas = options_.redis_min_replicas;
    auto store = OpenStore(uri_, options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  int64_t MustPublish(const std::string& model, int64_t tag = 0) {
    auto v = store_->Publish(MakeSnapshot(model, 16, tag));
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : -1;
  }

  // A raw hiredis connection to the Redis node that holds `key` (the one
  // server, the Sentinel set's master or the Cluster slot's owner), or
  // nullptr after a test failure.
  redisContext* ConnectToNodeOf(const std::string& key) {
    const std::string& backend = GetParam();
    int port = 0;
    if (backend == "redis") {
      port = redis_->port();
    } else {
      auto found = backend == "redis-sentinel" ? sentinel_set_->MasterPort()
                                               : cluster_set_->PortForKey(key);
      EXPECT_TRUE(found.ok()) << found.status();
      if (!found.ok()) return nullptr;
      port = *found;
    }
    redisContext* c = redisConnect("127.0.0.1", port);
    EXPECT_TRUE(c != nullptr && c->err == 0);
    if (c != nullptr && c->err != 0) {
      redisFree(c);
      return nullptr;
    }
    return c;
  }

  // Damages the stored bytes of model/version behind the store's back.
  void Corrupt(const std::string& model, int64_t version, Corruption how) {
    const std::string& backend = GetParam();
    if (backend == "mem") {
      auto mem = MemoryStore::Open(uri_.substr(6));
      ASSERT_TRUE(mem->CorruptForTesting(model, version).ok());
      return;
    }
    std::string data;
    std::string path;
    redisContext* c = nullptr;
    std::string key = RedisStore::BlobKey(model, version);
    if (backend == "file") {
      path = absl::StrCat(dir_->path(), "/root/", model, "/", version,
                          "/snapshot.binpb");
      std::ifstream in(path, std::ios::binary);
      data.assign(std::istreambuf_iterator<char>(in), {});
    } else {
      c = ConnectToNodeOf(key);
      ASSERT_TRUE(c != nullptr);
      auto* r = static_cast<redisReply*>(
          redisCommand(c, "GET %b", key.data(), key.size()));
      ASSERT_EQ(r->type, REDIS_REPLY_STRING);
      data.assign(r->str, r->len);
      freeReplyObject(r);
    }
    ASSERT_GT(data.size(), 10u);
    if (how == Corruption::kBitFlip) {
      data[data.size() * 2 / 3] ^= 0x10;
    } else {
      data.resize(data.size() / 2);
    }
    if (backend == "file") {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out << data;
    } else {
      auto* r = static_cast<redisReply*>(redisCommand(
          c, "SET %b %b", key.data(), key.size(), data.data(), data.size()));
      freeReplyObject(r);
      redisFree(c);
    }
  }

  static std::unique_ptr<RedisSentinelSet> sentinel_set_;
  static std::unique_ptr<RedisClusterSet> cluster_set_;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<RedisServer> redis_;
  StoreOptions options_;
  std::string uri_;
  std::unique_ptr<SnapshotStore> store_;
};

std::unique_ptr<RedisSentinelSet> StoreConformanceTest::sentinel_set_;
std::unique_ptr<RedisClusterSet> StoreConformanceTest::cluster_set_;

TEST_P(StoreConformanceTest, PublishAssignsConsecutiveVersions) {
  EXPECT_EQ(MustPublish("m"), 1);
  EXPECT_EQ(MustPublish("m"), 2);
  EXPECT_EQ(MustPublish("m"), 3);
  EXPECT_EQ(MustPublish("other"), 1);
  EXPECT_EQ(*store_->Latest("m"), 3);
  EXPECT_THAT(*store_->ListVersions("m"), ElementsAre(1, 2, 3));
}

TEST_P(StoreConformanceTest, ReadReturnsWhatWasPublishedWithItsVersion) {
  bnserve::v1::Snapshot snapshot = MakeSnapshot("m", 64, 7);
  auto v = store_->Publish(snapshot);
  ASSERT_TRUE(v.ok()) << v.status();
  auto read = store_->Read("m", *v);
  ASSERT_TRUE(read.ok()) << read.status();
  snapshot.set_version(*v);
  EXPECT_TRUE(MessageDifferencer::Equals(*read, snapshot));
  // Another store object on the same URI sees it too.
  auto other = Open();
  auto again = other->Read("m", *v);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*again, snapshot));
}

TEST_P(StoreConformanceTest, VersionsAreNeverReusedAfterDeletion) {
  EXPECT_EQ(MustPublish("m"), 1);
  EXPECT_EQ(MustPublish("m"), 2);
  EXPECT_EQ(MustPublish("m"), 3);
  ASSERT_TRUE(store_->DeleteVersion("m", 3).ok());
  EXPECT_EQ(MustPublish("m"), 4);
  for (int64_t v : {1, 2, 4}) ASSERT_TRUE(store_->DeleteVersion("m", v).ok());
  EXPECT_THAT(*store_->ListVersions("m"), IsEmpty());
  // A new store object (a restarted process) must not reuse them either.
  auto reopened = Open();
  auto v = reopened->Publish(MakeSnapshot("m"));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, 5);
}

TEST_P(StoreConformanceTest, MissingThingsAreNotFound) {
  EXPECT_TRUE(absl::IsNotFound(store_->Read("m", 1).status()));
  EXPECT_TRUE(absl::IsNotFound(store_->Latest("m").status()));
  EXPECT_THAT(*store_->ListVersions("m"), IsEmpty());
  EXPECT_THAT(*store_->ListLabels("m"), IsEmpty());
  MustPublish("m");
  EXPECT_TRUE(absl::IsNotFound(store_->Read("m", 2).status()));
  EXPECT_TRUE(absl::IsNotFound(store_->Read("m", 0).status()));
  EXPECT_TRUE(absl::IsNotFound(store_->Read("m", -1).status()));
  EXPECT_TRUE(absl::IsNotFound(store_->DeleteVersion("m", 2)));
  EXPECT_TRUE(absl::IsNotFound(store_->DeleteVersion("x", 1)));
  EXPECT_TRUE(absl::IsNotFound(store_->ResolveLabel("m", "stable").status()));
  EXPECT_TRUE(absl::IsNotFound(store_->DeleteLabel("m", "stable")));
  EXPECT_TRUE(absl::IsNotFound(store_->SetLabel("m", "stable", 2)));
  EXPECT_TRUE(absl::IsNotFound(store_->SetLabel("x", "stable", 1)));
}

TEST_P(StoreConformanceTest, BitFlipIsDataLossAndSkippedByReaders) {
  MustPublish("m", 1);
  MustPublish("m", 2);
  MustPublish("m", 3);
  Corrupt("m", 3, Corruption::kBitFlip);
  EXPECT_TRUE(absl::IsDataLoss(store_->Read("m", 3).status()))
      << store_->Read("m", 3).status();
  EXPECT_THAT(*store_->ListVersions("m"), ElementsAre(1, 2, 3));
  EXPECT_EQ(*store_->Latest("m"), 3);
  auto latest = ReadLatestValid(*store_, "m");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->version(), 2);
  EXPECT_EQ(latest->training().step(), 2);
}

TEST_P(StoreConformanceTest, TruncationIsDataLossAndSkippedByReaders) {
  MustPublish("m", 1);
  MustPublish("m", 2);
  Corrupt("m", 2, Corruption::kTruncate);
  Corrupt("m", 1, Corruption::kTruncate);
  EXPECT_TRUE(absl::IsDataLoss(store_->Read("m", 2).status()));
  EXPECT_TRUE(absl::IsDataLoss(store_->Read("m", 1).status()));
  EXPECT_TRUE(absl::IsDataLoss(ReadLatestValid(*store_, "m").status()));
  MustPublish("m", 3);
  auto latest = ReadLatestValid(*store_, "m");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->version(), 3);
  EXPECT_TRUE(absl::IsNotFound(ReadLatestValid(*store_, "none").status()));
}

TEST_P(StoreConformanceTest, LabelsPointAtVersions) {
  MustPublish("m");
  MustPublish("m");
  ASSERT_TRUE(store_->SetLabel("m", "stable", 1).ok());
  ASSERT_TRUE(store_->SetLabel("m", "canary", 2).ok());
  EXPECT_EQ(*store_->ResolveLabel("m", "stable"), 1);
  EXPECT_EQ(*store_->ResolveLabel("m", "canary"), 2);
  EXPECT_EQ(*store_->ListLabels("m"),
            (std::map<std::string, int64_t>{{"canary", 2}, {"stable", 1}}));
  ASSERT_TRUE(store_->SetLabel("m", "stable", 2).ok());  // move
  EXPECT_EQ(*store_->ResolveLabel("m", "stable"), 2);
  ASSERT_TRUE(store_->DeleteLabel("m", "canary").ok());
  EXPECT_TRUE(absl::IsNotFound(store_->ResolveLabel("m", "canary").status()));
  EXPECT_TRUE(absl::IsNotFound(store_->DeleteLabel("m", "canary")));
  EXPECT_EQ(*store_->ListLabels("m"),
            (std::map<std::string, int64_t>{{"stable", 2}}));
  for (const std::string& bad : std::vector<std::string>{
           "", "1abc", "-x", "a/b", "../x", "sta ble", std::string(65, 'a')}) {
    EXPECT_TRUE(absl::IsInvalidArgument(store_->SetLabel("m", bad, 1))) << bad;
    EXPECT_TRUE(
        absl::IsInvalidArgument(store_->ResolveLabel("m", bad).status()));
    EXPECT_TRUE(absl::IsInvalidArgument(store_->DeleteLabel("m", bad)));
  }
}

TEST_P(StoreConformanceTest, DeleteRefusesALabelledVersion) {
  MustPublish("m");
  ASSERT_TRUE(store_->SetLabel("m", "stable", 1).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(store_->DeleteVersion("m", 1)));
  EXPECT_TRUE(store_->Read("m", 1).ok());
  ASSERT_TRUE(store_->DeleteLabel("m", "stable").ok());
  EXPECT_TRUE(store_->DeleteVersion("m", 1).ok());
  EXPECT_TRUE(absl::IsNotFound(store_->Read("m", 1).status()));
}

TEST_P(StoreConformanceTest, RetentionKeepsNewestAndLabelled) {
  for (int i = 0; i < 6; ++i) MustPublish("m");
  ASSERT_TRUE(store_->SetLabel("m", "stable", 2).ok());
  auto deleted = store_->ApplyRetention("m", 2);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_THAT(*deleted, ElementsAre(1, 3, 4));
  EXPECT_THAT(*store_->ListVersions("m"), ElementsAre(2, 5, 6));
  EXPECT_THAT(*store_->ApplyRetention("m", 2), IsEmpty());
  EXPECT_THAT(*store_->ApplyRetention("m", 10), IsEmpty());
  EXPECT_THAT(*store_->ApplyRetention("m", 0), ElementsAre(5, 6));
  EXPECT_THAT(*store_->ListVersions("m"), ElementsAre(2));
  EXPECT_TRUE(
      absl::IsInvalidArgument(store_->ApplyRetention("m", -1).status()));
  EXPECT_EQ(MustPublish("m"), 7);
}

TEST_P(StoreConformanceTest, ListModelsIsSortedAndOnlyHasModelsWithVersions) {
  EXPECT_THAT(*store_->ListModels(), IsEmpty());
  MustPublish("zeta");
  MustPublish("Alpha");
  MustPublish("beta.v2_x-1");
  MustPublish("gone");
  ASSERT_TRUE(store_->DeleteVersion("gone", 1).ok());
  EXPECT_THAT(*store_->ListModels(),
              ElementsAre("Alpha", "beta.v2_x-1", "zeta"));
}

TEST_P(StoreConformanceTest, InvalidModelNamesAreRejectedEverywhere) {
  const std::string longest(64, 'x');
  EXPECT_TRUE(store_->Publish(MakeSnapshot(longest)).ok());
  for (const std::string& bad : std::vector<std::string>{
           "../x", "", std::string(65, 'a'), "a/b", "..", ".hidden", "-x", "_x",
           "x y", "x\\y", "caf\xc3\xa9", std::string("a\0b", 3)}) {
    SCOPED_TRACE(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(ValidateModelName(bad)));
    EXPECT_TRUE(
        absl::IsInvalidArgument(store_->Publish(MakeSnapshot(bad)).status()));
    EXPECT_TRUE(absl::IsInvalidArgument(store_->Read(bad, 1).status()));
    EXPECT_TRUE(absl::IsInvalidArgument(store_->Latest(bad).status()));
    EXPECT_TRUE(absl::IsInvalidArgument(store_->ListVersions(bad).status()));
    EXPECT_TRUE(absl::IsInvalidArgument(store_->SetLabel(bad, "s", 1)));
    EXPECT_TRUE(
        absl::IsInvalidArgument(store_->ResolveLabel(bad, "s").status()));
    EXPECT_TRUE(absl::IsInvalidArgument(store_->ListLabels(bad).status()));
    EXPECT_TRUE(absl::IsInvalidArgument(store_->DeleteLabel(bad, "s")));
    EXPECT_TRUE(absl::IsInvalidArgument(store_->DeleteVersion(bad, 1)));
    EXPECT_TRUE(
        absl::IsInvalidArgument(store_->ApplyRetention(bad, 1).status()));
  }
  EXPECT_THAT(*store_->ListModels(), ElementsAre(longest));
  if (dir_ != nullptr) {
    // Nothing escaped the root: its parent holds nothing but the root.
    std::vector<std::string> around;
    for (const auto& e : std::filesystem::directory_iterator(dir_->path())) {
      around.push_back(e.path().filename().string());
    }
    EXPECT_THAT(around, ElementsAre("root"));
  }
}

TEST_P(StoreConformanceTest, ConcurrentPublishersGetDistinctVersions) {
  constexpr int kThreads = 4;
  constexpr int kEach = 8;
  auto second = Open();  // two store objects, as two processes would have
  std::vector<std::vector<int64_t>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      SnapshotStore& store = t % 2 == 0 ? *store_ : *second;
      for (int i = 0; i < kEach; ++i) {
        auto v = store.Publish(MakeSnapshot("m", 16, t * 100 + i));
        if (v.ok()) got[t].push_back(*v);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<int64_t> all;
  for (const auto& vs : got) all.insert(vs.begin(), vs.end());
  ASSERT_EQ(all.size(), size_t{kThreads * kEach});
  EXPECT_EQ(*all.begin(), 1);
  EXPECT_EQ(*all.rbegin(), kThreads * kEach);
  for (int t = 0; t < kThreads; ++t) {
    for (size_t i = 0; i < got[t].size(); ++i) {
      auto s = store_->Read("m", got[t][i]);
      ASSERT_TRUE(s.ok()) << s.status();
      EXPECT_EQ(s->training().step(), t * 100 + static_cast<int>(i));
    }
  }
}

TEST_P(StoreConformanceTest, WatchIsPushedChangesFromAnotherStoreObject) {
  StoreOptions options;
  options.poll_interval = absl::Hours(1);  // only the push path can deliver
  auto watcher_store = Open(options);
  EventCollector events;
  auto handle = watcher_store->Watch(events.Callback());
  ASSERT_TRUE(handle.ok()) << handle.status();
  const int64_t v = MustPublish("m");
  EXPECT_TRUE(events.WaitForPublished("m", v));
  ASSERT_TRUE(store_->SetLabel("m", "stable", v).ok());
  EXPECT_TRUE(events.WaitFor([](const StoreEvent& e) {
    return e.kind == StoreEvent::Kind::kLabelsChanged && e.model == "m" &&
           e.version == 0;
  }));
  const int64_t v2 = MustPublish("m");
  EXPECT_TRUE(events.WaitForPublished("m", v2));
  ASSERT_TRUE(store_->DeleteVersion("m", v2).ok());
  EXPECT_TRUE(events.WaitFor([&](const StoreEvent& e) {
    return e.kind == StoreEvent::Kind::kDeleted && e.model == "m" &&
           e.version == v2;
  }));
  // A model that did not exist when the watch started.
  const int64_t n = MustPublish("newmodel");
  EXPECT_TRUE(events.WaitForPublished("newmodel", n));
}

TEST_P(StoreConformanceTest, WatchFallsBackToPolling) {
  StoreOptions options;
  options.watch_notifications = false;
  options.poll_interval = absl::Milliseconds(50);
  auto watcher_store = Open(options);
  EventCollector events;
  auto handle = watcher_store->Watch(events.Callback());
  ASSERT_TRUE(handle.ok()) << handle.status();
  const int64_t v = MustPublish("m");
  EXPECT_TRUE(events.WaitForPublished("m", v));
}

TEST_P(StoreConformanceTest, WatchModelsLimitsWhatIsScannedAndReported) {
  for (bool notifications : {false, true}) {
    SCOPED_TRACE(notifications ? "push and polling" : "polling only");
    StoreOptions options;
    options.watch_notifications = notifications;
    options.poll_interval = absl::Milliseconds(50);
    options.watch_models = {"m"};
    auto watcher_store = Open(options);
    EventCollector events;
    auto handle = watcher_store->Watch(events.Callback());
    ASSERT_TRUE(handle.ok()) << handle.status();
    MustPublish("other");
    const int64_t v = MustPublish("m");
    ASSERT_TRUE(events.WaitForPublished("m", v));
    // Every scan after `other`'s publication has run by the time this
    // second version of `m` is reported, and none reported `other`.
    const int64_t v2 = MustPublish("m");
    ASSERT_TRUE(events.WaitForPublished("m", v2));
    EXPECT_FALSE(
        events.WaitFor([](const StoreEvent& e) { return e.model == "other"; },
                       absl::ZeroDuration()));
  }
}

TEST_P(StoreConformanceTest, NoCallbackAfterWatchHandleIsDestroyed) {
  StoreOptions options;
  options.poll_interval = absl::Milliseconds(20);
  auto watcher_store = Open(options);
  EventCollector events;
  {
    auto handle = watcher_store->Watch(events.Callback());
    ASSERT_TRUE(handle.ok()) << handle.status();
    MustPublish("m");
    ASSERT_TRUE(events.WaitForPublished("m", 1));
  }
  const size_t seen = events.size();
  MustPublish("m");
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(events.size(), seen);
}

TEST_P(StoreConformanceTest, UriNamesTheBackend) {
  const std::string uri = store_->uri();
  const std::string& backend = GetParam();
  EXPECT_EQ(uri.substr(0, uri.find("://")),
            backend == "file" ? "file" : backend);
  auto reopened = OpenStore(uri);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->uri(), uri);
}

// Training-job checkpoints: beside the versions, never versions.
TEST_P(StoreConformanceTest, CheckpointsRoundTripAndAreNeverVersions) {
  EXPECT_EQ(store_->ReadCheckpoint("m", "job-1", 5).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->WriteCheckpoint("m", "job-1", 0, "zero").ok());
  ASSERT_TRUE(store_->WriteCheckpoint("m", "job-1", 5, "five").ok());
  ASSERT_TRUE(store_->WriteCheckpoint("m", "job-1", 5, "five again").ok());
  ASSERT_TRUE(store_->WriteCheckpoint("n", "job-2", 3, "three").ok());
  EXPECT_EQ(*store_->ReadCheckpoint("m", "job-1", 5), "five again");
  EXPECT_EQ(*store_->ReadCheckpoint("m", "job-1", 0), "zero");
  EXPECT_EQ(*store_->ListCheckpoints(),
            (std::vector<CheckpointRef>{
                {"m", "job-1", 0}, {"m", "job-1", 5}, {"n", "job-2", 3}}));
  // Not versions: no model, no version, nothing to watch or serve.
  EXPECT_TRUE(store_->ListModels()->empty());
  EXPECT_TRUE(store_->ListVersions("m")->empty());
  EXPECT_EQ(MustPublish("m"), 1);
  EXPECT_THAT(*store_->ListModels(), ElementsAre("m"));
  ASSERT_TRUE(store_->DeleteCheckpoint("m", "job-1", 0).ok());
  ASSERT_TRUE(store_->DeleteCheckpoint("m", "job-1", 0).ok());  // idempotent
  ASSERT_TRUE(store_->DeleteCheckpoint("m", "job-1", 5).ok());
  EXPECT_EQ(*store_->ListCheckpoints(),
            (std::vector<CheckpointRef>{{"n", "job-2", 3}}));
  EXPECT_THAT(*store_->ListVersions("m"), ElementsAre(1));
}

TEST_P(StoreConformanceTest, CheckpointKeysAreValidated) {
  EXPECT_EQ(store_->WriteCheckpoint("../x", "job-1", 1, "p").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->WriteCheckpoint("m", "../job", 1, "p").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->WriteCheckpoint("m", "job-1", -1, "p").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ReadCheckpoint("m", "a/b", 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->DeleteCheckpoint("", "job-1", 1).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(StoreConformanceTest, ACorruptCheckpointIsDataLoss) {
  ASSERT_TRUE(
      store_->WriteCheckpoint("m", "job-1", 7, std::string(64, 'x')).ok());
  const std::string& backend = GetParam();
  if (backend == "mem") {
    auto mem = MemoryStore::Open(uri_.substr(6));
    ASSERT_TRUE(mem->CorruptCheckpointForTesting("m", "job-1", 7).ok());
  } else if (backend == "file") {
    const std::string path =
        absl::StrCat(dir_->path(), "/root/.checkpoints/m/job-1/7.ckpt");
    std::ifstream in(path, std::ios::binary);
    std::string data(std::istreambuf_iterator<char>(in), {});
    ASSERT_GT(data.size(), 64u);
    data[data.size() / 2] ^= 0x10;
    std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
  } else {
    redisContext* c = ConnectToNodeOf("bnserve:{m}:ckpt:job-1");
    ASSERT_TRUE(c != nullptr);
    auto* r = static_cast<redisReply*>(redisCommand(
        c, "HSET bnserve:{m}:ckpt:job-1 7 %b", "garbage", size_t{7}));
    ASSERT_TRUE(r != nullptr && r->type == REDIS_REPLY_INTEGER) << c->errstr;
    freeReplyObject(r);
    redisFree(c);
  }
  EXPECT_EQ(store_->ReadCheckpoint("m", "job-1", 7).status().code(),
            absl::StatusCode::kDataLoss);
}

// The job registry's leases (store/job_registry.h): one owner at a time,
// renewable by it only, released by it only, taken over once expired.
TEST_P(StoreConformanceTest, JobLeasesHaveOneOwnerAndExpire) {
  JobRegistry* reg = store_->job_registry();
  ASSERT_NE(reg, nullptr);
  const absl::Duration ttl = absl::Seconds(5);
  auto a = reg->Acquire("m", "job-1", "a", ttl);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->owner, "a");
  auto b = reg->Acquire("m", "job-1", "b", ttl);  // held by a: not taken
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->owner, "a");
  EXPECT_GT(b->remaining, absl::Seconds(1));
  EXPECT_LE(b->remaining, ttl);
  auto renewed = reg->Renew("m", "job-1", "a", ttl, "");
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_FALSE(*renewed);
  EXPECT_EQ(reg->Renew("m", "job-1", "b", ttl, "").status().code(),
            absl::StatusCode::kAborted);
  ASSERT_TRUE(reg->Release("m", "job-1", "b").ok());  // not b's: no effect
  EXPECT_EQ(reg->Acquire("m", "job-1", "b", ttl)->owner, "a");
  ASSERT_TRUE(reg->Release("m", "job-1", "a").ok());
  EXPECT_EQ(reg->Acquire("m", "job-1", "b", ttl)->owner, "b");
  EXPECT_EQ(reg->Renew("m", "job-1", "a", ttl, "").status().code(),
            absl::StatusCode::kAborted);

  // Expiry: a lease that is not renewed passes to the next taker.
  ASSERT_EQ(reg->Acquire("m", "job-2", "a", absl::Milliseconds(150))->owner,
            "a");
  EXPECT_EQ(reg->Acquire("m", "job-2", "b", ttl)->owner, "a");
  absl::SleepFor(absl::Milliseconds(400));
  EXPECT_EQ(reg->Renew("m", "job-2", "a", ttl, "").status().code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(reg->Acquire("m", "job-2", "b", ttl)->owner, "b");
  EXPECT_EQ(reg->Get("job-2").status().code(),  // leased, not registered
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(reg->Put("m", "job-2", "s", false).ok());
  auto entry = reg->Get("job-2");
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->lease.owner, "b");
  EXPECT_EQ(entry->model, "m");
}

TEST_P(StoreConformanceTest, JobRegistryHoldsSummariesAndCancelRequests) {
  JobRegistry* reg = store_->job_registry();
  ASSERT_NE(reg, nullptr);
  auto n1 = reg->NextJobNumber();
  auto n2 = reg->NextJobNumber();
  ASSERT_TRUE(n1.ok() && n2.ok());
  EXPECT_GT(*n2, *n1);
  EXPECT_EQ(reg->Get("job-9").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(reg->RequestCancel("job-9").code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(reg->Put("m", "job-9", "first", false).ok());
  ASSERT_TRUE(reg->Put("m", "job-9", "ignored", true).ok());
  ASSERT_TRUE(reg->Put("n", "job-10", "other", false).ok());
  EXPECT_EQ(reg->Get("job-9")->summary, "first");
  ASSERT_EQ(reg->Acquire("m", "job-9", "a", absl::Seconds(5))->owner, "a");
  ASSERT_TRUE(reg->Renew("m", "job-9", "a", absl::Seconds(5), "second").ok());
  EXPECT_EQ(reg->Get("job-9")->summary, "second");
  EXPECT_FALSE(reg->Get("job-9")->cancel_requested);
  ASSERT_TRUE(reg->RequestCancel("job-9").ok());
  EXPECT_TRUE(reg->Get("job-9")->cancel_requested);
  EXPECT_TRUE(*reg->Renew("m", "job-9", "a", absl::Seconds(5), ""));
  auto all = reg->List();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].job_id, "job-10");
  EXPECT_EQ((*all)[0].model, "n");
  EXPECT_EQ((*all)[1].job_id, "job-9");
  EXPECT_EQ((*all)[1].lease.owner, "a");
  ASSERT_TRUE(reg->Remove("m", "job-9").ok());
  ASSERT_TRUE(reg->Remove("m", "job-9").ok());  // idempotent
  EXPECT_EQ(reg->Get("job-9").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(reg->List()->size(), 1u);
  // A removed job's lease is gone too.
  EXPECT_EQ(reg->Acquire("m", "job-9", "b", absl::Seconds(5))->owner, "b");
}

TEST_P(StoreConformanceTest, JobRegistryValidatesItsArguments) {
  JobRegistry* reg = store_->job_registry();
  ASSERT_NE(reg, nullptr);
  const absl::Duration ttl = absl::Seconds(1);
  EXPECT_EQ(reg->Acquire("../m", "job-1", "a", ttl).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(reg->Acquire("m", "job/1", "a", ttl).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(reg->Acquire("m", "job-1", "", ttl).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      reg->Acquire("m", "job-1", "a", absl::ZeroDuration()).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(reg->Put("m", "", "s", false).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(reg->Get("a b").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Every trainer on a Redis store (or a mem:// store of one name) sees the
// same leases: a second store object cannot take a live one.
TEST_P(StoreConformanceTest, JobLeasesAreSharedByStoresOnTheSameBackend) {
  if (GetParam() == "file") {
    EXPECT_FALSE(store_->job_registry()->shared());  // one trainer per dir
    return;
  }
  std::unique_ptr<SnapshotStore> other = Open();
  ASSERT_NE(other, nullptr);
  ASSERT_EQ(store_->job_registry()
                ->Acquire("m", "job-1", "a", absl::Seconds(5))
                ->owner,
            "a");
  EXPECT_EQ(other->job_registry()
                ->Acquire("m", "job-1", "b", absl::Seconds(5))
                ->owner,
            "a");
  EXPECT_EQ(store_->job_registry()->shared(), GetParam() != "mem");
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreConformanceTest,
                         ::testing::Values("file", "mem", "redis",
                                           "redis-sentinel", "redis-cluster"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace bnserve::store
