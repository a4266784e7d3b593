#!/usr/bin/env bash
# Builds the whole project with AddressSanitizer + UndefinedBehaviorSanitizer
# in ${BUILD_DIR:-build-asan} and runs the ctest suite under them, except the
# tests labelled `long` (the fault-injection and soak tests, tests/faults/):
# they run for a fixed time or wait on process restarts, so under ASan they
# cost minutes of CI time and check the same code paths as the rest; CI runs
# them in its normal-build stage. SANITIZE_LONG=1 includes them.
# Any ASan report, UBSan report or leak (outside the suppressed gRPC/protobuf
# internals, see scripts/lsan.supp) fails the test that triggered it.
#
#   bash scripts/sanitize.sh                   # build + every test but `long`
#   SANITIZE_LONG=1 bash scripts/sanitize.sh   # build + every test
#   bash scripts/sanitize.sh -L store          # extra arguments go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."
# Relative paths in ccache keys, as scripts/build.sh: other clones share the cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
root=$PWD
build_dir=${BUILD_DIR:-build-asan}
jobs=${JOBS:-$(nproc)}

start=$SECONDS
# -fno-sanitize-recover: a UBSan report aborts the test instead of scrolling
# by in a passing test's log.
# -O1, as the sanitizers' documentation advises: from cold this build (CI's
# longest) took 786 s against 1,038 s at -O2, and the tests 290 s against
# 276 s (docs/FUZZING.md, "CI duration").
cmake -S . -B "$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g -DNDEBUG" \
  -DBNSERVE_SANITIZE=address,undefined \
  -DCMAKE_CXX_FLAGS="-fno-sanitize-recover=all" >/dev/null
ninja -C "$build_dir" -j"$jobs"
echo "sanitize.sh: build took $((SECONDS - start)) s"

export ASAN_OPTIONS=detect_leaks=1:strict_init_order=1:detect_stack_use_after_return=1:check_initialization_order=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$root/scripts/lsan.supp:print_suppressions=0
test_start=$SECONDS
cd "$build_dir"
# (With SANITIZE_LONG=1, faults_soak_short skips its RSS-flat check: ASan's
# quarantine holds up to 256 MiB of freed memory; LSan checks leaks here.)
select=(-LE long)
[[ ${SANITIZE_LONG:-0} = 1 ]] && select=()
status=0
# run-ctest.sh: a skipped test fails the stage in CI. `-LE long` is an
# exclusion (ctest never runs those tests), not a skip; the address-space
# death test is not compiled under sanitizers (tests/model/network_test.cc).
bash "$root/scripts/run-ctest.sh" -j"$jobs" --output-on-failure --timeout 900 "${select[@]}" "$@" || status=$?
echo "sanitize.sh: tests took $((SECONDS - test_start)) s, total $((SECONDS - start)) s"
exit "$status"
