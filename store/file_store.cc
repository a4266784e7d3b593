#include "store/file_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "model/status_macros.h"
#include "store/envelope.h"
#include "store/strings.h"
#include "store/watch_loop.h"

namespace bnserve::store {
namespace {

namespace fs = std::filesystem;

constexpr char kSnapshotFile[] = "snapshot.binpb";
constexpr char kLabelsDir[] = ".labels";
constexpr char kNextVersionFile[] = ".next_version";
constexpr char kLockFile[] = ".lock";
constexpr char kStagingPrefix[] = ".staging-";
constexpr char kDeletingPrefix[] = ".deleting-";
constexpr char kTmpPrefix[] = ".tmp-";

absl::Status ErrnoStatus(int err, std::string_view what) {
  std::string message = Cat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    default:
      return absl::InternalError(message);
  }
}

std::string RandomSuffix() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return Cat(getpid(), "-", rng() & 0xffffffffffffULL);
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes and reports the error of close(2) (it can report a failed write).
  absl::Status Close(std::string_view what) {
    const int fd = fd_;
    fd_ = -1;
    if (close(fd) != 0 && errno != EINTR) return ErrnoStatus(errno, what);
    return absl::OkStatus();
  }

 private:
  int fd_;
};

absl::Status FsyncPath(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, Cat("open ", path));
  if (fsync(fd.get()) != 0) {
    return ErrnoStatus(errno, Cat("fsync ", path));
  }
  return absl::OkStatus();
}

