#!/usr/bin/env bash
# Builds the concurrency tests with ThreadSanitizer (clang-14) in
# ${BUILD_DIR:-build-tsan} and runs them: the job manager, the store
# conformance suite (watchers, concurrent publishers) and the inference
# server's servable manager, hot reload under load and store following.
# Extra arguments go to ctest; TSAN_TARGETS / TSAN_TESTS override the lists.
#
#   bash scripts/tsan.sh                       # CI
#   bash scripts/tsan.sh --repeat until-fail:50 -R HotReloadTest
#
# What TSan cannot see, and how each is handled (no project frame is ever
# suppressed):
#  - Debian's Abseil is not built with -fsanitize=thread, so TSan cannot see
#    absl::Mutex ordering and would report every ABSL_GUARDED_BY member as a
#    race. tests/tsan/absl_mutex_tsan.cc fixes that without touching the
#    code: it is linked into every executable and interposes
#    absl::Mutex/CondVar to add __tsan_acquire/__tsan_release (see the file).
#  - Debian's libgrpc is not instrumented either, and gRPC's inline header
#    code hands objects across threads through it. tests/tsan/ignorelist.txt
#    (clang's -fsanitize-ignorelist) compiles the gRPC headers' functions
#    without load/store checks, exactly as libgrpc itself; their atomics are
#    still instrumented, project code fully (see the file). The hand-off
#    itself, a batch started with grpc_call_start_batch happening before the
#    callback libgrpc runs when it completes, is annotated by
#    tests/tsan/grpc_tag_tsan.cc (release/acquire on the callback tag), which
#    orders what the ignorelist cannot reach: the libstdc++ code gRPC's
#    inline functions call out of line (std::function, std::atomic).
#  - ignore_noninstrumented_modules=1: memory accesses made by interceptors
#    (memcpy, sendmsg, new/delete) on behalf of the uninstrumented libraries
#    (libgrpc's lock-free queues, Abseil's deadlock graph) are not checked;
#    every access made by project code still is, and synchronization is
#    still tracked.
# tests/tsan/tsan.supp holds the suppressions still needed (none).
set -euo pipefail
cd "$(dirname "$0")/.."
# Relative paths in ccache keys, as scripts/build.sh: other clones share the cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
root=$PWD
build_dir=${BUILD_DIR:-build-tsan}
[[ $build_dir = /* ]] || build_dir=$root/$build_dir
jobs=${JOBS:-$(nproc)}
targets=(${TSAN_TARGETS:-job_manager_test store_conformance_test servable_manager_test hot_reload_test store_follow_test})
tests=${TSAN_TESTS:-'^(JobManagerTest|.*StoreConformanceTest|ServableManagerTest|HotReloadTest|StoreFollowTest)\.'}

start=$SECONDS
mkdir -p "$build_dir"
# The annotation shims (tests/tsan/*.cc), deliberately not -fsanitize=thread:
# see the comments in the files. Their content hash is in the object's name:
# an edited shim changes the linker flags, so every test is relinked.
shims=()
for shim in absl_mutex_tsan grpc_tag_tsan; do
  hash=$(sha1sum "tests/tsan/$shim.cc" | cut -c1-12)
  mkdir -p "$build_dir/shims"
  obj=$build_dir/shims/$shim-$hash.o
  [[ -f $obj ]] || clang++-14 -std=c++20 -O1 -g -fPIC -Wall -Wextra -Werror \
    -c "tests/tsan/$shim.cc" -o "$obj"
  shims+=("$obj")
done
# grpc_tag_tsan.cc interposes grpc_call_start_batch and finds gRPC's
# callback-tag functions by name: export them from the executables.
exports=-Wl,--export-dynamic-symbol=grpc_call_start_batch
exports+=,--export-dynamic-symbol=_ZN4grpc8internal22CallbackWithSuccessTag9StaticRunEP29grpc_completion_queue_functori
exports+=,--export-dynamic-symbol=_ZN4grpc8internal21CallbackWithStatusTag9StaticRunEP29grpc_completion_queue_functori
# The ignorelist under the spelling -fsanitize-blacklist, the one ccache 4.7
# knows: it then hashes the file's contents (an edit rebuilds instead of
# hitting stale objects); clang-14 takes it as an alias of
# -fsanitize-ignorelist. ignore_options keeps the file's absolute path out of
# the ccache keys, so clones in other folders still share the cache.
export CCACHE_IGNOREOPTIONS='-fsanitize-blacklist=*'
ignorelist=$root/tests/tsan/ignorelist.txt
# A build dir configured by the earlier gcc version of this script: start
# its CMake cache afresh rather than let CMake switch compilers in place.
if [[ -f $build_dir/CMakeCache.txt ]] &&
  ! grep -q '^CMAKE_CXX_COMPILER:[A-Z]*=.*clang++-14$' "$build_dir/CMakeCache.txt"; then
  rm -rf "$build_dir/CMakeCache.txt" "$build_dir/CMakeFiles"
fi
# BNSERVE_WERROR=OFF: clang warns where gcc (the project's compiler) does
# not (as scripts/fuzz.sh); the gcc builds keep -Werror.
# -fsanitize=thread in the linker flags too: CMake's compiler check links a
# plain test program with these flags, and the shims need the TSan runtime
# and Abseil's synchronization library.
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBNSERVE_SANITIZE=thread -DBNSERVE_WERROR=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize-blacklist=$ignorelist" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread ${shims[*]} $exports -labsl_synchronization -ldl" >/dev/null
ninja -C "$build_dir" -j"$jobs" "${targets[@]}"
echo "tsan.sh: build took $((SECONDS - start)) s"

export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$root/tests/tsan/tsan.supp"
test_start=$SECONDS
cd "$build_dir"
# run-ctest.sh: a skipped test fails the stage in CI (-R selects, it does
# not skip).
bash "$root/scripts/run-ctest.sh" -j"$jobs" --output-on-failure --timeout 900 -R "$tests" "$@"
echo "tsan.sh: tests took $((SECONDS - test_start)) s, total $((SECONDS - start)) s"
