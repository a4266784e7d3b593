// Keeps the served versions of every model loaded and follows the store.
//
// Per model, the manager keeps loaded:
//   - the newest `versions_to_keep` versions that load successfully, and
//   - every version a label points at (labels are resolved through the store
//     and cached; the cache is refreshed on every store change of the model).
// Loading = Read (checksum verified by the store) -> Servable::Create
// (validate, fold, warm up) -> swap of an immutable shared_ptr. A request
// that already holds a Servable finishes on it, whatever is swapped in later.
// A version that fails to load because it is corrupt (DATA_LOSS: a bad
// checksum, or a damaged store entry such as a directory or FIFO in place of
// the snapshot or a Redis key of the wrong type) or invalid
// (INVALID_ARGUMENT) is logged, counted, remembered and never retried: the
// older versions serve instead. A version that cannot be read for another
// reason (permissions, I/O errors) is skipped the same way but retried every
// `retry_interval`. When the store itself is unavailable, what is loaded
// keeps serving and the model is retried every `retry_interval`.
//
// One background thread does all loading; the store's Watch callback only
// marks a model dirty and wakes it, so a new version is served a few
// milliseconds after it is published. If the store cannot be reached at
// start the manager is simply not Ready() and keeps retrying; if it goes away
// later the loaded versions keep serving.
//
// Thread-safe: Get/Ready/LoadedVersions/Models may be called from any number
// of threads concurrently with the background loader.
#ifndef BNSERVE_SERVER_INFERENCE_SERVABLE_MANAGER_H_
#define BNSERVE_SERVER_INFERENCE_SERVABLE_MANAGER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/inference/servable.h"
#include "store/store.h"

namespace bnserve::inference {

class Metrics;

struct ServableManagerOptions {
  // Models to serve; empty = every model in the store (new models are
  // picked up as they appear).
  std::vector<std::string> models;
  // Newest versions kept loaded per model (>= 1); labelled versions come on
  // top.
  int versions_to_keep = 2;
  // Delay before retrying after a transient store error.
  absl::Duration retry_interval = absl::Seconds(1);
  DriftOptions drift;
};

// Which version answers a request.
struct VersionRequest {
  int64_t version = 0;  // > 0: this version
  std::string label;    // non-empty: the version this label points at
  // Neither: the newest loaded version.
};

// One line of the model repository's index (KServe/Triton RepositoryIndex).
struct ModelIndexEntry {
  enum State { kReady, kUnavailable };
  std::string model;
  int64_t version = 0;  // 0: the model as a whole (no version loaded)
  State state = kReady;
  std::string reason;  // why it is unavailable
};

class ServableManager {
 public:
  // `metrics` may be null; otherwise it must outlive the manager.
  ServableManager(std::shared_ptr<store::SnapshotStore> store,
                  ServableManagerOptions options, Metrics* metrics = nullptr);
  // Stops the background thread and the store watch.
  ~ServableManager();

  ServableManager(const ServableManager&) = delete;
  ServableManager& operator=(const ServableManager&) = delete;

  // Validates the options (InvalidArgument for a bad model name or
  // versions_to_keep < 1) and starts the background loader, which watches
  // the store and loads the models. Returns at once: use Ready() or
  // WaitUntilReady() to know when the models are served.
  absl::Status Start();
  // Stops loading and watching (idempotent). Loaded versions stay
  // available to Get.
  void Stop();

  // True once the configured models (all of them; in all-models mode, every
  // model found in the store, at least one) each have a loaded version.
  // Stays true if the store goes away later.
  bool Ready() const;
  // Waits until Ready() or `timeout`; returns Ready().
  bool WaitUntilReady(absl::Duration timeout) const;
  // Called (from the loader thread) whenever Ready() changes.
  void SetReadyCallback(std::function<void(bool)> callback);

  // The servable for `model` and `request`:
  //   INVALID_ARGUMENT  bad model name, or both version and label set;
  //   NOT_FOUND         model not served here, unknown label, or a version
  //                     that is not loaded (the message lists the loaded
  //                     ones);
  //   UNAVAILABLE       a served model with no version loaded yet (retry).
  absl::StatusOr<std::shared_ptr<const Servable>> Get(
      absl::string_view model, const VersionRequest& request = {}) const;

  // Loaded versions of `model`, ascending (empty if none).
  std::vector<int64_t> LoadedVersions(absl::string_view model) const;
  // The labels of `model` (label -> version) as last read from the store
  // (empty if none or unknown).
  std::map<std::string, int64_t> Labels(absl::string_view model) const;
  // Every loaded servable, by model then version.
  std::vector<std::shared_ptr<const Servable>> AllLoaded() const;
  // Every loaded version (READY) and every version refused for good
  // (UNAVAILABLE, with the reason) of every model known here, by model then
  // version; a configured or known model with nothing loaded is one
  // UNAVAILABLE entry with version 0.
  std::vector<ModelIndexEntry> Index() const;
  // Models that have at least one loaded version, sorted.
  std::vector<std::string> Models() const;

