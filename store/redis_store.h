// SnapshotStore on Redis (hiredis, synchronous API): the shared store for
// several machines. Keys (all of one model share the hash tag `{<model>}`, so
// they live in one Cluster slot and every multi-key command, transaction and
// script touches one slot only):
//
//   bnserve:{<model>}:counter   INCR counter: the high-water mark, never
//                               decremented, so versions are never reused
//   bnserve:{<model>}:versions  sorted set, member "<n>" with score n
//   bnserve:{<model>}:v:<n>     StoredSnapshot envelope (checksummed)
//   bnserve:{<model>}:labels    hash label -> "<n>"
//   bnserve:models              set of model names, the one key outside the
//                               per-model tags. It is only an index: SADD
//                               (its own single-key command, never in a
//                               transaction with model keys) runs before the
//                               version's transaction, is idempotent and
//                               repeated by every Publish, and ListModels
//                               keeps only models whose version set is
//                               non-empty. So no write spans two slots.
//   bnserve:{<model>}:ckpt:<job>  hash "<step>" -> StoredCheckpoint envelope
//                               of a training job (never a version)
//   bnserve:checkpoints         set of "<model>/<job>" with checkpoints (an
//                               index like bnserve:models, written first in
//                               its own single-key command)
//   channel bnserve:events      "<kind> <model> <version>" after each change
//
// Publish = SADD, allocate (one Lua script), then MULTI { SET blob NX, ZADD
// versions } EXEC. Each step is safe to retry once on a fresh connection (a
// retried allocation only skips a number; SET NX never overwrites).
// SetLabel and DeleteVersion are Lua scripts, so "the version exists" / "no
// label points at it" are checked atomically with the write.
//
// Three topologies, chosen by the URI scheme:
//   redis://           one node.
//   redis-sentinel://  the master that the Sentinels name. It is looked up
//                      (SENTINEL get-master-addr-by-name, trying each Sentinel
//                      in turn) before the first command and again after a
//                      connection error, a READONLY or -REDIRECT reply, or a
//                      fresh connection whose ROLE is not master (a demoted
//                      node); commands refused that way were not executed and
//                      are retried on the new master.
//   redis-cluster://   a Redis Cluster: the slot map comes from CLUSTER SLOTS
//                      of any reachable node (the URI's seeds first); every
//                      batch goes to the node of its key's slot and follows
//                      MOVED (map updated) and ASK (ASKING, once), and waits
//                      out TRYAGAIN / CLUSTERDOWN (slot migration, failover)
//                      for a bounded number of attempts.
// Watch subscribes to bnserve:events on the node / the current master / any
// Cluster node (PUBLISH reaches every node of a Cluster) and re-subscribes,
// re-discovering the master, when that connection breaks; each
// re-subscription triggers a scan, and polling covers the gap.
//
// Durability: "durable when Publish returns" holds as far as Redis persists.
// Run the nodes with `appendonly yes` and `appendfsync always`. With
// StoreOptions::redis_min_replicas = N > 0 every write is followed by `WAIT N`
// on the same connection and acknowledged only if N replicas have it: a
// Sentinel failover (which promotes the most up-to-date replica) then loses
// no acknowledged version. Fewer replicas within redis_wait_timeout is
// UNAVAILABLE (the write may or may not survive a failover).
//
// Connections come from a small pool per node, are opened lazily with a
// connect timeout and given a command timeout. Any connection error is
// UNAVAILABLE; after a failed connect to a node (or a failed Sentinel
// lookup), reconnects to it are attempted with exponential backoff (calls in
// between fail fast). Opening a RedisStore sets SIGPIPE to SIG_IGN if it was
// SIG_DFL (hiredis writes to sockets with write(2)).
#ifndef BNSERVE_STORE_REDIS_STORE_H_
#define BNSERVE_STORE_REDIS_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "store/job_registry.h"
#include "store/store.h"

struct redisContext;

namespace bnserve::store {

class RedisStore final : public SnapshotStore {
 public:
  // Does not connect yet: the first call does.
  RedisStore(const StoreUri& uri, const StoreOptions& options = {});
  ~RedisStore() override;

  absl::StatusOr<int64_t> Publish(
      const bnserve::v1::Snapshot& snapshot) override;
  absl::StatusOr<bnserve::v1::Snapshot> Read(std::string_view model,
                                             int64_t version) override;
  absl::StatusOr<int64_t> Latest(std::string_view model) override;
  absl::StatusOr<std::vector<int64_t>> ListVersions(
      std::string_view model) override;
  absl::StatusOr<std::vector<std::string>> ListModels() override;
  absl::Status SetLabel(std::string_view model, std::string_view label,
                        int64_t version) override;
  absl::StatusOr<int64_t> ResolveLabel(std::string_view model,
                                       std::string_view label) override;
  absl::StatusOr<std::map<std::string, int64_t>> ListLabels(
      std::string_view model) override;
  absl::Status DeleteLabel(std::string_view model,
                           std::string_view label) override;
  absl::Status DeleteVersion(std::string_view model, int64_t version) override;
  absl::StatusOr<std::vector<int64_t>> ApplyRetention(std::string_view model,
                                                      int keep_newest) override;
  absl::StatusOr<std::unique_ptr<WatchHandle>> Watch(
      std::function<void(const StoreEvent&)> callback) override;
  std::string uri() const override;
  absl::Status WriteCheckpoint(std::string_view model, std::string_view job_id,
                               int64_t step, std::string_view payload) override;
  absl::StatusOr<std::string> ReadCheckpoint(std::string_view model,
                                             std::string_view job_id,
                                             int64_t step) override;
  absl::StatusOr<std::vector<CheckpointRef>> ListCheckpoints() override;
  absl::Status DeleteCheckpoint(std::string_view model, std::string_view job_id,
                                int64_t step) override;

