"""The labelling queue: the window's predictions most worth a person's label, and why.

A label is worth most where the model is least sure, where the champion and its challenger
disagree (one of them is wrong), and in the kinds of photo that are new (clusters of the
embedding space that grew against a reference period, ``monitoring.clusters``). Each
unlabelled served answer of the window scores

    (1 - confidence) + DISAGREE_WEIGHT [challenger said otherwise] + CLUSTER_WEIGHT [in a grown cluster]

and the queue is the ``n`` highest, each with the reasons that applied. Nothing already
labelled (feedback from anyone, at any time since the window opened) ever enters it.

Everything is DuckDB over the window (``History.query``): the scoring, the join with the
challenger's shadow answers and the anti-join with feedback happen in the engine and only
the queue's rows come back; the clustering reads a seeded sample of each period's
embeddings. Request ids found in Python (feedback, cluster members) are bound parameters.

A label is a ``FeedbackRecord`` submitted like Analyze's (``record_label``), written as the
acting identity, which must have the ``label`` permission: realized accuracy, calibration
and (with ``NUTRILEARN_KEEP_FEEDBACK_PHOTOS``) ``nutrilearn train --base`` then use it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import logging

import pandas as pd

from nutrilearn.monitoring.stats import Filters
from nutrilearn.tracking.records import SHADOW_SUFFIX, FeedbackRecord, as_utc, utc_now

if TYPE_CHECKING:
    from nutrilearn.auth import Identity
    from nutrilearn.monitoring.clusters import ClusterReport
    from nutrilearn.monitoring.history import History
    from nutrilearn.tracking.reader import PredictionReader

log = logging.getLogger(__name__)

DISAGREE_WEIGHT = 0.5
CLUSTER_WEIGHT = 0.3
CLUSTER_SAMPLE = 1000  # embeddings per period entering the clustering
DEFAULT_DAYS = 7.0
DEFAULT_REFERENCE_DAYS = 28.0


@dataclass(frozen=True)
class QueueItem:
    """One prediction to label, with what the model said and why it was chosen."""

    request_id: str
    timestamp: datetime
    user: str
    model_version: str
    label: str
    confidence: float
    top5_labels: list[str]
    top5_probs: list[float]
    reasons: tuple[str, ...]
    score: float
    challenger_label: str | None = None
    challenger_version: str | None = None
    cluster: int | None = None  # the grown cluster it is in
    cluster_change: float | None = None

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["timestamp"] = self.timestamp.isoformat() if self.timestamp is not None else None
        out["reasons"] = list(self.reasons)
        out["reason"] = self.reason
        return out


@dataclass
class LabelQueue:
    """The queue and the window it was drawn from."""

    items: list[QueueItem]
    start: datetime
    end: datetime | None
    answers: int  # served, successful answers in the window
    labelled: int  # of them, already labelled
    window_mean_confidence: float | None
    clusters: "ClusterReport | None" = None
    notes: list[str] = field(default_factory=list)  # e.g. why no cluster reasons
    correct: int = 0  # labelled answers whose label the person confirmed

    @property
    def realized_accuracy(self) -> float | None:
        """Share of the window's labelled answers that were right (None before any label)."""
        return self.correct / self.labelled if self.labelled else None

    @property
    def mean_confidence(self) -> float | None:
        return sum(i.confidence for i in self.items) / len(self.items) if self.items else None

    @property
    def unlabelled(self) -> int:
        return self.answers - self.labelled

    def to_dict(self) -> dict[str, Any]:
        return {"items": [i.to_dict() for i in self.items], "start": self.start.isoformat(),
                "end": self.end.isoformat() if self.end else None, "answers": self.answers,
                "labelled": self.labelled, "realized_accuracy": self.realized_accuracy,
                "window_mean_confidence": self.window_mean_confidence,
                "queue_mean_confidence": self.mean_confidence, "notes": list(self.notes)}


def _history(source: "History | PredictionReader") -> "History":
    from nutrilearn.monitoring.history import History

    return source if isinstance(source, History) else source.history


def labels_given(source: "History | PredictionReader", since: datetime | None) -> pd.DataFrame:
    """``request_id, true_label``: the latest feedback per request given since ``since`` (by anyone)."""
    return _history(source).query("feedback", Filters(start=since), ("request_id", "label", "timestamp"), """
        SELECT request_id, label AS true_label FROM {src}
        QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY timestamp DESC) = 1""")


def labelled_ids(source: "History | PredictionReader", since: datetime | None) -> list[str]:
    """Request ids with feedback given since ``since`` (by anyone): never queued again."""
    return labels_given(source, since)["request_id"].astype(str).tolist()


