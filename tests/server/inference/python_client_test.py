#!/usr/bin/python3
"""An independent client for bnserve-inference: Python stubs generated at test
time from the project's protos (Debian's python3-grpcio and python3-grpc-tools)
call Predict, ModelInfer, health and reflection on a real server process.

Usage (ctest runs it): python_client_test.py --server BIN --publisher BIN
  --proto_root DIR

Everything runs on loopback in a temporary directory that is removed at the
end; the server process is always stopped (SIGTERM, then SIGKILL).
"""
import argparse
import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "common"))
from ports import free_port  # noqa: E402  tests/common/ports.py

ARGS = None
GRPC_PROTO = "/usr/share/grpc-proto"


def close(got, want, rel=1e-5):
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert abs(g - w) <= rel * max(1.0, abs(w)), (got, want)


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bnserve-pytest-")
        cls.server = None
        try:
            cls._set_up()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _set_up(cls):
        # Stubs.
        out = os.path.join(cls.tmp, "stubs")
        os.makedirs(out)
        # health.proto and reflection.proto would generate modules under
        # grpc/..., which the grpcio package shadows: copy them elsewhere
        # (the proto package, and so the wire names, stay the same).
        extra = os.path.join(cls.tmp, "extra_protos")
        os.makedirs(os.path.join(extra, "pyhealth"))
        os.makedirs(os.path.join(extra, "pyreflection"))
        shutil.copy(os.path.join(GRPC_PROTO, "grpc/health/v1/health.proto"),
                    os.path.join(extra, "pyhealth"))
        shutil.copy(os.path.join(GRPC_PROTO,
                                 "grpc/reflection/v1alpha/reflection.proto"),
                    os.path.join(extra, "pyreflection"))
        protos = [
            "bnserve/v1/snapshot.proto",
            "bnserve/v1/inference.proto",
            "inference/grpc_service.proto",
            "pyhealth/health.proto",
            "pyreflection/reflection.proto",
        ]
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc",
             "-I" + ARGS.proto_root, "-I" + extra,
             "--python_out=" + out, "--grpc_python_out=" + out] + protos,
            check=True, timeout=60)
        sys.path.insert(0, out)
        global grpc, inference_pb2, inference_pb2_grpc, kserve_pb2
        global kserve_pb2_grpc, health_pb2, health_pb2_grpc
        global reflection_pb2, reflection_pb2_grpc
        import grpc
        from bnserve.v1 import inference_pb2, inference_pb2_grpc
        from inference import grpc_service_pb2 as kserve_pb2
        from inference import grpc_service_pb2_grpc as kserve_pb2_grpc
        from pyhealth import health_pb2, health_pb2_grpc
        from pyreflection import reflection_pb2, reflection_pb2_grpc

        # A published model and its expected outputs.
        store = os.path.join(cls.tmp, "store")
        res = subprocess.run([ARGS.publisher, store, "pyclf", "7"],
                             check=True, capture_output=True, text=True,
                             timeout=60)
        cls.expected = json.loads(res.stdout)

        # The server: store and metrics port from the environment (BNSERVE_*),
        # the rest as flags.
        cls.port, cls.metrics_port = free_port(), free_port()
        env = dict(os.environ, BNSERVE_STORE=store,
                   BNSERVE_METRICS_PORT=str(cls.metrics_port))
        cls.log = open(os.path.join(cls.tmp, "server.log"), "w+")
        cls.server = subprocess.Popen(
            [ARGS.server, "--host=127.0.0.1", "--port=%d" % cls.port,
             "--log_level=info", "--http_port=0"],
            stdout=cls.log, stderr=subprocess.STDOUT, env=env)
        # Wait for the port first: a channel that fails to connect backs off
        # for a second or more before trying again.
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", cls.port), 1).close()
                break
            except OSError:
                if time.time() > deadline or cls.server.poll() is not None:
                    raise RuntimeError("server did not listen:\n" +
                                       cls.server_log())
                time.sleep(0.02)
        cls.channel = grpc.insecure_channel(
            "127.0.0.1:%d" % cls.port,
            options=[("grpc.initial_reconnect_backoff_ms", 50),
                     ("grpc.max_reconnect_backoff_ms", 200)])
        health = health_pb2_grpc.HealthStub(cls.channel)
        while True:
            try:
                r = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            if time.time() > deadline or cls.server.poll() is not None:
                raise RuntimeError("server did not become healthy:\n" +
                                   cls.server_log())
            time.sleep(0.05)

    @classmethod
    def server_log(cls):
        cls.log.flush()
        cls.log.seek(0)
        return cls.log.read()

    @classmethod
    def tearDownClass(cls):
        if cls.server is not None and cls.server.poll() is None:
            cls.server.kill()
            cls.server.wait(timeout=10)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_1_predict(self):
        stub = inference_pb2_grpc.InferenceStub(self.channel)
        e = self.expected
        r = stub.Predict(inference_pb2.PredictRequest(
            model="pyclf", features=e["features"]), timeout=10)
        self.assertEqual(r.model, "pyclf")
        self.assertEqual(r.version, e["version"])
        close(list(r.outputs), e["outputs"])
        close(list(r.probabilities), e["probabilities"])
        self.assertEqual(r.class_id, e["class_id"])
        self.assertEqual(r.class_name, "c%d" % e["class_id"])
        with self.assertRaises(grpc.RpcError) as err:
            stub.Predict(inference_pb2.PredictRequest(
                model="pyclf", features=[1.0]), timeout=10)
        self.assertEqual(err.exception.code(),
                         grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as err:
            stub.Predict(inference_pb2.PredictRequest(
                model="nope", features=e["features"]), timeout=10)
        self.assertEqual(err.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_2_model_infer(self):
        stub = kserve_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        e = self.expected
        f = len(e["features"])
        tensor = kserve_pb2.ModelInferRequest.InferInputTensor(
            name="input", datatype="FP32", shape=[1, f],
            contents=kserve_pb2.InferTensorContents(fp32_contents=e["features"]))
        r = stub.ModelInfer(kserve_pb2.ModelInferRequest(
            model_name="pyclf", id="py", inputs=[tensor]), timeout=10)
        self.assertEqual(r.model_version, str(e["version"]))
        self.assertEqual(r.id, "py")
        outs = {o.name: o for o in r.outputs}
        close(list(outs["output"].contents.fp32_contents), e["outputs"])
        close(list(outs["probabilities"].contents.fp32_contents),
              e["probabilities"])
        self.assertEqual(list(outs["class_id"].contents.int64_contents),
                         [e["class_id"]])

        # Raw little-endian contents, as tritonclient sends them.
        raw_tensor = kserve_pb2.ModelInferRequest.InferInputTensor(
            name="input", datatype="FP32", shape=[1, f])
        r = stub.ModelInfer(kserve_pb2.ModelInferRequest(
            model_name="pyclf", inputs=[raw_tensor],
            raw_input_contents=[struct.pack("<%df" % f, *e["features"])]),
            timeout=10)
        self.assertEqual(r.outputs[0].name, "output")
        got = struct.unpack("<%df" % len(e["outputs"]),
                            r.raw_output_contents[0])
        close(list(got), e["outputs"])

        bad = kserve_pb2.ModelInferRequest.InferInputTensor(
            name="input", datatype="INT32", shape=[1, f],
            contents=kserve_pb2.InferTensorContents(int_contents=[1] * f))
        with self.assertRaises(grpc.RpcError) as err:
            stub.ModelInfer(kserve_pb2.ModelInferRequest(
                model_name="pyclf", inputs=[bad]), timeout=10)
        self.assertEqual(err.exception.code(),
                         grpc.StatusCode.INVALID_ARGUMENT)

        md = stub.ModelMetadata(kserve_pb2.ModelMetadataRequest(name="pyclf"),
                                timeout=10)
        self.assertEqual(list(md.inputs[0].shape), [-1, f])
        self.assertTrue(stub.ServerReady(kserve_pb2.ServerReadyRequest(),
                                         timeout=10).ready)

    def test_3_reflection_lists_the_services(self):
        stub = reflection_pb2_grpc.ServerReflectionStub(self.channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
            timeout=10)
        names = {s.name for r in responses
                 for s in r.list_services_response.service}
        for want in ("bnserve.v1.Inference", "inference.GRPCInferenceService",
                     "grpc.health.v1.Health"):
            self.assertIn(want, names)

    def test_4_metrics(self):
        url = "http://127.0.0.1:%d/metrics" % self.metrics_port
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read().decode()
        samples = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        self.assertGreaterEqual(samples[
            'bnserve_inference_requests_total{method="Predict",code="OK"}'], 1)
        self.assertEqual(samples[
            'bnserve_inference_model_loaded_version{model="pyclf"}'],
            self.expected["version"])

    def test_5_sigterm_drains_and_exits_zero(self):
        # Draining waits (up to 5 s) for clients to leave: close ours first.
        # No timing assertion: the events (signal, drain, stop) in order and
        # exit 0; the 30 s wait is only a hang guard.
        self.channel.close()
        self.server.send_signal(signal.SIGTERM)
        self.assertEqual(self.server.wait(timeout=30), 0)
        log = self.server_log()
        listening = log.find("listening on :%d" % self.port)
        draining = log.find("signal %d: draining" % signal.SIGTERM)
        stopped = log.find("INFO stopped")
        self.assertGreaterEqual(listening, 0, log)
        self.assertGreater(draining, listening, log)
        self.assertGreater(stopped, draining, log)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--publisher", required=True)
    parser.add_argument("--proto_root", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
