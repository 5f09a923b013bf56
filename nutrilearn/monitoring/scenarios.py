"""Controlled shifts on real photos: how the drift detectors are proven (tests and bench).

The expensive part, the forward pass (~25-35 ms a photo), runs once per photo set and is
cached as Parquet keyed by the file list, the model file and the transform; the cheap
part, drawing many reference/current windows from those predictions, runs as often as a
power study needs. Darkening is applied to the decoded pixels, and the darkened photos go
through the same prediction path (image statistics, model, embeddings) as real uploads.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from nutrilearn.pipeline import IMAGE_SUFFIXES, Photo

PhotoTransform = Callable[[Photo], Photo]


def darken(factor: float) -> PhotoTransform:
    """Scale every pixel by ``1 - factor`` (0.4 = 40% darker), re-encoded losslessly (PNG)."""
    from PIL import Image, ImageOps

    def transform(photo: Photo) -> Photo:
        with Image.open(io.BytesIO(photo.data)) as img:
            rgb = ImageOps.exif_transpose(img).convert("RGB")
        pixels = np.asarray(rgb, dtype=np.float32) * (1.0 - factor)
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB").save(buf, "PNG", compress_level=1)
        return Photo(photo.name, buf.getvalue())

    transform.key = f"darken{factor:g}"  # type: ignore[attr-defined]
    return transform


def labelled_files(root: Path) -> list[tuple[Path, str]]:
    """``root/<class>/*.jpg`` (any depth of split folders above) -> (file, class) pairs."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return [(p, p.parent.name) for p in files]


def _cache_key(files: Sequence[Path], model_file: Path | None, transform_key: str) -> str:
    h = hashlib.sha256(transform_key.encode())
    if model_file is not None and Path(model_file).is_file():
        st = Path(model_file).stat()
        h.update(f"{Path(model_file).name}:{st.st_size}:{int(st.st_mtime)}".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}\n".encode())
    return h.hexdigest()[:20]


def predict_files(
    analyzer,
    files: Sequence[tuple[Path, str]],
    transform: PhotoTransform | None = None,
    cache_dir: Path | None = None,
    model_file: Path | None = None,
    batch_size: int = 32,
) -> pd.DataFrame:
    """Predictions for labelled photos (optionally transformed): a predictions DataFrame
    with an extra ``true_label`` column, in file order. Cached under ``cache_dir``."""
    from nutrilearn.monitoring.windows import records_frame

    paths = [p for p, _ in files]
    key = _cache_key(paths, model_file, getattr(transform, "key", "none"))
    cached = Path(cache_dir) / f"predictions-{key}.parquet" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return pd.read_parquet(cached)
    frames = []
    for start in range(0, len(files), 128):  # bounded memory: 128 photos decoded at a time
        photos = [Photo(p.name, p.read_bytes()) for p, _ in files[start : start + 128]]
        if transform is not None:
            photos = [transform(photo) for photo in photos]
        frames.append(records_frame(analyzer.analyze(photos, user="drift", source="cli", batch_size=batch_size)))
    frame = pd.concat(frames, ignore_index=True)
    frame["true_label"] = [label for _, label in files]
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(cached)
    return frame


# --- drawing windows from a pool of predictions (cheap: index arithmetic only) ---------


def null_split(pool: pd.DataFrame, n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two disjoint random windows of ``n`` from the same photos: no shift by construction."""
    idx = rng.choice(len(pool), size=2 * n, replace=False)
    return pool.iloc[idx[:n]], pool.iloc[idx[n:]]


def share_shift(
    pool: pd.DataFrame, n: int, food: str, share: float, rng: np.random.Generator, by: str = "true_label"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference: ``n`` photos with every class equally likely. Current: ``n`` other photos
    where ``food`` makes up ``share`` of the window and the rest is spread evenly."""
    classes = sorted(pool[by].unique())
    others = [c for c in classes if c != food]
    per_class = {c: np.flatnonzero(pool[by].to_numpy() == c) for c in classes}
    ref_counts = _even_counts(n, classes, rng)
    cur_counts = {food: int(round(share * n))}
    cur_counts.update(_even_counts(n - cur_counts[food], others, rng))
    ref_idx, cur_idx = [], []
    for c in classes:
        chosen = rng.choice(per_class[c], size=ref_counts[c] + cur_counts[c], replace=False)
        ref_idx.extend(chosen[: ref_counts[c]])
        cur_idx.extend(chosen[ref_counts[c] :])
    return pool.iloc[rng.permutation(ref_idx)], pool.iloc[rng.permutation(cur_idx)]


def _even_counts(n: int, classes: Sequence[str], rng: np.random.Generator) -> dict[str, int]:
    base, extra = divmod(n, len(classes))
    lucky = set(rng.choice(len(classes), size=extra, replace=False).tolist())
    return {c: base + (i in lucky) for i, c in enumerate(classes)}


def class_split(
    pool: pd.DataFrame, n: int, reference_classes: Sequence[str], rng: np.random.Generator, by: str = "true_label"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference: photos of ``reference_classes``; current: photos of the other foods."""
    in_ref = pool[by].isin(reference_classes).to_numpy()
    ref = rng.choice(np.flatnonzero(in_ref), size=n, replace=False)
    cur = rng.choice(np.flatnonzero(~in_ref), size=n, replace=False)
    return pool.iloc[ref], pool.iloc[cur]


def paired_shift(
    pool: pd.DataFrame, shifted: pd.DataFrame, n: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference from ``pool``, current from ``shifted`` (the same photos transformed),
    never the same photo in both windows."""
    idx = rng.choice(len(pool), size=2 * n, replace=False)
    return pool.iloc[idx[:n]], shifted.iloc[idx[n:]]
