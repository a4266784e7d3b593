#!/usr/bin/python3
"""Fault: the Redis master under Sentinel is killed with SIGKILL, KILLS times,
while two inference servers serve Predict under load and a trainer publishes
every ~100 ms.

Our own processes on free loopback ports, files in the temp directory: a
master and 2 replicas (`--appendonly yes --appendfsync always`) and 3
Sentinels monitoring them as `mymaster` (quorum 2, down-after 1 s). The
trainer and both inference servers use
`redis-sentinel://127.0.0.1:<s1>,<s2>,<s3>/mymaster/0`; the trainer runs with
`--redis_min_replicas 2`, so a publish is acknowledged only once both
replicas have it. A publisher thread loops: one training minibatch, then
Publish; every acknowledged (OK) version is recorded. Each round kills the
master the Sentinels name, waits until they name another node that answers
ROLE master, restarts the killed node as a replica of the new master (same
AOF directory), and waits until the new master has both replicas online.
Checks:
- zero failed Predict calls on both inference servers during the whole run;
- Publish fails only with UNAVAILABLE, and succeeds again after every kill
  (within 30 s; the time is measured and reported);
- no acknowledged version is lost: every one is listed by the trainer's
  ListVersions and reads and verifies with `bnctl export --store
  redis-sentinel://…`; acknowledged versions are unique and increase;
- both inference servers answer with a version published after the last
  failover (pub/sub re-subscribed on the new master, or polling).

Usage: redis_failover_test.py BUILD_DIR   (env KILLS, default 5)
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import log, wait_until  # noqa: E402

MODEL = "failover"


def cli(port, *args):
    r = subprocess.run(["redis-cli", "-p", str(port), *args],
                       capture_output=True, text=True, timeout=10)
    return r.stdout.strip()


class SentinelSet:
    """Master + 2 replicas + 3 Sentinels, started through `env`."""

    def __init__(self, env):
        self.env = env
        self.ports = [faultlib.free_port() for _ in range(3)]
        self.sentinels = [faultlib.free_port() for _ in range(3)]
        for i, port in enumerate(self.ports):
            self.start_node(i, None if i == 0 else self.ports[0])
        wait_until(lambda: "connected_slaves:2" in cli(
            self.ports[0], "info", "replication"), "2 replicas attached")
        for i, port in enumerate(self.sentinels):
            conf = os.path.join(env.work, f"sentinel{i}.conf")
            with open(conf, "w") as f:
                f.write(f"port {port}\nbind 127.0.0.1\ndaemonize no\n"
                        f"dir {env.work}\n"
                        f"sentinel monitor mymaster 127.0.0.1 "
                        f"{self.ports[0]} 2\n"
                        "sentinel down-after-milliseconds mymaster 1000\n"
                        "sentinel failover-timeout mymaster 5000\n")
            env.start(f"sentinel{i}", ["redis-sentinel", conf])

        def sentinels_ready():
            for port in self.sentinels:
                fields = cli(port, "sentinel", "master", "mymaster").split()
                info = dict(zip(fields[::2], fields[1::2]))
                if (info.get("num-slaves") != "2" or
                        info.get("num-other-sentinels") != "2"):
                    return False
            return True
        wait_until(sentinels_ready, "every Sentinel sees 2 replicas and the "
                   "2 other Sentinels", 60)

    def uri(self):
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
        return f"redis-sentinel://{hosts}/mymaster/0"

    def start_node(self, i, master_port):
        data = os.path.join(self.env.work, f"redis{i}")
        os.makedirs(data, exist_ok=True)
        argv = ["redis-server", "--bind", "127.0.0.1", "--port",
                str(self.ports[i]), "--dir", data, "--appendonly", "yes",
                "--appendfsync", "always", "--save", "", "--daemonize", "no",
                "--repl-diskless-sync-delay", "0"]
        if master_port is not None:
            argv += ["--replicaof", "127.0.0.1", str(master_port)]
        proc = self.env.start(f"redis{i}", argv)
        wait_until(lambda: proc.poll() is None and
                   cli(self.ports[i], "ping") == "PONG", f"redis{i} PONG")

    def master(self):
        """The master a majority of the Sentinels names (one that led an
        unfinished failover can name a stale node for a while)."""
        votes = {}
        for port in self.sentinels:
            out = cli(port, "sentinel", "get-master-addr-by-name",
                      "mymaster").split()
            if len(out) == 2:
                votes[int(out[1])] = votes.get(int(out[1]), 0) + 1
                if votes[int(out[1])] > len(self.sentinels) // 2:
                    return int(out[1])
        return None

    def kill_master(self):
        """SIGKILLs the master; returns (seconds until a replica was
        promoted, seconds until the killed node was back as a replica)."""
        old = self.master()
        assert old is not None and cli(old, "role").split("\n")[0] == \
            "master", f"no agreed master to kill ({old})"
        i = self.ports.index(old)
        t0 = time.monotonic()
        self.env.kill(f"redis{i}", signal.SIGKILL)

        def promoted():
            now = self.master()
            return (now is not None and now != old and
                    cli(now, "role").split("\n")[0] == "master")
        wait_until(promoted, "the Sentinels to promote a replica", 60)
        t_promoted = time.monotonic() - t0
        self.start_node(i, self.master())

        # Ask for the master afresh each time: on a loaded machine the
        # Sentinels may fail over a second time (a new master that misses
        # pings for down-after), and then the replicas follow that one.
        def settled():
            now = self.master()
            return now is not None and cli(now, "info", "replication").count(
                "state=online") == 2
        wait_until(settled, "both replicas online on the agreed master", 60)
        return t_promoted, time.monotonic() - t0


def main():
    kills = int(os.environ.get("KILLS", "5"))
    with faultlib.Env(sys.argv[1], "faults-failover") as env:
        redis = SentinelSet(env)
        store = redis.uri()
        tport, i1, i2 = (faultlib.free_port(), faultlib.free_port(),
                         faultlib.free_port())
        taddr = f"127.0.0.1:{tport}"
        xs, ys = faultlib.load_csv(
            os.path.join(faultlib.REPO, "data/digits/train.csv"))
        xtest, _ = faultlib.load_csv(
            os.path.join(faultlib.REPO, "data/digits/test.csv"))

        env.start_trainer(tport, store, extra=("--redis_min_replicas", "2"))
        stub = env.trainer_stub(taddr)
        job = faultlib.create_job(env, stub, MODEL, [64, 32])
        faultlib.train(stub, job, xs, ys, 10)
        code, first, details = faultlib.publish(stub, job)
        assert code == "OK", (code, details)
        loads = []
        for name, port in (("inference1", i1), ("inference2", i2)):
            proc = env.start_inference(port, store, name=name)
            env.wait_health(f"127.0.0.1:{port}", name, proc)
            loads.append(faultlib.Load(f"127.0.0.1:{port}", MODEL, xtest,
                                       threads=2, rate=100).start())

        publisher = faultlib.Publisher(env, taddr, job, xs, ys).start()
        calls = publisher.calls  # (t0, t1, code, version, details)
        train_failures = publisher.train_failures
        rounds = []   # (promoted s, replica back s, publish resumed s)
        try:
            for k in range(kills):
                time.sleep(1.5)
                t_kill = time.monotonic()
                promoted, back = redis.kill_master()
                wait_until(lambda: any(c[0] > t_kill and c[2] == "OK"
                                       for c in calls),
                           f"a successful Publish after kill {k + 1}", 30)
                resumed = min(c[1] for c in calls
                              if c[0] > t_kill and c[2] == "OK") - t_kill
                rounds.append((promoted, back, resumed))
                refused = [c for c in calls
                           if c[0] > t_kill and c[2] == "UNAVAILABLE"]
                if refused:   # what Publish said meanwhile: first and last
                    for c in (refused[0], refused[-1]):
                        log(f"  +{c[0] - t_kill:.2f}s UNAVAILABLE: "
                            f"{c[4][:220]}")
                log(f"kill {k + 1}: replica promoted after {promoted:.2f}s, "
                    f"killed node back as a replica after {back:.2f}s, "
                    f"Publish OK again {resumed:.2f}s after the kill; "
                    + "; ".join(f"{l.ok} Predict OK, {l.failed} failed"
                                for l in loads))
            time.sleep(1.0)
            # Training must work again once the store is back: the last
            # replica may take a while to resync (WAIT needs it).
            wait_until(lambda: publisher.trains[-1:] == ["OK"],
                       "a training step after the last failover", 60)
        finally:
            publisher.stop()
        acked = [c[3] for c in calls if c[2] == "OK"]
        newest = max([first] + acked)
        try:
            for load in loads:
                wait_until(lambda: load.newest_version() >= newest,
                           f"{load.addr} answering with v{newest}", 30)
        finally:
            for load in loads:
                load.stop()
        for load in loads:
            log(load.summary())

        acked_all = [first] + acked
        faultlib.check_store_outage_survived(
            env, stub, store, MODEL, calls, train_failures, publisher,
            acked_all)
        for load in loads:
            load.check()
        assert env.alive("trainer") and all(
            env.alive(n) for n in ("inference1", "inference2"))
        unavailable = sum(1 for c in calls if c[2] == "UNAVAILABLE")
        resumed = sorted(r[2] for r in rounds)
        log(f"{kills} master kills: {len(calls)} Publish calls, {len(acked)} "
            f"OK, {unavailable} UNAVAILABLE; {len(acked_all)} acknowledged "
            f"versions (v{first}..v{newest}) all listed and exported; "
            f"Publish resumed {resumed[0]:.2f}..{resumed[-1]:.2f}s after a "
            f"kill (Sentinel promoted a replica after "
            f"{min(r[0] for r in rounds):.2f}..{max(r[0] for r in rounds):.2f}"
            f"s); Predict: " + ", ".join(
                f"{l.ok} OK / {l.failed} failed" for l in loads))
        print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
