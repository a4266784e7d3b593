#include "server/inference/servable_manager.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/status_macros.h"
#include "server/common/server_setup.h"
#include "server/inference/metrics.h"

namespace bnserve::inference {
namespace {

using server::Log;
using server::LogLevel;

std::string_view View(absl::string_view s) { return {s.data(), s.size()}; }

// Errors after which a version is refused for good: snapshots are immutable,
// so a corrupt or invalid one never becomes valid.
bool IsPermanentLoadError(const absl::Status& status) {
  return absl::IsDataLoss(status) || absl::IsInvalidArgument(status) ||
         absl::IsFailedPrecondition(status);
}

}  // namespace

ServableManager::ServableManager(std::shared_ptr<store::SnapshotStore> store,
                                 ServableManagerOptions options,
                                 Metrics* metrics)
    : store_(std::move(store)),
      options_(std::move(options)),
      metrics_(metrics) {}

ServableManager::~ServableManager() { Stop(); }

absl::Status ServableManager::Start() {
  if (options_.versions_to_keep < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("versions_to_keep must be at least 1, got ",
                     options_.versions_to_keep));
  }
  for (const std::string& m : options_.models) {
    BNSERVE_RETURN_IF_ERROR(store::ValidateModelName(m));
  }
  if (thread_.joinable()) return absl::FailedPreconditionError("started");
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void ServableManager::Stop() {
  {
    absl::MutexLock lock(&work_mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  watch_.reset();
}

void ServableManager::OnStoreEvent(const store::StoreEvent& event) {
  absl::MutexLock lock(&work_mu_);
  dirty_.insert(event.model);
}

namespace {

// Repeated failures are logged at debug level until the store recovers.
void LogSyncFailure(bool failing, const std::string& message) {
  Log(failing ? LogLevel::kDebug : LogLevel::kWarning, message);
}

}  // namespace

void ServableManager::Loop() {
  SyncWork retry;
  bool failing = false;
  while (true) {
    // A retry is due only once its interval has passed; a store event
    // arriving earlier is handled now and the retry joins it.
    SyncWork work = std::move(retry);
    retry = SyncWork();
    if (!AwaitWork(work)) break;
    EnsureWatch(work, retry, failing);
    Sync(work, retry, failing);
    if (failing && !retry.retry_pending) {
      Log(LogLevel::kInfo, absl::StrCat("store ", store_->uri(), " is back"));
    }
    failing = retry.retry_pending;
    UpdateReady();
  }
}

bool ServableManager::AwaitWork(SyncWork& work) {
  absl::MutexLock lock(&work_mu_);
  auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(work_mu_) {
    return stop_ || full_sync_ || !dirty_.empty();
  };
  if (work.retry_pending) {
    work_mu_.AwaitWithTimeout(absl::Condition(&has_work),
                              options_.retry_interval);
  } else {
    work_mu_.Await(absl::Condition(&has_work));
  }
  if (stop_) return false;
  work.models.insert(dirty_.begin(), dirty_.end());
  dirty_.clear();
  work.full = work.full || full_sync_;
  full_sync_ = false;
  work.retry_pending = false;
  return true;
}

void ServableManager::EnsureWatch(SyncWork& work, SyncWork& retry,
                                  bool failing) {
  if (watch_ != nullptr) return;
  // Watch before listing, so no change between the two is missed.
  auto watch =
      store_->Watch([this](const store::StoreEvent& e) { OnStoreEvent(e); });
  if (watch.ok()) {
    watch_ = std::move(watch).value();
    work.full = true;
    return;
  }
  LogSyncFailure(failing, absl::StrCat("cannot watch store ", store_->uri(),
                                       ": ", watch.status().ToString()));
  retry.full = retry.retry_pending = true;
}

void ServableManager::Sync(const SyncWork& work, SyncWork& retry,
                           bool failing) {
  absl::MutexLock lock(&sync_mu_);
  if (work.full) {
    absl::Status st = SyncAll();
    if (!st.ok()) {
      LogSyncFailure(
          failing, absl::StrCat("store ", store_->uri(), ": ", st.ToString(),
                                "; retrying in ",
                                absl::FormatDuration(options_.retry_interval)));
      retry.full = retry.retry_pending = true;
    }
  } else {
    SyncModels(work.models, retry, failing);
  }
  // Versions that could not be read join the next round.
  if (!retry_later_.empty()) {
    retry.models.insert(retry_later_.begin(), retry_later_.end());
    retry_later_.clear();
    retry.retry_pending = true;
  }
}

void ServableManager::SyncModels(const std::set<std::string>& models,
                                 SyncWork& retry, bool failing) {
  for (const std::string& m : models) {
    if (!options_.models.empty() &&
        std::find(options_.models.begin(), options_.models.end(), m) ==
            options_.models.end()) {
      continue;  // not a model this server serves
    }
    absl::Status st = SyncModel(m);
    if (!st.ok()) {
      LogSyncFailure(failing, absl::StrCat("model ", m, ": ", st.ToString(),
                                           "; retrying"));
      retry.models.insert(m);
      retry.retry_pending = true;
    }
  }
}

absl::Status ServableManager::SyncAllForTesting() {
  absl::Status st;
  {
    absl::MutexLock lock(&sync_mu_);
    st = SyncAll();
  }
  UpdateReady();
  return st;
}

absl::Status ServableManager::SyncAll() {
  std::set<std::string> models(options_.models.begin(), options_.models.end());
  if (models.empty()) {
    BNSERVE_ASSIGN_OR_RETURN(std::vector<std::string> listed,
                             store_->ListModels());
    models.insert(listed.begin(), listed.end());
    // Models that disappeared from the store are reconciled (unloaded) too.
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [name, state] : models_) models.insert(name);
  }
  absl::Status first_error;
  for (const std::string& m : models) {
    absl::Status st = SyncModel(m);
    if (!st.ok() && first_error.ok()) {
      first_error =
          absl::Status(st.code(), absl::StrCat(m, ": ", st.message()));
    }
  }
  if (first_error.ok()) listed_ = true;
  return first_error;
}

absl::Status ServableManager::SyncModel(const std::string& model) {
  BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> versions,
                           store_->ListVersions(model));
  BNSERVE_ASSIGN_OR_RETURN(auto labels, store_->ListLabels(model));
  ModelSync sync{.model = model};
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = models_.find(model);
    if (it != models_.end()) sync.current = it->second.loaded;
  }
  int kept = 0;
  for (auto it = versions.rbegin();
       it != versions.rend() && kept < options_.versions_to_keep &&
       sync.transient.ok();
       ++it) {
    if (LoadVersion(sync, *it)) ++kept;
  }
  const std::set<int64_t> existing(versions.begin(), versions.end());
  for (const auto& [label, v] : labels) {
    if (!sync.transient.ok()) break;
    if (existing.count(v) != 0) LoadVersion(sync, v);
  }
  if (!sync.transient.ok()) {
    // Keep everything already loaded; retry the rest later.
    for (auto& [v, s] : sync.current) sync.next.emplace(v, s);
  }
  InstallModel(sync, existing, std::move(labels));
  return sync.transient;
}

