"""Keras -> LiteRT: convert the built model, check it against Keras, record both hashes.

Keras 3 models cannot go through ``TFLiteConverter.from_keras_model``; the route that
works is a ``tf.function`` with a fixed (1, 224, 224, 3) input and
``from_concrete_functions``. A fixed batch of one is what XNNPACK plans best for, and the
serving runtime can still resize it. The converted model is only used once its outputs
match Keras's within ``CONVERSION_TOLERANCE`` on the check inputs: the golden reference
inputs when they are present (``../shared/testdata``), plus seeded synthetic images (so a
fresh clone without the golden file still checks something real). Imports TensorFlow:
setup only, never serving.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np

from nutrilearn.vision.images import INPUT_SIZE
from nutrilearn.vision.model_files import (
    CONVERSION_TOLERANCE,
    Manifest,
    ModelFileError,
    keras_path,
    manifest_path,
    read_manifest,
    sha256_bytes,
    sha256_file,
    tflite_path,
    write_manifest,
)

GOLDEN_PATH = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "efficientnet_lite0_golden.npz"
SEEDED_INPUTS = 4


def check_inputs(golden_path: Path | None = GOLDEN_PATH) -> tuple[np.ndarray, str]:
    """Normalised inputs to compare the runtimes on, and a description of them."""
    parts, names = [], []
    if golden_path is not None and Path(golden_path).is_file():
        with np.load(golden_path) as golden:
            parts.append(golden["inputs_nhwc"].astype(np.float32))
        names.append(f"golden ({len(parts[0])})")
    rng = np.random.default_rng(20261129)
    # Smooth colour fields with noise: photo-like activations, in the network's input range.
    coarse = rng.uniform(0, 255, (SEEDED_INPUTS, 7, 7, 3))
    smooth = np.repeat(np.repeat(coarse, 32, axis=1), 32, axis=2)
    pixels = np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).round()
    parts.append(((pixels - 127.0) / 128.0).astype(np.float32))
    names.append(f"seeded ({SEEDED_INPUTS})")
    return np.concatenate(parts), " + ".join(names)


def convert(model) -> bytes:
    """The Keras model as a LiteRT flatbuffer (float32, fixed batch of one)."""
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec((1, INPUT_SIZE, INPUT_SIZE, 3), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
    return converter.convert()


def compare(keras_backbone, tflite: bytes, inputs: np.ndarray) -> tuple[float, float]:
    """Largest absolute differences (logits, pooled) between Keras and LiteRT on ``inputs``."""
    from nutrilearn.vision.litert import LiteRTBackbone

    want_logits, want_pooled = keras_backbone.forward(inputs)
    got_logits, got_pooled = LiteRTBackbone(tflite, batch_mode="per_photo").forward(inputs)
    return float(np.abs(got_logits - want_logits).max()), float(np.abs(got_pooled - want_pooled).max())


@contextmanager
def _build_lock(models_dir: Path) -> Iterator[None]:
    """One converter at a time per models folder (test runs and setups share it)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / ".convert.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_current(models_dir: Path) -> bool:
    """True when the ``.tflite`` is the checked conversion of the ``.keras`` there now."""
    manifest = read_manifest(models_dir)
    keras_file, tflite_file = keras_path(models_dir), tflite_path(models_dir)
    return (manifest is not None and keras_file.is_file() and tflite_file.is_file()
            and sha256_file(keras_file) == manifest.keras_sha256
            and sha256_file(tflite_file) == manifest.tflite_sha256)


def ensure_tflite(models_dir: Path, rebuild: bool = False, golden_path: Path | None = GOLDEN_PATH,
                  tolerance: float = CONVERSION_TOLERANCE) -> Manifest:
    """Convert, check and record once; again when the Keras file changed or ``rebuild``.

    Raises ``ModelFileError`` (and installs nothing) when the outputs differ beyond ``tolerance``.
    """
    import tensorflow as tf

    from nutrilearn.vision.keras_runtime import KerasBackbone
    from nutrilearn.vision.network import ensure_model

    models_dir = Path(models_dir)
    with _build_lock(models_dir):
        if not rebuild and is_current(models_dir):
            return read_manifest(models_dir)
        keras_file = ensure_model(models_dir)
        backbone = KerasBackbone.load(models_dir)
        tflite = convert(backbone.model)
        inputs, described = check_inputs(golden_path)
        diff_logits, diff_pooled = compare(backbone, tflite, inputs)
        if max(diff_logits, diff_pooled) > tolerance:
            # Whatever .tflite was there is not a checked conversion of this .keras: serve none.
            manifest_path(models_dir).unlink(missing_ok=True)
            tflite_path(models_dir).unlink(missing_ok=True)
            raise ModelFileError(
                f"the converted model differs from Keras by {max(diff_logits, diff_pooled):.2e} on {described} "
                f"inputs (limit {tolerance:g}); not installed")
        target = tflite_path(models_dir)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(tflite)
        tmp.replace(target)  # atomic: serving never reads half a model
        manifest = Manifest(
            keras_sha256=sha256_file(keras_file), tflite_sha256=sha256_bytes(tflite),
            max_abs_diff_logits=diff_logits, max_abs_diff_pooled=diff_pooled, check_inputs=described,
            tensorflow_version=tf.__version__,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        write_manifest(models_dir, manifest)
        return manifest
