// Redis backend specifics: outage and recovery, 64 MiB snapshots, several
// processes, key layout. Each test starts its own redis-server and fails if
// it cannot.
#include "store/redis_store.h"

#include <hiredis/hiredis.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/store/test_util.h"

namespace bnserve::store {
namespace {

using ::bnserve::store::testing::EventCollector;
using ::bnserve::store::testing::ForkChild;
using ::bnserve::store::testing::MakeSnapshot;
using ::bnserve::store::testing::RedisServer;
using ::bnserve::store::testing::WaitChildOk;

class RedisStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = RedisServer::Start();
    ASSERT_TRUE(server.ok())
        << "cannot start redis-server: " << server.status();
    server_ = *std::move(server);
  }

  std::unique_ptr<SnapshotStore> Open(const StoreOptions& options = {}) {
    auto store = OpenStore(server_->uri(), options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // Retries `op` until it succeeds or `timeout` passes.
  template <typename Op>
  bool Eventually(Op op, absl::Duration timeout = absl::Seconds(15)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (op()) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  std::unique_ptr<RedisServer> server_;
};

TEST_F(RedisStoreTest, UnavailableWhileDownThenRecovers) {
  StoreOptions options;
  options.poll_interval = absl::Hours(1);  // events only via pub-sub
  auto store = Open(options);
  ASSERT_EQ(*store->Publish(MakeSnapshot("m")), 1);
  EventCollector events;
  auto watch = Open(options)->Watch(events.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();

  server_->Stop();
  EXPECT_TRUE(absl::IsUnavailable(store->Publish(MakeSnapshot("m")).status()));
  EXPECT_TRUE(absl::IsUnavailable(store->Read("m", 1).status()));
  EXPECT_TRUE(absl::IsUnavailable(store->Latest("m").status()));
  EXPECT_TRUE(absl::IsUnavailable(store->ListVersions("m").status()));
  EXPECT_TRUE(absl::IsUnavailable(store->ListModels().status()));
  EXPECT_TRUE(absl::IsUnavailable(store->SetLabel("m", "s", 1)));
  EXPECT_TRUE(absl::IsUnavailable(store->DeleteVersion("m", 1)));
  EXPECT_TRUE(absl::IsUnavailable(ReadLatestValid(*store, "m").status()));

  ASSERT_TRUE(server_->Restart().ok());  // same port, empty data
  absl::StatusOr<int64_t> v;
  // ASSERT: the version is dereferenced below; a failed wait must fail the
  // test, not crash it.
  ASSERT_TRUE(Eventually([&] {
    v = store->Publish(MakeSnapshot("after"));
    return v.ok();
  })) << v.status();
  // The watcher re-subscribed and learns of the new model.
  EXPECT_TRUE(events.WaitForPublished("after", *v));
  const absl::StatusOr<int64_t> v2 = store->Publish(MakeSnapshot("after"));
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_TRUE(events.WaitForPublished("after", *v2));
}

TEST_F(RedisStoreTest, NothingListeningIsUnavailableQuickly) {
  const int port = server_->port();
  server_->Stop();
  auto store = OpenStore(absl::StrCat("redis://127.0.0.1:", port));
  ASSERT_TRUE(store.ok()) << store.status();  // connects lazily
  const absl::Time start = absl::Now();
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(absl::IsUnavailable((*store)->Latest("m").status()));
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EventCollector events;
  auto watch = (*store)->Watch(events.Callback());  // survives the outage
  EXPECT_TRUE(watch.ok());
}

TEST_F(RedisStoreTest, SixtyFourMebibyteSnapshotRoundTrips) {
  auto store = Open();
  bnserve::v1::Snapshot big =
      MakeSnapshot("big", 16 * 1024 * 1024 + 1024, 3);  // > 64 MiB of floats
  ASSERT_GT(big.ByteSizeLong(), 64u << 20);
  auto v = store->Publish(big);
  ASSERT_TRUE(v.ok()) << v.status();
  auto read = store->Read("big", *v);
  ASSERT_TRUE(read.ok()) << read.status();
  big.set_version(*v);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*read, big));
}

TEST_F(RedisStoreTest, TwoProcessesPublishingFiftyEachGetHundredVersions) {
  std::vector<pid_t> children;
  const std::string uri = server_->uri();
  for (int p = 0; p < 2; ++p) {
    children.push_back(ForkChild([&, p] {
      auto store = OpenStore(uri);
      if (!store.ok()) return false;
      for (int i = 0; i < 50; ++i) {
        if (!(*store)->Publish(MakeSnapshot("m", 256, p * 1000 + i)).ok()) {
          return false;
        }
      }
      return true;
    }));
  }
  for (pid_t c : children) EXPECT_TRUE(WaitChildOk(c));
  auto store = Open();
  auto versions = *store->ListVersions("m");
  ASSERT_EQ(versions.size(), 100u);
  EXPECT_EQ(versions.front(), 1);
  EXPECT_EQ(versions.back(), 100);
  std::set<int64_t> tags;
  for (int64_t v : versions)
    tags.insert(store->Read("m", v)->training().step());
  EXPECT_EQ(tags.size(), 100u);
}

TEST_F(RedisStoreTest, KeysOfOneModelShareAHashTag) {
  auto store = Open();
  ASSERT_EQ(*store->Publish(MakeSnapshot("digits")), 1);
  ASSERT_TRUE(store->SetLabel("digits", "stable", 1).ok());
  redisContext* c = redisConnect("127.0.0.1", server_->port());
  ASSERT_TRUE(c != nullptr && c->err == 0);
  auto* r = static_cast<redisReply*>(redisCommand(c, "KEYS *"));
  ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
  std::set<std::string> keys;
  for (size_t i = 0; i < r->elements; ++i) keys.insert(r->element[i]->str);
  freeReplyObject(r);
  redisFree(c);
  EXPECT_EQ(keys, (std::set<std::string>{
                      "bnserve:models", "bnserve:{digits}:counter",
                      "bnserve:{digits}:versions", "bnserve:{digits}:v:1",
                      "bnserve:{digits}:labels"}));
}

// ISSUE 14 defect 6: a version key of the wrong type (WRONGTYPE) was
// INTERNAL, which readers treat as transient: the older versions were never
// served. It is DATA_LOSS, skipped like a checksum failure.
TEST_F(RedisStoreTest, VersionKeyOfTheWrongTypeIsDataLoss) {
  auto store = Open();
  ASSERT_EQ(*store->Publish(MakeSnapshot("m")), 1);
  ASSERT_EQ(*store->Publish(MakeSnapshot("m")), 2);
  redisContext* c = redisConnect("127.0.0.1", server_->port());
  ASSERT_TRUE(c != nullptr && c->err == 0);
  freeReplyObject(redisCommand(c, "DEL bnserve:{m}:v:2"));
  freeReplyObject(redisCommand(c, "RPUSH bnserve:{m}:v:2 garbage"));
  redisFree(c);
  const absl::Status st = store->Read("m", 2).status();
  EXPECT_TRUE(absl::IsDataLoss(st)) << st;
  EXPECT_THAT(st.message(), ::testing::HasSubstr("wrong type"));
  absl::StatusOr<v1::Snapshot> latest = ReadLatestValid(*store, "m");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->version(), 1);
}

// ISSUE 14 defect 10: after the counter key was deleted while v1-v3
// existed, Publish returned version 1 and overwrote the v1 blob: replicas
// served different weights under one version. Allocation now takes the
// highest indexed version into account and skips existing blobs; blobs are
// written only if absent.
TEST_F(RedisStoreTest, LosingTheCounterNeverReusesAVersion) {
  auto store = Open();
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(store->Publish(MakeSnapshot("m")).ok());
  const std::string v1 = store->Read("m", 1)->SerializeAsString();
  redisContext* c = redisConnect("127.0.0.1", server_->port());
  ASSERT_TRUE(c != nullptr && c->err == 0);
  auto command = [&](const char* text) {
    freeReplyObject(redisCommand(c, text));
  };
  command("DEL bnserve:{m}:counter");
  EXPECT_EQ(*store->Publish(MakeSnapshot("m")), 4);
  EXPECT_EQ(store->Read("m", 1)->SerializeAsString(), v1);
  // A damaged counter counts as 0; an unindexed leftover blob is skipped.
  command("SET bnserve:{m}:counter garbage");
  command("SET bnserve:{m}:v:5 leftover");
  EXPECT_EQ(*store->Publish(MakeSnapshot("m")), 6);
  auto* r = static_cast<redisReply*>(redisCommand(c, "GET bnserve:{m}:v:5"));
  ASSERT_EQ(r->type, REDIS_REPLY_STRING);
  EXPECT_EQ(std::string(r->str, r->len), "leftover");
  freeReplyObject(r);
  // Past the largest version: OUT_OF_RANGE, nothing written.
  command("SET bnserve:{m}:counter 999999999999999999");
  EXPECT_TRUE(absl::IsOutOfRange(store->Publish(MakeSnapshot("m")).status()));
  redisFree(c);
  EXPECT_THAT(*store->ListVersions("m"), ::testing::ElementsAre(1, 2, 3, 4, 6));
}

TEST_F(RedisStoreTest, DatabaseNumberSeparatesStores) {
  auto db0 = OpenStore(absl::StrCat("redis://127.0.0.1:", server_->port()));
  auto db3 =
      OpenStore(absl::StrCat("redis://127.0.0.1:", server_->port(), "/3"));
  ASSERT_TRUE(db0.ok() && db3.ok());
  ASSERT_EQ(*(*db3)->Publish(MakeSnapshot("m")), 1);
  EXPECT_TRUE((*db0)->ListVersions("m")->empty());
  EXPECT_EQ((*db3)->uri(),
            absl::StrCat("redis://127.0.0.1:", server_->port(), "/3"));
}

}  // namespace
}  // namespace bnserve::store
