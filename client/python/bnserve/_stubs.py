"""The protobuf message classes of bnserve's services.

Nothing generated is checked in. The classes come from, in order:

1. ``bnserve/v1/*_pb2.py`` inside this package, written by ``pip install``
   (``setup.py`` runs ``protoc`` on the repository's ``proto/``);
2. otherwise they are generated on first use with Debian's ``protoc``
   (package ``protobuf-compiler``) from the ``proto/`` directory of the
   repository this package sits in (or ``$BNSERVE_PROTO_DIR``), into a cache
   directory (``$XDG_CACHE_HOME/bnserve`` or ``~/.cache/bnserve``) keyed by
   the protos' contents, which is then added to this package's ``__path__``.

Only ``python_out`` is generated: the client calls the RPCs through
``grpc.Channel.unary_unary`` / ``stream_stream`` with these messages, so no
gRPC plugin (whose Debian version rejects proto3 ``optional``) is needed.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from types import ModuleType, SimpleNamespace
from typing import List, Optional

PROTOS = (
    "bnserve/v1/snapshot.proto",
    "bnserve/v1/inference.proto",
    "bnserve/v1/trainer.proto",
    "inference/grpc_service.proto",
)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_loaded: Optional[SimpleNamespace] = None


def proto_dir() -> str:
    """The directory holding bnserve's .proto files."""
    env = os.environ.get("BNSERVE_PROTO_DIR")
    if env:
        return env
    # client/python/bnserve -> the repository root.
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        _PACKAGE_DIR))), "proto")


def generate(proto_root: str, out_dir: str) -> None:
    """Runs protoc --python_out on PROTOS (raises RuntimeError on failure)."""
    protoc = shutil.which("protoc")
    if protoc is None:
        raise RuntimeError(
            "bnserve: protoc not found; install Debian's protobuf-compiler "
            "or install this package with pip (which generates the stubs)")
    missing = [p for p in PROTOS if not os.path.exists(
        os.path.join(proto_root, p))]
    if missing:
        raise RuntimeError("bnserve: %s not found under %s (set "
                           "BNSERVE_PROTO_DIR)" % (", ".join(missing),
                                                  proto_root))
    res = subprocess.run([protoc, "-I" + proto_root, "--python_out=" + out_dir]
                         + list(PROTOS), capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError("bnserve: protoc failed: " + res.stderr.strip())


def _cache_dir(proto_root: str) -> str:
    digest = hashlib.sha256()
    for p in PROTOS:
        with open(os.path.join(proto_root, p), "rb") as f:
            digest.update(f.read())
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bnserve", "stubs-" + digest.hexdigest()[:16])


def _generated_dir() -> str:
    """A directory holding bnserve/v1/*_pb2.py and inference/*_pb2.py."""
    root = proto_dir()
    target = _cache_dir(root)
    if os.path.exists(os.path.join(target, "inference",
                                   "grpc_service_pb2.py")):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    staging = tempfile.mkdtemp(prefix="stubs-", dir=os.path.dirname(target))
    try:
        generate(root, staging)
        try:
            os.rename(staging, target)  # atomic; a concurrent winner is fine
        except OSError:
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _load_file(name: str, path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load() -> SimpleNamespace:
    """The message modules: snapshot, inference, trainer (bnserve.v1) and
    kserve (inference.GRPCInferenceService's messages)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    import bnserve

    installed = os.path.join(_PACKAGE_DIR, "v1", "trainer_pb2.py")
    if os.path.exists(installed):
        kserve_path = os.path.join(_PACKAGE_DIR, "_kserve",
                                   "grpc_service_pb2.py")
    else:
        gen = _generated_dir()
        # The generated modules import "bnserve.v1.snapshot_pb2": make
        # gen/bnserve/ part of this package.
        path: List[str] = list(bnserve.__path__)
        if os.path.join(gen, "bnserve") not in path:
            bnserve.__path__.append(os.path.join(gen, "bnserve"))
        kserve_path = os.path.join(gen, "inference", "grpc_service_pb2.py")
    _loaded = SimpleNamespace(
        snapshot=importlib.import_module("bnserve.v1.snapshot_pb2"),
        inference=importlib.import_module("bnserve.v1.inference_pb2"),
        trainer=importlib.import_module("bnserve.v1.trainer_pb2"),
        kserve=_load_file("bnserve._kserve_grpc_service_pb2", kserve_path),
    )
    return _loaded
