#!/usr/bin/env bash
# The README's first command: install, build, and run the digits demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
# In-process for now: train [128, 64] on digits, predict each test example on
# its own with the running statistics, print the accuracy.
./build/tests/model/trainer_test --gtest_filter='*Digits*' \
  --gtest_output=json:/tmp/bnserve-demo.json
grep -o '"accuracy_ema": "[0-9.]*"' /tmp/bnserve-demo.json
