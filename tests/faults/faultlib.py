"""Shared helpers of the fault-injection tests (tests/faults/*_test.py).

Everything runs on loopback ports in one temporary directory. `Env` starts
and always stops every process (SIGTERM, then SIGKILL), unmounts what it
mounted and removes the directory, whatever happens. Python gRPC stubs are
generated at test time from proto/ with Debian's protoc and
grpc_python_plugin (python3-grpcio is the independent client).
"""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from ports import free_port  # noqa: E402,F401 (re-exported)  tests/common/ports.py

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def wait_until(predicate, what, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def epochs_for_seconds(train_args, seconds, least, probe_epochs=20):
    """Epochs for a `bnctl train` job that trains about `seconds` here.

    `train_args(model, epochs)` is the job's command line. A test that stops
    a job N times needs it to last N stops in time, not in epochs: a fixed
    epoch count lets a fast machine finish before the last stop. A short
    probe job (model "calibrate") measures this machine's speed; the answer
    is at least `least` and at most 100x it."""
    run = subprocess.run(train_args("calibrate", probe_epochs),
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    per_epoch = max(json.loads(run.stdout)["seconds"]["train"] / probe_epochs,
                    1e-5)
    epochs = min(max(least, int(seconds / per_epoch)), 100 * least)
    log(f"calibration: {per_epoch * 1000:.1f} ms per epoch -> {epochs} epochs "
        f"for {seconds:.0f} s")
    return epochs


def server_predict_latency(metrics_port):
    """{le: cumulative count} of the inference server's own Predict latency
    histogram (Prometheus text from /metrics)."""
    import urllib.request
    text = urllib.request.urlopen(
        f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    buckets = {}
    for line in text.splitlines():
        if (line.startswith("bnserve_inference_request_duration_seconds_bucket")
                and 'Predict"' in line and "Batch" not in line):
            le = line.split('le="')[1].split('"')[0]
            buckets[le] = buckets.get(le, 0) + int(float(line.split()[-1]))
    return buckets


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def load_csv(path):
    """(features rows, int labels) of a CSV with a header and a last label
    column."""
    xs, ys = [], []
    with open(path) as f:
        next(f)
        for line in f:
            values = line.strip().split(",")
            if len(values) < 2:
                continue
            xs.append([float(v) for v in values[:-1]])
            ys.append(int(float(values[-1])))
    return xs, ys


class Env:
    """A temporary directory, the binaries, stubs and the processes started."""

    def __init__(self, build_dir, name):
        self.build = os.path.abspath(build_dir)
        self.bnctl_bin = os.path.join(self.build, "client/bnctl/bnctl")
        self.trainer_bin = os.path.join(
            self.build, "server/trainer/bnserve-trainer")
        self.inference_bin = os.path.join(
            self.build, "server/inference/bnserve-inference")
        for b in (self.bnctl_bin, self.trainer_bin, self.inference_bin):
            if not os.access(b, os.X_OK):
                raise AssertionError(f"missing binary {b}: build it first")
        self.work = tempfile.mkdtemp(prefix=f"bnserve-{name}-")
        self.procs = {}     # name -> Popen
        self.logs = {}      # name -> path
        self.mounts = []
        self._stubs()

    def sanitizers(self):
        """The build's BNSERVE_SANITIZE value ("" for a normal build)."""
        try:
            with open(os.path.join(self.build, "CMakeCache.txt")) as f:
                for line in f:
                    if line.startswith("BNSERVE_SANITIZE:"):
                        return line.split("=", 1)[1].strip()
        except OSError:
            pass
        return ""

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.dump_logs()
        self.close()
        return False

    def dump_logs(self):
        for name, path in self.logs.items():
            try:
                with open(path, errors="replace") as f:
                    text = f.read()[-3000:]
                sys.stderr.write(f"--- {name} log (tail) ---\n{text}\n")
            except OSError:
                pass

    def close(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for m in reversed(self.mounts):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def start(self, name, argv, preexec_fn=None, env_extra=None):
        """Starts (or restarts) a named process, appending to its log;
        `preexec_fn` runs in the child before exec (e.g. setrlimit);
        `env_extra` adds environment variables."""
        path = os.path.join(self.work, f"{name}.log")
        self.logs[name] = path
        with open(path, "a") as logf:
            proc = subprocess.Popen(argv, stdout=logf, stderr=logf,
                                    stdin=subprocess.DEVNULL,
                                    preexec_fn=preexec_fn,
                                    env={**os.environ, **(env_extra or {})})
        self.procs[name] = proc
        return proc

    def kill(self, name, sig=signal.SIGKILL):
        proc = self.procs[name]
        proc.send_signal(sig)
        proc.wait(timeout=30)
        return proc.returncode

    def alive(self, name):
        return self.procs[name].poll() is None

    # -- servers -----------------------------------------------------------

    def start_trainer(self, port, store, name="trainer", extra=(),
                      preexec_fn=None, env_extra=None):
        proc = self.start(name, [self.trainer_bin, "--host", "127.0.0.1",
                                 "--port", str(port), "--http_port", "0",
                                 "--store", store, *extra], preexec_fn=preexec_fn,
                          env_extra=env_extra)
        self.wait_health(f"127.0.0.1:{port}", name, proc)
        return proc

    def start_inference(self, port, store, name="inference", extra=(),
                        metrics_port=0):
        return self.start(name, [self.inference_bin, "--host", "127.0.0.1",
                                 "--port", str(port), "--http_port", "0",
                                 "--metrics_port",
                                 str(metrics_port), "--store", store, *extra])

    def health(self, addr):
        return subprocess.run([self.bnctl_bin, "health", "--server", addr],
                              capture_output=True, timeout=30).returncode == 0

    def wait_health(self, addr, what, proc=None, timeout=30.0):
        def ok():
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"{what} exited with {proc.returncode}")
            return self.health(addr)
        wait_until(ok, f"{what} SERVING on {addr}", timeout)

    def start_redis(self, port, name="redis"):
        data = os.path.join(self.work, "redis-data")
        os.makedirs(data, exist_ok=True)
        proc = self.start(name, [
            "redis-server", "--bind", "127.0.0.1", "--port", str(port),
            "--dir", data, "--appendonly", "yes", "--appendfsync", "always",
            "--save", "", "--daemonize", "no", "--protected-mode", "yes"])

        def up():
            if proc.poll() is not None:
                raise AssertionError(f"redis exited with {proc.returncode}")
            r = subprocess.run(["redis-cli", "-p", str(port), "ping"],
                               capture_output=True, text=True)
            return r.stdout.strip() == "PONG"
        wait_until(up, "redis PONG")
        return proc

    def bnctl(self, *args, timeout=240, check=True):
        r = subprocess.run([self.bnctl_bin, *args], capture_output=True,
                           text=True, timeout=timeout, cwd=REPO)
        if check and r.returncode != 0:
            raise AssertionError(f"bnctl {' '.join(args)} failed "
                                 f"({r.returncode}): {r.stderr}")
        return r

    def export_ok(self, store, model, version):
        """bnctl export (the product's own reader, which verifies the
        checksum) of one version; returns None or the error."""
        out = os.path.join(self.work, "export.json")
        r = self.bnctl("export", "--store", store, "--model", model,
                       "--version", str(version), "-o", out, check=False)
        if r.returncode != 0:
            return r.stderr.strip()
        import json
        with open(out) as f:
            doc = json.load(f)
        if doc.get("version") != version or doc.get("model") != model:
            return f"export named {doc.get('model')} v{doc.get('version')}"
        return None

    # -- gRPC --------------------------------------------------------------

    def _stubs(self):
        out = os.path.join(self.work, "stubs")
        os.makedirs(out)
        protos = [os.path.join("bnserve/v1", p) for p in
                  ("snapshot.proto", "store.proto", "trainer.proto",
                   "inference.proto")] + ["inference/grpc_service.proto"]
        subprocess.run(
            ["protoc", "--plugin=protoc-gen-grpc_python=" +
             shutil.which("grpc_python_plugin"),
             "-I", os.path.join(REPO, "proto"), "--python_out=" + out,
             "--grpc_python_out=" + out, *protos],
            check=True, timeout=60)
        sys.path.insert(0, out)
        global grpc, pb, tpb, tgrpc, ipb, igrpc, spb
        import grpc
        from bnserve.v1 import snapshot_pb2 as pb
        from bnserve.v1 import store_pb2 as spb
        from bnserve.v1 import trainer_pb2 as tpb
        from bnserve.v1 import trainer_pb2_grpc as tgrpc
        from bnserve.v1 import inference_pb2 as ipb
        from bnserve.v1 import inference_pb2_grpc as igrpc
        from inference import grpc_service_pb2 as kpb
        from inference import grpc_service_pb2_grpc as kgrpc
        self.grpc, self.pb, self.spb = grpc, pb, spb
        self.tpb, self.ipb, self.kpb = tpb, ipb, kpb
        self.kserve_stub = lambda addr: kgrpc.GRPCInferenceServiceStub(
            grpc.insecure_channel(addr))

    def trainer_stub(self, addr):
        return tgrpc.TrainerStub(grpc.insecure_channel(addr))

    def inference_stub(self, addr):
        return igrpc.InferenceStub(grpc.insecure_channel(addr))


# -- training helpers ------------------------------------------------------

def create_job(env, stub, model, hidden, every_n_steps=0, seed=1,
               input_features=64, classes=10):
    spec = pb.NetworkSpec(input_features=input_features,
                          task=pb.TASK_CLASSIFICATION, output_dim=classes,
                          hidden=hidden)
    req = tpb.CreateJobRequest(
        model=model, spec=spec, seed=seed,
        optimizer=tpb.OptimizerSpec(kind=tpb.OptimizerSpec.SGD,
                                    learning_rate=0.05),
        publish=tpb.PublishPolicy(every_n_steps=every_n_steps,
                                  on_stream_close=False))
    return stub.CreateJob(req, timeout=30).job_id


def train(stub, job_id, xs, ys, batches, batch_size=32, rng=None):
    """One Train stream of `batches` minibatches; returns the last progress."""
    rng = rng or random.Random(0)

    def requests():
        for i in range(batches):
            idx = [rng.randrange(len(xs)) for _ in range(batch_size)]
            feats = [v for j in idx for v in xs[j]]
            yield tpb.TrainRequest(
                job_id=job_id if i == 0 else "",
                batch=tpb.Minibatch(rows=batch_size, cols=len(xs[0]),
                                    features=feats,
                                    labels=[ys[j] for j in idx]))
    last = None
    for progress in stub.Train(requests(), timeout=60):
        last = progress
    return last


def publish(stub, job_id, timeout=30):
    """(code name, version or 0, details) of one Publish call."""
    try:
        r = stub.Publish(tpb.PublishRequest(job_id=job_id), timeout=timeout)
        return "OK", r.version, ""
    except grpc.RpcError as e:
        return e.code().name, 0, e.details()


def verify_file_version(root, model, version):
    """Independent check of one file-store version in Python: the envelope
    parses, its SHA-256 matches, and the snapshot names model/version.
    Returns None or the problem."""
    path = os.path.join(root, model, str(version), "snapshot.binpb")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"unreadable: {e}"
    return verify_envelope(data, model, version)


def verify_envelope(data, model, version):
    """None if `data` is a valid StoredSnapshot of model/version."""
    env = spb.StoredSnapshot()
    try:
        env.ParseFromString(data)
    except Exception as e:  # noqa: BLE001 - any parse error is a finding
        return f"envelope does not parse: {e}"
    if hashlib.sha256(env.snapshot).digest() != env.sha256:
        return "checksum mismatch"
    snap = pb.Snapshot()
    snap.ParseFromString(env.snapshot)
    if (env.model, env.version, snap.model, snap.version) != (
            model, version, model, version):
        return (f"names {env.model}/{env.version} "
                f"{snap.model}/{snap.version}")
    if not snap.layers:
        return "no layers"
    return None


def file_versions(root, model):
    d = os.path.join(root, model)
    if not os.path.isdir(d):
        return []
    return sorted(int(n) for n in os.listdir(d) if n.isdigit())


# -- publisher ---------------------------------------------------------------

def check_store_outage_survived(env, stub, store, model, calls,
                                train_failures, publisher, acked):
    """After a store outage: the calls failed only as UNAVAILABLE, training
    failed only as UNAVAILABLE (no lease without the store) and works again,
    and no acknowledged version (`acked`, in publish order) was lost or
    damaged. Returns the versions the store lists."""
    other = {c[2] for c in calls} - {"OK", "UNAVAILABLE"}
    assert not other, [c for c in calls if c[2] in other]
    assert all(f.startswith("UNAVAILABLE: ") for f in train_failures), \
        train_failures
    assert publisher.trains[-1:] == ["OK"], publisher.trains[-10:]
    assert acked == sorted(set(acked)), acked
    listed = {v.version for v in stub.ListVersions(
        env.tpb.ListVersionsRequest(model=model), timeout=10).versions}
    missing = sorted(set(acked) - listed)
    assert not missing, ("acknowledged versions lost", missing)
    for v in acked:
        problem = env.export_ok(store, model, v)
        assert problem is None, (v, problem)
    return listed


class Publisher:
    """A thread that trains job `job_id` on (xs, ys) one minibatch at a time
    and publishes it, every `pause` seconds, until stop(). `calls` holds
    (t0, t1, code, version, details) per Publish; `trains` the status code
    name of each Train stream (in order) and `train_failures` the messages
    of the failed ones. With a shared job registry (Redis), a stream needs
    the job's lease from the store, so during an outage it is UNAVAILABLE."""

    def __init__(self, env, trainer_addr, job_id, xs, ys, pause=0.1, seed=1):
        self.env, self.addr, self.job_id = env, trainer_addr, job_id
        self.xs, self.ys, self.pause, self.seed = xs, ys, pause, seed
        self.calls = []
        self.train_failures = []
        self.trains = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=60)

    def _run(self):
        stub = self.env.trainer_stub(self.addr)
        rng = random.Random(self.seed)
        while not self.stopping.is_set():
            try:
                train(stub, self.job_id, self.xs, self.ys, 1, rng=rng)
                self.trains.append("OK")
            except grpc.RpcError as e:
                self.trains.append(e.code().name)
                self.train_failures.append(f"{e.code().name}: {e.details()}")
            t0 = time.monotonic()
            code, version, details = publish(stub, self.job_id)
            self.calls.append((t0, time.monotonic(), code, version, details))
            time.sleep(self.pause)


# -- load generator ----------------------------------------------------------

class Load:
    """`threads` client threads calling Predict in a loop (each at most
    `rate` calls/s, 0 = as fast as it can) until stop(). Every non-OK status
    is a failure; nothing is retried."""

    def __init__(self, addr, model, xs, threads=4, rate=0, deadline=5.0):
        self.addr, self.model, self.xs = addr, model, xs
        self.rate, self.deadline = rate, deadline
        self.ok = 0
        self.failures = {}       # code name -> count
        self.failure_samples = []
        self.versions = {}       # version -> count
        self.max_latency = 0.0
        self.slow = []           # (latency s, wall-clock start), the worst
        self.last_ok = time.monotonic()
        self.max_gap = 0.0       # longest time without any OK answer
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,),
                                         daemon=True) for i in range(threads)]

    def start(self):
        self.started = time.monotonic()
        self.last_ok = self.started
        for t in self.threads:
            t.start()
        return self

    def _run(self, i):
        channel = grpc.insecure_channel(self.addr)
        stub = igrpc.InferenceStub(channel)
        rng = random.Random(i)
        period = 1.0 / self.rate if self.rate else 0.0
        next_t = time.monotonic()
        while not self.stopping.is_set():
            x = self.xs[rng.randrange(len(self.xs))]
            t0 = time.monotonic()
            try:
                r = stub.Predict(ipb.PredictRequest(model=self.model,
                                                    features=x),
                                 timeout=self.deadline)
                t1 = time.monotonic()
                with self.lock:
                    self.ok += 1
                    self.versions[r.version] = self.versions.get(
                        r.version, 0) + 1
                    self.max_latency = max(self.max_latency, t1 - t0)
                    if t1 - t0 > 0.1:
                        self.slow.append((t1 - t0, time.time() - (t1 - t0)))
                        self.slow = sorted(self.slow, reverse=True)[:5]
                    self.max_gap = max(self.max_gap, t1 - self.last_ok)
                    self.last_ok = t1
            except grpc.RpcError as e:
                with self.lock:
                    name = e.code().name
                    self.failures[name] = self.failures.get(name, 0) + 1
                    if len(self.failure_samples) < 5:
                        self.failure_samples.append(
                            f"{time.strftime('%H:%M:%S')} {name}: "
                            f"{e.details()}")
            if period:
                next_t += period
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_t = time.monotonic()
        channel.close()

    def newest_version(self):
        with self.lock:
            return max(self.versions) if self.versions else 0

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=30)
        self.elapsed = time.monotonic() - self.started
        return self

    @property
    def failed(self):
        return sum(self.failures.values())

    def summary(self):
        return (f"Predict: {self.ok} OK, {self.failed} failed "
                f"{self.failures or ''} in {self.elapsed:.1f}s "
                f"({self.ok / max(self.elapsed, 1e-9):.0f}/s), "
                f"max latency {self.max_latency * 1000:.1f} ms, longest gap "
                f"without an answer {self.max_gap * 1000:.0f} ms, "
                f"{len(self.versions)} versions answered; slowest calls "
                "started at " + ", ".join(
                    time.strftime("%H:%M:%S", time.localtime(t)) +
                    f".{int(t * 1000) % 1000:03d} ({d * 1000:.0f} ms)"
                    for d, t in self.slow[:3]))

    def check(self):
        assert self.ok > 0, "no Predict succeeded"
        assert self.failed == 0, (self.summary(), self.failure_samples)
