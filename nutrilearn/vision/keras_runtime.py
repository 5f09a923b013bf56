"""The Keras backbone as a runtime: the reference path (training, evaluation, comparison).

Serving uses ``litert.LiteRTBackbone``; this one stays for what needs TensorFlow anyway
(the port, the golden test, training and evaluation) and for ``NUTRILEARN_RUNTIME=keras``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from nutrilearn.vision.images import INPUT_SIZE
from nutrilearn.vision.network import load_model


class KerasBackbone:
    """``forward(x) -> (logits, pooled)`` through a compiled ``tf.function``."""

    kind = "keras"

    def __init__(self, model):
        self.model = model
        # model.predict costs ~60-90 ms of overhead a call here; a traced function does not.
        self._forward = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec((None, INPUT_SIZE, INPUT_SIZE, 3), tf.float32)],
        )

    @classmethod
    def load(cls, models_dir: Path) -> "KerasBackbone":
        return cls(load_model(models_dir))

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised float32 (N, 224, 224, 3) -> ImageNet logits (N, 1000), pooled (N, 1280)."""
        logits, pooled = self._forward(tf.constant(x, dtype=tf.float32))
        return logits.numpy(), pooled.numpy()
