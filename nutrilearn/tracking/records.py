"""The records that cross from prediction to storage to monitoring.

One ``PredictionRecord`` per photo, failed ones included (they are what the error rate
counts). ``FeedbackRecord`` says what a person said the photo really was; it joins on
``request_id``. ``to_row`` gives the flat dict that becomes one row of a Parquet table.

Two encodings live here so every writer and reader agrees on them:

* ``to_json`` / ``*_from_json``: the spool's payload (JSON, UTF-8; timestamp as ISO 8601
  UTC, embedding and thumbnail as base64). Human-readable with ``sqlite3``, no pickle anywhere.
* ``prediction_schema()`` / ``feedback_schema()``: the Arrow schema of the Parquet
  artifacts and of the reader's DataFrames (timestamp ``timestamp[us, UTC]``).
"""

from __future__ import annotations

import base64
import json
import uuid
import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Iterable, Mapping

STATUS_OK = "ok"
STATUS_ERROR = "error"
SOURCES = ("app", "cli", "replay", "api")
REPLAY_SOURCE = "replay"
# A challenger's answer to a photo the champion answered: the champion's request id plus this.
SHADOW_SUFFIX = ".challenger"


MAX_TEXT = 1_000  # characters in any one text field (error messages are cut, not refused)
MAX_ID = 200  # request ids, user, model name/version/alias: they become tags and keys
MAX_TOP = 10
MAX_EMBEDDING_BYTES = 512
MAX_THUMBNAIL_BYTES = 16_384  # a 128 px WebP is 2-6 KB; anything bigger is not a thumbnail
THUMBNAIL_FORMATS = (b"RIFF", b"\xff\xd8\xff")  # WebP, JPEG: what browsers and PIL both show


class InvalidRecord(ValueError):
    """A record that would not survive the trip to MLflow; nothing of it was stored."""


def new_request_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(when: datetime) -> datetime:
    """Aware UTC datetime; a naive one is taken to be UTC already."""
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


@dataclass
class PredictionRecord:
    request_id: str
    timestamp: datetime  # UTC
    user: str
    model_name: str
    model_version: str
    model_alias: str
    status: str  # "ok" or "error"
    source: str = "app"  # app | cli | replay | api; replayed traffic is never mistaken for live
    filename: str = ""
    error_type: str | None = None
    error_message: str | None = None
    label: str | None = None
    confidence: float | None = None
    is_food: bool | None = None
    top5_labels: list[str] = field(default_factory=list)
    top5_probs: list[float] = field(default_factory=list)
    decode_ms: float | None = None
    preprocess_ms: float | None = None
    inference_ms: float | None = None
    total_ms: float | None = None
    image_width: int | None = None
    image_height: int | None = None
    image_format: str | None = None
    image_bytes: int | None = None
    brightness: float | None = None
    contrast: float | None = None
    saturation: float | None = None
    sharpness: float | None = None
    aspect: float | None = None
    embedding: bytes | None = None  # compact embedding, see nutrilearn.vision.embedding
    # A small WebP of the photo (longest side <= 128 px), see nutrilearn.vision.thumbnails;
    # its own Parquet column, read only by pages that show photos (monitoring.photos).
    thumbnail: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def replayed(self) -> bool:
        return self.source == REPLAY_SOURCE

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        """The spool payload; a shallow dict (``asdict`` deep-copies: 3x slower here)."""
        return _dumps({name: getattr(self, name) for name in PREDICTION_FIELDS})


@dataclass
class FeedbackRecord:
    request_id: str
    timestamp: datetime  # UTC
    user: str
    label: str  # what the photo really shows
    predicted_label: str | None = None
    source: str = "app"

    @property
    def kind(self) -> str:
        return "confirmed" if self.label == self.predicted_label else "corrected"

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["kind"] = self.kind
        return row

    def to_json(self) -> bytes:
        return _dumps({name: getattr(self, name) for name in FEEDBACK_FIELDS[:-1]})


def _check_text(errors: list[str], name: str, value: Any, *, required: bool = False,
                limit: int = MAX_TEXT) -> None:
    if value is None:
        if required:
            errors.append(f"{name} is missing")
        return
    if not isinstance(value, str):
        errors.append(f"{name} must be text, not {type(value).__name__}")
        return
    if required and not value.strip():
        errors.append(f"{name} is empty")
    if len(value) > limit:
        errors.append(f"{name} is {len(value)} characters (at most {limit})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        errors.append(f"{name} is not valid UTF-8 text (undecodable bytes, e.g. from a file name)")


def _check_number(errors: list[str], name: str, value: Any, low: float | None = None,
                  high: float | None = None, integer: bool = False) -> None:
    if value is None:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) and not hasattr(value, "__float__"):
        errors.append(f"{name} must be a number, not {type(value).__name__}")
        return
    number = float(value)
    if not math.isfinite(number):
        errors.append(f"{name} is {number}")
    elif (low is not None and number < low) or (high is not None and number > high):
        errors.append(f"{name} = {number:g} is outside [{low}, {high}]")


