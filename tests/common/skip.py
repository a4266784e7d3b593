"""Skipping a Python test when a prerequisite is missing, honestly (the
Python side of tests/common/skip.h).

Outside CI the test is skipped and says why: a script exits 77 (ctest's
SKIP_RETURN_CODE for these tests, reported as Skipped), a unittest case calls
skipTest (ctest reports it as Skipped through the test's
SKIP_REGULAR_EXPRESSION). In CI (environment variable CI=true), where
scripts/install-deps.sh has installed everything, the test fails instead.
"""
import os
import sys

SKIP_RETURN_CODE = 77
_CI_NOTE = ("CI=true: a test may not skip in CI; install what is missing, "
            "see scripts/install-deps.sh")


def in_ci():
    return os.environ.get("CI", "").lower() in ("true", "1")


def skip_script(reason):
    """Ends the process: exit 77 with "SKIP: reason", or exit 1 in CI."""
    if in_ci():
        print(f"FAIL: {reason} ({_CI_NOTE})", flush=True)
        sys.exit(1)
    print(f"SKIP: {reason}", flush=True)
    sys.exit(SKIP_RETURN_CODE)


def skip_case(case, reason):
    """Skips the unittest case `case`, or fails it in CI."""
    if in_ci():
        case.fail(f"{reason} ({_CI_NOTE})")
    case.skipTest(reason)
