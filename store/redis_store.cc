#include "store/redis_store.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/status_macros.h"
#include "store/envelope.h"
#include "store/redis_cluster.h"
#include "store/strings.h"
#include "store/watch_loop.h"

namespace bnserve::store {

class RedisStore::Connection {
 public:
  Connection(redisContext* c, std::string address)
      : c_(c), address_(std::move(address)) {}
  ~Connection() {
    if (c_ != nullptr) redisFree(c_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  redisContext* get() const { return c_; }
  const std::string& address() const { return address_; }

 private:
  redisContext* c_;
  const std::string address_;
};

struct RedisStore::Reply {
  explicit Reply(redisReply* r) : r(r) {}
  ~Reply() {
    if (r != nullptr) freeReplyObject(r);
  }
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;
  redisReply* r;
};

namespace {

constexpr char kModelsKey[] = "bnserve:models";
constexpr char kEventsChannel[] = "bnserve:events";
constexpr size_t kMaxIdleConnections = 8;
// Attempts of one batch while the topology answers "not here / not now"
// (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, READONLY, -REDIRECT): the pauses
// between waits double from 5 ms to 200 ms, so about 2 s in all.
constexpr int kMaxAttempts = 16;

// Allocates the next version of a model: KEYS = counter, versions index,
// blob key prefix. Raises the counter to the highest indexed version if it
// is behind (the counter key was lost; a damaged one counts as 0),
// increments it and skips
// numbers whose blob exists. Returns the version as a string (Lua numbers
// are doubles: Redis' INCR does the integer arithmetic). Comparisons are on
// decimal strings (length, then bytes), which order like the numbers.
constexpr char kAllocateScript[] = R"lua(
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0)[1]
local c = redis.call('GET', KEYS[1])
if not (c and string.match(c, '^[1-9]%d*$')) then
  c = '0'
  redis.call('SET', KEYS[1], c)
end
if top and (#c < #top or (#c == #top and c < top)) then
  redis.call('SET', KEYS[1], top)
end
redis.call('INCR', KEYS[1])
local v = redis.call('GET', KEYS[1])
while redis.call('EXISTS', KEYS[3] .. v) == 1 do
  redis.call('INCR', KEYS[1])
  v = redis.call('GET', KEYS[1])
end
return v
)lua";

std::string Key(std::string_view model, std::string_view suffix) {
  return Cat("bnserve:{", model, "}:", suffix);
}

// Statuses for error replies ("-ERR ...").
absl::Status ReplyErrorStatus(std::string_view message) {
  const std::string text = Cat("redis error: ", message);
  for (std::string_view transient : {"LOADING", "BUSY", "MASTERDOWN",
                                     "TRYAGAIN", "CLUSTERDOWN", "READONLY"}) {
    if (absl::StartsWith(Sv(message), Sv(transient))) {
      return absl::UnavailableError(text);
    }
  }
  if (absl::StartsWith(Sv(message), "MOVED ") ||
      absl::StartsWith(Sv(message), "ASK ")) {
    return absl::FailedPreconditionError(
        Cat(text,
            " (this node belongs to a Redis Cluster: open the store as "
            "redis-cluster://host:port,...)"));
  }
  if (absl::StartsWith(Sv(message), "OOM")) {
    return absl::ResourceExhaustedError(text);
  }
  if (absl::StartsWith(Sv(message), "NOAUTH") ||
      absl::StartsWith(Sv(message), "WRONGPASS") ||
      absl::StartsWith(Sv(message), "NOPERM")) {
    return absl::FailedPreconditionError(text);
  }
  return absl::InternalError(text);
}

absl::Status ContextErrorStatus(const redisContext* c, std::string_view uri) {
  const std::string text = Cat(
      "redis store ", uri,
      " unavailable: ", c == nullptr ? "cannot allocate context" : c->errstr);
  if (c != nullptr && c->err == REDIS_ERR_OOM) {
    return absl::ResourceExhaustedError(text);
  }
  return absl::UnavailableError(text);
}

// Error replies nested in an EXEC result.
absl::Status CheckNested(const redisReply* r) {
  if (r->type == REDIS_REPLY_ERROR) {
    return ReplyErrorStatus(std::string_view(r->str, r->len));
  }
  if (r->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i < r->elements; ++i) {
      BNSERVE_RETURN_IF_ERROR(CheckNested(r->element[i]));
    }
  }
  return absl::OkStatus();
}

std::string_view Str(const redisReply* r) {
  return r->str == nullptr ? std::string_view()
                           : std::string_view(r->str, r->len);
}

absl::Status Unexpected(std::string_view what) {
  return absl::InternalError(Cat("unexpected redis reply to ", what));
}

using Endpoint = StoreUri::Endpoint;

std::string Address(const Endpoint& e) {
  const bool v6 = e.host.find(':') != std::string::npos;
  return Cat(v6 ? "[" : "", e.host, v6 ? "]" : "", ":", e.port);
}

std::string EndpointList(const std::vector<Endpoint>& endpoints) {
  std::vector<std::string> parts;
  for (const Endpoint& e : endpoints) parts.push_back(Address(e));
  return absl::StrJoin(parts, ",");
}

redisReply* CommandArgv(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return static_cast<redisReply*>(redisCommandArgv(
      c, static_cast<int>(argv.size()), argv.data(), lens.data()));
}

// Sends `commands` pipelined (after ASKING if `asking`) and reads their
// replies; a connection error is a status.
absl::StatusOr<RedisStore::Replies> Exchange(
    RedisStore::Connection& conn,
    const std::vector<std::vector<std::string_view>>& commands, bool asking) {
  redisContext* c = conn.get();
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  const std::vector<std::string_view> asking_command = {"ASKING"};
  const size_t first = asking ? 0 : 1;
  for (size_t i = first; i <= commands.size(); ++i) {
    const auto& command = i == 0 ? asking_command : commands[i - 1];
    argv.clear();
    lens.clear();
    for (std::string_view a : command) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(),
                               lens.data()) != REDIS_OK) {
      return ContextErrorStatus(c, conn.address());
    }
  }
  RedisStore::Replies replies;
  for (size_t i = first; i <= commands.size(); ++i) {
    void* r = nullptr;
    if (redisGetReply(c, &r) != REDIS_OK || r == nullptr) {
      return ContextErrorStatus(c, conn.address());
    }
    auto reply =
        std::make_shared<RedisStore::Reply>(static_cast<redisReply*>(r));
    if (i > 0) replies.push_back(std::move(reply));
  }
  return replies;
}

// Why a batch was not executed where it was sent, if it was not.
struct Refusal {
  enum Kind { kNone, kMoved, kAsk, kNotMaster, kWait };
  Kind kind = kNone;
  std::optional<ClusterRedirect> redirect;
  std::string message;
};

