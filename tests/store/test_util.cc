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

#include <atomic>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"

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

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

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
    const int port = FreePort();
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
