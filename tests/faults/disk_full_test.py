#!/usr/bin/python3
"""Fault: the file store's disk fills up while inference serves under load.

The store lives on a 2 MiB tmpfs mounted for the test (`mount -t tmpfs -o
size=2m`; needs root or CAP_SYS_ADMIN: without it the test exits 77, which
ctest reports as skipped, and says why; in CI, CI=true, it fails instead:
tests/common/skip.py). A trainer job with ~200 KB
snapshots (hidden 256,128) publishes until the disk is full. Checks:
- the failing Publish returns exactly RESOURCE_EXHAUSTED (the store maps
  ENOSPC and EDQUOT to it) with a message naming the cause ("No space left
  on device");
- further publishes on the full disk fail the same way, cleanly: no version,
  staging or temp entry is left behind, the trainer stays up, training
  itself keeps working;
- every earlier version stays intact: it verifies in Python (SHA-256) and
  with `bnctl export`;
- freeing space works two ways, and Publish succeeds again each time with a
  never-used, higher version: (1) the trainer's DeleteVersion RPC on the
  oldest versions, on the full disk; (2) a ballast file that fills the disk
  to the last byte is removed (DeleteVersion at 0 bytes free is tried too:
  it may be refused, but only cleanly);
- the inference server answers every Predict throughout (zero failures) and
  serves the version published after recovery.

Usage: disk_full_test.py BUILD_DIR
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "common"))
import faultlib  # noqa: E402
import skip  # noqa: E402
from faultlib import log, wait_until  # noqa: E402

MODEL = "diskfull"


def df(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def main():
    with faultlib.Env(sys.argv[1], "faults-disk") as env:
        store = os.path.join(env.work, "store")
        os.makedirs(store)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs",
                            store], capture_output=True, text=True)
        if r.returncode != 0:
            skip.skip_script(f"cannot mount a tmpfs here ({r.stderr.strip()}); "
                             "run as root (or with CAP_SYS_ADMIN)")
        env.mounts.append(store)
        log(f"store on a 2 MiB tmpfs, {df(store)} bytes free")

        tport, iport = faultlib.free_port(), faultlib.free_port()
        taddr, iaddr = f"127.0.0.1:{tport}", f"127.0.0.1:{iport}"
        xs, ys = faultlib.load_csv(
            os.path.join(faultlib.REPO, "data/digits/train.csv"))
        xtest, _ = faultlib.load_csv(
            os.path.join(faultlib.REPO, "data/digits/test.csv"))
        env.start_trainer(tport, store)
        stub = env.trainer_stub(taddr)
        job = faultlib.create_job(env, stub, MODEL, [256, 128])
        faultlib.train(stub, job, xs, ys, 5)
        code, v1, details = faultlib.publish(stub, job)
        assert code == "OK", (code, details)
        inference = env.start_inference(iport, store)
        env.wait_health(iaddr, "inference", inference)
        load = faultlib.Load(iaddr, MODEL, xtest, threads=3, rate=150).start()

        acked = [v1]
        failures = []   # (code, details)

        def consistent():
            versions = faultlib.file_versions(store, MODEL)
            names = os.listdir(os.path.join(store, MODEL))
            junk = [n for n in names if n.startswith((".staging-", ".tmp-",
                                                      ".deleting-"))]
            assert not junk, ("leftovers after a failed publish", junk)
            for v in versions:
                problem = faultlib.verify_file_version(store, MODEL, v)
                assert problem is None, (v, problem)
            return versions

        def publish_until_full(what, limit=40):
            for _ in range(limit):
                faultlib.train(stub, job, xs, ys, 1)
                code, version, details = faultlib.publish(stub, job)
                if code != "OK":
                    return code, details
                acked.append(version)
            raise AssertionError(f"{what}: the disk never filled up")

        def expect_clean_failures(n, what):
            before = faultlib.file_versions(store, MODEL)
            for _ in range(n):
                faultlib.train(stub, job, xs, ys, 1)   # training still works
                code, _, details = faultlib.publish(stub, job)
                failures.append((code, details))
                assert code == "RESOURCE_EXHAUSTED", (code, details)
                assert "No space left on device" in details, details
                assert env.alive("trainer")
                assert consistent() == before
            log(f"{what}: {n} more publishes failed cleanly with {code}: "
                f"{details!r}")

        try:
            # A. Publish until the disk is full.
            code, details = publish_until_full("phase A")
            failures.append((code, details))
            log(f"disk full after {len(acked)} versions ({df(store)} bytes "
                f"free): Publish -> {code}: {details!r}")
            assert code == "RESOURCE_EXHAUSTED", (code, details)
            assert "No space left on device" in details, details
            assert consistent() == acked
            expect_clean_failures(5, "full disk")

            # B. Free space through the registry: delete the 2 oldest.
            for v in acked[:2]:
                stub.DeleteVersion(env.tpb.DeleteVersionRequest(
                    model=MODEL, version=v), timeout=30)
            kept = acked[2:]
            faultlib.train(stub, job, xs, ys, 1)
            code, version, details = faultlib.publish(stub, job)
            assert code == "OK", ("publish after DeleteVersion", code, details)
            assert version > max(acked), (version, acked)
            log(f"DeleteVersion v{acked[0]}, v{acked[1]} on the full disk "
                f"freed space: Publish OK -> v{version}")
            acked = kept + [version]
            assert consistent() == acked

            # C. A ballast file takes every remaining byte; then removed.
            ballast = os.path.join(store, "ballast")
            fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                for chunk in (65536, 4096, 512, 1):
                    try:
                        while True:
                            os.write(fd, b"\0" * chunk)
                    except OSError:
                        pass
            finally:
                os.close(fd)
            log(f"ballast fills the disk: {df(store)} bytes free")
            expect_clean_failures(3, "disk filled by a ballast file")
            # DeleteVersion with 0 bytes free: it first re-persists the
            # version mark, so it may be refused; either way cleanly.
            try:
                stub.DeleteVersion(env.tpb.DeleteVersionRequest(
                    model=MODEL, version=acked[0]), timeout=30)
                log(f"DeleteVersion v{acked[0]} with 0 bytes free: OK")
                acked = acked[1:]
            except env.grpc.RpcError as e:
                log(f"DeleteVersion v{acked[0]} with 0 bytes free: "
                    f"{e.code().name}: {e.details()!r}")
                assert e.code().name == "RESOURCE_EXHAUSTED", e
                assert "No space left on device" in e.details(), e
            assert consistent() == acked
            os.unlink(ballast)
            faultlib.train(stub, job, xs, ys, 1)
            code, version, details = faultlib.publish(stub, job)
            assert code == "OK", ("publish after removing ballast", code,
                                  details)
            assert version > max(acked), (version, acked)
            acked.append(version)
            log(f"ballast removed: Publish OK -> v{version}")

            # Everything acknowledged and kept reads back.
            assert consistent() == acked
            for v in acked:
                problem = env.export_ok(store, MODEL, v)
                assert problem is None, (v, problem)
            wait_until(lambda: load.newest_version() >= version,
                       f"inference answering with v{version}", 30)
        finally:
            load.stop()
        log(load.summary())
        load.check()
        assert env.alive("inference") and env.alive("trainer")
        log(f"{len(failures)} publishes failed on a full disk, all "
            f"{sorted({c for c, _ in failures})} naming 'No space left on "
            f"device'; versions kept {acked} all verify and export")
        print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