// Creates `path` exclusively, writes `data`, fsyncs and closes it.
absl::Status WriteNewFileDurably(const std::string& path,
                                 std::string_view data) {
  Fd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (fd.get() < 0) return ErrnoStatus(errno, Cat("create ", path));
  while (!data.empty()) {
    const ssize_t n = write(fd.get(), data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, Cat("write ", path));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  if (fsync(fd.get()) != 0) {
    return ErrnoStatus(errno, Cat("fsync ", path));
  }
  return fd.Close(Cat("close ", path));
}

const char* FileTypeName(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a regular file";
}

// Reads a whole regular file. Opened non-blocking (a FIFO in its place must
// not block the caller) and checked to be a regular file before reading:
// anything else is outside damage, DATA_LOSS naming what is there.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, Cat("open ", path));
  struct stat st;
  if (fstat(fd.get(), &st) != 0) {
    return ErrnoStatus(errno, Cat("stat ", path));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::DataLossError(
        Cat(path, " is ", FileTypeName(st.st_mode), ", not a regular file"));
  }
  std::string data;
  data.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  while (true) {
    const ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, Cat("read ", path));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

// Replaces `dir/name` atomically with `data`: write a temp file, fsync,
// rename over, fsync the directory.
absl::Status AtomicReplaceFile(const std::string& dir, std::string_view name,
                               std::string_view data, bool sync_dir = true) {
  const std::string tmp = Cat(dir, "/", kTmpPrefix, name, "-", RandomSuffix());
  const std::string target = Cat(dir, "/", name);
  absl::Status s = WriteNewFileDurably(tmp, data);
  if (s.ok() && rename(tmp.c_str(), target.c_str()) != 0) {
    s = ErrnoStatus(errno, Cat("rename ", tmp, " to ", target));
  }
  if (!s.ok()) {
    unlink(tmp.c_str());
    return s;
  }
  return sync_dir ? FsyncPath(dir) : absl::OkStatus();
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Directory entries (names only, without "." and ".."). NOT_FOUND if `dir`
// does not exist.
absl::StatusOr<std::vector<std::pair<std::string, unsigned char>>> ReadDir(
    const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return ErrnoStatus(errno, Cat("opendir ", dir));
  std::vector<std::pair<std::string, unsigned char>> entries;
  errno = 0;
  while (struct dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    entries.emplace_back(std::string(name), e->d_type);
  }
  const int err = errno;
  closedir(d);
  if (err != 0) return ErrnoStatus(err, Cat("readdir ", dir));
  return entries;
}

bool EntryIsDirectory(const std::string& parent, const std::string& name,
                      unsigned char type) {
  if (type == DT_DIR) return true;
  if (type != DT_UNKNOWN && type != DT_LNK) return false;
  return IsDirectory(Cat(parent, "/", name));
}

// Exclusive flock on <model_dir>/.lock for the life of the object.
class ModelLock {
 public:
  static absl::StatusOr<std::unique_ptr<ModelLock>> Acquire(
      const std::string& model_dir) {
    const std::string path = Cat(model_dir, "/", kLockFile);
    auto lock = std::unique_ptr<ModelLock>(
        new ModelLock(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)));
    if (lock->fd_.get() < 0) {
      return ErrnoStatus(errno, Cat("open ", path));
    }
    while (flock(lock->fd_.get(), LOCK_EX) != 0) {
      if (errno != EINTR) {
        return ErrnoStatus(errno, Cat("flock ", path));
      }
    }
    return lock;
  }

 private:
  explicit ModelLock(int fd) : fd_(fd) {}
  Fd fd_;  // closing it releases the lock
};

void RemoveTreeQuietly(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
}

// Removes leftovers of crashed writers. Only call with the model lock held:
// then every staging / deleting / temp entry belongs to a dead operation.
void CleanUpAbandoned(const std::string& model_dir) {
  for (const std::string& dir : {model_dir, Cat(model_dir, "/", kLabelsDir)}) {
    auto entries = ReadDir(dir);
    if (!entries.ok()) continue;
    for (const auto& [name, type] : *entries) {
      if (absl::StartsWith(Sv(name), kStagingPrefix) ||
          absl::StartsWith(Sv(name), kDeletingPrefix) ||
          absl::StartsWith(Sv(name), kTmpPrefix)) {
        RemoveTreeQuietly(Cat(dir, "/", name));
      }
    }
  }
}

// The test-only fault point (file_store.h): the directory named by
// kPublishPauseEnv, or "" when the variable is unset. Anything but an
// existing directory is refused, so a typo cannot silently disarm a test.
absl::StatusOr<std::string> PublishPauseDirFromEnv() {
  const char* dir = std::getenv(kPublishPauseEnv);
  if (dir == nullptr) return std::string();
  if (*dir != '/' || !IsDirectory(dir)) {
    return absl::InvalidArgumentError(
        Cat(kPublishPauseEnv, "='", dir,
            "' is not an absolute path to an existing directory (a test-only "
            "fault point; unset it outside tests)"));
  }
  std::fprintf(stderr,
               "WARNING: file store test hook active: %s=%s (a publish pauses "
               "while %s/pause exists); never set it in production\n",
               kPublishPauseEnv, dir, dir);
  return std::string(dir);
}

// While `dir`/pause exists: announce `staging` in `dir`/paused, wait until
// the pause file is removed, remove the announcement.
void PauseInPublishForTest(const std::string& dir, const std::string& staging) {
  const std::string pause = Cat(dir, "/pause");
  const std::string paused = Cat(dir, "/paused");
  if (access(pause.c_str(), F_OK) != 0) return;
  const std::string tmp = Cat(paused, ".tmp-", getpid());
  {
    std::FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr) return;
    std::fprintf(f, "%s\n", staging.c_str());
    std::fclose(f);
  }
  if (rename(tmp.c_str(), paused.c_str()) != 0) return;
  while (access(pause.c_str(), F_OK) == 0) poll(nullptr, 0, 5);
  unlink(paused.c_str());
}

// The persisted high-water mark: the next version to hand out, in
// 1..kMaxVersion + 1 (the latter: every version is used). Numeric but past
// that range is OUT_OF_RANGE (never wrapped or reset: a lower number could
// be handed out twice); anything else is outside damage and reads as 1 (the
// version directories still bound the next version from below).
absl::StatusOr<int64_t> ReadNextVersion(const std::string& model_dir,
                                        std::string_view model) {
  const std::string path = Cat(model_dir, "/", kNextVersionFile);
  absl::StatusOr<std::string> data = ReadWholeFile(path);
  if (absl::IsNotFound(data.status())) return 1;
  if (!data.ok()) return data.status();
  const std::string_view text = StdSv(absl::StripAsciiWhitespace(*data));
  int64_t next = 0;
  if (ParseVersion(text, &next)) return next;
  if (text == Cat(kMaxVersion + 1)) return kMaxVersion + 1;
  if (!text.empty() && text[0] != '0' &&
      std::all_of(text.begin(), text.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      })) {
    return VersionsExhausted(model);
  }
  return 1;
}

