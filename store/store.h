// The versioned snapshot store: one contract, three backends.
//
//   file   a directory (`path` or `file:///abs/path`), the embedded default;
//          layout `<root>/<model>/<version>/snapshot.binpb` (see file_store.h)
//   redis  `redis://[[user]:password@]host[:port][/db]`, the shared store for
//          several machines; `redis-sentinel://…` (a master found and
//          followed through Sentinel) and `redis-cluster://…` (a Redis
//          Cluster) have no single point of failure (see redis_store.h)
//   mem    `mem://name`, in-memory, shared by name within one process, with
//          failure injection for tests (see memory_store.h)
//
// Every backend guarantees (and tests/store/store_conformance_test.cc checks):
// - Publish assigns latest + 1; versions are never reused, even after
//   deletion (or the loss of the Redis counter), and never exceed
//   kMaxVersion (OUT_OF_RANGE); concurrent publishers (threads or processes)
//   never get the same version; Publish returns only once the snapshot is
//   durable.
// - A reader never sees a partially written snapshot.
// - Every stored snapshot carries a SHA-256 checksum that Read verifies; a
//   corrupt version is DATA_LOSS, never served (ReadLatestValid skips it).
// - Labels point at existing versions; a labelled version cannot be deleted;
//   retention keeps the newest N plus every labelled version.
// - Model names and labels are validated on every call (no path traversal).
// - Watch reports every change, pushed (inotify / Redis pub-sub / in-process)
//   with a polling fallback.
#ifndef BNSERVE_STORE_STORE_H_
#define BNSERVE_STORE_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bnserve/v1/snapshot.pb.h"

namespace bnserve::store {

class JobRegistry;  // store/job_registry.h

// A change to the store, as reported by SnapshotStore::Watch.
struct StoreEvent {
  enum class Kind { kPublished, kDeleted, kLabelsChanged };
  Kind kind;
  std::string model;
  int64_t version;  // 0 for kLabelsChanged
};

// One stored checkpoint of a training job (see SnapshotStore::WriteCheckpoint).
struct CheckpointRef {
  std::string model;
  std::string job_id;
  int64_t step = 0;
  bool operator==(const CheckpointRef&) const = default;
  bool operator<(const CheckpointRef& o) const {
    return std::tie(model, job_id, step) < std::tie(o.model, o.job_id, o.step);
  }
};

// Returned by Watch. Destroying it unsubscribes and joins the threads it
// owns: after the destructor returns the callback is never called again. It
// must not be destroyed from inside the callback. It does not borrow the
// store: it may outlive the SnapshotStore that created it.
class WatchHandle {
 public:
  virtual ~WatchHandle() = default;
};

// Thread-safe: all methods may be called concurrently from many threads and
// (file and Redis backends) from many processes.
//
// Error codes common to all methods: INVALID_ARGUMENT for a bad model name or
// label, UNAVAILABLE when the backend cannot be reached (retryable),
// RESOURCE_EXHAUSTED (disk full) or INTERNAL for other I/O failures.
class SnapshotStore {
 public:
  virtual ~SnapshotStore() = default;

  // Publishes `snapshot` as version latest+1 of snapshot.model() (its
  // `version` field is overwritten with the assigned version). Durable when
  // it returns; never leaves a partial version visible. Versions are never
  // reused, even after deletion.
  virtual absl::StatusOr<int64_t> Publish(
      const bnserve::v1::Snapshot& snapshot) = 0;

  // Reads and verifies a version. NOT_FOUND if absent, DATA_LOSS if the
  // checksum or parse fails (or the stored model/version do not match).
  virtual absl::StatusOr<bnserve::v1::Snapshot> Read(std::string_view model,
                                                     int64_t version) = 0;

  // Newest version number (not verified). NOT_FOUND if the model has no
  // versions.
  virtual absl::StatusOr<int64_t> Latest(std::string_view model) = 0;

  // All versions, ascending; empty if the model is unknown.
  virtual absl::StatusOr<std::vector<int64_t>> ListVersions(
      std::string_view model) = 0;

  // Models that have at least one version, sorted.
  virtual absl::StatusOr<std::vector<std::string>> ListModels() = 0;

  // Labels match the model-name rule but must start with a letter (so a label
  // never looks like a version). SetLabel creates or moves a label; NOT_FOUND
  // if the version does not exist.
  virtual absl::Status SetLabel(std::string_view model, std::string_view label,
                                int64_t version) = 0;
  // NOT_FOUND if the label does not exist.
  virtual absl::StatusOr<int64_t> ResolveLabel(std::string_view model,
                                               std::string_view label) = 0;
  // Empty map if the model is unknown.
  virtual absl::StatusOr<std::map<std::string, int64_t>> ListLabels(
      std::string_view model) = 0;
  // NOT_FOUND if the label does not exist.
  virtual absl::Status DeleteLabel(std::string_view model,
                                   std::string_view label) = 0;

