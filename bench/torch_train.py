#!/usr/bin/python3
"""PyTorch anchor for in-process training throughput.

The same network and step as bench-model's BM_TrainStep: digits, 64 inputs,
Linear(no bias) -> BatchNorm1d -> ReLU for hidden widths 128 and 64, then
Linear -> 10 logits, mean cross-entropy; SGD lr 0.01 momentum 0.9; minibatches
pre-built from data/digits/train.csv and cycled. Thread count = bnserve's
(Eigen single-threaded): torch.set_num_threads(--threads, default 1).
Throughput is examples per second of process CPU time (wall time also given).

Prints one JSON line per batch size: {"batch_size": B, "examples_per_s": X}.
"""
import argparse
import json
import sys
import time

import numpy as np
import torch
from torch import nn


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="data/digits/train.csv")
    p.add_argument("--batch_sizes", default="16,32,64,128,256,512,1024")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min_time", type=float, default=1.0,
                   help="CPU seconds measured per batch size")
    p.add_argument("--serve", action="store_true",
                   help="after --batch_sizes, read 'BATCH MIN_TIME' lines "
                   "from stdin and answer each with one JSON line (lets "
                   "bench/run alternate with bench-model without paying "
                   "the torch import every time)")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    torch.manual_seed(42)
    table = np.loadtxt(args.data, delimiter=",", skiprows=1, dtype=np.float32)
    x_all = torch.from_numpy(np.ascontiguousarray(table[:, :-1]))
    y_all = torch.from_numpy(table[:, -1].astype(np.int64))
    rows = x_all.shape[0]

    def measure(b, min_time):
        model = nn.Sequential(
            nn.Linear(64, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(),
            nn.Linear(128, 64, bias=False), nn.BatchNorm1d(64), nn.ReLU(),
            nn.Linear(64, 10))
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        batches = []
        start = 0
        while start + b <= rows or not batches:
            idx = torch.arange(start, start + b) % rows
            batches.append((x_all[idx].contiguous(), y_all[idx].contiguous()))
            start += b

        def step(i):
            x, y = batches[i % len(batches)]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()

        for i in range(10):  # warm-up
            step(i)
        steps = 0
        t0, c0 = time.perf_counter(), time.process_time()
        while True:
            for _ in range(10):
                step(steps)
                steps += 1
            cpu = time.process_time() - c0
            if cpu >= min_time:
                break
        wall = time.perf_counter() - t0
        # examples_per_s uses process CPU time, as Google Benchmark's
        # items_per_second does for bench-model: on a shared machine it is
        # the time the process actually ran.
        print(json.dumps({"batch_size": b, "threads": args.threads,
                          "examples_per_s": steps * b / cpu,
                          "examples_per_s_wall": steps * b / wall}),
              flush=True)

    for b in [int(s) for s in args.batch_sizes.split(",") if s]:
        measure(b, args.min_time)
    if args.serve:
        for line in sys.stdin:
            b, min_time = line.split()
            measure(int(b), float(min_time))


if __name__ == "__main__":
    main()
