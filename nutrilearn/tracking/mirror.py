"""``Mirror``: a local, day-partitioned copy of every prediction batch, for queries over history.

MLflow keeps one Parquet file per batch run, wherever its artifact store is. Monitoring
over millions of predictions needs two things that layout cannot give: a time window
that reads only its days, and files few enough to open quickly. The mirror copies each
batch once (read from a local artifact store, or downloaded once through an
``mlflow server``), splits its rows by UTC day, and lays them out as::

    <mirror>/predictions/day=2026-11-27/<run id>.parquet
    <mirror>/feedback/day=2026-11-27/<run id>.parquet
    <mirror>/manifest.db      runs copied, files per day, the run finder's memory

A day that gathers many small files is compacted into one (sorted by time), so a day is
one or a few files however many batches it had. The manifest counts each file's shadow rows
(a challenger's answers, ``<request id>.challenger``) and compaction keeps them in a file of
their own, so a query that leaves shadows out skips those files instead of reading every
request id to find them (``monitoring.history``). Closed batches never change, so a run is
copied once; a batch id seen before (the same batch written twice after a crash) is not
copied again. Files are written to a temporary name and renamed, and the manifest changes
in one transaction, so a reader in another process sees a file list that is whole.

Which runs are new comes from ``runs.RunFinder``, whose state is kept here: a new process
asks MLflow only for what it has not copied, never for the whole history.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Callable, Iterable

from nutrilearn.config import Settings
from nutrilearn.tracking import store
from nutrilearn.tracking.records import SHADOW_SUFFIX, feedback_schema, prediction_schema
from nutrilearn.tracking.runs import BatchRun, FinderState, RunFinder
from nutrilearn.tracking.spool import KINDS

log = logging.getLogger(__name__)

COMPACT_AT = 8  # files in a day before they are merged into one
_SCHEMAS = {"predictions": prediction_schema, "feedback": feedback_schema}
_MANIFEST = """
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, batch_id TEXT NOT NULL,
                                 rows INTEGER NOT NULL, copied INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_batch ON runs (batch_id);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, kind TEXT NOT NULL, day TEXT NOT NULL,
                                  rows INTEGER NOT NULL, compacted INTEGER NOT NULL DEFAULT 0,
                                  shadow_rows INTEGER);
