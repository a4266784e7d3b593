// Redis Cluster: the slot and redirect helpers (store/redis_cluster.h), and
// RedisStore on a real 3-master Cluster (redis-server --cluster-enabled,
// created with redis-cli --cluster create) while a model's slot is resharded.
// The Cluster runs on free loopback ports and the test fails if it cannot
// start it (never skipped).
#include "store/redis_cluster.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/redis_store.h"
#include "tests/store/test_util.h"

namespace bnserve::store {
namespace {

using ::bnserve::store::testing::MakeSnapshot;
using ::bnserve::store::testing::RedisClusterSet;
using ::bnserve::store::testing::RunCommand;
using ::bnserve::store::testing::TempDir;

TEST(ClusterSlotTest, MatchesTheClusterSpec) {
  // CRC16/XMODEM check value of "123456789" is 0x31C3.
  EXPECT_EQ(ClusterSlot("123456789"), 0x31C3);
  EXPECT_EQ(ClusterSlot("foo"), 12182);  // CLUSTER KEYSLOT foo
  // Hash tags: the first {...} with something inside.
  EXPECT_EQ(ClusterSlot("{user1000}.following"),
            ClusterSlot("{user1000}.followers"));
  EXPECT_EQ(ClusterSlot("{user1000}.following"), ClusterSlot("user1000"));
  EXPECT_NE(ClusterSlot("foo{}{bar}"), ClusterSlot("bar"));
  EXPECT_EQ(ClusterSlot("foo{{bar}}zap"), ClusterSlot("{bar"));
  EXPECT_EQ(ClusterSlot("foo{bar}{zap}"), ClusterSlot("bar"));
  EXPECT_EQ(ClusterSlot(RedisStore::BlobKey("m", 7)), ClusterSlot("m"));
  EXPECT_EQ(ClusterSlot("bnserve:{m}:versions"), ClusterSlot("m"));
}

TEST(ParseClusterRedirectTest, MovedAndAsk) {
  auto moved = ParseClusterRedirect("MOVED 3999 127.0.0.1:6381");
  ASSERT_TRUE(moved.has_value());
  EXPECT_EQ(moved->kind, ClusterRedirect::Kind::kMoved);
  EXPECT_EQ(moved->slot, 3999);
  EXPECT_EQ(moved->to.host, "127.0.0.1");
  EXPECT_EQ(moved->to.port, 6381);
  auto ask = ParseClusterRedirect("ASK 0 ::1:7000");
  ASSERT_TRUE(ask.has_value());
  EXPECT_EQ(ask->kind, ClusterRedirect::Kind::kAsk);
  EXPECT_EQ(ask->to.host, "::1");
  EXPECT_EQ(ask->to.port, 7000);
  auto empty_host = ParseClusterRedirect("MOVED 16383 :7001");
  ASSERT_TRUE(empty_host.has_value());
  EXPECT_EQ(empty_host->to.host, "");
  for (const char* bad :
       {"", "MOVED", "MOVED 1", "MOVED 16384 h:1", "MOVED -1 h:1",
        "MOVED +1 h:1", "MOVED 1 h", "MOVED 1 h:0", "MOVED 1 h:65536",
        "MOVED 1 h:x", "ASK 1 h:", "moved 1 h:1", "ERR MOVED 1 h:1",
        "MOVED 1 [h:1", "TRYAGAIN"}) {
    EXPECT_FALSE(ParseClusterRedirect(bad).has_value()) << bad;
  }
}

// A model name whose keys hash to `slot` ("s<n>" for the first n that does).
std::string SlotName(int slot) {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out(kClusterSlots);
    int found = 0;
    for (int i = 0; found < kClusterSlots; ++i) {
      const std::string name = absl::StrCat("s", i);
      std::string& at = out[ClusterSlot(name)];
      if (at.empty()) {
        at = name;
        ++found;
      }
    }
    return out;
  }();
  return names[slot];
}

class RedisClusterStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = RedisClusterSet::Start(3);
    ASSERT_TRUE(cluster.ok())
        << "cannot start a Redis Cluster: " << cluster.status();
    cluster_ = *std::move(cluster);
  }

  // CLUSTER MYID of the node on `port`.
  static std::string NodeId(int port) {
    redisContext* c = redisConnect("127.0.0.1", port);
    auto* r = static_cast<redisReply*>(redisCommand(c, "CLUSTER MYID"));
    std::string id = r != nullptr && r->type == REDIS_REPLY_STRING
                         ? std::string(r->str, r->len)
                         : "";
    if (r != nullptr) freeReplyObject(r);
    redisFree(c);
    return id;
  }

  // The lowest slot that the node on `port` owns (CLUSTER SLOTS).
  int LowestSlotOf(int port) {
    redisContext* c = redisConnect("127.0.0.1", cluster_->ports()[0]);
    auto* r = static_cast<redisReply*>(redisCommand(c, "CLUSTER SLOTS"));
    int lowest = kClusterSlots;
    for (size_t i = 0; r != nullptr && i < r->elements; ++i) {
      const redisReply* range = r->element[i];
      if (range->element[2]->element[1]->integer == port) {
        lowest = std::min<int>(lowest, range->element[0]->integer);
      }
    }
    if (r != nullptr) freeReplyObject(r);
    redisFree(c);
    return lowest;
  }

  // One command; its status, string or error text.
  static std::string Command(int port, const std::vector<std::string>& args) {
    redisContext* c = redisConnect("127.0.0.1", port);
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(redisCommandArgv(
        c, static_cast<int>(argv.size()), argv.data(), lens.data()));
    std::string text = r != nullptr && r->str != nullptr
                           ? std::string(r->str, r->len)
                           : "(no reply)";
    if (r != nullptr) freeReplyObject(r);
    redisFree(c);
    return text;
  }

  static long long KeySlotOnServer(int port, const std::string& key) {
    redisContext* c = redisConnect("127.0.0.1", port);
    auto* r = static_cast<redisReply*>(
        redisCommand(c, "CLUSTER KEYSLOT %b", key.data(), key.size()));
    const long long slot =
        r != nullptr && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r != nullptr) freeReplyObject(r);
    redisFree(c);
    return slot;
  }

  std::unique_ptr<RedisClusterSet> cluster_;
};

