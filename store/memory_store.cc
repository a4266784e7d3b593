#include "store/memory_store.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "model/status_macros.h"
#include "store/envelope.h"
#include "store/job_registry.h"
#include "store/strings.h"
#include "store/watch_loop.h"

namespace bnserve::store {

struct MemoryStore::Shared {
  struct Model {
    int64_t counter = 0;  // high-water mark: versions are never reused
    std::map<int64_t, std::string> envelopes;
    std::map<std::string, int64_t> labels;
  };
  absl::Mutex mu;
  std::map<std::string, Model, std::less<>> models ABSL_GUARDED_BY(mu);
  // Checkpoint envelopes (never part of a model's versions).
  std::map<CheckpointRef, std::string> checkpoints ABSL_GUARDED_BY(mu);
  // The job registry of every store of this name.
  LocalJobRegistry registry;

  absl::Mutex watchers_mu;
  std::set<WatchLoop*> watchers ABSL_GUARDED_BY(watchers_mu);

  void Notify() {
    absl::MutexLock lock(&watchers_mu);
    for (WatchLoop* w : watchers) w->Wake();
  }
};

namespace {

absl::Status NotFoundVersion(std::string_view model, int64_t version) {
  return absl::NotFoundError(
      Cat("model '", model, "' has no version ", version));
}

class MemoryWatchHandle final : public WatchHandle {
 public:
  MemoryWatchHandle(std::shared_ptr<MemoryStore::Shared> shared,
                    std::unique_ptr<MemoryStore> scanner,
                    std::function<void(const StoreEvent&)> callback,
                    const StoreOptions& options)
      : shared_(std::move(shared)), scanner_(std::move(scanner)) {
    loop_ = std::make_unique<WatchLoop>(
        [s = scanner_.get(), only = options.watch_models] {
          return ScanStore(*s, only);
        },
        std::move(callback), options.poll_interval);
    if (options.watch_notifications) {
      absl::MutexLock lock(&shared_->watchers_mu);
      shared_->watchers.insert(loop_.get());
      registered_ = true;
    }
  }
  ~MemoryWatchHandle() override {
    if (registered_) {
      absl::MutexLock lock(&shared_->watchers_mu);
      shared_->watchers.erase(loop_.get());
    }
    loop_.reset();
  }

 private:
  std::shared_ptr<MemoryStore::Shared> shared_;
  std::unique_ptr<MemoryStore> scanner_;
  std::unique_ptr<WatchLoop> loop_;
  bool registered_ = false;
};

}  // namespace

std::unique_ptr<MemoryStore> MemoryStore::Open(std::string_view name,
                                               const StoreOptions& options) {
  static absl::Mutex registry_mu(absl::kConstInit);
  static auto* registry =
      new std::map<std::string, std::shared_ptr<Shared>, std::less<>>();
  std::shared_ptr<Shared> shared;
  {
    absl::MutexLock lock(&registry_mu);
    auto& slot = (*registry)[std::string(name)];
    if (slot == nullptr) slot = std::make_shared<Shared>();
    shared = slot;
  }
  return std::unique_ptr<MemoryStore>(
      new MemoryStore(std::move(shared), std::string(name), options));
}

MemoryStore::MemoryStore(const StoreOptions& options)
    : MemoryStore(std::make_shared<Shared>(), "", options) {}

MemoryStore::MemoryStore(std::shared_ptr<Shared> shared, std::string name,
                         const StoreOptions& options)
    : shared_(std::move(shared)), name_(std::move(name)), options_(options) {}

MemoryStore::~MemoryStore() = default;

void MemoryStore::FailNext(Op op, absl::Status status, int times) {
  absl::MutexLock lock(&failures_mu_);
  for (int i = 0; i < times; ++i) fail_next_[op].push_back(status);
}

void MemoryStore::SetFailure(Op op, absl::Status status) {
  absl::MutexLock lock(&failures_mu_);
  fail_always_[op] = std::move(status);
}

void MemoryStore::ClearFailures() {
  absl::MutexLock lock(&failures_mu_);
  fail_next_.clear();
  fail_always_.clear();
}

absl::Status MemoryStore::Injected(Op op) {
  absl::MutexLock lock(&failures_mu_);
  if (auto it = fail_next_.find(op);
      it != fail_next_.end() && !it->second.empty()) {
    absl::Status s = std::move(it->second.front());
    it->second.pop_front();
    return s;
  }
  if (auto it = fail_always_.find(op); it != fail_always_.end()) {
    return it->second;
  }
  return absl::OkStatus();
}

absl::Status MemoryStore::CorruptForTesting(std::string_view model,
                                            int64_t version) {
  absl::MutexLock lock(&shared_->mu);
  auto m = shared_->models.find(model);
  if (m == shared_->models.end()) return NotFoundVersion(model, version);
  auto e = m->second.envelopes.find(version);
  if (e == m->second.envelopes.end()) return NotFoundVersion(model, version);
  if (!e->second.empty()) e->second[e->second.size() / 2] ^= 0x5a;
  return absl::OkStatus();
}

absl::StatusOr<int64_t> MemoryStore::Publish(
    const bnserve::v1::Snapshot& snapshot) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(snapshot.model()));
  BNSERVE_RETURN_IF_ERROR(Injected(Op::kPublish));
  int64_t version;
  {
    absl::MutexLock lock(&shared_->mu);
    Shared::Model& m = shared_->models[snapshot.model()];
    version = m.counter + 1;
    bnserve::v1::Snapshot copy = snapshot;
    copy.set_version(version);
    BNSERVE_ASSIGN_OR_RETURN(std::string envelope, EncodeStoredSnapshot(copy));
    m.counter = version;
    m.envelopes[version] = std::move(envelope);
  }
  shared_->Notify();
  return version;
}

