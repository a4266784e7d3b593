#!/usr/bin/python3
"""KServe v2 REST of a real bnserve-inference process, called with curl over
HTTPS with a bearer token, as users, Kubernetes httpGet probes and Triton's
tools do: health without the token, metadata, infer (compared with the model
library's reference outputs), Triton's config / statistics / repository
index, errors, plain HTTP refused on the TLS port, and /metrics with the
token over TLS.

Usage (ctest runs it): rest_process_test.py --server BIN --publisher BIN

Loopback only, in a temporary directory removed at the end; the server is
always stopped (SIGTERM, then SIGKILL) and must exit 0 on SIGTERM.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "common"))
from ports import free_port  # noqa: E402  tests/common/ports.py

ARGS = None


class RestProcessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bnserve-rest-")
        cls.server = None
        try:
            cls._set_up()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _set_up(cls):
        t = cls.tmp
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             os.path.join(t, "server.key"), "-out",
             os.path.join(t, "server.crt"), "-days", "2", "-subj",
             "/CN=localhost", "-addext",
             "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60)
        with open(os.path.join(t, "token"), "w") as f:
            f.write("rest-s3cret\n")
        store = os.path.join(t, "store")
        res = subprocess.run([ARGS.publisher, store, "restclf", "11"],
                             check=True, capture_output=True, text=True,
                             timeout=60)
        cls.expected = json.loads(res.stdout)
        cls.http_port, cls.metrics_port = free_port(), free_port()
        cls.log = open(os.path.join(t, "server.log"), "w+")
        cls.server = subprocess.Popen(
            [ARGS.server, "--host=127.0.0.1", "--port=%d" % free_port(),
             "--http_port=%d" % cls.http_port,
             "--metrics_port=%d" % cls.metrics_port, "--store=" + store,
             "--tls_cert=" + os.path.join(t, "server.crt"),
             "--tls_key=" + os.path.join(t, "server.key"),
             "--token_file=" + os.path.join(t, "token")],
            stdout=cls.log, stderr=subprocess.STDOUT)
        # What a Kubernetes httpGet readiness probe does (scheme HTTPS, no
        # credentials): poll until 200.
        deadline = time.time() + 30
        while cls.curl("/v2/health/ready", token=False)[0] != 200:
            if time.time() > deadline or cls.server.poll() is not None:
                raise RuntimeError("never ready:\n" + cls.server_log())
            time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        if cls.server is not None and cls.server.poll() is None:
            cls.server.send_signal(signal.SIGTERM)
            try:
                code = cls.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                cls.server.kill()
                cls.server.wait()
                code = "killed"
            if code != 0:
                print("server exit:", code, cls.server_log())
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def server_log(cls):
        cls.log.seek(0)
        return cls.log.read()

    @classmethod
    def curl(cls, path, body=None, token=True, port=None, scheme="https"):
        """(HTTP status, parsed JSON body or text); status 0 = no answer."""
        port = port or cls.http_port
        cmd = ["curl", "-sS", "--max-time", "20", "-o", "-", "-w",
               "\n%{http_code}", "--cacert", os.path.join(cls.tmp,
                                                           "server.crt")]
        if token:
            cmd += ["-H", "Authorization: Bearer rest-s3cret"]
        if body is not None:
            cmd += ["-H", "Content-Type: application/json", "--data-binary",
                    body if isinstance(body, str) else json.dumps(body)]
        cmd.append("%s://127.0.0.1:%d%s" % (scheme, port, path))
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        text, _, code = res.stdout.rpartition("\n")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return int(code or 0), parsed

    def infer_body(self, name="input"):
        f = self.expected["features"]
        return {"id": "curl-1", "inputs": [{"name": name, "datatype": "FP32",
                                            "shape": [1, len(f)], "data": f}]}

    def test_health_needs_no_token_and_the_rest_does(self):
        self.assertEqual(self.curl("/v2/health/live", token=False)[0], 200)
        code, body = self.curl("/v2", token=False)
        self.assertEqual(code, 401)
        self.assertIn("Bearer", body["error"])
        code, body = self.curl("/v2")
        self.assertEqual(code, 200)
        self.assertEqual(body["name"], "bnserve")

    def test_metadata_and_readiness(self):
        code, md = self.curl("/v2/models/restclf")
        self.assertEqual(code, 200)
        self.assertEqual(md["platform"], "bnserve_snapshot")
        self.assertEqual(md["inputs"][0]["shape"],
                         [-1, len(self.expected["features"])])
        v = str(self.expected["version"])
        self.assertEqual(self.curl("/v2/models/restclf/versions/%s/ready"
                                   % v)[0], 200)
        self.assertEqual(self.curl("/v2/models/restclf/versions/99/ready")[0],
                         503)

    def test_infer_matches_the_reference(self):
        code, r = self.curl("/v2/models/restclf/infer", self.infer_body())
        self.assertEqual(code, 200, r)
        self.assertEqual(r["id"], "curl-1")
        outs = {o["name"]: o for o in r["outputs"]}
        for got, want in zip(outs["output"]["data"], self.expected["outputs"]):
            self.assertLessEqual(abs(got - want), 1e-5 * max(1, abs(want)))
        self.assertEqual(outs["class_id"]["data"], [self.expected["class_id"]])

    def test_errors(self):
        code, r = self.curl("/v2/models/restclf/infer",
                            self.infer_body(name="x"))
        self.assertEqual(code, 400)
        self.assertIn("'x'", r["error"])
        self.assertIn("'input'", r["error"])
        self.assertEqual(self.curl("/v2/models/nope/infer",
                                   self.infer_body())[0], 404)
        self.assertEqual(self.curl("/v2/models/restclf/infer", "{")[0], 400)

    def test_triton_extensions(self):
        self.curl("/v2/models/restclf/infer", self.infer_body())
        code, config = self.curl("/v2/models/restclf/config")
        self.assertEqual(code, 200)
        self.assertEqual(config["max_batch_size"], 65536)
        code, stats = self.curl("/v2/models/restclf/stats")
        self.assertEqual(code, 200)
        self.assertGreaterEqual(
            stats["model_stats"][0]["inference_stats"]["success"]["count"], 1)
        code, index = self.curl("/v2/repository/index", "")
        self.assertEqual(code, 200)
        self.assertEqual([(m["name"], m["state"]) for m in index],
                         [("restclf", "READY")])

    def test_plain_http_is_refused_on_the_tls_port(self):
        code, _ = self.curl("/v2/health/live", token=False, scheme="http")
        self.assertNotEqual(code, 200)

    def test_metrics_need_the_token_over_tls(self):
        code, _ = self.curl("/metrics", token=False, port=self.metrics_port)
        self.assertEqual(code, 401)
        self.curl("/v2/models/restclf/infer", self.infer_body())
        code, text = self.curl("/metrics", port=self.metrics_port)
        self.assertEqual(code, 200)
        self.assertIn('method="rest.ModelInfer"', text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--publisher", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[__file__] + rest, verbosity=2)