// The first top-level error reply that means "not executed, go elsewhere or
// come back": in a transaction the refused command's own reply says so and
// EXEC answers EXECABORT; in a Cluster every key of a batch has one slot.
Refusal Classify(const RedisStore::Replies& replies, StoreUri::Scheme scheme) {
  const bool cluster = scheme == StoreUri::Scheme::kRedisCluster;
  const bool sentinel = scheme == StoreUri::Scheme::kRedisSentinel;
  for (const auto& reply : replies) {
    const redisReply* r = reply->r;
    if (r->type != REDIS_REPLY_ERROR) continue;
    const std::string_view error = Str(r);
    Refusal out;
    out.message = std::string(error);
    if (cluster) {
      out.redirect = ParseClusterRedirect(error);
      if (out.redirect.has_value()) {
        out.kind = out.redirect->kind == ClusterRedirect::Kind::kMoved
                       ? Refusal::kMoved
                       : Refusal::kAsk;
        return out;
      }
      if (absl::StartsWith(Sv(error), "TRYAGAIN") ||
          absl::StartsWith(Sv(error), "CLUSTERDOWN")) {
        out.kind = Refusal::kWait;
        return out;
      }
    }
    if (sentinel && (absl::StartsWith(Sv(error), "READONLY") ||
                     absl::StartsWith(Sv(error), "REDIRECT"))) {
      out.kind = Refusal::kNotMaster;
      return out;
    }
  }
  return Refusal{};
}

// An empty host in a redirect means the node that sent it.
Endpoint RedirectTarget(const ClusterRedirect& redirect, const Endpoint& from) {
  Endpoint to = redirect.to;
  if (to.host.empty()) to.host = from.host;
  return to;
}

// CLUSTER SLOTS: [[start, end, [host, port, id...], replicas...]...]. Fills
// the masters and, per slot, 1 + the index of its master.
bool ParseClusterSlots(const redisReply* r, const Endpoint& asked,
                       std::vector<Endpoint>* nodes,
                       std::vector<uint16_t>* owner) {
  if (r->type != REDIS_REPLY_ARRAY) return false;
  std::map<std::string, uint16_t> index;
  for (size_t i = 0; i < r->elements; ++i) {
    const redisReply* range = r->element[i];
    if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
        range->element[0]->type != REDIS_REPLY_INTEGER ||
        range->element[1]->type != REDIS_REPLY_INTEGER ||
        range->element[2]->type != REDIS_REPLY_ARRAY ||
        range->element[2]->elements < 2 ||
        range->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
      return false;
    }
    const long long start = range->element[0]->integer;
    const long long end = range->element[1]->integer;
    if (start < 0 || end >= kClusterSlots || start > end) return false;
    Endpoint master{std::string(Str(range->element[2]->element[0])),
                    static_cast<int>(range->element[2]->element[1]->integer)};
    if (master.host.empty() || master.host == "?") master.host = asked.host;
    auto [it, added] = index.emplace(Address(master), 0);
    if (added) {
      nodes->push_back(master);
      it->second = static_cast<uint16_t>(nodes->size());
    }
    for (long long slot = start; slot <= end; ++slot) {
      (*owner)[slot] = it->second;
    }
  }
  return !nodes->empty();
}

// An idle pooled connection whose socket is readable has been closed by the
// server (or holds garbage): it must not be reused.
bool LooksDead(const redisContext* c) {
  struct pollfd p = {c->fd, POLLIN, 0};
  return poll(&p, 1, 0) != 0;
}

void IgnoreSigpipeOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current;
    if (sigaction(SIGPIPE, nullptr, &current) == 0 &&
        current.sa_handler == SIG_DFL) {
      signal(SIGPIPE, SIG_IGN);
    }
  });
}

// SetLabel: KEYS versions, labels; ARGV label, version.
constexpr char kSetLabelScript[] = R"lua(
if redis.call('ZSCORE', KEYS[1], ARGV[2]) == false then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
)lua";

// DeleteVersion: KEYS versions, labels, blob; ARGV version.
// Returns {0} absent, {-1, label} labelled, {1} deleted.
constexpr char kDeleteVersionScript[] = R"lua(
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then return {0} end
local labels = redis.call('HGETALL', KEYS[2])
for i = 1, #labels, 2 do
  if labels[i + 1] == ARGV[1] then return {-1, labels[i]} end
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3])
return {1}
)lua";

class RedisWatchHandle final : public WatchHandle {
 public:
  RedisWatchHandle(std::unique_ptr<RedisStore> scanner,
                   std::function<void(const StoreEvent&)> callback,
                   const StoreOptions& options)
      : scanner_(std::move(scanner)), options_(options) {
    loop_ = std::make_unique<WatchLoop>(
        [s = scanner_.get(), only = options.watch_models] {
          return ScanStore(*s, only);
        },
        std::move(callback), options.poll_interval);
    if (options.watch_notifications) {
      stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (stop_fd_ >= 0) thread_ = std::thread([this] { Subscribe(); });
    }
  }

  ~RedisWatchHandle() override {
    if (thread_.joinable()) {
      const uint64_t one = 1;
      ssize_t unused = write(stop_fd_, &one, sizeof(one));
      (void)unused;
      thread_.join();
    }
    if (stop_fd_ >= 0) close(stop_fd_);
    loop_.reset();
  }

