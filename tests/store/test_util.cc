#include "tests/store/test_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/common/ports.h"

namespace bnserve::store::testing {

bnserve::v1::Snapshot MakeSnapshot(const std::string& model, int weights,
                                   int64_t tag) {
  bnserve::v1::Snapshot s;
  s.set_model(model);
  s.set_version(12345);  // the store must overwrite it
  s.set_task(bnserve::v1::TASK_CLASSIFICATION);
  s.set_input_features(4);
  s.set_output_dim(2);
  s.add_feature_names("a");
  auto* dense = s.add_layers()->mutable_dense();
  dense->set_in(4);
  dense->set_out(weights / 4 > 0 ? weights / 4 : 1);
  for (int i = 0; i < weights; ++i) {
    dense->add_weight(static_cast<float>((int64_t{i} * 7919 + tag) % 1000) /
                      1000.0f);
  }
  auto* bn = s.add_layers()->mutable_batch_norm();
  bn->set_features(2);
  bn->add_running_mean(0.5f);
  bn->add_running_var(2.0f);
  bn->set_momentum(0.1f);
  bn->set_eps(1e-5f);
  s.mutable_training()->set_job_id("job");
  s.mutable_training()->set_step(tag);
  return s;
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/bnserve-store-test-XXXXXX";
  const char* dir = mkdtemp(tmpl);
  path_ = dir == nullptr ? "/tmp/bnserve-store-test-failed" : dir;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string UniqueName(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return absl::StrCat(prefix, "-", getpid(), "-", counter++);
}

namespace {

bool Pings(int port) {
  timeval tv{0, 200000};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  bool ok = false;
  if (c != nullptr && c->err == 0) {
    redisSetTimeout(c, tv);
    auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
    ok = r != nullptr && r->type == REDIS_REPLY_STATUS &&
         std::string(r->str) == "PONG";
    if (r != nullptr) freeReplyObject(r);
  }
  if (c != nullptr) redisFree(c);
  return ok;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start() {
  absl::Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const int port = bnserve::testing::ReservePort();
    if (port <= 0) return absl::InternalError("no free port");
    auto server = std::unique_ptr<RedisServer>(new RedisServer(port));
    last = server->Launch();
    if (last.ok()) return server;
  }
  return last;
}

absl::Status RedisServer::Launch() {
  const std::string port = absl::StrCat(port_);
  pid_ = fork();
  if (pid_ < 0) return absl::InternalError("fork failed");
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port",
           port.c_str(), "--save", "", "--appendonly", "no", "--daemonize",
           "no", "--dir", "/tmp", static_cast<char*>(nullptr));
    _exit(127);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    if (Pings(port_)) return absl::OkStatus();
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(
          absl::StrCat("redis-server exited at start (status ", status,
                       "); is the redis-server package installed?"));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  Stop();
  return absl::DeadlineExceededError("redis-server did not answer PING");
}

RedisServer::~RedisServer() { Stop(); }

void RedisServer::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

absl::Status RedisServer::Restart() {
  Stop();
  return Launch();
}

std::string RedisServer::uri() const {
  return absl::StrCat("redis://127.0.0.1:", port_, "/0");
}

namespace {

using ReplyPtr = std::unique_ptr<redisReply, void (*)(void*)>;

// One command on a fresh connection to 127.0.0.1:`port` (1 s timeouts);
// nullptr if the node cannot be reached.
ReplyPtr Ask(int port, const std::vector<std::string>& args) {
  timeval tv{1, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  ReplyPtr reply(nullptr, freeReplyObject);
  if (c != nullptr && c->err == 0) {
    redisSetTimeout(c, tv);
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    reply.reset(static_cast<redisReply*>(redisCommandArgv(
        c, static_cast<int>(argv.size()), argv.data(), lens.data())));
  }
  if (c != nullptr) redisFree(c);
  return reply;
}

std::string ReplyText(const ReplyPtr& r) {
  return r != nullptr &&
                 (r->type == REDIS_REPLY_STRING ||
                  r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR)
             ? std::string(r->str, r->len)
             : std::string();
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  const int out = open(log.empty() ? "/dev/null" : log.c_str(),
                       O_WRONLY | O_CREAT | O_APPEND, 0644);
  dup2(out, 1);
  dup2(out, 2);
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  _exit(127);
}

void KillAndReap(pid_t* pid) {
  if (*pid <= 0) return;
  kill(*pid, SIGKILL);
  waitpid(*pid, nullptr, 0);
  *pid = -1;
}

// `count` distinct ports reserved for this process (tests/common/ports.h).
absl::StatusOr<std::vector<int>> ReservePorts(int count) {
  std::vector<int> ports;
  while (static_cast<int>(ports.size()) < count) {
    const int port = bnserve::testing::ReservePort();
    if (port <= 0) return absl::InternalError("no free loopback port");
    ports.push_back(port);
  }
  return ports;
}

// The last line of the file `log` ("" if none).
std::string LastLine(const std::string& log) {
  std::ifstream in(log);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

// Waits until `port` answers PING. UNAVAILABLE if `pid` exits first (its
// `log`'s last line in the message: a port taken is worth another try),
// DEADLINE_EXCEEDED if it does not answer within 10 s.
absl::Status WaitForPing(int port, pid_t* pid, const std::string& program,
                         const std::string& log) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    if (Pings(port)) return absl::OkStatus();
    int status;
    if (waitpid(*pid, &status, WNOHANG) == *pid) {
      *pid = -1;
      return absl::UnavailableError(absl::StrCat(
          program, " on port ", port, " exited at start (status ", status,
          ", last log line \"", LastLine(log), "\"); is the ", program,
          " package installed (scripts/install-deps.sh)?"));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  KillAndReap(pid);
  return absl::DeadlineExceededError(program + " did not answer PING");
}

// The value of `field` in an INFO-style or SENTINEL MASTER reply.
std::string InfoField(const std::string& info, const std::string& field) {
  const size_t at = info.find(field + ":");
  if (at == std::string::npos) return "";
  const size_t start = at + field.size() + 1;
  return info.substr(start, info.find_first_of("\r\n", start) - start);
}

std::string ElementField(const redisReply* r, const std::string& field);

std::string FlatField(const ReplyPtr& r, const std::string& field) {
  return ElementField(r.get(), field);
}

// FlatField on one element of an array of flat field/value arrays.
std::string ElementField(const redisReply* r, const std::string& field) {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY) return "";
  for (size_t i = 0; i + 1 < r->elements; i += 2) {
    if (r->element[i]->type == REDIS_REPLY_STRING &&
        std::string(r->element[i]->str, r->element[i]->len) == field) {
      return std::string(r->element[i + 1]->str, r->element[i + 1]->len);
    }
  }
  return "";
}

}  // namespace

absl::Status RunCommand(const std::vector<std::string>& argv,
                        const std::string& log, absl::Duration timeout) {
  pid_t pid = Spawn(argv, log);
  if (pid < 0) return absl::InternalError("fork failed");
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return absl::OkStatus();
      }
      return absl::InternalError(
          absl::StrCat(argv[0], " failed (status ", status, "); see ", log));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  KillAndReap(&pid);
  return absl::DeadlineExceededError(
      absl::StrCat(argv[0], " did not finish within ",
                   absl::FormatDuration(timeout), "; see ", log));
}

struct RedisSentinelSet::Node {
  int port = 0;
  pid_t pid = -1;
  ~Node() { KillAndReap(&pid); }
};

RedisSentinelSet::RedisSentinelSet() = default;

RedisSentinelSet::~RedisSentinelSet() {
  sentinels_.clear();  // first, so that they do not fail anything over
  nodes_.clear();
}

absl::Status RedisSentinelSet::WaitUntil(const std::function<bool()>& ready,
                                         absl::Duration timeout,
                                         const std::string& what) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (ready()) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat("timed out after ",
                                                  absl::FormatDuration(timeout),
                                                  " waiting for ", what));
}