TEST_F(RedisClusterStoreTest, SlotsAgreeWithTheServer) {
  for (const std::string& key :
       {std::string("foo"), std::string("123456789"), std::string("foo{}{bar}"),
        std::string("foo{{bar}}zap"), std::string("foo{bar}{zap}"),
        RedisStore::BlobKey("digits", 42), std::string("bnserve:models"),
        std::string("{"), std::string("}{"), std::string("\xff\x00\x80", 3)}) {
    EXPECT_EQ(ClusterSlot(key), KeySlotOnServer(cluster_->ports()[0], key))
        << key;
  }
}

TEST_F(RedisClusterStoreTest, ModelsLandOnEveryNodeAndEachModelOnOneNode) {
  auto store = OpenStore(cluster_->uri());
  ASSERT_TRUE(store.ok()) << store.status();
  std::map<int, int> per_node;
  for (int i = 0; i < 12; ++i) {
    const std::string model = absl::StrCat("model", i);
    ASSERT_TRUE((*store)->Publish(MakeSnapshot(model)).ok());
    ASSERT_TRUE((*store)->SetLabel(model, "stable", 1).ok());
    auto blob = cluster_->PortForKey(RedisStore::BlobKey(model, 1));
    auto versions =
        cluster_->PortForKey(absl::StrCat("bnserve:{", model, "}:versions"));
    ASSERT_TRUE(blob.ok() && versions.ok());
    EXPECT_EQ(*blob, *versions) << model;
    ++per_node[*blob];
  }
  EXPECT_EQ(per_node.size(), 3u);  // the Cluster really is sharded
  auto models = (*store)->ListModels();
  ASSERT_TRUE(models.ok()) << models.status();
  EXPECT_EQ(models->size(), 12u);
}

TEST_F(RedisClusterStoreTest, PlainRedisUriOnAClusterNodeSaysWhatToUse) {
  // Find a node that does not own the model's slot: it answers MOVED.
  auto owner = cluster_->PortForKey(RedisStore::BlobKey("m", 1));
  ASSERT_TRUE(owner.ok());
  const int other = cluster_->ports()[0] == *owner ? cluster_->ports()[1]
                                                   : cluster_->ports()[0];
  auto store = OpenStore(absl::StrCat("redis://127.0.0.1:", other));
  ASSERT_TRUE(store.ok());
  absl::Status status = (*store)->Read("m", 1).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_THAT(std::string(status.message()),
              ::testing::HasSubstr("redis-cluster://"));
}

