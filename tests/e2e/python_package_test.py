"""The Python package `bnserve` (client/python/) against real bnserve-trainer
and bnserve-inference processes (pytest, started by ctest):

* TrainerClient trains digits from numpy arrays with progress, and
  InferenceClient predicts one example and a batch, agreeing with each
  other, plus metadata and health;
* BnserveClassifier inside a scikit-learn Pipeline and cross_val_score,
  BnserveRegressor's score, get_params/set_params and clone;
* `pip install ./client/python` into a venv made with
  --system-site-packages, offline, gives a package that works outside the
  repository.

Environment: BNSERVE_BUILD (the build directory). Loopback only, everything
in a temporary directory; the servers are stopped with SIGTERM at the end.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.environ.get("BNSERVE_BUILD", os.path.join(REPO, "build"))
sys.path.insert(0, os.path.join(REPO, "client", "python"))

import bnserve  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from ports import free_port  # noqa: E402  tests/common/ports.py


def load_csv(path):
    data = np.loadtxt(os.path.join(REPO, path), delimiter=",", skiprows=1,
                      dtype=np.float32)
    with open(os.path.join(REPO, path)) as f:
        header = f.readline().strip().split(",")
    label = header.index("label")
    y = data[:, label]
    X = np.delete(data, label, axis=1)
    return X, y


@pytest.fixture(scope="module")
def servers():
    work = tempfile.mkdtemp(prefix="bnserve-pypkg-")
    os.environ["XDG_CACHE_HOME"] = os.path.join(work, "cache")
    store = os.path.join(work, "store")
    tport, iport = free_port(), free_port()
    logs = open(os.path.join(work, "servers.log"), "w+")
    procs = [
        subprocess.Popen([os.path.join(BUILD, "server/trainer/bnserve-trainer"),
                          "--host", "127.0.0.1", "--port", str(tport),
                          "--http_port", "0", "--store", store], stderr=logs),
        subprocess.Popen([os.path.join(BUILD,
                                       "server/inference/bnserve-inference"),
                          "--host", "127.0.0.1", "--port", str(iport),
                          "--http_port", "0", "--metrics_port", "0",
                          "--versions_to_keep", "8", "--store", store],
                         stderr=logs),
    ]
    try:
        deadline = time.time() + 30
        for port in (tport, iport):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                except OSError:
                    assert time.time() < deadline and all(
                        p.poll() is None for p in procs), logs.read()
                    time.sleep(0.02)
        yield "127.0.0.1:%d" % tport, "127.0.0.1:%d" % iport, work
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=20) for p in procs]
        logs.seek(0)
        text = logs.read()
        shutil.rmtree(work, ignore_errors=True)
        assert codes == [0, 0], text


def test_train_from_numpy_and_predict(servers):
    trainer_addr, server_addr, _ = servers
    X, y = load_csv("data/digits/train.csv")
    Xt, yt = load_csv("data/digits/test.csv")
    seen = []
    with bnserve.TrainerClient(trainer_addr) as trainer:
        result = trainer.train("digits", X, y.astype(int), hidden=(64,),
                               epochs=8, batch_size=64, lr=0.05, seed=3,
                               progress=seen.append)
    assert result.version == 1
    steps_per_epoch = len(bnserve.trainer.batch_sizes(len(X), 64))
    assert result.steps == 8 * steps_per_epoch
    assert [p.step for p in seen if not p.published] == list(
        range(1, result.steps + 1))
    assert seen[-1].last_published_version == 1

    with bnserve.InferenceClient(server_addr) as client:
        assert client.live()
        client.wait_ready("digits", 1, timeout=30)
        assert client.ready()
        one = client.predict("digits", Xt[0])
        assert one.version == 1 and one.probabilities.shape == (10,)
        assert abs(float(one.probabilities.sum()) - 1) < 1e-5
        batch = client.predict_batch("digits", Xt, max_rows=100)
        assert batch.outputs.shape == (len(Xt), 10)
        # A row of a batch is computed exactly as the single example.
        np.testing.assert_array_equal(batch.outputs[0], one.outputs)
        assert batch.class_ids[0] == one.class_id == int(one.class_name)
        accuracy = float(np.mean(batch.class_ids == yt))
        assert accuracy >= 0.9, accuracy
        info = client.metadata("digits")
        assert (info.task, info.input_features, info.output_dim) == (
            "classification", 64, 10)
        assert info.class_names == [str(k) for k in range(10)]
        with pytest.raises(bnserve.BnserveError) as err:
            client.predict("digits", Xt[0][:10])
        assert err.value.code == "INVALID_ARGUMENT"
        with pytest.raises(bnserve.BnserveError) as err:
            client.predict("nope", Xt[0])
        assert err.value.code == "NOT_FOUND"


def test_train_resumes_bit_for_bit_after_a_trainer_kill(servers):
    """TrainerClient.train survives a SIGKILL of its trainer: the job
    resumes from its checkpoint on the restarted trainer and the published
    model equals an uninterrupted run's layer for layer."""
    _, _, work = servers
    store = os.path.join(work, "resume-store")
    port = free_port()
    log = open(os.path.join(work, "resume-trainer.log"), "a")

    def start():
        proc = subprocess.Popen(
            [os.path.join(BUILD, "server/trainer/bnserve-trainer"), "--host",
             "127.0.0.1", "--port", str(port), "--store", store,
             "--checkpoint_every", "40"], stderr=log)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                return proc
            except OSError:
                assert time.time() < deadline and proc.poll() is None
                time.sleep(0.02)

    X, y = load_csv("data/digits/train.csv")
    args = dict(hidden=(32,), epochs=6, batch_size=32, optimizer="adam",
                seed=9)
    procs = [start()]
    kills = []

    def kill_at_step_150(p):
        if p.step == 150 and not kills:
            kills.append(p.step)
            procs[-1].send_signal(signal.SIGKILL)
            procs[-1].wait(timeout=10)
            procs.append(start())
    try:
        with bnserve.TrainerClient("127.0.0.1:%d" % port) as trainer:
            straight = trainer.train("straight", X, y.astype(int), **args)
            durable = trainer.train("durable", X, y.astype(int),
                                    progress=kill_at_step_150,
                                    resume_timeout=60, **args)
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)
    assert kills == [150]
    assert durable.steps == straight.steps == 6 * len(
        bnserve.trainer.batch_sizes(len(X), 32))

    def layers(model, version):
        out = os.path.join(work, "%s.json" % model)
        subprocess.run([os.path.join(BUILD, "client/bnctl/bnctl"), "export",
                        "--store", store, "--model", model, "--version",
                        str(version), "-o", out], check=True)
        with open(out) as f:
            return json.load(f)["layers"]
    assert layers("durable", durable.version) == layers(
        "straight", straight.version)