CREATE INDEX IF NOT EXISTS files_by_day ON files (kind, day);
CREATE TABLE IF NOT EXISTS retry (run_id TEXT PRIMARY KEY, run TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class DayFile:
    path: str  # absolute
    day: str  # UTC day, YYYY-MM-DD
    rows: int
    shadow_rows: int | None  # None: not counted yet (a file mirrored before the count existed)


@dataclass(frozen=True)
class SyncResult:
    new_runs: int
    new_rows: int
    failed_runs: int  # could not be copied now; tried again at the next sync
    error: str | None = None  # the tracking store could not be reached


def conform(table, schema):
    """Cast a batch table to the current schema (missing columns become nulls)."""
    import pyarrow as pa

    if table.schema.equals(schema):
        return table
    columns = []
    for f in schema:
        if f.name in table.column_names:
            columns.append(table.column(f.name).cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _shadow_count(table) -> int:
    """Rows of a predictions table whose request id marks a challenger's shadow answer."""
    import pyarrow.compute as pc

    if table.num_rows == 0 or "request_id" not in table.column_names:
        return 0
    return int(pc.sum(pc.ends_with(table.column("request_id"), SHADOW_SUFFIX)).as_py() or 0)


def _day(value: datetime | date | str) -> str:
    if isinstance(value, str):
        return value[:10]
    return value.strftime("%Y-%m-%d")


def files_between(files: Iterable[DayFile], start: datetime | None = None,
                  end: datetime | None = None) -> list[DayFile]:
    """The ``files`` of the days that ``[start, end)`` touches (UTC; both ends inclusive
    by day: a caller drops an exclusive midnight end itself)."""
    first = _day(start) if start is not None else None
    last = _day(end) if end is not None else None
    return [df for df in files if (first is None or df.day >= first) and (last is None or df.day <= last)]


class Mirror:
    """The mirror of one predictions experiment; thread-safe, and safe to share between processes."""

    def __init__(self, settings: Settings | None = None, *, directory: Path | str | None = None,
                 tracking_uri: str | None = None, experiment_name: str | None = None):
        settings = settings or Settings.from_env()
        self.directory = Path(directory or settings.mirror_dir)
        self.tracking_uri = tracking_uri or settings.tracking_uri
        self.experiment_name = experiment_name or settings.predictions_experiment
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._held: tuple[int, sqlite3.Connection] | None = None
        # Answers about the manifest kept until any connection commits to it (the app asks
        # the file list of every question: a connection each cost ~5 ms, a few per question).
        self._watch: sqlite3.Connection | None = None
        self._watch_lock = threading.Lock()
        self._memo: dict[tuple, tuple[int, object]] = {}
        with self._db() as db:
            db.executescript(_MANIFEST)
            have = {row[1] for row in db.execute("PRAGMA table_info(files)")}
            if "shadow_rows" not in have:  # a manifest from before the count: NULL until counted
                db.execute("ALTER TABLE files ADD COLUMN shadow_rows INTEGER")
        self.finder = RunFinder(self.tracking_uri, self.experiment_name, self._load_state())
        self.last_error: str | None = None

    # -- manifest ----------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        """A short-lived connection (one per call, never shared across threads); during a sync
        the syncing thread reuses one (a dozen opens cost more than the copying itself)."""
        held = self._held
        if held is not None and held[0] == threading.get_ident():
            return held[1]
        return self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.directory / "manifest.db", timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        # No fsync per commit (a dozen a sync): WAL stays consistent, and a commit lost to a
        # power cut only means the next sync copies those runs again (the rows are idempotent).
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _data_version(self) -> int | None:
        """A number that changes whenever a connection commits to the manifest, in this
        process or another (``PRAGMA data_version`` of a connection kept for watching, which
        never writes); None in the thread syncing (it sees its own writes before they commit)."""
        held = self._held
        if held is not None and held[0] == threading.get_ident():
            return None
        with self._watch_lock:
            if self._watch is None:
                self._watch = sqlite3.connect(self.directory / "manifest.db", timeout=30.0, check_same_thread=False)
            return self._watch.execute("PRAGMA data_version").fetchone()[0]

    def _memoized(self, key: tuple, compute: Callable[[], object]):
        """``compute()``, kept until the manifest changes (the version is read first, so an
        answer computed while a commit lands is asked again next time)."""
        version = self._data_version()
        if version is None:
            return compute()
        hit = self._memo.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        value = compute()
        self._memo[key] = (version, value)
        return value

    def close(self) -> None:
        """Close the watching connection (the manifest's others are short-lived)."""
        with self._watch_lock:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
            self._memo.clear()

    def _load_state(self) -> FinderState:
        with self._db() as db:
            raw = db.execute("SELECT value FROM state WHERE key = 'finder'").fetchone()
        if raw is None:
            return FinderState()
        data = json.loads(raw[0])
        return FinderState(bool(data.get("listed_all")), {str(k): int(v) for k, v in data.get("floors", {}).items()},
                           {str(k): str(v) for k, v in data.get("marks", {}).items()})

    def _save_state(self, db: sqlite3.Connection) -> None:
        state = {"listed_all": self.finder.state.listed_all, "floors": self.finder.state.floors,
                 "marks": self.finder.state.marks}
        db.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('finder', ?)", (json.dumps(state),))

    def known_runs(self) -> set[str]:
        with self._db() as db:
            return {row[0] for row in db.execute("SELECT run_id FROM runs")}

    def batch_ids(self, candidates: Iterable[str]) -> set[str]:
        """Which of these batch ids are mirrored (for leaving spool rows already here out)."""
        wanted = list(set(candidates))
        found: set[str] = set()
        with self._db() as db:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i:i + 500]
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in db.execute(f"SELECT batch_id FROM runs WHERE batch_id IN ({marks})", chunk))
        return found

    def files(self, kind: str, start: datetime | None = None, end: datetime | None = None) -> list[str]:
        """The files holding ``kind`` rows of the days that ``[start, end)`` touches (UTC)."""
        return [df.path for df in self.day_files(kind, start, end)]

    def day_files(self, kind: str, start: datetime | None = None, end: datetime | None = None) -> list[DayFile]:
        """Like ``files``, with each file's day and counts (for pruning before a query)."""
        return files_between(self._all_day_files(kind), start, end)

    def _all_day_files(self, kind: str) -> tuple[DayFile, ...]:
        def read() -> tuple[DayFile, ...]:
            with self._db() as db:
                return tuple(DayFile(str(self.directory / p), d, int(n), None if sh is None else int(sh))
                             for p, d, n, sh in db.execute("SELECT path, day, rows, shadow_rows FROM files "
                                                           "WHERE kind = ? ORDER BY day, path", (kind,)))
        return self._memoized(("day_files", kind), read)

    def days(self, kind: str = "predictions") -> list[tuple[str, int]]:
        """``(day, rows)`` for every day mirrored, oldest first."""
        def read() -> list[tuple[str, int]]:
            with self._db() as db:
                return db.execute("SELECT day, SUM(rows) FROM files WHERE kind = ? GROUP BY day ORDER BY day",
                                  (kind,)).fetchall()
        return list(self._memoized(("days", kind), read))

    # -- syncing -----------------------------------------------------------------------

    def sync(self, progress: Callable[[int, int], None] | None = None) -> SyncResult:
        """Copy every batch run not mirrored yet; ``progress(done, total)`` after each run."""
        with self._lock:
            conn = self._connect()
            self._held = (threading.get_ident(), conn)
            try:
                return self._sync(progress)
            finally:
                self._held = None
                conn.close()

    def _sync(self, progress: Callable[[int, int], None] | None) -> SyncResult:
        """The sync itself, under ``self._lock`` with one manifest connection."""
        self._count_shadows()
        problem = store.probe(self.tracking_uri)
        if problem:
            self.last_error = problem
            return SyncResult(0, 0, 0, problem)
        fingerprint = self._store_fingerprint()
        if fingerprint is not None and fingerprint == self._state_value("store_fingerprint") \
                and not self._has_retries():
            return SyncResult(0, 0, 0)  # the store's files did not change: nothing new (and no MLflow import)
        try:
            runs = self.finder.new_runs(self.known_runs())
        except Exception as exc:  # the store answered badly: keep what we have
            self.last_error = f"{type(exc).__name__}: {exc}"
            return SyncResult(0, 0, 0, self.last_error)
        self.last_error = None
        with self._db() as db:
            retry = [BatchRun(**json.loads(r[0])) for r in db.execute("SELECT run FROM retry")]
            self._save_state(db)
        runs += [r for r in retry if r.run_id not in {n.run_id for n in runs}]
        new_rows = failed = 0
        touched: set[tuple[str, str]] = set()
        for done, run in enumerate(runs, 1):
            try:
                rows, days = self._copy(run)
                new_rows += rows
                touched.update((run.kind, d) for d in days)
            except Exception as exc:  # a download that failed, a damaged file: next sync
                log.warning("could not mirror batch run %s (%s); will retry", run.run_id, exc)
                failed += 1
                with self._db() as db:
                    db.execute("INSERT OR REPLACE INTO retry (run_id, run) VALUES (?, ?)",
                               (run.run_id, json.dumps(run.__dict__)))
            if progress is not None:
                progress(done, len(runs))
        for kind, day in sorted(touched):
            self._compact(kind, day)
        if fingerprint is not None and not failed:
            with self._db() as db:
                db.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('store_fingerprint', ?)",
                           (fingerprint,))
        return SyncResult(len(runs) - failed, new_rows, failed)

    def _count_shadows(self) -> None:
        """Count shadow rows of files mirrored before the manifest counted them (once)."""
        import pyarrow.parquet as pq

        with self._db() as db:
            todo = db.execute("SELECT path FROM files WHERE kind = 'predictions' AND shadow_rows IS NULL").fetchall()
        for (rel,) in todo:
            try:
                n = _shadow_count(pq.read_table(self.directory / rel, columns=["request_id"]))
            except (OSError, KeyError, ValueError) as exc:  # compacted away by another process, or unreadable
                log.debug("not counting shadows of %s: %s", rel, exc)
                continue
            with self._db() as db:
                db.execute("UPDATE files SET shadow_rows = ? WHERE path = ?", (n, rel))

    def _store_fingerprint(self) -> str | None:
        """Size and change time of a local sqlite store's files (None for a server).

        Equal fingerprints mean no run can have been written since the last sync, so an
        up-to-date mirror answers at once. Only equality is tested: no clocks are compared.
        """
        if not self.tracking_uri.startswith("sqlite:"):
            return None
        path = Path(self.tracking_uri.split(":///", 1)[-1].split("?", 1)[0])
        parts = []
        for p in (path, path.with_name(path.name + "-wal")):
            try:
                st = p.stat()
                parts.append(f"{st.st_size}:{st.st_mtime_ns}")
            except FileNotFoundError:
                parts.append("-")
        return "|".join(parts)

    def _state_value(self, key: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _has_retries(self) -> bool:
        with self._db() as db:
            return db.execute("SELECT 1 FROM retry LIMIT 1").fetchone() is not None

    def _copy(self, run: BatchRun) -> tuple[int, list[str]]:
        """Split one run's rows by day into the mirror; returns ``(rows, days)``."""
        with self._db() as db:
            twin = db.execute("SELECT 1 FROM runs WHERE batch_id = ? AND batch_id != ''", (run.batch_id,)).fetchone()
        if twin:  # the same batch written twice (a crash between write and bookkeeping): once is enough
            with self._db() as db:
                db.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, 0, 0)", (run.run_id, run.kind, run.batch_id))
                db.execute("DELETE FROM retry WHERE run_id = ?", (run.run_id,))
            return 0, []
        table = self._fetch(run)
        written = self._split(run.kind, table, run.run_id) if table is not None else []
        rows = sum(n for _, _, n, _ in written)
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO files (path, kind, day, rows, shadow_rows) VALUES (?, ?, ?, ?, ?)",
                           [(path, run.kind, day, n, sh) for path, day, n, sh in written])
            db.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, 1)", (run.run_id, run.kind, run.batch_id, rows))
            db.execute("DELETE FROM retry WHERE run_id = ?", (run.run_id,))
        return rows, [day for _, day, _, _ in written]

    def _split(self, kind: str, table, name: str) -> list[tuple[str, str, int, int]]:
        """Write ``table``'s rows as ``<kind>/day=<day>/<name>.parquet``, one file a UTC day;
        ``(path, day, rows, shadow rows)`` of each file (not yet in the manifest)."""
        import pyarrow.compute as pc

        written: list[tuple[str, str, int, int]] = []
        if not table.num_rows:
            return written
        table = table.sort_by("timestamp")
        days = pc.strftime(table.column("timestamp"), format="%Y-%m-%d", locale="C")
        for day in pc.unique(days).to_pylist():
            part = table.filter(pc.equal(days, day))
            rel = Path(kind) / f"day={day}" / f"{name}.parquet"
            self._write(part, rel)
            shadows = _shadow_count(part) if kind == "predictions" else 0
            written.append((rel.as_posix(), day, part.num_rows, shadows))
        return written

    def ingest(self, kind: str, table, name: str | None = None) -> int:
        """Add rows that did not come from a batch run (tests, imports), split by UTC day
        like a batch's; returns the rows added. ``table`` is cast to the record schema."""
        with self._lock:
            table = conform(table, _SCHEMAS[kind]())
            written = self._split(kind, table, name or f"i-{uuid.uuid4().hex}")
            with self._db() as db:
                db.executemany("INSERT OR REPLACE INTO files (path, kind, day, rows, shadow_rows) "
                               "VALUES (?, ?, ?, ?, ?)", [(path, kind, day, n, sh) for path, day, n, sh in written])
            return sum(n for _, _, n, _ in written)

    def _fetch(self, run: BatchRun):
        import pyarrow.parquet as pq

        name = store.ARTIFACTS[run.kind]
        local = store.local_artifact_dir(run.artifact_uri)
        if local is not None:
            path = local / name
            return conform(pq.read_table(path), _SCHEMAS[run.kind]()) if path.exists() else None
        with tempfile.TemporaryDirectory(prefix="nutrilearn-mirror-") as tmp:
            path = Path(self.finder.client.download_artifacts(run.run_id, name, tmp))
            return conform(pq.read_table(path), _SCHEMAS[run.kind]())

    def _write(self, table, rel: Path) -> None:
        import pyarrow.parquet as pq

        target = self.directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        # Row groups of 64k rows: a day file is read by column and pruned by time statistics.
        pq.write_table(table, tmp, compression="snappy", row_group_size=65_536)
        tmp.replace(target)

    def _compact(self, kind: str, day: str) -> None:
        while self._compact_once(kind, day):  # batches into a merged file, then merged files
            pass

    def _compact_once(self, kind: str, day: str) -> bool:
        """Merge a day's batch files into one once there are ``COMPACT_AT`` of them, and its
        compacted files into one once there are ``COMPACT_AT`` of those (shadow rows apart,
        so every compacted file is all served or all shadow).

        Tiered, so a sync that picks up a few batches rewrites at most a few batches' rows,
        never the whole day (a 100k-row day file took ~0.8 s to rewrite under load), while a
        day still ends with few files: fewer than ``2 * COMPACT_AT`` (plus shadow files).
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        with self._db() as db:
            files = db.execute("SELECT path, compacted, shadow_rows = rows AND rows > 0 FROM files "
                               "WHERE kind = ? AND day = ? ORDER BY path", (kind, day)).fetchall()
        batches = [p for p, compacted, _ in files if not compacted]
        merged_served = [p for p, compacted, shadow_only in files if compacted and not shadow_only]
        if len(batches) >= COMPACT_AT:
            small = batches
        elif len(merged_served) >= COMPACT_AT:
            small = [p for p, compacted, _ in files if compacted]  # shadow files too: one pair again
        else:
            return False
        schema = _SCHEMAS[kind]()
        merged = pa.concat_tables([conform(pq.read_table(self.directory / p), schema) for p in small])
        merged = merged.sort_by("timestamp")
        parts = [(merged, 0)]
        if kind == "predictions" and _shadow_count(merged):
            shadow = pc.ends_with(merged.column("request_id"), SHADOW_SUFFIX)
            parts = [(merged.filter(pc.invert(shadow)), 0), (merged.filter(shadow), None)]
        new = []
        for table, shadows in parts:
            if table.num_rows:
                rel = Path(kind) / f"day={day}" / f"c-{uuid.uuid4().hex[:16]}.parquet"
                self._write(table, rel)
                new.append((rel.as_posix(), kind, day, table.num_rows, table.num_rows if shadows is None else 0))
        with self._db() as db:  # one transaction: readers see the old files or the new ones
            db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in small])
            db.executemany("INSERT INTO files (path, kind, day, rows, compacted, shadow_rows) VALUES (?, ?, ?, ?, 1, ?)",
                           new)
        for p in small:
            try:
                (self.directory / p).unlink()
            except FileNotFoundError:
                pass
        return True

    def runs_frame(self):
        """One row per mirrored batch run: ``run_id, kind, batch_id, rows``."""
        import pandas as pd

        with self._db() as db:
            rows = db.execute("SELECT run_id, kind, batch_id, rows FROM runs ORDER BY rowid").fetchall()
        return pd.DataFrame(rows, columns=["run_id", "kind", "batch_id", "rows"])

    def stats(self) -> dict[str, int]:
        def read() -> dict[str, int]:
            with self._db() as db:
                runs, = db.execute("SELECT COUNT(*) FROM runs").fetchone()
                files, rows = db.execute("SELECT COUNT(*), COALESCE(SUM(rows), 0) FROM files "
                                         "WHERE kind = 'predictions'").fetchone()
            return {"runs": runs, "files": files, "prediction_rows": rows}
        return dict(self._memoized(("stats",), read))
