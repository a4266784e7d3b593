#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan + UBSan) in
# ${BUILD_DIR:-build-fuzz} and runs each for ${FUZZ_SECONDS:-60} seconds from
# a scratch copy of its committed seed corpus (tests/fuzz/corpus/<target>), so
# the committed corpus is never modified. Prints executions and findings per
# target; exits non-zero if any target found a crash, leak, timeout or
# out-of-memory. Reproducers are kept in $BUILD_DIR/fuzz-artifacts/<target>/.
#
#   bash scripts/fuzz.sh                       # every target, 60 s each
#   FUZZ_SECONDS=20 bash scripts/fuzz.sh       # CI
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh csv  # one target, 10 minutes
# See docs/FUZZING.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# Relative paths in ccache keys, as scripts/build.sh: other clones share the cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
root=$PWD
build_dir=${BUILD_DIR:-build-fuzz}
[[ $build_dir = /* ]] || build_dir=$root/$build_dir
seconds=${FUZZ_SECONDS:-60}
jobs=${JOBS:-$(nproc)}
all_targets=(snapshot envelope csv store_uri minibatch inference snapshot_json layer_syntax onnx kserve_rest dashboard)
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")

start=$SECONDS
# -fsanitize=fuzzer-no-link instruments the project's libraries for coverage;
# -fno-sanitize-recover makes any UBSan report a crash libFuzzer records.
# BNSERVE_WERROR=OFF: clang warns where gcc (the project's compiler) does not;
# the fuzz targets themselves are still built with -Werror.
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBNSERVE_FUZZ=ON -DBNSERVE_BUILD_TESTS=OFF -DBNSERVE_WERROR=OFF \
  -DBNSERVE_SANITIZE=address,undefined \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link -fno-sanitize-recover=all" \
  >/dev/null
ninja -C "$build_dir" -j"$jobs" "${targets[@]/%/_fuzzer}"
echo "fuzz.sh: build took $((SECONDS - start)) s"

work=$(mktemp -d "${TMPDIR:-/tmp}/bnserve-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$root/scripts/lsan.supp:print_suppressions=0

failed=()
summary=()
for t in "${targets[@]}"; do
  corpus=$work/corpus/$t
  artifacts=$build_dir/fuzz-artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  cp "$root/tests/fuzz/corpus/$t/"* "$corpus/"
  seeds=$(ls "$corpus" | wc -l)
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048
        -malloc_limit_mb=256 -max_len=65536 -print_final_stats=1
        -artifact_prefix="$artifacts/")
  [[ -f $root/tests/fuzz/$t.dict ]] && args+=(-dict="$root/tests/fuzz/$t.dict")
  log=$work/$t.log
  touch "$log.start"
  echo "== $t: ${seconds} s from $seeds seeds"
  rc=0
  "$build_dir/tests/fuzz/${t}_fuzzer" "${args[@]}" "$corpus" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  units=$(ls "$corpus" | wc -l)
  # libFuzzer writes one crash-/leak-/timeout-/oom- file per finding.
  findings=$(find "$artifacts" -type f -newer "$log.start" | wc -l)
  if ((rc != 0)); then
    failed+=("$t")
    echo "-- $t FAILED (exit $rc); log tail:"
    tail -60 "$log"
    echo "-- reproducer(s) in $artifacts/"
  fi
  summary+=("$(printf '%-10s %12s execs %8s exec/s  cov %6s  corpus %4s -> %-5s  findings %s' \
    "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" "$seeds" "$units" "$findings")")
done

echo
echo "fuzz.sh: ${seconds} s per target, total $((SECONDS - start)) s"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzz.sh: FAILED: ${failed[*]}"
  exit 1
fi