bool ServableManager::LoadVersion(ModelSync& sync, int64_t v) {
  if (failed_[sync.model].count(v) != 0) return false;
  if (sync.next.count(v) != 0) return true;
  if (auto it = sync.current.find(v); it != sync.current.end()) {
    sync.next[v] = it->second;
    return true;
  }
  absl::StatusOr<std::shared_ptr<const Servable>> servable =
      ReadServable(sync.model, v);
  if (!servable.ok()) {
    OnLoadError(sync, v, servable.status());
    return false;
  }
  unreadable_[sync.model].erase(v);
  sync.next[v] = *std::move(servable);
  Log(LogLevel::kInfo,
      absl::StrCat("loaded model ", sync.model, " version ", v));
  if (metrics_ != nullptr) metrics_->RecordLoad(sync.model);
  return true;
}

absl::StatusOr<std::shared_ptr<const Servable>> ServableManager::ReadServable(
    const std::string& model, int64_t v) {
  BNSERVE_ASSIGN_OR_RETURN(v1::Snapshot snapshot, store_->Read(model, v));
  if (snapshot.model() != model || snapshot.version() != v) {
    return absl::DataLossError(absl::StrCat("stored snapshot says ",
                                            snapshot.model(), " version ",
                                            snapshot.version()));
  }
  return Servable::Create(snapshot, options_.drift);
}

