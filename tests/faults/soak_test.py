#!/usr/bin/python3
"""Soak: a new version published every second while clients call Predict.

One trainer and one inference server on a file store (SOAK_STORE=redis:
on our own redis-server with AOF instead). A publisher trains two minibatches
and publishes, at most once per second, SOAK_SECONDS versions; CLIENTS client
threads call Predict (each at most RATE calls/s). The number of publishes is
fixed, not the time: how fast a loaded machine gets through them is not
checked (a hang guard of 2 x SOAK_SECONDS + 30 s only). The inference
server's resident memory (VmRSS) is sampled every second. Checks, at the end:
- zero failed Predict calls and zero failed publishes;
- the server hot-reloaded: Predict answered with (nearly) every published
  version, and with the last one at the end;
- RSS flat over the whole run after the warm-up (the first max(15 s, 10%)):
  the least-squares line through every post-warm-up sample rises less than
  5% from the end of the warm-up to the end, and the median of the 5 samples
  ending at the end is less than 5% above the median of the 5 ending at the
  end of the warm-up.
(Not checked in a sanitizer build, where ASan's quarantine holds freed memory;
LeakSanitizer covers leaks there.) It also prints the inference server's own Predict latency histogram (from
its /metrics endpoint) beside the latency the clients saw, to tell a slow
server from a saturated machine.

Usage: soak_test.py BUILD_DIR
  env SOAK_SECONDS (default 600: the 10-minute soak; ctest runs 45),
      SOAK_CLIENTS (4), SOAK_RATE (100 per client), SOAK_STORE (file|redis),
      SOAK_RSS_CSV (write the samples there)
"""
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import log, wait_until  # noqa: E402

MODEL = "soak"


