#!/usr/bin/env bash
# Configures and builds bnserve into ${BUILD_DIR:-build} (Ninja, ccache).
# TARGETS (space-separated) limits what is built; extra arguments go to
# cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
# Relative paths in ccache keys: clones in other folders (CI) share the cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
# shellcheck disable=SC2086
ninja -C "$build_dir" -j"${JOBS:-$(nproc)}" ${TARGETS:-}