absl::Status RedisSentinelSet::LaunchNode(Node& node, int master_port) {
  const std::string port = absl::StrCat(node.port);
  std::vector<std::string> argv = {"redis-server",
                                   "--bind",
                                   "127.0.0.1",
                                   "--port",
                                   port,
                                   "--save",
                                   "",
                                   "--appendonly",
                                   "no",
                                   "--dir",
                                   dir_.path(),
                                   "--dbfilename",
                                   absl::StrCat("dump-", port, ".rdb"),
                                   "--repl-diskless-sync-delay",
                                   "0",
                                   "--daemonize",
                                   "no"};
  if (master_port > 0) {
    argv.insert(argv.end(),
                {"--replicaof", "127.0.0.1", absl::StrCat(master_port)});
  }
  const std::string log = absl::StrCat(dir_.path(), "/redis-", port, ".log");
  node.pid = Spawn(argv, log);
  return WaitForPing(node.port, &node.pid, "redis-server", log);
}

namespace {

// Calls `start` up to 3 times while it fails with UNAVAILABLE (a server
// exited at start, most likely because something took its port); each try
// reserves fresh ports.
template <typename T>
absl::StatusOr<std::unique_ptr<T>> RetryWhileUnavailable(
    const std::function<absl::StatusOr<std::unique_ptr<T>>()>& start) {
  absl::StatusOr<std::unique_ptr<T>> result;
  for (int attempt = 0; attempt < 3; ++attempt) {
    result = start();
    if (result.ok() || !absl::IsUnavailable(result.status())) return result;
  }
  return result;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RedisSentinelSet>> RedisSentinelSet::Start(
    int replicas, int sentinels) {
  return RetryWhileUnavailable<RedisSentinelSet>(
      [&]() -> absl::StatusOr<std::unique_ptr<RedisSentinelSet>> {
        auto set = std::unique_ptr<RedisSentinelSet>(new RedisSentinelSet());
        absl::StatusOr<std::vector<int>> ports =
            ReservePorts(1 + replicas + sentinels);
        if (!ports.ok()) return ports.status();
        const std::vector<int> data(ports->begin(),
                                    ports->begin() + 1 + replicas);
        const std::vector<int> watchers(ports->begin() + 1 + replicas,
                                        ports->end());
        absl::Status up = set->LaunchDataNodes(data);
        if (up.ok()) up = set->LaunchSentinels(watchers, data[0], replicas);
        if (!up.ok()) return up;
        return set;
      });
}

absl::Status RedisSentinelSet::LaunchDataNodes(const std::vector<int>& ports) {
  for (size_t i = 0; i < ports.size(); ++i) {
    nodes_.push_back(std::make_unique<Node>());
    nodes_.back()->port = ports[i];
    absl::Status launched = LaunchNode(*nodes_.back(), i == 0 ? 0 : ports[0]);
    if (!launched.ok()) return launched;
  }
  const int master = ports[0];
  const std::string replicas = absl::StrCat(ports.size() - 1);
  return WaitUntil(
      [&] {
        const std::string info =
            ReplyText(Ask(master, {"INFO", "replication"}));
        return InfoField(info, "connected_slaves") == replicas;
      },
      absl::Seconds(20), "the replicas to attach");
}

absl::Status RedisSentinelSet::LaunchSentinels(const std::vector<int>& ports,
                                               int master, int replicas) {
  const int sentinels = static_cast<int>(ports.size());
  for (int port : ports) {
    auto node = std::make_unique<Node>();
    node->port = port;
    const std::string conf =
        absl::StrCat(dir_.path(), "/sentinel-", port, ".conf");
    {
      std::ofstream out(conf);
      out << "port " << port << "\nbind 127.0.0.1\ndaemonize no\n"
          << "dir " << dir_.path() << "\n"
          << "sentinel monitor mymaster 127.0.0.1 " << master << " "
          << sentinels / 2 + 1 << "\n"
          << "sentinel down-after-milliseconds mymaster 1000\n"
          << "sentinel failover-timeout mymaster 5000\n"
          << "sentinel parallel-syncs mymaster 2\n";
    }
    const std::string log =
        absl::StrCat(dir_.path(), "/sentinel-", port, ".log");
    node->pid = Spawn({"redis-sentinel", conf}, log);
    absl::Status up = WaitForPing(port, &node->pid, "redis-sentinel", log);
    sentinels_.push_back(std::move(node));
    if (!up.ok()) return up;
  }
  for (const auto& sentinel : sentinels_) {
    const int port = sentinel->port;
    absl::Status ready = WaitUntil(
        [&] {
          ReplyPtr r = Ask(port, {"SENTINEL", "MASTER", "mymaster"});
          return FlatField(r, "num-slaves") == absl::StrCat(replicas) &&
                 FlatField(r, "num-other-sentinels") ==
                     absl::StrCat(sentinels - 1);
        },
        absl::Seconds(30), "every Sentinel to see the replicas and the others");
    if (!ready.ok()) return ready;
  }
  return absl::OkStatus();
}

std::string RedisSentinelSet::uri() const {
  std::string hosts;
  for (const auto& s : sentinels_) {
    absl::StrAppend(&hosts, hosts.empty() ? "" : ",", "127.0.0.1:", s->port);
  }
  return absl::StrCat("redis-sentinel://", hosts, "/mymaster/0");
}

absl::StatusOr<int> RedisSentinelSet::MasterPort() {
  // A Sentinel that led an unfinished failover can name a stale node for a
  // while: the majority's answer is the configuration in force.
  std::map<int, size_t> votes;
  for (const auto& s : sentinels_) {
    ReplyPtr r =
        Ask(s->port, {"SENTINEL", "get-master-addr-by-name", "mymaster"});
    int port;
    if (r != nullptr && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        absl::SimpleAtoi(std::string(r->element[1]->str, r->element[1]->len),
                         &port)) {
      if (++votes[port] > sentinels_.size() / 2) return port;
    }
  }
  return absl::UnavailableError("no majority of the Sentinels names a master");
}

std::string RedisSentinelSet::SentinelView(int sentinel_port) const {
  ReplyPtr master = Ask(sentinel_port, {"SENTINEL", "MASTER", "mymaster"});
  std::string view =
      absl::StrCat(FlatField(master, "port"), " ", FlatField(master, "flags"),
                   " epoch ", FlatField(master, "config-epoch"), ";");
  ReplyPtr replicas = Ask(sentinel_port, {"SENTINEL", "REPLICAS", "mymaster"});
  if (replicas == nullptr || replicas->type != REDIS_REPLY_ARRAY) return view;
  std::vector<std::string> each;
  for (size_t i = 0; i < replicas->elements; ++i) {
    const redisReply* r = replicas->element[i];
    each.push_back(absl::StrCat(" ", ElementField(r, "port"), " ",
                                ElementField(r, "flags"), " link ",
                                ElementField(r, "master-link-status")));
  }
  std::sort(each.begin(), each.end());
  for (const std::string& e : each) absl::StrAppend(&view, e);
  return view;
}

absl::Status RedisSentinelSet::WaitUntilSettled(absl::Duration timeout) {
  std::string expected;  // the view every Sentinel must report
  std::vector<std::string> views;
  absl::Status settled = WaitUntil(
      [&] {
        views.clear();
        for (const auto& s : sentinels_) views.push_back(SentinelView(s->port));
        absl::StatusOr<int> master = MasterPort();
        if (!master.ok()) return false;
        std::vector<std::string> replicas;
        for (const auto& node : nodes_) {
          if (node->port == *master) continue;
          replicas.push_back(absl::StrCat(" ", node->port, " slave link ok"));
        }
        std::sort(replicas.begin(), replicas.end());
        const std::string head = absl::StrCat(*master, " master epoch ");
        for (const std::string& v : views) {
          if (!absl::StartsWith(v, head) || views[0] != v ||
              !absl::EndsWith(v,
                              absl::StrCat(";", absl::StrJoin(replicas, ""))))
            return false;
        }
        return true;
      },
      timeout, "every Sentinel to agree on the master and its replicas");
  if (settled.ok()) return settled;
  return absl::DeadlineExceededError(absl::StrCat(
      settled.message(), "; Sentinel views: ", absl::StrJoin(views, " | ")));
}

absl::StatusOr<int> RedisSentinelSet::KillMasterAndWaitForFailover(
    absl::Duration timeout) {
  // A kill while a Sentinel still finishes the last failover (or has not yet
  // seen a replica come back) tests Sentinel's convergence, not the store:
  // under load it ended in -failover-abort-no-good-slave.
  absl::Status settled = WaitUntilSettled(absl::Seconds(30));
  if (!settled.ok()) return settled;
  absl::StatusOr<int> old = MasterPort();
  if (!old.ok()) return old.status();
  ReplyPtr old_role = Ask(*old, {"ROLE"});
  if (old_role == nullptr || old_role->type != REDIS_REPLY_ARRAY ||
      old_role->elements == 0 ||
      std::string(old_role->element[0]->str, old_role->element[0]->len) !=
          "master") {
    return absl::FailedPreconditionError(
        absl::StrCat("the Sentinels name ", *old, " but it is not a master"));
  }
  Node* killed = nullptr;
  for (auto& node : nodes_) {
    if (node->port == *old) killed = node.get();
  }
  if (killed == nullptr) return absl::InternalError("unknown master port");
  KillAndReap(&killed->pid);
  int now = 0;
  absl::Status promoted = WaitUntil(
      [&] {
        absl::StatusOr<int> port = MasterPort();
        if (!port.ok() || *port == *old) return false;
        ReplyPtr role = Ask(*port, {"ROLE"});
        if (role == nullptr || role->type != REDIS_REPLY_ARRAY ||
            role->elements == 0 ||
            std::string(role->element[0]->str, role->element[0]->len) !=
                "master") {
          return false;
        }
        now = *port;
        return true;
      },
      timeout, "the Sentinels to promote a replica");
  if (!promoted.ok()) {
    return absl::DeadlineExceededError(absl::StrCat(
        promoted.message(), "; Sentinel events:\n", SentinelEvents()));
  }
  absl::Status relaunched = LaunchNode(*killed, now);
  if (!relaunched.ok()) return relaunched;
  const std::string replicas = absl::StrCat(nodes_.size() - 1);
  absl::Status attached = WaitUntil(
      [&] {
        const std::string info = ReplyText(Ask(now, {"INFO", "replication"}));
        int online = 0;
        for (size_t at = info.find("state=online"); at != std::string::npos;
             at = info.find("state=online", at + 1)) {
          ++online;
        }
        return InfoField(info, "connected_slaves") == replicas &&
               absl::StrCat(online) == replicas;
      },
      absl::Seconds(30), "every replica to attach to the new master");
  if (!attached.ok()) return attached;
  return now;
}

std::string RedisSentinelSet::SentinelEvents() const {
  std::string events;
  for (const auto& s : sentinels_) {
    std::ifstream in(absl::StrCat(dir_.path(), "/sentinel-", s->port, ".log"));
    std::string line;
    while (std::getline(in, line)) {
      for (const char* what :
           {"+switch-master", "+sdown master", "+odown", "+elected-leader",
            "+promoted-slave", "+failover-end ", "-failover-abort",
            "+failover-state-select-slave", "+selected-slave", "+try-failover",
            "+new-epoch", "+vote-for-leader"}) {
        if (line.find(what) != std::string::npos) {
          absl::StrAppend(&events, s->port, ": ", line, "\n");
        }
      }
    }
  }
  return events;
}

absl::Status RedisSentinelSet::FlushAll() {
  absl::StatusOr<int> master = MasterPort();
  if (!master.ok()) return master.status();
  if (ReplyText(Ask(*master, {"FLUSHALL"})) != "OK") {
    return absl::InternalError("FLUSHALL failed");
  }
  ReplyPtr wait =
      Ask(*master, {"WAIT", absl::StrCat(nodes_.size() - 1), "5000"});
  if (wait == nullptr || wait->type != REDIS_REPLY_INTEGER ||
      wait->integer != static_cast<long long>(nodes_.size() - 1)) {
    return absl::InternalError("FLUSHALL did not reach every replica");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RedisClusterSet>> RedisClusterSet::Start(
    int masters) {
  return RetryWhileUnavailable<RedisClusterSet>(
      [&]() -> absl::StatusOr<std::unique_ptr<RedisClusterSet>> {
        auto set = std::unique_ptr<RedisClusterSet>(new RedisClusterSet());
        absl::Status up = set->LaunchNodes(masters);
        if (up.ok()) up = set->CreateCluster();
        if (!up.ok()) return up;
        return set;
      });
}

absl::Status RedisClusterSet::LaunchNodes(int masters) {
  absl::StatusOr<std::vector<int>> ports = ReservePorts(2 * masters);
  if (!ports.ok()) return ports.status();
  const std::string dir = dir_.path();
  for (int i = 0; i < masters; ++i) {
    const std::string port = absl::StrCat((*ports)[i]);
    const std::string log = absl::StrCat(dir, "/redis-", port, ".log");
    pid_t pid = Spawn({"redis-server",
                       "--bind",
                       "127.0.0.1",
                       "--port",
                       port,
                       "--cluster-enabled",
                       "yes",
                       "--cluster-config-file",
                       absl::StrCat(dir, "/nodes-", port, ".conf"),
                       "--cluster-port",
                       absl::StrCat((*ports)[masters + i]),
                       "--cluster-node-timeout",
                       "2000",
                       "--save",
                       "",
                       "--appendonly",
                       "no",
                       "--dir",
                       dir,
                       "--daemonize",
                       "no"},
                      log);
    absl::Status up = WaitForPing((*ports)[i], &pid, "redis-server", log);
    if (!up.ok()) return up;
    pids_.push_back(pid);
    ports_.push_back((*ports)[i]);
  }
  return absl::OkStatus();
}

absl::Status RedisClusterSet::CreateCluster() {
  std::vector<std::string> create = {"redis-cli", "--cluster", "create"};
  for (int port : ports_) create.push_back(absl::StrCat("127.0.0.1:", port));
  create.insert(create.end(), {"--cluster-replicas", "0", "--cluster-yes"});
  absl::Status created =
      RunCommand(create, dir_.path() + "/create.log", absl::Seconds(60));
  if (!created.ok()) return created;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  for (int port : ports_) {
    while (InfoField(ReplyText(Ask(port, {"CLUSTER", "INFO"})),
                     "cluster_state") != "ok") {
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError("the cluster did not become ok");
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  return absl::OkStatus();
}

RedisClusterSet::~RedisClusterSet() {
  for (pid_t& pid : pids_) KillAndReap(&pid);
}

std::string RedisClusterSet::uri() const {
  std::string hosts;
  for (int port : ports_) {
    absl::StrAppend(&hosts, hosts.empty() ? "" : ",", "127.0.0.1:", port);
  }
  return absl::StrCat("redis-cluster://", hosts);
}

absl::StatusOr<int> RedisClusterSet::PortForKey(const std::string& key) {
  for (int port : ports_) {
    ReplyPtr r = Ask(port, {"EXISTS", key});
    if (r != nullptr && r->type == REDIS_REPLY_INTEGER) return port;
  }
  return absl::NotFoundError("no node serves " + key);
}

absl::Status RedisClusterSet::FlushAll() {
  for (int port : ports_) {
    if (ReplyText(Ask(port, {"FLUSHALL"})) != "OK") {
      return absl::InternalError(absl::StrCat("FLUSHALL failed on ", port));
    }
  }
  return absl::OkStatus();
}

pid_t ForkChild(const std::function<bool()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    _exit(body() ? 0 : 1);
  }
  return pid;
}

bool WaitChildOk(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::function<void(const StoreEvent&)> EventCollector::Callback() {
  return [this](const StoreEvent& e) {
    absl::MutexLock lock(&mu_);
    events_.push_back(e);
  };
}

bool EventCollector::WaitFor(const std::function<bool(const StoreEvent&)>& pred,
                             absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto found = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const StoreEvent& e : events_) {
      if (pred(e)) return true;
    }
    return false;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&found), timeout);
}

bool EventCollector::WaitForPublished(const std::string& model, int64_t version,
                                      absl::Duration timeout) {
  return WaitFor(
      [&](const StoreEvent& e) {
        return e.kind == StoreEvent::Kind::kPublished && e.model == model &&
               e.version == version;
      },
      timeout);
}

size_t EventCollector::size() {
  absl::MutexLock lock(&mu_);
  return events_.size();
}

}  // namespace bnserve::store::testing
