"""From uploaded bytes to ``PredictionRecord``s: decode, preprocess, one batched forward pass.

This is the prediction path the app, the CLI and replay share. Each photo is timed
(decode, preprocess, its share of the batch's inference); a photo that fails becomes an
error record and the rest of the batch goes on.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Protocol, Sequence

import numpy as np

from nutrilearn.config import Settings
from nutrilearn.tracking.records import STATUS_ERROR, STATUS_OK, PredictionRecord, new_request_id, utc_now
from nutrilearn.vision import embedding
from nutrilearn.vision.blas import one_blas_thread
from nutrilearn.vision.images import ImageError, crop_and_resize, decode_image, image_stats
from nutrilearn.vision.thumbnails import make_thumbnail

REGISTERED_MODEL_NAME = "nutrilearn-food-classifier"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True)
class ModelInfo:
    """Which model version answered: logged with every record."""

    name: str = REGISTERED_MODEL_NAME
    version: str = "1"
    alias: str = "champion"


@dataclass(frozen=True)
class Photo:
    """One upload: a display name (never used as a path) and its bytes."""

    name: str
    data: bytes


@dataclass
class Prepared:
    """A decoded chunk waiting for the model: every record, and the crops of the good ones."""

    records: list[PredictionRecord]
    crops: list[np.ndarray]
    ok_index: list[int]  # positions in ``records`` of the photos in ``crops``


class RecordSink(Protocol):
    def submit(self, record: PredictionRecord) -> None: ...


Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PathError:
    """A path that could not even be read: no record of an image, but still reported."""

    kind: str  # file_not_found | unreadable_file
    message: str


def photos_from_paths(paths: Iterable[Path]) -> list[tuple[Path, Photo | PathError]]:
    """Expand files and folders (recursively, by image suffix), keeping the order given."""
    out: list[tuple[Path, Photo | PathError]] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            out.append((path, PathError("file_not_found", f"no such file or folder: {path}")))
            continue
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files = [path]
        for file in files:
            try:
                out.append((file, Photo(file.name, file.read_bytes())))
            except OSError as exc:
                out.append((file, PathError("unreadable_file", f"cannot read {file}: {exc.strerror or exc}")))
    return out


def _thumbnail(image) -> bytes | None:
    """The record's thumbnail; a photo the model can read is never lost to its thumbnail."""
    try:
        return make_thumbnail(image)
    except (OSError, ValueError):
        return None


