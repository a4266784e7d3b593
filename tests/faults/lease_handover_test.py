#!/usr/bin/python3
"""Fault: two trainer replicas share one redis-server; `bnctl train` talks to
them through one gRPC target listing both (as a Kubernetes Service would
spread it); the replica that owns the job (holds its lease) is SIGKILLed in
the middle of training, the job moves to the other replica once the lease
expires, and the final model equals an uninterrupted run's bit for bit.

1. Redis, replica `a` and replica `b` (--job_lease_ms LEASE_MS), both on the
   same redis:// store.
2. Baseline: one uninterrupted `bnctl train` against `a` (model `straight`).
3. The same command (model `durable`) against `ipv4:A,B`. HANDOVERS times:
   wait until the job trains, read its owner from the *other* replica's
   ListJobs (the shared registry), SIGKILL the owner at a random moment,
   check that the other replica reports the job and then trains it (its
   owner changes), and restart the killed replica (same port and id).
4. `bnctl train` exits 0 by itself; the final versions of both models,
   read from Redis with redis-cli, are compared layer by layer (parameters
   and running statistics) with the provenance's step and example count.
5. Both replicas list the finished job; deleting it on `b` removes its
   checkpoints and registry entry.

Usage: lease_handover_test.py BUILD_DIR
  env HANDOVERS (4), LEASE_MS (1500), HANDOVER_SEED (time)
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import log, wait_until  # noqa: E402


def train_args(env, target, model, data, epochs):
    return [env.bnctl_bin, "train", "--trainer", target, "--model", model,
            "--data", data, "--hidden", "32,16", "--epochs", str(epochs),
            "--batch-size", "16", "--seed", "11", "--optimizer", "adam",
            "--checkpoint-every", "25", "--resume-timeout", "90", "--json"]


def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), "--raw", *args],
                          capture_output=True, check=True).stdout


def snapshot(env, rport, model, version):
    data = redis_cli(rport, "GET", f"bnserve:{{{model}}}:v:{version}")[:-1]
    assert faultlib.verify_envelope(data, model, version) is None
    envelope = env.spb.StoredSnapshot()
    envelope.ParseFromString(data)
    snap = env.pb.Snapshot()
    snap.ParseFromString(envelope.snapshot)
    return snap


def main():
    handovers = int(os.environ.get("HANDOVERS", "4"))
    lease_ms = int(os.environ.get("LEASE_MS", "1500"))
    seed = int(os.environ.get("HANDOVER_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    log(f"handovers={handovers} lease={lease_ms} ms seed={seed}")
    with faultlib.Env(sys.argv[1], "lease-handover") as env:
        rport = faultlib.free_port()
        env.start_redis(rport)
        uri = f"redis://127.0.0.1:{rport}/0"
        ports = {"a": faultlib.free_port(), "b": faultlib.free_port()}
        mports = {"a": faultlib.free_port(), "b": faultlib.free_port()}

        def start(name):
            env.start_trainer(ports[name], uri, name=name,
                              extra=("--replica_id", name,
                                     "--job_lease_ms", str(lease_ms),
                                     "--metrics_port", str(mports[name])))

        for name in ports:
            start(name)
        addr = {n: f"127.0.0.1:{p}" for n, p in ports.items()}
        stubs = {n: env.trainer_stub(a) for n, a in addr.items()}
        data = os.path.join(faultlib.REPO, "data/digits/train.csv")

        # Between two kills the job trains while the killed replica restarts
        # and the test waits up to 0.5 s: about 2.5 s of training a handover.
        epochs = faultlib.epochs_for_seconds(
            lambda model, n: train_args(env, addr["a"], model, data, n),
            2.5 * handovers, least=150)
        t0 = time.monotonic()
        straight = subprocess.run(train_args(env, addr["a"], "straight", data,
                                             epochs),
                                  capture_output=True, text=True,
                                  timeout=120, cwd=faultlib.REPO)
        assert straight.returncode == 0, straight.stderr
        base = json.loads(straight.stdout)
        log(f"uninterrupted run: {time.monotonic() - t0:.1f} s, {base}")

        target = f"ipv4:{addr['a']},{addr['b']}"
        client = subprocess.Popen(
            train_args(env, target, "durable", data, epochs),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=faultlib.REPO)

        def job_on(name):
            """The `durable` job as replica `name` reports it (or None)."""
            try:
                jobs = stubs[name].ListJobs(
                    env.tpb.ListJobsRequest(model="durable"), timeout=5).jobs
            except Exception:  # noqa: BLE001 (the replica is restarting)
                return None
            return jobs[0] if jobs else None

        done = 0
        while done < handovers and client.poll() is None:
            def owned():
                if client.poll() is not None:
                    return True
                job = job_on("a") or job_on("b")
                return (job is not None and job.state == env.tpb.Job.TRAINING
                        and job.owner in ports)
            wait_until(owned, "the job training on a replica", 90)
            if client.poll() is not None:
                break
            time.sleep(rng.uniform(0.0, 0.5))
            job = job_on("a") or job_on("b")
            owner = job.owner if job is not None else ""
            if owner not in ports:
                continue
            other = "b" if owner == "a" else "a"
            # The other replica sees the job and who owns it.
            seen = job_on(other)
            assert seen is not None and seen.job_id == job.job_id, seen
            env.kill(owner, signal.SIGKILL)
            killed_at = time.monotonic()
            log(f"killed {owner} (job at step {seen.steps} per {other})")

            def moved():
                if client.poll() is not None:
                    return True
                j = job_on(other)
                return (j is not None and j.owner == other
                        and j.state == env.tpb.Job.TRAINING)
            wait_until(moved, f"the job training on {other}",
                       lease_ms / 1000 + 30)
            log(f"job moved to {other} after "
                f"{time.monotonic() - killed_at:.2f} s")
            done += 1
            start(owner)
        out, err = client.communicate(timeout=180)
        assert client.returncode == 0, ("bnctl train failed", err[-2000:])
        assert done >= handovers, (
            f"the job finished after only {done} of {handovers} handovers; "
            "make it longer")
        resumed = json.loads(out)
        log(f"{done} handovers, {err.count('resumes at step')} resumes, "
            f"result {resumed}")

        a = snapshot(env, rport, "straight", base["version"])
        b = snapshot(env, rport, "durable", resumed["version"])
        assert len(a.layers) == len(b.layers) > 0
        for i, (x, y) in enumerate(zip(a.layers, b.layers)):
            assert x.SerializeToString() == y.SerializeToString(), (
                f"layer {i} differs from the uninterrupted run's")
        assert (a.training.step, a.training.examples_seen) == (
            b.training.step, b.training.examples_seen), (a.training,
                                                          b.training)
        log(f"final model bit-identical to the uninterrupted run "
            f"({len(a.layers)} layers, step {b.training.step})")

        # Trainer metrics: the takeovers and the steps are counted.
        totals = {}
        for name, port in mports.items():
            text = urllib.request.urlopen(
                f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            for line in text.splitlines():
                if line.startswith("bnserve_trainer_") and " " in line:
                    key, value = line.rsplit(" ", 1)
                    totals[key] = totals.get(key, 0) + float(value)
        log("metrics (both replicas): " + ", ".join(
            f"{k}={totals.get(k, 0):g}" for k in (
                "bnserve_trainer_steps_total", "bnserve_trainer_resumes_total",
                "bnserve_trainer_checkpoints_total",
                "bnserve_trainer_publish_duration_seconds_count")))
        assert totals.get("bnserve_trainer_resumes_total", 0) >= 1, totals
        assert totals.get("bnserve_trainer_steps_total", 0) > 0, totals
        assert totals.get(
            "bnserve_trainer_checkpoint_duration_seconds_count", 0) > 0, totals

        for name in ports:
            job = job_on(name)
            assert job is not None and job.job_id == resumed["job_id"], name
        env.bnctl("delete-job", "--trainer", addr["b"], "--job",
                  resumed["job_id"])
        wait_until(lambda: not redis_cli(rport, "KEYS",
                                         "bnserve:{durable}:*ckpt*").split(),
                   "the deleted job's checkpoints to go", 10)
        assert job_on("a") is None, "the deleted job is still registered"
        log("PASS")


if __name__ == "__main__":
    main()