 private:
  // Waits up to `d`; true if asked to stop.
  bool WaitForStop(absl::Duration d) {
    struct pollfd p = {stop_fd_, POLLIN, 0};
    return poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(d))) > 0;
  }

  void Subscribe() {
    absl::Duration backoff = options_.redis_backoff_initial;
    while (true) {
      absl::StatusOr<std::unique_ptr<RedisStore::Connection>> conn =
          scanner_->ConnectForSubscribe();
      bool subscribed = false;
      if (conn.ok()) {
        redisContext* c = (*conn)->get();
        auto* reply = static_cast<redisReply*>(
            redisCommand(c, "SUBSCRIBE %s", kEventsChannel));
        subscribed = reply != nullptr && reply->type == REDIS_REPLY_ARRAY;
        if (reply != nullptr) freeReplyObject(reply);
        if (subscribed) {
          backoff = options_.redis_backoff_initial;
          loop_->Wake();  // catch up on anything missed while disconnected
          if (ReadMessages(c)) return;
        }
      }
      if (WaitForStop(std::max(backoff, absl::Milliseconds(10)))) return;
      backoff = std::min(backoff * 2, options_.redis_backoff_max);
    }
  }

  // Wakes the loop for every message until the connection fails (returns
  // false) or the handle stops (returns true).
  bool ReadMessages(redisContext* c) {
    while (true) {
      struct pollfd fds[2] = {{c->fd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      if (fds[1].revents != 0) return true;
      if (redisBufferRead(c) != REDIS_OK) return false;
      bool any = false;
      void* reply = nullptr;
      while (redisGetReplyFromReader(c, &reply) == REDIS_OK &&
             reply != nullptr) {
        freeReplyObject(reply);
        reply = nullptr;
        any = true;
      }
      if (c->err != 0) return false;
      if (any) loop_->Wake();
    }
  }

  std::unique_ptr<RedisStore> scanner_;
  const StoreOptions options_;
  std::unique_ptr<WatchLoop> loop_;
  int stop_fd_ = -1;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<JobRegistry> MakeRedisJobRegistry(RedisStore* store);

RedisStore::RedisStore(const StoreUri& uri, const StoreOptions& options)
    : uri_(uri), options_(options), registry_(MakeRedisJobRegistry(this)) {
  IgnoreSigpipeOnce();
}

RedisStore::~RedisStore() = default;

std::string RedisStore::uri() const {
  switch (uri_.scheme) {
    case StoreUri::Scheme::kRedisSentinel:
      return Cat("redis-sentinel://", EndpointList(uri_.endpoints), "/",
                 uri_.master_name, "/", uri_.db);
    case StoreUri::Scheme::kRedisCluster:
      return Cat("redis-cluster://", EndpointList(uri_.endpoints));
    default:
      return Cat("redis://", Address(Endpoint{uri_.host, uri_.port}), "/",
                 uri_.db);
  }
}

std::string RedisStore::BlobKey(std::string_view model, int64_t version) {
  return Key(model, Cat("v:", version));
}

absl::Status RedisStore::CheckBackoff(const std::string& what) {
  absl::MutexLock lock(&mu_);
  auto it = backoff_.find(what);
  if (it == backoff_.end() || absl::Now() >= it->second.next) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(
      Cat("redis store ", uri(), " unavailable: ", it->second.error,
          " (next attempt in ",
          absl::FormatDuration(it->second.next - absl::Now()), ")"));
}

void RedisStore::RecordAttempt(const std::string& what,
                               const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (status.ok()) {
    backoff_.erase(what);
    return;
  }
  Backoff& b = backoff_[what];
  b.delay = b.delay == absl::ZeroDuration()
                ? options_.redis_backoff_initial
                : std::min(b.delay * 2, options_.redis_backoff_max);
  b.next = absl::Now() + b.delay;
  b.error = std::string(status.message());
}

absl::Status RedisStore::SetUp(Connection& conn, bool sentinel) {
  redisContext* c = conn.get();
  std::vector<std::vector<std::string>> setup;
  if (!sentinel && !uri_.password.empty()) {
    if (uri_.username.empty()) {
      setup.push_back({"AUTH", uri_.password});
    } else {
      setup.push_back({"AUTH", uri_.username, uri_.password});
    }
  }
  if (!sentinel && uri_.db != 0) setup.push_back({"SELECT", Cat(uri_.db)});
  const bool check_role =
      !sentinel && uri_.scheme == StoreUri::Scheme::kRedisSentinel;
  if (check_role) setup.push_back({"ROLE"});
  for (const auto& command : setup) {
    Reply reply(CommandArgv(c, command));
    const redisReply* r = reply.r;
    if (r == nullptr) return ContextErrorStatus(c, uri());
    if (r->type == REDIS_REPLY_ERROR) return ReplyErrorStatus(Str(r));
    if (command[0] == "ROLE" &&
        (r->type != REDIS_REPLY_ARRAY || r->elements == 0 ||
         Str(r->element[0]) != "master")) {
      // Sentinel's answer is stale (the failover is not finished) or the
      // node was demoted: look the master up again.
      return absl::UnavailableError(Cat(
          "redis store ", uri(), ": ", conn.address(),
          " is not the master (ROLE ",
          r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? Str(r->element[0])
                                                          : "?",
          "); a failover is in progress"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RedisStore::Connection>> RedisStore::Connect(
    const Endpoint& node, bool sentinel) {
  const std::string address = Address(node);
  BNSERVE_RETURN_IF_ERROR(CheckBackoff(address));
  auto conn = std::make_unique<Connection>(
      redisConnectWithTimeout(node.host.c_str(), node.port,
                              absl::ToTimeval(options_.redis_connect_timeout)),
      address);
  redisContext* c = conn->get();
  absl::Status status;
  if (c == nullptr || c->err != 0) {
    status = ContextErrorStatus(c, Cat(uri(), " (", address, ")"));
  } else {
    redisSetTimeout(c, absl::ToTimeval(options_.redis_command_timeout));
    redisEnableKeepAlive(c);
    status = SetUp(*conn, sentinel);
  }
  RecordAttempt(address, status);
  if (!status.ok()) {
    if (!sentinel) Forget(node);
    return status;
  }
  return conn;
}

absl::StatusOr<RedisStore::Endpoint> RedisStore::DiscoverMaster() {
  BNSERVE_RETURN_IF_ERROR(CheckBackoff("sentinel"));
  size_t first;
  {
    absl::MutexLock lock(&mu_);
    first = next_sentinel_;
  }
  std::vector<std::string> errors;
  const size_t n = uri_.endpoints.size();
  for (size_t i = 0; i < n; ++i) {
    const Endpoint& sentinel = uri_.endpoints[(first + i) % n];
    absl::StatusOr<Endpoint> master = AskSentinel(sentinel);
    if (master.ok()) {
      absl::MutexLock lock(&mu_);
      next_sentinel_ = (first + i) % n;
      master_ = *master;
      backoff_.erase("sentinel");
      return *master;
    }
    errors.push_back(std::string(master.status().message()));
  }
  const absl::Status status = absl::UnavailableError(
      Cat("redis store ", uri(), " unavailable: no Sentinel named a master '",
          uri_.master_name, "': ", absl::StrJoin(errors, "; ")));
  RecordAttempt("sentinel", status);
  return status;
}

absl::StatusOr<RedisStore::Endpoint> RedisStore::AskSentinel(
    const Endpoint& sentinel) {
  BNSERVE_ASSIGN_OR_RETURN(auto conn, Connect(sentinel, /*sentinel=*/true));
  Reply reply(CommandArgv(
      conn->get(), {"SENTINEL", "get-master-addr-by-name", uri_.master_name}));
  const redisReply* r = reply.r;
  if (r == nullptr) return ContextErrorStatus(conn->get(), Address(sentinel));
  Endpoint master;
  if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
      r->element[0]->type == REDIS_REPLY_STRING &&
      absl::SimpleAtoi(Sv(Str(r->element[1])), &master.port)) {
    master.host = std::string(Str(r->element[0]));
    return master;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    return absl::UnavailableError(Cat(Address(sentinel), ": ", Str(r)));
  }
  return absl::UnavailableError(
      Cat(Address(sentinel), " knows no master '", uri_.master_name, "'"));
}

absl::Status RedisStore::RefreshSlots() {
  std::vector<Endpoint> candidates;
  {
    absl::MutexLock lock(&mu_);
    candidates = cluster_nodes_;
  }
  candidates.insert(candidates.end(), uri_.endpoints.begin(),
                    uri_.endpoints.end());
  std::vector<std::string> errors;
  for (const Endpoint& node : candidates) {
    absl::StatusOr<std::shared_ptr<Reply>> reply = ExchangeOne(node, "SLOTS");
    if (!reply.ok()) {
      errors.push_back(std::string(reply.status().message()));
      continue;
    }
    std::vector<Endpoint> nodes;
    std::vector<uint16_t> owner(kClusterSlots, 0);
    if (!ParseClusterSlots((*reply)->r, node, &nodes, &owner)) {
      errors.push_back(Cat(Address(node), ": unexpected CLUSTER SLOTS reply"));
      continue;
    }
    absl::MutexLock lock(&mu_);
    cluster_nodes_ = std::move(nodes);
    slot_owner_ = std::move(owner);
    slots_stale_ = false;
    return absl::OkStatus();
  }
  return absl::UnavailableError(
      Cat("redis store ", uri(), " unavailable: no Cluster node answered ",
          "CLUSTER SLOTS: ", absl::StrJoin(errors, "; ")));
}

absl::StatusOr<std::shared_ptr<RedisStore::Reply>> RedisStore::ExchangeOne(
    const Endpoint& node, std::string_view what) {
  std::unique_ptr<Connection> conn = TakeIdle(node);
  if (conn == nullptr) {
    BNSERVE_ASSIGN_OR_RETURN(conn, Connect(node));
  }
  auto reply = std::make_shared<Reply>(
      CommandArgv(conn->get(), {"CLUSTER", std::string(what)}));
  if (reply->r == nullptr) {
    return ContextErrorStatus(conn->get(), Address(node));
  }
  GiveBack(node, std::move(conn));
  if (reply->r->type == REDIS_REPLY_ERROR) {
    return absl::UnavailableError(Cat(Address(node), ": ", Str(reply->r)));
  }
  return reply;
}

absl::StatusOr<RedisStore::Endpoint> RedisStore::Locate(
    std::string_view route_key) {
  switch (uri_.scheme) {
    case StoreUri::Scheme::kRedisSentinel: {
      {
        absl::MutexLock lock(&mu_);
        if (master_.has_value()) return *master_;
      }
      return DiscoverMaster();
    }
    case StoreUri::Scheme::kRedisCluster:
      break;
    default:
      return uri_.endpoints[0];
  }
  bool stale;
  {
    absl::MutexLock lock(&mu_);
    stale = slots_stale_;
  }
  if (stale) {
    absl::Status refreshed = RefreshSlots();
    absl::MutexLock lock(&mu_);
    if (!refreshed.ok() && cluster_nodes_.empty()) return refreshed;
  }
  absl::MutexLock lock(&mu_);
  if (!route_key.empty() && !slot_owner_.empty()) {
    const uint16_t owner = slot_owner_[ClusterSlot(route_key)];
    if (owner != 0) return cluster_nodes_[owner - 1];
  }
  // No key, or an unassigned slot (the node answers CLUSTERDOWN or MOVED).
  return cluster_nodes_[next_node_++ % cluster_nodes_.size()];
}

void RedisStore::Forget(const Endpoint& node) {
  absl::MutexLock lock(&mu_);
  idle_.erase(Address(node));
  if (uri_.scheme == StoreUri::Scheme::kRedisSentinel) {
    // The Sentinel that named it may not have heard of a failover yet
    // (Sentinels learn the new configuration from each other within
    // seconds): ask the next one first.
    master_.reset();
    next_sentinel_ = (next_sentinel_ + 1) % uri_.endpoints.size();
  }
  if (uri_.scheme == StoreUri::Scheme::kRedisCluster) slots_stale_ = true;
}

void RedisStore::NoteMoved(int slot, const Endpoint& to) {
  absl::MutexLock lock(&mu_);
  slots_stale_ = true;  // a MOVED usually means more than one slot moved
  if (slot_owner_.empty()) return;
  for (size_t i = 0; i < cluster_nodes_.size(); ++i) {
    if (Address(cluster_nodes_[i]) == Address(to)) {
      slot_owner_[slot] = static_cast<uint16_t>(i + 1);
      return;
    }
  }
  cluster_nodes_.push_back(to);
  slot_owner_[slot] = static_cast<uint16_t>(cluster_nodes_.size());
}

std::unique_ptr<RedisStore::Connection> RedisStore::TakeIdle(
    const Endpoint& node) {
  absl::MutexLock lock(&mu_);
  auto it = idle_.find(Address(node));
  if (it == idle_.end()) return nullptr;
  std::unique_ptr<Connection> conn;
  while (conn == nullptr && !it->second.empty()) {
    conn = std::move(it->second.back());
    it->second.pop_back();
    if (LooksDead(conn->get())) conn.reset();
  }
  return conn;
}

void RedisStore::GiveBack(const Endpoint& node,
                          std::unique_ptr<Connection> conn) {
  absl::MutexLock lock(&mu_);
  auto& pool = idle_[Address(node)];
  if (pool.size() < kMaxIdleConnections) pool.push_back(std::move(conn));
}

absl::StatusOr<std::unique_ptr<RedisStore::Connection>>
RedisStore::ConnectForSubscribe() {
  if (uri_.scheme == StoreUri::Scheme::kRedisSentinel) {
    absl::MutexLock lock(&mu_);
    master_.reset();  // ask the Sentinels afresh
  }
  BNSERVE_ASSIGN_OR_RETURN(Endpoint node, Locate(""));
  return Connect(node);
}

absl::StatusOr<RedisStore::Replies> RedisStore::Run(
    std::string_view route_key, const std::vector<Command>& commands,
    bool retry_safe) {
  std::optional<Endpoint> ask;
  absl::Duration pause = absl::Milliseconds(5);
  bool retried_io = false;
  std::string last;
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    Endpoint node;
    if (ask.has_value()) {
      node = *ask;
    } else {
      BNSERVE_ASSIGN_OR_RETURN(node, Locate(route_key));
    }
    const bool asking = ask.has_value();
    ask.reset();
    std::unique_ptr<Connection> conn = TakeIdle(node);
    const bool fresh = conn == nullptr;
    if (fresh) {
      BNSERVE_ASSIGN_OR_RETURN(conn, Connect(node));
    }
    absl::StatusOr<Replies> replies = Exchange(*conn, commands, asking);
    if (!replies.ok()) {
      Forget(node);  // the other pooled connections are most likely dead too
      if (fresh || !retry_safe || retried_io) return replies.status();
      retried_io = true;
      continue;
    }
    GiveBack(node, std::move(conn));
    const Refusal refusal = Classify(*replies, uri_.scheme);
    switch (refusal.kind) {
      case Refusal::kNone:
        for (const auto& reply : *replies) {
          BNSERVE_RETURN_IF_ERROR(CheckNested(reply->r));
        }
        return *std::move(replies);
      case Refusal::kMoved:
        NoteMoved(refusal.redirect->slot,
                  RedirectTarget(*refusal.redirect, node));
        break;
      case Refusal::kAsk:
        ask = RedirectTarget(*refusal.redirect, node);
        break;
      case Refusal::kNotMaster:
        Forget(node);
        [[fallthrough]];
      case Refusal::kWait:
        absl::SleepFor(pause);
        pause = std::min(pause * 2, absl::Milliseconds(200));
        break;
    }
    last = refusal.message;
  }
  return absl::UnavailableError(Cat("redis store ", uri(),
                                    " unavailable: still refused after ",
                                    kMaxAttempts, " attempts: ", last));
}

absl::StatusOr<RedisStore::Replies> RedisStore::RunWrite(
    std::string_view route_key, const std::vector<Command>& commands,
    bool retry_safe) {
  const int n = options_.redis_min_replicas;
  if (n <= 0) return Run(route_key, commands, retry_safe);
  const std::string replicas = Cat(n);
  const std::string timeout = Cat(std::max<int64_t>(
      1, absl::ToInt64Milliseconds(options_.redis_wait_timeout)));
  std::vector<Command> with_wait = commands;
  with_wait.push_back({"WAIT", replicas, timeout});
  BNSERVE_ASSIGN_OR_RETURN(Replies replies,
                           Run(route_key, with_wait, retry_safe));
  const redisReply* wait = replies.back()->r;
  if (wait->type != REDIS_REPLY_INTEGER) return Unexpected("WAIT");
  if (wait->integer < n) {
    return absl::UnavailableError(
        Cat("redis store ", uri(), ": the write reached ", wait->integer,
            " of the ", n, " replicas required (redis_min_replicas) within ",
            absl::FormatDuration(options_.redis_wait_timeout),
            "; it is not acknowledged and may be lost if the master fails"));
  }
  replies.pop_back();
  return replies;
}

absl::StatusOr<std::shared_ptr<RedisStore::Reply>> RedisStore::RunOne(
    std::string_view route_key, const Command& command, bool retry_safe) {
  BNSERVE_ASSIGN_OR_RETURN(auto replies, Run(route_key, {command}, retry_safe));
  return replies[0];
}

void RedisStore::Notify(std::string_view kind, std::string_view model,
                        int64_t version) {
  // Best effort: watchers also poll.
  const std::string message = Cat(kind, " ", model, " ", version);
  (void)RunOne("", {"PUBLISH", kEventsChannel, message});
}

absl::StatusOr<int64_t> RedisStore::Publish(
    const bnserve::v1::Snapshot& snapshot) {
  const std::string& model = snapshot.model();
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  // Index the model first: ListModels ignores models without versions, so a
  // crash after this leaves nothing visible. Then allocate atomically (one
  // script): never at or below the highest indexed version (the counter may
  // have been lost) nor on an existing blob (an unindexed leftover).
  const std::string tag = Key(model, "");
  const std::string counter_key = Key(model, "counter");
  const std::string versions_key = Key(model, "versions");
  const std::string blob_prefix = Key(model, "v:");
  const Command allocate = {"EVAL",      kAllocateScript, "3",
                            counter_key, versions_key,    blob_prefix};
  Replies allocated;
  if (uri_.scheme == StoreUri::Scheme::kRedisCluster) {
    // Another slot, so its own batch (and its own WAIT).
    BNSERVE_RETURN_IF_ERROR(
        RunWrite(kModelsKey, {{"SADD", kModelsKey, model}}, true).status());
    BNSERVE_ASSIGN_OR_RETURN(allocated, Run(tag, {allocate}, true));
    allocated.insert(allocated.begin(), nullptr);
  } else {
    BNSERVE_ASSIGN_OR_RETURN(
        allocated, Run(tag, {{"SADD", kModelsKey, model}, allocate}, true));
  }
  int64_t version = 0;
  if (allocated[1]->r->type != REDIS_REPLY_STRING) {
    return Unexpected("version allocation");
  }
  if (!ParseVersion(Str(allocated[1]->r), &version)) {
    return VersionsExhausted(model);
  }

  bnserve::v1::Snapshot copy = snapshot;
  copy.set_version(version);
  BNSERVE_ASSIGN_OR_RETURN(std::string envelope, EncodeStoredSnapshot(copy));
  copy.Clear();
  const std::string blob = BlobKey(model, version);
  const std::string versions = Key(model, "versions");
  const std::string v = Cat(version);
  // NX: a blob is never overwritten, whatever happened to the counter.
  BNSERVE_ASSIGN_OR_RETURN(auto replies,
                           RunWrite(tag,
                                    {{"MULTI"},
                                     {"SET", blob, envelope, "NX"},
                                     {"ZADD", versions, v, v},
                                     {"EXEC"}},
                                    /*retry_safe=*/true));
  const redisReply* exec = replies[3]->r;
  if (exec->type != REDIS_REPLY_ARRAY || exec->elements != 2) {
    return absl::InternalError(Cat("redis transaction publishing ", model, "/",
                                   version, " was aborted"));
  }
  if (exec->element[0]->type == REDIS_REPLY_NIL) {
    return absl::InternalError(Cat("redis store: ", blob,
                                   " appeared while publishing ", model, "/",
                                   version, "; it was left as it was"));
  }
  Notify("published", model, version);
  return version;
}

absl::StatusOr<bnserve::v1::Snapshot> RedisStore::Read(std::string_view model,
                                                       int64_t version) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  if (version < 1) {
    return absl::NotFoundError(
        Cat("model '", model, "' has no version ", version));
  }
  auto reply =
      RunOne(BlobKey(model, version), {"GET", BlobKey(model, version)});
  if (!reply.ok() && absl::StrContains(reply.status().message(), "WRONGTYPE")) {
    // Outside damage to this version's key: like a checksum failure.
    return absl::DataLossError(Cat("snapshot ", model, "/", version,
                                   " is corrupt: key ", BlobKey(model, version),
                                   " holds the wrong type of value"));
  }
  if (!reply.ok()) return reply.status();
  if ((*reply)->r->type == REDIS_REPLY_NIL) {
    return absl::NotFoundError(
        Cat("model '", model, "' has no version ", version));
  }
  if ((*reply)->r->type != REDIS_REPLY_STRING) return Unexpected("GET");
  return DecodeStoredSnapshot(Str((*reply)->r), model, version);
}

absl::StatusOr<int64_t> RedisStore::Latest(std::string_view model) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_ASSIGN_OR_RETURN(
      auto reply, RunOne(Key(model, "versions"),
                         {"ZREVRANGE", Key(model, "versions"), "0", "0"}));
  const redisReply* r = reply->r;
  if (r->type != REDIS_REPLY_ARRAY) return Unexpected("ZREVRANGE");
  int64_t v;
  if (r->elements == 0 || !ParseVersion(Str(r->element[0]), &v)) {
    return absl::NotFoundError(Cat("model '", model, "' has no versions"));
  }
  return v;
}

absl::StatusOr<std::vector<int64_t>> RedisStore::ListVersions(
    std::string_view model) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_ASSIGN_OR_RETURN(
      auto reply, RunOne(Key(model, "versions"),
                         {"ZRANGE", Key(model, "versions"), "0", "-1"}));
  const redisReply* r = reply->r;
  if (r->type != REDIS_REPLY_ARRAY) return Unexpected("ZRANGE");
  std::vector<int64_t> versions;
  for (size_t i = 0; i < r->elements; ++i) {
    int64_t v;
    if (ParseVersion(Str(r->element[i]), &v)) versions.push_back(v);
  }
  std::sort(versions.begin(), versions.end());
  return versions;
}

absl::StatusOr<std::vector<std::string>> RedisStore::ListModels() {
  BNSERVE_ASSIGN_OR_RETURN(auto members,
                           RunOne(kModelsKey, {"SMEMBERS", kModelsKey}));
  if (members->r->type != REDIS_REPLY_ARRAY) return Unexpected("SMEMBERS");
  std::vector<std::string> names;
  for (size_t i = 0; i < members->r->elements; ++i) {
    std::string name(Str(members->r->element[i]));
    if (ValidateModelName(name).ok()) names.push_back(std::move(name));
  }
  std::vector<std::string> models;
  if (names.empty()) return models;
  std::vector<std::string> keys;
  for (const std::string& name : names) keys.push_back(Key(name, "versions"));
  Replies counts;
  if (uri_.scheme == StoreUri::Scheme::kRedisCluster) {
    for (const std::string& key : keys) {  // one slot per model
      BNSERVE_ASSIGN_OR_RETURN(auto count, RunOne(key, {"ZCARD", key}));
      counts.push_back(std::move(count));
    }
  } else {
    std::vector<Command> commands;
    for (const std::string& key : keys) commands.push_back({"ZCARD", key});
    BNSERVE_ASSIGN_OR_RETURN(counts, Run("", commands, true));
  }
  for (size_t i = 0; i < names.size(); ++i) {
    if (counts[i]->r->type == REDIS_REPLY_INTEGER && counts[i]->r->integer > 0)
      models.push_back(names[i]);
  }
  std::sort(models.begin(), models.end());
  return models;
}

absl::Status RedisStore::SetLabel(std::string_view model,
                                  std::string_view label, int64_t version) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(ValidateLabel(label));
  const std::string v = Cat(version);
  BNSERVE_ASSIGN_OR_RETURN(
      auto replies,
      RunWrite(Key(model, "labels"),
               {{"EVAL", kSetLabelScript, "2", Key(model, "versions"),
                 Key(model, "labels"), label, v}},
               true));
  const std::shared_ptr<Reply>& reply = replies[0];
  if (reply->r->type != REDIS_REPLY_INTEGER) return Unexpected("SetLabel");
  if (reply->r->integer == 0) {
    return absl::NotFoundError(
        Cat("model '", model, "' has no version ", version));
  }
  Notify("labels", model, 0);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> RedisStore::ResolveLabel(std::string_view model,
                                                 std::string_view label) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(ValidateLabel(label));
  BNSERVE_ASSIGN_OR_RETURN(
      auto reply,
      RunOne(Key(model, "labels"), {"HGET", Key(model, "labels"), label}));
  if (reply->r->type == REDIS_REPLY_NIL) {
    return absl::NotFoundError(
        Cat("model '", model, "' has no label '", label, "'"));
  }
  int64_t v;
  if (reply->r->type != REDIS_REPLY_STRING ||
      !ParseVersion(Str(reply->r), &v)) {
    return absl::DataLossError(
        Cat("label '", label, "' of model '", model, "' is corrupt"));
  }
  return v;
}

absl::StatusOr<std::map<std::string, int64_t>> RedisStore::ListLabels(
    std::string_view model) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_ASSIGN_OR_RETURN(
      auto reply,
      RunOne(Key(model, "labels"), {"HGETALL", Key(model, "labels")}));
  const redisReply* r = reply->r;
  if (r->type != REDIS_REPLY_ARRAY) return Unexpected("HGETALL");
  std::map<std::string, int64_t> labels;
  for (size_t i = 0; i + 1 < r->elements; i += 2) {
    int64_t v;
    if (ParseVersion(Str(r->element[i + 1]), &v)) {
      labels[std::string(Str(r->element[i]))] = v;
    }
  }
  return labels;
}