void ServableManager::OnLoadError(ModelSync& sync, int64_t v,
                                  const absl::Status& st) {
  const std::string& model = sync.model;
  if (absl::IsNotFound(st)) return;  // deleted meanwhile
  if (IsPermanentLoadError(st)) {
    failed_[model].insert(v);
    sync.refused[v] = std::string(st.message());
    Log(LogLevel::kError, absl::StrCat("refusing model ", model, " version ", v,
                                       ": ", st.ToString()));
    if (metrics_ != nullptr) metrics_->RecordLoadFailure(model);
    return;
  }
  if (absl::IsUnavailable(st)) {  // the store is down: keep what we have
    if (sync.transient.ok()) sync.transient = st;
    return;
  }
  // Any other error reading this one version (permissions, I/O): the
  // older versions serve meanwhile and this one is retried later.
  if (unreadable_[model].insert(v).second) {
    Log(LogLevel::kWarning,
        absl::StrCat("cannot read model ", model, " version ", v, ": ",
                     st.ToString(), "; serving older versions, retrying"));
  }
  retry_later_.insert(model);
}

void ServableManager::InstallModel(ModelSync& sync,
                                   const std::set<int64_t>& existing,
                                   std::map<std::string, int64_t> labels) {
  std::vector<int64_t> unloaded;
  for (const auto& [v, s] : sync.current) {
    if (sync.next.count(v) == 0) unloaded.push_back(v);
  }
  {
    absl::MutexLock lock(&mu_);
    if (sync.next.empty() && existing.empty()) {
      models_.erase(sync.model);
    } else {
      ModelState& state = models_[sync.model];
      state.loaded = std::move(sync.next);
      state.labels = std::move(labels);
      state.refused.merge(sync.refused);
      // Forget refusals of versions deleted from the store.
      for (auto it = state.refused.begin(); it != state.refused.end();) {
        it = existing.count(it->first) == 0 ? state.refused.erase(it)
                                            : std::next(it);
      }
    }
  }
  if (!unloaded.empty()) {
    Log(LogLevel::kInfo,
        absl::StrCat("unloaded model ", sync.model, " versions ",
                     absl::StrJoin(unloaded, ", ")));
  }
}

void ServableManager::UpdateReady() {
  bool listed;
  {
    absl::MutexLock lock(&sync_mu_);
    listed = listed_;
  }
  std::function<void(bool)> callback;
  bool ready = false;
  {
    absl::MutexLock lock(&mu_);
    auto served = [this](const std::string& m) ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      auto it = models_.find(m);
      return it != models_.end() && !it->second.loaded.empty();
    };
    if (!options_.models.empty()) {
      ready =
          std::all_of(options_.models.begin(), options_.models.end(), served);
    } else {
      ready = listed && std::any_of(models_.begin(), models_.end(),
                                    [](const auto& entry) {
                                      return !entry.second.loaded.empty();
                                    });
    }
    if (ready == ready_) return;
    ready_ = ready;
    callback = ready_callback_;
  }
  Log(LogLevel::kInfo, ready ? "ready: serving" : "not ready");
  if (callback) callback(ready);
}

bool ServableManager::Ready() const {
  absl::ReaderMutexLock lock(&mu_);
  return ready_;
}

bool ServableManager::WaitUntilReady(absl::Duration timeout) const {
  mu_.ReaderLockWhenWithTimeout(
      absl::Condition(
          +[](const bool* ready) { return *ready; }, &ready_),
      timeout);
  const bool ready = ready_;
  mu_.ReaderUnlock();
  return ready;
}

void ServableManager::SetReadyCallback(std::function<void(bool)> callback) {
  absl::MutexLock lock(&mu_);
  ready_callback_ = std::move(callback);
}

