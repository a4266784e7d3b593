// File backend specifics: crash consistency under SIGKILL, several processes,
// strict version-directory parsing, clean-up of abandoned staging dirs.
#include "store/file_store.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/status_matchers.h"
#include "tests/store/test_util.h"

namespace bnserve::store {
namespace {

namespace fs = std::filesystem;
using ::bnserve::store::testing::ForkChild;
using ::bnserve::store::testing::MakeSnapshot;
using ::bnserve::store::testing::TempDir;
using ::bnserve::store::testing::WaitChildOk;
using ::bnserve::testing::StatusIs;
using ::testing::ElementsAre;

std::vector<std::string> HiddenEntries(const std::string& dir,
                                       std::string_view prefix) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (absl::StartsWith(name, std::string(prefix))) out.push_back(name);
  }
  return out;
}

TEST(FileStoreTest, LayoutIsRootModelVersionSnapshotBinpb) {
  TempDir dir;
  auto store = FileStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_EQ(*(*store)->Publish(MakeSnapshot("digits")), 1);
  EXPECT_TRUE(fs::is_regular_file(dir.path() + "/digits/1/snapshot.binpb"));
  EXPECT_EQ((*store)->SnapshotPath("digits", 1),
            dir.path() + "/digits/1/snapshot.binpb");
  EXPECT_EQ((*store)->uri(), "file://" + dir.path());
}

TEST(FileStoreTest, OpenCreatesTheRootFromAPathOrFileUri) {
  TempDir dir;
  const std::string nested = dir.path() + "/a/b/c";
  auto store = OpenStore("file://" + nested);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE(fs::is_directory(nested));
  auto plain = OpenStore(dir.path() + "/plain/");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->uri(), "file://" + dir.path() + "/plain");
  // A root that is a file cannot be a store.
  std::ofstream(dir.path() + "/file") << "x";
  EXPECT_THAT(OpenStore(dir.path() + "/file"),
              StatusIs(absl::StatusCode::kNotFound,
                       "cannot create store directory " + dir.path() +
                           "/file: Not a directory"));
}

// ListModels does not read a directory again while its stamp (inode, link
// count, mtime, ctime) is unchanged and older than two seconds. Whatever
// changes a directory changes its stamp, so nothing is missed: a directory
// listed (and remembered) as "not a model" that later gets a version, and a
// directory changed again right after it was listed.
TEST(FileStoreTest, ListModelsSeesVersionsAddedToDirectoriesListedBefore) {
  TempDir dir;
  auto store = *FileStore::Open(dir.path());
  auto writer = *FileStore::Open(dir.path());
  for (const char* name : {"junk", "late"}) {
    fs::create_directory(dir.path() + "/" + name);
    std::ofstream(dir.path() + "/" + name + "/notes.txt") << "not a version";
  }
  absl::SleepFor(absl::Milliseconds(2500));  // old enough to be remembered
  ASSERT_THAT(*store->ListModels(), ElementsAre());
  ASSERT_THAT(*store->ListModels(), ElementsAre());  // from what it remembered
  ASSERT_EQ(*writer->Publish(MakeSnapshot("late")), 1);
  EXPECT_THAT(*store->ListModels(), ElementsAre("late"));
  // A new directory, listed while fresh and changed at once.
  fs::create_directory(dir.path() + "/fresh");
  EXPECT_THAT(*store->ListModels(), ElementsAre("late"));
  ASSERT_EQ(*writer->Publish(MakeSnapshot("fresh")), 1);
  EXPECT_THAT(*store->ListModels(), ElementsAre("fresh", "late"));
  // Removing the only version makes it a non-model again.
  ASSERT_TRUE(writer->DeleteVersion("late", 1).ok());
  EXPECT_THAT(*store->ListModels(), ElementsAre("fresh"));
}

