#!/usr/bin/python3
"""Both dashboards in a real browser: Debian's headless Chromium, driven
through Debian's chromedriver over the plain WebDriver protocol (HTTP +
JSON from urllib; nothing is downloaded).

Real bnserve-trainer and bnserve-inference processes (loopback, a temporary
file store, a bearer token on both) and bnctl:
1. the trainer page asks for the token (no 401 in the console), takes it;
2. a digits job trains with bnctl while the page is open: the page's step
   count and loss curve change between two looks while the job runs (then
   the job is cancelled, so the test does not depend on the machine's
   speed);
3. after the job: the chart series (loss, accuracy, running vs minibatch
   mean and variance per batch-norm layer) are as many as the JSON says,
   the publish marks are the JSON's publishes, and the numbers in the jobs
   table equal /api/jobs;
4. Predict traffic (bnctl predict) and a label: the inference page shows
   the versions, labels and serving version of /api/models, the request
   count and latency percentiles of /api/traffic, which equal what
   Prometheus /metrics gives (requests_total, histogram_quantile computed
   here from the buckets), and the drift gauges of /api/drift, which equal
   the drift gauges of /metrics, most drifted first;
5. the browser console has no error on either page;
6. screenshots of both pages go to --screenshots (docs/img for the README).

Usage: dashboard_browser_test.py --build BUILD_DIR [--screenshots DIR]
(run from the repository root). Bounded in time; every process is stopped
at the end.
"""
import argparse
import base64
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
import skip  # noqa: E402
from ports import free_port  # noqa: E402  tests/common/ports.py

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "dash-s3cret"


def wait_until(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(
        f"timed out waiting for {what() if callable(what) else what}")


def http_get(url, token=TOKEN):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=10) as res:
        return res.read().decode()


def api(base, path):
    return json.loads(http_get(base + path))


class WebDriver:
    """The few WebDriver commands the test needs, over chromedriver's HTTP."""

    def __init__(self, tmp):
        self.port = free_port()
        self.log = open(os.path.join(tmp, "chromedriver.log"), "w+")
        self.proc = subprocess.Popen(
            [CHROMEDRIVER, f"--port={self.port}"], stdout=self.log,
            stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_until(self._ready, "chromedriver")
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,2400",
                         "--no-first-run", "--disable-extensions",
                         "--disable-background-networking",
                         f"--user-data-dir={os.path.join(tmp, 'chrome')}"]},
            "goog:loggingPrefs": {"browser": "ALL"}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _ready(self):
        try:
            with urllib.request.urlopen(self.base + "/status", timeout=2) as r:
                return json.loads(r.read())["value"]["ready"]
        except (OSError, ValueError, KeyError):
            return False

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data,
                                     method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as res:
                return json.loads(res.read())["value"]
        except urllib.error.HTTPError as e:
            raise AssertionError(f"WebDriver {method} {path}: "
                                 f"{e.read().decode()[:2000]}") from None

    def cmd(self, method, path, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url):
        self.cmd("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync",
                        {"script": script, "args": list(args)})

    def screenshot(self, path):
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.cmd("GET", "/screenshot")))

    def console(self):
        return self.cmd("POST", "/se/log", {"type": "browser"})

    def quit(self):
        try:
            self.cmd("DELETE", "")
        except (AssertionError, OSError):
            pass
        stop(self.proc)
        self.log.close()


def stop(proc, timeout=10):
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc else None
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def number(text):
    """A number as the page shows it (fmt() in dashboard.js)."""
    return None if text in ("–", "") else float(text)


def close(shown, expected, rel=1.5e-3, what=""):
    if expected is None:
        assert shown is None, f"{what}: shows {shown}, expected nothing"
        return
    assert shown is not None, f"{what}: shows nothing, expected {expected}"
    assert math.isclose(shown, expected, rel_tol=rel, abs_tol=1e-9), \
        f"{what}: page shows {shown}, JSON says {expected}"


