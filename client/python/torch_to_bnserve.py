#!/usr/bin/python3
"""Writes a PyTorch MLP as a bnserve snapshot JSON for `bnctl import`.

Supported: an nn.Sequential of nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Tanh,
nn.Sigmoid and nn.Identity (nn.Dropout is skipped: it is the identity at
inference; a final nn.Softmax/nn.LogSoftmax is skipped for classification,
where bnserve's softmax is implied by the task). The format is the one of
docs/DESIGN.md section 3.3, written by `bnctl export`:

  * Linear.weight is stored as is ([out][in]), Linear.bias or null;
  * BatchNorm1d keeps gamma (weight), beta (bias), running_mean,
    running_var (PyTorch's unbiased estimate), eps, momentum (PyTorch's
    convention = bnserve's: the weight of the NEW value; momentum=None is
    the cumulative average) and num_batches_tracked.

Most PyTorch models are better brought with ONNX (`torch.onnx.export`, then
`bnctl import --from model.onnx`; README "Bring a PyTorch model"), which
also takes convolutional networks. This script stays for what ONNX does not
carry: num_batches_tracked, the cumulative average (momentum=None) of a
batch norm, and it skips a final Softmax and Dropout, which the ONNX import
refuses.

Usage (Debian's python3-torch, so /usr/bin/python3):

    # a model saved whole with torch.save(model, "mlp.pt")
    /usr/bin/python3 client/python/torch_to_bnserve.py mlp.pt mlp.json \
        --task classification --classes 0,1,2,3,4,5,6,7,8,9
    bnctl import --store /var/lib/bnserve --model mlp --from mlp.json

    # or, from your own code:
    #   from torch_to_bnserve import to_bnserve
    #   json.dump(to_bnserve(model, task="classification"), open(path, "w"))

    # a self-contained demo: trains a small MLP on data/digits/train.csv
    /usr/bin/python3 client/python/torch_to_bnserve.py --demo-digits \
        data/digits/train.csv digits_torch.json

The input width is read from the first Linear layer. The network is
converted in evaluation semantics: what bnserve serves is
model.eval()(x) for each example.
"""

import argparse
import json
import sys

import numpy as np
import torch
from torch import nn

FORMAT = "bnserve.snapshot.v1"
ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid",
               nn.Identity: "identity"}


def _floats(tensor):
    """float32 values in their shortest round-trip decimal form."""
    values = tensor.detach().cpu().numpy().astype(np.float32).ravel()
    return [float(str(v)) for v in values]


def _rows(tensor):
    t = tensor.detach().cpu()
    return [_floats(row) for row in t]


def _batch_norm(bn):
    if not isinstance(bn, nn.BatchNorm1d):
        raise ValueError("only BatchNorm1d is supported, got %s" % type(bn))
    if not bn.track_running_stats or bn.running_mean is None:
        raise ValueError("BatchNorm1d without running statistics "
                         "(track_running_stats=False) cannot serve one "
                         "example at a time")
    n = bn.num_features
    gamma = bn.weight if bn.affine else torch.ones(n)
    beta = bn.bias if bn.affine else torch.zeros(n)
    tracked = int(bn.num_batches_tracked.item())
    cumulative = bn.momentum is None
    return {
        "type": "batch_norm",
        "features": n,
        "gamma": _floats(gamma),
        "beta": _floats(beta),
        "running_mean": _floats(bn.running_mean),
        "running_var": _floats(bn.running_var),
        "eps": float(str(np.float32(bn.eps))),
        # Unused in cumulative mode, but must be in (0, 1].
        "momentum": 0.1 if cumulative else float(str(np.float32(bn.momentum))),
        "num_batches_tracked": tracked,
        "average": "cumulative" if cumulative else "ema",
        "variance": "unbiased",
        "stats_source": "cumulative" if cumulative else "ema",
        "stats_examples": tracked,
    }