TEST(FileStoreTest, OnlyStrictlyNumericDirectoriesAreVersions) {
  TempDir dir;
  auto store = *FileStore::Open(dir.path());
  ASSERT_EQ(*store->Publish(MakeSnapshot("m")), 1);
  const std::string m = dir.path() + "/m";
  for (const char* junk : {"12.tmp", "012", "+3", " 4", "0", "-5", "abc",
                           "99999999999999999999999"}) {
    fs::create_directory(m + "/" + junk);
  }
  std::ofstream(m + "/7") << "a file, not a directory";
  EXPECT_THAT(*store->ListVersions("m"), ElementsAre(1));
  EXPECT_EQ(*store->Latest("m"), 1);
  EXPECT_EQ(*store->Publish(MakeSnapshot("m")), 2);
  // Junk at the root is not a model.
  fs::create_directory(dir.path() + "/.hidden");
  fs::create_directory(dir.path() + "/empty");
  EXPECT_THAT(*store->ListModels(), ElementsAre("m"));
}

TEST(FileStoreTest, AbandonedStagingDirectoriesAreInvisibleAndCleanedUp) {
  TempDir dir;
  auto store = *FileStore::Open(dir.path());
  ASSERT_EQ(*store->Publish(MakeSnapshot("m")), 1);
  const std::string m = dir.path() + "/m";
  fs::create_directory(m + "/.staging-999999-1");
  std::ofstream(m + "/.staging-999999-1/snapshot.binpb") << "half";
  fs::create_directory(m + "/.deleting-1-1");
  std::ofstream(m + "/.tmp-.next_version-1") << "7";
  EXPECT_THAT(*store->ListVersions("m"), ElementsAre(1));
  ASSERT_EQ(*store->Publish(MakeSnapshot("m")), 2);
  EXPECT_THAT(HiddenEntries(m, ".staging-"), ::testing::IsEmpty());
  EXPECT_THAT(HiddenEntries(m, ".deleting-"), ::testing::IsEmpty());
  EXPECT_THAT(HiddenEntries(m, ".tmp-"), ::testing::IsEmpty());
}

TEST(FileStoreTest, VersionDirectoryWithoutSnapshotFileIsDataLoss) {
  TempDir dir;
  auto store = *FileStore::Open(dir.path());
  ASSERT_EQ(*store->Publish(MakeSnapshot("m")), 1);
  fs::remove(dir.path() + "/m/1/snapshot.binpb");
  EXPECT_TRUE(absl::IsDataLoss(store->Read("m", 1).status()));
  // A snapshot copied under the wrong version number is not served either.
  ASSERT_EQ(*store->Publish(MakeSnapshot("m")), 2);
  fs::copy(dir.path() + "/m/2", dir.path() + "/m/5");
  EXPECT_TRUE(absl::IsDataLoss(store->Read("m", 5).status()));
}

// ISSUE 14 defects 6 and 7: a directory (EISDIR) or a FIFO in place of a
// snapshot file is a damaged version: DATA_LOSS naming what is there, so
// readers skip it like a checksum failure. A FIFO must never block: before,
// open() waited for a writer forever.
TEST(FileStoreTest, SnapshotThatIsNotARegularFileIsDataLossAndNeverBlocks) {
  TempDir dir;
  auto store = *FileStore::Open(dir.path());
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(store->Publish(MakeSnapshot("m")).ok());
  const std::string v3 = dir.path() + "/m/3/snapshot.binpb";
  const std::string v4 = dir.path() + "/m/4/snapshot.binpb";
  fs::remove(v3);
  fs::create_directory(v3);
  fs::remove(v4);
  ASSERT_EQ(mkfifo(v4.c_str(), 0644), 0);

  // Read the FIFO version on another thread; if it blocks, a writer opened
  // non-blocking releases it so that the test fails instead of hanging.
  absl::Notification done;
  absl::Status fifo_status;
  std::thread reader([&] {
    fifo_status = store->Read("m", 4).status();
    done.Notify();
  });
  const bool returned = done.WaitForNotificationWithTimeout(absl::Seconds(5));
  if (!returned) {
    const int fd = open(v4.c_str(), O_WRONLY | O_NONBLOCK);
    if (fd >= 0) close(fd);
  }
  reader.join();
  EXPECT_TRUE(returned) << "Read of a FIFO blocked";
  EXPECT_TRUE(absl::IsDataLoss(fifo_status)) << fifo_status;
  EXPECT_THAT(fifo_status.message(), ::testing::HasSubstr("a FIFO"));

  const absl::Status dir_status = store->Read("m", 3).status();
  EXPECT_TRUE(absl::IsDataLoss(dir_status)) << dir_status;
  EXPECT_THAT(dir_status.message(), ::testing::HasSubstr("a directory"));
  absl::StatusOr<v1::Snapshot> latest = ReadLatestValid(*store, "m");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->version(), 2);
}

