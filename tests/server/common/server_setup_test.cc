// server/common/server_setup: which BNSERVE_* environment variables a server
// reports as unknown (a typo in a deployment must not pass silently).
#include "server/common/server_setup.h"

#include <string>
#include <vector>

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

}  // namespace
}  // namespace bnserve::server
