#!/usr/bin/python3
"""Fault: the file store's disk fills up while a durable job checkpoints.

The store lives on a small tmpfs mounted for the test (`mount -t tmpfs -o
size=4m`; without root or CAP_SYS_ADMIN the test exits 77, skipped, and says
why; with CI=true it fails instead: tests/common/skip.py).

1. Reference: an uninterrupted `bnctl train` on a second trainer whose store
   is an ordinary directory (model `straight`).
2. The same command (model `durable`) on the tmpfs trainer, which
   checkpoints every 20 steps (`--checkpoint-every 20`).
3. While it trains, a ballast file fills the tmpfs to the last byte. Checks:
   the job's `checkpoint_error` says RESOURCE_EXHAUSTED and "No space left
   on device" (a clear error), the trainer logs it, and training goes on
   (its step keeps rising) with the previous checkpoint kept; no temporary
   file is left behind in the checkpoint directory.
4. The ballast is removed: the next checkpoint is written and the error
   clears. Then the trainer is SIGKILLed and restarted: the job resumes
   from that checkpoint, `bnctl train` exits 0, and the final model's layers
   and provenance equal the reference run's byte for byte (training was not
   corrupted by the failed writes).

Usage: checkpoint_disk_full_test.py BUILD_DIR
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "common"))
import faultlib  # noqa: E402
import skip  # noqa: E402
from faultlib import log, wait_until  # noqa: E402


def train_args(env, taddr, model, data, epochs):
    return [env.bnctl_bin, "train", "--trainer", taddr, "--model", model,
            "--data", data, "--hidden", "64,32", "--epochs", str(epochs),
            "--batch-size", "16", "--seed", "5", "--optimizer", "adam",
            "--checkpoint-every", "20", "--resume-timeout", "60", "--json"]


def fill(path):
    """Writes `path` until the disk is full; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (65536, 4096, 1):  # to the last byte
            block = b"\0" * size
            while True:
                try:
                    n = os.write(fd, block)
                except OSError:
                    break
                written += n
                if n < size:
                    break
    finally:
        os.close(fd)
    return written


def snapshot(env, root, model, version):
    with open(os.path.join(root, model, str(version), "snapshot.binpb"),
              "rb") as f:
        data = f.read()
    assert faultlib.verify_envelope(data, model, version) is None
    envelope = env.spb.StoredSnapshot()
    envelope.ParseFromString(data)
    snap = env.pb.Snapshot()
    snap.ParseFromString(envelope.snapshot)
    return snap


def main():
    with faultlib.Env(sys.argv[1], "ckpt-disk") as env:
        store = os.path.join(env.work, "store")
        os.makedirs(store)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs",
                            store], capture_output=True, text=True)
        if r.returncode != 0:
            skip.skip_script(f"cannot mount a tmpfs here ({r.stderr.strip()}); "
                             "run as root (or with CAP_SYS_ADMIN)")
        env.mounts.append(store)
        ref_store = os.path.join(env.work, "ref-store")
        data = os.path.join(faultlib.REPO, "data/digits/train.csv")

        rport, tport = faultlib.free_port(), faultlib.free_port()
        raddr, taddr = f"127.0.0.1:{rport}", f"127.0.0.1:{tport}"
        env.start_trainer(rport, ref_store, name="reference")
        # The job must outlast the steps below (fill the disk, see training
        # go on, free it, a checkpoint, the kill: about 3 s): sized in
        # seconds, since a fixed epoch count lets a fast machine finish first.
        epochs = faultlib.epochs_for_seconds(
            lambda model, n: train_args(env, raddr, model, data, n), 15.0,
            least=150)
        straight = subprocess.run(train_args(env, raddr, "straight", data,
                                             epochs),
                                  capture_output=True, text=True,
                                  timeout=120, cwd=faultlib.REPO)
        assert straight.returncode == 0, straight.stderr
        base = json.loads(straight.stdout)
        log(f"reference run: {base}")

        env.start_trainer(tport, store)
        stub = env.trainer_stub(taddr)
        client = subprocess.Popen(
            train_args(env, taddr, "durable", data, epochs),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=faultlib.REPO)

        def job():
            jobs = stub.ListJobs(env.tpb.ListJobsRequest(model="durable"),
                                 timeout=5).jobs
            return jobs[0] if jobs else None
        wait_until(lambda: (job() is not None and job().steps > 100),
                   "the job training", 60)
        ballast = os.path.join(store, "ballast")
        log(f"ballast filled the tmpfs: {fill(ballast)} bytes")

        wait_until(lambda: "RESOURCE_EXHAUSTED" in job().checkpoint_error,
                   "the checkpoint error to be reported", 30)
        j = job()
        log(f"job at step {j.steps}, checkpoint at {j.checkpoint_step}: "
            f"{j.checkpoint_error}")
        assert "No space left on device" in j.checkpoint_error, j
        stuck = j.checkpoint_step
        steps = j.steps
        wait_until(lambda: job().steps > steps + 50,
                   "training to go on with the disk full", 30)
        assert job().checkpoint_step == stuck, "a checkpoint was written?"
        assert client.poll() is None, "bnctl train ended on the full disk"
        ckpt_dir = os.path.join(store, ".checkpoints", "durable")

        def partial():
            return {f for _, _, files in os.walk(ckpt_dir) for f in files
                    if not f.endswith(".ckpt")}
        # Training goes on, so a checkpoint attempt may be writing its
        # temporary file right now; one left behind is still there a second
        # later (each attempt's name is unique).
        first = partial()
        time.sleep(1.0)
        leftovers = first & partial()
        assert not leftovers, f"partial checkpoint files left: {leftovers}"
        with open(env.logs["trainer"]) as f:
            assert "No space left on device" in f.read(), "not logged"

        os.remove(ballast)
        wait_until(lambda: job().checkpoint_error == "" and
                   job().checkpoint_step > stuck,
                   "a checkpoint once space is free again", 30)
        log(f"space freed: checkpoint at step {job().checkpoint_step}")
        time.sleep(0.2)
        env.kill("trainer", signal.SIGKILL)
        env.start_trainer(tport, store)
        out, err = client.communicate(timeout=180)
        assert client.returncode == 0, ("bnctl train failed", err[-2000:])
        resumed = json.loads(out)
        assert "resumes at step" in err, err[-2000:]

        a = snapshot(env, ref_store, "straight", base["version"])
        b = snapshot(env, store, "durable", resumed["version"])
        assert len(a.layers) == len(b.layers) > 0
        for i, (x, y) in enumerate(zip(a.layers, b.layers)):
            assert x.SerializeToString() == y.SerializeToString(), (
                f"layer {i} differs from the uninterrupted run's")
        assert (a.training.step, a.training.examples_seen) == (
            b.training.step, b.training.examples_seen), (a.training,
                                                          b.training)
        log(f"final model bit-identical to the reference "
            f"(step {b.training.step})")
        log("PASS")


if __name__ == "__main__":
    main()