  JobRegistry* job_registry() override { return registry_.get(); }

  // Key of the envelope of model/version (for tests and tools).
  static std::string BlobKey(std::string_view model, int64_t version);

  class Connection;  // redis_store.cc
  struct Reply;      // redis_store.cc: an owned hiredis reply
  using Replies = std::vector<std::shared_ptr<Reply>>;
  // A connected, authenticated context for SUBSCRIBE (used by the watch
  // subscriber): the node, the master as the Sentinels name it now (looked
  // up afresh), or the next Cluster node in turn. UNAVAILABLE if none can be
  // reached; honours the reconnect backoff.
  absl::StatusOr<std::unique_ptr<Connection>> ConnectForSubscribe();

 private:
  friend class RedisJobRegistry;  // redis_store.cc: runs its commands here
  using Endpoint = StoreUri::Endpoint;
  using Command = std::vector<std::string_view>;
  struct Backoff {
    absl::Duration delay = absl::ZeroDuration();
    absl::Time next = absl::InfinitePast();
    std::string error;
  };

  // Sends `commands` pipelined on one connection to the node that holds
  // `route_key` (every key of the batch must share its hash tag; "" = any
  // node / the master) and returns their replies (error replies become
  // statuses). Follows redirects as described at the top of this file. On a
  // connection error the node's pool is dropped (and the master or slot map
  // forgotten); if `retry_safe` and the connection was not fresh, it retries
  // once on a new one.
  absl::StatusOr<Replies> Run(std::string_view route_key,
                              const std::vector<Command>& commands,
                              bool retry_safe);
  // Run, then (redis_min_replicas > 0) WAIT on the same connection.
  absl::StatusOr<Replies> RunWrite(std::string_view route_key,
                                   const std::vector<Command>& commands,
                                   bool retry_safe);
  absl::StatusOr<std::shared_ptr<Reply>> RunOne(std::string_view route_key,
                                                const Command& command,
                                                bool retry_safe = true);
  void Notify(std::string_view kind, std::string_view model, int64_t version);

  // Where a batch for `route_key` goes now.
  absl::StatusOr<Endpoint> Locate(std::string_view route_key);
  absl::StatusOr<Endpoint> DiscoverMaster();
  absl::StatusOr<Endpoint> AskSentinel(const Endpoint& sentinel);
  absl::Status RefreshSlots();
  // CLUSTER <what> on `node` (pooled connection).
  absl::StatusOr<std::shared_ptr<Reply>> ExchangeOne(const Endpoint& node,
                                                     std::string_view what);
  // Forgets the master / marks the slot map stale and drops the pooled
  // connections of `node` after it failed.
  void Forget(const Endpoint& node);
  void NoteMoved(int slot, const Endpoint& to);
  // A new connection to `node` (AUTH, SELECT, and with Sentinel a ROLE
  // check). `sentinel` = a Sentinel: no AUTH, SELECT or ROLE.
  absl::StatusOr<std::unique_ptr<Connection>> Connect(const Endpoint& node,
                                                      bool sentinel = false);
  absl::Status SetUp(Connection& conn, bool sentinel);
  std::unique_ptr<Connection> TakeIdle(const Endpoint& node);
  void GiveBack(const Endpoint& node, std::unique_ptr<Connection> conn);
  // Backoff bookkeeping per node ("host:port") or for the Sentinel lookup.
  absl::Status CheckBackoff(const std::string& what);
  void RecordAttempt(const std::string& what, const absl::Status& status);

  const StoreUri uri_;
  const StoreOptions options_;
  absl::Mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<Connection>>> idle_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, Backoff> backoff_ ABSL_GUARDED_BY(mu_);
  // Sentinel: the master in use, if known.
  std::optional<Endpoint> master_ ABSL_GUARDED_BY(mu_);
  size_t next_sentinel_ ABSL_GUARDED_BY(mu_) = 0;
  // Cluster: known masters and, per slot, 1 + index into them (0 unknown).
  std::vector<Endpoint> cluster_nodes_ ABSL_GUARDED_BY(mu_);
  std::vector<uint16_t> slot_owner_ ABSL_GUARDED_BY(mu_);
  bool slots_stale_ ABSL_GUARDED_BY(mu_) = true;
  size_t next_node_ ABSL_GUARDED_BY(mu_) = 0;
  // The shared job registry (keys in store/job_registry.h).
  std::unique_ptr<JobRegistry> registry_;
};

}  // namespace bnserve::store

#endif  // BNSERVE_STORE_REDIS_STORE_H_
