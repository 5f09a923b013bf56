"""System health: latency with its split, errors by type, request rate, and a status.

The status is ``healthy``, ``degraded`` or ``unhealthy``, decided by two documented rules
with configurable thresholds (``HealthThresholds``; environment overrides below):

1. **Error rate** = failed / all predictions in view (judged only from ``min_requests``
   predictions on, because a handful of requests says little):
   ``>= error_rate_unhealthy`` is unhealthy, ``>= error_rate_degraded`` is degraded.
2. **p95 total latency** of successful predictions:
   ``>= p95_latency_ms_unhealthy`` is unhealthy, ``>= p95_latency_ms_degraded`` is degraded.

The worst rule wins. Every problem carries a recommendation chosen from what caused it
(the error types behind the rate; the stage that dominates the slow tail).

Like ``stats``, every function takes the predictions in view as ``filter_predictions``
returns them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from nutrilearn.answers import percent
from nutrilearn.tracking.records import STATUS_ERROR, STATUS_OK

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
_RANK = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}
STAGES = ("decode", "preprocess", "inference", "total")
_STAGE_COLUMNS = tuple(f"{s}_ms" for s in STAGES)
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}

# Environment variable of each threshold (read by ``HealthThresholds.from_env``).
THRESHOLD_ENV = {
    "p95_latency_ms_degraded": "NUTRILEARN_HEALTH_P95_MS_DEGRADED",
    "p95_latency_ms_unhealthy": "NUTRILEARN_HEALTH_P95_MS_UNHEALTHY",
    "error_rate_degraded": "NUTRILEARN_HEALTH_ERROR_RATE_DEGRADED",
    "error_rate_unhealthy": "NUTRILEARN_HEALTH_ERROR_RATE_UNHEALTHY",
    "min_requests": "NUTRILEARN_HEALTH_MIN_REQUESTS",
}


@dataclass(frozen=True)
class HealthThresholds:
    """Where health turns degraded or unhealthy. Defaults suit one CPU replica.

    A photo takes about 25 ms of inference on 2 cores plus 5-20 ms to decode and
    preprocess, so a p95 of half a second already means something is wrong; two seconds
    is what a user notices as broken.
    """

    p95_latency_ms_degraded: float = 500.0
    p95_latency_ms_unhealthy: float = 2000.0
    error_rate_degraded: float = 0.02
    error_rate_unhealthy: float = 0.10
    min_requests: int = 20

    def __post_init__(self) -> None:
        if not 0 < self.p95_latency_ms_degraded <= self.p95_latency_ms_unhealthy:
            raise ValueError("need 0 < p95_latency_ms_degraded <= p95_latency_ms_unhealthy")
        if not 0 < self.error_rate_degraded <= self.error_rate_unhealthy <= 1:
            raise ValueError("need 0 < error_rate_degraded <= error_rate_unhealthy <= 1")
        if self.min_requests < 1:
            raise ValueError("min_requests must be at least 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "HealthThresholds":
        """Defaults, overridden by any ``NUTRILEARN_HEALTH_*`` variable that is set."""
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = env.get(THRESHOLD_ENV[f.name], "")
            if raw.strip() == "":
                continue
            try:
                values[f.name] = int(raw) if f.type in (int, "int") else float(raw)
            except ValueError as exc:
                raise ValueError(f"{THRESHOLD_ENV[f.name]} must be a number, got {raw!r}") from exc
        return cls(**values)


@dataclass(frozen=True)
class Problem:
    check: str  # "error_rate" or "latency"
    severity: str  # degraded | unhealthy
    detail: str  # what was measured against which threshold
    recommendation: str


@dataclass(frozen=True)
class Traffic:
    requests: int
    span_minutes: float  # first to last request in view (at least one minute)
    mean_rpm: float  # requests / span_minutes
    peak_rpm: int  # busiest calendar minute
    peak_minute: pd.Timestamp | None


@dataclass(frozen=True)
class HealthReport:
    status: str
    problems: tuple[Problem, ...]
    notes: tuple[str, ...]
    requests: int
    errors: int
    error_rate: float
    latency: pd.DataFrame  # latency_summary
    errors_by_type: pd.DataFrame
    traffic: Traffic
    thresholds: HealthThresholds


# --------------------------------------------------------------------------------- figures

def latency_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per stage (decode, preprocess, inference, total): count, mean, p50, p95, p99 in ms.

    Successful predictions only (a failed one stops early and would flatter the figures);
    percentiles interpolate linearly, as ``numpy.percentile`` does.
    """
    ok = df.loc[(df["status"] == STATUS_OK).to_numpy(dtype=bool, na_value=False), list(_STAGE_COLUMNS)]
    q = ok.quantile(list(QUANTILES.values())) if len(ok) else pd.DataFrame(
        np.nan, index=list(QUANTILES.values()), columns=list(_STAGE_COLUMNS))
    out = pd.DataFrame({"stage": list(STAGES), "count": ok.count().to_numpy(), "mean": ok.mean().to_numpy()})
    for name, p in QUANTILES.items():
        out[name] = q.loc[p].to_numpy(dtype="float64")
    return out


