// store.h helpers: URI parsing, name validation, OpenStore dispatch,
// ReadLatestValid, the memory store's failure injection, and event diffing.
#include "store/store.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/memory_store.h"
#include "store/watch_loop.h"
#include "tests/store/test_util.h"

namespace bnserve::store {
namespace {

using ::bnserve::store::testing::MakeSnapshot;
using ::bnserve::store::testing::TempDir;
using ::bnserve::store::testing::UniqueName;
using ::testing::HasSubstr;

TEST(ParseStoreUriTest, PathsAndFileUris) {
  auto p = ParseStoreUri("/var/lib/bnserve");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->scheme, StoreUri::Scheme::kFile);
  EXPECT_EQ(p->path, "/var/lib/bnserve");
  p = ParseStoreUri("relative/dir");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->path, "relative/dir");
  p = ParseStoreUri("file:///abs/path");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->scheme, StoreUri::Scheme::kFile);
  EXPECT_EQ(p->path, "/abs/path");
  p = ParseStoreUri("file://localhost/abs");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->path, "/abs");
}

TEST(ParseStoreUriTest, RedisUris) {
  auto p = ParseStoreUri("redis://cache.local:6380/2");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->scheme, StoreUri::Scheme::kRedis);
  EXPECT_EQ(p->host, "cache.local");
  EXPECT_EQ(p->port, 6380);
  EXPECT_EQ(p->db, 2);
  p = ParseStoreUri("redis://localhost");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->port, 6379);
  EXPECT_EQ(p->db, 0);
  p = ParseStoreUri("REDIS://h:1/");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->port, 1);
  p = ParseStoreUri("redis://[::1]:7000/1");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->host, "::1");
  EXPECT_EQ(p->port, 7000);
  p = ParseStoreUri("redis://user:secret@h:7000");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->username, "user");
  EXPECT_EQ(p->password, "secret");
  EXPECT_EQ(p->host, "h");
  p = ParseStoreUri("redis://:secret@h");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->username, "");
  EXPECT_EQ(p->password, "secret");
}

TEST(ParseStoreUriTest, RedisSentinelUris) {
  auto p = ParseStoreUri("redis-sentinel://s1:26380,s2,[::1]:5000/mymaster/3");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->scheme, StoreUri::Scheme::kRedisSentinel);
  ASSERT_EQ(p->endpoints.size(), 3u);
  EXPECT_EQ(p->endpoints[0].host, "s1");
  EXPECT_EQ(p->endpoints[0].port, 26380);
  EXPECT_EQ(p->endpoints[1].host, "s2");
  EXPECT_EQ(p->endpoints[1].port, 26379);  // Sentinel's default port
  EXPECT_EQ(p->endpoints[2].host, "::1");
  EXPECT_EQ(p->endpoints[2].port, 5000);
  EXPECT_EQ(p->master_name, "mymaster");
  EXPECT_EQ(p->db, 3);
  p = ParseStoreUri("Redis-Sentinel://u:pw@s1/m.1");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->master_name, "m.1");
  EXPECT_EQ(p->db, 0);
  EXPECT_EQ(p->username, "u");
  EXPECT_EQ(p->password, "pw");
  // uri() spells it out in full, and reopens to the same store.
  auto store = OpenStore("redis-sentinel://s1,s2:1/mymaster");
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->uri(), "redis-sentinel://s1:26379,s2:1/mymaster/0");
}

TEST(ParseStoreUriTest, RedisClusterUris) {
  auto p = ParseStoreUri("redis-cluster://:pw@h1:7000,h2:7001,h3");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->scheme, StoreUri::Scheme::kRedisCluster);
  ASSERT_EQ(p->endpoints.size(), 3u);
  EXPECT_EQ(p->endpoints[1].host, "h2");
  EXPECT_EQ(p->endpoints[1].port, 7001);
  EXPECT_EQ(p->endpoints[2].port, 6379);
  EXPECT_EQ(p->password, "pw");
  auto store = OpenStore("redis-cluster://h1:7000,h2:7001");
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->uri(), "redis-cluster://h1:7000,h2:7001");
}

