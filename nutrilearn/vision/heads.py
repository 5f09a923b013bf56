"""Heads turn the backbone's outputs into food probabilities (numpy only, no TensorFlow).

``ImageNetFoodHead`` is version 1: ImageNet's own classifier restricted to its 46 foods.
``LinearHead`` is a softmax layer trained on the 1280-d pooled features (``registry``
trains them). Both are saved as ``.npz`` without pickle, so loading one never runs code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nutrilearn.vision.vocabulary import FOOD_INDICES, FOOD_LABELS, PLATE_INDEX

# "Not a recognised food" rule (documented in docs/architecture.md): over all 1,000
# ImageNet classes, the photo is not food when the single most likely class is neither a
# food nor a plate AND the 46 food classes together hold less than this probability.
FOOD_MASS_THRESHOLD = 0.10
_FOOD_OR_PLATE = np.zeros(1000, dtype=bool)
_FOOD_OR_PLATE[FOOD_INDICES] = True
_FOOD_OR_PLATE[PLATE_INDEX] = True


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def food_mass(imagenet_logits: np.ndarray) -> np.ndarray:
    """Probability, over all 1,000 ImageNet classes, that the photo shows one of the 46 foods."""
    return softmax(imagenet_logits)[:, FOOD_INDICES].sum(axis=1)


def is_food(imagenet_logits: np.ndarray) -> np.ndarray:
    """The "not a recognised food" rule, per row."""
    top = np.argmax(imagenet_logits, axis=1)
    return _FOOD_OR_PLATE[top] | (food_mass(imagenet_logits) >= FOOD_MASS_THRESHOLD)


@dataclass(frozen=True)
class ImageNetFoodHead:
    """Softmax restricted to ImageNet's food classes."""

    kind = "imagenet-food"
    labels: tuple[str, ...] = FOOD_LABELS

    def probabilities(self, imagenet_logits: np.ndarray, pooled: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(imagenet_logits)[:, FOOD_INDICES])

    def save(self, path: Path) -> None:
        np.savez(path, kind=np.array(self.kind), labels=np.array(self.labels))


@dataclass(frozen=True)
class LinearHead:
    """softmax(pooled @ weight + bias) over ``labels``."""

    labels: tuple[str, ...]
    weight: np.ndarray  # (1280, K)
    bias: np.ndarray  # (K,)
    kind = "linear"

    def __post_init__(self) -> None:
        if self.weight.shape != (self.weight.shape[0], len(self.labels)) or self.bias.shape != (len(self.labels),):
            raise ValueError("head weight/bias shapes do not match its labels")

    def probabilities(self, imagenet_logits: np.ndarray, pooled: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(pooled, dtype=np.float64) @ self.weight + self.bias)

    def save(self, path: Path) -> None:
        np.savez(path, kind=np.array(self.kind), labels=np.array(self.labels), weight=self.weight, bias=self.bias)


Head = ImageNetFoodHead | LinearHead


def load_head(path: Path) -> Head:
    """Read a head saved by ``save`` (``allow_pickle=False``: data only)."""
    with np.load(path, allow_pickle=False) as data:
        kind = str(data["kind"])
        labels = tuple(str(x) for x in data["labels"])
        if kind == ImageNetFoodHead.kind:
            return ImageNetFoodHead(labels)
        if kind == LinearHead.kind:
            return LinearHead(labels, data["weight"].astype(np.float64), data["bias"].astype(np.float64))
    raise ValueError(f"unknown head kind {kind!r} in {path}")