absl::Status RedisStore::DeleteLabel(std::string_view model,
                                     std::string_view label) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(ValidateLabel(label));
  BNSERVE_ASSIGN_OR_RETURN(
      auto replies,
      RunWrite(Key(model, "labels"), {{"HDEL", Key(model, "labels"), label}},
               /*retry_safe=*/false));
  const std::shared_ptr<Reply>& reply = replies[0];
  if (reply->r->type != REDIS_REPLY_INTEGER) return Unexpected("HDEL");
  if (reply->r->integer == 0) {
    return absl::NotFoundError(
        Cat("model '", model, "' has no label '", label, "'"));
  }
  Notify("labels", model, 0);
  return absl::OkStatus();
}

absl::Status RedisStore::DeleteVersion(std::string_view model,
                                       int64_t version) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  const std::string v = Cat(version);
  BNSERVE_ASSIGN_OR_RETURN(
      auto replies,
      RunWrite(Key(model, "versions"),
               {{"EVAL", kDeleteVersionScript, "3", Key(model, "versions"),
                 Key(model, "labels"), BlobKey(model, version), v}},
               /*retry_safe=*/false));
  const std::shared_ptr<Reply>& reply = replies[0];
  const redisReply* r = reply->r;
  if (r->type != REDIS_REPLY_ARRAY || r->elements == 0 ||
      r->element[0]->type != REDIS_REPLY_INTEGER) {
    return Unexpected("DeleteVersion");
  }
  switch (r->element[0]->integer) {
    case 0:
      return absl::NotFoundError(
          Cat("model '", model, "' has no version ", version));
    case -1:
      return absl::FailedPreconditionError(
          Cat("version ", version, " of model '", model, "' is labelled '",
              r->elements > 1 ? Str(r->element[1]) : "",
              "'; move or delete the label first"));
    default:
      break;
  }
  Notify("deleted", model, version);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> RedisStore::ApplyRetention(
    std::string_view model, int keep_newest) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  return ApplyRetentionGeneric(*this, model, keep_newest);
}

