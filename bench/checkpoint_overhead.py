#!/usr/bin/python3
"""Durable training jobs: what checkpoints cost, measured side by side.

1. Throughput: the same `bnctl train` (digits, 64,32 hidden, Adam, batch
   32) against a trainer with checkpoints off (`--checkpoints=false`) and one
   at the default interval (5000 steps) and one every 1000, alternating ROUNDS
   times on one file store, each run timed from start to exit; reports the
   median examples/s of each and the overhead.
2. Restart to first resumed step: a job with a checkpoint in the store, the
   trainer SIGKILLed and started again; the time from spawning the new
   process to the first Train step of the resumed job answered (GetJob, then
   one step from the job's step + 1), median of ROUNDS.

3. The cost of a checkpoint before every acknowledged step
   (`--checkpoint_every 1`, also a job option: `bnctl train
   --checkpoint-every 1`) against checkpoints off, on runs of EPOCHS / 50.
Every ratio is per round (the two runs of one round side by side), median
over the rounds.

Usage: checkpoint_overhead.py BUILD_DIR   env ROUNDS (5), EPOCHS (300)
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "../tests/faults"))
import faultlib  # noqa: E402
from faultlib import log  # noqa: E402


def run_train(env, taddr, model, data, epochs):
    t0 = time.monotonic()
    r = subprocess.run(
        [env.bnctl_bin, "train", "--trainer", taddr, "--model", model,
         "--data", data, "--hidden", "64,32", "--epochs", str(epochs),
         "--batch-size", "32", "--optimizer", "adam", "--seed", "3",
         "--json"], capture_output=True, text=True, timeout=600,
        cwd=faultlib.REPO)
    seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["examples"] / seconds


def throughput(env, data, rounds, epochs, configs):
    """Alternates the trainer configurations `configs` (name -> flags) for
    `rounds` rounds; reports each one's examples/s and its median ratio to
    the first configuration's run of the same round."""
    port = faultlib.free_port()
    taddr = f"127.0.0.1:{port}"
    store = os.path.join(env.work, "store")
    rates = {name: [] for name in configs}
    for r in range(rounds):
        for name, flags in configs.items():
            env.start_trainer(port, store, extra=flags)
            rates[name].append(run_train(env, taddr, f"m{r}", data, epochs))
            env.kill("trainer", signal.SIGTERM)
    anchor = next(iter(configs))
    for name, values in rates.items():
        ratios = [v / a for v, a in zip(values, rates[anchor])]
        log(f"examples/s, {name} ({epochs} epochs): "
            f"{[round(x) for x in values]}, median "
            f"{statistics.median(values):.0f}; ratio to {anchor}: "
            f"{[round(x, 3) for x in ratios]}, median "
            f"{statistics.median(ratios):.3f}")


def restart_to_step(env, data, rounds):
    port = faultlib.free_port()
    taddr = f"127.0.0.1:{port}"
    store = os.path.join(env.work, "store-restart")
    env.start_trainer(port, store)
    stub = env.trainer_stub(taddr)
    job = stub.CreateJob(env.tpb.CreateJobRequest(
        model="r", seed=1, spec=env.pb.NetworkSpec(
            input_features=64, output_dim=10,
            task=env.pb.TASK_CLASSIFICATION, hidden=[64, 32])), timeout=10)
    xs, ys = faultlib.load_csv(data)
    faultlib.train(stub, job.job_id, xs, ys, batches=150)
    times = []
    for _ in range(rounds):
        env.kill("trainer", signal.SIGKILL)
        t0 = time.monotonic()
        env.start(
            "trainer", [env.trainer_bin, "--host", "127.0.0.1", "--port",
                        str(port), "--store", store])
        # Our own channel with a short reconnect backoff: gRPC's default
        # first retry comes 1 s after a refused connect, which would measure
        # the client, not the trainer.
        from bnserve.v1 import trainer_pb2_grpc as tgrpc
        stub = tgrpc.TrainerStub(env.grpc.insecure_channel(taddr, options=[
            ("grpc.initial_reconnect_backoff_ms", 10),
            ("grpc.min_reconnect_backoff_ms", 10),
            ("grpc.max_reconnect_backoff_ms", 20)]))
        while True:
            try:
                got = stub.GetJob(env.tpb.GetJobRequest(job_id=job.job_id),
                                  timeout=1, wait_for_ready=True)
                break
            except env.grpc.RpcError:
                time.sleep(0.005)
        batch = env.tpb.Minibatch(
            rows=2, cols=64, features=xs[0] + xs[1], labels=ys[:2])
        reply = list(stub.Train(iter([env.tpb.TrainRequest(
            job_id=job.job_id, step=got.steps + 1, batch=batch)]),
            timeout=10))
        times.append(time.monotonic() - t0)
        assert reply and reply[0].step == got.steps + 1, reply
    log(f"trainer spawn to first resumed step answered (s): "
        f"{[round(t, 3) for t in times]}, median "
        f"{statistics.median(times):.3f}")


def main():
    rounds = int(os.environ.get("ROUNDS", "5"))
    epochs = int(os.environ.get("EPOCHS", "300"))
    with faultlib.Env(sys.argv[1], "ckpt-bench") as env:
        data = os.path.join(faultlib.REPO, "data/digits/train.csv")
        throughput(env, data, rounds, epochs, {
            "off": ["--checkpoints=false"],
            "every 1000": ["--checkpoint_every", "1000"],
            "default (every 5000)": []})
        # A checkpoint before every acknowledged step (nothing acknowledged
        # is ever lost): the job option checkpoint_every = 1, here as the
        # trainer's default; shorter runs, it is much slower.
        throughput(env, data, rounds, max(1, epochs // 50), {
            "off": ["--checkpoints=false"],
            "every step": ["--checkpoint_every", "1"]})
        restart_to_step(env, data, rounds)


if __name__ == "__main__":
    main()