def _check_common(errors: list[str], record: Any) -> None:
    _check_text(errors, "request_id", record.request_id, required=True, limit=MAX_ID)
    if not isinstance(record.timestamp, datetime):
        errors.append(f"timestamp must be a datetime, not {type(record.timestamp).__name__}")
    _check_text(errors, "user", record.user, required=True, limit=MAX_ID)
    if record.source not in SOURCES:
        errors.append(f"source must be one of {SOURCES}, not {record.source!r}")


def check_prediction(record: PredictionRecord) -> None:
    """Raise ``InvalidRecord`` naming every problem; ``submit`` calls this before spooling."""
    errors: list[str] = []
    _check_common(errors, record)
    for name in ("model_name", "model_version", "model_alias"):
        _check_text(errors, name, getattr(record, name), required=name != "model_alias", limit=MAX_ID)
    if record.status not in (STATUS_OK, STATUS_ERROR):
        errors.append(f"status must be {STATUS_OK!r} or {STATUS_ERROR!r}, not {record.status!r}")
    for name in ("filename", "error_type", "error_message", "label", "image_format"):
        _check_text(errors, name, getattr(record, name), limit=10 * MAX_TEXT if name == "error_message" else MAX_TEXT)
    if record.status == STATUS_OK and (record.label is None or record.confidence is None):
        errors.append("an ok prediction needs a label and a confidence")
    _check_number(errors, "confidence", record.confidence, 0.0, 1.0)
    if record.is_food is not None and not isinstance(record.is_food, bool):
        errors.append(f"is_food must be true, false or missing, not {type(record.is_food).__name__}")
    labels, probs = record.top5_labels, record.top5_probs
    if not isinstance(labels, list) or not isinstance(probs, list):
        errors.append("top5_labels and top5_probs must be lists")
    else:
        if len(labels) != len(probs) or len(labels) > MAX_TOP:
            errors.append(f"top5 has {len(labels)} labels and {len(probs)} probabilities (equal, at most {MAX_TOP})")
        for i, label in enumerate(labels):
            _check_text(errors, f"top5_labels[{i}]", label, required=True)
        for i, p in enumerate(probs):
            _check_number(errors, f"top5_probs[{i}]", p, 0.0, 1.0)
    for name in ("decode_ms", "preprocess_ms", "inference_ms", "total_ms", "brightness", "contrast",
                 "saturation", "sharpness", "aspect"):
        _check_number(errors, name, getattr(record, name), 0.0)
    for name in ("image_width", "image_height", "image_bytes"):
        _check_number(errors, name, getattr(record, name), 0, integer=True)
    if record.embedding is not None and (not isinstance(record.embedding, (bytes, bytearray))
                                         or len(record.embedding) > MAX_EMBEDDING_BYTES):
        errors.append(f"embedding must be at most {MAX_EMBEDDING_BYTES} bytes")
    if record.thumbnail is not None:
        thumb = record.thumbnail
        if not isinstance(thumb, (bytes, bytearray)) or not 0 < len(thumb) <= MAX_THUMBNAIL_BYTES:
            errors.append(f"thumbnail must be 1 to {MAX_THUMBNAIL_BYTES} bytes")
        elif not bytes(thumb[:4]).startswith(THUMBNAIL_FORMATS):
            errors.append("thumbnail must be a WebP or JPEG image")
    if errors:
        raise InvalidRecord(f"prediction {str(record.request_id)[:40]!r} not logged: " + "; ".join(errors))


def check_feedback(feedback: FeedbackRecord) -> None:
    """Raise ``InvalidRecord`` naming every problem; ``submit_feedback`` calls this first."""
    errors: list[str] = []
    _check_common(errors, feedback)
    _check_text(errors, "label", feedback.label, required=True)
    _check_text(errors, "predicted_label", feedback.predicted_label)
    if errors:
        raise InvalidRecord(f"feedback {str(feedback.request_id)[:40]!r} not logged: " + "; ".join(errors))


