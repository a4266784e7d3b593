// SnapshotStore on a local (or shared POSIX) file system: the embedded
// default. Layout under the root:
//
//   <root>/<model>/<version>/snapshot.binpb  StoredSnapshot envelope
//   <root>/<model>/.labels/<label>           "<version>\n"
//   <root>/<model>/.next_version             "<n>\n": high-water mark, the
//                                            next version to hand out
//   <root>/<model>/.lock                     flock(2) target
//   <root>/<model>/.staging-<pid>-<rand>/    a publish in progress
//   <root>/.checkpoints/<model>/<job>/<step>.ckpt
//                                            StoredCheckpoint envelope of a
//                                            training job (written like a
//                                            label: temp file, fsync, rename,
//                                            fsync the directory)
//
// Version directories are recognised only if their whole name is a positive
// decimal number without leading zeros; anything else is ignored. Every
// mutation of a model (publish, label, delete) holds an exclusive flock on
// `.lock`, so it is safe across threads and processes. Publish: under the
// lock, allocate max(.next_version, newest directory + 1), persist the new
// high-water mark, write the envelope into a hidden staging directory, fsync
// file and directory, rename it to `<version>` (RENAME_NOREPLACE), fsync the
// model directory. A crash leaves at most a hidden staging directory, which
// the next mutation of that model removes (any staging directory seen while
// holding the lock is abandoned). Labels are written with write + fsync +
// rename. Watch uses inotify on the root, each model and each `.labels`
// directory, plus the polling fallback. Cross-process safety relies on
// flock(2): on network file systems without it (some NFS setups) keep one
// writer, and set StoreOptions::watch_notifications = false (no inotify).
//
// Test-only fault point (tests/store/file_store_test.cc,
// tests/faults/trainer_kill_test.py): off unless the environment variable
// BNSERVE_TEST_PUBLISH_PAUSE_DIR (kPublishPauseEnv) names an existing
// directory D when the store is opened; Open fails if it names anything else,
// and warns on stderr when it is active. While the file D/pause exists, every
// Publish stops at a known point inside the publish: after the staging
// directory is written and fsynced, before the rename that makes the version
// visible. It announces the pause by writing the staging directory's path to
// D/paused (atomically), waits until D/pause is removed, then removes
// D/paused and completes. A test kills the publisher while it waits, so the
// kill is known to have landed inside Publish. The servers list the variable
// as known (no unknown-variable warning) but log that it is set.
#ifndef BNSERVE_STORE_FILE_STORE_H_
#define BNSERVE_STORE_FILE_STORE_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "store/job_registry.h"
#include "store/store.h"

namespace bnserve::store {

// The environment variable of the test-only publish fault point (above).
inline constexpr char kPublishPauseEnv[] = "BNSERVE_TEST_PUBLISH_PAUSE_DIR";

class FileStore final : public SnapshotStore {
 public:
  // Creates `root` (and parents) if needed. `root` may be relative; it is
  // made absolute.
  static absl::StatusOr<std::unique_ptr<FileStore>> Open(
      std::string_view root, const StoreOptions& options = {});

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

  const std::string& root() const { return root_; }
  // Path of the envelope file of model/version (for tests and tools).
  std::string SnapshotPath(std::string_view model, int64_t version) const;
  // Path of a checkpoint's envelope file (for tests and tools).
  std::string CheckpointPath(std::string_view model, std::string_view job_id,
                             int64_t step) const;

  JobRegistry* job_registry() override { return &registry_; }

 private:
  FileStore(std::string root, const StoreOptions& options,
            std::string pause_dir)
      : root_(std::move(root)),
        options_(options),
        pause_dir_(std::move(pause_dir)) {}
  std::string ModelDir(std::string_view model) const;
  absl::StatusOr<std::vector<int64_t>> ListVersionsUnchecked(
      const std::string& model_dir);
  absl::StatusOr<std::map<std::string, int64_t>> ListLabelsUnchecked(
      const std::string& model_dir);

  // What ListModels last saw of one model directory. A directory whose
  // stamp is unchanged since then has the same entries, so it is not read
  // again: a poll of a store full of directories that are not models costs
  // one stat each, not one directory read each.
  struct DirStamp {
    ino_t inode = 0;
    nlink_t links = 0;  // counts subdirectories on most file systems
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    bool operator==(const DirStamp&) const = default;
  };
  struct ListedDir {
    DirStamp stamp;
    bool has_versions = false;
  };
  using ListedDirs = std::unordered_map<std::string, ListedDir>;
  // Stats the root's entry `name` (through `root_fd`) and tells whether it
  // holds a version, reading it only when `cached` has no entry with the
  // same stamp. NOT_FOUND if the entry is gone or is not a directory.
  absl::StatusOr<ListedDir> ListDir(int root_fd, const std::string& name,
                                    ListedDirs& cached);

  const std::string root_;  // absolute, no trailing slash
  const StoreOptions options_;
  // The test-only fault point's directory; empty (the default) = off.
  const std::string pause_dir_;
  absl::Mutex listed_mu_;
  // Directories listed by the last ListModels whose stamps were old enough to
  // trust (see kRacyWindow in file_store.cc); replaced by each ListModels.
  ListedDirs listed_ ABSL_GUARDED_BY(listed_mu_);
  // In-process: one trainer per store directory.
  LocalJobRegistry registry_;
};

}  // namespace bnserve::store

#endif  // BNSERVE_STORE_FILE_STORE_H_
