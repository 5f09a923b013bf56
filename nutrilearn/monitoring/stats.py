"""What analysts read every morning: volumes, confidence, recent predictions and trends.

Every figure takes the predictions in view, as ``filter_predictions`` (or ``prepare``)
returns them: the monitoring columns of ``PredictionRecord``, one row per prediction,
failed ones included, ``timestamp`` aware UTC. Each returns a DataFrame or a small
dataclass. Nothing here draws or talks to MLflow; pages only plot the results.

All work is vectorised pandas/numpy (masks, ``groupby``, ``resample``): the whole set of
figures for 100,000 predictions takes well under a second (``bench/bench_monitoring.py``).

Conventions used throughout (documented in ``docs/monitoring.md``):

* Confidence statistics use successful predictions only (a failed one has no confidence).
* "Foods" are the predicted labels of successful predictions other than ``not_food``.
* Days are UTC calendar days.
* Realized accuracy = share of feedback whose true label equals the model's label,
  joined on ``request_id`` (a request's latest feedback wins).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from nutrilearn.monitoring.filters import Filters  # noqa: F401 (re-exported: it was defined here)
from nutrilearn.tracking.records import REPLAY_SOURCE, SHADOW_SUFFIX, STATUS_ERROR, STATUS_OK, FeedbackRecord, PredictionRecord, as_utc

# A challenger running in shadow logs a second record for the same photo, with this suffix
# on the champion's request id (``nutrilearn.registry.routing.CHALLENGER_SUFFIX``).
NOT_FOOD = "not_food"  # nutrilearn.vision.vocabulary.NOT_FOOD (not imported: keeps numpy-only deps light)
PREDICTION_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(PredictionRecord))
FEEDBACK_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(FeedbackRecord)) + ("kind",)

# The columns the monitoring figures read (embeddings, top-5 lists and image statistics
# are left to the drift work, so filtering copies only what is needed). Repetitive text
# becomes ``category`` (fast masks and groupby); unique text becomes plain objects
# (Arrow-backed strings are slow to take rows from).
_CATEGORIES = ("user", "model_name", "model_version", "model_alias", "status", "source", "error_type", "label")
_UNIQUE_TEXT = ("request_id", "filename")
_FLOAT = ("confidence", "decode_ms", "preprocess_ms", "inference_ms", "total_ms")
MONITOR_COLUMNS: tuple[str, ...] = ("timestamp",) + _UNIQUE_TEXT + _CATEGORIES + _FLOAT

# Confidence bands of the recent-predictions table: [0, low) low, [low, high) medium, else high.
LOW_CONFIDENCE = 0.5
HIGH_CONFIDENCE = 0.8
BANDS = ("low", "medium", "high")

TIME_RANGES: dict[str, timedelta | None] = {
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(days=1),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "Last 90 days": timedelta(days=90),
    "All time": None,
}


# --------------------------------------------------------------------------- preparation

def prepare(predictions: pd.DataFrame | None) -> pd.DataFrame:
    """The monitoring columns with settled dtypes (a missing column becomes empty)."""
    src = predictions if predictions is not None else pd.DataFrame()
    n = len(src)
    out = {}
    ts = src["timestamp"] if "timestamp" in src else pd.Series(pd.NaT, index=src.index)
    out["timestamp"] = pd.to_datetime(ts, utc=True).astype("datetime64[us, UTC]").array
    for c in _UNIQUE_TEXT:  # Arrow-backed "str": fast substring search and hash joins
        out[c] = (src[c] if c in src else pd.Series([None] * n, dtype=object)).astype("str").array
    for c in _CATEGORIES:
        col = src[c] if c in src else pd.Series([None] * n, dtype=object)
        if isinstance(col.dtype, pd.CategoricalDtype):
            cat = col.array
        elif isinstance(col.dtype, pd.StringDtype):  # Arrow-backed, as the reader returns
            cat = col.astype("category").array
        else:
            cat = pd.Categorical(col.to_numpy(dtype=object, na_value=None))
        if not all(isinstance(x, str) for x in cat.categories):  # e.g. versions read as numbers
            cat = pd.Categorical(np.where(pd.isna(cat), None, np.asarray(cat, dtype=object).astype(str)))
        out[c] = cat
    for c in _FLOAT:
        out[c] = (pd.to_numeric(src[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
                  if c in src else np.full(n, np.nan))
    return pd.DataFrame(out, columns=list(MONITOR_COLUMNS))


def is_prepared(df: pd.DataFrame) -> bool:
    """Whether ``df`` already has ``prepare``'s columns and dtypes (so it is not redone)."""
    return (tuple(df.columns) == MONITOR_COLUMNS
            and all(isinstance(df[c].dtype, pd.CategoricalDtype) for c in _CATEGORIES))


