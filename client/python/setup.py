"""pip install ./client/python: the `bnserve` package, with its protobuf
message modules generated at build time by Debian's `protoc` from the
repository's proto/ (nothing generated is checked in). Offline: there is no
pyproject.toml, so pip builds with the setuptools it finds (python3-setuptools)
and fetches nothing. Run from a checkout (it needs ../../proto, or
BNSERVE_PROTO_DIR)."""
import glob
import importlib.util
import os
import shutil
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _stubs_module():
    spec = importlib.util.spec_from_file_location(
        "_bnserve_stubs", os.path.join(HERE, "bnserve", "_stubs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildWithStubs(build_py):
    """build_py, then protoc into the built package: bnserve/v1/*_pb2.py and
    bnserve/_kserve/grpc_service_pb2.py (what bnserve._stubs looks for)."""

    def run(self):
        super().run()
        stubs = _stubs_module()
        root = os.environ.get("BNSERVE_PROTO_DIR") or os.path.join(
            HERE, "..", "..", "proto")
        tmp = tempfile.mkdtemp()
        try:
            stubs.generate(root, tmp)
            package = os.path.join(self.build_lib, "bnserve")
            for sub, files in (("v1", glob.glob(os.path.join(
                    tmp, "bnserve", "v1", "*_pb2.py"))),
                    ("_kserve", [os.path.join(tmp, "inference",
                                              "grpc_service_pb2.py")])):
                os.makedirs(os.path.join(package, sub), exist_ok=True)
                open(os.path.join(package, sub, "__init__.py"), "w").close()
                for f in files:
                    shutil.copy(f, os.path.join(package, sub))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


setup(
    name="bnserve",
    version="0.1.0",
    description="Train and serve batch-normalized networks with bnserve "
                "from Python and numpy",
    packages=["bnserve"],
    python_requires=">=3.9",
    # Debian packages, not PyPI: python3-grpcio, python3-protobuf,
    # python3-numpy (python3-sklearn for the estimators' bases).
    install_requires=[],
    cmdclass={"build_py": BuildWithStubs},
)