absl::StatusOr<bnserve::v1::Snapshot> MemoryStore::Read(std::string_view model,
                                                        int64_t version) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(Injected(Op::kRead));
  std::string envelope;
  {
    absl::MutexLock lock(&shared_->mu);
    auto m = shared_->models.find(model);
    if (m == shared_->models.end()) return NotFoundVersion(model, version);
    auto e = m->second.envelopes.find(version);
    if (e == m->second.envelopes.end()) return NotFoundVersion(model, version);
    envelope = e->second;
  }
  return DecodeStoredSnapshot(envelope, model, version);
}

absl::StatusOr<int64_t> MemoryStore::Latest(std::string_view model) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(Injected(Op::kLatest));
  absl::MutexLock lock(&shared_->mu);
  auto m = shared_->models.find(model);
  if (m == shared_->models.end() || m->second.envelopes.empty()) {
    return absl::NotFoundError(Cat("model '", model, "' has no versions"));
  }
  return m->second.envelopes.rbegin()->first;
}

absl::StatusOr<std::vector<int64_t>> MemoryStore::ListVersions(
    std::string_view model) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(Injected(Op::kListVersions));
  std::vector<int64_t> versions;
  absl::MutexLock lock(&shared_->mu);
  auto m = shared_->models.find(model);
  if (m == shared_->models.end()) return versions;
  for (const auto& [v, unused] : m->second.envelopes) versions.push_back(v);
  return versions;
}

absl::StatusOr<std::vector<std::string>> MemoryStore::ListModels() {
  BNSERVE_RETURN_IF_ERROR(Injected(Op::kListModels));
  std::vector<std::string> models;
  absl::MutexLock lock(&shared_->mu);
  for (const auto& [name, m] : shared_->models) {
    if (!m.envelopes.empty()) models.push_back(name);
  }
  return models;
}

absl::Status MemoryStore::SetLabel(std::string_view model,
                                   std::string_view label, int64_t version) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(ValidateLabel(label));
  BNSERVE_RETURN_IF_ERROR(Injected(Op::kSetLabel));
  {
    absl::MutexLock lock(&shared_->mu);
    auto m = shared_->models.find(model);
    if (m == shared_->models.end() || !m->second.envelopes.contains(version)) {
      return NotFoundVersion(model, version);
    }
    m->second.labels[std::string(label)] = version;
  }
  shared_->Notify();
  return absl::OkStatus();
}

absl::StatusOr<int64_t> MemoryStore::ResolveLabel(std::string_view model,
                                                  std::string_view label) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(ValidateLabel(label));
  BNSERVE_RETURN_IF_ERROR(Injected(Op::kResolveLabel));
  absl::MutexLock lock(&shared_->mu);
  auto m = shared_->models.find(model);
  if (m != shared_->models.end()) {
    auto l = m->second.labels.find(std::string(label));
    if (l != m->second.labels.end()) return l->second;
  }
  return absl::NotFoundError(
      Cat("model '", model, "' has no label '", label, "'"));
}

absl::StatusOr<std::map<std::string, int64_t>> MemoryStore::ListLabels(
    std::string_view model) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(Injected(Op::kListLabels));
  absl::MutexLock lock(&shared_->mu);
  auto m = shared_->models.find(model);
  if (m == shared_->models.end()) return std::map<std::string, int64_t>();
  return m->second.labels;
}

absl::Status MemoryStore::DeleteLabel(std::string_view model,
                                      std::string_view label) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(ValidateLabel(label));
  BNSERVE_RETURN_IF_ERROR(Injected(Op::kDeleteLabel));
  {
    absl::MutexLock lock(&shared_->mu);
    auto m = shared_->models.find(model);
    if (m == shared_->models.end() ||
        m->second.labels.erase(std::string(label)) == 0) {
      return absl::NotFoundError(
          Cat("model '", model, "' has no label '", label, "'"));
    }
  }
  shared_->Notify();
  return absl::OkStatus();
}