absl::Status NotFoundVersion(std::string_view model, int64_t version) {
  return absl::NotFoundError(
      Cat("model '", model, "' has no version ", version));
}

absl::Status NotFoundLabel(std::string_view model, std::string_view label) {
  return absl::NotFoundError(
      Cat("model '", model, "' has no label '", label, "'"));
}

// inotify-driven wakeups for a WatchLoop.
class FileWatchHandle final : public WatchHandle {
 public:
  FileWatchHandle(std::unique_ptr<FileStore> scanner,
                  std::function<void(const StoreEvent&)> callback,
                  const StoreOptions& options)
      : scanner_(std::move(scanner)) {
    if (options.watch_notifications) StartInotify();
    loop_ = std::make_unique<WatchLoop>(
        [s = scanner_.get(), only = options.watch_models] {
          return ScanStore(*s, only);
        },
        std::move(callback), options.poll_interval);
    if (inotify_fd_ >= 0) thread_ = std::thread([this] { ReadEvents(); });
  }

  ~FileWatchHandle() override {
    if (thread_.joinable()) {
      const uint64_t one = 1;
      ssize_t unused = write(stop_fd_, &one, sizeof(one));
      (void)unused;
      thread_.join();
    }
    loop_.reset();
    if (inotify_fd_ >= 0) close(inotify_fd_);
    if (stop_fd_ >= 0) close(stop_fd_);
  }

 private:
  static constexpr uint32_t kDirMask = IN_CREATE | IN_DELETE | IN_MOVED_TO |
                                       IN_MOVED_FROM | IN_CLOSE_WRITE |
                                       IN_DELETE_SELF | IN_ONLYDIR;

  // Without inotify (e.g. too many instances) the polling fallback remains.
  void StartInotify() {
    inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (inotify_fd_ < 0 || stop_fd_ < 0) {
      if (inotify_fd_ >= 0) close(inotify_fd_);
      inotify_fd_ = -1;
      return;
    }
    const std::string& root = scanner_->root();
    root_wd_ = inotify_add_watch(inotify_fd_, root.c_str(), kDirMask);
    auto entries = ReadDir(root);
    if (!entries.ok()) return;
    for (const auto& [name, type] : *entries) {
      if (ValidateModelName(name).ok()) AddModelWatches(name);
    }
  }

  void AddModelWatches(const std::string& model) {
    const std::string dir = Cat(scanner_->root(), "/", model);
    int wd = inotify_add_watch(inotify_fd_, dir.c_str(), kDirMask);
    if (wd >= 0) model_wds_[wd] = model;
    AddLabelsWatch(model);
  }

  void AddLabelsWatch(const std::string& model) {
    const std::string dir = Cat(scanner_->root(), "/", model, "/", kLabelsDir);
    int wd = inotify_add_watch(inotify_fd_, dir.c_str(), kDirMask);
    if (wd >= 0) labels_wds_.insert(wd);
  }

