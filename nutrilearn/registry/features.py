"""Labelled photo folders and their backbone features, computed once and cached by file hash.

A data folder is a folder of class folders (``DIR/<label>/*.jpg``). Several folders can
be combined (``--data`` plus ``--base``): their class folders merge by name. Every photo
is read once to hash it; the sha256 keys the feature cache, so moving or renaming photos
costs nothing and a changed photo is recomputed. The manifest hash (sorted label + sha256
pairs) names exactly which photos a version was trained or evaluated on.

Cached per photo: the 1280-d pooled features and the 1000 ImageNet logits of the centre
crop (what serving sees), and, when flip augmentation is asked for, the pooled features
of its mirror image. The cache folder is named after the backbone weights' sha256 and the
preprocessing, so a different backbone never reads stale features.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from nutrilearn.pipeline import IMAGE_SUFFIXES
from nutrilearn.vision.model_files import sha256_file

Progress = Callable[[int, int], None]
# Bump when the crop/resize/normalisation or what is cached changes.
FEATURE_FORMAT = "crop875-bicubic224-v1"


class DataError(ValueError):
    """A data folder that cannot be used (missing, no class folders, no photos)."""


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    label: str
    sha256: str


@dataclass
class Dataset:
    """Photos with labels; ``features`` fills the arrays below (row i = photos[i])."""

    photos: list[LabelledPhoto]
    roots: tuple[Path, ...]
    pooled: np.ndarray | None = None
    logits: np.ndarray | None = None
    pooled_flip: np.ndarray | None = None
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    note: str = ""  # e.g. "held-out validation split of ", put before the folders in describe()

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.photos]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.labels)))

    @property
    def manifest_hash(self) -> str:
        return manifest_hash(self.photos)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for label in self.labels:
            out[label] = out.get(label, 0) + 1
        return dict(sorted(out.items()))

    def describe(self) -> str:
        """Short text for tables: the folders, photo and class counts, manifest hash."""
        where = " + ".join(str(r) for r in self.roots)
        return f"{self.note}{where} ({len(self.photos)} photos, {len(self.classes)} classes, manifest {self.manifest_hash[:12]})"

    def subset(self, index: Sequence[int] | np.ndarray) -> "Dataset":
        index = np.asarray(index, dtype=np.int64)
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return Dataset([self.photos[i] for i in index], self.roots, pick(self.pooled), pick(self.logits),
                       pick(self.pooled_flip), list(self.skipped))


def manifest_hash(photos: Sequence[LabelledPhoto]) -> str:
    """sha256 over the sorted (label, photo sha256) pairs: independent of paths and order."""
    pairs = sorted((p.label, p.sha256) for p in photos)
    return hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()


def scan(roots: Sequence[Path]) -> Dataset:
    """Folders of class folders -> a ``Dataset`` (no features yet). Hidden entries are ignored."""
    photos: list[LabelledPhoto] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"no such data folder: {root}")
        class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not class_dirs:
            raise DataError(f"{root} has no class folders; expected {root}/<label>/<photo>.jpg")
        for class_dir in class_dirs:
            for path in sorted(class_dir.iterdir()):
                if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES:
                    photos.append(LabelledPhoto(path, class_dir.name, sha256_file(path)))
    if not photos:
        raise DataError("no photos found in " + ", ".join(str(r) for r in roots))
    return Dataset(photos, tuple(Path(r).resolve() for r in roots))


def cache_dir(models_dir: Path) -> Path:
    from nutrilearn.vision.weights import WEIGHTS_SHA256

    return Path(models_dir) / "feature-cache" / f"{WEIGHTS_SHA256[:16]}-{FEATURE_FORMAT}"


class FeatureCache:
    """One small ``.npz`` per photo sha256 (no pickle), written atomically."""

    KEYS = ("pooled", "logits")  # always there; "pooled_flip" only once flips were asked for

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _path(self, sha: str) -> Path:
        return self.directory / sha[:2] / f"{sha}.npz"

    def get(self, sha: str, flips: bool = False) -> dict[str, np.ndarray] | None:
        path = self._path(sha)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = self.KEYS + (("pooled_flip",) if flips else ())
                return {k: data[k] for k in keys}
        except (OSError, KeyError, ValueError):
            return None  # a damaged entry (or one without the flips asked for) is recomputed

    def put(self, sha: str, **arrays: np.ndarray) -> None:
        path = self._path(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)


def compute_features(dataset: Dataset, classifier, settings, progress: Progress | None = None,
                     batch_size: int = 32, flips: bool = False) -> Dataset:
    """Fill ``dataset``'s feature arrays from the cache, running the backbone on the rest.

    ``flips`` also gives the mirror images' pooled features (twice the backbone work when
    not cached). Photos that cannot be decoded are dropped (listed in ``dataset.skipped``).
    """
    from nutrilearn.vision.images import ImageError, crop_and_resize, decode_image

    cache = FeatureCache(cache_dir(settings.models_dir))
    found: dict[str, dict[str, np.ndarray]] = {}
    todo: list[int] = []
    for i, photo in enumerate(dataset.photos):
        entry = found.get(photo.sha256) or cache.get(photo.sha256, flips)
        if entry is None:
            todo.append(i)
        else:
            found[photo.sha256] = entry
    total, done = len(dataset.photos), len(dataset.photos) - len(todo)
    if progress:
        progress(done, total)
    bad: set[int] = set()
    for start in range(0, len(todo), batch_size):
        chunk, crops = [], []
        for i in todo[start : start + batch_size]:
            photo = dataset.photos[i]
            if photo.sha256 in found:
                continue
            try:
                decoded = decode_image(photo.path.read_bytes(), settings.max_upload_bytes, settings.max_pixels)
            except (ImageError, OSError) as exc:
                bad.add(i)
                dataset.skipped.append((photo.path, str(exc)))
                continue
            chunk.append(i)
            crops.append(crop_and_resize(decoded.image))
        if crops:
            pixels = np.stack(crops)
            feats = classifier.features(np.concatenate([pixels, pixels[:, :, ::-1]]) if flips else pixels)
            n = len(crops)
            for k, i in enumerate(chunk):
                entry = {"pooled": feats.pooled[k].astype(np.float32), "logits": feats.logits[k].astype(np.float32)}
                if flips:
                    entry["pooled_flip"] = feats.pooled[n + k].astype(np.float32)
                cache.put(dataset.photos[i].sha256, **entry)
                found[dataset.photos[i].sha256] = entry
        done = min(total, done + len(todo[start : start + batch_size]))
        if progress:
            progress(done, total)
    if bad:
        dataset.photos = [p for i, p in enumerate(dataset.photos) if i not in bad]
    if not dataset.photos:
        raise DataError("none of the photos could be decoded")
    dataset.pooled = np.stack([found[p.sha256]["pooled"] for p in dataset.photos])
    dataset.logits = np.stack([found[p.sha256]["logits"] for p in dataset.photos])
    dataset.pooled_flip = np.stack([found[p.sha256]["pooled_flip"] for p in dataset.photos]) if flips else None
    return dataset


def load_dataset(roots: Sequence[Path], classifier, settings, progress: Progress | None = None,
                 flips: bool = False) -> Dataset:
    """``scan`` + ``compute_features``."""
    return compute_features(scan(roots), classifier, settings, progress, flips=flips)