absl::Status MemoryStore::DeleteVersion(std::string_view model,
                                        int64_t version) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(Injected(Op::kDeleteVersion));
  {
    absl::MutexLock lock(&shared_->mu);
    auto m = shared_->models.find(model);
    if (m == shared_->models.end() || !m->second.envelopes.contains(version)) {
      return NotFoundVersion(model, version);
    }
    for (const auto& [label, v] : m->second.labels) {
      if (v == version) {
        return absl::FailedPreconditionError(
            Cat("version ", version, " of model '", model, "' is labelled '",
                label, "'; move or delete the label first"));
      }
    }
    m->second.envelopes.erase(version);
  }
  shared_->Notify();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> MemoryStore::ApplyRetention(
    std::string_view model, int keep_newest) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(Injected(Op::kApplyRetention));
  return ApplyRetentionGeneric(*this, model, keep_newest);
}

absl::StatusOr<std::unique_ptr<WatchHandle>> MemoryStore::Watch(
    std::function<void(const StoreEvent&)> callback) {
  BNSERVE_RETURN_IF_ERROR(Injected(Op::kWatch));
  auto scanner =
      std::unique_ptr<MemoryStore>(new MemoryStore(shared_, name_, options_));
  return std::unique_ptr<WatchHandle>(std::make_unique<MemoryWatchHandle>(
      shared_, std::move(scanner), std::move(callback), options_));
}

std::string MemoryStore::uri() const { return Cat("mem://", name_); }

namespace {

CheckpointRef Ref(std::string_view model, std::string_view job_id,
                  int64_t step) {
  return {std::string(model), std::string(job_id), step};
}

absl::Status NoCheckpoint(std::string_view model, std::string_view job_id,
                          int64_t step) {
  return absl::NotFoundError(
      Cat("no checkpoint of job ", job_id, " of '", model, "' at step ", step));
}

}  // namespace

absl::Status MemoryStore::WriteCheckpoint(std::string_view model,
                                          std::string_view job_id, int64_t step,
                                          std::string_view payload) {
  BNSERVE_RETURN_IF_ERROR(ValidateCheckpointKey(model, job_id, step));
  BNSERVE_RETURN_IF_ERROR(Injected(Op::kWriteCheckpoint));
  BNSERVE_ASSIGN_OR_RETURN(
      std::string envelope,
      EncodeStoredCheckpoint(model, job_id, step, payload));
  absl::MutexLock lock(&shared_->mu);
  shared_->checkpoints[Ref(model, job_id, step)] = std::move(envelope);
  return absl::OkStatus();
}

absl::StatusOr<std::string> MemoryStore::ReadCheckpoint(std::string_view model,
                                                        std::string_view job_id,
                                                        int64_t step) {
  BNSERVE_RETURN_IF_ERROR(ValidateCheckpointKey(model, job_id, step));
  BNSERVE_RETURN_IF_ERROR(Injected(Op::kReadCheckpoint));
  std::string envelope;
  {
    absl::MutexLock lock(&shared_->mu);
    auto it = shared_->checkpoints.find(Ref(model, job_id, step));
    if (it == shared_->checkpoints.end()) {
      return NoCheckpoint(model, job_id, step);
    }
    envelope = it->second;
  }
  return DecodeStoredCheckpoint(envelope, model, job_id, step);
}

absl::StatusOr<std::vector<CheckpointRef>> MemoryStore::ListCheckpoints() {
  absl::MutexLock lock(&shared_->mu);
  std::vector<CheckpointRef> out;
  for (const auto& entry : shared_->checkpoints) out.push_back(entry.first);
  return out;
}

absl::Status MemoryStore::DeleteCheckpoint(std::string_view model,
                                           std::string_view job_id,
                                           int64_t step) {
  BNSERVE_RETURN_IF_ERROR(ValidateCheckpointKey(model, job_id, step));
  absl::MutexLock lock(&shared_->mu);
  shared_->checkpoints.erase(Ref(model, job_id, step));
  return absl::OkStatus();
}

absl::Status MemoryStore::CorruptCheckpointForTesting(std::string_view model,
                                                      std::string_view job_id,
                                                      int64_t step) {
  absl::MutexLock lock(&shared_->mu);
  auto it = shared_->checkpoints.find(Ref(model, job_id, step));
  if (it == shared_->checkpoints.end()) {
    return NoCheckpoint(model, job_id, step);
  }
  if (!it->second.empty()) it->second[it->second.size() / 2] ^= 0x5a;
  return absl::OkStatus();
}

JobRegistry* MemoryStore::job_registry() { return &shared_->registry; }

}  // namespace bnserve::store