  void ReadEvents() {
    alignas(struct inotify_event) char buf[16384];
    while (true) {
      struct pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents != 0) return;
      bool wake = false;
      while (true) {
        const ssize_t n = read(inotify_fd_, buf, sizeof(buf));
        if (n <= 0) break;
        for (char* p = buf; p < buf + n;) {
          auto* e = reinterpret_cast<struct inotify_event*>(p);
          p += sizeof(struct inotify_event) + e->len;
          wake |= Handle(*e);
        }
      }
      if (wake) loop_->Wake();
    }
  }

  // Returns whether the event may change what a scan sees.
  bool Handle(const struct inotify_event& e) {
    if (e.mask & IN_Q_OVERFLOW) return true;
    if (e.mask & IN_IGNORED) {
      model_wds_.erase(e.wd);
      labels_wds_.erase(e.wd);
      return true;
    }
    const std::string name = e.len > 0 ? std::string(e.name) : "";
    if (e.wd == root_wd_) {
      if ((e.mask & IN_ISDIR) && ValidateModelName(name).ok()) {
        AddModelWatches(name);
      }
      return true;
    }
    if (labels_wds_.contains(e.wd))
      return !absl::StartsWith(Sv(name), kTmpPrefix);
    if (auto it = model_wds_.find(e.wd); it != model_wds_.end()) {
      if (name == kLabelsDir) {
        AddLabelsWatch(it->second);
        return true;
      }
      int64_t version;
      return ParseVersion(name, &version) || (e.mask & IN_DELETE_SELF);
    }
    return false;
  }

  std::unique_ptr<FileStore> scanner_;
  std::unique_ptr<WatchLoop> loop_;
  int inotify_fd_ = -1;
  int stop_fd_ = -1;
  int root_wd_ = -1;
  // Only touched by the constructor and then the reader thread.
  std::map<int, std::string> model_wds_;
  std::set<int> labels_wds_;
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<FileStore>> FileStore::Open(
    std::string_view root, const StoreOptions& options) {
  if (root.empty()) return absl::InvalidArgumentError("empty store path");
  std::error_code ec;
  fs::path path = fs::absolute(fs::path(std::string(root)), ec);
  if (ec) {
    return absl::InvalidArgumentError(
        Cat("bad store path '", root, "': ", ec.message()));
  }
  path = path.lexically_normal();
  std::string normalized = path.string();
  while (normalized.size() > 1 && normalized.back() == '/') {
    normalized.pop_back();
  }
  fs::create_directories(normalized, ec);
  if (ec || !IsDirectory(normalized)) {
    return ErrnoStatus(ec ? ec.value() : ENOTDIR,
                       Cat("cannot create store directory ", normalized));
  }
  BNSERVE_ASSIGN_OR_RETURN(std::string pause_dir, PublishPauseDirFromEnv());
  return std::unique_ptr<FileStore>(
      new FileStore(normalized, options, std::move(pause_dir)));
}

std::string FileStore::ModelDir(std::string_view model) const {
  return Cat(root_, "/", model);
}

std::string FileStore::SnapshotPath(std::string_view model,
                                    int64_t version) const {
  return Cat(root_, "/", model, "/", version, "/", kSnapshotFile);
}

std::string FileStore::uri() const { return Cat("file://", root_); }

absl::StatusOr<std::vector<int64_t>> FileStore::ListVersionsUnchecked(
    const std::string& model_dir) {
  std::vector<int64_t> versions;
  auto entries = ReadDir(model_dir);
  if (absl::IsNotFound(entries.status())) return versions;
  if (!entries.ok()) return entries.status();
  for (const auto& [name, type] : *entries) {
    int64_t v;
    if (ParseVersion(name, &v) && EntryIsDirectory(model_dir, name, type)) {
      versions.push_back(v);
    }
  }
  std::sort(versions.begin(), versions.end());
  return versions;
}

absl::StatusOr<std::map<std::string, int64_t>> FileStore::ListLabelsUnchecked(
    const std::string& model_dir) {
  std::map<std::string, int64_t> labels;
  const std::string dir = Cat(model_dir, "/", kLabelsDir);
  auto entries = ReadDir(dir);
  if (absl::IsNotFound(entries.status())) return labels;
  if (!entries.ok()) return entries.status();
  for (const auto& [name, type] : *entries) {
    if (!ValidateLabel(name).ok()) continue;
    absl::StatusOr<std::string> data = ReadWholeFile(Cat(dir, "/", name));
    int64_t v;
    if (data.ok() &&
        ParseVersion(StdSv(absl::StripAsciiWhitespace(*data)), &v)) {
      labels[name] = v;
    }
  }
  return labels;
}

