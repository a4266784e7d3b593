#include "store/redis_store.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "model/status_macros.h"
#include "store/envelope.h"
#include "store/strings.h"
#include "store/watch_loop.h"

namespace bnserve::store {

class RedisStore::Connection {
 public:
  explicit Connection(redisContext* c) : c_(c) {}
  ~Connection() {
    if (c_ != nullptr) redisFree(c_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  redisContext* get() const { return c_; }

 private:
  redisContext* c_;
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
          scanner_->Connect();
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

RedisStore::RedisStore(const StoreUri& uri, const StoreOptions& options)
    : uri_(uri), options_(options) {
  IgnoreSigpipeOnce();
}

RedisStore::~RedisStore() = default;

std::string RedisStore::uri() const {
  const bool v6 = uri_.host.find(':') != std::string::npos;
  return Cat("redis://", v6 ? "[" : "", uri_.host, v6 ? "]" : "", ":",
             uri_.port, "/", uri_.db);
}

std::string RedisStore::BlobKey(std::string_view model, int64_t version) {
  return Key(model, Cat("v:", version));
}

absl::StatusOr<std::unique_ptr<RedisStore::Connection>> RedisStore::Connect() {
  {
    absl::MutexLock lock(&mu_);
    if (absl::Now() < next_connect_) {
      return absl::UnavailableError(
          Cat("redis store ", uri(), " unavailable: ", last_error_,
              " (next reconnect attempt in ",
              absl::FormatDuration(next_connect_ - absl::Now()), ")"));
    }
  }
  auto conn = std::make_unique<Connection>(
      redisConnectWithTimeout(uri_.host.c_str(), uri_.port,
                              absl::ToTimeval(options_.redis_connect_timeout)));
  redisContext* c = conn->get();
  absl::Status status;
  if (c == nullptr || c->err != 0) {
    status = ContextErrorStatus(c, uri());
  } else {
    redisSetTimeout(c, absl::ToTimeval(options_.redis_command_timeout));
    redisEnableKeepAlive(c);
    std::vector<std::vector<std::string>> setup;
    if (!uri_.password.empty()) {
      if (uri_.username.empty()) {
        setup.push_back({"AUTH", uri_.password});
      } else {
        setup.push_back({"AUTH", uri_.username, uri_.password});
      }
    }
    if (uri_.db != 0) setup.push_back({"SELECT", Cat(uri_.db)});
    for (const auto& command : setup) {
      std::vector<const char*> argv;
      std::vector<size_t> lens;
      for (const std::string& a : command) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      auto* r = static_cast<redisReply*>(redisCommandArgv(
          c, static_cast<int>(argv.size()), argv.data(), lens.data()));
      Reply reply(r);
      if (r == nullptr) {
        status = ContextErrorStatus(c, uri());
      } else if (r->type == REDIS_REPLY_ERROR) {
        status = ReplyErrorStatus(Str(r));
      }
      if (!status.ok()) break;
    }
  }
  absl::MutexLock lock(&mu_);
  if (!status.ok()) {
    backoff_ = backoff_ == absl::ZeroDuration()
                   ? options_.redis_backoff_initial
                   : std::min(backoff_ * 2, options_.redis_backoff_max);
    next_connect_ = absl::Now() + backoff_;
    last_error_ = std::string(status.message());
    return status;
  }
  backoff_ = absl::ZeroDuration();
  next_connect_ = absl::InfinitePast();
  return conn;
}

absl::StatusOr<std::vector<std::shared_ptr<RedisStore::Reply>>> RedisStore::Run(
    const std::vector<Command>& commands, bool retry_safe) {
  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<Connection> conn;
    {
      absl::MutexLock lock(&mu_);
      while (conn == nullptr && !idle_.empty()) {
        conn = std::move(idle_.back());
        idle_.pop_back();
        if (LooksDead(conn->get())) conn.reset();
      }
    }
    const bool fresh = conn == nullptr;
    if (fresh) {
      BNSERVE_ASSIGN_OR_RETURN(conn, Connect());
    }
    redisContext* c = conn->get();
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const Command& command : commands) {
      argv.clear();
      lens.clear();
      for (std::string_view a : command) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      if (redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(),
                                 lens.data()) != REDIS_OK) {
        return ContextErrorStatus(c, uri());
      }
    }
    std::vector<std::shared_ptr<Reply>> replies;
    bool io_error = false;
    for (size_t i = 0; i < commands.size(); ++i) {
      void* r = nullptr;
      if (redisGetReply(c, &r) != REDIS_OK || r == nullptr) {
        io_error = true;
        break;
      }
      replies.push_back(std::make_shared<Reply>(static_cast<redisReply*>(r)));
    }
    if (io_error) {
      absl::Status status = ContextErrorStatus(c, uri());
      {
        absl::MutexLock lock(&mu_);
        idle_.clear();  // the others are most likely dead too
      }
      if (fresh || !retry_safe || attempt > 0) return status;
      continue;
    }
    {
      absl::MutexLock lock(&mu_);
      if (idle_.size() < kMaxIdleConnections) idle_.push_back(std::move(conn));
    }
    for (const auto& reply : replies) {
      BNSERVE_RETURN_IF_ERROR(CheckNested(reply->r));
    }
    return replies;
  }
}

absl::StatusOr<std::shared_ptr<RedisStore::Reply>> RedisStore::RunOne(
    const Command& command, bool retry_safe) {
  BNSERVE_ASSIGN_OR_RETURN(auto replies, Run({command}, retry_safe));
  return replies[0];
}

void RedisStore::Notify(std::string_view kind, std::string_view model,
                        int64_t version) {
  // Best effort: watchers also poll.
  const std::string message = Cat(kind, " ", model, " ", version);
  (void)RunOne({"PUBLISH", kEventsChannel, message});
}

absl::StatusOr<int64_t> RedisStore::Publish(
    const bnserve::v1::Snapshot& snapshot) {
  const std::string& model = snapshot.model();
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  // Index the model first: ListModels ignores models without versions, so a
  // crash after this leaves nothing visible. Then allocate atomically (one
  // script): never at or below the highest indexed version (the counter may
  // have been lost) nor on an existing blob (an unindexed leftover).
  BNSERVE_ASSIGN_OR_RETURN(
      auto allocated, Run({{"SADD", kModelsKey, model},
                           {"EVAL", kAllocateScript, "3", Key(model, "counter"),
                            Key(model, "versions"), Key(model, "v:")}},
                          true));
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
  BNSERVE_ASSIGN_OR_RETURN(auto replies, Run({{"MULTI"},
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
  auto reply = RunOne({"GET", BlobKey(model, version)});
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
      auto reply, RunOne({"ZREVRANGE", Key(model, "versions"), "0", "0"}));
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
      auto reply, RunOne({"ZRANGE", Key(model, "versions"), "0", "-1"}));
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
  BNSERVE_ASSIGN_OR_RETURN(auto members, RunOne({"SMEMBERS", kModelsKey}));
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
  std::vector<Command> commands;
  for (const std::string& key : keys) commands.push_back({"ZCARD", key});
  BNSERVE_ASSIGN_OR_RETURN(auto counts, Run(commands, true));
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
      auto reply, RunOne({"EVAL", kSetLabelScript, "2", Key(model, "versions"),
                          Key(model, "labels"), label, v}));
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
  BNSERVE_ASSIGN_OR_RETURN(auto reply,
                           RunOne({"HGET", Key(model, "labels"), label}));
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
  BNSERVE_ASSIGN_OR_RETURN(auto reply,
                           RunOne({"HGETALL", Key(model, "labels")}));
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
      auto reply,
      RunOne({"HDEL", Key(model, "labels"), label}, /*retry_safe=*/false));
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
      auto reply,
      RunOne({"EVAL", kDeleteVersionScript, "3", Key(model, "versions"),
              Key(model, "labels"), BlobKey(model, version), v},
             /*retry_safe=*/false));
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
  BNSERVE_RETURN_IF_ERROR(RunOne({"SADD", kCheckpointsKey, member}).status());
  const std::string field = Cat(step);
  return RunOne({"HSET", CheckpointKey(model, job_id), field, envelope})
      .status();
}

absl::StatusOr<std::string> RedisStore::ReadCheckpoint(std::string_view model,
                                                       std::string_view job_id,
                                                       int64_t step) {
  BNSERVE_RETURN_IF_ERROR(ValidateCheckpointKey(model, job_id, step));
  const std::string field = Cat(step);
  auto reply = RunOne({"HGET", CheckpointKey(model, job_id), field});
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
  BNSERVE_ASSIGN_OR_RETURN(auto members, RunOne({"SMEMBERS", kCheckpointsKey}));
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
  std::vector<Command> commands;
  for (const std::string& key : keys) commands.push_back({"HKEYS", key});
  BNSERVE_ASSIGN_OR_RETURN(auto replies, Run(commands, true));
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
  BNSERVE_ASSIGN_OR_RETURN(auto replies,
                           Run({{"HDEL", key, field}, {"HLEN", key}}, true));
  if (replies[1]->r->type == REDIS_REPLY_INTEGER &&
      replies[1]->r->integer == 0) {
    const std::string member = Cat(model, "/", job_id);
    BNSERVE_RETURN_IF_ERROR(RunOne({"SREM", kCheckpointsKey, member}).status());
  }
  return absl::OkStatus();
}

}  // namespace bnserve::store
