"""Drift windows resolved in the engine: the rows a drift check reads, fetched through ``History``.

``windows.select`` slices a DataFrame of every prediction; at millions of predictions that
frame (with its 256-byte embeddings) is the cost. Here each window spec becomes one DuckDB
question over the mirror: ``last:N``/``first:N``/``champion:...@N`` are an ordered ``LIMIT``
(read from the newest or oldest days first), time windows (``days:D``, ``range:A..B``) read
only their days and bring back at most ``max_rows`` rows drawn uniformly. Embeddings are
fetched apart, for at most ``embeddings`` rows drawn at random from the window (the drift
tests cap them at ``drift.SAMPLE_CAP`` anyway), so no query materialises every embedding.

The windows are the same ``windows.Window`` objects with the same usable rows (status ok,
served answers only); a sampled window says so in its params (``in_window``, ``sampled``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from nutrilearn.monitoring.drift import SAMPLE_CAP
from nutrilearn.monitoring.filters import Filters
from nutrilearn.monitoring.windows import Window, WindowSpecError, isin, resolved_spec
from nutrilearn.tracking.records import REPLAY_SOURCE, as_utc

if TYPE_CHECKING:
    from nutrilearn.monitoring.history import History

# What the detectors, estimates and drill-down read (no top-5 lists, latencies or messages:
# a time window's sample reads every row of these columns, so fewer is faster).
DRIFT_COLUMNS = ("request_id", "timestamp", "user", "model_name", "model_version", "model_alias", "status",
                 "source", "filename", "label", "confidence", "is_food", "brightness", "contrast", "saturation",
                 "sharpness", "aspect", "image_width", "image_height")
MAX_ROWS = 20_000  # rows a time window brings back (a uniform sample beyond that)
LATER_EMBEDDINGS = 5_000  # embeddings for the over-time chunks (a few dozen a day over months)
POOL = 2  # later_pool's sample over max_rows: room for the reference and replayed rows left out
# Served, successful answers (shadow request ids are left out by the filters themselves).
USABLE = "status = 'ok' AND model_alias IS DISTINCT FROM 'challenger'"
_TICK = timedelta(microseconds=1)


def _filters(live_only: bool, start: datetime | None = None, end: datetime | None = None,
             versions: Sequence[str] = ()) -> Filters:
    return Filters(start=start, end=end, model_versions=tuple(versions), hide_replayed=live_only,
                   include_shadow=False)


def _ordered(history: History, f: Filters, n: int, newest: bool, where: str = "", params: Sequence[Any] = (),
             columns: Sequence[str] = DRIFT_COLUMNS) -> pd.DataFrame:
    """The first (or last) ``n`` usable rows, oldest first; tried on the oldest (newest)
    mirrored days that could hold them before the whole history."""
    sql = (f"SELECT * FROM {{src}} WHERE {USABLE}{where} "
           f"ORDER BY timestamp {'DESC' if newest else 'ASC'}, request_id LIMIT ?")
    narrowed = _edge_days(history, f, n, newest)
    df = None
    if narrowed is not None:
        df = history.query("predictions", narrowed, columns, sql, [*params, int(n)])
    if df is None or len(df) < n:
        df = history.query("predictions", f, columns, sql, [*params, int(n)])
    return df.sort_values(["timestamp", "request_id"], kind="stable").reset_index(drop=True)


def _edge_days(history: History, f: Filters, n: int, newest: bool) -> Filters | None:
    """``f`` narrowed to the newest (oldest) mirrored days holding 1.5 n rows; None if the
    window is narrower already or the days hold fewer."""
    days = history.mirror.days()
    held = 0
    for day, rows in (reversed(days) if newest else days):
        held += rows
        if held >= 1.5 * n:
            edge = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
            if newest:
                return replace(f, start=edge if f.start is None else max(as_utc(f.start), edge))
            end = edge + timedelta(days=1)
            return replace(f, end=end if f.end is None else min(as_utc(f.end), end))
    return None


def _timed(history: History, f: Filters, max_rows: int, seed: int,
           columns: Sequence[str] = DRIFT_COLUMNS) -> tuple[pd.DataFrame, int]:
    """Usable rows of a time window, at most ``max_rows`` drawn uniformly; and how many it holds."""
    total = int(history.query("predictions", f, ("status", "model_alias"),
                              f"SELECT count(*) AS n FROM {{src}} WHERE {USABLE}").iloc[0, 0])
    sql = f"SELECT * FROM {{src}} WHERE {USABLE}"
    if total > max_rows:
        sql = f"SELECT * FROM ({sql}) USING SAMPLE reservoir({int(max_rows)} ROWS) REPEATABLE ({int(seed)})"
    df = history.query("predictions", f, columns, sql)
    return df.sort_values(["timestamp", "request_id"], kind="stable").reset_index(drop=True), total


def newest_time(history: History, live_only: bool = False) -> datetime | None:
    """The newest usable prediction's time (what ``days:D`` counts back from)."""
    sql = f"SELECT max(timestamp) AS t FROM {{src}} WHERE {USABLE}"
    for f in (_edge_days(history, _filters(live_only), 1, True), _filters(live_only)):
        if f is None:
            continue
        t = history.query("predictions", f, ("status", "model_alias"), sql).iloc[0, 0]
        if not pd.isna(t):
            return t.to_pydatetime()
    return None