def to_bnserve(model, task="classification", feature_names=None,
               classes=None, model_name="", origin="torch"):
    """Returns the snapshot JSON (a dict) for an nn.Sequential."""
    if task not in ("classification", "regression"):
        raise ValueError("task must be classification or regression")
    modules = list(model) if isinstance(model, nn.Sequential) else [model]
    layers = []
    input_features = None
    for i, m in enumerate(modules):
        if isinstance(m, nn.Linear):
            if input_features is None:
                input_features = m.in_features
            layers.append({
                "type": "dense",
                "in": m.in_features,
                "out": m.out_features,
                "weight": _rows(m.weight),  # [out][in], as PyTorch stores it
                "bias": None if m.bias is None else _floats(m.bias),
            })
        elif isinstance(m, nn.BatchNorm1d):
            layers.append(_batch_norm(m))
        elif type(m) in ACTIVATIONS:
            layers.append({"type": "activation", "fn": ACTIVATIONS[type(m)]})
        elif isinstance(m, nn.Dropout):
            continue  # identity at inference
        elif (isinstance(m, (nn.Softmax, nn.LogSoftmax)) and
              task == "classification" and i == len(modules) - 1):
            continue  # implied by the classification head
        else:
            raise ValueError("layer %d: unsupported module %s (supported: "
                             "Linear, BatchNorm1d, ReLU, Tanh, Sigmoid, "
                             "Identity, Dropout)" % (i, type(m).__name__))
    if input_features is None:
        raise ValueError("the model has no Linear layer")
    output_dim = [l for l in layers if l["type"] == "dense"][-1]["out"]
    if task == "classification" and classes is None:
        classes = [str(k) for k in range(output_dim)]
    return {
        "format": FORMAT,
        "model": model_name,
        "version": 0,
        "task": task,
        "input_features": input_features,
        "output_dim": output_dim,
        "feature_names": list(feature_names or []),
        "classes": list(classes or []) if task == "classification" else [],
        "layers": layers,
        "training": {"job_id": "", "step": 0, "examples_seen": 0,
                     "loss": None, "parent_version": 0, "created": None,
                     "origin": origin},
    }


def train_digits_demo(csv_path, epochs=15, seed=0):
    """Trains Linear-BN-ReLU-Linear on a digits CSV (label column last)."""
    torch.manual_seed(seed)
    with open(csv_path) as f:
        header = f.readline().strip().split(",")
    data = np.loadtxt(csv_path, delimiter=",", skiprows=1, dtype=np.float32)
    label_col = header.index("label")
    y = torch.tensor(data[:, label_col], dtype=torch.long)
    x = torch.tensor(np.delete(data, label_col, axis=1))
    names = [h for i, h in enumerate(header) if i != label_col]
    classes = int(y.max().item()) + 1
    model = nn.Sequential(nn.Linear(x.shape[1], 64, bias=False),
                          nn.BatchNorm1d(64), nn.ReLU(),
                          nn.Linear(64, classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for b in range(0, len(x) - 1, 64):
            idx = perm[b:b + 64]
            if len(idx) < 2:
                continue
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()
    return model, names, [str(k) for k in range(classes)]


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Convert a PyTorch nn.Sequential MLP (saved whole with "
                    "torch.save) to bnserve's snapshot JSON for bnctl "
                    "import.")
    p.add_argument("model", help="model file from torch.save(model, path), "
                                 "or a digits CSV with --demo-digits")
    p.add_argument("output", help="JSON file to write ('-' for stdout)")
    p.add_argument("--task", default="classification",
                   choices=["classification", "regression"])
    p.add_argument("--classes", help="comma-separated class names "
                                     "(default 0..K-1)")
    p.add_argument("--feature-names", help="comma-separated feature names")
    p.add_argument("--demo-digits", action="store_true",
                   help="train a small MLP on the CSV given as `model` "
                        "and convert that")
    args = p.parse_args(argv)

    feature_names = args.feature_names.split(",") if args.feature_names else None
    classes = args.classes.split(",") if args.classes else None
    if args.demo_digits:
        model, feature_names, classes = train_digits_demo(args.model)
    else:
        model = torch.load(args.model, map_location="cpu")
    snapshot = to_bnserve(model, task=args.task, feature_names=feature_names,
                          classes=classes)
    text = json.dumps(snapshot)
    if args.output == "-":
        sys.stdout.write(text + "\n")
    else:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
