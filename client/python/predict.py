#!/usr/bin/python3
"""Minimal Python client for bnserve: one Predict call for one example.

Uses Debian's python3-grpcio and python3-grpc-tools (run it with
/usr/bin/python3, where Debian's modules are visible). The Python stubs are
generated from the project's .proto files at start-up into a temporary
directory, so nothing generated is checked in. To generate them once instead:

    /usr/bin/python3 -m grpc_tools.protoc -I proto \
        --python_out=client/python/gen --grpc_python_out=client/python/gen \
        proto/bnserve/v1/snapshot.proto proto/bnserve/v1/inference.proto

and pass --stubs client/python/gen. (Only snapshot.proto and inference.proto
are needed; Debian's grpc-tools bundles an old protoc that cannot read the
`optional` fields of trainer.proto.)

Examples:
    /usr/bin/python3 client/python/predict.py --server localhost:50052 \
        --model digits --features 0,0,5,13,9,1,0,0,...
    /usr/bin/python3 client/python/predict.py --model digits --label stable \
        --features "$(sed -n 2p data/digits/test.csv | cut -d, -f1-64)" --json

Exit status: 0 on success, 1 on an RPC error (printed as
`error: <CODE>: <message>`), 2 on a usage error.
"""

import argparse
import atexit
import importlib
import json
import os
import shutil
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTOS = ("bnserve/v1/snapshot.proto", "bnserve/v1/inference.proto")


def generate_stubs(proto_dir, out_dir):
    """Runs grpc_tools.protoc on the protos the Inference service needs."""
    from grpc_tools import protoc  # python3-grpc-tools

    args = ["grpc_tools.protoc", "-I" + proto_dir,
            "--python_out=" + out_dir, "--grpc_python_out=" + out_dir]
    args += [os.path.join(proto_dir, p) for p in PROTOS]
    if protoc.main(args) != 0:
        raise RuntimeError("grpc_tools.protoc failed on " + proto_dir)


def load_stubs(stubs_dir=None, proto_dir=None):
    """Returns (inference_pb2, inference_pb2_grpc), generating them if needed."""
    if stubs_dir is None:
        stubs_dir = tempfile.mkdtemp(prefix="bnserve_stubs_")
        atexit.register(shutil.rmtree, stubs_dir, ignore_errors=True)
        generate_stubs(proto_dir or os.path.join(REPO, "proto"), stubs_dir)
    sys.path.insert(0, stubs_dir)
    # client/python/bnserve (the package) is a regular package named like
    # the proto package: if it is already imported, add the stubs to it.
    package = sys.modules.get("bnserve")
    if package is not None and hasattr(package, "__path__"):
        package.__path__.append(os.path.join(stubs_dir, "bnserve"))
    pb2 = importlib.import_module("bnserve.v1.inference_pb2")
    pb2_grpc = importlib.import_module("bnserve.v1.inference_pb2_grpc")
    return pb2, pb2_grpc


def make_channel(server, tls_ca=None, tls_cert=None, tls_key=None):
    import grpc

    if not (tls_ca or tls_cert or tls_key):
        return grpc.insecure_channel(server)

    def read(path):
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(
        root_certificates=read(tls_ca), private_key=read(tls_key),
        certificate_chain=read(tls_cert))
    return grpc.secure_channel(server, creds)


def predict(stub, pb2, model, features, version=None, label=None, token=None,
            timeout=10.0):
    """One Predict RPC; returns the PredictResponse."""
    request = pb2.PredictRequest(model=model, features=features)
    if version is not None:
        request.select.version = version
    elif label is not None:
        request.select.label = label
    metadata = [("authorization", "Bearer " + token)] if token else None
    return stub.Predict(request, timeout=timeout, metadata=metadata)


def parse_features(text):
    try:
        return [float(x) for x in text.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError("--features: %s" % e)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Send one example to a bnserve inference server "
                    "(bnserve.v1.Inference/Predict) and print the answer.")
    parser.add_argument("--server", default="localhost:50052",
                        help="HOST:PORT of bnserve-inference")
    parser.add_argument("--model", required=True, help="model name")
    parser.add_argument("--features", required=True, type=parse_features,
                        help="comma-separated feature values of one example "
                             "(write --features=-1,2 if the first is negative)")
    pin = parser.add_mutually_exclusive_group()
    pin.add_argument("--version", type=int, help="pin this version")
    pin.add_argument("--label", help="use the version this label points at")
    parser.add_argument("--token-file",
                        help="bearer token file (authorization: Bearer ...)")
    parser.add_argument("--tls-ca", help="PEM CA to verify the server (TLS)")
    parser.add_argument("--tls-cert", help="PEM client certificate (mTLS)")
    parser.add_argument("--tls-key", help="PEM client key (mTLS)")
    parser.add_argument("--stubs", help="directory of pre-generated stubs "
                                        "(default: generate them now)")
    parser.add_argument("--proto-dir", help="directory holding bnserve/v1/"
                                            "*.proto (default: the repo's)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object")
    args = parser.parse_args(argv)

    import grpc

    pb2, pb2_grpc = load_stubs(args.stubs, args.proto_dir)
    token = None
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
    with make_channel(args.server, args.tls_ca, args.tls_cert,
                      args.tls_key) as channel:
        stub = pb2_grpc.InferenceStub(channel)
        try:
            r = predict(stub, pb2, args.model, args.features, args.version,
                        args.label, token)
        except grpc.RpcError as e:
            print("error: %s: %s" % (e.code().name, e.details()),
                  file=sys.stderr)
            return 1
    result = {"model": r.model, "version": r.version,
              "outputs": list(r.outputs)}
    if r.probabilities:
        result.update(probabilities=list(r.probabilities),
                      class_id=r.class_id, class_name=r.class_name)
    if args.json:
        print(json.dumps(result))
    elif r.probabilities:
        print("model %s version %d: class %d (probability %.4f)" % (
            r.model, r.version, r.class_id, r.probabilities[r.class_id]))
    else:
        print("model %s version %d: %s" % (
            r.model, r.version, ", ".join("%g" % v for v in r.outputs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
