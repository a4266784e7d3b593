#!/usr/bin/python3
"""KServe v2 REST infer of one digits example against a no-op endpoint on
the same HTTP server (bench-rest-noop-server: server::HttpServer answering
every request with a constant), both sent the same POST body by h2load over
HTTP/1.1, alternating A/B runs, medians.

  BUILD_DIR=build-rest TARGETS="bnserve-inference bnserve-trainer \
    bench-rest-noop-server bench-rest-handler" bash scripts/build.sh \
    -DBNSERVE_BENCH=ON -DBNSERVE_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Release
  /usr/bin/python3 bench/rest_ab.py --build build-rest \
    --noop build-rest/bench/bench-rest-noop-server [--reps 7]
    [--requests 20000] [--clients 4]

Starts a bnserve-trainer and a bnserve-inference (loopback, temporary file
store) from --build, trains digits with the Python package (hidden 128,64,
10 epochs), starts the no-op server, then runs h2load --h1 (keep-alive;
--clients connections, at most the servers' 8 HTTP workers) against both. Prints one JSON object:
the QPS of each, their ratio, and the server's CPU time per request (from
/proc, less sensitive to a loaded machine than QPS).
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
sys.path.insert(0, os.path.join(ROOT, "tests", "common"))
from ports import free_port  # noqa: E402  the tests' reserved ports
sys.path.insert(0, os.path.join(ROOT, "client", "python"))


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


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def h2load(url, requests, clients, body=None):
    # A request count, not -D: h2load 1.52's timed mode stalls on uploads.
    cmd = ["h2load", "--h1", "-c", str(clients), "-t", "1",
           "-n", str(requests)]
    if body:
        cmd += ["-d", body, "-H", "Content-Type: application/json"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True,
                         timeout=300).stdout
    rps = float(re.search(r"finished in .*?, ([\d.]+) req/s", out).group(1))
    ok = re.search(r"status codes: (\d+) 2xx", out)
    return rps, int(ok.group(1)) if ok else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--noop", default=os.path.join(
        ROOT, "build-restbench/bench/bench-rest-noop-server"))
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="bnserve-rest-bench-")
    os.environ["XDG_CACHE_HOME"] = os.path.join(work, "cache")
    store = os.path.join(work, "store")
    tport, gport, hport = free_port(), free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen(
            [os.path.join(args.build, "server/trainer/bnserve-trainer"),
             "--host=127.0.0.1", "--port=%d" % tport, "--http_port=0",
             "--store=" + store],
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
        nport = free_port()
        noop = subprocess.Popen([args.noop, "--port=%d" % nport],
                                stdout=subprocess.DEVNULL)
        procs.append(noop)
        wait_port(nport, noop)
        base = "http://127.0.0.1:%d" % hport
        pids = {"noop": noop.pid, "infer": inf.pid}
        runs = {"noop": [], "infer": []}
        cpu = {"noop": [], "infer": []}
        for rep in range(args.reps):
            order = ["noop", "infer"] if rep % 2 == 0 else ["infer", "noop"]
            for name in order:
                c0 = cpu_seconds(pids[name])
                if name == "noop":
                    rps, ok = h2load("http://127.0.0.1:%d/v2/models/digits/"
                                     "infer" % nport, args.requests,
                                     args.clients, body)
                else:
                    rps, ok = h2load(base + "/v2/models/digits/infer",
                                     args.requests, args.clients, body)
                if ok == 0:
                    raise RuntimeError(name + ": no 2xx answers")
                runs[name].append(rps)
                cpu[name].append((cpu_seconds(pids[name]) - c0) * 1e6 / ok)
        ratios = [i / n for i, n in zip(runs["infer"], runs["noop"])]
        print(json.dumps({
            "noop_rps": runs["noop"], "infer_rps": runs["infer"],
            "median_noop_rps": statistics.median(runs["noop"]),
            "median_infer_rps": statistics.median(runs["infer"]),
            "ratio_median": statistics.median(ratios),
            "ratio_range": [min(ratios), max(ratios)],
            # The server's own CPU per request (both threads and all).
            "server_cpu_us_per_req": {k: statistics.median(v)
                                      for k, v in cpu.items()},
            "cpu_ratio_noop_over_infer": statistics.median(cpu["noop"]) /
            statistics.median(cpu["infer"]),
            "clients": args.clients, "requests": args.requests,
            "reps": args.reps}, indent=1))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