def errors_by_type(df: pd.DataFrame) -> pd.DataFrame:
    """error_type, errors, rate (of all requests in view), share (of errors); most first."""
    err = df.loc[(df["status"] == STATUS_ERROR).to_numpy(dtype=bool, na_value=False), "error_type"]
    # As objects: prepare's categorical has no "unknown" to fill in, and its value_counts
    # would list categories with no errors in view (e.g. filtered out) as zero rows.
    counts = err.astype(object).fillna("unknown").value_counts(sort=False).rename("errors").rename_axis("error_type").reset_index()
    counts = counts.sort_values(["errors", "error_type"], ascending=[False, True], kind="stable")
    counts["rate"] = counts["errors"] / len(df) if len(df) else np.nan
    counts["share"] = counts["errors"] / len(err) if len(err) else np.nan
    return counts.astype({"errors": "int64"}).reset_index(drop=True)


def rate_frequency(span: pd.Timedelta) -> str:
    """A bucket for the request-rate chart: minutes for hours, hours for weeks."""
    if span <= pd.Timedelta(hours=6):
        return "1min"
    if span <= pd.Timedelta(days=3):
        return "15min"
    return "1h"


def request_rate(df: pd.DataFrame, freq: str = "1min") -> pd.DataFrame:
    """time, requests, per_minute: requests in each ``freq`` bucket (gaps as zero)."""
    if df.empty:
        return pd.DataFrame({"time": pd.Series(dtype="datetime64[us, UTC]"),
                             "requests": pd.Series(dtype="int64"), "per_minute": pd.Series(dtype="float64")})
    counts = pd.Series(1, index=df["timestamp"]).resample(freq).sum()
    minutes = pd.Timedelta(pd.tseries.frequencies.to_offset(freq)) / pd.Timedelta(minutes=1)
    return pd.DataFrame({"time": counts.index, "requests": counts.to_numpy(dtype="int64"),
                         "per_minute": counts.to_numpy(dtype="float64") / minutes})


def traffic(df: pd.DataFrame) -> Traffic:
    n = len(df)
    if n == 0:
        return Traffic(0, 0.0, float("nan"), 0, None)
    ts = df["timestamp"]
    span = max((ts.max() - ts.min()) / pd.Timedelta(minutes=1), 1.0)
    per_minute = ts.dt.floor("min").value_counts()
    return Traffic(requests=n, span_minutes=float(span), mean_rpm=n / span,
                   peak_rpm=int(per_minute.iloc[0]), peak_minute=per_minute.index[0])


# ------------------------------------------------------------------------- recommendations

ERROR_ADVICE = {
    "model_error": "The model itself failed: read the app log for the exception, check the model "
                   "files under NUTRILEARN_MODELS_DIR, and roll back to the previous version if one "
                   "was just promoted.",
    "empty_file": "Users upload empty files: check the client's upload path (a failed capture or copy).",
    "file_too_large": "Uploads exceed NUTRILEARN_MAX_UPLOAD_BYTES: ask users to send smaller photos, "
                      "or raise the limit if the photos are legitimate.",
    "image_too_large": "Images exceed NUTRILEARN_MAX_PIXELS: ask clients to resize before upload, or "
                       "raise the limit if memory allows.",
    "not_an_image": "Uploads are not images (wrong file type): tell users the accepted formats "
                    "(JPEG, PNG, WebP) and check any client that uploads automatically.",
    "truncated_image": "Uploads arrive cut short: check the network path and upload proxies for "
                       "size or time limits.",
    "invalid_image": "Images cannot be decoded: collect a few failing files and check their format.",
    "file_not_found": "The CLI was given paths that do not exist: check the calling script.",
    "unreadable_file": "The CLI cannot read some files: check their permissions.",
}
GENERIC_ERROR_ADVICE = "Look at the error messages of these requests in the recent-predictions table."

STAGE_ADVICE = {
    "decode": "Decoding dominates the slow requests: photos are large. Lower NUTRILEARN_MAX_PIXELS "
              "or ask clients to resize before upload.",
    "preprocess": "Cropping and resizing dominates the slow requests: photos are very large. "
                  "Resize on the client, or lower NUTRILEARN_MAX_PIXELS.",
    "inference": "The model dominates the slow requests: check CPU contention on the host (other "
                 "jobs, too many TensorFlow threads), compare model versions, or add a replica.",
    "overhead": "Time outside decode, preprocess and inference dominates: check the host's load "
                "and the prediction logger's spool.",
}


