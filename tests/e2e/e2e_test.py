#!/usr/bin/python3
"""End to end: real bnserve-trainer and bnserve-inference processes on
loopback ports and a temporary file store, driven by bnctl.

1. digits: bnctl train over RPC, bnctl predict --json one request per test
   example; accuracy >= 95%.
2. diabetes regression: RMSE at least 25% below the mean predictor's.
3. bnctl export: the exported running statistics, applied with numpy in
   inference mode, reproduce the served predictions.
4. SIGTERM: both servers exit 0.

Usage: e2e_test.py BUILD_DIR  (run from the repository root)
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from ports import free_port  # noqa: E402  tests/common/ports.py

BUILD = os.path.abspath(sys.argv[1])
BNCTL = os.path.join(BUILD, "client/bnctl/bnctl")
TRAINER = os.path.join(BUILD, "server/trainer/bnserve-trainer")
INFERENCE = os.path.join(BUILD, "server/inference/bnserve-inference")


def bnctl(*args, timeout=240):
    result = subprocess.run([BNCTL, *args], capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"bnctl {' '.join(args)} failed "
                             f"({result.returncode}): {result.stderr}")
    return json.loads(result.stdout)


def wait_until(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def load_csv(path):
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    return data[:, :-1], data[:, -1]


def forward(export, x):
    """Inference-mode forward pass of an exported snapshot
    (docs/DESIGN.md section 3.3)."""
    h = x.astype(np.float64)
    for layer in export["layers"]:
        if layer["type"] == "dense":
            h = h @ np.asarray(layer["weight"], dtype=np.float64).T
            if layer["bias"] is not None:
                h = h + np.asarray(layer["bias"])
        elif layer["type"] == "batch_norm":
            mean = np.asarray(layer["running_mean"])
            var = np.asarray(layer["running_var"])
            h = (np.asarray(layer["gamma"]) * (h - mean) /
                 np.sqrt(var + layer["eps"]) + np.asarray(layer["beta"]))
        else:
            fn = layer["fn"]
            if fn == "relu":
                h = np.maximum(h, 0)
            elif fn == "tanh":
                h = np.tanh(h)
            elif fn == "sigmoid":
                h = 1 / (1 + np.exp(-h))
    return h


def main():
    work = tempfile.mkdtemp(prefix="bnserve-e2e-")
    store = os.path.join(work, "store")
    tport, iport = free_port(), free_port()
    trainer_addr, server_addr = f"127.0.0.1:{tport}", f"127.0.0.1:{iport}"
    logs = {name: open(os.path.join(work, f"{name}.log"), "w")
            for name in ("trainer", "inference")}
    procs = {
        "trainer": subprocess.Popen(
            [TRAINER, "--host", "127.0.0.1", "--port", str(tport),
             "--http_port", "0", "--store", store], stderr=logs["trainer"]),
        "inference": subprocess.Popen(
            [INFERENCE, "--host", "127.0.0.1", "--port", str(iport),
             "--metrics_port", "0", "--http_port", "0", "--store", store],
            stderr=logs["inference"]),
    }
    try:
        wait_until(lambda: subprocess.run(
            [BNCTL, "health", "--server", trainer_addr],
            capture_output=True).returncode == 0, "trainer health")

        # 1. digits classification, with the default input normalization
        # (a batch norm over the raw pixels, folded into the first dense
        # layer when serving; the numpy forward below applies it from the
        # export). Per-pixel standardization amplifies pixels that are
        # nearly constant in training, so accuracy varies more with the
        # seed than without it (92.7-97.8% over seeds 1-4 at these settings;
        # 96.9-98.4% with --no-input-norm); the demo's seed is used here.
        train = bnctl("train", "--trainer", trainer_addr, "--model", "digits",
                      "--data", "data/digits/train.csv", "--hidden", "128,64",
                      "--epochs", "15", "--batch-size", "64", "--lr", "0.05",
                      "--momentum", "0.9", "--seed", "1", "--json")
        version = train["version"]
        assert version == 1, train
        wait_until(lambda: subprocess.run(
            [BNCTL, "health", "--server", server_addr],
            capture_output=True).returncode == 0, "inference SERVING")
        digits = bnctl("predict", "--server", server_addr, "--model", "digits",
                       "--data", "data/digits/test.csv", "--json")
        print("digits:", json.dumps(digits))
        assert digits["examples"] == 450, digits
        assert digits["accuracy"] >= 0.95, digits
        assert digits["versions"] == {str(version): 450}, digits

        # 2. diabetes regression.
        reg = bnctl("train", "--trainer", trainer_addr, "--model", "diabetes",
                    "--data", "data/diabetes/train.csv", "--task",
                    "regression", "--hidden", "32", "--optimizer", "adam",
                    "--lr", "0.003", "--weight-decay", "0.001", "--epochs",
                    "300", "--batch-size", "32", "--seed", "3", "--json")
        wait_until(lambda: subprocess.run(
            [BNCTL, "predict", "--server", server_addr, "--model", "diabetes",
             "--features", ",".join(["0"] * 10)],
            capture_output=True).returncode == 0, "diabetes served")
        diabetes = bnctl("predict", "--server", server_addr, "--model",
                         "diabetes", "--data", "data/diabetes/test.csv",
                         "--json")
        _, y_train = load_csv("data/diabetes/train.csv")
        _, y_test = load_csv("data/diabetes/test.csv")
        baseline = float(np.sqrt(np.mean((y_test - y_train.mean()) ** 2)))
        print("diabetes:", json.dumps(diabetes), "mean-predictor rmse",
              round(baseline, 3), "trained", reg["version"])
        assert diabetes["rmse"] <= 0.75 * baseline, (diabetes, baseline)

        # 3. export reproduces the served model's behaviour.
        export = bnctl("export", "--store", store, "--model", "digits",
                       "--version", str(version))
        assert export["format"] == "bnserve.snapshot.v1", export.keys()
        bns = [l for l in export["layers"] if l["type"] == "batch_norm"]
        # The input normalization and one batch norm per hidden layer.
        assert len(bns) == 3 and all(
            l["stats_source"] == "ema" and l["num_batches_tracked"] > 0
            for l in bns), bns
        x_test, _ = load_csv("data/digits/test.csv")
        expected = forward(export, x_test[:20])
        for i in range(20):
            served = bnctl("predict", "--server", server_addr, "--model",
                           "digits", "--features",
                           ",".join(f"{v:g}" for v in x_test[i]), "--json")
            out = np.asarray(served["outputs"])
            assert np.allclose(out, expected[i], rtol=1e-4, atol=1e-4), (
                i, out, expected[i])
        print("export: 20 served predictions match the exported statistics")

        # 4. graceful shutdown.
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            code = proc.wait(timeout=30)
            assert code == 0, f"{name} exited with {code}"
        print("1 passed, 0 failed")
    except BaseException:
        for name in logs:
            logs[name].flush()
            with open(os.path.join(work, f"{name}.log")) as f:
                sys.stderr.write(f"--- {name} log ---\n{f.read()[-4000:]}\n")
        raise
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