absl::StatusOr<std::shared_ptr<const Servable>> ServableManager::Get(
    absl::string_view model, const VersionRequest& request) const {
  BNSERVE_RETURN_IF_ERROR(store::ValidateModelName(View(model)));
  if (request.version != 0 && !request.label.empty()) {
    return absl::InvalidArgumentError(
        "set either a version or a label, not both");
  }
  if (request.version < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("version must be positive, got ", request.version));
  }
  absl::ReaderMutexLock lock(&mu_);
  auto it = models_.find(model);
  if (it == models_.end() || it->second.loaded.empty()) {
    const bool configured =
        std::find(options_.models.begin(), options_.models.end(), model) !=
        options_.models.end();
    if (configured || it != models_.end()) {
      return absl::UnavailableError(absl::StrCat(
          "model '", model,
          "' has no version loaded (still loading, or every version was "
          "refused: see the server log); retry later"));
    }
    std::vector<std::string> names;
    for (const auto& [name, state] : models_) {
      if (!state.loaded.empty()) names.push_back(name);
    }
    return absl::NotFoundError(
        absl::StrCat("model '", model, "' is not served here (serving: ",
                     names.empty() ? "none" : absl::StrJoin(names, ", "), ")"));
  }
  const ModelState& state = it->second;
  auto loaded_list = [&state] {
    std::vector<int64_t> v;
    for (const auto& [version, s] : state.loaded) v.push_back(version);
    return absl::StrJoin(v, ", ");
  };
  int64_t version = request.version;
  if (!request.label.empty()) {
    auto label = state.labels.find(request.label);
    if (label == state.labels.end()) {
      std::vector<std::string> names;
      for (const auto& [name, v] : state.labels) names.push_back(name);
      return absl::NotFoundError(absl::StrCat(
          "label '", request.label, "' of model '", model,
          "' not found (labels: ",
          names.empty() ? "none" : absl::StrJoin(names, ", "), ")"));
    }
    version = label->second;
  }
  if (version == 0) return state.loaded.rbegin()->second;
  auto servable = state.loaded.find(version);
  if (servable == state.loaded.end() && !request.label.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "label '", request.label, "' of model '", model, "' points at version ",
        version,
        ", which is not loaded on this server (refused as corrupt or "
        "invalid, see the server log; loaded: ",
        loaded_list(), ")"));
  }
  if (servable == state.loaded.end()) {
    return absl::NotFoundError(absl::StrCat(
        "version ", version, " of model '", model,
        "' is not loaded on this server (loaded: ", loaded_list(), ")"));
  }
  return servable->second;
}

std::vector<int64_t> ServableManager::LoadedVersions(
    absl::string_view model) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<int64_t> out;
  auto it = models_.find(model);
  if (it == models_.end()) return out;
  for (const auto& [v, s] : it->second.loaded) out.push_back(v);
  return out;
}

std::map<std::string, int64_t> ServableManager::Labels(
    absl::string_view model) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = models_.find(model);
  if (it == models_.end()) return {};
  return it->second.labels;
}

std::vector<std::shared_ptr<const Servable>> ServableManager::AllLoaded()
    const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::shared_ptr<const Servable>> out;
  for (const auto& [name, state] : models_) {
    for (const auto& [v, s] : state.loaded) out.push_back(s);
  }
  return out;
}

std::vector<ModelIndexEntry> ServableManager::Index() const {
  std::vector<ModelIndexEntry> out;
  absl::ReaderMutexLock lock(&mu_);
  auto add_model = [&](const std::string& name, const ModelState* state) {
    std::map<int64_t, ModelIndexEntry> versions;
    if (state != nullptr) {
      for (const auto& [v, s] : state->loaded) {
        versions[v] = {name, v, ModelIndexEntry::kReady, ""};
      }
      for (const auto& [v, reason] : state->refused) {
        versions[v] = {name, v, ModelIndexEntry::kUnavailable, reason};
      }
    }
    if (versions.empty()) {
      out.push_back({name, 0, ModelIndexEntry::kUnavailable,
                     "no version of this model is loaded yet"});
    }
    for (auto& [v, entry] : versions) out.push_back(std::move(entry));
  };
  std::set<std::string> names(options_.models.begin(), options_.models.end());
  for (const auto& [name, state] : models_) names.insert(name);
  for (const std::string& name : names) {
    auto it = models_.find(name);
    add_model(name, it == models_.end() ? nullptr : &it->second);
  }
  return out;
}

std::vector<std::string> ServableManager::Models() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [name, state] : models_) {
    if (!state.loaded.empty()) out.push_back(name);
  }
  return out;
}

}  // namespace bnserve::inference
