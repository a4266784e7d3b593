#!/usr/bin/python3
"""ONNX in and out, end to end (docs/DESIGN.md section 3.4), with Debian's
python3-torch (1.13) and python3-onnx, a real bnserve-inference process on a
loopback port and a temporary file store, driven by bnctl.

1. PyTorch exports an MLP with input normalization, a regression MLP and a
   small CNN (every supported kind: Linear with and without bias,
   BatchNorm1d/2d, ReLU/Tanh/Sigmoid, Conv2d, MaxPool2d, AvgPool2d with
   padding, Flatten) at opsets 11, 13 and 17, with training=EVAL (Conv+BN
   folded by the exporter) and PRESERVE (BatchNormalization nodes kept), and
   with constant folding on and off (Transpose + MatMul for a Linear without
   bias). `bnctl import` publishes each; Predict, PredictBatch and KServe
   ModelInfer answer like PyTorch eval within 1e-5.
2. `bnctl export --format onnx`: onnx.checker accepts it; an evaluation of
   the exported graph with torch.nn.functional (a mapping written here,
   independent of bnserve) equals the served outputs within 1e-5; importing
   it again gives the same snapshot.
3. Refusals: other ops, a branching graph, dilation, groups, ceil_mode,
   auto_pad, count_include_pad=0, training_mode, malformed files; each
   message names the node, op type and attribute; never a crash.

Usage: onnx_torch_test.py BUILD_DIR  (run from the repository root)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

import numpy as np

BUILD = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BNCTL = os.path.join(BUILD, "client/bnctl/bnctl")
INFERENCE = os.path.join(BUILD, "server/inference/bnserve-inference")
sys.path.insert(0, os.path.join(REPO, "client", "python"))

import onnx  # noqa: E402  python3-onnx
import onnx.numpy_helper  # noqa: E402
import torch  # noqa: E402  python3-torch
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import predict  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from ports import free_port  # noqa: E402  tests/common/ports.py

TOL = 1e-5


def bnctl(*args):
    return subprocess.run([BNCTL, *args], capture_output=True, text=True,
                          timeout=120)


def randomize_batch_norms(model):
    """Non-trivial running statistics, gamma and beta; eval mode."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) - 0.5)
    return model.eval()


class View(nn.Module):
    """x.view(x.size(0), -1) instead of nn.Flatten (Shape -> Gather ->
    Unsqueeze -> Concat -> Reshape in the export)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, stride=2)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 2 * 2, 2)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.view(x.size(0), -1))


def make_models():
    torch.manual_seed(0)
    mlp = nn.Sequential(
        nn.BatchNorm1d(6),  # input normalization
        nn.Linear(6, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(),
        nn.Linear(16, 8), nn.Tanh(),
        nn.Linear(8, 8), nn.Sigmoid(),
        nn.Linear(8, 3))
    reg = nn.Sequential(
        nn.Linear(5, 12), nn.BatchNorm1d(12), nn.Tanh(), nn.Linear(12, 2))
    cnn = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(6), nn.Sigmoid(),
        nn.AvgPool2d(2, padding=1),
        nn.Conv2d(6, 6, (3, 2), stride=(1, 2)), nn.Tanh(),
        nn.AvgPool2d(1),
        nn.Flatten(), nn.Linear(6 * 1 * 1, 8), nn.BatchNorm1d(8), nn.ReLU(),
        nn.Linear(8, 4))
    return {
        "view": (randomize_batch_norms(View()), (1, 6, 6), "classification"),
        "mlp": (randomize_batch_norms(mlp), (6,), "classification"),
        "reg": (randomize_batch_norms(reg), (5,), "regression"),
        "cnn": (randomize_batch_norms(cnn), (2, 8, 8), "classification"),
    }


def torch_export(model, shape, path, opset=13, mode=None, fold=True):
    mode = mode or torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(2, *shape), path,
                          opset_version=opset, training=mode,
                          do_constant_folding=fold, input_names=["x"],
                          output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})


def onnx_eval(path, x):
    """Evaluates an exported model with torch.nn.functional, one op at a
    time, from the ONNX file alone (independent of bnserve's code)."""
    model = onnx.load(path)
    consts = {t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy())
              for t in model.graph.initializer}
    values = {model.graph.input[0].name: torch.from_numpy(x)}
    for node in model.graph.node:
        a = {at.name: onnx.helper.get_attribute_value(at)
             for at in node.attribute}
        ins = [values.get(i, consts.get(i)) for i in node.input]
        h = ins[0]
        op = node.op_type
        if op == "Gemm":
            y = h @ (ins[1].T if a.get("transB", 0) else ins[1])
            if len(ins) > 2:
                y = y + ins[2]
        elif op == "BatchNormalization":
            y = F.batch_norm(h, ins[3], ins[4], ins[1], ins[2], False, 0.0,
                             a["epsilon"])
        elif op == "Conv":
            p = a["pads"]
            assert p[0] == p[2] and p[1] == p[3]
            y = F.conv2d(h, ins[1], ins[2] if len(ins) > 2 else None,
                         stride=tuple(a["strides"]), padding=(p[0], p[1]))
        elif op in ("MaxPool", "AveragePool"):
            p = a["pads"]
            fn = F.max_pool2d if op == "MaxPool" else F.avg_pool2d
            kw = {} if op == "MaxPool" else {"count_include_pad": True}
            y = fn(h, tuple(a["kernel_shape"]), tuple(a["strides"]),
                   (p[0], p[1]), **kw)
        elif op == "Flatten":
            y = h.reshape(h.shape[0], -1)
        else:
            y = {"Relu": torch.relu, "Tanh": torch.tanh,
                 "Sigmoid": torch.sigmoid, "Identity": lambda t: t}[op](h)
        values[node.output[0]] = y
    return values[model.graph.output[0].name].numpy()