def prometheus(text):
    """Samples of a Prometheus text exposition: [(name, labels, value)]."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def histogram_quantile(q, buckets):
    """PromQL's histogram_quantile over cumulative [(le, count)]."""
    buckets = sorted(buckets, key=lambda b: b[0])
    total = buckets[-1][1]
    if total == 0:
        return None
    rank = q * total
    for i, (le, count) in enumerate(buckets):
        if count >= rank:
            if math.isinf(le):
                return buckets[i - 1][0]
            lo, below = (0.0, 0.0) if i == 0 else buckets[i - 1]
            return lo + (le - lo) * (rank - below) / (count - below)
    return None


class Cluster:
    def __init__(self, build, tmp):
        self.bnctl_bin = os.path.join(build, "client/bnctl/bnctl")
        self.tmp = tmp
        token_file = os.path.join(tmp, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        self.token_file = token_file
        store = os.path.join(tmp, "store")
        ports = [free_port() for _ in range(5)]
        self.trainer_addr = f"127.0.0.1:{ports[0]}"
        self.server_addr = f"127.0.0.1:{ports[1]}"
        self.trainer_http = f"http://127.0.0.1:{ports[2]}"
        self.inference_http = f"http://127.0.0.1:{ports[3]}"
        self.metrics = f"http://127.0.0.1:{ports[4]}/metrics"
        self.logs = []
        common = ["--host=127.0.0.1", "--store=" + store,
                  "--token_file=" + token_file]
        self.trainer = self._start(
            [os.path.join(build, "server/trainer/bnserve-trainer"),
             f"--port={ports[0]}", f"--http_port={ports[2]}", *common],
            "trainer")
        self.inference = self._start(
            [os.path.join(build, "server/inference/bnserve-inference"),
             f"--port={ports[1]}", f"--http_port={ports[3]}",
             f"--metrics_port={ports[4]}", "--drift_sample_every=1",
             *common], "inference")
        for base in (self.trainer_http, self.inference_http):
            wait_until(lambda b=base: self._answers(b), base)

    def _start(self, argv, name):
        log = open(os.path.join(self.tmp, name + ".log"), "w+")
        self.logs.append(log)
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    @staticmethod
    def _answers(base):
        try:
            return "token_required" in http_get(base + "/api/auth", None)
        except OSError:
            return False

    def bnctl(self, *args, background=False):
        argv = [self.bnctl_bin, *args, "--token-file", self.token_file]
        if background:  # output to files: a full pipe would stall bnctl
            name = os.path.join(self.tmp, f"bnctl-{args[0]}-{time.time()}")
            proc = subprocess.Popen(argv, stdout=open(name + ".out", "w"),
                                    stderr=open(name + ".err", "w"))
            proc.stderr_file = name + ".err"
            return proc
        r = subprocess.run(argv, capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, f"bnctl {args}: {r.stderr}"
        return json.loads(r.stdout) if "--json" in args else r.stdout

    def stop(self):
        codes = [stop(self.trainer), stop(self.inference)]
        for log in self.logs:
            log.close()
        return codes


def enter_token(driver):
    wait_until(lambda: driver.js(
        "return document.body.dataset.token === 'needed' && "
        "!document.getElementById('token-form').hidden"), "the token field")
    driver.js("document.getElementById('token-input').value = arguments[0];"
              "document.getElementById('token-form').requestSubmit();", TOKEN)
    wait_until(lambda: driver.js(
        "return Number(document.body.dataset.polls || 0) >= 1"),
        "the first refresh with the token")


def wait_polls(driver, more=2):
    """Waits until the page has refreshed `more` times from now."""
    now = int(driver.js("return Number(document.body.dataset.polls || 0)"))
    wait_until(lambda: driver.js(
        "return Number(document.body.dataset.polls || 0)") >= now + more,
        "page refreshes")


TABLE_JS = """
const out = {};
for (const tr of document.querySelectorAll(arguments[0] + ' tbody tr')) {
  const row = {};
  for (const td of tr.querySelectorAll('td')) row[td.dataset.field] = td.textContent;
  out[tr.dataset.key] = row;
}
return out;"""

CHARTS_JS = """
const out = {};
for (const f of document.querySelectorAll('figure[data-chart]')) {
  out[f.dataset.chart] = {
    series: [...f.querySelectorAll('path.series')].map((p) => p.dataset.series),
    marks: [...f.querySelectorAll('line.mark')].map((m) => m.dataset.mark),
    d: [...f.querySelectorAll('path.series')].map((p) => p.getAttribute('d'))};
}
return out;"""


def check_trainer_page(driver, cluster, shots):
    driver.get(cluster.trainer_http + "/")
    enter_token(driver)
    # A job that would train for hours, watched while it trains and then
    # cancelled: the test does not depend on how fast this machine trains.
    train = cluster.bnctl(
        "train", "--trainer", cluster.trainer_addr, "--model", "digits",
        "--data", "data/digits/train.csv", "--hidden", "32,16",
        "--epochs", "100000", "--batch-size", "16", "--publish-every", "20000",
        "--json", background=True)
    try:
        wait_until(lambda: any(j["state"] == "TRAINING" and
                               j["last_published_version"] >= 2
                               for j in api(cluster.trainer_http,
                                            "/api/jobs")["jobs"]),
                   "the job to train and publish twice", timeout=120)
        wait_polls(driver)
        looks = []
        for _ in range(2):
            rows = driver.js(TABLE_JS, "#jobs")
            charts = driver.js(CHARTS_JS)
            looks.append((rows, charts))
            wait_polls(driver)
        (rows0, charts0), (rows1, charts1) = looks
        job_id = next(iter(rows1))
        assert rows0[job_id]["state"] == "TRAINING", rows0
        assert rows1[job_id]["state"] == "TRAINING", rows1
        s0, s1 = number(rows0[job_id]["steps"]), number(rows1[job_id]["steps"])
        assert s1 > s0, f"the page did not update while training: {s0} {s1}"
        assert charts1["loss"]["d"] != charts0["loss"]["d"], \
            "the loss curve did not change while training"
        print(f"trainer page follows the job: steps {s0:.0f} -> {s1:.0f}")
        cluster.bnctl("cancel", "--trainer", cluster.trainer_addr,
                      "--job", job_id)
    finally:
        try:
            train.wait(timeout=60)
        except subprocess.TimeoutExpired:
            train.kill()
            train.wait()
    err = open(train.stderr_file).read()[-2000:]
    assert train.returncode != 0 and "cancel" in err, (train.returncode, err)
    wait_until(lambda: api(cluster.trainer_http, "/api/jobs")["jobs"][0]
               ["state"] == "CANCELLED",
               lambda: "the job to be cancelled: " +
               http_get(cluster.trainer_http + "/api/jobs"))
    history = check_selected_job(driver, cluster, job_id)
    assert history["stride"] > 1, "expected a downsampled history"
    assert len(history["points"]) <= history["capacity"] == 512
    # A short job, kept at every step (what the README's screenshot shows:
    # the running averages following the minibatch values and settling),
    # selected with a click.
    cluster.bnctl("train", "--trainer", cluster.trainer_addr, "--model",
                  "digits", "--data", "data/digits/train.csv", "--hidden",
                  "32,16", "--epochs", "3", "--batch-size", "32",
                  "--publish-every", "40", "--seed", "3", "--json")
    short = api(cluster.trainer_http, "/api/jobs")["jobs"][-1]["job_id"]
    wait_until(lambda: short in driver.js(TABLE_JS, "#jobs"),
               "the new job in the table")
    driver.js("document.querySelector('#jobs tr[data-key=\"' + arguments[0] +"
              " '\"]').click()", short)
    wait_until(lambda: driver.js(
        "return document.querySelector('#jobs tr.selected').dataset.key")
        == short, "the clicked job to be selected")
    wait_polls(driver)
    history = check_selected_job(driver, cluster, short)
    assert history["stride"] == 1 and \
        len(history["points"]) == history["job"]["steps"], history["stride"]
    driver.screenshot(os.path.join(shots, "dashboard-trainer.png"))


def check_selected_job(driver, cluster, job_id):
    """The jobs table equals /api/jobs; the selected job's charts have the
    series and publish marks of its /api/jobs/{job}/history."""
    # The JSON before and after the page's look must agree (a cancelled
    # job's last step may still be finishing when its state reads
    # CANCELLED).
    for _ in range(10):
        jobs = api(cluster.trainer_http, "/api/jobs")["jobs"]
        history = api(cluster.trainer_http, f"/api/jobs/{job_id}/history")
        wait_polls(driver)
        rows = driver.js(TABLE_JS, "#jobs")
        charts = driver.js(CHARTS_JS)
        info = driver.js("return document.querySelector("
                         "'[data-field=history]').textContent")
        if (jobs == api(cluster.trainer_http, "/api/jobs")["jobs"] and
                history == api(cluster.trainer_http,
                               f"/api/jobs/{job_id}/history")):
            break
    assert sorted(rows) == sorted(j["job_id"] for j in jobs), rows
    for job in jobs:
        row = rows[job["job_id"]]
        assert row["state"] == job["state"] and row["model"] == job["model"]
        for field in ("steps", "examples_seen", "last_loss", "last_accuracy",
                      "last_published_version"):
            close(number(row[field]), job[field], what=f"jobs table {field}")
    # Series: loss, accuracy; per batch-norm layer running and minibatch
    # values of each shown unit, for the mean and the variance.
    assert charts["loss"]["series"] == ["loss"], charts["loss"]["series"]
    assert charts["accuracy"]["series"] == ["accuracy"]
    assert len(history["batch_norm"]) == 3, history["batch_norm"]
    for bn in history["batch_norm"]:
        for stat in ("mean", "var"):
            series = charts[f"bn{bn['layer']}-{stat}"]["series"]
            assert len(series) == 2 * bn["units"] == 8, series
    assert len(charts) == 2 + 2 * len(history["batch_norm"]), list(charts)
    marks = [f"v{p['version']}" for p in history["publishes"]]
    assert len(marks) >= 2, history["publishes"]
    for chart in charts.values():
        assert chart["marks"] == marks, (chart["marks"], marks)
    # The page draws the kept points and the latest step when it is newer.
    drawn = len(history["points"]) + (
        history["latest"]["step"] > history["points"][-1]["step"])
    assert info.startswith(job_id + " ") and \
        f"{drawn} points of {history['job']['steps']} steps" in info and \
        f"one every {history['stride']}" in info, (info, drawn)
    return history


def check_inference_page(driver, cluster, shots):
    cluster.bnctl("label", "set", "--trainer", cluster.trainer_addr,
                  "--model", "digits", "--label", "stable", "--version", "1")
    driver.get(cluster.inference_http + "/")
    enter_token(driver)
    predict = cluster.bnctl(
        "predict", "--server", cluster.server_addr, "--model", "digits",
        "--data", "data/digits/test.csv", "--json", background=True)
    assert predict.wait(timeout=120) == 0, open(predict.stderr_file).read()
    # Traffic from data another sensor might give: drift on top.
    cluster.bnctl("predict", "--server", cluster.server_addr, "--model",
                  "digits", "--features", ",".join(["16"] * 64), "--json")
    wait_polls(driver, 3)
    models = api(cluster.inference_http, "/api/models")
    traffic = api(cluster.inference_http, "/api/traffic")
    drift = api(cluster.inference_http, "/api/drift")
    metrics = prometheus(http_get(cluster.metrics))
    wait_polls(driver)
    rows = driver.js(TABLE_JS, "#models")
    digits = models["models"][0]
    assert len(rows) == len(digits["versions"]) >= 2, rows
    for v in digits["versions"]:
        row = rows[f"digits/{v['version']}"]
        assert row["labels"] == ", ".join(v["labels"]), row
        assert row["serving"] == ("serving" if v["version"] ==
                                  digits["serving_version"] else "loaded")
        close(number(row["training_step"]), v["training_step"],
              what="trained steps")
    assert "stable" in rows["digits/1"]["labels"]
    # Traffic: page = JSON = Prometheus.
    shown = driver.js("return document.querySelector("
                      "'[data-field=requests]').textContent")
    prom_total = sum(v for n, _, v in metrics
                     if n == "bnserve_inference_requests_total")
    assert number(shown) == traffic["requests"] == prom_total, \
        (shown, traffic["requests"], prom_total)
    methods = driver.js(TABLE_JS, "#traffic")
    for m in traffic["methods"]:
        row = methods[m["method"]]
        close(number(row["requests"]), m["requests"], what="requests")
        buckets = [(float("inf") if l["le"] == "+Inf" else float(l["le"]), v)
                   for n, l, v in metrics
                   if n == "bnserve_inference_request_duration_seconds_bucket"
                   and l["method"] == m["method"]]
        for q, field in ((0.5, "p50_ms"), (0.9, "p90_ms"), (0.99, "p99_ms")):
            prom = histogram_quantile(q, buckets) * 1e3
            close(m[field], prom, rel=1e-9, what=f"JSON {field} vs PromQL")
            close(number(row[field]), m[field], what=f"page {field}")
    assert methods["Predict"]["requests"] == "451", methods
    # Drift: page order and gauges = JSON = Prometheus.
    page = driver.js("""
      return [...document.querySelectorAll('.drift-layer')].map((l) => ({
        key: l.querySelector('.drift-head').dataset.key,
        charts: l.querySelectorAll('figure').length,
        series: l.querySelectorAll('path.series').length,
        g: Object.fromEntries([...l.querySelectorAll('.gauge')].map(
             (g) => [g.dataset.field, g.textContent]))}));""")
    assert len(page) == len(drift["layers"]) > 0
    gauges = {(l["model"], l["version"], l["layer"]): v
              for n, l, v in metrics
              if n == "bnserve_inference_drift_mean_shift_max"}
    for shown, layer in zip(page, drift["layers"]):
        key = f"{layer['model']}/{layer['version']}/{layer['layer']}"
        assert shown["key"] == key, (shown["key"], key)
        for field in ("mean_shift_max", "mean_shift_avg", "variance_ratio"):
            close(number(shown["g"][field]), layer[field], what=field)
        prom = gauges[(layer["model"], str(layer["version"]),
                       str(layer["layer"]))]
        close(layer["mean_shift_max"], prom, rel=1e-6, what="drift vs /metrics")
    top = page[:6]
    assert all(p["charts"] == 2 and p["series"] == 4 for p in top), top
    maxima = [l["mean_shift_max"] for l in drift["layers"]]
    assert maxima == sorted(maxima, reverse=True), maxima
    charts = driver.js(CHARTS_JS)
    assert charts["rate"]["series"] == ["req/s"], charts["rate"]
    driver.screenshot(os.path.join(shots, "dashboard-inference.png"))


def check_console(driver, page):
    errors = [e for e in driver.console() if e.get("level") == "SEVERE"]
    assert not errors, f"console errors on the {page} page: {errors}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", required=True)
    parser.add_argument("--screenshots", default=None)
    args = parser.parse_args()
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not os.access(tool, os.X_OK):
            skip.skip_script(f"{tool} is not installed (Debian packages "
                             "chromium and chromium-driver)")
    tmp = tempfile.mkdtemp(prefix="bnserve-dash-")
    shots = os.path.abspath(args.screenshots or
                            os.path.join(args.build, "dashboard-screenshots"))
    os.makedirs(shots, exist_ok=True)
    cluster = driver = None
    ok = False
    try:
        cluster = Cluster(os.path.abspath(args.build), tmp)
        driver = WebDriver(tmp)
        check_trainer_page(driver, cluster, shots)
        check_console(driver, "trainer")
        check_inference_page(driver, cluster, shots)
        check_console(driver, "inference")
        ok = True
    finally:
        if driver is not None:
            driver.quit()
        codes = cluster.stop() if cluster is not None else []
        if not ok:
            for name in ("trainer.log", "inference.log", "chromedriver.log"):
                path = os.path.join(tmp, name)
                if os.path.exists(path):
                    print(f"--- {name}\n" + open(path).read()[-4000:])
        shutil.rmtree(tmp, ignore_errors=True)
    assert codes == [0, 0], f"servers did not exit 0 on SIGTERM: {codes}"
    print(f"OK: both dashboards checked in Chromium; screenshots in {shots}")


if __name__ == "__main__":
    main()
