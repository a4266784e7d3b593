#!/usr/bin/env bash
# The README's first command: install, build, then the digits demo on the
# embedded file store. Starts bnserve-trainer and bnserve-inference on
# loopback ports with a temporary store, trains two networks on digits over
# RPC with bnctl (an MLP [128, 64] with input normalization, and a small
# convolutional network on the 1x8x8 images), predicts every test example
# one request at a time with each (first with the EMA running statistics,
# then with exact recalibrated statistics), prints the accuracies and
# latency percentiles, and stops both servers with SIGTERM. Both servers
# serve their dashboard (http://127.0.0.1:8001/ trainer, :8000/ inference,
# or free ports when those are taken); the script prints the addresses
# first, and when run from a terminal it keeps the servers up at the end
# until Enter is pressed, so that the dashboards can be looked at.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
  bash scripts/install-deps.sh
  TARGETS="bnserve-trainer bnserve-inference bnctl" bash scripts/build.sh
fi
build=${BUILD_DIR:-build}
bnctl=$build/client/bnctl/bnctl
work=$(mktemp -d /tmp/bnserve-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# The dashboards' usual ports when free, else any free port.
port_or_free() {
  /usr/bin/python3 -c 'import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try: s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError: s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' "$1"
}
trainer_port=$(free_port)
inference_port=$(free_port)
trainer_http=$(port_or_free 8001)
inference_http=$(port_or_free 8000)

echo "== store: $work/store (embedded file store)"
"$build/server/trainer/bnserve-trainer" --host 127.0.0.1 --port "$trainer_port" \
  --http_port "$trainer_http" --store "$work/store" 2>"$work/trainer.log" &
pids+=($!)
"$build/server/inference/bnserve-inference" --host 127.0.0.1 --port "$inference_port" \
  --metrics_port 0 --http_port "$inference_http" --store "$work/store" \
  --models digits,digits_cnn 2>"$work/inference.log" &
pids+=($!)
echo "== dashboards: trainer   http://127.0.0.1:$trainer_http/  (jobs, loss, running statistics)"
echo "               inference http://127.0.0.1:$inference_http/  (versions, traffic, drift)"

for _ in $(seq 100); do
  "$bnctl" health --server "127.0.0.1:$trainer_port" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== training digits [128, 64] over gRPC (trainer 127.0.0.1:$trainer_port)"
"$bnctl" train --trainer "127.0.0.1:$trainer_port" --model digits \
  --data data/digits/train.csv --hidden 128,64 --epochs 15 --batch-size 64 \
  --lr 0.05 --momentum 0.9 --seed 1 --recalibrate --json >"$work/train.json"

cnn_layers=conv:16:3:p1,bn,relu,maxpool:2,conv:32:3:p1,bn,relu,maxpool:2,flatten,dense:64,bn,relu
echo "== training digits_cnn as 1x8x8 images over gRPC: $cnn_layers"
"$bnctl" train --trainer "127.0.0.1:$trainer_port" --model digits_cnn \
  --data data/digits/train.csv --input-shape 1,8,8 --layers "$cnn_layers" \
  --epochs 40 --batch-size 64 --lr 0.01 --momentum 0.9 --seed 1 \
  --recalibrate --json >"$work/train_cnn.json"

for _ in $(seq 100); do
  "$bnctl" health --server "127.0.0.1:$inference_port" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== predicting 450 test examples, one Predict RPC each (inference 127.0.0.1:$inference_port)"
for model in digits digits_cnn; do
  train_json=$work/train.json
  [[ $model = digits_cnn ]] && train_json=$work/train_cnn.json
  for stats in version recalibrated_version; do
    v=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$train_json" "$stats")
    "$bnctl" predict --server "127.0.0.1:$inference_port" --model "$model" \
      --data data/digits/test.csv --version "$v" --json >"$work/$model.$stats.json"
  done
done

results=0  # the accuracy check; the dashboards stay up (below) either way
/usr/bin/python3 - "$work" <<'PY' || results=$?
import json, sys
work = sys.argv[1]
failed = []
# The floors catch broken training or serving (wrong statistics give 10-60%),
# with room for what the kernels' rounding moves: the CNN's EMA figure is
# 97.3% with the AVX2 kernels, 97.6% with the portable ones (same seed).
for model, train_file, floor in (("digits", "train.json", 0.95),
                                 ("digits_cnn", "train_cnn.json", 0.96)):
    train = json.load(open(f"{work}/{train_file}"))
    print(f"{model}: {train['steps']} steps, {train['examples']} examples, "
          f"final loss {train['final_loss']:.4f}, train accuracy {train['train_accuracy']:.3f}")
    for name, stats in (("EMA running statistics", "version"),
                        ("exact recalibrated statistics", "recalibrated_version")):
        r = json.load(open(f"{work}/{model}.{stats}.json"))
        lat = r["latency_us"]
        print(f"  version {train[stats]} ({name}): accuracy {r['accuracy']*100:.2f}% on "
              f"{r['examples']} single-example requests; latency p50 {lat['p50']:.0f} us, "
              f"p90 {lat['p90']:.0f} us, p99 {lat['p99']:.0f} us")
        if r["accuracy"] < floor:
            failed.append(f"{model} {name}: {r['accuracy']*100:.2f}% < {floor*100:.1f}%")
if failed:
    sys.exit("accuracy too low: " + "; ".join(failed))
PY

if [[ -t 0 && -t 1 ]]; then
  echo "== the dashboards stay up: http://127.0.0.1:$trainer_http/ (trainer) and"
  echo "   http://127.0.0.1:$inference_http/ (inference); press Enter to stop the servers"
  read -r _ || true
fi
if [[ $results -ne 0 ]]; then exit "$results"; fi
echo "== stopping both servers with SIGTERM"
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
pids=()
if [[ $status -ne 0 ]]; then
  echo "a server exited with status $status" >&2
  cat "$work"/*.log >&2
  exit 1
fi
echo "both servers exited cleanly"
