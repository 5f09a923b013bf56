"""``History``: monitoring questions over every prediction ever logged, answered in DuckDB.

The rows live in the mirror's day files (``tracking.mirror``) plus whatever still waits in
this machine's spool. Every question takes a ``Filters`` (time window, versions, users,
replayed, shadow) and is answered by an embedded DuckDB query that reads only the days of
the window and only the columns it needs; aggregates stay in the engine and come back as
small frames, and rows are materialised only where a figure shows rows (a page of recent
predictions, a drift window's sample). Memory follows what is shown, not the history.

The mirror's files sit in hive-style ``day=YYYY-MM-DD`` folders, so every relation has a
``day`` column that costs nothing to read (the spool's rows compute it). Before a query the
manifest prunes the file list: days outside the window are not opened; days wholly inside
it need no time filter (so ``timestamp`` is not read for them); files holding only a
challenger's shadow answers are skipped, and only files that mix them in are filtered by
request id. What a question does not use is never read.

User-chosen values (versions, users, search text) are always bound parameters; the only
text spliced into SQL is column names from this module and file paths from the mirror.
DuckDB runs with ``TimeZone = 'UTC'`` so days are UTC days on any machine.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from functools import lru_cache
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from nutrilearn.monitoring.filters import Filters
from nutrilearn.monitoring.held_days import SNAPSHOT_COLUMNS, SNAPSHOT_MAX_ROWS, HeldDays
from nutrilearn.tracking.records import (
    REPLAY_SOURCE,
    SHADOW_SUFFIX,
    as_utc,
    feedback_schema,
    prediction_schema,
    row_from_json,
    rows_to_table,
)
from nutrilearn.tracking.mirror import DayFile, Mirror, files_between
from nutrilearn.tracking.spool import SpoolError, open_existing

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# Everything a figure may ask for except the embedding (read only by drift, on purpose).
FIGURE_COLUMNS = (
    "request_id", "timestamp", "user", "model_name", "model_version", "model_alias", "status", "source",
    "filename", "error_type", "error_message", "label", "confidence", "is_food", "top5_labels", "top5_probs",
    "decode_ms", "preprocess_ms", "inference_ms", "total_ms", "image_width", "image_height", "image_format",
    "image_bytes", "brightness", "contrast", "saturation", "sharpness", "aspect",
)
# Columns the record gained after stores existed: day files written before lack them and
# read as nulls (DuckDB's union_by_name fills a column only if some file in the list has it).
LATER_COLUMNS = {"thumbnail": "BLOB"}
# Read only when asked for by name (photo galleries, exports), never by a figure.
PHOTO_COLUMNS = ("thumbnail",)
MEMORY_LIMIT = "512MB"
# Rows held in memory (``HeldDays``) carry two flags computed once when read, with the very
# tests the files' queries use (``_conditions``): leaving out replayed or shadow rows in memory
# then reads a boolean instead of comparing every row's text.
_SHADOW, _REPLAYED = "_held_shadow", "_held_replayed"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Overview:
    count: int
    errors: int
    error_rate: float
    mean_confidence: float | None
    latency_ms: dict[str, float | None]  # p50, p95, p99 of total latency
    users: int
    first: datetime | None
    last: datetime | None


def _utc_times(table):
    """DuckDB names UTC ``Etc/UTC``; the record schema (and every frame elsewhere) says ``UTC``."""
    import pyarrow as pa

    fields = [pa.field(f.name, pa.timestamp(f.type.unit, tz="UTC")) if pa.types.is_timestamp(f.type) and f.type.tz
              else f for f in table.schema]
    return table.cast(pa.schema(fields)) if fields != list(table.schema) else table


def _number(value: Any) -> float | None:
    """A float, or None for SQL NULL (and NaN)."""
    return None if value is None or value != value else float(value)


def _midnight(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _is_edge(day: str, start: datetime | None, end: datetime | None) -> bool:
    """Whether rows of this UTC day may fall outside ``[start, end)`` (so need a time check)."""
    if start is not None and day == start.strftime("%Y-%m-%d") and start != _midnight(start):
        return True
    if end is not None and day == end.strftime("%Y-%m-%d"):
        return True
    return False


# The columns a source relation always carries (its filters read them).
_NEEDED = {"predictions": ("timestamp", "user", "request_id", "model_version", "source"),
           "feedback": ("timestamp", "user")}


def _quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_path(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


@lru_cache(maxsize=4096)
def _file_columns(path: str) -> frozenset[str]:
    """Column names of a day file (its footer only); files never change once written."""
    import pyarrow.parquet as pq

    return frozenset(pq.read_schema(path).names)


def _columns_of(path: str) -> frozenset[str]:
    try:
        return _file_columns(path)
    except OSError:  # compacted away meanwhile: the query fails on it and is retried
        return frozenset()


def _select_list(columns: Sequence[str], files: Sequence[str]) -> str:
    """``columns`` quoted; a later-added column no file has yet becomes a typed null."""
    out = []
    for c in columns:
        if c in LATER_COLUMNS and not any(c in _columns_of(p) for p in reversed(files)):
            out.append(f'CAST(NULL AS {LATER_COLUMNS[c]}) AS "{c}"')
        else:
            out.append(f'"{c}"')
    return ", ".join(out)


def _conditions(kind: str, f: Filters, start: datetime | None, end: datetime | None, time_check: bool,
                shadow_check: bool, flags: bool = False) -> tuple[str, list]:
    """``(condition, params)`` selecting the rows ``f`` selects, with the time window only if
    ``time_check`` and shadow answers left out by request id only if ``shadow_check``;
    ``flags``: the relation is held rows, whose flag columns say shadow and replayed."""
    if flags and kind == "predictions":
        cond, params = _conditions(kind, replace(f, hide_replayed=False), start, end, time_check, False)
        if f.hide_replayed:
            cond += f' AND NOT "{_REPLAYED}"'  # = source IS DISTINCT FROM the replay source
        if shadow_check:
            cond += f' AND NOT "{_SHADOW}"'  # = NOT ends_with(request_id, the shadow suffix)
        return cond, params
    conds, params = ["TRUE"], []
    if time_check and start is not None:
        conds.append("timestamp >= ?")
        params.append(start)
    if time_check and end is not None:
        conds.append("timestamp < ?")
        params.append(end)
    if kind == "predictions":
        if f.model_versions:
            conds.append("list_contains(?, model_version)")
            params.append([str(v) for v in f.model_versions])
        if f.hide_replayed:
            conds.append("source IS DISTINCT FROM ?")
            params.append(REPLAY_SOURCE)
        if shadow_check:
            conds.append("NOT ends_with(request_id, ?)")
            params.append(SHADOW_SUFFIX)
    if f.users:
        conds.append("list_contains(?, \"user\")")
        params.append(list(f.users))
    return " AND ".join(conds), params


class History:
    """Questions over the mirror (+ this machine's spool); thread-safe, one per process."""

    def __init__(self, mirror: Mirror, spool_dir: Path | str | None = None, *, threads: int = 2,
                 hold_rows: bool = False, snapshot_max_rows: int = SNAPSHOT_MAX_ROWS):
        """``hold_rows``: answer from whole days of rows held in memory, at most
        ``snapshot_max_rows`` (``HeldDays``): the app asks ~25 questions of a window each
        rerun, each file scan ~0.2 s at 1M rows. Off: the CLI's case, which asks once."""
        import duckdb

        self.mirror = mirror
        self.spool_dir = Path(spool_dir) if spool_dir else None
        # Day files are never rewritten in place (compaction writes new names), so their
        # footers can be cached for the life of the process.
        self._con = duckdb.connect(config={"threads": threads, "memory_limit": MEMORY_LIMIT,
                                           "preserve_insertion_order": False})
        self._con.execute("SET TimeZone = 'UTC'")
        self._con.execute("SET parquet_metadata_cache = true")
        self._lock = threading.Lock()
        self._spool = None
        self._pending_key: dict[str, tuple] = {}
        self._left_seen: int | None = None  # spool.records_left() at the last look
        self._pending: dict[str, Any] = {}
        self._held_days = HeldDays(snapshot_max_rows) if hold_rows else None

    # -- sources -----------------------------------------------------------------------

    def _pending_table(self, kind: str):
        """Spool rows not in the mirror yet, as an Arrow table (cached until the spool changes).
        No catch-up with flushes here: a question caught up when it listed the mirror's files
        (``_mirror_files``), and a second look after that list would not change it."""
        spool = self._open_spool()
        if spool is None:
            return None
        try:
            key = (spool.max_seq(), spool.pending_count(), self.mirror.stats()["runs"])
            if self._pending_key.get(kind) == key:
                return self._pending[kind]
            rows = spool.pending_rows(kind)
        except (SpoolError, OSError) as exc:
            log.warning("not reading the spool at %s: %s", self.spool_dir, exc)
            return None
        mirrored = self.mirror.batch_ids(b for b, _ in rows if b)
        decoded = []
        for batch_id, payload in rows:
            if batch_id in mirrored:
                continue
            try:
                decoded.append(row_from_json(payload))
            except (ValueError, KeyError, TypeError):
                continue  # the flusher sets it aside
        table = rows_to_table(decoded, kind) if decoded else None
        self._pending_key[kind], self._pending[kind] = key, table
        return table

    def _mirror_files(self, kind: str, start: datetime | None = None, end: datetime | None = None) -> list[DayFile]:
        """The mirror's files of ``[start, end)``, after catching up with records flushed
        from the spool since the last look (so a record is always in one source or the other)."""
        self._caught_up_spool()
        return self.mirror.day_files(kind, start, end)

    def _caught_up_spool(self):
        """This machine's spool after ``_catch_up_with_flushes``; None when there is none or
        it cannot be read (said in the log: the mirror's rows still answer)."""
        spool = self._open_spool()
        if spool is None:
            return None
        try:
            self._catch_up_with_flushes()
        except (SpoolError, OSError) as exc:
            log.warning("not reading the spool at %s: %s", self.spool_dir, exc)
            return None
        return spool

    def _open_spool(self):
        """This machine's spool, opened once; None when there is none or it cannot be read."""
        if self.spool_dir is None:
            return None
        try:
            if self._spool is None:
                self._spool = open_existing(self.spool_dir)
            return self._spool
        except (SpoolError, OSError) as exc:
            log.warning("not reading the spool at %s: %s", self.spool_dir, exc)
            return None

    def _catch_up_with_flushes(self) -> None:
        """Sync the mirror when records left the spool since the last look.

        A flushed record leaves the spool once its batch run is FINISHED in MLflow; until the
        mirror copies that run it would be in neither source, and a page would count fewer
        predictions than a moment before (seen: "No predictions logged yet" right after an
        upload). Syncing here keeps every record visible in one source or the other; it
        costs one sync per flush, none while nothing is flushed. The first look syncs too
        when anything has ever left the spool: the last sync may have run before that flush."""
        left = self._spool.records_left()
        if left != (self._left_seen or 0):
            result = self.mirror.sync()
            if result.error:  # unreachable store: the rows show again after the next sync
                log.warning("records were flushed but the mirror cannot sync: %s", result.error)
        self._left_seen = left

    def _source(self, cur, kind: str, filters: Filters | None, columns: Sequence[str],
                days: Sequence[str] | None = None, held=None, files: Sequence[DayFile] | None = None,
                spool: bool = True) -> tuple[str, list]:
        """``(sql, params)`` of a relation with ``columns`` of the rows ``filters`` selects
        (``days``: only these UTC days, as ``YYYY-MM-DD``).

        The relation also carries the columns filters use (and ``day`` when asked for: free
        from the folder names); DuckDB reads only the ones the question uses. Mirror files are grouped by what they need checked (time at
        the window's edge days, request ids where shadows are mixed in), one scan a group.
        ``held``: an Arrow table of every row of (at least) the window's days, filtered here
        instead of the files; ``files``: these files instead of the window's; ``spool``: false
        leaves the spool's rows out.
        """
        f = filters or Filters()
        start = as_utc(f.start) if f.start is not None else None
        end = as_utc(f.end) if f.end is not None else None
        names = [c for c in dict.fromkeys([*columns, *_NEEDED[kind]]) if c != "day"]
        cols = ", ".join(f'"{c}"' for c in names)
        day = ", day" if "day" in columns else ""
        day_of_time = ", CAST(timestamp AS DATE) AS day" if day else ""
        drop_shadow = kind == "predictions" and not f.include_shadow

        def where(time_check: bool, shadow_check: bool) -> tuple[str, list]:
            return _conditions(kind, f, start, end, time_check, shadow_check)

        parts: list[str] = []
        params: list[Any] = []
        if held is not None:  # every row of these days: the same filters, the time checked on every row
            cur.register(f"held_{kind}", held)
            cond, cond_params = _conditions(kind, f, start, end, True, drop_shadow, flags=True)
            if days is not None:  # as dates: formatting every held row's day costs more than the question
                cond += " AND list_contains(CAST(? AS DATE[]), day)"
                cond_params.append(list(days))
            parts.append(f"SELECT {cols}{day} FROM held_{kind} WHERE {cond}")
            params += cond_params
        else:
            groups: dict[tuple[bool, bool], list[str]] = {}
            for df in (files if files is not None else self._day_files(kind, start, end, days)):
                if drop_shadow and df.shadow_rows is not None and df.shadow_rows >= df.rows:
                    continue  # only a challenger's shadow answers
                edge = _is_edge(df.day, start, end)
                groups.setdefault((edge, drop_shadow and df.shadow_rows != 0), []).append(df.path)
            for (time_check, shadow_check), paths in sorted(groups.items()):
                cond, cond_params = where(time_check, shadow_check)
                parts.append(f"SELECT {_select_list(names, paths)}{day} FROM read_parquet("
                             f"[{', '.join(map(_quote_path, paths))}], union_by_name = true, "
                             f"hive_partitioning = true, hive_types = {{'day': DATE}}) WHERE {cond}")
                params += cond_params
        spooled = self._pending_table(kind) if spool else None
        if spooled is not None:
            cur.register(f"pending_{kind}", spooled)
            cond, cond_params = where(True, drop_shadow)
            day_cond = ""
            if days is not None:
                day_cond = " AND list_contains(?, strftime(timestamp, '%Y-%m-%d'))"
                cond_params.append(list(days))
            parts.append(f"SELECT {cols}{day_of_time} FROM pending_{kind} WHERE {cond}{day_cond}")
            params += cond_params
        if not parts:
            schema = prediction_schema() if kind == "predictions" else feedback_schema()
            cur.register(f"empty_{kind}", schema.empty_table())
            parts.append(f"SELECT {cols}{day_of_time} FROM empty_{kind}")
        return f"({' UNION ALL '.join(parts)})", params

    def _day_files(self, kind: str, start: datetime | None, end: datetime | None,
                   days: Sequence[str] | None, every: Sequence[DayFile] | None = None) -> list[DayFile]:
        """The files of the days ``[start, end)`` touches (and of ``days`` if given); from
        ``every`` (all the kind's files, as the mirror lists them) if given."""
        files = self._mirror_files(kind, start, end) if every is None else files_between(every, start, end)
        if end is not None and end == _midnight(end):  # an exclusive end at midnight: that day is out
            files = [df for df in files if df.day < end.strftime("%Y-%m-%d")]
        if days is not None:
            wanted = set(days)
            files = [df for df in files if df.day in wanted]
        return files

    def query(self, kind: str, filters: Filters | None, columns: Sequence[str], sql: str,
              params: Sequence[Any] = (), days: Sequence[str] | None = None,
              tables: dict[str, Any] | None = None, keep: bool = True) -> pd.DataFrame:
        """``query_arrow`` as a DataFrame (the same pandas types the record schema gives
        everywhere else)."""
        return self.query_arrow(kind, filters, columns, sql, params, days, tables, keep).to_pandas()

    def query_arrow(self, kind: str, filters: Filters | None, columns: Sequence[str], sql: str,
                    params: Sequence[Any] = (), days: Sequence[str] | None = None,
                    tables: dict[str, Any] | None = None, keep: bool = True):
        """Run ``sql`` where ``src`` is the filtered relation (``columns`` may name ``day``),
        as an Arrow table with UTC times; ``tables`` (name -> Arrow table or DataFrame) are
        registered for the query to join. Retried once if a day file was compacted away under
        the query (another process synced meanwhile). No pandas: the CLI stays quick to start.
        With ``hold_rows``, answered from the rows held in memory (the window's days read in
        first unless ``keep`` is false or ``days`` are given: a question asked once)."""
        held = self._snapshot(kind, filters, columns, days, keep and days is None)
        return self._run(kind, filters, columns, sql, params, days, tables, held)

    def _run(self, kind: str, filters: Filters | None, columns: Sequence[str], sql: str, params: Sequence[Any],
             days: Sequence[str] | None, tables: dict[str, Any] | None, held=None,
             files: Sequence[DayFile] | None = None, spool: bool = True) -> Any:
        """``query_arrow`` over ``held`` (every row of the window's days, in memory) or the files."""
        for attempt in (1, 2):
            with self._lock:
                cur = self._con.cursor()
            try:
                cur.execute("SET TimeZone = 'UTC'")  # a cursor is its own session: days are UTC days
                source, source_params = self._source(cur, kind, filters, columns, days, held, files, spool)
                for name, table in (tables or {}).items():
                    cur.register(name, table)
                table = cur.sql(sql.replace("{src}", source), params=[*source_params, *params]).to_arrow_table()
                return _utc_times(table)
            except Exception as exc:  # duckdb.IOException when a file vanished under us
                if attempt == 2 or "No files found" not in str(exc) and "IO Error" not in str(exc):
                    raise
            finally:
                cur.close()
        raise AssertionError("unreachable")

    def _snapshot(self, kind: str, filters: Filters | None, columns: Sequence[str],
                  days: Sequence[str] | None = None, keep: bool = True):
        """Every row of the window's days (``SNAPSHOT_COLUMNS``), as one Arrow table from
        memory, possibly with other days' rows too (the question's filters, time included,
        select its rows); the days not held yet are read first, unless ``keep`` is false.
        None when off, not a figure's columns, or not answered from memory (``HeldDays.table``):
        the question then reads the files. The spool's rows are never held (the question adds
        them)."""
        if self._held_days is None or kind != "predictions" or not set(columns) <= set(SNAPSHOT_COLUMNS):
            return None
        f = filters or Filters()
        start = as_utc(f.start) if f.start is not None else None
        end = as_utc(f.end) if f.end is not None else None
        every = self._mirror_files(kind)
        files = self._day_files(kind, start, end, days, every)
        return self._held_days.table(files, every, self._read_whole_days, keep)

    def _read_whole_days(self, files: Sequence[DayFile]):
        """Every row of ``files`` (``SNAPSHOT_COLUMNS``, the spool's left out) with the shadow
        and replayed flags, for ``HeldDays`` to hold."""
        return self._run("predictions", Filters(hide_replayed=False, include_shadow=True), SNAPSHOT_COLUMNS,
                         f'SELECT *, ends_with(request_id, ?) AS "{_SHADOW}", '
                         f'(source IS NOT DISTINCT FROM ?) AS "{_REPLAYED}" FROM {{src}}',
                         (SHADOW_SUFFIX, REPLAY_SOURCE), None, None, files=files, spool=False)

    def holds(self, kind: str, filters: Filters | None, columns: Sequence[str]) -> bool:
        """Whether a question over ``filters`` reading ``columns`` would be answered from the
        rows held in memory now (at most the cap's rows: a pass may keep several columns'
        values at once without outgrowing DuckDB's memory limit)."""
        return self._snapshot(kind, filters, columns, None, keep=False) is not None

    def held_rows(self) -> int:
        """Rows held in memory now (0 without ``hold_rows``)."""
        return 0 if self._held_days is None else self._held_days.rows()

    # -- questions ---------------------------------------------------------------------

    def overview(self, filters: Filters | None = None) -> Overview:
        # One pass without timestamps (the first and last day come from the folder names);
        # users counted apart (a DISTINCT beside the quantile made DuckDB's pass 4x slower at
        # 10M rows); then the first and last times from those two days' files only.
        row = self.query_arrow("predictions", filters, ("status", "confidence", "total_ms", "day"), """
            SELECT count(*) AS n,
                   count(*) FILTER (WHERE status <> 'ok') AS errors,
                   avg(confidence) FILTER (WHERE status = 'ok') AS mean_confidence,
                   quantile_cont(total_ms, [0.5, 0.95, 0.99]) AS latency,
                   min(day) AS first_day, max(day) AS last_day
            FROM {src}""").to_pylist()[0]
        n = int(row["n"])
        first = last = None
        users = 0
        if n:
            users = self.query_arrow("predictions", filters, ("user",), 'SELECT count(*) AS users FROM '
                                     '(SELECT "user" FROM {src} GROUP BY "user")').to_pylist()[0]["users"]
            ends = [row["first_day"].isoformat(), row["last_day"].isoformat()]
            # As epoch microseconds: pyarrow would import pandas to convert aware times.
            times = self.query_arrow("predictions", filters, ("timestamp",), "SELECT epoch_us(min(timestamp)) AS first, "
                                     "epoch_us(max(timestamp)) AS last FROM {src}", days=ends).to_pylist()[0]
            first, last = _EPOCH + timedelta(microseconds=times["first"]), _EPOCH + timedelta(microseconds=times["last"])
        lat = row["latency"] if n and row["latency"] is not None else [None, None, None]
        return Overview(
            count=n, errors=int(row["errors"]), error_rate=(int(row["errors"]) / n) if n else 0.0,
            mean_confidence=_number(row["mean_confidence"]),
            latency_ms={k: _number(v) for k, v in zip(("p50", "p95", "p99"), lat)},
            users=int(users), first=first, last=last,
        )

    def summary(self, filters: Filters | None = None, top: int = 10) -> dict[str, Any]:
        """The overview, top foods and daily counts as plain JSON types (``nutrilearn monitor
        --json``): three engine passes, no pandas."""
        ov = self.overview(filters)
        foods = self._top_foods(filters, top).to_pylist()
        daily = self._daily(filters).to_pylist()
        return {
            "count": ov.count, "errors": ov.errors, "error_rate": ov.error_rate,
            "mean_confidence": ov.mean_confidence, "latency_ms": ov.latency_ms, "users": ov.users,
            "top_foods": [{"label": r["label"], "count": int(r["count"]), "share": float(r["share"])} for r in foods],
            "daily": [{"day": r["day"].isoformat(), "count": int(r["count"]), "errors": int(r["errors"])} for r in daily],
            "first": ov.first.isoformat() if ov.first else None, "last": ov.last.isoformat() if ov.last else None,
        }

    def top_foods(self, filters: Filters | None = None, n: int = 10) -> pd.DataFrame:
        """``label, count, share`` of the ok predictions, most common first."""
        return self._top_foods(filters, n).to_pandas()

    def _top_foods(self, filters: Filters | None, n: int):
        return self.query_arrow("predictions", filters, ("label", "status"), """
            SELECT label, count(*) AS count, count(*) / sum(count(*)) OVER () AS share
            FROM {src} WHERE status = 'ok' AND label IS NOT NULL
            GROUP BY label ORDER BY count DESC, label LIMIT ?""", [int(n)])

    def daily(self, filters: Filters | None = None) -> pd.DataFrame:
        """``day, count, errors`` per UTC day."""
        return self._daily(filters).to_pandas()

    def _daily(self, filters: Filters | None):
        return self.query_arrow("predictions", filters, ("status", "day"), """
            SELECT day, count(*) AS count, count(*) FILTER (WHERE status <> 'ok') AS errors
            FROM {src} GROUP BY day ORDER BY day""")

    def counts_by(self, column: str, filters: Filters | None = None) -> pd.DataFrame:
        """``<column>, count, errors, mean_confidence`` for a column of ours (user, model_version, source...)."""
        if column not in FIGURE_COLUMNS:
            raise ValueError(f"not a column: {column!r}")
        return self.query("predictions", filters, (column, "status", "confidence"), f"""
            SELECT "{column}", count(*) AS count, count(*) FILTER (WHERE status <> 'ok') AS errors,
                   avg(confidence) FILTER (WHERE status = 'ok') AS mean_confidence
            FROM {{src}} GROUP BY "{column}" ORDER BY count DESC""")

    def rows(self, filters: Filters | None = None, columns: Sequence[str] = FIGURE_COLUMNS,
             limit: int | None = None, newest_first: bool = False) -> pd.DataFrame:
        """Materialised rows (only ``columns``), oldest first unless ``newest_first``; ``limit`` caps them."""
        for c in columns:
            if c not in FIGURE_COLUMNS and c != "embedding" and c not in PHOTO_COLUMNS:
                raise ValueError(f"not a column: {c!r}")
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT * FROM {{src}} ORDER BY timestamp {order}, request_id"
        params: list[Any] = []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        if limit is not None and newest_first:  # the newest days first: a page of recent rows reads a day or two
            recent = self._newest_days_start(filters, int(limit))
            if recent is not None:
                narrowed = replace(filters or Filters(), start=recent)
                df = self.query("predictions", narrowed, columns, sql, params)
                if len(df) >= limit:
                    return df.drop_duplicates("request_id") if "request_id" in df else df
        df = self.query("predictions", filters, columns, sql, params)
        return df.drop_duplicates("request_id") if "request_id" in df else df

    def _newest_days_start(self, filters: Filters | None, limit: int) -> datetime | None:
        """The start of the newest mirrored days that hold at least ``limit`` rows (None: all of them)."""
        held = 0
        for day, rows in reversed(self.mirror.days()):
            held += rows
            if held >= limit:
                start = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
                if filters is not None and filters.start is not None and as_utc(filters.start) > start:
                    return None  # the window is narrower already
                return start
        return None

    def sample(self, filters: Filters | None, n: int, columns: Sequence[str], seed: int = 0) -> pd.DataFrame:
        """At most ``n`` rows drawn uniformly from the window (reservoir sampling, repeatable)."""
        return self.query("predictions", filters, columns,
                          f"SELECT * FROM {{src}} USING SAMPLE reservoir({int(n)} ROWS) REPEATABLE ({int(seed)})")

    def feedback(self, filters: Filters | None = None) -> pd.DataFrame:
        """Feedback rows, the latest word per request id, oldest first."""
        fb = Filters(start=filters.start, end=filters.end, users=filters.users) if filters else None
        cols = tuple(feedback_schema().names)
        return self.query("feedback", fb, cols, """
            SELECT * FROM {src}
            QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY timestamp DESC) = 1
            ORDER BY timestamp""")

    def pending_count(self) -> int:
        """Prediction records in this machine's spool not mirrored yet."""
        table = self._pending_table("predictions")
        return 0 if table is None else table.num_rows

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        self._con.close()