def _embedding_sample(history: "History", start: datetime, end: datetime | None, cap: int, seed: int) -> pd.DataFrame:
    """A seeded sample of a period's served answers with an embedding (DuckDB reservoir)."""
    window = Filters(start=start, end=end, hide_replayed=False, include_shadow=False)
    return history.query("predictions", window, ("request_id", "timestamp", "status", "label", "embedding"), f"""
        SELECT * FROM (SELECT request_id, timestamp, status, label, embedding FROM {{src}}
                       WHERE status = 'ok' AND embedding IS NOT NULL)
        USING SAMPLE reservoir({int(cap)} ROWS) REPEATABLE ({int(seed)})""")


def grown_clusters(source: "History | PredictionReader", start: datetime, end: datetime | None,
                   reference_start: datetime, reference_end: datetime, seed: int = 0,
                   cap: int = CLUSTER_SAMPLE) -> "ClusterReport":
    """Clusters of the window's embeddings against a reference period's (``monitoring.clusters``)."""
    from nutrilearn.monitoring.clusters import ClusterDrift

    history = _history(source)
    reference = _embedding_sample(history, reference_start, reference_end, cap, seed)
    current = _embedding_sample(history, start, end, cap, seed + 1)
    return ClusterDrift(seed=seed, sample_cap=cap).fit(reference).compare(current)


def _reasons(row: Any, window_mean: float | None) -> tuple[str, ...]:
    from nutrilearn.answers import percent
    from nutrilearn.vision.vocabulary import display_name

    out = []
    unsure = window_mean is None or row.confidence < window_mean
    if unsure:
        out.append(f"unsure: {percent(row.confidence)} confident"
                   + (f" (window mean {percent(window_mean)})" if window_mean is not None else ""))
    if isinstance(row.challenger_label, str) and row.challenger_label != row.label:
        out.append(f"champion (v{row.model_version}) said {display_name(row.label)}, challenger "
                   f"(v{row.challenger_version}) said {display_name(row.challenger_label)}")
    if row.cluster is not None and not pd.isna(row.cluster):
        grew = percent(row.cluster_change, signed=True)
        out.append(f"new kind of photo: its cluster ({int(row.cluster)}) grew {grew} in share against the period before")
    if not out:
        out.append(f"least confident left: {percent(row.confidence)}")
    return tuple(out)