absl::StatusOr<int64_t> FileStore::Publish(
    const bnserve::v1::Snapshot& snapshot) {
  const std::string& model = snapshot.model();
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  const std::string model_dir = ModelDir(model);
  std::error_code ec;
  const bool created = fs::create_directories(model_dir, ec);
  if (ec) {
    return absl::InternalError(
        Cat("cannot create model directory ", model_dir, ": ", ec.message()));
  }
  if (created) BNSERVE_RETURN_IF_ERROR(FsyncPath(root_));
  BNSERVE_ASSIGN_OR_RETURN(auto lock, ModelLock::Acquire(model_dir));
  CleanUpAbandoned(model_dir);

  // Allocate: never below the persisted high-water mark, never at or below
  // an existing directory (e.g. a store written without the mark).
  BNSERVE_ASSIGN_OR_RETURN(int64_t version, ReadNextVersion(model_dir, model));
  BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> existing,
                           ListVersionsUnchecked(model_dir));
  if (!existing.empty()) version = std::max(version, existing.back() + 1);
  if (version > kMaxVersion) return VersionsExhausted(model);
  bnserve::v1::Snapshot copy = snapshot;
  copy.set_version(version);
  BNSERVE_ASSIGN_OR_RETURN(std::string envelope, EncodeStoredSnapshot(copy));
  // Raise the mark before the version becomes visible. Its rename is made
  // durable by the model-directory fsync below; should a crash keep the
  // version but lose the mark, the directory still bounds the next version,
  // and DeleteVersion re-persists the mark before removing anything, so a
  // number is never handed out twice.
  BNSERVE_RETURN_IF_ERROR(AtomicReplaceFile(model_dir, kNextVersionFile,
                                            Cat(version + 1, "\n"),
                                            /*sync_dir=*/false));

  const std::string staging =
      Cat(model_dir, "/", kStagingPrefix, RandomSuffix());
  const std::string target = Cat(model_dir, "/", version);
  absl::Status s;
  if (mkdir(staging.c_str(), 0755) != 0) {
    return ErrnoStatus(errno, Cat("mkdir ", staging));
  }
  s = WriteNewFileDurably(Cat(staging, "/", kSnapshotFile), envelope);
  if (s.ok()) s = FsyncPath(staging);
  if (s.ok() && !pause_dir_.empty()) PauseInPublishForTest(pause_dir_, staging);
  if (s.ok() && renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, target.c_str(),
                          RENAME_NOREPLACE) != 0) {
    if (errno == EINVAL || errno == ENOSYS) {  // no RENAME_NOREPLACE support
      if (rename(staging.c_str(), target.c_str()) != 0) {
        s = ErrnoStatus(errno, Cat("rename to ", target));
      }
    } else {
      s = ErrnoStatus(errno, Cat("rename to ", target));
    }
  }
  if (!s.ok()) {
    RemoveTreeQuietly(staging);
    return s;
  }
  BNSERVE_RETURN_IF_ERROR(FsyncPath(model_dir));
  return version;
}

absl::StatusOr<bnserve::v1::Snapshot> FileStore::Read(std::string_view model,
                                                      int64_t version) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  if (version < 1) return NotFoundVersion(model, version);
  const std::string path = SnapshotPath(model, version);
  absl::StatusOr<std::string> data = ReadWholeFile(path);
  if (absl::IsNotFound(data.status())) {
    if (IsDirectory(Cat(ModelDir(model), "/", version))) {
      return absl::DataLossError(Cat("snapshot ", model, "/", version,
                                     " is corrupt: ", path, " is missing"));
    }
    return NotFoundVersion(model, version);
  }
  if (absl::IsDataLoss(data.status())) {
    return absl::DataLossError(Cat("snapshot ", model, "/", version,
                                   " is corrupt: ", data.status().message()));
  }
  if (!data.ok()) return data.status();
  return DecodeStoredSnapshot(*data, model, version);
}

absl::StatusOr<int64_t> FileStore::Latest(std::string_view model) {
  BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> versions, ListVersions(model));
  if (versions.empty()) {
    return absl::NotFoundError(Cat("model '", model, "' has no versions"));
  }
  return versions.back();
}

absl::StatusOr<std::vector<int64_t>> FileStore::ListVersions(
    std::string_view model) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  return ListVersionsUnchecked(ModelDir(model));
}

namespace {

// A directory changed within this window of the time it was read may change
// again without its stamp changing (timestamps are as coarse as the kernel's
// clock tick, and a client's clock may differ from an NFS server's): such a
// stamp is never trusted for a later scan.
constexpr absl::Duration kRacyWindow = absl::Seconds(2);

int64_t Nanos(const struct timespec& t) {
  return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec;
}

}  // namespace

