"""Which predictions are compared: reference and current windows, and chunks over time.

A window is a slice of the predictions DataFrame plus a description (logged as MLflow
params with every drift check). Windows are written as short specs so that the CLI, the
page and automation say the same thing:

- ``last:500``                        the last 500 predictions
- ``days:7``                          the last 7 days (up to the newest prediction, or ``now``)
- ``range:2026-11-01..2026-11-08``    a date range, start inclusive, end exclusive (UTC)
- ``first:500``                       the first 500 predictions
- ``champion:2026-11-20T10:00@500``   the first 500 predictions at or after the time a
                                      version became champion (``@N`` optional, default 500);
                                      ``version=3`` after the time keeps only that version's
                                      (``champion:2026-11-20T10:00@500,version=3``)
- ``champion`` / ``champion:@300``    the same from the registry's alias history: since the
                                      current champion was last made champion, its version only
- ``dir:PATH``                        a labelled folder of photos, predicted on the spot

Only successful predictions (status ``ok``) enter drift tests, and never a challenger's
shadow answers; the error rate is the health page's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

DEFAULT_N = 500


@dataclass
class Window:
    """A slice of predictions and how it was chosen."""

    name: str  # "reference" or "current"
    spec: str
    frame: pd.DataFrame
    params: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.frame)

    @property
    def asked(self) -> int | None:
        """How many predictions the spec asked for (None for time-based windows)."""
        return self.params.get("asked")

    def summary(self) -> str:
        """What was asked and what was found, e.g. ``last 500: 307 found``."""
        kind = self.params.get("kind", self.spec.partition(":")[0])
        if self.asked is not None:
            head = {"last": "last", "first": "first", "champion": "first after the champion took over"}.get(kind, kind)
            return f"{head} {self.asked:,}: {self.n:,} found"
        return f"{self.spec}: {self.n:,} found"

    def describe(self) -> dict:
        """Flat params for MLflow and JSON: spec, size and time span."""
        out = {"spec": self.spec, "n": self.n, **self.params}
        if self.n and "model_version" in self.frame:
            out["model_versions"] = ",".join(sorted(self.frame["model_version"].dropna().astype(str).unique()))
        if self.n and "timestamp" in self.frame:
            ts = self.frame["timestamp"]
            out["start"], out["end"] = str(ts.min()), str(ts.max())
        return out


def records_frame(records: Sequence) -> pd.DataFrame:
    """``PredictionRecord``s -> the predictions DataFrame the detectors read."""
    from nutrilearn.tracking.records import PredictionRecord

    frame = pd.DataFrame([r.to_row() for r in records])
    if frame.empty:
        frame = pd.DataFrame(columns=list(PredictionRecord.__dataclass_fields__))
    if "timestamp" in frame:
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def usable(frame: pd.DataFrame, ordered: bool = True) -> pd.DataFrame:
    """Successful predictions only, oldest first (unless ``ordered`` is false). A
    challenger's shadow answers are left out: they are the same photos again, answered by
    another version (compare versions with the registry's tools, not with drift)."""
    if frame.empty:
        return frame
    keep = (frame["status"] == "ok").to_numpy(dtype=bool, na_value=False) if "status" in frame else True
    if "request_id" in frame:
        from nutrilearn.monitoring.stats import is_shadow

        keep = keep & ~is_shadow(frame)
    if "model_alias" in frame:  # served answers only, however the id was written
        keep = keep & (frame["model_alias"].astype(object) != "challenger").to_numpy(dtype=bool, na_value=True)
    out = frame[keep] if keep is not True else frame
    if ordered and "timestamp" in out:
        out = out.sort_values("timestamp", kind="stable")
    return out


def _utc(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def last_n(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    return usable(frame).tail(n)


def first_n(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    return usable(frame).head(n)


def last_days(frame: pd.DataFrame, days: float, now: datetime | None = None) -> pd.DataFrame:
    """The last ``days`` days up to ``now`` (default: the newest prediction)."""
    data = usable(frame)
    if data.empty:
        return data
    end = _utc(now) if now is not None else data["timestamp"].max()
    return data[(data["timestamp"] > end - pd.Timedelta(days=days)) & (data["timestamp"] <= end)]


def date_range(frame: pd.DataFrame, start, end) -> pd.DataFrame:
    """Predictions with ``start <= timestamp < end`` (UTC; naive times are taken as UTC)."""
    data = usable(frame)
    return data[(data["timestamp"] >= _utc(start)) & (data["timestamp"] < _utc(end))]


def after_champion(frame: pd.DataFrame, since, n: int = DEFAULT_N, version: str | None = None) -> pd.DataFrame:
    """The first ``n`` predictions at or after ``since`` (when a version became champion),
    optionally only those the given ``version`` answered.

    Replayed traffic (``source = replay``) carries simulated times spread over past days, so
    its time says nothing about when it was served: with a ``version``, replayed answers
    that version served as champion count whatever their time."""
    data = usable(frame)
    after = (data["timestamp"] >= _utc(since)).to_numpy(dtype=bool, na_value=False)
    if version is not None:
        mine = (data["model_version"].astype(str) == str(version)).to_numpy(dtype=bool, na_value=False)
        keep = mine & after
        if "source" in data:
            replayed = (data["source"].astype(object) == "replay").to_numpy(dtype=bool, na_value=False)
            keep |= mine & replayed
        data = data[keep]
    else:
        data = data[after]
    return data.head(n)


class WindowSpecError(ValueError):
    pass


def parse_spec(spec: str) -> tuple[str, dict]:
    """``"last:500"`` -> ``("last", {"n": 500})``; raises ``WindowSpecError`` with the grammar."""
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    try:
        if kind in ("last", "first"):
            return kind, {"n": _positive_int(arg or DEFAULT_N)}
        if kind == "days":
            days = float(arg)
            if days <= 0:
                raise ValueError
            return kind, {"days": days}
        if kind == "range":
            start, sep, end = arg.partition("..")
            if not sep:
                raise ValueError
            return kind, {"start": _utc(start), "end": _utc(end)}
        if kind == "champion":
            body, _, version = arg.partition(",version=")
            since, _, n = body.partition("@")
            return kind, {"since": _utc(since) if since.strip() else None, "n": _positive_int(n or DEFAULT_N),
                          "version": version or None}
        if kind == "dir":
            if not arg:
                raise ValueError
            return kind, {"path": Path(arg)}
    except (ValueError, TypeError) as exc:
        raise WindowSpecError(f"bad window {spec!r}: {_GRAMMAR}") from exc
    raise WindowSpecError(f"unknown window kind {kind!r}: {_GRAMMAR}")


_GRAMMAR = "use last:N, first:N, days:D, range:START..END, champion[:TIME][@N][,version=V] or dir:PATH"


def _positive_int(raw) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError
    return value


def champion_start(settings) -> tuple[pd.Timestamp, str] | None:
    """When the current champion was last made champion, and its version, from the
    registry's alias history (None when no champion move is recorded)."""
    from nutrilearn.registry.store import Registry

    moves = [e for e in Registry(settings).history() if e.alias == "champion" and e.to_version]
    if not moves:
        return None
    last = max(moves, key=lambda e: e.when)
    return _utc(last.when), str(last.to_version)


def resolved_spec(spec: str, champion: tuple[Any, str] | None) -> tuple[str, dict[str, Any]]:
    """``parse_spec``, with a ``champion`` spec given without a time filled in from
    ``champion`` (the current champion's move time and version)."""
    kind, args = parse_spec(spec)
    if kind == "champion" and args["since"] is None:
        if champion is None:
            raise WindowSpecError("no champion move in the registry's alias history: give the time "
                                  "(champion:TIME@N)")
        args = {**args, "since": champion[0], "version": args["version"] or champion[1]}
    return kind, args


def select(frame: pd.DataFrame, spec: str, name: str, now: datetime | None = None,
           champion: tuple[pd.Timestamp, str] | None = None) -> Window:
    """Apply a (non-folder) window spec to a predictions DataFrame. ``champion`` (from
    ``champion_start``) fills in a ``champion`` spec given without a time."""
    kind, args = resolved_spec(spec, champion)
    if kind == "last":
        part = last_n(frame, args["n"])
    elif kind == "first":
        part = first_n(frame, args["n"])
    elif kind == "days":
        part = last_days(frame, args["days"], now)
    elif kind == "range":
        part = date_range(frame, args["start"], args["end"])
    elif kind == "champion":
        part = after_champion(frame, args["since"], args["n"], args["version"])
    else:
        raise WindowSpecError(f"{spec!r} names photos, not logged predictions: use folder_window")
    params = {"kind": kind}
    if "n" in args:
        params["asked"] = args["n"]
    if kind == "champion":
        params.update(since=str(args["since"]), version=args["version"] or "any")
    return Window(name, spec, part, params)


def folder_window(analyzer, path: Path, name: str, progress=None) -> Window:
    """Predict every photo under ``path`` (not logged) and wrap the records as a window."""
    from nutrilearn.pipeline import Photo, photos_from_paths

    found = photos_from_paths([Path(path)])
    photos = [item for _, item in found if isinstance(item, Photo)]
    if not photos:
        raise WindowSpecError(f"no readable photos under {path}")
    frame = records_frame(analyzer.analyze(photos, user="drift", source="cli", progress=progress))
    return Window(name, f"dir:{path}", usable(frame), {"kind": "dir", "photos": len(photos)})


def without(current: Window, reference: Window) -> Window:
    """The current window less any prediction that is also in the reference."""
    if "request_id" not in current.frame or "request_id" not in reference.frame:
        return current
    keep = ~isin(current.frame["request_id"], reference.frame["request_id"])
    return Window(current.name, current.spec, current.frame[keep], current.params)


def isin(values: pd.Series, among: pd.Series) -> np.ndarray:
    """``values.isin(among)`` as a bool array, through pyarrow's hash set: pandas' isin on
    Arrow-backed strings makes a Python scalar of every value sought (~0.1 s for 5,000
    request ids, against ~1 ms here)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        found = pc.is_in(pa.array(values, from_pandas=True), value_set=pa.array(among, from_pandas=True))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):  # mixed types: pandas decides
        return values.isin(among).to_numpy(dtype=bool)
    return found.to_numpy(zero_copy_only=False).astype(bool)


def chunks(frame: pd.DataFrame, every: str | int) -> Iterator[tuple[pd.Timestamp, pd.Timestamp, pd.DataFrame]]:
    """Split predictions into consecutive chunks: ``every`` = a pandas frequency ("1D",
    "6h") or a number of predictions. Yields ``(start, end, chunk)``; empty periods are skipped."""
    data, spans = chunk_spans(frame, every)
    for start, end, rows in spans:
        yield start, end, data.iloc[rows]


Span = tuple[pd.Timestamp, pd.Timestamp, np.ndarray]  # a chunk's start, end and row positions


def chunk_spans(frame: pd.DataFrame, every: str | int) -> tuple[pd.DataFrame, list[Span]]:
    """The usable rows of ``frame`` (oldest first) and each chunk of ``chunks`` as
    ``(start, end, positions in those rows)``: for code that slices columns it prepared
    once for every chunk instead of a frame per chunk."""
    data = usable(frame)
    if data.empty:
        return data, []
    if isinstance(every, int) or str(every).isdigit():
        size = int(every)
        times = data["timestamp"]
        return data, [(times.iloc[start], times.iloc[min(start + size, len(data)) - 1],
                       np.arange(start, min(start + size, len(data)))) for start in range(0, len(data), size)]
    offset = pd.tseries.frequencies.to_offset(every)
    groups = data.groupby(data["timestamp"].dt.floor(offset), sort=True).indices
    return data, [(start, start + offset, rows) for start, rows in sorted(groups.items()) if len(rows)]


__all__ = [
    "Window", "WindowSpecError", "records_frame", "usable", "last_n", "first_n", "last_days", "date_range",
    "after_champion", "champion_start", "parse_spec", "select", "folder_window", "without", "chunks", "chunk_spans",
]
