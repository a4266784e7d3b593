// ReservePort (tests/common/ports.h): ports below the kernel's ephemeral
// range, never handed out twice, and locked against other processes with the
// scheme tests/common/ports.py shares.
#include "tests/common/ports.h"

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <string>

#include "gtest/gtest.h"

namespace bnserve::testing {
namespace {

int EphemeralLow() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0, high = 0;
  in >> low >> high;
  return low;
}

TEST(PortsTest, ReservedPortsAreDistinctAndOutsideTheEphemeralRange) {
  const int low = EphemeralLow();
  ASSERT_GT(low, 17000) << "this machine's ephemeral range starts low";
  std::set<int> seen;
  for (int i = 0; i < 200; ++i) {
    const int port = ReservePort();
    ASSERT_GT(port, 0);
    EXPECT_LT(port, low);
    EXPECT_GE(port, 15000);
    EXPECT_TRUE(seen.insert(port).second) << "port " << port << " twice";
  }
}

// The Python helper, in another process, cannot lock a port this process
// holds, and the ports it reserves itself are not among this process's.
TEST(PortsTest, AnotherProcessUsingThePythonHelperCannotTakeAHeldPort) {
  const int held = ReservePort();
  ASSERT_GT(held, 0);
  const std::string script = std::string(
                                 "import fcntl, os, sys\n"
                                 "sys.path.insert(0, 'tests/common')\n"
                                 "import ports\n"
                                 "fd = os.open(os.path.join(ports.LOCK_DIR, "
                                 "str(") +
                             std::to_string(held) +
                             ")), os.O_RDWR)\n"
                             "try:\n"
                             "    fcntl.flock(fd, fcntl.LOCK_EX | "
                             "fcntl.LOCK_NB)\n"
                             "    sys.exit(3)\n"
                             "except BlockingIOError:\n"
                             "    pass\n"
                             "got = {ports.free_port() for _ in range(100)}\n"
                             "sys.exit(4 if len(got) != 100 or " +
                             std::to_string(held) + " in got else 0)\n";
  const std::string command = "/usr/bin/python3 -c \"" + script + "\"";
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "3: the lock on a held port was granted; 4: a port was repeated";
}

}  // namespace
}  // namespace bnserve::testing
