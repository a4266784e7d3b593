// In-memory SnapshotStore for tests and for an in-process trainer + server.
// Stores the same checksummed envelopes as the other backends, so corruption
// can be injected and is detected the same way.
#ifndef BNSERVE_STORE_MEMORY_STORE_H_
#define BNSERVE_STORE_MEMORY_STORE_H_

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "store/store.h"

namespace bnserve::store {

class MemoryStore final : public SnapshotStore {
 public:
  // Operations that failure injection can break.
  enum class Op {
    kPublish,
    kRead,
    kLatest,
    kListVersions,
    kListModels,
    kSetLabel,
    kResolveLabel,
    kListLabels,
    kDeleteLabel,
    kDeleteVersion,
    kApplyRetention,
    kWatch,
    kWriteCheckpoint,
    kReadCheckpoint,
  };

  // The store named `name`, shared with every other MemoryStore of that name
  // in this process; its contents live as long as the process.
  static std::unique_ptr<MemoryStore> Open(std::string_view name,
                                           const StoreOptions& options = {});
  // A fresh private store (not reachable by name).
  explicit MemoryStore(const StoreOptions& options = {});
  ~MemoryStore() override;

  // Failure injection (applies to calls through this object only). The next
  // `times` calls of `op` fail with `status` (before doing anything).
  void FailNext(Op op, absl::Status status, int times = 1);
  // Every call of `op` fails with `status` until ClearFailures.
  void SetFailure(Op op, absl::Status status);
  void ClearFailures();
  // Flips one byte in the middle of the stored envelope of model/version
  // (shared by every store of this name). NOT_FOUND if absent.
  absl::Status CorruptForTesting(std::string_view model, int64_t version);

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
  // Flips a byte in the middle of a stored checkpoint's envelope.
  absl::Status CorruptCheckpointForTesting(std::string_view model,
                                           std::string_view job_id,
                                           int64_t step);

  JobRegistry* job_registry() override;

  struct Shared;  // the named contents (memory_store.cc)

 private:
  MemoryStore(std::shared_ptr<Shared> shared, std::string name,
              const StoreOptions& options);
  absl::Status Injected(Op op);

  const std::shared_ptr<Shared> shared_;
  const std::string name_;
  const StoreOptions options_;
  absl::Mutex failures_mu_;
  std::map<Op, std::deque<absl::Status>> fail_next_
      ABSL_GUARDED_BY(failures_mu_);
  std::map<Op, absl::Status> fail_always_ ABSL_GUARDED_BY(failures_mu_);
};

}  // namespace bnserve::store

#endif  // BNSERVE_STORE_MEMORY_STORE_H_