// ISSUE 14 defect 9: a stray directory "999999999999999999" made every
// later Publish acknowledge a version >= 10^18 that listings never showed
// (names over 18 digits are not versions); a .next_version of INT64_MAX
// overflowed and the next Publish returned a version lower than one already
// acknowledged. Versions end at kMaxVersion: past it Publish is
// OUT_OF_RANGE, and nothing wraps.
TEST(FileStoreTest, PublishNeverGoesPastTheLargestVersion) {
  TempDir dir;
  auto store = *FileStore::Open(dir.path());
  ASSERT_EQ(*store->Publish(MakeSnapshot("m")), 1);
  fs::create_directory(dir.path() + "/m/999999999999999999");
  fs::create_directory(dir.path() + "/m/1000000000000000000");  // 19 digits
  EXPECT_THAT(*store->ListVersions("m"), ElementsAre(1, kMaxVersion));
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<int64_t> v = store->Publish(MakeSnapshot("m"));
    EXPECT_TRUE(absl::IsOutOfRange(v.status())) << v.status();
    EXPECT_THAT(v.status().message(), ::testing::HasSubstr("no more versions"));
  }
  EXPECT_THAT(*store->ListVersions("m"), ElementsAre(1, kMaxVersion));

  // The high-water mark: the last version is handed out once, then nothing;
  // INT64_MAX (or any number past the range) is refused, never wrapped.
  ASSERT_EQ(*store->Publish(MakeSnapshot("n")), 1);
  std::ofstream(dir.path() + "/n/.next_version") << kMaxVersion << "\n";
  EXPECT_EQ(*store->Publish(MakeSnapshot("n")), kMaxVersion);
  EXPECT_TRUE(absl::IsOutOfRange(store->Publish(MakeSnapshot("n")).status()));
  EXPECT_EQ(store->Read("n", kMaxVersion)->version(), kMaxVersion);
  std::ofstream(dir.path() + "/n/.next_version") << INT64_MAX << "\n";
  EXPECT_TRUE(absl::IsOutOfRange(store->Publish(MakeSnapshot("n")).status()));
  EXPECT_THAT(*store->ListVersions("n"), ElementsAre(1, kMaxVersion));
  // Deleting still works when every number is used.
  EXPECT_TRUE(store->DeleteVersion("n", 1).ok());
}

TEST(FileStoreTest, HighWaterMarkSurvivesDeletingTheNewestVersionDirectly) {
  TempDir dir;
  auto store = *FileStore::Open(dir.path());
  ASSERT_EQ(*store->Publish(MakeSnapshot("m")), 1);
  ASSERT_EQ(*store->Publish(MakeSnapshot("m")), 2);
  // Even if an operator removes the directory by hand.
  fs::remove_all(dir.path() + "/m/2");
  auto reopened = *FileStore::Open(dir.path());
  EXPECT_EQ(*reopened->Publish(MakeSnapshot("m")), 3);
}

