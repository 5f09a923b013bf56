"""The Monitoring page's figures computed in the engine: the same tables as ``stats`` and
``health`` compute from a DataFrame of rows, but answered by ``History`` queries that read
only the window's days and the columns each figure needs, and bring back one small table.

Each function takes the History and the page's ``Filters`` and returns what its pandas
twin returns (same columns, order and types), so the page draws either; tests check them
against each other on the same records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nutrilearn.monitoring.filters import Filters
from nutrilearn.monitoring.health import QUANTILES, STAGES
from nutrilearn.monitoring.stats import (
    LOW_CONFIDENCE,
    NOT_FOOD,
    ConfidenceSummary,
    FeedbackSummary,
    _version_key,
    food_names,
    prepare_feedback,
)
from nutrilearn.monitoring.versions import ACCURACY_COLUMNS, SERVED, SHADOW, wilson
from nutrilearn.tracking.records import SHADOW_SUFFIX, STATUS_ERROR, STATUS_OK

if TYPE_CHECKING:
    from nutrilearn.monitoring.history import History

_OK = f"status = '{STATUS_OK}' AND confidence IS NOT NULL"  # module constants, never user text
# Values a figure needs in its SELECT list are bound in a one-row relation joined *after*
# ``{src}``: History binds the source's parameters first, so every ``?`` must follow it.


def top_foods(history: History, filters: Filters | None, n: int = 10) -> pd.DataFrame:
    """``stats.top_foods``: label, food, predictions, share, mean_confidence."""
    g = history.query("predictions", filters, ("label", "status", "confidence"), f"""
        SELECT label, count(*) AS predictions, count(*) / sum(count(*)) OVER () AS share,
               avg(confidence) AS mean_confidence
        FROM {{src}} WHERE status = '{STATUS_OK}' AND label IS NOT NULL AND label <> ?
        GROUP BY label ORDER BY predictions DESC, label LIMIT ?""", [NOT_FOOD, int(n)])
    g["predictions"] = g["predictions"].astype("int64")
    g.insert(1, "food", food_names(g["label"]))
    return g[["label", "food", "predictions", "share", "mean_confidence"]]


def daily_volume(history: History, filters: Filters | None) -> pd.DataFrame:
    """``stats.daily_volume``: predictions and errors per UTC day, days without traffic as zeros."""
    g = history.query("predictions", filters, ("status", "day"), f"""
        SELECT day, count(*) AS predictions, count(*) FILTER (WHERE status = '{STATUS_ERROR}') AS errors
        FROM {{src}} GROUP BY day ORDER BY day""")
    if g.empty:
        return pd.DataFrame({"day": pd.Series(dtype="datetime64[us, UTC]"),
                             "predictions": pd.Series(dtype="int64"), "errors": pd.Series(dtype="int64")})
    g["day"] = pd.to_datetime(g["day"]).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    days = pd.date_range(g["day"].min(), g["day"].max(), freq="D", unit="us", name="day")
    out = g.set_index("day").reindex(days, fill_value=0).reset_index()
    return out.astype({"predictions": "int64", "errors": "int64"})


def by_user(history: History, filters: Filters | None) -> pd.DataFrame:
    """``stats.by_user``: per user predictions, errors, mean/min/max confidence, last seen."""
    g = history.query("predictions", filters, ("user", "status", "confidence", "timestamp"), f"""
        SELECT "user", count(*) AS predictions, count(*) FILTER (WHERE status = '{STATUS_ERROR}') AS errors,
               avg(confidence) AS mean_confidence, min(confidence) AS min_confidence,
               max(confidence) AS max_confidence, max(timestamp) AS last_seen
        FROM {{src}} GROUP BY "user" ORDER BY predictions DESC, "user" """)
    return g.astype({"predictions": "int64", "errors": "int64"}).reset_index(drop=True)


def confidence_summary(history: History, filters: Filters | None, low_threshold: float = LOW_CONFIDENCE
                       ) -> ConfidenceSummary:
    """``stats.confidence_summary`` (successful predictions with a confidence)."""
    r = history.query("predictions", filters, ("status", "confidence"), f"""
        SELECT count(*) AS n, avg(confidence) AS mean, quantile_cont(confidence, 0.5) AS median,
               stddev_samp(confidence) AS std, avg(CASE WHEN confidence < k.low THEN 1.0 ELSE 0.0 END) AS low
        FROM {{src}}, (SELECT CAST(? AS DOUBLE) AS low) AS k WHERE {_OK}""", [float(low_threshold)]).iloc[0]
    n = int(r["n"])
    nan = float("nan")
    return ConfidenceSummary(count=n, mean=float(r["mean"]) if n else nan, median=float(r["median"]) if n else nan,
                             std=float(r["std"]) if n > 1 else nan, low_share=float(r["low"]) if n else nan,
                             low_threshold=low_threshold)


def confidence_by_version(history: History, filters: Filters | None, low_threshold: float = LOW_CONFIDENCE
                          ) -> pd.DataFrame:
    """``stats.confidence_by_version``: count, mean, median, std, low_share per version."""
    g = history.query("predictions", filters, ("status", "confidence", "model_version"), f"""
        SELECT model_version, count(*) AS count, avg(confidence) AS mean, quantile_cont(confidence, 0.5) AS median,
               stddev_samp(confidence) AS std, avg(CASE WHEN confidence < k.low THEN 1.0 ELSE 0.0 END) AS low_share
        FROM {{src}}, (SELECT CAST(? AS DOUBLE) AS low) AS k WHERE {_OK} GROUP BY model_version""",
        [float(low_threshold)])
    order = sorted(g["model_version"].tolist(), key=_version_key)
    return g.astype({"count": "int64"}).set_index("model_version").loc[order].reset_index()


def confidence_histogram(history: History, filters: Filters | None, bins: int = 20) -> pd.DataFrame:
    """``stats.confidence_histogram``: counts in ``bins`` equal bins over [0, 1] per version,
    with ``numpy.histogram``'s edges (the bin from ``floor``, moved by one where the float
    edge says otherwise, so every value lands where numpy puts it)."""
    if bins < 1:
        raise ValueError("bins must be at least 1")
    edges = np.linspace(0.0, 1.0, bins + 1)
    g = history.query("predictions", filters, ("status", "confidence", "model_version"), f"""
        SELECT model_version, bin, count(*) AS count FROM (
            SELECT model_version, confidence AS c,
                   least(greatest(CAST(floor(confidence * k.bins) AS BIGINT), 0), k.bins - 1) AS b0,
                   CASE WHEN c < list_extract(k.edges, b0 + 1) AND b0 > 0 THEN b0 - 1
                        WHEN b0 < k.bins - 1 AND c >= list_extract(k.edges, b0 + 2) THEN b0 + 1 ELSE b0 END AS bin
            FROM {{src}}, (SELECT CAST(? AS BIGINT) AS bins, CAST(? AS DOUBLE[]) AS edges) AS k WHERE {_OK})
        GROUP BY model_version, bin""", [int(bins), edges.tolist()])
    versions = sorted(g["model_version"].dropna().unique().tolist(), key=_version_key)
    full = pd.MultiIndex.from_product([versions, range(bins)], names=["model_version", "bin"])
    counts = g.set_index(["model_version", "bin"])["count"].reindex(full, fill_value=0).reset_index()
    totals = counts.groupby("model_version")["count"].transform("sum")
    counts["share"] = counts["count"] / totals.where(totals > 0)
    counts["bin_start"] = edges[counts["bin"].to_numpy()]
    counts["bin_end"] = edges[counts["bin"].to_numpy() + 1]
    counts["count"] = counts["count"].astype("int64")
    return counts[["model_version", "bin_start", "bin_end", "count", "share"]]


def latency_summary(history: History, filters: Filters | None) -> pd.DataFrame:
    """``health.latency_summary``: per stage count, mean, p50, p95, p99 (ms) of successful
    predictions, percentiles interpolated linearly (as numpy does)."""
    cols = [f"{s}_ms" for s in STAGES]
    qs = list(QUANTILES.values())
    select = ", ".join(f'count("{c}") AS "{c}_n", avg("{c}") AS "{c}_mean", '
                       f'quantile_cont("{c}", {qs!r}) AS "{c}_q"' for c in cols)
    r = history.query("predictions", filters, ("status", *cols),
                      f"SELECT {select} FROM {{src}} WHERE status = '{STATUS_OK}'").iloc[0]
    rows = []
    for stage, c in zip(STAGES, cols):
        n = int(r[f"{c}_n"])
        q = r[f"{c}_q"] if n else [np.nan] * len(qs)
        rows.append({"stage": stage, "count": n, "mean": float(r[f"{c}_mean"]) if n else np.nan,
                     **{name: float(v) for name, v in zip(QUANTILES, q)}})
    return pd.DataFrame(rows)


def errors_by_type(history: History, filters: Filters | None) -> pd.DataFrame:
    """``health.errors_by_type``: error_type, errors, rate (of all requests), share (of errors)."""
    g = history.query("predictions", filters, ("status", "error_type"), f"""
        SELECT CASE WHEN status = '{STATUS_ERROR}' THEN coalesce(error_type, 'unknown') END AS error_type,
               count(*) AS n FROM {{src}} GROUP BY 1""")
    total = int(g["n"].sum())
    err = g.dropna(subset=["error_type"]).rename(columns={"n": "errors"})
    err = err.sort_values(["errors", "error_type"], ascending=[False, True], kind="stable")
    n_err = int(err["errors"].sum())
    err["rate"] = err["errors"] / total if total else np.nan
    err["share"] = err["errors"] / n_err if n_err else np.nan
    return err.astype({"errors": "int64"}).reset_index(drop=True)[["error_type", "errors", "rate", "share"]]


def _judged(history: History, filters: Filters | None, feedback: pd.DataFrame | None, select: str,
            group: str = "") -> pd.DataFrame:
    """``select`` over the predictions in view joined to their latest feedback (a shadow
    answer is judged by its photo's feedback, as ``stats.join_feedback`` does)."""
    fb = prepare_feedback(feedback)[["request_id", "label"]].rename(columns={"label": "true_label"})
    cut = len(SHADOW_SUFFIX)
    return history.query("predictions", filters, ("request_id", "model_version", "label", "timestamp"), f"""
        SELECT {select} FROM {{src}} AS p JOIN judged_feedback AS fb
          ON fb.request_id = CASE WHEN ends_with(p.request_id, '{SHADOW_SUFFIX}')
                                  THEN left(p.request_id, length(p.request_id) - {cut}) ELSE p.request_id END {group}""",
        tables={"judged_feedback": fb})


def feedback_summary(history: History, filters: Filters | None, feedback: pd.DataFrame | None) -> FeedbackSummary:
    """``stats.feedback_summary`` of ``stats.join_feedback``: judged predictions, correct, accuracy."""
    r = _judged(history, filters, feedback,
                "count(*) AS n, count(*) FILTER (WHERE fb.true_label = p.label) AS k").iloc[0]
    n, k = int(r["n"]), int(r["k"])
    return FeedbackSummary(feedback=n, correct=k, accuracy=k / n if n else float("nan"))


def accuracy_by_version(history: History, filters: Filters | None, feedback: pd.DataFrame | None) -> pd.DataFrame:
    """``versions.accuracy_by_version``: realized accuracy per (version, served/shadow) with
    its 95% Wilson interval; counted in the engine, the interval on the small result."""
    g = _judged(history, filters, feedback,
                f"CAST(p.model_version AS VARCHAR) AS model_version, ends_with(p.request_id, '{SHADOW_SUFFIX}') AS shadow, "
                "count(*) AS judged, count(*) FILTER (WHERE fb.true_label = p.label) AS correct",
                "GROUP BY ALL")
    if g.empty:
        return pd.DataFrame(columns=ACCURACY_COLUMNS)
    g["answers"] = np.where(g["shadow"], SHADOW, SERVED)
    g = g.astype({"judged": "int64", "correct": "int64"})
    g["accuracy"] = g["correct"] / g["judged"]
    g["low"], g["high"] = wilson(g["correct"], g["judged"])
    g["_key"] = [(int(v) if str(v).isdigit() else 10**9, a != SERVED) for v, a in zip(g["model_version"], g["answers"])]
    return g.sort_values("_key").drop(columns="_key").reset_index(drop=True)[ACCURACY_COLUMNS]


__all__ = ["top_foods", "daily_volume", "by_user", "confidence_summary", "confidence_by_version",
           "confidence_histogram", "latency_summary", "errors_by_type", "feedback_summary", "accuracy_by_version"]
