// Backend-independent machinery behind SnapshotStore::Watch: a thread that
// rescans the store whenever it is woken (by a push notification) or the
// polling period passes, and reports the difference to the previous scan as
// StoreEvents. Deriving events from scans means a lost or duplicated
// notification can delay an event by at most one polling period, never lose
// or duplicate it.
#ifndef BNSERVE_STORE_WATCH_LOOP_H_
#define BNSERVE_STORE_WATCH_LOOP_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "store/store.h"

namespace bnserve::store {

// What a scan sees of one model / of the whole store.
struct ModelState {
  std::vector<int64_t> versions;  // ascending
  std::map<std::string, int64_t> labels;
  bool operator==(const ModelState&) const = default;
};
using StoreState = std::map<std::string, ModelState>;

// Scans through the public interface: ListModels (unless `only` names the
// models to scan), ListVersions, ListLabels. Models without versions or
// labels are absent from the result.
absl::StatusOr<StoreState> ScanStore(SnapshotStore& store,
                                     const std::vector<std::string>& only = {});

// Events that turn `before` into `after` (per model: deletions, publications
// ascending, then one kLabelsChanged if the labels differ).
std::vector<StoreEvent> DiffStates(const StoreState& before,
                                   const StoreState& after);

// Keeps the newest `keep_newest` plus every labelled version, deleting the
// rest through DeleteVersion (a version labelled meanwhile is kept).
absl::StatusOr<std::vector<int64_t>> ApplyRetentionGeneric(
    SnapshotStore& store, std::string_view model, int keep_newest);

// Owns the watch thread. Thread-safe.
class WatchLoop {
 public:
  using ScanFn = std::function<absl::StatusOr<StoreState>()>;
  using Callback = std::function<void(const StoreEvent&)>;

  // Takes the baseline scan on the calling thread (so every change after the
  // constructor returns is reported), then starts the thread. If the baseline
  // scan fails, the first successful scan becomes the baseline silently.
  WatchLoop(ScanFn scan, Callback callback, absl::Duration poll_interval);
  // Stops and joins the thread; no callback runs after it returns.
  ~WatchLoop();
  WatchLoop(const WatchLoop&) = delete;
  WatchLoop& operator=(const WatchLoop&) = delete;

  // Requests a rescan as soon as possible (coalesced).
  void Wake();

 private:
  void Run();

  const ScanFn scan_;
  const Callback callback_;
  const absl::Duration poll_interval_;
  absl::Mutex mu_;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Only touched by the constructor (before the thread starts) and Run.
  bool have_baseline_ = false;
  StoreState last_;
  std::thread thread_;
};

}  // namespace bnserve::store

#endif  // BNSERVE_STORE_WATCH_LOOP_H_
