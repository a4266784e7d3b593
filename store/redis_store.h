// SnapshotStore on Redis (hiredis, synchronous API): the shared store for
// several machines. Keys (all of one model share the hash tag `{<model>}`, so
// a Redis Cluster would keep them on one slot):
//
//   bnserve:{<model>}:counter   INCR counter: the high-water mark, never
//                               decremented, so versions are never reused
//   bnserve:{<model>}:versions  sorted set, member "<n>" with score n
//   bnserve:{<model>}:v:<n>     StoredSnapshot envelope (checksummed)
//   bnserve:{<model>}:labels    hash label -> "<n>"
//   bnserve:models              set of model names. It is cross-slot (the one
//                               key outside the per-model tag): it is written
//                               with SADD before the version's transaction
//                               and ListModels keeps only models whose
//                               version set is non-empty.
//   bnserve:{<model>}:ckpt:<job>  hash "<step>" -> StoredCheckpoint envelope
//                               of a training job (never a version)
//   bnserve:checkpoints         set of "<model>/<job>" with checkpoints (an
//                               index like bnserve:models, written first)
//   channel bnserve:events      "<kind> <model> <version>" after each change
//
// Publish = INCR counter, then MULTI { SET blob, ZADD versions } EXEC. Both
// steps are safe to retry once on a fresh connection (a retried INCR only
// skips a number; the transaction is idempotent for a given version).
// SetLabel and DeleteVersion are Lua scripts, so "the version exists" / "no
// label points at it" are checked atomically with the write.
//
// "Durable when Publish returns" holds as far as the server persists: run
// Redis with `appendonly yes` and `appendfsync always` (and replicas) when the
// store is the system of record.
//
// Connections come from a small pool, are opened lazily with a connect
// timeout and given a command timeout. Any connection error is UNAVAILABLE;
// after a failed connect, reconnects are attempted with exponential backoff
// (calls in between fail fast). This client talks to one Redis node (it does
// not follow Cluster redirects). Opening a RedisStore sets SIGPIPE to
// SIG_IGN if it was SIG_DFL (hiredis writes to sockets with write(2)).
#ifndef BNSERVE_STORE_REDIS_STORE_H_
#define BNSERVE_STORE_REDIS_STORE_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
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

  // Key of the envelope of model/version (for tests and tools).
  static std::string BlobKey(std::string_view model, int64_t version);

  class Connection;  // redis_store.cc
  // A connected, authenticated context with timeouts set (also used by the
  // watch subscriber). UNAVAILABLE if Redis cannot be reached; honours the
  // reconnect backoff.
  absl::StatusOr<std::unique_ptr<Connection>> Connect();

 private:
  struct Reply;
  using Command = std::vector<std::string_view>;
  // Sends `commands` pipelined on a pooled connection and returns their
  // replies (error replies become statuses). On a connection error the pool
  // is dropped; if `retry_safe` and the connection was not fresh, it retries
  // once on a new one.
  absl::StatusOr<std::vector<std::shared_ptr<Reply>>> Run(
      const std::vector<Command>& commands, bool retry_safe);
  absl::StatusOr<std::shared_ptr<Reply>> RunOne(const Command& command,
                                                bool retry_safe = true);
  void Notify(std::string_view kind, std::string_view model, int64_t version);

  const StoreUri uri_;
  const StoreOptions options_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
  absl::Duration backoff_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  absl::Time next_connect_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::string last_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bnserve::store

#endif  // BNSERVE_STORE_REDIS_STORE_H_