  // Deletes a version. FAILED_PRECONDITION if a label points at it, NOT_FOUND
  // if absent. Its number is never handed out again.
  virtual absl::Status DeleteVersion(std::string_view model,
                                     int64_t version) = 0;

  // Keeps the newest `keep_newest` (>= 0) versions plus every labelled one;
  // deletes the rest and returns the deleted versions, ascending.
  virtual absl::StatusOr<std::vector<int64_t>> ApplyRetention(
      std::string_view model, int keep_newest) = 0;

  // Training-job checkpoints, kept beside the versions of `model` but never
  // listed, read, watched or served as versions, and atomic and checksummed
  // like them. A checkpoint is identified by (model, job_id, step); job ids
  // follow the model-name rule. The payload is opaque to the store.
  //
  // WriteCheckpoint stores or replaces one checkpoint atomically (a reader
  // sees the old bytes or the new ones, never a mix) and durably.
  // ReadCheckpoint returns the verified payload: NOT_FOUND if absent,
  // DATA_LOSS if the checksum, the names or the parse fail.
  // ListCheckpoints lists every checkpoint of every job of every model,
  // sorted by (model, job_id, step). DeleteCheckpoint is idempotent (absent
  // is OK). Backends without checkpoints answer UNIMPLEMENTED.
  virtual absl::Status WriteCheckpoint(std::string_view model,
                                       std::string_view job_id, int64_t step,
                                       std::string_view payload);
  virtual absl::StatusOr<std::string> ReadCheckpoint(std::string_view model,
                                                     std::string_view job_id,
                                                     int64_t step);
  virtual absl::StatusOr<std::vector<CheckpointRef>> ListCheckpoints();
  virtual absl::Status DeleteCheckpoint(std::string_view model,
                                        std::string_view job_id, int64_t step);

  // The registry of training jobs shared by the trainers on this store
  // (store/job_registry.h): Redis stores share it between processes; file
  // and mem stores keep it in the process. Owned by the store; never null
  // for the three backends.
  virtual JobRegistry* job_registry() { return nullptr; }

  // Calls `callback` (from a store-owned thread, never concurrently with
  // itself) for every change to any model made after Watch returns, including
  // changes made by other processes. Changes are pushed (inotify / Redis
  // pub-sub / in-process) and also found by polling every
  // StoreOptions::poll_interval, comparing version lists and labels. Events
  // for one model come in order: deletions, publications (ascending), then
  // label changes. Several changes between two scans may be coalesced into
  // one kLabelsChanged.
  virtual absl::StatusOr<std::unique_ptr<WatchHandle>> Watch(
      std::function<void(const StoreEvent&)> callback) = 0;

