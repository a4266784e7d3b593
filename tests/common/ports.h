#ifndef BNSERVE_TESTS_COMMON_PORTS_H_
#define BNSERVE_TESTS_COMMON_PORTS_H_

namespace bnserve::testing {

// A loopback TCP port for a server a test starts, reserved until this process
// exits; -1 if none is found.
//
// A port probed with bind(port 0) and closed is not reserved: another test
// (ctest -j) or any outgoing connection (the kernel takes those from the same
// ephemeral range) can take it before the server binds, which then fails at
// random with "address already in use". ReservePort() picks from below the
// kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range), where no
// outgoing connection lands, and holds an flock on
// /tmp/bnserve-test-ports/<port> for the life of the process: the same scheme
// as tests/common/ports.py, so no two test processes share a port. A port that
// is still bound (or in TIME_WAIT) is skipped.
//
// Thread-safe; a port is never handed out twice in one process.
int ReservePort();

}  // namespace bnserve::testing

#endif  // BNSERVE_TESTS_COMMON_PORTS_H_
