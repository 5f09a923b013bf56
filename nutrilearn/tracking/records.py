"""The records that cross from prediction to storage to monitoring.

One ``PredictionRecord`` per photo, failed ones included (they are what the error rate
counts). ``FeedbackRecord`` says what a person said the photo really was; it joins on
``request_id``. ``to_row`` gives the flat dict that becomes one row of a Parquet table.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

STATUS_OK = "ok"
STATUS_ERROR = "error"
SOURCES = ("app", "cli", "replay", "api")


def new_request_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


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

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


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