def comparable(export_json):
    """An exported snapshot without its name, version and provenance."""
    s = json.loads(export_json)
    for key in ("model", "version", "training"):
        s.pop(key, None)
    return s


class OnnxTorchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import grpc
        from grpc_tools import protoc

        cls.grpc = grpc
        cls.work = tempfile.mkdtemp(prefix="bnserve-onnx-")
        cls.store = os.path.join(cls.work, "store")
        os.makedirs(cls.store)
        stubs = os.path.join(cls.work, "stubs")
        os.makedirs(stubs)
        predict.generate_stubs(os.path.join(REPO, "proto"), stubs)
        proto = os.path.join(REPO, "proto")
        assert protoc.main(["protoc", "-I" + proto, "--python_out=" + stubs,
                            "--grpc_python_out=" + stubs,
                            os.path.join(proto, "inference/grpc_service.proto")]) == 0
        cls.pb2, cls.pb2_grpc = predict.load_stubs(stubs)
        sys.path.insert(0, stubs)
        from inference import grpc_service_pb2, grpc_service_pb2_grpc
        cls.kpb2 = grpc_service_pb2
        port = free_port()
        cls.address = "127.0.0.1:%d" % port
        cls.log = open(os.path.join(cls.work, "inference.log"), "w")
        cls.server = subprocess.Popen(
            [INFERENCE, "--host", "127.0.0.1", "--port", str(port),
             "--metrics_port", "0", "--store", cls.store], stderr=cls.log)
        channel = grpc.insecure_channel(cls.address)
        cls.stub = cls.pb2_grpc.InferenceStub(channel)
        cls.kstub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        cls.models = make_models()

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.wait(timeout=30)
        cls.log.close()
        shutil.rmtree(cls.work, ignore_errors=True)

    def import_onnx(self, path, name, task="classification", *extra):
        r = bnctl("import", "--store", self.store, "--model", name, "--from",
                  path, "--task", task, "--json", *extra)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)["version"]

    def served(self, name, version, x):
        """PredictBatch, Predict (row 0) and KServe ModelInfer outputs."""
        rows = x.shape[0]
        flat = x.reshape(rows, -1)
        select = self.pb2.VersionSelector(version=version)
        deadline = time.monotonic() + 60
        while True:  # the server loads a new version within milliseconds
            try:
                batch = self.stub.PredictBatch(self.pb2.PredictBatchRequest(
                    model=name, select=select, rows=rows,
                    features=flat.ravel().tolist()), timeout=10)
                break
            except self.grpc.RpcError as e:
                if (e.code() not in (self.grpc.StatusCode.NOT_FOUND,
                                     self.grpc.StatusCode.UNAVAILABLE) or
                        time.monotonic() > deadline):
                    raise
                time.sleep(0.05)
        out = np.array(batch.outputs, dtype=np.float32).reshape(rows, -1)
        one = self.stub.Predict(self.pb2.PredictRequest(
            model=name, select=select, features=flat[0].tolist()), timeout=10)
        np.testing.assert_array_equal(np.array(one.outputs, np.float32), out[0])
        req = self.kpb2.ModelInferRequest(model_name=name,
                                          model_version=str(version))
        tensor = req.inputs.add(name="input", datatype="FP32",
                                shape=list(x.shape))
        tensor.contents.fp32_contents.extend(flat.ravel().tolist())
        resp = self.kstub.ModelInfer(req, timeout=10)
        kout = [o for o in resp.outputs if o.name == "output"][0]
        np.testing.assert_array_equal(
            np.array(kout.contents.fp32_contents, np.float32).reshape(rows, -1),
            out)
        return out

    def inputs(self, shape, rows=16):
        return np.random.default_rng(3).normal(
            size=(rows, *shape)).astype(np.float32)

    def test_pytorch_exports_serve_like_pytorch_eval(self):
        Mode = torch.onnx.TrainingMode
        for key, (model, shape, task) in self.models.items():
            x = self.inputs(shape)
            expected = model(torch.from_numpy(x)).detach().numpy()
            for opset in (11, 13, 17):
                for mode in (Mode.EVAL, Mode.PRESERVE):
                    for fold in (True, False):
                        name = f"{key}-{opset}-{mode.name.lower()}-{int(fold)}"
                        with self.subTest(name):
                            path = os.path.join(self.work, name + ".onnx")
                            torch_export(model, shape, path, opset, mode, fold)
                            version = self.import_onnx(path, name, task)
                            np.testing.assert_allclose(
                                self.served(name, version, x), expected,
                                rtol=TOL, atol=TOL)

    def test_batch_norms_keep_their_running_statistics(self):
        model, shape, _ = self.models["mlp"]
        path = os.path.join(self.work, "bn.onnx")
        torch_export(model, shape, path, 13, torch.onnx.TrainingMode.PRESERVE)
        self.import_onnx(path, "bn")
        r = bnctl("export", "--store", self.store, "--model", "bn")
        self.assertEqual(r.returncode, 0, r.stderr)
        layers = json.loads(r.stdout)["layers"]
        bns = [l for l in layers if l["type"] == "batch_norm"]
        self.assertEqual(len(bns), 2)
        np.testing.assert_array_equal(
            np.float32(bns[0]["running_mean"]), model[0].running_mean.numpy())
        np.testing.assert_array_equal(
            np.float32(bns[1]["running_var"]), model[2].running_var.numpy())
        self.assertAlmostEqual(bns[0]["momentum"], 0.1, places=6)
        self.assertEqual(json.loads(r.stdout)["classes"], ["0", "1", "2"])

    def test_export_checks_computes_served_outputs_and_round_trips(self):
        for key, (model, shape, task) in self.models.items():
            with self.subTest(key):
                src = os.path.join(self.work, f"src-{key}.onnx")
                torch_export(model, shape, src, 13,
                             torch.onnx.TrainingMode.PRESERVE)
                name = f"exp-{key}"
                version = self.import_onnx(src, name, task)
                out = os.path.join(self.work, f"{name}.onnx")
                r = bnctl("export", "--store", self.store, "--model", name,
                          "--format", "onnx", "--output", out)
                self.assertEqual(r.returncode, 0, r.stderr)
                stdout = subprocess.run(
                    [BNCTL, "export", "--store", self.store, "--model", name,
                     "--format", "onnx"], capture_output=True, timeout=120)
                self.assertEqual(stdout.returncode, 0, stdout.stderr)
                with open(out, "rb") as f:
                    self.assertEqual(stdout.stdout, f.read())  # > model.onnx
                exported = onnx.load(out)
                onnx.checker.check_model(exported)
                self.assertEqual(exported.opset_import[0].version, 13)
                self.assertEqual([i.name for i in exported.graph.input],
                                 ["input"])
                self.assertEqual([o.name for o in exported.graph.output],
                                 ["output"])
                batch = exported.graph.input[0].type.tensor_type.shape.dim[0]
                self.assertEqual(batch.dim_param, "N")
                n_bn = sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))
                           for m in model.modules())
                self.assertEqual(sum(n.op_type == "BatchNormalization"
                                     for n in exported.graph.node), n_bn)
                x = self.inputs(shape)
                served = self.served(name, version, x)
                np.testing.assert_allclose(onnx_eval(out, x), served,
                                           rtol=TOL, atol=TOL)
                # ONNX -> bnserve -> ONNX -> bnserve: the same snapshot.
                self.import_onnx(out, name + "-rt", task)
                a = bnctl("export", "--store", self.store, "--model", name)
                b = bnctl("export", "--store", self.store, "--model",
                          name + "-rt")
                self.assertEqual(comparable(a.stdout), comparable(b.stdout))

    def test_class_names_and_format_flag(self):
        model, shape, _ = self.models["mlp"]
        path = os.path.join(self.work, "named.bin")  # no .onnx extension
        torch_export(model, shape, path)
        r = bnctl("import", "--store", self.store, "--model", "named",
                  "--from", path, "--format", "onnx", "--classes", "a,b,c")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = bnctl("export", "--store", self.store, "--model", "named")
        self.assertEqual(json.loads(r.stdout)["classes"], ["a", "b", "c"])
        r = bnctl("import", "--store", self.store, "--model", "named",
                  "--from", path, "--format", "onnx", "--classes", "a,b")
        self.assertEqual(r.returncode, 1)
        self.assertIn("2 class names given for 3 outputs", r.stderr)

    def refused(self, module, shape, *needles, edit=None, opset=13):
        path = os.path.join(self.work, "refused.onnx")
        torch_export(randomize_batch_norms(module), shape, path, opset)
        if edit is not None:
            m = onnx.load(path)
            edit(m)
            onnx.save(m, path)
        r = bnctl("import", "--store", self.store, "--model", "refused",
                  "--from", path)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("error: INVALID_ARGUMENT: " + path, r.stderr)
        for needle in needles:
            self.assertIn(needle, r.stderr)
        return r.stderr

    def test_unsupported_graphs_are_refused_by_node_op_and_attribute(self):
        img = (2, 8, 8)
        self.refused(nn.Sequential(nn.Conv2d(2, 3, 3, dilation=2)), img,
                     '(Conv)', "attribute dilations = [2, 2]")
        self.refused(nn.Sequential(nn.Conv2d(2, 4, 3, groups=2)), img,
                     "(Conv)", "attribute group = 2")
        self.refused(nn.Sequential(nn.MaxPool2d(3, ceil_mode=True)), img,
                     "(MaxPool)", "attribute ceil_mode = 1")
        self.refused(nn.Sequential(nn.AvgPool2d(3, padding=1,
                                                count_include_pad=False)),
                     img, "(AveragePool)", "count_include_pad")
        self.refused(nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1)), (4,),
                     "(Softmax)", "op type is not supported")
        self.refused(nn.Sequential(nn.Linear(4, 3), nn.LeakyReLU()), (4,),
                     "(LeakyRelu)", "op type is not supported")

        def same_pad(m):
            conv = [n for n in m.graph.node if n.op_type == "Conv"][0]
            del conv.attribute[:]
            conv.attribute.append(
                onnx.helper.make_attribute("auto_pad", "SAME_UPPER"))
        self.refused(nn.Sequential(nn.Conv2d(2, 3, 3)), img, "(Conv)",
                     "attribute auto_pad = SAME_UPPER", edit=same_pad)

        def train_mode(m):
            bn = [n for n in m.graph.node
                  if n.op_type == "BatchNormalization"][0]
            bn.attribute.append(
                onnx.helper.make_attribute("training_mode", 1))
        path = os.path.join(self.work, "bn-train.onnx")
        model = randomize_batch_norms(nn.Sequential(nn.BatchNorm1d(4)))
        torch_export(model, (4,), path, 15, torch.onnx.TrainingMode.PRESERVE)
        m = onnx.load(path)
        train_mode(m)
        onnx.save(m, path)
        r = bnctl("import", "--store", self.store, "--model", "r", "--from",
                  path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("(BatchNormalization): attribute training_mode = 1",
                      r.stderr)

        class Residual(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)

            def forward(self, x):
                return x + torch.relu(self.fc(x))
        self.refused(Residual(), (4,), "the graph branches")

    def test_malformed_files_are_clear_errors(self):
        cases = {
            "garbage.onnx": b"\xff\xfe not a protobuf \x00\x01" * 7,
            "empty.onnx": b"",
            "text.onnx": b"{\"format\": \"bnserve.snapshot.v1\"}",
        }
        model, shape, _ = self.models["cnn"]
        good = os.path.join(self.work, "good.onnx")
        torch_export(model, shape, good)
        with open(good, "rb") as f:
            data = f.read()
        cases["truncated.onnx"] = data[: len(data) // 2]
        for name, content in cases.items():
            with self.subTest(name):
                path = os.path.join(self.work, name)
                with open(path, "wb") as f:
                    f.write(content)
                r = bnctl("import", "--store", self.store, "--model", "bad",
                          "--from", path)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn("error: INVALID_ARGUMENT: " + path, r.stderr)


if __name__ == "__main__":
    unittest.main()
