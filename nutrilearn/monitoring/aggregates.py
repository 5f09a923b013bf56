"""The Monitoring page's figures computed in the engine: the same tables as ``stats`` and
``health`` compute from a DataFrame of rows, but answered by ``History`` queries that read
only the window's days and the columns each figure needs, and bring back one small table.

Each function takes the History and the page's ``Filters`` and returns what its pandas
twin returns (same columns, order and types), so the page draws either; tests check them
against each other on the same records.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nutrilearn.monitoring.filters import Filters
from nutrilearn.monitoring.health import QUANTILES, STAGES, HealthReport, HealthThresholds, Traffic, judge
from nutrilearn.monitoring.stats import (
    FEEDBACK_JOIN_COLUMNS,
    LOW_CONFIDENCE,
    NOT_FOOD,
    ConfidenceSummary,
    FeedbackSummary,
    Overview,
    _version_key,
    food_names,
    histogram_table,
    prepare_feedback,
)
from nutrilearn.monitoring.versions import ACCURACY_COLUMNS, SERVED, SHADOW, wilson
from nutrilearn.tracking.records import REPLAY_SOURCE, SHADOW_SUFFIX, STATUS_ERROR, STATUS_OK, as_utc

if TYPE_CHECKING:
    from nutrilearn.monitoring.history import History

_OK = f"status = '{STATUS_OK}' AND confidence IS NOT NULL"  # module constants, never user text
# Values a figure needs in its SELECT list are bound in a one-row relation joined *after*
# ``{src}``: History binds the source's parameters first, so every ``?`` must follow it.


def _utc(value) -> pd.Timestamp | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).tz_convert("UTC")


def overview(history: History, filters: Filters | None) -> Overview:
    """``stats.overview``: totals, errors, mean confidence, users, foods, not_food, replayed,
    first, last. Distinct counts apart (a DISTINCT beside other aggregates made DuckDB's pass
    several times slower at 10M rows); first and last from the first and last days only."""
    r = history.query("predictions", filters, ("status", "confidence", "label", "source", "day"), f"""
        SELECT count(*) AS total, count(*) FILTER (WHERE status = '{STATUS_OK}') AS ok,
               count(*) FILTER (WHERE status = '{STATUS_ERROR}') AS errors,
               avg(confidence) FILTER (WHERE status = '{STATUS_OK}') AS mean_confidence,
               count(*) FILTER (WHERE status = '{STATUS_OK}' AND label = k.nf) AS not_food,
               count(*) FILTER (WHERE source = k.rp) AS replayed, min(day) AS first_day, max(day) AS last_day
        FROM {{src}}, (SELECT CAST(? AS VARCHAR) AS nf, CAST(? AS VARCHAR) AS rp) AS k""",
                      [NOT_FOOD, REPLAY_SOURCE]).iloc[0]
    total, errors = int(r["total"]), int(r["errors"])
    users = foods = 0
    first = last = None
    if total:
        users = int(history.query("predictions", filters, ("user",),
                                  'SELECT count(*) FROM (SELECT "user" FROM {src} GROUP BY "user")').iloc[0, 0])
        foods = int(history.query("predictions", filters, ("status", "label"), f"""
            SELECT count(*) FROM (SELECT label FROM {{src}} WHERE status = '{STATUS_OK}' AND label IS NOT NULL
                                  AND label <> ? GROUP BY label)""", [NOT_FOOD]).iloc[0, 0])
        ends = [str(r["first_day"])[:10], str(r["last_day"])[:10]]
        t = history.query("predictions", filters, ("timestamp",),
                          "SELECT min(timestamp) AS first, max(timestamp) AS last FROM {src}", days=ends).iloc[0]
        first, last = _utc(t["first"]), _utc(t["last"])
    return Overview(total=total, ok=int(r["ok"]), errors=errors, error_rate=errors / total if total else float("nan"),
                    mean_confidence=float("nan") if pd.isna(r["mean_confidence"]) else float(r["mean_confidence"]),
                    unique_users=users, unique_foods=foods, not_food=int(r["not_food"]),
                    replayed=int(r["replayed"]), first=first, last=last)


def filter_options(history: History, filters: Filters | None) -> dict[str, list]:
    """``stats.filter_options`` of the rows ``filters`` select (the page: its time range,
    replayed and shadow answers included): versions, users, replayed and shadow counts."""
    r = history.query("predictions", filters, ("model_version", "user", "source", "request_id"), """
        SELECT list(DISTINCT model_version) AS versions, list(DISTINCT "user") AS users,
               count(*) FILTER (WHERE source = k.rp) AS replayed,
               count(*) FILTER (WHERE ends_with(request_id, k.sh)) AS shadow
        FROM {src}, (SELECT CAST(? AS VARCHAR) AS rp, CAST(? AS VARCHAR) AS sh) AS k""",
                      [REPLAY_SOURCE, SHADOW_SUFFIX]).iloc[0]
    versions = [v for v in (r["versions"] if r["versions"] is not None else []) if v is not None]
    users = [str(u) for u in (r["users"] if r["users"] is not None else []) if u is not None]
    return {"model_versions": sorted(versions, key=_version_key), "users": sorted(users),
            "replayed": int(r["replayed"]), "shadow": int(r["shadow"])}


_US_PER_MINUTE = 60_000_000


def traffic(history: History, filters: Filters | None) -> Traffic:
    """``health.traffic``: requests, span, mean and peak requests per minute (minutes as epoch
    microseconds // 60e6: UTC calendar minutes without time zone arithmetic)."""
    r = history.query("predictions", filters, ("timestamp",), """
        SELECT count(*) AS n, epoch_us(min(timestamp)) AS t0, epoch_us(max(timestamp)) AS t1 FROM {src}""").iloc[0]
    n = int(r["n"])
    if n == 0:
        return Traffic(0, 0.0, float("nan"), 0, None)
    peak = history.query("predictions", filters, ("timestamp",), f"""
        SELECT epoch_us(timestamp) // {_US_PER_MINUTE} AS minute, count(*) AS n FROM {{src}}
        GROUP BY minute ORDER BY n DESC, minute LIMIT 1""").iloc[0]
    span = max((int(r["t1"]) - int(r["t0"])) / _US_PER_MINUTE, 1.0)
    return Traffic(requests=n, span_minutes=float(span), mean_rpm=n / span, peak_rpm=int(peak["n"]),
                   peak_minute=pd.Timestamp(int(peak["minute"]) * _US_PER_MINUTE, unit="us", tz="UTC"))


def request_rate(history: History, filters: Filters | None, freq: str = "1min") -> pd.DataFrame:
    """``health.request_rate``: requests per ``freq`` bucket (a divisor of a day), gaps as zero."""
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    us = int(step / pd.Timedelta(microseconds=1))
    g = history.query("predictions", filters, ("timestamp",), """
        SELECT epoch_us(timestamp) // k.us AS bucket, count(*) AS requests
        FROM {src}, (SELECT CAST(? AS BIGINT) AS us) AS k GROUP BY bucket ORDER BY bucket""", [us])
    if g.empty:
        return pd.DataFrame({"time": pd.Series(dtype="datetime64[us, UTC]"),
                             "requests": pd.Series(dtype="int64"), "per_minute": pd.Series(dtype="float64")})
    buckets = np.arange(int(g["bucket"].min()), int(g["bucket"].max()) + 1)
    counts = g.set_index("bucket")["requests"].reindex(buckets, fill_value=0).to_numpy(dtype="int64")
    times = pd.to_datetime(buckets * us, unit="us", utc=True)
    return pd.DataFrame({"time": times, "requests": counts, "per_minute": counts / (step / pd.Timedelta(minutes=1))})


def slow_stage(history: History, filters: Filters | None, p95: float) -> str:
    """``health.slow_stage`` given the p95 of total latency: the stage holding most of the
    time in the requests at or above it."""
    r = history.query("predictions", filters, ("status", "decode_ms", "preprocess_ms", "inference_ms", "total_ms"), f"""
        SELECT avg(coalesce(decode_ms, 0)) AS decode, avg(coalesce(preprocess_ms, 0)) AS preprocess,
               avg(coalesce(inference_ms, 0)) AS inference, avg(total_ms) AS total, count(*) AS n
        FROM {{src}} WHERE status = '{STATUS_OK}' AND total_ms >= ?""", [float(p95)]).iloc[0]
    if int(r["n"]) == 0:
        return "overhead"
    shares = {"decode": r["decode"], "preprocess": r["preprocess"], "inference": r["inference"],
              "overhead": float(r["total"] - r["decode"] - r["preprocess"] - r["inference"])}
    return max(shares, key=shares.get)


def assess_health(history: History, filters: Filters | None, thresholds: HealthThresholds | None = None
                  ) -> HealthReport:
    """``health.assess_health`` from engine aggregates (the same judgement, ``health.judge``)."""
    latency = latency_summary(history, filters)
    by_type = errors_by_type(history, filters)
    flow = traffic(history, filters)
    errors = int(by_type["errors"].sum())
    p95 = float(latency.loc[latency["stage"] == "total", "p95"].iloc[0])
    return judge(flow.requests, errors, latency, by_type, flow, lambda: slow_stage(history, filters, p95), thresholds)


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
    return histogram_table(g, versions, edges)


def latency_summary(history: History, filters: Filters | None) -> pd.DataFrame:
    """``health.latency_summary``: per stage count, mean, p50, p95, p99 (ms) of successful
    predictions, percentiles interpolated linearly (as numpy does). One pass a stage over
    the files: an exact quantile holds its column's values, and four at once outgrew
    DuckDB's memory limit at 10M rows; one pass for all four over rows held in memory
    (at most the cap's rows)."""
    qs = list(QUANTILES.values())
    rows = []
    columns = [f"{stage}_ms" for stage in STAGES]
    together = None
    if history.holds("predictions", filters, ("status", *columns)):  # rows in memory: one pass for all stages
        together = history.query("predictions", filters, ("status", *columns), "SELECT " + ", ".join(
            f'count("{c}") AS "n_{c}", avg("{c}") AS "mean_{c}", quantile_cont("{c}", {qs!r}) AS "q_{c}"'
            for c in columns) + f" FROM {{src}} WHERE status = '{STATUS_OK}'").iloc[0]
    for stage in STAGES:
        c = f"{stage}_ms"
        if together is not None:
            r = {"n": together[f"n_{c}"], "mean": together[f"mean_{c}"], "q": together[f"q_{c}"]}
        else:
            r = history.query("predictions", filters, ("status", c), f"""
                SELECT count("{c}") AS n, avg("{c}") AS mean, quantile_cont("{c}", {qs!r}) AS q
                FROM {{src}} WHERE status = '{STATUS_OK}'""").iloc[0]
        n = int(r["n"])
        q = r["q"] if n else [np.nan] * len(qs)
        rows.append({"stage": stage, "count": n, "mean": float(r["mean"]) if n else np.nan,
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


def join_feedback(history: History, filters: Filters | None, feedback: pd.DataFrame | None) -> pd.DataFrame:
    """``stats.join_feedback``: one row per judged prediction in view (a small frame: only
    predictions with feedback come back), oldest first."""
    j = _judged(history, filters, feedback, "p.request_id, p.timestamp, p.model_version, p.label, fb.true_label, "
                "coalesce(fb.true_label = p.label, false) AS correct", "ORDER BY p.timestamp, p.request_id")
    return j[list(FEEDBACK_JOIN_COLUMNS)].reset_index(drop=True)


def daily_trends(history: History, filters: Filters | None, feedback: pd.DataFrame | None) -> pd.DataFrame:
    """``stats.daily_trends``: per UTC day predictions, mean confidence, error rate, feedback
    and realized accuracy (feedback counted on its prediction's day)."""
    cols = ["day", "predictions", "mean_confidence", "error_rate", "feedback", "realized_accuracy"]
    g = history.query("predictions", filters, ("status", "confidence", "day"), f"""
        SELECT day, count(*) AS predictions, avg(confidence) FILTER (WHERE status = '{STATUS_OK}') AS mean_confidence,
               count(*) FILTER (WHERE status = '{STATUS_ERROR}') AS errors
        FROM {{src}} GROUP BY day""")
    if g.empty:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[us, UTC]" if c == "day" else "float64") for c in cols})
    fb = _judged(history, filters, feedback, "CAST(p.timestamp AS DATE) AS day, count(*) AS n, "
                 "count(*) FILTER (WHERE fb.true_label = p.label) AS k", "GROUP BY 1")
    g["day"] = pd.to_datetime(g["day"]).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    days = pd.date_range(g["day"].min(), g["day"].max(), freq="D", unit="us", name="day")
    out = g.set_index("day").reindex(days)
    out["predictions"] = out["predictions"].fillna(0).astype("int64")
    out["errors"] = out["errors"].fillna(0)
    out["error_rate"] = out["errors"] / out["predictions"].where(out["predictions"] > 0)
    if len(fb):
        fb["day"] = pd.to_datetime(fb["day"]).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
        out = out.join(fb.set_index("day"), how="left")
    else:
        out["n"], out["k"] = 0, 0
    out["feedback"] = out["n"].fillna(0).astype("int64")
    out["realized_accuracy"] = out["k"] / out["n"].where(out["n"] > 0)
    return out.rename_axis("day").reset_index()[cols]


_SEARCHED = ("user", "model_version", "status", "source", "error_type", "filename")
_SORT_KEYS = {"time": "timestamp", "latency_ms": "total_ms", "band": "confidence"}
RECENT_ROW_COLUMNS = ("request_id", "timestamp", "label", "confidence", "total_ms", "user", "model_version",
                      "status", "source", "error_type", "filename")


def _food_names_in_view(history: History, filters: Filters | None) -> pd.DataFrame:
    """The view's distinct labels (``label``) with their display names (``food``)."""
    labels = history.query("predictions", filters, ("label",), "SELECT DISTINCT label FROM {src} WHERE label IS NOT NULL")
    labels = labels["label"].astype(object)
    return pd.DataFrame({"label": labels, "food": food_names(labels).astype(object)})


def _search(history: History, filters: Filters | None, search: str) -> tuple[str, list]:
    """``(condition, params)`` for ``stats.search_mask``: a literal, case-insensitive
    substring of food name, label, user, version, status, source, error type or file name.
    Food names are matched here on the view's distinct labels; the needle is a bound value."""
    needle = (search or "").strip().lower()
    if not needle:
        return "TRUE", []
    names = _food_names_in_view(history, filters)
    hit = [lab for lab, name in zip(names["label"], names["food"])
           if needle in str(lab).lower() or needle in str(name).lower()]
    cond = " OR ".join([f'contains(lower(CAST("{c}" AS VARCHAR)), ?)' for c in _SEARCHED] + ["list_contains(?, label)"])
    return f"({cond})", [needle] * len(_SEARCHED) + [hit]


def recent_count(history: History, filters: Filters | None, search: str = "") -> int:
    """How many predictions in view match ``search`` (``stats.search_mask(...).sum()``)."""
    cond, params = _search(history, filters, search)
    return int(history.query("predictions", filters, ("label", *_SEARCHED),
                             f"SELECT count(*) AS n FROM {{src}} WHERE {cond}", params).iloc[0, 0])


def recent_rows(history: History, filters: Filters | None, limit: int = 200, search: str = "",
                sort_by: str = "time", descending: bool = True) -> pd.DataFrame:
    """The rows ``stats.recent`` would show: matching ``search``, sorted by ``sort_by`` (ties
    oldest first, missing values last), the first ``limit``; only those rows come back.
    Format them with ``stats.recent(rows, limit, sort_by=..., descending=...)``."""
    from nutrilearn.monitoring.stats import RECENT_COLUMNS

    if sort_by not in RECENT_COLUMNS:
        raise ValueError(f"cannot sort by {sort_by!r}; choose one of {', '.join(RECENT_COLUMNS)}")
    cond, params = _search(history, filters, search)
    tables = {}
    if sort_by == "food":  # display names, as the table shows them
        tables["food_names"] = _food_names_in_view(history, filters)
        key = "(SELECT n.food FROM food_names AS n WHERE n.label = p.label)"
    else:
        key = f'p."{_SORT_KEYS.get(sort_by, sort_by)}"'
    order = "DESC" if descending else "ASC"
    sql = f"""SELECT * FROM {{src}} AS p WHERE {cond}
              ORDER BY {key} {order} NULLS LAST, p.timestamp, p.request_id LIMIT ?"""
    if sort_by == "time" and descending:  # the newest rows: try the newest days first (a day or two)
        narrowed = _newest_days(history, filters, int(limit))
        if narrowed is not None:
            rows = history.query("predictions", narrowed, RECENT_ROW_COLUMNS, sql, [*params, int(limit)], tables=tables,
                                 keep=False)  # a day or two: not a window worth keeping
            if len(rows) >= limit:
                return rows
    return history.query("predictions", filters, RECENT_ROW_COLUMNS, sql, [*params, int(limit)], tables=tables)


def _newest_days(history: History, filters: Filters | None, n: int) -> Filters | None:
    """``filters`` from the start of the newest mirrored days holding 1.5 n rows (None if
    the window starts later already, or all days hold fewer)."""
    from datetime import datetime, timezone

    held = 0
    for day, rows in reversed(history.mirror.days()):
        held += rows
        if held >= 1.5 * n:
            start = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
            f = filters or Filters()
            if f.start is not None and as_utc(f.start) >= start:
                return None
            return replace(f, start=start)
    return None


def shadow_pairs(history: History, filters: Filters | None) -> pd.DataFrame:
    """``versions.shadow_pairs``: served answers beside the challenger's shadow answer to the
    same photo; the shadow answers first, then only their served twins (by request id)."""
    cols = ["request_id", "timestamp", "model_version", "label", "confidence",
            "challenger_version", "challenger_label", "challenger_confidence"]
    f = replace(filters or Filters(), include_shadow=True)
    shadow = history.query("predictions", f, ("request_id", "model_version", "label", "confidence", "status"), f"""
        SELECT left(request_id, length(request_id) - {len(SHADOW_SUFFIX)}) AS request_id,
               CAST(model_version AS VARCHAR) AS challenger_version, label AS challenger_label,
               confidence AS challenger_confidence
        FROM {{src}} WHERE status = '{STATUS_OK}' AND ends_with(request_id, '{SHADOW_SUFFIX}')
        ORDER BY timestamp, request_id""")
    if shadow.empty:
        return pd.DataFrame(columns=cols)
    shadow = shadow.drop_duplicates("request_id", keep="last")
    served = history.query("predictions", f, ("request_id", "timestamp", "model_version", "label", "confidence", "status"), f"""
        SELECT request_id, timestamp, CAST(model_version AS VARCHAR) AS model_version, label, confidence
        FROM {{src}} WHERE status = '{STATUS_OK}' AND NOT ends_with(request_id, '{SHADOW_SUFFIX}')
          AND request_id IN (SELECT unnest(?))
        ORDER BY timestamp, request_id""", [shadow["request_id"].tolist()])
    if served.empty:
        return pd.DataFrame(columns=cols)
    return served.merge(shadow, on="request_id", how="inner")[cols]


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


__all__ = ["overview", "filter_options", "traffic", "request_rate", "slow_stage", "assess_health", "top_foods",
           "daily_volume", "by_user", "confidence_summary", "confidence_by_version", "confidence_histogram",
           "latency_summary", "errors_by_type", "join_feedback", "daily_trends", "feedback_summary",
           "accuracy_by_version", "recent_count", "recent_rows", "shadow_pairs"]