def prepare_feedback(feedback: pd.DataFrame | None) -> pd.DataFrame:
    """Feedback rows with aware UTC timestamps, one per request (the latest wins)."""
    if feedback is None or len(feedback) == 0 or "request_id" not in feedback:
        return pd.DataFrame({"request_id": pd.Series(dtype="object"), "label": pd.Series(dtype="object"),
                             "timestamp": pd.Series(dtype="datetime64[us, UTC]")})
    out = feedback[["request_id", "label", "timestamp"]].copy()
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True)
    out = out.sort_values("timestamp", kind="stable").drop_duplicates("request_id", keep="last")
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------------ filtering

def filter_predictions(predictions: pd.DataFrame, filters: Filters | None = None) -> pd.DataFrame:
    """Apply time range, model version, user and replay filters in one vectorised mask.

    ``predictions`` is the reader's frame or, cheaper when filtering the same data again
    and again, ``prepare(frame)`` done once after loading.
    """
    df = predictions if is_prepared(predictions) else prepare(predictions)
    f = filters or Filters()
    mask = np.ones(len(df), dtype=bool)
    if f.start is not None:
        mask &= (df["timestamp"] >= pd.Timestamp(as_utc(f.start))).to_numpy(dtype=bool, na_value=False)
    if f.end is not None:
        mask &= (df["timestamp"] < pd.Timestamp(as_utc(f.end))).to_numpy(dtype=bool, na_value=False)
    if f.model_versions:
        mask &= df["model_version"].isin([str(v) for v in f.model_versions]).to_numpy(dtype=bool, na_value=False)
    if f.users:
        mask &= df["user"].isin(list(f.users)).to_numpy(dtype=bool, na_value=False)
    if f.hide_replayed:
        mask &= (df["source"] != REPLAY_SOURCE).to_numpy(dtype=bool, na_value=True)
    if not f.include_shadow:
        mask &= ~is_shadow(df)
    return df.loc[mask].reset_index(drop=True)


def is_shadow(df: pd.DataFrame) -> np.ndarray:
    """Rows that are a challenger's shadow answer rather than a request of their own."""
    return df["request_id"].astype("str").str.endswith(SHADOW_SUFFIX).to_numpy(dtype=bool, na_value=False)


def filter_options(predictions: pd.DataFrame) -> dict[str, list]:
    """Choices for the filter widgets: model versions, users, and the replayed count."""
    df = predictions if is_prepared(predictions) else prepare(predictions)
    versions = sorted(df["model_version"].dropna().unique().tolist(), key=_version_key)
    users = sorted(df["user"].dropna().astype(str).unique().tolist())
    return {"model_versions": versions, "users": users,
            "replayed": int((df["source"] == REPLAY_SOURCE).sum()), "shadow": int(is_shadow(df).sum())}


def _version_key(v: str):
    return (0, int(v), "") if str(v).isdigit() else (1, 0, str(v))


