#!/usr/bin/python3
"""Hostile requests against real server processes (issue 14).

Each case starts its own servers on loopback ports in a temporary directory
(faultlib.Env), sends what the adversarial pass sent, checks that the server
answers with a clear error instead of crashing or wedging, and that it then
still works and stops on SIGTERM. Nothing here allocates the memory the
hostile requests ask for: the servers must refuse before allocating, and
where the test needs an allocation to fail it caps the server's address
space (RLIMIT_AS) instead.

Usage: hostile_test.py BUILD_DIR CASE
  train_oversized   one 4M-row x 1-feature minibatch into a 4096-wide layer
                    (64 GiB of activations): refused by --max_step_mb, and,
                    with the bound lifted and the address space capped,
                    the std::bad_alloc is RESOURCE_EXHAUSTED too; either way
                    the job is released and SIGTERM stops the trainer
  infer_amplified   65,536-row ModelInfer and PredictBatch calls against a
                    1 -> 2,048-class model (a ~1 GiB answer): refused from
                    the declared shape before any work; with the bounds
                    lifted under a 1 GiB address space the bad_alloc is
                    RESOURCE_EXHAUSTED with a message, never UNKNOWN
  unauthenticated_surface  with a token: health answers without it,
                    reflection too unless --reflection=false, nothing else
  store_damaged     a directory and a FIFO in place of snapshot files: the
                    older versions serve, nothing blocks, bnctl export and
                    CreateJob(from_version) work or fail cleanly, SIGTERM
                    stops both servers
"""
import os
import resource
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import log  # noqa: E402


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def stop_within(env, name, seconds):
    """SIGTERM `name` and require it to exit 0 within `seconds`."""
    proc = env.procs[name]
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=seconds)
    except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
        raise AssertionError(f"{name} did not stop within {seconds}s of "
                             "SIGTERM")
    log(f"{name} stopped {time.monotonic() - t0:.2f}s after SIGTERM, rc={rc}")
    check(rc == 0, f"{name} exited {rc} after SIGTERM")


