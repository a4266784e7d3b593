#!/usr/bin/python3
"""PyTorch side of the CNN benchmarks (bench-model's BM_TrainStepCnn/64 and
BM_PredictCnnFolded): the demo's network on digits as 1x8x8 images,

  Conv2d(1,16,3,padding=1,bias=False) BatchNorm2d ReLU MaxPool2d(2)
  Conv2d(16,32,3,padding=1,bias=False) BatchNorm2d ReLU MaxPool2d(2)
  Flatten Linear(128,64,bias=False) BatchNorm1d ReLU Linear(64,10)

training: SGD lr 0.01 momentum 0.9, mean cross-entropy, minibatches of 64
pre-built from data/digits/train.csv and cycled; eval: one example at a time
(model.eval(), torch.no_grad(), a [1,1,8,8] tensor), the PyTorch way to
serve one request. One thread (torch.set_num_threads(1)), as bnserve's Eigen.
Times are process CPU time, as Google Benchmark's for bench-model.

Prints one JSON line: {"train_examples_per_s", "eval_ns_per_example"}.
"""
import argparse
import json
import time

import numpy as np
import torch
from torch import nn


def network():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
        nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32),
        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(128, 64, bias=False), nn.BatchNorm1d(64), nn.ReLU(),
        nn.Linear(64, 10))


def cpu_loop(fn, min_time):
    for i in range(20):
        fn(i)
    n = 0
    c0 = time.process_time()
    while True:
        for _ in range(20):
            fn(n)
            n += 1
        cpu = time.process_time() - c0
        if cpu >= min_time:
            return n, cpu


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="data/digits/train.csv")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--min_time", type=float, default=2.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(42)
    table = np.loadtxt(args.data, delimiter=",", skiprows=1, dtype=np.float32)
    x_all = torch.from_numpy(np.ascontiguousarray(table[:, :-1])).reshape(
        -1, 1, 8, 8)
    y_all = torch.from_numpy(table[:, -1].astype(np.int64))
    b = args.batch_size
    rows = x_all.shape[0]
    batches = [(x_all[torch.arange(s, s + b) % rows].contiguous(),
                y_all[torch.arange(s, s + b) % rows].contiguous())
               for s in range(0, rows - b + 1, b)]
    model = network()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step(i):
        x, y = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    steps, cpu = cpu_loop(step, args.min_time)
    train = steps * b / cpu

    model.eval()
    singles = [x_all[i:i + 1].contiguous() for i in range(rows)]

    def predict(i):
        with torch.no_grad():
            model(singles[i % rows])

    calls, cpu = cpu_loop(predict, args.min_time)
    print(json.dumps({"train_examples_per_s": train,
                      "eval_ns_per_example": cpu / calls * 1e9}), flush=True)


if __name__ == "__main__":
    main()