// A child publishes in a loop; the parent SIGKILLs it at random moments. Every
// listed version must verify, no version number may repeat, and the next
// publish must clean the leftovers.
TEST(FileStoreTest, CrashConsistencyUnderSigkill) {
  TempDir dir;
  constexpr int kKills = 60;
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> delay_us(0, 60000);
  std::set<int64_t> seen;
  for (int i = 0; i < kKills; ++i) {
    // The random moment is counted from the child's first completed publish
    // (it writes one byte to `first`), not from fork: on a loaded machine a
    // child may not get to run for the whole delay, and the rounds would
    // then test nothing.
    int first[2];
    ASSERT_EQ(pipe(first), 0);
    const pid_t child = ForkChild([&] {
      close(first[0]);
      auto store = FileStore::Open(dir.path());
      if (!store.ok()) return false;
      for (int64_t tag = 0;; ++tag) {
        const bool ok =
            (*store)->Publish(MakeSnapshot("m", 64 * 1024, tag)).ok();
        if (ok && first[1] >= 0) {
          const char byte = 1;
          if (write(first[1], &byte, 1) != 1) return false;
          close(first[1]);
          first[1] = -1;
        }
      }
    });
    ASSERT_GT(child, 0);
    close(first[1]);
    pollfd published{.fd = first[0], .events = POLLIN};
    // A hang guard, not a timing requirement.
    ASSERT_EQ(poll(&published, 1, 60'000), 1)
        << "round " << i << ": the child did not publish within 60 s";
    char byte = 0;
    ASSERT_EQ(read(first[0], &byte, 1), 1)
        << "round " << i << ": the child died before its first publish";
    close(first[0]);
    usleep(static_cast<useconds_t>(delay_us(rng)));
    kill(child, SIGKILL);
    int status;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status));
    auto store = *FileStore::Open(dir.path());
    auto versions = *store->ListVersions("m");
    for (int64_t v : versions) {
      auto s = store->Read("m", v);
      ASSERT_TRUE(s.ok()) << "after kill " << i << ": " << s.status();
      ASSERT_EQ(s->version(), v);
      seen.insert(v);
    }
  }
  auto store = *FileStore::Open(dir.path());
  auto versions = *store->ListVersions("m");
  // At least one completed publish per round (see above).
  EXPECT_GE(versions.size(), static_cast<size_t>(kKills));
  EXPECT_EQ(std::set<int64_t>(versions.begin(), versions.end()), seen);
  auto next = store->Publish(MakeSnapshot("m"));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_GT(*next, *seen.rbegin());
  EXPECT_THAT(HiddenEntries(dir.path() + "/m", ".staging-"),
              ::testing::IsEmpty());
  auto latest = ReadLatestValid(*store, "m");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->version(), *next);
}

// The deterministic counterpart of the random kills above, whose clean-up
// check passes vacuously when no kill happens to land inside a publish. The
// store's test-only fault point (file_store.h) stops a child's Publish after
// its staging directory is written and fsynced, before the rename; the parent
// sees it announced, checks the state, SIGKILLs the child there and checks
// that the kill left exactly that staging directory, invisible, and that the
// next publish removes it and never reuses the killed publish's number.
TEST(FileStoreTest,
     KillsInsidePublishLeaveOnlyStagingThatTheNextPublishRemoves) {
  TempDir dir;
  const std::string pause_dir = dir.path() + "/hook";
  const std::string m = dir.path() + "/store/m";
  ASSERT_TRUE(fs::create_directories(pause_dir));
  auto store = *FileStore::Open(dir.path() + "/store");  // the hook is off
  ASSERT_EQ(*store->Publish(MakeSnapshot("m")), 1);
  constexpr int kKills = 3;
  for (int i = 0; i < kKills; ++i) {
    std::ofstream(pause_dir + "/pause") << "";
    const pid_t child = ForkChild([&] {
      setenv(kPublishPauseEnv, pause_dir.c_str(), 1);
      auto child_store = FileStore::Open(dir.path() + "/store");
      return child_store.ok() &&
             (*child_store)->Publish(MakeSnapshot("m", 4096, 100 + i)).ok();
    });
    ASSERT_GT(child, 0);
    // Hang guard: the child announces the pause as soon as it gets there.
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (!fs::exists(pause_dir + "/paused") && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(2));
    }
    ASSERT_TRUE(fs::exists(pause_dir + "/paused"))
        << "kill " << i << ": the child never paused inside Publish";
    std::string staging;
    std::getline(std::ifstream(pause_dir + "/paused"), staging);
    // Inside Publish: the snapshot is complete in the staging directory and
    // no new version is visible yet.
    EXPECT_TRUE(absl::StartsWith(staging, m + "/.staging-")) << staging;
    EXPECT_GT(fs::file_size(staging + "/snapshot.binpb"), 4096u);
    EXPECT_THAT(*store->ListVersions("m"), ElementsAre(1));
    kill(child, SIGKILL);
    int status;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status));
    fs::remove(pause_dir + "/pause");
    fs::remove(pause_dir + "/paused");
    // The kill landed mid-publish: its staging directory is left behind
    // (the previous kill's was removed by this child's own publish),
    // invisible to readers.
    EXPECT_THAT(HiddenEntries(m, ".staging-"),
                ElementsAre(fs::path(staging).filename().string()))
        << "kill " << i;
    EXPECT_THAT(*store->ListVersions("m"), ElementsAre(1));
    EXPECT_EQ(*store->Latest("m"), 1);
  }
  // The next publish removes every leftover; each killed publish had raised
  // the high-water mark, so its number is never handed out.
  auto next = store->Publish(MakeSnapshot("m"));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(*next, 2 + kKills);
  EXPECT_THAT(HiddenEntries(m, ".staging-"), ::testing::IsEmpty());
  EXPECT_THAT(*store->ListVersions("m"), ElementsAre(1, 2 + kKills));
  EXPECT_EQ(store->Read("m", 2 + kKills)->version(), 2 + kKills);
}

