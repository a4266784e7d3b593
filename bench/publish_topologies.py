#!/usr/bin/python3
"""Publish latency and publish -> served latency on the three Redis forms,
side by side: one redis-server, a master with 2 replicas under 3 Sentinels
(the publisher waits for both replicas: --redis_min_replicas=2), and a
3-master Redis Cluster. Every Redis node runs with `--appendonly yes
--appendfsync always` (the durable configuration). For each form: publish
the digits model once, start 2 bnserve-inference replicas on the store, then
run bench-publish-latency (ITERATIONS publications, default 200) and print
its JSON line. Loopback, free ports, everything in a temp directory that is
removed at the end.

Usage: bench/publish_topologies.py BUILD_DIR   (built with -DBNSERVE_BENCH=ON)
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "faults"))
import faultlib  # noqa: E402
from faultlib import wait_until  # noqa: E402
from redis_failover_test import SentinelSet, cli  # noqa: E402


def start_node(env, name, port, extra=()):
    data = os.path.join(env.work, name)
    os.makedirs(data, exist_ok=True)
    proc = env.start(name, [
        "redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir",
        data, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
        "--daemonize", "no", *extra])
    wait_until(lambda: proc.poll() is None and cli(port, "ping") == "PONG",
               f"{name} PONG")


def single(env):
    port = faultlib.free_port()
    start_node(env, "single", port)
    return f"redis://127.0.0.1:{port}/0", 0


def sentinel(env):
    return SentinelSet(env).uri(), 2


def cluster(env):
    ports = [faultlib.free_port() for _ in range(3)]
    for i, port in enumerate(ports):
        start_node(env, f"cluster{i}", port, (
            "--cluster-enabled", "yes", "--cluster-config-file",
            os.path.join(env.work, f"nodes{i}.conf"), "--cluster-port",
            str(faultlib.free_port())))
    subprocess.run(["redis-cli", "--cluster", "create",
                    *(f"127.0.0.1:{p}" for p in ports), "--cluster-yes"],
                   check=True, capture_output=True, timeout=60)
    wait_until(lambda: all("cluster_state:ok" in cli(p, "cluster", "info")
                           for p in ports), "cluster_state:ok")
    return "redis-cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports), 0


def main():
    build = sys.argv[1]
    iterations = os.environ.get("ITERATIONS", "200")
    bench = os.path.join(os.path.abspath(build), "bench/bench-publish-latency")
    for name, setup in (("redis", single), ("redis-sentinel", sentinel),
                        ("redis-cluster", cluster)):
        with faultlib.Env(build, f"bench-{name}") as env:
            store, replicas = setup(env)
            wait_flag = f"--redis_min_replicas={replicas}"
            subprocess.run([bench, f"--store={store}", "--iterations=1",
                            "--targets=", wait_flag], check=True,
                           capture_output=True)
            ports = [faultlib.free_port(), faultlib.free_port()]
            for i, port in enumerate(ports):
                proc = env.start_inference(port, store, name=f"inference{i}",
                                           extra=("--models=digits",))
                env.wait_health(f"127.0.0.1:{port}", f"inference{i}", proc)
            out = subprocess.run(
                [bench, f"--store={store}", f"--iterations={iterations}",
                 "--targets=" + ",".join(f"127.0.0.1:{p}" for p in ports),
                 wait_flag], check=True, capture_output=True, text=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["form"] = name
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
