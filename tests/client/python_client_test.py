#!/usr/bin/python3
"""Tests of the Python client examples in client/python/ (run by ctest with
/usr/bin/python3 from the repository root; BNCTL names the built bnctl).

* predict.py generates its stubs from proto/ and calls Predict on a fake
  Inference server written here with the same stubs (pinning, the bearer
  token, the error format);
* torch_to_bnserve.py writes JSON that `bnctl import` accepts, and the
  running statistics and weights that come back from `bnctl export`,
  evaluated with the documented inference-mode formula in numpy, reproduce
  the PyTorch model's eval() outputs.
"""

import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "client", "python"))
sys.path.insert(0, os.path.join(REPO, "tests", "common"))

import predict  # noqa: E402
import skip  # noqa: E402

BNCTL = os.environ.get("BNCTL", os.path.join(REPO, "build/client/bnctl/bnctl"))


class PredictPyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import grpc

        cls.stubs = tempfile.mkdtemp(prefix="bnserve_pytest_")
        predict.generate_stubs(os.path.join(REPO, "proto"), cls.stubs)
        cls.pb2, cls.pb2_grpc = predict.load_stubs(cls.stubs)
        cls.requests = []
        test = cls

        class FakeInference(cls.pb2_grpc.InferenceServicer):
            def Predict(self, request, context):
                test.requests.append(request)
                md = dict(context.invocation_metadata())
                if md.get("authorization") != "Bearer tok":
                    context.abort(grpc.StatusCode.UNAUTHENTICATED, "no token")
                if request.model != "digits":
                    context.abort(grpc.StatusCode.NOT_FOUND,
                                  "unknown model " + request.model)
                version = request.select.version or 3
                return test.pb2.PredictResponse(
                    model=request.model, version=version,
                    outputs=[0.1, 2.0], probabilities=[0.2, 0.8],
                    class_id=1, class_name="1")

        cls.server = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
        cls.pb2_grpc.add_InferenceServicer_to_server(FakeInference(),
                                                     cls.server)
        port = cls.server.add_insecure_port("127.0.0.1:0")
        cls.server.start()
        cls.address = "127.0.0.1:%d" % port
        cls.token = os.path.join(cls.stubs, "token")
        with open(cls.token, "w") as f:
            f.write("tok\n")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop(None)

    def run_predict(self, *args):
        return subprocess.run(
            ["/usr/bin/python3", os.path.join(REPO, "client/python/predict.py"),
             "--server", self.address, "--token-file", self.token] +
            list(args), capture_output=True, text=True, timeout=120)

    def test_one_prediction_with_generated_stubs(self):
        r = self.run_predict("--model", "digits", "--features=-1,2.5,3",
                             "--version", "2", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out["version"], 2)
        self.assertEqual(out["class_id"], 1)
        self.assertEqual(self.requests[-1].select.version, 2)
        self.assertEqual(list(self.requests[-1].features), [-1.0, 2.5, 3.0])

    def test_text_output_and_label(self):
        r = self.run_predict("--model", "digits", "--features", "1,2",
                             "--label", "stable")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("model digits version 3: class 1", r.stdout)
        self.assertEqual(self.requests[-1].select.label, "stable")

    def test_errors_print_the_grpc_code(self):
        r = self.run_predict("--model", "nope", "--features", "1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("error: NOT_FOUND: unknown model nope", r.stderr)

    def test_pregenerated_stubs(self):
        r = subprocess.run(
            ["/usr/bin/python3", os.path.join(REPO, "client/python/predict.py"),
             "--server", self.address, "--model", "digits", "--features", "1",
             "--stubs", self.stubs],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 1)  # no token: the fake refuses
        self.assertIn("error: UNAUTHENTICATED", r.stderr)


def numpy_forward(snapshot, x):
    """Inference mode, exactly as docs/DESIGN.md section 1.3 states it."""
    h = np.asarray(x, dtype=np.float64)
    for layer in snapshot["layers"]:
        if layer["type"] == "dense":
            h = h @ np.asarray(layer["weight"]).T
            if layer["bias"] is not None:
                h = h + np.asarray(layer["bias"])
        elif layer["type"] == "batch_norm":
            h = ((h - np.asarray(layer["running_mean"])) /
                 np.sqrt(np.asarray(layer["running_var"]) + layer["eps"]) *
                 np.asarray(layer["gamma"]) + np.asarray(layer["beta"]))
        else:
            fn = layer["fn"]
            if fn == "relu":
                h = np.maximum(h, 0)
            elif fn == "tanh":
                h = np.tanh(h)
            elif fn == "sigmoid":
                h = 1 / (1 + np.exp(-h))
    return h


class TorchToBnserveTest(unittest.TestCase):
    def setUp(self):
        try:
            import torch  # noqa: F401
        except ImportError:
            skip.skip_case(self, "python3-torch is not installed: the "
                           "PyTorch parity check did not run")
        if not os.path.exists(BNCTL):
            skip.skip_case(self, "bnctl not built at " + BNCTL)
        self.tmp = tempfile.mkdtemp(prefix="bnserve_torch_")
        self.store = os.path.join(self.tmp, "store")

    def bnctl(self, *args):
        r = subprocess.run([BNCTL] + list(args), capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def trained_model(self, momentum):
        import torch
        from torch import nn

        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(5, 8, bias=False), nn.BatchNorm1d(8, momentum=momentum),
            nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 6),
            nn.BatchNorm1d(6, momentum=momentum), nn.ReLU(),
            nn.Linear(6, 3))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        model.train()
        for _ in range(20):  # moves gamma, beta and the running statistics
            x = torch.randn(16, 5) * 3 + 1
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model.eval()

    def round_trip(self, model, name):
        import torch_to_bnserve

        path = os.path.join(self.tmp, name + ".json")
        with open(path, "w") as f:
            json.dump(torch_to_bnserve.to_bnserve(
                model, feature_names=["a", "b", "c", "d", "e"]), f)
        out = json.loads(self.bnctl("import", "--store", self.store,
                                    "--model", name, "--from", path, "--json"))
        self.assertEqual(out["version"], 1)
        return json.loads(self.bnctl("export", "--store", self.store,
                                     "--model", name))

    def check_matches_torch(self, model, exported):
        import torch

        x = np.random.default_rng(1).normal(1, 3, size=(50, 5)).astype(
            np.float32)
        with torch.no_grad():
            expected = model(torch.tensor(x)).numpy()
        got = numpy_forward(exported, x)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)

    def test_ema_model_round_trips_and_matches_torch(self):
        model = self.trained_model(momentum=0.1)
        exported = self.round_trip(model, "ema")
        self.assertEqual(exported["task"], "classification")
        self.assertEqual(exported["input_features"], 5)
        self.assertEqual(exported["classes"], ["0", "1", "2"])
        self.assertEqual(exported["feature_names"], ["a", "b", "c", "d", "e"])
        self.assertEqual([l["type"] for l in exported["layers"]],
                         ["dense", "batch_norm", "activation", "dense",
                          "batch_norm", "activation", "dense"])
        bn = exported["layers"][1]
        self.assertEqual(bn["num_batches_tracked"], 20)
        self.assertEqual(bn["average"], "ema")
        np.testing.assert_array_equal(
            np.asarray(bn["running_var"], dtype=np.float32),
            model[1].running_var.numpy())
        np.testing.assert_array_equal(
            np.asarray(exported["layers"][0]["weight"], dtype=np.float32),
            model[0].weight.detach().numpy())
        self.check_matches_torch(model, exported)

    def test_cumulative_model(self):
        model = self.trained_model(momentum=None)
        exported = self.round_trip(model, "cumulative")
        self.assertEqual(exported["layers"][1]["average"], "cumulative")
        self.assertEqual(exported["layers"][1]["stats_source"], "cumulative")
        self.check_matches_torch(model, exported)

    def test_unsupported_module_is_refused(self):
        import torch_to_bnserve
        from torch import nn

        with self.assertRaises(ValueError):
            torch_to_bnserve.to_bnserve(
                nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2)))
        with self.assertRaises(ValueError):
            torch_to_bnserve.to_bnserve(nn.Sequential(
                nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False),
                nn.Linear(4, 2)))


if __name__ == "__main__":
    unittest.main()
