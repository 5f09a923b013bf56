"""Plausible prediction and feedback records without the model: for tests, benches, demos.

Deterministic in ``i`` (one numpy generator seeded by it); every 17th record is a failed
request by default, as real traffic has some. Never used on the prediction path.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from nutrilearn.tracking.records import STATUS_ERROR, STATUS_OK, FeedbackRecord, PredictionRecord, new_request_id

FOODS = ("pizza", "cheeseburger", "hotdog", "ice_cream", "bagel", "pretzel", "carbonara",
         "burrito", "guacamole", "espresso", "banana", "strawberry")
T0 = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


def make_record(i: int = 0, *, user: str | None = None, model_version: str = "1", source: str = "app",
                error: bool | None = None, when: datetime | None = None) -> PredictionRecord:
    """A plausible PredictionRecord number ``i`` (timestamp ``T0 + i`` seconds by default)."""
    rng = np.random.default_rng(i)
    error = (i % 17 == 16) if error is None else error
    rec = PredictionRecord(
        request_id=new_request_id(),
        timestamp=when or T0 + timedelta(seconds=i),
        user=user or f"analyst{i % 3}",
        model_name="nutrilearn-food-classifier",
        model_version=model_version,
        model_alias="champion",
        status=STATUS_ERROR if error else STATUS_OK,
        source=source,
        filename=f"photo_{i:05d}.jpg",
        image_bytes=int(rng.integers(20_000, 3_000_000)),
        decode_ms=float(rng.uniform(2, 15)),
    )
    if error:
        rec.error_type, rec.error_message = "undecodable_image", "cannot identify image file"
        rec.total_ms = rec.decode_ms
        return rec
    probs = np.sort(rng.dirichlet(np.ones(5) * 0.5))[::-1]
    labels = [str(x) for x in rng.choice(FOODS, 5, replace=False)]
    rec.label, rec.confidence, rec.is_food = labels[0], float(probs[0]), True
    rec.top5_labels, rec.top5_probs = labels, [float(p) for p in probs]
    rec.preprocess_ms, rec.inference_ms = float(rng.uniform(1, 5)), float(rng.uniform(20, 40))
    rec.total_ms = rec.decode_ms + rec.preprocess_ms + rec.inference_ms
    rec.image_width, rec.image_height, rec.image_format = 1024, 768, "JPEG"
    rec.brightness, rec.contrast, rec.saturation = (float(x) for x in rng.uniform(0.2, 0.8, 3))
    rec.sharpness, rec.aspect = float(rng.uniform(5, 50)), 4 / 3
    rec.embedding = rng.standard_normal(128).astype("<f2").tobytes()
    return rec


def make_feedback(record: PredictionRecord, label: str | None = None, when: datetime | None = None) -> FeedbackRecord:
    """What an analyst said about ``record``: confirmed unless ``label`` differs."""
    return FeedbackRecord(record.request_id, when or record.timestamp + timedelta(minutes=1), record.user,
                          label or record.label or "pizza", record.label, record.source)
