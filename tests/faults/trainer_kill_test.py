#!/usr/bin/python3
"""Fault: the trainer is killed with SIGKILL in the middle of a training
stream and in the middle of a publish, repeatedly, while an inference server
on the same file store serves Predict under load.

Each round restarts the trainer if needed and starts `bnctl train`; rounds
cycle through three kill moments:
- in-publish: `--publish-every 1`; the trainer runs with the file store's
  test-only fault point (BNSERVE_TEST_PUBLISH_PAUSE_DIR, store/file_store.h):
  after a few publishes the test arms it, the next Publish stops after its
  staging directory is written and fsynced, before the rename that makes the
  version visible, and announces that; the test checks the announced staging
  directory and SIGKILLs the trainer there. Every such kill is confirmed to
  have landed inside Publish: its staging directory is still there after the
  kill and no version appeared;
- random: `--publish-every 1` (the trainer publishes after every step and
  spends most of its time in Publish); SIGKILL 0-300 ms after a few publishes;
- training: no publishing; SIGKILL 0-300 ms into a stream with steps done.
After every kill:
- every version directory in the store verifies, checked twice: in Python
  (envelope parses, SHA-256 matches, model/version match) and for the newest
  and a random sample with `bnctl export` (the product's reader);
- version numbers are unique and nothing but versions and the store's own
  hidden files is visible (leftover `.staging-*` directories, i.e. kills that
  hit a publish between mkdir and rename, are counted; the last must vanish
  at the next publish, earlier ones are removed by the next round's first
  publish).
At the end a fresh publish gets a higher version, the inference server
answers with it, and the load saw zero failed Predict calls.

KILL_STORE=redis runs the same on our own redis-server (AOF, fsync always):
no in-publish rounds (a Redis publish has no staging step: the blob and the
version index are written in one MULTI/EXEC), and the store is read with
redis-cli: every indexed version has a verifying blob and no blob is
unindexed.

Usage: trainer_kill_test.py BUILD_DIR [ROUNDS]
  env KILL_ROUNDS (12), KILL_SEED (time), KILL_STORE (file|redis)
"""
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import log, wait_until  # noqa: E402

MODEL = "killed"


class FileView:
    """The file store as the test sees it, without the product's code."""

    def __init__(self, root):
        self.uri = root
        self.model_dir = os.path.join(root, MODEL)

    def versions(self):
        return faultlib.file_versions(self.uri, MODEL)

    def staging(self):
        return [n for n in os.listdir(self.model_dir)
                if n.startswith(".staging-")]

    def unexpected(self):
        return [n for n in os.listdir(self.model_dir) if not n.isdigit() and
                not n.startswith((".staging-", ".tmp-")) and
                n not in (".next_version", ".lock", ".labels")]

    def verify(self, v):
        return faultlib.verify_file_version(self.uri, MODEL, v)


class RedisView:
    """The Redis store read with redis-cli (keys: store/redis_store.h)."""

    def __init__(self, port):
        self.port = port
        self.uri = f"redis://127.0.0.1:{port}/0"

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), "--raw",
                               *args], capture_output=True,
                              check=True).stdout

    def versions(self):
        out = self.cli("ZRANGE", f"bnserve:{{{MODEL}}}:versions", "0", "-1")
        return sorted(int(x) for x in out.split())

    def staging(self):
        return []

    def unexpected(self):
        # Every blob is indexed and every indexed version has its blob.
        blobs = {int(k.rsplit(b":", 1)[1]) for k in self.cli(
            "KEYS", f"bnserve:{{{MODEL}}}:v:*").split()}
        indexed = set(self.versions())
        return sorted(blobs ^ indexed)

    def verify(self, v):
        data = self.cli("GET", f"bnserve:{{{MODEL}}}:v:{v}")[:-1]  # "\n"
        return faultlib.verify_envelope(data, MODEL, v)