  // Human-readable URI of this store, e.g. "file:///var/lib/bnserve" (never
  // contains a password).
  virtual std::string uri() const = 0;
};

struct StoreOptions {
  // Polling fallback period of Watch.
  absl::Duration poll_interval = absl::Seconds(1);
  // Whether Watch also uses push notifications (inotify / Redis pub-sub /
  // in-process). false = polling only (e.g. for NFS, or to test polling).
  bool watch_notifications = true;
  // Models Watch scans and reports; empty = every model in the store. A
  // server that serves a fixed list sets it, so the cost of each poll
  // follows the models it serves, not everything else in the store.
  std::vector<std::string> watch_models;
  // Redis: connect timeout and per-command timeout.
  absl::Duration redis_connect_timeout = absl::Seconds(2);
  absl::Duration redis_command_timeout = absl::Seconds(5);
  // Redis: after a failed connect, further connects are attempted only after
  // a delay that doubles from `initial` up to `max` (calls in between fail
  // fast with UNAVAILABLE); reset by a successful connect.
  absl::Duration redis_backoff_initial = absl::Milliseconds(50);
  absl::Duration redis_backoff_max = absl::Seconds(2);
  // Redis: every write (Publish, labels, deletions) is acknowledged only
  // once at least this many replicas of the master that took it have it
  // (`WAIT`), waiting at most `redis_wait_timeout`; fewer is UNAVAILABLE
  // ("written but not acknowledged"). 0 = do not wait (single node).
  int redis_min_replicas = 0;
  absl::Duration redis_wait_timeout = absl::Seconds(2);
};

// Opens a store from a URI:
//   "path" or "file:///abs/path"      FileStore (creates the root directory)
//   "redis://[[user]:pass@]host[:port][/db]"  RedisStore (port 6379, db 0 by
//                                     default; connects lazily)
//   "redis-sentinel://[[user]:pass@]h1[:port],h2[:port],.../master[/db]"
//                                     RedisStore on the master that the
//                                     Sentinels (port 26379 by default) name
//                                     `master`; credentials are for the
//                                     Redis nodes, not the Sentinels
//   "redis-cluster://[[user]:pass@]h1[:port],h2[:port],..."
//                                     RedisStore on a Redis Cluster found
//                                     from these seed nodes (no db: 0)
//   "mem://name"                      MemoryStore shared by name within the
//                                     process for the life of the process
// An unknown scheme or a malformed URI is INVALID_ARGUMENT.
absl::StatusOr<std::unique_ptr<SnapshotStore>> OpenStore(
    std::string_view uri, const StoreOptions& options = {});

// A parsed store URI (exposed for tests and for flags validation).
struct StoreUri {
  enum class Scheme { kFile, kRedis, kRedisSentinel, kRedisCluster, kMemory };
  struct Endpoint {
    std::string host;  // IPv6 without brackets
    int port = 6379;
  };
  Scheme scheme = Scheme::kFile;
  std::string path;  // kFile: as given (may be relative)
  // kRedis*: the node (kRedis), the Sentinels (kRedisSentinel) or the seed
  // nodes (kRedisCluster), in URI order; 1..kMaxRedisEndpoints of them.
  // `host`/`port` repeat the first one.
  std::vector<Endpoint> endpoints;
  std::string host;
  int port = 6379;
  int db = 0;               // kRedis, kRedisSentinel
  std::string master_name;  // kRedisSentinel: the Sentinels' master name
  std::string username;     // kRedis*, optional
  std::string password;     // kRedis*, optional
  std::string name;         // kMemory
};
// Most hosts in one redis-sentinel:// or redis-cluster:// URI.
inline constexpr size_t kMaxRedisEndpoints = 64;
absl::StatusOr<StoreUri> ParseStoreUri(std::string_view uri);

// Versions are 1..kMaxVersion: at most 18 decimal digits, so every version
// has exactly one spelling and version + 1 never overflows.
inline constexpr int64_t kMaxVersion = 999'999'999'999'999'999;

// The one parser of stored version numbers (file store directory names,
// label files and .next_version; Redis index members, labels and counter),
// shared by writers and readers: decimal digits only, no sign, spaces or
// leading zeros, 1..kMaxVersion. "012", "+3", "12.tmp" and 19-digit numbers
// are not versions.
bool ParseVersion(std::string_view text, int64_t* version);

// OUT_OF_RANGE: `model` cannot get a version past kMaxVersion.
absl::Status VersionsExhausted(std::string_view model);

// [A-Za-z0-9][A-Za-z0-9._-]{0,63}; anything else is INVALID_ARGUMENT naming
// the rule.
absl::Status ValidateModelName(std::string_view name);
// Same rule, but must start with a letter [A-Za-z].
absl::Status ValidateLabel(std::string_view label);
// The model-name rule, for training-job ids (checkpoint keys and paths).
absl::Status ValidateJobId(std::string_view job_id);
// Checks the arguments of the checkpoint methods: model name, job id and a
// step >= 0. INVALID_ARGUMENT naming the problem.
absl::Status ValidateCheckpointKey(std::string_view model,
                                   std::string_view job_id, int64_t step);

// SnapshotStore::ApplyRetention that also keeps the versions in `also_keep`
// (e.g. the versions live training jobs started from, which a restarted job
// must still be able to read): keeps the newest `keep_newest` (>= 0), every
// labelled version and `also_keep`; deletes the rest and returns them,
// ascending.
absl::StatusOr<std::vector<int64_t>> ApplyRetentionKeeping(
    SnapshotStore& store, std::string_view model, int keep_newest,
    const std::set<int64_t>& also_keep);

// Reads the newest version of `model` that verifies, walking versions
// newest-first and skipping DATA_LOSS (and versions deleted meanwhile).
// NOT_FOUND if the model has no versions; DATA_LOSS if none verifies; other
// errors are returned as is.
absl::StatusOr<bnserve::v1::Snapshot> ReadLatestValid(SnapshotStore& store,
                                                      std::string_view model);

}  // namespace bnserve::store

#endif  // BNSERVE_STORE_STORE_H_
