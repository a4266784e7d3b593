#!/usr/bin/python3
"""Writes the seed corpus of onnx_fuzzer (tests/fuzz/corpus/onnx/) with
Debian's python3-torch: small PyTorch 1.13 exports of every supported kind
(opsets 11 and 17, Conv+BN folded and kept, MatMul + Add, x.view(N, -1)),
and two refused
graphs (an unsupported op, a branch). Run from the repository root:
  /usr/bin/python3 tests/fuzz/make_onnx_seeds.py
"""
import os
import warnings

import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "onnx")


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return x + self.fc(x)


class View(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return self.conv(x).view(x.size(0), -1)


def export(name, model, shape, opset=13, mode=torch.onnx.TrainingMode.EVAL,
           fold=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), torch.zeros(2, *shape),
                          os.path.join(OUT, name + ".onnx"),
                          opset_version=opset, training=mode,
                          do_constant_folding=fold, input_names=["x"],
                          output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    keep = torch.onnx.TrainingMode.PRESERVE
    mlp = nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 4, bias=False),
                        nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2),
                        nn.Tanh(), nn.Linear(2, 2), nn.Sigmoid())
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2),
                        nn.ReLU(), nn.MaxPool2d(2), nn.AvgPool2d(2, padding=1),
                        nn.Flatten(), nn.Linear(2 * 2 * 2, 2))
    export("mlp_opset11_bn", mlp, (3,), 11, keep)
    export("mlp_opset17_matmul", mlp, (3,), 17, keep, fold=False)
    export("cnn_opset13_folded", cnn, (1, 4, 4), 13)
    export("cnn_opset17_bn", cnn, (1, 4, 4), 17, keep)
    export("view_opset11", View(), (1, 3, 4), 11, fold=False)
    export("refused_softmax", nn.Sequential(nn.Linear(3, 2), nn.Softmax(1)),
           (3,))
    export("refused_branch", Residual(), (3,))


if __name__ == "__main__":
    main()