absl::StatusOr<FileStore::ListedDir> FileStore::ListDir(int root_fd,
                                                        const std::string& name,
                                                        ListedDirs& cached) {
  struct stat st;
  if (fstatat(root_fd, name.c_str(), &st, 0) != 0) {
    return errno == ENOENT ? absl::NotFoundError(name)
                           : ErrnoStatus(errno, Cat("stat ", root_, "/", name));
  }
  if (!S_ISDIR(st.st_mode)) return absl::NotFoundError(name);
  ListedDir dir;
  dir.stamp = {st.st_ino, st.st_nlink, Nanos(st.st_mtim), Nanos(st.st_ctim)};
  if (auto it = cached.find(name);
      it != cached.end() && it->second.stamp == dir.stamp) {
    return it->second;
  }
  BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> versions,
                           ListVersionsUnchecked(Cat(root_, "/", name)));
  dir.has_versions = !versions.empty();
  return dir;
}

absl::StatusOr<std::vector<std::string>> FileStore::ListModels() {
  // Stamps newer than this may still change unseen (see kRacyWindow).
  const int64_t trusted_before = absl::ToUnixNanos(absl::Now() - kRacyWindow);
  BNSERVE_ASSIGN_OR_RETURN(auto entries, ReadDir(root_));
  const int root_fd = open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) return ErrnoStatus(errno, Cat("open ", root_));
  absl::Cleanup close_root = [root_fd] { close(root_fd); };
  ListedDirs cached, listed;
  {
    absl::MutexLock lock(&listed_mu_);
    cached.swap(listed_);
  }
  std::vector<std::string> models;
  for (const auto& [name, type] : entries) {
    if (type != DT_DIR && type != DT_UNKNOWN && type != DT_LNK) continue;
    if (!ValidateModelName(name).ok()) continue;
    absl::StatusOr<ListedDir> dir = ListDir(root_fd, name, cached);
    if (absl::IsNotFound(dir.status())) continue;
    if (!dir.ok()) return dir.status();
    if (dir->has_versions) models.push_back(name);
    if (dir->stamp.mtime_ns >= trusted_before ||
        dir->stamp.ctime_ns >= trusted_before) {
      continue;  // too fresh to trust next time
    }
    // Reuse the remembered node when there is one (no allocation).
    auto node = cached.extract(name);
    if (node.empty()) {
      listed.emplace(name, *dir);
    } else {
      node.mapped() = *dir;
      listed.insert(std::move(node));
    }
  }
  {
    absl::MutexLock lock(&listed_mu_);
    listed_.swap(listed);
  }
  std::sort(models.begin(), models.end());
  return models;
}

absl::Status FileStore::SetLabel(std::string_view model, std::string_view label,
                                 int64_t version) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(ValidateLabel(label));
  const std::string model_dir = ModelDir(model);
  if (!IsDirectory(model_dir)) return NotFoundVersion(model, version);
  BNSERVE_ASSIGN_OR_RETURN(auto lock, ModelLock::Acquire(model_dir));
  if (version < 1 || !IsDirectory(Cat(model_dir, "/", version))) {
    return NotFoundVersion(model, version);
  }
  const std::string labels_dir = Cat(model_dir, "/", kLabelsDir);
  if (mkdir(labels_dir.c_str(), 0755) == 0) {
    BNSERVE_RETURN_IF_ERROR(FsyncPath(model_dir));
  } else if (errno != EEXIST) {
    return ErrnoStatus(errno, Cat("mkdir ", labels_dir));
  }
  return AtomicReplaceFile(labels_dir, label, Cat(version, "\n"));
}

absl::StatusOr<int64_t> FileStore::ResolveLabel(std::string_view model,
                                                std::string_view label) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(ValidateLabel(label));
  const std::string path = Cat(ModelDir(model), "/", kLabelsDir, "/", label);
  absl::StatusOr<std::string> data = ReadWholeFile(path);
  if (absl::IsNotFound(data.status())) return NotFoundLabel(model, label);
  if (!data.ok()) return data.status();
  int64_t version;
  if (!ParseVersion(StdSv(absl::StripAsciiWhitespace(*data)), &version)) {
    return absl::DataLossError(Cat("label file ", path, " is corrupt"));
  }
  return version;
}

absl::StatusOr<std::map<std::string, int64_t>> FileStore::ListLabels(
    std::string_view model) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  return ListLabelsUnchecked(ModelDir(model));
}