TEST(ParseStoreUriTest, BadSentinelAndClusterUrisSayWhy) {
  const std::pair<const char*, const char*> cases[] = {
      {"redis-sentinel://s1,s2", "needs a master name"},
      {"redis-sentinel://s1/", "needs a master name"},
      {"redis-sentinel://s1/m/x", "database 'x'"},
      {"redis-sentinel://s1/m/-1", "database '-1'"},
      {"redis-sentinel://s1/bad%name", "master name must match"},
      {"redis-sentinel://s1,,s2/m", "missing host"},
      {"redis-sentinel://s1,/m", "missing host"},
      {"redis-sentinel:///m", "missing host"},
      {"redis-sentinel://s1:0/m", "port '0'"},
      {"redis-cluster://h1:7000/0", "no databases"},
      {"redis-cluster://h1,h2:x", "port 'x'"},
      {"redis-cluster://", "missing host"},
      {"redis://h1,h2", "redis:// takes one host"},
  };
  for (const auto& [uri, why] : cases) {
    auto p = ParseStoreUri(uri);
    EXPECT_TRUE(absl::IsInvalidArgument(p.status())) << uri;
    EXPECT_THAT(std::string(p.status().message()), HasSubstr(why)) << uri;
  }
  std::string many = "redis-cluster://h";
  for (size_t i = 0; i < kMaxRedisEndpoints; ++i) many += ",h";
  EXPECT_THAT(std::string(ParseStoreUri(many).status().message()),
              HasSubstr("more than 64 hosts"));
  EXPECT_TRUE(absl::IsInvalidArgument(
      OpenStore("redis://h", StoreOptions{.redis_min_replicas = -1}).status()));
}

TEST(ParseStoreUriTest, MemoryUris) {
  auto p = ParseStoreUri("mem://shared");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->scheme, StoreUri::Scheme::kMemory);
  EXPECT_EQ(p->name, "shared");
}

TEST(ParseStoreUriTest, BadUrisAreInvalidArgumentWithAClearMessage) {
  for (const char* bad :
       {"", "s3://bucket/x", "http://h/x", "file://host/x", "file://",
        "file://relative", "mem://", "redis://", "redis://:6379",
        "redis://h:", "redis://h:0", "redis://h:65536", "redis://h:x",
        "redis://h:-1", "redis://h:+5", "redis://h:6379/x", "redis://h/-1",
        "redis://[::1", "redis://[::1]x"}) {
    auto p = ParseStoreUri(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(p.status())) << bad;
    EXPECT_THAT(std::string(p.status().message()),
                HasSubstr("malformed store URI"))
        << bad;
    EXPECT_TRUE(absl::IsInvalidArgument(OpenStore(bad).status())) << bad;
  }
  EXPECT_THAT(std::string(ParseStoreUri("s3://b").status().message()),
              HasSubstr("unknown scheme 's3'"));
}

TEST(OpenStoreTest, DispatchesOnTheScheme) {
  TempDir dir;
  auto file = OpenStore(dir.path());
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->uri(), "file://" + dir.path());
  auto mem = OpenStore("mem://x");
  ASSERT_TRUE(mem.ok());
  EXPECT_EQ((*mem)->uri(), "mem://x");
  auto redis = OpenStore("redis://127.0.0.1:1/4");  // lazy: no connection yet
  ASSERT_TRUE(redis.ok());
  EXPECT_EQ((*redis)->uri(), "redis://127.0.0.1:1/4");
  auto secret = OpenStore("redis://u:hunter2@127.0.0.1:1");
  ASSERT_TRUE(secret.ok());
  EXPECT_THAT((*secret)->uri(), ::testing::Not(HasSubstr("hunter2")));
}

TEST(OpenStoreTest, MemoryStoresWithTheSameNameShareContents) {
  const std::string uri = "mem://" + UniqueName("shared");
  auto trainer = *OpenStore(uri);
  auto server = *OpenStore(uri);
  auto other = *OpenStore("mem://" + UniqueName("other"));
  ASSERT_EQ(*trainer->Publish(MakeSnapshot("m")), 1);
  EXPECT_EQ(*server->Latest("m"), 1);
  EXPECT_TRUE(absl::IsNotFound(other->Latest("m").status()));
}

