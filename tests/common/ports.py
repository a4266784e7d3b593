"""Loopback ports for tests that start servers, free of collisions (the
Python side of tests/common/ports.h; both follow the same scheme).

A port from bind(("127.0.0.1", 0)) is free when asked but not reserved: after
the probe socket closes and before the server binds, another test (ctest -j
runs several at once) or any process's outgoing connection can take it, since
the kernel hands out outgoing ports from that same ephemeral range. A server
then fails at start with "address already in use", at random.

free_port() instead picks from below the kernel's ephemeral range
(/proc/sys/net/ipv4/ip_local_port_range), where no outgoing connection lands,
and reserves the port for the life of the process with an flock on
/tmp/bnserve-test-ports/<port>, which the C++ helper takes too: no two test
processes get the same port, and a port still bound (or in TIME_WAIT) from an
earlier test is skipped.
"""
import fcntl
import os
import random
import socket

LOCK_DIR = "/tmp/bnserve-test-ports"
_held = []  # the lock files, open for the life of the process


def _candidate_range():
    """[first, last) of the ports tests may use."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(v) for v in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low - 15000 >= 2000:
        return 15000, low
    return high + 1, 65536  # an unusual range: use the ports above it


def _bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port():
    """A loopback port nothing else uses, reserved until this process ends."""
    os.makedirs(LOCK_DIR, mode=0o777, exist_ok=True)
    first, last = _candidate_range()
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(first, last)
        fd = os.open(os.path.join(LOCK_DIR, str(port)),
                     os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if _bindable(port):
            _held.append(fd)
            return port
        os.close(fd)
    raise RuntimeError(f"no free loopback port in [{first}, {last})")
