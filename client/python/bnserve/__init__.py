"""bnserve: train batch-normalized networks on a bnserve-trainer from numpy
arrays and predict with a bnserve-inference server.

>>> import bnserve
>>> v = bnserve.TrainerClient("localhost:50051").train("digits", X, y).version
>>> bnserve.InferenceClient("localhost:50052").predict("digits", X[0]).class_id

``BnserveClassifier`` and ``BnserveRegressor`` are scikit-learn estimators
over the same servers. Needs Debian's python3-grpcio, python3-protobuf and
python3-numpy; see client/python/README.md.
"""
from ._channel import BnserveError
from .estimators import BnserveClassifier, BnserveRegressor
from .inference import (BatchPrediction, InferenceClient, ModelInfo,
                        Prediction)
from .trainer import Progress, TrainerClient, TrainResult

__all__ = [
    "BatchPrediction", "BnserveClassifier", "BnserveError",
    "BnserveRegressor", "InferenceClient", "ModelInfo", "Prediction",
    "Progress", "TrainerClient", "TrainResult",
]
__version__ = "0.1.0"