def oversized_step(env, stub, job_id, want):
    """Sends one 4,194,304 x 1 minibatch; returns the error details."""
    tpb, grpc = env.tpb, env.grpc
    rows = 4 << 20
    batch = tpb.Minibatch(rows=rows, cols=1)
    batch.features.extend([0.5] * rows)
    batch.labels.extend([0, 1] * (rows // 2))
    req = tpb.TrainRequest(job_id=job_id, batch=batch)
    log(f"oversized minibatch: {req.ByteSize()} bytes")
    t0 = time.monotonic()
    try:
        for _ in stub.Train(iter([req]), timeout=30):
            pass
        raise AssertionError("the oversized minibatch was accepted")
    except grpc.RpcError as e:
        took = time.monotonic() - t0
        log(f"answered in {took:.2f}s: {e.code().name}: {e.details()}")
        check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED,
              f"wanted RESOURCE_EXHAUSTED, got {e.code().name} after "
              f"{took:.1f}s: {e.details()}")
        check(want in e.details(), f"message lacks '{want}': {e.details()}")
        check(took < 20, f"the refusal took {took:.1f}s")


def job_is_released(env, stub, job_id):
    """The job is IDLE and takes a new stream with a small minibatch."""
    tpb = env.tpb
    job = stub.GetJob(tpb.GetJobRequest(job_id=job_id), timeout=10)
    check(job.state == job.IDLE,
          f"job state {tpb.Job.State.Name(job.state)} after the refusal")
    batch = tpb.Minibatch(rows=4, cols=1, features=[0.1, 0.2, 0.3, 0.4],
                          labels=[0, 1, 0, 1])
    last = None
    for last in stub.Train(iter([tpb.TrainRequest(job_id=job_id,
                                                  batch=batch)]),
                           timeout=60):
        pass
    check(last is not None and last.step == 1, f"small step: {last}")
    log("job released: IDLE, a new stream trained one step")


def train_oversized(env):
    store = os.path.join(env.work, "store")
    rounds = [("bounded", [], None, "--max_step_mb")]
    if env.sanitizers():
        log("sanitizer build: RLIMIT_AS round skipped (shadow memory)")
    else:
        # The bound lifted: the 64 GiB Eigen allocation itself fails under a
        # 4 GiB address-space cap and throws std::bad_alloc in the reactor.
        def cap():
            resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        rounds.append(("bad_alloc", ["--max_step_mb", str(1 << 30)], cap,
                       "out of memory"))
    for name, extra, preexec, want in rounds:
        log(f"--- round {name}")
        port = faultlib.free_port()
        env.start_trainer(port, store, name=f"trainer-{name}", extra=extra,
                          preexec_fn=preexec)
        stub = env.trainer_stub(f"127.0.0.1:{port}")
        job_id = faultlib.create_job(env, stub, f"wide-{name}", [4096],
                                     input_features=1, classes=2)
        oversized_step(env, stub, job_id, want)
        job_is_released(env, stub, job_id)
        stop_within(env, f"trainer-{name}", 15)


def infer_call(env, addr, kind, rows, timeout=60):
    """(code name, details, seconds) of one ModelInfer (raw input) or
    PredictBatch of `rows` one-feature rows against model "wide"."""
    grpc = env.grpc
    t0 = time.monotonic()
    try:
        if kind == "ModelInfer":
            kpb = env.kpb
            tensor = kpb.ModelInferRequest.InferInputTensor(
                name="input", datatype="FP32", shape=[rows, 1])
            env.kserve_stub(addr).ModelInfer(kpb.ModelInferRequest(
                model_name="wide", inputs=[tensor],
                raw_input_contents=[b"\0\0\0\x3f" * rows]),
                timeout=timeout)
        else:
            env.inference_stub(addr).PredictBatch(env.ipb.PredictBatchRequest(
                model="wide", rows=rows, features=[0.5] * rows),
                timeout=timeout)
        code, details = "OK", ""
    except grpc.RpcError as e:
        code, details = e.code().name, e.details()
    took = time.monotonic() - t0
    log(f"{kind} of {rows} rows: {code} in {took:.2f}s: {details}")
    return code, details, took


def infer_amplified(env):
    """A 262 KB ModelInfer (65,536 rows x 1 feature) against a 1 -> 2,048
    class model asked for ~1 GiB of answer: before the fix RSS went from
    21 MB to 2.1 GB over 23-46 s, then "Sent message larger than max"."""
    store = os.path.join(env.work, "store")
    tport = faultlib.free_port()
    env.start_trainer(tport, store)
    trainer = env.trainer_stub(f"127.0.0.1:{tport}")
    job_id = faultlib.create_job(env, trainer, "wide", [8], input_features=1,
                                 classes=2048)
    trainer.Publish(env.tpb.PublishRequest(job_id=job_id), timeout=30)
    rounds = [("bounded", [], None, "--max_message_mb")]
    if env.sanitizers():
        log("sanitizer build: RLIMIT_AS round skipped (shadow memory)")
    else:
        # Bounds lifted to the largest message: the answer's buffers no
        # longer fit a 1 GiB address space and std::bad_alloc is thrown.
        def cap():
            resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        rounds.append(("bad_alloc", ["--max_message_mb", "2047"], cap,
                       "out of memory"))
    for name, extra, preexec, want in rounds:
        log(f"--- round {name}")
        port = faultlib.free_port()
        addr = f"127.0.0.1:{port}"
        env.start(f"inference-{name}", [
            env.inference_bin, "--host", "127.0.0.1", "--port", str(port),
            "--metrics_port", "0", "--http_port", "0", "--store", store, *extra],
            preexec_fn=preexec)
        env.wait_health(addr, f"inference-{name}", env.procs[f"inference-{name}"])
        pid = env.procs[f"inference-{name}"].pid
        base = faultlib.rss_kb(pid)
        for kind in ("ModelInfer", "PredictBatch"):
            code, details, took = infer_call(env, addr, kind, 65536)
            check(code == "RESOURCE_EXHAUSTED",
                  f"{kind}: wanted RESOURCE_EXHAUSTED, got {code}: {details}")
            check(want in details, f"{kind}: message lacks '{want}'")
            check(took < 20, f"{kind}: the refusal took {took:.1f}s")
            check(env.alive(f"inference-{name}"), "the server died")
        rss = faultlib.rss_kb(pid)
        log(f"RSS {base} kB before, {rss} kB after")
        if name == "bounded":
            check(rss < base + 100_000, f"RSS grew from {base} to {rss} kB")
        code, _, _ = infer_call(env, addr, "ModelInfer", 16)
        check(code == "OK", f"a small ModelInfer afterwards: {code}")
        stop_within(env, f"inference-{name}", 15)


def predict_version(env, addr, model, timeout=5):
    """(code name, version) of one Predict of a 4-feature example."""
    try:
        r = env.inference_stub(addr).Predict(
            env.ipb.PredictRequest(model=model, features=[0.1] * 4),
            timeout=timeout)
        return "OK", r.version
    except env.grpc.RpcError as e:
        return e.code().name, 0


def store_damaged(env):
    """Defects 6 and 7: in a file store, model "dir" has v1, v2 and a v3
    whose snapshot.binpb is a directory (EISDIR); model "fifo" has v1 and a
    v2 whose snapshot.binpb is a FIFO. Before the fix the fresh inference
    server answered UNAVAILABLE for "dir" forever and its single loader
    blocked in open() on the FIFO (models after it never loaded, SIGTERM no
    longer stopped it); CreateJob(from_version) hung a trainer thread."""
    store = os.path.join(env.work, "store")
    tport = faultlib.free_port()
    env.start_trainer(tport, store)
    trainer = env.trainer_stub(f"127.0.0.1:{tport}")
    for model, count in (("dir", 3), ("fifo", 2)):
        job_id = faultlib.create_job(env, trainer, model, [8], input_features=4,
                                     classes=2)
        for _ in range(count):
            trainer.Publish(env.tpb.PublishRequest(job_id=job_id), timeout=30)
    snap = os.path.join(store, "dir", "3", "snapshot.binpb")
    os.remove(snap)
    os.mkdir(snap)
    snap = os.path.join(store, "fifo", "2", "snapshot.binpb")
    os.remove(snap)
    os.mkfifo(snap)
    log("damaged: dir/3 is a directory, fifo/2 is a FIFO")

    port = faultlib.free_port()
    addr = f"127.0.0.1:{port}"
    env.start_inference(port, store)
    env.wait_health(addr, "inference", env.procs["inference"], timeout=20)
    for model, want in (("dir", 2), ("fifo", 1)):
        code, version = predict_version(env, addr, model)
        log(f"Predict {model}: {code} version {version}")
        check((code, version) == ("OK", want),
              f"Predict {model}: wanted OK version {want}, got {code} "
              f"{version}")

    r = env.bnctl("export", "--store", store, "--model", "dir", "-o",
                  os.path.join(env.work, "dir.json"), check=False)
    log(f"bnctl export dir: rc={r.returncode} {r.stdout.strip()}"
        f"{r.stderr.strip()}")
    check(r.returncode == 0 and "version 2" in r.stdout,
          "bnctl export of the newest readable version")

    tpb, grpc = env.tpb, env.grpc
    for version, want in ((2, grpc.StatusCode.DATA_LOSS), (1, None)):
        t0 = time.monotonic()
        try:
            trainer.CreateJob(tpb.CreateJobRequest(
                model="fifo", from_version=version), timeout=10)
            code, details = None, ""
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
        log(f"CreateJob(fifo, from_version={version}): {code} in "
            f"{time.monotonic() - t0:.2f}s {details}")
        check(code == want, f"CreateJob from version {version}: {code}")
    stop_within(env, "inference", 15)
    stop_within(env, "trainer", 15)


def reflection_code(env, addr):
    """Status code name of a server reflection list_services call made
    without credentials (raw bytes: ServerReflectionRequest field 7 = "")."""
    grpc = env.grpc
    call = grpc.insecure_channel(addr).stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=None, response_deserializer=None)
    try:
        for _ in call(iter([b"\x3a\x00"]), timeout=10):
            pass
        return "OK"
    except grpc.RpcError as e:
        return e.code().name


