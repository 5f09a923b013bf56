"""The built model files and their manifest: which ``.tflite`` was converted from which ``.keras``.

``nutrilearn setup`` writes three files under ``models/``: the Keras model (the port of the
weights), the LiteRT flatbuffer converted from it, and a small JSON manifest with both
files' sha256, how far the converted model's outputs were from Keras's on the check
inputs, and which inputs those were. Serving reads the manifest to know the ``.tflite``
bytes it loads are the checked ones; setup reads it to know whether the ``.tflite`` is
stale (the Keras file changed since). TensorFlow-free on purpose: serving imports this.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

KERAS_FILENAME = "efficientnet_lite0_imagenet.keras"
TFLITE_FILENAME = "efficientnet_lite0_imagenet.tflite"
MANIFEST_FILENAME = "efficientnet_lite0_imagenet.manifest.json"
# Largest absolute difference between LiteRT and Keras outputs setup accepts.
CONVERSION_TOLERANCE = 1e-4
RUNTIMES = ("litert", "keras")


class ModelFileError(RuntimeError):
    """A model file is missing, changed since it was checked, or failed its check."""


@dataclass(frozen=True)
class Manifest:
    """What setup converted and checked (``models/<name>.manifest.json``)."""

    keras_sha256: str
    tflite_sha256: str
    max_abs_diff_logits: float
    max_abs_diff_pooled: float
    check_inputs: str  # e.g. "golden (3) + seeded (4)"
    tensorflow_version: str
    created_at: str  # UTC, ISO 8601


def keras_path(models_dir: Path) -> Path:
    return Path(models_dir) / KERAS_FILENAME


def tflite_path(models_dir: Path) -> Path:
    return Path(models_dir) / TFLITE_FILENAME


def manifest_path(models_dir: Path) -> Path:
    return Path(models_dir) / MANIFEST_FILENAME


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """A file's sha256, read in 1 MiB blocks (model files, training photos: never whole in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(models_dir: Path) -> Manifest | None:
    """The manifest, or None when absent or unreadable (setup then converts again)."""
    try:
        raw = json.loads(manifest_path(models_dir).read_text(encoding="utf-8"))
        return Manifest(**{name: raw[name] for name in Manifest.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_manifest(models_dir: Path, manifest: Manifest) -> Path:
    """Write atomically (a reader never sees half a manifest)."""
    path = manifest_path(models_dir)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(manifest), indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_checked_tflite(models_dir: Path) -> bytes:
    """The ``.tflite`` bytes, only if they are the ones setup converted and checked.

    Hashing 18 MB costs ~20 ms once per process; it stops a stale or foreign file from
    serving predictions under the checked model's name.
    """
    manifest = read_manifest(models_dir)
    path = tflite_path(models_dir)
    if manifest is None or not path.is_file():
        raise ModelFileError(f"no checked LiteRT model in {models_dir}: run `nutrilearn setup`")
    data = path.read_bytes()
    if sha256_bytes(data) != manifest.tflite_sha256:
        raise ModelFileError(f"{path} is not the file setup checked (sha256 differs): run `nutrilearn setup --rebuild`")
    return data