absl::Status FileStore::DeleteLabel(std::string_view model,
                                    std::string_view label) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(ValidateLabel(label));
  const std::string model_dir = ModelDir(model);
  if (!IsDirectory(model_dir)) return NotFoundLabel(model, label);
  BNSERVE_ASSIGN_OR_RETURN(auto lock, ModelLock::Acquire(model_dir));
  const std::string labels_dir = Cat(model_dir, "/", kLabelsDir);
  const std::string path = Cat(labels_dir, "/", label);
  if (unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return NotFoundLabel(model, label);
    return ErrnoStatus(errno, Cat("unlink ", path));
  }
  return FsyncPath(labels_dir);
}

absl::Status FileStore::DeleteVersion(std::string_view model, int64_t version) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  const std::string model_dir = ModelDir(model);
  const std::string target = Cat(model_dir, "/", version);
  if (version < 1 || !IsDirectory(target)) {
    return NotFoundVersion(model, version);
  }
  BNSERVE_ASSIGN_OR_RETURN(auto lock, ModelLock::Acquire(model_dir));
  CleanUpAbandoned(model_dir);
  if (!IsDirectory(target)) return NotFoundVersion(model, version);
  BNSERVE_ASSIGN_OR_RETURN(auto labels, ListLabelsUnchecked(model_dir));
  for (const auto& [label, v] : labels) {
    if (v == version) {
      return absl::FailedPreconditionError(
          Cat("version ", version, " of model '", model, "' is labelled '",
              label, "'; move or delete the label first"));
    }
  }
  // Stores written before the high-water mark existed: record it first.
  absl::StatusOr<int64_t> next = ReadNextVersion(model_dir, model);
  if (absl::IsOutOfRange(next.status())) next = kMaxVersion + 1;  // all used
  BNSERVE_RETURN_IF_ERROR(next.status());
  BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> existing,
                           ListVersionsUnchecked(model_dir));
  if (!existing.empty() && *next <= existing.back()) {
    BNSERVE_RETURN_IF_ERROR(AtomicReplaceFile(model_dir, kNextVersionFile,
                                              Cat(existing.back() + 1, "\n")));
  }
  const std::string doomed =
      Cat(model_dir, "/", kDeletingPrefix, version, "-", RandomSuffix());
  if (rename(target.c_str(), doomed.c_str()) != 0) {
    return ErrnoStatus(errno, Cat("rename ", target));
  }
  BNSERVE_RETURN_IF_ERROR(FsyncPath(model_dir));
  RemoveTreeQuietly(doomed);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> FileStore::ApplyRetention(
    std::string_view model, int keep_newest) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  return ApplyRetentionGeneric(*this, model, keep_newest);
}

absl::StatusOr<std::unique_ptr<WatchHandle>> FileStore::Watch(
    std::function<void(const StoreEvent&)> callback) {
  auto scanner =
      std::unique_ptr<FileStore>(new FileStore(root_, options_, pause_dir_));
  return std::unique_ptr<WatchHandle>(std::make_unique<FileWatchHandle>(
      std::move(scanner), std::move(callback), options_));
}

// Checkpoints: <root>/.checkpoints/<model>/<job_id>/<step>.ckpt, each a
// StoredCheckpoint envelope written with AtomicReplaceFile.
namespace {

constexpr char kCheckpointsDir[] = ".checkpoints";
constexpr char kCheckpointSuffix[] = ".ckpt";

// Creates `dir` if needed, fsyncing its parent when it was created.
absl::Status MakeDirDurably(const std::string& parent, std::string_view name) {
  const std::string dir = Cat(parent, "/", name);
  if (mkdir(dir.c_str(), 0755) == 0) return FsyncPath(parent);
  if (errno == EEXIST && IsDirectory(dir)) return absl::OkStatus();
  return ErrnoStatus(errno, Cat("mkdir ", dir));
}

// The step of a checkpoint file name "<step>.ckpt" (canonical decimal).
bool ParseCheckpointName(std::string_view file_name, int64_t* step) {
  absl::string_view name = Sv(file_name);
  if (!absl::ConsumeSuffix(&name, kCheckpointSuffix)) return false;
  return absl::SimpleAtoi(name, step) && *step >= 0 &&
         absl::StrCat(*step) == name;
}

// Names of the subdirectories of `dir` that pass `valid`.
std::vector<std::string> SubdirsNamed(const std::string& dir,
                                      absl::Status (*valid)(std::string_view)) {
  std::vector<std::string> out;
  auto entries = ReadDir(dir);
  if (!entries.ok()) return out;
  for (const auto& [name, type] : *entries) {
    if (valid(name).ok() && EntryIsDirectory(dir, name, type)) {
      out.push_back(name);
    }
  }
  return out;
}

}  // namespace