def check_row(kind: str, row: Mapping[str, Any]) -> None:
    """The same checks on a decoded spool row (the flusher's last line of defence)."""
    try:
        if kind == "predictions":
            record = PredictionRecord(**{k: row[k] for k in PREDICTION_FIELDS if k in row})
        else:
            record = FeedbackRecord(**{k: row[k] for k in FEEDBACK_FIELDS if k in row and k != "kind"})
    except TypeError as exc:  # a required field is missing
        raise InvalidRecord(f"{kind} row is incomplete: {exc}") from exc
    (check_prediction if kind == "predictions" else check_feedback)(record)


PREDICTION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PredictionRecord))
# Every column but the photo bytes: what reads return unless they ask for ``thumbnail``.
ROW_FIELDS: tuple[str, ...] = tuple(name for name in PREDICTION_FIELDS if name != "thumbnail")
FEEDBACK_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(FeedbackRecord)) + ("kind",)


def _dumps(row: dict[str, Any]) -> bytes:
    row["timestamp"] = as_utc(row["timestamp"]).isoformat()
    for name in ("embedding", "thumbnail"):
        if row.get(name) is not None:
            row[name] = base64.b64encode(row[name]).decode("ascii")
    return json.dumps(row, separators=(",", ":"), allow_nan=True, default=_plain).encode("utf-8")


def _plain(value: Any) -> Any:
    """numpy scalars and arrays (a float32 confidence, say) as JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def row_from_json(payload: bytes | str) -> dict[str, Any]:
    """A spool payload back to a ``to_row``-shaped dict (timestamp aware, embedding bytes)."""
    row = json.loads(payload)
    row["timestamp"] = as_utc(datetime.fromisoformat(row["timestamp"]))
    for name in ("embedding", "thumbnail"):
        if row.get(name) is not None:
            row[name] = base64.b64decode(row[name])
    return row


def prediction_from_json(payload: bytes | str) -> PredictionRecord:
    row = row_from_json(payload)
    return PredictionRecord(**{k: row[k] for k in PREDICTION_FIELDS if k in row})


def feedback_from_json(payload: bytes | str) -> FeedbackRecord:
    row = row_from_json(payload)
    return FeedbackRecord(**{k: row[k] for k in FEEDBACK_FIELDS if k in row and k != "kind"})


@lru_cache(maxsize=1)
def prediction_schema():
    """Arrow schema of ``predictions.parquet`` and of the reader's prediction frames."""
    import pyarrow as pa

    f64, s = pa.float64(), pa.string()
    types = {
        "request_id": s, "timestamp": pa.timestamp("us", tz="UTC"), "user": s,
        "model_name": s, "model_version": s, "model_alias": s, "status": s, "source": s,
        "filename": s, "error_type": s, "error_message": s, "label": s,
        "confidence": f64, "is_food": pa.bool_(),
        "top5_labels": pa.list_(s), "top5_probs": pa.list_(f64),
        "decode_ms": f64, "preprocess_ms": f64, "inference_ms": f64, "total_ms": f64,
        "image_width": pa.int64(), "image_height": pa.int64(), "image_format": s,
        "image_bytes": pa.int64(),
        "brightness": f64, "contrast": f64, "saturation": f64, "sharpness": f64, "aspect": f64,
        "embedding": pa.binary(),
        "thumbnail": pa.binary(),
    }
    assert tuple(types) == PREDICTION_FIELDS, "schema and PredictionRecord disagree"
    return pa.schema([pa.field(name, typ) for name, typ in types.items()])


@lru_cache(maxsize=1)
def feedback_schema():
    import pyarrow as pa

    s = pa.string()
    types = {"request_id": s, "timestamp": pa.timestamp("us", tz="UTC"), "user": s, "label": s,
             "predicted_label": s, "source": s, "kind": s}
    assert tuple(types) == FEEDBACK_FIELDS, "schema and FeedbackRecord disagree"
    return pa.schema([pa.field(name, typ) for name, typ in types.items()])


def rows_to_table(rows: Iterable[Mapping[str, Any]], kind: str):
    """``to_row`` dicts (or decoded spool payloads) to an Arrow table of the kind's schema."""
    import pyarrow as pa

    if kind == "predictions":
        return pa.Table.from_pylist(list(rows), schema=prediction_schema())
    rows = [dict(r, kind="confirmed" if r.get("label") == r.get("predicted_label") else "corrected") for r in rows]
    return pa.Table.from_pylist(rows, schema=feedback_schema())
