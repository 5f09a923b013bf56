"""The food classifier: one compiled forward pass, then a head, then ``Prediction``s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from nutrilearn.vision import embedding
from nutrilearn.vision.heads import Head, ImageNetFoodHead, food_mass, is_food
from nutrilearn.vision.images import INPUT_SIZE, normalise
from nutrilearn.vision.network import load_model
from nutrilearn.vision.vocabulary import NOT_FOOD


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

    def __init__(self, backbone, head: Head | None = None, forward=None):
        self.backbone = backbone
        self.head: Head = head or ImageNetFoodHead()
        # model.predict costs ~60-90 ms of overhead a call here; a traced function does not.
        self._forward = forward or tf.function(
            lambda x: backbone(x, training=False),
            input_signature=[tf.TensorSpec((None, INPUT_SIZE, INPUT_SIZE, 3), tf.float32)],
        )

    @classmethod
    def load(cls, models_dir: Path, head: Head | None = None) -> "FoodClassifier":
        return cls(load_model(models_dir), head)

    def with_head(self, head: Head) -> "FoodClassifier":
        return FoodClassifier(self.backbone, head, self._forward)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.head.labels

    def features(self, pixels: np.ndarray) -> Features:
        """uint8 (N, 224, 224, 3) crops -> backbone outputs."""
        if len(pixels) == 0:
            return Features(np.empty((0, 1000), np.float32), np.empty((0, 1280), np.float32))
        logits, pooled = self._forward(tf.constant(normalise(np.asarray(pixels))))
        return Features(logits.numpy(), pooled.numpy())

    def warm_up(self) -> None:
        """Trace the compiled forward pass (about 1-2 s) before a user waits on it."""
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
