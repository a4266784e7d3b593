#!/usr/bin/python3
"""KServe v2 REST infer of one digits example against a no-op endpoint on
the same HTTP server (GET /v2/health/live: routing, the HTTP server and the
metrics, no JSON parsing, no model), measured with h2load over HTTP/1.1,
alternating A/B runs, medians.

  /usr/bin/python3 bench/rest_ab.py [--build build] [--reps 7] [--seconds 3]
                                    [--clients 4]

Starts a bnserve-trainer and a bnserve-inference (loopback, temporary file
store), trains digits with the Python package (hidden 128,64, 10 epochs),
then runs h2load --h1 (keep-alive; --clients connections, at most the
server's 8 HTTP workers) against both endpoints. Prints one JSON object.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc):
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("port %d never opened" % port)
            time.sleep(0.02)


def h2load(url, seconds, clients, body=None):
    cmd = ["h2load", "--h1", "-c", str(clients), "-t", "1",
           "-D", str(seconds), "--warm-up-time=1"]
    if body:
        cmd += ["-d", body, "-H", "Content-Type: application/json"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    rps = float(re.search(r"finished in .*?, ([\d.]+) req/s", out).group(1))
    ok = re.search(r"status codes: (\d+) 2xx", out)
    return rps, int(ok.group(1)) if ok else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--seconds", type=int, default=3)
    p.add_argument("--clients", type=int, default=4)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="bnserve-rest-bench-")
    os.environ["XDG_CACHE_HOME"] = os.path.join(work, "cache")
    store = os.path.join(work, "store")
    tport, gport, hport = free_port(), free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen(
            [os.path.join(args.build, "server/trainer/bnserve-trainer"),
             "--host=127.0.0.1", "--port=%d" % tport, "--store=" + store],
            stderr=subprocess.DEVNULL))
        inf = subprocess.Popen(
            [os.path.join(args.build, "server/inference/bnserve-inference"),
             "--host=127.0.0.1", "--port=%d" % gport,
             "--http_port=%d" % hport, "--metrics_port=0",
             "--store=" + store, "--log_level=warning"],
            stderr=subprocess.DEVNULL)
        procs.append(inf)
        wait_port(tport, procs[0])
        wait_port(hport, inf)
        import bnserve
        import numpy as np
        d = np.loadtxt(os.path.join(ROOT, "data/digits/train.csv"),
                       delimiter=",", skiprows=1, dtype=np.float32)
        t = np.loadtxt(os.path.join(ROOT, "data/digits/test.csv"),
                       delimiter=",", skiprows=1, dtype=np.float32)
        v = bnserve.TrainerClient("127.0.0.1:%d" % tport).train(
            "digits", d[:, :64], d[:, 64].astype(int), hidden=(128, 64),
            epochs=10).version
        bnserve.InferenceClient("127.0.0.1:%d" % gport).wait_ready(
            "digits", v)
        body = os.path.join(work, "infer.json")
        with open(body, "w") as f:
            json.dump({"inputs": [{"name": "input", "datatype": "FP32",
                                   "shape": [1, 64],
                                   "data": [float(x) for x in t[0, :64]]}]},
                      f)
        base = "http://127.0.0.1:%d" % hport
        runs = {"noop": [], "infer": []}
        for rep in range(args.reps):
            order = ["noop", "infer"] if rep % 2 == 0 else ["infer", "noop"]
            for name in order:
                if name == "noop":
                    rps, ok = h2load(base + "/v2/health/live", args.seconds,
                                     args.clients)
                else:
                    rps, ok = h2load(base + "/v2/models/digits/infer",
                                     args.seconds, args.clients, body)
                if ok == 0:
                    raise RuntimeError(name + ": no 2xx answers")
                runs[name].append(rps)
        ratios = [i / n for i, n in zip(runs["infer"], runs["noop"])]
        print(json.dumps({
            "noop_rps": runs["noop"], "infer_rps": runs["infer"],
            "median_noop_rps": statistics.median(runs["noop"]),
            "median_infer_rps": statistics.median(runs["infer"]),
            "ratio_median": statistics.median(ratios),
            "ratio_range": [min(ratios), max(ratios)],
            "clients": args.clients, "seconds": args.seconds,
            "reps": args.reps}, indent=1))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
