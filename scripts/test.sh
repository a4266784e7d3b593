#!/usr/bin/env bash
# The README's second command: install dependencies, build, run every test.
# Tests that did not run (skipped) are listed with their reason; with CI=true
# (.ci/run) or NO_SKIPS=1 they fail the script (scripts/run-ctest.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/install-deps.sh
bash scripts/build.sh
cd "${BUILD_DIR:-build}"
bash "$root/scripts/run-ctest.sh" --output-on-failure -j"${JOBS:-$(nproc)}" --timeout 600
