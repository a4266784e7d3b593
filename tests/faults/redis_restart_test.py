#!/usr/bin/python3
"""Fault: the Redis store goes down and comes back while inference serves
Predict under load and a trainer keeps training and publishing.

Our own redis-server (loopback, free port, `--appendonly yes --appendfsync
always`, data in the temp directory) backs one trainer and one inference
server. A publisher thread loops: one training minibatch (Train stream),
then Publish, every ~100 ms; every acknowledged (OK) version is recorded.
Redis is stopped twice, for OUTAGE_SECONDS each: once with SIGTERM (clean
shutdown), once with SIGKILL (no shutdown: only the fsynced AOF survives),
and restarted on the same port and directory. Checks:
- zero failed Predict calls during the whole run (outages included);
- every Publish that started after Redis was down and ended before it was
  restarted returned UNAVAILABLE (and training itself kept working);
- after each restart Publish succeeds again (within 15 s);
- no acknowledged version is lost: every one is listed by the trainer's
  ListVersions and reads and verifies with `bnctl export --store redis://`;
  acknowledged versions are unique and increase;
- the inference server picks up a version published after the last restart.

Usage: redis_restart_test.py BUILD_DIR   (env OUTAGE_SECONDS, default 4)
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import log, wait_until  # noqa: E402

MODEL = "redisfault"


def main():
    outage = float(os.environ.get("OUTAGE_SECONDS", "4"))
    with faultlib.Env(sys.argv[1], "faults-redis") as env:
        rport, tport, iport = (faultlib.free_port(), faultlib.free_port(),
                               faultlib.free_port())
        store = f"redis://127.0.0.1:{rport}/0"
        taddr, iaddr = f"127.0.0.1:{tport}", f"127.0.0.1:{iport}"
        xs, ys = faultlib.load_csv(
            os.path.join(faultlib.REPO, "data/digits/train.csv"))
        xtest, _ = faultlib.load_csv(
            os.path.join(faultlib.REPO, "data/digits/test.csv"))

        env.start_redis(rport)
        env.start_trainer(tport, store)
        stub = env.trainer_stub(taddr)
        job = faultlib.create_job(env, stub, MODEL, [64, 32])
        faultlib.train(stub, job, xs, ys, 10)
        code, first, details = faultlib.publish(stub, job)
        assert code == "OK", (code, details)
        inference = env.start_inference(iport, store)
        env.wait_health(iaddr, "inference", inference)
        load = faultlib.Load(iaddr, MODEL, xtest, threads=3, rate=150).start()

        publisher = faultlib.Publisher(env, taddr, job, xs, ys).start()
        calls = publisher.calls  # (t0, t1, code, version, details)
        train_failures = publisher.train_failures
        outages = []   # (how, t_down, t_restart, t_recovered)
        try:
            for how in ("SIGTERM", "SIGKILL"):
                time.sleep(2.0)
                acked_before = sum(1 for c in calls if c[2] == "OK")
                env.kill("redis", getattr(signal, how))
                t_down = time.monotonic()
                log(f"redis stopped with {how} ({acked_before} publishes "
                    f"acknowledged so far)")
                time.sleep(outage)
                t_restart = time.monotonic()
                env.start_redis(rport)
                log("redis restarted")
                wait_until(lambda: any(c[0] > t_restart and c[2] == "OK"
                                       for c in calls),
                           "a successful Publish after the restart", 15)
                t_rec = min(c[1] for c in calls
                            if c[0] > t_restart and c[2] == "OK")
                outages.append((how, t_down, t_restart, t_rec))
                log(f"Publish OK again {t_rec - t_restart:.2f}s after the "
                    f"restart; {load.ok} Predict OK, {load.failed} failed")
            time.sleep(1.0)
        finally:
            publisher.stop()
        acked = [c[3] for c in calls if c[2] == "OK"]
        newest = max([first] + acked)
        try:
            wait_until(lambda: load.newest_version() >= newest,
                       f"inference answering with v{newest}", 30)
        finally:
            load.stop()
        log(load.summary())

        # Publish during the outages: UNAVAILABLE, nothing else.
        for how, t_down, t_restart, _ in outages:
            during = [c for c in calls if c[0] >= t_down and c[1] <= t_restart]
            codes = {c[2] for c in during}
            slowest = max(c[1] - c[0] for c in during)
            log(f"{how} outage: {len(during)} Publish calls while Redis was "
                f"down, codes {sorted(codes)}, slowest {slowest * 1000:.0f} ms"
                f", e.g. {during[0][4]!r}")
            assert len(during) >= 3, during
            assert codes == {"UNAVAILABLE"}, during
        acked_all = [first] + acked
        listed = faultlib.check_store_outage_survived(
            env, stub, store, MODEL, calls, train_failures, publisher,
            acked_all)
        load.check()
        assert env.alive("inference") and env.alive("trainer")
        unavailable = sum(1 for c in calls if c[2] == "UNAVAILABLE")
        log(f"{len(calls)} Publish calls: {len(acked)} OK, {unavailable} "
            f"UNAVAILABLE; {len(acked_all)} acknowledged versions (v{first}.."
            f"v{newest}) all listed and exported after 2 Redis restarts "
            f"(SIGTERM, SIGKILL); {len(listed)} versions listed")
        print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
