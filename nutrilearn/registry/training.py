"""Train a linear softmax head on frozen backbone features (numpy only, seconds on 2 cores).

Recipe (measured on food10, see bench/RESULTS.md): standardise the 1280-d pooled features
with the training photos' mean and spread (optionally add each photo's mirror image as a
second example: on food10 it did not help), mini-batch Adam on the class-weighted
cross-entropy plus L2, a stratified validation split for early stopping (best validation
loss, patience), then refit on every photo for the chosen number of epochs. The
standardisation is folded into the weights, so the result is an ordinary ``LinearHead``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from nutrilearn.vision.heads import LinearHead, softmax

EpochCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters; every field is logged as an MLflow parameter."""

    val_fraction: float = 0.15
    max_epochs: int = 120
    patience: int = 12
    batch_size: int = 64
    learning_rate: float = 1e-3
    l2: float = 0.1
    flip_augment: bool = False  # mirror images as extra examples: measured no gain on food10, 2x feature cost
    class_weights: str = "balanced"  # balanced | none
    refit_full: bool = True  # after early stopping, retrain on train+validation for the best epoch count
    calibrate: bool = True  # temperature scaling fitted on the validation photos
    seed: int = 0

    def params(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float


@dataclass
class TrainResult:
    head: LinearHead
    history: list[EpochMetrics]
    best_epoch: int
    val_index: np.ndarray  # rows of the dataset held out for validation
    seconds: float
    temperature: float = 1.0
    class_weight: dict[str, float] = field(default_factory=dict)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows), ``fraction`` of every class held out (at least one
    photo from classes with 2 or more)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rng.shuffle(rows)
        n_val = int(round(fraction * len(rows)))
        if fraction > 0 and len(rows) >= 2:
            n_val = max(1, n_val)
        val.extend(rows[:n_val])
        train.extend(rows[n_val:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))


def _class_weights(y: np.ndarray, k: int, mode: str) -> np.ndarray:
    if mode == "none":
        return np.ones(k)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    return np.where(counts > 0, len(y) / (k * np.maximum(counts, 1)), 0.0)


class _Softmax:
    """Standardised-feature softmax regression trained with Adam."""

    def __init__(self, dim: int, k: int, config: TrainConfig, rng: np.random.Generator):
        self.w = rng.normal(0.0, 0.01, (dim, k))
        self.b = np.zeros(k)
        self.config = config
        self._m = [np.zeros_like(self.w), np.zeros_like(self.b)]
        self._v = [np.zeros_like(self.w), np.zeros_like(self.b)]
        self._t = 0

    def loss(self, x: np.ndarray, y: np.ndarray, sw: np.ndarray) -> float:
        p = softmax(x @ self.w + self.b)
        return float(np.sum(sw * -np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))) / np.sum(sw))

    def step(self, x: np.ndarray, y: np.ndarray, sw: np.ndarray) -> None:
        p = softmax(x @ self.w + self.b)
        p[np.arange(len(y)), y] -= 1.0
        g = p * (sw / np.sum(sw))[:, None]
        grads = [x.T @ g + self.config.l2 * self.w, g.sum(axis=0)]
        self._t += 1
        lr, b1, b2 = self.config.learning_rate, 0.9, 0.999
        for param, grad, m, v in zip((self.w, self.b), grads, self._m, self._v):
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * grad * grad
            param -= lr * (m / (1 - b1**self._t)) / (np.sqrt(v / (1 - b2**self._t)) + 1e-8)

    def epoch(self, x: np.ndarray, y: np.ndarray, sw: np.ndarray, rng: np.random.Generator) -> None:
        order = rng.permutation(len(y))
        for start in range(0, len(y), self.config.batch_size):
            rows = order[start : start + self.config.batch_size]
            self.step(x[rows], y[rows], sw[rows])


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 minimising validation cross-entropy of softmax(logits / T) (grid search)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(4.0), 81))
    rows = np.arange(len(y))
    nll = [-np.mean(np.log(np.clip(softmax(logits / t)[rows, y], 1e-12, None))) for t in grid]
    return float(grid[int(np.argmin(nll))])


def _examples(pooled: np.ndarray, pooled_flip: np.ndarray | None, y: np.ndarray, rows: np.ndarray, flip: bool):
    x, yy = pooled[rows], y[rows]
    if flip and pooled_flip is not None:
        x, yy = np.concatenate([x, pooled_flip[rows]]), np.concatenate([yy, yy])
    return x.astype(np.float64), yy


def train_linear_head(
    pooled: np.ndarray,
    labels: list[str],
    pooled_flip: np.ndarray | None = None,
    config: TrainConfig = TrainConfig(),
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Features + labels -> a ``LinearHead`` (labels sorted), its epoch history and split."""
    start = time.perf_counter()
    classes = tuple(sorted(set(labels)))
    if len(classes) < 2:
        raise ValueError("training needs photos of at least two classes")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[l] for l in labels], dtype=np.int64)
    k = len(classes)
    rng = np.random.default_rng(config.seed)
    train_rows, val_rows = stratified_split(y, config.val_fraction, config.seed)
    weights = _class_weights(y[train_rows], k, config.class_weights)

    def fit(rows: np.ndarray, epochs: int, val: np.ndarray | None):
        x, yy = _examples(pooled, pooled_flip, y, rows, config.flip_augment)
        mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
        xs = (x - mu) / sd
        sw = weights[yy]
        model = _Softmax(x.shape[1], k, config, np.random.default_rng(config.seed))
        history: list[EpochMetrics] = []
        best = (np.inf, 0, model.w.copy(), model.b.copy())
        if val is not None and len(val):
            xv = (pooled[val].astype(np.float64) - mu) / sd
            yv, swv = y[val], weights[y[val]]
        for epoch in range(1, epochs + 1):
            model.epoch(xs, yy, sw, rng)
            if val is None or not len(val):
                if on_epoch:
                    on_epoch(epoch, epochs)
                continue
            val_loss = model.loss(xv, yv, swv)
            acc = float(np.mean(np.argmax(xv @ model.w + model.b, axis=1) == yv))
            history.append(EpochMetrics(epoch, model.loss(xs, yy, sw), val_loss, acc))
            if on_epoch:
                on_epoch(epoch, epochs)
            if val_loss < best[0] - 1e-6:
                best = (val_loss, epoch, model.w.copy(), model.b.copy())
            elif epoch - best[1] >= config.patience:
                break
        temperature = 1.0
        if val is not None and len(val):
            model.w, model.b = best[2], best[3]
            if config.calibrate:
                temperature = fit_temperature(xv @ model.w + model.b, yv)
        w = model.w / sd[:, None]
        b = model.b - (mu / sd) @ model.w
        return w, b, history, best[1], temperature

    w, b, history, best_epoch, temperature = fit(train_rows, config.max_epochs, val_rows)
    if config.refit_full and len(val_rows):
        on_epoch = None  # the refit is short and silent
        w, b, _, _, _ = fit(np.arange(len(y)), max(1, best_epoch), None)
    head = LinearHead(classes, w / temperature, b / temperature)
    return TrainResult(head, history, best_epoch or len(history), val_rows, time.perf_counter() - start,
                       temperature, {c: float(weights[i]) for i, c in enumerate(classes)})