# The file store's test-only fault point (store/file_store.h).
PAUSE_ENV = "BNSERVE_TEST_PUBLISH_PAUSE_DIR"


def kill_inside_publish(env, view, pause_dir):
    """Arms the fault point, waits for the trainer to stop inside a Publish,
    SIGKILLs it there and checks that the kill landed mid-publish: the
    announced staging directory is complete before the kill and still there
    after it, and no version appeared. Returns the staging directory name."""
    pause = os.path.join(pause_dir, "pause")
    paused = os.path.join(pause_dir, "paused")
    open(pause, "w").close()
    # A hang guard: the trainer publishes after every step.
    wait_until(lambda: os.path.exists(paused),
               "the trainer stopping inside Publish at the fault point", 60)
    with open(paused) as f:
        staging = f.read().strip()
    assert os.path.dirname(staging) == view.model_dir, staging
    name = os.path.basename(staging)
    assert name.startswith(".staging-"), staging
    assert os.path.getsize(os.path.join(staging, "snapshot.binpb")) > 0
    versions = view.versions()
    env.procs["trainer"].kill()
    env.procs["trainer"].wait(timeout=30)
    os.unlink(pause)
    os.unlink(paused)  # the killed trainer never removed its announcement
    assert name in view.staging(), (
        "the kill did not land inside Publish: its staging directory is gone",
        name, view.staging())
    assert view.versions() == versions, (
        "a version appeared although Publish was killed before its rename",
        versions, view.versions())
    return name