absl::StatusOr<std::unique_ptr<WatchHandle>> RedisStore::Watch(
    std::function<void(const StoreEvent&)> callback) {
  return std::unique_ptr<WatchHandle>(std::make_unique<RedisWatchHandle>(
      std::make_unique<RedisStore>(uri_, options_), std::move(callback),
      options_));
}

// Checkpoints: hash bnserve:{<model>}:ckpt:<job_id>, field "<step>" ->
// StoredCheckpoint envelope (HSET replaces one field atomically), indexed by
// the set bnserve:checkpoints of "<model>/<job_id>" (written before the
// hash, like bnserve:models; ListCheckpoints skips empty hashes).
namespace {

constexpr char kCheckpointsKey[] = "bnserve:checkpoints";

std::string CheckpointKey(std::string_view model, std::string_view job_id) {
  return Key(model, Cat("ckpt:", job_id));
}

}  // namespace

absl::Status RedisStore::WriteCheckpoint(std::string_view model,
                                         std::string_view job_id, int64_t step,
                                         std::string_view payload) {
  BNSERVE_RETURN_IF_ERROR(ValidateCheckpointKey(model, job_id, step));
  BNSERVE_ASSIGN_OR_RETURN(
      std::string envelope,
      EncodeStoredCheckpoint(model, job_id, step, payload));
  const std::string member = Cat(model, "/", job_id);
  BNSERVE_RETURN_IF_ERROR(
      RunWrite(kCheckpointsKey, {{"SADD", kCheckpointsKey, member}}, true)
          .status());
  const std::string key = CheckpointKey(model, job_id);
  const std::string field = Cat(step);
  return RunWrite(key, {{"HSET", key, field, envelope}}, true).status();
}