std::string FileStore::CheckpointPath(std::string_view model,
                                      std::string_view job_id,
                                      int64_t step) const {
  return Cat(root_, "/", kCheckpointsDir, "/", model, "/", job_id, "/", step,
             kCheckpointSuffix);
}

absl::Status FileStore::WriteCheckpoint(std::string_view model,
                                        std::string_view job_id, int64_t step,
                                        std::string_view payload) {
  BNSERVE_RETURN_IF_ERROR(ValidateCheckpointKey(model, job_id, step));
  BNSERVE_ASSIGN_OR_RETURN(
      std::string envelope,
      EncodeStoredCheckpoint(model, job_id, step, payload));
  const std::string top = Cat(root_, "/", kCheckpointsDir);
  BNSERVE_RETURN_IF_ERROR(MakeDirDurably(root_, kCheckpointsDir));
  BNSERVE_RETURN_IF_ERROR(MakeDirDurably(top, model));
  const std::string model_dir = Cat(top, "/", model);
  BNSERVE_RETURN_IF_ERROR(MakeDirDurably(model_dir, job_id));
  return AtomicReplaceFile(Cat(model_dir, "/", job_id),
                           Cat(step, kCheckpointSuffix), envelope);
}

absl::StatusOr<std::string> FileStore::ReadCheckpoint(std::string_view model,
                                                      std::string_view job_id,
                                                      int64_t step) {
  BNSERVE_RETURN_IF_ERROR(ValidateCheckpointKey(model, job_id, step));
  absl::StatusOr<std::string> bytes =
      ReadWholeFile(CheckpointPath(model, job_id, step));
  if (absl::IsNotFound(bytes.status())) {
    return absl::NotFoundError(Cat("no checkpoint of job ", job_id, " of '",
                                   model, "' at step ", step));
  }
  if (!bytes.ok()) return bytes.status();
  return DecodeStoredCheckpoint(*bytes, model, job_id, step);
}

absl::StatusOr<std::vector<CheckpointRef>> FileStore::ListCheckpoints() {
  std::vector<CheckpointRef> out;
  const std::string top = Cat(root_, "/", kCheckpointsDir);
  for (const std::string& model : SubdirsNamed(top, &ValidateModelName)) {
    const std::string model_dir = Cat(top, "/", model);
    for (const std::string& job : SubdirsNamed(model_dir, &ValidateJobId)) {
      auto entries = ReadDir(Cat(model_dir, "/", job));
      if (!entries.ok()) continue;  // deleted meanwhile
      for (const auto& entry : *entries) {
        int64_t step;
        if (ParseCheckpointName(entry.first, &step)) {
          out.push_back({model, job, step});
        }
      }
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::Status FileStore::DeleteCheckpoint(std::string_view model,
                                         std::string_view job_id,
                                         int64_t step) {
  BNSERVE_RETURN_IF_ERROR(ValidateCheckpointKey(model, job_id, step));
  const std::string path = CheckpointPath(model, job_id, step);
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, Cat("unlink ", path));
  }
  const std::string job_dir = path.substr(0, path.rfind('/'));
  auto entries = ReadDir(job_dir);
  if (!entries.ok()) return absl::OkStatus();
  for (const auto& entry : *entries) {
    int64_t other;
    // Not fsynced: an older checkpoint that reappears after a crash is only
    // a fallback, never preferred to a newer one.
    if (ParseCheckpointName(entry.first, &other)) return absl::OkStatus();
  }
  // The job's last checkpoint: remove its directory (and crash leftovers).
  RemoveTreeQuietly(job_dir);
  rmdir(job_dir.substr(0, job_dir.rfind('/')).c_str());  // fails if not empty
  return absl::OkStatus();
}

}  // namespace bnserve::store