def build_queue(source: "History | PredictionReader", n: int = 20, *, start: datetime | None = None,
                end: datetime | None = None, days: float = DEFAULT_DAYS,
                reference_days: float | None = DEFAULT_REFERENCE_DAYS, exclude: Iterable[str] = (),
                seed: int = 0, now: datetime | None = None, clusters: "ClusterReport | None" = None) -> LabelQueue:
    """The ``n`` unlabelled served answers of ``[start, end)`` most worth a label.

    ``start`` defaults to ``days`` before ``now``; the clusters compare the window with the
    ``reference_days`` before it (None: no cluster reasons). ``exclude``: request ids to
    leave out besides those with feedback (e.g. labelled a moment ago, not read back yet).
    ``clusters``: a ``grown_clusters`` report already made for this window (a page keeps one
    while a person labels, rather than clustering again after every click).
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    now = as_utc(now or utc_now())
    start = as_utc(start) if start is not None else now - timedelta(days=days)
    end = as_utc(end) if end is not None else None
    history = _history(source)
    given = labels_given(history, start)
    skip = sorted({str(r) for r in exclude} - set(given["request_id"]))
    done_ids = [*given["request_id"].astype(str), *skip]
    done_labels = [*given["true_label"].astype(str), *([None] * len(skip))]  # skipped: no label known yet
    notes: list[str] = []
    report = None
    moved_ids: list[str] = []
    moved_cluster: list[int] = []
    moved_change: list[float] = []
    if clusters is not None or reference_days:
        report = clusters if clusters is not None else grown_clusters(
            history, start, end, start - timedelta(days=reference_days), start, seed)
        if not report.clusters:
            notes.append("no cluster reasons: the period before the window holds too few predictions with "
                         "embeddings to compare with")
        current_ids = set(report.points.loc[report.points["window"] == "current", "request_id"])
        for c in report.moved():
            if c.change > 0:  # grown: photos unlike the reference period's
                for rid in c.members:
                    if rid in current_ids:
                        moved_ids.append(rid)
                        moved_cluster.append(c.id)
                        moved_change.append(c.change)
    window = Filters(start=start, end=end, hide_replayed=False, include_shadow=True)
    columns = ("request_id", "timestamp", "user", "model_version", "status", "label", "confidence",
               "top5_labels", "top5_probs")
    base = """WITH r AS (SELECT request_id, timestamp, "user", model_version, label, confidence, top5_labels, top5_probs
                         FROM {src} WHERE status = 'ok' AND confidence IS NOT NULL AND label IS NOT NULL),
                  served AS (SELECT * FROM r WHERE NOT ends_with(request_id, ?)),
                  shadow AS (SELECT * FROM r WHERE ends_with(request_id, ?)),
                  done AS (SELECT unnest(?::VARCHAR[]) AS request_id, unnest(?::VARCHAR[]) AS true_label)"""
    stats = history.query("predictions", window, columns, base + """
        SELECT count(*) AS answers, avg(s.confidence) AS mean_confidence,
               count(d.true_label) AS labelled, count(*) FILTER (WHERE d.true_label = s.label) AS correct
        FROM served AS s LEFT JOIN done AS d ON d.request_id = s.request_id""",
                          [SHADOW_SUFFIX, SHADOW_SUFFIX, done_ids, done_labels]).iloc[0]
    window_mean = None if pd.isna(stats["mean_confidence"]) else float(stats["mean_confidence"])
    rows = history.query("predictions", window, columns, base + """,
              moved AS (SELECT unnest(?::VARCHAR[]) AS request_id, unnest(?::INTEGER[]) AS cluster,
                               unnest(?::DOUBLE[]) AS cluster_change)
        SELECT s.*, c.label AS challenger_label, c.model_version AS challenger_version,
               m.cluster, m.cluster_change,
               (1 - s.confidence)
               + CASE WHEN c.label IS NOT NULL AND c.label <> s.label THEN ? ELSE 0 END
               + CASE WHEN m.cluster IS NOT NULL THEN ? ELSE 0 END AS score
        FROM served AS s
        LEFT JOIN shadow AS c ON c.request_id = s.request_id || ?
        LEFT JOIN moved AS m ON m.request_id = s.request_id
        ANTI JOIN done AS d ON d.request_id = s.request_id
        ORDER BY score DESC, s.confidence, s.request_id
        LIMIT ?""", [SHADOW_SUFFIX, SHADOW_SUFFIX, done_ids, done_labels, moved_ids, moved_cluster, moved_change,
                     DISAGREE_WEIGHT, CLUSTER_WEIGHT, SHADOW_SUFFIX, int(n)])
    items = [QueueItem(
        request_id=str(row.request_id), timestamp=row.timestamp.to_pydatetime(), user=str(row.user),
        model_version=str(row.model_version), label=str(row.label), confidence=float(row.confidence),
        top5_labels=[str(x) for x in row.top5_labels], top5_probs=[float(x) for x in row.top5_probs],
        reasons=_reasons(row, window_mean), score=float(row.score),
        challenger_label=row.challenger_label if isinstance(row.challenger_label, str) else None,
        challenger_version=row.challenger_version if isinstance(row.challenger_version, str) else None,
        cluster=None if pd.isna(row.cluster) else int(row.cluster),
        cluster_change=None if pd.isna(row.cluster_change) else float(row.cluster_change),
    ) for row in rows.itertuples(index=False)]
    return LabelQueue(items, start, end, int(stats["answers"]), int(stats["labelled"]), window_mean, report, notes,
                      correct=int(stats["correct"]))


def vocabulary(item: QueueItem | None = None) -> list[str]:
    """What a label may be: every food the nutrition table names, plus the item's answer and top 5."""
    from nutrilearn.nutrition import known_labels

    return sorted(set(known_labels()) | (set(item.top5_labels) | {item.label} if item else set()))


def record_label(sink: Any, actor: "Identity | None", item: QueueItem, truth: str, *,
                 allowed: Collection[str] | None = None, settings: Any = None,
                 photo: bytes | None = None) -> FeedbackRecord:
    """Submit ``truth`` for ``item`` as a feedback record written as ``actor``.

    Refused (``AccessDenied``) unless ``actor`` may ``label``; ``ValueError`` for a label
    outside ``allowed`` (default ``vocabulary(item)``). With ``settings`` and ``photo``
    (the thumbnail: the original is not kept), the photo is kept for training like
    Analyze's when ``NUTRILEARN_KEEP_FEEDBACK_PHOTOS`` is on.
    """
    from nutrilearn.auth import require

    require(actor, "label")
    if truth not in (allowed if allowed is not None else vocabulary(item)):
        raise ValueError(f"not a food label: {truth!r}")
    record = FeedbackRecord(item.request_id, utc_now(), actor.record_as, truth, item.label, "app")
    sink.submit_feedback(record)
    if settings is not None and photo:
        from nutrilearn.registry.feedback_store import keep_photo

        try:
            keep_photo(settings, item.request_id, truth, photo)  # no-op unless kept photos are on
        except ValueError as exc:  # e.g. "not a recognised food" is no training class: the label stands
            log.info("label of %s kept without its photo: %s", item.request_id, exc)
    return record


__all__ = ["LabelQueue", "QueueItem", "build_queue", "grown_clusters", "labelled_ids", "labels_given", "record_label",
           "vocabulary",
           "DISAGREE_WEIGHT", "CLUSTER_WEIGHT"]
