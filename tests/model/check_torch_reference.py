#!/usr/bin/python3
"""The committed PyTorch reference (torch_reference.inc) must be what its
generator (make_torch_reference.py) produces today, so the two cannot drift.

Runs the generator with python3-torch into a temporary file and compares it
with the committed file: the same constants in the same order with the same
lengths and integer values, and every float equal to within 1e-6 relative
(1e-30 absolute): bit-for-bit on the machine that generated it, with room only
for the last-digit differences another CPU's vector kernels may give. The
PyTorch version in the header line is not compared. Without python3-torch the
test skips outside CI and fails in CI (tests/common/skip.py).

Usage: check_torch_reference.py
"""
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "common"))
import skip  # noqa: E402

REL, ABS = 1e-6, 1e-30
DECL = re.compile(r"inline const std::vector<(float|int)> (\w+) = \{(.*)\};")


def parse(path):
    """[(name, type, [values])] in file order."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = DECL.fullmatch(line.strip())
            if m:
                kind, name, body = m.groups()
                items = [x.strip().rstrip("f") for x in body.split(",")
                         if x.strip()]
                out.append((name, kind, [float(x) if kind == "float" else
                                         int(x) for x in items]))
    return out


def main():
    try:
        import torch  # noqa: F401
    except ImportError:
        skip.skip_script("python3-torch is not installed: the PyTorch "
                         "reference cannot be regenerated")
    committed_path = os.path.join(HERE, "torch_reference.inc")
    with tempfile.TemporaryDirectory(prefix="bnserve-torch-ref-") as tmp:
        fresh_path = os.path.join(tmp, "torch_reference.inc")
        subprocess.run(["/usr/bin/python3",
                        os.path.join(HERE, "make_torch_reference.py"),
                        fresh_path], check=True, stdout=subprocess.DEVNULL)
        committed, fresh = parse(committed_path), parse(fresh_path)
        with open(committed_path) as a, open(fresh_path) as b:
            identical = a.read().split("\n", 1)[1] == b.read().split("\n", 1)[1]
    problems = []
    names_c = [n for n, _, _ in committed]
    names_f = [n for n, _, _ in fresh]
    if names_c != names_f:
        problems.append(f"constants differ: only committed "
                        f"{sorted(set(names_c) - set(names_f))[:10]}, only "
                        f"generated {sorted(set(names_f) - set(names_c))[:10]}"
                        f" (or the order changed)")
    worst = 0.0
    for (name, kind, a), (_, kind_f, b) in zip(committed, fresh):
        if kind != kind_f or len(a) != len(b):
            problems.append(f"{name}: {kind}[{len(a)}] committed, "
                            f"{kind_f}[{len(b)}] generated")
            continue
        for i, (x, y) in enumerate(zip(a, b)):
            if kind == "int":
                ok = x == y
            else:
                err = abs(x - y)
                worst = max(worst, err / max(abs(y), 1e-30))
                ok = err <= ABS + REL * abs(y)
            if not ok:
                problems.append(f"{name}[{i}]: committed {x!r}, generated "
                                f"{y!r}")
                break
    if not committed:
        problems.append("no constants parsed from the committed file")
    for p in problems[:20]:
        print("FAIL:", p)
    print(f"{len(committed)} constants, "
          f"{sum(len(v) for _, _, v in committed)} values; "
          f"{'byte-identical' if identical else f'largest relative difference {worst:.2e}'}")
    if problems:
        print("The committed torch_reference.inc is not what "
              "make_torch_reference.py generates: regenerate it "
              "(/usr/bin/python3 tests/model/make_torch_reference.py) and "
              "review the diff")
        return 1
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