  // Synchronously reconciles every model with the store (what the
  // background thread does after a change). For tests and tools; safe to
  // call concurrently with the loader.
  absl::Status SyncAllForTesting();

 private:
  struct ModelState {
    std::map<int64_t, std::shared_ptr<const Servable>> loaded;
    std::map<std::string, int64_t> labels;
    // Versions refused for good (corrupt or invalid) still in the store,
    // with the reason.
    std::map<int64_t, std::string> refused;
  };

  // What the loader thread has to do in a round: the models changed (or
  // due for a retry), or everything (`full`), and whether a retry is due
  // after the retry interval even without a store event.
  struct SyncWork {
    std::set<std::string> models;
    bool full = false;
    bool retry_pending = false;
  };

  void Loop();
  // Waits for store events (or, with a retry pending, at most the retry
  // interval) and adds them to `work`. False once the manager stops.
  bool AwaitWork(SyncWork& work);
  // Starts watching the store if it is not yet watched (a new watch means a
  // full sync); on failure, schedules a full retry in `retry`.
  void EnsureWatch(SyncWork& work, SyncWork& retry, bool failing);
  // Reconciles what `work` names; what fails, and the versions SyncModel
  // could not read, go into `retry`.
  void Sync(const SyncWork& work, SyncWork& retry, bool failing);
  void SyncModels(const std::set<std::string>& models, SyncWork& retry,
                  bool failing) ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  void OnStoreEvent(const store::StoreEvent& event);
  // Reconciles one model with the store; an error means "retry later".
  absl::Status SyncModel(const std::string& model)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  // One SyncModel in progress: the versions loaded before, the ones to
  // serve after, the ones newly refused (with the reason), and the first
  // retryable store error.
  struct ModelSync {
    std::string model;
    std::map<int64_t, std::shared_ptr<const Servable>> current;
    std::map<int64_t, std::shared_ptr<const Servable>> next;
    std::map<int64_t, std::string> refused;
    absl::Status transient;
  };
  // Adds version `v` to `sync.next` (reusing a loaded servable); false if
  // it cannot be served.
  bool LoadVersion(ModelSync& sync, int64_t v)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  // Reads and checks one stored version.
  absl::StatusOr<std::shared_ptr<const Servable>> ReadServable(
      const std::string& model, int64_t v);
  // Records why `v` could not be loaded: refused for good, the store down
  // (`sync.transient`), or retried later.
  void OnLoadError(ModelSync& sync, int64_t v, const absl::Status& st)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  // Makes `sync.next` what the model serves (or forgets the model when the
  // store has none of its versions left).
  void InstallModel(ModelSync& sync, const std::set<int64_t>& existing,
                    std::map<std::string, int64_t> labels);
  absl::Status SyncAll() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  void UpdateReady();

  const std::shared_ptr<store::SnapshotStore> store_;
  const ServableManagerOptions options_;
  Metrics* const metrics_;

  // Serialises reconciliation (the loader thread and SyncAllForTesting).
  absl::Mutex sync_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // Versions refused for good (corrupt or invalid), per model.
  std::map<std::string, std::set<int64_t>> failed_ ABSL_GUARDED_BY(sync_mu_);
  // Versions that could not be read for another reason than a store outage
  // (e.g. permissions): skipped, logged once, retried; and the models to
  // retry for them.
  std::map<std::string, std::set<int64_t>> unreadable_
      ABSL_GUARDED_BY(sync_mu_);
  std::set<std::string> retry_later_ ABSL_GUARDED_BY(sync_mu_);
  // Whether a full reconciliation with the store has succeeded once.
  bool listed_ ABSL_GUARDED_BY(sync_mu_) = false;

  // What requests read.
  mutable absl::Mutex mu_;
  std::map<std::string, ModelState, std::less<>> models_ ABSL_GUARDED_BY(mu_);
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(bool)> ready_callback_ ABSL_GUARDED_BY(mu_);

  // Work for the loader thread.
  absl::Mutex work_mu_;
  std::set<std::string> dirty_ ABSL_GUARDED_BY(work_mu_);
  bool full_sync_ ABSL_GUARDED_BY(work_mu_) = true;
  bool stop_ ABSL_GUARDED_BY(work_mu_) = false;

  std::unique_ptr<store::WatchHandle> watch_;  // loader thread only
  std::thread thread_;
};

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_SERVABLE_MANAGER_H_
