"""``InferenceClient``: predictions, metadata and health from a
``bnserve-inference`` server over gRPC."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional, Union

import numpy as np

from . import _stubs
from ._channel import BnserveError, Rpc, open_channel, read_token

Version = Union[int, str, None]


@dataclass
class Prediction:
    """The answer for one example.

    ``outputs`` are the raw outputs (logits for classification, the values
    for regression); for classification ``probabilities`` (softmax),
    ``class_id`` and ``class_name`` are set too. ``version`` answered."""
    outputs: np.ndarray
    version: int
    probabilities: Optional[np.ndarray] = None
    class_id: Optional[int] = None
    class_name: str = ""


@dataclass
class BatchPrediction:
    """The answers for N examples: ``outputs`` [N, D]; for classification
    ``probabilities`` [N, D] and ``class_ids`` [N]."""
    outputs: np.ndarray
    version: int
    probabilities: Optional[np.ndarray] = None
    class_ids: Optional[np.ndarray] = None


@dataclass
class ModelInfo:
    """What ``GetModelMetadata`` reports about the version that answers."""
    model: str
    version: int
    task: str  # "classification" or "regression"
    input_features: int
    output_dim: int
    feature_names: List[str] = field(default_factory=list)
    class_names: List[str] = field(default_factory=list)
    loaded_versions: List[int] = field(default_factory=list)


class InferenceClient:
    """A client of ``bnserve-inference`` (``bnserve.v1.Inference`` and the
    KServe readiness RPCs).

    ``version`` arguments take a version number, a label (``"stable"``) or
    None (the newest loaded version). Errors raise :class:`BnserveError`
    with the gRPC code and the server's message. Thread-safe (one channel).

    >>> client = InferenceClient("localhost:50052")
    >>> client.predict("digits", x_test[0]).class_id
    """

    def __init__(self, address: str, *, token: Optional[str] = None,
                 token_file: Optional[str] = None,
                 tls_ca: Optional[str] = None, tls_cert: Optional[str] = None,
                 tls_key: Optional[str] = None, timeout: float = 30.0) -> None:
        self._pb = _stubs.load()
        self._channel = open_channel(address, tls_ca, tls_cert, tls_key)
        token = read_token(token, token_file)
        self._rpc = Rpc(self._channel, "bnserve.v1.Inference", token, timeout)
        self._kserve = Rpc(self._channel, "inference.GRPCInferenceService",
                           token, timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "InferenceClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _select(self, message, version: Version) -> None:
        if version is None:
            return
        if isinstance(version, (int, np.integer)):
            message.select.version = int(version)
        else:
            message.select.label = str(version)

    def predict(self, model: str, x, version: Version = None) -> Prediction:
        """One example: ``x`` holds the model's input_features values (an
        image model takes its C*H*W values, or a [C, H, W] array)."""
        pb = self._pb.inference
        request = pb.PredictRequest(model=model)
        request.features.extend(np.asarray(x, dtype=np.float32).ravel())
        self._select(request, version)
        r = self._rpc.unary("Predict", request, pb.PredictResponse)
        classification = len(r.probabilities) > 0
        return Prediction(
            outputs=np.array(r.outputs, dtype=np.float32), version=r.version,
            probabilities=(np.array(r.probabilities, dtype=np.float32)
                           if classification else None),
            class_id=r.class_id if classification else None,
            class_name=r.class_name)

    def predict_batch(self, model: str, X, version: Version = None,
                      max_rows: int = 4096) -> BatchPrediction:
        """N independent examples (rows of ``X``, shape [N, F] or
        [N, C, H, W]), each computed exactly as :meth:`predict` would; sent
        in calls of at most ``max_rows`` rows, all pinned to the version
        that answered the first call."""
        pb = self._pb.inference
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 1:
            X = X.reshape(1, -1)
        X = X.reshape(X.shape[0], -1)
        if X.shape[0] == 0:
            raise ValueError("predict_batch needs at least one row")
        outs, probs, ids = [], [], []
        answered = version
        for start in range(0, X.shape[0], max_rows):
            part = X[start:start + max_rows]
            request = pb.PredictBatchRequest(model=model, rows=part.shape[0])
            request.features.extend(part.ravel())
            self._select(request, answered)
            r = self._rpc.unary("PredictBatch", request,
                                pb.PredictBatchResponse)
            answered = r.version
            d = r.output_dim
            outs.append(np.array(r.outputs, dtype=np.float32).reshape(-1, d))
            if len(r.probabilities):
                probs.append(np.array(r.probabilities,
                                      dtype=np.float32).reshape(-1, d))
                ids.append(np.array(r.class_ids, dtype=np.int64))
        return BatchPrediction(
            outputs=np.concatenate(outs), version=int(answered),
            probabilities=np.concatenate(probs) if probs else None,
            class_ids=np.concatenate(ids) if ids else None)

    def metadata(self, model: str, version: Version = None) -> ModelInfo:
        """Task, widths, names and loaded versions of a model."""
        pb = self._pb.inference
        request = pb.ModelMetadataRequest(model=model)
        self._select(request, version)
        r = self._rpc.unary("GetModelMetadata", request, pb.ModelMetadata)
        task = ("classification"
                if r.task == self._pb.snapshot.TASK_CLASSIFICATION
                else "regression")
        return ModelInfo(model=r.model, version=r.version, task=task,
                         input_features=r.input_features,
                         output_dim=r.output_dim,
                         feature_names=list(r.feature_names),
                         class_names=list(r.class_names),
                         loaded_versions=list(r.loaded_versions))

    def live(self) -> bool:
        """Whether the server answers (KServe ServerLive; no token needed)."""
        k = self._pb.kserve
        try:
            return self._kserve.unary("ServerLive", k.ServerLiveRequest(),
                                      k.ServerLiveResponse, timeout=5).live
        except BnserveError:
            return False

    def ready(self, model: Optional[str] = None,
              version: Version = None) -> bool:
        """Whether the server (or one model / version) is ready to answer."""
        k = self._pb.kserve
        try:
            if model is None:
                return self._kserve.unary("ServerReady",
                                          k.ServerReadyRequest(),
                                          k.ServerReadyResponse,
                                          timeout=5).ready
            request = k.ModelReadyRequest(
                name=model, version="" if version is None else str(version))
            return self._kserve.unary("ModelReady", request,
                                      k.ModelReadyResponse, timeout=5).ready
        except BnserveError as e:
            if e.code == "UNAVAILABLE":
                return False
            raise

    def wait_ready(self, model: Optional[str] = None,
                   version: Version = None, timeout: float = 60.0) -> None:
        """Waits until :meth:`ready`; TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not self.ready(model, version):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    "%s not ready after %.0f s" % (
                        "the server" if model is None else
                        "model %s version %s" % (model, version or "newest"),
                        timeout))
            time.sleep(0.02)
