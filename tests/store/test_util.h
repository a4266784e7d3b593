// Helpers shared by the store tests: snapshots, temp dirs, a throwaway
// redis-server, an event collector for Watch.
#ifndef BNSERVE_TESTS_STORE_TEST_UTIL_H_
#define BNSERVE_TESTS_STORE_TEST_UTIL_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bnserve/v1/snapshot.pb.h"
#include "store/store.h"

namespace bnserve::store::testing {

// A small but complete snapshot of `model` whose dense layer holds
// `weights` floats; `tag` goes into training.step to tell snapshots apart.
bnserve::v1::Snapshot MakeSnapshot(const std::string& model, int weights = 16,
                                   int64_t tag = 0);

// A fresh directory under /tmp, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A unique name for mem:// stores and models.
std::string UniqueName(const std::string& prefix);

// A redis-server child process on a free loopback port (no persistence).
class RedisServer {
 public:
  // Starts it and waits until PING answers; an error if it cannot start.
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start();
  ~RedisServer();
  // Kills the server (SIGKILL) and reaps it.
  void Stop();
  // Starts it again on the same port.
  absl::Status Restart();
  int port() const { return port_; }
  std::string uri() const;

 private:
  explicit RedisServer(int port) : port_(port) {}
  absl::Status Launch();
  int port_;
  pid_t pid_ = -1;
};

// Runs `body` in a forked child, which exits with status 0 if it returns
// true, 1 otherwise. Returns the child's pid.
pid_t ForkChild(const std::function<bool()>& body);
// Waits for `pid`; true if it exited with status 0.
bool WaitChildOk(pid_t pid);

// Collects Watch events; thread-safe.
class EventCollector {
 public:
  std::function<void(const StoreEvent&)> Callback();
  // Waits until some collected event satisfies `pred`; false on timeout.
  bool WaitFor(const std::function<bool(const StoreEvent&)>& pred,
               absl::Duration timeout = absl::Seconds(15));
  bool WaitForPublished(const std::string& model, int64_t version,
                        absl::Duration timeout = absl::Seconds(15));
  size_t size();

 private:
  absl::Mutex mu_;
  std::vector<StoreEvent> events_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bnserve::store::testing

#endif  // BNSERVE_TESTS_STORE_TEST_UTIL_H_