def main():
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else int(
        os.environ.get("KILL_ROUNDS", "12"))
    seed = int(os.environ.get("KILL_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    log(f"trainer_kill_test: {rounds} rounds, seed {seed}, "
        f"{os.environ.get('KILL_STORE', 'file')} store")
    kind = os.environ.get("KILL_STORE", "file")
    modes = (("in-publish", "random", "training") if kind == "file" else
             ("random", "training"))
    with faultlib.Env(sys.argv[1], "faults-kill") as env:
        if kind == "redis":
            rport = faultlib.free_port()
            env.start_redis(rport)
            view = RedisView(rport)
        else:
            view = FileView(os.path.join(env.work, "store"))
        pause_dir = os.path.join(env.work, "publish-pause")
        os.makedirs(pause_dir)
        hook = {PAUSE_ENV: pause_dir} if kind == "file" else {}
        store = view.uri
        tport, iport = faultlib.free_port(), faultlib.free_port()
        taddr, iaddr = f"127.0.0.1:{tport}", f"127.0.0.1:{iport}"
        data = os.path.join(faultlib.REPO, "data/digits/train.csv")
        xs, _ = faultlib.load_csv(
            os.path.join(faultlib.REPO, "data/digits/test.csv"))

        env.start_trainer(tport, store, env_extra=hook)
        first = env.bnctl("train", "--trainer", taddr, "--model", MODEL,
                          "--data", data, "--hidden", "64,32", "--epochs",
                          "2", "--json")
        log("baseline:", first.stdout.strip())
        inference = env.start_inference(iport, store)
        env.wait_health(iaddr, "inference", inference)
        load = faultlib.Load(iaddr, MODEL, xs, threads=3, rate=150).start()

        kinds = {m: 0 for m in modes}
        staging_leftovers = 0
        staging_seen = set()
        confirmed_in_publish = 0
        verified = exported = 0
        seen = set(view.versions())
        try:
            for r in range(rounds):
                if not env.alive("trainer"):
                    env.start_trainer(tport, store, env_extra=hook)
                mode = modes[r % len(modes)]
                publishing = mode != "training"
                before = view.versions()
                client = subprocess.Popen(
                    [env.bnctl_bin, "train", "--trainer", taddr, "--model",
                     MODEL, "--data", data, "--hidden", "64,32", "--epochs",
                     "200", "--batch-size", "32", "--seed", str(r),
                     "--publish-every", "1" if publishing else "0",
                     "--resume-timeout", "0", "--json"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    cwd=faultlib.REPO)
                stub = env.trainer_stub(taddr)

                def training():
                    jobs = stub.ListJobs(env.tpb.ListJobsRequest(model=MODEL),
                                         timeout=5).jobs
                    return any(j.state == env.tpb.Job.TRAINING and
                               j.steps > 2 for j in jobs)
                wait_until(training, "a training stream with steps", 60)
                if publishing:
                    wait_until(lambda: len(view.versions()) >
                               len(before) + 2,
                        "publishes during the stream", 60)
                if mode == "in-publish":
                    kill_inside_publish(env, view, pause_dir)
                    confirmed_in_publish += 1
                else:
                    time.sleep(rng.uniform(0.0, 0.3))
                    env.kill("trainer")
                out, err = client.communicate(timeout=60)
                assert client.returncode != 0, (
                    "bnctl train succeeded although its trainer was killed",
                    out)
                kinds[mode] += 1

                # Consistency right after the kill, trainer still dead.
                staging = view.staging()
                staging_leftovers += len(set(staging) - staging_seen)
                staging_seen.update(staging)
                unexpected = view.unexpected()
                assert not unexpected, unexpected
                versions = view.versions()
                assert len(versions) == len(set(versions))
                assert set(before) <= set(versions), "a version vanished"
                if not publishing:
                    assert versions == before, (
                        "a stream without publishing created versions",
                        before, versions)
                for v in versions:
                    if v in seen:
                        continue
                    problem = view.verify(v)
                    assert problem is None, (v, problem)
                    verified += 1
                    seen.add(v)
                new = [v for v in versions if v not in before]
                sample = set(rng.sample(new, min(4, len(new))))
                sample.add(versions[-1])
                for v in sorted(sample):
                    problem = env.export_ok(store, MODEL, v)
                    assert problem is None, (v, problem)
                    exported += 1
                log(f"round {r + 1}/{rounds}: SIGKILL {mode}: bnctl exit {client.returncode} "
                    f"({err.strip().splitlines()[-1][:90] if err else ''}); "
                    f"{len(new)} new versions, newest {versions[-1]}, "
                    f"staging dirs present: {len(staging)}; {load.ok} Predict "
                    f"OK, {load.failed} failed")

            # Recovery: a restarted trainer publishes a higher version, the
            # leftovers are cleaned, and inference serves the new version.
            env.start_trainer(tport, store, env_extra=hook)
            newest = view.versions()[-1]
            final = env.bnctl("train", "--trainer", taddr, "--model", MODEL,
                              "--data", data, "--hidden", "64,32",
                              "--epochs", "1", "--json")
            import json
            version = json.loads(final.stdout)["version"]
            assert version > newest, (version, newest)
            left = view.staging()
            assert not left, ("leftovers after a publish", left)
            assert view.verify(version) is None
            wait_until(lambda: load.newest_version() >= version,
                       f"inference answering with v{version}", 30)
        finally:
            load.stop()
        log(load.summary())
        load.check()
        assert env.alive("inference"), "inference server died"
        assert confirmed_in_publish == kinds.get("in-publish", 0), (
            confirmed_in_publish, kinds)
        if kind == "file" and rounds >= 1:
            assert confirmed_in_publish >= 1, "no kill inside Publish"
        in_publish = (f"{confirmed_in_publish} inside Publish at the store's "
                      f"fault point, each confirmed by its staging directory "
                      f"left behind, " if kind == "file" else "")
        log(f"{rounds} SIGKILLs ({in_publish}{kinds['random']} at a random "
            f"moment of a publish-every-step stream, {kinds['training']} in "
            f"a plain training stream); {staging_leftovers} kills left a "
            f"staging directory (killed inside Publish); {verified} versions "
            f"verified in Python, {exported} exports with bnctl, all OK; "
            f"final publish v{version} served")
        print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
