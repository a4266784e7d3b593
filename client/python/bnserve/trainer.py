"""``TrainerClient``: trains a bnserve network from numpy arrays on a
``bnserve-trainer`` and publishes it, as ``bnctl train`` does from a CSV."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np

from . import _stubs
from ._channel import BnserveError, Rpc, open_channel, read_token


@dataclass
class Progress:
    """One training step's report (the trainer answers every minibatch)."""
    step: int
    epoch: int  # 1-based
    loss: float  # of the last minibatch, before its update
    accuracy: float  # classification only (0 for regression)
    examples_per_second: float
    examples_seen: int
    last_published_version: int
    published: bool


@dataclass
class TrainResult:
    """What a training run published."""
    model: str
    job_id: str
    version: int  # the version published at the end (or last)
    steps: int
    examples: int
    final_loss: float  # mean over the last epoch's minibatches
    final_accuracy: float  # classification only
    recalibrated_version: int = 0  # set when recalibrate=True


def batch_sizes(rows: int, batch_size: int) -> List[int]:
    """Minibatch sizes of one epoch, as bnctl splits them: full batches, and
    a last one of the rest, except that one left-over row joins the last
    batch (batch norm needs at least 2 rows)."""
    if batch_size < 2:
        raise ValueError("the batch size must be at least 2 (batch norm "
                         "needs the variance of a minibatch), got %d"
                         % batch_size)
    if rows < 2:
        raise ValueError("training needs at least 2 rows, got %d" % rows)
    sizes = [batch_size] * (rows // batch_size)
    rest = rows % batch_size
    if rest == 1:
        sizes[-1] += 1
    elif rest > 1:
        sizes.append(rest)
    return sizes


_ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
# How often the trainer reports (TrainRequest.progress_interval_ms): each
# report lists every step since the last, so the callback still sees every
# step, and the trainer does not write and wake us once per minibatch.
_PROGRESS_INTERVAL_MS = 100
# Features packed into one Train request (TrainRequest.batches), as bnctl:
# each request costs the trainer a read and a wake-up whatever its size.
_PACKED_FEATURE_BYTES = 1 << 20


class TrainerClient:
    """A client of ``bnserve-trainer``.

    :meth:`train` creates a job, streams ``X``/``y`` as minibatches for
    ``epochs`` epochs over one ``Train`` stream (gRPC flow control is the
    backpressure), reports progress and returns the published version.
    Errors raise :class:`BnserveError` (the server's code and message) or
    ValueError for arguments refused before anything is sent.

    >>> TrainerClient("localhost:50051").train("iris", X, y, epochs=20)
    """

    def __init__(self, address: str, *, token: Optional[str] = None,
                 token_file: Optional[str] = None,
                 tls_ca: Optional[str] = None, tls_cert: Optional[str] = None,
                 tls_key: Optional[str] = None, timeout: float = 60.0) -> None:
        self._pb = _stubs.load()
        self._channel = open_channel(address, tls_ca, tls_cert, tls_key)
        self._rpc = Rpc(self._channel, "bnserve.v1.Trainer",
                        read_token(token, token_file), timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "TrainerClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- training ----

    def train(self, model: str, X, y, *, task: str = "classification",
              hidden: Sequence[int] = (128, 64), activation: str = "relu",
              input_norm: bool = True,
              input_shape: Optional[Sequence[int]] = None,
              epochs: int = 10, batch_size: int = 64,
              optimizer: str = "sgd", lr: float = 0.0,
              momentum: Optional[float] = None, weight_decay: float = 0.0,
              bn_momentum: float = 0.1, seed: int = 1, shuffle: bool = True,
              from_version: Optional[int] = None,
              from_label: Optional[str] = None, publish_every: int = 0,
              recalibrate: bool = False,
              feature_names: Optional[Sequence[str]] = None,
              class_names: Optional[Sequence[str]] = None,
              progress: Optional[Callable[[Progress], None]] = None,
              resume_timeout: float = 120.0
              ) -> TrainResult:
        """Trains ``model`` on ``X`` ([N, F] features, or [N, C, H, W]
        images) and ``y`` (classification: N class ids in 0..K-1;
        regression: N values or [N, D] targets) with the options of
        ``bnctl train`` (``lr=0`` and ``momentum=None`` take the trainer's
        defaults; ``hidden`` is the dense -> batch norm -> activation
        shorthand, after a batch norm over the raw inputs unless
        ``input_norm=False``). ``progress`` is called after every step (the
        trainer reports every 100 ms, listing the steps since its last
        report), and once more for each publish (``published=True``).

        Like ``bnctl train``, it survives the trainer going away: on
        UNAVAILABLE it reconnects with backoff for up to ``resume_timeout``
        seconds per outage (0: raise at once), asks the trainer for the
        job's step (restored from its last checkpoint, possibly by another
        replica) and re-sends the numbered minibatches from there; each
        epoch's order depends only on ``seed``, so the model is bit for bit
        an uninterrupted run's."""
        X, y, targets_dim = self._check_data(X, y, task)
        if input_shape is None and X.ndim == 4:
            input_shape = X.shape[1:]
        X = X.reshape(X.shape[0], -1)
        sizes = batch_sizes(X.shape[0], batch_size)
        classes = int(y.max()) + 1 if task == "classification" else 0
        job = self._create_job(
            model, X.shape[1], task, classes or targets_dim, hidden,
            activation, input_norm, input_shape, optimizer, lr, momentum,
            weight_decay, bn_momentum, seed, from_version, from_label,
            publish_every, feature_names, class_names)
        tracker = _Tracker(sizes, progress)
        self._train_resuming(job.job_id, X, y, task, sizes, epochs, shuffle,
                             seed, tracker, resume_timeout)
        version = tracker.last_version
        if version <= 0:
            done = self._rpc.unary("GetJob",
                                   self._pb.trainer.GetJobRequest(
                                       job_id=job.job_id),
                                   self._pb.trainer.Job)
            version = done.last_published_version
        if version <= 0:
            raise BnserveError("FAILED_PRECONDITION",
                               "the trainer did not publish job " + job.job_id)
        result = TrainResult(model=model, job_id=job.job_id, version=version,
                             steps=tracker.steps, examples=tracker.examples,
                             final_loss=tracker.final_loss,
                             final_accuracy=tracker.final_accuracy)
        if recalibrate:
            result.recalibrated_version = self.recalibrate(job.job_id, X)
        return result

    def _train_resuming(self, job_id, X, y, task, sizes, epochs, shuffle,
                        seed, tracker, resume_timeout) -> None:
        """Streams every step, resuming after UNAVAILABLE (see train)."""
        total = epochs * len(sizes)
        next_step = 1
        while True:
            try:
                if next_step <= total:
                    self._rpc.stream("Train", self._minibatches(
                        job_id, X, y, task, sizes, epochs, shuffle, seed,
                        next_step), self._pb.trainer.TrainProgress,
                        tracker.on_progress)
                else:  # every step applied before the trainer went away
                    job = self._get_job(job_id)
                    if job.last_published_step != job.steps:
                        tracker.last_version = self.publish(job_id)
                    else:
                        tracker.last_version = job.last_published_version
                return
            except BnserveError as e:
                if e.code != "UNAVAILABLE" or resume_timeout <= 0:
                    raise
                job = self._await_job(job_id, time.monotonic() +
                                      resume_timeout)
                next_step = job.steps + 1
                tracker.resumed(job)

    def _get_job(self, job_id: str):
        return self._rpc.unary(
            "GetJob", self._pb.trainer.GetJobRequest(job_id=job_id),
            self._pb.trainer.Job)

    def _await_job(self, job_id: str, deadline: float):
        """GetJob until the trainer answers (UNAVAILABLE and CANCELLED,
        from a draining trainer, are waited out with a doubling backoff
        until `deadline`)."""
        backoff = 0.1
        while True:
            time.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
            backoff = min(backoff * 2, 2.0)
            try:
                return self._get_job(job_id)
            except BnserveError as e:
                if e.code not in ("UNAVAILABLE", "CANCELLED") or \
                        time.monotonic() >= deadline:
                    raise

    def recalibrate(self, job_id: str, X, chunk: int = 1024) -> int:
        """Replaces the job's running statistics with exact ones over ``X``
        and publishes the result; returns the new version."""
        X = np.asarray(X, dtype=np.float32)
        X = X.reshape(X.shape[0], -1)
        pb = self._pb.trainer

        def requests() -> Iterator:
            for start in range(0, X.shape[0], chunk):
                part = X[start:start + chunk]
                request = pb.RecalibrateRequest(
                    job_id=job_id if start == 0 else "")
                request.batch.rows, request.batch.cols = part.shape
                request.batch.features.extend(part.ravel())
                yield request

        return self._rpc.client_stream("Recalibrate", requests(),
                                       pb.PublishResponse).version

    def publish(self, job_id: str) -> int:
        """Publishes the job's current network now; returns the version."""
        pb = self._pb.trainer
        return self._rpc.unary("Publish", pb.PublishRequest(job_id=job_id),
                               pb.PublishResponse).version

    def models(self) -> List[str]:
        pb = self._pb.trainer
        return list(self._rpc.unary("ListModels", pb.ListModelsRequest(),
                                    pb.ListModelsResponse).models)

    # ---- helpers ----

    @staticmethod
    def _check_data(X, y, task: str):
        if task not in ("classification", "regression"):
            raise ValueError("task must be 'classification' or "
                             "'regression', got %r" % (task,))
        X = np.asarray(X, dtype=np.float32)
        if X.ndim not in (2, 4):
            raise ValueError("X must be [N, F] or [N, C, H, W], got shape %s"
                             % (X.shape,))
        if not np.all(np.isfinite(X)):
            raise ValueError("X has NaN or infinite values")
        y = np.asarray(y)
        if y.shape[0] != X.shape[0]:
            raise ValueError("X has %d rows but y has %d" % (X.shape[0],
                                                             y.shape[0]))
        if task == "classification":
            if y.ndim != 1 or not np.all(np.equal(np.mod(y, 1), 0)) or \
                    (y.size and y.min() < 0):
                raise ValueError("classification labels must be N class ids "
                                 "0..K-1")
            return X, y.astype(np.int32), 0
        y = y.astype(np.float32).reshape(X.shape[0], -1)
        return X, y, y.shape[1]

    def _create_job(self, model, features, task, output_dim, hidden,
                    activation, input_norm, input_shape, optimizer, lr,
                    momentum, weight_decay, bn_momentum, seed, from_version,
                    from_label, publish_every, feature_names, class_names):
        pb, snap = self._pb.trainer, self._pb.snapshot
        if activation not in _ACTIVATIONS:
            raise ValueError("activation must be one of %s" % (_ACTIVATIONS,))
        if optimizer not in ("sgd", "adam"):
            raise ValueError("optimizer must be 'sgd' or 'adam'")
        req = pb.CreateJobRequest(model=model, seed=seed)
        spec = req.spec
        spec.input_features = features
        spec.task = (snap.TASK_CLASSIFICATION if task == "classification"
                     else snap.TASK_REGRESSION)
        if from_version is None and from_label is None:
            spec.output_dim = output_dim
        spec.batch_norm.momentum = bn_momentum
        spec.hidden.extend(int(w) for w in hidden)
        spec.hidden_activation = getattr(snap,
                                         "ACTIVATION_" + activation.upper())
        spec.input_norm = input_norm
        if input_shape is not None:
            spec.input_shape.extend(int(d) for d in input_shape)
        req.optimizer.kind = (pb.OptimizerSpec.ADAM if optimizer == "adam"
                              else pb.OptimizerSpec.SGD)
        req.optimizer.learning_rate = lr
        if momentum is not None:
            req.optimizer.momentum = momentum
        req.optimizer.weight_decay = weight_decay
        req.publish.every_n_steps = publish_every
        req.publish.on_stream_close = True
        if from_version is not None:
            req.from_version = from_version
        if from_label is not None:
            req.from_label = from_label
        req.feature_names.extend(feature_names or [])
        if task == "classification" and from_version is None and \
                from_label is None:
            req.class_names.extend(class_names or
                                   [str(k) for k in range(output_dim)])
        return self._rpc.unary("CreateJob", req, pb.Job)

    def _minibatches(self, job_id, X, y, task, sizes, epochs, shuffle, seed,
                     first_step=1):
        """The requests of steps first_step.., each numbered with its first
        step and packing minibatches up to _PACKED_FEATURE_BYTES (each
        epoch's order from the seed alone: earlier epochs are shuffled, not
        sent)."""
        pb = self._pb.trainer
        rng = np.random.RandomState(seed)
        step = 0
        request, packed = None, 0
        for _ in range(epochs):
            order = (rng.permutation(X.shape[0]) if shuffle
                     else np.arange(X.shape[0]))
            begin = 0
            for size in sizes:
                rows = order[begin:begin + size]
                begin += size
                step += 1
                if step < first_step:
                    continue
                if request is None:
                    request = pb.TrainRequest(step=step)
                    batch = request.batch
                else:
                    batch = request.batches.add()
                if step == first_step:
                    request.job_id = job_id
                    request.progress_interval_ms = _PROGRESS_INTERVAL_MS
                batch.rows, batch.cols = size, X.shape[1]
                # Raw little-endian float32: one copy, not a Python float
                # object per value.
                batch.features_f32 = X[rows].astype("<f4", copy=False).tobytes()
                if task == "classification":
                    batch.labels.extend(y[rows])
                else:
                    batch.targets.extend(y[rows].ravel())
                packed += len(batch.features_f32)
                if packed >= _PACKED_FEATURE_BYTES:
                    yield request
                    request, packed = None, 0
        if request is not None:
            yield request


class _Tracker:
    """Follows TrainProgress messages: epoch means and the last version.
    A message lists every step since the previous one (step_losses); a
    trainer from before that field sends one per step, its loss in `loss`."""

    def __init__(self, sizes: Sequence[int],
                 callback: Optional[Callable[[Progress], None]]) -> None:
        self.sizes = list(sizes)
        self.steps_per_epoch = len(self.sizes)
        self.callback = callback
        self.steps = self.examples = self.last_version = 0
        self.final_loss = self.final_accuracy = 0.0
        self._rows = self._loss = self._acc = 0.0
        self._last_step = -1

    def resumed(self, job) -> None:
        """The job continues after its step `job.steps` (replayed steps are
        not counted twice)."""
        self._last_step = self.steps = job.steps
        self.examples = job.examples_seen
        self.last_version = job.last_published_version
        self._rows = self._loss = self._acc = 0.0

    def on_progress(self, p) -> None:
        self.last_version = p.last_published_version
        n = len(p.step_losses)
        if n and len(p.step_accuracies) == n:
            steps = [(p.step - n + 1 + i, p.step_losses[i],
                      p.step_accuracies[i]) for i in range(n)]
        elif n == 0 and p.step > self._last_step:
            steps = [(p.step, p.loss, p.accuracy)]
        else:
            steps = []
        for step, loss, accuracy in steps:
            self._add_step(step, loss, accuracy, p)
        if p.published:  # a callback of its own, after the step's
            self._report(p.step, p.loss, p.accuracy, p, published=True)

    def _add_step(self, step, loss, accuracy, p) -> None:
        if step <= self._last_step:
            return
        self._last_step = self.steps = step
        rows = self.sizes[(step - 1) % self.steps_per_epoch]
        self.examples = max(self.examples, p.examples_seen)
        self._rows += rows
        self._loss += loss * rows
        self._acc += accuracy * rows
        if self.steps % self.steps_per_epoch == 0:
            self.final_loss = self._loss / self._rows
            self.final_accuracy = self._acc / self._rows
            self._rows = self._loss = self._acc = 0.0
        self._report(step, loss, accuracy, p, published=False)

    def _report(self, step, loss, accuracy, p, published) -> None:
        if self.callback is not None:
            self.callback(Progress(
                step=step, epoch=(step - 1) // self.steps_per_epoch + 1,
                loss=loss, accuracy=accuracy,
                examples_per_second=p.examples_per_second,
                examples_seen=p.examples_seen,
                last_published_version=p.last_published_version,
                published=published))
