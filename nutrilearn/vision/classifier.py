"""The food classifier: one forward pass of a backbone runtime, then a head, then ``Prediction``s.

The backbone is a runtime with ``forward(normalised) -> (logits, pooled)``: LiteRT for
serving (``vision/litert.py``, no TensorFlow), Keras for training, evaluation and
comparison (``vision/keras_runtime.py``). Both give the same numbers to ~1e-5, so heads,
embeddings, drift and the feature cache do not care which one ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from nutrilearn.vision import embedding
from nutrilearn.vision.heads import Head, ImageNetFoodHead, food_mass, is_food
from nutrilearn.vision.images import INPUT_SIZE, normalise
from nutrilearn.vision.model_files import RUNTIMES
from nutrilearn.vision.vocabulary import NOT_FOOD


class Backbone(Protocol):
    kind: str

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def load_backbone(models_dir: Path, runtime: str = "litert") -> Backbone:
    """The backbone in ``runtime`` ("litert" or "keras"); only "keras" imports TensorFlow.

    LiteRT needs the converted model; if setup has not made it yet (or the Keras file
    changed since), it is made now, which imports TensorFlow once (~10 s).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if runtime == "keras":
        from nutrilearn.vision.keras_runtime import KerasBackbone

        return KerasBackbone.load(models_dir)
    from nutrilearn.vision.litert import LiteRTBackbone
    from nutrilearn.vision.model_files import ModelFileError

    try:
        return LiteRTBackbone.load(models_dir)
    except ModelFileError:
        from nutrilearn.vision.conversion import ensure_tflite

        ensure_tflite(models_dir)
        return LiteRTBackbone.load(models_dir)


@dataclass(frozen=True)
class Prediction:
    """What the model said about one photo."""

    label: str  # a food label, or NOT_FOOD
    confidence: float  # P(label); for NOT_FOOD, 1 - P(any of ImageNet's foods)
    top5: tuple[tuple[str, float], ...]  # the head's five most likely foods
    is_food: bool
    pooled: np.ndarray  # (1280,) features: embeddings, drift, training


@dataclass(frozen=True)
class Features:
    """Backbone outputs for a batch."""

    logits: np.ndarray  # (N, 1000) ImageNet logits
    pooled: np.ndarray  # (N, 1280)


class FoodClassifier:
    """Backbone (built once) + head. ``with_head`` shares the backbone between versions."""

    def __init__(self, backbone: Backbone, head: Head | None = None):
        self.backbone = backbone
        self.head: Head = head or ImageNetFoodHead()

    @classmethod
    def load(cls, models_dir: Path, head: Head | None = None, runtime: str = "keras") -> "FoodClassifier":
        """Keras by default (training, evaluation); serving asks for "litert" (``serving.load_classifier``)."""
        return cls(load_backbone(models_dir, runtime), head)

    @property
    def runtime(self) -> str:
        return self.backbone.kind

    def with_head(self, head: Head) -> "FoodClassifier":
        return FoodClassifier(self.backbone, head)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.head.labels

    def features(self, pixels: np.ndarray) -> Features:
        """uint8 (N, 224, 224, 3) crops (or a sequence of (224, 224, 3) crops) -> backbone outputs."""
        if len(pixels) == 0:
            return Features(np.empty((0, 1000), np.float32), np.empty((0, 1280), np.float32))
        forward_pixels = getattr(self.backbone, "forward_pixels", None)
        if forward_pixels is not None:  # LiteRT: normalised photo by photo, the same numbers
            logits, pooled = forward_pixels(pixels)
        else:
            logits, pooled = self.backbone.forward(normalise(np.asarray(pixels)))
        return Features(logits, pooled)

    def warm_up(self) -> None:
        """Run one forward pass before a user waits on it (Keras traces: 1-2 s; LiteRT: ms)."""
        self.features(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.uint8))

    def classify(self, feats: Features) -> list[Prediction]:
        """Backbone outputs -> predictions (cheap; no network call)."""
        probs = self.head.probabilities(feats.logits, feats.pooled)
        food = is_food(feats.logits)
        not_food_conf = 1.0 - food_mass(feats.logits)
        labels = self.head.labels
        out = []
        for i in range(len(probs)):
            order = np.argsort(-probs[i])[:5]
            top5 = tuple((labels[j], float(probs[i, j])) for j in order)
            if food[i]:
                label, conf = top5[0]
            else:
                label, conf = NOT_FOOD, float(not_food_conf[i])
            out.append(Prediction(label, conf, top5, bool(food[i]), feats.pooled[i]))
        return out

    def predict(self, pixels: np.ndarray) -> list[Prediction]:
        return self.classify(self.features(pixels))

    def compact_embeddings(self, feats: Features) -> np.ndarray:
        return embedding.compact(feats.pooled)