def _ok(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` of the successful predictions with a confidence (only those are copied)."""
    mask = (df["status"] == STATUS_OK).to_numpy(dtype=bool, na_value=False) & df["confidence"].notna().to_numpy()
    return df.loc[mask, columns]


def _foods(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` of the successful predictions that named a food (``not_food`` excluded)."""
    mask = ((df["status"] == STATUS_OK).to_numpy(dtype=bool, na_value=False)
            & (df["label"].notna() & (df["label"] != NOT_FOOD)).to_numpy(dtype=bool, na_value=False))
    return df.loc[mask, columns]


def _nan_if_none(x) -> float:
    return float("nan") if x is None or pd.isna(x) else float(x)


# ------------------------------------------------------------------------------- overview

@dataclass(frozen=True)
class Overview:
    total: int
    ok: int
    errors: int
    error_rate: float  # errors / total; NaN when there are no predictions
    mean_confidence: float  # over successful predictions; NaN when none
    unique_users: int
    unique_foods: int  # distinct predicted foods (``not_food`` excluded)
    not_food: int  # successful predictions that said "not a recognised food"
    replayed: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None


def overview(df: pd.DataFrame) -> Overview:
    total = len(df)
    ok_mask = (df["status"] == STATUS_OK).to_numpy(dtype=bool, na_value=False)
    err = int((df["status"] == STATUS_ERROR).sum())
    ok = df.loc[ok_mask, ["confidence", "label"]]
    return Overview(
        total=total,
        ok=int(ok_mask.sum()),
        errors=err,
        error_rate=err / total if total else float("nan"),
        mean_confidence=_nan_if_none(ok["confidence"].mean()),
        unique_users=int(df["user"].nunique()),
        unique_foods=int(_foods(df, ["label"])["label"].nunique()),
        not_food=int((ok["label"] == NOT_FOOD).sum()),
        replayed=int((df["source"] == REPLAY_SOURCE).sum()),
        first=df["timestamp"].min() if total else None,
        last=df["timestamp"].max() if total else None,
    )


# -------------------------------------------------------------------------------- volumes

def food_names(labels: pd.Series) -> pd.Series:
    """Readable food names for labels (computed once per distinct label)."""
    from nutrilearn.vision.vocabulary import display_name

    uniq = labels.dropna().unique()
    return labels.map({label: display_name(label) for label in uniq})


def top_foods(df: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` most predicted foods: label, food, predictions, share, mean_confidence."""
    foods = _foods(df, ["label", "confidence"])
    g = foods.groupby("label", sort=False, observed=True)["confidence"].agg(predictions="size", mean_confidence="mean")
    g = g.reset_index().sort_values(["predictions", "label"], ascending=[False, True], kind="stable")
    g["share"] = g["predictions"] / len(foods) if len(foods) else np.nan
    g = g.head(n).reset_index(drop=True)
    g.insert(1, "food", food_names(g["label"]))
    return g[["label", "food", "predictions", "share", "mean_confidence"]]


def daily_volume(df: pd.DataFrame) -> pd.DataFrame:
    """Predictions and errors per UTC day, days without traffic included as zeros."""
    if df.empty:
        return pd.DataFrame({"day": pd.Series(dtype="datetime64[us, UTC]"),
                             "predictions": pd.Series(dtype="int64"), "errors": pd.Series(dtype="int64")})
    is_err = (df["status"] == STATUS_ERROR).to_numpy(dtype=bool, na_value=False)
    frame = pd.DataFrame({"predictions": 1, "errors": is_err.astype("int64")}, index=df["timestamp"])
    out = frame.resample("D").sum().rename_axis("day").reset_index()
    return out.astype({"predictions": "int64", "errors": "int64"})


def by_user(df: pd.DataFrame) -> pd.DataFrame:
    """Per user: predictions, errors, mean/min/max confidence, last seen (busiest first)."""
    is_err = (df["status"] == STATUS_ERROR).to_numpy(dtype=bool, na_value=False)
    frame = df[["user", "confidence", "timestamp"]].assign(_err=is_err)
    g = frame.groupby("user", sort=False, observed=True).agg(
        predictions=("timestamp", "size"), errors=("_err", "sum"),
        mean_confidence=("confidence", "mean"), min_confidence=("confidence", "min"),
        max_confidence=("confidence", "max"), last_seen=("timestamp", "max"),
    )
    g = g.reset_index().sort_values(["predictions", "user"], ascending=[False, True], kind="stable")
    return g.astype({"errors": "int64"}).reset_index(drop=True)


# ------------------------------------------------------------------------ recent predictions

RECENT_COLUMNS = ("time", "food", "confidence", "band", "latency_ms", "user", "model_version",
                  "status", "source", "error_type", "filename", "request_id")
# Sorting a display column sorts by the prediction column behind it.
_SORT_KEYS = {"time": "timestamp", "latency_ms": "total_ms", "band": "confidence"}
_SEARCHED_CATEGORIES = ("label", "user", "model_version", "status", "source", "error_type")


def confidence_band(confidence: pd.Series, low: float = LOW_CONFIDENCE, high: float = HIGH_CONFIDENCE) -> pd.Series:
    """'low' below ``low``, 'high' from ``high``, 'medium' between; missing stays missing."""
    c = confidence.to_numpy(dtype="float64", na_value=np.nan)
    band = np.select([c < low, c < high, c >= high], list(BANDS), default=None).astype(object)
    return pd.Series(band, index=confidence.index, dtype=object)


def _contains(values, needle: str) -> np.ndarray:
    """Literal, case-insensitive substring test (missing values never match)."""
    text = pd.Series(values).astype("str")
    return np.array(text.str.contains(needle, case=False, regex=False).to_numpy(dtype=bool, na_value=False))


def search_mask(df: pd.DataFrame, search: str) -> np.ndarray:
    """Rows where ``search`` occurs in food name, label, user, version, status, source,
    error type or file name: a literal, case-insensitive substring (never a regex or a
    query). Repetitive columns are searched once per distinct value."""
    needle = (search or "").strip()
    if not needle:
        return np.ones(len(df), dtype=bool)
    hit = _contains(df["filename"], needle)
    for col in _SEARCHED_CATEGORIES:
        cats = df[col].cat.categories
        matched = _contains(cats.to_numpy(dtype=object), needle).copy()
        if col == "label":
            matched |= _contains(food_names(pd.Series(cats, dtype=object)), needle)
        if matched.any():
            hit |= df[col].isin(cats[matched]).to_numpy(dtype=bool)
    return hit


def recent(df: pd.DataFrame, limit: int = 200, search: str = "", sort_by: str = "time",
           descending: bool = True, low: float = LOW_CONFIDENCE, high: float = HIGH_CONFIDENCE) -> pd.DataFrame:
    """The first ``limit`` predictions matching ``search`` (see ``search_mask``), sorted.

    Every row of ``df`` is searched and sorted before ``limit`` applies; display columns
    (food name, band) are built for the rows shown only.
    """
    if sort_by not in RECENT_COLUMNS:
        raise ValueError(f"cannot sort by {sort_by!r}; choose one of {', '.join(RECENT_COLUMNS)}")
    rows = df.loc[search_mask(df, search)]
    if sort_by == "food":
        key = food_names(rows["label"].astype(object))
    else:
        key = rows[_SORT_KEYS.get(sort_by, sort_by)]
        if isinstance(key.dtype, pd.CategoricalDtype):
            key = key.astype(object)
    order = key.sort_values(ascending=not descending, kind="stable", na_position="last").index[:limit]
    rows = rows.loc[order]
    return pd.DataFrame({
        "time": rows["timestamp"],
        "food": food_names(rows["label"].astype(object)),
        "confidence": rows["confidence"],
        "band": confidence_band(rows["confidence"], low, high),
        "latency_ms": rows["total_ms"],
        "user": rows["user"].astype(object),
        "model_version": rows["model_version"].astype(object),
        "status": rows["status"].astype(object),
        "source": rows["source"].astype(object),
        "error_type": rows["error_type"].astype(object),
        "filename": rows["filename"],
        "request_id": rows["request_id"],
    }).reset_index(drop=True)


# ------------------------------------------------------------------------------ confidence

@dataclass(frozen=True)
class ConfidenceSummary:
    count: int
    mean: float
    median: float
    std: float  # sample standard deviation (ddof=1)
    low_share: float  # share of predictions with confidence below ``low_threshold``
    low_threshold: float


def confidence_summary(df: pd.DataFrame, low_threshold: float = LOW_CONFIDENCE) -> ConfidenceSummary:
    c = _ok(df, ["confidence"])["confidence"]
    n = len(c)
    return ConfidenceSummary(
        count=n, mean=_nan_if_none(c.mean()), median=_nan_if_none(c.median()),
        std=_nan_if_none(c.std(ddof=1)), low_share=float((c < low_threshold).mean()) if n else float("nan"),
        low_threshold=low_threshold,
    )


def confidence_by_version(df: pd.DataFrame, low_threshold: float = LOW_CONFIDENCE) -> pd.DataFrame:
    """``confidence_summary`` per model version: count, mean, median, std, low_share."""
    ok = _ok(df, ["model_version", "confidence"])
    frame = ok[["model_version", "confidence"]].assign(_low=(ok["confidence"] < low_threshold).astype("float64"))
    g = frame.groupby("model_version", sort=False, observed=True).agg(
        count=("confidence", "size"), mean=("confidence", "mean"), median=("confidence", "median"),
        std=("confidence", "std"), low_share=("_low", "mean"),
    ).reset_index()
    order = sorted(g["model_version"].tolist(), key=_version_key)
    return g.set_index("model_version").loc[order].reset_index()


def confidence_histogram(df: pd.DataFrame, bins: int = 20) -> pd.DataFrame:
    """Counts of confidence in ``bins`` equal bins over [0, 1], per model version.

    Bin edges follow ``numpy.histogram`` (each bin half-open, the last one closed).
    Every version gets every bin (zeros included); ``share`` is within the version, so
    versions with different volumes compare on one chart.
    """
    if bins < 1:
        raise ValueError("bins must be at least 1")
    ok = _ok(df, ["model_version", "confidence"])
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, ok["confidence"].to_numpy("float64"), side="right") - 1, 0, bins - 1)
    versions = sorted(ok["model_version"].dropna().unique().tolist(), key=_version_key)
    counts = (pd.DataFrame({"model_version": ok["model_version"].to_numpy(), "bin": idx})
              .groupby(["model_version", "bin"]).size().rename("count").reset_index())
    return histogram_table(counts, versions, edges)


