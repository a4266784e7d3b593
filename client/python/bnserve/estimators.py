"""scikit-learn estimators backed by bnserve servers: ``fit`` trains on a
``bnserve-trainer`` (publishing a new version of ``model``), ``predict``
asks a ``bnserve-inference`` server for that very version. They follow
scikit-learn's conventions (parameters only in ``__init__``, fitted
attributes ending in ``_``, ``get_params``/``set_params``, ``score``), so
they work in ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``.

Each ``fit`` publishes a version; the inference server keeps its newest
``--versions_to_keep`` versions loaded (plus labelled ones), so an estimator
fitted long before others of the same ``model`` may no longer be served
(NOT_FOUND): use one ``model`` name per estimator that must stay usable.
scikit-learn is optional: without it the estimators still work, with
equivalent ``get_params``/``set_params``/``score``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .inference import InferenceClient
from .trainer import TrainerClient

try:  # scikit-learn's bases give tags, cloning and HTML repr.
    from sklearn.base import BaseEstimator as _Base
    from sklearn.base import ClassifierMixin as _ClassifierMixin
    from sklearn.base import RegressorMixin as _RegressorMixin
except ImportError:  # pragma: no cover - exercised without scikit-learn
    import inspect

    class _Base:  # type: ignore[no-redef]
        def get_params(self, deep: bool = True) -> dict:
            names = [p for p in inspect.signature(type(self).__init__)
                     .parameters if p != "self"]
            return {n: getattr(self, n) for n in names}

        def set_params(self, **params):
            for k, v in params.items():
                if k not in self.get_params():
                    raise ValueError("invalid parameter %r" % k)
                setattr(self, k, v)
            return self

    class _ClassifierMixin:  # type: ignore[no-redef]
        def score(self, X, y, sample_weight=None) -> float:
            return float(np.average(self.predict(X) == np.asarray(y),
                                    weights=sample_weight))

    class _RegressorMixin:  # type: ignore[no-redef]
        def score(self, X, y, sample_weight=None) -> float:
            y = np.asarray(y, dtype=np.float64)
            p = np.asarray(self.predict(X), dtype=np.float64).reshape(y.shape)
            w = np.ones(len(y)) if sample_weight is None else sample_weight
            ss_res = np.average((y - p) ** 2, axis=0, weights=w).sum()
            ss_tot = np.average((y - np.average(y, axis=0, weights=w)) ** 2,
                                axis=0, weights=w).sum()
            return float(1.0 - ss_res / ss_tot)


class _BnserveEstimator(_Base):
    _task = ""

    def __init__(self, trainer: str = "localhost:50051",
                 server: str = "localhost:50052",
                 model: str = "sklearn", hidden: Sequence[int] = (64,),
                 activation: str = "relu", input_norm: bool = True,
                 epochs: int = 20, batch_size: int = 32,
                 optimizer: str = "sgd", lr: float = 0.0,
                 momentum: Optional[float] = None, weight_decay: float = 0.0,
                 bn_momentum: float = 0.1, seed: int = 1,
                 recalibrate: bool = False, token_file: Optional[str] = None,
                 tls_ca: Optional[str] = None, ready_timeout: float = 60.0
                 ) -> None:
        self.trainer = trainer
        self.server = server
        self.model = model
        self.hidden = hidden
        self.activation = activation
        self.input_norm = input_norm
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.bn_momentum = bn_momentum
        self.seed = seed
        self.recalibrate = recalibrate
        self.token_file = token_file
        self.tls_ca = tls_ca
        self.ready_timeout = ready_timeout

    def _fit(self, X, y, class_names=None):
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError("X must be 2-D [n_samples, n_features], got "
                             "shape %s" % (X.shape,))
        with TrainerClient(self.trainer, token_file=self.token_file,
                           tls_ca=self.tls_ca) as trainer:
            result = trainer.train(
                self.model, X, y, task=self._task, hidden=tuple(self.hidden),
                activation=self.activation, input_norm=self.input_norm,
                epochs=self.epochs, batch_size=self.batch_size,
                optimizer=self.optimizer, lr=self.lr, momentum=self.momentum,
                weight_decay=self.weight_decay, bn_momentum=self.bn_momentum,
                seed=self.seed, recalibrate=self.recalibrate,
                class_names=class_names)
        self.version_ = result.recalibrated_version or result.version
        self.n_features_in_ = X.shape[1]
        self.train_loss_ = result.final_loss
        with self._client() as client:
            client.wait_ready(self.model, self.version_, self.ready_timeout)
        return self

    def _client(self) -> InferenceClient:
        return InferenceClient(self.server, token_file=self.token_file,
                               tls_ca=self.tls_ca)

    def _predict_batch(self, X):
        if not hasattr(self, "version_"):
            raise _not_fitted(self)
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError("X has shape %s; this estimator was fitted on "
                             "%d features" % (X.shape, self.n_features_in_))
        with self._client() as client:
            return client.predict_batch(self.model, X, self.version_)


def _not_fitted(estimator) -> Exception:
    try:
        from sklearn.exceptions import NotFittedError
    except ImportError:  # pragma: no cover
        NotFittedError = AttributeError  # noqa: N806
    return NotFittedError("this %s is not fitted yet; call fit first"
                          % type(estimator).__name__)


class BnserveClassifier(_ClassifierMixin, _BnserveEstimator):
    """A batch-normalized MLP classifier trained and served by bnserve.

    ``fit(X, y)`` accepts any class labels (``classes_`` keeps them sorted);
    ``predict_proba`` returns the served softmax probabilities in the order
    of ``classes_``; ``predict`` their argmax label. Parameters are those of
    ``bnctl train`` plus the two server addresses (see the module doc).
    """
    _task = "classification"

    def fit(self, X, y) -> "BnserveClassifier":
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError("y must be 1-D class labels")
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("a classifier needs at least 2 classes in y")
        return self._fit(X, y_index.astype(np.int32),
                         [str(c) for c in self.classes_])

    def predict_proba(self, X) -> np.ndarray:
        return self._predict_batch(X).probabilities.astype(np.float64)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self._predict_batch(X).class_ids]


class BnserveRegressor(_RegressorMixin, _BnserveEstimator):
    """A batch-normalized MLP regressor trained and served by bnserve; ``y``
    is [n_samples] or [n_samples, n_targets]."""
    _task = "regression"

    def fit(self, X, y) -> "BnserveRegressor":
        y = np.asarray(y, dtype=np.float32)
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        self._y_1d = y.ndim == 1
        return self._fit(X, y)

    def predict(self, X) -> np.ndarray:
        out = self._predict_batch(X).outputs.astype(np.float64)
        return out[:, 0] if self._y_1d else out