// Mid-migration (slot MIGRATING on its owner, IMPORTING on the target, one
// version's blob already moved): the owner answers ASK for that blob and the
// client follows it with ASKING; after the slot is handed over, MOVED.
TEST_F(RedisClusterStoreTest, FollowsAskDuringAMigrationAndMovedAfter) {
  auto store = OpenStore(cluster_->uri());
  ASSERT_TRUE(store.ok());
  ASSERT_EQ(*(*store)->Publish(MakeSnapshot("m", 16, 1)), 1);
  ASSERT_EQ(*(*store)->Publish(MakeSnapshot("m", 16, 2)), 2);
  auto source = cluster_->PortForKey(RedisStore::BlobKey("m", 1));
  ASSERT_TRUE(source.ok());
  const int target = cluster_->ports()[0] == *source ? cluster_->ports()[1]
                                                     : cluster_->ports()[0];
  const std::string slot = absl::StrCat(ClusterSlot("m"));
  const std::string blob = RedisStore::BlobKey("m", 1);
  ASSERT_EQ(Command(target,
                    {"CLUSTER", "SETSLOT", slot, "IMPORTING", NodeId(*source)}),
            "OK");
  ASSERT_EQ(Command(*source,
                    {"CLUSTER", "SETSLOT", slot, "MIGRATING", NodeId(target)}),
            "OK");
  ASSERT_EQ(Command(*source, {"MIGRATE", "127.0.0.1", absl::StrCat(target),
                              blob, "0", "5000"}),
            "OK");
  auto read = (*store)->Read("m", 1);  // ASK → target
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->training().step(), 1);
  auto read2 = (*store)->Read("m", 2);  // still on the source
  ASSERT_TRUE(read2.ok()) << read2.status();
  EXPECT_EQ(read2->training().step(), 2);
  // Finish: move the rest and give the slot to the target everywhere.
  for (const std::string& key :
       {RedisStore::BlobKey("m", 2), std::string("bnserve:{m}:versions"),
        std::string("bnserve:{m}:counter")}) {
    ASSERT_EQ(Command(*source, {"MIGRATE", "127.0.0.1", absl::StrCat(target),
                                key, "0", "5000"}),
              "OK")
        << key;
  }
  for (int port : cluster_->ports()) {
    ASSERT_EQ(
        Command(port, {"CLUSTER", "SETSLOT", slot, "NODE", NodeId(target)}),
        "OK");
  }
  auto v = (*store)->Publish(MakeSnapshot("m", 16, 3));  // MOVED → target
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, 3);
  EXPECT_THAT(*(*store)->ListVersions("m"), ::testing::ElementsAre(1, 2, 3));
  auto where = cluster_->PortForKey(RedisStore::BlobKey("m", 3));
  ASSERT_TRUE(where.ok());
  EXPECT_EQ(*where, target);
}

// The model's slot is moved to another master with `redis-cli --cluster
// reshard` while one thread publishes and another reads: nothing
// acknowledged is lost, no read fails, and the client follows the slot.
TEST_F(RedisClusterStoreTest, ReshardingAModelsSlotLosesNothing) {
  // The lowest slot of a node (reshard takes a node's slots in ascending
  // order) and a model that hashes to it.
  const int source = cluster_->ports()[1];
  const int lowest = LowestSlotOf(source);
  ASSERT_LT(lowest, kClusterSlots);
  const std::string model = SlotName(lowest);
  const int target = cluster_->ports()[2];

  auto store = OpenStore(cluster_->uri());
  ASSERT_TRUE(store.ok());
  std::vector<int64_t> acked;
  for (int i = 0; i < 200; ++i) {  // keys for the migration to move
    auto v = (*store)->Publish(MakeSnapshot(model, 2048, i));
    ASSERT_TRUE(v.ok()) << v.status();
    acked.push_back(*v);
  }
  std::atomic<bool> stop{false};
  std::atomic<int> read_failures{0}, reads{0}, publish_failures{0};
  absl::Mutex mu;
  std::thread publisher([&] {
    for (int i = 1000; !stop; ++i) {
      auto v = (*store)->Publish(MakeSnapshot(model, 2048, i));
      absl::MutexLock lock(&mu);
      if (v.ok()) {
        acked.push_back(*v);
      } else {
        ++publish_failures;
        ADD_FAILURE() << v.status();
      }
    }
  });
  auto reader_store = OpenStore(cluster_->uri());
  ASSERT_TRUE(reader_store.ok());
  std::thread reader([&] {
    while (!stop) {
      auto latest = ReadLatestValid(**reader_store, model);
      ++reads;
      if (!latest.ok()) {
        ++read_failures;
        ADD_FAILURE() << latest.status();
      }
    }
  });
  TempDir logs;
  absl::Status resharded = RunCommand(
      {"redis-cli", "--cluster", "reshard",
       absl::StrCat("127.0.0.1:", cluster_->ports()[0]), "--cluster-from",
       NodeId(source), "--cluster-to", NodeId(target), "--cluster-slots", "1",
       "--cluster-pipeline", "1", "--cluster-yes"},
      logs.path() + "/reshard.log", absl::Seconds(60));
  // Keep going a little on the new owner.
  const int before = reads.load();
  while (reads.load() < before + 20) absl::SleepFor(absl::Milliseconds(10));
  stop = true;
  publisher.join();
  reader.join();
  ASSERT_TRUE(resharded.ok()) << resharded;
  auto owner = cluster_->PortForKey(absl::StrCat("bnserve:{", model, "}:x"));
  ASSERT_TRUE(owner.ok());
  EXPECT_EQ(*owner, target) << "the model's slot did not move";

  EXPECT_EQ(read_failures.load(), 0);
  EXPECT_EQ(publish_failures.load(), 0);
  auto listed = (*store)->ListVersions(model);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(*listed, acked);
  for (size_t i = 0; i < acked.size(); ++i) {
    auto s = (*store)->Read(model, acked[i]);
    ASSERT_TRUE(s.ok()) << s.status();
  }
  std::cout << "resharded slot " << lowest << " with " << acked.size()
            << " versions acknowledged, " << reads.load()
            << " reads, 0 failed\n";
}

}  // namespace
}  // namespace bnserve::store