def _error_recommendation(by_type: pd.DataFrame) -> str:
    """Advice for each error type holding at least 10% of the errors, biggest first."""
    parts = []
    for row in by_type.itertuples(index=False):
        if row.share >= 0.10 or not parts:
            parts.append(f"{row.error_type} ({percent(row.share)} of errors): "
                         f"{ERROR_ADVICE.get(row.error_type, GENERIC_ERROR_ADVICE)}")
    return " ".join(parts) or GENERIC_ERROR_ADVICE


def slow_stage(df: pd.DataFrame, quantile: float = 0.95) -> str:
    """Which stage holds most of the time in the requests at or above the latency quantile."""
    ok = df.loc[(df["status"] == STATUS_OK).to_numpy(dtype=bool, na_value=False)]
    total = ok["total_ms"].dropna()
    if total.empty:
        return "overhead"
    tail = ok.loc[ok["total_ms"] >= total.quantile(quantile)]
    means = tail[["decode_ms", "preprocess_ms", "inference_ms"]].fillna(0.0).mean()
    overhead = float(tail["total_ms"].mean() - means.sum())
    shares = {"decode": means["decode_ms"], "preprocess": means["preprocess_ms"],
              "inference": means["inference_ms"], "overhead": overhead}
    return max(shares, key=shares.get)


# ---------------------------------------------------------------------------------- status

def _check(check: str, value: float, degraded: float, unhealthy: float, what: str, show: Callable[[float], str],
           advise) -> Problem | None:
    """A ``Problem`` when ``value`` reaches a threshold (inclusive), else None.
    ``advise`` is called only then (it may need to look at the data)."""
    if value >= unhealthy:
        severity, limit = UNHEALTHY, unhealthy
    elif value >= degraded:
        severity, limit = DEGRADED, degraded
    else:
        return None
    detail = f"{what} is at or above the {severity} threshold {show(limit)}"
    return Problem(check, severity, detail, advise())


def assess_health(df: pd.DataFrame, thresholds: HealthThresholds | None = None) -> HealthReport:
    """All health figures and the status they add up to."""
    return judge(len(df), int((df["status"] == STATUS_ERROR).sum()), latency_summary(df), errors_by_type(df),
                 traffic(df), lambda: slow_stage(df), thresholds)


def judge(n: int, errors: int, latency: pd.DataFrame, by_type: pd.DataFrame, traffic_: Traffic,
          slowest: Callable[[], str], thresholds: HealthThresholds | None = None) -> HealthReport:
    """The status the figures add up to, from figures computed anywhere (pandas rows here,
    DuckDB aggregates in ``aggregates.assess_health``); ``slowest()`` is asked only when
    latency crosses a threshold."""
    t = thresholds or HealthThresholds()
    rate = errors / n if n else float("nan")
    found: list[Problem | None] = []
    notes: list[str] = []

    if n < t.min_requests:
        notes.append(f"Only {n} request(s) in view: the error rate is judged from {t.min_requests} on.")
    else:
        found.append(_check("error_rate", rate, t.error_rate_degraded, t.error_rate_unhealthy,
                            f"error rate {percent(rate)} ({errors} of {n})", percent,
                            lambda: _error_recommendation(by_type)))

    p95 = float(latency.loc[latency["stage"] == "total", "p95"].iloc[0])
    if np.isnan(p95):
        notes.append("No successful predictions in view: latency is not judged.")
    else:
        found.append(_check("latency", p95, t.p95_latency_ms_degraded, t.p95_latency_ms_unhealthy,
                            f"p95 latency {p95:.0f} ms", lambda ms: f"{ms:.0f} ms", lambda: STAGE_ADVICE[slowest()]))
    problems = [p for p in found if p is not None]

    status = max((p.severity for p in problems), key=_RANK.get, default=HEALTHY)
    return HealthReport(status=status, problems=tuple(problems), notes=tuple(notes), requests=n,
                        errors=errors, error_rate=rate, latency=latency, errors_by_type=by_type,
                        traffic=traffic_, thresholds=t)


def dead_letter_table(letters) -> pd.DataFrame:
    """``Spool.dead_letters()`` for a page: what was set aside, when, and why."""
    rows = [{"batch": d.batch_id[:12], "kind": d.kind, "records": d.n, "attempts": d.attempts,
             "set aside (UTC)": pd.Timestamp(d.dead_at, unit="s", tz="UTC").floor("s"),
             "last error": d.last_error} for d in letters]
    return pd.DataFrame(rows, columns=["batch", "kind", "records", "attempts", "set aside (UTC)", "last error"])
