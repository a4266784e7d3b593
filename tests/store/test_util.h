// Helpers shared by the store tests: snapshots, temp dirs, a throwaway
// redis-server, an event collector for Watch.
#ifndef BNSERVE_TESTS_STORE_TEST_UTIL_H_
#define BNSERVE_TESTS_STORE_TEST_UTIL_H_

#include <sys/types.h>

#include <functional>
#include <map>
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

// A redis-server child process on a reserved loopback port
// (tests/common/ports.h; no persistence).
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

// A master with replicas under a set of Sentinels, all on loopback (reserved
// ports, a temp dir for their files). The Sentinels monitor it as
// "mymaster" with a majority quorum, down-after 1 s.
class RedisSentinelSet {
 public:
  // Starts the master, `replicas` replicas and `sentinels` Sentinels and
  // waits until every Sentinel sees every replica and every other Sentinel.
  static absl::StatusOr<std::unique_ptr<RedisSentinelSet>> Start(
      int replicas = 2, int sentinels = 3);
  ~RedisSentinelSet();
  // redis-sentinel://127.0.0.1:<s1>,.../mymaster/0
  std::string uri() const;
  // The port of the master as a majority of the Sentinels names it.
  absl::StatusOr<int> MasterPort();
  // Waits until every Sentinel names the same master (flags exactly
  // "master", the same config epoch) and lists every other node as a plain
  // replica with its link up: no failover in progress anywhere.
  absl::Status WaitUntilSettled(absl::Duration timeout);
  // Waits until the set is settled (above), SIGKILLs the current master, waits
  // (up to `timeout`) until the Sentinels name another node and it answers ROLE
  // master, then restarts the killed node as a replica of the new master and
  // waits until the master sees all its replicas online. Returns the new
  // master's port.
  absl::StatusOr<int> KillMasterAndWaitForFailover(absl::Duration timeout);
  // The failover events in the Sentinels' logs (+sdown master,
  // +promoted-slave, +switch-master, +failover-end), one per line.
  std::string SentinelEvents() const;
  // FLUSHALL on the master, waiting until every replica has it.
  absl::Status FlushAll();

 private:
  struct Node;
  RedisSentinelSet();
  absl::Status LaunchNode(Node& node, int master_port);
  // The master on ports[0], replicas on the others; waits until they attach.
  absl::Status LaunchDataNodes(const std::vector<int>& ports);
  // A Sentinel on each port monitoring `master`; waits until each sees the
  // `replicas` replicas and the other Sentinels.
  absl::Status LaunchSentinels(const std::vector<int>& ports, int master,
                               int replicas);
  // "<master port> <flags> epoch <e>; <port> <flags> link <status>..." as
  // the Sentinel on `sentinel_port` reports it (replicas sorted).
  std::string SentinelView(int sentinel_port) const;
  absl::Status WaitUntil(const std::function<bool()>& ready,
                         absl::Duration timeout, const std::string& what);
  TempDir dir_;
  std::vector<std::unique_ptr<Node>> nodes_;  // data nodes
  std::vector<std::unique_ptr<Node>> sentinels_;
};

// A Redis Cluster of `masters` nodes (no replicas) on loopback, created with
// `redis-cli --cluster create`; reserved ports for clients and the cluster bus.
class RedisClusterSet {
 public:
  static absl::StatusOr<std::unique_ptr<RedisClusterSet>> Start(
      int masters = 3);
  ~RedisClusterSet();
  // redis-cluster://127.0.0.1:<p1>,...
  std::string uri() const;
  const std::vector<int>& ports() const { return ports_; }
  // The port of the node that serves `key` now (the one that does not answer
  // MOVED).
  absl::StatusOr<int> PortForKey(const std::string& key);
  // FLUSHALL on every node.
  absl::Status FlushAll();

 private:
  RedisClusterSet() = default;
  // Starts `masters` cluster-enabled nodes, each with its own bus port.
  absl::Status LaunchNodes(int masters);
  // redis-cli --cluster create over the nodes; waits for cluster_state ok.
  absl::Status CreateCluster();
  TempDir dir_;
  std::vector<int> ports_;
  std::vector<pid_t> pids_;
};

// Runs `argv` (program first) with stdout/stderr to `log`, waiting at most
// `timeout`; OK if it exits with status 0.
absl::Status RunCommand(const std::vector<std::string>& argv,
                        const std::string& log, absl::Duration timeout);

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
