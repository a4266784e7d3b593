#!/usr/bin/python3
"""Fault: the trainer is killed (SIGKILL, and now and then SIGTERM) at random
moments of a long `bnctl train` job and restarted at once, again and again;
the job resumes from its checkpoint each time and its final model equals an
uninterrupted run's bit for bit.

1. Baseline: one uninterrupted `bnctl train` (model `straight`).
2. The same command, same data, seed and options (model `durable`), while
   the trainer is killed KILLS times at random moments (0-0.4 s after the
   job trains again on the restarted trainer) and restarted; every 4th stop is a SIGTERM (a rolling restart), the rest
   SIGKILL. `bnctl train` must exit 0 by itself.
3. The final versions of both models are read from the store (file: the
   envelope file; Redis: redis-cli) without the product's code and their
   layers (parameters and running statistics) compared byte for byte, with
   the provenance's step and example count.
4. `bnctl delete-job` removes the job's checkpoints from the store.

Usage: durable_resume_test.py BUILD_DIR [file|redis]
  env RESUME_KILLS (16: 12 SIGKILL + 4 SIGTERM), RESUME_SEED (time)
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import log, wait_until  # noqa: E402


def train_args(env, taddr, model, data, epochs):
    return [env.bnctl_bin, "train", "--trainer", taddr, "--model", model,
            "--data", data, "--hidden", "32,16", "--epochs", str(epochs),
            "--batch-size", "16", "--seed", "7", "--optimizer", "adam",
            "--checkpoint-every", "20", "--resume-timeout", "60", "--json"]


class Store:
    """Reads snapshots and checkpoints without the product's code."""

    def __init__(self, env, kind, rport):
        self.env, self.kind, self.rport = env, kind, rport
        self.root = os.path.join(env.work, "store")
        self.uri = (self.root if kind == "file"
                    else f"redis://127.0.0.1:{rport}/0")

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.rport), "--raw",
                               *args], capture_output=True,
                              check=True).stdout

    def snapshot(self, model, version):
        if self.kind == "file":
            with open(os.path.join(self.root, model, str(version),
                                   "snapshot.binpb"), "rb") as f:
                data = f.read()
        else:
            data = self.cli("GET", f"bnserve:{{{model}}}:v:{version}")[:-1]
        assert faultlib.verify_envelope(data, model, version) is None
        envelope = self.env.spb.StoredSnapshot()
        envelope.ParseFromString(data)
        snap = self.env.pb.Snapshot()
        snap.ParseFromString(envelope.snapshot)
        return snap

    def checkpoints(self, model):
        if self.kind == "file":
            d = os.path.join(self.root, ".checkpoints", model)
            if not os.path.isdir(d):
                return []
            return [f"{j}/{n}" for j in os.listdir(d)
                    for n in os.listdir(os.path.join(d, j))]
        return self.cli("KEYS", f"bnserve:{{{model}}}:ckpt:*").split()


def main():
    kind = sys.argv[2] if len(sys.argv) > 2 else "file"
    kills = int(os.environ.get("RESUME_KILLS", "16"))
    seed = int(os.environ.get("RESUME_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    log(f"store={kind} kills={kills} seed={seed}")
    with faultlib.Env(sys.argv[1], f"resume-{kind}") as env:
        rport = faultlib.free_port()
        store = Store(env, kind, rport)
        if kind == "redis":
            env.start_redis(rport)
        tport = faultlib.free_port()
        taddr = f"127.0.0.1:{tport}"
        data = os.path.join(faultlib.REPO, "data/digits/train.csv")
        env.start_trainer(tport, store.uri)

        # Each stop lets the job train up to 0.4 s after it resumed.
        epochs = faultlib.epochs_for_seconds(
            lambda model, n: train_args(env, taddr, model, data, n),
            0.8 * kills, least=600)
        t0 = time.monotonic()
        straight = subprocess.run(train_args(env, taddr, "straight", data,
                                             epochs),
                                  capture_output=True, text=True,
                                  timeout=120, cwd=faultlib.REPO)
        assert straight.returncode == 0, straight.stderr
        base = json.loads(straight.stdout)
        log(f"uninterrupted run: {time.monotonic() - t0:.1f} s, {base}")

        client = subprocess.Popen(
            train_args(env, taddr, "durable", data, epochs),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=faultlib.REPO)
        done = sigterms = 0
        while done < kills and client.poll() is None:
            # Each stop hits a stream that trains on this trainer instance.
            stub = env.trainer_stub(taddr)

            def training():
                if client.poll() is not None:
                    return True
                jobs = stub.ListJobs(env.tpb.ListJobsRequest(model="durable"),
                                     timeout=5).jobs
                return any(j.state == env.tpb.Job.TRAINING for j in jobs)
            waited = time.monotonic()
            wait_until(training, "the job training again", 90)
            waited = time.monotonic() - waited
            time.sleep(rng.uniform(0.0, 0.4))
            if client.poll() is not None:
                break
            sig = signal.SIGTERM if done % 4 == 3 else signal.SIGKILL
            env.kill("trainer", sig)
            log(f"stop {done + 1}: {sig.name} ({waited:.2f} s until the "
                "job trained again after the previous one)")
            sigterms += sig == signal.SIGTERM
            done += 1
            env.start_trainer(tport, store.uri)
        out, err = client.communicate(timeout=180)
        assert client.returncode == 0, ("bnctl train failed", err[-2000:])
        assert done >= kills, (
            f"the job finished after only {done} of {kills} stops; "
            "make it longer")
        resumed = json.loads(out)
        resumes = err.count("resumes at step")
        log(f"{done} stops ({sigterms} SIGTERM), {resumes} resumes, "
            f"result {resumed}")

        a = store.snapshot("straight", base["version"])
        b = store.snapshot("durable", resumed["version"])
        assert len(a.layers) == len(b.layers) > 0
        for i, (x, y) in enumerate(zip(a.layers, b.layers)):
            assert x.SerializeToString() == y.SerializeToString(), (
                f"layer {i} differs from the uninterrupted run's")
        assert (a.training.step, a.training.examples_seen) == (
            b.training.step, b.training.examples_seen), (a.training,
                                                          b.training)
        log(f"final model bit-identical to the uninterrupted run "
            f"({len(a.layers)} layers, step {b.training.step})")
        assert resumes >= done, (resumes, done, err[-2000:])

        assert store.checkpoints("durable"), "no checkpoints while job lives"
        env.bnctl("delete-job", "--trainer", taddr, "--job", resumed["job_id"])
        wait_until(lambda: not store.checkpoints("durable"),
                   "the deleted job's checkpoints to go", 10)
        log("PASS")


if __name__ == "__main__":
    main()