def unauthenticated_surface(env):
    """What answers without the token (see README, "What answers without
    credentials"): health always (probes); reflection unless
    --reflection=false; every model and job RPC needs the token."""
    token = os.path.join(env.work, "token")
    with open(token, "w") as f:
        f.write("s3cret\n")
    store = os.path.join(env.work, "store")
    port = faultlib.free_port()  # one model, so that inference gets ready
    env.start_trainer(port, store, name="publisher")
    publisher = env.trainer_stub(f"127.0.0.1:{port}")
    job_id = faultlib.create_job(env, publisher, "m", [8], input_features=4,
                                 classes=2)
    publisher.Publish(env.tpb.PublishRequest(job_id=job_id), timeout=30)
    stop_within(env, "publisher", 15)
    for reflection in ("true", "false"):
        port = faultlib.free_port()
        addr = f"127.0.0.1:{port}"
        name = f"inference-reflection-{reflection}"
        env.start(name, [env.inference_bin, "--host", "127.0.0.1", "--port",
                         str(port), "--metrics_port", "0", "--http_port", "0",
                         "--store", store,
                         "--token_file", token, f"--reflection={reflection}"])
        env.wait_health(addr, name, env.procs[name])  # health: no token
        code, _ = predict_version(env, addr, "m")
        check(code == "UNAUTHENTICATED", f"Predict without token: {code}")
        got = reflection_code(env, addr)
        want = "OK" if reflection == "true" else "UNIMPLEMENTED"
        log(f"--reflection={reflection}: reflection without token {got}")
        check(got == want, f"reflection: wanted {want}, got {got}")
        stop_within(env, name, 15)
        tport = faultlib.free_port()
        tname = f"trainer-reflection-{reflection}"
        env.start_trainer(tport, store, name=tname,
                          extra=["--token_file", token,
                                 f"--reflection={reflection}"])
        got = reflection_code(env, f"127.0.0.1:{tport}")
        log(f"trainer --reflection={reflection}: {got}")
        check(got == want, f"trainer reflection: wanted {want}, got {got}")
        stop_within(env, tname, 15)


CASES = {"unauthenticated_surface": unauthenticated_surface,
         "train_oversized": train_oversized,
         "infer_amplified": infer_amplified,
         "store_damaged": store_damaged}


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in CASES:
        sys.exit(f"usage: {sys.argv[0]} BUILD_DIR {{{','.join(CASES)}}}")
    with faultlib.Env(sys.argv[1], f"hostile-{sys.argv[2]}") as env:
        CASES[sys.argv[2]](env)
    log("PASS")


if __name__ == "__main__":
    main()