def histogram_table(counts: pd.DataFrame, versions: list, edges: np.ndarray) -> pd.DataFrame:
    """Per-version histogram rows from ``(model_version, bin, count)`` counts: every bin of
    every version (empty ones 0), each with its edges and its share of the version's total."""
    full = pd.MultiIndex.from_product([versions, range(len(edges) - 1)], names=["model_version", "bin"])
    counts = counts.set_index(["model_version", "bin"])["count"].reindex(full, fill_value=0).reset_index()
    totals = counts.groupby("model_version")["count"].transform("sum")
    counts["share"] = counts["count"] / totals.where(totals > 0)
    counts["bin_start"] = edges[counts["bin"].to_numpy()]
    counts["bin_end"] = edges[counts["bin"].to_numpy() + 1]
    counts["count"] = counts["count"].astype("int64")
    return counts[["model_version", "bin_start", "bin_end", "count", "share"]]


# ---------------------------------------------------------------------------------- trends

FEEDBACK_JOIN_COLUMNS = ("request_id", "timestamp", "model_version", "label", "true_label", "correct")


def join_feedback(df: pd.DataFrame, feedback: pd.DataFrame | None) -> pd.DataFrame:
    """The feedback on the predictions in ``df``, one row per judged prediction.

    Feedback on a photo also judges a challenger's shadow answer to it (its request id is
    the champion's plus ``SHADOW_SUFFIX``), so versions compare on the same photos.

    Columns: request_id, timestamp (of the prediction), model_version, label (the
    model's), true_label (the person's, latest feedback wins), correct. Compute it once
    per view and hand it to ``feedback_summary``, ``accuracy_by_version`` and
    ``daily_trends``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    fb = prepare_feedback(feedback)
    judged = pa.array(df["request_id"], pa.string())
    shadow = pc.ends_with(judged, SHADOW_SUFFIX)
    if pc.any(shadow).as_py():
        judged = pc.if_else(shadow, pc.utf8_slice_codeunits(judged, 0, -len(SHADOW_SUFFIX)), judged)
    pos = pc.index_in(judged, value_set=pa.array(fb["request_id"], pa.string()))
    has = pc.is_valid(pos).to_numpy(zero_copy_only=False)
    pos = pos.drop_null().to_numpy().astype(np.int64)
    joined = pd.DataFrame({
        "request_id": df["request_id"].to_numpy(dtype=object)[has],
        "timestamp": df["timestamp"].array[has],
        "model_version": df["model_version"].to_numpy(dtype=object)[has],
        "label": df["label"].to_numpy(dtype=object)[has],
        "true_label": fb["label"].to_numpy(dtype=object)[pos],
    })
    joined["correct"] = (joined["true_label"] == joined["label"]).to_numpy(dtype=bool, na_value=False)
    return joined[list(FEEDBACK_JOIN_COLUMNS)]


@dataclass(frozen=True)
class FeedbackSummary:
    feedback: int  # predictions in view with a feedback label
    correct: int
    accuracy: float  # NaN when there is no feedback


def feedback_summary(joined: pd.DataFrame) -> FeedbackSummary:
    """Realized accuracy over all judged predictions (``joined`` from ``join_feedback``)."""
    n, k = len(joined), int(joined["correct"].sum())
    return FeedbackSummary(feedback=n, correct=k, accuracy=k / n if n else float("nan"))


def accuracy_by_version(joined: pd.DataFrame) -> pd.DataFrame:
    """Realized accuracy per model version: feedback, correct, accuracy."""
    g = joined.groupby("model_version", sort=False)["correct"].agg(feedback="size", correct="sum").reset_index()
    g["correct"] = g["correct"].astype("int64")
    g["accuracy"] = g["correct"] / g["feedback"]
    order = sorted(g["model_version"].tolist(), key=_version_key)
    return g.set_index("model_version").loc[order].reset_index()


def daily_trends(df: pd.DataFrame, joined: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per UTC day: predictions, mean_confidence, error_rate, feedback, realized_accuracy.

    Days come from the prediction's time (feedback counts on the day of the prediction it
    judges; ``joined`` from ``join_feedback``). ``realized_accuracy`` is NaN on days
    without feedback.
    """
    cols = ["day", "predictions", "mean_confidence", "error_rate", "feedback", "realized_accuracy"]
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[us, UTC]" if c == "day" else "float64") for c in cols})
    ok_mask = (df["status"] == STATUS_OK).to_numpy(dtype=bool, na_value=False)
    frame = pd.DataFrame({
        "predictions": np.ones(len(df), dtype="int64"),
        "errors": (df["status"] == STATUS_ERROR).to_numpy(dtype=bool, na_value=False).astype("int64"),
        "conf": df["confidence"].where(ok_mask).to_numpy(),
    }, index=df["timestamp"])
    r = frame.resample("D")
    out = pd.DataFrame({"predictions": r["predictions"].sum(), "mean_confidence": r["conf"].mean(),
                        "errors": r["errors"].sum()})
    out["error_rate"] = out["errors"] / out["predictions"].where(out["predictions"] > 0)
    j = joined
    if j is not None and len(j):
        fr = pd.DataFrame({"n": 1, "k": j["correct"].astype("int64").to_numpy()}, index=j["timestamp"]).resample("D").sum()
        out = out.join(fr, how="left")
    else:
        out["n"], out["k"] = 0, 0
    out["feedback"] = out["n"].fillna(0).astype("int64")
    out["realized_accuracy"] = out["k"] / out["n"].where(out["n"] > 0)
    return out.rename_axis("day").reset_index()[cols]
