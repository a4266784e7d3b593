"""bnserve: train batch-normalized networks on a bnserve-trainer from numpy
arrays and predict with a bnserve-inference server.

>>> import bnserve
>>> v = bnserve.TrainerClient("localhost:50051").train("digits", X, y).version
>>> bnserve.InferenceClient("localhost:50052").predict("digits", X[0]).class_id

``BnserveClassifier`` and ``BnserveRegressor`` are scikit-learn estimators
over the same servers. Needs Debian's python3-grpcio, python3-protobuf and
python3-numpy; see client/python/README.md.
"""
# The protobuf modules of the proto package bnserve.v1 live under this
# package's name too (bnserve/v1/*_pb2.py): let directories of generated
# stubs named bnserve on sys.path (predict.py's, grpc_tools output) extend
# this package instead of being shadowed by it.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

from ._channel import BnserveError  # noqa: E402
from .estimators import BnserveClassifier, BnserveRegressor  # noqa: E402
from .inference import (BatchPrediction, InferenceClient,  # noqa: E402
                        ModelInfo, Prediction)
from .trainer import Progress, TrainerClient, TrainResult  # noqa: E402

__all__ = [
    "BatchPrediction", "BnserveClassifier", "BnserveError",
    "BnserveRegressor", "InferenceClient", "ModelInfo", "Prediction",
    "Progress", "TrainerClient", "TrainResult",
]
__version__ = "0.1.0"