TEST(FileStoreTest, ThePublishPauseHookIsOffByDefaultAndRefusesABadValue) {
  TempDir dir;
  ASSERT_EQ(std::getenv(kPublishPauseEnv), nullptr);
  // A pause file somewhere does nothing without the variable.
  std::ofstream(dir.path() + "/pause") << "";
  auto store = *FileStore::Open(dir.path() + "/store");
  EXPECT_EQ(*store->Publish(MakeSnapshot("m")), 1);
  const pid_t child = ForkChild([&] {
    setenv(kPublishPauseEnv, (dir.path() + "/no-such-dir").c_str(), 1);
    const absl::Status st = FileStore::Open(dir.path() + "/store").status();
    return absl::IsInvalidArgument(st) &&
           absl::StrContains(st.message(), kPublishPauseEnv);
  });
  EXPECT_TRUE(WaitChildOk(child));
}

TEST(FileStoreTest, TwoProcessesPublishingFiftyEachGetHundredVersions) {
  TempDir dir;
  std::vector<pid_t> children;
  for (int p = 0; p < 2; ++p) {
    children.push_back(ForkChild([&, p] {
      auto store = FileStore::Open(dir.path());
      if (!store.ok()) return false;
      for (int i = 0; i < 50; ++i) {
        if (!(*store)->Publish(MakeSnapshot("m", 256, p * 1000 + i)).ok()) {
          return false;
        }
      }
      return true;
    }));
  }
  for (pid_t c : children) EXPECT_TRUE(WaitChildOk(c));
  auto store = *FileStore::Open(dir.path());
  auto versions = *store->ListVersions("m");
  ASSERT_EQ(versions.size(), 100u);
  EXPECT_EQ(versions.front(), 1);
  EXPECT_EQ(versions.back(), 100);
  std::set<int64_t> tags;
  for (int64_t v : versions) {
    auto s = store->Read("m", v);
    ASSERT_TRUE(s.ok()) << s.status();
    tags.insert(s->training().step());
  }
  EXPECT_EQ(tags.size(), 100u);
}

TEST(FileStoreTest, FileInTheWayIsAnErrorNotACrash) {
  TempDir dir;
  auto store = *FileStore::Open(dir.path());
  std::ofstream(dir.path() + "/m") << "not a directory";
  auto v = store->Publish(MakeSnapshot("m"));
  EXPECT_THAT(v,
              StatusIs(absl::StatusCode::kInternal,
                       "cannot create model directory " + dir.path() + "/m"));
  EXPECT_TRUE(store->ListVersions("m").ok());
  EXPECT_TRUE(absl::IsNotFound(store->SetLabel("m", "stable", 1)));
  EXPECT_THAT(*store->ListModels(), ::testing::IsEmpty());
}

}  // namespace
}  // namespace bnserve::store