def test_sklearn_pipeline_and_cross_validation(servers):
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    trainer_addr, server_addr, _ = servers
    X, y = load_csv("data/digits/train.csv")
    X, y = X[:600], y[:600]
    labels = np.array(["d%d" % v for v in y.astype(int)])  # any labels
    clf = bnserve.BnserveClassifier(trainer=trainer_addr, server=server_addr,
                                    model="digits-cv", hidden=(32,),
                                    epochs=10, lr=0.05)
    assert clone(clf).get_params() == clf.get_params()
    assert clf.set_params(epochs=12).epochs == 12
    pipe = make_pipeline(StandardScaler(), clf)
    scores = cross_val_score(pipe, X, labels, cv=3)
    assert scores.shape == (3,) and scores.min() >= 0.8, scores
    pipe.fit(X, labels)
    proba = pipe.predict_proba(X[:5])
    assert proba.shape == (5, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert list(pipe.predict(X[:5])) == list(
        pipe[-1].classes_[np.argmax(proba, axis=1)])


def test_regressor_score(servers):
    trainer_addr, server_addr, _ = servers
    X, y = load_csv("data/diabetes/train.csv")
    Xt, yt = load_csv("data/diabetes/test.csv")
    reg = bnserve.BnserveRegressor(trainer=trainer_addr, server=server_addr,
                                   model="diabetes-py", hidden=(32,),
                                   epochs=60, optimizer="adam", lr=0.01,
                                   batch_size=32)
    # Standardized targets: the network's outputs start near 0.
    mean, std = y.mean(), y.std()
    reg.fit(X, (y - mean) / std)
    r2 = reg.score(Xt, (yt - mean) / std)
    assert reg.predict(Xt).shape == (len(Xt),)
    assert r2 > 0.2, r2


def test_pip_install_into_a_venv_offline(servers):
    _, server_addr, work = servers
    venv = os.path.join(work, "venv")
    subprocess.run(["/usr/bin/python3", "-m", "venv",
                    "--system-site-packages", venv], check=True, timeout=120)
    build_copy = os.path.join(work, "src")
    # pip builds in the source tree; build from a copy so the checkout stays
    # clean (the copy keeps the repository layout setup.py expects).
    shutil.copytree(os.path.join(REPO, "client", "python"),
                    os.path.join(build_copy, "client", "python"),
                    ignore=shutil.ignore_patterns("__pycache__", "build",
                                                  "*.egg-info"))
    shutil.copytree(os.path.join(REPO, "proto"),
                    os.path.join(build_copy, "proto"))
    res = subprocess.run(
        [os.path.join(venv, "bin", "pip"), "install", "--no-index",
         "--no-build-isolation", os.path.join(build_copy, "client", "python")],
        capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    code = ("import bnserve, os; from bnserve import _stubs; "
            "assert 'site-packages' in bnserve.__file__, bnserve.__file__; "
            "c = bnserve.InferenceClient(%r); "
            "print(c.predict('digits', [0.0] * 64).version)" % server_addr)
    res = subprocess.run([os.path.join(venv, "bin", "python"), "-c", code],
                         capture_output=True, text=True, timeout=60,
                         cwd=work, env=dict(os.environ, BNSERVE_PROTO_DIR=""))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "1"
