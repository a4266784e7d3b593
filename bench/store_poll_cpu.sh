#!/usr/bin/env bash
# CPU an idle inference server spends following a file store that holds
# 20,000 directories that are not models (each with one stray file): the
# cost of the store polling. Prints the server's CPU time over 10 s as a
# percentage of one core. Usage:
#   bench/store_poll_cpu.sh build-bench/server/inference/bnserve-inference [flags...]
# e.g. with --models m to serve one named model.
set -euo pipefail
bin=$1
shift
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
/usr/bin/python3 - "$dir/store" <<'PY'
import os, sys
root = sys.argv[1]
os.makedirs(root)
for i in range(20000):
    d = os.path.join(root, "garbage%05d" % i)
    os.mkdir(d)
    with open(os.path.join(d, "junk.txt"), "w") as f:
        f.write("x")
PY
"$bin" --store "$dir/store" --host 127.0.0.1 --port 0 --metrics_port 0 --http_port 0 "$@" \
  2>"$dir/log" &
pid=$!
sleep 4  # start-up and the first scans (directories younger than 2 s)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks)
sleep 10
t1=$(ticks)
echo "server CPU over 10 s: $(( (t1 - t0) * 100 / (hz * 10) ))% of one core"
