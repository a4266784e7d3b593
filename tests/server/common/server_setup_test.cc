// server/common/server_setup: which BNSERVE_* environment variables a server
// reports as unknown (a typo in a deployment must not pass silently), and
// the trainer's single malloc heap.
#include "server/common/server_setup.h"

#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/barrier.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace bnserve::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const std::vector<std::string> kFlags = {"port", "versions_to_keep", "store"};

std::vector<std::string> Unknown(std::vector<const char*> env) {
  env.push_back(nullptr);
  return UnknownEnvironmentVariables(env.data(), kFlags);
}

TEST(UnknownEnvironmentVariablesTest, FlagsAndLibraryVariablesAreKnown) {
  EXPECT_THAT(Unknown({"BNSERVE_PORT=1", "BNSERVE_VERSIONS_TO_KEEP=2",
                       "BNSERVE_STORE=", "BNSERVE_DENSE_KERNEL=generic",
                       "BNSERVE_TEST_PUBLISH_PAUSE_DIR=/tmp", "PATH=/bin",
                       "HOME=/root", "XBNSERVE_FOO=1"}),
              IsEmpty());
}

TEST(UnknownEnvironmentVariablesTest, TyposAreReportedWithTheClosestName) {
  EXPECT_THAT(
      Unknown({"BNSERVE_VERSION_TO_KEEP=3", "BNSERVE_PROT=1",
               "BNSERVE_SOMETHING_ELSE_ENTIRELY=1", "BNSERVE_=x",
               "BNSERVE_PORT=1"}),
      ElementsAre("BNSERVE_", "BNSERVE_PROT (did you mean BNSERVE_PORT?)",
                  "BNSERVE_SOMETHING_ELSE_ENTIRELY",
                  "BNSERVE_VERSION_TO_KEEP (did you mean "
                  "BNSERVE_VERSIONS_TO_KEEP?)"));
}

TEST(UnknownEnvironmentVariablesTest, FlagsOfAnotherBinaryAreUnknownHere) {
  // The trainer has no --models: BNSERVE_MODELS does nothing there.
  EXPECT_THAT(Unknown({"BNSERVE_MODELS=a"}), ElementsAre("BNSERVE_MODELS"));
  EXPECT_THAT(Unknown({"BNSERVE_MODELS"}), ElementsAre("BNSERVE_MODELS"));
}

// glibc's own allocator only: the sanitizers replace malloc.
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)

// The malloc heaps (arenas) the process has, as glibc's malloc_info lists
// them, after `threads` threads each hold an allocation at the same time.
int HeapsAfterConcurrentThreads(int threads) {
  absl::Barrier* all_hold = new absl::Barrier(threads);
  std::vector<std::thread> workers;
  for (int i = 0; i < threads; ++i) {
    workers.emplace_back([all_hold] {
      void* p = std::malloc(4096);
      if (all_hold->Block()) delete all_hold;
      std::free(p);
    });
  }
  for (std::thread& t : workers) t.join();
  char* text = nullptr;
  size_t size = 0;
  FILE* out = open_memstream(&text, &size);
  malloc_info(0, out);
  std::fclose(out);
  int heaps = 0;
  for (const char* at = text; (at = std::strstr(at, "<heap nr=")); ++at) {
    ++heaps;
  }
  std::free(text);
  return heaps;
}

// Each case runs in a fresh process (the setting is process-wide and
// applies to threads created afterwards).
TEST(UseOneMallocHeapTest, ThreadsShareOneHeap) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        UseOneMallocHeap();
        const int heaps = HeapsAfterConcurrentThreads(4);
        std::fprintf(stderr, "heaps=%d\n", heaps);
        std::exit(heaps == 1 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "heaps=1");
}

TEST(UseOneMallocHeapTest, WithoutItThreadsGetTheirOwnHeaps) {
  // The control: the count above is not 1 by accident.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        const int heaps = HeapsAfterConcurrentThreads(4);
        std::fprintf(stderr, "heaps=%d\n", heaps);
        std::exit(heaps > 1 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "heaps=");
}

#endif

}  // namespace
}  // namespace bnserve::server
