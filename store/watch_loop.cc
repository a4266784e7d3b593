#include "store/watch_loop.h"

#include <algorithm>
#include <set>
#include <utility>

#include "model/status_macros.h"
#include "store/strings.h"

namespace bnserve::store {

absl::StatusOr<StoreState> ScanStore(SnapshotStore& store,
                                     const std::vector<std::string>& only) {
  StoreState state;
  std::vector<std::string> models = only;
  if (only.empty()) {
    BNSERVE_ASSIGN_OR_RETURN(models, store.ListModels());
  }
  for (const std::string& model : models) {
    ModelState& m = state[model];
    BNSERVE_ASSIGN_OR_RETURN(m.versions, store.ListVersions(model));
    BNSERVE_ASSIGN_OR_RETURN(m.labels, store.ListLabels(model));
    if (m.versions.empty() && m.labels.empty()) state.erase(model);
  }
  return state;
}

std::vector<StoreEvent> DiffStates(const StoreState& before,
                                   const StoreState& after) {
  std::set<std::string> models;
  for (const auto& [name, unused] : before) models.insert(name);
  for (const auto& [name, unused] : after) models.insert(name);
  static const ModelState kEmpty;
  std::vector<StoreEvent> events;
  for (const std::string& model : models) {
    auto b = before.find(model);
    auto a = after.find(model);
    const ModelState& old_state = b == before.end() ? kEmpty : b->second;
    const ModelState& new_state = a == after.end() ? kEmpty : a->second;
    if (old_state == new_state) continue;
    std::vector<int64_t> removed, added;
    std::set_difference(old_state.versions.begin(), old_state.versions.end(),
                        new_state.versions.begin(), new_state.versions.end(),
                        std::back_inserter(removed));
    std::set_difference(new_state.versions.begin(), new_state.versions.end(),
                        old_state.versions.begin(), old_state.versions.end(),
                        std::back_inserter(added));
    for (int64_t v : removed) {
      events.push_back({StoreEvent::Kind::kDeleted, model, v});
    }
    for (int64_t v : added) {
      events.push_back({StoreEvent::Kind::kPublished, model, v});
    }
    if (old_state.labels != new_state.labels) {
      events.push_back({StoreEvent::Kind::kLabelsChanged, model, 0});
    }
  }
  return events;
}

absl::StatusOr<std::vector<int64_t>> ApplyRetentionGeneric(
    SnapshotStore& store, std::string_view model, int keep_newest) {
  return ApplyRetentionKeeping(store, model, keep_newest, {});
}

absl::StatusOr<std::vector<int64_t>> ApplyRetentionKeeping(
    SnapshotStore& store, std::string_view model, int keep_newest,
    const std::set<int64_t>& also_keep) {
  if (keep_newest < 0) {
    return absl::InvalidArgumentError("keep_newest must be >= 0");
  }
  BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> versions,
                           store.ListVersions(model));
  BNSERVE_ASSIGN_OR_RETURN(auto labels, store.ListLabels(model));
  std::set<int64_t> labelled = also_keep;
  for (const auto& [label, v] : labels) labelled.insert(v);
  std::vector<int64_t> deleted;
  const size_t keep = static_cast<size_t>(keep_newest);
  if (versions.size() <= keep) return deleted;
  for (size_t i = 0; i + keep < versions.size(); ++i) {
    const int64_t v = versions[i];
    if (labelled.contains(v)) continue;
    absl::Status s = store.DeleteVersion(model, v);
    if (s.ok()) {
      deleted.push_back(v);
    } else if (!absl::IsFailedPrecondition(s) && !absl::IsNotFound(s)) {
      return s;  // labelled or deleted meanwhile: fine; anything else is not
    }
  }
  return deleted;
}

WatchLoop::WatchLoop(ScanFn scan, Callback callback,
                     absl::Duration poll_interval)
    : scan_(std::move(scan)),
      callback_(std::move(callback)),
      poll_interval_(std::max(poll_interval, absl::Milliseconds(10))) {
  absl::StatusOr<StoreState> initial = scan_();
  if (initial.ok()) {
    last_ = *std::move(initial);
    have_baseline_ = true;
  }
  thread_ = std::thread([this] { Run(); });
}

WatchLoop::~WatchLoop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void WatchLoop::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

void WatchLoop::Run() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return wake_ || stop_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&woken), poll_interval_);
      if (stop_) return;
      wake_ = false;
    }
    absl::StatusOr<StoreState> state = scan_();
    if (!state.ok()) continue;  // backend down: retry at the next poll/wake
    if (have_baseline_) {
      for (const StoreEvent& event : DiffStates(last_, *state)) {
        {
          absl::MutexLock lock(&mu_);
          if (stop_) return;
        }
        callback_(event);
      }
    }
    last_ = *std::move(state);
    have_baseline_ = true;
  }
}

}  // namespace bnserve::store