def oldest_time(history: History, live_only: bool = False) -> datetime | None:
    """The oldest usable prediction's time (a date picker's default), read from the oldest days."""
    # The columns _ordered's filter and order read too (usable rows, ties by request id).
    first = _ordered(history, _filters(live_only), 1, newest=False,
                     columns=("timestamp", "request_id", "status", "model_alias"))
    return first["timestamp"].iloc[0].to_pydatetime() if len(first) else None


def model_versions(history: History, live_only: bool = False) -> list[str]:
    """The model versions with usable predictions, sorted."""
    df = history.query("predictions", _filters(live_only), ("status", "model_alias", "model_version"),
                       f"SELECT DISTINCT model_version FROM {{src}} WHERE {USABLE} AND model_version IS NOT NULL")
    return sorted(str(v) for v in df["model_version"])


def with_embeddings(history: History, frame: pd.DataFrame, cap: int, seed: int = 0,
                    live_only: bool = False) -> pd.DataFrame:
    """``frame`` with an ``embedding`` column filled for at most ``cap`` rows drawn at random
    (the rest None): only those embeddings are read, from the frame's time span only."""
    out = frame.copy()
    out["embedding"] = None
    if not len(frame) or cap <= 0:
        return out
    ids = frame["request_id"].to_numpy()
    if len(ids) > cap:
        ids = ids[np.sort(np.random.default_rng(seed).choice(len(ids), size=cap, replace=False))]
    # Only the frame's time span is read (its rows are all in it).
    span = _filters(live_only, frame["timestamp"].min().to_pydatetime(), frame["timestamp"].max().to_pydatetime() + _TICK)
    got = history.query("predictions", span, ("embedding",),
                        "SELECT request_id, embedding FROM {src} WHERE request_id IN (SELECT unnest(?))",
                        [[str(i) for i in ids]])
    blobs = dict(zip(got["request_id"], got["embedding"]))
    out["embedding"] = [blobs.get(r) for r in out["request_id"]]
    return out


