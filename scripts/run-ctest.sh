#!/usr/bin/env bash
# Runs ctest with the given arguments in the current directory (a build
# directory) and then lists every test that did not run (ctest: Skipped or
# Disabled) with its reason from the log. In CI (CI=true) or with NO_SKIPS=1
# any such test fails this script, even when ctest itself passed: a skipped
# test checks nothing, and CI must not go green without running a check
# (tests/common/skip.h and skip.py also turn missing prerequisites into
# failures there). Outside CI a skip is allowed but printed.
#
# Exclusions are not skips: tests left out by a label or name filter
# (scripts/sanitize.sh's -LE long, scripts/tsan.sh's -R) or not compiled in a
# build (the address-space death test under sanitizers) are never run, so
# ctest does not report them.
#
#   bash scripts/run-ctest.sh -j2 --output-on-failure
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
ctest "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# ctest's summary: "The following tests did not run:" then one line per test,
# "	 42 - Suite.Name (Skipped)".
mapfile -t not_run < <(sed -n '/^The following tests did not run:/,/^$/p' "$log" |
  grep -E '^[[:space:]]+[0-9]+ - .* \((Skipped|Disabled)\)$' |
  sed -E 's/^[[:space:]]+//')
if ((${#not_run[@]})); then
  echo
  echo "run-ctest.sh: ${#not_run[@]} test(s) did not run:"
  for t in "${not_run[@]}"; do
    name=$(sed -E 's/^[0-9]+ - (.*) \((Skipped|Disabled)\)$/\1/' <<<"$t")
    echo "  $t"
    # Why: the skip message from the test's output in ctest's full log
    # (gtest: a "...: Skipped" line and the message after it; Python
    # scripts: "SKIP: ..."; unittest: "skipped '...'").
    awk -v name="$name" '
      $0 ~ /^[0-9]+\/[0-9]+ Test: / { sub(/^[0-9]+\/[0-9]+ Test: /, ""); on = ($0 == name); next }
      on && /<end of output>/ { on = 0 }
      on && (/: Skipped$/ || /^SKIP: / || /skipped \x27/) { print "      " $0; if (/: Skipped$/) more = 2; next }
      on && more > 0 { print "      " $0; more-- }
    ' Testing/Temporary/LastTest.log 2>/dev/null | head -6
  done
  if [[ ${CI:-} = true || ${CI:-} = 1 || ${NO_SKIPS:-0} = 1 ]]; then
    echo "run-ctest.sh: FAIL: skipped tests are failures in CI (CI=${CI:-}, NO_SKIPS=${NO_SKIPS:-0})"
    ((status == 0)) && status=1
  fi
fi
exit "$status"