absl::StatusOr<std::string> RedisStore::ReadCheckpoint(std::string_view model,
                                                       std::string_view job_id,
                                                       int64_t step) {
  BNSERVE_RETURN_IF_ERROR(ValidateCheckpointKey(model, job_id, step));
  const std::string field = Cat(step);
  const std::string key = CheckpointKey(model, job_id);
  auto reply = RunOne(key, {"HGET", key, field});
  if (!reply.ok() && absl::StrContains(reply.status().message(), "WRONGTYPE")) {
    return absl::DataLossError(
        Cat("checkpoint ", model, "/", job_id, " is corrupt: key ",
            CheckpointKey(model, job_id), " holds the wrong type of value"));
  }
  if (!reply.ok()) return reply.status();
  if ((*reply)->r->type == REDIS_REPLY_NIL) {
    return absl::NotFoundError(Cat("no checkpoint of job ", job_id, " of '",
                                   model, "' at step ", step));
  }
  if ((*reply)->r->type != REDIS_REPLY_STRING) return Unexpected("HGET");
  return DecodeStoredCheckpoint(Str((*reply)->r), model, job_id, step);
}

absl::StatusOr<std::vector<CheckpointRef>> RedisStore::ListCheckpoints() {
  BNSERVE_ASSIGN_OR_RETURN(
      auto members, RunOne(kCheckpointsKey, {"SMEMBERS", kCheckpointsKey}));
  if (members->r->type != REDIS_REPLY_ARRAY) return Unexpected("SMEMBERS");
  std::vector<std::pair<std::string, std::string>> jobs;
  for (size_t i = 0; i < members->r->elements; ++i) {
    const std::string_view member = Str(members->r->element[i]);
    const size_t slash = member.find('/');
    if (slash == std::string_view::npos) continue;
    std::string model(member.substr(0, slash));
    std::string job(member.substr(slash + 1));
    if (ValidateModelName(model).ok() && ValidateJobId(job).ok()) {
      jobs.emplace_back(std::move(model), std::move(job));
    }
  }
  std::vector<CheckpointRef> out;
  if (jobs.empty()) return out;
  std::vector<std::string> keys;
  for (const auto& [model, job] : jobs)
    keys.push_back(CheckpointKey(model, job));
  Replies replies;
  if (uri_.scheme == StoreUri::Scheme::kRedisCluster) {
    for (const std::string& key : keys) {  // one slot per model
      BNSERVE_ASSIGN_OR_RETURN(auto fields, RunOne(key, {"HKEYS", key}));
      replies.push_back(std::move(fields));
    }
  } else {
    std::vector<Command> commands;
    for (const std::string& key : keys) commands.push_back({"HKEYS", key});
    BNSERVE_ASSIGN_OR_RETURN(replies, Run("", commands, true));
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    const redisReply* r = replies[i]->r;
    if (r->type != REDIS_REPLY_ARRAY) continue;
    for (size_t j = 0; j < r->elements; ++j) {
      const std::string_view field = Str(r->element[j]);
      int64_t step;
      if (absl::SimpleAtoi(Sv(field), &step) && step >= 0 &&
          Cat(step) == field) {
        out.push_back({jobs[i].first, jobs[i].second, step});
      }
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::Status RedisStore::DeleteCheckpoint(std::string_view model,
                                          std::string_view job_id,
                                          int64_t step) {
  BNSERVE_RETURN_IF_ERROR(ValidateCheckpointKey(model, job_id, step));
  const std::string key = CheckpointKey(model, job_id);
  const std::string field = Cat(step);
  BNSERVE_ASSIGN_OR_RETURN(
      auto replies, RunWrite(key, {{"HDEL", key, field}, {"HLEN", key}}, true));
  if (replies[1]->r->type == REDIS_REPLY_INTEGER &&
      replies[1]->r->integer == 0) {
    const std::string member = Cat(model, "/", job_id);
    BNSERVE_RETURN_IF_ERROR(
        RunWrite(kCheckpointsKey, {{"SREM", kCheckpointsKey, member}}, true)
            .status());
  }
  return absl::OkStatus();
}

// The job registry (see store/job_registry.h for the keys). Leases are
// single Lua scripts, so "who holds it" is checked atomically with the
// write; every key of a job shares its model's hash tag and each batch is
// routed by it.
namespace {

constexpr char kJobsKey[] = "bnserve:jobs";
constexpr char kJobsCounterKey[] = "bnserve:jobs:next";

// KEYS = lease; ARGV = owner, ttl ms. Returns {owner, pttl}.
constexpr char kAcquireScript[] = R"lua(
local o = redis.call('GET', KEYS[1])
if (not o) or o == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {ARGV[1], tonumber(ARGV[2])}
end
return {o, redis.call('PTTL', KEYS[1])}
)lua";

// KEYS = lease, job; ARGV = owner, ttl ms, summary ('' = keep). Returns -1
// (not the owner), 0, or 1 (a cancel was requested).
constexpr char kRenewScript[] = R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'summary', ARGV[3]) end
if redis.call('HEXISTS', KEYS[2], 'cancel') == 1 then return 1 end
return 0
)lua";

constexpr char kReleaseScript[] = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
)lua";