class Analyzer:
    """Runs the prediction path for a batch of photos and hands every record to a sink."""

    def __init__(self, classifier, model: ModelInfo, settings: Settings, sink: RecordSink | None = None):
        self.classifier = classifier
        self.model = model
        self.settings = settings
        self.sink = sink

    def _record(self, photo_name: str, user: str, source: str, when: datetime | None) -> PredictionRecord:
        return PredictionRecord(
            request_id=new_request_id(),
            timestamp=when or utc_now(),
            user=user,
            model_name=self.model.name,
            model_version=self.model.version,
            model_alias=self.model.alias,
            status=STATUS_OK,
            source=source,
            filename=Path(photo_name).name[:255],
        )

    def analyze(
        self,
        photos: Sequence[Photo],
        user: str,
        source: str = "app",
        batch_size: int = 32,
        progress: Progress | None = None,
        timestamps: Sequence[datetime] | None = None,
    ) -> list[PredictionRecord]:
        """Predict every photo; one record each, in order, errors included.

        Decoding the next chunk overlaps the model's work on the current one (PIL and
        LiteRT both release the GIL): 1.14x on 256-photo batches (bench/bench_predict.py).
        The first chunk, which nothing overlaps, is decoded in two halves at once. BLAS
        runs on one thread meanwhile (``vision/blas.py``: the same numbers, no spinning).
        """
        with one_blas_thread():
            return self._analyze(photos, user, source, batch_size, progress, timestamps)

    def _analyze(self, photos, user, source, batch_size, progress, timestamps) -> list[PredictionRecord]:
        starts = range(0, len(photos), batch_size)
        jobs = [(photos[i : i + batch_size],
                 timestamps[i : i + batch_size] if timestamps is not None else [None] * len(photos[i : i + batch_size]))
                for i in starts]
        records: list[PredictionRecord] = []
        # A one-photo request (the app's usual case) needs no decode thread.
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode") if len(photos) > 1 else None
        try:
            prepared = self._prepare_halves(*jobs[0], user, source, pool) if jobs else None
            for k in range(len(jobs)):
                upcoming = pool.submit(self._prepare, *jobs[k + 1], user, source) if k + 1 < len(jobs) else None
                records.extend(self._predict(prepared))
                if progress is not None:
                    progress(len(records), len(photos))
                prepared = upcoming.result() if upcoming is not None else None
        finally:
            if pool is not None:
                pool.shutdown()
        if self.sink is not None:
            for record in records:
                self.sink.submit(record)
        return records

    def _prepare_halves(self, chunk: Sequence[Photo], whens, user: str, source: str,
                        pool: ThreadPoolExecutor | None) -> Prepared:
        """``_prepare`` with the second half of the chunk in ``pool`` meanwhile (both cores busy)."""
        half = len(chunk) // 2
        if pool is None or half == 0:
            return self._prepare(chunk, whens, user, source)
        later = pool.submit(self._prepare, chunk[half:], whens[half:], user, source)
        first = self._prepare(chunk[:half], whens[:half], user, source)
        second = later.result()
        return Prepared(first.records + second.records, first.crops + second.crops,
                        first.ok_index + [len(first.records) + i for i in second.ok_index])

    def _prepare(self, chunk: Sequence[Photo], whens, user: str, source: str) -> Prepared:
        """Decode, check and preprocess a chunk; failures become error records here."""
        records, crops, ok_index = [], [], []
        for photo, when in zip(chunk, whens):
            rec = self._record(photo.name, user, source, when)
            rec.image_bytes = len(photo.data)
            t0 = time.perf_counter()
            try:
                decoded = decode_image(photo.data, self.settings.max_upload_bytes, self.settings.max_pixels)
                t1 = time.perf_counter()
                pixels = crop_and_resize(decoded.image)
                stats = image_stats(pixels, decoded.width / decoded.height)
                if self.settings.keep_thumbnails:  # counted in preprocess_ms: it is this photo's work
                    rec.thumbnail = _thumbnail(decoded.image)
                t2 = time.perf_counter()
            except ImageError as exc:
                rec.status, rec.error_type, rec.error_message = STATUS_ERROR, exc.kind, str(exc)
                rec.decode_ms = rec.total_ms = (time.perf_counter() - t0) * 1000.0
                records.append(rec)
                continue
            rec.decode_ms, rec.preprocess_ms = (t1 - t0) * 1000.0, (t2 - t1) * 1000.0
            rec.image_width, rec.image_height, rec.image_format = decoded.width, decoded.height, decoded.format
            rec.brightness, rec.contrast, rec.saturation = stats.brightness, stats.contrast, stats.saturation
            rec.sharpness, rec.aspect = stats.sharpness, stats.aspect
            ok_index.append(len(records))
            records.append(rec)
            crops.append(pixels)
        return Prepared(records, crops, ok_index)

    def _predict(self, prepared: Prepared) -> list[PredictionRecord]:
        """One forward pass for the chunk's good photos; fills in their records."""
        records, crops, ok_index = prepared.records, prepared.crops, prepared.ok_index
        if not crops:
            return records
        t0 = time.perf_counter()
        try:
            feats = self.classifier.features(crops)  # LiteRT normalises photo by photo: no stacked copy
            predictions = self.classifier.classify(feats)
        except Exception as exc:  # a model failure is a logged error, not a lost request
            for i in ok_index:
                rec = records[i]
                rec.status, rec.error_type = STATUS_ERROR, "model_error"
                rec.error_message = f"the model failed: {type(exc).__name__}: {exc}"
            return records
        per_photo_ms = (time.perf_counter() - t0) * 1000.0 / len(crops)
        compact = embedding.compact(feats.pooled)
        for i, pred, vec in zip(ok_index, predictions, compact):
            rec = records[i]
            rec.label, rec.confidence, rec.is_food = pred.label, pred.confidence, pred.is_food
            rec.top5_labels = [label for label, _ in pred.top5]
            rec.top5_probs = [p for _, p in pred.top5]
            rec.inference_ms = per_photo_ms
            rec.total_ms = rec.decode_ms + rec.preprocess_ms + per_photo_ms
            rec.embedding = embedding.to_bytes(vec)
        return records