def select(history: History, spec: str, name: str, *, live_only: bool = False,
           champion: tuple[Any, str] | None = None, now: datetime | None = None, max_rows: int = MAX_ROWS,
           embeddings: int = SAMPLE_CAP, seed: int = 0) -> Window:
    """``windows.select`` answered by the engine (same specs, same usable rows)."""
    kind, args = resolved_spec(spec, champion)
    params: dict[str, Any] = {"kind": kind}
    if "n" in args:
        params["asked"] = args["n"]
    if kind == "last":
        frame = _ordered(history, _filters(live_only), args["n"], newest=True)
    elif kind == "first":
        frame = _ordered(history, _filters(live_only), args["n"], newest=False)
    elif kind in ("days", "range"):
        if kind == "days":
            end = as_utc(pd.Timestamp(now).to_pydatetime()) if now is not None else newest_time(history, live_only)
            if end is None:
                frame, total = history.query("predictions", _filters(live_only), DRIFT_COLUMNS,
                                             "SELECT * FROM {src} LIMIT 0"), 0
            else:  # (end - D, end], as windows.last_days
                f = _filters(live_only, end - timedelta(days=args["days"]) + _TICK, end + _TICK)
                frame, total = _timed(history, f, max_rows, seed)
        else:
            f = _filters(live_only, args["start"].to_pydatetime(), args["end"].to_pydatetime())
            frame, total = _timed(history, f, max_rows, seed)
        params["in_window"] = total
        if total > len(frame):
            params["sampled"] = len(frame)
    elif kind == "champion":
        since = as_utc(pd.Timestamp(args["since"]).to_pydatetime())
        version = args["version"]
        if version is None:
            frame = _ordered(history, _filters(live_only, since), args["n"], newest=False)
        else:  # that version's answers from then on, and its replayed ones whatever their time
            frame = _ordered(history, _filters(live_only, versions=(str(version),)), args["n"], newest=False,
                             where=" AND (timestamp >= ? OR source = ?)", params=[since, REPLAY_SOURCE])
        params.update(since=str(pd.Timestamp(since)), version=version or "any")
    else:
        raise WindowSpecError(f"{spec!r} names photos, not logged predictions: use folder_window")
    frame = with_embeddings(history, frame, embeddings, seed + (name != "reference"), live_only)
    return Window(name, spec, frame, params)


def later_pool(history: History, *, max_rows: int = MAX_ROWS, seed: int = 0) -> pd.DataFrame:
    """A uniform sample of every usable prediction, replayed ones too: ``POOL`` times the
    ``max_rows`` the over-time tests use, each row with its embedding. Read once per data
    version: each reference and the replayed toggle take their later sample from it in
    memory (``later_from``) instead of a reservoir over every row each (1.3 s at 1M)."""
    frame, _ = _timed(history, _filters(False), POOL * max_rows, seed)
    return with_embeddings(history, frame, len(frame), seed + 2)


def later_from(pool: pd.DataFrame, reference: Window, *, live_only: bool = False, max_rows: int = MAX_ROWS,
               embeddings: int = LATER_EMBEDDINGS, seed: int = 0) -> pd.DataFrame:
    """The predictions of ``pool`` outside the reference (replayed ones left out if
    ``live_only``, as ``Filters.hide_replayed``), at most ``max_rows`` drawn uniformly, oldest
    first; embeddings kept for at most ``embeddings`` of them drawn at random. A uniform
    sample stays uniform on the rows a filter keeps."""
    keep = ~isin(pool["request_id"], reference.frame["request_id"])
    if live_only:
        keep &= pool["source"].ne(REPLAY_SOURCE).to_numpy(dtype=bool, na_value=True)
    frame = pool[keep]
    rng = np.random.default_rng(seed)
    if len(frame) > max_rows:  # a uniform subset, still oldest first
        frame = frame.iloc[np.sort(rng.choice(len(frame), size=max_rows, replace=False))]
    frame = frame.reset_index(drop=True)
    if "embedding" in frame and len(frame) > embeddings:
        blobs = np.full(len(frame), None, dtype=object)
        kept = rng.choice(len(frame), size=max(embeddings, 0), replace=False)
        blobs[kept] = frame["embedding"].to_numpy(object)[kept]
        frame["embedding"] = blobs
    return frame


def later(history: History, reference: Window, *, live_only: bool = False, max_rows: int = MAX_ROWS,
          embeddings: int = LATER_EMBEDDINGS, seed: int = 0) -> pd.DataFrame:
    """Usable predictions outside the reference (what the page tests over time), at most
    ``max_rows`` drawn uniformly, embeddings for at most ``embeddings`` of them."""
    return later_from(later_pool(history, max_rows=max_rows, seed=seed), reference, live_only=live_only,
                      max_rows=max_rows, embeddings=embeddings, seed=seed)


def data_version(history: History) -> tuple[int, int]:
    """(batch runs mirrored, records waiting in the spool): changes when predictions arrive."""
    return history.mirror.stats()["runs"], history.pending_count()