std::string JobKey(std::string_view model, std::string_view job_id) {
  return Key(model, Cat("job:", job_id));
}
std::string LeaseKey(std::string_view model, std::string_view job_id) {
  return Key(model, Cat("lease:", job_id));
}
std::string TtlMs(absl::Duration ttl) {
  return Cat(std::max<int64_t>(1, absl::ToInt64Milliseconds(ttl)));
}

}  // namespace

class RedisJobRegistry final : public JobRegistry {
 public:
  explicit RedisJobRegistry(RedisStore* store) : store_(store) {}
  bool shared() const override { return true; }

  absl::StatusOr<int64_t> NextJobNumber() override {
    BNSERVE_ASSIGN_OR_RETURN(
        auto replies,
        store_->RunWrite(kJobsCounterKey, {{"INCR", kJobsCounterKey}}, true));
    if (replies[0]->r->type != REDIS_REPLY_INTEGER) return Unexpected("INCR");
    return replies[0]->r->integer;
  }

  absl::StatusOr<JobLease> Acquire(std::string_view model,
                                   std::string_view job_id,
                                   std::string_view owner,
                                   absl::Duration ttl) override {
    BNSERVE_RETURN_IF_ERROR(ValidateLeaseArgs(model, job_id, owner, ttl));
    const std::string lease = LeaseKey(model, job_id);
    const std::string ms = TtlMs(ttl);
    BNSERVE_ASSIGN_OR_RETURN(
        auto replies,
        store_->RunWrite(
            lease, {{"EVAL", kAcquireScript, "1", lease, owner, ms}}, true));
    const redisReply* r = replies[0]->r;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[1]->type != REDIS_REPLY_INTEGER) {
      return Unexpected("the lease script");
    }
    return JobLease{
        std::string(Str(r->element[0])),
        absl::Milliseconds(std::max<long long>(0, r->element[1]->integer))};
  }

  absl::StatusOr<bool> Renew(std::string_view model, std::string_view job_id,
                             std::string_view owner, absl::Duration ttl,
                             std::string_view summary) override {
    BNSERVE_RETURN_IF_ERROR(ValidateLeaseArgs(model, job_id, owner, ttl));
    const std::string lease = LeaseKey(model, job_id);
    const std::string job = JobKey(model, job_id);
    const std::string ms = TtlMs(ttl);
    BNSERVE_ASSIGN_OR_RETURN(
        auto replies, store_->RunWrite(lease,
                                       {{"EVAL", kRenewScript, "2", lease, job,
                                         owner, ms, summary}},
                                       true));
    const redisReply* r = replies[0]->r;
    if (r->type != REDIS_REPLY_INTEGER) return Unexpected("the renew script");
    if (r->integer < 0) {
      return absl::AbortedError(Cat("the lease of job ", job_id, " of '", model,
                                    "' is not held by ", owner, " any more"));
    }
    return r->integer == 1;
  }

  absl::Status Release(std::string_view model, std::string_view job_id,
                       std::string_view owner) override {
    BNSERVE_RETURN_IF_ERROR(
        ValidateLeaseArgs(model, job_id, owner, absl::Milliseconds(1)));
    const std::string lease = LeaseKey(model, job_id);
    return store_
        ->RunWrite(lease, {{"EVAL", kReleaseScript, "1", lease, owner}}, true)
        .status();
  }

  absl::Status Put(std::string_view model, std::string_view job_id,
                   std::string_view summary, bool only_if_absent) override {
    BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
    BNSERVE_RETURN_IF_ERROR(ValidateJobId(job_id));
    BNSERVE_RETURN_IF_ERROR(
        store_->RunWrite(kJobsKey, {{"HSET", kJobsKey, job_id, model}}, true)
            .status());
    const std::string job = JobKey(model, job_id);
    return store_
        ->RunWrite(
            job,
            {{only_if_absent ? "HSETNX" : "HSET", job, "summary", summary}},
            true)
        .status();
  }

  absl::StatusOr<JobEntry> Get(std::string_view job_id) override {
    BNSERVE_RETURN_IF_ERROR(ValidateJobId(job_id));
    BNSERVE_ASSIGN_OR_RETURN(
        auto model, store_->RunOne(kJobsKey, {"HGET", kJobsKey, job_id}));
    if (model->r->type != REDIS_REPLY_STRING ||
        !ValidateModelName(Str(model->r)).ok()) {
      return absl::NotFoundError(Cat("no job '", job_id, "' in the registry"));
    }
    return Read(std::string(Str(model->r)), std::string(job_id));
  }

  absl::StatusOr<std::vector<JobEntry>> List() override {
    BNSERVE_ASSIGN_OR_RETURN(auto all,
                             store_->RunOne(kJobsKey, {"HGETALL", kJobsKey}));
    if (all->r->type != REDIS_REPLY_ARRAY) return Unexpected("HGETALL");
    std::map<std::string, std::string> jobs;  // sorted by id
    for (size_t i = 0; i + 1 < all->r->elements; i += 2) {
      const std::string_view id = Str(all->r->element[i]);
      const std::string_view model = Str(all->r->element[i + 1]);
      if (ValidateJobId(id).ok() && ValidateModelName(model).ok()) {
        jobs.emplace(id, model);
      }
    }
    std::vector<JobEntry> out;
    for (const auto& [id, model] : jobs) {
      BNSERVE_ASSIGN_OR_RETURN(JobEntry entry, Read(model, id));
      out.push_back(std::move(entry));
    }
    return out;
  }

  absl::Status RequestCancel(std::string_view job_id) override {
    BNSERVE_ASSIGN_OR_RETURN(JobEntry entry, Get(job_id));
    const std::string job = JobKey(entry.model, job_id);
    return store_->RunWrite(job, {{"HSET", job, "cancel", "1"}}, true).status();
  }

  absl::Status Remove(std::string_view model,
                      std::string_view job_id) override {
    BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
    BNSERVE_RETURN_IF_ERROR(ValidateJobId(job_id));
    const std::string job = JobKey(model, job_id);
    const std::string lease = LeaseKey(model, job_id);
    BNSERVE_RETURN_IF_ERROR(
        store_->RunWrite(job, {{"DEL", job, lease}}, true).status());
    return store_->RunWrite(kJobsKey, {{"HDEL", kJobsKey, job_id}}, true)
        .status();
  }

 private:
  // The entry of a job whose model is known (one batch in its slot).
  absl::StatusOr<JobEntry> Read(const std::string& model,
                                const std::string& job_id) {
    const std::string job = JobKey(model, job_id);
    const std::string lease = LeaseKey(model, job_id);
    BNSERVE_ASSIGN_OR_RETURN(auto replies,
                             store_->Run(job,
                                         {{"HGET", job, "summary"},
                                          {"HEXISTS", job, "cancel"},
                                          {"GET", lease},
                                          {"PTTL", lease}},
                                         true));
    JobEntry entry{model, job_id, {}, false, {}};
    if (replies[0]->r->type == REDIS_REPLY_STRING) {
      entry.summary = std::string(Str(replies[0]->r));
    }
    entry.cancel_requested = replies[1]->r->type == REDIS_REPLY_INTEGER &&
                             replies[1]->r->integer == 1;
    if (replies[2]->r->type == REDIS_REPLY_STRING &&
        replies[3]->r->type == REDIS_REPLY_INTEGER &&
        replies[3]->r->integer > 0) {
      entry.lease = {std::string(Str(replies[2]->r)),
                     absl::Milliseconds(replies[3]->r->integer)};
    }
    return entry;
  }

  RedisStore* const store_;
};

std::unique_ptr<JobRegistry> MakeRedisJobRegistry(RedisStore* store) {
  return std::make_unique<RedisJobRegistry>(store);
}

}  // namespace bnserve::store
