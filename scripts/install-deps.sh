#!/usr/bin/env bash
# Installs every Debian 12 package bnserve needs to build, test and run its
# demos. Used by the README commands, CI (.ci/run) and the Dockerfile's
# builder stage. Must run as root; idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  # toolchain
  g++ cmake ninja-build ccache lld pkg-config git clang-format
  # libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  grpc-proto libabsl-dev libeigen3-dev libhiredis-dev libssl-dev
  libcpp-httplib-dev libcli11-dev nlohmann-json3-dev rapidjson-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev redis-server redis-sentinel
  python3 python3-numpy python3-torch python3-grpcio python3-grpc-tools
  nghttp2-client procps openssl clang-14 libclang-rt-14-dev gnuplot-nox valgrind
  python3-yaml libonnx-dev python3-onnx python3-sklearn python3-pytest
  # dashboard browser test (headless, driven over WebDriver) and local
  # Prometheus checks of the compose scrape configuration
  chromium chromium-driver prometheus
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
