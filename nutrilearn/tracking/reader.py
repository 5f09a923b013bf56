"""``PredictionReader``: predictions and feedback from MLflow (and the local spool) into pandas.

Closed batch runs never change, so each is read once and kept by run id. The first
``refresh`` lists every FINISHED batch run; later ones ask each writer (a spool, listed on
the experiment's tags) only for its runs numbered from the lowest number it still had
open when it last wrote (``spool.WritePosition``), so every run is found exactly once
whatever the writers' clocks say: no timestamps are compared. Records still waiting in
the local spool are added at query time, so a dashboard shows a prediction the moment it
is made.

Every frame is de-duplicated by ``request_id`` (a batch re-written after a crash, a
record both in MLflow and not yet dropped from the spool). Filters are applied in pandas:
no user text is ever spliced into an MLflow filter string.

Columns are the ``PredictionRecord`` fields (``FeedbackRecord`` fields plus ``kind`` for
feedback); ``timestamp`` is ``datetime64[us, UTC]``.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Iterable

import pandas as pd

from nutrilearn.config import Settings
from nutrilearn.tracking import store
from nutrilearn.tracking.records import (
    REPLAY_SOURCE,
    feedback_schema,
    prediction_schema,
    row_from_json,
    rows_to_table,
)
from nutrilearn.tracking.spool import KINDS, Spool, SpoolError, open_existing
from nutrilearn.tracking.runs import BatchRun, RunFinder

log = logging.getLogger(__name__)
_SCHEMAS = {"predictions": prediction_schema, "feedback": feedback_schema}


def _conform(table, schema):
    """Cast a batch table to the current schema (missing columns become nulls)."""
    import pyarrow as pa

    if table.schema.equals(schema):
        return table
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _latest(feedback: pd.DataFrame) -> pd.DataFrame:
    """One feedback row per request id: the latest word wins; oldest first."""
    ordered = feedback.sort_values("timestamp", kind="stable")
    return ordered.drop_duplicates("request_id", keep="last").reset_index(drop=True)


def _unseen(ids: pd.Series, seen: set[str]) -> list[bool]:
    """Rows whose request id is not in ``seen``: set lookups, O(len(ids)).

    (``Series.isin(seen)`` would hash all of ``seen`` on every call: a second for 100,000.)
    """
    return [rid not in seen for rid in ids.tolist()]


def _decodable(payloads: list[bytes]) -> list[dict]:
    """Spool rows as dicts; a row that does not decode is left to the flusher, which sets it aside."""
    rows = []
    for payload in payloads:
        try:
            rows.append(row_from_json(payload))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("skipping an undecodable spool row (%s)", exc)
    return rows


def _as_set(value: str | Iterable[str] | None) -> set[str] | None:
    if value is None:
        return None
    return {value} if isinstance(value, str) else {str(v) for v in value}


def _utc(value: datetime | str | pd.Timestamp | None) -> pd.Timestamp | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


class PredictionReader:
    """Cached, incremental view of every logged prediction and feedback record.

    Thread-safe; build one per process (``st.cache_resource`` in the app).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        tracking_uri: str | None = None,
        spool_dir: Path | str | None = None,
        include_spool: bool = True,
        experiment_name: str | None = None,
        cache_dir: Path | str | None = None,
        max_workers: int = 4,
    ):
        settings = settings or Settings.from_env()
        self.tracking_uri = tracking_uri or settings.tracking_uri
        self.spool_dir = Path(spool_dir or settings.spool_dir) if include_spool else None
        self.experiment_name = experiment_name or settings.predictions_experiment
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.max_workers = max_workers
        self._finder = RunFinder(self.tracking_uri, self.experiment_name)
        self._spool: Spool | None = None
        self._lock = threading.RLock()
        self._runs: dict[str, BatchRun] = {}
        self.last_error: str | None = None  # why the last refresh could not reach MLflow
        self._retry: dict[str, BatchRun] = {}  # runs whose rows could not be read yet
        self._frames: dict[str, pd.DataFrame] = {k: self._empty(k) for k in KINDS}
        self._seen: dict[str, set[str]] = {k: set() for k in KINDS}
        self._pending_key: dict[str, tuple] = {}
        self._pending: dict[str, pd.DataFrame] = {}

    # -- public ------------------------------------------------------------------------

    def refresh(self) -> int:
        """Load batch runs finished since the last refresh; returns how many were new.

        A batch whose rows cannot be read right now (a download that failed) is tried
        again at the next refresh; the others are kept. When the tracking server does not
        answer, nothing is loaded and ``last_error`` says why: frames keep what is cached
        plus what waits in the local spool.
        """
        with self._lock:
            problem = store.probe(self.tracking_uri)
            if problem:  # a down server: serve what is cached and spooled, do not sit in retries
                if problem != self.last_error:
                    log.warning("%s; showing cached batches and spooled records", problem)
                self.last_error = problem
                return 0
            self.last_error = None
            runs = self._new_runs()
            runs += [r for r in self._retry.values() if r.run_id not in {n.run_id for n in runs}]
            if not runs:
                return 0
            tables, failed = self._read_runs(runs)
            for run in failed:
                self._retry[run.run_id] = run
            for kind in KINDS:
                if tables[kind]:
                    self._add(kind, tables[kind])
            failed_ids = {run.run_id for run in failed}
            for run in runs:
                if run.run_id not in failed_ids:
                    self._retry.pop(run.run_id, None)
                self._runs[run.run_id] = run
            return len(runs) - len(failed)

    def predictions(
        self,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        model_version: str | Iterable[str] | None = None,
        user: str | Iterable[str] | None = None,
        source: str | Iterable[str] | None = None,
        include_replayed: bool = True,
        include_pending: bool = True,
        refresh: bool = True,
    ) -> pd.DataFrame:
        """Prediction records, one row per request id, oldest first.

        ``start`` is inclusive, ``end`` exclusive (naive datetimes are taken as UTC);
        ``model_version``/``user``/``source`` take one value or several.
        """
        df = self._frame("predictions", include_pending, refresh)
        mask = self._time_mask(df, start, end)
        for column, wanted in (("model_version", model_version), ("user", user), ("source", source)):
            values = _as_set(wanted)
            if values is not None:
                mask &= df[column].isin(values)
        if not include_replayed:
            mask &= df["source"] != REPLAY_SOURCE
        return df[mask].reset_index(drop=True)

    def feedback(
        self,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        user: str | Iterable[str] | None = None,
        include_pending: bool = True,
        refresh: bool = True,
    ) -> pd.DataFrame:
        """Feedback records (latest per request id wins), oldest first."""
        df = self._frame("feedback", include_pending, refresh)
        mask = self._time_mask(df, start, end)
        users = _as_set(user)
        if users is not None:
            mask &= df["user"].isin(users)
        return df[mask].reset_index(drop=True)

    def batches(self, refresh: bool = True) -> pd.DataFrame:
        """One row per loaded batch run: what the MLflow UI lists, for health pages."""
        if refresh:
            self.refresh()
        with self._lock:
            rows = [
                {"run_id": r.run_id, "run_name": r.run_name, "kind": r.kind, "batch_id": r.batch_id,
                 "model_version": r.tags.get("model_version"), "source": r.tags.get("source"),
                 "end_time": pd.Timestamp(r.end_time_ms, unit="ms", tz="UTC")}
                for r in self._runs.values()
            ]
        return pd.DataFrame(rows, columns=["run_id", "run_name", "kind", "batch_id", "model_version",
                                           "source", "end_time"])

    def pending_count(self) -> int:
        """Records in the local spool that are not in MLflow yet."""
        spool = self._open_spool()
        return 0 if spool is None else spool.pending_count()

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    # -- MLflow side -------------------------------------------------------------------

    def _new_runs(self) -> list[BatchRun]:
        return self._finder.new_runs(self._runs.keys())

    def _read_runs(self, runs: list[BatchRun]) -> tuple[dict[str, list], list[BatchRun]]:
        """Arrow tables by kind for ``runs``, and the runs that could not be read now.

        Local files are read together (one multi-threaded Arrow dataset scan); remote
        artifacts are downloaded a few at a time; a failure in the shared scan falls back
        to one run at a time, so only the bad batch waits for the next refresh.
        """
        tables: dict[str, list] = {k: [] for k in KINDS}
        files: dict[str, list] = {k: [] for k in KINDS}
        fetch: list[BatchRun] = []
        for run in runs:
            path = self._local_file(run)
            if path is None:
                fetch.append(run)
            elif path.exists():  # else a FINISHED run without rows: nothing to read
                files[run.kind].append((run, path))
        for kind, found in files.items():
            if found:
                try:
                    tables[kind].append(self._read_files(kind, [path for _, path in found]))
                except Exception:
                    fetch.extend(run for run, _ in found)
        failed = []
        for run, result in zip(fetch, self._load_tables(fetch)):
            if isinstance(result, Exception):
                log.warning("could not read batch run %s (%s); will retry", run.run_id, result)
                failed.append(run)
            elif result is not None:
                tables[run.kind].append(result)
        return tables, failed

    def _local_file(self, run: BatchRun) -> Path | None:
        """The run's rows file when it is on this machine (local store or cache), else None."""
        name = store.ARTIFACTS[run.kind]
        if self.cache_dir is not None and (self.cache_dir / f"{run.run_id}-{name}").exists():
            return self.cache_dir / f"{run.run_id}-{name}"
        local = store.local_artifact_dir(run.artifact_uri)
        return None if local is None else local / name

    @staticmethod
    def _read_files(kind: str, paths: list[Path]):
        import pyarrow.dataset as ds

        schema = _SCHEMAS[kind]()
        return _conform(ds.dataset([str(p) for p in paths], format="parquet", schema=schema).to_table(), schema)

    def _load_tables(self, runs: list[BatchRun]) -> list:
        """One table (or None: no rows, or the exception that stopped it) per run."""
        if len(runs) == 1 or self.max_workers <= 1:
            return [self._try_load(r) for r in runs]
        with ThreadPoolExecutor(self.max_workers) as pool:
            return list(pool.map(self._try_load, runs))

    def _try_load(self, run: BatchRun):
        try:
            return self._load_table(run)
        except Exception as exc:  # network, permissions, a corrupt file: retried next refresh
            return exc

    def _load_table(self, run: BatchRun):
        import pyarrow.parquet as pq

        name = store.ARTIFACTS[run.kind]
        cached = self.cache_dir / f"{run.run_id}-{name}" if self.cache_dir else None
        local = self._local_file(run)
        if local is not None:
            return _conform(pq.read_table(local), _SCHEMAS[run.kind]()) if local.exists() else None
        with tempfile.TemporaryDirectory(prefix="nutrilearn-read-") as tmp:
            path = Path(self._finder.client.download_artifacts(run.run_id, name, tmp))
            table = pq.read_table(path)
            if cached is not None:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                tmp_cached = cached.with_suffix(".tmp")
                pq.write_table(table, tmp_cached)
                tmp_cached.replace(cached)
        return _conform(table, _SCHEMAS[run.kind]())

    def _add(self, kind: str, tables: list) -> None:
        import pyarrow as pa

        new = pa.concat_tables(tables).to_pandas()
        old = self._frames[kind]
        seen = self._seen[kind]
        if kind == "feedback":  # a later word on the same request replaces the earlier one
            self._frames[kind] = _latest(pd.concat([old, new], ignore_index=True))
            seen.update(new["request_id"].tolist())
            return
        ids = new["request_id"].tolist()
        if len(set(ids)) < len(ids):  # the same batch in two runs: keep the first copy
            new = new.drop_duplicates("request_id")
        if seen:
            new = new[_unseen(new["request_id"], seen)].reset_index(drop=True)
        seen.update(new["request_id"].tolist())
        if not new["timestamp"].is_monotonic_increasing:
            new = new.sort_values("timestamp", kind="stable", ignore_index=True)
        if not len(old):
            self._frames[kind] = new
            return
        merged = pd.concat([old, new], ignore_index=True)
        if len(new) and new["timestamp"].iloc[0] < old["timestamp"].iloc[-1]:  # else already in order
            merged = merged.sort_values("timestamp", kind="stable", ignore_index=True)
        self._frames[kind] = merged

    # -- spool side and filters --------------------------------------------------------

    def _open_spool(self) -> Spool | None:
        if self.spool_dir is None:
            return None
        if self._spool is None:
            try:
                self._spool = open_existing(self.spool_dir)
            except (SpoolError, OSError) as exc:  # e.g. a read-only monitoring machine
                log.warning("not reading the spool at %s: %s", self.spool_dir, exc)
        return self._spool

    def _pending_frame(self, kind: str) -> pd.DataFrame | None:
        spool = self._open_spool()
        if spool is None:
            return None
        key = (spool.max_seq(), spool.pending_count(), len(self._seen[kind]))
        if self._pending_key.get(kind) != key:
            rows = _decodable(spool.pending_payloads(kind))
            df = rows_to_table(rows, kind).to_pandas() if rows else self._empty(kind)
            if len(df) and kind == "predictions":
                df = df.drop_duplicates("request_id")
                df = df[_unseen(df["request_id"], self._seen[kind])]
            self._pending_key[kind], self._pending[kind] = key, df
        return self._pending[kind]

    def _frame(self, kind: str, include_pending: bool, refresh: bool) -> pd.DataFrame:
        if refresh:
            self.refresh()
        with self._lock:
            df = self._frames[kind]
            if include_pending:
                pending = self._pending_frame(kind)
                if pending is not None and len(pending):
                    df = pd.concat([df, pending], ignore_index=True)
                    df = _latest(df) if kind == "feedback" else df.sort_values("timestamp", kind="stable",
                                                                               ignore_index=True)
            return df

    @staticmethod
    def _time_mask(df: pd.DataFrame, start, end) -> pd.Series:
        mask = pd.Series(True, index=df.index)
        if (ts := _utc(start)) is not None:
            mask &= df["timestamp"] >= ts
        if (ts := _utc(end)) is not None:
            mask &= df["timestamp"] < ts
        return mask

    @staticmethod
    def _empty(kind: str) -> pd.DataFrame:
        return _SCHEMAS[kind]().empty_table().to_pandas()


def load_predictions(settings: Settings | None = None, **filters) -> pd.DataFrame:
    """One-shot convenience: a fresh reader's ``predictions(**filters)``."""
    reader = PredictionReader(settings)
    try:
        return reader.predictions(**filters)
    finally:
        reader.close()