TEST(ValidateTest, ModelNames) {
  for (const std::string& good :
       std::vector<std::string>{"a", "A", "0", "9lives", "digits", "m.v2",
                                "a_b-c.d", "x..y", std::string(64, 'z')}) {
    EXPECT_TRUE(ValidateModelName(good).ok()) << good;
  }
  for (const std::string& bad : std::vector<std::string>{
           "", ".", "..", "../x", "a/b", "/abs", ".x", "-x", "_x", "a b", "a:b",
           "a\n", std::string(65, 'z')}) {
    absl::Status s = ValidateModelName(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << bad;
    EXPECT_THAT(std::string(s.message()),
                HasSubstr("[A-Za-z0-9][A-Za-z0-9._-]{0,63}"));
  }
}

TEST(ValidateTest, LabelsMustStartWithALetter) {
  EXPECT_TRUE(ValidateLabel("stable").ok());
  EXPECT_TRUE(ValidateLabel("canary-2").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateLabel("2")));
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateLabel("7up")));
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateLabel("")));
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateLabel("a/b")));
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateLabel(std::string(65, 'a'))));
}

TEST(MemoryStoreTest, FailNextInjectsThatManyFailures) {
  MemoryStore store;
  store.FailNext(MemoryStore::Op::kPublish, absl::UnavailableError("down"), 2);
  EXPECT_TRUE(absl::IsUnavailable(store.Publish(MakeSnapshot("m")).status()));
  EXPECT_TRUE(absl::IsUnavailable(store.Publish(MakeSnapshot("m")).status()));
  EXPECT_EQ(*store.Publish(MakeSnapshot("m")), 1);  // failures used nothing
  store.SetFailure(MemoryStore::Op::kRead, absl::InternalError("disk"));
  EXPECT_TRUE(absl::IsInternal(store.Read("m", 1).status()));
  EXPECT_TRUE(absl::IsInternal(store.Read("m", 1).status()));
  EXPECT_TRUE(absl::IsInternal(ReadLatestValid(store, "m").status()));
  store.ClearFailures();
  EXPECT_TRUE(store.Read("m", 1).ok());
  store.FailNext(MemoryStore::Op::kWatch, absl::UnavailableError("x"));
  EXPECT_TRUE(
      absl::IsUnavailable(store.Watch([](const StoreEvent&) {}).status()));
}

TEST(MemoryStoreTest, FailuresApplyToOneStoreObjectOnly) {
  const std::string name = UniqueName("inject");
  auto a = MemoryStore::Open(name);
  auto b = MemoryStore::Open(name);
  a->SetFailure(MemoryStore::Op::kLatest, absl::UnavailableError("x"));
  ASSERT_EQ(*b->Publish(MakeSnapshot("m")), 1);
  EXPECT_TRUE(absl::IsUnavailable(a->Latest("m").status()));
  EXPECT_EQ(*b->Latest("m"), 1);
}

TEST(ReadLatestValidTest, SkipsCorruptVersionsNewestFirst) {
  MemoryStore store;
  for (int i = 1; i <= 3; ++i) ASSERT_EQ(*store.Publish(MakeSnapshot("m")), i);
  ASSERT_TRUE(store.CorruptForTesting("m", 3).ok());
  ASSERT_TRUE(store.CorruptForTesting("m", 2).ok());
  EXPECT_TRUE(absl::IsDataLoss(store.Read("m", 2).status()));
  auto latest = ReadLatestValid(store, "m");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->version(), 1);
  ASSERT_TRUE(store.CorruptForTesting("m", 1).ok());
  EXPECT_TRUE(absl::IsDataLoss(ReadLatestValid(store, "m").status()));
  EXPECT_TRUE(absl::IsNotFound(ReadLatestValid(store, "none").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ReadLatestValid(store, "../x").status()));
}

TEST(DiffStatesTest, ReportsDeletionsPublicationsAndLabelChanges) {
  StoreState before{{"a", {{1, 2}, {{"stable", 1}}}}, {"gone", {{4}, {}}}};
  StoreState after{{"a", {{2, 3, 4}, {{"stable", 2}}}}, {"new", {{1}, {}}}};
  std::vector<StoreEvent> events = DiffStates(before, after);
  std::vector<std::tuple<StoreEvent::Kind, std::string, int64_t>> got;
  for (const auto& e : events) got.emplace_back(e.kind, e.model, e.version);
  using K = StoreEvent::Kind;
  EXPECT_THAT(got,
              ::testing::ElementsAre(std::make_tuple(K::kDeleted, "a", 1),
                                     std::make_tuple(K::kPublished, "a", 3),
                                     std::make_tuple(K::kPublished, "a", 4),
                                     std::make_tuple(K::kLabelsChanged, "a", 0),
                                     std::make_tuple(K::kDeleted, "gone", 4),
                                     std::make_tuple(K::kPublished, "new", 1)));
  EXPECT_TRUE(DiffStates(after, after).empty());
}

}  // namespace
}  // namespace bnserve::store