def least_squares(points):
    """Slope and intercept of the least-squares line through (x, y)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    slope = sxy / sxx if sxx > 0 else 0.0
    return slope, my - slope * mx


def main():
    duration = float(os.environ.get("SOAK_SECONDS", "600"))
    clients = int(os.environ.get("SOAK_CLIENTS", "4"))
    rate = float(os.environ.get("SOAK_RATE", "100"))
    kind = os.environ.get("SOAK_STORE", "file")
    warmup = max(15.0, 0.1 * duration)
    log(f"soak: {duration:.0f}s ({warmup:.0f}s warm-up), {clients} clients "
        f"x {rate:.0f}/s, {kind} store, one publish per second")
    with faultlib.Env(sys.argv[1], "faults-soak") as env:
        tport, iport = faultlib.free_port(), faultlib.free_port()
        taddr, iaddr = f"127.0.0.1:{tport}", f"127.0.0.1:{iport}"
        if kind == "redis":
            rport = faultlib.free_port()
            env.start_redis(rport)
            store = f"redis://127.0.0.1:{rport}/0"
        else:
            store = os.path.join(env.work, "store")
        xs, ys = faultlib.load_csv(
            os.path.join(faultlib.REPO, "data/digits/train.csv"))
        xtest, _ = faultlib.load_csv(
            os.path.join(faultlib.REPO, "data/digits/test.csv"))
        env.start_trainer(tport, store)
        stub = env.trainer_stub(taddr)
        job = faultlib.create_job(env, stub, MODEL, [128, 64])
        faultlib.train(stub, job, xs, ys, 10)
        code, first, details = faultlib.publish(stub, job)
        assert code == "OK", (code, details)
        mport = faultlib.free_port()
        inference = env.start_inference(iport, store, metrics_port=mport)
        env.wait_health(iaddr, "inference", inference)
        pid = inference.pid

        load = faultlib.Load(iaddr, MODEL, xtest, threads=clients,
                             rate=rate).start()
        published = [first]
        publish_failures = []
        samples = []   # (t, inference RSS kB, trainer RSS kB)
        start = time.monotonic()
        next_publish = start + 1.0
        next_report = start + 60.0
        target = int(duration)  # publishes after the first
        hang_guard = start + 2 * duration + 30
        try:
            while len(published) <= target:
                now = time.monotonic()
                assert now < hang_guard, (
                    f"hang guard: {len(published) - 1} of {target} publishes "
                    f"in {now - start:.0f} s")
                samples.append((now - start, faultlib.rss_kb(pid),
                                faultlib.rss_kb(env.procs["trainer"].pid)))
                if now >= next_publish:
                    try:
                        faultlib.train(stub, job, xs, ys, 2)
                        code, version, details = faultlib.publish(stub, job)
                    except env.grpc.RpcError as e:
                        code, version, details = (e.code().name, 0,
                                                  e.details())
                    if code == "OK":
                        published.append(version)
                    else:
                        publish_failures.append((code, details))
                    next_publish += 1.0
                if now >= next_report:
                    log(f"{now - start:.0f}s: {len(published)} published, "
                        f"{load.ok} Predict OK, {load.failed} failed, "
                        f"RSS {samples[-1][1]} kB")
                    next_report += 60.0
                assert inference.poll() is None, "inference server died"
                time.sleep(max(0.0, next_publish - time.monotonic()))
            wait_until(lambda: load.newest_version() >= published[-1],
                       f"inference answering with v{published[-1]}", 30)
        finally:
            load.stop()

        csv = os.environ.get("SOAK_RSS_CSV")
        if csv:
            with open(csv, "w") as f:
                f.write("seconds,inference_rss_kb,trainer_rss_kb\n")
                for t, r, tr in samples:
                    f.write(f"{t:.1f},{r},{tr}\n")

        def median_before(t):
            window = [r for s, r, _ in samples if s <= t][-5:]
            return statistics.median(window)
        end = samples[-1][0]
        rss_warm = median_before(warmup)
        rss_end = median_before(end)
        # The trend over the whole post-warm-up run (a slow leak shows as a
        # slope even when the two end windows are noisy).
        post = [(s, r) for s, r, _ in samples if s >= warmup]
        slope, intercept = least_squares(post)
        fit_warm = intercept + slope * warmup
        fit_growth = slope * (end - warmup) / fit_warm
        rss_max = max(r for _, r, _ in samples)
        rss_start = samples[0][1]
        growth = (rss_end - rss_warm) / rss_warm
        answered = set(load.versions)
        missed = sorted(set(published) - answered)
        log(load.summary())
        buckets = faultlib.server_predict_latency(mport)
        if buckets:
            total = buckets.get("+Inf", 0)
            log("server-side Predict latency (its /metrics histogram): "
                f"{total} calls, " + ", ".join(
                    f"{total - buckets[le]} over {float(le) * 1000:g} ms"
                    for le in ("0.01", "0.1", "1") if le in buckets))
        log(f"{len(published)} versions published (v{published[0]}.."
            f"v{published[-1]}), {len(publish_failures)} publish failures; "
            f"Predict answered by {len(answered & set(published))} of them")
        log(f"inference RSS: start {rss_start} kB, end of warm-up "
            f"{rss_warm} kB, end {rss_end} kB, max {rss_max} kB, growth "
            f"{growth * 100:+.2f}% (limit +5%); fitted over {len(post)} "
            f"post-warm-up samples {slope * 60:+.1f} kB/min, "
            f"{fit_growth * 100:+.2f}% over the run (limit +5%); trainer RSS "
            f"{samples[0][2]} -> {samples[-1][2]} kB")
        load.check()
        assert not publish_failures, publish_failures[:5]
        assert len(published) == target + 1, (len(published), target)
        # A reload takes milliseconds and clients ask hundreds of times a
        # second: almost every version must have answered some request.
        assert len(missed) <= max(2, 0.05 * len(published)), missed
        sanitized = env.sanitizers()
        if sanitized:
            # ASan's quarantine and shadow memory make RSS meaningless as a
            # leak signal (LeakSanitizer checks leaks in that build).
            log(f"RSS limit not checked: a {sanitized} sanitizer build")
        else:
            assert growth < 0.05, f"RSS grew {growth * 100:.2f}%"
            assert fit_growth < 0.05, (
                f"RSS trend over the run {fit_growth * 100:.2f}%")
        print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
